//! Whether a task belongs in DNS and, if so, as which instance of which service, with
//! which address and ports. Pure: the lifecycle rules, the `[[sources.ecs.services]]`
//! mapping, and the network modes (the caller looks up container instances).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::{EcsSourceConfig, ServiceRule};
use super::parse::{Host, NetworkMode, PortMapping, TaskDefinition, TaskFacts};
use crate::registry::validate::{self, MAX_NAMED_PORTS};
use crate::registry::{InstanceKey, InstanceSpec, NamedPort, SpecExtras, ZONE_ATTRIBUTE};

/// Where a task stands with DNS.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Serve it as this instance (the spec boxed: it is large beside an `Out`).
    In(InstanceKey, Box<InstanceSpec>),
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
    /// No ENI address, no specific host binding address, and no container instance
    /// address (not looked up, or not found).
    NoAddress,
}

impl Out {
    /// The labels [`Out::problem`] gives.
    pub const PROBLEMS: [&'static str; 2] = ["bad_name", "no_address"];

    /// Reasons that point at a configuration or platform problem, worth a metric label.
    pub fn problem(self) -> Option<&'static str> {
        match self {
            Out::BadName => Some(Self::PROBLEMS[0]),
            Out::NoAddress => Some(Self::PROBLEMS[1]),
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

/// The container instance to look up when `placement`, made without it, left the task
/// out for want of an address: bridge and host networking tasks of the EC2 launch type
/// that would otherwise enter DNS.
pub fn host_needed<'f>(
    facts: &'f TaskFacts,
    definition: &TaskDefinition,
    placement: &Placement,
) -> Option<&'f str> {
    let on_host = matches!(
        definition.network_mode,
        NetworkMode::Bridge | NetworkMode::Host
    );
    let wanted = on_host && *placement == Placement::Out(Out::NoAddress);
    facts.container_instance_arn.as_deref().filter(|_| wanted)
}

/// Decides where `facts` stands, given its task definition, the source's config and,
/// for tasks on a container instance's network, that instance's [`Host`].
pub fn place(
    facts: &TaskFacts,
    definition: &TaskDefinition,
    config: &EcsSourceConfig,
    region: Option<&str>,
    host: Option<&Host>,
) -> Placement {
    match try_place(facts, definition, config, region, host) {
        Ok((key, spec)) => Placement::In(key, Box::new(spec)),
        Err(out) => Placement::Out(out),
    }
}

fn try_place(
    facts: &TaskFacts,
    definition: &TaskDefinition,
    config: &EcsSourceConfig,
    region: Option<&str>,
    host: Option<&Host>,
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

    let endpoint = endpoint(facts, definition, config, rule, host)?;
    let attributes = attributes(facts, region, &endpoint)?;
    let key = InstanceKey {
        namespace: config.namespace.trim_end_matches('.').to_ascii_lowercase(),
        service,
        id: id.to_owned(),
    };
    let spec = InstanceSpec {
        ipv4: endpoint.ipv4,
        ipv6: endpoint.ipv6,
        port: endpoint.port,
        attributes,
        healthy: true,
        extras: SpecExtras {
            ports: named_ports(facts, definition),
            ..SpecExtras::default()
        }
        .into(),
    };
    Ok((key, spec))
}

/// Where a task is reached.
struct Endpoint<'a> {
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<u16>,
    /// The container instance, for bridge and host tasks.
    host: Option<&'a Host>,
}

/// The task's address and port: of the rule's (or the source's) container, else its
/// first essential container; the port from the rule, else the host port bound for the
/// container's first mapping, else a fixed one.
fn endpoint<'a>(
    facts: &TaskFacts,
    definition: &TaskDefinition,
    config: &EcsSourceConfig,
    rule: Option<&ServiceRule>,
    host: Option<&'a Host>,
) -> Result<Endpoint<'a>, Out> {
    let container = rule
        .and_then(|r| r.container.as_deref())
        .or(config.container.as_deref())
        .or_else(|| {
            let essential = definition.containers.iter().find(|c| c.essential);
            essential.map(|c| c.name.as_str())
        });
    let mode = definition.network_mode;
    let first = definition
        .containers
        .iter()
        .find(|c| Some(c.name.as_str()) == container)
        .and_then(|c| c.ports.first());
    let binding = facts
        .bindings
        .iter()
        .filter(|b| Some(b.container.as_str()) == container)
        .find(|b| first.is_none_or(|p| p.container_port == b.container_port));
    let port = rule
        .and_then(|r| r.port)
        .or(binding.map(|b| b.host_port))
        .or_else(|| first.and_then(|m| fixed_port(mode, m)));
    let host = host.filter(|_| matches!(mode, NetworkMode::Bridge | NetworkMode::Host));
    let (ipv4, ipv6) = address(facts, binding.and_then(|b| b.bind_ip), host);
    if ipv4.is_none() && ipv6.is_none() {
        return Err(Out::NoAddress);
    }
    Ok(Endpoint {
        ipv4,
        ipv6,
        port,
        host,
    })
}

/// The attributes Cloud Map's ECS integration sets, and where the task is reached.
fn attributes(
    facts: &TaskFacts,
    region: Option<&str>,
    endpoint: &Endpoint,
) -> Result<BTreeMap<String, String>, Out> {
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
    set(ZONE_ATTRIBUTE, facts.availability_zone.clone());
    set("REGION", region.map(str::to_owned));
    set("AWS_INSTANCE_IPV4", endpoint.ipv4.map(|a| a.to_string()));
    set("AWS_INSTANCE_IPV6", endpoint.ipv6.map(|a| a.to_string()));
    set("AWS_INSTANCE_PORT", endpoint.port.map(|p| p.to_string()));
    set(
        "EC2_INSTANCE_ID",
        endpoint.host.map(|h| h.ec2_instance_id.clone()),
    );
    validate::attributes(&attributes).map_err(|_| Out::BadName)?;
    Ok(attributes)
}

/// The task's own (ENI) addresses; else a specific address its binding is bound to;
/// else its container instance's.
fn address(
    facts: &TaskFacts,
    bound: Option<IpAddr>,
    host: Option<&Host>,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    match (bound, host) {
        _ if facts.ipv4.is_some() || facts.ipv6.is_some() => (facts.ipv4, facts.ipv6),
        (Some(IpAddr::V4(ip)), _) => (Some(ip), None),
        (Some(IpAddr::V6(ip)), _) => (None, Some(ip)),
        (None, Some(host)) => (host.ipv4, host.ipv6),
        (None, None) => (None, None),
    }
}

/// The port a mapping is reached on without a reported binding: its container port
/// where that is the host's (awsvpc, host), its fixed host port in bridge mode (a
/// dynamic one is only known from the task's bindings).
fn fixed_port(mode: NetworkMode, mapping: &PortMapping) -> Option<u16> {
    match mode {
        NetworkMode::Bridge => mapping.host_port,
        NetworkMode::Awsvpc | NetworkMode::Host | NetworkMode::None => Some(mapping.container_port),
    }
}

/// Every named port mapping of the task definition (ECS keeps names unique in it),
/// reached as [`fixed_port`] says or on the host port bound for it; the first
/// [`MAX_NAMED_PORTS`]. A name that is not a DNS label, or a dynamic port not bound
/// yet, is left out.
fn named_ports(facts: &TaskFacts, definition: &TaskDefinition) -> BTreeMap<String, NamedPort> {
    let mut ports = BTreeMap::new();
    for container in &definition.containers {
        for mapping in &container.ports {
            let Some(name) = mapping.name.as_deref() else {
                continue;
            };
            if ports.len() == MAX_NAMED_PORTS || validate::port_name(name).is_err() {
                continue;
            }
            let bound = facts.bindings.iter().find(|b| {
                b.container == container.name
                    && b.container_port == mapping.container_port
                    && b.protocol == mapping.protocol
            });
            let port = bound
                .map(|b| b.host_port)
                .or_else(|| fixed_port(definition.network_mode, mapping));
            if let Some(port) = port {
                let protocol = mapping.protocol;
                ports
                    .entry(name.to_owned())
                    .or_insert(NamedPort { port, protocol });
            }
        }
    }
    ports
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
pub(super) mod tests;
