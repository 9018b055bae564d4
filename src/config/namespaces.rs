//! `[[namespaces]]`: the zones muster is authoritative for, and their service rules.

use std::str::FromStr;
use std::sync::Arc;

use globset::Glob;
use serde::{Deserialize, Serialize};

use crate::registry::{
    CheckSpec, Locality, MAX_MIN_LOCAL, MAX_SUBSET_KEYS, NamespaceSettings, Protocol, Routing,
    ServicePolicyRule, WhenAllUnhealthy, deregister_after_bounds, subset_key_problem,
};

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
    /// An active HTTP or TCP check for the service's instances (see docs/health.md, "Health
    /// checks"); an instance registered with its own check uses that instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
    /// API-owned instances unhealthy this long are deregistered (`"10m"`; 1 s to 30
    /// days); an instance's own `deregister_after` wins.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub deregister_after: Option<std::time::Duration>,
    /// `"prefer_zone"`: answer clients with the instances in their own zone (`[[zones]]`,
    /// Client Subnet) while enough are healthy there; `"any"` (default): every instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// Under `"prefer_zone"`, the healthy instances a zone needs to be answered alone
    /// (default 1, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_local: Option<u32>,
    /// Attribute keys whose values become DNS subsets: `subsets = ["version"]` answers
    /// `v2._version.<svc>.<ns>` with the instances whose `version` is `v2` (at most 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<String>,
}

fn default_ttl() -> u32 {
    5
}

fn default_negative_ttl() -> u32 {
    1
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

    /// The name as the registry keys it: lowercase, no trailing dot.
    pub(super) fn normalized_name(&self) -> String {
        self.name.trim_end_matches('.').to_ascii_lowercase()
    }

    pub(super) fn settings(&self) -> Result<NamespaceSettings, Vec<String>> {
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
                problems.push(format!("services[{i}].{problem}"));
            }
            let bounds = rule.deregister_after.map(deregister_after_bounds);
            if let Some(Err(problem)) = bounds {
                problems.push(format!("services[{i}].{problem}"));
            }
            if rule
                .min_local
                .is_some_and(|n| !(1..=MAX_MIN_LOCAL).contains(&n))
            {
                problems.push(format!(
                    "services[{i}].min_local: must be 1 to {MAX_MIN_LOCAL}"
                ));
            }
            if rule.subsets.len() > MAX_SUBSET_KEYS {
                problems.push(format!(
                    "services[{i}].subsets: at most {MAX_SUBSET_KEYS} keys"
                ));
            }
            for (k, key) in rule.subsets.iter().enumerate() {
                if let Some(problem) = subset_key_problem(key) {
                    problems.push(format!("services[{i}].subsets[{k}]: {problem}"));
                }
                if rule.subsets[..k].contains(key) {
                    problems.push(format!(
                        "services[{i}].subsets[{k}]: {key:?} is given twice"
                    ));
                }
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
                    deregister_after: rule.deregister_after,
                    locality: rule.locality,
                    min_local: rule.min_local,
                    subsets: rule.subsets.clone(),
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
