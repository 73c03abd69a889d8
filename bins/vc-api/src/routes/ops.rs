//! Commands, LiteLLM status and reconcile, the audit log.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vc_shared::command::{CommandKind, CommandRecord};

use super::write;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::{Actor, AppState};

/// A command's status. A realm admin may read only the commands it submitted.
#[utoipa::path(get, path = "/api/commands/{id}", tag = "commands", params(("id" = String, Path)), responses((status = 200, body = CommandRecord), (status = 403), (status = 404)))]
pub async fn get_command(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<CommandRecord>> {
    if !actor.is_admin() && s.store.command_issuer(&id).await?.as_deref() != Some(&actor.name) {
        return Err(ApiError::forbidden(format!(
            "command {id} was not submitted by this token"
        )));
    }
    let mut rec = s
        .store
        .command(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("command {id} not found")))?;
    rec.effects = None;
    Ok(Json(rec))
}

/// LiteLLM status as the worker last saw it.
#[utoipa::path(get, path = "/api/litellm/status", tag = "litellm", responses((status = 200)))]
pub async fn litellm_status(State(s): State<AppState>, actor: Actor) -> ApiResult<Json<Value>> {
    actor.require_admin()?;
    let mut c = s.store.conn();
    let raw: Option<String> = redis::cmd("GET")
        .arg("litellm:{status}")
        .query_async(&mut c)
        .await
        .map_err(vc_shared::store::StoreError::from)?;
    let report: Value = raw
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(json!({}));
    Ok(Json(json!({
        "configured": s.litellm_base_url.is_some(),
        "healthy": report.get("healthy").cloned().unwrap_or(Value::Null),
        "baseUrl": s.litellm_base_url.as_deref(),
        "publicUrl": s.litellm_public_url.as_deref(),
        "lastReconcileAt": report.get("lastReconcileAt").cloned().unwrap_or(Value::Null),
        "drift": report.get("drift").cloned().unwrap_or(json!({})),
    })))
}

/// Ask the worker to reconcile LiteLLM with our state.
#[utoipa::path(post, path = "/api/litellm/reconcile", tag = "litellm", responses((status = 202)))]
pub async fn litellm_reconcile(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> ApiResult<Response> {
    actor.require_admin()?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::LitellmReconcile,
        None,
        &[],
    )
    .await
}

/// `?after=&limit=`.
#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// Audit events, oldest first, paged by cursor.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(("after" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200)))]
pub async fn audit(
    State(s): State<AppState>,
    actor: Actor,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    actor.require_admin()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be from 1 to 1000"));
    }
    if let Some(a) = &q.after {
        let ok = a.split_once('-').is_some_and(|(x, y)| {
            !x.is_empty()
                && x.chars().all(|c| c.is_ascii_digit())
                && y.chars().all(|c| c.is_ascii_digit())
                && !y.is_empty()
        });
        if !ok {
            return Err(ApiError::bad_request(
                "after must be a cursor returned as next",
            ));
        }
    }
    let rows = s.store.audit_after(q.after.as_deref(), limit).await?;
    let next = rows.last().map(|(id, _)| id.clone());
    let events: Vec<Value> = rows
        .into_iter()
        .filter_map(|(id, data)| {
            let mut v: Value = serde_json::from_str(&data).ok()?;
            v["id"] = Value::String(id);
            Some(v)
        })
        .collect();
    Ok(Json(json!({"events": events, "next": next})))
}
