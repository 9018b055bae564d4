//! Response rate limiting (RRL) of UDP answers, as Knot, NSD and BIND do it: a spoofed
//! flood (queries "from" a victim) cannot make muster an amplifier, and a real resolver
//! that is limited still gets its answers, over TCP.
//!
//! Every UDP response, from the fast path, the full path or forwarding, is judged just
//! before it is sent ([`Rrl::admit`]). Sources in one prefix (`ipv4_prefix`,
//! `ipv6_prefix`) share their limits, per class of answer ([`Class`]: positive keyed by
//! name and type, NXDOMAIN by zone, NODATA by name, errors by nothing more). Each key
//! may get `responses_per_second`, a second's worth at once; beyond it every `slip`th
//! response goes out empty with TC set (keeping its OPT record) and the others are
//! dropped. A signed response (TSIG) that would slip is dropped: unsigned, its client
//! would reject it. `exempt` networks
//! (loopback by default) are never limited. TCP is not limited.
//!
//! Owns: the decision and the table of buckets ([`table`]) shared by the UDP threads
//! through atomics: a fixed size, no lock, no allocation per response. Must not: look at
//! anything but the response bytes and the source address.
//!
//! Metrics (in [`DnsMetrics`](super::DnsMetrics), per thread):
//! `muster_dns_rrl_dropped_total{class}`, `muster_dns_rrl_slipped_total{class}`.

mod classify;
mod table;

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use crate::config::RrlConfig;
use crate::dns::metrics::QuerySlot;

pub use classify::Class;
use classify::{classify, trailer};
pub use table::Verdict;
use table::{Rate, Table};

const FLAG_TC: u8 = 0x02;

/// The rate limiter of one server, shared by its UDP threads.
pub struct Rrl {
    table: Table,
    rate: Rate,
    exempt: Vec<IpNet>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    /// Keys are hashed with a secret, so sources cannot pick keys that share a bucket.
    keys: RandomState,
    started: Instant,
}

impl Rrl {
    /// The limiter a validated `config` asks for, with its `exempt` networks parsed
    /// (`config::Settings::rrl_exempt`), or `None` when RRL is off.
    pub fn new(config: &RrlConfig, exempt: Vec<IpNet>) -> Option<Self> {
        if config.responses_per_second == 0 {
            return None;
        }
        let window = u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX);
        Some(Self {
            table: Table::new(config.table_size as usize),
            rate: Rate::new(config.responses_per_second, window, config.slip),
            exempt,
            ipv4_prefix: config.ipv4_prefix,
            ipv6_prefix: config.ipv6_prefix,
            keys: RandomState::new(),
            started: Instant::now(),
        })
    }

    /// The clock [`Rrl::admit`] takes: nanoseconds since the limiter started. The fast
    /// path reads it once per batch of datagrams.
    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Judges `response` (a whole UDP response) to `source` at `now`, and counts what it
    /// did to it in `slot`: true to send it (emptied, with TC set, if it slips), false
    /// to drop it.
    pub fn admit(
        &self,
        source: IpAddr,
        response: &mut Vec<u8>,
        now: u64,
        slot: &QuerySlot,
    ) -> bool {
        let source = source.to_canonical();
        if self.exempt.iter().any(|net| net.contains(&source)) {
            return true;
        }
        let mut key = self.keys.build_hasher();
        self.hash_prefix(source, &mut key);
        let classified = classify(response, &mut key);
        key.write_u8(classified.class as u8);
        let bucket = self.table.index(key.finish());
        let mut verdict = self.table.charge(bucket, now, &self.rate);
        match verdict {
            Verdict::Send => return true,
            Verdict::Slip if !slip(response, classified.question_end) => verdict = Verdict::Drop,
            Verdict::Slip | Verdict::Drop => {}
        }
        slot.count_limited(verdict, classified.class);
        verdict == Verdict::Slip
    }

    /// Feeds the source's prefix (its address with the host bits cleared) into `key`.
    fn hash_prefix(&self, source: IpAddr, key: &mut impl Hasher) {
        match source {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.ipv4_prefix));
                key.write_u32(u32::from(v4) & mask.unwrap_or(0));
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix));
                key.write_u128(u128::from(v6) & mask.unwrap_or(0));
            }
        }
    }
}

/// Empties `response` to its header, question and OPT record, and sets TC: what a
/// limited response slips out as, small, so a real resolver asks again over TCP. False
/// (send nothing) for a signed response, which cannot be signed again here.
fn slip(response: &mut Vec<u8>, question_end: usize) -> bool {
    let trailer = trailer(response, question_end);
    if trailer.signed {
        return false;
    }
    let mut additional = 0;
    if let Some(opt) = trailer.opt {
        response.copy_within(opt.clone(), question_end);
        additional = 1;
        response.truncate(question_end + opt.len());
    } else {
        response.truncate(question_end);
    }
    if response.len() >= 12 {
        response[2] |= FLAG_TC;
        response[6..10].fill(0);
        response[10..12].copy_from_slice(&u16::to_be_bytes(additional));
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rrl(exempt: &[&str]) -> Rrl {
        let config = RrlConfig {
            responses_per_second: 10,
            window: Duration::from_secs(15),
            ..RrlConfig::default()
        };
        let exempt = exempt.iter().map(|n| n.parse().unwrap()).collect();
        Rrl::new(&config, exempt).unwrap()
    }

    /// A positive answer to `web.internal A` (one A record after the question).
    fn answer() -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(b"\x03web\x08internal\x00\x00\x01\x00\x01");
        bytes.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
        bytes
    }

    /// How many of `count` answers to `source` at one instant went out whole, slipped.
    fn flood(rrl: &Rrl, source: &str, count: usize, slot: &QuerySlot) -> (usize, usize) {
        let (mut whole, mut slipped) = (0, 0);
        for _ in 0..count {
            let mut response = answer();
            if rrl.admit(source.parse().unwrap(), &mut response, 1_000, slot) {
                match response.len() == answer().len() {
                    true => whole += 1,
                    false => slipped += 1,
                }
            }
        }
        (whole, slipped)
    }

    #[test]
    fn a_flood_gets_its_rate_then_slips_every_other_response() {
        let rrl = rrl(&[]);
        let slot = QuerySlot::default();
        assert_eq!(flood(&rrl, "192.0.2.1", 100, &slot), (10, 45));
        // The same /24 shares the limit; another /24 and an IPv6 source have their own.
        assert_eq!(flood(&rrl, "192.0.2.200", 2, &slot).0, 0);
        assert_eq!(flood(&rrl, "192.0.3.1", 10, &slot).0, 10);
        assert_eq!(flood(&rrl, "2001:db8::1", 10, &slot).0, 10);
        assert_eq!(flood(&rrl, "2001:db8::ff:1", 2, &slot).0, 0, "same /56");
        assert_eq!(slot.limited(Verdict::Slip, Class::Positive), 45 + 1 + 1);
        assert_eq!(slot.limited(Verdict::Drop, Class::Positive), 45 + 1 + 1);
    }

    #[test]
    fn exempt_sources_are_never_limited() {
        let rrl = rrl(&["192.0.2.0/24"]);
        let slot = QuerySlot::default();
        assert_eq!(flood(&rrl, "192.0.2.1", 100, &slot), (100, 0));
        assert_eq!(flood(&rrl, "198.51.100.1", 100, &slot).0, 10);
    }

    #[test]
    fn a_slipped_response_is_the_question_with_tc() {
        let mut response = answer();
        assert!(slip(&mut response, 12 + 14 + 4));
        assert_eq!(response.len(), 30);
        assert_eq!(response[2] & FLAG_TC, FLAG_TC);
        assert_eq!(&response[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }

    /// `answer()` with an additional record of `kind` owned by `owner`.
    fn with_additional(owner: &[u8], kind: u16, rdata: &[u8]) -> Vec<u8> {
        let mut bytes = answer();
        bytes[11] = 1;
        bytes.extend_from_slice(owner);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0x04, 0xD0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(rdata);
        bytes
    }

    #[test]
    fn a_slipped_edns_response_keeps_its_opt_record() {
        let opt = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut response = with_additional(&[0], 41, &opt);
        assert!(slip(&mut response, 30));
        assert_eq!(&response[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&response[30..], &with_additional(&[0], 41, &opt)[46..]);
    }

    #[test]
    fn a_signed_response_is_dropped_rather_than_slipped_unsigned() {
        let mut response = with_additional(b"\x03key\x00", 250, &[0; 20]);
        assert!(!slip(&mut response, 30));
        let rrl = rrl(&[]);
        let slot = QuerySlot::default();
        let mut sent = 0;
        for _ in 0..20 {
            let mut response = with_additional(b"\x03key\x00", 250, &[0; 20]);
            sent +=
                usize::from(rrl.admit("192.0.2.1".parse().unwrap(), &mut response, 1_000, &slot));
        }
        assert_eq!(sent, 10, "the rate, and no slips");
        assert_eq!(slot.limited(Verdict::Slip, Class::Positive), 0);
        assert_eq!(slot.limited(Verdict::Drop, Class::Positive), 10);
    }

    #[test]
    fn off_is_none() {
        assert!(Rrl::new(&RrlConfig::default(), Vec::new()).is_none());
    }
}
