//! Errors as the API shows them: JSON `{error, detail}` with the status that fits.
//! Caller mistakes are 4xx and commit nothing; 500 is kept for real faults, which are
//! logged with their whole cause chain.

use annal_engine::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An API error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable code.
    pub error: &'static str,
    /// Human-readable detail naming the field and the reason.
    pub detail: String,
}

impl ApiError {
    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: "bad_request", detail: detail.into() }
    }

    /// 500 for a fault; the cause is logged here, the client gets a short detail.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        let detail = crate::report(error);
        tracing::error!(error = %detail, "request failed");
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, error: "internal", detail }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match &error {
            Error::Invalid(e) => Self::bad_request(e.to_string()),
            Error::IndexNotFound { .. } => {
                Self { status: StatusCode::NOT_FOUND, error: "not_found", detail: error.to_string() }
            }
            Error::IndexExists { .. } => {
                Self { status: StatusCode::CONFLICT, error: "conflict", detail: error.to_string() }
            }
            _ => Self::internal(&error),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "detail": self.detail });
        (self.status, Json(body)).into_response()
    }
}
