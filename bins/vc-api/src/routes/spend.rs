//! A realm's spend and the budget webhooks' deliveries (see `vc_shared::budget`).
//!
//! The API never calls LiteLLM: the spend is what the worker last read (every `VC_SPEND_INTERVAL_SECS`,
//! stored at `spend:{<realmId>}`); a refresh is a command whose job reads it beside the command lane.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vc_shared::budget::SpendView;
use vc_shared::command::{CommandKind, SpendResult};
use vc_shared::store::WebhookDelivery;

use super::{check_id, loaded, write};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::{Actor, AppState};

/// A realm's spend in the current budget period, as the worker last read it from LiteLLM (the realm's
/// LiteLLM team: continuous across key rotations), with the budget, what remains, the thresholds
/// crossed this period and the budget guard.
#[utoipa::path(get, path = "/api/realms/{id}/spend", tag = "realms",
    params(("id" = String, Path)),
    responses((status = 200, body = SpendView), (status = 403), (status = 404)))]
pub async fn get_spend(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SpendView>> {
    actor.require_realm(&id)?;
    check_id("id", &id)?;
    loaded(&s, &headers).await?;
    let realm = s
        .read
        .read(|c| c.realm(&id).cloned())
        .ok_or_else(|| ApiError::not_found(format!("realm {id} not found")))?;
    let spend = s.store.realm_spend(&id).await?;
    Ok(Json(vc_shared::views::spend_view(&realm, spend.as_ref())))
}

/// Reads the realm's spend from LiteLLM now (through the worker) and answers it: `{realmId, spend}`.
/// The thresholds and the guard follow from the reading as from a periodic one.
#[utoipa::path(post, path = "/api/realms/{id}/spend/refresh", tag = "realms",
    params(("id" = String, Path)),
    responses((status = 200, body = SpendResult), (status = 202, description = "Still reading; see the command"), (status = 403), (status = 404)))]
pub async fn refresh_spend(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    actor.require_realm(&id)?;
    check_id("id", &id)?;
    write(
        &s,
        &actor,
        &headers,
        CommandKind::RealmSpendRefresh,
        None,
        &[("realmId", &id)],
    )
    .await
}

/// `?limit=`.
#[derive(Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<usize>,
}

/// `{deliveries}`.
#[derive(Serialize, ToSchema)]
pub struct DeliveriesBody {
    /// Delivery attempts of the budget webhooks, newest first (the last 500 at most).
    pub deliveries: Vec<WebhookDelivery>,
}

/// Delivery attempts of the budget webhooks (`VC_BUDGET_WEBHOOK_URLS`), newest first: each with its
/// status (`delivered`, `retrying`, `failed`), HTTP status and error.
#[utoipa::path(get, path = "/api/webhooks/deliveries", tag = "audit",
    params(("limit" = Option<usize>, Query, description = "1–500 (default 100)")),
    responses((status = 200, body = DeliveriesBody), (status = 400), (status = 403)))]
pub async fn webhook_deliveries(
    State(s): State<AppState>,
    actor: Actor,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<DeliveriesBody>> {
    actor.require_admin()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=vc_shared::store::WEBHOOK_LOG_LEN).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be from 1 to {}",
            vc_shared::store::WEBHOOK_LOG_LEN
        )));
    }
    Ok(Json(DeliveriesBody {
        deliveries: s.store.webhook_deliveries(limit).await?,
    }))
}
