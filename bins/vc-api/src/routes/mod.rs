//! REST handlers (contract §2), one module per resource. Reads come from Redis; writes go through
//! [`crate::submit`].

pub mod agents;
pub mod models;
pub mod ops;
pub mod realms;
pub mod tokens;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vc_shared::command::{self, CommandKind};

use crate::error::{ApiError, ApiResult};
use crate::submit::{build_body, submit};
use crate::{Actor, AppState};

pub(crate) fn idem(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn write(
    state: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    kind: CommandKind,
    body: Option<Value>,
    ids: &[(&str, &str)],
) -> ApiResult<Response> {
    let bytes = build_body(kind, body, ids, state)?;
    submit(state, kind, bytes, idem(headers).as_deref(), actor).await
}

pub(crate) fn check_id(field: &str, id: &str) -> ApiResult<()> {
    command::validate_id(field, Some(id.to_string()))
        .map(|_| ())
        .map_err(ApiError::from)
}

/// 404 for unknown routes, as JSON.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such route", "code": "NOT_FOUND"})),
    )
}

/// A method the path does not have: answered as the contract's `NOT_FOUND` (its error codes have no
/// 405), as JSON.
pub async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such route for this method", "code": "NOT_FOUND"})),
    )
}
