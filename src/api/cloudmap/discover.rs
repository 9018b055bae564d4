//! DiscoverInstances and DiscoverInstancesRevision: lookups by namespace and service name.

use std::sync::Arc;

use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::Input;
use super::shapes;
use crate::api::ApiState;
use crate::registry::{Instance, Namespace, Service, Snapshot};

fn find<'s>(
    snapshot: &'s Snapshot,
    input: &Input,
) -> Result<(&'s Arc<Namespace>, &'s Arc<Service>), CloudMapError> {
    let namespace_name = input.string("NamespaceName")?;
    let service_name = input.string("ServiceName")?;
    let namespace = snapshot
        .namespace(&namespace_name.trim_end_matches('.').to_ascii_lowercase())
        .ok_or_else(|| {
            CloudMapError::new(
                "NamespaceNotFound",
                format!("no namespace {namespace_name:?}"),
            )
        })?;
    let service = namespace
        .services
        .get(service_name.to_ascii_lowercase().as_str())
        .ok_or_else(|| {
            CloudMapError::new(
                "ServiceNotFound",
                format!("no service {service_name:?} in {namespace_name:?}"),
            )
        })?;
    Ok((namespace, service))
}

/// Instances matching the filters, in random order (as Cloud Map returns them).
///
/// `HealthStatus` defaults to `HEALTHY` for services with a custom health config and to
/// `ALL` otherwise (Cloud Map ignores it for services without health checks).
pub fn instances(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (namespace, service) = find(&snapshot, &input)?;
    let max = input.integer("MaxResults", 1..=1000)?.unwrap_or(100) as usize;
    let query = input.string_map("QueryParameters")?;
    let optional = input.string_map("OptionalParameters")?;
    let default_health = if service.meta.custom_health {
        "HEALTHY"
    } else {
        "ALL"
    };
    let health = input
        .optional_string("HealthStatus")?
        .unwrap_or(default_health);
    let matches = |instance: &Instance, filter: &std::collections::BTreeMap<String, String>| {
        let attributes = shapes::attributes(instance);
        filter.iter().all(|(k, v)| attributes.get(k) == Some(v))
    };
    // A draining instance is out of answers, discovery's too.
    let queried: Vec<&Instance> = service
        .instances
        .values()
        .map(|i| &**i)
        .filter(|i| !i.is_draining() && matches(i, &query))
        .collect();
    let by_health = |healthy: Option<bool>| -> Vec<&Instance> {
        queried
            .iter()
            .copied()
            .filter(|i| healthy.is_none_or(|h| i.is_healthy() == h))
            .collect()
    };
    let mut found = match health {
        "HEALTHY" => by_health(Some(true)),
        "UNHEALTHY" => by_health(Some(false)),
        "ALL" => by_health(None),
        "HEALTHY_OR_ELSE_ALL" => match by_health(Some(true)) {
            healthy if healthy.is_empty() => by_health(None),
            healthy => healthy,
        },
        other => {
            return Err(CloudMapError::invalid(format!(
                "HealthStatus {other:?} is not HEALTHY, UNHEALTHY, ALL or HEALTHY_OR_ELSE_ALL"
            )));
        }
    };
    if !optional.is_empty() {
        let preferred: Vec<&Instance> = found
            .iter()
            .copied()
            .filter(|i| matches(i, &optional))
            .collect();
        if !preferred.is_empty() {
            found = preferred;
        }
    }
    found.shuffle(&mut rand::rng());
    found.truncate(max);
    let instances: Vec<Value> = found
        .iter()
        .map(|i| {
            json!({
                "InstanceId": i.id,
                "NamespaceName": namespace.settings.name,
                "ServiceName": service.name,
                "HealthStatus": shapes::health(i),
                "Attributes": shapes::attributes(i),
            })
        })
        .collect();
    Ok(json!({"Instances": instances, "InstancesRevision": service.instances_revision}))
}

pub fn revision(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let snapshot = state.registry.snapshot();
    let (_, service) = find(&snapshot, &input)?;
    Ok(json!({"InstancesRevision": service.instances_revision}))
}
