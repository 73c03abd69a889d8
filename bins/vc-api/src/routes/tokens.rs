//! Realm-admin tokens: `POST /api/tokens`, `GET /api/tokens`, `DELETE /api/tokens/{id}` (global admin
//! only).
//!
//! A token's secret is `vct_` and 32 random bytes in hex. It is shown once, in the `201` of its creation,
//! and stored only as its SHA-256 (`{vc}:token-hash:<sha256>` → id; see the `api: tokens` section of
//! `vc_shared::store`). These writes go straight to Redis, not through the command bus: they are access
//! control data of the API, not domain state the worker derives anything from. Each write appends its
//! audit event (`token.created`, `token.deleted`) in the same Redis script, and publishes it on
//! `vc.evt.token.*`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{validate_id, MAX_NAME_LEN};
use vc_shared::crypto::sha256_hex;
use vc_shared::domain::now_rfc3339;
use vc_shared::store::StoredToken;

use crate::access::{event, publish_event};
use crate::auth::TOKEN_PREFIX;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::read::page;
use crate::{Actor, AppState};

/// The only role a token can have.
pub const ROLE_REALM_ADMIN: &str = "realm-admin";
/// Most realms one token may administer.
pub const MAX_TOKEN_REALMS: usize = 1000;

/// A token as the API shows it: no secret, no hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `realm-admin`.
    pub role: String,
    /// Realms it administers.
    pub realm_ids: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<StoredToken> for TokenView {
    fn from(t: StoredToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            realm_ids: t.realm_ids,
            created_at: t.created_at,
        }
    }
}

/// `{tokens}`.
#[derive(Serialize, ToSchema)]
pub struct TokensBody {
    /// Tokens, oldest first.
    pub tokens: Vec<TokenView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// `201` of a creation: the token and its secret (shown this once).
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token.
    pub token: TokenView,
    /// The bearer secret. Not stored: keep it now.
    pub secret: String,
}

/// `POST /api/tokens` body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenBody {
    /// 1-200 characters.
    pub name: String,
    /// `realm-admin`.
    pub role: String,
    /// Existing realm ids (at least one).
    pub realm_ids: Vec<String>,
}

/// Validates a creation body: `(name, realmIds)`, realm ids trimmed and without duplicates.
fn parse_create(body: Option<Value>) -> ApiResult<(String, Vec<String>)> {
    let body = body.unwrap_or_else(|| json!({}));
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "role" | "realmIds"))
    {
        return Err(ApiError::bad_request(format!("unknown field {k}")));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("name is required")),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME_LEN} characters"
        )));
    }
    match obj.get("role") {
        Some(Value::String(r)) if r == ROLE_REALM_ADMIN => {}
        None | Some(Value::Null) => return Err(ApiError::bad_request("role is required")),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "role must be \"{ROLE_REALM_ADMIN}\""
            )))
        }
    }
    let list = match obj.get("realmIds") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Null) => return Err(ApiError::bad_request("realmIds is required")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "realmIds must be a non-empty list of realm ids",
            ))
        }
    };
    if list.len() > MAX_TOKEN_REALMS {
        return Err(ApiError::bad_request(format!(
            "realmIds must name at most {MAX_TOKEN_REALMS} realms"
        )));
    }
    let mut realm_ids: Vec<String> = Vec::with_capacity(list.len());
    for v in list {
        let Some(s) = v.as_str() else {
            return Err(ApiError::bad_request(
                "realmIds must be a non-empty list of realm ids",
            ));
        };
        let id = validate_id("realmIds", Some(s.to_string()))?;
        if !realm_ids.contains(&id) {
            realm_ids.push(id);
        }
    }
    Ok((name, realm_ids))
}

/// A fresh secret: `vct_` and 32 random bytes in hex.
fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{TOKEN_PREFIX}{}", hex::encode(b))
}

/// Create a realm-admin token (global admin only). The secret is in this response only.
#[utoipa::path(post, path = "/api/tokens", tag = "access", request_body = CreateTokenBody,
    responses((status = 201, body = CreatedToken), (status = 400), (status = 403), (status = 404)))]
pub async fn create_token(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let (name, realm_ids) = parse_create(body)?;
    let found = s.store.realms_by_id(&realm_ids).await?;
    if let Some(missing) = realm_ids
        .iter()
        .find(|id| !found.iter().any(|r| &r.id == *id))
    {
        return Err(ApiError::not_found(format!(
            "realmIds: realm {missing} not found"
        )));
    }
    let id = uuid::Uuid::now_v7().to_string();
    // A clash of two random 256-bit secrets does not happen; the loop only keeps the store's
    // "hash already taken" answer from ever being ignored.
    for _ in 0..3 {
        let secret = new_secret();
        let token = StoredToken {
            id: id.clone(),
            name: name.clone(),
            role: ROLE_REALM_ADMIN.into(),
            realm_ids: realm_ids.clone(),
            created_at: now_rfc3339(),
            secret_sha256: sha256_hex(&secret),
        };
        let ev = event(
            &actor.name,
            "token.created",
            format!("token:{id}"),
            json!({"name": token.name, "role": token.role, "realmIds": token.realm_ids}),
        );
        let data = serde_json::to_string(&ev).unwrap_or_default();
        if s.store.create_token(&token, &data).await? {
            publish_event(&s, &ev).await;
            tracing::info!(token = %id, realms = token.realm_ids.len(), "Token created.");
            let body = CreatedToken {
                token: token.into(),
                secret,
            };
            return Ok((
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(body),
            )
                .into_response());
        }
    }
    Err(ApiError::unavailable("could not create a token, retry"))
}

/// List tokens (no secrets), oldest first, a page at a time.
#[utoipa::path(get, path = "/api/tokens", tag = "access",
    params(
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses((status = 200, body = TokensBody), (status = 400), (status = 403)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    actor: Actor,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<TokensBody>> {
    actor.require_admin()?;
    let q = page::parse(&raw, &[])?;
    let all = s.store.tokens().await?;
    let (page, next) = page::take_after(all.into_iter(), &q, |t| {
        (t.created_at.clone(), t.id.clone())
    });
    Ok(Json(TokensBody {
        tokens: page.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// Delete a token: it stops working at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_token(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    actor.require_admin()?;
    let not_found = || ApiError::not_found(format!("token {id} not found"));
    let id_ok = validate_id("id", Some(id.clone())).map_err(|_| not_found())?;
    let t = s.store.token(&id_ok).await?.ok_or_else(not_found)?;
    let ev = event(
        &actor.name,
        "token.deleted",
        format!("token:{}", t.id),
        json!({"name": t.name, "role": t.role, "realmIds": t.realm_ids}),
    );
    let data = serde_json::to_string(&ev).unwrap_or_default();
    if !s.store.delete_token(&t.id, &data).await? {
        return Err(not_found());
    }
    publish_event(&s, &ev).await;
    tracing::info!(token = %t.id, "Token deleted.");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: Value) -> String {
        parse_create(Some(v)).unwrap_err().message
    }

    #[test]
    fn validates_creation_bodies() {
        assert_eq!(
            parse_create(Some(
                json!({"name": " ops ", "role": "realm-admin", "realmIds": ["a", "b", "a"]})
            ))
            .unwrap(),
            ("ops".to_string(), vec!["a".to_string(), "b".to_string()])
        );
        assert!(err(json!({"role": "realm-admin", "realmIds": ["a"]})).starts_with("name"));
        assert!(
            err(json!({"name": "", "role": "realm-admin", "realmIds": ["a"]})).starts_with("name")
        );
        assert!(
            err(json!({"name": "x".repeat(201), "role": "realm-admin", "realmIds": ["a"]}))
                .starts_with("name")
        );
        assert!(err(json!({"name": "n", "role": "admin", "realmIds": ["a"]})).starts_with("role"));
        assert!(err(json!({"name": "n", "realmIds": ["a"]})).starts_with("role"));
        assert!(
            err(json!({"name": "n", "role": "realm-admin", "realmIds": []}))
                .starts_with("realmIds")
        );
        assert!(
            err(json!({"name": "n", "role": "realm-admin", "realmIds": "a"}))
                .starts_with("realmIds")
        );
        assert!(
            err(json!({"name": "n", "role": "realm-admin", "realmIds": [1]}))
                .starts_with("realmIds")
        );
        assert!(
            err(json!({"name": "n", "role": "realm-admin", "realmIds": ["a b"]}))
                .starts_with("realmIds")
        );
        assert!(
            err(json!({"name": "n", "role": "realm-admin", "realmIds": ["a"], "x": 1}))
                .contains("x")
        );
        assert!(parse_create(None).unwrap_err().message.starts_with("name"));
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), crate::auth::TOKEN_LEN);
        assert!(a.starts_with("vct_"));
    }
}
