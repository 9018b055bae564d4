//! `[http]` and `[ops]`: the HTTP listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[http]`: the REST, Cloud Map and operations API, and the bounds on its connections.
/// Everything but `listen` and whether TLS is on follows a reload (SIGHUP); timeouts and
/// caps apply to connections accepted after it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// How long a client has, from the first byte of a request (or from the connection's
    /// start, for the first request, TLS handshake included), to send the request's head
    /// and body. A client that half-sends its headers is dropped after it.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay open with no request in flight. A
    /// request in flight (a long poll) is never cut by it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once on each listener; beyond it a new one is closed at once.
    pub max_connections: u32,
    /// Connections open at once from one source (an IPv4 address, an IPv6 /64) on each
    /// listener; beyond it a new one from that source is closed at once.
    pub max_connections_per_source: u32,
    /// Blocking queries (`GET .../services/{svc}?index=N`) waiting at once; beyond it one
    /// more gets 503 with `Retry-After`. Each holds a connection: with
    /// `max_watch_streams`, keep it below `max_connections` to leave room for writes.
    pub max_blocking_queries: u32,
    /// `GET /v1/watch` streams open at once; beyond it one more gets 503.
    pub max_watch_streams: u32,
    /// Host names clients use to reach muster. While the APIs are open (no credentials in
    /// `[auth]`), a request whose Host header is not an IP literal, `localhost`, one of
    /// these or `data-<one of these>` (the AWS SDKs' DiscoverInstances host) gets 403: a
    /// browser page on another domain cannot reach muster by rebinding its own name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS only. Re-read on
    /// SIGHUP and when the files change; a pair that does not load keeps the one in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8054)),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_source: 128,
            max_blocking_queries: 512,
            max_watch_streams: 256,
            hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The shortest timeout accepted: below it a client on a slow network could not send a
/// request at all.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest header timeout accepted: above it a slow client holds a connection for
/// nothing.
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest idle timeout accepted.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl HttpConfig {
    /// Whether the listener speaks TLS (a restart is needed to turn it on or off).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let timeouts = [
            ("header_timeout", self.header_timeout, MAX_HEADER_TIMEOUT),
            ("idle_timeout", self.idle_timeout, MAX_IDLE_TIMEOUT),
        ];
        for (key, value, max) in timeouts {
            if value < MIN_TIMEOUT || value > max {
                problems.push(format!(
                    "http.{key}: {} is not from {} to {}",
                    humantime::format_duration(value),
                    humantime::format_duration(MIN_TIMEOUT),
                    humantime::format_duration(max),
                ));
            }
        }
        if self.max_connections == 0 {
            problems.push("http.max_connections: must be at least 1".to_owned());
        }
        if self.max_connections_per_source == 0
            || self.max_connections_per_source > self.max_connections
        {
            problems.push(format!(
                "http.max_connections_per_source: {} is not from 1 to max_connections ({})",
                self.max_connections_per_source, self.max_connections
            ));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if !is_host_name(host) {
                problems.push(format!(
                    "http.hosts[{i}]: {host:?} is not a host name (letters, digits, '-', '.'; no port)"
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push("http.tls_cert: tls_cert and tls_key go together".to_owned());
        }
        problems
    }
}

/// A DNS host name as the Host header carries it: 1-253 of letters, digits, `-` and `.`.
fn is_host_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name.trim_end_matches('.').split('.').all(|l| !l.is_empty())
}

/// `[ops]`: a listener for `/metrics`, `/healthz` and `/readyz` only, so they can be
/// exposed where writes are not. Its connections have the `[http]` bounds (counted apart
/// from the API's, so a flood on one listener does not lock the other out).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Where to serve them; none: only on the `[http]` listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl OpsConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let config = HttpConfig {
            header_timeout: Duration::from_millis(10),
            idle_timeout: Duration::from_secs(7200),
            max_connections: 10,
            max_connections_per_source: 11,
            hosts: vec!["ok.example".into(), "bad:80".into(), "a..b".into()],
            tls_cert: Some("cert.pem".into()),
            ..HttpConfig::default()
        };
        let problems = config.problems().join("\n");
        for key in [
            "http.header_timeout",
            "http.idle_timeout",
            "http.max_connections_per_source",
            "http.hosts[1]",
            "http.hosts[2]",
            "http.tls_cert",
        ] {
            assert!(problems.contains(key), "{key} missing from:\n{problems}");
        }
        assert!(!problems.contains("http.hosts[0]"), "{problems}");
        assert!(HttpConfig::default().problems().is_empty());
    }
}
