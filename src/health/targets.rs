//! Where checks may go and how often: `[health] allow`, `deny` and `min_interval`.
//!
//! A check's target and its result (`check_reason`) are visible to whoever registered
//! it, so an unbounded check is a port scanner of everything muster can reach. The REST
//! API refuses a registration whose check would be denied ([`CheckLimits::admit`]); the
//! scheduler does not probe a denied target from any other source and says why
//! ([`CheckLimits::permits`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{Config, HealthSettings};
use crate::registry::{AnswerPolicy, CheckSpec, FieldError, InstanceSpec};

/// `[health]`, parsed: the networks checks may and may not target, the interval floor.
#[derive(Clone, Debug)]
pub struct CheckLimits {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    min_interval: Duration,
}

impl Default for CheckLimits {
    /// The defaults of `[health]`.
    fn default() -> Self {
        let settings = Config::default().settings();
        Self::new(&settings.expect("the default configuration is valid").health)
    }
}

/// A check target in a denied network: why the check may not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is in [health] deny {network}; add it to [health] allow to check it")]
pub struct Denied {
    ip: IpAddr,
    network: IpNet,
}

impl CheckLimits {
    /// The limits of a validated `[health]` table.
    pub fn new(settings: &HealthSettings) -> Self {
        Self {
            allow: settings.allow.clone(),
            deny: settings.deny.clone(),
            min_interval: settings.min_interval,
        }
    }

    /// Whether a check may target `ip`: the most specific network of `allow` and `deny`
    /// that holds it decides (`allow` on a tie: it is the list of exceptions), and an
    /// address in neither is permitted. `Err` says which denied network holds it.
    pub fn permits(&self, ip: IpAddr) -> Result<(), Denied> {
        // `::ffff:127.0.0.1` reaches 127.0.0.1: judge it as the IPv4 address it is.
        let ip = ip.to_canonical();
        let closest = |networks: &[IpNet]| {
            networks
                .iter()
                .filter(|n| n.contains(&ip))
                .max_by_key(|n| n.prefix_len())
                .copied()
        };
        match (closest(&self.deny), closest(&self.allow)) {
            (Some(network), allow)
                if allow.is_none_or(|a| a.prefix_len() < network.prefix_len()) =>
            {
                Err(Denied { ip, network })
            }
            _ => Ok(()),
        }
    }

    /// The time between runs of `check`: its interval, within 100 ms to 1 h and at least
    /// `min_interval`, whatever the spec says (it may come from an older log).
    pub fn period(&self, check: &CheckSpec) -> Duration {
        check.period().max(self.min_interval)
    }

    /// Whether the REST API may register `spec` into a service with `policy`: its own
    /// check no more often than `min_interval`, and the check that applies (its own, or
    /// the policy's) aimed at a permitted address. The error names the field at fault.
    pub fn admit(&self, spec: &InstanceSpec, policy: &AnswerPolicy) -> Result<(), FieldError> {
        if let Some(check) = spec.check()
            && check.interval < self.min_interval
        {
            return Err(FieldError::new(
                "check.interval",
                format!(
                    "{} is below [health] min_interval {}",
                    humantime::format_duration(check.interval),
                    humantime::format_duration(self.min_interval)
                ),
            ));
        }
        let Some((_, target)) = check_target(spec, policy) else {
            return Ok(());
        };
        self.permits(target.ip()).map_err(|why| {
            let field = if spec.ipv4.is_some() { "ipv4" } else { "ipv6" };
            FieldError::new(field, format!("cannot be health-checked: {why}"))
        })
    }
}

/// The check an instance gets and where it goes, if it has one and an address and port
/// to probe: its own check, else its service's; the IPv4 address first; the check's port,
/// else the instance's.
pub fn check_target<'a>(
    spec: &'a InstanceSpec,
    policy: &'a AnswerPolicy,
) -> Option<(&'a CheckSpec, SocketAddr)> {
    let check = spec.check().or(policy.check.as_deref())?;
    let ip: IpAddr = spec.ipv4.map(Into::into).or(spec.ipv6.map(Into::into))?;
    Some((check, SocketAddr::new(ip, check.port.or(spec.port)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(allow: &[&str], deny: &[&str]) -> CheckLimits {
        let networks = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect();
        CheckLimits::new(&HealthSettings {
            allow: networks(allow),
            deny: networks(deny),
            min_interval: Duration::from_secs(1),
        })
    }

    fn permitted(limits: &CheckLimits, ip: &str) -> bool {
        limits.permits(ip.parse().unwrap()).is_ok()
    }

    #[test]
    fn the_defaults_deny_the_host_and_the_metadata_services() {
        let limits = CheckLimits::default();
        for ip in [
            "127.0.0.1",
            "127.3.4.5",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ] {
            assert!(!permitted(&limits, ip), "{ip} is permitted");
        }
        for ip in [
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "2001:db8::1",
            "fd00::1",
        ] {
            assert!(permitted(&limits, ip), "{ip} is denied");
        }
        let why = limits
            .permits("169.254.169.254".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(why.contains("169.254.0.0/16"), "{why}");
    }

    #[test]
    fn the_most_specific_network_decides_and_allow_wins_a_tie() {
        let limits = limits(
            &["127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"],
            &[
                "0.0.0.0/0",
                "127.0.0.53/32",
                "192.168.0.0/16",
                "192.168.1.0/24",
            ],
        );
        assert!(permitted(&limits, "127.0.0.10"));
        assert!(!permitted(&limits, "127.0.0.53"));
        assert!(permitted(&limits, "10.1.2.3"));
        assert!(!permitted(&limits, "172.16.0.1"));
        assert!(permitted(&limits, "192.168.2.1"), "a tie is allowed");
        assert!(!permitted(&limits, "192.168.1.1"));
        assert!(permitted(&limits, "2001:db8::1"), "no network holds it");
    }
}
