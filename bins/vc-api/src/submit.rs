//! Turning a write request into a command on the bus and waiting for its outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use vc_shared::command::{
    Command, CommandKind, CommandRecord, CommandStatus, Outcome, HDR_ACTOR, HDR_MSG_ID,
    HDR_REPLY_TO,
};
use vc_shared::crypto::{sha256_hex, Purpose};
use vc_shared::domain::now_rfc3339;
use vc_shared::error::ErrorCode;

use crate::error::{ApiError, ApiResult};
use crate::metrics::KindLabels;
use crate::{Actor, AppState};

/// Most outcomes waited for at once; beyond, requests answer 202 at once.
pub const MAX_WAITERS: usize = 10_000;

/// Outcomes in flight: command id → the request waiting for it.
#[derive(Clone, Default)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
}

impl Waiters {
    fn register(&self, id: &str) -> Option<oneshot::Receiver<Outcome>> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_WAITERS {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        map.insert(id.to_string(), tx);
        Some(rx)
    }

    fn remove(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn complete(&self, outcome: Outcome) {
        let tx = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&outcome.command_id);
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// Listens on this API instance's reply inbox and completes waiters. Runs until the client closes.
pub async fn listen_replies(nats: async_nats::Client, inbox: String, waiters: Waiters) {
    let mut sub = match nats.subscribe(format!("{inbox}.>")).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Cannot subscribe to the reply inbox; requests will answer 202.");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        if let Ok(o) = serde_json::from_slice::<Outcome>(&msg.payload) {
            waiters.complete(o);
        }
    }
}

/// The body of a write, as a JSON object with path ids merged in, validated as `kind` as the client
/// sent it (clear secrets included, so REST and NATS refuse the same body with the same words). Its
/// secrets are sealed for the bus by [`submit`], once the command id they are bound to is known.
pub fn build_body(
    kind: CommandKind,
    raw: Option<Value>,
    path_ids: &[(&str, &str)],
) -> ApiResult<Bytes> {
    let mut obj = match raw {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request("body must be a JSON object")),
    };
    for (k, v) in path_ids {
        obj.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    obj.remove("apiKeySealed");
    let clear = serde_json::to_vec(&obj).unwrap_or_default();
    Command::parse(kind, &clear)?;
    Ok(Bytes::from(clear))
}

/// `body` with its clear `apiKey` replaced by `apiKeySealed`, sealed as a [`Purpose::Command`] secret
/// of command `command_id` (so it opens in that command only): no secret crosses the bus in clear.
fn seal_secrets(state: &AppState, body: Bytes, command_id: &str) -> ApiResult<Bytes> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    match obj.get("apiKey") {
        Some(Value::String(k)) if !k.trim().is_empty() => {
            let sealed = state
                .sealer
                .seal(Purpose::Command, command_id, k.trim())
                .map_err(|_| ApiError::new(ErrorCode::Internal, "seal"))?;
            obj.remove("apiKey");
            obj.insert("apiKeySealed".into(), Value::String(sealed));
            Ok(Bytes::from(
                serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
            ))
        }
        _ => Ok(body),
    }
}

/// Status of a successful command of this kind.
fn success_status(kind: CommandKind) -> StatusCode {
    match kind {
        CommandKind::ModelRegister | CommandKind::RealmCreate | CommandKind::AgentRegister => {
            StatusCode::CREATED
        }
        CommandKind::ModelDelete
        | CommandKind::RealmDelete
        | CommandKind::RealmRevoke
        | CommandKind::RealmAgentRemove
        | CommandKind::AgentDelete => StatusCode::NO_CONTENT,
        CommandKind::LitellmReconcile => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    }
}

/// On a response built from an outcome that names its commit's change-log number: the read model waits
/// for that change, not for the log's head ([`crate::read::ReadModel::catch_up_to`]).
#[derive(Debug, Clone, Copy)]
pub struct Committed(pub u64);

fn outcome_response(kind: CommandKind, o: Outcome) -> Response {
    let mut resp = outcome_body(kind, o.clone());
    if let Some(n) = o.change {
        resp.extensions_mut().insert(Committed(n));
    }
    resp
}

fn outcome_body(kind: CommandKind, o: Outcome) -> Response {
    match o.status {
        CommandStatus::Succeeded => {
            let status = success_status(kind);
            if status == StatusCode::NO_CONTENT {
                return StatusCode::NO_CONTENT.into_response();
            }
            if kind == CommandKind::LitellmReconcile {
                return (status, axum::Json(json!({"commandId": o.command_id}))).into_response();
            }
            (status, axum::Json(o.result.unwrap_or(Value::Null))).into_response()
        }
        _ => ApiError::from(o.error.unwrap_or(vc_shared::command::OutcomeError {
            code: ErrorCode::Internal,
            message: "command failed".into(),
        }))
        .into_response(),
    }
}

fn pending_response(id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"commandId": id, "status": "pending", "statusUrl": format!("/api/commands/{id}")})),
    )
        .into_response()
}

/// How long a request keeps trying to publish its command (a NATS leader election takes 5-10 s).
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two publish attempts.
const PUBLISH_RETRY_EVERY: Duration = Duration::from_millis(250);

/// Validates, publishes and waits. `idempotency_key` makes a retried request return the first outcome.
///
/// A publish that fails (no stream acknowledgement within 10 s of retries: `503`) removes the pending record but
/// keeps the `Idempotency-Key` pointing at the same command id. A retry with that key finds the claim
/// without a record and publishes again **under the same command id**: if the first publish did reach
/// the stream after all (the acknowledgement was lost, or the client flushed it after a reconnect),
/// JetStream's duplicate window (`Nats-Msg-Id`) and the worker's completed-record check make sure it is
/// applied once. Releasing the key instead would give the retry a new id and could apply it twice.
pub async fn submit(
    state: &AppState,
    kind: CommandKind,
    body: Bytes,
    idempotency_key: Option<&str>,
    actor: &Actor,
) -> ApiResult<Response> {
    Command::parse(kind, &body)?;
    let mut command_id = uuid::Uuid::now_v7().to_string();
    if let Some(key) = idempotency_key {
        if key.is_empty() || key.len() > 256 {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1-256 characters",
            ));
        }
        let hash = sha256_hex(&format!("{}\n{}\n{key}", actor.name, kind.as_str()));
        let holder = state.store.claim_idempotency(&hash, &command_id).await?;
        if holder != command_id {
            if state.store.command(&holder).await?.is_some() {
                // A retry: answer the first request's outcome, never apply twice.
                return wait_existing(state, kind, &holder).await;
            }
            // The first request's publish failed (its record was removed): publish again, same id.
            command_id = holder;
        }
    }
    let record = CommandRecord {
        command_id: command_id.clone(),
        kind: kind.as_str().into(),
        status: CommandStatus::Pending,
        result: None,
        error: None,
        submitted_at: now_rfc3339(),
        completed_at: None,
        effects: None,
    };
    if !state.store.put_pending_command(&record).await? {
        if idempotency_key.is_some() {
            // A concurrent request with the same key (first try or retry) wrote this id's record first:
            // it publishes; this one answers its outcome.
            return wait_existing(state, kind, &command_id).await;
        }
        // Without a key only a UUIDv7 clash gets here: take another id.
        command_id = uuid::Uuid::now_v7().to_string();
        let rec = CommandRecord {
            command_id: command_id.clone(),
            ..record
        };
        state.store.put_pending_command(&rec).await?;
    }
    if !actor.is_admin() {
        // Realm admins may read back only their own commands (`GET /api/commands/{id}`).
        state
            .store
            .put_command_issuer(&command_id, &actor.name)
            .await?;
    }
    let body = seal_secrets(state, body, &command_id)?;
    let rx = state.waiters.register(&command_id);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HDR_MSG_ID, command_id.as_str());
    headers.insert(
        HDR_REPLY_TO,
        format!("{}.{command_id}", state.inbox).as_str(),
    );
    headers.insert(HDR_ACTOR, actor.name.as_str());
    // Retried under the same `Nats-Msg-Id` (JetStream keeps one copy) until PUBLISH_DEADLINE: while a
    // NATS node is lost, the stream has no leader for 5-10 s and publishes fail at once ("no
    // responders"); the request waits that out instead of answering 503 straight away.
    let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
    let failure = loop {
        let attempt = async {
            let ack = state
                .js
                .publish_with_headers(
                    vc_shared::subjects::command_from(
                        vc_shared::subjects::CommandSource::Api,
                        kind,
                    ),
                    headers.clone(),
                    body.clone(),
                )
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error =
            match tokio::time::timeout(left.min(vc_shared::bus::CALL_TIMEOUT), attempt).await {
                Ok(Ok(_)) => break None,
                Ok(Err(e)) => e,
                Err(_) => "not acknowledged in time".to_string(),
            };
        if tokio::time::Instant::now() + PUBLISH_RETRY_EVERY >= deadline {
            tracing::warn!(error = %error, command = %command_id, "Command publish failed.");
            break Some("command bus unavailable, retry later");
        }
        tracing::debug!(error = %error, command = %command_id, "Command publish failed; retrying.");
        tokio::time::sleep(PUBLISH_RETRY_EVERY).await;
    };
    if let Some(message) = failure {
        state.waiters.remove(&command_id);
        state.metrics.publish_failures.inc();
        if let Err(e) = state.store.drop_pending_command(&command_id).await {
            tracing::warn!(error = %e, command = %command_id, "Could not remove the record of an unpublished command.");
        }
        return Err(ApiError::unavailable(message));
    }
    state
        .metrics
        .commands_published
        .get_or_create(&KindLabels {
            kind: kind.as_str().into(),
        })
        .inc();
    let Some(rx) = rx else {
        state.metrics.waits_timed_out.inc();
        return Ok(pending_response(&command_id));
    };
    match tokio::time::timeout(state.command_wait, rx).await {
        Ok(Ok(o)) => Ok(outcome_response(kind, o)),
        _ => {
            state.waiters.remove(&command_id);
            // The reply may have been missed (e.g. NATS reconnect): the record is authoritative.
            match state
                .store
                .command(&command_id)
                .await?
                .and_then(|r| r.outcome())
            {
                Some(o) => Ok(outcome_response(kind, o)),
                None => {
                    state.metrics.waits_timed_out.inc();
                    Ok(pending_response(&command_id))
                }
            }
        }
    }
}

async fn wait_existing(state: &AppState, kind: CommandKind, id: &str) -> ApiResult<Response> {
    let deadline = tokio::time::Instant::now() + state.command_wait;
    loop {
        if let Some(o) = state.store.command(id).await?.and_then(|r| r.outcome()) {
            return Ok(outcome_response(kind, o));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(pending_response(id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
