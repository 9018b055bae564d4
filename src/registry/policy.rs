//! Per-namespace settings and per-service answer policy.
//!
//! Policies are data the registry attaches to each service when it is created, chosen by
//! the first glob rule in the namespace's config that matches the service name.

use std::sync::Arc;

use globset::GlobMatcher;

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

/// How DNS answers for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// TTL of positive answers, in seconds; 0 is allowed.
    pub ttl: u32,
    /// At most this many address or SRV records per answer; 0 means all.
    pub max_answers: usize,
    pub when_all_unhealthy: WhenAllUnhealthy,
    pub routing: Routing,
    pub protocol: Protocol,
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
}

/// A namespace's DNS settings, fixed for the life of the process.
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
    /// The policy a service gets: the namespace defaults overridden by the first matching
    /// rule.
    pub fn policy_for(&self, service: &str) -> Arc<AnswerPolicy> {
        let mut policy = AnswerPolicy {
            ttl: self.ttl,
            max_answers: 8,
            when_all_unhealthy: WhenAllUnhealthy::ServeAll,
            routing: Routing::Multivalue,
            protocol: Protocol::Tcp,
        };
        if let Some(rule) = self.rules.iter().find(|r| r.matcher.is_match(service)) {
            policy.ttl = rule.ttl.unwrap_or(policy.ttl);
            policy.max_answers = rule.max_answers.unwrap_or(policy.max_answers);
            policy.when_all_unhealthy =
                rule.when_all_unhealthy.unwrap_or(policy.when_all_unhealthy);
            policy.routing = rule.routing.unwrap_or(policy.routing);
            policy.protocol = rule.protocol.unwrap_or(policy.protocol);
        }
        Arc::new(policy)
    }
}
