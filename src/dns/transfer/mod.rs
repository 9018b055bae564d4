//! Zone transfers to standard secondaries (Knot, BIND, NSD): AXFR (RFC 5936) split over
//! as many TCP messages as the zone needs, IXFR (RFC 1995) from a journal of changes
//! keyed by SOA serial, NOTIFY (RFC 1996) after changes, an allow list and TSIG.
//!
//! A secondary receives what muster answers: the instances DNS serves (healthy, or all
//! under fail-open), but every one of them, since `max_answers` is a per-answer limit
//! that a zone file cannot express. The journal lives in each [`NamespaceRecords`] (so an
//! IXFR is always consistent with the zone it ends at) and is kept only when transfers
//! are configured.
//!
//! Metrics: `muster_dns_transfers_total{kind}`, `muster_dns_notify_total{result}`.

mod message;
mod notify;
mod tsig;

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;

use crate::config::TransferSettings;
use crate::dns::journal;
use crate::dns::wire::{Rr, RrRef};
use crate::dns::zone::NamespaceRecords;

pub use message::{MESSAGE_BUDGET, Messages};
pub use notify::run as notify_secondaries;
pub use tsig::{Rejection, Signer, TsigKey};

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
    /// Every kind, for the metrics' series at zero.
    pub const ALL: [Kind; 4] = [Kind::Axfr, Kind::Ixfr, Kind::IxfrCurrent, Kind::IxfrFull];

    /// The `kind` label of `muster_dns_transfers_total`.
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
    /// From the validated `[transfer]`.
    pub fn new(settings: &TransferSettings) -> Self {
        Self {
            allow: settings.allow.clone(),
            keys: settings
                .keys
                .iter()
                .map(|key| TsigKey::new(key, settings.fudge))
                .collect(),
            notify: settings.notify.clone(),
        }
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
    /// unsigned request, or how to answer a request whose TSIG does not verify.
    pub fn signature(
        &self,
        raw: &[u8],
        additionals: &[Record],
    ) -> Result<Option<Signer>, Rejection> {
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

/// The answer records of an AXFR, or of an IXFR from `client_serial`, in order, read from
/// the zone as they are taken; and which kind of answer that is.
pub fn answer_records(zone: &NamespaceRecords, client_serial: Option<u32>) -> (Kind, Parts<'_>) {
    let soa = &zone.soa;
    let current = soa.soa_serial();
    let Some(client) = client_serial else {
        return (Kind::Axfr, full(zone));
    };
    if client == current {
        return (Kind::IxfrCurrent, current_soa(zone));
    }
    let Some(start) = zone
        .journal
        .iter()
        .position(|d| d.serial_before() == client)
    else {
        return (Kind::IxfrFull, full(zone));
    };
    let deltas = zone.journal.iter().skip(start).flat_map(|delta| {
        std::iter::once(&delta.from)
            .chain(&delta.removed)
            .chain(std::iter::once(&delta.to))
            .chain(&delta.added)
            .map(Rr::view)
    });
    let answer = std::iter::once(soa.view())
        .chain(deltas)
        .chain(std::iter::once(soa.view()));
    (Kind::Ixfr, Box::new(answer))
}

/// The records of a transfer, in order, read from the zone as they are written.
pub type Parts<'z> = Box<dyn Iterator<Item = RrRef<'z>> + Send + 'z>;

/// The answer to an IXFR from a client that is current: the zone's SOA alone.
pub fn current_soa(zone: &NamespaceRecords) -> Parts<'_> {
    Box::new(std::iter::once(zone.soa.view()))
}

/// SOA, every record, SOA.
fn full(zone: &NamespaceRecords) -> Parts<'_> {
    let soa = std::iter::once(zone.soa.view());
    Box::new(soa.clone().chain(journal::zone_records(zone)).chain(soa))
}

/// The serial an IXFR client has: the SOA in its authority section (RFC 1995 3).
pub fn client_serial(authorities: &[Record]) -> Option<u32> {
    authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Whether `qtype` asks for a transfer.
pub fn is_transfer(qtype: RecordType) -> bool {
    matches!(qtype, RecordType::AXFR | RecordType::IXFR)
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
