//! `[health]`: bounds on the active checks registrations may ask for.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::registry::check::INTERVAL;

/// `[health]`: where and how often muster may check instances.
///
/// A check can point at any address and port and its result is readable back
/// (`check_reason`), so without bounds the API is a port scanner of whatever muster can
/// reach, the instance metadata service included. A target is checked when the most
/// specific network of `allow` and `deny` that holds it is an `allow` one (`allow` wins a
/// tie), or when none holds it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Networks (CIDR, or single addresses) checks may target even inside a denied
    /// network, e.g. `["127.0.0.1/32"]` for checks of local processes.
    pub allow: Vec<String>,
    /// Networks checks may not target. Default: loopback, link-local (the instance
    /// metadata service 169.254.169.254 and ECS's 169.254.170.2 among them), AWS's IPv6
    /// metadata address, unspecified, broadcast and multicast.
    pub deny: Vec<String>,
    /// The shortest check interval a registration or rule may ask for (at least 100 ms).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
}

/// Where checks must not go unless allowed: addresses that reach muster's own host or the
/// cloud's metadata services, and addresses that are not one host.
const DEFAULT_DENY: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "0.0.0.0/8",
    "::/128",
    "255.255.255.255/32",
    "224.0.0.0/4",
    "ff00::/8",
];

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: DEFAULT_DENY.iter().map(|n| n.to_string()).collect(),
            min_interval: *INTERVAL.start(),
        }
    }
}

impl HealthConfig {
    /// The typed `[health]`, with every problem pushed to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) -> HealthSettings {
        let mut networks = |key: &str, list: &[String]| {
            let parsed = super::dns::networks(&format!("health.{key}"), list, problems);
            parsed.into_iter().map(|network| network.trunc()).collect()
        };
        let settings = HealthSettings {
            allow: networks("allow", &self.allow),
            deny: networks("deny", &self.deny),
            min_interval: self.min_interval,
        };
        if !INTERVAL.contains(&self.min_interval) {
            problems.push(format!(
                "health.min_interval: {} is not from 100ms to 1h",
                humantime::format_duration(self.min_interval)
            ));
        }
        settings
    }
}

/// `[health]`, validated: what `health::CheckLimits` is built from.
#[derive(Clone, Debug)]
pub struct HealthSettings {
    /// `allow`, each network truncated to its prefix (`10.1.2.3/8` is `10.0.0.0/8`).
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub min_interval: Duration,
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text).unwrap().settings() {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn every_health_problem_is_named() {
        let found = problems(
            r#"
            [health]
            allow = ["10.0.0.0/40"]
            deny = ["localhost"]
            min_interval = "10ms"
            "#,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("health.allow[0]"), "{found:?}");
        assert!(found[1].starts_with("health.deny[0]"), "{found:?}");
        assert!(found[2].starts_with("health.min_interval"), "{found:?}");
    }

    #[test]
    fn a_rule_check_respects_min_interval() {
        let found = problems(
            r#"
            [health]
            min_interval = "1s"
            [[namespaces]]
            name = "internal"
            [[namespaces.services]]
            match = "*"
            check = { tcp = true, interval = "500ms" }
            "#,
        );
        assert_eq!(
            found,
            ["namespaces[0].services[0].check.interval: below health.min_interval"]
        );
        let found = problems(
            r#"
            [[namespaces]]
            name = "internal"
            [[namespaces.services]]
            match = "*"
            check = { tcp = true, interval = "100y" }
            "#,
        );
        assert!(
            found[0].starts_with("namespaces[0].services[0].check.interval: 100years"),
            "{found:?}"
        );
    }
}
