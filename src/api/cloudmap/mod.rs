//! The AWS Cloud Map API (`servicediscovery`, AWS JSON 1.1) on the HTTP port, so the AWS
//! CLI and SDKs work against muster with `--endpoint-url`.
//!
//! Every call is `POST /` with `X-Amz-Target: Route53AutoNaming_v20170314.<Operation>`;
//! shapes and errors follow botocore's model (`shared/reference/cloudmap-api-model.json`).
//! Writes become registry `Change`s logged before they are answered, exactly like the
//! REST API's, so both APIs and the config file describe one model. Operations complete
//! synchronously: `OperationId`s are recorded with status `SUCCESS` ([`operations`]).
//! Every request is authenticated (AWS Signature Version 4, `api::auth`) and
//! authorized per operation and namespace ([`access`]) before it is read; writes draw
//! from the principal's write bucket and are audited.

mod access;
mod discover;
mod error;
mod input;
mod instances;
mod namespaces;
mod operations;
mod services;
mod shapes;
mod tags;

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use super::auth::{Auth, BucketKey, Credentials, Principal, audit, sigv4};
pub use access::OPERATIONS;
pub use error::CloudMapError;
pub use operations::Operations;

const TARGET_PREFIX: &str = "Route53AutoNaming_v20170314.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The service name in SigV4 credential scopes.
const SERVICE: &str = "servicediscovery";
/// The `api` label of metrics and audit lines.
const API: &str = "cloudmap";

/// `POST /`: authenticates, dispatches on `X-Amz-Target`, and answers in AWS's shapes.
pub async fn handle(
    State(state): State<ApiState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = serve(&state, source, &method, &uri, &headers, &body).await;
    match result {
        Ok(body) => json_response(axum::http::StatusCode::OK, &body),
        Err(error) => error.response(error.status()),
    }
}

/// An answer of the AWS JSON 1.1 protocol.
fn json_response(status: axum::http::StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Reads are answered for an authenticated principal; writes also draw from the write
/// bucket (the source's when the request did not authenticate) and are audited.
async fn serve(
    state: &ApiState,
    source: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, CloudMapError> {
    let credentials = state.auth.credentials();
    let signed = authenticate(state, &credentials, method, uri, headers, body);
    let named = operation(headers);
    let known = named.as_ref().ok().and_then(|name| access::operation(name));
    let writes = matches!(known, Some((_, true)));
    if signed.is_err() && !writes {
        // A request that fails authentication costs its source a write whatever it asks
        // for (a write draws below, audited): no client tries keys faster than the rate.
        let bucket = BucketKey::source(source.ip());
        if state.auth.take_write(&credentials, bucket, API).is_err() {
            return Err(rate_exceeded());
        }
    }
    let operation = match known {
        Some((operation, true)) => operation,
        Some((operation, false)) => return call(state, &signed?, operation, body).await.0,
        None => {
            signed?;
            return Err(named
                .err()
                .unwrap_or_else(|| CloudMapError::unknown_operation("not a Cloud Map operation")));
        }
    };
    let anonymous = Principal::Anonymous;
    let principal = signed.as_ref().unwrap_or(&anonymous);
    let bucket = match &signed {
        Ok(principal) => principal.bucket(source.ip()),
        Err(_) => BucketKey::source(source.ip()),
    };
    let mut write = audit::Write {
        api: API,
        principal,
        source,
        operation,
        resource: "-",
    };
    if let Err(throttled) = state.auth.take_write(&credentials, bucket, API) {
        if let Some(count) = throttled.report {
            write.record_throttled(count);
        }
        return Err(rate_exceeded());
    }
    let (result, resource) = match &signed {
        Ok(principal) => call(state, principal, operation, body).await,
        Err(error) => (Err(error.clone()), "-".to_owned()),
    };
    write.resource = &resource;
    match &result {
        Ok(_) => write.record(200, None),
        Err(error) => write.record(error.status().as_u16(), Some(error.kind)),
    }
    result
}

fn rate_exceeded() -> CloudMapError {
    CloudMapError::new("ThrottlingException", "Rate exceeded")
}

/// The principal that signed the request, or the AWS error that says why none did.
fn authenticate(
    state: &ApiState,
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, CloudMapError> {
    let request = sigv4::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers,
        body,
    };
    let expected = sigv4::Expected {
        region: &state.cloudmap.config.region,
        service: SERVICE,
        signed: &["x-amz-target"],
        now: SystemTime::now(),
    };
    Auth::sigv4(credentials, &request, &expected).map_err(|error| {
        let (kind, reason) = match &error {
            sigv4::SigError::Missing => ("MissingAuthenticationTokenException", "missing"),
            sigv4::SigError::Incomplete(_) => ("IncompleteSignatureException", "malformed"),
            sigv4::SigError::UnknownKey => ("UnrecognizedClientException", "unknown_credential"),
            sigv4::SigError::Expired(_) => ("InvalidSignatureException", "expired"),
            sigv4::SigError::Invalid(_) | sigv4::SigError::Mismatch => {
                ("InvalidSignatureException", "signature")
            }
        };
        state.auth.metrics.denied(API, reason);
        CloudMapError::new(kind, error.to_string())
    })
}

/// Parses, authorizes and runs `operation` for `principal`; also returns what it acted
/// on, for the audit log.
async fn call(
    state: &ApiState,
    principal: &Principal,
    operation: &'static str,
    body: &[u8],
) -> (Result<Value, CloudMapError>, String) {
    let input = match input::parse(body) {
        Ok(input) => input,
        Err(error) => return (Err(error), "-".to_owned()),
    };
    let target = {
        let snapshot = state.registry.snapshot();
        access::target(operation, &input, &snapshot, &state.cloudmap.operations)
    };
    if let Err(error) = access::authorize(principal, operation, &target) {
        state.auth.metrics.denied(API, "forbidden");
        return (Err(error), target.resource);
    }
    let result = dispatch(state, operation, input, principal).await;
    (result, target.resource)
}

fn operation(headers: &HeaderMap) -> Result<&str, CloudMapError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CloudMapError::unknown_operation("missing X-Amz-Target header"))?;
    target.strip_prefix(TARGET_PREFIX).ok_or_else(|| {
        CloudMapError::unknown_operation(&format!("{target:?} is not a Cloud Map operation"))
    })
}

async fn dispatch(
    state: &ApiState,
    operation: &str,
    input: input::Input,
    principal: &Principal,
) -> Result<Value, CloudMapError> {
    match operation {
        "CreatePrivateDnsNamespace" => {
            namespaces::create(state, input, crate::registry::NamespaceKind::DnsPrivate).await
        }
        "CreatePublicDnsNamespace" => {
            namespaces::create(state, input, crate::registry::NamespaceKind::DnsPublic).await
        }
        "CreateHttpNamespace" => {
            namespaces::create(state, input, crate::registry::NamespaceKind::Http).await
        }
        "GetNamespace" => namespaces::get(state, input),
        "ListNamespaces" => namespaces::list(state, input, principal),
        "UpdatePrivateDnsNamespace" | "UpdatePublicDnsNamespace" | "UpdateHttpNamespace" => {
            namespaces::update(state, input).await
        }
        "DeleteNamespace" => namespaces::delete(state, input).await,
        "CreateService" => services::create(state, input).await,
        "GetService" => services::get(state, input),
        "ListServices" => services::list(state, input, principal),
        "UpdateService" => services::update(state, input).await,
        "DeleteService" => services::delete(state, input).await,
        "GetServiceAttributes" => services::get_attributes(state, input),
        "UpdateServiceAttributes" => services::update_attributes(state, input).await,
        "DeleteServiceAttributes" => services::delete_attributes(state, input).await,
        "RegisterInstance" => instances::register(state, input).await,
        "DeregisterInstance" => instances::deregister(state, input).await,
        "GetInstance" => instances::get(state, input),
        "ListInstances" => instances::list(state, input),
        "GetInstancesHealthStatus" => instances::health_status(state, input),
        "UpdateInstanceCustomHealthStatus" => instances::update_health(state, input).await,
        "DiscoverInstances" => discover::instances(state, input),
        "DiscoverInstancesRevision" => discover::revision(state, input),
        "GetOperation" => operations::get(state, input),
        "ListOperations" => operations::list(state, input, principal),
        "TagResource" => tags::tag(state, input).await,
        "UntagResource" => tags::untag(state, input).await,
        "ListTagsForResource" => tags::list(state, input),
        other => Err(CloudMapError::unknown_operation(&format!(
            "{other:?} is not a Cloud Map operation"
        ))),
    }
}
