//! The wire bodies of the command kinds (`*Body`, the REST body plus the ids the REST path carries)
//! and the validated inputs [`super::Command::parse`] turns them into.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::validate::check_len;
use super::MAX_SECRET_LEN;
use crate::domain::{ModelStatus, Provider};
use crate::error::{DomainError, DomainResult};

/// Deserializes a field that distinguishes "absent" (`None`) from `null` (`Some(None)`).
fn tri_state<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `Register a model` body (`POST /api/models`, `vc.cmd.model.register`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRegisterBody {
    /// Registry id to use (optional; derived from the command id when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Provider (required).
    #[serde(default)]
    pub provider: Option<String>,
    /// Upstream model id (required).
    #[serde(default)]
    pub model_id: Option<String>,
    /// Upstream endpoint; required for `openai-compatible` and `ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Upstream key in clear (other services) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// … or sealed (our API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sealed: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Price of an input (prompt) token in USD, 0 to 1000, that LiteLLM charges to the realm keys calling
    /// the model (its `input_cost_per_token`). Absent: LiteLLM's own price for the model, if it knows one
    /// (it usually knows none for a self-hosted model, whose calls then count nothing against budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cost_per_token: Option<f64>,
    /// Price of an output (completion) token in USD, 0 to 1000 (LiteLLM's `output_cost_per_token`).
    /// Absent: LiteLLM's own price, if it knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cost_per_token: Option<f64>,
}

crate::redacted_debug!(ModelRegisterBody { id, name, provider, model_id, base_url, description, input_cost_per_token, output_cost_per_token } secret { api_key, api_key_sealed });

/// `Update a model` body (`PUT /api/models/{id}`, `vc.cmd.model.update`). `null` clears nullable fields.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelUpdateBody {
    /// Registry id (from the path).
    #[serde(default)]
    pub id: Option<String>,
    /// New name (the LiteLLM name does not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description; `null` clears.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `active` or `inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Provider: accepted only if unchanged (it is part of `litellmModelName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// New upstream model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// New endpoint; `null` clears (refused where the provider requires one).
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub base_url: Option<Option<String>>,
    /// New upstream key in clear; `null` clears.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<String>>,
    /// New upstream key, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sealed: Option<String>,
    /// New price of an input token in USD, 0 to 1000; `null` clears (back to LiteLLM's own price).
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub input_cost_per_token: Option<Option<f64>>,
    /// New price of an output token in USD, 0 to 1000; `null` clears (back to LiteLLM's own price).
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub output_cost_per_token: Option<Option<f64>>,
}

crate::redacted_debug!(ModelUpdateBody { id, name, description, status, provider, model_id, base_url, input_cost_per_token, output_cost_per_token } secret { api_key, api_key_sealed });

/// Body naming one entity by id (`model.delete`: `id`; realm kinds: `realmId`; agent kinds: `did`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdBody {
    /// Registry id (`model.delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Realm id (`realm.delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// Agent DID (agent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
}

/// `Rotate a realm's key` body (`realm.key.rotate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotateBody {
    /// Realm id (from the path on REST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// How long the replaced key keeps working after the members were sent the new one, in seconds
    /// (0 = retired at once, for a leaked key; at most 604800). Default: the worker's
    /// `VC_KEY_ROTATION_GRACE_SECS` (30). The replaced key goes earlier once every online member has
    /// acknowledged the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<serde_json::Value>,
}

/// Body of the worker's budget commands (`realm.budget.alert`, `realm.budget.guard`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetBody {
    /// Realm id.
    #[serde(default)]
    pub realm_id: Option<String>,
    /// The budget period (`periodResetAt`), if any.
    #[serde(default)]
    pub period: Option<String>,
    /// Spend this period (USD).
    #[serde(default)]
    pub spend_usd: Option<f64>,
    /// The budget (USD).
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Fractions crossed (`realm.budget.alert`).
    #[serde(default)]
    pub fractions: Vec<f64>,
    /// Block or unblock (`realm.budget.guard`).
    #[serde(default)]
    pub block: Option<bool>,
}

/// Body of the worker's own rotation steps (`realm.key.activate`, `realm.key.retire`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStepBody {
    /// Realm id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// Public id of the key (16 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// `Create a realm` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmCreateBody {
    /// Realm id to use (optional; derived from the command id when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Slug (defaults to the slug of the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Display colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// `Update a realm` body (`PATCH`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmUpdateBody {
    /// Realm id (from the path).
    #[serde(default)]
    pub realm_id: Option<String>,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// New description; `null` clears.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Requests per minute for the realm's key and team (1–1000000000); `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub rpm_limit: Option<Option<serde_json::Value>>,
    /// Tokens per minute (1–1000000000); `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub tpm_limit: Option<Option<serde_json::Value>>,
    /// Requests in flight at once (1–1000000000); `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub max_parallel_requests: Option<Option<serde_json::Value>>,
}

/// `Grant` / `revoke` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantBody {
    /// Registry id of the model.
    #[serde(default)]
    pub model_id: Option<String>,
    /// Realm id.
    #[serde(default)]
    pub realm_id: Option<String>,
    /// Monthly budget of the realm's key (grant only); `null` removes the budget; absent keeps it.
    #[serde(
        default,
        deserialize_with = "tri_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub monthly_budget_usd: Option<Option<f64>>,
}

/// `Add/remove an agent to/from a realm` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipBody {
    /// Realm id.
    #[serde(default)]
    pub realm_id: Option<String>,
    /// Agent DID.
    #[serde(default)]
    pub agent_did: Option<String>,
    /// Make this the agent's primary realm (add only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_primary: Option<bool>,
}

/// `Register an agent` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRegisterBody {
    /// `did:key` Ed25519 identifier.
    #[serde(default)]
    pub did: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `Set an agent's LLM config` body: the three forms of the contract, first match wins.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfigSetBody {
    /// Agent DID (from the path).
    #[serde(default)]
    pub did: Option<String>,
    /// Form 1: realm routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// Form 1: registry id of a model granted to the realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_model_id: Option<String>,
    /// Form 2: registry id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_model_id: Option<String>,
    /// Form 3: provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Form 3: model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Form 3: key in clear (other services); absent keeps a previously stored manual key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Form 3: key, sealed (our API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sealed: Option<String>,
    /// Form 3: endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Form 3: system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Form 3: max tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
}

crate::redacted_debug!(LlmConfigSetBody { did, realm_id, realm_model_id, registry_model_id, provider, model, base_url, system_prompt, max_tokens } secret { api_key, api_key_sealed });

/// A secret given in a command: in clear, or sealed for the bus. Its `Debug` shows which, never the value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretInput {
    /// Given in clear (by another service).
    Clear(String),
    /// Sealed with [`crate::crypto::Purpose::Command`], bound to the command id.
    Sealed(String),
}

impl std::fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretInput::Clear(_) => f.write_str("Clear(<redacted>)"),
            SecretInput::Sealed(_) => f.write_str("Sealed(<redacted>)"),
        }
    }
}

impl SecretInput {
    pub(super) fn from_pair(
        field: &str,
        clear: Option<String>,
        sealed: Option<String>,
    ) -> DomainResult<Option<Self>> {
        match (clear, sealed) {
            (Some(_), Some(_)) => Err(DomainError::bad_request(format!(
                "give either {field} or {field}Sealed, not both"
            ))),
            (Some(c), None) => {
                check_len(field, &c, MAX_SECRET_LEN)?;
                if c.trim().is_empty() {
                    return Ok(None);
                }
                Ok(Some(SecretInput::Clear(c.trim().to_string())))
            }
            (None, Some(s)) => Ok(Some(SecretInput::Sealed(s))),
            (None, None) => Ok(None),
        }
    }
}

/// The form of an LLM config request.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmConfigForm {
    /// Realm routing.
    Realm {
        /// Realm id.
        realm_id: String,
        /// Registry id.
        model_id: String,
    },
    /// Registry model.
    Registry {
        /// Registry id.
        model_id: String,
    },
    /// Manual config.
    Manual {
        /// Provider.
        provider: Provider,
        /// Model.
        model: String,
        /// Key; `None` keeps a previously stored manual key.
        api_key: Option<SecretInput>,
        /// Endpoint.
        base_url: Option<String>,
        /// System prompt.
        system_prompt: Option<String>,
        /// Max tokens.
        max_tokens: Option<u32>,
    },
}

/// A validated model registration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRegister {
    /// Id requested by the publisher.
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// Provider.
    pub provider: Provider,
    /// Upstream model id.
    pub model_id: String,
    /// Endpoint.
    pub base_url: Option<String>,
    /// Upstream key.
    pub api_key: Option<SecretInput>,
    /// Description.
    pub description: Option<String>,
    /// Price of an input token in USD (`None`: LiteLLM's own).
    pub input_cost_per_token: Option<f64>,
    /// Price of an output token in USD (`None`: LiteLLM's own).
    pub output_cost_per_token: Option<f64>,
}

/// A validated model update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelUpdate {
    /// Registry id.
    pub id: String,
    /// New name.
    pub name: Option<String>,
    /// New description (`Some(None)` clears).
    pub description: Option<Option<String>>,
    /// New status.
    pub status: Option<ModelStatus>,
    /// Provider given (must equal the stored one).
    pub provider: Option<Provider>,
    /// New upstream model id.
    pub model_id: Option<String>,
    /// New endpoint (`Some(None)` clears).
    pub base_url: Option<Option<String>>,
    /// New key (`Some(None)` clears).
    pub api_key: Option<Option<SecretInput>>,
    /// New price of an input token in USD (`Some(None)` clears).
    pub input_cost_per_token: Option<Option<f64>>,
    /// New price of an output token in USD (`Some(None)` clears).
    pub output_cost_per_token: Option<Option<f64>>,
}

/// A validated realm creation.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmCreate {
    /// Id requested by the publisher.
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Description.
    pub description: Option<String>,
    /// Colour.
    pub color: Option<String>,
}

/// A validated realm update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RealmUpdate {
    /// Realm id.
    pub realm_id: String,
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New description (`Some(None)` clears).
    pub description: Option<Option<String>>,
    /// New colour.
    pub color: Option<String>,
    /// Changes of the request limits.
    pub limits: crate::budget::LimitsUpdate,
}
