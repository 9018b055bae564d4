//! What muster needs to know about a task, read from an EventBridge "ECS Task State
//! Change" message or from an ECS `DescribeTasks` answer, about a task definition, and
//! about the EC2 instance behind a container instance. Pure: no I/O, no clock; unknown
//! fields are ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use serde::Deserialize;

use super::config::cluster_name;
use crate::registry::Protocol;

/// The `detail-type` of the events this source applies.
pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";

/// One task's state, as far as DNS cares.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskFacts {
    pub task_arn: String,
    /// The cluster's name (not its ARN).
    pub cluster: String,
    /// `service:<name>` for tasks an ECS service started, `family:<name>` otherwise.
    pub group: Option<String>,
    pub task_definition_arn: String,
    pub last_status: String,
    pub desired_status: String,
    /// HEALTHY, UNHEALTHY or UNKNOWN; absent where ECS (or moto) leaves it out.
    pub health: Option<String>,
    /// ECS bumps this on every change of the task; absent or 0 means unknown.
    pub version: Option<u64>,
    /// When ECS last changed the task (events only).
    pub updated_at: Option<SystemTime>,
    pub availability_zone: Option<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Host port bindings (bridge networking; ECS reports none for awsvpc and host).
    pub bindings: Vec<Binding>,
    /// The container instance it runs on (EC2 launch type): whose address bridge and
    /// host networking tasks have.
    pub container_instance_arn: Option<String>,
}

/// One `networkBindings` entry of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub container: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
    /// The bound host address; None for a wildcard (`0.0.0.0`, `::`).
    pub bind_ip: Option<IpAddr>,
}

/// A queue message, read.
#[derive(Debug)]
pub enum Message {
    /// A task state change: the task, and when EventBridge saw it.
    Task {
        facts: Box<TaskFacts>,
        time: Option<SystemTime>,
    },
    /// A well-formed event of another kind (container instance changes and the like).
    Other { detail_type: String },
}

/// What a task definition contributes: its family, network mode, ports, health checks
/// and tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskDefinition {
    pub family: String,
    pub network_mode: NetworkMode,
    pub containers: Vec<ContainerDefinition>,
    pub tags: BTreeMap<String, String>,
}

/// How a task's containers reach the network, which decides where its address and
/// ports come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own ENI: the ENI's address, container ports.
    Awsvpc,
    /// Docker's bridge (ECS's default on EC2, and Windows' `default`/NAT): the container
    /// instance's address, the host ports Docker bound.
    #[default]
    Bridge,
    /// The container instance's network stack: its address, host port = container port.
    Host,
    /// No network: never in DNS.
    None,
}

impl NetworkMode {
    fn parse(mode: Option<&str>) -> Self {
        match mode {
            Some("awsvpc") => Self::Awsvpc,
            Some("host") => Self::Host,
            Some("none") => Self::None,
            _ => Self::Bridge,
        }
    }
}

/// One container definition of a task definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDefinition {
    pub name: String,
    pub essential: bool,
    /// Its `portMappings` with a single port (ranges are left out), in order.
    pub ports: Vec<PortMapping>,
    pub health_check: bool,
}

/// One `portMappings` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// A fixed host port; None when Docker picks one (0 or unset in bridge mode).
    pub host_port: Option<u16>,
    pub protocol: Protocol,
    /// Its name (ECS Service Connect's), as given: checked where it becomes a DNS name.
    pub name: Option<String>,
}

/// The EC2 instance behind a container instance, as far as DNS cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub ec2_instance_id: String,
    /// `PrivateIpAddress`: what Cloud Map registers for bridge and host tasks.
    pub ipv4: Option<Ipv4Addr>,
    /// The primary IPv6 address, else the primary interface's first.
    pub ipv6: Option<Ipv6Addr>,
}

impl TaskFacts {
    /// The task id, the last segment of the ARN; it is the instance id.
    pub fn task_id(&self) -> &str {
        self.task_arn.rsplit('/').next().unwrap_or(&self.task_arn)
    }

    /// The ECS service name, for tasks a service started.
    pub fn ecs_service(&self) -> Option<&str> {
        self.group.as_deref()?.strip_prefix("service:")
    }

    /// The family, from `.../task-definition/<family>:<revision>`.
    pub fn family(&self) -> &str {
        let tail = self.task_definition_arn.rsplit('/').next().unwrap_or("");
        tail.rsplit_once(':').map_or(tail, |(family, _)| family)
    }

    /// ECS will never serve this task again: it was told to stop, or it is stopping.
    /// Both are one-way in ECS, which is what makes a stop intent safe to act on.
    pub fn is_terminal(&self) -> bool {
        self.desired_status != "RUNNING"
            || matches!(
                self.last_status.as_str(),
                "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" | "DELETED"
            )
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MalformedMessage(String);

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    time: Option<String>,
    detail: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    task_arn: String,
    cluster_arn: String,
    group: Option<String>,
    task_definition_arn: String,
    last_status: String,
    desired_status: String,
    health_status: Option<String>,
    version: Option<u64>,
    updated_at: Option<String>,
    availability_zone: Option<String>,
    container_instance_arn: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    details: Vec<NameValue>,
}

#[derive(Deserialize)]
struct NameValue {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: Option<String>,
    #[serde(default)]
    network_interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    network_bindings: Vec<NetworkBinding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkInterface {
    private_ipv4_address: Option<String>,
    ipv6_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkBinding {
    bind_i_p: Option<String>,
    container_port: Option<u16>,
    host_port: Option<u16>,
    protocol: Option<String>,
}

/// Reads one SQS message body: an EventBridge envelope with the task in `detail`.
pub fn parse_message(body: &str) -> Result<Message, MalformedMessage> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| MalformedMessage(format!("not an event: {e}")))?;
    if envelope.detail_type != TASK_STATE_CHANGE {
        return Ok(Message::Other {
            detail_type: envelope.detail_type,
        });
    }
    let detail: Detail = serde_json::from_value(envelope.detail)
        .map_err(|e| MalformedMessage(format!("detail: {e}")))?;
    let time = envelope.time.as_deref().and_then(timestamp);
    Ok(Message::Task {
        facts: Box::new(detail.into_facts()),
        time,
    })
}

impl Detail {
    fn into_facts(self) -> TaskFacts {
        let eni = self
            .attachments
            .iter()
            .filter(|a| is_eni(a.kind.as_deref()));
        let detail = |wanted: &str| {
            eni.clone()
                .flat_map(|a| &a.details)
                .find(|d| d.name.as_deref() == Some(wanted))
                .and_then(|d| d.value.as_deref())
        };
        let interfaces = || self.containers.iter().flat_map(|c| &c.network_interfaces);
        let ipv4 = detail("privateIPv4Address")
            .or_else(|| interfaces().find_map(|n| n.private_ipv4_address.as_deref()))
            .and_then(|a| a.parse().ok());
        let ipv6 = detail("ipv6Address")
            .or_else(|| interfaces().find_map(|n| n.ipv6_address.as_deref()))
            .and_then(|a| a.parse().ok());
        let bindings = self
            .containers
            .iter()
            .flat_map(|c| {
                c.network_bindings.iter().filter_map(|b| {
                    binding(
                        c.name.as_deref(),
                        b.container_port,
                        b.host_port,
                        b.protocol.as_deref(),
                        b.bind_i_p.as_deref(),
                    )
                })
            })
            .collect();
        TaskFacts {
            cluster: cluster_name(&self.cluster_arn).to_owned(),
            task_arn: self.task_arn,
            group: self.group,
            task_definition_arn: self.task_definition_arn,
            last_status: self.last_status,
            desired_status: self.desired_status,
            health: self.health_status,
            version: self.version.filter(|v| *v > 0),
            updated_at: self.updated_at.as_deref().and_then(timestamp),
            availability_zone: self.availability_zone,
            ipv4,
            ipv6,
            bindings,
            container_instance_arn: self.container_instance_arn,
        }
    }
}

/// `eni` in events, `ElasticNetworkInterface` in the API.
fn is_eni(kind: Option<&str>) -> bool {
    matches!(kind, Some("eni" | "ElasticNetworkInterface"))
}

fn binding(
    container: Option<&str>,
    container_port: Option<u16>,
    host_port: Option<u16>,
    protocol: Option<&str>,
    bind_ip: Option<&str>,
) -> Option<Binding> {
    let bind_ip = bind_ip
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified());
    Some(Binding {
        container: container?.to_owned(),
        container_port: container_port?,
        host_port: host_port.filter(|p| *p > 0)?,
        protocol: protocol_of(protocol),
        bind_ip,
    })
}

/// `udp` is UDP; `tcp`, absent and anything else is TCP (ECS's default).
fn protocol_of(protocol: Option<&str>) -> Protocol {
    match protocol {
        Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

fn timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// Reads a task from a `DescribeTasks` answer; None if it lacks what identifies it.
pub fn facts_from_api(task: &aws_sdk_ecs::types::Task) -> Option<TaskFacts> {
    let eni = task
        .attachments()
        .iter()
        .filter(|a| is_eni(a.r#type()))
        .flat_map(|a| a.details());
    let detail = |wanted: &str| {
        eni.clone()
            .find(|d| d.name() == Some(wanted))
            .and_then(|d| d.value())
    };
    let interfaces = || {
        task.containers()
            .iter()
            .flat_map(|c| c.network_interfaces())
    };
    let ipv4 = detail("privateIPv4Address")
        .or_else(|| interfaces().find_map(|n| n.private_ipv4_address()))
        .and_then(|a| a.parse().ok());
    let ipv6 = detail("ipv6Address")
        .or_else(|| interfaces().find_map(|n| n.ipv6_address()))
        .and_then(|a| a.parse().ok());
    let bindings = task
        .containers()
        .iter()
        .flat_map(|c| {
            c.network_bindings().iter().filter_map(|b| {
                let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
                binding(
                    c.name(),
                    port(b.container_port()),
                    port(b.host_port()),
                    b.protocol().map(|p| p.as_str()),
                    b.bind_ip(),
                )
            })
        })
        .collect();
    Some(TaskFacts {
        task_arn: task.task_arn()?.to_owned(),
        cluster: cluster_name(task.cluster_arn()?).to_owned(),
        group: task.group().map(str::to_owned),
        task_definition_arn: task.task_definition_arn()?.to_owned(),
        last_status: task.last_status()?.to_owned(),
        desired_status: task.desired_status()?.to_owned(),
        health: task.health_status().map(|h| h.as_str().to_owned()),
        version: u64::try_from(task.version()).ok().filter(|v| *v > 0),
        updated_at: None,
        availability_zone: task.availability_zone().map(str::to_owned),
        ipv4,
        ipv6,
        bindings,
        container_instance_arn: task.container_instance_arn().map(str::to_owned),
    })
}

/// Reads a `DescribeTaskDefinition` answer (asked with `include = [TAGS]`).
pub fn task_definition_from_api(
    definition: &aws_sdk_ecs::types::TaskDefinition,
    tags: &[aws_sdk_ecs::types::Tag],
) -> TaskDefinition {
    let containers = definition
        .container_definitions()
        .iter()
        .map(|c| ContainerDefinition {
            name: c.name().unwrap_or_default().to_owned(),
            // ECS treats a container without `essential` as essential.
            essential: c.essential().unwrap_or(true),
            ports: c.port_mappings().iter().filter_map(port_mapping).collect(),
            health_check: c.health_check().is_some(),
        })
        .collect();
    let tags = tags
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    TaskDefinition {
        family: definition.family().unwrap_or_default().to_owned(),
        network_mode: NetworkMode::parse(definition.network_mode().map(|m| m.as_str())),
        containers,
        tags,
    }
}

/// A port mapping with one container port; None for a port range.
fn port_mapping(mapping: &aws_sdk_ecs::types::PortMapping) -> Option<PortMapping> {
    let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
    Some(PortMapping {
        container_port: port(mapping.container_port())?,
        host_port: port(mapping.host_port()),
        protocol: protocol_of(mapping.protocol().map(|p| p.as_str())),
        name: mapping.name().map(str::to_owned),
    })
}

/// Reads a `DescribeInstances` instance: its id and private addresses.
pub fn host_from_api(instance: &aws_sdk_ec2::types::Instance) -> Option<Host> {
    let primary = instance
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0));
    let ipv6 = instance.ipv6_address().or_else(|| {
        primary?
            .ipv6_addresses()
            .iter()
            .find_map(|a| a.ipv6_address())
    });
    Some(Host {
        ec2_instance_id: instance.instance_id()?.to_owned(),
        ipv4: instance.private_ip_address().and_then(|a| a.parse().ok()),
        ipv6: ipv6.and_then(|a| a.parse().ok()),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
pub(crate) mod tests;
