//! Errors in OpenAI's shape, converted to responses by type.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kokon_proto::{ErrorCode, JobError};
use serde_json::json;

/// An API error: HTTP status plus OpenAI's `{"error": {...}}` body.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(param: Option<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: "invalid_request",
            param,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: "invalid_api_key",
            param: None,
            message: "missing or wrong API key: send `Authorization: Bearer <key>`".into(),
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            code: "request_too_large",
            param: None,
            message: format!("request body exceeds {limit} bytes"),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: "unavailable",
            param: None,
            message: message.into(),
        }
    }

    /// The JSON body (also used for error events inside a stream).
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let (status, kind) = match e.code {
            ErrorCode::ModelNotFound => (StatusCode::NOT_FOUND, "invalid_request_error"),
            ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ErrorCode::Busy => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            ErrorCode::OverPrice => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            ErrorCode::Unavailable | ErrorCode::WorkerUnavailable | ErrorCode::StaleCandidates => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error")
            }
            ErrorCode::WorkerFailedMidStream | ErrorCode::EngineFailed => {
                (StatusCode::BAD_GATEWAY, "server_error")
            }
            ErrorCode::Incompatible => (StatusCode::BAD_GATEWAY, "server_error"),
            ErrorCode::Cancelled => (StatusCode::REQUEST_TIMEOUT, "server_error"),
            ErrorCode::PaymentRequired => (StatusCode::PAYMENT_REQUIRED, "insufficient_quota"),
            ErrorCode::ReceiptRejected => (StatusCode::BAD_GATEWAY, "server_error"),
            ErrorCode::DuplicateRequest => (StatusCode::CONFLICT, "invalid_request_error"),
            ErrorCode::OverBudget => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        };
        Self {
            status,
            kind,
            code: e.code.as_str(),
            param: None,
            message: e.message,
        }
    }
}

/// What a 503 tells clients: try again in a second (OpenAI clients retry
/// 503s, and honour this header).
const RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        r
    }
}
