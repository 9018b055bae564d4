//! Errors as HTTP answers: a 4xx/5xx with `{"error": "...", "field": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::registry::{ChangeError, FieldError, Limit};

/// An API failure; nothing was applied.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: field.map(ToOwned::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(field) => json!({"error": self.message, "field": field}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some(error.field),
            error.to_string(),
        )
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        let (status, field) = match &error {
            ChangeError::NamespaceNotFound(_) => (StatusCode::NOT_FOUND, Some("namespace")),
            ChangeError::ServiceNotFound { .. } => (StatusCode::NOT_FOUND, Some("service")),
            ChangeError::InstanceNotFound(_) => (StatusCode::NOT_FOUND, Some("id")),
            ChangeError::OwnedByOther { .. } => (StatusCode::CONFLICT, Some("id")),
            ChangeError::NamespaceExists(_) => (StatusCode::CONFLICT, Some("namespace")),
            ChangeError::ServiceExists { .. } => (StatusCode::CONFLICT, Some("service")),
            ChangeError::InUse(_) => (StatusCode::CONFLICT, None),
            ChangeError::Invalid(_) | ChangeError::TooLarge(_) => (StatusCode::BAD_REQUEST, None),
            ChangeError::LimitExceeded {
                limit: Limit::AttributeBytes,
                ..
            } => (StatusCode::BAD_REQUEST, Some("attributes")),
            // The state, not the request, is in the way: the same write may pass later.
            ChangeError::LimitExceeded { limit, .. } => (StatusCode::CONFLICT, Some(limit.key())),
            ChangeError::ShuttingDown | ChangeError::Storage(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
        };
        Self::new(status, field, error.to_string())
    }
}
