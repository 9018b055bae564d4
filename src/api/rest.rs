//! The REST registration API (DESIGN.md, "REST").

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::{Principal, ScopeKind};
use super::error::ApiError;
use super::watch::{Blocking, INDEX_HEADER, Params};
use crate::health::HeartbeatError;
use crate::registry::validate::{self, FieldError};
use crate::registry::{
    Change, CheckSpec, Instance, InstanceKey, InstanceSpec, NamedPort, Namespace, Service,
    Snapshot, SourceId, SpecExtras, Timestamp, health_bounds, instance_label,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/namespaces", get(list_namespaces))
        .route("/v1/namespaces/{ns}/services", get(list_services))
        .route("/v1/namespaces/{ns}/services/{svc}", get(get_service))
        .route("/v1/watch", get(super::sse::watch))
        .route("/v1/namespaces/{ns}/batch", post(super::batch::apply))
        .route(
            "/v1/namespaces/{ns}/services/{svc}/instances/{id}",
            put(register).delete(deregister),
        )
        .route(
            "/v1/namespaces/{ns}/services/{svc}/instances/{id}/health",
            put(set_health),
        )
        .route(
            "/v1/namespaces/{ns}/services/{svc}/instances/{id}/heartbeat",
            put(heartbeat),
        )
        .route(
            "/v1/namespaces/{ns}/services/{svc}/instances/{id}/drain",
            put(drain).delete(undrain),
        )
}

type Reply = Result<Json<Value>, ApiError>;

/// `PUT .../instances/{id}` body (and a batch's `instance`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
    /// Named ports, each answered at `_<name>._tcp.<svc>.<ns>` (or `._udp.`):
    /// `{"grpc": 9090, "dns": {"port": 53, "protocol": "udp"}}`.
    #[serde(default)]
    ports: BTreeMap<String, NamedPort>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default = "healthy")]
    healthy: bool,
    /// `"3s"`, `"500ms"`: the instance turns unhealthy when no heartbeat comes this long.
    heartbeat_ttl: Option<String>,
    /// `"10m"`: deregistered once unhealthy (heartbeat expired, check failing) this long.
    deregister_after: Option<String>,
    /// An active check: `{"http": "/healthz", "interval": "200ms", ...}` or `{"tcp": true}`.
    check: Option<CheckSpec>,
}

fn healthy() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthBody {
    healthy: bool,
}

async fn register(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let snapshot = state.registry.snapshot();
    let key = instance_key(&snapshot, &ns, &svc, &id)?;
    let body: RegisterBody = parse_body(&body)?;
    let spec = body.validated()?;
    admit(&state, &snapshot, &key, &spec)?;
    let change = Change::Upsert {
        key: key.clone(),
        spec,
        source: SourceId::api(),
    };
    let applied = state.registry.apply_durable(change).await?;
    Ok(Json(json!({
        "namespace": key.namespace,
        "service": key.service,
        "id": key.id,
        "revision": applied.revision,
    })))
}

/// Holds an instance about to be registered to the health task's limits: the check that
/// will run (its own, or its service's policy's) and its heartbeat TTL.
pub(super) fn admit(
    state: &ApiState,
    snapshot: &Snapshot,
    key: &InstanceKey,
    spec: &InstanceSpec,
) -> Result<(), ApiError> {
    let policy = match snapshot.service(&key.namespace, &key.service) {
        Some(service) => service.policy.clone(),
        None => find_namespace(snapshot, &key.namespace)?
            .settings
            .policy_for(&key.service, None),
    };
    state.health.limits().admit(spec, &policy)?;
    state.health.admit_heartbeat(spec)?;
    Ok(())
}

async fn deregister(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
) -> Reply {
    let key = instance_key(&state.registry.snapshot(), &ns, &svc, &id)?;
    let applied = state
        .registry
        .apply_durable(Change::Remove {
            key,
            source: SourceId::api(),
        })
        .await?;
    Ok(Json(json!({"revision": applied.revision})))
}

async fn set_health(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let key = instance_key(&state.registry.snapshot(), &ns, &svc, &id)?;
    let body: HealthBody = parse_body(&body)?;
    let applied = state
        .registry
        .apply_durable(Change::SetHealth {
            key,
            healthy: body.healthy,
        })
        .await?;
    Ok(Json(json!({"revision": applied.revision})))
}

/// Takes an instance out of answers at once; it keeps its registration and checks.
async fn drain(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
) -> Reply {
    set_draining(&state, (ns, svc, id), true).await
}

/// Returns a drained instance to answers (if it is healthy).
async fn undrain(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
) -> Reply {
    set_draining(&state, (ns, svc, id), false).await
}

async fn set_draining(
    state: &ApiState,
    (ns, svc, id): (String, String, String),
    draining: bool,
) -> Reply {
    let key = instance_key(&state.registry.snapshot(), &ns, &svc, &id)?;
    let applied = state
        .registry
        .apply_durable(Change::Drain { key, draining })
        .await?;
    Ok(Json(
        json!({"draining": draining, "revision": applied.revision}),
    ))
}

/// Renews a heartbeat; the deadline moves to now + the instance's `heartbeat_ttl`.
async fn heartbeat(
    State(state): State<ApiState>,
    Path((ns, svc, id)): Path<(String, String, String)>,
) -> Reply {
    let key = instance_key(&state.registry.snapshot(), &ns, &svc, &id)?;
    match state.health.heartbeat(key).await {
        Ok(()) => Ok(Json(json!({}))),
        Err(error @ HeartbeatError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            error.to_string(),
        )),
        Err(error @ HeartbeatError::NoTtl(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("heartbeat_ttl"),
            error.to_string(),
        )),
        Err(error) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            error.to_string(),
        )),
    }
}

/// The namespaces the caller may read something in.
async fn list_namespaces(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    let namespaces: Vec<Value> = snapshot
        .namespaces
        .iter()
        .filter(|(name, _)| principal.may_in(ScopeKind::Read, name))
        .map(|(name, ns)| json!({"name": name, "services": ns.services.len(), "instances": ns.instance_count()}))
        .collect();
    Json(json!({"namespaces": namespaces, "revision": snapshot.revision}))
}

/// The services of a namespace the caller may read.
async fn list_services(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(ns): Path<String>,
) -> Reply {
    let snapshot = state.registry.snapshot();
    let namespace = find_namespace(&snapshot, &ns)?;
    let name = &namespace.settings.name;
    let services: Vec<Value> = namespace
        .services
        .values()
        .filter(|s| principal.may(ScopeKind::Read, name, &s.name))
        .map(|s| json!({"name": s.name, "instances": s.instances.len(), "healthy": s.healthy_count()}))
        .collect();
    Ok(Json(
        json!({"services": services, "revision": snapshot.revision}),
    ))
}

/// A service and its instances, with its index (`X-Muster-Index`); with `?index=N`, a
/// blocking query that answers once the index is no longer N (or at `wait`).
async fn get_service(
    State(state): State<ApiState>,
    Path((ns, svc)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let blocking = match Params::from_query(query).and_then(|p| Blocking::parse(&p)) {
        Ok(blocking) => blocking,
        Err(error) => return error.into_response(),
    };
    let name = svc.to_ascii_lowercase();
    let namespace = match find_namespace(&state.registry.snapshot(), &ns) {
        Ok(namespace) => namespace.settings.name.clone(),
        Err(error) => return error.into_response(),
    };
    if let Some(blocking) = blocking {
        let watched = (namespace.as_str(), name.as_str());
        if let Err(busy) = state.watch.block(&state.registry, watched, blocking).await {
            return busy.into_response();
        }
    }
    // The index first: the snapshot read after it is at least as new.
    let index = state
        .registry
        .recent_changes()
        .service_index(&namespace, &name);
    let snapshot = state.registry.snapshot();
    let reply = service_json(&snapshot, &ns, &svc, index);
    let mut response = reply.into_response();
    let headers = response.headers_mut();
    headers.insert(INDEX_HEADER, HeaderValue::from(index));
    response
}

fn service_json(snapshot: &Snapshot, ns: &str, svc: &str, index: u64) -> Reply {
    let namespace = find_namespace(snapshot, ns)?;
    let service = namespace
        .services
        .get(svc.to_ascii_lowercase().as_str())
        .ok_or_else(|| not_found("service", svc))?;
    Ok(Json(json!({
        "namespace": namespace.settings.name,
        "name": service.name,
        "revision": snapshot.revision,
        "index": index,
        "policy": policy_json(service),
        "instances": service.instances.values().map(|i| instance_json(i)).collect::<Vec<_>>(),
    })))
}

fn policy_json(service: &Service) -> Value {
    let policy = &service.policy;
    json!({
        "records": policy.records,
        "max_answers": policy.max_answers,
        "when_all_unhealthy": policy.when_all_unhealthy,
        "deregister_after": policy.deregister_after.map(|after| humantime::format_duration(after).to_string()),
        "routing": policy.routing,
        "protocol": policy.protocol,
        "locality": policy.locality,
        "min_local": policy.min_local,
        "subsets": policy.subsets,
    })
}

fn instance_json(instance: &Instance) -> Value {
    let spec = &instance.spec;
    json!({
        "id": instance.id,
        "dns_label": instance_label(&instance.id),
        "ipv4": spec.ipv4,
        "ipv6": spec.ipv6,
        "port": spec.port,
        "ports": spec.ports(),
        "attributes": spec.attributes,
        "healthy": instance.is_healthy(),
        "reported_healthy": spec.healthy,
        "heartbeat_ttl": spec.heartbeat_ttl().map(|ttl| humantime::format_duration(ttl).to_string()),
        "heartbeat_ok": instance.heartbeat_ok,
        "deregister_after": spec.deregister_after().map(|after| humantime::format_duration(after).to_string()),
        "check_ok": instance.check_ok,
        "check_reason": instance.check_reason,
        "draining": instance.is_draining(),
        "source": instance.source.as_str(),
        "created": timestamp(instance.created),
        "updated": timestamp(instance.updated),
    })
}

/// A duration field of a body or query (`"3s"`, `"10m"`), parsed.
pub(super) fn duration(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<Duration>, FieldError> {
    let parse = |text: String| {
        humantime::parse_duration(&text)
            .map_err(|_| FieldError::new(field, format!("{text:?} is not a duration")))
    };
    text.map(parse).transpose()
}

fn timestamp(time: Timestamp) -> String {
    humantime::format_rfc3339_millis(time.into()).to_string()
}

fn not_found(field: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Some(field),
        format!("{field} {name:?} does not exist"),
    )
}

/// The namespace a path names (case and a trailing dot do not matter), or a 404.
pub(super) fn find_namespace<'s>(
    snapshot: &'s Snapshot,
    ns: &str,
) -> Result<&'s Arc<Namespace>, ApiError> {
    snapshot
        .namespace(&ns.trim_end_matches('.').to_ascii_lowercase())
        .ok_or_else(|| not_found("namespace", ns))
}

/// Validates the path and checks the namespace exists (before the body is looked at,
/// so a wrong URL is a 404 whatever the body says).
fn instance_key(
    snapshot: &Snapshot,
    ns: &str,
    svc: &str,
    id: &str,
) -> Result<InstanceKey, ApiError> {
    let namespace = find_namespace(snapshot, ns)?.settings.name.clone();
    let service = validate::service_name(svc)?;
    validate::instance_id(id)?;
    Ok(InstanceKey {
        namespace,
        service,
        id: id.to_owned(),
    })
}

/// Parses a JSON body. `field` names the top-level field at fault (`attributes` for a bad
/// `attributes.zone`); the message gives the full path.
///
/// A body that parses is read once, by serde_json alone; only a refused one is read
/// again to find where it fails, since tracking the path costs every field of every
/// body (a batch holds up to a thousand items).
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).or_else(|_| parse_with_path(body))
}

/// [`parse_body`] of a body that does not parse: the same parse, tracking where it is,
/// to name the field at fault.
fn parse_with_path<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let field = match path.split('.').next() {
            Some(top) if path != "." => top.to_owned(),
            _ => match message.strip_prefix("unknown field `") {
                Some(unknown) => unknown.split('`').next().unwrap_or("body").to_owned(),
                None => "body".to_owned(),
            },
        };
        let message = if path == "." {
            message
        } else {
            format!("{path}: {message}")
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some(&field),
            format!("invalid request body: {message}"),
        )
    })
}

impl RegisterBody {
    pub(super) fn validated(self) -> Result<InstanceSpec, FieldError> {
        let ipv4 = self
            .ipv4
            .map(|ip| {
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| FieldError::new("ipv4", format!("{ip:?} is not an IPv4 address")))
            })
            .transpose()?;
        let ipv6 = self
            .ipv6
            .map(|ip| {
                ip.parse::<Ipv6Addr>()
                    .map_err(|_| FieldError::new("ipv6", format!("{ip:?} is not an IPv6 address")))
            })
            .transpose()?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(FieldError::new("ipv4", "an instance needs ipv4 or ipv6"));
        }
        let port = self.port.map(validate::port).transpose()?;
        validate::ports(&self.ports)?;
        validate::attributes(&self.attributes)?;
        let heartbeat_ttl = duration("heartbeat_ttl", self.heartbeat_ttl)?;
        let deregister_after = duration("deregister_after", self.deregister_after)?;
        let spec = InstanceSpec {
            ipv4,
            ipv6,
            port,
            attributes: self.attributes,
            healthy: self.healthy,
            extras: SpecExtras {
                ports: self.ports,
                heartbeat_ttl,
                check: self.check.map(Arc::new),
                deregister_after,
                ..SpecExtras::default()
            }
            .into(),
        };
        health_bounds(&spec)?;
        Ok(spec)
    }
}
