//! Cloud Map errors: `{"__type": "ServiceNotFound", "Message": "..."}` with the HTTP
//! status the API model gives each error.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::registry::ChangeError;

/// An error answer; nothing was changed.
#[derive(Debug)]
pub struct CloudMapError {
    pub kind: &'static str,
    pub message: String,
}

impl CloudMapError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidInput", message)
    }

    pub fn unknown_operation(message: &str) -> Self {
        Self::new("UnknownOperationException", message)
    }

    /// The status Cloud Map uses for this error (Smithy `httpError`).
    pub fn status(&self) -> StatusCode {
        match self.kind {
            "NamespaceNotFound"
            | "ServiceNotFound"
            | "InstanceNotFound"
            | "OperationNotFound"
            | "CustomHealthNotFound"
            | "ResourceNotFoundException"
            | "UnknownOperationException" => StatusCode::NOT_FOUND,
            "DuplicateRequest" | "ResourceInUse" => StatusCode::CONFLICT,
            "RequestLimitExceeded" => StatusCode::TOO_MANY_REQUESTS,
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> Value {
        json!({"__type": self.kind, "Message": self.message})
    }
}

impl From<ChangeError> for CloudMapError {
    fn from(error: ChangeError) -> Self {
        let kind = match &error {
            ChangeError::NamespaceNotFound(_) => "NamespaceNotFound",
            ChangeError::NamespaceExists(_) => "NamespaceAlreadyExists",
            ChangeError::ServiceNotFound { .. } => "ServiceNotFound",
            ChangeError::ServiceExists { .. } => "ServiceAlreadyExists",
            ChangeError::InstanceNotFound(_) => "InstanceNotFound",
            ChangeError::OwnedByOther { .. } | ChangeError::InUse(_) => "ResourceInUse",
            ChangeError::Invalid(_) => "InvalidInput",
            ChangeError::ShuttingDown | ChangeError::Storage(_) => "ServiceUnavailable",
        };
        Self::new(kind, error.to_string())
    }
}
