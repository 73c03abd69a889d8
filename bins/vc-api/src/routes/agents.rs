//! `/api/agents`: agents, their configs, and what they could be routed to.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{AgentView, Mode, ModelStatus};
use vc_shared::views;

use super::{check_id, loaded, page_key, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::read::page::{self, Rendered};
use crate::submit::build_body;
use crate::{Actor, AppState};

/// `{agents, next}`.
#[derive(Serialize, ToSchema)]
pub struct AgentsBody {
    /// Agents, oldest first.
    pub agents: Vec<AgentView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// List agents, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/agents", tag = "agents",
    params(
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("realmId" = Option<String>, Query, description = "Only members of this realm"),
        ("online" = Option<bool>, Query, description = "Only agents connected now (`true`) or not (`false`)"),
        ("mode" = Option<String>, Query, description = "`realm`, `registry`, `manual` or `none` (no config)"),
        ("q" = Option<String>, Query, description = "Prefix of the name (case-insensitive) or of the DID"),
    ),
    responses((status = 200, body = AgentsBody, headers(("ETag" = String))), (status = 304), (status = 400)))]
pub async fn list_agents(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    loaded(&s, &headers).await?;
    let realm = raw.get("realmId").cloned();
    if let Some(r) = &realm {
        check_id("realmId", r)?;
    }
    agents_page(&s, &actor, &headers, &raw, realm.as_deref(), "/api/agents")
}

/// A page of agents (all, or a realm's members) with the agent filters.
pub(crate) fn agents_page(
    s: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    raw: &HashMap<String, String>,
    realm: Option<&str>,
    path: &str,
) -> ApiResult<Response> {
    let filters: &[&str] = if path == "/api/agents" {
        &["realmId", "online", "mode", "q"]
    } else {
        &["online", "mode", "q"]
    };
    let q = page::parse(raw, filters)?;
    let online = page::flag(&q, "online")?;
    let mode = page::one_of(&q, "mode", &["realm", "registry", "manual", "none"])?;
    let text = page::text(&q, "q")?;
    let lower = text.map(str::to_lowercase);
    let key = page_key(&format!("{path}/{}", realm.unwrap_or("")), raw, actor);
    let r = s.pages.get_or_render(key, s.read.version(), || {
        s.read.read(|c| {
            let items = c
                .agents_after(realm, q.after.as_ref())
                .filter(|a| online.is_none_or(|o| c.is_online(&a.did) == o))
                .filter(|a| {
                    mode.is_none_or(|m| {
                        let have = a.source.as_ref().map(|src| src.mode());
                        matches!(
                            (m, have),
                            ("none", None)
                                | ("realm", Some(Mode::Realm))
                                | ("registry", Some(Mode::Registry))
                                | ("manual", Some(Mode::Manual))
                        )
                    })
                })
                .filter(|a| {
                    text.is_none_or(|t| {
                        a.did.starts_with(t)
                            || lower
                                .as_deref()
                                .is_some_and(|l| a.name.to_lowercase().starts_with(l))
                    })
                });
            let (page, next) =
                page::take(items, q.limit, |a| (a.created_at.clone(), a.did.clone()));
            Rendered::of(&AgentsBody {
                agents: page
                    .into_iter()
                    .map(|a| c.agent_view(a, actor.visible_realms()))
                    .collect(),
                next,
            })
        })
    })?;
    Ok(r.respond(headers))
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
#[utoipa::path(get, path = "/api/agents/{did}", tag = "agents", params(("did" = String, Path)), responses((status = 200, headers(("ETag" = String))), (status = 304), (status = 404)))]
pub async fn get_agent(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(did): Path<String>,
) -> ApiResult<Response> {
    actor.require_agent(&s, &did).await?;
    loaded(&s, &headers).await?;
    let body = s
        .read
        .read(|c| {
            c.agent(&did)
                .map(|a| json!({"agent": c.agent_view(a, actor.visible_realms())}))
        })
        .ok_or_else(|| ApiError::not_found(format!("agent {did} not found")))?;
    Ok(Rendered::of(&body)?.respond(&headers))
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
    // A realm admin does not learn the id of another realm the agent is routed through.
    let realm_id = state
        .realm_id
        .as_ref()
        .filter(|r| actor.visible_realms().is_none_or(|mine| mine.contains(r)));
    Ok(Json(json!({
        "config": views::safe_config(&state),
        "mode": state.mode,
        "realmId": realm_id,
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
