//! `/api/realms`: realms, their models and key, and their members.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use vc_shared::command::{self, CommandKind};
use vc_shared::domain::{ModelStatus, ModelView, RealmView, RouterKeyView, StoredModel};

use super::{check_id, loaded, page_key, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::read::page::{self, Rendered};
use crate::{Actor, AppState};

/// `{realms, next}`.
#[derive(Serialize, ToSchema)]
pub struct RealmsBody {
    /// Realms, oldest first.
    pub realms: Vec<RealmView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// List realms (a realm admin sees its own), oldest first, a page at a time.
#[utoipa::path(get, path = "/api/realms", tag = "realms",
    params(
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("q" = Option<String>, Query, description = "Prefix of the name or the slug, case-insensitive"),
    ),
    responses((status = 200, body = RealmsBody, headers(("ETag" = String))), (status = 304), (status = 400)))]
pub async fn list_realms(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = page::parse(&raw, &["q"])?;
    let text = page::text(&q, "q")?.map(str::to_lowercase);
    loaded(&s, &headers).await?;
    let key = page_key("/api/realms", &raw, &actor);
    let r = s.pages.get_or_render(key, s.read.version(), || {
        s.read.read(|c| {
            let items = c
                .realms_after(q.after.as_ref())
                .filter(|r| actor.can_read_realm(&r.id))
                .filter(|r| {
                    text.as_deref().is_none_or(|t| {
                        r.name.to_lowercase().starts_with(t) || r.slug.starts_with(t)
                    })
                });
            let (page, next) = page::take(items, q.limit, |r| (r.created_at.clone(), r.id.clone()));
            Rendered::of(&RealmsBody {
                realms: page.into_iter().map(|r| c.realm_view(r)).collect(),
                next,
            })
        })
    })?;
    Ok(r.respond(&headers))
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

/// Read a realm with its models, its spend this budget period (as `GET /api/realms/{id}/spend`) and the
/// first page of its agents (`agentsNext` continues at `GET /api/realms/{id}/agents`).
#[utoipa::path(get, path = "/api/realms/{id}", tag = "realms", params(("id" = String, Path)), responses((status = 200, headers(("ETag" = String))), (status = 304), (status = 404)))]
pub async fn get_realm(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    loaded(&s, &headers).await?;
    // The spend as the worker last read it (outside the read model: it changes without commands).
    let spend = s.store.realm_spend(&id).await?;
    let body = s.read.read(|c| {
        let r = c.realm(&id)?;
        let items = c.agents_after(Some(&id), None);
        let (page, next) = page::take(items, page::DEFAULT_LIMIT, |a| {
            (a.created_at.clone(), a.did.clone())
        });
        let mut models: Vec<ModelView> = c
            .realm_models(&id)
            .into_iter()
            .map(|m| c.model_view(m))
            .collect();
        models.sort_by_key(|m| m.name.to_lowercase());
        Some(json!({
            "spend": vc_shared::views::spend_view(r, spend.as_ref()),
            "realm": c.realm_view(r),
            "agents": page
                .into_iter()
                .map(|a| c.agent_view(a, actor.visible_realms()))
                .collect::<Vec<_>>(),
            "agentsNext": next,
            "models": models,
        }))
    });
    let body = body.ok_or_else(|| ApiError::not_found(format!("realm {id} not found")))?;
    Ok(Rendered::of(&body)?.respond(&headers))
}

/// A realm's agents, oldest first, a page at a time (the filters of `GET /api/agents` apply).
#[utoipa::path(get, path = "/api/realms/{id}/agents", tag = "realms",
    params(
        ("id" = String, Path),
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("online" = Option<bool>, Query, description = "Only agents connected now (`true`) or not (`false`)"),
        ("mode" = Option<String>, Query, description = "`realm`, `registry`, `manual` or `none` (no config)"),
        ("q" = Option<String>, Query, description = "Prefix of the name (case-insensitive) or of the DID"),
    ),
    responses((status = 200, body = super::agents::AgentsBody, headers(("ETag" = String))), (status = 304), (status = 400), (status = 404)))]
pub async fn list_realm_agents(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    loaded(&s, &headers).await?;
    if s.read.read(|c| c.realm(&id).is_none()) {
        return Err(ApiError::not_found(format!("realm {id} not found")));
    }
    super::agents::agents_page(&s, &actor, &headers, &raw, Some(&id), "/api/realms/agents")
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

/// Rotate the realm's LiteLLM key without downtime: a new key (same models, limits and team budget)
/// is created in LiteLLM, then pushed to every member routed through the realm; the replaced key keeps
/// working until every online member has acknowledged the new one, or for `graceSeconds` at most
/// (default `VC_KEY_ROTATION_GRACE_SECS`, 30; `0` retires it at once, for a leaked key). Answers once
/// the new key exists in LiteLLM: `routerKey.rotation.state` is `pending` until the members were sent
/// it, then `retiring`, then `stable`. A realm admin may rotate its own realms' keys.
#[utoipa::path(post, path = "/api/realms/{id}/key/rotate", tag = "realms",
    params(("id" = String, Path)),
    request_body(content = command::KeyRotateBody, description = "Optional: `{graceSeconds}`"),
    responses(
        (status = 200, body = command::KeyResult),
        (status = 400, description = "graceSeconds is not 0–604800"),
        (status = 404, description = "No such realm"),
        (status = 409, description = "The realm has no key yet (no grant with LiteLLM configured)"),
    ))]
pub async fn rotate_key(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmKeyRotate,
        body,
        &[("realmId", &id)],
    )
    .await
}

/// `{models, routerKey, next}` of a realm.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmModelsBody {
    /// Active granted models, oldest first.
    pub models: Vec<ModelView>,
    /// The realm's key.
    pub router_key: Option<RouterKeyView>,
    /// Cursor of the next page (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// A realm's active granted models and its key, a page at a time.
#[utoipa::path(get, path = "/api/realms/{id}/models", tag = "realms",
    params(
        ("id" = String, Path),
        ("limit" = Option<usize>, Query, description = "Items per page, 1–1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses((status = 200, body = RealmModelsBody, headers(("ETag" = String))), (status = 304), (status = 400), (status = 404)))]
pub async fn get_realm_models(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    let q = page::parse(&raw, &[])?;
    loaded(&s, &headers).await?;
    let body = s.read.read(|c| {
        let r = c.realm(&id)?;
        let mut models: Vec<&StoredModel> = c
            .realm_models(&id)
            .into_iter()
            .filter(|m| m.status == ModelStatus::Active)
            .collect();
        models.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        let (page, next) = page::take_after(models.into_iter(), &q, |m| {
            (m.created_at.clone(), m.id.clone())
        });
        Some(RealmModelsBody {
            models: page.into_iter().map(|m| c.model_view(m)).collect(),
            router_key: c.realm_view(r).router_key,
            next,
        })
    });
    let body = body.ok_or_else(|| ApiError::not_found(format!("realm {id} not found")))?;
    Ok(Rendered::of(&body)?.respond(&headers))
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
