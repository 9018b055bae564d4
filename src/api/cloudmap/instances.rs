//! Instance operations: RegisterInstance, DeregisterInstance, GetInstance, ListInstances,
//! GetInstancesHealthStatus, UpdateInstanceCustomHealthStatus.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::{Input, paginate};
use super::operations;
use super::services::by_id;
use super::shapes;
use crate::api::ApiState;
use crate::registry::{
    Change, Instance, InstanceKey, InstanceSpec, Namespace, Service, SourceId, SpecExtras, validate,
};

const IPV4: &str = "AWS_INSTANCE_IPV4";
const IPV6: &str = "AWS_INSTANCE_IPV6";
const PORT: &str = "AWS_INSTANCE_PORT";
const CNAME: &str = "AWS_INSTANCE_CNAME";
const INIT_HEALTH: &str = "AWS_INIT_HEALTH_STATUS";
/// Reserved attributes muster cannot honour: Route 53 alias targets and EC2 lookups.
const UNSUPPORTED: [&str; 2] = ["AWS_ALIAS_DNS_NAME", "AWS_EC2_INSTANCE_ID"];

fn key(namespace: &Namespace, service: &Service, id: &str) -> InstanceKey {
    InstanceKey {
        namespace: namespace.settings.name.clone(),
        service: service.name.clone(),
        id: id.to_owned(),
    }
}

fn instance_id(input: &Input) -> Result<String, CloudMapError> {
    let id = input.string("InstanceId")?;
    validate::instance_id(id)
        .map_err(|e| CloudMapError::invalid(format!("InstanceId: {}", e.message)))?;
    Ok(id.to_owned())
}

pub async fn register(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let id = instance_id(&input)?;
    let attributes = input.string_map("Attributes")?;
    let existing = service.instances.get(id.as_str());
    let current_health = existing.map(|i| i.spec.healthy);
    let creator_request_id = input.bounded("CreatorRequestId", 64)?;
    let spec = instance_spec(service, attributes, current_health, creator_request_id)?;
    let upsert = Change::Upsert {
        key: key(namespace, service, &id),
        spec,
        source: SourceId::api(),
    };
    let targets = [
        ("INSTANCE", id.as_str()),
        ("SERVICE", service.meta.id.as_str()),
    ];
    let namespace = &namespace.settings.name;
    operations::apply(state, upsert, "REGISTER_INSTANCE", namespace, &targets).await
}

/// Checks the attributes against the service's record types (Cloud Map's rules) and
/// turns the reserved ones into the instance's addresses. `current_health` keeps a
/// re-registered instance's health unless `AWS_INIT_HEALTH_STATUS` is given.
fn instance_spec(
    service: &Service,
    attributes: BTreeMap<String, String>,
    current_health: Option<bool>,
    creator_request_id: Option<String>,
) -> Result<InstanceSpec, CloudMapError> {
    for key in UNSUPPORTED {
        if attributes.contains_key(key) {
            return Err(CloudMapError::invalid(format!(
                "{key} is not supported by muster"
            )));
        }
    }
    let custom: BTreeMap<String, String> = attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    validate::attributes(&custom)
        .map_err(|e| CloudMapError::invalid(format!("Attributes: {}", e.message)))?;
    // Their total size is checked by the registry's writer ([limits] attribute_bytes).
    let addresses = Addresses::parse(&attributes)?;
    let healthy = initial_health(service, &attributes, current_health)?;
    addresses.required_by(service)?;
    Ok(InstanceSpec {
        ipv4: addresses.ipv4,
        ipv6: addresses.ipv6,
        port: addresses.port,
        attributes,
        healthy,
        extras: SpecExtras {
            cname: addresses.cname,
            creator_request_id,
            ..SpecExtras::default()
        }
        .into(),
    })
}

/// Where an instance is reached, from its `AWS_INSTANCE_*` attributes.
struct Addresses {
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<u16>,
    cname: Option<String>,
}

impl Addresses {
    fn parse(attributes: &BTreeMap<String, String>) -> Result<Self, CloudMapError> {
        let parse = |key: &str| attributes.get(key).map(String::as_str);
        let ipv4 = parse(IPV4)
            .map(|v| {
                v.parse::<Ipv4Addr>().map_err(|_| {
                    CloudMapError::invalid(format!("{IPV4} {v:?} is not an IPv4 address"))
                })
            })
            .transpose()?;
        let ipv6 = parse(IPV6)
            .map(|v| {
                v.parse::<Ipv6Addr>().map_err(|_| {
                    CloudMapError::invalid(format!("{IPV6} {v:?} is not an IPv6 address"))
                })
            })
            .transpose()?;
        let port = parse(PORT)
            .map(|v| match v.parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(CloudMapError::invalid(format!(
                    "{PORT} {v:?} is not a port from 1 to 65535"
                ))),
            })
            .transpose()?;
        let cname = parse(CNAME)
            .map(|v| match hickory_proto::rr::Name::from_ascii(v) {
                Ok(_) if !v.is_empty() && v.len() <= 255 => Ok(v.to_owned()),
                _ => Err(CloudMapError::invalid(format!(
                    "{CNAME} {v:?} is not a DNS name"
                ))),
            })
            .transpose()?;
        Ok(Self {
            ipv4,
            ipv6,
            port,
            cname,
        })
    }

    /// Refuses an instance that lacks what the service's DNS records need.
    fn required_by(&self, service: &Service) -> Result<(), CloudMapError> {
        let no_address = self.ipv4.is_none() && self.ipv6.is_none();
        if let Some(dns) = service.meta.dns.filter(|_| service.in_dns()) {
            let records = dns.records;
            let missing = [
                (records.a.is_some() && self.ipv4.is_none(), IPV4),
                (records.aaaa.is_some() && self.ipv6.is_none(), IPV6),
                (records.srv.is_some() && self.port.is_none(), PORT),
                (records.srv.is_some() && no_address, IPV4),
                (records.cname.is_some() && self.cname.is_none(), CNAME),
            ];
            if let Some((_, key)) = missing.iter().find(|(missing, _)| *missing) {
                return Err(CloudMapError::invalid(format!(
                    "Attributes: {key} is required by the service's DNS records"
                )));
            }
        } else if service.in_dns() && no_address && self.cname.is_none() {
            return Err(CloudMapError::invalid(format!(
                "Attributes: {IPV4} or {IPV6} is required"
            )));
        }
        Ok(())
    }
}

/// The health a (re-)registration starts with: `AWS_INIT_HEALTH_STATUS` on a service
/// with custom health checks, else what it had, else healthy.
fn initial_health(
    service: &Service,
    attributes: &BTreeMap<String, String>,
    current: Option<bool>,
) -> Result<bool, CloudMapError> {
    match attributes.get(INIT_HEALTH).map(String::as_str) {
        None => Ok(current.unwrap_or(true)),
        Some(_) if !service.meta.custom_health => Err(CloudMapError::invalid(format!(
            "{INIT_HEALTH} needs a service with HealthCheckCustomConfig"
        ))),
        Some("HEALTHY") => Ok(true),
        Some("UNHEALTHY") => Ok(false),
        Some(other) => Err(CloudMapError::invalid(format!(
            "{INIT_HEALTH} {other:?} is not HEALTHY or UNHEALTHY"
        ))),
    }
}

pub async fn deregister(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let id = instance_id(&input)?;
    let remove = Change::Remove {
        key: key(namespace, service, &id),
        source: SourceId::api(),
    };
    let targets = [
        ("INSTANCE", id.as_str()),
        ("SERVICE", service.meta.id.as_str()),
    ];
    let namespace = &namespace.settings.name;
    operations::apply(state, remove, "DEREGISTER_INSTANCE", namespace, &targets).await
}

fn find<'s>(service: &'s Service, id: &str) -> Result<&'s Instance, CloudMapError> {
    service.instances.get(id).map(|i| &**i).ok_or_else(|| {
        CloudMapError::new(
            "InstanceNotFound",
            format!("no instance {id:?} in service {}", service.meta.id),
        )
    })
}

pub fn get(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (_, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let instance = find(service, &instance_id(&input)?)?;
    let account = &state.cloudmap.config.account;
    let mut shape = json!({
        "Id": instance.id,
        "Attributes": shapes::attributes(instance),
        "CreatedByAccount": account,
    });
    if let Some(id) = instance.spec.creator_request_id() {
        shape["CreatorRequestId"] = json!(id);
    }
    Ok(json!({"ResourceOwner": account, "Instance": shape}))
}

pub fn list(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (_, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let (limit, start) = input.page(100, 100)?;
    let account = &state.cloudmap.config.account;
    let instances: Vec<Value> = service
        .instances
        .values()
        .map(|i| json!({"Id": i.id, "Attributes": shapes::attributes(i), "CreatedByAccount": account}))
        .collect();
    let (page, next) = paginate(instances, limit, start);
    let mut output = json!({"ResourceOwner": account, "Instances": page});
    if let Some(next) = next {
        output["NextToken"] = json!(next);
    }
    Ok(output)
}

pub fn health_status(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (_, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let (limit, start) = input.page(100, 100)?;
    let wanted = input.string_list("Instances")?;
    let instances: Vec<&Instance> = if wanted.is_empty() {
        service.instances.values().map(|i| &**i).collect()
    } else {
        wanted
            .iter()
            .map(|id| find(service, id))
            .collect::<Result<_, _>>()?
    };
    let (page, next) = paginate(instances, limit, start);
    let status: BTreeMap<&str, &str> = page
        .iter()
        .map(|i| (i.id.as_str(), shapes::health(i)))
        .collect();
    let mut output = json!({"Status": status});
    if let Some(next) = next {
        output["NextToken"] = json!(next);
    }
    Ok(output)
}

/// Takes effect at once (Cloud Map waits about 30 s).
pub async fn update_health(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let id = instance_id(&input)?;
    find(service, &id)?;
    if !service.meta.custom_health {
        return Err(CloudMapError::new(
            "CustomHealthNotFound",
            format!("service {} has no HealthCheckCustomConfig", service.meta.id),
        ));
    }
    let healthy = match input.string("Status")? {
        "HEALTHY" => true,
        "UNHEALTHY" => false,
        other => {
            return Err(CloudMapError::invalid(format!(
                "Status {other:?} is not HEALTHY or UNHEALTHY"
            )));
        }
    };
    let change = Change::SetHealth {
        key: key(namespace, service, &id),
        healthy,
    };
    state.registry.apply_durable(change).await?;
    Ok(json!({}))
}
