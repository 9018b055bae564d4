//! `[dns.tcp]`: bounds on DNS over TCP.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[dns.tcp]`: how many TCP connections DNS keeps, for how long, and how much work one
/// connection may have in hand. Read at start (a change needs a restart).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsTcpConfig {
    /// Open connections across every DNS address; a connection past it is closed at once.
    pub max_connections: u32,
    /// Open connections from one source (an IPv4 address, or an IPv6 /64); a connection
    /// past it is closed at once.
    pub max_connections_per_source: u32,
    /// How long a connection may go without activity (a query read, or a response write
    /// making progress) before it is closed. Time spent answering does not count, and a
    /// secondary reading a transfer slowly is active as long as it reads.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a client may take to send the rest of a message once its first byte has
    /// arrived.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Queries of one connection answered at once by the full path (RFC 7766
    /// pipelining); further queries wait unread until one finishes.
    pub max_in_flight: u32,
}

impl Default for DnsTcpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_source: 64,
            idle_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(2),
            max_in_flight: 16,
        }
    }
}

/// The most connections muster will hold: each costs a descriptor and a task.
const MAX_CONNECTIONS: u32 = 1_000_000;
/// The most queries one connection may have in the full path.
const MAX_IN_FLIGHT: u32 = 1024;

impl DnsTcpConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            problems.push(format!(
                "dns.tcp.max_connections: {} is outside 1..{MAX_CONNECTIONS}",
                self.max_connections
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections_per_source) {
            problems.push(format!(
                "dns.tcp.max_connections_per_source: {} is outside 1..{MAX_CONNECTIONS}",
                self.max_connections_per_source
            ));
        }
        let durations = [
            ("idle_timeout", self.idle_timeout, Duration::from_secs(3600)),
            (
                "message_timeout",
                self.message_timeout,
                Duration::from_secs(60),
            ),
        ];
        for (key, value, max) in durations {
            if value < Duration::from_millis(100) || value > max {
                problems.push(format!(
                    "dns.tcp.{key}: {} is outside 100ms..{}",
                    humantime::format_duration(value),
                    humantime::format_duration(max)
                ));
            }
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            problems.push(format!(
                "dns.tcp.max_in_flight: {} is outside 1..{MAX_IN_FLIGHT}",
                self.max_in_flight
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_every_bound_is_checked() {
        assert!(DnsTcpConfig::default().problems().is_empty());
        let config = DnsTcpConfig {
            max_connections: 0,
            max_connections_per_source: 0,
            idle_timeout: Duration::from_millis(10),
            message_timeout: Duration::from_secs(61),
            max_in_flight: 0,
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        for key in [
            "max_connections:",
            "max_connections_per_source:",
            "idle_timeout:",
            "message_timeout:",
            "max_in_flight:",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("dns.tcp.{key}"))),
                "{key} {problems:?}"
            );
        }
    }
}
