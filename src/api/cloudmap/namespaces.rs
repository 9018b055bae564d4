//! Namespace operations: Create{Private,Public}DnsNamespace, CreateHttpNamespace,
//! GetNamespace, ListNamespaces, Update*Namespace, DeleteNamespace.

use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::{Input, paginate};
use super::operations;
use super::shapes::{self, NamespaceShape, kind_name, random_id};
use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::registry::validate::is_label;
use crate::registry::{Change, Namespace, NamespaceDef, NamespaceKind};

pub async fn create(
    state: &ApiState,
    input: Input,
    kind: NamespaceKind,
) -> Result<Value, CloudMapError> {
    let name = namespace_name(input.string("Name")?, kind)?;
    let creator_request_id = input.bounded("CreatorRequestId", 64)?;
    let description = input.bounded("Description", 1024)?;
    if kind == NamespaceKind::DnsPrivate {
        input.string("Vpc")?;
    }
    let negative_ttl = match input.object("Properties")? {
        Some(properties) => soa_ttl(&properties)?,
        None => None,
    };
    let tags = input.tags("Tags")?;
    let snapshot = state.registry.snapshot();
    if let Some(existing) = snapshot.namespace(&name) {
        let retried =
            creator_request_id.is_some() && existing.meta.creator_request_id == creator_request_id;
        if !retried {
            return Err(CloudMapError::new(
                "NamespaceAlreadyExists",
                format!("namespace {name:?} already exists"),
            ));
        }
        let id = state.cloudmap.operations.record(
            "CREATE_NAMESPACE",
            &name,
            &[("NAMESPACE", &existing.meta.id)],
        );
        return Ok(json!({"OperationId": id}));
    }
    let id = random_id("ns-");
    let def = NamespaceDef {
        name: name.clone(),
        id: id.clone(),
        kind,
        description,
        negative_ttl,
        creator_request_id,
        tags,
    };
    let create = Change::CreateNamespace(def);
    operations::apply(
        state,
        create,
        "CREATE_NAMESPACE",
        &name,
        &[("NAMESPACE", &id)],
    )
    .await
}

/// Validates a namespace name: a DNS name for DNS namespaces, printable ASCII for HTTP
/// ones. Stored lower case (DNS ignores case, and the registry keys by it).
fn namespace_name(name: &str, kind: NamespaceKind) -> Result<String, CloudMapError> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let valid = match kind {
        NamespaceKind::Http => {
            !lower.is_empty()
                && lower.len() <= 1024
                && lower.bytes().all(|b| b.is_ascii_graphic())
                && !lower.starts_with("arn:")
        }
        _ => !lower.is_empty() && lower.len() <= 253 && lower.split('.').all(is_label),
    };
    if valid {
        Ok(lower)
    } else {
        Err(CloudMapError::invalid(format!(
            "Name {name:?} is not a valid namespace name"
        )))
    }
}

/// `Properties.DnsProperties.SOA.TTL`: the negative-caching TTL.
fn soa_ttl(properties: &Input) -> Result<Option<u32>, CloudMapError> {
    let Some(dns) = properties.object("DnsProperties")? else {
        return Ok(None);
    };
    let Some(soa) = dns.object("SOA")? else {
        return Ok(None);
    };
    let ttl = soa
        .integer("TTL", 0..=i64::from(u32::MAX))?
        .ok_or_else(|| CloudMapError::invalid("Properties.DnsProperties.SOA.TTL is required"))?;
    Ok(Some(ttl as u32))
}

/// The namespace with id `id` (or its ARN).
pub fn by_id<'s>(
    snapshot: &'s crate::registry::Snapshot,
    id: &str,
) -> Result<&'s std::sync::Arc<Namespace>, CloudMapError> {
    let id = id.rsplit('/').next().unwrap_or(id);
    snapshot.namespace_by_id(id).ok_or_else(|| {
        CloudMapError::new("NamespaceNotFound", format!("no namespace with id {id:?}"))
    })
}

pub fn get(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let namespace = by_id(&snapshot, input.string("Id")?)?;
    Ok(
        json!({"Namespace": shapes::namespace(&state.cloudmap.config, namespace, NamespaceShape::Full)}),
    )
}

/// The namespaces `principal` may call ListNamespaces on.
pub fn list(state: &ApiState, input: Input, principal: &Principal) -> Result<Value, CloudMapError> {
    let (limit, start) = input.page(100, 100)?;
    let mut filters = Vec::new();
    for filter in input.objects("Filters")? {
        let name = filter.string("Name")?.to_owned();
        if !["TYPE", "NAME", "HTTP_NAME", "RESOURCE_OWNER"].contains(&name.as_str()) {
            return Err(CloudMapError::invalid(format!(
                "Filters.Name {name:?} is not a namespace filter"
            )));
        }
        let condition = filter
            .optional_string("Condition")?
            .unwrap_or("EQ")
            .to_owned();
        let values = filter.string_list("Values")?;
        if values.is_empty() || !["EQ", "IN", "BEGINS_WITH"].contains(&condition.as_str()) {
            return Err(CloudMapError::invalid(format!(
                "Filters: {name} {condition} needs values"
            )));
        }
        filters.push((name, condition, values));
    }
    let snapshot = state.registry.snapshot();
    let matching: Vec<Value> = snapshot
        .namespaces
        .values()
        .filter(|namespace| principal.may_call("ListNamespaces", Some(&namespace.settings.name)))
        .filter(|namespace| {
            filters.iter().all(|(name, condition, values)| {
                let value = match name.as_str() {
                    "TYPE" => kind_name(namespace.meta.kind).to_owned(),
                    "RESOURCE_OWNER" => "SELF".to_owned(),
                    _ => namespace.settings.name.clone(),
                };
                match condition.as_str() {
                    "BEGINS_WITH" => values
                        .iter()
                        .any(|v| value.starts_with(&v.to_ascii_lowercase())),
                    _ => values.iter().any(|v| v.eq_ignore_ascii_case(&value)),
                }
            })
        })
        .map(|namespace| {
            shapes::namespace(&state.cloudmap.config, namespace, NamespaceShape::Summary)
        })
        .collect();
    let (page, next) = paginate(matching, limit, start);
    let mut output = json!({"Namespaces": page});
    if let Some(next) = next {
        output["NextToken"] = json!(next);
    }
    Ok(output)
}

pub async fn update(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let namespace = by_id(&snapshot, input.string("Id")?)?;
    let change = input
        .object("Namespace")?
        .ok_or_else(|| CloudMapError::invalid("Namespace is required"))?;
    let description = change.bounded("Description", 1024)?;
    let negative_ttl = match change.object("Properties")? {
        Some(properties) => soa_ttl(&properties)?,
        None => None,
    };
    let update = Change::UpdateNamespace {
        name: namespace.settings.name.clone(),
        description,
        negative_ttl,
    };
    operations::apply(
        state,
        update,
        "UPDATE_NAMESPACE",
        &namespace.settings.name,
        &[("NAMESPACE", &namespace.meta.id)],
    )
    .await
}

pub async fn delete(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let namespace = by_id(&snapshot, input.string("Id")?)?;
    let name = namespace.settings.name.clone();
    let delete = Change::DeleteNamespace { name: name.clone() };
    operations::apply(
        state,
        delete,
        "DELETE_NAMESPACE",
        &name,
        &[("NAMESPACE", &namespace.meta.id)],
    )
    .await
}
