//! The transaction of one command: reads cached for the command's life, writes collected as ops,
//! one new version at most, routing states, events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};
use vc_shared::command::{ModelResult, RealmResult, SecretInput};
use vc_shared::crypto::Purpose;
use vc_shared::domain::{
    now_rfc3339, ConfigSource, Membership, ModelStatus, StoredAgent, StoredModel, StoredRealm,
};
use vc_shared::error::DomainError;
use vc_shared::routing::{effective, Dependency, ModelRouting, RealmRouting, RoutedModel, Routing};
use vc_shared::store::{keys, Op};
use vc_shared::views;
use vc_shared::wire::{ConfigState, Event, SealedLlmConfig};

use super::{ApplyError, Ctx, Effects};

pub(super) struct Tx<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) now: String,
    version_seq: u64,
    version: Option<u64>,
    models: HashMap<String, Option<Arc<StoredModel>>>,
    realms: HashMap<String, Option<StoredRealm>>,
    grants: HashMap<String, Arc<BTreeMap<String, String>>>,
    agents: HashMap<String, Option<StoredAgent>>,
    routings: HashMap<Dependency, Option<Routing>>,
    ops: Vec<Op>,
    pub(super) effects: Effects,
}

impl<'a> Tx<'a> {
    pub(super) fn new(ctx: &'a Ctx<'a>, version_seq: u64) -> Self {
        Tx {
            ctx,
            now: now_rfc3339(),
            version_seq,
            version: None,
            models: HashMap::new(),
            realms: HashMap::new(),
            grants: HashMap::new(),
            agents: HashMap::new(),
            routings: HashMap::new(),
            ops: Vec::new(),
            effects: Effects::default(),
        }
    }

    /// The writes and the effects.
    pub(super) fn into_parts(self) -> (Vec<Op>, Effects) {
        (self.ops, self.effects)
    }

    pub(super) fn op(&mut self, op: Op) {
        self.ops.push(op);
    }

    // ---- models and realms ----

    /// A model, shared (models are read again and again: every granted model of a realm, for each
    /// change of its routing). [`Tx::model`] for a copy to change.
    pub(super) async fn model_ref(
        &mut self,
        id: &str,
    ) -> Result<Option<Arc<StoredModel>>, ApplyError> {
        if let Some(m) = self.models.get(id) {
            return Ok(m.clone());
        }
        let m = self.ctx.store.model(id).await?;
        self.models.insert(id.to_string(), m.clone());
        Ok(m)
    }

    /// A model, copied: to change and write back with [`Tx::put_model`].
    pub(super) async fn model(&mut self, id: &str) -> Result<Option<StoredModel>, ApplyError> {
        Ok(self.model_ref(id).await?.map(|m| StoredModel::clone(&m)))
    }

    pub(super) fn put_model(&mut self, m: StoredModel) {
        self.ops.push(Op::set_json(keys::model(&m.id), &m));
        self.models.insert(m.id.clone(), Some(Arc::new(m)));
    }

    /// Marks a model gone for the rest of the transaction (its keys are deleted by the caller).
    pub(super) fn forget_model(&mut self, id: &str) {
        self.models.insert(id.to_string(), None);
    }

    pub(super) async fn realm(&mut self, id: &str) -> Result<Option<StoredRealm>, ApplyError> {
        if !self.realms.contains_key(id) {
            let r = self.ctx.store.realm(id).await?;
            self.realms.insert(id.to_string(), r);
        }
        Ok(self.realms.get(id).cloned().flatten())
    }

    pub(super) fn put_realm(&mut self, r: StoredRealm) {
        self.ops.push(Op::set_json(keys::realm(&r.id), &r));
        self.realms.insert(r.id.clone(), Some(r));
    }

    /// Marks a realm gone for the rest of the transaction (its keys are deleted by the caller).
    pub(super) fn forget_realm(&mut self, id: &str) {
        self.realms.insert(id.to_string(), None);
    }

    /// A realm's grants (model id → grantedAt), shared.
    pub(super) async fn grants(
        &mut self,
        realm_id: &str,
    ) -> Result<Arc<BTreeMap<String, String>>, ApplyError> {
        if let Some(g) = self.grants.get(realm_id) {
            return Ok(g.clone());
        }
        let g = self.ctx.store.realm_grants(realm_id).await?;
        self.grants.insert(realm_id.to_string(), g.clone());
        Ok(g)
    }

    /// The realm's grants to change (copied once if shared).
    async fn grants_mut(
        &mut self,
        realm_id: &str,
    ) -> Result<&mut BTreeMap<String, String>, ApplyError> {
        self.grants(realm_id).await?;
        Ok(Arc::make_mut(
            self.grants.entry(realm_id.to_string()).or_default(),
        ))
    }

    pub(super) async fn grant_add(
        &mut self,
        realm_id: &str,
        model_id: &str,
        at: &str,
    ) -> Result<(), ApplyError> {
        self.grants_mut(realm_id)
            .await?
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

    pub(super) async fn grant_remove(
        &mut self,
        realm_id: &str,
        model_id: &str,
    ) -> Result<(), ApplyError> {
        self.grants_mut(realm_id).await?.remove(model_id);
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

    /// Models granted to a realm (active or not), shared.
    pub(super) async fn granted_models(
        &mut self,
        realm_id: &str,
    ) -> Result<Vec<Arc<StoredModel>>, ApplyError> {
        let grants = self.grants(realm_id).await?;
        let mut out = Vec::with_capacity(grants.len());
        for id in grants.keys() {
            if let Some(m) = self.model_ref(id).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Active granted models, sorted by name (the realm key's list, in order).
    pub(super) async fn active_models(
        &mut self,
        realm_id: &str,
    ) -> Result<Vec<Arc<StoredModel>>, ApplyError> {
        let mut v: Vec<Arc<StoredModel>> = self
            .granted_models(realm_id)
            .await?
            .into_iter()
            .filter(|m| m.status == ModelStatus::Active)
            .collect();
        v.sort_by(|a, b| vc_shared::domain::model_order(a, b));
        Ok(v)
    }

    // ---- agents ----

    pub(super) async fn agent(&mut self, did: &str) -> Result<Option<StoredAgent>, ApplyError> {
        if !self.agents.contains_key(did) {
            let a = self.ctx.store.agent(did).await?;
            self.agents.insert(did.to_string(), a);
        }
        Ok(self.agents.get(did).cloned().flatten())
    }

    pub(super) fn put_agent(&mut self, a: StoredAgent) {
        self.ops.push(Op::set_json(keys::agent(&a.did), &a));
        self.agents.insert(a.did.clone(), Some(a));
    }

    /// Marks an agent gone for the rest of the transaction (its keys are deleted by the caller).
    pub(super) fn forget_agent(&mut self, did: &str) {
        self.agents.insert(did.to_string(), None);
    }

    /// An agent's memberships of realms that exist. Memberships of deleted realms (a realm delete
    /// leaves them behind, in constant time) are dropped from the agent's record in this commit.
    pub(super) async fn memberships(&mut self, did: &str) -> Result<Vec<Membership>, ApplyError> {
        let mut live = Vec::new();
        for m in self.ctx.store.agent_realms_raw(did).await? {
            if self.realm(&m.realm_id).await?.is_some() {
                live.push(m);
            } else {
                self.ops.push(Op::Hdel {
                    key: keys::agent_realms(did),
                    field: m.realm_id.clone(),
                });
            }
        }
        Ok(live)
    }

    /// Whether the agent has no config at all: no source, or routing through a realm that was deleted
    /// since (its effective config is `null`).
    pub(super) async fn unconfigured(&mut self, agent: &StoredAgent) -> Result<bool, ApplyError> {
        Ok(match &agent.source {
            None => true,
            Some(ConfigSource::Realm { realm_id, .. }) => self.realm(realm_id).await?.is_none(),
            Some(_) => false,
        })
    }

    /// The one new version of this command (from the global counter; taken at most once).
    pub(super) fn next_version(&mut self) -> u64 {
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

    pub(super) fn event(&mut self, kind: &str, subject: String, details: Value) {
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

    // ---- routing ----

    async fn routing(&mut self, dep: &Dependency) -> Result<Option<Routing>, ApplyError> {
        if !self.routings.contains_key(dep) {
            let r = self.ctx.store.routing(dep).await?;
            self.routings.insert(dep.clone(), r);
        }
        Ok(self.routings.get(dep).cloned().flatten())
    }

    /// Whether the routing state of `dep` is a tombstone (the id belonged to a deleted entity).
    pub(super) async fn tombstoned(&mut self, dep: &Dependency) -> Result<bool, ApplyError> {
        Ok(match self.routing(dep).await? {
            Some(Routing::Realm(r)) => r.deleted,
            Some(Routing::Model(m)) => m.deleted,
            None => false,
        })
    }

    /// An agent's effective config as this transaction leaves it.
    pub(super) async fn effective(
        &mut self,
        agent: &StoredAgent,
    ) -> Result<ConfigState, ApplyError> {
        let dep = match agent.dependency() {
            Some(d) => self.routing(&d).await?,
            None => None,
        };
        Ok(effective(&agent.route(), dep.as_ref()))
    }

    /// The realm's routing state changed (its key, models or budget, or the realm is gone): write the
    /// new state with this command's version, once, and push it once. Constant work whatever the number
    /// of agents routed through the realm.
    pub(super) async fn bump_realm_routing(&mut self, realm_id: &str) -> Result<(), ApplyError> {
        let version = self.next_version();
        let routing = match self.realm(realm_id).await? {
            None => RealmRouting {
                realm_id: realm_id.into(),
                version,
                deleted: true,
                base_url: None,
                key_sealed: None,
                models: Vec::new(),
            },
            Some(realm) => {
                let key_sealed = match &realm.key {
                    Some(k) => {
                        // Re-sealed for the edges, which hold the `agent-config-key` key only,
                        // bound to the realm whose agents it goes to.
                        let key =
                            self.ctx
                                .sealer
                                .open(Purpose::RealmKey, realm_id, &k.key_sealed)?;
                        Some(
                            self.ctx
                                .sealer
                                .seal(Purpose::AgentConfigKey, realm_id, &key)?,
                        )
                    }
                    None => None,
                };
                let models = self
                    .active_models(realm_id)
                    .await?
                    .into_iter()
                    .map(|m| RoutedModel {
                        id: m.id.clone(),
                        litellm_model_name: m.litellm_model_name.clone(),
                    })
                    .collect();
                RealmRouting {
                    realm_id: realm_id.into(),
                    version,
                    deleted: false,
                    base_url: self.ctx.litellm.map(|l| l.public_url.clone()),
                    key_sealed,
                    models,
                }
            }
        };
        let routed = self.ctx.store.realm_routed_count(realm_id).await?;
        self.event(
            "realm.config.pushed",
            format!("realm:{realm_id}"),
            json!({"version": version, "deleted": routing.deleted,
                   "models": routing.models.iter().map(|m| m.litellm_model_name.clone()).collect::<Vec<_>>(),
                   "routedAgents": routed}),
        );
        self.ops
            .push(Op::set_json(keys::routing_realm(realm_id), &routing));
        self.routings.insert(
            Dependency::Realm(realm_id.into()),
            Some(Routing::Realm(routing)),
        );
        self.effects.realm_pushes.insert(realm_id.into());
        Ok(())
    }

    /// The model's upstream details or status changed, or it is gone: write its new routing state once
    /// and push it once (registry-mode agents derive their config from it).
    pub(super) async fn bump_model_routing(&mut self, model_id: &str) -> Result<(), ApplyError> {
        let version = self.next_version();
        let routing = match self.model_ref(model_id).await? {
            None => ModelRouting {
                model_id: model_id.into(),
                version,
                deleted: true,
                config: None,
            },
            Some(m) => {
                let config = if m.status == ModelStatus::Active {
                    let api_key_sealed = match &m.api_key_sealed {
                        Some(k) => {
                            // Re-sealed for the edges, bound to the model.
                            let key = self.ctx.sealer.open(Purpose::ModelApiKey, &m.id, k)?;
                            Some(self.ctx.sealer.seal(Purpose::AgentConfigKey, &m.id, &key)?)
                        }
                        None => None,
                    };
                    Some(SealedLlmConfig {
                        provider: m.provider.as_str().into(),
                        model: m.model_id.clone(),
                        base_url: m.base_url.clone(),
                        api_key_sealed,
                        allowed_models: None,
                        system_prompt: None,
                        max_tokens: None,
                    })
                } else {
                    None
                };
                ModelRouting {
                    model_id: model_id.into(),
                    version,
                    deleted: false,
                    config,
                }
            }
        };
        self.ops
            .push(Op::set_json(keys::routing_model(model_id), &routing));
        self.routings.insert(
            Dependency::Model(model_id.into()),
            Some(Routing::Model(routing)),
        );
        self.effects.model_pushes.insert(model_id.into());
        Ok(())
    }

    /// Gives an agent a new source (or none) with a new version, updates the routing indexes, and
    /// pushes it on the agent's own subject. Returns the agent as written.
    pub(super) async fn set_route(
        &mut self,
        did: &str,
        source: Option<ConfigSource>,
    ) -> Result<Option<StoredAgent>, ApplyError> {
        let Some(mut agent) = self.agent(did).await? else {
            return Ok(None);
        };
        self.unindex(&agent);
        agent.source = source;
        self.index(&agent);
        agent.version = self.next_version();
        self.put_agent(agent.clone());
        let state = self.effective(&agent).await?;
        self.event(
            "agent.config.pushed",
            format!("agent:{did}"),
            json!({"version": state.version, "mode": state.mode, "realmId": state.realm_id,
                   "model": state.config.as_ref().map(|c| c.model.clone())}),
        );
        self.effects.agent_pushes.insert(did.into());
        Ok(Some(agent))
    }

    /// Removes the agent from the routing index of its source (before a new source, or its deletion).
    pub(super) fn unindex(&mut self, a: &StoredAgent) {
        match &a.source {
            Some(ConfigSource::Realm { realm_id, .. }) => self.ops.push(Op::Srem {
                key: keys::realm_routed(realm_id),
                member: a.did.clone(),
            }),
            Some(ConfigSource::Registry { model_id }) => self.ops.push(Op::Srem {
                key: keys::model_routed(model_id),
                member: a.did.clone(),
            }),
            _ => {}
        }
    }

    fn index(&mut self, a: &StoredAgent) {
        match &a.source {
            Some(ConfigSource::Realm { realm_id, .. }) => self.ops.push(Op::Sadd {
                key: keys::realm_routed(realm_id),
                member: a.did.clone(),
            }),
            Some(ConfigSource::Registry { model_id }) => self.ops.push(Op::Sadd {
                key: keys::model_routed(model_id),
                member: a.did.clone(),
            }),
            _ => {}
        }
    }

    /// Realm routing through `realm_id`'s model `model_id` for `did`, if it has no config at all (an
    /// explicit one is never overwritten). Whether it was configured.
    pub(super) async fn configure_if_unconfigured(
        &mut self,
        did: &str,
        realm_id: &str,
        model_id: &str,
    ) -> Result<bool, ApplyError> {
        let Some(agent) = self.agent(did).await? else {
            return Ok(false);
        };
        if !self.unconfigured(&agent).await? {
            return Ok(false);
        }
        self.set_route(
            did,
            Some(ConfigSource::Realm {
                realm_id: realm_id.into(),
                model_id: model_id.into(),
            }),
        )
        .await?;
        Ok(true)
    }

    /// The realm's key desired state changed: bump its generation and sync it.
    pub(super) fn touch_realm_key(&mut self, realm: &mut StoredRealm) {
        realm.gen += 1;
        realm.updated_at = self.now.clone();
        if let Some(k) = realm.key.as_mut() {
            k.updated_at = self.now.clone();
        }
        self.effects.sync_realms.insert(realm.id.clone());
    }

    /// `realm.key.updated` for a realm that holds a key.
    pub(super) fn key_event(&mut self, realm: &StoredRealm, details: Value) {
        if realm.key.is_some() {
            self.event("realm.key.updated", format!("realm:{}", realm.id), details);
        }
    }

    pub(super) async fn realm_result(
        &mut self,
        realm: &StoredRealm,
    ) -> Result<RealmResult, ApplyError> {
        let granted = self.granted_models(&realm.id).await?;
        let members = self.ctx.store.realm_member_count(&realm.id).await?;
        let sync = self.ctx.store.sync_realm(&realm.id).await?;
        Ok(RealmResult {
            realm: views::realm_view(realm, members, &granted, &sync),
        })
    }

    pub(super) async fn model_result(
        &mut self,
        m: &StoredModel,
    ) -> Result<ModelResult, ApplyError> {
        let count = self.ctx.store.model_grant_count(&m.id).await?;
        let sync = self.ctx.store.sync_model(&m.id).await?;
        Ok(ModelResult {
            model: views::model_view(m, count, &sync),
        })
    }

    pub(super) fn open_input(
        &self,
        input: SecretInput,
    ) -> Result<Result<String, DomainError>, ApplyError> {
        Ok(match input {
            SecretInput::Clear(s) => Ok(s),
            SecretInput::Sealed(s) => {
                // Bound to this command: a sealed key copied from another command does not open.
                let opened = self
                    .ctx
                    .sealer
                    .open(Purpose::Command, self.ctx.command_id, &s);
                opened.map_err(|e| {
                    DomainError::bad_request(format!(
                        "apiKeySealed could not be opened as a secret of this command: {e}"
                    ))
                })
            }
        })
    }
}
