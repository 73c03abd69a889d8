//! Building the contract's JSON views from stored records.
//!
//! The pure builders take every piece they need, so the worker can build a command's result from its
//! in-memory state before commit; the `load_*` functions read the pieces from the store.

use std::borrow::Borrow;

use crate::crypto::Sealer;
use crate::domain::{
    AgentRealmView, AgentView, LlmConfig, Membership, ModelStatus, ModelView, RealmView,
    RouterKeyView, SafeLlmConfig, StoredAgent, StoredModel, StoredRealm, SyncRecord,
};
use crate::store::{Store, StoreError};
use crate::wire::ConfigState;

/// `Model` from its record, grant count and sync record.
pub fn model_view(m: &StoredModel, realm_count: usize, sync: &SyncRecord) -> ModelView {
    ModelView {
        id: m.id.clone(),
        name: m.name.clone(),
        description: m.description.clone(),
        provider: m.provider,
        model_id: m.model_id.clone(),
        base_url: m.base_url.clone(),
        has_api_key: m.api_key_sealed.is_some(),
        litellm_model_name: m.litellm_model_name.clone(),
        input_cost_per_token: m.input_cost_per_token,
        output_cost_per_token: m.output_cost_per_token,
        status: m.status,
        realm_count,
        litellm: sync.view(m.gen),
        created_at: m.created_at.clone(),
        updated_at: m.updated_at.clone(),
    }
}

/// LiteLLM names of the active models among `granted`, sorted by model name (the realm key's list).
pub fn allowed_models<M: Borrow<StoredModel>>(granted: &[M]) -> Vec<String> {
    let mut active: Vec<&StoredModel> = granted
        .iter()
        .map(Borrow::borrow)
        .filter(|m| m.status == ModelStatus::Active)
        .collect();
    active.sort_by(|a, b| crate::domain::model_order(a, b));
    active
        .iter()
        .map(|m| m.litellm_model_name.clone())
        .collect()
}

/// `routerKey` of a realm.
pub fn router_key_view<M: Borrow<StoredModel>>(
    r: &StoredRealm,
    granted: &[M],
    sync: &SyncRecord,
) -> Option<RouterKeyView> {
    let k = r.key.as_ref()?;
    Some(RouterKeyView {
        has_virtual_key: true,
        key_prefix: Some(k.key_prefix.chars().take(8).collect()),
        allowed_models: allowed_models(granted),
        monthly_budget_usd: k.monthly_budget_usd,
        litellm: sync.view(r.gen),
        updated_at: k.updated_at.clone(),
        rotation: k.rotation.view(),
        limits: r.limits,
        budget_guard: k.guard.clone(),
    })
}

/// `GET /api/realms/{id}/spend` of a realm, from its last spend reading.
pub fn spend_view(
    r: &StoredRealm,
    spend: Option<&crate::budget::RealmSpend>,
) -> crate::budget::SpendView {
    let key = r.key.as_ref();
    crate::budget::SpendView::new(
        spend,
        key.and_then(|k| k.monthly_budget_usd),
        &key.map(|k| k.alerts.clone()).unwrap_or_default(),
        key.and_then(|k| k.guard.as_ref()),
    )
}

/// `Realm` of the contract.
pub fn realm_view<M: Borrow<StoredModel>>(
    r: &StoredRealm,
    agent_count: usize,
    granted: &[M],
    sync: &SyncRecord,
) -> RealmView {
    RealmView {
        id: r.id.clone(),
        name: r.name.clone(),
        slug: r.slug.clone(),
        description: r.description.clone(),
        color: r.color.clone(),
        agent_count,
        model_count: granted.len(),
        router_key: router_key_view(r, granted, sync),
        limits: r.limits,
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
    }
}

/// Reads a model's view.
pub async fn load_model_view(store: &Store, m: &StoredModel) -> Result<ModelView, StoreError> {
    let count = store.model_grant_count(&m.id).await?;
    let sync = store.sync_model(&m.id).await?;
    Ok(model_view(m, count, &sync))
}

/// Reads the models granted to a realm.
pub async fn load_realm_models(
    store: &Store,
    realm_id: &str,
) -> Result<Vec<StoredModel>, StoreError> {
    let ids: Vec<String> = store
        .realm_grants(realm_id)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    store.models_by_id(&ids).await
}

/// Reads a realm's view.
pub async fn load_realm_view(store: &Store, r: &StoredRealm) -> Result<RealmView, StoreError> {
    let granted = load_realm_models(store, &r.id).await?;
    let members = store.realm_member_count(&r.id).await?;
    let sync = store.sync_realm(&r.id).await?;
    Ok(realm_view(r, members, &granted, &sync))
}

/// An agent's presence as its record (`presence:{<did>}`) holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceView {
    /// Connected to an edge now.
    pub online: bool,
    /// The edge holding its session (while online).
    pub edge_id: Option<String>,
    /// Last heartbeat, connect or disconnect (RFC 3339).
    pub last_seen: Option<String>,
    /// What the agent reports it uses (heartbeat `activeLlm`).
    pub active_llm: Option<serde_json::Value>,
    /// Rank of the session that wrote it (increasing per agent).
    pub since: i64,
}

impl PresenceView {
    /// From the record's fields (`HGETALL`; none when there is no record).
    pub fn from_fields(fields: &[(String, String)]) -> Self {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let online = field("online").as_deref() == Some("1");
        PresenceView {
            online,
            edge_id: if online { field("edgeId") } else { None },
            last_seen: field("lastSeen"),
            active_llm: field("activeLlm").and_then(|s| serde_json::from_str(&s).ok()),
            since: field("since").and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }
}

/// `Agent` of the contract from its record, its memberships of realms that exist (with the realm's
/// name), its presence, config version and acked version. Realms are listed primary first, then by name.
pub fn agent_view<'a>(
    a: &StoredAgent,
    realms: impl IntoIterator<Item = (&'a Membership, &'a str)>,
    presence: Option<&PresenceView>,
    config_version: u64,
    acked_version: Option<u64>,
) -> AgentView {
    let mut views: Vec<AgentRealmView> = realms
        .into_iter()
        .map(|(m, name)| AgentRealmView {
            realm_id: m.realm_id.clone(),
            realm_name: name.to_string(),
            is_primary: m.is_primary,
        })
        .collect();
    views.sort_by(|a, b| {
        b.is_primary.cmp(&a.is_primary).then(
            a.realm_name
                .to_lowercase()
                .cmp(&b.realm_name.to_lowercase()),
        )
    });
    let online = presence.is_some_and(|p| p.online);
    AgentView {
        did: a.did.clone(),
        name: a.name.clone(),
        realms: views,
        online,
        edge_id: presence.filter(|_| online).and_then(|p| p.edge_id.clone()),
        last_seen: presence.and_then(|p| p.last_seen.clone()),
        config_version,
        acked_version,
        active_llm: presence.and_then(|p| p.active_llm.clone()),
        created_at: a.created_at.clone(),
    }
}

/// Reads an agent's view (memberships, presence, ack).
pub async fn load_agent_view(store: &Store, a: &StoredAgent) -> Result<AgentView, StoreError> {
    let memberships = store.agent_realms(&a.did).await?;
    let realm_ids: Vec<String> = memberships.iter().map(|m| m.realm_id.clone()).collect();
    let realms = store.realms_by_id(&realm_ids).await?;
    // A membership of a deleted realm is left behind by the (constant-time) realm delete: not shown.
    let named = memberships.iter().filter_map(|m| {
        let realm = realms.iter().find(|r| r.id == m.realm_id)?;
        Some((m, realm.name.as_str()))
    });
    let presence = PresenceView::from_fields(&store.presence(&a.did).await?);
    let version = store.effective_state(a).await?.version;
    let acked = store.acked_version(&a.did).await?;
    Ok(agent_view(a, named, Some(&presence), version, acked))
}

/// The safe (keyless) view of an effective config.
pub fn safe_config(state: &ConfigState) -> Option<SafeLlmConfig> {
    let c = state.config.as_ref()?;
    Some(SafeLlmConfig {
        provider: c.provider.clone(),
        model: c.model.clone(),
        base_url: c.base_url.clone(),
        api_key_set: c.api_key_sealed.is_some(),
        allowed_models: c.allowed_models.clone(),
        system_prompt: c.system_prompt.clone(),
        max_tokens: c.max_tokens,
    })
}

/// Opens the effective config of agent `did`, key included (only for sending it to that agent).
pub fn open_config(
    sealer: &Sealer,
    did: &str,
    state: &ConfigState,
) -> Result<Option<LlmConfig>, crate::crypto::CryptoError> {
    state.open(sealer, did)
}
