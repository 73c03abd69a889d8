//! The JSON shapes of a virtual key's row: as `/key/info` and `/key/update` show it, as
//! `/key/generate` answers it, and as `/key/list?return_full_object=true` lists it.
//!
//! The same row comes back in three Pydantic spellings: `isoformat()` datetimes (`+00:00`) from
//! the handlers that dump the Prisma row to a dict, `...Z` from the ones that return a model.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::pytime::{iso_offset, iso_z};
use crate::state::{VirtualKey, ADMIN_USER_ID};

fn iso_offset_opt(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(iso_offset(t)))
}

pub(crate) fn iso_z_opt(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(iso_z(t)))
}

/// The row as `/key/info` (under `info`) and `/key/update` show it.
pub(crate) fn info_json(vk: &VirtualKey) -> Map<String, Value> {
    let v = json!({
        "key_name": vk.key_name,
        "key_alias": vk.key_alias,
        "soft_budget_cooldown": false,
        "spend": vk.spend,
        "expires": iso_offset_opt(vk.expires),
        "models": vk.models,
        "aliases": {},
        "config": {},
        "router_settings": {},
        "user_id": null,
        "team_id": vk.team_id,
        "permissions": {},
        "max_parallel_requests": vk.max_parallel_requests,
        "metadata": vk.metadata,
        "blocked": vk.blocked,
        "tpm_limit": vk.tpm_limit,
        "rpm_limit": vk.rpm_limit,
        "max_budget": vk.max_budget,
        "budget_duration": vk.budget_duration,
        "budget_reset_at": iso_offset_opt(vk.budget_reset_at),
        "allowed_cache_controls": [],
        "allowed_routes": [],
        "model_spend": {},
        "model_max_budget": {},
        "budget_id": null,
        "organization_id": null,
        "object_permission_id": null,
        "created_at": iso_offset(vk.created_at),
        "created_by": ADMIN_USER_ID,
        "updated_at": iso_offset(vk.updated_at),
        "updated_by": ADMIN_USER_ID,
        "rotation_count": 0,
        "auto_rotate": false,
        "rotation_interval": null,
        "last_rotation_at": null,
        "key_rotation_at": null,
        "litellm_budget_table": null,
        "litellm_organization_table": null,
        "object_permission": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `/key/generate` answer (Pydantic spelling: `...Z` datetimes, `duration` echoed as null).
pub(crate) fn generate_json(vk: &VirtualKey, expires_exact: Option<OffsetDateTime>) -> Value {
    json!({
        "key_alias": vk.key_alias,
        "duration": null,
        "models": vk.models,
        "spend": vk.spend,
        "max_budget": vk.max_budget,
        "user_id": null,
        "team_id": vk.team_id,
        "max_parallel_requests": vk.max_parallel_requests,
        "metadata": vk.metadata,
        "tpm_limit": vk.tpm_limit,
        "rpm_limit": vk.rpm_limit,
        "budget_duration": vk.budget_duration,
        "allowed_cache_controls": [],
        "config": {},
        "permissions": {},
        "model_max_budget": {},
        "model_rpm_limit": null,
        "model_tpm_limit": null,
        "guardrails": null,
        "prompts": null,
        "blocked": vk.blocked,
        "aliases": {},
        "object_permission": null,
        "key": vk.key,
        "budget_id": null,
        "tags": null,
        "enforced_params": null,
        "allowed_routes": [],
        "allowed_passthrough_routes": null,
        "allowed_vector_store_indexes": null,
        "rpm_limit_type": null,
        "tpm_limit_type": null,
        "router_settings": {
            "routing_strategy_args": null, "routing_strategy": null,
            "model_group_retry_policy": null, "allowed_fails": null, "cooldown_time": null,
            "num_retries": null, "timeout": null, "max_retries": null, "retry_after": null,
            "fallbacks": null, "context_window_fallbacks": null, "model_group_alias": {},
        },
        "key_name": vk.key_name,
        "expires": iso_z_opt(expires_exact),
        "token_id": vk.token,
        "organization_id": null,
        "litellm_budget_table": null,
        "token": vk.token,
        "created_by": ADMIN_USER_ID,
        "updated_by": ADMIN_USER_ID,
        "created_at": iso_z(vk.created_at),
        "updated_at": iso_z(vk.updated_at),
    })
}

/// The row as a `LiteLLM_VerificationToken` model serializes it (`/key/block`, `/key/unblock`).
pub(crate) fn token_row_json(vk: &VirtualKey) -> Map<String, Value> {
    let v = json!({
        "token": vk.token,
        "key_name": vk.key_name,
        "key_alias": vk.key_alias,
        "spend": vk.spend,
        "max_budget": vk.max_budget,
        "expires": iso_z_opt(vk.expires),
        "models": vk.models,
        "aliases": {},
        "config": {},
        "user_id": null,
        "team_id": vk.team_id,
        "max_parallel_requests": vk.max_parallel_requests,
        "metadata": vk.metadata,
        "tpm_limit": vk.tpm_limit,
        "rpm_limit": vk.rpm_limit,
        "budget_duration": vk.budget_duration,
        "budget_reset_at": iso_z_opt(vk.budget_reset_at),
        "allowed_cache_controls": [],
        "allowed_routes": [],
        "permissions": {},
        "model_spend": {},
        "model_max_budget": {},
        "soft_budget_cooldown": false,
        "blocked": vk.blocked,
        "litellm_budget_table": null,
        "org_id": null,
        "created_at": iso_z(vk.created_at),
        "created_by": ADMIN_USER_ID,
        "updated_at": iso_z(vk.updated_at),
        "updated_by": ADMIN_USER_ID,
        "object_permission_id": null,
        "object_permission": null,
        "rotation_count": 0,
        "auto_rotate": false,
        "rotation_interval": null,
        "last_rotation_at": null,
        "key_rotation_at": null,
        "router_settings": {},
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A `/key/list?return_full_object=true` row (`LiteLLM_VerificationToken` + auth fields).
pub(crate) fn list_row_json(vk: &VirtualKey) -> Value {
    let mut row = token_row_json(vk);
    let view = json!({
        "team_spend": null,
        "team_alias": null,
        "team_tpm_limit": null,
        "team_rpm_limit": null,
        "team_max_budget": null,
        "team_models": [],
        "team_blocked": false,
        "soft_budget": null,
        "team_model_aliases": null,
        "team_member": null,
        "team_metadata": null,
        "end_user_id": null,
        "api_key": null,
        "user_role": null,
        "user": null,
    });
    if let Value::Object(m) = view {
        row.extend(m);
    }
    // The rest of `UserAPIKeyAuth`'s fields, all unset for a plain key.
    for field in LIST_ROW_NULLS {
        row.insert(field.to_owned(), Value::Null);
    }
    Value::Object(row)
}

/// Fields every `/key/list?return_full_object=true` row carries as `null`.
const LIST_ROW_NULLS: [&str; 22] = [
    "team_object_permission_id",
    "team_member_spend",
    "team_member_tpm_limit",
    "team_member_rpm_limit",
    "end_user_tpm_limit",
    "end_user_rpm_limit",
    "end_user_max_budget",
    "organization_max_budget",
    "organization_tpm_limit",
    "organization_rpm_limit",
    "organization_metadata",
    "last_refreshed_at",
    "allowed_model_region",
    "parent_otel_span",
    "rpm_limit_per_model",
    "tpm_limit_per_model",
    "user_tpm_limit",
    "user_rpm_limit",
    "user_email",
    "user_spend",
    "user_max_budget",
    "request_route",
];
