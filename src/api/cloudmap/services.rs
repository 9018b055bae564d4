//! Service operations: CreateService, GetService, ListServices, UpdateService,
//! DeleteService, and Get/Update/DeleteServiceAttributes.

use std::sync::Arc;

use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::{Input, paginate};
use super::shapes::{self, random_id};
use super::{namespaces, operations};
use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::registry::validate::service_name;
use crate::registry::{
    Change, DnsConfig, Namespace, RecordTtls, Routing, Service, ServiceDef, Snapshot,
};

/// The service with id `id` (or its ARN), and its namespace.
pub fn by_id<'s>(
    snapshot: &'s Snapshot,
    id: &str,
) -> Result<(&'s Arc<Namespace>, &'s Arc<Service>), CloudMapError> {
    let id = id.rsplit('/').next().unwrap_or(id);
    snapshot
        .service_by_id(id)
        .ok_or_else(|| CloudMapError::new("ServiceNotFound", format!("no service with id {id:?}")))
}

pub async fn create(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let name = service_name(input.string("Name")?)
        .map_err(|e| CloudMapError::invalid(format!("Name: {}", e.message)))?;
    let dns_input = input.object("DnsConfig")?;
    let namespace_id = match input.optional_string("NamespaceId")? {
        Some(id) => id.to_owned(),
        None => match &dns_input {
            Some(dns) => dns.string("NamespaceId")?.to_owned(),
            None => return Err(CloudMapError::invalid("NamespaceId is required")),
        },
    };
    if input.value("HealthCheckConfig").is_some() {
        return Err(CloudMapError::invalid(
            "HealthCheckConfig (Route 53 health checks) is not supported: use HealthCheckCustomConfig, or muster's own health checks",
        ));
    }
    let http_only = match input.optional_string("Type")? {
        None => false,
        Some("HTTP") => true,
        Some(other) => {
            return Err(CloudMapError::invalid(format!(
                "Type {other:?} must be HTTP"
            )));
        }
    };
    let snapshot = state.registry.snapshot();
    let namespace = namespaces::by_id(&snapshot, &namespace_id)?;
    let dns = match (&dns_input, http_only || !namespace.in_dns()) {
        (Some(_), true) => {
            return Err(CloudMapError::invalid(
                "DnsConfig is not allowed for HTTP services or namespaces",
            ));
        }
        (None, false) => {
            return Err(CloudMapError::invalid(
                "DnsConfig is required in a DNS namespace",
            ));
        }
        (Some(dns), false) => Some(dns_config(dns)?),
        (None, true) => None,
    };
    let def = ServiceDef {
        id: random_id("srv-"),
        description: input.bounded("Description", 1024)?,
        dns,
        http_only: http_only || !namespace.in_dns(),
        custom_health: input.value("HealthCheckCustomConfig").is_some(),
        creator_request_id: input.bounded("CreatorRequestId", 64)?,
        tags: input.tags("Tags")?,
    };
    let id = def.id.clone();
    let create = Change::CreateService {
        namespace: namespace.settings.name.clone(),
        name,
        def,
    };
    state.registry.apply_durable(create).await?;
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, &id)?;
    Ok(json!({"Service": shapes::service(&state.cloudmap.config, namespace, service)}))
}

/// A `DnsConfig`: record types A, AAAA and SRV in any combination, or CNAME alone with
/// WEIGHTED routing.
fn dns_config(input: &Input) -> Result<DnsConfig, CloudMapError> {
    let routing = match input.optional_string("RoutingPolicy")? {
        None | Some("MULTIVALUE") => Routing::Multivalue,
        Some("WEIGHTED") => Routing::Weighted,
        Some(other) => {
            return Err(CloudMapError::invalid(format!(
                "RoutingPolicy {other:?} is not MULTIVALUE or WEIGHTED"
            )));
        }
    };
    let records = dns_records(input)?;
    if records.cname.is_some() && routing != Routing::Weighted {
        return Err(CloudMapError::invalid(
            "a CNAME record needs RoutingPolicy WEIGHTED",
        ));
    }
    Ok(DnsConfig { routing, records })
}

fn dns_records(input: &Input) -> Result<RecordTtls, CloudMapError> {
    let mut records = RecordTtls::default();
    let entries = input.objects("DnsRecords")?;
    if entries.is_empty() {
        return Err(CloudMapError::invalid(
            "DnsConfig.DnsRecords needs at least one record",
        ));
    }
    for record in entries {
        let ttl = record
            .integer("TTL", 0..=2_147_483_647)?
            .ok_or_else(|| CloudMapError::invalid("DnsRecords.TTL is required"))?
            as u32;
        let slot = match record.string("Type")? {
            "A" => &mut records.a,
            "AAAA" => &mut records.aaaa,
            "SRV" => &mut records.srv,
            "CNAME" => &mut records.cname,
            other => {
                return Err(CloudMapError::invalid(format!(
                    "DnsRecords.Type {other:?} is not A, AAAA, SRV or CNAME"
                )));
            }
        };
        if slot.replace(ttl).is_some() {
            return Err(CloudMapError::invalid("DnsRecords lists a type twice"));
        }
    }
    if records.cname.is_some()
        && (records.a.is_some() || records.aaaa.is_some() || records.srv.is_some())
    {
        return Err(CloudMapError::invalid(
            "a CNAME record cannot be combined with other types",
        ));
    }
    Ok(records)
}

pub fn get(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("Id")?)?;
    Ok(json!({"Service": shapes::service(&state.cloudmap.config, namespace, service)}))
}

/// The services of namespaces `principal` may call ListServices on.
pub fn list(state: &ApiState, input: Input, principal: &Principal) -> Result<Value, CloudMapError> {
    let (limit, start) = input.page(100, 100)?;
    let mut namespace_ids: Option<Vec<String>> = None;
    for filter in input.objects("Filters")? {
        let values = filter.string_list("Values")?;
        match filter.string("Name")? {
            "NAMESPACE_ID" => namespace_ids = Some(values),
            "RESOURCE_OWNER" => {}
            other => {
                return Err(CloudMapError::invalid(format!(
                    "Filters.Name {other:?} is not a service filter"
                )));
            }
        }
    }
    let snapshot = state.registry.snapshot();
    let services: Vec<Value> = snapshot
        .namespaces
        .values()
        .filter(|ns| principal.may_call("ListServices", Some(&ns.settings.name)))
        .filter(|ns| {
            namespace_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&ns.meta.id))
        })
        .flat_map(|ns| ns.services.values().map(move |svc| (ns, svc)))
        .map(|(ns, svc)| shapes::service(&state.cloudmap.config, ns, svc))
        .collect();
    let (page, next) = paginate(services, limit, start);
    let mut output = json!({"Services": page});
    if let Some(next) = next {
        output["NextToken"] = json!(next);
    }
    Ok(output)
}

pub async fn update(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("Id")?)?;
    let change = input
        .object("Service")?
        .ok_or_else(|| CloudMapError::invalid("Service is required"))?;
    if change.value("HealthCheckConfig").is_some() {
        return Err(CloudMapError::invalid(
            "HealthCheckConfig (Route 53 health checks) is not supported",
        ));
    }
    let records = match change.object("DnsConfig")? {
        None => None,
        Some(dns) => {
            let records = dns_records(&dns)?;
            let current = service.meta.dns.map(|d| d.records);
            if !current.is_some_and(|c| c.same_types(&records)) {
                return Err(CloudMapError::invalid(
                    "UpdateService changes TTLs only: the record types must stay as they are",
                ));
            }
            Some(records)
        }
    };
    let update = Change::UpdateService {
        namespace: namespace.settings.name.clone(),
        name: service.name.clone(),
        description: change.bounded("Description", 1024)?,
        records,
    };
    operations::apply(
        state,
        update,
        "UPDATE_SERVICE",
        &namespace.settings.name,
        &[("SERVICE", &service.meta.id)],
    )
    .await
}

pub async fn delete(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("Id")?)?;
    let delete = Change::DeleteService {
        namespace: namespace.settings.name.clone(),
        name: service.name.clone(),
    };
    state.registry.apply_durable(delete).await?;
    Ok(json!({}))
}

pub fn get_attributes(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (_, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    Ok(json!({"ServiceAttributes": {
        "ServiceArn": shapes::service_arn(&state.cloudmap.config, &service.meta.id),
        "Attributes": service.meta.attributes,
    }}))
}

pub async fn update_attributes(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let set = input.string_map("Attributes")?;
    if set.is_empty() {
        return Err(CloudMapError::invalid(
            "Attributes needs at least one entry",
        ));
    }
    // The count and size after the change are checked by the registry's writer.
    crate::registry::validate::attributes(&set)
        .map_err(|e| CloudMapError::invalid(e.to_string()))?;
    edit_attributes(state, namespace, service, set, Vec::new()).await
}

pub async fn delete_attributes(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = by_id(&snapshot, input.string("ServiceId")?)?;
    let remove = input.string_list("Attributes")?;
    if remove.len() > crate::registry::MAX_SERVICE_ATTRIBUTES {
        return Err(CloudMapError::invalid(format!(
            "Attributes: at most {} keys",
            crate::registry::MAX_SERVICE_ATTRIBUTES
        )));
    }
    if remove.is_empty() {
        return Err(CloudMapError::invalid("Attributes needs at least one key"));
    }
    edit_attributes(state, namespace, service, Default::default(), remove).await
}

async fn edit_attributes(
    state: &ApiState,
    namespace: &Namespace,
    service: &Service,
    set: std::collections::BTreeMap<String, String>,
    remove: Vec<String>,
) -> Result<Value, CloudMapError> {
    let change = Change::SetServiceAttributes {
        namespace: namespace.settings.name.clone(),
        service: service.name.clone(),
        set,
        remove,
    };
    state.registry.apply_durable(change).await?;
    Ok(json!({}))
}
