//! A zone transfer's messages, written straight from the zone's wire forms: no record is
//! decoded or re-encoded, and each owner name is compressed against the names the
//! message already holds (RDATA names stay whole: SRV targets must, RFC 2782).
//!
//! Owns: filling one message after another up to [`MESSAGE_BUDGET`] bytes. Must not:
//! decide what a transfer holds (the caller's records), its header's flags (the
//! caller's template) or sign it.

use std::collections::HashMap;
use std::iter::Peekable;

use foldhash::fast::RandomState;

use crate::dns::wire::{HEADER_LEN, MAX_POINTER_OFFSET, RrRef};

/// Bytes of a transfer message at most, header and question included, unless one record
/// alone is larger (it then goes alone). Small enough that a slow secondary holds up
/// little memory, large enough that the per-message work is noise.
pub const MESSAGE_BUDGET: usize = 16 * 1024;

/// Where ANCOUNT sits in the header.
const ANSWER_COUNT_AT: usize = 6;

/// The messages of a transfer of `records`, taken from the iterator one message at a
/// time: memory is one message, however large the zone.
pub struct Messages<'z, I: Iterator<Item = RrRef<'z>>> {
    records: Peekable<I>,
    /// Each name (or name suffix) already written in the current message, and where.
    names: HashMap<&'z [u8], u16, RandomState>,
}

impl<'z, I: Iterator<Item = RrRef<'z>>> Messages<'z, I> {
    pub fn new(records: I) -> Self {
        Self {
            records: records.peekable(),
            names: HashMap::default(),
        }
    }

    /// Writes the next message into `out` (replacing what it held): `header`, a header
    /// whose counts say one question and nothing else, then `question`, then the next
    /// records while they fit the budget (one at least). `false` when no record is left.
    pub fn write_next(
        &mut self,
        header: &[u8; HEADER_LEN],
        question: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(first) = self.records.next() else {
            return false;
        };
        out.clear();
        out.extend_from_slice(header);
        out.extend_from_slice(question);
        self.names.clear();
        self.put(first, out);
        let mut count: u16 = 1;
        while count < u16::MAX {
            let Some(&record) = self.records.peek() else {
                break;
            };
            let before = out.len();
            self.put(record, out);
            if out.len() > MESSAGE_BUDGET {
                // Names it added point past the end; the next message starts afresh.
                out.truncate(before);
                break;
            }
            self.records.next();
            count += 1;
        }
        out[ANSWER_COUNT_AT..ANSWER_COUNT_AT + 2].copy_from_slice(&count.to_be_bytes());
        true
    }

    /// Appends `record`, its owner as the longest suffix already written made a pointer.
    fn put(&mut self, record: RrRef<'z>, out: &mut Vec<u8>) {
        let owner = record.owner();
        let mut at = 0;
        loop {
            let suffix = &owner[at..];
            let label = usize::from(suffix[0]);
            if label == 0 {
                out.push(0);
                break;
            }
            if let Some(&offset) = self.names.get(suffix) {
                out.extend_from_slice(&(0xC000 | offset).to_be_bytes());
                break;
            }
            if let Ok(offset) = u16::try_from(out.len())
                && usize::from(offset) <= MAX_POINTER_OFFSET
            {
                self.names.insert(suffix, offset);
            }
            out.extend_from_slice(&suffix[..1 + label]);
            at += 1 + label;
        }
        out.extend_from_slice(record.after_owner());
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, SRV};
    use hickory_proto::rr::{Name, RData, Record};

    use super::*;
    use crate::dns::wire::Rr;

    fn record(owner: &str, data: RData) -> Rr {
        Rr::new(&Record::from_rdata(Name::from_str(owner).unwrap(), 5, data)).unwrap()
    }

    /// A header with QR and AA, one question; and the question `internal. AXFR`.
    fn header_and_question() -> ([u8; HEADER_LEN], Vec<u8>) {
        let header = [0x12, 0x34, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let question = b"\x08internal\x00\x00\xfc\x00\x01".to_vec();
        (header, question)
    }

    /// hickory decodes every message to the records given, in order, and compression
    /// makes them smaller than the records written whole.
    #[test]
    fn messages_decode_to_the_records_in_order() {
        let mut records = Vec::new();
        for service in 0..300u16 {
            let owner = format!("svc{service}.internal.");
            for i in 0..4u8 {
                let target = format!("i-{i}.svc{service}.internal.");
                let address = RData::A(A::new(10, (service >> 8) as u8, service as u8, i));
                records.push(record(&owner, address.clone()));
                let srv = SRV::new(1, 1, 8080, Name::from_str(&target).unwrap());
                records.push(record(&owner, RData::SRV(srv)));
                records.push(record(&target, address));
            }
        }
        let (header, question) = header_and_question();
        let mut messages = Messages::new(records.iter().map(Rr::view));
        let (mut out, mut decoded, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        while messages.write_next(&header, &question, &mut out) {
            let message = Message::from_vec(&out).unwrap();
            assert_eq!(message.metadata.id, 0x1234);
            assert!(message.metadata.authoritative);
            assert_eq!(message.queries.len(), 1);
            decoded.extend(message.answers.iter().map(|r| Rr::new(r).unwrap()));
            sizes.push(out.len());
        }
        assert_eq!(decoded, records);
        assert!(
            sizes.iter().all(|&size| size <= MESSAGE_BUDGET),
            "{sizes:?}"
        );
        let whole: usize = records.iter().map(|r| r.view().len()).sum();
        let sent: usize = sizes.iter().sum();
        assert!(
            sent < whole * 3 / 4,
            "{sent} bytes sent for {whole} of records"
        );
        let largest = records.iter().map(|r| r.view().len()).max().unwrap();
        let (last, full) = sizes.split_last().unwrap();
        assert!(
            *last > 0 && full.iter().all(|&size| size > MESSAGE_BUDGET - largest),
            "{sizes:?}"
        );
    }

    /// Names too long to compress fill several messages, every record in one of them,
    /// and a transfer without records has no message.
    #[test]
    fn long_names_spread_over_messages() {
        let long =
            Name::from_str(&format!("{}.internal.", vec!["a".repeat(60); 3].join("."))).unwrap();
        let srv = |port| {
            Record::from_rdata(
                long.clone(),
                5,
                RData::SRV(SRV::new(1, 1, port, long.clone())),
            )
        };
        let records: Vec<Rr> = (0..400).map(|port| Rr::new(&srv(port)).unwrap()).collect();
        let (header, question) = header_and_question();
        let mut messages = Messages::new(records.iter().map(Rr::view));
        let mut out = Vec::new();
        let mut counts = Vec::new();
        while messages.write_next(&header, &question, &mut out) {
            assert!(out.len() <= MESSAGE_BUDGET);
            counts.push(Message::from_vec(&out).unwrap().answers.len());
        }
        assert_eq!(counts.iter().sum::<usize>(), 400);
        assert!(counts.len() > 1, "{counts:?}");
        let mut messages = Messages::new(std::iter::empty());
        assert!(!messages.write_next(&header, &question, &mut out));
    }
}
