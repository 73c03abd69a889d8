//! Applying one command: read the catalog, compute the writes, the result and the side effects.
//!
//! Nothing here writes: [`apply`] returns the writes as [`Op`]s, which the consumer commits atomically
//! together with the command's record (see `vc_shared::store::Store::commit`). A redelivered command
//! whose record is complete is never applied again; its stored effects are re-emitted instead.
//!
//! Every agent whose resolved config changes gets the same new version `V` (one counter for all
//! agents), and its resolved config is written, sealed, into its record: edges send it as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vc_shared::command::{
    Command, LlmConfigForm, ModelRegister, ModelUpdate, RealmCreate, RealmUpdate, SecretInput,
};
use vc_shared::config::LitellmSettings;
use vc_shared::crypto::{generate_virtual_key, key_prefix, Purpose, Sealer};
use vc_shared::domain::{
    litellm_model_name, now_rfc3339, ConfigSource, LlmConfig, Membership, ModelStatus,
    RealmKeyRecord, StoredAgent, StoredModel, StoredRealm, SyncRecord, DEFAULT_REALM_COLOR,
};
use vc_shared::error::DomainError;
use vc_shared::store::{keys, Op, Store, StoreError};
use vc_shared::views;
use vc_shared::wire::{ConfigState, Event, SealedLlmConfig};

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

/// Side effects of an applied command, re-emitted on redelivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effects {
    /// Models whose LiteLLM deployment must be synced.
    pub sync_models: BTreeSet<String>,
    /// Realms whose LiteLLM key must be synced.
    pub sync_realms: BTreeSet<String>,
    /// Realm broadcasts: realm id → agents whose state changed through it.
    pub realm_pushes: BTreeMap<String, BTreeSet<String>>,
    /// Agents whose state changed on their own.
    pub agent_pushes: BTreeSet<String>,
    /// Agents deleted (their sessions close).
    pub deleted_agents: BTreeSet<String>,
    /// Domain events.
    pub events: Vec<Event>,
}

/// The outcome of applying one command.
pub struct Applied {
    /// Catalog revision the reads were made at.
    pub rev: u64,
    /// Writes (empty when refused).
    pub ops: Vec<Op>,
    /// Result (`Ok(None)` for 204) or domain refusal.
    pub result: Result<Option<Value>, DomainError>,
    /// Side effects.
    pub effects: Effects,
}

/// What applying needs.
pub struct Ctx<'a> {
    /// Store.
    pub store: &'a Store,
    /// Sealer.
    pub sealer: &'a Sealer,
    /// LiteLLM settings, when configured.
    pub litellm: Option<&'a LitellmSettings>,
    /// Command id.
    pub command_id: &'a str,
    /// Who issued it.
    pub actor: &'a str,
}

struct Tx<'a> {
    ctx: &'a Ctx<'a>,
    now: String,
    version_seq: u64,
    version: Option<u64>,
    models: HashMap<String, Option<StoredModel>>,
    realms: HashMap<String, Option<StoredRealm>>,
    grants: HashMap<String, BTreeMap<String, String>>,
    agents: HashMap<String, Option<StoredAgent>>,
    /// Configs sealed by this command, by their JSON: agents given the same config get the same sealed
    /// value (one seal, one nonce, reused only for that same plaintext), so their states are equal and
    /// a realm push groups them into one state, which edges encode once. Sealing each agent's copy
    /// afresh made every state distinct: a realm push carried one group per agent and, beyond ~1,900
    /// agents, exceeded NATS' 1 MiB payload limit.
    sealed: HashMap<String, SealedLlmConfig>,
    ops: Vec<Op>,
    effects: Effects,
}

type R<T> = Result<Result<T, DomainError>, ApplyError>;

macro_rules! refuse {
    ($e:expr) => {
        return Ok(Err($e))
    };
}

impl<'a> Tx<'a> {
    async fn model(&mut self, id: &str) -> Result<Option<StoredModel>, ApplyError> {
        if !self.models.contains_key(id) {
            let m = self.ctx.store.model(id).await?;
            self.models.insert(id.to_string(), m);
        }
        Ok(self.models.get(id).cloned().flatten())
    }

    fn put_model(&mut self, m: StoredModel) {
        self.ops.push(Op::set_json(keys::model(&m.id), &m));
        self.models.insert(m.id.clone(), Some(m));
    }

    async fn realm(&mut self, id: &str) -> Result<Option<StoredRealm>, ApplyError> {
        if !self.realms.contains_key(id) {
            let r = self.ctx.store.realm(id).await?;
            self.realms.insert(id.to_string(), r);
        }
        Ok(self.realms.get(id).cloned().flatten())
    }

    fn put_realm(&mut self, r: StoredRealm) {
        self.ops.push(Op::set_json(keys::realm(&r.id), &r));
        self.realms.insert(r.id.clone(), Some(r));
    }

    async fn grants(&mut self, realm_id: &str) -> Result<BTreeMap<String, String>, ApplyError> {
        if !self.grants.contains_key(realm_id) {
            let g = self
                .ctx
                .store
                .realm_grants(realm_id)
                .await?
                .into_iter()
                .collect();
            self.grants.insert(realm_id.to_string(), g);
        }
        Ok(self.grants.get(realm_id).cloned().unwrap_or_default())
    }

    async fn grant_add(
        &mut self,
        realm_id: &str,
        model_id: &str,
        at: &str,
    ) -> Result<(), ApplyError> {
        self.grants(realm_id).await?;
        self.grants
            .entry(realm_id.to_string())
            .or_default()
            .insert(model_id.to_string(), at.to_string());
        self.ops.push(Op::Hset {
            key: keys::realm_grants(realm_id),
            field: model_id.into(),
            value: at.into(),
        });
        self.ops.push(Op::Hset {
            key: keys::model_grants(model_id),
            field: realm_id.into(),
            value: at.into(),
        });
        Ok(())
    }

    async fn grant_remove(&mut self, realm_id: &str, model_id: &str) -> Result<(), ApplyError> {
        self.grants(realm_id).await?;
        self.grants
            .entry(realm_id.to_string())
            .or_default()
            .remove(model_id);
        self.ops.push(Op::Hdel {
            key: keys::realm_grants(realm_id),
            field: model_id.into(),
        });
        self.ops.push(Op::Hdel {
            key: keys::model_grants(model_id),
            field: realm_id.into(),
        });
        Ok(())
    }

    /// Models granted to a realm (active or not).
    async fn granted_models(&mut self, realm_id: &str) -> Result<Vec<StoredModel>, ApplyError> {
        let ids: Vec<String> = self.grants(realm_id).await?.into_keys().collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(m) = self.model(&id).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Active granted models, sorted by name (the realm key's list, in order).
    async fn active_models(&mut self, realm_id: &str) -> Result<Vec<StoredModel>, ApplyError> {
        let mut v: Vec<StoredModel> = self
            .granted_models(realm_id)
            .await?
            .into_iter()
            .filter(|m| m.status == ModelStatus::Active)
            .collect();
        v.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(v)
    }

    async fn agent(&mut self, did: &str) -> Result<Option<StoredAgent>, ApplyError> {
        if !self.agents.contains_key(did) {
            let a = self.ctx.store.agent(did).await?;
            self.agents.insert(did.to_string(), a);
        }
        Ok(self.agents.get(did).cloned().flatten())
    }

    fn put_agent(&mut self, a: StoredAgent) {
        self.ops.push(Op::set_json(keys::agent(&a.did), &a));
        self.agents.insert(a.did.clone(), Some(a));
    }

    fn next_version(&mut self) -> u64 {
        if let Some(v) = self.version {
            return v;
        }
        let v = self.version_seq + 1;
        self.version = Some(v);
        self.ops.push(Op::Set {
            key: keys::VERSION_SEQ.into(),
            value: v.to_string(),
        });
        v
    }

    fn event(&mut self, kind: &str, subject: String, details: Value) {
        let ev = Event {
            id: format!("{}#{}", self.ctx.command_id, self.effects.events.len()),
            at: self.now.clone(),
            actor: self.ctx.actor.to_string(),
            kind: kind.to_string(),
            subject,
            details,
        };
        self.ops.push(Op::Xadd {
            key: keys::AUDIT.into(),
            value: serde_json::to_string(&ev).unwrap_or_default(),
        });
        self.effects.events.push(ev);
    }

    /// Resolves a config source against the state of this transaction. Realm routing whose model is no
    /// longer an active grant falls back to the realm's first active model (the source is updated);
    /// with none left the config is `null`.
    async fn resolve(
        &mut self,
        source: &ConfigSource,
    ) -> Result<(ConfigSource, Option<LlmConfig>), ApplyError> {
        match source {
            ConfigSource::Realm { realm_id, model_id } => {
                let Some(realm) = self.realm(realm_id).await? else {
                    return Ok((source.clone(), None));
                };
                let Some(key) = realm.key.as_ref() else {
                    return Ok((source.clone(), None));
                };
                let active = self.active_models(realm_id).await?;
                let Some(chosen) = active.iter().find(|m| &m.id == model_id).or(active.first())
                else {
                    return Ok((source.clone(), None));
                };
                let Some(public_url) = self.ctx.litellm.map(|l| l.public_url.clone()) else {
                    return Ok((source.clone(), None));
                };
                let api_key = self.ctx.sealer.open(Purpose::RealmKey, &key.key_sealed)?;
                let cfg = LlmConfig {
                    provider: "openai-compatible".into(),
                    model: chosen.litellm_model_name.clone(),
                    base_url: Some(public_url),
                    api_key: Some(api_key),
                    allowed_models: Some(
                        active
                            .iter()
                            .map(|m| m.litellm_model_name.clone())
                            .collect(),
                    ),
                    system_prompt: None,
                    max_tokens: None,
                };
                Ok((
                    ConfigSource::Realm {
                        realm_id: realm_id.clone(),
                        model_id: chosen.id.clone(),
                    },
                    Some(cfg),
                ))
            }
            ConfigSource::Registry { model_id } => {
                let Some(m) = self.model(model_id).await? else {
                    return Ok((source.clone(), None));
                };
                if m.status != ModelStatus::Active {
                    return Ok((source.clone(), None));
                }
                let api_key = m
                    .api_key_sealed
                    .as_deref()
                    .map(|k| self.ctx.sealer.open(Purpose::ModelApiKey, k))
                    .transpose()?;
                Ok((
                    source.clone(),
                    Some(LlmConfig {
                        provider: m.provider.as_str().into(),
                        model: m.model_id.clone(),
                        base_url: m.base_url.clone(),
                        api_key,
                        allowed_models: None,
                        system_prompt: None,
                        max_tokens: None,
                    }),
                ))
            }
            ConfigSource::Manual {
                provider,
                model,
                api_key_sealed,
                base_url,
                system_prompt,
                max_tokens,
            } => {
                let api_key = api_key_sealed
                    .as_deref()
                    .map(|k| self.ctx.sealer.open(Purpose::AgentConfigKey, k))
                    .transpose()?;
                Ok((
                    source.clone(),
                    Some(LlmConfig {
                        provider: provider.as_str().into(),
                        model: model.clone(),
                        base_url: base_url.clone(),
                        api_key,
                        allowed_models: None,
                        system_prompt: system_prompt.clone(),
                        max_tokens: *max_tokens,
                    }),
                ))
            }
        }
    }

    /// Gives an agent a new source (or re-resolves its current one), a new version, and updates the
    /// routing indexes. Returns the agent as written.
    async fn set_source(
        &mut self,
        did: &str,
        source: Option<ConfigSource>,
    ) -> Result<Option<StoredAgent>, ApplyError> {
        let Some(mut agent) = self.agent(did).await? else {
            return Ok(None);
        };
        let (source, config) = match source {
            None => (None, None),
            Some(s) => {
                let (s, c) = self.resolve(&s).await?;
                (Some(s), c)
            }
        };
        self.unindex(&agent);
        agent.source = source;
        self.index(&agent);
        let version = self.next_version();
        let sealed = match &config {
            None => None,
            Some(c) => {
                let plain = serde_json::to_string(c).unwrap_or_default();
                match self.sealed.get(&plain) {
                    Some(s) => Some(s.clone()),
                    None => {
                        let s = SealedLlmConfig::seal(self.ctx.sealer, c)?;
                        self.sealed.insert(plain, s.clone());
                        Some(s)
                    }
                }
            }
        };
        let realm_id = match &agent.source {
            Some(ConfigSource::Realm { realm_id, .. }) => Some(realm_id.clone()),
            _ => None,
        };
        agent.state = ConfigState {
            config: sealed,
            version,
            mode: agent.source.as_ref().map(|s| s.mode()),
            realm_id,
        };
        self.put_agent(agent.clone());
        self.event(
            "agent.config.pushed",
            format!("agent:{did}"),
            json!({"version": version, "mode": agent.state.mode, "realmId": agent.state.realm_id,
                   "model": agent.state.config.as_ref().map(|c| c.model.clone())}),
        );
        Ok(Some(agent))
    }

    fn unindex(&mut self, a: &StoredAgent) {
        match &a.source {
            Some(ConfigSource::Realm { realm_id, model_id }) => {
                self.ops.push(Op::Srem {
                    key: keys::realm_routed(realm_id),
                    member: a.did.clone(),
                });
                self.ops.push(Op::Srem {
                    key: keys::model_routed(model_id),
                    member: a.did.clone(),
                });
            }
            Some(ConfigSource::Registry { model_id }) => {
                self.ops.push(Op::Srem {
                    key: keys::model_routed(model_id),
                    member: a.did.clone(),
                });
            }
            _ => {}
        }
    }

    fn index(&mut self, a: &StoredAgent) {
        match &a.source {
            Some(ConfigSource::Realm { realm_id, model_id }) => {
                self.ops.push(Op::Sadd {
                    key: keys::realm_routed(realm_id),
                    member: a.did.clone(),
                });
                self.ops.push(Op::Sadd {
                    key: keys::model_routed(model_id),
                    member: a.did.clone(),
                });
            }
            Some(ConfigSource::Registry { model_id }) => {
                self.ops.push(Op::Sadd {
                    key: keys::model_routed(model_id),
                    member: a.did.clone(),
                });
            }
            _ => {}
        }
    }

    /// Every agent routed through the realm gets a new version (its key, models or budget changed).
    async fn refresh_realm_agents(&mut self, realm_id: &str) -> Result<(), ApplyError> {
        for did in self.ctx.store.realm_routed(realm_id).await? {
            let Some(agent) = self.agent(&did).await? else {
                continue;
            };
            let still_routed = matches!(&agent.source, Some(ConfigSource::Realm { realm_id: r, .. }) if r == realm_id);
            if !still_routed {
                continue;
            }
            self.set_source(&did, agent.source.clone()).await?;
            self.effects
                .realm_pushes
                .entry(realm_id.to_string())
                .or_default()
                .insert(did);
        }
        Ok(())
    }

    /// The realm just got its key: members without any config (they joined before its first grant,
    /// or before LiteLLM was configured) are configured as a join would have done (realm routing,
    /// first active model by name). Agents with a config, explicit or not, are left alone.
    async fn configure_waiting_members(&mut self, realm_id: &str) -> Result<(), ApplyError> {
        let Some(first) = self.active_models(realm_id).await?.first().cloned() else {
            return Ok(());
        };
        for m in self.ctx.store.realm_members(realm_id).await? {
            self.configure_if_unconfigured(&m.agent_did, realm_id, &first.id)
                .await?;
        }
        Ok(())
    }

    /// Realm routing through `realm_id`'s model `model_id` for `did`, if it has no config at all (an
    /// explicit one is never overwritten), pushed on the agent's own subject: its edge holds no realm
    /// subscription for it yet. Whether it was configured.
    async fn configure_if_unconfigured(
        &mut self,
        did: &str,
        realm_id: &str,
        model_id: &str,
    ) -> Result<bool, ApplyError> {
        if self.agent(did).await?.is_none_or(|a| a.source.is_some()) {
            return Ok(false);
        }
        self.set_source(
            did,
            Some(ConfigSource::Realm {
                realm_id: realm_id.into(),
                model_id: model_id.into(),
            }),
        )
        .await?;
        self.effects.agent_pushes.insert(did.into());
        Ok(true)
    }

    /// The realm's key desired state changed: bump its generation and sync it.
    fn touch_realm_key(&mut self, realm: &mut StoredRealm) {
        realm.gen += 1;
        realm.updated_at = self.now.clone();
        if let Some(k) = realm.key.as_mut() {
            k.updated_at = self.now.clone();
        }
        self.effects.sync_realms.insert(realm.id.clone());
    }

    /// `realm.key.updated` for a realm that holds a key.
    fn key_event(&mut self, realm: &StoredRealm, details: Value) {
        if realm.key.is_some() {
            self.event("realm.key.updated", format!("realm:{}", realm.id), details);
        }
    }

    async fn realm_result(&mut self, realm: &StoredRealm) -> Result<Value, ApplyError> {
        let granted = self.granted_models(&realm.id).await?;
        let members = self.ctx.store.realm_members(&realm.id).await?.len();
        let sync = self.ctx.store.sync_realm(&realm.id).await?;
        Ok(json!({"realm": views::realm_view(realm, members, &granted, &sync)}))
    }

    async fn model_result(&mut self, m: &StoredModel) -> Result<Value, ApplyError> {
        let count = self.ctx.store.model_grant_count(&m.id).await?;
        let sync = self.ctx.store.sync_model(&m.id).await?;
        Ok(json!({"model": views::model_view(m, count, &sync)}))
    }

    fn open_input(&self, input: SecretInput) -> Result<Result<String, DomainError>, ApplyError> {
        Ok(match input {
            SecretInput::Clear(s) => Ok(s),
            SecretInput::Sealed(s) => match self.ctx.sealer.open(Purpose::Command, &s) {
                Ok(p) => Ok(p),
                Err(_) => Err(DomainError::bad_request(
                    "apiKeySealed could not be opened with this deployment's secret key",
                )),
            },
        })
    }

    // ---- models ----

    async fn model_register(&mut self, m: ModelRegister) -> R<Option<Value>> {
        let id =
            m.id.clone()
                .unwrap_or_else(|| vc_shared::command::derived_id(self.ctx.command_id));
        if self.model(&id).await?.is_some() {
            refuse!(DomainError::conflict(format!("model {id} already exists")));
        }
        let name = litellm_model_name(m.provider, &m.name);
        if let Some(other) = self.ctx.store.model_id_by_name(&name).await? {
            refuse!(DomainError::conflict(format!(
                "litellmModelName {name} is already used by model {other}"
            )));
        }
        let api_key_sealed = match m.api_key {
            None => None,
            Some(input) => match self.open_input(input)? {
                Ok(k) => Some(self.ctx.sealer.seal(Purpose::ModelApiKey, &k)?),
                Err(e) => refuse!(e),
            },
        };
        let model = StoredModel {
            id: id.clone(),
            name: m.name,
            description: m.description,
            provider: m.provider,
            model_id: m.model_id,
            base_url: m.base_url,
            api_key_sealed,
            litellm_model_name: name.clone(),
            status: ModelStatus::Active,
            created_at: self.now.clone(),
            updated_at: self.now.clone(),
            gen: 1,
        };
        self.put_model(model.clone());
        self.ops.push(Op::Sadd {
            key: keys::MODELS.into(),
            member: id.clone(),
        });
        self.ops.push(Op::Hset {
            key: keys::MODEL_NAMES.into(),
            field: name.clone(),
            value: id.clone(),
        });
        self.ops.push(Op::Del {
            key: keys::sync_model(&id),
        });
        self.effects.sync_models.insert(id.clone());
        self.event(
            "model.registered",
            format!("model:{id}"),
            json!({"name": model.name, "litellmModelName": name, "provider": model.provider}),
        );
        let count = 0;
        Ok(Ok(Some(
            json!({"model": views::model_view(&model, count, &SyncRecord::default())}),
        )))
    }

    async fn model_update(&mut self, u: ModelUpdate) -> R<Option<Value>> {
        let Some(mut m) = self.model(&u.id).await? else {
            refuse!(DomainError::not_found(format!("model {} not found", u.id)))
        };
        if let Some(p) = u.provider {
            if p != m.provider {
                refuse!(DomainError::bad_request(
                    "provider cannot be changed (it is part of litellmModelName)"
                ));
            }
        }
        let before = m.clone();
        if let Some(n) = u.name {
            m.name = n;
        }
        if let Some(d) = u.description {
            m.description = d;
        }
        if let Some(id) = u.model_id {
            m.model_id = id;
        }
        if let Some(b) = u.base_url {
            if b.is_none() && m.provider.requires_base_url() {
                refuse!(DomainError::bad_request(format!(
                    "baseUrl is required for provider {}",
                    m.provider.as_str()
                )));
            }
            m.base_url = b;
        }
        match u.api_key {
            None => {}
            Some(None) => m.api_key_sealed = None,
            Some(Some(input)) => match self.open_input(input)? {
                Ok(k) => m.api_key_sealed = Some(self.ctx.sealer.seal(Purpose::ModelApiKey, &k)?),
                Err(e) => refuse!(e),
            },
        }
        if let Some(s) = u.status {
            m.status = s;
        }
        let upstream_changed = before.model_id != m.model_id
            || before.base_url != m.base_url
            || before.api_key_sealed != m.api_key_sealed
            || before.status != m.status;
        if before == m {
            return Ok(Ok(Some(self.model_result(&m).await?)));
        }
        m.updated_at = self.now.clone();
        if upstream_changed {
            m.gen += 1;
            self.effects.sync_models.insert(m.id.clone());
        }
        self.put_model(m.clone());
        if before.status != m.status {
            // The model enters or leaves every granted realm's key.
            for (realm_id, _) in self.ctx.store.model_grants(&m.id).await? {
                if let Some(mut realm) = self.realm(&realm_id).await? {
                    self.touch_realm_key(&mut realm);
                    self.key_event(&realm, json!({"modelId": m.id, "modelStatus": m.status}));
                    self.put_realm(realm);
                    self.refresh_realm_agents(&realm_id).await?;
                }
            }
        }
        if upstream_changed {
            // Registry-mode agents talk to the upstream directly: they need the new details.
            for did in self.ctx.store.model_routed(&m.id).await? {
                if let Some(a) = self.agent(&did).await? {
                    if matches!(&a.source, Some(ConfigSource::Registry { model_id }) if model_id == &m.id)
                    {
                        self.set_source(&did, a.source.clone()).await?;
                        self.effects.agent_pushes.insert(did);
                    }
                }
            }
        }
        let mut changed = Vec::new();
        if before.name != m.name {
            changed.push("name");
        }
        if before.description != m.description {
            changed.push("description");
        }
        if before.model_id != m.model_id {
            changed.push("modelId");
        }
        if before.base_url != m.base_url {
            changed.push("baseUrl");
        }
        if before.api_key_sealed != m.api_key_sealed {
            changed.push("apiKey");
        }
        if before.status != m.status {
            changed.push("status");
        }
        self.event(
            "model.updated",
            format!("model:{}", m.id),
            json!({"changed": changed, "status": m.status}),
        );
        Ok(Ok(Some(self.model_result(&m).await?)))
    }

    async fn model_delete(&mut self, id: &str) -> R<Option<Value>> {
        let Some(m) = self.model(id).await? else {
            refuse!(DomainError::not_found(format!("model {id} not found")))
        };
        let routed = self.ctx.store.model_routed(id).await?;
        for (realm_id, _) in self.ctx.store.model_grants(id).await? {
            self.grant_remove(&realm_id, id).await?;
            if let Some(mut realm) = self.realm(&realm_id).await? {
                self.touch_realm_key(&mut realm);
                self.key_event(&realm, json!({"deletedModelId": id}));
                self.put_realm(realm);
                self.refresh_realm_agents(&realm_id).await?;
            }
        }
        // The model is gone: mark it so resolution sees it missing, then re-resolve registry agents.
        self.models.insert(id.to_string(), None);
        for did in routed {
            if let Some(a) = self.agent(&did).await? {
                if matches!(&a.source, Some(ConfigSource::Registry { model_id }) if model_id == id)
                {
                    self.set_source(&did, a.source.clone()).await?;
                    self.effects.agent_pushes.insert(did);
                }
            }
        }
        self.ops.push(Op::Del {
            key: keys::model(id),
        });
        self.ops.push(Op::Del {
            key: keys::model_grants(id),
        });
        self.ops.push(Op::Del {
            key: keys::model_routed(id),
        });
        self.ops.push(Op::Srem {
            key: keys::MODELS.into(),
            member: id.into(),
        });
        self.ops.push(Op::Hdel {
            key: keys::MODEL_NAMES.into(),
            field: m.litellm_model_name.clone(),
        });
        self.ops.push(Op::Del {
            key: keys::sync_model(id),
        });
        self.effects.sync_models.insert(id.to_string());
        self.event(
            "model.deleted",
            format!("model:{id}"),
            json!({"name": m.name, "litellmModelName": m.litellm_model_name}),
        );
        Ok(Ok(None))
    }

    // ---- realms ----

    async fn realm_create(&mut self, c: RealmCreate) -> R<Option<Value>> {
        let id =
            c.id.clone()
                .unwrap_or_else(|| vc_shared::command::derived_id(self.ctx.command_id));
        if self.realm(&id).await?.is_some() {
            refuse!(DomainError::conflict(format!("realm {id} already exists")));
        }
        if let Some(other) = self.ctx.store.realm_id_by_slug(&c.slug).await? {
            refuse!(DomainError::conflict(format!(
                "slug {} is already used by realm {other}",
                c.slug
            )));
        }
        let realm = StoredRealm {
            id: id.clone(),
            name: c.name,
            slug: c.slug.clone(),
            description: c.description,
            color: c.color.unwrap_or_else(|| DEFAULT_REALM_COLOR.into()),
            created_at: self.now.clone(),
            updated_at: self.now.clone(),
            key: None,
            gen: 0,
        };
        self.put_realm(realm.clone());
        self.ops.push(Op::Sadd {
            key: keys::REALMS.into(),
            member: id.clone(),
        });
        self.ops.push(Op::Hset {
            key: keys::REALM_SLUGS.into(),
            field: c.slug,
            value: id.clone(),
        });
        self.event(
            "realm.created",
            format!("realm:{id}"),
            json!({"name": realm.name, "slug": realm.slug}),
        );
        Ok(Ok(Some(self.realm_result(&realm).await?)))
    }

    async fn realm_update(&mut self, u: RealmUpdate) -> R<Option<Value>> {
        let Some(mut realm) = self.realm(&u.realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {} not found",
                u.realm_id
            )))
        };
        let before = realm.clone();
        if let Some(slug) = u.slug {
            if slug != realm.slug {
                if let Some(other) = self.ctx.store.realm_id_by_slug(&slug).await? {
                    refuse!(DomainError::conflict(format!(
                        "slug {slug} is already used by realm {other}"
                    )));
                }
                self.ops.push(Op::Hdel {
                    key: keys::REALM_SLUGS.into(),
                    field: realm.slug.clone(),
                });
                self.ops.push(Op::Hset {
                    key: keys::REALM_SLUGS.into(),
                    field: slug.clone(),
                    value: realm.id.clone(),
                });
                realm.slug = slug;
            }
        }
        if let Some(n) = u.name {
            realm.name = n;
        }
        if let Some(d) = u.description {
            realm.description = d;
        }
        if let Some(c) = u.color {
            realm.color = c;
        }
        if realm != before {
            realm.updated_at = self.now.clone();
            if realm.name != before.name && realm.key.is_some() {
                // The key's metadata names the realm.
                realm.gen += 1;
                self.effects.sync_realms.insert(realm.id.clone());
            }
            self.put_realm(realm.clone());
            self.event(
                "realm.updated",
                format!("realm:{}", realm.id),
                json!({"name": realm.name, "slug": realm.slug}),
            );
        }
        Ok(Ok(Some(self.realm_result(&realm).await?)))
    }

    async fn realm_delete(&mut self, realm_id: &str) -> R<Option<Value>> {
        let Some(realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        // Agents routed through the realm lose their config.
        for did in self.ctx.store.realm_routed(realm_id).await? {
            if let Some(a) = self.agent(&did).await? {
                if matches!(&a.source, Some(ConfigSource::Realm { realm_id: r, .. }) if r == realm_id)
                {
                    self.set_source(&did, None).await?;
                    self.effects
                        .realm_pushes
                        .entry(realm_id.to_string())
                        .or_default()
                        .insert(did);
                }
            }
        }
        for (model_id, _) in self.grants(realm_id).await? {
            self.ops.push(Op::Hdel {
                key: keys::model_grants(&model_id),
                field: realm_id.into(),
            });
        }
        for m in self.ctx.store.realm_members(realm_id).await? {
            self.ops.push(Op::Hdel {
                key: keys::agent_realms(&m.agent_did),
                field: realm_id.into(),
            });
        }
        for k in [
            keys::realm(realm_id),
            keys::realm_grants(realm_id),
            keys::realm_members(realm_id),
            keys::realm_routed(realm_id),
            keys::sync_realm(realm_id),
        ] {
            self.ops.push(Op::Del { key: k });
        }
        self.ops.push(Op::Srem {
            key: keys::REALMS.into(),
            member: realm_id.into(),
        });
        self.ops.push(Op::Hdel {
            key: keys::REALM_SLUGS.into(),
            field: realm.slug.clone(),
        });
        self.realms.insert(realm_id.to_string(), None);
        if realm.key.is_some() {
            self.effects.sync_realms.insert(realm_id.to_string());
            self.event(
                "realm.key.deleted",
                format!("realm:{realm_id}"),
                json!({"keyPrefix": realm.key.as_ref().map(|k| k.key_prefix.clone())}),
            );
        }
        self.event(
            "realm.deleted",
            format!("realm:{realm_id}"),
            json!({"name": realm.name}),
        );
        Ok(Ok(None))
    }

    async fn realm_grant(
        &mut self,
        model_id: &str,
        realm_id: &str,
        budget: Option<Option<f64>>,
    ) -> R<Option<Value>> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(model) = self.model(model_id).await? else {
            refuse!(DomainError::not_found(format!(
                "model {model_id} not found"
            )))
        };
        if matches!(budget, Some(Some(_))) && realm.key.is_none() && self.ctx.litellm.is_none() {
            // The budget lives on the realm's LiteLLM key, which only exists with LiteLLM: refused
            // rather than dropped. (Once LiteLLM is configured, the reconcile mints the key.)
            refuse!(DomainError::bad_request(
                "monthlyBudgetUsd needs LiteLLM: it is the budget of the realm's LiteLLM key, \
                 which is minted once LiteLLM is configured"
            ));
        }
        let grants = self.grants(realm_id).await?;
        let (granted_at, new_grant) = match grants.get(model_id) {
            Some(at) => (at.clone(), false),
            None => (self.now.clone(), true),
        };
        if new_grant {
            self.grant_add(realm_id, model_id, &granted_at).await?;
        }
        let mut key_changed = new_grant && model.status == ModelStatus::Active;
        let mut minted = false;
        if realm.key.is_none() && self.ctx.litellm.is_some() {
            let key = generate_virtual_key();
            realm.key = Some(RealmKeyRecord {
                key_sealed: self.ctx.sealer.seal(Purpose::RealmKey, &key)?,
                key_prefix: key_prefix(&key),
                monthly_budget_usd: None,
                created_at: self.now.clone(),
                updated_at: self.now.clone(),
            });
            minted = true;
            key_changed = true;
        }
        let mut budget_changed = false;
        if let (Some(b), Some(k)) = (budget, realm.key.as_mut()) {
            if k.monthly_budget_usd != b {
                k.monthly_budget_usd = b;
                budget_changed = true;
                key_changed = true;
            }
        }
        if key_changed {
            self.touch_realm_key(&mut realm);
            self.put_realm(realm.clone());
            self.refresh_realm_agents(realm_id).await?;
        }
        if minted {
            self.configure_waiting_members(realm_id).await?;
        }
        if new_grant {
            self.event(
                "realm.grant",
                format!("realm:{realm_id}"),
                json!({"modelId": model_id, "litellmModelName": model.litellm_model_name}),
            );
        }
        if minted {
            self.event(
                "realm.key.minted",
                format!("realm:{realm_id}"),
                json!({"keyPrefix": realm.key.as_ref().map(|k| k.key_prefix.clone())}),
            );
        } else if key_changed && realm.key.is_some() {
            self.event(
                "realm.key.updated",
                format!("realm:{realm_id}"),
                json!({"budgetChanged": budget_changed}),
            );
        }
        let granted = self.granted_models(realm_id).await?;
        let sync = self.ctx.store.sync_realm(realm_id).await?;
        Ok(Ok(Some(json!({
            "grant": {"modelId": model_id, "realmId": realm_id, "grantedAt": granted_at},
            "routerKey": views::router_key_view(&realm, &granted, &sync),
        }))))
    }

    async fn realm_revoke(&mut self, model_id: &str, realm_id: &str) -> R<Option<Value>> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        if !self.grants(realm_id).await?.contains_key(model_id) {
            refuse!(DomainError::not_found(format!(
                "model {model_id} is not granted to realm {realm_id}"
            )));
        }
        self.grant_remove(realm_id, model_id).await?;
        if realm.key.is_some() {
            self.touch_realm_key(&mut realm);
            self.put_realm(realm.clone());
        }
        self.refresh_realm_agents(realm_id).await?;
        self.event(
            "realm.revoke",
            format!("realm:{realm_id}"),
            json!({"modelId": model_id}),
        );
        if realm.key.is_some() {
            self.event(
                "realm.key.updated",
                format!("realm:{realm_id}"),
                json!({"revokedModelId": model_id}),
            );
        }
        Ok(Ok(None))
    }

    async fn agent_add(&mut self, realm_id: &str, did: &str, is_primary: bool) -> R<Option<Value>> {
        let Some(realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        let memberships = self.ctx.store.agent_realms(did).await?;
        let existing = memberships.iter().find(|m| m.realm_id == realm_id).cloned();
        let mut m = existing.clone().unwrap_or(Membership {
            realm_id: realm_id.into(),
            agent_did: did.into(),
            is_primary: false,
            joined_at: self.now.clone(),
        });
        if is_primary {
            for other in memberships
                .iter()
                .filter(|o| o.is_primary && o.realm_id != realm_id)
            {
                let mut o = other.clone();
                o.is_primary = false;
                let v = serde_json::to_string(&o).unwrap_or_default();
                self.ops.push(Op::Hset {
                    key: keys::agent_realms(did),
                    field: o.realm_id.clone(),
                    value: v.clone(),
                });
                self.ops.push(Op::Hset {
                    key: keys::realm_members(&o.realm_id),
                    field: did.into(),
                    value: v,
                });
            }
            m.is_primary = true;
        }
        if existing.as_ref() != Some(&m) {
            let v = serde_json::to_string(&m).unwrap_or_default();
            self.ops.push(Op::Hset {
                key: keys::agent_realms(did),
                field: realm_id.into(),
                value: v.clone(),
            });
            self.ops.push(Op::Hset {
                key: keys::realm_members(realm_id),
                field: did.into(),
                value: v,
            });
        }
        if existing.is_none() {
            self.event(
                "realm.agent.added",
                format!("realm:{realm_id}"),
                json!({"agentDid": did, "isPrimary": m.is_primary}),
            );
        }
        // Auto-configure an agent with no config, never overwrite an explicit one.
        let mut llm_pushed = false;
        if agent.source.is_none() && realm.key.is_some() && self.ctx.litellm.is_some() {
            if let Some(first) = self.active_models(realm_id).await?.first().cloned() {
                llm_pushed = self
                    .configure_if_unconfigured(did, realm_id, &first.id)
                    .await?;
            }
        }
        Ok(Ok(Some(json!({"ok": true, "llmPushed": llm_pushed}))))
    }

    async fn agent_remove(&mut self, realm_id: &str, did: &str) -> R<Option<Value>> {
        if self.realm(realm_id).await?.is_none() {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )));
        }
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        if !self
            .ctx
            .store
            .agent_realms(did)
            .await?
            .iter()
            .any(|m| m.realm_id == realm_id)
        {
            refuse!(DomainError::not_found(format!(
                "agent {did} is not a member of realm {realm_id}"
            )));
        }
        self.ops.push(Op::Hdel {
            key: keys::agent_realms(did),
            field: realm_id.into(),
        });
        self.ops.push(Op::Hdel {
            key: keys::realm_members(realm_id),
            field: did.into(),
        });
        if matches!(&agent.source, Some(ConfigSource::Realm { realm_id: r, .. }) if r == realm_id) {
            self.set_source(did, None).await?;
            self.effects.agent_pushes.insert(did.into());
        }
        self.event(
            "realm.agent.removed",
            format!("realm:{realm_id}"),
            json!({"agentDid": did}),
        );
        Ok(Ok(None))
    }

    // ---- agents ----

    async fn agent_register(&mut self, did: &str, name: &str) -> R<Option<Value>> {
        if self.agent(did).await?.is_some() {
            refuse!(DomainError::conflict(format!(
                "agent {did} is already registered"
            )));
        }
        // The initial (null) state takes a version from the global counter, so a DID that was deleted
        // and registered again still only ever sees versions move forward.
        let version = self.next_version();
        let agent = StoredAgent {
            did: did.into(),
            name: name.into(),
            created_at: self.now.clone(),
            source: None,
            state: ConfigState {
                config: None,
                version,
                mode: None,
                realm_id: None,
            },
        };
        self.put_agent(agent.clone());
        self.ops.push(Op::Sadd {
            key: keys::AGENTS.into(),
            member: did.into(),
        });
        self.event(
            "agent.registered",
            format!("agent:{did}"),
            json!({"name": name}),
        );
        let view = vc_shared::domain::AgentView {
            did: did.into(),
            name: name.into(),
            realms: vec![],
            online: false,
            edge_id: None,
            last_seen: None,
            config_version: version,
            acked_version: None,
            active_llm: None,
            created_at: agent.created_at,
        };
        Ok(Ok(Some(json!({"agent": view}))))
    }

    async fn agent_delete(&mut self, did: &str) -> R<Option<Value>> {
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        self.unindex(&agent);
        for m in self.ctx.store.agent_realms(did).await? {
            self.ops.push(Op::Hdel {
                key: keys::realm_members(&m.realm_id),
                field: did.into(),
            });
        }
        self.ops.push(Op::Del {
            key: keys::agent(did),
        });
        self.ops.push(Op::Del {
            key: keys::agent_realms(did),
        });
        self.ops.push(Op::Srem {
            key: keys::AGENTS.into(),
            member: did.into(),
        });
        self.agents.insert(did.into(), None);
        self.effects.deleted_agents.insert(did.into());
        self.event(
            "agent.deleted",
            format!("agent:{did}"),
            json!({"name": agent.name}),
        );
        Ok(Ok(None))
    }

    async fn llm_config_set(&mut self, did: &str, form: LlmConfigForm) -> R<Option<Value>> {
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        let source = match form {
            LlmConfigForm::Realm { realm_id, model_id } => {
                let Some(realm) = self.realm(&realm_id).await? else {
                    refuse!(DomainError::not_found(format!(
                        "realm {realm_id} not found"
                    )))
                };
                if !self
                    .ctx
                    .store
                    .agent_realms(did)
                    .await?
                    .iter()
                    .any(|m| m.realm_id == realm_id)
                {
                    refuse!(DomainError::forbidden(format!(
                        "agent {did} is not a member of realm {realm_id}"
                    )));
                }
                if realm.key.is_none() || self.ctx.litellm.is_none() {
                    refuse!(DomainError::bad_request(
                        "Realm has no LiteLLM virtual key configured"
                    ));
                }
                if !self
                    .active_models(&realm_id)
                    .await?
                    .iter()
                    .any(|m| m.id == model_id)
                {
                    refuse!(DomainError::not_found(format!(
                        "model {model_id} is not an active model of realm {realm_id}"
                    )));
                }
                ConfigSource::Realm { realm_id, model_id }
            }
            LlmConfigForm::Registry { model_id } => {
                let Some(m) = self.model(&model_id).await? else {
                    refuse!(DomainError::not_found(format!(
                        "model {model_id} not found"
                    )))
                };
                if m.status != ModelStatus::Active {
                    refuse!(DomainError::bad_request(format!(
                        "model {model_id} is inactive"
                    )));
                }
                ConfigSource::Registry { model_id }
            }
            LlmConfigForm::Manual {
                provider,
                model,
                api_key,
                base_url,
                system_prompt,
                max_tokens,
            } => {
                let api_key_sealed = match api_key {
                    Some(input) => match self.open_input(input)? {
                        Ok(k) => Some(self.ctx.sealer.seal(Purpose::AgentConfigKey, &k)?),
                        Err(e) => refuse!(e),
                    },
                    // A manual update that omits the key keeps the stored one.
                    None => match &agent.source {
                        Some(ConfigSource::Manual { api_key_sealed, .. }) => api_key_sealed.clone(),
                        _ => None,
                    },
                };
                ConfigSource::Manual {
                    provider,
                    model,
                    api_key_sealed,
                    base_url,
                    system_prompt,
                    max_tokens,
                }
            }
        };
        let Some(agent) = self.set_source(did, Some(source)).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        self.effects.agent_pushes.insert(did.into());
        let online = self
            .ctx
            .store
            .presence(did)
            .await?
            .iter()
            .any(|(k, v)| k == "online" && v == "1");
        Ok(Ok(Some(json!({
            "pushed": online,
            "config": views::safe_config(&agent),
            "version": agent.state.version,
        }))))
    }

    async fn llm_config_clear(&mut self, did: &str) -> R<Option<Value>> {
        if self.agent(did).await?.is_none() {
            refuse!(DomainError::not_found(format!("agent {did} not found")));
        }
        self.set_source(did, None).await?;
        self.effects.agent_pushes.insert(did.into());
        let online = self
            .ctx
            .store
            .presence(did)
            .await?
            .iter()
            .any(|(k, v)| k == "online" && v == "1");
        Ok(Ok(Some(json!({"pushed": online}))))
    }
}

/// Applies one validated command against the current catalog.
pub async fn apply(ctx: &Ctx<'_>, command: Command) -> Result<Applied, ApplyError> {
    let rev = ctx.store.rev().await?;
    let version_seq = ctx.store.version_seq().await?;
    let mut tx = Tx {
        ctx,
        now: now_rfc3339(),
        version_seq,
        version: None,
        models: HashMap::new(),
        realms: HashMap::new(),
        grants: HashMap::new(),
        agents: HashMap::new(),
        sealed: HashMap::new(),
        ops: Vec::new(),
        effects: Effects::default(),
    };
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
        Ok(_) => (tx.ops, tx.effects),
        Err(_) => (Vec::new(), Effects::default()),
    };
    Ok(Applied {
        rev,
        ops,
        result,
        effects,
    })
}
