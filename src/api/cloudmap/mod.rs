//! The AWS Cloud Map API (`servicediscovery`, AWS JSON 1.1) on the HTTP port, so the AWS
//! CLI and SDKs work against muster with `--endpoint-url`.
//!
//! Every call is `POST /` with `X-Amz-Target: Route53AutoNaming_v20170314.<Operation>`;
//! shapes and errors follow botocore's model (`shared/reference/cloudmap-api-model.json`).
//! Writes become registry `Change`s logged before they are answered, exactly like the
//! REST API's, so both APIs and the config file describe one model. Operations complete
//! synchronously: `OperationId`s are recorded with status `SUCCESS` ([`operations`]).
//! Requests are not authenticated (signatures are ignored): bind the HTTP port to a
//! trusted network.

mod discover;
mod error;
mod input;
mod instances;
mod namespaces;
mod operations;
mod services;
mod shapes;
mod tags;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
pub use error::CloudMapError;
pub use operations::Operations;

const TARGET_PREFIX: &str = "Route53AutoNaming_v20170314.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `POST /`: dispatches on `X-Amz-Target`.
pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = match operation(&headers) {
        Ok(operation) => match input::parse(&body) {
            Ok(input) => dispatch(&state, operation, input).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    let (status, body) = match result {
        Ok(body) => (axum::http::StatusCode::OK, body),
        Err(error) => (error.status(), error.body()),
    };
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
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
        "ListNamespaces" => namespaces::list(state, input),
        "UpdatePrivateDnsNamespace" | "UpdatePublicDnsNamespace" | "UpdateHttpNamespace" => {
            namespaces::update(state, input).await
        }
        "DeleteNamespace" => namespaces::delete(state, input).await,
        "CreateService" => services::create(state, input).await,
        "GetService" => services::get(state, input),
        "ListServices" => services::list(state, input),
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
        "ListOperations" => operations::list(state, input),
        "TagResource" => tags::tag(state, input).await,
        "UntagResource" => tags::untag(state, input).await,
        "ListTagsForResource" => tags::list(state, input),
        other => Err(CloudMapError::unknown_operation(&format!(
            "{other:?} is not a Cloud Map operation"
        ))),
    }
}
