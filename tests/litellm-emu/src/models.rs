//! `/model/new`, `/model/update`, `PATCH /model/{id}/update`, `/model/delete`, `/model/info`.
//!
//! Real-proxy behaviour reproduced here (1.80.17, DB-stored models):
//! - `model_name` is not unique; `model_info.id` is (a duplicate → 500 "Failed to add model to db").
//! - `POST /model/update` merges **only** `litellm_params` (its `model_name` and `model_info` are
//!   ignored) and reaches the router only at the next reload ([`crate::Emulator::set_update_reload_delay`]).
//! - `PATCH /model/{id}/update` merges `model_name`, `litellm_params` and `model_info`, and reloads
//!   the router at once (flushing any pending update). A `model_info` without `id` makes the
//!   stored `model_info.id` a fresh uuid (the `model_id` column, used for routing, is unchanged).
//! - `/model/info` never shows `api_key` and reports `db_model: true`; a priced deployment shows
//!   its `input_cost_per_token` / `output_cost_per_token` in `model_info` too (see `spend`).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::auth::{self, Caller};
use crate::body::{json_object, Field, Fields};
use crate::error::{py_error_dict, ApiError};
use crate::pytime;
use crate::state::{Db, DeploymentRow};
use crate::Emulator;

/// `litellm_params` / `model_info` as a `Field`, with nested string checks reported at their `loc`.
struct DeploymentBody {
    model_name: Option<String>,
    litellm_params: Field<Map<String, Value>>,
    model_info: Field<Map<String, Value>>,
}

fn parse_deployment(obj: &Map<String, Value>) -> Result<DeploymentBody, ApiError> {
    let mut f = Fields::body(obj);
    let model_name = f.str("model_name").value();
    let mut litellm_params = f.model("litellm_params", "LiteLLM_Params");
    let model_info = f.model("model_info", "ModelInfo");
    f.finish()?;
    let mut nested = Vec::new();
    if let Field::Set(p) = &mut litellm_params {
        // `LiteLLM_Params` declares the prices before `model` (its own field).
        nested.extend(crate::spend::coerce_prices(p));
        if let Some(v) = p.get("model").filter(|v| !v.is_string() && !v.is_null()) {
            nested.push(crate::error::detail(
                "string_type",
                vec![json!("body"), json!("litellm_params"), json!("model")],
                "Input should be a valid string",
                v.clone(),
            ));
        }
    }
    if let Field::Set(i) = &model_info {
        if let Some(v) = i.get("id").filter(|v| !v.is_string() && !v.is_null()) {
            nested.push(crate::error::detail(
                "string_type",
                vec![json!("body"), json!("model_info"), json!("id")],
                "Input should be a valid string",
                v.clone(),
            ));
        }
    }
    if !nested.is_empty() {
        return Err(ApiError::Validation(nested));
    }
    Ok(DeploymentBody {
        model_name,
        litellm_params,
        model_info,
    })
}

fn without_nulls(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `POST /model/new`.
pub(crate) async fn new_model(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let req = parse_deployment(&obj)?;
    auth::model_permission(&caller)?;
    // Pydantic accepts these as missing, then the handler crashes: a bare 500.
    let (Some(model_name), Field::Set(params)) = (req.model_name, req.litellm_params) else {
        return Err(ApiError::PlainInternal);
    };
    if !params.get("model").is_some_and(Value::is_string) {
        return Err(ApiError::PlainInternal);
    }
    let mut model_info = without_nulls(req.model_info.value().unwrap_or_default());
    let id = match model_info.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => new_uuid(),
    };
    model_info.insert("id".into(), Value::String(id.clone()));

    let mut db = emu.db();
    if db.deployment_index(&id).is_some() {
        return Err(ApiError::auth(
            500,
            py_error_dict("Failed to add model to db. Check your server logs for more details."),
        ));
    }
    let seq = db.next_seq();
    let now = pytime::db_time(pytime::now());
    let mut row = DeploymentRow::new(id, model_name, params, model_info, now, seq);
    let out = row.db_json();
    db.deployments.push(row);
    tracing::debug!(model_id = %out["model_id"], "Deployment created.");
    Ok(Json(out))
}

/// `POST /model/update`: merges `litellm_params` only; visible after the reload delay.
pub(crate) async fn update_model(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let req = parse_deployment(&obj)?;
    let Field::Set(model_info) = req.model_info else {
        return Err(ApiError::auth(
            400,
            "Authentication Error, model_info not provided",
        ));
    };
    let not_found = || ApiError::auth(400, "Authentication Error, model not found");
    // Without an id, Pydantic's default (a fresh uuid) is looked up: never found.
    let Some(Value::String(id)) = model_info.get("id") else {
        return Err(not_found());
    };

    let mut db = emu.db();
    let idx = db.deployment_index(id).ok_or_else(not_found)?;
    auth::model_permission(&caller)?;
    let Field::Set(new_params) = req.litellm_params else {
        return Err(ApiError::auth(
            400,
            "Authentication Error, litellm_params not provided",
        ));
    };
    let delay = db.reload_delay;
    let seq = db.next_seq();
    let row = &mut db.deployments[idx];
    for (k, v) in new_params {
        if !v.is_null() {
            row.params.insert(k, v);
        }
    }
    row.updated_at = pytime::db_time(pytime::now());
    let view = row.snapshot(seq);
    if delay.is_zero() {
        row.router = view;
        row.pending = None;
    } else {
        row.pending = Some((view, Instant::now() + delay));
    }
    Ok(Json(row.db_json()))
}

/// `PATCH /model/{model_id}/update`: partial merge of every part, routed at once.
pub(crate) async fn patch_model(
    State(emu): State<Emulator>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let req = parse_deployment(&obj)?;

    let mut db = emu.db();
    let Some(idx) = db.deployment_index(&model_id) else {
        return Err(ApiError::proxy(
            404,
            format!("Model {model_id} not found on proxy."),
            json!("not_found_error"),
            Value::Null,
        ));
    };
    auth::model_permission_detail(&caller)?;
    let row = &mut db.deployments[idx];
    if let Some(name) = req.model_name.filter(|n| !n.is_empty()) {
        row.model_name = name;
    }
    if let Field::Set(params) = req.litellm_params {
        for (k, v) in params {
            if !v.is_null() {
                row.params.insert(k, v);
            }
        }
    }
    if let Field::Set(info) = req.model_info {
        let info = without_nulls(info);
        if !info.contains_key("id") {
            // `ModelInfo()` defaults `id` to a new uuid and the merge writes it into the row.
            row.model_info
                .insert("id".into(), Value::String(new_uuid()));
        }
        row.model_info.extend(info);
    }
    row.updated_at = pytime::db_time(pytime::now());
    let out = row.db_json();
    reload_everything(&mut db);
    Ok(Json(out))
}

/// A full router reload from the database (what `clear_cache()` after a PATCH does).
fn reload_everything(db: &mut Db) {
    for i in 0..db.deployments.len() {
        let stale = {
            let row = &db.deployments[i];
            row.pending.is_some()
                || row.router.model_name != row.model_name
                || row.router.params != row.params
                || row.router.model_info != row.model_info
        };
        if stale {
            let seq = db.next_seq();
            let row = &mut db.deployments[i];
            row.router = row.snapshot(seq);
            row.pending = None;
        }
    }
}

/// `POST /model/delete` `{"id"}`.
pub(crate) async fn delete_model(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let id = f.require_str("id");
    f.finish()?;
    let Some(id) = id else {
        return Err(ApiError::PlainInternal); // unreachable: `finish` reported the missing id
    };
    let mut db = emu.db();
    let Some(idx) = db.deployment_index(&id) else {
        return Err(ApiError::auth(
            400,
            py_error_dict(&format!("Model with id={id} not found in db")),
        ));
    };
    auth::model_permission(&caller)?;
    db.deployments.remove(idx);
    tracing::debug!(model_id = %id, "Deployment deleted.");
    Ok(Json(
        json!({ "message": format!("Model: {id} deleted successfully") }),
    ))
}

/// `GET /model/info` (and `/v1/model/info`), optionally `?litellm_model_id=`.
pub(crate) async fn model_info(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::check_caller_team(&emu, &caller)?;
    let mut db = emu.db();
    db.reload_router(Instant::now());
    if let Some(id) = query.get("litellm_model_id") {
        let Some(row) = db.deployments.iter().find(|d| &d.id == id) else {
            return Err(ApiError::Detail {
                status: StatusCode::BAD_REQUEST,
                detail: json!({ "error": format!("Model id = {id} not found on litellm proxy") }),
            });
        };
        return Ok(Json(json!({ "data": [row.info_json()] })));
    }
    let data: Vec<Value> = db
        .routed()
        .into_iter()
        .filter(|row| match &caller {
            Caller::Master => true,
            Caller::Key(vk) => vk.allows(&row.router.model_name),
        })
        .map(DeploymentRow::info_json)
        .collect();
    Ok(Json(json!({ "data": data })))
}
