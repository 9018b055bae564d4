//! `[dns.rrl]`: response rate limiting of UDP answers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dns::networks;

/// `[dns.rrl]`: how many UDP responses one source prefix gets per second, per kind of
/// answer (see `dns::rrl` for the classes and what each is keyed by).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RrlConfig {
    /// Responses per second to one source prefix for one key (a name and type, a zone's
    /// NXDOMAINs, or its errors); a second's worth may come at once. 0 turns RRL off
    /// (the default: muster's usual clients are a few busy resolvers that cannot be
    /// spoofed in a VPC, or loopback).
    pub responses_per_second: u32,
    /// Of the responses over the rate, every `slip`th goes out empty with TC set (a real
    /// resolver retries over TCP, which is not limited) and the others are dropped; 1
    /// slips them all, 0 drops them all.
    pub slip: u8,
    /// How long a source that went over the rate keeps paying for it: limited responses
    /// count too, up to this much time's worth (BIND's `window`), so a flood gets nothing
    /// but slips until it has stayed under the rate for a while. 0: only the responses
    /// sent count.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// IPv4 sources in one prefix of this length share their limits.
    pub ipv4_prefix: u8,
    /// IPv6 sources in one prefix of this length share their limits.
    pub ipv6_prefix: u8,
    /// Networks (CIDR, or single addresses) never limited.
    pub exempt: Vec<String>,
    /// Buckets in the table the UDP threads share (8 bytes each, allocated at start).
    /// Keys that hash to one bucket share its limit.
    pub table_size: u32,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            responses_per_second: 0,
            slip: 2,
            window: Duration::from_secs(15),
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            table_size: 262_144,
        }
    }
}

/// The largest rate: one response per microsecond.
pub const MAX_RESPONSES_PER_SECOND: u32 = 1_000_000;

impl RrlConfig {
    /// The exempt networks, with every problem of `[dns.rrl]` pushed to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) -> Vec<ipnet::IpNet> {
        if self.responses_per_second > MAX_RESPONSES_PER_SECOND {
            problems.push(format!(
                "dns.rrl.responses_per_second: {} is above {MAX_RESPONSES_PER_SECOND}",
                self.responses_per_second
            ));
        }
        if self.slip > 10 {
            problems.push(format!("dns.rrl.slip: {} is above 10", self.slip));
        }
        if self.window > Duration::from_secs(3600) {
            problems.push(format!(
                "dns.rrl.window: {} is above 1h",
                humantime::format_duration(self.window)
            ));
        }
        if !(1..=32).contains(&self.ipv4_prefix) {
            problems.push(format!(
                "dns.rrl.ipv4_prefix: {} is outside 1..32",
                self.ipv4_prefix
            ));
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            problems.push(format!(
                "dns.rrl.ipv6_prefix: {} is outside 1..128",
                self.ipv6_prefix
            ));
        }
        if !(1024..=1 << 24).contains(&self.table_size) {
            problems.push(format!(
                "dns.rrl.table_size: {} is outside 1024..16777216",
                self.table_size
            ));
        }
        networks("dns.rrl.exempt", &self.exempt, problems)
    }
}
