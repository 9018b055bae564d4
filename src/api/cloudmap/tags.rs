//! TagResource, UntagResource and ListTagsForResource, on namespace and service ARNs.

use serde_json::{Value, json};

use super::error::CloudMapError;
use super::input::Input;
use crate::api::ApiState;
use crate::registry::{Change, Snapshot, Tagged};

/// The resource an ARN names, and its current tags.
pub(super) fn resource(
    snapshot: &Snapshot,
    arn: &str,
) -> Result<(Tagged, std::collections::BTreeMap<String, String>), CloudMapError> {
    let not_found =
        || CloudMapError::new("ResourceNotFoundException", format!("no resource {arn:?}"));
    let (kind, id) = arn
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_once('/'))
        .ok_or_else(not_found)?;
    match kind {
        "namespace" => {
            let namespace = snapshot.namespace_by_id(id).ok_or_else(not_found)?;
            Ok((
                Tagged::Namespace(namespace.settings.name.clone()),
                namespace.meta.tags.clone(),
            ))
        }
        "service" => {
            let (namespace, service) = snapshot.service_by_id(id).ok_or_else(not_found)?;
            let target = Tagged::Service {
                namespace: namespace.settings.name.clone(),
                service: service.name.clone(),
            };
            Ok((target, service.meta.tags.clone()))
        }
        _ => Err(not_found()),
    }
}

pub async fn tag(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let arn = input.string("ResourceARN")?;
    let set = input.tags("Tags")?;
    // The count after the change is checked by the registry's writer, against the tags
    // the resource has then (concurrent calls cannot pass the limit together).
    let (target, _) = resource(&state.registry.snapshot(), arn)?;
    let change = Change::Tag {
        target,
        set,
        remove: Vec::new(),
    };
    state.registry.apply_durable(change).await?;
    Ok(json!({}))
}

pub async fn untag(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let arn = input.string("ResourceARN")?;
    let remove = input.tag_keys("TagKeys")?;
    let (target, _) = resource(&state.registry.snapshot(), arn)?;
    let change = Change::Tag {
        target,
        set: Default::default(),
        remove,
    };
    state.registry.apply_durable(change).await?;
    Ok(json!({}))
}

pub fn list(state: &ApiState, input: Input) -> Result<Value, CloudMapError> {
    let (_, tags) = resource(&state.registry.snapshot(), input.string("ResourceARN")?)?;
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"Tags": tags}))
}
