//! `[etcd]`: the registry on etcd, shared by replicas (docs/etcd.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[etcd]`: with this table, etcd holds everything the APIs own and every replica on the
/// same `prefix` serves it; `data_dir` is not written. Without it, the local log is the
/// store. Read at start only (a reload does not reconnect).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members, `http://host:2379` or `https://host:2379`.
    pub endpoints: Vec<String>,
    /// Where muster's keys live; replicas with the same prefix share one registry.
    pub prefix: String,
    /// etcd user, when the cluster has authentication on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the user's password (its trailing newline ignored); the environment
    /// variable `MUSTER_ETCD_PASSWORD` is used when this is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate that signs the members' certificates; needed for `https://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for clusters that require one (with `key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// How long connecting to a member may take.
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// How long an API write may wait for etcd (commit and this replica applying it)
    /// before it is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// TTL of this replica's member lease: how long after it dies (or loses etcd) its
    /// ECS leadership and its health checks move to another replica. Whole seconds.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// This replica's name among the members (its key `{prefix}members/{id}`); by
    /// default the hostname and a random suffix, new at each start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/muster/".to_owned(),
            username: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(3),
            replica_id: None,
        }
    }
}

/// The shortest timeout accepted: an etcd commit on a healthy cluster takes milliseconds,
/// but one below this fails on any hiccup.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest timeout accepted: a write held longer than this is held by nothing useful.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Member lease TTLs accepted: etcd leases count whole seconds, and a replica that died
/// should not hold its ECS leadership or its checks for more than a minute.
const LEASE_TTL: std::ops::RangeInclusive<u64> = 1..=60;
/// The longest replica id: it is part of a key and of log lines.
const MAX_REPLICA_ID: usize = 128;

impl EtcdConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !cfg!(feature = "etcd") {
            problems.push(
                "etcd: this muster was built without the `etcd` feature; build it with \
                 `cargo build --release --features etcd` (it needs protoc)"
                    .to_owned(),
            );
        }
        if self.endpoints.is_empty() {
            problems.push("etcd.endpoints: at least one endpoint is needed".to_owned());
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let rest = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                problems.push(format!(
                    "etcd.endpoints[{i}]: {endpoint:?} is not http://host:port or https://host:port"
                ));
            }
        }
        let tls = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if tls && self.endpoints.iter().any(|e| e.starts_with("http://")) {
            problems.push("etcd.endpoints: mixes http:// and https://".to_owned());
        }
        if tls && self.ca_file.is_none() {
            problems
                .push("etcd.ca_file: https:// endpoints need the CA that signs them".to_owned());
        }
        if !tls && (self.ca_file.is_some() || self.cert_file.is_some()) {
            problems.push("etcd.ca_file: TLS files need https:// endpoints".to_owned());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push("etcd.cert_file: cert_file and key_file go together".to_owned());
        }
        if self.password_file.is_some() && self.username.is_none() {
            problems.push("etcd.password_file: needs a username".to_owned());
        }
        let valid_prefix = self.prefix.len() >= 2
            && self.prefix.len() <= 200
            && self.prefix.starts_with('/')
            && self.prefix.ends_with('/')
            && self.prefix.bytes().all(|b| b.is_ascii_graphic());
        if !valid_prefix {
            problems.push(format!(
                "etcd.prefix: {:?} must start and end with '/' (2-200 printable characters)",
                self.prefix
            ));
        }
        for (key, value) in [
            ("dial_timeout", self.dial_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&value) {
                problems.push(format!(
                    "etcd.{key}: {} is not from {} to {}",
                    humantime::format_duration(value),
                    humantime::format_duration(MIN_TIMEOUT),
                    humantime::format_duration(MAX_TIMEOUT),
                ));
            }
        }
        let ttl = self.lease_ttl;
        if ttl.subsec_nanos() != 0 || !LEASE_TTL.contains(&ttl.as_secs()) {
            problems.push(format!(
                "etcd.lease_ttl: {} is not a whole number of seconds from 1s to 60s",
                humantime::format_duration(ttl)
            ));
        }
        if let Some(id) = &self.replica_id
            && !valid_replica_id(id)
        {
            problems.push(format!(
                "etcd.replica_id: {id:?} must be 1-{MAX_REPLICA_ID} printable characters without '/'"
            ));
        }
        problems
    }

    /// This replica's id: the configured one, else the hostname and a random suffix
    /// (so that a replica restarted on the same host is a new member at once rather
    /// than waiting for its old lease to expire).
    pub fn replica_id(&self) -> String {
        if let Some(id) = &self.replica_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '/')
            .take(MAX_REPLICA_ID - 9)
            .collect();
        let host = if host.is_empty() { "muster" } else { &host };
        format!("{host}-{:08x}", rand::random::<u32>())
    }

    /// The password: from `password_file`, else `MUSTER_ETCD_PASSWORD` (read by `var`).
    pub fn password(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, std::io::Error> {
        match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)?;
                Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
            }
            None => Ok(var("MUSTER_ETCD_PASSWORD")),
        }
    }
}

fn valid_replica_id(id: &str) -> bool {
    (1..=MAX_REPLICA_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_with_the_feature() {
        let problems = EtcdConfig::default().problems();
        assert_eq!(problems.is_empty(), cfg!(feature = "etcd"), "{problems:?}");
    }

    #[test]
    fn every_problem_is_named() {
        let config = EtcdConfig {
            endpoints: vec!["10.0.0.1:2379".into(), "https://a:2379".into()],
            prefix: "muster".into(),
            password_file: Some("/p".into()),
            cert_file: Some("/c".into()),
            dial_timeout: Duration::from_millis(1),
            request_timeout: Duration::from_secs(600),
            lease_ttl: Duration::from_millis(1500),
            replica_id: Some("a/b".into()),
            ..EtcdConfig::default()
        };
        let problems = config.problems().join("\n");
        for key in [
            "etcd.endpoints[0]",
            "etcd.ca_file",
            "etcd.cert_file",
            "etcd.password_file",
            "etcd.prefix",
            "etcd.dial_timeout",
            "etcd.request_timeout",
            "etcd.lease_ttl",
            "etcd.replica_id",
        ] {
            assert!(problems.contains(key), "{key} missing from {problems}");
        }
    }

    #[test]
    fn the_default_replica_id_is_valid_and_new_each_time() {
        let config = EtcdConfig::default();
        let (a, b) = (config.replica_id(), config.replica_id());
        assert!(valid_replica_id(&a), "{a}");
        assert_ne!(a, b);
        let named = EtcdConfig {
            replica_id: Some("r1".into()),
            ..EtcdConfig::default()
        };
        assert_eq!(named.replica_id(), "r1");
    }
}
