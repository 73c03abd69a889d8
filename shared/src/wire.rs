//! Messages on the bus between services (not the agent WebSocket protocol; see [`crate::ws`]).

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, Purpose, Sealer};
use crate::domain::{LlmConfig, Mode};
use crate::routing::{AgentRoute, ModelRouting, RealmRouting};

/// An [`LlmConfig`] whose API key is sealed ([`Purpose::AgentConfigKey`]): what crosses the bus. The key
/// is bound to its owner: the realm (realm routing), the registry model (registry mode) or the agent
/// (a manual config); see [`ConfigState::key_owner`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedLlmConfig {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Sealed API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sealed: Option<String>,
    /// Models the key reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Max tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl SealedLlmConfig {
    /// Seals the key of a config, bound to `owner` (the id of the realm, model or agent whose key it is).
    pub fn seal(sealer: &Sealer, owner: &str, c: &LlmConfig) -> Result<Self, CryptoError> {
        Ok(SealedLlmConfig {
            provider: c.provider.clone(),
            model: c.model.clone(),
            base_url: c.base_url.clone(),
            api_key_sealed: c
                .api_key
                .as_deref()
                .map(|k| sealer.seal(Purpose::AgentConfigKey, owner, k))
                .transpose()?,
            allowed_models: c.allowed_models.clone(),
            system_prompt: c.system_prompt.clone(),
            max_tokens: c.max_tokens,
        })
    }

    /// Opens the key, sealed for `owner`.
    pub fn open(&self, sealer: &Sealer, owner: &str) -> Result<LlmConfig, CryptoError> {
        Ok(LlmConfig {
            provider: self.provider.clone(),
            model: self.model.clone(),
            base_url: self.base_url.clone(),
            api_key: self
                .api_key_sealed
                .as_deref()
                .map(|k| sealer.open(Purpose::AgentConfigKey, owner, k))
                .transpose()?,
            allowed_models: self.allowed_models.clone(),
            system_prompt: self.system_prompt.clone(),
            max_tokens: self.max_tokens,
        })
    }
}

/// One agent's effective config state: what an edge sends as `llm_config` (derived, never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigState {
    /// Config, or `None` for "fall back to the local environment".
    pub config: Option<SealedLlmConfig>,
    /// Strictly increasing per agent.
    pub version: u64,
    /// Mode of the config source.
    pub mode: Option<Mode>,
    /// Realm when routed through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// Whose key the config carries, when not the agent's own: the realm (realm routing) or the
    /// registry model (registry mode). `None`: a manual config, whose key is the agent's (bound to its
    /// DID). The config's sealed key is bound to this id; set by [`crate::routing::effective`] from the
    /// agent's route, never read from the record that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_owner: Option<String>,
}

impl ConfigState {
    /// The config with its key opened, for agent `did` (the only one it may be sent to).
    pub fn open(&self, sealer: &Sealer, did: &str) -> Result<Option<LlmConfig>, CryptoError> {
        let owner = self.key_owner.as_deref().unwrap_or(did);
        self.config
            .as_ref()
            .map(|c| c.open(sealer, owner))
            .transpose()
    }
}

/// Pushes published by the worker (and edges, for takeover) to edges.
///
/// Config pushes carry routing states, never per-agent configs: an edge derives each held agent's
/// frame with [`crate::routing::effective`], so a realm-level change is one message whatever the number
/// of agents routed through the realm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    /// On `vc.push.agent.<did>`: the agent's own route changed. Carries the routing state of the realm
    /// or model it now depends on (read after the commit), so the edge can derive its config at once.
    #[serde(rename_all = "camelCase")]
    AgentRoute {
        /// Agent.
        did: String,
        /// Its route.
        route: AgentRoute,
        /// The routing of the realm it is routed through, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        realm: Option<Box<RealmRouting>>,
        /// The routing of the registry model it uses, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<Box<ModelRouting>>,
    },
    /// On `vc.push.realm.<realmId>`: the realm's new routing state (key, models, or its deletion).
    #[serde(rename_all = "camelCase")]
    RealmRouting {
        /// The state.
        routing: RealmRouting,
    },
    /// On `vc.push.model.<modelId>`: the model's new routing state (upstream details, status, or its
    /// deletion).
    #[serde(rename_all = "camelCase")]
    ModelRouting {
        /// The state.
        routing: ModelRouting,
    },
    /// On `vc.push.agent.<did>`: the agent was deleted; close its session with 4403.
    #[serde(rename_all = "camelCase")]
    AgentDeleted {
        /// Agent.
        did: String,
    },
    /// On `vc.push.agent.<did>`: a newer session took over; older sessions close with 4409.
    #[serde(rename_all = "camelCase")]
    SessionClaimed {
        /// Agent.
        did: String,
        /// The new session.
        session_id: String,
        /// The edge holding it.
        edge_id: String,
        /// Unix milliseconds of the new session's authentication.
        at_ms: i64,
    },
}

/// A domain event on `vc.evt.<kind>` (no secrets), also kept in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id (the audit cursor once stored).
    pub id: String,
    /// RFC 3339.
    pub at: String,
    /// Who caused it (`admin`, `token:<id>`, `edge:<id>`, a service name).
    pub actor: String,
    /// Kind (`model.registered`, `realm.key.minted`, `agent.config.pushed`, …).
    pub kind: String,
    /// What it is about (`model:<id>`, `realm:<id>`, `agent:<did>`).
    pub subject: String,
    /// Details (no secrets).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// `details` of the `agent.presence` events on `vc.evt.agent.presence` ([`Event`] envelope, actor and
/// subject `edge:<id>`): sessions that began (`online`) or ended on one edge, in the order they did. Edges publish them in batches (a few milliseconds apart), so a reconnect storm is a few
/// messages, not one per agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    /// The edge.
    pub edge_id: String,
    /// What changed.
    pub changes: Vec<PresenceChange>,
}

/// One agent's session beginning or ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChange {
    /// The agent.
    pub did: String,
    /// `true` when the session began, `false` when it ended.
    pub online: bool,
    /// The session's rank (Redis-clock milliseconds, increasing per agent): the highest wins, so a
    /// late report of an older session never hides the newer one.
    pub since: i64,
    /// RFC 3339.
    pub at: String,
    /// What the agent reports it uses (heartbeat `activeLlm`), when that changed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_llm: Option<serde_json::Value>,
}

/// `details` of the `agent.acked` events on `vc.evt.agent.acked` ([`Event`] envelope): config versions
/// agents acknowledged on one edge, as recorded in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckedEvent {
    /// The edge.
    pub edge_id: String,
    /// The acks.
    pub acks: Vec<AckedVersion>,
}

/// One agent's acknowledged version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckedVersion {
    /// The agent.
    pub did: String,
    /// The version.
    pub version: u64,
}
