//! What a succeeded command returns: the body of its REST answer and the `result` of its [`Outcome`]
//! (contract §4; the table in `docs/nats.md`).
//!
//! The worker builds a [`CommandResult`] when it applies a command and stores it, as JSON, in the
//! command's [`CommandRecord`]; after the command's LiteLLM sync it reads the stored JSON back with
//! [`CommandResult::from_value`], refreshes the views in it and stores it again. The JSON shape is an
//! external contract: field names, camelCase, and `null` (never an absent key) for the optional views.
//!
//! [`Outcome`]: super::Outcome
//! [`CommandRecord`]: super::CommandRecord

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CommandKind;
use crate::domain::{AgentView, ModelView, RealmView, RouterKeyView, SafeLlmConfig};

/// `{model}`: what `model.register` and `model.update` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelResult {
    /// The model as it is after the command.
    pub model: ModelView,
}

/// `{realm}`: what `realm.create` and `realm.update` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RealmResult {
    /// The realm as it is after the command.
    pub realm: RealmView,
}

/// `grant` of a [`GrantResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    /// Registry id of the model.
    pub model_id: String,
    /// Realm id.
    pub realm_id: String,
    /// When the model was first granted to the realm (RFC 3339).
    pub granted_at: String,
}

/// `{grant, routerKey}`: what `realm.grant` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantResult {
    /// The grant.
    pub grant: GrantView,
    /// The realm's key after the grant; `null` while none is minted.
    pub router_key: Option<RouterKeyView>,
}

/// `{realmId, routerKey}`: what `realm.key.rotate` (and the worker's `realm.key.activate` and
/// `realm.key.retire`) return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyResult {
    /// Realm id.
    pub realm_id: String,
    /// The realm's key after the command (`rotation` shows where the rotation stands).
    pub router_key: Option<RouterKeyView>,
}

/// `{realmId, spend}`: what `realm.spend.refresh` returns (the spend as read after the command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendResult {
    /// Realm id.
    pub realm_id: String,
    /// The realm's spend this budget period.
    pub spend: crate::budget::SpendView,
}

/// `{ok: true, llmPushed}`: what `realm.agent.add` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentAddResult {
    /// Always `true`.
    pub ok: bool,
    /// Whether joining configured the agent (it had no config and the realm has an active model).
    pub llm_pushed: bool,
}

impl AgentAddResult {
    /// The result of a join that did (`true`) or did not configure the agent.
    pub fn new(llm_pushed: bool) -> Self {
        AgentAddResult {
            ok: true,
            llm_pushed,
        }
    }
}

/// `{agent}`: what `agent.register` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentResult {
    /// The agent just registered.
    pub agent: AgentView,
}

/// `{pushed, config, version}`: what `agent.llm_config.set` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LlmConfigSetResult {
    /// Whether the agent was online when the command was applied.
    pub pushed: bool,
    /// The agent's effective config, without its key; `null` when it has none.
    pub config: Option<SafeLlmConfig>,
    /// The agent's config version.
    pub version: u64,
}

/// `{pushed}`: what `agent.llm_config.clear` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LlmConfigClearResult {
    /// Whether the agent was online when the command was applied.
    pub pushed: bool,
}

/// `reconcile` of a [`ReconcileResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileState {
    /// The reconcile runs in the background after the commit.
    Started,
}

/// `{reconcile: "started"}`: what `litellm.reconcile` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcileResult {
    /// Always `started`.
    pub reconcile: ReconcileState,
}

/// The result of a succeeded command, one variant per shape. The kinds answered `204 No Content`
/// (`model.delete`, `realm.delete`, `realm.revoke`, `realm.agent.remove`, `agent.delete`) have none.
///
/// It serializes as the variant's body alone (no tag): which variant a stored result is follows from
/// the command's kind, see [`CommandResult::from_value`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CommandResult {
    /// `model.register`, `model.update`.
    Model(ModelResult),
    /// `realm.create`, `realm.update`.
    Realm(RealmResult),
    /// `realm.grant`.
    Grant(GrantResult),
    /// `realm.agent.add`.
    AgentAdd(AgentAddResult),
    /// `agent.register`.
    Agent(AgentResult),
    /// `agent.llm_config.set`.
    LlmConfigSet(LlmConfigSetResult),
    /// `agent.llm_config.clear`.
    LlmConfigClear(LlmConfigClearResult),
    /// `litellm.reconcile`.
    Reconcile(ReconcileResult),
    /// `realm.key.rotate`, `realm.key.activate`, `realm.key.retire`, `realm.budget.alert`,
    /// `realm.budget.guard`.
    Key(KeyResult),
    /// `realm.spend.refresh`.
    Spend(SpendResult),
}

impl CommandResult {
    /// Reads the stored `result` of a command of `kind`: `Ok(None)` for the kinds that have none, an
    /// error when the JSON is not the kind's shape.
    pub fn from_value(
        kind: CommandKind,
        value: &serde_json::Value,
    ) -> Result<Option<Self>, serde_json::Error> {
        use CommandKind as K;
        let typed = match kind {
            K::ModelRegister | K::ModelUpdate => Self::Model(Deserialize::deserialize(value)?),
            K::RealmCreate | K::RealmUpdate => Self::Realm(Deserialize::deserialize(value)?),
            K::RealmGrant => Self::Grant(Deserialize::deserialize(value)?),
            K::RealmAgentAdd => Self::AgentAdd(Deserialize::deserialize(value)?),
            K::AgentRegister => Self::Agent(Deserialize::deserialize(value)?),
            K::AgentLlmConfigSet => Self::LlmConfigSet(Deserialize::deserialize(value)?),
            K::AgentLlmConfigClear => Self::LlmConfigClear(Deserialize::deserialize(value)?),
            K::LitellmReconcile => Self::Reconcile(Deserialize::deserialize(value)?),
            K::RealmKeyRotate
            | K::RealmKeyActivate
            | K::RealmKeyRetire
            | K::RealmBudgetAlert
            | K::RealmBudgetGuard => Self::Key(Deserialize::deserialize(value)?),
            K::RealmSpendRefresh => Self::Spend(Deserialize::deserialize(value)?),
            K::ModelDelete
            | K::RealmDelete
            | K::RealmRevoke
            | K::RealmAgentRemove
            | K::AgentDelete => return Ok(None),
        };
        Ok(Some(typed))
    }

    /// The JSON stored in the command's record, answered by REST and sent in its outcome.
    pub fn to_value(&self) -> serde_json::Value {
        // Every field is a string, number, bool, sequence or struct: serializing cannot fail.
        serde_json::to_value(self).expect("a command result serializes to JSON")
    }
}

macro_rules! from_result {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for CommandResult {
            fn from(r: $ty) -> Self {
                CommandResult::$variant(r)
            }
        })*
    };
}

from_result!(
    ModelResult => Model,
    RealmResult => Realm,
    GrantResult => Grant,
    AgentAddResult => AgentAdd,
    AgentResult => Agent,
    LlmConfigSetResult => LlmConfigSet,
    LlmConfigClearResult => LlmConfigClear,
    ReconcileResult => Reconcile,
    KeyResult => Key,
    SpendResult => Spend,
);

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// A stored result of each kind, as the worker wrote them before the results were typed (with
    /// `null` where a view is optional): each reads as its kind's type and writes back unchanged.
    fn stored() -> Vec<(CommandKind, Value)> {
        let sync = json!({"state": "pending", "lastError": null, "syncedAt": null});
        let model = json!({
            "id": "m1", "name": "GPT 4o", "description": null, "provider": "openai",
            "modelId": "gpt-4o", "baseUrl": null, "hasApiKey": true,
            "litellmModelName": "openai/gpt-4o", "inputCostPerToken": 2.5e-6,
            "outputCostPerToken": null, "status": "active", "realmCount": 0,
            "litellm": sync, "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z",
        });
        let router_key = json!({
            "hasVirtualKey": true, "keyPrefix": "sk-vc-3f", "allowedModels": ["openai/gpt-4o"],
            "monthlyBudgetUsd": 50.0,
            "litellm": {"state": "error", "lastError": "boom", "syncedAt": "2026-01-01T00:00:01.000Z"},
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "rotation": {"state": "stable", "keyId": null, "rotatedAt": null, "rotations": 0,
                         "pending": null, "retiring": []},
            "limits": {"rpmLimit": 2, "tpmLimit": null, "maxParallelRequests": null},
            "budgetGuard": null,
        });
        let realm = |key: Value| {
            json!({
                "id": "r1", "name": "Research", "slug": "research", "description": "d",
                "color": "#6366f1", "agentCount": 2, "modelCount": 1, "routerKey": key,
                "limits": {"rpmLimit": null, "tpmLimit": null, "maxParallelRequests": null},
                "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
            })
        };
        let grant =
            json!({"modelId": "m1", "realmId": "r1", "grantedAt": "2026-01-01T00:00:00.000Z"});
        let agent = json!({
            "did": "did:key:z6Mk", "name": "a", "realms": [], "online": false, "edgeId": null,
            "lastSeen": null, "configVersion": 7, "ackedVersion": null, "activeLlm": null,
            "createdAt": "2026-01-01T00:00:00.000Z",
        });
        let config = json!({
            "provider": "openai", "model": "gpt-4o", "apiKeySet": true,
            "allowedModels": ["openai/gpt-4o"],
        });
        vec![
            (CommandKind::ModelRegister, json!({"model": model})),
            (CommandKind::ModelUpdate, json!({"model": model})),
            (
                CommandKind::RealmCreate,
                json!({"realm": realm(Value::Null)}),
            ),
            (
                CommandKind::RealmUpdate,
                json!({"realm": realm(router_key.clone())}),
            ),
            (
                CommandKind::RealmGrant,
                json!({"grant": grant, "routerKey": router_key}),
            ),
            (
                CommandKind::RealmGrant,
                json!({"grant": grant, "routerKey": null}),
            ),
            (
                CommandKind::RealmAgentAdd,
                json!({"ok": true, "llmPushed": false}),
            ),
            (CommandKind::AgentRegister, json!({"agent": agent})),
            (
                CommandKind::AgentLlmConfigSet,
                json!({"pushed": true, "config": config, "version": 9}),
            ),
            (
                CommandKind::AgentLlmConfigSet,
                json!({"pushed": false, "config": null, "version": 10}),
            ),
            (CommandKind::AgentLlmConfigClear, json!({"pushed": false})),
            (
                CommandKind::LitellmReconcile,
                json!({"reconcile": "started"}),
            ),
            (
                CommandKind::RealmKeyRotate,
                json!({"realmId": "r1", "routerKey": router_key}),
            ),
            (
                CommandKind::RealmKeyActivate,
                json!({"realmId": "r1", "routerKey": router_key}),
            ),
            (
                CommandKind::RealmKeyRetire,
                json!({"realmId": "r1", "routerKey": null}),
            ),
            (
                CommandKind::RealmBudgetAlert,
                json!({"realmId": "r1", "routerKey": router_key}),
            ),
            (
                CommandKind::RealmBudgetGuard,
                json!({"realmId": "r1", "routerKey": router_key}),
            ),
            (
                CommandKind::RealmSpendRefresh,
                json!({"realmId": "r1", "spend": {"spendUsd": 1.5, "budgetUsd": 50.0,
                    "remainingUsd": 48.5, "periodResetAt": "2027-01-01T00:00:00Z",
                    "readAt": "2026-12-08T00:00:00.000Z", "thresholdsCrossed": [], "guard": null}}),
            ),
        ]
    }

    #[test]
    fn stored_results_round_trip_unchanged() {
        for (kind, value) in stored() {
            let typed = CommandResult::from_value(kind, &value)
                .unwrap_or_else(|e| panic!("{}: {e}", kind.as_str()))
                .unwrap_or_else(|| panic!("{} has a result", kind.as_str()));
            // JSON equality: the same keys, `null` kept (not dropped) where a view is optional.
            assert_eq!(typed.to_value(), value, "{}", kind.as_str());
        }
    }

    /// A model result stored before prices existed reads, with no price (LiteLLM's own).
    #[test]
    fn model_results_from_before_prices_read() {
        let (kind, mut value) = stored().swap_remove(0);
        let model = value["model"].as_object_mut().unwrap();
        model.remove("inputCostPerToken");
        model.remove("outputCostPerToken");
        let typed = CommandResult::from_value(kind, &value).unwrap().unwrap();
        let CommandResult::Model(r) = typed else {
            panic!("{typed:?}")
        };
        assert_eq!(r.model.input_cost_per_token, None);
        assert_eq!(r.model.output_cost_per_token, None);
    }

    #[test]
    fn each_result_kind_has_its_shape() {
        let with_result: Vec<CommandKind> = stored().into_iter().map(|(k, _)| k).collect();
        for kind in CommandKind::ALL {
            if !with_result.contains(&kind) {
                // The 204 kinds: no result, whatever is stored.
                assert_eq!(
                    CommandResult::from_value(kind, &json!({"x": 1})).unwrap(),
                    None
                );
            }
        }
        // A result of another kind's shape is refused, not misread.
        assert!(
            CommandResult::from_value(CommandKind::RealmGrant, &json!({"pushed": true})).is_err()
        );
        assert!(
            CommandResult::from_value(CommandKind::ModelUpdate, &json!({"realm": {}})).is_err()
        );
        assert_eq!(
            CommandResult::from(AgentAddResult::new(true)).to_value(),
            json!({"ok": true, "llmPushed": true})
        );
        assert_eq!(
            CommandResult::from(ReconcileResult {
                reconcile: ReconcileState::Started
            })
            .to_value(),
            json!({"reconcile": "started"})
        );
    }
}
