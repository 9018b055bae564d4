//! Who may call which route on the HTTP listener: the guard in front of every route.
//!
//! | route | needs |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | nothing |
//! | `GET /metrics` | `read` on everything |
//! | `GET /ui/...` (the status pages) | `read` on everything |
//! | `POST /` (Cloud Map) | a SigV4 signature, checked by the Cloud Map handler |
//! | `GET /v1/namespaces` | some `read` scope; lists what the token may read |
//! | `GET /v1/namespaces/{ns}/services` | `read` in `ns`; lists what it may read |
//! | `GET /v1/namespaces/{ns}/services/{svc}` | `read` on `ns/svc` |
//! | `GET /v1/watch` | some `read` scope; the stream checks and filters what it sends |
//! | `PUT`, `DELETE .../instances/{id}` | `register` on `ns/svc` |
//! | `POST /v1/namespaces/{ns}/batch` | `register` in `ns`; the handler checks each item's service and draws one write per change |
//! | `PUT`, `DELETE .../instances/{id}/drain` | `register` on `ns/svc` |
//! | `PUT .../instances/{id}/health`, `.../heartbeat` | `health` on `ns/svc` |
//! | any other route | `admin` |
//!
//! A missing or unknown token is 401 with `WWW-Authenticate: Bearer`, a missing scope
//! 403, both in the REST error shape. Writes (all but heartbeats, which renew a timer)
//! draw from the write bucket first (429 with `Retry-After` when it is empty) and are
//! audited with their answer's status. So does a request on any route that fails to
//! authenticate, from its source's bucket: no client tries tokens faster than the write
//! rate, whichever route it tries them on. The handlers find the [`Principal`] in the
//! request's extensions, to filter the lists.

use std::net::SocketAddr;

use axum::RequestPartsExt;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::{Auth, BearerError, BucketKey, Principal, ScopeKind, audit};
use super::error::ApiError;

const API: &str = "rest";

/// What a route needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    Nothing,
    /// The Cloud Map handler authenticates its own requests.
    Signature,
    /// `read` with no limit.
    ReadAll,
    /// Some `read` scope (the handler filters).
    ReadAny,
    /// `read` in the namespace (the handler filters services).
    ReadIn,
    /// `read` on the service.
    Read,
    /// A write with this scope, audited as `operation`.
    Write(ScopeKind, &'static str),
    /// A heartbeat: `health`, not rate limited, audited at DEBUG when accepted.
    Heartbeat,
    /// A REST batch: `register` in the namespace here; the handler checks each item's
    /// service and draws one write per change, which it counts only once it has read them.
    Batch,
    Admin,
}

fn need(method: &Method, route: &str) -> Need {
    const INSTANCE: &str = "/v1/namespaces/{ns}/services/{svc}/instances/{id}";
    match (method.as_str(), route) {
        ("GET", "/healthz" | "/readyz") => Need::Nothing,
        ("POST", "/") => Need::Signature,
        ("GET", "/metrics") => Need::ReadAll,
        ("GET", route) if route == "/ui" || route.starts_with("/ui/") => Need::ReadAll,
        ("GET", "/v1/namespaces" | "/v1/watch") => Need::ReadAny,
        ("GET", "/v1/namespaces/{ns}/services") => Need::ReadIn,
        ("GET", "/v1/namespaces/{ns}/services/{svc}") => Need::Read,
        ("PUT", INSTANCE) => Need::Write(ScopeKind::Register, "register"),
        ("POST", "/v1/namespaces/{ns}/batch") => Need::Batch,
        ("DELETE", INSTANCE) => Need::Write(ScopeKind::Register, "deregister"),
        ("PUT", route) if route.strip_prefix(INSTANCE) == Some("/health") => {
            Need::Write(ScopeKind::Health, "set_health")
        }
        ("PUT", route) if route.strip_prefix(INSTANCE) == Some("/heartbeat") => Need::Heartbeat,
        ("PUT", route) if route.strip_prefix(INSTANCE) == Some("/drain") => {
            Need::Write(ScopeKind::Register, "drain")
        }
        ("DELETE", route) if route.strip_prefix(INSTANCE) == Some("/drain") => {
            Need::Write(ScopeKind::Register, "undrain")
        }
        _ => Need::Admin,
    }
}

/// The guard (an axum `route_layer`): authenticates, authorizes, limits and audits.
pub async fn guard(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let need = need(&parts.method, &route);
    if matches!(need, Need::Nothing | Need::Signature) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    // The captures as they are (percent-decoded), without a map of owned strings: this
    // runs for every request.
    let params = parts.extract::<RawPathParams>().await.ok();
    let capture = |name| param(params.as_ref(), name);
    let namespace = capture("ns")
        .map(|ns| ns.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let service = capture("svc")
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let credentials = state.auth.credentials();
    let authenticated = Auth::bearer(&credentials, &parts.headers);
    if let Err(error) = &authenticated {
        let reason = match error {
            BearerError::Missing => "missing",
            BearerError::Unknown => "unknown_credential",
        };
        state.auth.metrics.denied(API, reason);
    }
    let (kind, operation) = match need {
        Need::Write(kind, operation) => (kind, operation),
        Need::Heartbeat => (ScopeKind::Health, "heartbeat"),
        Need::Batch => (ScopeKind::Register, "batch"),
        read => {
            let principal = match authenticated {
                Ok(principal) => principal,
                Err(error) => {
                    let bucket = BucketKey::source(source.ip());
                    if let Err(throttled) = state.auth.take_write(&credentials, bucket, API) {
                        return too_many(throttled.retry_after);
                    }
                    return unauthenticated(error);
                }
            };
            if !may_read(&principal, &read, &namespace, &service) {
                state.auth.metrics.denied(API, "forbidden");
                return forbidden(&principal, "read", &namespace, &service);
            }
            parts.extensions.insert(principal);
            return next.run(Request::from_parts(parts, body)).await;
        }
    };
    let anonymous = Principal::Anonymous;
    let principal = authenticated.as_ref().unwrap_or(&anonymous);
    let resource = format!("{namespace}/{service}/{}", capture("id").unwrap_or("-"));
    let write = audit::Write {
        api: API,
        principal,
        source,
        operation,
        resource: &resource,
    };
    // An authenticated batch draws one per change in its handler, once it has read them.
    let exempt = matches!(need, Need::Heartbeat | Need::Batch) && authenticated.is_ok();
    if !exempt {
        let bucket = match &authenticated {
            Ok(principal) => principal.bucket(source.ip()),
            Err(_) => BucketKey::source(source.ip()),
        };
        if let Err(throttled) = state.auth.take_write(&credentials, bucket, API) {
            if let Some(count) = throttled.report {
                write.record_throttled(count);
            }
            return too_many(throttled.retry_after);
        }
    }
    let response = match &authenticated {
        Err(error) => unauthenticated(*error),
        Ok(principal) if !may_write(principal, &need, kind, &namespace, &service) => {
            state.auth.metrics.denied(API, "forbidden");
            forbidden(principal, operation, &namespace, &service)
        }
        Ok(principal) => {
            parts.extensions.insert(principal.clone());
            next.run(Request::from_parts(parts, body)).await
        }
    };
    let status = response.status();
    match error_kind(status) {
        None if need == Need::Heartbeat => write.record_routine(status.as_u16()),
        None => write.record(status.as_u16(), None),
        Some(kind) => write.record(status.as_u16(), Some(kind)),
    }
    response
}

/// The capture `name` of the route, if it has one.
fn param<'a>(params: Option<&'a RawPathParams>, name: &str) -> Option<&'a str> {
    params?
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

fn may_write(
    principal: &Principal,
    need: &Need,
    kind: ScopeKind,
    namespace: &str,
    service: &str,
) -> bool {
    match need {
        Need::Batch => principal.may_in(kind, namespace),
        _ => principal.may(kind, namespace, service),
    }
}

fn may_read(principal: &Principal, need: &Need, namespace: &str, service: &str) -> bool {
    match (principal, need) {
        (Principal::Anonymous, _) => true,
        (Principal::Token(token), Need::ReadAll) => token.allows_everywhere(ScopeKind::Read),
        (Principal::Token(token), Need::ReadAny) => token.has(ScopeKind::Read),
        (principal, Need::ReadIn) => principal.may_in(ScopeKind::Read, namespace),
        (principal, Need::Read) => principal.may(ScopeKind::Read, namespace, service),
        (principal, _) => principal.may(ScopeKind::Admin, namespace, service),
    }
}

fn unauthenticated(error: BearerError) -> Response {
    let (message, challenge) = match error {
        BearerError::Missing => (
            "authentication required: send Authorization: Bearer <token>",
            r#"Bearer realm="muster""#,
        ),
        BearerError::Unknown => (
            "the bearer token is not valid",
            r#"Bearer realm="muster", error="invalid_token""#,
        ),
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, Some("Authorization"), message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn forbidden(principal: &Principal, what: &str, namespace: &str, service: &str) -> Response {
    let on = match (namespace, service) {
        ("", _) => "this route".to_owned(),
        (namespace, "") => format!("namespace {namespace:?}"),
        (namespace, service) => format!("{:?}", format!("{namespace}/{service}")),
    };
    let mut response = ApiError::new(
        StatusCode::FORBIDDEN,
        None,
        format!("{principal} has no scope for {what} on {on}"),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="muster", error="insufficient_scope""#),
    );
    response
}

/// 429 with `Retry-After`: the caller's write bucket is empty.
pub(super) fn too_many(retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        format!("too many writes: try again in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The audit log's `error` for a REST answer; none for a success.
fn error_kind(status: StatusCode) -> Option<&'static str> {
    if status.is_success() {
        return None;
    }
    Some(match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "error",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_need() {
        let instance = "/v1/namespaces/{ns}/services/{svc}/instances/{id}";
        let get = Method::GET;
        assert_eq!(need(&get, "/healthz"), Need::Nothing);
        assert_eq!(need(&get, "/metrics"), Need::ReadAll);
        assert_eq!(need(&get, "/ui/"), Need::ReadAll);
        assert_eq!(
            need(&get, "/ui/namespaces/{ns}/services/{svc}"),
            Need::ReadAll
        );
        assert_eq!(need(&get, "/uix"), Need::Admin);
        assert_eq!(need(&Method::POST, "/"), Need::Signature);
        assert_eq!(need(&get, "/v1/namespaces"), Need::ReadAny);
        assert_eq!(need(&get, "/v1/watch"), Need::ReadAny);
        assert_eq!(
            need(&Method::PUT, instance),
            Need::Write(ScopeKind::Register, "register")
        );
        assert_eq!(
            need(&Method::DELETE, instance),
            Need::Write(ScopeKind::Register, "deregister")
        );
        assert_eq!(
            need(&Method::PUT, &format!("{instance}/health")),
            Need::Write(ScopeKind::Health, "set_health")
        );
        assert_eq!(
            need(&Method::PUT, &format!("{instance}/heartbeat")),
            Need::Heartbeat
        );
        assert_eq!(
            need(&Method::DELETE, &format!("{instance}/drain")),
            Need::Write(ScopeKind::Register, "undrain")
        );
        assert_eq!(
            need(&Method::POST, "/v1/namespaces/{ns}/batch"),
            Need::Batch
        );
        assert_eq!(need(&Method::PUT, "/v1/something/new"), Need::Admin);
    }
}
