//! Commands: the write interface of the control plane (contract §4).
//!
//! A command is JSON published on `vc.cmd.<kind>` with header `Nats-Msg-Id: <command id>` (required,
//! also JetStream's dedupe key) and, optionally, `Vc-Reply-To: <subject>` for the [`Outcome`]. The body is
//! the REST body plus the ids the REST path carries. [`Command::parse`] turns a kind and a body into a
//! validated command or a [`DomainError`] naming the field at fault; the API and the worker both call it,
//! so a bad command published straight on NATS is refused with the same words as a bad REST request.
//!
//! Secrets in bodies: `apiKey` may be given in clear by other services; the API always sends
//! `apiKeySealed` instead (sealed with [`crate::crypto::Purpose::Command`]), so no secret crosses the bus
//! in clear from our own services.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::did::parse_did_key;
use crate::domain::{slug, ModelStatus, Provider};
use crate::error::{DomainError, DomainResult};

/// Header carrying the command id (JetStream dedupe key).
pub const HDR_MSG_ID: &str = "Nats-Msg-Id";
/// Header naming the subject the outcome is sent to.
pub const HDR_REPLY_TO: &str = "Vc-Reply-To";
/// Header naming who issued the command (for audit): `admin`, `token:<id>`, or a service name.
pub const HDR_ACTOR: &str = "Vc-Actor";

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
}

impl CommandKind {
    /// Every kind.
    pub const ALL: [CommandKind; 15] = [
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
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Deserializes a field that distinguishes "absent" (`None`) from `null` (`Some(None)`).
fn tri_state<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `Register a model` body (`POST /api/models`, `vc.cmd.model.register`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
}

/// `Update a model` body (`PUT /api/models/{id}`, `vc.cmd.model.update`). `null` clears nullable fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
}

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// A secret given in a command: in clear, or sealed for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInput {
    /// Given in clear (by another service).
    Clear(String),
    /// Sealed with [`crate::crypto::Purpose::Command`].
    Sealed(String),
}

impl SecretInput {
    fn from_pair(
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

fn undecodable(msg: impl Into<String>) -> ParseError {
    ParseError::Undecodable(DomainError::bad_request(msg))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(undecodable("body is required (a JSON object)"));
    }
    // First, one JSON value as any JSON reader (and the REST API) takes it: syntax, trailing bytes,
    // numbers out of range (`1e400`) and nesting deeper than 128 are "not valid JSON" wherever they
    // are, even after a field of the wrong type (`{"id":[1}`) or in a field the kind does not use.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| undecodable(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(undecodable("body must be a JSON object"));
    }
    // Then the kind's fields, from the bytes (so a duplicate field is seen), with the field's path.
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            undecodable(format!("body is not valid JSON: {inner}"))
        } else if msg.starts_with("duplicate field") || path == "." {
            ParseError::Invalid(DomainError::bad_request(msg))
        } else {
            ParseError::Invalid(DomainError::bad_request(format!("{path}: {msg}")))
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn check_len(field: &str, value: &str, max: usize) -> DomainResult<()> {
    if value.len() > max {
        return Err(DomainError::bad_request(format!(
            "{field} is too long (at most {max} bytes of UTF-8)"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(DomainError::bad_request(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

fn required(field: &str, value: Option<String>, max: usize) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    check_len(field, &v, max)?;
    Ok(v)
}

fn optional(field: &str, value: Option<String>, max: usize) -> DomainResult<Option<String>> {
    match value.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            check_len(field, &v, max)?;
            Ok(Some(v))
        }
    }
}

fn non_empty_if_given(
    field: &str,
    value: Option<String>,
    max: usize,
) -> DomainResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => required(field, Some(v), max).map(Some),
    }
}

/// Validates an identifier (registry id, realm id): 1–128 of `[A-Za-z0-9_:-]` (no `.`: ids are NATS
/// subject tokens).
pub fn validate_id(field: &str, value: Option<String>) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    if v.len() > 128
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
    {
        return Err(DomainError::bad_request(format!(
            "{field} must be 1-128 characters of letters, digits, '-', '_' or ':'"
        )));
    }
    Ok(v)
}

/// Validates a `did:key` Ed25519 DID.
pub fn validate_did(field: &str, value: Option<String>) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    parse_did_key(&v).map_err(|e| {
        DomainError::bad_request(format!(
            "{field} is not a valid did:key Ed25519 identifier: {e}"
        ))
    })?;
    Ok(v)
}

/// Validates an http(s) URL.
pub fn validate_url(field: &str, value: &str) -> DomainResult<String> {
    check_len(field, value, MAX_URL_LEN)?;
    let parsed = url::Url::parse(value.trim()).map_err(|e| {
        DomainError::bad_request(format!("{field} must be an http or https URL ({e})"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(DomainError::bad_request(format!(
            "{field} must be an http or https URL"
        )));
    }
    Ok(value.trim().to_string())
}

fn provider(field: &str, value: Option<String>) -> DomainResult<Provider> {
    let v = required(field, value, 64)?;
    Provider::parse(&v).ok_or_else(|| {
        DomainError::bad_request(format!(
            "{field} must be one of: {}",
            Provider::ALL
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn color(value: Option<String>) -> DomainResult<Option<String>> {
    match optional("color", value, 32)? {
        None => Ok(None),
        Some(c) => {
            let hex = c.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 4 | 6 | 8) || !hex.chars().all(|ch| ch.is_ascii_hexdigit())
            {
                return Err(DomainError::bad_request(
                    "color must be a hex colour such as #6366f1",
                ));
            }
            Ok(Some(c))
        }
    }
}

fn realm_slug(field: &str, value: &str) -> DomainResult<String> {
    let s = slug(value);
    if s.is_empty() {
        return Err(DomainError::bad_request(format!(
            "{field} must contain at least one ASCII letter or digit (a-z, 0-9)"
        )));
    }
    if s.len() > 100 {
        return Err(DomainError::bad_request(format!(
            "{field} is too long (at most 100 characters)"
        )));
    }
    Ok(s)
}

impl Command {
    /// Validates a command body of the given kind.
    pub fn parse(kind: CommandKind, body: &[u8]) -> DomainResult<Command> {
        Self::parse_checked(kind, body).map_err(ParseError::into_error)
    }

    /// [`Command::parse`], telling a body that cannot be read at all from an invalid one.
    pub fn parse_checked(kind: CommandKind, body: &[u8]) -> Result<Command, ParseError> {
        Ok(match kind {
            CommandKind::ModelRegister => {
                let b: ModelRegisterBody = decode(body)?;
                let id = b.id.map(|id| validate_id("id", Some(id))).transpose()?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                let provider = provider("provider", b.provider)?;
                let model_id = required("modelId", b.model_id, MAX_NAME_LEN)?;
                let base_url = match optional("baseUrl", b.base_url, MAX_URL_LEN)? {
                    Some(u) => Some(validate_url("baseUrl", &u)?),
                    None if provider.requires_base_url() => {
                        return Err(DomainError::bad_request(format!(
                            "baseUrl is required for provider {}",
                            provider.as_str()
                        ))
                        .into())
                    }
                    None => None,
                };
                if crate::domain::slug(&name).is_empty() {
                    return Err(DomainError::bad_request(
                        "name must contain at least one ASCII letter or digit (a-z, 0-9)",
                    )
                    .into());
                }
                let api_key = SecretInput::from_pair("apiKey", b.api_key, b.api_key_sealed)?;
                let description = optional("description", b.description, MAX_DESCRIPTION_LEN)?;
                Command::ModelRegister(ModelRegister {
                    id,
                    name,
                    provider,
                    model_id,
                    base_url,
                    api_key,
                    description,
                })
            }
            CommandKind::ModelUpdate => {
                let b: ModelUpdateBody = decode(body)?;
                let id = validate_id("id", b.id)?;
                let name = non_empty_if_given("name", b.name, MAX_NAME_LEN)?;
                if let Some(n) = &name {
                    if slug(n).is_empty() {
                        return Err(DomainError::bad_request(
                            "name must contain at least one ASCII letter or digit (a-z, 0-9)",
                        )
                        .into());
                    }
                }
                let description = match b.description {
                    None => None,
                    Some(d) => Some(optional("description", d, MAX_DESCRIPTION_LEN)?),
                };
                let status = match b.status {
                    None => None,
                    Some(s) => Some(match s.as_str() {
                        "active" => ModelStatus::Active,
                        "inactive" => ModelStatus::Inactive,
                        _ => {
                            return Err(DomainError::bad_request(
                                "status must be \"active\" or \"inactive\"",
                            )
                            .into())
                        }
                    }),
                };
                let provider = b
                    .provider
                    .map(|p| provider("provider", Some(p)))
                    .transpose()?;
                let model_id = non_empty_if_given("modelId", b.model_id, MAX_NAME_LEN)?;
                let base_url = match b.base_url {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(u)) if u.trim().is_empty() => Some(None),
                    Some(Some(u)) => Some(Some(validate_url("baseUrl", &u)?)),
                };
                let api_key = match (b.api_key, b.api_key_sealed) {
                    (None, None) => None,
                    (Some(None), None) => Some(None),
                    (Some(Some(c)), s) => Some(SecretInput::from_pair("apiKey", Some(c), s)?),
                    (Some(None), Some(_)) => {
                        return Err(DomainError::bad_request(
                            "give either apiKey or apiKeySealed, not both",
                        )
                        .into())
                    }
                    (None, Some(s)) => Some(Some(SecretInput::Sealed(s))),
                };
                Command::ModelUpdate(ModelUpdate {
                    id,
                    name,
                    description,
                    status,
                    provider,
                    model_id,
                    base_url,
                    api_key,
                })
            }
            CommandKind::ModelDelete => {
                let b: IdBody = decode(body)?;
                Command::ModelDelete {
                    id: validate_id("id", b.id)?,
                }
            }
            CommandKind::RealmCreate => {
                let b: RealmCreateBody = decode(body)?;
                let id = b.id.map(|id| validate_id("id", Some(id))).transpose()?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                let slug = match optional("slug", b.slug, 200)? {
                    Some(s) => realm_slug("slug", &s)?,
                    None => realm_slug("name", &name)?,
                };
                let description = optional("description", b.description, MAX_DESCRIPTION_LEN)?;
                Command::RealmCreate(RealmCreate {
                    id,
                    name,
                    slug,
                    description,
                    color: color(b.color)?,
                })
            }
            CommandKind::RealmUpdate => {
                let b: RealmUpdateBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let name = non_empty_if_given("name", b.name, MAX_NAME_LEN)?;
                let slug = match b.slug {
                    None => None,
                    Some(s) => Some(realm_slug("slug", &s)?),
                };
                let description = match b.description {
                    None => None,
                    Some(d) => Some(optional("description", d, MAX_DESCRIPTION_LEN)?),
                };
                Command::RealmUpdate(RealmUpdate {
                    realm_id,
                    name,
                    slug,
                    description,
                    color: color(b.color)?,
                })
            }
            CommandKind::RealmDelete => {
                let b: IdBody = decode(body)?;
                Command::RealmDelete {
                    realm_id: validate_id("realmId", b.realm_id)?,
                }
            }
            CommandKind::RealmGrant | CommandKind::RealmRevoke => {
                let b: GrantBody = decode(body)?;
                let model_id = validate_id("modelId", b.model_id)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                if kind == CommandKind::RealmRevoke {
                    Command::RealmRevoke { model_id, realm_id }
                } else {
                    if let Some(Some(budget)) = b.monthly_budget_usd {
                        if !budget.is_finite() || budget < 0.0 {
                            return Err(DomainError::bad_request(
                                "monthlyBudgetUsd must be a number >= 0",
                            )
                            .into());
                        }
                        if budget > 1e9 {
                            return Err(DomainError::bad_request(
                                "monthlyBudgetUsd is too large (at most 1e9)",
                            )
                            .into());
                        }
                    }
                    Command::RealmGrant {
                        model_id,
                        realm_id,
                        monthly_budget_usd: b.monthly_budget_usd,
                    }
                }
            }
            CommandKind::RealmAgentAdd | CommandKind::RealmAgentRemove => {
                let b: MembershipBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let agent_did = validate_did("agentDid", b.agent_did)?;
                if kind == CommandKind::RealmAgentAdd {
                    Command::RealmAgentAdd {
                        realm_id,
                        agent_did,
                        is_primary: b.is_primary.unwrap_or(false),
                    }
                } else {
                    Command::RealmAgentRemove {
                        realm_id,
                        agent_did,
                    }
                }
            }
            CommandKind::AgentRegister => {
                let b: AgentRegisterBody = decode(body)?;
                let did = validate_did("did", b.did)?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                Command::AgentRegister { did, name }
            }
            CommandKind::AgentDelete => {
                let b: IdBody = decode(body)?;
                Command::AgentDelete {
                    did: validate_did("did", b.did)?,
                }
            }
            CommandKind::AgentLlmConfigClear => {
                let b: IdBody = decode(body)?;
                Command::AgentLlmConfigClear {
                    did: validate_did("did", b.did)?,
                }
            }
            CommandKind::AgentLlmConfigSet => {
                let b: LlmConfigSetBody = decode(body)?;
                let did = validate_did("did", b.did)?;
                let form = if b.realm_id.is_some() || b.realm_model_id.is_some() {
                    LlmConfigForm::Realm {
                        realm_id: validate_id("realmId", b.realm_id)?,
                        model_id: validate_id("realmModelId", b.realm_model_id)?,
                    }
                } else if b.registry_model_id.is_some() {
                    LlmConfigForm::Registry {
                        model_id: validate_id("registryModelId", b.registry_model_id)?,
                    }
                } else {
                    let provider = provider("provider", b.provider)?;
                    let model = required("model", b.model, MAX_NAME_LEN)?;
                    let api_key = SecretInput::from_pair("apiKey", b.api_key, b.api_key_sealed)?;
                    let base_url = optional("baseUrl", b.base_url, MAX_URL_LEN)?
                        .map(|u| validate_url("baseUrl", &u))
                        .transpose()?;
                    let system_prompt = optional("systemPrompt", b.system_prompt, MAX_PROMPT_LEN)?;
                    let max_tokens = match b.max_tokens {
                        None => None,
                        Some(n) if (1..=10_000_000).contains(&n) => Some(n as u32),
                        Some(_) => {
                            return Err(DomainError::bad_request(
                                "maxTokens must be an integer from 1 to 10000000",
                            )
                            .into())
                        }
                    };
                    LlmConfigForm::Manual {
                        provider,
                        model,
                        api_key,
                        base_url,
                        system_prompt,
                        max_tokens,
                    }
                };
                Command::AgentLlmConfigSet { did, form }
            }
            CommandKind::LitellmReconcile => Command::LitellmReconcile,
        })
    }
}

/// The status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Accepted, not yet applied.
    Pending,
    /// Applied.
    Succeeded,
    /// Refused.
    Failed,
}

/// `error` of an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeError {
    /// Error code (`BAD_REQUEST`, `NOT_FOUND`, …).
    pub code: crate::error::ErrorCode,
    /// Message naming the field or thing.
    pub message: String,
}

impl From<DomainError> for OutcomeError {
    fn from(e: DomainError) -> Self {
        OutcomeError {
            code: e.code,
            message: e.message,
        }
    }
}

/// The outcome of a command, sent to `Vc-Reply-To` (contract §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Command id.
    pub command_id: String,
    /// `succeeded` or `failed`.
    pub status: CommandStatus,
    /// What the REST call returns.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

/// A command as `GET /api/commands/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// Command id.
    pub command_id: String,
    /// Kind name.
    pub kind: String,
    /// Status.
    pub status: CommandStatus,
    /// Result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
    /// RFC 3339.
    pub submitted_at: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Internal: the side effects to re-emit if the command is delivered again after its commit
    /// (pushes, LiteLLM syncs, events). Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub effects: Option<serde_json::Value>,
}

impl CommandRecord {
    /// The outcome this record holds, if the command completed.
    pub fn outcome(&self) -> Option<Outcome> {
        (self.status != CommandStatus::Pending).then(|| Outcome {
            command_id: self.command_id.clone(),
            status: self.status,
            result: self.result.clone(),
            error: self.error.clone(),
        })
    }
}

/// Deterministic entity id for a command that creates one without naming it: a UUIDv5 of the command id,
/// so a redelivered command always creates the same id.
pub fn derived_id(command_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("vc-command:{command_id}").as_bytes(),
    )
    .to_string()
}

/// Validates a command id given in `Nats-Msg-Id` or `Idempotency-Key`.
pub fn validate_command_id(id: &str) -> DomainResult<()> {
    if id.is_empty() || id.len() > MAX_COMMAND_ID_LEN || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(DomainError::bad_request(format!(
            "command id must be 1-{MAX_COMMAND_ID_LEN} printable ASCII characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: CommandKind, body: &str) -> String {
        Command::parse(kind, body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn model_register_validation_names_fields() {
        let k = CommandKind::ModelRegister;
        assert_eq!(err(k, "{}"), "name is required");
        assert_eq!(err(k, r#"{"name":"x"}"#), "provider is required");
        assert!(err(k, r#"{"name":"x","provider":"nope","modelId":"m"}"#)
            .starts_with("provider must be one of"));
        assert_eq!(
            err(k, r#"{"name":"x","provider":"openai"}"#),
            "modelId is required"
        );
        assert_eq!(
            err(k, r#"{"name":"x","provider":"ollama","modelId":"m"}"#),
            "baseUrl is required for provider ollama"
        );
        assert!(err(
            k,
            r#"{"name":"x","provider":"ollama","modelId":"m","baseUrl":"ftp://a"}"#
        )
        .starts_with("baseUrl must be"));
        assert!(err(k, r#"{"name":5}"#).starts_with("name: invalid type"));
        let e = err(k, "[1]");
        assert!(e.starts_with("body must be a JSON object"), "{e}");
        assert!(err(k, "{").starts_with("body is not valid JSON"));
        let ok = Command::parse(
            k,
            br#"{"name":" GPT 4o ","provider":"openai","modelId":"gpt-4o","apiKey":"sk-1"}"#,
        )
        .unwrap();
        match ok {
            Command::ModelRegister(m) => {
                assert_eq!(m.name, "GPT 4o");
                assert_eq!(m.api_key, Some(SecretInput::Clear("sk-1".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tri_state_fields() {
        let c = Command::parse(
            CommandKind::ModelUpdate,
            br#"{"id":"m1","apiKey":null,"description":null}"#,
        )
        .unwrap();
        match c {
            Command::ModelUpdate(u) => {
                assert_eq!(u.api_key, Some(None));
                assert_eq!(u.description, Some(None));
                assert_eq!(u.base_url, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(CommandKind::ModelUpdate, r#"{"id":"m1","status":"gone"}"#),
            "status must be \"active\" or \"inactive\""
        );
    }

    #[test]
    fn llm_config_forms_first_match_wins() {
        let did = crate::did::did_from_key(&crate::did::generate_key().verifying_key());
        let body = format!(r#"{{"did":"{did}","realmId":"r1","registryModelId":"m2"}}"#);
        assert_eq!(
            err(CommandKind::AgentLlmConfigSet, &body),
            "realmModelId is required"
        );
        let body = format!(r#"{{"did":"{did}","registryModelId":"m2","provider":"openai"}}"#);
        assert!(matches!(
            Command::parse(CommandKind::AgentLlmConfigSet, body.as_bytes()).unwrap(),
            Command::AgentLlmConfigSet {
                form: LlmConfigForm::Registry { .. },
                ..
            }
        ));
        let body = format!(r#"{{"did":"{did}","provider":"openai"}}"#);
        assert_eq!(
            err(CommandKind::AgentLlmConfigSet, &body),
            "model is required"
        );
        let body = format!(r#"{{"did":"{did}","provider":"openai","model":"m","maxTokens":0}}"#);
        assert!(err(CommandKind::AgentLlmConfigSet, &body).starts_with("maxTokens"));
        assert!(err(
            CommandKind::AgentRegister,
            r#"{"did":"did:web:x","name":"a"}"#
        )
        .starts_with("did is not a valid did:key"));
    }

    #[test]
    fn grant_budget_rules() {
        assert_eq!(
            err(
                CommandKind::RealmGrant,
                r#"{"modelId":"m","realmId":"r","monthlyBudgetUsd":-1}"#
            ),
            "monthlyBudgetUsd must be a number >= 0"
        );
        let c = Command::parse(
            CommandKind::RealmGrant,
            br#"{"modelId":"m","realmId":"r","monthlyBudgetUsd":null}"#,
        )
        .unwrap();
        assert!(matches!(
            c,
            Command::RealmGrant {
                monthly_budget_usd: Some(None),
                ..
            }
        ));
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derived_id("c1"), derived_id("c1"));
        assert_ne!(derived_id("c1"), derived_id("c2"));
    }

    #[test]
    fn kinds_roundtrip() {
        for k in CommandKind::ALL {
            assert_eq!(CommandKind::parse(k.as_str()), Some(k));
        }
    }
}
