//! `/team/new`, `/team/update`, `/team/info`, `/team/delete`, `/team/list`.
//!
//! Real-proxy behaviour reproduced here (1.80.17, master key):
//! - new: `team_id` is generated (uuid) unless given; a taken `team_id` → 400; `team_alias` is
//!   **not** unique; `models: []` = all models; `budget_duration` sets `budget_reset_at` as for a
//!   key; the row lists the master key's user (`default_user_id`) as the team's admin;
//!   `max_parallel_requests` is not a field of the request and is ignored (the row shows null).
//! - update: missing `team_id` → 422; unknown team → 404; every field given is written, so `null`
//!   **clears** `team_alias`, `max_budget`, `tpm_limit`, `rpm_limit`, `budget_duration` (its
//!   `budget_reset_at` stays) and writes `metadata` as `null`, while `null` on the non-nullable
//!   `models` or `blocked` is a 500 from the database layer; `spend` and `max_parallel_requests`
//!   cannot be set (not fields of the request: ignored).
//! - info: `{team_id, team_info, keys, team_memberships}`, the keys with their `token`; unknown →
//!   404; a virtual key may only read its own team (403).
//! - delete: every id must exist (404 otherwise, nothing deleted); deletes the teams **and every
//!   key whose `team_id` is one of them**; answers the ids as given.
//! - list: every team, sorted by `team_alias` (teams without one first); virtual keys get 401.
//!
//! What a team does to its keys' calls is in [`crate::auth::check_team`] and, for its
//! `rpm_limit`/`tpm_limit` (all its keys together), in `limits`; spend is charged in `chat`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::auth::{self, Caller};
use crate::body::{json_object, Field, Fields};
use crate::error::{py_error_dict, py_list, py_repr, ApiError};
use crate::key_rows::{info_json, iso_z_opt};
use crate::keys::string_items;
use crate::keys::{apply_nullable, negative_budget, prisma_null_message};
use crate::pytime::{self, iso_z};
use crate::state::{Team, VirtualKey, ADMIN_USER_ID};
use crate::Emulator;

/// `organization_id` that `/team/list` reads as "teams without an organization".
const DEFAULT_ORGANIZATION: &str = "default_organization";

/// The 401 `team_model_access_denied` of a team whose `models` exclude `model`.
pub(crate) fn team_model_denied(team: &Team, model: &str) -> ApiError {
    ApiError::proxy(
        401,
        format!(
            "team not allowed to access model. This team can only access models={}. Tried to access {model}",
            py_list(&team.models)
        ),
        json!("team_model_access_denied"),
        json!("model"),
    )
}

/// `str({'message': msg})`, the dict `/team/info` puts in its messages.
fn py_message_dict(msg: &str) -> String {
    format!("{{'message': {}}}", py_repr(msg))
}

/// The team as the `LiteLLM_TeamTable` response model serializes it (`/team/new`).
fn team_json(t: &Team) -> Map<String, Value> {
    let v = json!({
        "team_alias": t.team_alias,
        "team_id": t.team_id,
        "organization_id": null,
        "admins": [],
        "members": [],
        "members_with_roles": [{"user_id": ADMIN_USER_ID, "user_email": null, "role": "admin"}],
        "team_member_permissions": [],
        "metadata": t.metadata,
        "tpm_limit": t.tpm_limit,
        "rpm_limit": t.rpm_limit,
        "max_budget": t.max_budget,
        "budget_duration": t.budget_duration,
        "models": t.models,
        "blocked": t.blocked,
        "router_settings": {},
        "spend": t.spend,
        "max_parallel_requests": t.max_parallel_requests,
        "budget_reset_at": iso_z_opt(t.budget_reset_at),
        "model_id": null,
        "litellm_model_table": null,
        "object_permission": null,
        "updated_at": iso_z(t.updated_at),
        "created_at": iso_z(t.created_at),
        "object_permission_id": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `team_json` plus extra fields.
fn team_json_with(t: &Team, extra: Value) -> Value {
    let mut row = team_json(t);
    if let Value::Object(m) = extra {
        row.extend(m);
    }
    Value::Object(row)
}

/// A key of the team as `/team/info` lists it: the database row, `token` included (the proxy's
/// attempt to drop it works on a copy), `expires` rewritten by `isoformat()`.
fn team_key_json(vk: &VirtualKey) -> Value {
    let mut row = info_json(vk);
    row.insert("token".into(), Value::String(vk.token.clone()));
    row.insert("created_at".into(), Value::String(iso_z(vk.created_at)));
    row.insert("updated_at".into(), Value::String(iso_z(vk.updated_at)));
    row.insert("budget_reset_at".into(), iso_z_opt(vk.budget_reset_at));
    Value::Object(row)
}

fn internal_500(message: &str) -> ApiError {
    ApiError::internal(500, format!("Internal Server Error, {message}"))
}

/// Team `models` must be strings for the database (`list` is untyped in the request model).
fn team_models(items: Vec<Value>) -> Result<Vec<String>, ApiError> {
    string_items(items).ok_or_else(|| {
        internal_500(
            "Invalid argument type. `models` should be of any of the following types: `String`",
        )
    })
}

/// `POST /team/new`.
pub(crate) async fn new_team(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/team/new")?;
    let obj = json_object(&headers, &body)?;
    // In `NewTeamRequest`'s field order, as Pydantic reports errors.
    let mut f = Fields::body(&obj);
    let team_alias = f.str("team_alias").value();
    let team_id = f.str("team_id").value();
    let metadata = f.object("metadata").value();
    let tpm_limit = f.i64("tpm_limit").value();
    let rpm_limit = f.i64("rpm_limit").value();
    let max_budget = f.f64("max_budget").value();
    let budget_duration = f.str("budget_duration").value();
    f.reject_null("models", "list_type", "Input should be a valid list");
    let models = f.list("models").value().unwrap_or_default();
    f.reject_null("blocked", "bool_type", "Input should be a valid boolean");
    let blocked = f.bool("blocked").value().unwrap_or(false);
    f.finish()?;

    if let Some(mb) = max_budget.filter(|mb| *mb < 0.0) {
        return Err(ApiError::internal(400, negative_budget(mb)));
    }
    let mut db = emu.db();
    if let Some(id) = team_id.as_deref().filter(|id| db.team_index(id).is_some()) {
        return Err(ApiError::internal(
            400,
            py_error_dict(&format!(
                "Team id = {id} already exists. Please use a different team id."
            )),
        ));
    }
    let now = pytime::now();
    let budget_reset_at = budget_duration
        .as_deref()
        .map(|d| pytime::budget_reset_at(d, now))
        .transpose()
        .map_err(|m| internal_500(&m))?;
    let created = pytime::db_time(now);
    let team = Team {
        team_id: team_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        team_alias,
        models: team_models(models)?,
        max_budget,
        budget_duration,
        budget_reset_at,
        spend: 0.0,
        blocked,
        metadata: Value::Object(metadata.unwrap_or_default()),
        tpm_limit,
        rpm_limit,
        max_parallel_requests: None,
        created_at: created,
        updated_at: created,
    };
    let out = team_json(&team);
    tracing::debug!(team_id = %team.team_id, "Team created.");
    db.teams.push(team);
    Ok(Json(Value::Object(out)))
}

/// `POST /team/update` `{team_id, ...}`: every field given is written, `null` included.
pub(crate) async fn update_team(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/team/update")?;
    let obj = json_object(&headers, &body)?;
    // In `UpdateTeamRequest`'s field order.
    let mut f = Fields::body(&obj);
    let team_id = f.require_str("team_id");
    let team_alias = f.str("team_alias");
    let metadata = f.object("metadata");
    let tpm_limit = f.i64("tpm_limit");
    let rpm_limit = f.i64("rpm_limit");
    let max_budget = f.f64("max_budget");
    let models = f.list("models");
    let blocked = f.bool("blocked");
    let budget_duration = f.str("budget_duration");
    f.finish()?;
    let Some(team_id) = team_id else {
        return Err(ApiError::PlainInternal); // unreachable: `finish` reported it
    };

    if let Field::Set(mb) = max_budget {
        if mb < 0.0 {
            return Err(ApiError::internal(400, negative_budget(mb)));
        }
    }
    let mut db = emu.db();
    let Some(idx) = db.team_index(&team_id) else {
        return Err(ApiError::internal(
            404,
            py_error_dict(&format!("Team not found, passed team_id={team_id}")),
        ));
    };
    let now = pytime::now();
    let new_reset = match &budget_duration {
        Field::Set(bd) => Some(pytime::budget_reset_at(bd, now).map_err(|m| internal_500(&m))?),
        _ => None,
    };
    let models = match models {
        Field::Set(items) => Some(team_models(items)?),
        Field::Null => return Err(internal_500(&prisma_null_message("models"))),
        Field::Absent => None,
    };
    if blocked == Field::Null {
        return Err(internal_500(&prisma_null_message("blocked")));
    }

    let team = &mut db.teams[idx];
    apply_nullable(&mut team.team_alias, team_alias);
    apply_nullable(&mut team.tpm_limit, tpm_limit);
    apply_nullable(&mut team.rpm_limit, rpm_limit);
    apply_nullable(&mut team.max_budget, max_budget);
    apply_nullable(&mut team.budget_duration, budget_duration);
    if new_reset.is_some() {
        team.budget_reset_at = new_reset;
    }
    match metadata {
        Field::Set(m) => team.metadata = Value::Object(m),
        Field::Null => team.metadata = Value::Null,
        Field::Absent => {}
    }
    if let Some(m) = models {
        team.models = m;
    }
    if let Field::Set(b) = blocked {
        team.blocked = b;
    }
    team.updated_at = pytime::db_time(now);
    // The Prisma row, which carries a few columns the response model of `/team/new` does not.
    let data = team_json_with(
        team,
        json!({"model_spend": {}, "model_max_budget": {}, "litellm_organization_table": null}),
    );
    Ok(Json(json!({ "team_id": team_id, "data": data })))
}

/// `GET /team/info?team_id=`.
pub(crate) async fn team_info(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::check_caller_team(&emu, &caller)?;
    let Some(team_id) = query.get("team_id") else {
        return Err(ApiError::auth(
            422,
            py_message_dict("Malformed request. No team id passed in."),
        ));
    };
    let db = emu.db();
    let Some(idx) = db.team_index(team_id) else {
        return Err(ApiError::auth(
            404,
            py_message_dict(&format!("Team not found, passed team id: {team_id}.")),
        ));
    };
    if let Caller::Key(vk) = &caller {
        // `validate_membership` for a key without a user: only its own team.
        match vk.team_id.as_deref() {
            Some(own) if own == team_id => {}
            Some(own) => {
                return Err(ApiError::auth(
                    403,
                    py_error_dict(&format!(
                        "Team key for team={own} not authorized to access this team={team_id}"
                    )),
                ))
            }
            None => {
                return Err(ApiError::auth(
                    403,
                    py_error_dict(&format!(
                        "API key not authorized to access this team={team_id}. No user_id or team_id associated with this key."
                    )),
                ))
            }
        }
    }
    let keys: Vec<Value> = db
        .keys
        .iter()
        .filter(|k| k.team_id.as_deref() == Some(team_id.as_str()))
        .map(team_key_json)
        .collect();
    Ok(Json(json!({
        "team_id": team_id,
        "team_info": team_json_with(&db.teams[idx], json!({"team_member_budget_table": null})),
        "keys": keys,
        "team_memberships": [],
    })))
}

/// `POST /team/delete` `{"team_ids": [...]}`: the teams and their keys.
pub(crate) async fn delete_team(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::require_key_admin(&caller, "/team/delete")?;
    let obj = json_object(&headers, &body)?;
    let mut f = Fields::body(&obj);
    let team_ids = f.require_str_list("team_ids");
    f.finish()?;
    let Some(team_ids) = team_ids else {
        return Err(ApiError::PlainInternal); // unreachable: `finish` reported it
    };

    let mut db = emu.db();
    if let Some(missing) = team_ids.iter().find(|id| db.team_index(id).is_none()) {
        return Err(ApiError::Detail {
            status: StatusCode::NOT_FOUND,
            detail: json!({ "error": format!("Team not found, passed team_id={missing}") }),
        });
    }
    let in_list = |id: &Option<String>| id.as_ref().is_some_and(|id| team_ids.contains(id));
    let before = db.keys.len();
    db.keys.retain(|k| !in_list(&k.team_id));
    let keys_gone = before - db.keys.len();
    db.teams.retain(|t| !team_ids.contains(&t.team_id));
    tracing::debug!(teams = team_ids.len(), keys = keys_gone, "Teams deleted.");
    Ok(Json(json!({ "deleted_teams": team_ids })))
}

/// `GET /team/list[?user_id=][&organization_id=]`.
pub(crate) async fn list_teams(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&emu, &headers)?;
    auth::check_caller_team(&emu, &caller)?;
    if let Caller::Key(_) = caller {
        return Err(ApiError::Detail {
            status: StatusCode::UNAUTHORIZED,
            detail: json!({"error": "Only admin users can query all teams/other teams. Your user role=internal_user"}),
        });
    }
    // Every team's only member is the master key's user; no team has an organization.
    let keep = query.get("user_id").is_none_or(|u| u == ADMIN_USER_ID)
        && query
            .get("organization_id")
            .is_none_or(|o| o == DEFAULT_ORGANIZATION);
    let db = emu.db();
    let mut teams: Vec<&Team> = if keep {
        db.teams.iter().collect()
    } else {
        Vec::new()
    };
    // Python's stable sort on `team_alias or ""`.
    teams.sort_by(|a, b| {
        let alias = |t: &Team| t.team_alias.clone().unwrap_or_default();
        alias(a).cmp(&alias(b))
    });
    let rows: Vec<Value> = teams
        .into_iter()
        .map(|t| team_json_with(t, json!({"team_memberships": []})))
        .collect();
    Ok(Json(Value::Array(rows)))
}
