//! How an instance is actively checked: data the registry stores with an instance (from
//! the REST body) or a service's policy (from a config rule). The health task runs it.
//!
//! Every number here comes from a client, so every one is bounded twice: at input
//! ([`CheckSpec::validate`], [`health_bounds`]: a 4xx naming the field) and where it is
//! used ([`CheckSpec::period`], [`CheckSpec::timeout`], [`heartbeat_period`]: clamped,
//! never panicking), because a spec can reach the health task without passing input
//! validation (a log written by an older release, replayed at start).

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::InstanceSpec;
use super::validate::FieldError;

/// Check intervals accepted: sub-second detection without hammering an instance, and at
/// least one check an hour (`[health] min_interval` may raise the floor).
pub const INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3_600);
/// The shortest check interval.
pub const MIN_INTERVAL: Duration = *INTERVAL.start();
/// Consecutive results that make up a threshold: more than 100 checks is not a threshold.
pub const THRESHOLD: RangeInclusive<u32> = 1..=100;
/// Heartbeat TTLs accepted: below 100 ms a client could not keep up, above a day it is
/// not a heartbeat.
pub const HEARTBEAT_TTL: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(86_400);
/// `deregister_after` accepted: at least a second (a heartbeat or check must be able
/// to fail first), at most 30 days.
pub const DEREGISTER_AFTER: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);
/// Longest HTTP check path, in bytes (a URL path, not a payload).
const MAX_PATH: usize = 1024;
/// Longest `Host` header: a DNS name (253) with a port.
const MAX_HOST: usize = 260;
/// Longest `status`: `"200-399"` with some spaces.
const MAX_STATUS: usize = 16;

/// An HTTP or TCP check, its schedule and its thresholds.
///
/// `{"http": "/healthz", "interval": "200ms", "timeout": "150ms", "healthy_threshold": 2,
/// "unhealthy_threshold": 2}` or `{"tcp": true, "interval": "1s"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// HTTP GET of this path; the check passes on a status in `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A TCP connect; the check passes when the connection is accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// Time between checks (100 ms to 1 h).
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// How long one check may take; below the interval. Default: 80% of the interval.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Consecutive passes that make an unhealthy instance healthy (1-100).
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy instance unhealthy (1-100).
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// HTTP statuses that pass, `"200-399"` (the default) or `"200"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The HTTP `Host` header; default the instance's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port to check; default the instance's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Start unhealthy until the first `healthy_threshold` passes (so an instance is not
    /// announced before it can serve); the default starts healthy, as Cloud Map does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_unhealthy: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_threshold() -> u32 {
    2
}

impl CheckSpec {
    /// The time between checks, within [`INTERVAL`] whatever the spec says (a spec that
    /// skipped validation cannot make the scheduler spin or overflow a deadline).
    pub fn period(&self) -> Duration {
        self.interval.clamp(*INTERVAL.start(), *INTERVAL.end())
    }

    /// The timeout in force: the given one, else 80% of the interval; never above
    /// [`CheckSpec::period`]. No arithmetic here can overflow.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .unwrap_or_else(|| default_timeout(self.interval))
            .min(self.period())
    }

    /// The HTTP statuses that pass.
    pub fn statuses(&self) -> RangeInclusive<u16> {
        self.status
            .as_deref()
            .and_then(parse_statuses)
            .unwrap_or(200..=399)
    }

    /// The first problem with the spec, naming its field (`check.interval`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field, message: String| Err(FieldError::new(field, message));
        match (&self.http, self.tcp) {
            (Some(path), false) => {
                let printable = path.bytes().all(|b| b.is_ascii_graphic());
                if !path.starts_with('/') || !printable || path.len() > MAX_PATH {
                    return fail(
                        "check.http",
                        format!(
                            "must be a path starting with /, at most {MAX_PATH} printable ASCII characters without spaces"
                        ),
                    );
                }
            }
            (None, true) => {}
            _ => {
                return fail(
                    "check",
                    "exactly one of http (a path) or tcp = true is needed".to_owned(),
                );
            }
        }
        if !INTERVAL.contains(&self.interval) {
            return fail(
                "check.interval",
                format!(
                    "{} is not from {} to {}",
                    show(self.interval),
                    show(*INTERVAL.start()),
                    show(*INTERVAL.end())
                ),
            );
        }
        let timeout = self
            .timeout
            .unwrap_or_else(|| default_timeout(self.interval));
        if timeout.is_zero() || timeout >= self.interval {
            return fail(
                "check.timeout",
                format!("{} must be above 0 and below the interval", show(timeout)),
            );
        }
        for (field, count) in [
            ("check.healthy_threshold", self.healthy_threshold),
            ("check.unhealthy_threshold", self.unhealthy_threshold),
        ] {
            if !THRESHOLD.contains(&count) {
                return fail(
                    field,
                    format!(
                        "{count} is not from {} to {}",
                        THRESHOLD.start(),
                        THRESHOLD.end()
                    ),
                );
            }
        }
        if let Some(status) = &self.status
            && (status.len() > MAX_STATUS || parse_statuses(status).is_none())
        {
            return fail(
                "check.status",
                "must be a status or a range like 200-399 (100-599)".to_owned(),
            );
        }
        if let Some(host) = &self.host {
            let valid = !host.is_empty()
                && host.len() <= MAX_HOST
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
            if !valid {
                return fail(
                    "check.host",
                    format!(
                        "must be a host name or address (and port), 1-{MAX_HOST} of a-z 0-9 - . _ : [ ]"
                    ),
                );
            }
        }
        if self.port == Some(0) {
            return fail("check.port", "must be 1-65535".to_owned());
        }
        Ok(())
    }
}

/// Whether the health settings of an instance are within bounds: its heartbeat TTL and
/// its check (which also needs a port to probe). The REST API refuses a registration that
/// is not, with the field at fault; the registry's writer should refuse the same specs
/// when it replays its log, so nothing an older release accepted reaches the health task.
pub fn health_bounds(spec: &InstanceSpec) -> Result<(), FieldError> {
    if let Some(ttl) = spec.heartbeat_ttl() {
        within("heartbeat_ttl", ttl, &HEARTBEAT_TTL)?;
    }
    if let Some(after) = spec.deregister_after() {
        deregister_after_bounds(after)?;
    }
    if let Some(check) = spec.check() {
        check.validate()?;
        if check.port.or(spec.port).is_none() {
            return Err(FieldError::new(
                "check.port",
                "a check needs a port: give the instance or the check one",
            ));
        }
    }
    Ok(())
}

/// `deregister_after` within [`DEREGISTER_AFTER`], else an error naming it.
pub fn deregister_after_bounds(after: Duration) -> Result<(), FieldError> {
    within("deregister_after", after, &DEREGISTER_AFTER)
}

/// `duration` within `range`, else an error naming `field` and the range (also the
/// bounds check of the REST API's query durations, `wait`).
pub fn within(
    field: &'static str,
    duration: Duration,
    range: &RangeInclusive<Duration>,
) -> Result<(), FieldError> {
    if range.contains(&duration) {
        return Ok(());
    }
    let (low, high) = (show(*range.start()), show(*range.end()));
    let problem = format!("{} is not a duration from {low} to {high}", show(duration));
    Err(FieldError::new(field, problem))
}

/// How long a heartbeat deadline runs: the TTL within [`HEARTBEAT_TTL`], whatever the
/// spec says, so a deadline is always a representable instant.
pub fn heartbeat_period(ttl: Duration) -> Duration {
    ttl.clamp(*HEARTBEAT_TTL.start(), *HEARTBEAT_TTL.end())
}

/// 80% of `interval`, without overflow.
fn default_timeout(interval: Duration) -> Duration {
    (interval / 5).saturating_mul(4)
}

/// A duration as a client writes one (`100ms`, `1h`).
fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn parse_statuses(text: &str) -> Option<RangeInclusive<u16>> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
    ((100..=599).contains(&low) && low <= high && high <= 599).then_some(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> CheckSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let check = spec(r#"{"http": "/healthz"}"#);
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.timeout(), Duration::from_millis(800));
        assert_eq!(check.statuses(), 200..=399);
        assert!(check.validate().is_ok());
        assert!(
            spec(r#"{"tcp": true, "interval": "100ms", "timeout": "50ms"}"#)
                .validate()
                .is_ok()
        );
        assert!(
            spec(r#"{"tcp": true, "interval": "50ms"}"#)
                .validate()
                .is_err()
        );
        assert!(
            spec(r#"{"tcp": true, "interval": "1s", "timeout": "1s"}"#)
                .validate()
                .is_err()
        );
        assert!(spec(r#"{"http": "/x", "tcp": true}"#).validate().is_err());
        assert!(spec(r#"{}"#).validate().is_err());
        assert!(spec(r#"{"http": "x"}"#).validate().is_err());
        assert!(
            spec(r#"{"http": "/x", "status": "600"}"#)
                .validate()
                .is_err()
        );
        assert_eq!(
            spec(r#"{"http": "/x", "status": "204"}"#).statuses(),
            204..=204
        );
        assert!(serde_json::from_str::<CheckSpec>(r#"{"http": "/x", "bogus": 1}"#).is_err());
    }

    fn field(json: &str) -> &'static str {
        spec(json).validate().unwrap_err().field
    }

    #[test]
    fn every_number_and_string_is_bounded_with_its_field() {
        // The issue's attack: a century-long interval, and one whose 80% overflows.
        assert_eq!(
            field(r#"{"tcp": true, "interval": "100y"}"#),
            "check.interval"
        );
        assert_eq!(
            field(r#"{"tcp": true, "interval": "150000000000y"}"#),
            "check.interval"
        );
        assert_eq!(
            field(r#"{"tcp": true, "interval": "61m"}"#),
            "check.interval"
        );
        assert!(
            spec(r#"{"tcp": true, "interval": "1h"}"#)
                .validate()
                .is_ok()
        );
        assert_eq!(
            field(r#"{"tcp": true, "timeout": "150000000000y"}"#),
            "check.timeout"
        );
        assert_eq!(field(r#"{"tcp": true, "timeout": "0s"}"#), "check.timeout");
        assert_eq!(
            field(r#"{"tcp": true, "healthy_threshold": 0}"#),
            "check.healthy_threshold"
        );
        assert_eq!(
            field(r#"{"tcp": true, "unhealthy_threshold": 101}"#),
            "check.unhealthy_threshold"
        );
        let long_path = format!(r#"{{"http": "/{}"}}"#, "a".repeat(MAX_PATH));
        assert_eq!(field(&long_path), "check.http");
        assert_eq!(field(r#"{"http": "/a b"}"#), "check.http");
        let long_host = format!(r#"{{"http": "/", "host": "{}"}}"#, "a".repeat(MAX_HOST + 1));
        assert_eq!(field(&long_host), "check.host");
        assert_eq!(field(r#"{"http": "/", "host": "a\r\nX: y"}"#), "check.host");
        assert!(
            spec(r#"{"http": "/", "host": "[::1]:80"}"#)
                .validate()
                .is_ok()
        );
        let long_status = format!(r#"{{"http": "/", "status": "200{}"}}"#, " ".repeat(20));
        assert_eq!(field(&long_status), "check.status");
        assert_eq!(field(r#"{"tcp": true, "port": 0}"#), "check.port");
    }

    #[test]
    fn a_spec_that_skipped_validation_cannot_overflow() {
        let mut check = spec(r#"{"tcp": true}"#);
        for interval in [Duration::ZERO, Duration::MAX] {
            check.interval = interval;
            for timeout in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                check.timeout = timeout;
                assert!(INTERVAL.contains(&check.period()));
                assert!(check.timeout() <= check.period());
            }
        }
        assert_eq!(heartbeat_period(Duration::MAX), Duration::from_secs(86_400));
        assert_eq!(heartbeat_period(Duration::ZERO), Duration::from_millis(100));
    }

    #[test]
    fn instance_health_bounds() {
        let mut instance = InstanceSpec {
            port: Some(80),
            extras: crate::registry::SpecExtras {
                heartbeat_ttl: Some(Duration::from_secs(3)),
                check: Some(std::sync::Arc::new(spec(r#"{"tcp": true}"#))),
                ..Default::default()
            }
            .into(),
            ..InstanceSpec::default()
        };
        assert!(health_bounds(&instance).is_ok());
        let long = Duration::from_secs(86_401);
        instance
            .extras
            .edit(|extras| extras.heartbeat_ttl = Some(long));
        assert_eq!(health_bounds(&instance).unwrap_err().field, "heartbeat_ttl");
        instance.extras.edit(|extras| extras.heartbeat_ttl = None);
        instance.port = None;
        assert_eq!(health_bounds(&instance).unwrap_err().field, "check.port");
        let slow = spec(r#"{"tcp": true, "interval": "100y"}"#);
        instance
            .extras
            .edit(|extras| extras.check = Some(std::sync::Arc::new(slow)));
        assert_eq!(
            health_bounds(&instance).unwrap_err().field,
            "check.interval"
        );
    }
}
