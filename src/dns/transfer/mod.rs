//! Zone transfers to standard secondaries (Knot, BIND, NSD): AXFR (RFC 5936) split over
//! as many TCP messages as the zone needs, IXFR (RFC 1995) from a journal of changes
//! keyed by SOA serial, NOTIFY (RFC 1996) after changes, an allow list and TSIG.
//!
//! A secondary receives what muster answers: the instances DNS serves (healthy, or all
//! under fail-open), but every one of them, since `max_answers` is a per-answer limit
//! that a zone file cannot express. The journal lives in each [`NamespaceZone`] (so an
//! IXFR is always consistent with the zone it ends at) and is kept only when transfers
//! are configured.
//!
//! Metrics: `muster_dns_transfers_total{kind}`, `muster_dns_notify_total{result}`.

mod notify;
mod records;
mod tsig;

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;

use crate::config::TransferConfig;
use crate::dns::wire::Rr;
use crate::dns::zone::NamespaceZone;

pub use notify::run as notify_secondaries;
pub(crate) use records::{Delta, delta};
pub use tsig::{Signer, TsigKey};

/// Records kept per namespace journal: enough for thousands of small changes; a
/// secondary further behind gets the whole zone.
pub const JOURNAL_RECORDS: usize = 100_000;

/// Bytes of records (before name compression) per message of a transfer.
const MESSAGE_BUDGET: usize = 16 * 1024;

/// Who may transfer, with which keys, and whom to NOTIFY.
#[derive(Clone, Debug, Default)]
pub struct Transfers {
    allow: Vec<IpNet>,
    keys: Vec<TsigKey>,
    pub notify: Vec<SocketAddr>,
}

/// The kind of transfer answered, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Axfr,
    /// IXFR answered from the journal.
    Ixfr,
    /// IXFR whose client is current: the single SOA.
    IxfrCurrent,
    /// IXFR the journal no longer reaches: the whole zone.
    IxfrFull,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Axfr => "axfr",
            Kind::Ixfr => "ixfr",
            Kind::IxfrCurrent => "ixfr_current",
            Kind::IxfrFull => "ixfr_full",
        }
    }
}

impl Transfers {
    /// From `[transfer]` (already validated, so errors here are bugs in validation).
    pub fn from_config(config: &TransferConfig) -> Result<Self, String> {
        Ok(Self {
            allow: config.allowed_networks()?,
            keys: config
                .tsig_keys
                .iter()
                .map(TsigKey::from_config)
                .collect::<Result<_, _>>()?,
            notify: config.notify.clone(),
        })
    }

    /// Whether anyone may transfer (and so whether a journal is worth keeping).
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty()
    }

    /// The key NOTIFYs are signed with.
    pub fn notify_key(&self) -> Option<&TsigKey> {
        self.keys.first()
    }

    /// The signer for the answer to a request signed with a known key, `None` for an
    /// unsigned request, or the TSIG error (NOTAUTH) when the signature does not verify.
    pub fn signature(
        &self,
        raw: &[u8],
        additionals: &[Record],
    ) -> Result<Option<Signer>, TsigError> {
        match request_tsig(additionals) {
            Some(tsig) => tsig::verify(raw, &tsig, &self.keys).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a transfer from `source` may go ahead: from an allowed network, and signed
    /// when keys are configured.
    pub fn allowed(&self, source: IpAddr, signed: bool) -> bool {
        self.allow.iter().any(|net| net.contains(&source)) && (signed || self.keys.is_empty())
    }
}

/// The TSIG of a request: its last additional record. (hickory-proto moves it to the
/// message's `signature` only when built with its dnssec features, which muster is not.)
fn request_tsig(additionals: &[Record]) -> Option<Record<TSIG>> {
    let last = additionals.last()?;
    if last.record_type() != RecordType::TSIG {
        return None;
    }
    last.clone().map(|data| match data {
        RData::TSIG(tsig) => Some(tsig),
        _ => None,
    })
}

/// The answer records of an AXFR, or of an IXFR from `client_serial`, in order, and
/// which kind of answer that is.
pub fn answer_records(zone: &NamespaceZone, client_serial: Option<u32>) -> (Kind, Vec<Record>) {
    let soa = zone.soa.record();
    let current = records::serial(&soa);
    let Some(client) = client_serial else {
        return (Kind::Axfr, full(zone, soa));
    };
    if client == current {
        return (Kind::IxfrCurrent, vec![soa]);
    }
    let Some(start) = zone
        .journal
        .iter()
        .position(|d| d.serial_before() == client)
    else {
        return (Kind::IxfrFull, full(zone, soa));
    };
    let mut answer = vec![soa.clone()];
    for delta in zone.journal.iter().skip(start) {
        answer.push(delta.from.clone());
        answer.extend(delta.removed.iter().cloned());
        answer.push(delta.to.clone());
        answer.extend(delta.added.iter().cloned());
    }
    answer.push(soa);
    (Kind::Ixfr, answer)
}

/// SOA, every record, SOA.
fn full(zone: &NamespaceZone, soa: Record) -> Vec<Record> {
    let mut answer = vec![soa.clone()];
    answer.extend(records::zone_records(zone).into_iter().map(Rr::record));
    answer.push(soa);
    answer
}

/// The serial an IXFR client has: the SOA in its authority section (RFC 1995 3).
pub fn client_serial(authorities: &[Record]) -> Option<u32> {
    authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Splits `records` into messages of at most [`MESSAGE_BUDGET`] bytes (one record per
/// message at least), using `len_bound` as each record's size.
pub fn split<'r>(
    records: &[&'r Record],
    len_bound: impl Fn(&Record) -> usize,
) -> Vec<Vec<&'r Record>> {
    let mut messages = Vec::new();
    let mut message = Vec::new();
    let mut size = 0;
    for record in records {
        let len = len_bound(record);
        if !message.is_empty() && size + len > MESSAGE_BUDGET {
            messages.push(std::mem::take(&mut message));
            size = 0;
        }
        size += len;
        message.push(*record);
    }
    if !message.is_empty() {
        messages.push(message);
    }
    messages
}

/// Whether `qtype` asks for a transfer.
pub fn is_transfer(qtype: RecordType) -> bool {
    matches!(qtype, RecordType::AXFR | RecordType::IXFR)
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
