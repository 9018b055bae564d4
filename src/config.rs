//! Configuration: TOML parsed raw (unknown keys rejected), then validated as a whole.
//!
//! Every key is documented in `muster.example.toml` at the repository root; a test keeps
//! that file and these types in step. With no file, [`Config::default`] is the embedded
//! default from DESIGN.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use globset::Glob;
use serde::{Deserialize, Serialize};

use crate::registry::{
    CheckSpec, NamespaceSettings, Protocol, Routing, ServicePolicyRule, WhenAllUnhealthy,
};
use crate::sources::ecs::EcsSourceConfig;
use crate::sources::file::FileSourceConfig;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where durable state lives (write-ahead log, snapshots).
    pub data_dir: PathBuf,
    pub dns: DnsConfig,
    pub http: HttpConfig,
    /// The namespaces muster is authoritative for.
    pub namespaces: Vec<NamespaceConfig>,
    pub sources: SourcesConfig,
    pub cloudmap: CloudMapConfig,
    pub forward: ForwardConfig,
    pub transfer: TransferConfig,
}

/// `[forward]`: sidecar mode, where muster answers every name and sends the ones outside
/// its namespaces to upstream resolvers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in order of their recent speed. Empty: names outside the
    /// namespaces are REFUSED, as an authoritative-only server does.
    pub upstreams: Vec<SocketAddr>,
    /// How long one forwarded query may take in all before the client gets SERVFAIL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Forwarded answers cached (0 turns the cache off); the upstream's TTLs apply.
    pub cache_size: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_size: 8192,
        }
    }
}

/// `[transfer]`: zone transfers (AXFR/IXFR) of every DNS namespace to secondaries, and the
/// NOTIFYs that tell them to come.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Networks (CIDR, e.g. `10.0.0.0/8`, or single addresses) allowed to transfer. Empty:
    /// every AXFR/IXFR is REFUSED.
    pub allow: Vec<String>,
    /// Secondaries to NOTIFY after a change (coalesced per zone, retried until answered).
    pub notify: Vec<SocketAddr>,
    /// TSIG keys; when any is set, a transfer must be signed with one of them as well as
    /// come from an allowed network, and NOTIFYs are signed with the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tsig_keys: Vec<TsigKeyConfig>,
}

/// `[[transfer.tsig_keys]]`: a shared secret for TSIG (RFC 8945).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TsigKeyConfig {
    /// The key's name, as the secondary names it (`transfer-key.`).
    pub name: String,
    /// Only `hmac-sha256` is supported.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// The secret, base64 as `tsig-keygen` / `keymgr` print it.
    pub secret: String,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
}

/// `[cloudmap]`: how the Cloud Map API names things in ARNs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudMapConfig {
    /// The region in ARNs (`arn:aws:servicediscovery:REGION:...`).
    pub region: String,
    /// The 12-digit account id in ARNs, `ResourceOwner` and `CreatedByAccount`.
    pub account: String,
}

impl Default for CloudMapConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            account: "123456789012".to_owned(),
        }
    }
}

/// `[dns]`: the DNS listeners.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Largest UDP response sent to EDNS clients (1232 avoids IP fragmentation).
    pub max_udp_payload: u16,
}

/// `[http]`: the REST, Cloud Map and operations API.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

/// `[[namespaces]]`: one zone muster answers for.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The zone's name, e.g. `internal` or `svc.example.com`.
    pub name: String,
    /// Default TTL of positive answers, in seconds (0 allowed).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How long resolvers may cache "no such name" (SOA minimum), in seconds.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: u32,
    /// The name server host in the SOA and NS records; default `ns.<name>.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<String>,
    /// Answer policies for services, by glob on the service name; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceRuleConfig>,
}

/// `[[namespaces.services]]`: policy overrides for services matching `match`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRuleConfig {
    /// A glob on the service name: `web`, `api-*`, `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Address records per answer; 0 means all (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_answers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_all_unhealthy: Option<WhenAllUnhealthy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// An active HTTP or TCP check for the service's instances (see README, "Health
    /// checks"); an instance registered with its own check uses that instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
}

/// `[sources]`: the watchers that feed the registry (the API is always on).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<FileSourceConfig>,
    /// ECS clusters whose service tasks are registered (see `sources::ecs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecs: Vec<EcsSourceConfig>,
}

fn default_ttl() -> u32 {
    5
}

fn default_negative_ttl() -> u32 {
    1
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./muster-data"),
            dns: DnsConfig::default(),
            http: HttpConfig::default(),
            namespaces: vec![NamespaceConfig::named("internal")],
            sources: SourcesConfig::default(),
            cloudmap: CloudMapConfig::default(),
            forward: ForwardConfig::default(),
            transfer: TransferConfig::default(),
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8053))],
            max_udp_payload: 1232,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8054)),
        }
    }
}

impl NamespaceConfig {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ttl: default_ttl(),
            negative_ttl: default_negative_ttl(),
            nameserver: None,
            services: Vec::new(),
        }
    }
}

/// Why a configuration cannot be used; lists every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Environment variables that override keys, for containers: name, key it sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    (
        "MUSTER_DNS_LISTEN",
        "dns.listen (comma-separated addresses)",
    ),
    ("MUSTER_HTTP_LISTEN", "http.listen"),
    ("MUSTER_DATA_DIR", "data_dir"),
];

impl Config {
    /// Reads and parses `path`; does not validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The configuration as TOML that [`Config::parse`] reads back unchanged.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config types serialize to TOML")
    }

    /// Applies the `MUSTER_*` overrides in [`ENV_OVERRIDES`], read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Some(value) = var("MUSTER_DNS_LISTEN") {
            match value
                .split(',')
                .map(|a| SocketAddr::from_str(a.trim()))
                .collect()
            {
                Ok(listen) => self.dns.listen = listen,
                Err(e) => problems.push(format!("MUSTER_DNS_LISTEN={value:?}: {e}")),
            }
        }
        if let Some(value) = var("MUSTER_HTTP_LISTEN") {
            match SocketAddr::from_str(value.trim()) {
                Ok(listen) => self.http.listen = listen,
                Err(e) => problems.push(format!("MUSTER_HTTP_LISTEN={value:?}: {e}")),
            }
        }
        if let Some(value) = var("MUSTER_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Checks everything that parsing cannot, and derives the registry's namespace
    /// settings. Reports all problems at once.
    pub fn validate(&self) -> Result<Vec<NamespaceSettings>, ConfigError> {
        let mut problems = Vec::new();
        if self.dns.listen.is_empty() {
            problems.push("dns.listen: at least one address is needed".to_owned());
        }
        if self.dns.max_udp_payload < 512 {
            problems.push(format!(
                "dns.max_udp_payload: {} is below 512",
                self.dns.max_udp_payload
            ));
        }
        if self.namespaces.is_empty() {
            problems.push("namespaces: at least one namespace is needed".to_owned());
        }
        let mut settings = Vec::new();
        let mut names = Vec::new();
        for (i, namespace) in self.namespaces.iter().enumerate() {
            let name = namespace.normalized_name();
            if names.contains(&name) {
                problems.push(format!(
                    "namespaces[{i}].name: {name:?} is configured twice"
                ));
            }
            names.push(name);
            match namespace.settings() {
                Ok(s) => settings.push(s),
                Err(errors) => {
                    problems.extend(errors.into_iter().map(|e| format!("namespaces[{i}].{e}")))
                }
            }
        }
        let account = &self.cloudmap.account;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("cloudmap.account: {account:?} is not 12 digits"));
        }
        if self.cloudmap.region.is_empty()
            || !self
                .cloudmap
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            problems.push(format!(
                "cloudmap.region: {:?} is not a region name",
                self.cloudmap.region
            ));
        }
        let mut paths: Vec<&Path> = Vec::new();
        for (i, file) in self.sources.file.iter().enumerate() {
            if paths.contains(&file.path.as_path()) {
                problems.push(format!(
                    "sources.file[{i}].path: {} is configured twice",
                    file.path.display()
                ));
            }
            paths.push(&file.path);
        }
        let mut clusters: Vec<&str> = Vec::new();
        for (i, ecs) in self.sources.ecs.iter().enumerate() {
            problems.extend(ecs.problems(&format!("sources.ecs[{i}]")));
            let namespace = ecs.namespace.trim_end_matches('.').to_ascii_lowercase();
            if !names.contains(&namespace) {
                problems.push(format!(
                    "sources.ecs[{i}].namespace: {:?} is not a configured namespace",
                    ecs.namespace
                ));
            }
            for cluster in ecs.cluster_names() {
                if clusters.contains(&cluster) {
                    problems.push(format!(
                        "sources.ecs[{i}].clusters: {cluster:?} is watched by another [[sources.ecs]]"
                    ));
                }
                clusters.push(cluster);
            }
        }
        problems.extend(self.forward.problems());
        problems.extend(self.transfer.problems());
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl ForwardConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(30) {
            problems.push(format!(
                "forward.timeout: {} is outside 100ms..30s",
                humantime::format_duration(self.timeout)
            ));
        }
        problems
    }
}

impl TransferConfig {
    /// The allowed networks, parsed; a bare address is a /32 or /128.
    pub fn allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.allow
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("transfer.allow[{i}]: {text:?} is not an address or CIDR network")
                    })
            })
            .collect()
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(problem) = self.allowed_networks() {
            problems.push(problem);
        }
        for (i, key) in self.tsig_keys.iter().enumerate() {
            if let Err(problem) = key.secret_bytes() {
                problems.push(format!("transfer.tsig_keys[{i}].{problem}"));
            }
            if hickory_proto::rr::Name::from_str(&key.name).is_err() || key.name.is_empty() {
                problems.push(format!(
                    "transfer.tsig_keys[{i}].name: {:?} is not a DNS name",
                    key.name
                ));
            }
            if !key.algorithm.eq_ignore_ascii_case("hmac-sha256") {
                problems.push(format!(
                    "transfer.tsig_keys[{i}].algorithm: {:?} is not supported (hmac-sha256 is)",
                    key.algorithm
                ));
            }
        }
        problems
    }
}

impl TsigKeyConfig {
    /// The decoded secret.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(self.secret.trim()) {
            Ok(bytes) if !bytes.is_empty() => Ok(bytes),
            _ => Err("secret: not base64 of at least one byte".to_owned()),
        }
    }
}

impl NamespaceConfig {
    /// The name as the registry keys it: lowercase, no trailing dot.
    fn normalized_name(&self) -> String {
        self.name.trim_end_matches('.').to_ascii_lowercase()
    }

    fn settings(&self) -> Result<NamespaceSettings, Vec<String>> {
        let mut problems = Vec::new();
        let name = self.normalized_name();
        if name.is_empty()
            || name.len() > 253
            || !name.split('.').all(crate::registry::validate::is_label)
        {
            problems.push(format!(
                "name: {:?} is not a DNS name of labels a-z 0-9 _ -",
                self.name
            ));
        }
        let nameserver = match &self.nameserver {
            Some(host) if hickory_proto::rr::Name::from_str(host).is_err() => {
                problems.push(format!("nameserver: {host:?} is not a DNS name"));
                String::new()
            }
            Some(host) => format!("{}.", host.trim_end_matches('.')),
            None => format!("ns.{name}."),
        };
        let mut rules = Vec::new();
        for (i, rule) in self.services.iter().enumerate() {
            if let Some(Err(problem)) = rule.check.as_ref().map(CheckSpec::validate) {
                problems.push(format!("services[{i}].check: {problem}"));
            }
            match Glob::new(&rule.pattern) {
                Ok(glob) => rules.push(ServicePolicyRule {
                    matcher: glob.compile_matcher(),
                    ttl: rule.ttl,
                    max_answers: rule.max_answers,
                    when_all_unhealthy: rule.when_all_unhealthy,
                    routing: rule.routing,
                    protocol: rule.protocol,
                    check: rule.check.clone().map(Arc::new),
                }),
                Err(e) => problems.push(format!("services[{i}].match: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NamespaceSettings {
            name,
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            nameserver,
            rules,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
