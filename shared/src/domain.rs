//! Domain types: what is stored (the `Stored*` records, internal) and what is shown (the `*View`
//! types, the JSON shapes of the contract).
//!
//! Secrets appear in stored records only sealed (see [`crate::crypto`]); views never carry them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::budget::{BudgetAlerts, BudgetGuard, RealmLimits};
use crate::rotation::{KeyRotation, RotationView};

/// Current time as RFC 3339 (UTC, millisecond precision).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The upstream provider of a registry model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Provider {
    /// Any OpenAI-compatible endpoint (requires `baseUrl`).
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// OpenAI.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini.
    #[serde(rename = "google")]
    Google,
    /// Ollama (requires `baseUrl`).
    #[serde(rename = "ollama")]
    Ollama,
}

impl Provider {
    /// Every provider, in the order the contract lists them.
    pub const ALL: [Provider; 5] = [
        Provider::OpenAiCompatible,
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Google,
        Provider::Ollama,
    ];

    /// The wire name (`"openai-compatible"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAiCompatible => "openai-compatible",
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Google => "google",
            Provider::Ollama => "ollama",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether `baseUrl` is required for this provider.
    pub fn requires_base_url(self) -> bool {
        matches!(self, Provider::OpenAiCompatible | Provider::Ollama)
    }

    /// LiteLLM's `litellm_params.model` for an upstream model id (contract §5).
    pub fn litellm_upstream(self, model_id: &str) -> String {
        match self {
            Provider::OpenAiCompatible | Provider::OpenAi => format!("openai/{model_id}"),
            Provider::Anthropic => format!("anthropic/{model_id}"),
            Provider::Google => format!("gemini/{model_id}"),
            Provider::Ollama => format!("ollama_chat/{model_id}"),
        }
    }
}

/// Whether a model may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    /// Usable: granted realms' keys reach it.
    #[default]
    Active,
    /// Kept in the registry but removed from every realm key and from LiteLLM.
    Inactive,
}

/// The order of models in a realm: by name, case-insensitively (character by character), then by id.
/// The realm key's model list, the realm's routing state and "the first active model by name" all
/// follow it. It compares without allocating: it runs for every granted model of a realm each time the
/// realm's routing changes.
pub fn model_order(a: &StoredModel, b: &StoredModel) -> std::cmp::Ordering {
    name_order(&a.name, &b.name).then_with(|| a.id.cmp(&b.id))
}

/// Names compared case-insensitively, character by character. Two ASCII names (nearly all) compare
/// byte by byte: the same order, several times faster than lowering each character through Unicode.
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .cmp(b.chars().flat_map(char::to_lowercase))
    }
}

/// Lower-case, each run of characters outside `[a-z0-9]` becomes one `-`, leading/trailing `-` trimmed.
///
/// ```
/// assert_eq!(vc_shared::domain::slug("Llama 3 (local)"), "llama-3-local");
/// ```
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_dash = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out
}

/// `provider + "/" + slug(name)`.
pub fn litellm_model_name(provider: Provider, name: &str) -> String {
    format!("{}/{}", provider.as_str(), slug(name))
}

/// A registry model as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredModel {
    /// Registry id (also LiteLLM's `model_info.id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Upstream provider.
    pub provider: Provider,
    /// Upstream model identifier.
    pub model_id: String,
    /// Upstream endpoint.
    pub base_url: Option<String>,
    /// Upstream API key, sealed with [`crate::crypto::Purpose::ModelApiKey`], bound to the model id.
    pub api_key_sealed: Option<String>,
    /// Name in LiteLLM; fixed at creation.
    pub litellm_model_name: String,
    /// Active or inactive.
    pub status: ModelStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Desired-state generation for LiteLLM sync; bumped whenever the deployment must change.
    pub gen: u64,
    /// Price of an input token in USD, synced as the deployment's `input_cost_per_token`; `None`:
    /// LiteLLM's own price. Absent from records stored before prices existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cost_per_token: Option<f64>,
    /// Price of an output token in USD (`output_cost_per_token`); `None`: LiteLLM's own price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cost_per_token: Option<f64>,
}

/// A realm's virtual key as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmKeyRecord {
    /// The key value, sealed with [`crate::crypto::Purpose::RealmKey`], bound to the realm id.
    pub key_sealed: String,
    /// At most the first 8 characters of the key.
    pub key_prefix: String,
    /// Monthly budget in USD (LiteLLM `max_budget` with `budget_duration: "1mo"`).
    pub monthly_budget_usd: Option<f64>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Rotation state: a new value waiting for LiteLLM, replaced values still working.
    #[serde(default, skip_serializing_if = "KeyRotation::is_empty")]
    pub rotation: KeyRotation,
    /// Budget thresholds crossed in the current period.
    #[serde(default, skip_serializing_if = "BudgetAlerts::is_empty")]
    pub alerts: BudgetAlerts,
    /// Set while the control plane blocks the realm's keys because the budget is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<BudgetGuard>,
}

/// A realm as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRealm {
    /// Realm id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// Free text.
    pub description: Option<String>,
    /// Display colour.
    pub color: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The realm's virtual key, once minted.
    pub key: Option<RealmKeyRecord>,
    /// Desired-state generation for LiteLLM key sync; bumped when the key's models or budget change.
    pub gen: u64,
    /// Request limits of the realm's key and team.
    #[serde(default, skip_serializing_if = "RealmLimits::is_empty")]
    pub limits: RealmLimits,
}

/// Default realm colour.
pub const DEFAULT_REALM_COLOR: &str = "#6366f1";

/// An agent's membership of a realm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// The realm.
    pub realm_id: String,
    /// The agent.
    pub agent_did: String,
    /// At most one primary realm per agent.
    pub is_primary: bool,
    /// RFC 3339.
    pub joined_at: String,
}

/// How an agent's config is chosen, as stored. Secrets sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum ConfigSource {
    /// Through the realm's virtual key to a granted model (`model_id` = registry id).
    #[serde(rename_all = "camelCase")]
    Realm {
        /// The realm.
        realm_id: String,
        /// The registry id of the chosen model.
        model_id: String,
    },
    /// Directly to a registry model's upstream with its stored key.
    #[serde(rename_all = "camelCase")]
    Registry {
        /// The registry id.
        model_id: String,
    },
    /// A config typed in by an admin.
    #[serde(rename_all = "camelCase")]
    Manual {
        /// Provider name.
        provider: Provider,
        /// Model name.
        model: String,
        /// Sealed with [`crate::crypto::Purpose::AgentConfigKey`], bound to the agent's DID.
        api_key_sealed: Option<String>,
        /// Endpoint.
        base_url: Option<String>,
        /// System prompt.
        system_prompt: Option<String>,
        /// Max tokens.
        max_tokens: Option<u32>,
    },
}

impl ConfigSource {
    /// The contract's `mode` string.
    pub fn mode(&self) -> Mode {
        match self {
            ConfigSource::Realm { .. } => Mode::Realm,
            ConfigSource::Registry { .. } => Mode::Registry,
            ConfigSource::Manual { .. } => Mode::Manual,
        }
    }
}

/// The contract's config `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Realm routing through LiteLLM.
    Realm,
    /// Registry model, direct.
    Registry,
    /// Manual.
    Manual,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAgent {
    /// `did:key` identifier.
    pub did: String,
    /// Display name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// How its config is chosen; `None` = fall back to the agent's local environment.
    pub source: Option<ConfigSource>,
    /// Version of the agent's last own change (from the global counter). Its effective config and
    /// version also depend on its realm's or model's routing state: see [`crate::routing::effective`].
    pub version: u64,
}

impl StoredAgent {
    /// The agent's own part of its config.
    pub fn route(&self) -> crate::routing::AgentRoute {
        crate::routing::AgentRoute {
            version: self.version,
            source: self.source.clone(),
        }
    }

    /// What its config depends on besides its route.
    pub fn dependency(&self) -> Option<crate::routing::Dependency> {
        crate::routing::Dependency::of(self.source.as_ref())
    }
}

/// The LLM config an agent receives (contract §3 `llm_config.config`).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfig {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API key (only ever sent to the agent itself, sealed on the bus).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Models the key reaches (realm routing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Max tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

crate::redacted_debug!(LlmConfig { provider, model, base_url, allowed_models, system_prompt, max_tokens } secret { api_key });

/// The LiteLLM sync state of a model or a realm key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncStateKind {
    /// LiteLLM matches our state.
    Synced,
    /// A change waits to be applied to LiteLLM.
    Pending,
    /// LiteLLM is not configured.
    Skipped,
    /// The last attempt failed; it is being retried.
    Error,
}

/// `litellm: {state, lastError, syncedAt}` of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncView {
    /// State.
    pub state: SyncStateKind,
    /// Last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When LiteLLM last matched.
    pub synced_at: Option<String>,
}

/// What the sync worker last recorded for an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// The generation the record speaks of.
    pub gen: u64,
    /// `synced`, `skipped` or `error` for that generation.
    pub state: Option<SyncStateKind>,
    /// Failure message (no secrets).
    pub last_error: Option<String>,
    /// When the entity was last in sync (any generation).
    pub synced_at: Option<String>,
}

impl SyncRecord {
    /// The view for an entity whose desired generation is `gen`.
    pub fn view(&self, gen: u64) -> SyncView {
        let state = match self.state {
            Some(s) if self.gen >= gen => s,
            Some(SyncStateKind::Error) => SyncStateKind::Error,
            Some(SyncStateKind::Skipped) => SyncStateKind::Skipped,
            _ => SyncStateKind::Pending,
        };
        let last_error = if state == SyncStateKind::Error {
            self.last_error.clone()
        } else {
            None
        };
        SyncView {
            state,
            last_error,
            synced_at: self.synced_at.clone(),
        }
    }
}

/// `Model` of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// Registry id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Provider.
    pub provider: Provider,
    /// Upstream model identifier.
    pub model_id: String,
    /// Upstream endpoint.
    pub base_url: Option<String>,
    /// Whether an upstream key is stored (the key itself is write-only).
    pub has_api_key: bool,
    /// Name in LiteLLM.
    pub litellm_model_name: String,
    /// Price of an input (prompt) token in USD that LiteLLM charges; `null`: LiteLLM's own price for
    /// the model, if it knows one.
    #[serde(default)]
    pub input_cost_per_token: Option<f64>,
    /// Price of an output (completion) token in USD that LiteLLM charges; `null`: LiteLLM's own price.
    #[serde(default)]
    pub output_cost_per_token: Option<f64>,
    /// Status.
    pub status: ModelStatus,
    /// Number of realms the model is granted to.
    pub realm_count: usize,
    /// LiteLLM sync.
    pub litellm: SyncView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A grant as listed on a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRealmView {
    /// Realm id.
    pub realm_id: String,
    /// Realm name.
    pub realm_name: String,
    /// RFC 3339.
    pub granted_at: String,
}

/// `routerKey` of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterKeyView {
    /// Whether the realm holds a virtual key.
    pub has_virtual_key: bool,
    /// At most the first 8 characters of the key.
    pub key_prefix: Option<String>,
    /// LiteLLM names of the active granted models.
    pub allowed_models: Vec<String>,
    /// Monthly budget.
    pub monthly_budget_usd: Option<f64>,
    /// LiteLLM sync of the key.
    pub litellm: SyncView,
    /// RFC 3339.
    pub updated_at: String,
    /// Key rotation: `stable`, `pending` (a new key is being created) or `retiring` (members have the
    /// new key; replaced keys work until retired). Absent from results stored before rotation existed.
    #[serde(default)]
    pub rotation: RotationView,
    /// The realm's request limits (also on its LiteLLM team).
    #[serde(default)]
    pub limits: RealmLimits,
    /// Set while the control plane blocks the key because LiteLLM reported the budget spent.
    #[serde(default)]
    pub budget_guard: Option<BudgetGuard>,
}

/// `Realm` of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmView {
    /// Realm id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Free text.
    pub description: Option<String>,
    /// Colour.
    pub color: String,
    /// Member agents.
    pub agent_count: usize,
    /// Granted models (active or not).
    pub model_count: usize,
    /// The realm's key, or null when none was minted.
    pub router_key: Option<RouterKeyView>,
    /// Request limits (applied to the key once there is one).
    #[serde(default)]
    pub limits: RealmLimits,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// An agent's realm as listed on the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRealmView {
    /// Realm id.
    pub realm_id: String,
    /// Realm name.
    pub realm_name: String,
    /// Primary realm.
    pub is_primary: bool,
}

/// `Agent` of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// DID.
    pub did: String,
    /// Name.
    pub name: String,
    /// Realms, primary first then by name.
    pub realms: Vec<AgentRealmView>,
    /// Connected to an edge now.
    pub online: bool,
    /// The edge holding its session.
    pub edge_id: Option<String>,
    /// Last heartbeat or connect (RFC 3339).
    pub last_seen: Option<String>,
    /// Current config version.
    pub config_version: u64,
    /// Last version the agent acknowledged.
    pub acked_version: Option<u64>,
    /// What the agent reports it uses (heartbeat `activeLlm`).
    #[schema(value_type = Option<Object>)]
    pub active_llm: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
}

/// An agent's config as the API shows it (no secret): `config` + `apiKeySet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafeLlmConfig {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Whether the config carries an API key.
    pub api_key_set: bool,
    /// Models the key reaches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Max tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl From<&LlmConfig> for SafeLlmConfig {
    fn from(c: &LlmConfig) -> Self {
        SafeLlmConfig {
            provider: c.provider.clone(),
            model: c.model.clone(),
            base_url: c.base_url.clone(),
            api_key_set: c.api_key.as_deref().is_some_and(|k| !k.is_empty()),
            allowed_models: c.allowed_models.clone(),
            system_prompt: c.system_prompt.clone(),
            max_tokens: c.max_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_order_by_name_case_insensitively_then_id() {
        let m = |id: &str, name: &str| StoredModel {
            id: id.into(),
            name: name.into(),
            description: None,
            provider: Provider::OpenAi,
            model_id: "x".into(),
            base_url: None,
            api_key_sealed: None,
            litellm_model_name: format!("openai/{id}"),
            status: ModelStatus::Active,
            created_at: String::new(),
            updated_at: String::new(),
            gen: 1,
            input_cost_per_token: None,
            output_cost_per_token: None,
        };
        let mut v = [
            m("b", "beta"),
            m("c", "Alpha"),
            m("a", "ALPHA"),
            m("d", "alpha 2"),
        ];
        v.sort_by(model_order);
        let ids: Vec<&str> = v.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d", "b"]);
    }

    /// A model stored before prices existed reads with none, and one without prices is stored as before.
    #[test]
    fn model_records_without_prices() {
        let old = serde_json::json!({
            "id": "m1", "name": "Llama", "description": null, "provider": "ollama",
            "modelId": "llama3", "baseUrl": "http://ollama:11434", "apiKeySealed": null,
            "litellmModelName": "ollama/llama", "status": "active",
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
            "gen": 3,
        });
        let m: StoredModel = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(m.input_cost_per_token, None);
        assert_eq!(m.output_cost_per_token, None);
        assert_eq!(serde_json::to_value(&m).unwrap(), old);
        let priced = StoredModel {
            input_cost_per_token: Some(1e-6),
            output_cost_per_token: Some(0.0),
            ..m
        };
        let v = serde_json::to_value(&priced).unwrap();
        assert_eq!(v["inputCostPerToken"], 1e-6);
        assert_eq!(v["outputCostPerToken"], 0.0);
        assert_eq!(serde_json::from_value::<StoredModel>(v).unwrap(), priced);
    }

    proptest::proptest! {
        #[test]
        fn the_ascii_name_order_is_the_unicode_one(a in "[ -~]{0,12}", b in "[ -~]{0,12}", c in "\\PC{0,6}") {
            let unicode = |x: &str, y: &str| {
                x.chars().flat_map(char::to_lowercase).cmp(y.chars().flat_map(char::to_lowercase))
            };
            proptest::prop_assert_eq!(name_order(&a, &b), unicode(&a, &b));
            let (ac, bc) = (format!("{a}{c}"), format!("{b}{c}"));
            proptest::prop_assert_eq!(name_order(&ac, &bc), unicode(&ac, &bc));
            proptest::prop_assert_eq!(name_order(&a, &bc), unicode(&a, &bc));
        }
    }

    #[test]
    fn slug_rule() {
        assert_eq!(slug("Llama 3 (local)"), "llama-3-local");
        assert_eq!(slug("  GPT-4o  "), "gpt-4o");
        assert_eq!(slug("ft--test__model"), "ft-test-model");
        assert_eq!(slug("Çafé"), "af");
        assert_eq!(slug("!!!"), "");
        assert_eq!(
            litellm_model_name(Provider::OpenAiCompatible, "Llama 3 (local)"),
            "openai-compatible/llama-3-local"
        );
    }

    #[test]
    fn upstream_prefixes() {
        assert_eq!(
            Provider::Google.litellm_upstream("gemini-1.5"),
            "gemini/gemini-1.5"
        );
        assert_eq!(
            Provider::Ollama.litellm_upstream("llama3"),
            "ollama_chat/llama3"
        );
        assert_eq!(Provider::OpenAiCompatible.litellm_upstream("x"), "openai/x");
    }

    #[test]
    fn sync_view_by_generation() {
        let r = SyncRecord {
            gen: 2,
            state: Some(SyncStateKind::Synced),
            last_error: None,
            synced_at: Some("t".into()),
        };
        assert_eq!(r.view(2).state, SyncStateKind::Synced);
        assert_eq!(r.view(3).state, SyncStateKind::Pending);
        let e = SyncRecord {
            gen: 2,
            state: Some(SyncStateKind::Error),
            last_error: Some("boom".into()),
            synced_at: None,
        };
        assert_eq!(e.view(3).state, SyncStateKind::Error);
        assert_eq!(e.view(3).last_error.as_deref(), Some("boom"));
    }
}
