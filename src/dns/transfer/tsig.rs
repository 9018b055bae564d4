//! TSIG with HMAC-SHA256 (RFC 8945): checking a signed transfer request and signing
//! the messages of the answer, and signing the NOTIFYs muster sends.
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

use crate::config::TsigKeyConfig;

/// Seconds a signature's time may differ from ours (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// A shared secret, as configured.
#[derive(Clone, Debug)]
pub struct TsigKey {
    pub name: Name,
    secret: Vec<u8>,
}

impl TsigKey {
    /// The key from its configuration (validated at start-up).
    pub fn from_config(config: &TsigKeyConfig) -> Result<Self, String> {
        let mut name: Name = config
            .name
            .parse()
            .map_err(|e| format!("TSIG key name {:?}: {e}", config.name))?;
        name.set_fqdn(true);
        Ok(Self {
            name,
            secret: config.secret_bytes()?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }
}

/// Why a signed request is not accepted: the TSIG error to answer with (NOTAUTH).
pub type Rejection = TsigError;

/// Signs the messages of one answer, each MAC chained to the one before (RFC 8945 5.3.1).
pub struct Signer {
    key: TsigKey,
    /// The request's MAC for the first message, then the last message's.
    prior_mac: Vec<u8>,
    first: bool,
}

/// Checks the TSIG of `raw` (a request as received, whose TSIG is `tsig`) against `keys`;
/// on success returns the signer for the answer.
pub fn verify(raw: &[u8], tsig: &Record<TSIG>, keys: &[TsigKey]) -> Result<Signer, Rejection> {
    let key = keys
        .iter()
        .find(|k| k.name == tsig.name)
        .ok_or(TsigError::BadKey)?;
    let data = &tsig.data;
    if data.algorithm != TsigAlgorithm::HmacSha256 {
        return Err(TsigError::BadKey);
    }
    let unsigned = without_tsig(raw, data.oid).ok_or(TsigError::BadSig)?;
    let mut mac = key.mac();
    mac.update(&unsigned);
    mac.update(&variables(data, &key.name));
    mac.verify_slice(&data.mac).map_err(|_| TsigError::BadSig)?;
    if now().abs_diff(data.time) > u64::from(data.fudge) {
        return Err(TsigError::BadTime);
    }
    Ok(Signer {
        key: key.clone(),
        prior_mac: data.mac.clone(),
        first: true,
    })
}

impl Signer {
    /// A signer for a request muster sends (a NOTIFY): no prior MAC.
    pub fn request(key: &TsigKey) -> Self {
        Self {
            key: key.clone(),
            prior_mac: Vec::new(),
            first: true,
        }
    }

    /// The TSIG record for `message`, encoded without one, whose ID is `id`.
    pub fn sign(&mut self, message: &[u8], id: u16) -> Box<Record<TSIG>> {
        let tsig = TSIG::new(
            TsigAlgorithm::HmacSha256,
            now(),
            FUDGE,
            Vec::new(),
            id,
            None,
            Vec::new(),
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
        TsigKey::from_config(&TsigKeyConfig {
            name: "transfer-key".into(),
            algorithm: "hmac-sha256".into(),
            secret: "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ==".into(),
        })
        .unwrap()
    }

    fn signed_query(key: &TsigKey) -> Vec<u8> {
        let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
        message.add_query(Query::query("internal.".parse().unwrap(), RecordType::AXFR));
        let unsigned = message.to_bytes().unwrap();
        message.signature = Some(Signer::request(key).sign(&unsigned, 4242));
        message.to_bytes().unwrap()
    }

    fn tsig_of(raw: &[u8]) -> Record<TSIG> {
        super::super::request_tsig(&Message::from_bytes(raw).unwrap().additionals).unwrap()
    }

    #[test]
    fn a_request_signed_with_the_key_verifies() {
        let raw = signed_query(&key());
        assert!(verify(&raw, &tsig_of(&raw), &[key()]).is_ok());
    }

    #[test]
    fn a_changed_byte_or_another_key_is_rejected() {
        let mut raw = signed_query(&key());
        let tsig = tsig_of(&raw);
        let mut other = key();
        other.secret = b"another".to_vec();
        assert_eq!(verify(&raw, &tsig, &[other]).err(), Some(TsigError::BadSig));
        raw[2] ^= 0x01; // the RD bit
        assert_eq!(verify(&raw, &tsig, &[key()]).err(), Some(TsigError::BadSig));
        let mut renamed = key();
        renamed.name = "other-key.".parse().unwrap();
        assert_eq!(
            verify(&raw, &tsig, &[renamed]).err(),
            Some(TsigError::BadKey)
        );
    }
}
