//! Request extractors that answer with the contract's JSON errors.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::Value;
use vc_shared::error::ErrorCode;

use crate::error::ApiError;
use crate::{Actor, AppState};

/// Request body limit (contract: 1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// An optional JSON body: 415 if it is not JSON, 413 over 1 MiB, 400 if malformed. An empty body is `None`.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge, "body is larger than 1 MiB"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        match content_type {
            Some(ct) if ct.starts_with("application/json") || ct.contains("+json") => {}
            _ => {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                ))
            }
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::bad_request("body must be a JSON object"));
        }
        Ok(JsonBody(Some(v)))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Set by `access::guard` for every `/api` request; authenticate here only when the router is
        // used without it.
        if let Some(a) = parts.extensions.get::<Actor>() {
            return Ok(a.clone());
        }
        crate::auth::authenticate(&parts.headers, state).await
    }
}

/// Path parameters; a segment that does not decode (`%FF`, not UTF-8) is a 400 `BAD_REQUEST` JSON
/// error naming the problem, not axum's plain-text rejection.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// A query string; one that does not deserialize (`limit=x`, a repeated single parameter) is a 400
/// `BAD_REQUEST` JSON error naming the parameter, not axum's plain-text rejection.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}
