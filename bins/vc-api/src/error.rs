//! The API's one error type, mapped to the wire exactly once (`{"error", "code"}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vc_shared::command::OutcomeError;
use vc_shared::error::{DomainError, ErrorCode};

/// An error answered to a REST client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Code (and so status).
    pub code: ErrorCode,
    /// Message naming the field or thing; never internals, never a secret.
    pub message: String,
}

impl ApiError {
    /// An error of the given code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    /// 503.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, m)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<OutcomeError> for ApiError {
    fn from(e: OutcomeError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<vc_shared::store::StoreError> for ApiError {
    fn from(e: vc_shared::store::StoreError) -> Self {
        tracing::warn!(error = %e, "Store unavailable.");
        Self::unavailable("state store unavailable, retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if self.code == ErrorCode::Internal {
            "internal error".to_string()
        } else {
            self.message
        };
        (
            status,
            axum::Json(serde_json::json!({"error": message, "code": self.code.as_str()})),
        )
            .into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
