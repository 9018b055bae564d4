//! How an instance is actively checked: data the registry stores with an instance (from
//! the REST body) or a service's policy (from a config rule). The health task runs it.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shortest check interval: sub-second detection without hammering an instance.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

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
    /// Time between checks (at least 100 ms).
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// How long one check may take; below the interval. Default: 80% of the interval.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Consecutive passes that make an unhealthy instance healthy.
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy instance unhealthy.
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
    /// The timeout in force: strictly below the interval.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.interval * 4 / 5)
    }

    /// The HTTP statuses that pass.
    pub fn statuses(&self) -> RangeInclusive<u16> {
        self.status
            .as_deref()
            .and_then(parse_statuses)
            .unwrap_or(200..=399)
    }

    /// Every problem with the spec, as `field: message`.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        match (&self.http, self.tcp) {
            (Some(path), false) if !path.starts_with('/') => {
                problems.push(format!("http: {path:?} must start with /"))
            }
            (Some(_), false) | (None, true) => {}
            _ => problems.push("exactly one of http (a path) or tcp = true is needed".to_owned()),
        }
        if self.interval < MIN_INTERVAL {
            problems.push(format!(
                "interval: {:?} is below {MIN_INTERVAL:?}",
                self.interval
            ));
        }
        if self.timeout() >= self.interval || self.timeout().is_zero() {
            problems.push(format!(
                "timeout: {:?} must be above 0 and below the interval",
                self.timeout()
            ));
        }
        if self.healthy_threshold == 0 || self.unhealthy_threshold == 0 {
            problems
                .push("healthy_threshold and unhealthy_threshold must be at least 1".to_owned());
        }
        if let Some(status) = &self.status
            && parse_statuses(status).is_none()
        {
            problems.push(format!(
                "status: {status:?} is not a status or a range like 200-399"
            ));
        }
        if self.port == Some(0) {
            problems.push("port: must be 1-65535".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
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
}
