//! Fault injection, the `/emu/*` control routes, health checks and fallbacks.
//!
//! The fault middleware wraps every route except `/emu/*` (so a test can always switch an outage
//! off over HTTP): it counts the hit, sleeps the configured latency, then answers 503 while the
//! emulator is down, or the status of the first matching queued failure.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{self, Caller};
use crate::body::{json_object, Fields};
use crate::error::ApiError;
use crate::pytime;
use crate::Emulator;

/// Prefix of the emulator's own control routes (exempt from faults and counters).
const CONTROL_PREFIX: &str = "/emu/";

/// What the fault middleware decided for one request.
enum Verdict {
    Pass,
    Down,
    Fail(u16),
}

/// Count, delay and possibly fail a request before it reaches its handler.
pub(crate) async fn faults_layer(
    State(emu): State<Emulator>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with(CONTROL_PREFIX) {
        return next.run(req).await;
    }
    let (latency, verdict) = {
        let mut f = emu.faults();
        *f.counts.entry(path.clone()).or_insert(0) += 1;
        let verdict = if f.down {
            Verdict::Down
        } else if let Some(rule) = f
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && path.starts_with(&r.prefix))
        {
            rule.remaining -= 1;
            Verdict::Fail(rule.status)
        } else {
            Verdict::Pass
        };
        f.rules.retain(|r| r.remaining > 0);
        (f.latency, verdict)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Verdict::Pass => next.run(req).await,
        Verdict::Down => {
            tracing::debug!(%path, "Emulated outage: 503.");
            ApiError::untyped(503, "litellm-emu: service unavailable (emulated outage)")
                .into_response()
        }
        Verdict::Fail(status) => {
            tracing::debug!(%path, status, "Injected failure.");
            ApiError::untyped(status, format!("litellm-emu: injected failure ({status})"))
                .into_response()
        }
    }
}

/// `GET /health/liveliness` (and `/health/liveness`): no auth.
pub(crate) async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

/// `GET /health/readiness`: no auth; the database is always "connected".
pub(crate) async fn readiness() -> Json<Value> {
    Json(json!({
        "status": "connected",
        "db": "connected",
        "cache": null,
        "litellm_version": "1.80.17",
        "success_callbacks": [],
        "use_aiohttp_transport": true,
        "last_updated": pytime::iso_z(pytime::now()).trim_end_matches('Z'),
    }))
}

/// FastAPI's 404 for unknown paths.
pub(crate) async fn not_found() -> (StatusCode, Json<Value>) {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"})))
}

/// FastAPI's 405 for a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> (StatusCode, Json<Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
}

/// Control routes take the master key only.
fn require_master(emu: &Emulator, headers: &HeaderMap) -> Result<(), ApiError> {
    match auth::authenticate(emu, headers)? {
        Caller::Master => Ok(()),
        Caller::Key(_) => Err(ApiError::auth(
            401,
            "Authentication Error, /emu routes need the master key",
        )),
    }
}

fn ok() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// `POST /emu/reset`: wipe deployments, keys and teams.
pub(crate) async fn emu_reset(
    State(emu): State<Emulator>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    emu.reset();
    Ok(ok())
}

/// `POST /emu/fail {"pathPrefix", "count", "status"}`.
pub(crate) async fn emu_fail(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let prefix = f.require_str("pathPrefix");
    let count = f.bounded_int("count", 0, None);
    let status = f.bounded_int("status", 100, Some(599));
    f.finish()?;
    let (Some(prefix), Some(count), Some(status)) = (prefix, count, status) else {
        return Err(ApiError::validation(
            "missing",
            vec![json!("body")],
            "pathPrefix, count and status are required",
            Value::Object(obj.clone()),
        ));
    };
    emu.fail_next(
        &prefix,
        usize::try_from(count).unwrap_or(usize::MAX),
        u16::try_from(status).unwrap_or(500),
    );
    Ok(ok())
}

/// `POST /emu/down {"down": bool}`.
pub(crate) async fn emu_down(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let down = f.bool("down").value();
    f.finish()?;
    emu.set_down(down.unwrap_or(true));
    Ok(ok())
}

fn millis_field(headers: &HeaderMap, body: &[u8]) -> Result<Duration, ApiError> {
    let obj = json_object(headers, body)?;
    let mut f = Fields::body(&obj);
    let ms = f.bounded_int("ms", 0, None);
    f.finish()?;
    Ok(Duration::from_millis(
        ms.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
    ))
}

/// `POST /emu/latency {"ms"}`.
pub(crate) async fn emu_latency(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    emu.set_latency(millis_field(&headers, &body)?);
    Ok(ok())
}

/// `POST /emu/reload-delay {"ms"}`: see [`Emulator::set_update_reload_delay`].
pub(crate) async fn emu_reload_delay(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    emu.set_update_reload_delay(millis_field(&headers, &body)?);
    Ok(ok())
}

/// `GET /emu/state`: every deployment, key and team, with plaintext secrets.
pub(crate) async fn emu_state(
    State(emu): State<Emulator>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let deployments = serde_json::to_value(emu.deployments()).unwrap_or(Value::Null);
    let keys = serde_json::to_value(emu.keys()).unwrap_or(Value::Null);
    let teams = serde_json::to_value(emu.teams()).unwrap_or(Value::Null);
    Ok(Json(
        json!({"deployments": deployments, "keys": keys, "teams": teams}),
    ))
}

/// `POST /emu/spend {"key", "spend"}` (key in plaintext or as its token); unknown key → 404.
pub(crate) async fn emu_spend(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let key = f.require_str("key");
    let spend = f.f64("spend").value();
    f.finish()?;
    let (Some(key), Some(spend)) = (key, spend) else {
        return Err(ApiError::validation(
            "missing",
            vec![json!("body"), json!("spend")],
            "Field required",
            Value::Object(obj.clone()),
        ));
    };
    if emu.db().key_index(&key).is_none() {
        return Err(ApiError::proxy(
            404,
            "Key not found in database",
            json!("not_found_error"),
            json!("key"),
        ));
    }
    emu.set_spend(&key, spend);
    Ok(ok())
}

/// `POST /emu/team-spend {"team_id", "spend"}`; unknown team → 404.
pub(crate) async fn emu_team_spend(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let team_id = f.require_str("team_id");
    let spend = f.f64("spend").value();
    f.finish()?;
    let (Some(team_id), Some(spend)) = (team_id, spend) else {
        return Err(ApiError::validation(
            "missing",
            vec![json!("body"), json!("spend")],
            "Field required",
            Value::Object(obj.clone()),
        ));
    };
    if emu.db().team_index(&team_id).is_none() {
        return Err(ApiError::internal(
            404,
            crate::error::py_error_dict(&format!("Team not found, passed team_id={team_id}")),
        ));
    }
    emu.set_team_spend(&team_id, spend);
    Ok(ok())
}

/// `POST /emu/end-period`: see [`Emulator::end_budget_period`]; answers how many rows were reset.
pub(crate) async fn emu_end_period(
    State(emu): State<Emulator>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_master(&emu, &headers)?;
    let reset = emu.end_budget_period();
    Ok(Json(json!({"ok": true, "reset": reset})))
}
