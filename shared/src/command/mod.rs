//! Commands: the write interface of the control plane (contract §4).
//!
//! A command is JSON published on `vc.cmd.<kind>` with header `Nats-Msg-Id: <command id>` (required,
//! also JetStream's dedupe key) and, optionally, `Vc-Reply-To: <subject>` for the [`Outcome`]. The body is
//! the REST body plus the ids the REST path carries. [`Command::parse`] turns a kind and a body into a
//! validated command or a [`DomainError`] naming the field at fault; the API and the worker both call it,
//! so a bad command published straight on NATS is refused with the same words as a bad REST request.
//!
//! Secrets in bodies: `apiKey` may be given in clear by other services; the API always sends
//! `apiKeySealed` instead (sealed with [`crate::crypto::Purpose::Command`] and bound to the command id,
//! its `Nats-Msg-Id`, so it opens in no other command), so no secret crosses the bus in clear from our
//! own services.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | headers, limits, [`CommandKind`], the validated [`Command`] and [`ParseError`] |
//! | `bodies.rs` | the wire bodies (`*Body`) and the validated inputs they become ([`ModelRegister`], …) |
//! | `validate.rs` | field validators ([`validate_id`], [`validate_did`], [`validate_url`], …) |
//! | `parse.rs` | [`Command::parse`]: decoding a body and validating it into a [`Command`] |
//! | `result.rs` | what a succeeded command returns: [`CommandResult`], one type per shape |
//! | `record.rs` | what a command leaves: [`CommandStatus`], [`Outcome`], [`CommandRecord`], [`derived_id`] |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::DomainError;

mod bodies;
mod parse;
mod record;
mod result;
mod validate;

pub use bodies::{
    AgentRegisterBody, BudgetBody, GrantBody, IdBody, KeyRotateBody, KeyStepBody, LlmConfigForm,
    LlmConfigSetBody, MembershipBody, ModelRegister, ModelRegisterBody, ModelUpdate,
    ModelUpdateBody, RealmCreate, RealmCreateBody, RealmUpdate, RealmUpdateBody, SecretInput,
};
pub use record::{derived_id, CommandRecord, CommandStatus, Outcome, OutcomeError};
pub use result::{
    AgentAddResult, AgentResult, CommandResult, GrantResult, GrantView, KeyResult,
    LlmConfigClearResult, LlmConfigSetResult, ModelResult, RealmResult, ReconcileResult,
    ReconcileState, SpendResult,
};
pub use validate::{validate_command_id, validate_did, validate_id, validate_url};

/// Header carrying the command id (JetStream dedupe key).
pub const HDR_MSG_ID: &str = "Nats-Msg-Id";
/// Header naming the subject the outcome is sent to: an `_INBOX.` subject ([`reply_subject_allowed`]).
pub const HDR_REPLY_TO: &str = "Vc-Reply-To";
/// Header naming who issued the command (for audit): `admin`, `token:<id>`. Taken only from commands on
/// `vc.cmd.api.*` and `vc.cmd.worker.*` (see [`crate::subjects::CommandSource`]); ignored elsewhere.
pub const HDR_ACTOR: &str = "Vc-Actor";

/// Whether the worker sends an outcome to `subject`: only request-reply inboxes (`_INBOX.` and at least
/// one more token, no wildcard, no whitespace). Anything else would let a publisher of commands make
/// the worker publish where it may (the JetStream API, pushes): the command still applies, its outcome
/// stays readable at `GET /api/commands/{id}`, and the refusal is logged.
pub fn reply_subject_allowed(subject: &str) -> bool {
    subject.len() > "_INBOX.".len()
        && subject.starts_with("_INBOX.")
        && !subject.ends_with('.')
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">")
        && subject.bytes().all(|b| b.is_ascii_graphic())
}

/// Longest accepted name (models, realms, agents).
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted description.
pub const MAX_DESCRIPTION_LEN: usize = 4000;
/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted secret (API key).
pub const MAX_SECRET_LEN: usize = 8192;
/// Longest accepted system prompt.
pub const MAX_PROMPT_LEN: usize = 65536;
/// Longest accepted command id.
pub const MAX_COMMAND_ID_LEN: usize = 128;
/// Highest accepted model price, in USD per token (`inputCostPerToken`, `outputCostPerToken`). Real
/// prices are far below a cent per token; this only refuses values that are surely a mistake (a price
/// per million tokens typed as a price per token still fits: $1,000 per token).
pub const MAX_USD_PER_TOKEN: f64 = 1000.0;

/// The kinds of command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum CommandKind {
    /// Register a model.
    #[serde(rename = "model.register")]
    ModelRegister,
    /// Update a model.
    #[serde(rename = "model.update")]
    ModelUpdate,
    /// Delete a model.
    #[serde(rename = "model.delete")]
    ModelDelete,
    /// Create a realm.
    #[serde(rename = "realm.create")]
    RealmCreate,
    /// Update a realm.
    #[serde(rename = "realm.update")]
    RealmUpdate,
    /// Delete a realm.
    #[serde(rename = "realm.delete")]
    RealmDelete,
    /// Grant a model to a realm.
    #[serde(rename = "realm.grant")]
    RealmGrant,
    /// Revoke a model from a realm.
    #[serde(rename = "realm.revoke")]
    RealmRevoke,
    /// Add an agent to a realm.
    #[serde(rename = "realm.agent.add")]
    RealmAgentAdd,
    /// Remove an agent from a realm.
    #[serde(rename = "realm.agent.remove")]
    RealmAgentRemove,
    /// Register an agent.
    #[serde(rename = "agent.register")]
    AgentRegister,
    /// Delete an agent.
    #[serde(rename = "agent.delete")]
    AgentDelete,
    /// Set an agent's LLM config.
    #[serde(rename = "agent.llm_config.set")]
    AgentLlmConfigSet,
    /// Clear an agent's LLM config.
    #[serde(rename = "agent.llm_config.clear")]
    AgentLlmConfigClear,
    /// Reconcile LiteLLM with our state (internal; `POST /api/litellm/reconcile`).
    #[serde(rename = "litellm.reconcile")]
    LitellmReconcile,
    /// Rotate a realm's key (`POST /api/realms/{id}/key/rotate`).
    #[serde(rename = "realm.key.rotate")]
    RealmKeyRotate,
    /// Make a rotation's new key current once LiteLLM holds it (`vc-worker` only).
    #[serde(rename = "realm.key.activate")]
    RealmKeyActivate,
    /// Drop a replaced key (`vc-worker` only).
    #[serde(rename = "realm.key.retire")]
    RealmKeyRetire,
    /// Read a realm's spend from LiteLLM now (`POST /api/realms/{id}/spend/refresh`).
    #[serde(rename = "realm.spend.refresh")]
    RealmSpendRefresh,
    /// Record budget thresholds a realm crossed (`vc-worker` only).
    #[serde(rename = "realm.budget.alert")]
    RealmBudgetAlert,
    /// Block or unblock a realm's keys because its budget is spent (`vc-worker` only).
    #[serde(rename = "realm.budget.guard")]
    RealmBudgetGuard,
}

impl CommandKind {
    /// Every kind.
    pub const ALL: [CommandKind; 21] = [
        CommandKind::ModelRegister,
        CommandKind::ModelUpdate,
        CommandKind::ModelDelete,
        CommandKind::RealmCreate,
        CommandKind::RealmUpdate,
        CommandKind::RealmDelete,
        CommandKind::RealmGrant,
        CommandKind::RealmRevoke,
        CommandKind::RealmAgentAdd,
        CommandKind::RealmAgentRemove,
        CommandKind::AgentRegister,
        CommandKind::AgentDelete,
        CommandKind::AgentLlmConfigSet,
        CommandKind::AgentLlmConfigClear,
        CommandKind::LitellmReconcile,
        CommandKind::RealmKeyRotate,
        CommandKind::RealmKeyActivate,
        CommandKind::RealmKeyRetire,
        CommandKind::RealmSpendRefresh,
        CommandKind::RealmBudgetAlert,
        CommandKind::RealmBudgetGuard,
    ];

    /// The kind's name (`"model.register"`), also the subject suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::ModelRegister => "model.register",
            CommandKind::ModelUpdate => "model.update",
            CommandKind::ModelDelete => "model.delete",
            CommandKind::RealmCreate => "realm.create",
            CommandKind::RealmUpdate => "realm.update",
            CommandKind::RealmDelete => "realm.delete",
            CommandKind::RealmGrant => "realm.grant",
            CommandKind::RealmRevoke => "realm.revoke",
            CommandKind::RealmAgentAdd => "realm.agent.add",
            CommandKind::RealmAgentRemove => "realm.agent.remove",
            CommandKind::AgentRegister => "agent.register",
            CommandKind::AgentDelete => "agent.delete",
            CommandKind::AgentLlmConfigSet => "agent.llm_config.set",
            CommandKind::AgentLlmConfigClear => "agent.llm_config.clear",
            CommandKind::LitellmReconcile => "litellm.reconcile",
            CommandKind::RealmKeyRotate => "realm.key.rotate",
            CommandKind::RealmKeyActivate => "realm.key.activate",
            CommandKind::RealmKeyRetire => "realm.key.retire",
            CommandKind::RealmSpendRefresh => "realm.spend.refresh",
            CommandKind::RealmBudgetAlert => "realm.budget.alert",
            CommandKind::RealmBudgetGuard => "realm.budget.guard",
        }
    }

    /// Whether only `vc-worker` may issue it (on `vc.cmd.worker.<kind>`): the steps of a rotation, which
    /// must follow the worker's LiteLLM sync, and what the worker read of a realm's spend.
    pub fn worker_only(self) -> bool {
        matches!(
            self,
            CommandKind::RealmKeyActivate
                | CommandKind::RealmKeyRetire
                | CommandKind::RealmBudgetAlert
                | CommandKind::RealmBudgetGuard
        )
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A validated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `model.register`.
    ModelRegister(ModelRegister),
    /// `model.update`.
    ModelUpdate(ModelUpdate),
    /// `model.delete`.
    ModelDelete {
        /// Registry id.
        id: String,
    },
    /// `realm.create`.
    RealmCreate(RealmCreate),
    /// `realm.update`.
    RealmUpdate(RealmUpdate),
    /// `realm.delete`.
    RealmDelete {
        /// Realm id.
        realm_id: String,
    },
    /// `realm.grant`.
    RealmGrant {
        /// Registry id.
        model_id: String,
        /// Realm id.
        realm_id: String,
        /// Budget change (`Some(None)` removes the budget).
        monthly_budget_usd: Option<Option<f64>>,
    },
    /// `realm.revoke`.
    RealmRevoke {
        /// Registry id.
        model_id: String,
        /// Realm id.
        realm_id: String,
    },
    /// `realm.agent.add`.
    RealmAgentAdd {
        /// Realm id.
        realm_id: String,
        /// Agent DID.
        agent_did: String,
        /// Primary.
        is_primary: bool,
    },
    /// `realm.agent.remove`.
    RealmAgentRemove {
        /// Realm id.
        realm_id: String,
        /// Agent DID.
        agent_did: String,
    },
    /// `agent.register`.
    AgentRegister {
        /// DID.
        did: String,
        /// Name.
        name: String,
    },
    /// `agent.delete`.
    AgentDelete {
        /// DID.
        did: String,
    },
    /// `agent.llm_config.set`.
    AgentLlmConfigSet {
        /// DID.
        did: String,
        /// Form.
        form: LlmConfigForm,
    },
    /// `agent.llm_config.clear`.
    AgentLlmConfigClear {
        /// DID.
        did: String,
    },
    /// `litellm.reconcile`.
    LitellmReconcile,
    /// `realm.key.rotate`.
    RealmKeyRotate {
        /// Realm id.
        realm_id: String,
        /// Grace period of the replaced key (`None`: the worker's `VC_KEY_ROTATION_GRACE_SECS`).
        grace_secs: Option<u64>,
    },
    /// `realm.key.activate`.
    RealmKeyActivate {
        /// Realm id.
        realm_id: String,
        /// Public id of the pending key.
        key_id: String,
    },
    /// `realm.key.retire`.
    RealmKeyRetire {
        /// Realm id.
        realm_id: String,
        /// Public id of the replaced key.
        key_id: String,
    },
    /// `realm.spend.refresh`.
    RealmSpendRefresh {
        /// Realm id.
        realm_id: String,
    },
    /// `realm.budget.alert`.
    RealmBudgetAlert(BudgetReport),
    /// `realm.budget.guard`.
    RealmBudgetGuard {
        /// What LiteLLM reported.
        report: BudgetReport,
        /// Block (`true`) or unblock.
        block: bool,
    },
}

/// What the worker read of a realm's spend, as its budget commands carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetReport {
    /// Realm id.
    pub realm_id: String,
    /// The budget period (its `periodResetAt`), if any.
    pub period: Option<String>,
    /// Spend this period (USD).
    pub spend_usd: f64,
    /// The budget it was measured against (USD).
    pub budget_usd: f64,
    /// Thresholds crossed (`realm.budget.alert`).
    pub fractions: Vec<f64>,
}

/// Why a command body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Not one JSON object: nothing of it can be read (on NATS it is also dead-lettered).
    Undecodable(DomainError),
    /// A JSON object whose fields are missing, of the wrong type or out of bounds.
    Invalid(DomainError),
}

impl ParseError {
    /// Whether the body could not be read at all.
    pub fn is_undecodable(&self) -> bool {
        matches!(self, ParseError::Undecodable(_))
    }

    /// The error answered (`BAD_REQUEST`, naming what is wrong).
    pub fn error(&self) -> &DomainError {
        match self {
            ParseError::Undecodable(e) | ParseError::Invalid(e) => e,
        }
    }

    /// The error answered, owned.
    pub fn into_error(self) -> DomainError {
        match self {
            ParseError::Undecodable(e) | ParseError::Invalid(e) => e,
        }
    }
}

impl From<DomainError> for ParseError {
    fn from(e: DomainError) -> Self {
        ParseError::Invalid(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_roundtrip() {
        for k in CommandKind::ALL {
            assert_eq!(CommandKind::parse(k.as_str()), Some(k));
        }
    }
}
