//! `/api/realms`: realms, their models and key, and their members.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{ModelStatus, ModelView, RealmView, RouterKeyView};
use vc_shared::views;

use super::{check_id, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::{Actor, AppState};

/// `{realms}`.
#[derive(Serialize, ToSchema)]
pub struct RealmsBody {
    /// Realms.
    pub realms: Vec<RealmView>,
}

/// List realms.
#[utoipa::path(get, path = "/api/realms", tag = "realms", responses((status = 200, body = RealmsBody)))]
pub async fn list_realms(State(s): State<AppState>, actor: Actor) -> ApiResult<Json<RealmsBody>> {
    let mut out = Vec::new();
    for r in s.store.realms().await? {
        if actor.can_read_realm(&r.id) {
            out.push(views::load_realm_view(&s.store, &r).await?);
        }
    }
    Ok(Json(RealmsBody { realms: out }))
}

/// Create a realm.
#[utoipa::path(post, path = "/api/realms", tag = "realms", request_body = command::RealmCreateBody, responses((status = 201), (status = 400), (status = 409)))]
pub async fn create_realm(
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
        CommandKind::RealmCreate,
        Some(body),
        &[],
    )
    .await
}

async fn realm_models(s: &AppState, realm_id: &str) -> ApiResult<Vec<ModelView>> {
    let mut out = Vec::new();
    for m in views::load_realm_models(&s.store, realm_id).await? {
        out.push(views::load_model_view(&s.store, &m).await?);
    }
    out.sort_by_key(|m| m.name.to_lowercase());
    Ok(out)
}

/// Read a realm with its agents and models.
#[utoipa::path(get, path = "/api/realms/{id}", tag = "realms", params(("id" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn get_realm(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    actor.require_realm(&id)?;
    let r = s
        .store
        .realm(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("realm {id} not found")))?;
    let members = s.store.realm_members(&id).await?;
    let dids: Vec<String> = members.iter().map(|m| m.agent_did.clone()).collect();
    let mut agents = Vec::new();
    for a in s.store.agents_by_did(&dids).await? {
        agents.push(views::load_agent_view(&s.store, &a).await?);
    }
    Ok(Json(json!({
        "realm": views::load_realm_view(&s.store, &r).await?,
        "agents": agents,
        "models": realm_models(&s, &id).await?,
    })))
}

/// Update a realm.
#[utoipa::path(patch, path = "/api/realms/{id}", tag = "realms", params(("id" = String, Path)), request_body = command::RealmUpdateBody, responses((status = 200), (status = 404), (status = 409)))]
pub async fn update_realm(
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
        CommandKind::RealmUpdate,
        body,
        &[("realmId", &id)],
    )
    .await
}

/// Delete a realm (its key is deleted in LiteLLM; routed agents get `config: null`).
#[utoipa::path(delete, path = "/api/realms/{id}", tag = "realms", params(("id" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_realm(
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
        CommandKind::RealmDelete,
        None,
        &[("realmId", &id)],
    )
    .await
}

/// `{models, routerKey}` of a realm.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmModelsBody {
    /// Active granted models.
    pub models: Vec<ModelView>,
    /// The realm's key.
    pub router_key: Option<RouterKeyView>,
}

/// A realm's active granted models and its key.
#[utoipa::path(get, path = "/api/realms/{id}/models", tag = "realms", params(("id" = String, Path)), responses((status = 200, body = RealmModelsBody), (status = 404)))]
pub async fn get_realm_models(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<RealmModelsBody>> {
    actor.require_realm(&id)?;
    let r = s
        .store
        .realm(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("realm {id} not found")))?;
    let view = views::load_realm_view(&s.store, &r).await?;
    let models = realm_models(&s, &id)
        .await?
        .into_iter()
        .filter(|m| m.status == ModelStatus::Active)
        .collect();
    Ok(Json(RealmModelsBody {
        models,
        router_key: view.router_key,
    }))
}

/// Add an agent to a realm.
#[utoipa::path(post, path = "/api/realms/{id}/agents", tag = "realms", params(("id" = String, Path)), request_body = command::MembershipBody, responses((status = 200), (status = 404)))]
pub async fn add_agent(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    check_id("id", &id)?;
    if !actor.is_admin() {
        if let Some(did) = body
            .as_ref()
            .and_then(|b| b.get("agentDid"))
            .and_then(Value::as_str)
        {
            actor.require_adoptable(&s, did.trim()).await?;
        }
    }
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmAgentAdd,
        body,
        &[("realmId", &id)],
    )
    .await
}

/// Remove an agent from a realm.
#[utoipa::path(delete, path = "/api/realms/{id}/agents/{did}", tag = "realms", params(("id" = String, Path), ("did" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn remove_agent(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path((id, did)): Path<(String, String)>,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmAgentRemove,
        None,
        &[("realmId", &id), ("agentDid", &did)],
    )
    .await
}
