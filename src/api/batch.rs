//! `POST /v1/namespaces/{ns}/batch`: many REST registrations and deregistrations in one
//! request, applied together (docs/rest.md, "Batches").
//!
//! One request, one log record and one fsync for up to [`MAX_CHANGES`] changes: what a
//! change costs in HTTP, JSON framing, the writer's queue and the log is paid once per
//! batch instead of once per instance. The batch is one [`Change::Batch`], so it is all or
//! nothing: every item is validated as its single-instance request would be before
//! anything is sent to the registry (a 4xx names the item's field, `changes[3].ipv4`), and
//! a refusal by the registry (an instance owned by another source, a missing one, a
//! ceiling) refuses the whole batch. An instance is named once per batch. With `[etcd]` a
//! batch is one etcd transaction, so it holds at most what one always fits
//! ([`RegistryHandle::max_batch`](crate::registry::RegistryHandle::max_batch)).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::access::too_many;
use super::auth::{Principal, ScopeKind};
use super::error::ApiError;
use super::rest::{RegisterBody, admit, find_namespace, parse_body};
use crate::registry::validate;
use crate::registry::{Change, ChangeError, InstanceKey, InstanceSpec, SourceId};

/// Changes one batch may carry: a full batch of minimal items is about 100 KiB, under the
/// listener's body limit, and it is one record of the log (at most 1 MiB encoded).
pub const MAX_CHANGES: usize = 1000;

/// The batch's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    changes: Vec<Item>,
}

/// One change: `register` (with `instance`, the body of a PUT) or `deregister`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    op: Op,
    service: String,
    id: String,
    instance: Option<RegisterBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Register,
    Deregister,
}

/// Validates every item, draws one write per change from the caller's bucket, applies
/// the batch as one change and answers once it is durable and in DNS.
pub(super) async fn apply(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Extension(principal): Extension<Principal>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let changes = match validated(&state, &principal, &ns, &body) {
        Ok(changes) => changes,
        Err(error) => return error.into_response(),
    };
    let count = changes.len();
    let credentials = state.auth.credentials();
    let bucket = principal.bucket(source.ip());
    // `count` ≤ MAX_CHANGES, so it fits.
    if let Err(throttled) = state
        .auth
        .take_writes(&credentials, bucket, "rest", count as u32)
    {
        return too_many(throttled.retry_after);
    }
    let keys: Vec<InstanceKey> = changes.iter().map(|(key, _)| key.clone()).collect();
    let change = Change::Batch {
        source: SourceId::api(),
        changes,
    };
    match state.registry.apply_durable(change).await {
        Ok(applied) => {
            Json(json!({"changes": count, "revision": applied.revision})).into_response()
        }
        Err(error) => refused(error, &keys).into_response(),
    }
}

/// The batch's changes, each validated as its single request would be, or the first
/// item at fault.
fn validated(
    state: &ApiState,
    principal: &Principal,
    ns: &str,
    body: &[u8],
) -> Result<Vec<(InstanceKey, Option<InstanceSpec>)>, ApiError> {
    let snapshot = state.registry.snapshot();
    let namespace = find_namespace(&snapshot, ns)?.settings.name.clone();
    let body: BatchBody = parse_body(body)?;
    let (limit, store) = match state.registry.max_batch() {
        Some(store) if store < MAX_CHANGES => (store, " on this store (one etcd transaction)"),
        _ => (MAX_CHANGES, ""),
    };
    if body.changes.is_empty() || body.changes.len() > limit {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("changes"),
            format!(
                "a batch holds 1 to {limit} changes{store}, not {}",
                body.changes.len()
            ),
        ));
    }
    let mut changes = Vec::with_capacity(body.changes.len());
    // Where each instance was named: at most `limit` entries.
    let mut named: HashMap<(String, String), usize> = HashMap::with_capacity(limit);
    for (index, item) in body.changes.into_iter().enumerate() {
        let at = |prefix: &'static str| move |error: ApiError| in_item(index, prefix, error);
        let service = validate::service_name(&item.service)
            .map_err(ApiError::from)
            .map_err(at(""))?;
        validate::instance_id(&item.id)
            .map_err(ApiError::from)
            .map_err(at(""))?;
        if !principal.may(ScopeKind::Register, &namespace, &service) {
            return Err(in_item(
                index,
                "",
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    Some("service"),
                    format!("{principal} has no scope for register on \"{namespace}/{service}\""),
                ),
            ));
        }
        // One change per instance: a transaction that names a key twice says two
        // things about it, and which one stands would depend on the order of items.
        if let Some(first) = named.insert((service.clone(), item.id.clone()), index) {
            return Err(in_item(
                index,
                "",
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Some("id"),
                    format!(
                        "instance {service}/{} is already changed by changes[{first}]",
                        item.id
                    ),
                ),
            ));
        }
        let key = InstanceKey {
            namespace: namespace.clone(),
            service,
            id: item.id,
        };
        let spec = match (item.op, item.instance) {
            (Op::Register, Some(instance)) => {
                let spec = instance
                    .validated()
                    .map_err(ApiError::from)
                    .map_err(at("instance."))?;
                admit(state, &snapshot, &key, &spec).map_err(at("instance."))?;
                Some(spec)
            }
            (Op::Deregister, None) => None,
            (Op::Register, None) => return Err(in_item(index, "", missing("instance", true))),
            (Op::Deregister, Some(_)) => {
                return Err(in_item(index, "", missing("instance", false)));
            }
        };
        changes.push((key, spec));
    }
    Ok(changes)
}

fn missing(field: &str, wanted: bool) -> ApiError {
    let message = if wanted {
        "register needs the instance"
    } else {
        "deregister takes no instance"
    };
    ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
}

/// `error`, about item `index`: its field becomes `changes[index].<prefix><field>`.
fn in_item(index: usize, prefix: &str, mut error: ApiError) -> ApiError {
    let field = error.field.take().unwrap_or_default();
    error.field = Some(
        format!("changes[{index}].{prefix}{field}")
            .trim_end_matches('.')
            .to_owned(),
    );
    error.message = format!("changes[{index}]: {}", error.message);
    error
}

/// The registry's refusal of the whole batch, naming the first item it is about when it
/// names an instance.
fn refused(error: ChangeError, keys: &[InstanceKey]) -> ApiError {
    let about = match &error {
        ChangeError::InstanceNotFound(key) | ChangeError::OwnedByOther { key, .. } => {
            keys.iter().position(|k| k == key)
        }
        _ => None,
    };
    let whole = matches!(error, ChangeError::TooLarge(_));
    let mut api = ApiError::from(error);
    if whole {
        api.field = Some("changes".to_owned());
    }
    match about {
        Some(index) => in_item(index, "", api),
        None => api,
    }
}
