//! `agent.register`, `agent.delete`, `realm.agent.add`, `realm.agent.remove`, `agent.llm_config.set`,
//! `agent.llm_config.clear`: each changes one agent.

use serde_json::json;
use vc_shared::command::{
    AgentAddResult, AgentResult, LlmConfigClearResult, LlmConfigForm, LlmConfigSetResult,
};
use vc_shared::crypto::Purpose;
use vc_shared::domain::{ConfigSource, Membership, ModelStatus, StoredAgent};
use vc_shared::error::DomainError;
use vc_shared::rotation::RotationReason;
use vc_shared::store::{keys, Op};
use vc_shared::views;

use super::tx::Tx;
use super::{refuse, ApplyError, R};

impl Tx<'_> {
    pub(super) async fn agent_add(
        &mut self,
        realm_id: &str,
        did: &str,
        is_primary: bool,
    ) -> R<AgentAddResult> {
        let Some(realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        let memberships = self.memberships(did).await?;
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
                self.put_membership(&o);
            }
            m.is_primary = true;
        }
        if existing.as_ref() != Some(&m) {
            self.put_membership(&m);
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
        if realm.key.is_some() && self.ctx.litellm.is_some() && self.unconfigured(&agent).await? {
            if let Some(first) = self.active_models(realm_id).await?.first().cloned() {
                llm_pushed = self
                    .configure_if_unconfigured(did, realm_id, &first.id)
                    .await?;
            }
        }
        Ok(Ok(AgentAddResult::new(llm_pushed)))
    }

    fn put_membership(&mut self, m: &Membership) {
        let v = serde_json::to_string(m).unwrap_or_default();
        self.op(Op::Hset {
            key: keys::agent_realms(&m.agent_did),
            field: m.realm_id.clone(),
            value: v.clone(),
        });
        self.op(Op::Hset {
            key: keys::realm_members(&m.realm_id),
            field: m.agent_did.clone(),
            value: v,
        });
    }

    pub(super) async fn agent_remove(&mut self, realm_id: &str, did: &str) -> R<()> {
        if self.realm(realm_id).await?.is_none() {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )));
        }
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        if !self
            .memberships(did)
            .await?
            .iter()
            .any(|m| m.realm_id == realm_id)
        {
            refuse!(DomainError::not_found(format!(
                "agent {did} is not a member of realm {realm_id}"
            )));
        }
        self.op(Op::Hdel {
            key: keys::agent_realms(did),
            field: realm_id.into(),
        });
        self.op(Op::Hdel {
            key: keys::realm_members(realm_id),
            field: did.into(),
        });
        if matches!(&agent.source, Some(ConfigSource::Realm { realm_id: r, .. }) if r == realm_id) {
            self.set_route(did, None).await?;
        }
        // The agent may still hold the realm's key: it is rotated, so the old value stops working.
        self.rotate_after_removal(realm_id, RotationReason::MemberRemoved)
            .await?;
        self.event(
            "realm.agent.removed",
            format!("realm:{realm_id}"),
            json!({"agentDid": did}),
        );
        Ok(Ok(()))
    }

    pub(super) async fn agent_register(&mut self, did: &str, name: &str) -> R<AgentResult> {
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
            version,
        };
        self.put_agent(agent.clone());
        self.op(Op::Sadd {
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
        Ok(Ok(AgentResult { agent: view }))
    }

    pub(super) async fn agent_delete(&mut self, did: &str) -> R<()> {
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        self.unindex(&agent);
        for m in self.memberships(did).await? {
            self.op(Op::Hdel {
                key: keys::realm_members(&m.realm_id),
                field: did.into(),
            });
            self.rotate_after_removal(&m.realm_id, RotationReason::AgentDeleted)
                .await?;
        }
        for key in [keys::agent(did), keys::agent_realms(did)] {
            self.op(Op::Del { key });
        }
        self.op(Op::Srem {
            key: keys::AGENTS.into(),
            member: did.into(),
        });
        self.forget_agent(did);
        self.effects.deleted_agents.insert(did.into());
        self.event(
            "agent.deleted",
            format!("agent:{did}"),
            json!({"name": agent.name}),
        );
        Ok(Ok(()))
    }

    /// The source a config form asks for, checked against the catalog.
    async fn source_of(&mut self, agent: &StoredAgent, form: LlmConfigForm) -> R<ConfigSource> {
        let did = agent.did.as_str();
        Ok(Ok(match form {
            LlmConfigForm::Realm { realm_id, model_id } => {
                let Some(realm) = self.realm(&realm_id).await? else {
                    refuse!(DomainError::not_found(format!(
                        "realm {realm_id} not found"
                    )))
                };
                if !self
                    .memberships(did)
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
                let Some(m) = self.model_ref(&model_id).await? else {
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
                        Ok(k) => Some(self.ctx.sealer.seal(Purpose::AgentConfigKey, did, &k)?),
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
        }))
    }

    pub(super) async fn llm_config_set(
        &mut self,
        did: &str,
        form: LlmConfigForm,
    ) -> R<LlmConfigSetResult> {
        let Some(agent) = self.agent(did).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        let source = match self.source_of(&agent, form).await? {
            Ok(s) => s,
            Err(e) => refuse!(e),
        };
        let Some(agent) = self.set_route(did, Some(source)).await? else {
            refuse!(DomainError::not_found(format!("agent {did} not found")))
        };
        let state = self.effective(&agent).await?;
        let online = self.online(did).await?;
        Ok(Ok(LlmConfigSetResult {
            pushed: online,
            config: views::safe_config(&state),
            version: state.version,
        }))
    }

    pub(super) async fn llm_config_clear(&mut self, did: &str) -> R<LlmConfigClearResult> {
        if self.agent(did).await?.is_none() {
            refuse!(DomainError::not_found(format!("agent {did} not found")));
        }
        self.set_route(did, None).await?;
        let online = self.online(did).await?;
        Ok(Ok(LlmConfigClearResult { pushed: online }))
    }

    async fn online(&self, did: &str) -> Result<bool, ApplyError> {
        Ok(self
            .ctx
            .store
            .presence(did)
            .await?
            .iter()
            .any(|(k, v)| k == "online" && v == "1"))
    }
}
