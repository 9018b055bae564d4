//! Records with their wire form, encoded once when the zone changes so the UDP fast path
//! only copies bytes per query.
//!
//! Owns: encoding one record (uncompressed, as hickory would write it without name
//! compression) and writing it into a response with its owner name either in full or as
//! a compression pointer. Must not: know about queries, answer policy or sockets.

use std::ops::Deref;

use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// The compression pointer to the question name, which always starts at offset 12.
pub const QUESTION_POINTER: u16 = 0xC00C;
/// The largest offset a compression pointer can hold (14 bits).
pub const MAX_POINTER_OFFSET: usize = 0x3FFF;

thread_local! {
    /// The buffer hickory encodes records into for [`Rr::new`].
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
        let (wire, owner_len) = match direct(&record) {
            Some(direct) => direct,
            None => with_hickory(&record)?,
        };
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

/// The encoding of the record types a service's instances have (A, AAAA, SRV, CNAME),
/// written directly: the registry's writer encodes every record of every changed
/// instance, and hickory's general encoder cost as much as the rest of the zone update.
/// The same bytes as hickory's (a unit test compares them); `None` for other types.
fn direct(record: &Record) -> Option<(Box<[u8]>, u16)> {
    let mut wire = Vec::with_capacity(64);
    put_name(&mut wire, &record.name)?;
    let owner_len = u16::try_from(wire.len()).ok()?;
    wire.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    wire.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    wire.extend_from_slice(&record.ttl.to_be_bytes());
    let length_at = wire.len();
    wire.extend_from_slice(&[0, 0]);
    match &record.data {
        RData::A(a) => wire.extend_from_slice(&a.0.octets()),
        RData::AAAA(aaaa) => wire.extend_from_slice(&aaaa.0.octets()),
        RData::CNAME(cname) => put_name(&mut wire, &cname.0)?,
        RData::SRV(srv) => {
            for field in [srv.priority, srv.weight, srv.port] {
                wire.extend_from_slice(&field.to_be_bytes());
            }
            put_name(&mut wire, &srv.target)?;
        }
        _ => return None,
    }
    let length = u16::try_from(wire.len() - length_at - 2).ok()?;
    wire[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
    Some((wire.into_boxed_slice(), owner_len))
}

/// Appends `name` uncompressed, as hickory writes a fully qualified name.
fn put_name(wire: &mut Vec<u8>, name: &Name) -> Option<()> {
    if !name.is_fqdn() {
        return None;
    }
    for label in name.iter() {
        wire.push(u8::try_from(label.len()).ok()?);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    Some(())
}

/// Any other record, through hickory's encoder.
fn with_hickory(record: &Record) -> Option<(Box<[u8]>, u16)> {
    // Encoded into a reused buffer, then copied once at its exact size.
    ENCODER.with_borrow_mut(|buffer| {
        buffer.clear();
        let mut encoder = BinEncoder::new(buffer);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.emit(&mut encoder).ok()?;
        let owner_len = u16::try_from(name_len(buffer)?).ok()?;
        Some((Box::<[u8]>::from(&buffer[..]), owner_len))
    })
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};

    use super::*;

    #[test]
    fn direct_encoding_is_hickorys() {
        let owner = Name::from_str("Web.Internal.").unwrap();
        let target = Name::from_str("i-0aB.web.internal.").unwrap();
        let records = [
            RData::A(A::new(10, 0, 0, 1)),
            RData::AAAA(AAAA::from_str("2001:db8::1").unwrap()),
            RData::SRV(SRV::new(1, 2, 8080, target.clone())),
            RData::CNAME(CNAME(target)),
        ];
        for data in records {
            let record = Record::from_rdata(owner.clone(), 300, data);
            assert_eq!(direct(&record), with_hickory(&record), "{record}");
        }
    }
}
