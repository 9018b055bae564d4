//! Records with their wire form, encoded once when the zone changes so the UDP fast path
//! only copies bytes per query.
//!
//! Owns: encoding one record (uncompressed, as hickory would write it without name
//! compression) and writing it into a response with its owner name either in full or as
//! a compression pointer. Must not: know about queries, answer policy or sockets.

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};

/// Bytes of the DNS header.
pub const HEADER_LEN: usize = 12;
/// Bytes of an OPT record without options.
pub const OPT_LEN: usize = 11;
/// The smallest UDP payload every client accepts (RFC 1035), and what non-EDNS clients get.
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// The compression pointer to the question name, which always starts at offset 12.
pub const QUESTION_POINTER: u16 = 0xC00C;
/// The largest offset a compression pointer can hold (14 bits).
pub const MAX_POINTER_OFFSET: usize = 0x3FFF;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Where an SOA's serial starts, counted from the end of its RDATA (serial, refresh,
/// retry, expire, minimum: five 32-bit numbers).
const SOA_SERIAL_FROM_END: usize = 20;

thread_local! {
    /// The buffer hickory encodes records into for [`Rr::new`].
    static ENCODER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A record in its uncompressed wire form, and nothing else: a zone holds one per record
/// of every instance (24 bytes plus the bytes, where a hickory `Record` alone takes 272),
/// and the writer builds them from bytes it already has. The full path, which needs
/// hickory's `Record`, decodes one with [`Rr::record`].
///
/// The wire length is also the size bound the full path's truncation check uses for the
/// record (owner + 10 + RDATA without compression), so both paths agree on what fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    wire: Box<[u8]>,
    /// Bytes of the owner name at the start of `wire`.
    owner_len: u16,
}

impl Rr {
    /// Encodes `record` through hickory (muster's apex SOA and NS); `None` if hickory
    /// cannot encode it.
    pub fn new(record: &Record) -> Option<Self> {
        ENCODER.with_borrow_mut(|buffer| {
            buffer.clear();
            let mut encoder = BinEncoder::new(buffer);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            record.emit(&mut encoder).ok()?;
            Some(Self {
                owner_len: u16::try_from(name_len(buffer)?).ok()?,
                wire: Box::from(&buffer[..]),
            })
        })
    }

    /// A class IN record of `record_type` at `owner` (an uncompressed wire name, see
    /// [`wire_name`]) whose RDATA is `rdata`'s parts in order; `None` if it would not fit
    /// a record's 16-bit length.
    pub fn from_parts(
        owner: &[u8],
        record_type: RecordType,
        ttl: u32,
        rdata: &[&[u8]],
    ) -> Option<Self> {
        let rdata_len: usize = rdata.iter().map(|part| part.len()).sum();
        let mut wire = Vec::with_capacity(owner.len() + 10 + rdata_len);
        put_record(&mut wire, owner, record_type, ttl, rdata)?;
        Some(Self {
            wire: wire.into_boxed_slice(),
            owner_len: u16::try_from(owner.len()).ok()?,
        })
    }

    /// The record, borrowed: what every reader takes.
    pub fn view(&self) -> RrRef<'_> {
        RrRef {
            wire: &self.wire,
            owner_len: self.owner_len,
        }
    }

    /// The serial of this SOA record (see [`RrRef::soa_serial`]).
    pub fn soa_serial(&self) -> u32 {
        self.view().soa_serial()
    }

    /// The same SOA record with the serial `serial`.
    pub fn with_soa_serial(&self, serial: u32) -> Self {
        let mut wire = self.wire.clone();
        let at = wire.len() - SOA_SERIAL_FROM_END;
        wire[at..at + 4].copy_from_slice(&serial.to_be_bytes());
        Self {
            wire,
            owner_len: self.owner_len,
        }
    }
}

/// Appends a class IN record of `record_type` at `owner` whose RDATA is `rdata`'s parts
/// in order, uncompressed; `None` (and `out` unchanged) if the RDATA would not fit a
/// record's 16-bit length.
pub fn put_record(
    out: &mut Vec<u8>,
    owner: &[u8],
    record_type: RecordType,
    ttl: u32,
    rdata: &[&[u8]],
) -> Option<()> {
    let rdata_len: usize = rdata.iter().map(|part| part.len()).sum();
    let rdata_len = u16::try_from(rdata_len).ok()?;
    out.extend_from_slice(owner);
    out.extend_from_slice(&u16::from(record_type).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdata_len.to_be_bytes());
    for part in rdata {
        out.extend_from_slice(part);
    }
    Some(())
}

/// A record in its uncompressed wire form, borrowed from an [`Rr`] or from the one
/// buffer that holds all of an instance's records (`service_records`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrRef<'a> {
    wire: &'a [u8],
    /// Bytes of the owner name at the start of `wire`.
    owner_len: u16,
}

impl<'a> RrRef<'a> {
    /// The record at the start of `wire`, whose owner name is `owner_len` bytes: what
    /// [`put_record`] wrote.
    pub fn new(wire: &'a [u8], owner_len: u16) -> Self {
        Self { wire, owner_len }
    }

    /// A copy that owns its bytes (a journal's differences outlive the zone's version).
    pub fn to_rr(self) -> Rr {
        Rr {
            wire: self.wire.into(),
            owner_len: self.owner_len,
        }
    }

    /// The record as hickory's type, for the full path and zone transfers.
    pub fn record(self) -> Record {
        Record::read(&mut BinDecoder::new(self.wire)).expect("an Rr holds one encoded record")
    }

    /// Its type, read from the wire.
    pub fn record_type(self) -> RecordType {
        let at = usize::from(self.owner_len);
        RecordType::from(u16::from_be_bytes([self.wire[at], self.wire[at + 1]]))
    }

    /// The serial of this SOA record, read from the wire (the first of the five numbers
    /// that end an SOA's RDATA).
    pub fn soa_serial(self) -> u32 {
        let at = self.wire.len() - SOA_SERIAL_FROM_END;
        u32::from_be_bytes([
            self.wire[at],
            self.wire[at + 1],
            self.wire[at + 2],
            self.wire[at + 3],
        ])
    }

    /// Bytes of the record written with its owner in full: the size bound of the record.
    pub fn len(self) -> usize {
        self.wire.len()
    }

    /// The uncompressed encoding: also the record's identity, TTL included.
    pub fn wire(self) -> &'a [u8] {
        self.wire
    }

    /// Appends the record with its owner name written in full.
    pub fn put_full(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.wire);
    }

    /// Appends the record with its owner as the compression pointer `pointer` (the two
    /// top bits included).
    pub fn put_with_owner_at(self, out: &mut Vec<u8>, pointer: u16) {
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(self.after_owner());
    }

    /// How many bytes [`RrRef::put_with_owner_at`] appends.
    pub fn len_with_owner_at(self) -> usize {
        2 + self.after_owner().len()
    }

    /// The owner name, uncompressed.
    pub fn owner(self) -> &'a [u8] {
        &self.wire[..usize::from(self.owner_len)]
    }

    /// Everything after the owner name: type, class, TTL, length and RDATA.
    pub fn after_owner(self) -> &'a [u8] {
        &self.wire[usize::from(self.owner_len)..]
    }
}

/// `name` uncompressed, as hickory writes a fully qualified name; `None` if it is not
/// fully qualified.
pub fn wire_name(name: &Name) -> Option<Vec<u8>> {
    if !name.is_fqdn() {
        return None;
    }
    let mut wire = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        wire.push(u8::try_from(label.len()).ok()?);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    Some(wire)
}

/// `label` then the wire name `parent`; `None` if the label or the name would be too
/// long (63 and 255 bytes).
pub fn child_name(label: &[u8], parent: &[u8]) -> Option<Vec<u8>> {
    if label.is_empty() || label.len() > 63 || 1 + label.len() + parent.len() > 255 {
        return None;
    }
    let mut wire = Vec::with_capacity(1 + label.len() + parent.len());
    wire.push(label.len() as u8);
    wire.extend_from_slice(label);
    wire.extend_from_slice(parent);
    Some(wire)
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

/// An upper bound of a record's wire size, without compression.
pub fn record_len_bound(record: &Record) -> usize {
    let name_len = |n: &hickory_proto::rr::Name| n.len() + 1;
    let rdata = match &record.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name_len(&srv.target),
        RData::NS(ns) => name_len(&ns.0),
        RData::SOA(soa) => 20 + name_len(&soa.mname) + name_len(&soa.rname),
        _ => usize::from(u16::MAX),
    };
    name_len(&record.name) + 10 + rdata
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};

    use super::*;

    /// Records built from parts are the bytes hickory writes, and decode to the record.
    #[test]
    fn parts_encode_as_hickory_does() {
        let owner = Name::from_str("Web.Internal.").unwrap();
        let target = Name::from_str("i-0aB.web.internal.").unwrap();
        let target_wire = wire_name(&target).unwrap();
        let owner_wire = wire_name(&owner).unwrap();
        let srv_fields = [1u16, 2, 8080].map(u16::to_be_bytes).concat();
        let cases: [(RData, Vec<&[u8]>); 4] = [
            (RData::A(A::new(10, 0, 0, 1)), vec![&[10, 0, 0, 1]]),
            (
                RData::AAAA(AAAA::from_str("2001:db8::1").unwrap()),
                vec![&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
            ),
            (
                RData::SRV(SRV::new(1, 2, 8080, target.clone())),
                vec![&srv_fields, &target_wire],
            ),
            (RData::CNAME(CNAME(target.clone())), vec![&target_wire]),
        ];
        for (data, parts) in cases {
            let record = Record::from_rdata(owner.clone(), 300, data);
            let built = Rr::from_parts(&owner_wire, record.record_type(), 300, &parts).unwrap();
            assert_eq!(Some(&built), Rr::new(&record).as_ref(), "{record}");
            assert_eq!(built.view().record(), record);
            assert_eq!(built.view().record_type(), record.record_type());
        }
    }

    #[test]
    fn soa_serial_is_patched_in_place() {
        let origin = Name::from_str("internal.").unwrap();
        let soa = |serial| {
            let data = SOA::new(origin.clone(), origin.clone(), serial, 60, 10, 1_209_600, 5);
            Record::from_rdata(origin.clone(), 5, RData::SOA(data))
        };
        let patched = Rr::new(&soa(1)).unwrap().with_soa_serial(0xdead_beef);
        assert_eq!(patched.view().record(), soa(0xdead_beef));
        assert_eq!(patched.soa_serial(), 0xdead_beef);
    }

    #[test]
    fn child_names_are_bounded() {
        let parent = wire_name(&Name::from_str("internal.").unwrap()).unwrap();
        assert_eq!(
            child_name(b"web", &parent).unwrap(),
            b"\x03web\x08internal\x00"
        );
        assert!(child_name(&[b'a'; 64], &parent).is_none());
        assert!(child_name(b"", &parent).is_none());
    }
}
