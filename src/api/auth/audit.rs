//! The audit log: one structured line per write through either API, accepted or
//! refused, under the tracing target `muster::audit` (route it with a filter such as
//! `MUSTER_LOG=info,muster::audit=info`, or silence it with `muster::audit=off`).
//!
//! Fields: `api` (`rest`, `cloudmap`), `principal` (`token:NAME`, `key:ID`, or
//! `anonymous` when the APIs are open or the request did not authenticate), `source`
//! (the client's address), `operation` (`register`, `deregister`, `set_health`, or the
//! Cloud Map operation), `resource` (`ns/svc/id`, `ns/svc`, `ns`, or the id the client
//! gave when it names nothing that exists), `result` (`ok`, `refused`, `throttled`),
//! `status` (HTTP), `error` (the Cloud Map error type, or the REST error kind).
//! Strings from clients are written with Rust's escaping (`"..."`), so a client cannot
//! forge a line. Never a token, a secret or a request body.
//!
//! Writes refused by the rate limit are not logged one by one: each principal gets one
//! `throttled` line with a `count` at most every 10 s (the metric counts every one).
//! Accepted REST heartbeats renew a timer rather than change the registry; they are
//! logged at DEBUG.

use std::net::SocketAddr;

use tracing::Level;

use super::Principal;

/// The tracing target of audit lines.
pub const TARGET: &str = "muster::audit";

/// One audit line: the fields every line of `$write` carries, then its own.
macro_rules! audit {
    ($level:expr, $write:expr, $($fields:tt)*) => {
        tracing::event!(
            target: TARGET,
            $level,
            api = $write.api,
            principal = %$write.principal,
            source = %$write.source,
            operation = ?$write.operation,
            resource = ?$write.resource,
            $($fields)*
        )
    };
}

/// One write: who asked for what.
pub struct Write<'a> {
    pub api: &'static str,
    pub principal: &'a Principal,
    pub source: SocketAddr,
    pub operation: &'a str,
    pub resource: &'a str,
}

impl Write<'_> {
    /// The write was answered with `status`; `error` is its kind when refused.
    pub fn record(&self, status: u16, error: Option<&str>) {
        match error {
            None => audit!(Level::INFO, self, result = "ok", status, "write"),
            Some(error) => audit!(
                Level::INFO,
                self,
                result = "refused",
                status,
                error,
                "write"
            ),
        }
    }

    /// An accepted routine write (a heartbeat): DEBUG, not INFO.
    pub fn record_routine(&self, status: u16) {
        audit!(Level::DEBUG, self, result = "ok", status, "write");
    }

    /// `count` writes by this principal were refused by the rate limit since its last
    /// report (this one included).
    pub fn record_throttled(&self, count: u64) {
        audit!(
            Level::INFO,
            self,
            result = "throttled",
            status = 429u16,
            count,
            "writes refused by the rate limit"
        );
    }
}
