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
//! | `budget.rs` | `realm.spend.refresh`, `realm.budget.alert`, `realm.budget.guard` |
//! | `keys.rs` | `realm.key.rotate`, `realm.key.activate`, `realm.key.retire`, rotation on a member's removal |

mod agents;
mod budget;
mod keys;
mod models;
mod realms;
mod tx;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vc_shared::command::{Command, CommandResult, ReconcileResult, ReconcileState};
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
    /// Realms whose spend the command's job reads from LiteLLM (`realm.spend.refresh`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub spend_realms: BTreeSet<String>,
}

/// The outcome of applying one command.
pub struct Applied {
    /// Writes (empty when refused).
    pub ops: Vec<Op>,
    /// Result as stored in the command's record (the JSON of a [`CommandResult`]; `Ok(None)` for 204)
    /// or domain refusal.
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
    /// Default grace period of a replaced realm key (s).
    pub rotation_grace_secs: u64,
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
    let result: Result<Option<CommandResult>, DomainError> = match command {
        Command::ModelRegister(m) => tx.model_register(m).await?.map(some),
        Command::ModelUpdate(u) => tx.model_update(u).await?.map(some),
        Command::ModelDelete { id } => tx.model_delete(&id).await?.map(none),
        Command::RealmCreate(c) => tx.realm_create(c).await?.map(some),
        Command::RealmUpdate(u) => tx.realm_update(u).await?.map(some),
        Command::RealmDelete { realm_id } => tx.realm_delete(&realm_id).await?.map(none),
        Command::RealmGrant {
            model_id,
            realm_id,
            monthly_budget_usd,
        } => tx
            .realm_grant(&model_id, &realm_id, monthly_budget_usd)
            .await?
            .map(some),
        Command::RealmRevoke { model_id, realm_id } => {
            tx.realm_revoke(&model_id, &realm_id).await?.map(none)
        }
        Command::RealmAgentAdd {
            realm_id,
            agent_did,
            is_primary,
        } => tx
            .agent_add(&realm_id, &agent_did, is_primary)
            .await?
            .map(some),
        Command::RealmAgentRemove {
            realm_id,
            agent_did,
        } => tx.agent_remove(&realm_id, &agent_did).await?.map(none),
        Command::AgentRegister { did, name } => tx.agent_register(&did, &name).await?.map(some),
        Command::AgentDelete { did } => tx.agent_delete(&did).await?.map(none),
        Command::AgentLlmConfigSet { did, form } => tx.llm_config_set(&did, form).await?.map(some),
        Command::AgentLlmConfigClear { did } => tx.llm_config_clear(&did).await?.map(some),
        Command::LitellmReconcile => Ok(some(ReconcileResult {
            reconcile: ReconcileState::Started,
        })),
        Command::RealmKeyRotate {
            realm_id,
            grace_secs,
        } => tx.realm_key_rotate(&realm_id, grace_secs).await?.map(some),
        Command::RealmKeyActivate { realm_id, key_id } => {
            tx.realm_key_activate(&realm_id, &key_id).await?.map(some)
        }
        Command::RealmKeyRetire { realm_id, key_id } => {
            tx.realm_key_retire(&realm_id, &key_id).await?.map(some)
        }
        Command::RealmSpendRefresh { realm_id } => {
            tx.realm_spend_refresh(&realm_id).await?.map(some)
        }
        Command::RealmBudgetAlert(r) => tx.realm_budget_alert(r).await?.map(some),
        Command::RealmBudgetGuard { report, block } => {
            tx.realm_budget_guard(report, block).await?.map(some)
        }
    };
    let (ops, effects) = match &result {
        Ok(_) => tx.into_parts(),
        Err(_) => (Vec::new(), Effects::default()),
    };
    Ok(Applied {
        ops,
        result: result.map(|r| r.as_ref().map(CommandResult::to_value)),
        effects,
    })
}

/// A handler's typed result as the command's result.
fn some(result: impl Into<CommandResult>) -> Option<CommandResult> {
    Some(result.into())
}

/// A handler that answers 204: no result.
fn none((): ()) -> Option<CommandResult> {
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vc_shared::command::{
        AgentAddResult, AgentResult, CommandKind, GrantResult, GrantView, LlmConfigClearResult,
        LlmConfigSetResult, ModelResult, RealmResult,
    };
    use vc_shared::domain::{
        AgentView, ModelStatus, Provider, RealmKeyRecord, SafeLlmConfig, StoredModel, StoredRealm,
        SyncRecord, SyncStateKind,
    };
    use vc_shared::views;

    use super::*;

    fn model() -> StoredModel {
        StoredModel {
            id: "m1".into(),
            name: "GPT 4o".into(),
            description: None,
            provider: Provider::OpenAi,
            model_id: "gpt-4o".into(),
            base_url: None,
            api_key_sealed: Some("sealed".into()),
            litellm_model_name: "openai/gpt-4o".into(),
            status: ModelStatus::Active,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            gen: 2,
            input_cost_per_token: None,
            output_cost_per_token: Some(6e-7),
        }
    }

    fn realm(key: bool) -> StoredRealm {
        StoredRealm {
            id: "r1".into(),
            name: "Research".into(),
            slug: "research".into(),
            description: Some("d".into()),
            color: "#6366f1".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            key: key.then(|| RealmKeyRecord {
                key_sealed: "sealed".into(),
                key_prefix: "sk-vc-3f9a".into(),
                monthly_budget_usd: Some(50.0),
                created_at: "2026-01-01T00:00:00.000Z".into(),
                updated_at: "2026-01-01T00:00:00.000Z".into(),
                rotation: Default::default(),
                alerts: Default::default(),
                guard: None,
            }),
            gen: 1,
            limits: Default::default(),
        }
    }

    /// Each typed result is the JSON the handlers built with `json!` before the results were typed
    /// (the expressions on the right are those builders), and reads back as its kind's result.
    #[test]
    fn typed_results_are_the_json_built_before() {
        let synced = SyncRecord {
            gen: 2,
            state: Some(SyncStateKind::Synced),
            last_error: None,
            synced_at: Some("2026-01-01T00:00:01.000Z".into()),
        };
        let granted = [model()];
        let model_view = views::model_view(&model(), 1, &synced);
        let agent = AgentView {
            did: "did:key:z6Mk".into(),
            name: "a".into(),
            realms: vec![],
            online: false,
            edge_id: None,
            last_seen: None,
            config_version: 7,
            acked_version: None,
            active_llm: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let config = SafeLlmConfig {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            base_url: None,
            api_key_set: true,
            allowed_models: Some(vec!["openai/gpt-4o".into()]),
            system_prompt: None,
            max_tokens: Some(100),
        };
        let mut cases: Vec<(CommandKind, CommandResult, Value)> = vec![
            (
                CommandKind::ModelRegister,
                ModelResult {
                    model: model_view.clone(),
                }
                .into(),
                json!({"model": model_view}),
            ),
            (
                CommandKind::AgentRegister,
                AgentResult {
                    agent: agent.clone(),
                }
                .into(),
                json!({"agent": agent}),
            ),
            (
                CommandKind::RealmAgentAdd,
                AgentAddResult::new(true).into(),
                json!({"ok": true, "llmPushed": true}),
            ),
            (
                CommandKind::AgentLlmConfigClear,
                LlmConfigClearResult { pushed: false }.into(),
                json!({"pushed": false}),
            ),
            (
                CommandKind::LitellmReconcile,
                ReconcileResult {
                    reconcile: ReconcileState::Started,
                }
                .into(),
                json!({"reconcile": "started"}),
            ),
        ];
        for key in [false, true] {
            let r = realm(key);
            let realm_view = views::realm_view(&r, 3, &granted, &synced);
            cases.push((
                CommandKind::RealmUpdate,
                RealmResult {
                    realm: realm_view.clone(),
                }
                .into(),
                json!({"realm": realm_view}),
            ));
            let (model_id, realm_id, granted_at) = ("m1", "r1", "2026-01-01T00:00:00.000Z");
            cases.push((
                CommandKind::RealmGrant,
                GrantResult {
                    grant: GrantView {
                        model_id: model_id.into(),
                        realm_id: realm_id.into(),
                        granted_at: granted_at.into(),
                    },
                    router_key: views::router_key_view(&r, &granted, &synced),
                }
                .into(),
                json!({
                    "grant": {"modelId": model_id, "realmId": realm_id, "grantedAt": granted_at},
                    "routerKey": views::router_key_view(&r, &granted, &synced),
                }),
            ));
        }
        for config in [Some(config), None] {
            cases.push((
                CommandKind::AgentLlmConfigSet,
                LlmConfigSetResult {
                    pushed: true,
                    config: config.clone(),
                    version: 9,
                }
                .into(),
                json!({"pushed": true, "config": config, "version": 9}),
            ));
        }
        for (kind, typed, before) in cases {
            let stored = typed.to_value();
            assert_eq!(stored, before, "{}", kind.as_str());
            assert_eq!(
                CommandResult::from_value(kind, &stored).unwrap(),
                Some(typed),
                "{}",
                kind.as_str()
            );
        }
    }
}
