//! `/api/agents`: agents, their configs, and what they could be routed to.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{AgentView, ModelStatus};
use vc_shared::views;

use super::write;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::submit::build_body;
use crate::{Actor, AppState};

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
