//! Per-namespace settings and per-service answer policy.
//!
//! Policies are data the registry attaches to each service when it is created, chosen by
//! the first glob rule in the namespace's config that matches the service name.

use std::sync::Arc;
use std::time::Duration;

use globset::GlobMatcher;

use super::check::CheckSpec;

/// What DNS answers when no instance of a service is healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllUnhealthy {
    /// Answer with the unhealthy instances (Cloud Map's fail-open).
    ServeAll,
    /// Answer NODATA.
    Empty,
}

impl WhenAllUnhealthy {
    pub fn serves_all(self) -> bool {
        self == Self::ServeAll
    }
}

/// How many records one answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Up to `max_answers` records, a fresh random subset each time.
    Multivalue,
    /// One randomly chosen record.
    Weighted,
}

/// Whom a service's answers go to, by where the client is (docs/dns.md, "Zone-aware
/// answers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// Every served instance, wherever the client is.
    #[default]
    Any,
    /// Only the served instances in the client's zone while at least `min_local` of them
    /// are healthy; all of them otherwise, or when the client's zone is unknown.
    PreferZone,
}

/// The most `min_local` may ask for: more healthy instances than this in one zone is
/// beyond any deployment's need, and the bound keeps the setting a small number.
pub const MAX_MIN_LOCAL: u32 = 10_000;

/// The most attribute keys one service may be subset by: each multiplies what its
/// records cost.
pub const MAX_SUBSET_KEYS: usize = 4;

/// Why `key` cannot subset a service in DNS, if it cannot: it becomes the label
/// `_<key>`, so it must be a label of `a-z 0-9 -` of at most 62 bytes, and not `tcp` or
/// `udp`, whose `_tcp`/`_udp` labels name SRV protocols.
pub fn subset_key_problem(key: &str) -> Option<String> {
    match key {
        _ if !super::validate::is_label_within(key, 62, b"-") => Some(format!(
            "{key:?} is not a label of a-z 0-9 - (at most 62 bytes)"
        )),
        "tcp" | "udp" => Some(format!("{key:?} names an SRV protocol")),
        _ => None,
    }
}

/// The transport label of a service's RFC 2782 name, `_svc._tcp.ns` or `_svc._udp.ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The label as it appears in DNS names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "_tcp",
            Self::Udp => "_udp",
        }
    }
}

/// Which record types DNS serves for a service, each with its TTL (seconds, 0 allowed).
///
/// Services that sources create get A, AAAA and SRV; a service created through the
/// Cloud Map API gets exactly the `DnsRecords` of its `DnsConfig`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordTtls {
    pub a: Option<u32>,
    pub aaaa: Option<u32>,
    pub srv: Option<u32>,
    pub cname: Option<u32>,
}

impl RecordTtls {
    /// A, AAAA and SRV, all with `ttl`.
    pub fn addresses(ttl: u32) -> Self {
        Self {
            a: Some(ttl),
            aaaa: Some(ttl),
            srv: Some(ttl),
            cname: None,
        }
    }

    /// Whether both serve the same record types (whatever their TTLs); Cloud Map lets
    /// `UpdateService` change TTLs only.
    pub fn same_types(&self, other: &Self) -> bool {
        self.a.is_some() == other.a.is_some()
            && self.aaaa.is_some() == other.aaaa.is_some()
            && self.srv.is_some() == other.srv.is_some()
            && self.cname.is_some() == other.cname.is_some()
    }
}

/// How DNS answers for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// The record types served and their TTLs.
    pub records: RecordTtls,
    /// At most this many address or SRV records per answer; 0 means all.
    pub max_answers: usize,
    pub when_all_unhealthy: WhenAllUnhealthy,
    pub routing: Routing,
    pub protocol: Protocol,
    /// The active check of instances that have none of their own.
    pub check: Option<Arc<CheckSpec>>,
    /// How long an API-owned instance may stay unhealthy before it is deregistered,
    /// for instances that do not say.
    pub deregister_after: Option<Duration>,
    pub locality: Locality,
    /// Under `Locality::PreferZone`, how many healthy instances the client's zone needs
    /// to be answered alone (at least 1).
    pub min_local: u32,
    /// Attribute keys whose values name DNS subsets, `<value>._<key>.<svc>.<ns>`.
    pub subsets: Vec<String>,
}

/// One `[[namespaces.services]]` rule: a glob and the policy fields it overrides.
#[derive(Clone, Debug)]
pub struct ServicePolicyRule {
    pub matcher: GlobMatcher,
    pub ttl: Option<u32>,
    pub max_answers: Option<usize>,
    pub when_all_unhealthy: Option<WhenAllUnhealthy>,
    pub routing: Option<Routing>,
    pub protocol: Option<Protocol>,
    pub check: Option<Arc<CheckSpec>>,
    pub deregister_after: Option<Duration>,
    pub locality: Option<Locality>,
    pub min_local: Option<u32>,
    pub subsets: Vec<String>,
}

/// A service's Cloud Map `DnsConfig`: routing and the record types with their TTLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    pub routing: Routing,
    pub records: RecordTtls,
}

/// A namespace's DNS settings: from the config file, or from the Cloud Map API.
#[derive(Clone, Debug)]
pub struct NamespaceSettings {
    /// Lowercase, without the trailing dot: `internal`, `prod.example`.
    pub name: String,
    /// Default TTL of positive answers.
    pub ttl: u32,
    /// SOA minimum, and the TTL of the SOA in negative answers.
    pub negative_ttl: u32,
    /// The host named in the SOA MNAME and the apex NS record (a fully qualified name).
    pub nameserver: String,
    pub rules: Vec<ServicePolicyRule>,
}

impl NamespaceSettings {
    /// The policy a service gets: the namespace defaults, overridden by the first matching
    /// rule, then by the service's Cloud Map `DnsConfig` if it has one (its record types,
    /// TTLs and routing are what the API client asked for).
    pub fn policy_for(&self, service: &str, dns: Option<&DnsConfig>) -> Arc<AnswerPolicy> {
        let mut policy = AnswerPolicy {
            records: RecordTtls::addresses(self.ttl),
            max_answers: 8,
            when_all_unhealthy: WhenAllUnhealthy::ServeAll,
            routing: Routing::Multivalue,
            protocol: Protocol::Tcp,
            check: None,
            deregister_after: None,
            locality: Locality::Any,
            min_local: 1,
            subsets: Vec::new(),
        };
        if let Some(rule) = self.rules.iter().find(|r| r.matcher.is_match(service)) {
            if let Some(ttl) = rule.ttl {
                policy.records = RecordTtls::addresses(ttl);
            }
            policy.max_answers = rule.max_answers.unwrap_or(policy.max_answers);
            policy.when_all_unhealthy =
                rule.when_all_unhealthy.unwrap_or(policy.when_all_unhealthy);
            policy.routing = rule.routing.unwrap_or(policy.routing);
            policy.protocol = rule.protocol.unwrap_or(policy.protocol);
            policy.check = rule.check.clone();
            policy.deregister_after = rule.deregister_after;
            policy.locality = rule.locality.unwrap_or(policy.locality);
            policy.min_local = rule.min_local.unwrap_or(policy.min_local);
            policy.subsets = rule.subsets.clone();
        }
        if let Some(dns) = dns {
            policy.records = dns.records;
            policy.routing = dns.routing;
        }
        Arc::new(policy)
    }
}
