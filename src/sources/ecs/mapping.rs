//! Whether a task belongs in DNS and, if so, as which instance of which service.
//! Pure: the lifecycle rules and the `[[sources.ecs.services]]` mapping.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::config::{EcsSourceConfig, ServiceRule};
use super::parse::{TaskDefinition, TaskFacts};
use crate::registry::validate;
use crate::registry::{InstanceKey, InstanceSpec};

/// Where a task stands with DNS.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Serve it as this instance.
    In(InstanceKey, InstanceSpec),
    /// Keep it out of DNS, for this reason.
    Out(Out),
}

/// Why a task is not in DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Told to stop, or past RUNNING: it leaves before its containers are gone.
    Stopping,
    /// Not RUNNING yet (PROVISIONING, PENDING, ACTIVATING).
    NotRunning,
    Unhealthy,
    /// Has container health checks that have not reported HEALTHY yet.
    NotHealthyYet,
    /// No rule maps it and it is not a task of an ECS service (or `only_listed`).
    Unmapped,
    /// A rule with `register = false` matched it.
    Hidden,
    /// Its service name or task id is not usable in DNS (see the module docs).
    BadName,
    /// Neither an ENI address nor a specific host binding address.
    NoAddress,
}

impl Out {
    /// Reasons that point at a configuration or platform problem, worth a metric label.
    pub fn problem(self) -> Option<&'static str> {
        match self {
            Out::BadName => Some("bad_name"),
            Out::NoAddress => Some("no_address"),
            _ => None,
        }
    }
}

/// The rules that need no task definition: a task that is stopping, not yet running or
/// unhealthy is out whatever it is.
pub fn lifecycle(facts: &TaskFacts) -> Option<Out> {
    if facts.is_terminal() {
        Some(Out::Stopping)
    } else if facts.last_status != "RUNNING" {
        Some(Out::NotRunning)
    } else if facts.health.as_deref() == Some("UNHEALTHY") {
        Some(Out::Unhealthy)
    } else {
        None
    }
}

/// Decides where `facts` stands, given its task definition and the source's config.
pub fn place(
    facts: &TaskFacts,
    definition: &TaskDefinition,
    config: &EcsSourceConfig,
    region: Option<&str>,
) -> Placement {
    match try_place(facts, definition, config, region) {
        Ok((key, spec)) => Placement::In(key, spec),
        Err(out) => Placement::Out(out),
    }
}

fn try_place(
    facts: &TaskFacts,
    definition: &TaskDefinition,
    config: &EcsSourceConfig,
    region: Option<&str>,
) -> Result<(InstanceKey, InstanceSpec), Out> {
    if let Some(out) = lifecycle(facts) {
        return Err(out);
    }
    let rule = config
        .services
        .iter()
        .find(|rule| matches(rule, facts, definition));
    let require_healthy = rule
        .and_then(|r| r.require_healthy)
        .unwrap_or(config.require_healthy);
    let checked = definition
        .containers
        .iter()
        .any(|c| c.essential && c.health_check);
    if require_healthy && checked && facts.health.as_deref() != Some("HEALTHY") {
        return Err(Out::NotHealthyYet);
    }
    let name = match rule {
        Some(rule) if !rule.register => return Err(Out::Hidden),
        Some(rule) => rule_name(rule, facts, definition).ok_or(Out::Unmapped)?,
        None if config.only_listed => return Err(Out::Unmapped),
        None => facts.ecs_service().ok_or(Out::Unmapped)?,
    };
    let service = validate::service_name(name).map_err(|_| Out::BadName)?;
    let id = facts.task_id();
    validate::instance_id(id).map_err(|_| Out::BadName)?;

    let container = rule
        .and_then(|r| r.container.as_deref())
        .or(config.container.as_deref())
        .or_else(|| {
            let essential = definition.containers.iter().find(|c| c.essential);
            essential.map(|c| c.name.as_str())
        });
    let container_port = definition
        .containers
        .iter()
        .find(|c| Some(c.name.as_str()) == container)
        .and_then(|c| c.first_port);
    let binding = facts
        .bindings
        .iter()
        .filter(|b| Some(b.container.as_str()) == container)
        .find(|b| container_port.is_none_or(|p| p == b.container_port));
    let port = rule
        .and_then(|r| r.port)
        .or(binding.map(|b| b.host_port))
        .or(container_port)
        .filter(|p| *p > 0);
    let bound = binding.and_then(|b| b.bind_ip);
    let ipv4 = facts.ipv4.or(match bound {
        Some(IpAddr::V4(ip)) => Some(ip),
        _ => None,
    });
    let ipv6 = facts.ipv6.or(match bound {
        Some(IpAddr::V6(ip)) => Some(ip),
        _ => None,
    });
    if ipv4.is_none() && ipv6.is_none() {
        return Err(Out::NoAddress);
    }

    let mut attributes = BTreeMap::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            attributes.insert(key.to_owned(), value);
        }
    };
    set("ECS_CLUSTER_NAME", Some(facts.cluster.clone()));
    set("ECS_SERVICE_NAME", facts.ecs_service().map(str::to_owned));
    set(
        "ECS_TASK_DEFINITION_FAMILY",
        Some(facts.family().to_owned()),
    );
    set("AVAILABILITY_ZONE", facts.availability_zone.clone());
    set("REGION", region.map(str::to_owned));
    set("AWS_INSTANCE_IPV4", ipv4.map(|a| a.to_string()));
    set("AWS_INSTANCE_IPV6", ipv6.map(|a| a.to_string()));
    set("AWS_INSTANCE_PORT", port.map(|p| p.to_string()));
    validate::attributes(&attributes).map_err(|_| Out::BadName)?;

    let key = InstanceKey {
        namespace: config.namespace.trim_end_matches('.').to_ascii_lowercase(),
        service,
        id: id.to_owned(),
    };
    let spec = InstanceSpec {
        ipv4,
        ipv6,
        port,
        attributes,
        healthy: true,
        ..InstanceSpec::default()
    };
    Ok((key, spec))
}

fn matches(rule: &ServiceRule, facts: &TaskFacts, definition: &TaskDefinition) -> bool {
    if let Some(service) = &rule.ecs_service {
        return facts.ecs_service() == Some(service.as_str());
    }
    if let Some(family) = &rule.family {
        return facts.family() == family;
    }
    match rule.tag.as_deref().map(|t| t.split_once('=')) {
        Some(Some((key, value))) => definition.tags.get(key).is_some_and(|v| v == value),
        Some(None) => rule
            .tag
            .as_ref()
            .is_some_and(|key| definition.tags.contains_key(key)),
        None => false,
    }
}

fn rule_name<'a>(
    rule: &'a ServiceRule,
    facts: &'a TaskFacts,
    definition: &'a TaskDefinition,
) -> Option<&'a str> {
    if let Some(name) = &rule.name {
        return Some(name);
    }
    if let Some(key) = rule.tag.as_deref().filter(|t| !t.contains('=')) {
        return definition.tags.get(key).map(String::as_str);
    }
    facts
        .ecs_service()
        .or_else(|| rule.family.is_some().then(|| facts.family()))
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
