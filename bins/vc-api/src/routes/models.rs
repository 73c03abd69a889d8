//! `/api/models`: the registry, and grants seen from a model.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{ModelRealmView, ModelView};
use vc_shared::views;

use super::{check_id, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::{Actor, AppState};

/// `{models}`.
#[derive(Serialize, ToSchema)]
pub struct ModelsBody {
    /// Models.
    pub models: Vec<ModelView>,
}

/// `{model}`.
#[derive(Serialize, ToSchema)]
pub struct ModelBody {
    /// The model.
    pub model: ModelView,
}

/// `{realms}` of a model.
#[derive(Serialize, ToSchema)]
pub struct ModelRealmsBody {
    /// Grants.
    pub realms: Vec<ModelRealmView>,
}

/// List models.
#[utoipa::path(get, path = "/api/models", tag = "models", responses((status = 200, body = ModelsBody)))]
pub async fn list_models(State(s): State<AppState>, actor: Actor) -> ApiResult<Json<ModelsBody>> {
    actor.require_admin()?;
    let mut out = Vec::new();
    for m in s.store.models().await? {
        out.push(views::load_model_view(&s.store, &m).await?);
    }
    Ok(Json(ModelsBody { models: out }))
}

/// Register a model.
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

async fn model_realms(s: &AppState, id: &str) -> ApiResult<Vec<ModelRealmView>> {
    let grants = s.store.model_grants(id).await?;
    let ids: Vec<String> = grants.iter().map(|(r, _)| r.clone()).collect();
    let realms = s.store.realms_by_id(&ids).await?;
    Ok(grants
        .into_iter()
        .map(|(realm_id, granted_at)| ModelRealmView {
            realm_name: realms
                .iter()
                .find(|r| r.id == realm_id)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| realm_id.clone()),
            realm_id,
            granted_at,
        })
        .collect())
}

/// Read a model, with its realms.
#[utoipa::path(get, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn get_model(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    actor.require_admin()?;
    let m = s
        .store
        .model(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("model {id} not found")))?;
    let mut v =
        serde_json::to_value(views::load_model_view(&s.store, &m).await?).unwrap_or_default();
    v["realms"] = serde_json::to_value(model_realms(&s, &id).await?).unwrap_or_default();
    Ok(Json(json!({"model": v})))
}

/// Update a model (`apiKey: null` clears the key).
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

/// List a model's realms.
#[utoipa::path(get, path = "/api/models/{id}/realms", tag = "grants", params(("id" = String, Path)), responses((status = 200, body = ModelRealmsBody), (status = 404)))]
pub async fn list_model_realms(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelRealmsBody>> {
    actor.require_admin()?;
    s.store
        .model(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("model {id} not found")))?;
    Ok(Json(ModelRealmsBody {
        realms: model_realms(&s, &id).await?,
    }))
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
