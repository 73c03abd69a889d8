//! The access middleware of `/api/*`: authenticates the bearer token or the session cookie once per
//! request (the [`Actor`] goes into the request's extensions for the handlers), refuses cookie-
//! authenticated writes without their CSRF token, and records every access failure as an audit event.
//!
//! An access failure is a 401 (missing, malformed or unknown token) or a 403 of the API's own checks
//! ([`crate::auth`]). Each becomes an event `{kind: "auth.failed", subject: "api", actor: "anonymous" |
//! "token:<id>", details: {reason, path, method, status}}` (never token material, never the query
//! string), appended to the Redis audit stream `{vc}:audit` and published on `vc.evt.auth.failed`. At most
//! [`AUTH_EVENTS_PER_SEC`] are written per second and API instance; the rest are dropped and counted in
//! `vc_api_auth_failure_events_dropped_total`, so a flood of bad requests cannot fill Redis or the bus.
//!
//! An authenticated request then passes the per-token limits ([`crate::limits`]): over its rate or with
//! too many requests in flight, it is answered `429` with `Retry-After`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use vc_shared::domain::now_rfc3339;
use vc_shared::wire::Event;

use crate::error::AccessDenied;
use crate::metrics::StatusLabels;
use crate::{Actor, AppState};

/// Audit events of access failures written per second and API instance, at most. Enough to see any
/// attack's shape in the log; the counter `vc_api_auth_failures_total` counts every failure anyway.
pub const AUTH_EVENTS_PER_SEC: u32 = 100;
/// Longest request path kept in an event (characters).
const MAX_PATH_CHARS: usize = 256;
/// Actor of requests without a valid token.
pub const ANONYMOUS: &str = "anonymous";

/// A fixed one-second window admitting at most `per_sec` events.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: u32,
    window: Mutex<(Instant, u32)>,
}

impl RateLimit {
    /// A limiter admitting `per_sec` events per second.
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Whether one more event may be written now.
    pub fn admit(&self) -> bool {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 < self.per_sec {
            w.1 += 1;
            true
        } else {
            false
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new(AUTH_EVENTS_PER_SEC)
    }
}

/// A new event caused by `actor` (ids are UUIDv7; `GET /api/audit` shows the stream entry id instead).
pub fn event(actor: &str, kind: &str, subject: String, details: Value) -> Event {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        at: now_rfc3339(),
        actor: actor.to_string(),
        kind: kind.to_string(),
        subject,
        details,
    }
}

/// Publishes an event on `vc.evt.<kind>` (core NATS; the `VC_EVT` stream captures it). Best effort: the
/// audit stream in Redis is the record.
pub async fn publish_event(state: &AppState, ev: &Event) {
    let payload = serde_json::to_vec(ev).unwrap_or_default();
    if let Err(e) = state
        .nats
        .publish(vc_shared::subjects::event(&ev.kind), payload.into())
        .await
    {
        tracing::warn!(error = %e, kind = %ev.kind, "Event publish failed.");
    }
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The middleware (see the module docs).
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !is_api(&path) {
        return next.run(req).await;
    }
    let method: String = req.method().as_str().chars().take(16).collect();
    // The login authenticates the token in its body.
    if path == "/api/session" && req.method() == axum::http::Method::POST {
        let resp = next.run(req).await;
        record(&state, ANONYMOUS, &resp, &method, &path);
        return resp;
    }
    // The dashboard asks whether it has a session before showing its login: a request that carries no
    // credentials at all simply has none (a stale cookie or a bad token is still a 401).
    if path == "/api/session"
        && req.method() == axum::http::Method::GET
        && !req
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION)
        && crate::auth::cookie(req.headers(), crate::auth::SESSION_COOKIE).is_none()
    {
        return axum::Json(json!({"session": null})).into_response();
    }
    let actor = match crate::auth::authenticate(req.headers(), &state).await {
        Ok(a) => a,
        Err(e) => {
            let resp = e.into_response();
            record(&state, ANONYMOUS, &resp, &method, &path);
            return resp;
        }
    };
    if let Err(e) = actor.check_csrf(req.method(), req.headers()) {
        let resp = e.into_response();
        record(&state, &actor.name, &resp, &method, &path);
        return resp;
    }
    let admitted = match state.limits.admit(&actor.name, path == "/api/events") {
        Ok(a) => a,
        Err(refusal) => return too_many(&state, refusal),
    };
    let name = actor.name.clone();
    req.extensions_mut().insert::<Actor>(actor);
    let resp = next.run(req).await;
    drop(admitted);
    record(&state, &name, &resp, &method, &path);
    resp
}

/// `429 TOO_MANY_REQUESTS` with `Retry-After` for a token over one of its limits.
fn too_many(state: &AppState, refusal: crate::limits::Refusal) -> Response {
    use crate::limits::Refusal;
    let (reason, message) = match refusal {
        Refusal::Rate(_) => (
            "rate",
            "this token is over its request rate (VC_API_TOKEN_RATE)",
        ),
        Refusal::Concurrency => (
            "concurrency",
            "this token has too many requests in flight (VC_API_TOKEN_CONCURRENCY)",
        ),
    };
    state
        .metrics
        .token_limited
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: reason.to_string(),
        })
        .inc();
    let mut resp = crate::error::ApiError::new(
        vc_shared::error::ErrorCode::TooManyRequests,
        format!("{message}: retry after {} s", refusal.retry_after_secs()),
    )
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&refusal.retry_after_secs().to_string()) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}

/// Records the response as an access failure if it is one.
fn record(state: &AppState, actor: &str, resp: &Response, method: &str, path: &str) {
    let Some(denied) = resp.extensions().get::<AccessDenied>() else {
        return;
    };
    let status = resp.status().as_u16();
    state
        .metrics
        .auth_failures
        .get_or_create(&StatusLabels {
            status: status.to_string(),
        })
        .inc();
    if !state.auth_events.admit() {
        state.metrics.auth_events_dropped.inc();
        return;
    }
    let ev = event(
        actor,
        "auth.failed",
        "api".into(),
        json!({
            "reason": denied.reason,
            "path": path.chars().take(MAX_PATH_CHARS).collect::<String>(),
            "method": method,
            "status": status,
        }),
    );
    tracing::info!(actor, status, method, path = %ev.details["path"], reason = %denied.reason, "Access refused.");
    let state = state.clone();
    // Off the request path: the answer does not wait for the audit write (bounded by the rate limit).
    tokio::spawn(async move {
        let data = serde_json::to_string(&ev).unwrap_or_default();
        if let Err(e) = state.store.append_audit(&data).await {
            tracing::warn!(error = %e, "Could not record an access failure in the audit log.");
        }
        publish_event(&state, &ev).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_per_second() {
        let l = RateLimit::new(3);
        assert!(l.admit() && l.admit() && l.admit());
        assert!(!l.admit());
        l.window.lock().unwrap().0 -= Duration::from_secs(1);
        assert!(l.admit());
    }

    #[test]
    fn api_paths() {
        assert!(is_api("/api/models"));
        assert!(is_api("/api"));
        assert!(!is_api("/apix"));
        assert!(!is_api("/healthz"));
    }
}
