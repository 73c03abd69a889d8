//! Applying one command: read the catalog, compute the writes, the result and the side effects.
//!
//! Nothing here writes: [`apply`] returns the writes as [`Op`]s, which the consumer commits atomically
//! together with the command's record (see `vc_shared::store::Store::commit`). A redelivered command
//! whose record is complete is never applied again; its stored effects are re-emitted instead.
//!
//! **Constant cost per realm-level change.** An agent's config is derived from its own route and the
//! routing state of its realm or model (`vc_shared::routing`). A grant, revoke, budget change, model
//! update or delete, or realm delete writes the realm's or model's new routing state once, with a new
//! version from the global counter, and publishes it once; edges and reads derive every routed agent's
//! config from it. Only an agent's own change (register, set, clear, join, leave) writes that agent.
//!
//! | file | concern |
//! |---|---|
//! | `tx.rs` | the transaction: cached reads, writes as ops, versions, routing states, events |
//! | `models.rs` | `model.register`, `model.update`, `model.delete` |
//! | `realms.rs` | `realm.create`, `realm.update`, `realm.delete`, `realm.grant`, `realm.revoke` |
//! | `agents.rs` | `agent.register`, `agent.delete`, realm membership, `agent.llm_config.*` |

mod agents;
mod models;
mod realms;
mod tx;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vc_shared::command::Command;
use vc_shared::config::LitellmSettings;
use vc_shared::crypto::Sealer;
use vc_shared::error::DomainError;
use vc_shared::store::{Op, StoreError};
use vc_shared::wire::Event;

use crate::lane::view::View;
use tx::Tx;

/// Why applying failed without a domain answer (retry later).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret could not be opened (wrong `VC_SECRET_KEY`?).
    #[error("a stored secret could not be opened: {0}")]
    Crypto(#[from] vc_shared::crypto::CryptoError),
}

/// Side effects of an applied command, re-emitted on redelivery. Every push carries the state read
/// back from Redis when it is emitted, so a re-emission is never stale.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effects {
    /// Models whose LiteLLM deployment must be synced.
    pub sync_models: BTreeSet<String>,
    /// Realms whose LiteLLM key must be synced.
    pub sync_realms: BTreeSet<String>,
    /// Realms whose routing state changed (one push each on `vc.push.realm.<id>`).
    #[serde(default)]
    pub realm_pushes: BTreeSet<String>,
    /// Models whose routing state changed (one push each on `vc.push.model.<id>`).
    #[serde(default)]
    pub model_pushes: BTreeSet<String>,
    /// Agents whose own route changed.
    pub agent_pushes: BTreeSet<String>,
    /// Agents deleted (their sessions close).
    pub deleted_agents: BTreeSet<String>,
    /// Domain events.
    pub events: Vec<Event>,
}

/// The outcome of applying one command.
pub struct Applied {
    /// Writes (empty when refused).
    pub ops: Vec<Op>,
    /// Result (`Ok(None)` for 204) or domain refusal.
    pub result: Result<Option<Value>, DomainError>,
    /// Side effects.
    pub effects: Effects,
}

/// What applying needs.
pub struct Ctx<'a> {
    /// The catalog as the command sees it (Redis under the writes of its batch's earlier commands).
    pub store: &'a View<'a>,
    /// Sealer.
    pub sealer: &'a Sealer,
    /// LiteLLM settings, when configured.
    pub litellm: Option<&'a LitellmSettings>,
    /// Command id.
    pub command_id: &'a str,
    /// Who issued it.
    pub actor: &'a str,
}

/// A command's answer: `Ok(Ok(result))`, a domain refusal `Ok(Err(..))`, or a retryable failure.
type R<T> = Result<Result<T, DomainError>, ApplyError>;

/// Returns a domain refusal from a command handler.
macro_rules! refuse {
    ($e:expr) => {
        return Ok(Err($e))
    };
}
pub(crate) use refuse;

/// Applies one validated command against the current catalog.
pub async fn apply(ctx: &Ctx<'_>, command: Command) -> Result<Applied, ApplyError> {
    let version_seq = ctx.store.version_seq().await?;
    let mut tx = Tx::new(ctx, version_seq);
    let result = match command {
        Command::ModelRegister(m) => tx.model_register(m).await?,
        Command::ModelUpdate(u) => tx.model_update(u).await?,
        Command::ModelDelete { id } => tx.model_delete(&id).await?,
        Command::RealmCreate(c) => tx.realm_create(c).await?,
        Command::RealmUpdate(u) => tx.realm_update(u).await?,
        Command::RealmDelete { realm_id } => tx.realm_delete(&realm_id).await?,
        Command::RealmGrant {
            model_id,
            realm_id,
            monthly_budget_usd,
        } => {
            tx.realm_grant(&model_id, &realm_id, monthly_budget_usd)
                .await?
        }
        Command::RealmRevoke { model_id, realm_id } => {
            tx.realm_revoke(&model_id, &realm_id).await?
        }
        Command::RealmAgentAdd {
            realm_id,
            agent_did,
            is_primary,
        } => tx.agent_add(&realm_id, &agent_did, is_primary).await?,
        Command::RealmAgentRemove {
            realm_id,
            agent_did,
        } => tx.agent_remove(&realm_id, &agent_did).await?,
        Command::AgentRegister { did, name } => tx.agent_register(&did, &name).await?,
        Command::AgentDelete { did } => tx.agent_delete(&did).await?,
        Command::AgentLlmConfigSet { did, form } => tx.llm_config_set(&did, form).await?,
        Command::AgentLlmConfigClear { did } => tx.llm_config_clear(&did).await?,
        Command::LitellmReconcile => Ok(Some(json!({"reconcile": "started"}))),
    };
    let (ops, effects) = match &result {
        Ok(_) => tx.into_parts(),
        Err(_) => (Vec::new(), Effects::default()),
    };
    Ok(Applied {
        ops,
        result,
        effects,
    })
}
