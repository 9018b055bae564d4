//! Why each instance was served or left out of a DNS answer: the answer rules of
//! docs/dns.md applied to what `GET .../services/{svc}` shows, checked against what DNS
//! actually answered. Pure: the query and the REST calls are `dig.rs`'s.
//!
//! The rules, in the order they exclude: draining; unhealthy (unless every instance not
//! draining is unhealthy and the policy is `serve_all`: fail-open); weight 0 while another
//! served instance weighs more; no record of the asked type (no IPv4 for A, no port for
//! SRV, no such named port). An instance the rules serve that the answer lacks was left
//! out by the answer size (`max_answers`, `routing = "weighted"`, one CNAME: drawn by the
//! `weight` attribute when weights differ, else uniformly), or by `locality =
//! "prefer_zone"` when the answer holds only one zone's instances; one the
//! answer has that the rules exclude changed between the query and the lookup.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::read::{address, health, items};

/// What an answer record says about instances.
#[derive(Debug, PartialEq)]
pub enum Answered {
    /// An A or AAAA record's address.
    Address(IpAddr),
    /// An SRV record's target's first label (the instance's DNS label), lower case.
    Target(String),
    /// A CNAME record's target, without the trailing dot, lower case.
    Alias(String),
}

/// The record types the explanation knows; others are only printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    A,
    Aaaa,
    Srv,
    Other,
}

/// Where in a namespace a name points.
#[derive(Debug, PartialEq)]
pub enum Scope {
    /// The namespace apex (SOA, NS).
    Apex,
    /// `svc.ns`, or `_svc._tcp.ns` (with the protocol).
    Service {
        service: String,
        protocol: Option<String>,
    },
    /// `label.svc.ns`: one instance.
    Instance { service: String, label: String },
    /// `_name._tcp.svc.ns`: a named port.
    NamedPort {
        service: String,
        name: String,
        protocol: String,
    },
}

impl Scope {
    pub fn service(&self) -> Option<&str> {
        match self {
            Scope::Apex => None,
            Scope::Service { service, .. }
            | Scope::Instance { service, .. }
            | Scope::NamedPort { service, .. } => Some(service),
        }
    }
}

/// One instance's verdict.
#[derive(Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub id: String,
    pub address: String,
    pub served: bool,
    pub reason: String,
}

/// The namespace `name` is in (the longest that is a suffix) and the labels below it,
/// left to right. Case and a trailing dot do not matter.
pub fn locate<'n>(name: &str, namespaces: &'n [String]) -> Option<(&'n str, Vec<String>)> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    namespaces
        .iter()
        .filter_map(|ns| {
            let ns_lower = ns.trim_end_matches('.').to_ascii_lowercase();
            let rest = if name == ns_lower {
                Some("")
            } else {
                name.strip_suffix(&format!(".{ns_lower}"))
            }?;
            let labels = rest.split('.').filter(|l| !l.is_empty()).map(str::to_owned);
            Some((ns.as_str(), ns_lower.len(), labels.collect()))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(ns, _, labels)| (ns, labels))
}

/// What the labels below a namespace name, or why muster answers no such name.
pub fn scope(labels: &[String]) -> Result<Scope, String> {
    let protocol = |label: &str| match label {
        "_tcp" | "_udp" => Some(label[1..].to_owned()),
        _ => None,
    };
    let underscored = |label: &str| label.strip_prefix('_').map(str::to_owned);
    match labels {
        [] => Ok(Scope::Apex),
        [service] => Ok(Scope::Service {
            service: service.clone(),
            protocol: None,
        }),
        [first, second] => match (underscored(first), protocol(second)) {
            (Some(service), Some(protocol)) => Ok(Scope::Service {
                service,
                protocol: Some(protocol),
            }),
            _ => Ok(Scope::Instance {
                service: second.clone(),
                label: first.clone(),
            }),
        },
        [first, second, service] => match (underscored(first), protocol(second)) {
            (Some(name), Some(protocol)) => Ok(Scope::NamedPort {
                service: service.clone(),
                name,
                protocol,
            }),
            _ => Err("no name muster answers has this shape".to_owned()),
        },
        _ => Err(format!(
            "{} labels below the namespace: no name muster answers is that deep",
            labels.len()
        )),
    }
}

/// Every instance of `service` (the REST view) that the name could answer, with its verdict.
pub fn explain(service: &Value, scope: &Scope, kind: Kind, answered: &[Answered]) -> Vec<Verdict> {
    let policy = &service["policy"];
    let cname = !policy["records"]["cname"].is_null();
    let instances = items(service, "instances");
    let draining = |i: &Value| i["draining"] == true;
    let healthy = |i: &Value| i["healthy"] == true;
    let any_healthy = instances.iter().any(|i| !draining(i) && healthy(i));
    let fail_open = !any_healthy && policy["when_all_unhealthy"] != "empty";
    let served_by_health = |i: &Value| !draining(i) && (healthy(i) || fail_open);
    let weight = |i: &Value| {
        let weight = i["attributes"]["weight"].as_str();
        weight.and_then(|w| w.parse::<u16>().ok()).unwrap_or(1)
    };
    let any_weighted = instances
        .iter()
        .any(|i| served_by_health(i) && weight(i) > 0);

    let excluded = |i: &Value| -> Option<String> {
        if draining(i) {
            return Some("draining".to_owned());
        }
        if !healthy(i) && !fail_open {
            let mut why = health(i);
            if !any_healthy {
                why.push_str("; every instance is, and when_all_unhealthy = empty serves none");
            }
            return Some(why);
        }
        if weight(i) == 0 && any_weighted {
            return Some("weight 0 while other served instances weigh more".to_owned());
        }
        lacks_record(i, scope, kind, cname)
    };
    let servable: Vec<&Value> = instances
        .iter()
        .filter(|i| in_scope(i, scope) && excluded(i).is_none())
        .collect();
    let local = answered_zone(policy, &servable, answered);
    let drawn_from: Vec<u16> = servable
        .iter()
        .filter(|i| local.is_none() || zone(i) == local)
        .map(|i| weight(i))
        .collect();
    // Records are drawn by weight when the served instances' weights differ, else uniformly.
    let draw = Draw {
        servable: drawn_from.len(),
        weighted: drawn_from.windows(2).any(|pair| pair[0] != pair[1]),
    };

    instances
        .iter()
        .filter(|i| in_scope(i, scope))
        .map(|i| {
            let in_answer = answered.iter().any(|a| matches(i, a));
            let (served, reason) = match (in_answer, excluded(i)) {
                (true, None) if !healthy(i) => (
                    true,
                    "unhealthy, but so is every instance: when_all_unhealthy = serve_all \
                     fails open"
                        .to_owned(),
                ),
                (true, None) => (true, health(i)),
                (true, Some(why)) => (
                    true,
                    format!("answered, though the API now says: {why} (it changed since?)"),
                ),
                (false, Some(why)) => (false, why),
                (false, None) => match local {
                    Some(local) if zone(i) != Some(local) => (
                        false,
                        format!(
                            "servable; in {}, and this client was answered from {local} \
                             (locality = prefer_zone)",
                            zone(i).unwrap_or("no zone")
                        ),
                    ),
                    _ => (false, size_limit(policy, &draw, answered)),
                },
            };
            Verdict {
                id: i["id"].as_str().unwrap_or_default().to_owned(),
                address: address(i),
                served,
                reason,
            }
        })
        .collect()
}

/// An instance's availability zone (the attribute Cloud Map and the ECS source set).
fn zone(instance: &Value) -> Option<&str> {
    instance["attributes"]["AVAILABILITY_ZONE"].as_str()
}

/// The zone a `locality = "prefer_zone"` answer was drawn from: the one zone of every
/// answered servable instance, when servable instances outside it exist. Which zone the
/// client is in only the server knows (its `[[zones]]`); the answer shows it.
fn answered_zone<'v>(
    policy: &Value,
    servable: &[&'v Value],
    answered: &[Answered],
) -> Option<&'v str> {
    if policy["locality"] != "prefer_zone" {
        return None;
    }
    let mut zones = servable
        .iter()
        .filter(|i| answered.iter().any(|a| matches(i, a)))
        .map(|i| zone(i));
    let first = zones.next()??;
    if !zones.all(|z| z == Some(first)) {
        return None;
    }
    servable
        .iter()
        .any(|i| zone(i) != Some(first))
        .then_some(first)
}

/// Whether the instance belongs to the name: all of them, or the one whose label it is.
fn in_scope(instance: &Value, scope: &Scope) -> bool {
    match scope {
        Scope::Instance { label, .. } => instance["dns_label"].as_str() == Some(label.as_str()),
        _ => true,
    }
}

/// Why the instance has no record of the asked type at this name, if it has none. A CNAME
/// service answers every type with one instance's CNAME.
fn lacks_record(instance: &Value, scope: &Scope, kind: Kind, cname: bool) -> Option<String> {
    if cname {
        let target = instance["attributes"]["AWS_INSTANCE_CNAME"].as_str();
        return target
            .is_none()
            .then(|| "no AWS_INSTANCE_CNAME attribute".to_owned());
    }
    if let Scope::NamedPort { name, protocol, .. } = scope {
        let port = &instance["ports"][name.as_str()];
        return match port["protocol"].as_str() {
            Some(p) if p == protocol => None,
            _ => Some(format!("no named port {name} over {protocol}")),
        };
    }
    match kind {
        Kind::A if instance["ipv4"].is_null() => Some("no IPv4 address".to_owned()),
        Kind::Aaaa if instance["ipv6"].is_null() => Some("no IPv6 address".to_owned()),
        Kind::Srv if instance["port"].is_null() => Some("no port, so no SRV record".to_owned()),
        Kind::Other => Some("muster answers A, AAAA and SRV at service names".to_owned()),
        _ => None,
    }
}

/// Whether an answer record is this instance's.
fn matches(instance: &Value, answered: &Answered) -> bool {
    match answered {
        Answered::Address(ip) => ["ipv4", "ipv6"].iter().any(|k| {
            let address = instance[*k].as_str().and_then(|a| a.parse::<IpAddr>().ok());
            address == Some(*ip)
        }),
        Answered::Target(label) => instance["dns_label"].as_str() == Some(label.as_str()),
        Answered::Alias(target) => instance["attributes"]["AWS_INSTANCE_CNAME"]
            .as_str()
            .is_some_and(|cname| cname.trim_end_matches('.').eq_ignore_ascii_case(target)),
    }
}

/// How an answer picks among the servable instances.
struct Draw {
    servable: usize,
    weighted: bool,
}

/// Why an instance the rules serve is not in this answer.
fn size_limit(policy: &Value, draw: &Draw, answered: &[Answered]) -> String {
    let how = if draw.weighted {
        "drawn by weight"
    } else {
        "drawn at random"
    };
    if !policy["records"]["cname"].is_null() {
        return format!("servable; a CNAME service answers one instance, {how}");
    }
    if policy["routing"] == "weighted" {
        return format!("servable; routing = weighted answers one record, {how}");
    }
    let max = policy["max_answers"].as_u64().unwrap_or(0);
    let servable = u64::try_from(draw.servable).unwrap_or(u64::MAX);
    if max > 0 && servable > max {
        return format!(
            "servable; over max_answers: {max} of the {servable} servable, {how} per answer"
        );
    }
    if answered.is_empty() {
        return "servable, but the answer has no record (it changed since?)".to_owned();
    }
    "servable, but not in this answer (it changed since?)".to_owned()
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
