//! REST handlers (contract §2), one module per resource. Reads come from the read model
//! ([`crate::read`]) or Redis; writes go through [`crate::submit`], and a write that succeeded waits
//! until this instance's read model holds it.

pub mod agents;
pub mod models;
pub mod ops;
pub mod realms;
pub mod session;
pub mod spend;
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
    let bytes = build_body(kind, body, ids)?;
    let r = submit(state, kind, bytes, idem(headers).as_deref(), actor).await?;
    // Read-your-writes: a write that succeeded is in this instance's read model before its answer. An
    // outcome sent right after its commit names the change it wrote; otherwise (a replay, an outcome
    // after a LiteLLM sync) the model catches up with the log's head.
    if r.status().is_success() && r.status() != StatusCode::ACCEPTED {
        match r.extensions().get::<crate::submit::Committed>() {
            Some(c) => state.read.catch_up_to(c.0).await,
            None => state.read.catch_up(&state.store).await,
        }
    }
    Ok(r)
}

/// Waits (at most 5 s) for the read model's first load; 503 after that. A request that says
/// `Cache-Control: no-cache` (or `max-age=0`) also waits until the model has applied everything
/// committed so far: a client that changed the catalog another way (commands published on NATS, another
/// API instance) reads its change.
pub(crate) async fn loaded(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    if state.read.loaded(std::time::Duration::from_secs(5)).await {
        let fresh = headers
            .get_all(axum::http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.trim().to_ascii_lowercase())
            .any(|d| d == "no-cache" || d == "max-age=0");
        if fresh {
            state.read.catch_up(&state.store).await;
        }
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "the read model is still loading; retry in a moment",
        ))
    }
}

/// The page cache's key of a list request: its path, its query (sorted) and who asks (realm admins
/// see only their realms).
pub(crate) fn page_key(
    path: &str,
    raw: &std::collections::HashMap<String, String>,
    actor: &Actor,
) -> String {
    let mut q: Vec<(&String, &String)> = raw.iter().collect();
    q.sort();
    let q: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let who = if actor.is_admin() {
        "admin"
    } else {
        &actor.name
    };
    format!("{path}?{}|{who}", q.join("&"))
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
