//! TSIG with HMAC-SHA256 (RFC 8945): checking a signed request and signing the messages
//! of the answer, and signing the NOTIFYs muster sends.
//!
//! A request is checked as RFC 8945 5.2 orders it, and a failure is answered as Knot and
//! BIND answer it (NOTAUTH with a TSIG record carrying the error):
//!
//! - unknown key or algorithm: BADKEY, unsigned (MAC size 0);
//! - a MAC longer than HMAC-SHA256's 32 bytes: FORMERR, without TSIG (5.2.2.1);
//! - a MAC shorter than 16 bytes (max(10, half the hash), 5.2.2.1): BADTRUNC, unsigned:
//!   muster does not check MACs that short, so it signs nothing for their senders;
//! - a MAC (whole, or truncated to at least 16 bytes) that does not verify: BADSIG,
//!   unsigned;
//! - a time further from muster's clock than the smaller of the request's fudge and the
//!   configured one (`[transfer] tsig_fudge`): BADTIME, signed, the Time Signed the
//!   request's and Other Data muster's time (5.2.3), so the client can verify it and see
//!   the skew.
//!
//! hickory-proto encodes the TSIG record but computes MACs only with its dnssec features
//! (and a crypto backend); this is the small rest, on the `hmac` and `sha2` crates.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, Query};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::TsigSecret;

/// Bytes of an HMAC-SHA256 MAC.
const MAC_LEN: usize = 32;
/// The shortest truncated MAC accepted: max(10, half the hash) (RFC 8945 5.2.2.1).
const MIN_MAC_LEN: usize = MAC_LEN / 2;

/// A shared secret, as configured, with the fudge muster checks and signs with.
#[derive(Clone, Debug)]
pub struct TsigKey {
    pub name: Name,
    secret: Vec<u8>,
    fudge: u16,
}

impl TsigKey {
    /// The key of a validated `[[transfer.tsig_keys]]` entry; `fudge` is
    /// `[transfer] tsig_fudge` in seconds.
    pub fn new(key: &TsigSecret, fudge: u16) -> Self {
        Self {
            name: key.name.clone(),
            secret: key.secret.clone(),
            fudge,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }
}

/// Why a signed request is not accepted, and what its answer carries.
#[derive(Debug)]
pub enum Rejection {
    /// A MAC longer than the hash: FORMERR, without TSIG.
    Malformed,
    /// BADKEY, BADSIG or BADTRUNC: NOTAUTH with this unsigned TSIG record.
    Unsigned(Box<Record<TSIG>>),
    /// BADTIME: NOTAUTH, signed by this signer (which writes the error and our time).
    BadTime(Box<Signer>),
}

impl Rejection {
    /// Every value [`Rejection::label`] returns.
    pub const LABELS: [&'static str; 5] = ["formerr", "badtime", "badkey", "badtrunc", "badsig"];

    /// The `error` label of `muster_dns_tsig_rejected_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Malformed => "formerr",
            Rejection::BadTime(_) => "badtime",
            Rejection::Unsigned(record) => match record.data.error {
                Some(TsigError::BadKey) => "badkey",
                Some(TsigError::BadTrunc) => "badtrunc",
                _ => "badsig",
            },
        }
    }
}

/// Signs the messages of one answer, each MAC chained to the one before (RFC 8945 5.3.1).
#[derive(Debug)]
pub struct Signer {
    key: TsigKey,
    /// The request's MAC for the first message, then the last message's.
    prior_mac: Vec<u8>,
    first: bool,
    /// For a BADTIME answer: the request's Time Signed, which the answer carries.
    bad_time: Option<u64>,
}

/// Checks the TSIG of `raw` (a request as received, whose TSIG is `tsig`) against `keys`;
/// on success returns the signer for the answer.
pub fn verify(raw: &[u8], tsig: &Record<TSIG>, keys: &[TsigKey]) -> Result<Signer, Rejection> {
    let data = &tsig.data;
    let unsigned = |error| {
        let rdata = TSIG::new(
            data.algorithm.clone(),
            data.time,
            data.fudge,
            Vec::new(),
            data.oid,
            Some(error),
            Vec::new(),
        );
        Rejection::Unsigned(Box::new(make_tsig_record(tsig.name.clone(), rdata)))
    };
    let key = keys
        .iter()
        .find(|k| k.name == tsig.name && data.algorithm == TsigAlgorithm::HmacSha256)
        .ok_or_else(|| unsigned(TsigError::BadKey))?;
    if data.mac.len() > MAC_LEN {
        return Err(Rejection::Malformed);
    }
    if data.mac.len() < MIN_MAC_LEN {
        return Err(unsigned(TsigError::BadTrunc));
    }
    let message = without_tsig(raw, data.oid).ok_or_else(|| unsigned(TsigError::BadSig))?;
    let mut mac = key.mac();
    mac.update(&message);
    mac.update(&variables(data, &key.name));
    mac.verify_truncated_left(&data.mac)
        .map_err(|_| unsigned(TsigError::BadSig))?;
    let signer = Signer {
        key: key.clone(),
        prior_mac: data.mac.clone(),
        first: true,
        bad_time: None,
    };
    if now().abs_diff(data.time) > u64::from(data.fudge.min(key.fudge)) {
        return Err(Rejection::BadTime(Box::new(Signer {
            bad_time: Some(data.time),
            ..signer
        })));
    }
    Ok(signer)
}

impl Signer {
    /// The name of the key the request was signed with (an UPDATE's permissions hang
    /// on it).
    pub fn key_name(&self) -> &Name {
        &self.key.name
    }

    /// A signer for a request muster sends (a NOTIFY): no prior MAC.
    pub fn request(key: &TsigKey) -> Self {
        Self {
            key: key.clone(),
            prior_mac: Vec::new(),
            first: true,
            bad_time: None,
        }
    }

    /// The TSIG record for `message`, encoded without one, whose ID is `id`.
    pub fn sign(&mut self, message: &[u8], id: u16) -> Box<Record<TSIG>> {
        let (time, error, other) = match self.bad_time {
            // 48 bits of our time, as Time Signed is written.
            Some(requested) => (
                requested,
                Some(TsigError::BadTime),
                now().to_be_bytes()[2..].to_vec(),
            ),
            None => (now(), None, Vec::new()),
        };
        let tsig = TSIG::new(
            TsigAlgorithm::HmacSha256,
            time,
            self.key.fudge,
            Vec::new(),
            id,
            error,
            other,
        );
        let mut mac = self.key.mac();
        if !self.prior_mac.is_empty() {
            mac.update(&(self.prior_mac.len() as u16).to_be_bytes());
            mac.update(&self.prior_mac);
        }
        mac.update(message);
        if self.first {
            mac.update(&variables(&tsig, &self.key.name));
        } else {
            mac.update(&timers(&tsig));
        }
        self.first = false;
        self.prior_mac = mac.finalize().into_bytes().to_vec();
        Box::new(make_tsig_record(
            self.key.name.clone(),
            tsig.set_mac(self.prior_mac.clone()),
        ))
    }
}

/// The request as its signer saw it: original ID, one additional record fewer, no TSIG.
fn without_tsig(raw: &[u8], original_id: u16) -> Option<Vec<u8>> {
    let mut decoder = BinDecoder::new(raw);
    let mut header = Header::read(&mut decoder).ok()?;
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let records = usize::from(header.counts.answers)
        + usize::from(header.counts.authorities)
        + usize::from(header.counts.additionals).checked_sub(1)?;
    for _ in 0..records {
        Record::read(&mut decoder).ok()?;
    }
    let end = raw.len() - decoder.len();
    header.metadata.id = original_id;
    header.counts.additionals -= 1;
    let mut bytes = header.to_bytes().ok()?;
    bytes.extend_from_slice(&raw[12..end]);
    Some(bytes)
}

/// The TSIG variables of RFC 8945 4.3.3.
fn variables(tsig: &TSIG, key_name: &Name) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut bytes);
    // Writing to a Vec cannot fail.
    let _ = tsig.emit_tsig_for_mac(&mut encoder, key_name);
    bytes
}

/// Time signed and fudge only, for the later messages of a multi-message answer.
fn timers(tsig: &TSIG) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8);
    bytes.extend_from_slice(&((tsig.time >> 32) as u16).to_be_bytes());
    bytes.extend_from_slice(&(tsig.time as u32).to_be_bytes());
    bytes.extend_from_slice(&tsig.fudge.to_be_bytes());
    bytes
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::RecordType;

    fn key() -> TsigKey {
        let secret = TsigSecret {
            name: "transfer-key.".parse().unwrap(),
            secret: b"secret secret secret secret!".to_vec(),
        };
        TsigKey::new(&secret, 300)
    }

    /// An AXFR request signed with `key` at `time` with `fudge`, its MAC cut to `mac_len`.
    fn signed_at(key: &TsigKey, time: u64, fudge: u16, mac_len: usize) -> Vec<u8> {
        let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
        message.add_query(Query::query("internal.".parse().unwrap(), RecordType::AXFR));
        let unsigned = message.to_bytes().unwrap();
        let tsig = TSIG::new(
            TsigAlgorithm::HmacSha256,
            time,
            fudge,
            Vec::new(),
            4242,
            None,
            Vec::new(),
        );
        let mut mac = key.mac();
        mac.update(&unsigned);
        mac.update(&variables(&tsig, &key.name));
        let mut mac = mac.finalize().into_bytes().to_vec();
        mac.resize(mac_len, 0xAB);
        message.signature = Some(Box::new(make_tsig_record(
            key.name.clone(),
            tsig.set_mac(mac),
        )));
        message.to_bytes().unwrap()
    }

    fn signed_query(key: &TsigKey) -> Vec<u8> {
        signed_at(key, now(), 300, MAC_LEN)
    }

    fn tsig_of(raw: &[u8]) -> Record<TSIG> {
        super::super::request_tsig(&Message::from_bytes(raw).unwrap().additionals).unwrap()
    }

    fn rejection(raw: &[u8], keys: &[TsigKey]) -> Option<&'static str> {
        verify(raw, &tsig_of(raw), keys).err().map(|r| r.label())
    }

    #[test]
    fn a_request_signed_with_the_key_verifies() {
        let raw = signed_query(&key());
        assert!(verify(&raw, &tsig_of(&raw), &[key()]).is_ok());
    }

    #[test]
    fn a_changed_byte_or_another_key_is_rejected_unsigned() {
        let mut raw = signed_query(&key());
        let mut other = key();
        other.secret = b"another".to_vec();
        assert_eq!(rejection(&raw, &[other]), Some("badsig"));
        let mut renamed = key();
        renamed.name = "other-key.".parse().unwrap();
        let Err(Rejection::Unsigned(record)) = verify(&raw, &tsig_of(&raw), &[renamed]) else {
            panic!("an unknown key gets an unsigned BADKEY");
        };
        assert_eq!(record.data.error, Some(TsigError::BadKey));
        assert!(record.data.mac.is_empty());
        assert_eq!(record.name, key().name, "the request's key name");
        raw[2] ^= 0x01; // the RD bit
        assert_eq!(rejection(&raw, &[key()]), Some("badsig"));
    }

    #[test]
    fn truncated_macs_down_to_half_the_hash_verify() {
        let at = now();
        assert!(
            verify(
                &signed_at(&key(), at, 300, 16),
                &tsig_of(&signed_at(&key(), at, 300, 16)),
                &[key()]
            )
            .is_ok()
        );
        assert_eq!(
            rejection(&signed_at(&key(), at, 300, 15), &[key()]),
            Some("badtrunc")
        );
        assert_eq!(
            rejection(&signed_at(&key(), at, 300, 10), &[key()]),
            Some("badtrunc")
        );
        assert_eq!(
            rejection(&signed_at(&key(), at, 300, 33), &[key()]),
            Some("formerr")
        );
        // Truncated, but a wrong byte within the part sent.
        let mut raw = signed_at(&key(), at, 300, 20);
        let len = raw.len();
        raw[len - 7] ^= 0xFF; // the MAC ends 6 bytes before the end (ID, error, other len)
        assert_eq!(rejection(&raw, &[key()]), Some("badsig"));
    }

    #[test]
    fn time_is_checked_against_our_fudge_and_badtime_is_signed_with_our_time() {
        let stale = now() - 600;
        // The request's own fudge of an hour does not widen ours (300 s).
        let raw = signed_at(&key(), stale, 3600, MAC_LEN);
        let Err(Rejection::BadTime(mut signer)) = verify(&raw, &tsig_of(&raw), &[key()]) else {
            panic!("a request 600 s old is BADTIME");
        };
        let record = signer.sign(b"response", 4242);
        assert_eq!(record.data.error, Some(TsigError::BadTime));
        assert_eq!(record.data.time, stale, "the request's Time Signed");
        let mut ours = [0u8; 8];
        ours[2..].copy_from_slice(&record.data.other);
        assert!(
            u64::from_be_bytes(ours).abs_diff(now()) <= 1,
            "Other Data is our time"
        );
        assert_eq!(record.data.fudge, 300);
        assert_eq!(record.data.mac.len(), MAC_LEN, "signed");
        // A narrower fudge of the request's own is honoured.
        let raw = signed_at(&key(), now() - 100, 60, MAC_LEN);
        assert_eq!(rejection(&raw, &[key()]), Some("badtime"));
        let raw = signed_at(&key(), now() - 100, 300, MAC_LEN);
        assert!(verify(&raw, &tsig_of(&raw), &[key()]).is_ok());
    }
}
