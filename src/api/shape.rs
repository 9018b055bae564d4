//! Which API a request is for, and errors in that API's shape.
//!
//! Requests to `/` and requests with `X-Amz-Target` are the Cloud Map API's; everything
//! else is the REST API's (`/readyz` and `/metrics` answer their own failures in text,
//! marked [`OwnShape`]).
//! Errors that axum produces before a handler runs — no route (404), wrong method
//! (405), body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) (413), a path that does not
//! decode (400) — are rewritten here into the API's JSON:
//!
//! | status | REST `{"error", "field"}` | Cloud Map `{"__type", "Message"}` |
//! |---|---|---|
//! | 400 | field `path` | `InvalidInput` |
//! | 403 | field `Host` (rebinding check) | `AccessDeniedException` |
//! | 404 | — | `UnknownOperationException` |
//! | 405 | — | `UnknownOperationException` |
//! | 413 | field `body` | `RequestEntityTooLargeException` |
//! | 415 | field `Content-Type` | `UnsupportedMediaTypeException` |
//!
//! The statuses are those of AWS's own servers for the AWS JSON protocol (smithy-rs
//! answers 404 `UnknownOperationException` for a path other than `/` or an unknown
//! target, 405 for a method other than POST, 415 `UnsupportedMediaTypeException` for
//! another Content-Type).

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::cloudmap::CloudMapError;
use super::error::ApiError;

/// Marks an error answer a handler shaped itself on purpose (`/readyz` says in text why
/// it is not ready), so it is left as it is.
#[derive(Clone, Copy, Debug)]
pub struct OwnShape;

/// The API a request is for; it decides the shape of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Rest,
    CloudMap,
}

impl Api {
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Self {
        if uri.path() == "/" || headers.contains_key("x-amz-target") {
            Self::CloudMap
        } else {
            Self::Rest
        }
    }

    /// An error answer in this API's shape. `field` names the part of the request at
    /// fault, for the REST shape.
    pub fn error(self, status: StatusCode, field: Option<&str>, message: String) -> Response {
        match self {
            Self::Rest => ApiError::new(status, field, message).into_response(),
            Self::CloudMap => CloudMapError::new(cloudmap_type(status), message).response(status),
        }
    }
}

/// The Cloud Map error type for a status muster answers before an operation runs.
fn cloudmap_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "AccessDeniedException",
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => "UnknownOperationException",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLargeException",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaTypeException",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        status if status.is_server_error() => "InternalFailure",
        _ => "InvalidInput",
    }
}

/// The longest text of an axum rejection carried into the JSON message.
const MAX_REJECTION_TEXT: usize = 1024;

/// `response` unchanged if it is a success or already JSON; otherwise the same status
/// with the API's JSON error (the `Allow` header of a 405 is kept).
pub async fn json_errors(api: Api, method: &Method, path: &str, response: Response) -> Response {
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let own = response.extensions().get::<OwnShape>().is_some();
    if !is_error || own || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = rejection_text(body, status).await;
    let (field, message) = match status {
        StatusCode::NOT_FOUND => (None, format!("no such path: {path}")),
        StatusCode::METHOD_NOT_ALLOWED => (None, format!("{method} is not allowed on {path}")),
        StatusCode::PAYLOAD_TOO_LARGE => return body_too_large(api),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (Some("Content-Type"), text),
        StatusCode::BAD_REQUEST => (Some("path"), text),
        _ => (None, text),
    };
    let mut mapped = api.error(status, field, message);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        mapped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    mapped
}

/// 413 for a body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
pub fn body_too_large(api: Api) -> Response {
    let message = format!(
        "the request body is larger than {} bytes",
        super::MAX_BODY_BYTES
    );
    api.error(StatusCode::PAYLOAD_TOO_LARGE, Some("body"), message)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/x-amz-json")
        })
}

/// The text axum put in a rejection (its reason), or the status's name when empty.
async fn rejection_text(body: Body, status: StatusCode) -> String {
    match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(bytes) if !bytes.trim_ascii().is_empty() => {
            String::from_utf8_lossy(bytes.trim_ascii()).into_owned()
        }
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(uri: &str, target: bool) -> Api {
        let mut headers = HeaderMap::new();
        if target {
            headers.insert(
                "x-amz-target",
                "Route53AutoNaming_v20170314.ListNamespaces"
                    .parse()
                    .unwrap(),
            );
        }
        Api::of(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn cloud_map_is_slash_or_a_target() {
        assert_eq!(api("/", false), Api::CloudMap);
        assert_eq!(api("/?x=1", false), Api::CloudMap);
        assert_eq!(api("/v1/namespaces", true), Api::CloudMap);
        assert_eq!(api("/v1/namespaces", false), Api::Rest);
        assert_eq!(api("/nope", false), Api::Rest);
    }
}
