//! What an agent sees: `POST /chat/completions` (and `/v1/...`) and `GET /models` (and `/v1/...`).
//!
//! Checks, in the real proxy's order: unknown key 401 `token_not_found_in_db` → blocked 401 →
//! expired 400 `expired_key` (all in `auth`) → model not in the key's `models` 401
//! `key_model_access_denied` → spend ≥ `max_budget` 400 `budget_exceeded` → the key's team
//! ([`auth::check_team`]: blocked 401, model not in the team's `models` 401
//! `team_model_access_denied`, team spend > team `max_budget` 400 `budget_exceeded`) → the key's
//! and its team's rate limits 429 (`limits`) → no deployment named `model` 400. Then a canned
//! completion from one of the deployments with that name (round-robin), whose cost (the
//! deployment's prices times the reported usage, or [`crate::EmulatorConfig::spend_per_request`]
//! without prices: see `spend`) is charged to the key and to its team and reported in
//! `x-litellm-response-cost`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{self, Caller};
use crate::error::{py_error_dict, py_list, ApiError};
use crate::limits;
use crate::spend::{self, Usage, CANNED_USAGE};
use crate::state::VirtualKey;
use crate::Emulator;

/// The `created` stamp the proxy reports for every model in `/v1/models`.
const MODEL_CREATED: i64 = 1_677_610_602;
/// Version reported in `x-litellm-version`.
const LITELLM_VERSION: &str = "1.80.17";

/// The deployment that served a call, and what the caller's key has spent since.
struct Served {
    model_id: String,
    model_group: String,
    upstream_model: String,
    api_base: Option<String>,
    usage: Usage,
    /// USD charged for the call.
    cost: f64,
    key_spend: f64,
}

fn access_denied(vk: &VirtualKey, model: &str) -> ApiError {
    ApiError::proxy(
        401,
        format!(
            "key not allowed to access model. This key can only access models={}. Tried to access {model}",
            py_list(&vk.models)
        ),
        json!("key_model_access_denied"),
        json!("model"),
    )
}

/// Run the key checks and pick a deployment, charging the key; all under one short lock.
fn route(emu: &Emulator, caller: &Caller, model: Option<&str>) -> Result<Served, ApiError> {
    let mut db = emu.db();
    let mut key_idx = None;
    let mut scopes = Vec::new();
    if let Caller::Key(snapshot) = caller {
        // The row may have changed since authentication; the current one decides.
        let idx = db
            .key_index(&snapshot.token)
            .ok_or_else(|| auth::token_not_found(&snapshot.key))?;
        let vk = &db.keys[idx];
        if let Some(m) = model {
            if !vk.allows(m) {
                return Err(access_denied(vk, m));
            }
        }
        auth::check_budget(vk)?;
        let team = db.team_of(vk);
        auth::check_team(team, model)?;
        scopes = limits::scopes(vk, team);
        limits::admit(&mut db.rate, &scopes)?;
        key_idx = Some(idx);
    }
    db.reload_router(Instant::now());
    let name = model.unwrap_or_default();
    let candidates: Vec<usize> = db
        .routed()
        .into_iter()
        .filter(|r| r.router.model_name == name)
        .filter_map(|r| db.deployment_index(&r.id))
        .collect();
    if model.is_none() || candidates.is_empty() {
        return Err(ApiError::untyped(
            400,
            py_error_dict(&format!(
                "/chat/completions: Invalid model name passed in model={}. Call `/v1/models` to view available models for your key.",
                model.unwrap_or("None")
            )),
        ));
    }
    let cursor = db.round_robin.entry(name.to_owned()).or_insert(0);
    let pick = candidates[*cursor % candidates.len()];
    *cursor = cursor.wrapping_add(1);
    let row = &db.deployments[pick];
    let params = &row.router.params;
    let usage = CANNED_USAGE;
    let mut served = Served {
        model_id: row.id.clone(),
        model_group: row.router.model_name.clone(),
        upstream_model: params
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        api_base: params
            .get("api_base")
            .and_then(Value::as_str)
            .map(str::to_owned),
        usage,
        cost: spend::priced_cost(params, usage).unwrap_or(emu.inner.cfg.spend_per_request),
        key_spend: 0.0,
    };
    if let Some(idx) = key_idx {
        let vk = &mut db.keys[idx];
        vk.spend += served.cost;
        served.key_spend = vk.spend;
        let team = vk.team_id.clone();
        if let Some(t) = team.and_then(|id| db.team_index(&id)) {
            db.teams[t].spend += served.cost;
        }
        limits::record_tokens(&mut db.rate, &scopes, usage.completion_tokens);
    }
    Ok(served)
}

/// The proxy's 400 for an undecodable chat body (orjson's wording).
fn invalid_json(e: &serde_json::Error) -> ApiError {
    let what = if e.is_eof() {
        "unexpected end of data"
    } else {
        "unexpected character, expected a JSON value"
    };
    ApiError::proxy(
        400,
        format!(
            "Invalid JSON payload: {what}: line {} column {} (char {})",
            e.line(),
            e.column(),
            e.column().saturating_sub(1)
        ),
        json!("invalid_request_error"),
        json!("request_body"),
    )
}

fn completion_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("chatcmpl-{}", &id[..12])
}

/// `POST /chat/completions` and `/v1/chat/completions`.
pub(crate) async fn completions(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| invalid_json(&e))?
    };
    let model = request.get("model").and_then(Value::as_str);
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    let served = route(&emu, &caller, model)?;

    // The upstream answers with its own model name (the provider prefix is LiteLLM's).
    let reported_model = served
        .upstream_model
        .split_once('/')
        .map_or(served.upstream_model.as_str(), |(_, m)| m)
        .to_owned();
    let content = format!("emulated reply from {}", served.upstream_model);
    let id = completion_id();
    let created = time::OffsetDateTime::now_utc().unix_timestamp();

    let mut response = if stream {
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": id, "created": created, "model": reported_model,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        };
        let events = [
            chunk(
                json!({"role": "assistant", "content": content}),
                Value::Null,
            ),
            chunk(json!({}), json!("stop")),
        ];
        let mut sse = String::new();
        for e in events {
            sse.push_str(&format!("data: {e}\n\n"));
        }
        sse.push_str("data: [DONE]\n\n");
        ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
    } else {
        Json(json!({
            "id": id,
            "created": created,
            "model": reported_model,
            "object": "chat.completion",
            "choices": [{
                "finish_reason": "stop",
                "index": 0,
                "message": {"content": content, "role": "assistant"},
            }],
            "usage": {
                "completion_tokens": served.usage.completion_tokens,
                "prompt_tokens": served.usage.prompt_tokens,
                "total_tokens": served.usage.total_tokens(),
            },
        }))
        .into_response()
    };
    let h = response.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-litellm-model-id", &served.model_id);
    put("x-litellm-model-group", &served.model_group);
    put("x-litellm-version", LITELLM_VERSION);
    put(
        "x-litellm-key-spend",
        &crate::error::py_float(served.key_spend),
    );
    put(
        "x-litellm-response-cost",
        &crate::error::py_float(served.cost),
    );
    if let Some(base) = &served.api_base {
        put("x-litellm-model-api-base", base);
    }
    Ok(response)
}

/// `GET /models` and `/v1/models`: the caller's models. A key's own `models` win; `[]` defers to
/// its team's `models`, and `[]` there means every model name.
pub(crate) async fn models(
    State(emu): State<Emulator>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let mut db = emu.db();
    db.reload_router(Instant::now());
    let names = match &caller {
        Caller::Master => db.routed_names(),
        Caller::Key(snapshot) => {
            let vk = db
                .key_index(&snapshot.token)
                .map(|i| db.keys[i].clone())
                .unwrap_or_else(|| (**snapshot).clone());
            auth::check_budget(&vk)?;
            let team = db.team_of(&vk);
            auth::check_team(team, None)?;
            let listed = match team {
                Some(t) if vk.models.is_empty() => t.models.clone(),
                _ => vk.models,
            };
            if listed.is_empty() || listed.iter().any(|m| m == "all-proxy-models") {
                db.routed_names()
            } else {
                let mut names: Vec<String> = Vec::new();
                for m in listed {
                    if !names.contains(&m) {
                        names.push(m);
                    }
                }
                names
            }
        }
    };
    let data: Vec<Value> = names
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}))
        .collect();
    Ok(Json(json!({ "data": data, "object": "list" })))
}
