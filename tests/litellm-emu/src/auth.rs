//! Who is calling: the master key, a virtual key, or nobody — with the real proxy's messages.
//!
//! Order of checks (as `user_api_key_auth` does them): no key → 401; malformed `Authorization`
//! → 401; master key → admin; not `sk-...` → 401; unknown key → 401 `token_not_found_in_db`;
//! blocked → 401; expired → 400 `expired_key`. Route-specific checks follow in the handlers; the
//! key's team is checked by [`check_team`] (`common_checks`, after the key's own checks).

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::error::{py_error_dict, py_float, ApiError};
use crate::pytime;
use crate::state::{hash_key, key_name, Team, VirtualKey};
use crate::Emulator;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The master key: proxy admin.
    Master,
    /// A virtual key (a snapshot taken when the request was authenticated).
    Key(Box<VirtualKey>),
}

/// Header LiteLLM reads before `Authorization`.
const LITELLM_KEY_HEADER: &str = "x-litellm-api-key";

fn no_key() -> ApiError {
    ApiError::auth(401, "Authentication Error, No api key passed in.")
}

/// The API key a request carries, or the 401 LiteLLM answers.
fn presented_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let strip = |s: &str| -> Option<String> {
        ["Bearer ", "bearer ", "Basic "]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .map(|rest| rest.trim().to_owned())
    };
    if let Some(v) = headers.get(LITELLM_KEY_HEADER) {
        let s = v.to_str().map_err(|_| no_key())?;
        let key = strip(s).unwrap_or_else(|| s.trim().to_owned());
        return if key.is_empty() {
            Err(no_key())
        } else {
            Ok(key)
        };
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(no_key());
    };
    let malformed = || {
        ApiError::auth(
            401,
            "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.",
        )
    };
    let s = v.to_str().map_err(|_| malformed())?;
    match strip(s) {
        Some(key) if key.is_empty() => Err(no_key()),
        Some(key) => Ok(key),
        None => Err(malformed()),
    }
}

/// 401 `token_not_found_in_db` for a well-formed key that is not (or no longer) in the database.
pub(crate) fn token_not_found(key: &str) -> ApiError {
    ApiError::proxy(
        401,
        format!(
            "Authentication Error, Invalid proxy server token passed. Received API Key = {}, Key Hash (Token) ={}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`",
            key_name(key),
            hash_key(key)
        ),
        json!("token_not_found_in_db"),
        json!("key"),
    )
}

/// Authenticate a request (route-independent checks only).
pub(crate) fn authenticate(emu: &Emulator, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = presented_key(headers)?;
    if key == emu.inner.cfg.master_key {
        return Ok(Caller::Master);
    }
    if !key.starts_with("sk-") {
        return Err(ApiError::auth(
            401,
            format!(
                "Authentication Error, LiteLLM Virtual Key expected. Received={key}, expected to start with 'sk-'."
            ),
        ));
    }
    let token = hash_key(&key);
    let found = {
        let db = emu.db();
        db.keys.iter().find(|k| k.token == token).cloned()
    };
    let Some(vk) = found else {
        return Err(token_not_found(&key));
    };
    if vk.blocked == Some(true) {
        return Err(ApiError::auth(
            401,
            "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.",
        ));
    }
    let now = pytime::now();
    if let Some(expires) = vk.expires.filter(|_| vk.expired(now)) {
        return Err(ApiError::proxy(
            400,
            format!(
                "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
                pytime::py_str(expires),
                pytime::py_str(now)
            ),
            json!("expired_key"),
            // The proxy abbreviates the token here, not the key.
            Value::String(key_name(&token)),
        ));
    }
    Ok(Caller::Key(Box::new(vk)))
}

/// `/key/generate|update|delete|regenerate` reject virtual keys with 401 before the handler runs.
pub(crate) fn require_key_admin(caller: &Caller, route: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Master => Ok(()),
        Caller::Key(_) => Err(ApiError::auth(
            401,
            format!(
                "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role=unknown. Your user_id=unknown"
            ),
        )),
    }
}

/// The message of `ModelManagementAuthChecks.can_user_make_model_call` for a non-admin.
const MODEL_PERMISSION: &str = "User does not have permission to make this model call. Your role=internal_user. You can only make model calls if you are a PROXY_ADMIN or if you are a team admin, by specifying a team_id in the model_info.";

/// `/model/new|update|delete` with a virtual key: 403, wrapped as a `ProxyException`.
pub(crate) fn model_permission(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Master => Ok(()),
        Caller::Key(_) => Err(ApiError::auth(403, py_error_dict(MODEL_PERMISSION))),
    }
}

/// `PATCH /model/{id}/update` with a virtual key: the same 403, but as a bare `HTTPException`.
pub(crate) fn model_permission_detail(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Master => Ok(()),
        Caller::Key(_) => Err(ApiError::Detail {
            status: StatusCode::FORBIDDEN,
            detail: json!({ "error": MODEL_PERMISSION }),
        }),
    }
}

/// The key budget check of LLM routes: spend at or over `max_budget` → 400 `budget_exceeded`.
pub(crate) fn check_budget(vk: &VirtualKey) -> Result<(), ApiError> {
    match vk.max_budget {
        Some(max) if vk.spend >= max => Err(ApiError::proxy(
            400,
            format!(
                "Budget has been exceeded! Current cost: {}, Max budget: {}",
                py_float(vk.spend),
                py_float(max)
            ),
            json!("budget_exceeded"),
            Value::Null,
        )),
        _ => Ok(()),
    }
}

/// The team checks of `common_checks`, run on every route a virtual key of an existing team
/// calls: blocked team → 401; `model` (when the route names one) outside the team's `models` →
/// 401 `team_model_access_denied`; team spend over `max_budget` → 400 `budget_exceeded`.
///
/// The real proxy compares the team's spend with `>` (`_team_max_budget_check`), where the key
/// check uses `>=`: a team at exactly its budget may still call.
pub(crate) fn check_team(team: Option<&Team>, model: Option<&str>) -> Result<(), ApiError> {
    let Some(team) = team else {
        return Ok(());
    };
    if team.blocked {
        return Err(ApiError::auth(
            401,
            format!(
                "Authentication Error, Team={} is blocked. Update via `/team/unblock` if your admin.",
                team.team_id
            ),
        ));
    }
    if let Some(m) = model.filter(|m| !team.allows(m)) {
        return Err(crate::teams::team_model_denied(team, m));
    }
    match team.max_budget {
        Some(max) if team.spend > max => Err(ApiError::proxy(
            400,
            format!(
                "Budget has been exceeded! Team={} Current cost: {}, Max budget: {}",
                team.team_id,
                py_float(team.spend),
                py_float(max)
            ),
            json!("budget_exceeded"),
            Value::Null,
        )),
        _ => Ok(()),
    }
}

/// [`check_team`] for a route that names no model (`/key/info`, `/model/info`, `/team/*`):
/// the master key passes; a virtual key of a blocked or over-budget team does not.
pub(crate) fn check_caller_team(emu: &Emulator, caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Master => Ok(()),
        Caller::Key(vk) => check_team(emu.db().team_of(vk), None),
    }
}
