//! `/key/generate`, `/key/update`, `/key/delete`, `/key/info`, `/key/list`, `/key/block`,
//! `/key/unblock`, `/key/regenerate`.
//!
//! Real-proxy behaviour reproduced here (1.80.17):
//! - generate: `models: []` = all models; `key` must start with `sk-` (400); re-using an existing
//!   key value answers 200 echoing the *request* while the stored row stays unchanged;
//!   `key_alias` must be unique (400); a bad `duration` is a 500; garbage `budget_duration` is
//!   stored and resets at the next midnight.
//! - update: unknown key → **401**; a bad `duration` is a 400 here; `null` **clears** `max_budget`,
//!   `key_alias`, `metadata` (to `{}`), `blocked`, `tpm_limit`, `rpm_limit`,
//!   `max_parallel_requests`, `team_id`, is **ignored** for `duration` and `budget_duration`, and
//!   is a 400 for `models` and `spend`; `metadata` is replaced, not merged; a `team_id` naming no
//!   team → 404, even the key's own dangling one; moving a key to another team requires the team
//!   to allow every model of the key (401 `team_model_access_denied`) and a stored
//!   `tpm_limit`/`rpm_limit` no higher than the team's (403; equal is fine, a team limit of 0 is
//!   none, and the rpm comparison is only reached for a key with a `tpm_limit`).
//! - generate: a `team_id` naming no team is stored as given (only `/key/update` checks it).
//! - delete: keys by plaintext or by token (sha256), or by alias; 404 only when *none* of the given
//!   keys exists; the answer echoes the request list.
//! - info: any valid virtual key may read any key's info; the `info` object has no `token`.
//! - list: newest first; `size` 1..=100; virtual keys get 403.
//! - block / unblock: `{"key"}` as plaintext or token sets `blocked` to `true` / `false` and
//!   answers the row (`...Z` datetimes); an unknown key → 401 `token_not_found_in_db`. A blocked
//!   key is refused on every route (401, see `auth`).
//! - regenerate: Enterprise-only, 500.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Map, Value};

use crate::auth::{self, Caller};
use crate::body::{json_object, Field, Fields};
use crate::error::{py_error_dict, py_float, ApiError};
use crate::key_rows::{generate_json, info_json, list_row_json, token_row_json};
use crate::pytime;
use crate::state::{hash_key, key_name, token_of, Team, VirtualKey};
use crate::Emulator;

/// Random bytes in a generated key (`secrets.token_urlsafe(16)` → 22 characters after `sk-`).
const GENERATED_KEY_BYTES: usize = 16;

fn alias_taken(alias: &str) -> ApiError {
    ApiError::proxy(
        400,
        format!(
            "Key with alias '{alias}' already exists. Unique key aliases across all keys are required."
        ),
        json!("bad_request_error"),
        json!("key_alias"),
    )
}

pub(crate) fn negative_budget(max_budget: f64) -> String {
    py_error_dict(&format!(
        "max_budget cannot be negative. Received: {}",
        py_float(max_budget)
    ))
}

fn generated_key() -> String {
    let mut bytes = [0_u8; GENERATED_KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("sk-{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `POST /key/generate`.
pub(crate) async fn generate(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/key/generate")?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let models = f.list("models").value().unwrap_or_default();
    let max_budget = f.f64("max_budget").value();
    let budget_duration = f.str("budget_duration").value();
    let duration = f.str("duration").value();
    let key_alias = f.str("key_alias").value();
    let custom_key = f.str("key").value();
    let metadata = Value::Object(f.object("metadata").value().unwrap_or_default());
    let team_id = f.str("team_id").value();
    let max_parallel_requests = f.i64("max_parallel_requests").value();
    let tpm_limit = f.i64("tpm_limit").value();
    let rpm_limit = f.i64("rpm_limit").value();
    let blocked = f.bool("blocked").value();
    f.finish()?;

    // A non-string model name makes the insert fail: a 500 from the DB layer.
    let models = string_items(models)
        .ok_or_else(|| ApiError::internal(500, py_error_dict("Internal Server Error.")))?;
    if let Some(k) = custom_key.as_deref().filter(|k| !k.starts_with("sk-")) {
        return Err(ApiError::internal(
            400,
            py_error_dict(&format!(
                "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {k}"
            )),
        ));
    }
    if let Some(mb) = max_budget.filter(|mb| *mb < 0.0) {
        return Err(ApiError::internal(400, negative_budget(mb)));
    }
    let now = pytime::now();
    let server_error = |m: String| ApiError::internal(500, format!("Internal Server Error, {m}"));
    let expires = duration
        .as_deref()
        .map(|d| pytime::expiry(d, now))
        .transpose()
        .map_err(server_error)?;
    let budget_reset_at = budget_duration
        .as_deref()
        .map(|d| pytime::budget_reset_at(d, now))
        .transpose()
        .map_err(server_error)?;

    let key = custom_key.unwrap_or_else(generated_key);
    let token = hash_key(&key);
    let created = pytime::db_time(now);
    let mut vk = VirtualKey {
        key_name: key_name(&key),
        key,
        token,
        key_alias,
        models,
        max_budget,
        budget_duration,
        budget_reset_at,
        expires: expires.map(pytime::db_time),
        metadata,
        spend: 0.0,
        blocked,
        team_id,
        tpm_limit,
        rpm_limit,
        max_parallel_requests,
        created_at: created,
        updated_at: created,
    };

    let mut db = emu.db();
    if let Some(alias) = vk.key_alias.as_deref() {
        if db
            .keys
            .iter()
            .any(|k| k.key_alias.as_deref() == Some(alias))
        {
            return Err(alias_taken(alias));
        }
    }
    if let Some(existing) = db.keys.iter().find(|k| k.token == vk.token) {
        // The insert is a no-op on conflict: the stored row is untouched, the answer echoes the request.
        vk.created_at = existing.created_at;
        vk.updated_at = existing.updated_at;
        tracing::debug!(key_name = %vk.key_name, "Key re-used; stored row unchanged.");
        return Ok(Json(generate_json(&vk, expires)));
    }
    db.keys.push(vk.clone());
    tracing::debug!(key_name = %vk.key_name, "Key generated.");
    Ok(Json(generate_json(&vk, expires)))
}

/// The items of a JSON list if they are all strings.
pub(crate) fn string_items(items: Vec<Value>) -> Option<Vec<String>> {
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Prisma's message for a `null` on a non-nullable column (`models`, `spend`, a team's `blocked`).
pub(crate) fn prisma_null_message(field: &str) -> String {
    let inner = format!(
        "Unable to match input value to any allowed input type for the field. Parse errors: [`data.{field}`: A value is required but not set, `data.{field}`: A value is required but not set]"
    );
    format!(
        "Unable to match input value to any allowed input type for the field. Parse errors: [{inner}, {inner}]"
    )
}

/// The Prisma error as `/key/update` reports it.
fn prisma_null_error(field: &str) -> ApiError {
    ApiError::auth(
        400,
        format!("Authentication Error, {}", prisma_null_message(field)),
    )
}

/// `validate_key_team_change`: what moving a key (its stored row) into `team` requires.
fn validate_team_change(vk: &VirtualKey, team: &Team) -> Result<(), ApiError> {
    if let Some(m) = vk.models.iter().find(|m| !team.allows(m)) {
        return Err(crate::teams::team_model_denied(team, m));
    }
    let over = |what: &str, key_limit: i64, team_limit: i64| {
        ApiError::auth(
            403,
            format!(
                "Key={} has a {what}={key_limit} which is greater than the team's {what}={team_limit}.",
                vk.token
            ),
        )
    };
    // As in the proxy: a team limit of 0 counts as none, and the rpm comparison is only reached
    // for a key with a `tpm_limit`.
    let exceeds = |key: Option<i64>, team: Option<i64>| match (key, team) {
        (Some(k), Some(t)) if t != 0 && k > t => Some((k, t)),
        _ => None,
    };
    if vk.tpm_limit.is_some() {
        if let Some((k, t)) = exceeds(vk.tpm_limit, team.tpm_limit) {
            return Err(over("tpm_limit", k, t));
        }
        if let Some((k, t)) = exceeds(vk.rpm_limit, team.rpm_limit) {
            return Err(over("rpm_limit", k, t));
        }
    }
    Ok(())
}

/// `POST /key/update`.
pub(crate) async fn update(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/key/update")?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let given_key = f.require_str("key");
    let models = f.list("models");
    let max_budget = f.f64("max_budget");
    let budget_duration = f.str("budget_duration");
    let duration = f.str("duration");
    let key_alias = f.str("key_alias");
    let metadata = f.object("metadata");
    let team_id = f.str("team_id");
    let max_parallel_requests = f.i64("max_parallel_requests");
    let tpm_limit = f.i64("tpm_limit");
    let rpm_limit = f.i64("rpm_limit");
    let blocked = f.bool("blocked");
    let spend = f.f64("spend");
    f.finish()?;
    let Some(given_key) = given_key else {
        return Err(ApiError::PlainInternal); // unreachable: `finish` reported it
    };

    let mut db = emu.db();
    let Some(idx) = db.key_index(&given_key) else {
        return Err(ApiError::auth(
            401,
            format!(
                "Authentication Error: invalid user key - user key does not exist in db. User Key={given_key}"
            ),
        ));
    };
    // Validate everything before touching the row.
    if let Field::Set(mb) = max_budget {
        if mb < 0.0 {
            return Err(ApiError::auth(400, negative_budget(mb)));
        }
    }
    if let Field::Set(t) = &team_id {
        let Some(team) = db.team_index(t).map(|i| &db.teams[i]) else {
            return Err(ApiError::auth(
                404,
                py_error_dict(&format!(
                    "Team doesn't exist in db. Team={t}. Create team via `/team/new` call."
                )),
            ));
        };
        if db.keys[idx].team_id.as_deref() != Some(t.as_str()) {
            validate_team_change(&db.keys[idx], team)?;
        }
    }
    if let Field::Set(alias) = &key_alias {
        let taken = db
            .keys
            .iter()
            .enumerate()
            .any(|(i, k)| i != idx && k.key_alias.as_deref() == Some(alias.as_str()));
        if taken {
            return Err(alias_taken(alias));
        }
    }
    let now = pytime::now();
    let bad_request = |m: String| ApiError::auth(400, format!("Authentication Error, {m}"));
    let new_expiry = match &duration {
        Field::Set(d) if d == "-1" => Some(None),
        Field::Set(d) if !d.is_empty() => Some(Some(
            pytime::expiry(d, now)
                .map(pytime::db_time)
                .map_err(bad_request)?,
        )),
        _ => None,
    };
    let new_budget = match &budget_duration {
        Field::Set(bd) if !bd.is_empty() => Some((
            bd.clone(),
            pytime::budget_reset_at(bd, now).map_err(bad_request)?,
        )),
        _ => None,
    };
    let models = match models {
        Field::Null => return Err(prisma_null_error("models")),
        Field::Set(items) => Field::Set(string_items(items).ok_or_else(|| {
            ApiError::auth(
                400,
                "Authentication Error, Invalid argument type. `models` should be of any of the following types: `String`",
            )
        })?),
        Field::Absent => Field::Absent,
    };
    if spend == Field::Null {
        return Err(prisma_null_error("spend"));
    }

    let vk = &mut db.keys[idx];
    if let Field::Set(m) = models {
        vk.models = m;
    }
    if let Field::Set(s) = spend {
        vk.spend = s;
    }
    apply_nullable(&mut vk.max_budget, max_budget);
    apply_nullable(&mut vk.key_alias, key_alias);
    apply_nullable(&mut vk.blocked, blocked);
    apply_nullable(&mut vk.tpm_limit, tpm_limit);
    apply_nullable(&mut vk.rpm_limit, rpm_limit);
    apply_nullable(&mut vk.max_parallel_requests, max_parallel_requests);
    apply_nullable(&mut vk.team_id, team_id);
    vk.metadata = match metadata {
        Field::Set(m) => Value::Object(m),
        Field::Null => Value::Null,
        // Every update writes `existing metadata or {}` back.
        Field::Absent if vk.metadata.is_null() => Value::Object(Map::new()),
        Field::Absent => vk.metadata.take(),
    };
    if let Some(expires) = new_expiry {
        vk.expires = expires;
    }
    if let Some((bd, reset_at)) = new_budget {
        vk.budget_duration = Some(bd);
        vk.budget_reset_at = Some(reset_at);
    }
    vk.updated_at = pytime::db_time(now);

    let mut out = Map::new();
    out.insert("key".into(), Value::String(given_key));
    out.insert("token".into(), Value::String(vk.token.clone()));
    out.extend(info_json(vk));
    Ok(Json(Value::Object(out)))
}

/// `Set` overwrites, `Null` clears, `Absent` leaves the field alone.
pub(crate) fn apply_nullable<T>(slot: &mut Option<T>, field: Field<T>) {
    match field {
        Field::Set(v) => *slot = Some(v),
        Field::Null => *slot = None,
        Field::Absent => {}
    }
}

/// `POST /key/delete` `{"keys": [...]}` or `{"key_aliases": [...]}`.
pub(crate) async fn delete(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/key/delete")?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let keys = f.str_list("keys").value().unwrap_or_default();
    let aliases = f.str_list("key_aliases").value().unwrap_or_default();
    f.finish()?;

    let mut db = emu.db();
    let (requested, matches): (Vec<String>, Vec<usize>) = if !keys.is_empty() {
        let tokens: Vec<String> = keys.iter().map(|k| token_of(k)).collect();
        let idx = (0..db.keys.len())
            .filter(|i| tokens.contains(&db.keys[*i].token))
            .collect();
        (keys, idx)
    } else if !aliases.is_empty() {
        let idx = (0..db.keys.len())
            .filter(|i| {
                db.keys[*i]
                    .key_alias
                    .as_ref()
                    .is_some_and(|a| aliases.contains(a))
            })
            .collect();
        (aliases, idx)
    } else {
        return Err(ApiError::Validation(vec![json!({
            "type": "value_error",
            "loc": ["body"],
            "msg": "Value error, At least one of 'keys' or 'key_aliases' must be provided.",
            "input": Value::Object(obj.clone()),
            "ctx": {"error": {}},
        })]));
    };
    if matches.is_empty() {
        return Err(ApiError::internal(404, py_error_dict("No keys found")));
    }
    for i in matches.into_iter().rev() {
        // Rate-limit windows live in the proxy's cache, not the key table: they survive.
        let gone = db.keys.remove(i);
        tracing::debug!(key_name = %gone.key_name, "Key deleted.");
    }
    Ok(Json(json!({ "deleted_keys": requested })))
}

/// `GET /key/info?key=`.
pub(crate) async fn info(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::check_caller_team(&emu, &caller)?;
    let given = match (query.get("key"), &caller) {
        (Some(k), _) => Some(k.clone()),
        // Without `?key=`, a virtual key reads its own row (echoed as its token); the master
        // key has none.
        (None, Caller::Key(vk)) => Some(vk.token.clone()),
        (None, Caller::Master) => None,
    };
    let not_found = || {
        ApiError::proxy(
            404,
            "Key not found in database",
            json!("not_found_error"),
            json!("key"),
        )
    };
    let given = given.ok_or_else(not_found)?;
    let db = emu.db();
    let idx = db.key_index(&given).ok_or_else(not_found)?;
    Ok(Json(
        json!({ "key": given, "info": info_json(&db.keys[idx]) }),
    ))
}

/// `GET /key/list?page=&size=&key_alias=&team_id=&return_full_object=`.
pub(crate) async fn list(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    if let Caller::Key(_) = caller {
        return Err(ApiError::proxy(
            403,
            "You are not authorized to access this endpoint. No 'user_id' is associated with your API key.",
            json!("bad_request_error"),
            json!("user_id"),
        ));
    }
    let q: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut f = Fields::query(&q);
    let page = f.bounded_int("page", 1, None).unwrap_or(1);
    let size = f.bounded_int("size", 1, Some(100)).unwrap_or(10);
    let full = f.bool("return_full_object").value().unwrap_or(false);
    let alias = f.str("key_alias").value();
    let team = f.str("team_id").value();
    f.finish()?;

    let db = emu.db();
    let mut rows: Vec<(usize, &VirtualKey)> = db
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| alias.is_none() || k.key_alias == alias)
        .filter(|(_, k)| team.is_none() || k.team_id == team)
        .collect();
    // Newest first; creation order breaks ties between rows made in the same millisecond.
    rows.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(b.0.cmp(&a.0)));
    let total = rows.len();
    let size_u = usize::try_from(size).unwrap_or(100);
    let total_pages = total.div_ceil(size_u);
    let skip = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(size_u);
    let keys: Vec<Value> = rows
        .into_iter()
        .skip(skip)
        .take(size_u)
        .map(|(_, k)| {
            if full {
                list_row_json(k)
            } else {
                Value::String(k.token.clone())
            }
        })
        .collect();
    Ok(Json(json!({
        "keys": keys,
        "total_count": total,
        "current_page": page,
        "total_pages": total_pages,
    })))
}

/// `POST /key/block` `{"key"}` (plaintext or token): the updated row.
pub(crate) async fn block(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&emu, &headers, &body, true, "/key/block")
}

/// `POST /key/unblock` `{"key"}` (plaintext or token): the updated row.
pub(crate) async fn unblock(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&emu, &headers, &body, false, "/key/unblock")
}

/// Write `blocked` on a key and answer the row as the proxy's `LiteLLM_VerificationToken`
/// response model serializes it. An unknown key is only noticed when the proxy reloads the key
/// object after the (no-op) update: a 401 `token_not_found_in_db` naming the token.
fn set_blocked(
    emu: &Emulator,
    headers: &HeaderMap,
    body: &[u8],
    blocked: bool,
    route: &str,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(emu, headers)?;
    auth::require_key_admin(&caller, route)?;
    let obj = json_object(headers, body)?;
    let mut f = Fields::body(&obj);
    let key = f.require_str("key");
    f.finish()?;
    let Some(key) = key else {
        return Err(ApiError::PlainInternal); // unreachable: `finish` reported it
    };
    let mut db = emu.db();
    let token = token_of(&key);
    let Some(idx) = db.key_index(&key) else {
        return Err(ApiError::proxy(
            401,
            format!(
                "Authentication Error, Invalid proxy server token passed. key={token}, not found in db. Create key via `/key/generate` call."
            ),
            json!("token_not_found_in_db"),
            json!("key"),
        ));
    };
    let vk = &mut db.keys[idx];
    vk.blocked = Some(blocked);
    vk.updated_at = pytime::db_time(pytime::now());
    tracing::debug!(key_name = %vk.key_name, blocked, "Key block set.");
    Ok(Json(Value::Object(token_row_json(vk))))
}

/// `POST /key/regenerate` and `/key/{key}/regenerate`: Enterprise-only.
pub(crate) async fn regenerate(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, uri.path())?;
    Err(ApiError::internal(
        500,
        "Internal Server Error, Regenerating Virtual Keys is an Enterprise feature, You must be a LiteLLM Enterprise user to use this feature. If you have a license please set `LITELLM_LICENSE` in your env. Get a 7 day trial key here: https://www.litellm.ai/enterprise#trial. \nPricing: https://www.litellm.ai/#pricing",
    ))
}
