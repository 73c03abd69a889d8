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
    /// Refused by the API's own access control (401, or a 403 of an `Actor::require_*` check): the
    /// response carries an [`AccessDenied`] extension and is recorded as `auth.failed`. A domain 403 from
    /// the worker (e.g. "not a member of realm") is not an access failure.
    pub access_denied: bool,
}

/// Response extension of an access failure: what [`crate::access`] records as `auth.failed`.
#[derive(Debug, Clone)]
pub struct AccessDenied {
    /// Why (never token material).
    pub reason: String,
}

impl ApiError {
    /// An error of the given code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            access_denied: false,
        }
    }
    /// 401 (recorded as an access failure).
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self {
            access_denied: true,
            ..Self::new(ErrorCode::Unauthorized, m)
        }
    }
    /// 403 of the API's access control (recorded as an access failure).
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self {
            access_denied: true,
            ..Self::new(ErrorCode::Forbidden, m)
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
        Self::new(e.code, e.message)
    }
}

impl From<OutcomeError> for ApiError {
    fn from(e: OutcomeError) -> Self {
        Self::new(e.code, e.message)
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
        let denied = self.access_denied.then(|| AccessDenied {
            reason: message.clone(),
        });
        let mut resp = (
            status,
            axum::Json(serde_json::json!({"error": message, "code": self.code.as_str()})),
        )
            .into_response();
        if let Some(d) = denied {
            resp.extensions_mut().insert(d);
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
