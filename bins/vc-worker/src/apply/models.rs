//! `model.register`, `model.update`, `model.delete`.

use serde_json::json;
use vc_shared::command::{ModelRegister, ModelResult, ModelUpdate};
use vc_shared::crypto::Purpose;
use vc_shared::domain::{litellm_model_name, ModelStatus, StoredModel, SyncRecord};
use vc_shared::error::DomainError;
use vc_shared::routing::Dependency;
use vc_shared::store::{keys, Op};
use vc_shared::views;

use super::tx::Tx;
use super::{refuse, R};

impl Tx<'_> {
    pub(super) async fn model_register(&mut self, m: ModelRegister) -> R<ModelResult> {
        let id =
            m.id.clone()
                .unwrap_or_else(|| vc_shared::command::derived_id(self.ctx.command_id));
        if self.model_ref(&id).await?.is_some() {
            refuse!(DomainError::conflict(format!("model {id} already exists")));
        }
        if self.tombstoned(&Dependency::Model(id.clone())).await? {
            refuse!(DomainError::conflict(format!(
                "model id {id} belonged to a deleted model and is not used again"
            )));
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
                Ok(k) => Some(self.ctx.sealer.seal(Purpose::ModelApiKey, &id, &k)?),
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
            input_cost_per_token: m.input_cost_per_token,
            output_cost_per_token: m.output_cost_per_token,
        };
        self.put_model(model.clone());
        self.op(Op::Sadd {
            key: keys::MODELS.into(),
            member: id.clone(),
        });
        self.op(Op::Hset {
            key: keys::MODEL_NAMES.into(),
            field: name.clone(),
            value: id.clone(),
        });
        self.op(Op::Del {
            key: keys::sync_model(&id),
        });
        // The routing state registry-mode agents will derive their config from.
        self.bump_model_routing(&id).await?;
        self.effects.sync_models.insert(id.clone());
        self.event(
            "model.registered",
            format!("model:{id}"),
            json!({"name": model.name, "litellmModelName": name, "provider": model.provider}),
        );
        Ok(Ok(ModelResult {
            model: views::model_view(&model, 0, &SyncRecord::default()),
        }))
    }

    pub(super) async fn model_update(&mut self, u: ModelUpdate) -> R<ModelResult> {
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
                Ok(k) => {
                    m.api_key_sealed =
                        Some(self.ctx.sealer.seal(Purpose::ModelApiKey, &m.id, &k)?)
                }
                Err(e) => refuse!(e),
            },
        }
        if let Some(s) = u.status {
            m.status = s;
        }
        if let Some(p) = u.input_cost_per_token {
            m.input_cost_per_token = p;
        }
        if let Some(p) = u.output_cost_per_token {
            m.output_cost_per_token = p;
        }
        let upstream_changed = before.model_id != m.model_id
            || before.base_url != m.base_url
            || before.api_key_sealed != m.api_key_sealed
            || before.status != m.status;
        // Prices live in the deployment only: LiteLLM charges them; agents never see them.
        let prices_changed = before.input_cost_per_token != m.input_cost_per_token
            || before.output_cost_per_token != m.output_cost_per_token;
        if before == m {
            return Ok(Ok(self.model_result(&m).await?));
        }
        m.updated_at = self.now.clone();
        if upstream_changed || prices_changed {
            m.gen += 1;
            self.effects.sync_models.insert(m.id.clone());
        }
        self.put_model(m.clone());
        if before.status != m.status {
            // The model enters or leaves every granted realm's key: one routing state per realm.
            for realm_id in self.ctx.store.model_grants(&m.id).await?.keys() {
                if let Some(mut realm) = self.realm(realm_id).await? {
                    self.touch_realm_key(&mut realm);
                    self.key_event(&realm, json!({"modelId": m.id, "modelStatus": m.status}));
                    self.put_realm(realm);
                    self.bump_realm_routing(realm_id).await?;
                }
            }
        }
        if upstream_changed {
            // Registry-mode agents talk to the upstream directly: one new routing state for all.
            self.bump_model_routing(&m.id).await?;
        }
        let changed: Vec<&str> = [
            ("name", before.name != m.name),
            ("description", before.description != m.description),
            ("modelId", before.model_id != m.model_id),
            ("baseUrl", before.base_url != m.base_url),
            ("apiKey", before.api_key_sealed != m.api_key_sealed),
            ("status", before.status != m.status),
            (
                "inputCostPerToken",
                before.input_cost_per_token != m.input_cost_per_token,
            ),
            (
                "outputCostPerToken",
                before.output_cost_per_token != m.output_cost_per_token,
            ),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        self.event(
            "model.updated",
            format!("model:{}", m.id),
            json!({"changed": changed, "status": m.status}),
        );
        Ok(Ok(self.model_result(&m).await?))
    }

    pub(super) async fn model_delete(&mut self, id: &str) -> R<()> {
        let Some(m) = self.model_ref(id).await? else {
            refuse!(DomainError::not_found(format!("model {id} not found")))
        };
        // Gone for the rest of the command: realm routing states and the model's own leave it out.
        self.forget_model(id);
        for realm_id in self.ctx.store.model_grants(id).await?.keys() {
            self.grant_remove(realm_id, id).await?;
            if let Some(mut realm) = self.realm(realm_id).await? {
                self.touch_realm_key(&mut realm);
                self.key_event(&realm, json!({"deletedModelId": id}));
                self.put_realm(realm);
                self.bump_realm_routing(realm_id).await?;
            }
        }
        // Registry-mode agents on it get `config: null` from its tombstone.
        self.bump_model_routing(id).await?;
        for key in [
            keys::model(id),
            keys::model_grants(id),
            keys::sync_model(id),
        ] {
            self.op(Op::Del { key });
        }
        self.op(Op::Unlink {
            key: keys::model_routed(id),
        });
        self.op(Op::Srem {
            key: keys::MODELS.into(),
            member: id.into(),
        });
        self.op(Op::Hdel {
            key: keys::MODEL_NAMES.into(),
            field: m.litellm_model_name.clone(),
        });
        self.effects.sync_models.insert(id.to_string());
        self.event(
            "model.deleted",
            format!("model:{id}"),
            json!({"name": m.name, "litellmModelName": m.litellm_model_name}),
        );
        Ok(Ok(()))
    }
}
