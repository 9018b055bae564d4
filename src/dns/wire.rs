//! Records with their wire form, encoded once when the zone changes so the UDP fast path
//! only copies bytes per query.
//!
//! Owns: encoding one record (uncompressed, as hickory would write it without name
//! compression) and writing it into a response with its owner name either in full or as
//! a compression pointer. Must not: know about queries, answer policy or sockets.

use std::ops::Deref;

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// The compression pointer to the question name, which always starts at offset 12.
pub const QUESTION_POINTER: u16 = 0xC00C;
/// The largest offset a compression pointer can hold (14 bits).
pub const MAX_POINTER_OFFSET: usize = 0x3FFF;

thread_local! {
    /// The buffer [`Rr::new`] encodes into.
    static ENCODER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A record and its uncompressed wire form.
///
/// The wire length is also the size bound the full path's truncation check uses for the
/// record (owner + 10 + RDATA without compression), so both paths agree on what fits.
#[derive(Clone, Debug)]
pub struct Rr {
    /// The record, for the full path and zone transfers.
    pub record: Record,
    wire: Box<[u8]>,
    /// Bytes of the owner name at the start of `wire`.
    owner_len: u16,
}

impl Rr {
    /// Encodes `record`; `None` if hickory cannot encode it (it never fails for the
    /// record types muster serves).
    pub fn new(record: Record) -> Option<Self> {
        // Encoded into a reused buffer, then copied once at its exact size: the zone
        // encodes every record of every changed instance on the registry's writer.
        let (wire, owner_len) = ENCODER.with_borrow_mut(|buffer| {
            buffer.clear();
            let mut encoder = BinEncoder::new(buffer);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            record.emit(&mut encoder).ok()?;
            let owner_len = u16::try_from(name_len(buffer)?).ok()?;
            Some((Box::<[u8]>::from(&buffer[..]), owner_len))
        })?;
        Some(Self {
            record,
            wire,
            owner_len,
        })
    }

    /// Bytes of the record written with its owner in full: the size bound of the record.
    pub fn len(&self) -> usize {
        self.wire.len()
    }

    /// The uncompressed encoding: also the record's identity, TTL included.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Appends the record with its owner name written in full.
    pub fn put_full(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wire);
    }

    /// Appends the record with its owner as the compression pointer `pointer` (the two
    /// top bits included).
    pub fn put_with_owner_at(&self, out: &mut Vec<u8>, pointer: u16) {
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(&self.wire[usize::from(self.owner_len)..]);
    }
}

impl Deref for Rr {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

/// The length of the uncompressed name at the start of `wire`.
fn name_len(wire: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let label = usize::from(*wire.get(at)?);
        at += 1 + label;
        if label == 0 {
            return Some(at);
        }
    }
}
