//! Typed errors shared by every service.
//!
//! [`ErrorCode`] is the stable, wire-visible classification of a failure (REST `code`, NATS outcome
//! `error.code`, WebSocket `error.code`). [`DomainError`] is a refusal of a request or command by the
//! rules of the domain: it always names the field or the thing that is wrong, and never carries a secret.

use serde::{Deserialize, Serialize};

/// The error codes of the contract, with the HTTP status each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed or invalid input.
    BadRequest,
    /// 401: missing or wrong credentials.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: the thing does not exist.
    NotFound,
    /// 409: the thing clashes with an existing one.
    Conflict,
    /// 413: body over the size limit.
    PayloadTooLarge,
    /// 415: body is not JSON.
    UnsupportedMediaType,
    /// 429: the caller's token is over its request rate or has too many requests in flight.
    TooManyRequests,
    /// 503: a dependency (NATS, Redis) is unavailable, or the service is draining.
    Unavailable,
    /// 500: an internal failure. Never carries details to the client.
    Internal,
}

impl ErrorCode {
    /// The HTTP status code for this error code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code as it appears on the wire (`"BAD_REQUEST"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::TooManyRequests => "TOO_MANY_REQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A request or command refused by the rules of the domain.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{code:?}: {message}")]
pub struct DomainError {
    /// Classification, stable across versions.
    pub code: ErrorCode,
    /// Human-readable message naming the field or thing at fault.
    pub message: String,
}

impl DomainError {
    /// A 400 naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
    /// A 404 naming what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }
    /// A 409 naming the clash.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Conflict,
            message: message.into(),
        }
    }
    /// A 403 naming what is not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }
}

/// Result of domain validation and command application.
pub type DomainResult<T> = Result<T, DomainError>;
