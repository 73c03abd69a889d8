//! REST handlers (contract §2). Reads come from Redis; writes go through [`crate::submit`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind, CommandRecord};
use vc_shared::domain::{
    AgentView, ModelRealmView, ModelStatus, ModelView, RealmView, RouterKeyView,
};
use vc_shared::views;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::submit::{build_body, submit};
use crate::{Actor, AppState};

fn idem(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn write(
    state: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    kind: CommandKind,
    body: Option<Value>,
    ids: &[(&str, &str)],
) -> ApiResult<Response> {
    let bytes = build_body(kind, body, ids, state)?;
    submit(state, kind, bytes, idem(headers).as_deref(), actor).await
}

fn check_id(field: &str, id: &str) -> ApiResult<()> {
    command::validate_id(field, Some(id.to_string()))
        .map(|_| ())
        .map_err(ApiError::from)
}

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

/// `{agents}`.
#[derive(Serialize, ToSchema)]
pub struct AgentsBody {
    /// Agents.
    pub agents: Vec<AgentView>,
}

/// List agents.
#[utoipa::path(get, path = "/api/agents", tag = "agents", responses((status = 200, body = AgentsBody)))]
pub async fn list_agents(State(s): State<AppState>, actor: Actor) -> ApiResult<Json<AgentsBody>> {
    actor.require_admin()?;
    let mut out = Vec::new();
    for a in s.store.agents().await? {
        out.push(views::load_agent_view(&s.store, &a).await?);
    }
    Ok(Json(AgentsBody { agents: out }))
}

/// Register an agent (`{did, name}`).
#[utoipa::path(post, path = "/api/agents", tag = "agents", request_body = command::AgentRegisterBody, responses((status = 201), (status = 400), (status = 409)))]
pub async fn create_agent(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_admin()?;
    write(&s, &actor, &headers, CommandKind::AgentRegister, body, &[]).await
}

/// Read an agent.
#[utoipa::path(get, path = "/api/agents/{did}", tag = "agents", params(("did" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn get_agent(
    State(s): State<AppState>,
    actor: Actor,
    Path(did): Path<String>,
) -> ApiResult<Json<Value>> {
    actor.require_agent(&s, &did).await?;
    let a = s
        .store
        .agent(&did)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent {did} not found")))?;
    Ok(Json(
        json!({"agent": views::load_agent_view(&s.store, &a).await?}),
    ))
}

/// Delete an agent (its live session is closed).
#[utoipa::path(delete, path = "/api/agents/{did}", tag = "agents", params(("did" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete_agent(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(did): Path<String>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::AgentDelete,
        None,
        &[("did", &did)],
    )
    .await
}

/// An agent's config (without its key).
#[utoipa::path(get, path = "/api/agents/{did}/llm-config", tag = "agents", params(("did" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn get_llm_config(
    State(s): State<AppState>,
    actor: Actor,
    Path(did): Path<String>,
) -> ApiResult<Json<Value>> {
    actor.require_agent(&s, &did).await?;
    let a = s
        .store
        .agent(&did)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent {did} not found")))?;
    let state = s.store.effective_state(&a).await?;
    Ok(Json(json!({
        "config": views::safe_config(&state),
        "mode": state.mode,
        "realmId": state.realm_id,
        "version": state.version,
        "ackedVersion": s.store.acked_version(&did).await?,
    })))
}

/// Set an agent's config: `{realmId, realmModelId}` | `{registryModelId}` | `{provider, model, …}`.
#[utoipa::path(put, path = "/api/agents/{did}/llm-config", tag = "agents", params(("did" = String, Path)), request_body = command::LlmConfigSetBody,
    responses((status = 200), (status = 400), (status = 403), (status = 404)))]
pub async fn put_llm_config(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(did): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if !actor.is_admin() {
        // Realm admins may only set realm routing, through one of their realms: decided on the command
        // as the worker will read it (so no other form can slip through), before anything is published.
        actor.require_agent(&s, &did).await?;
        let bytes = build_body(
            CommandKind::AgentLlmConfigSet,
            body.clone(),
            &[("did", &did)],
            &s,
        )?;
        match command::Command::parse(CommandKind::AgentLlmConfigSet, &bytes)? {
            command::Command::AgentLlmConfigSet {
                form: command::LlmConfigForm::Realm { realm_id, .. },
                ..
            } => actor.require_realm(&realm_id)?,
            _ => {
                return Err(ApiError::forbidden(
                    "realm admins may only set realm routing ({realmId, realmModelId})",
                ))
            }
        }
    }
    write(
        &s,
        &actor,
        &headers,
        CommandKind::AgentLlmConfigSet,
        body,
        &[("did", &did)],
    )
    .await
}

/// Clear an agent's config (it falls back to its local environment).
#[utoipa::path(delete, path = "/api/agents/{did}/llm-config", tag = "agents", params(("did" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn delete_llm_config(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(did): Path<String>,
) -> ApiResult<Response> {
    actor.require_agent(&s, &did).await?;
    if !actor.is_admin() {
        // A realm admin may clear only a config that routes through one of its realms.
        let a = s
            .store
            .agent(&did)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("agent {did} not found")))?;
        actor.require_routed_here(&did, a.source.as_ref())?;
    }
    write(
        &s,
        &actor,
        &headers,
        CommandKind::AgentLlmConfigClear,
        None,
        &[("did", &did)],
    )
    .await
}

/// What an agent could be routed to through its realms.
#[utoipa::path(get, path = "/api/agents/{did}/realm-llm", tag = "agents", params(("did" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn realm_llm(
    State(s): State<AppState>,
    actor: Actor,
    Path(did): Path<String>,
) -> ApiResult<Json<Value>> {
    actor.require_agent(&s, &did).await?;
    s.store
        .agent(&did)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent {did} not found")))?;
    // A realm admin sees only its own realms of the agent.
    let memberships: Vec<_> = s
        .store
        .agent_realms(&did)
        .await?
        .into_iter()
        .filter(|m| actor.can_read_realm(&m.realm_id))
        .collect();
    let ids: Vec<String> = memberships.iter().map(|m| m.realm_id.clone()).collect();
    let realms = s.store.realms_by_id(&ids).await?;
    let mut out = Vec::new();
    for m in &memberships {
        let Some(r) = realms.iter().find(|r| r.id == m.realm_id) else {
            continue;
        };
        let models: Vec<Value> = views::load_realm_models(&s.store, &r.id)
            .await?
            .into_iter()
            .filter(|x| x.status == ModelStatus::Active)
            .map(|x| json!({"id": x.id, "name": x.name, "provider": x.provider, "modelId": x.model_id, "litellmModelName": x.litellm_model_name}))
            .collect();
        out.push((m.is_primary, r.name.to_lowercase(), json!({
            "realmId": r.id, "realmName": r.name, "isPrimary": m.is_primary, "hasVirtualKey": r.key.is_some(), "models": models,
        })));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(Json(json!({
        "litellmConfigured": s.litellm_public_url.is_some(),
        "litellmBaseUrl": s.litellm_public_url.as_deref(),
        "realms": out.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
    })))
}

/// A command's status. A realm admin may read only the commands it submitted.
#[utoipa::path(get, path = "/api/commands/{id}", tag = "commands", params(("id" = String, Path)), responses((status = 200, body = CommandRecord), (status = 403), (status = 404)))]
pub async fn get_command(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<CommandRecord>> {
    if !actor.is_admin() && s.store.command_issuer(&id).await?.as_deref() != Some(&actor.name) {
        return Err(ApiError::forbidden(format!(
            "command {id} was not submitted by this token"
        )));
    }
    let mut rec = s
        .store
        .command(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("command {id} not found")))?;
    rec.effects = None;
    Ok(Json(rec))
}

/// LiteLLM status as the worker last saw it.
#[utoipa::path(get, path = "/api/litellm/status", tag = "litellm", responses((status = 200)))]
pub async fn litellm_status(State(s): State<AppState>, actor: Actor) -> ApiResult<Json<Value>> {
    actor.require_admin()?;
    let mut c = s.store.conn();
    let raw: Option<String> = redis::cmd("GET")
        .arg("litellm:{status}")
        .query_async(&mut c)
        .await
        .map_err(vc_shared::store::StoreError::from)?;
    let report: Value = raw
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(json!({}));
    Ok(Json(json!({
        "configured": s.litellm_base_url.is_some(),
        "healthy": report.get("healthy").cloned().unwrap_or(Value::Null),
        "baseUrl": s.litellm_base_url.as_deref(),
        "publicUrl": s.litellm_public_url.as_deref(),
        "lastReconcileAt": report.get("lastReconcileAt").cloned().unwrap_or(Value::Null),
        "drift": report.get("drift").cloned().unwrap_or(json!({})),
    })))
}

/// Ask the worker to reconcile LiteLLM with our state.
#[utoipa::path(post, path = "/api/litellm/reconcile", tag = "litellm", responses((status = 202)))]
pub async fn litellm_reconcile(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> ApiResult<Response> {
    actor.require_admin()?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::LitellmReconcile,
        None,
        &[],
    )
    .await
}

/// `?after=&limit=`.
#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// Audit events, oldest first, paged by cursor.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(("after" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200)))]
pub async fn audit(
    State(s): State<AppState>,
    actor: Actor,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    actor.require_admin()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be from 1 to 1000"));
    }
    if let Some(a) = &q.after {
        let ok = a.split_once('-').is_some_and(|(x, y)| {
            !x.is_empty()
                && x.chars().all(|c| c.is_ascii_digit())
                && y.chars().all(|c| c.is_ascii_digit())
                && !y.is_empty()
        });
        if !ok {
            return Err(ApiError::bad_request(
                "after must be a cursor returned as next",
            ));
        }
    }
    let rows = s.store.audit_after(q.after.as_deref(), limit).await?;
    let next = rows.last().map(|(id, _)| id.clone());
    let events: Vec<Value> = rows
        .into_iter()
        .filter_map(|(id, data)| {
            let mut v: Value = serde_json::from_str(&data).ok()?;
            v["id"] = Value::String(id);
            Some(v)
        })
        .collect();
    Ok(Json(json!({"events": events, "next": next})))
}

/// 404 for unknown routes, as JSON.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such route", "code": "NOT_FOUND"})),
    )
}

/// A method the path does not have: answered as the contract's `NOT_FOUND` (its error codes have no
/// 405), as JSON.
pub async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such route for this method", "code": "NOT_FOUND"})),
    )
}
