//! `/api/models`: the registry, and grants seen from a model.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{ModelRealmView, ModelStatus, ModelView, Provider};

use super::{check_id, loaded, page_key, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::read::page::{self, Rendered};
use crate::{Actor, AppState};

/// `{models, next}`.
#[derive(Serialize, ToSchema)]
pub struct ModelsBody {
    /// Models, newest first.
    pub models: Vec<ModelView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// `{model}`.
#[derive(Serialize, ToSchema)]
pub struct ModelBody {
    /// The model.
    pub model: ModelView,
}

/// `{realms, next}` of a model.
#[derive(Serialize, ToSchema)]
pub struct ModelRealmsBody {
    /// Grants, oldest first.
    pub realms: Vec<ModelRealmView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// List models, newest first, a page at a time.
#[utoipa::path(get, path = "/api/models", tag = "models",
    params(
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("status" = Option<String>, Query, description = "`active` or `inactive`"),
        ("provider" = Option<String>, Query, description = "A provider, e.g. `openai-compatible`"),
    ),
    responses((status = 200, body = ModelsBody, headers(("ETag" = String))), (status = 304), (status = 400)))]
pub async fn list_models(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let q = page::parse(&raw, &["status", "provider"])?;
    let status = page::one_of(&q, "status", &["active", "inactive"])?
        .map(|v| serde_json::from_value::<ModelStatus>(json!(v)).expect("checked"));
    let provider = page::text(&q, "provider")?
        .map(|v| {
            serde_json::from_value::<Provider>(json!(v))
                .map_err(|_| ApiError::bad_request(format!("provider: unknown provider {v:?}")))
        })
        .transpose()?;
    loaded(&s, &headers).await?;
    let key = page_key("/api/models", &raw, &actor);
    let r = s.pages.get_or_render(key, s.read.version(), || {
        s.read.read(|c| {
            let items = c
                .models_after(q.after.as_ref())
                .filter(|m| status.is_none_or(|st| m.status == st))
                .filter(|m| provider.is_none_or(|p| m.provider == p));
            let (page, next) = page::take(items, q.limit, |m| (m.created_at.clone(), m.id.clone()));
            Rendered::of(&ModelsBody {
                models: page.into_iter().map(|m| c.model_view(m)).collect(),
                next,
            })
        })
    })?;
    Ok(r.respond(&headers))
}

/// Register a model.
///
/// Optional `inputCostPerToken` and `outputCostPerToken` (USD per token, 0 to 1000) are the prices
/// LiteLLM charges to realm keys for the model's tokens, e.g. for a self-hosted model it has no price
/// for; without them LiteLLM uses its own price for the model, if it knows one.
#[utoipa::path(post, path = "/api/models", tag = "models", request_body = command::ModelRegisterBody,
    responses((status = 201, body = ModelBody), (status = 400), (status = 409), (status = 202)))]
pub async fn create_model(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let mut body = body.unwrap_or(json!({}));
    if let Some(o) = body.as_object_mut() {
        o.remove("id");
    }
    write(
        &s,
        &actor,
        &headers,
        CommandKind::ModelRegister,
        Some(body),
        &[],
    )
    .await
}

/// Read a model, with its realms.
#[utoipa::path(get, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), responses((status = 200, headers(("ETag" = String))), (status = 304), (status = 404)))]
pub async fn get_model(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    loaded(&s, &headers).await?;
    let body = s.read.read(|c| {
        let m = c.model(&id)?;
        let mut v = serde_json::to_value(c.model_view(m)).unwrap_or_default();
        v["realms"] = serde_json::to_value(c.model_realms(&id)).unwrap_or_default();
        Some(json!({"model": v}))
    });
    let body = body.ok_or_else(|| ApiError::not_found(format!("model {id} not found")))?;
    Ok(Rendered::of(&body)?.respond(&headers))
}

/// Update a model (`apiKey: null` clears the key).
///
/// Absent fields keep their value; `null` clears `description`, `baseUrl` (where the provider does not
/// require one), `apiKey`, and the prices `inputCostPerToken` / `outputCostPerToken` (back to LiteLLM's
/// own). A change of upstream or price re-creates the model's LiteLLM deployment.
#[utoipa::path(put, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), request_body = command::ModelUpdateBody,
    responses((status = 200, body = ModelBody), (status = 400), (status = 404)))]
pub async fn update_model(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_admin()?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::ModelUpdate,
        body,
        &[("id", &id)],
    )
    .await
}

/// Delete a model.
#[utoipa::path(delete, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_model(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::ModelDelete,
        None,
        &[("id", &id)],
    )
    .await
}

/// List a model's realms (grants), oldest grant first, a page at a time.
#[utoipa::path(get, path = "/api/models/{id}/realms", tag = "grants",
    params(
        ("id" = String, Path),
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses((status = 200, body = ModelRealmsBody, headers(("ETag" = String))), (status = 304), (status = 400), (status = 404)))]
pub async fn list_model_realms(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let q = page::parse(&raw, &[])?;
    loaded(&s, &headers).await?;
    let body = s.read.read(|c| {
        c.model(&id)?;
        let mut grants = c.model_realms(&id);
        grants.sort_by(|a, b| (&a.granted_at, &a.realm_id).cmp(&(&b.granted_at, &b.realm_id)));
        let (realms, next) = page::take_after(grants.into_iter(), &q, |g| {
            (g.granted_at.clone(), g.realm_id.clone())
        });
        Some(ModelRealmsBody { realms, next })
    });
    let body = body.ok_or_else(|| ApiError::not_found(format!("model {id} not found")))?;
    Ok(Rendered::of(&body)?.respond(&headers))
}

/// Grant a model to a realm (`{realmId, monthlyBudgetUsd?}`).
#[utoipa::path(post, path = "/api/models/{id}/realms", tag = "grants", params(("id" = String, Path)), request_body = command::GrantBody,
    responses((status = 200), (status = 400), (status = 404)))]
pub async fn grant(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_admin()?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmGrant,
        body,
        &[("modelId", &id)],
    )
    .await
}

/// `?realmId=` of a revoke.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeQuery {
    realm_id: Option<String>,
}

/// Revoke a model from a realm (`?realmId=`).
#[utoipa::path(delete, path = "/api/models/{id}/realms", tag = "grants", params(("id" = String, Path), ("realmId" = String, Query)), responses((status = 204), (status = 404)))]
pub async fn revoke_query(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RevokeQuery>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    check_id("id", &id)?;
    let realm_id = q
        .realm_id
        .ok_or_else(|| ApiError::bad_request("realmId is required"))?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmRevoke,
        None,
        &[("modelId", &id), ("realmId", &realm_id)],
    )
    .await
}

/// Revoke a model from a realm.
#[utoipa::path(delete, path = "/api/models/{id}/realms/{realmId}", tag = "grants", params(("id" = String, Path), ("realmId" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn revoke(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path((id, realm_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmRevoke,
        None,
        &[("modelId", &id), ("realmId", &realm_id)],
    )
    .await
}
