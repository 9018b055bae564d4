//! Cloud Map errors: `{"__type": "ServiceNotFound", "Message": "..."}` with the HTTP
//! status the API model gives each error.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::registry::{ChangeError, Limit};

/// An error answer; nothing was changed.
#[derive(Clone, Debug)]
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

    /// The status Cloud Map uses for this error (Smithy `httpError`). Authentication
    /// and authorization errors (`UnrecognizedClientException`, `InvalidSignatureException`,
    /// `IncompleteSignatureException`, `MissingAuthenticationTokenException`,
    /// `AccessDeniedException`) are 400, as AWS's JSON 1.1 services answer them;
    /// `ThrottlingException` is 429, which the SDKs retry (by its code, and by the status
    /// in botocore's legacy mode).
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
            "RequestLimitExceeded" | "ThrottlingException" => StatusCode::TOO_MANY_REQUESTS,
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> Value {
        json!({"__type": self.kind, "Message": self.message})
    }

    /// This error as an answer with `status` (its own, [`Self::status`], or the one of
    /// the HTTP failure it stands for).
    pub fn response(&self, status: StatusCode) -> Response {
        super::json_response(status, &self.body())
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
            ChangeError::Invalid(_) | ChangeError::TooLarge(_) => "InvalidInput",
            ChangeError::LimitExceeded { limit, .. } => match limit {
                Limit::Tags => "TooManyTagsException",
                Limit::ServiceAttributes => "ServiceAttributesLimitExceededException",
                Limit::AttributeBytes => "InvalidInput",
                Limit::Namespaces
                | Limit::ServicesPerNamespace
                | Limit::InstancesPerService
                | Limit::Instances => "ResourceLimitExceeded",
            },
            ChangeError::ShuttingDown | ChangeError::Storage(_) => "ServiceUnavailable",
        };
        Self::new(kind, error.to_string())
    }
}
