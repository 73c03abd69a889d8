//! `realm.create`, `realm.update`, `realm.delete`, `realm.grant`, `realm.revoke`.
//!
//! Each touches the realm's own records and, when what its agents receive changes, writes the realm's
//! routing state once: constant work whatever the number of agents routed through the realm.

use serde_json::json;
use vc_shared::command::{GrantResult, GrantView, RealmCreate, RealmResult, RealmUpdate};
use vc_shared::crypto::{generate_virtual_key, key_prefix, Purpose};
use vc_shared::domain::{ModelStatus, RealmKeyRecord, StoredRealm, DEFAULT_REALM_COLOR};
use vc_shared::error::DomainError;
use vc_shared::rotation::{key_id, KeyRotation};
use vc_shared::routing::Dependency;
use vc_shared::store::{keys, Op};
use vc_shared::views;

use super::tx::Tx;
use super::{refuse, ApplyError, R};

impl Tx<'_> {
    pub(super) async fn realm_create(&mut self, c: RealmCreate) -> R<RealmResult> {
        let id =
            c.id.clone()
                .unwrap_or_else(|| vc_shared::command::derived_id(self.ctx.command_id));
        if self.realm(&id).await?.is_some() {
            refuse!(DomainError::conflict(format!("realm {id} already exists")));
        }
        if self.tombstoned(&Dependency::Realm(id.clone())).await? {
            refuse!(DomainError::conflict(format!(
                "realm id {id} belonged to a deleted realm and is not used again"
            )));
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
            limits: Default::default(),
        };
        self.put_realm(realm.clone());
        self.op(Op::Sadd {
            key: keys::REALMS.into(),
            member: id.clone(),
        });
        self.op(Op::Hset {
            key: keys::REALM_SLUGS.into(),
            field: c.slug,
            value: id.clone(),
        });
        self.event(
            "realm.created",
            format!("realm:{id}"),
            json!({"name": realm.name, "slug": realm.slug}),
        );
        Ok(Ok(self.realm_result(&realm).await?))
    }

    pub(super) async fn realm_update(&mut self, u: RealmUpdate) -> R<RealmResult> {
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
                self.op(Op::Hdel {
                    key: keys::REALM_SLUGS.into(),
                    field: realm.slug.clone(),
                });
                self.op(Op::Hset {
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
        realm.limits = u.limits.apply(realm.limits);
        if realm != before {
            realm.updated_at = self.now.clone();
            if (realm.name != before.name || realm.limits != before.limits) && realm.key.is_some() {
                // The key's metadata names the realm; the key and the team carry the limits.
                realm.gen += 1;
                self.effects.sync_realms.insert(realm.id.clone());
            }
            self.put_realm(realm.clone());
            let mut details = json!({"name": realm.name, "slug": realm.slug});
            if realm.limits != before.limits {
                details["limits"] = json!(realm.limits);
            }
            self.event("realm.updated", format!("realm:{}", realm.id), details);
        }
        Ok(Ok(self.realm_result(&realm).await?))
    }

    /// Deletes the realm in constant time: its routing state becomes a tombstone (routed agents derive
    /// `config: null` from it), its own keys go (`UNLINK` for the member and routed sets), and the
    /// members' back references are dropped lazily, when each agent is next changed.
    pub(super) async fn realm_delete(&mut self, realm_id: &str) -> R<()> {
        let Some(realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        for model_id in self.grants(realm_id).await?.keys() {
            self.op(Op::Hdel {
                key: keys::model_grants(model_id),
                field: realm_id.into(),
            });
        }
        for key in [
            keys::realm(realm_id),
            keys::realm_grants(realm_id),
            keys::sync_realm(realm_id),
        ] {
            self.op(Op::Del { key });
        }
        for key in [keys::realm_members(realm_id), keys::realm_routed(realm_id)] {
            self.op(Op::Unlink { key });
        }
        for set in [keys::REALMS, keys::ROTATING] {
            self.op(Op::Srem {
                key: set.into(),
                member: realm_id.into(),
            });
        }
        self.op(Op::Hdel {
            key: keys::REALM_SLUGS.into(),
            field: realm.slug.clone(),
        });
        self.forget_realm(realm_id);
        self.bump_realm_routing(realm_id).await?;
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
        Ok(Ok(()))
    }

    pub(super) async fn realm_grant(
        &mut self,
        model_id: &str,
        realm_id: &str,
        budget: Option<Option<f64>>,
    ) -> R<GrantResult> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(model) = self.model_ref(model_id).await? else {
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
                key_sealed: self.ctx.sealer.seal(Purpose::RealmKey, realm_id, &key)?,
                key_prefix: key_prefix(&key),
                monthly_budget_usd: None,
                created_at: self.now.clone(),
                updated_at: self.now.clone(),
                rotation: KeyRotation {
                    key_id: Some(key_id(&key)),
                    ..KeyRotation::default()
                },
                alerts: Default::default(),
                guard: None,
            });
            minted = true;
            key_changed = true;
        }
        let mut budget_changed = false;
        let mut unguarded = None;
        if let (Some(b), Some(k)) = (budget, realm.key.as_mut()) {
            if k.monthly_budget_usd != b {
                k.monthly_budget_usd = b;
                budget_changed = true;
                key_changed = true;
                // Thresholds are fractions of the budget: a new budget starts their record over.
                k.alerts = Default::default();
                // The guard blocked the keys at the old budget: a budget above what was spent (or none)
                // lifts it.
                if let Some(g) = k.guard.take_if(|g| b.is_none_or(|b| b > g.spend_usd)) {
                    unguarded = Some(g);
                }
            }
        }
        if key_changed {
            self.touch_realm_key(&mut realm);
            self.put_realm(realm.clone());
            self.bump_realm_routing(realm_id).await?;
        }
        if minted {
            self.configure_waiting_members(realm_id).await?;
        }
        if let Some(g) = unguarded {
            self.event(
                "realm.budget.unblocked",
                format!("realm:{realm_id}"),
                json!({"realmId": realm_id, "realmName": realm.name, "reason": "budget raised",
                    "spendUsd": g.spend_usd, "budgetUsd": budget.flatten(),
                    "periodResetAt": g.period_reset_at}),
            );
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
        Ok(Ok(GrantResult {
            grant: GrantView {
                model_id: model_id.into(),
                realm_id: realm_id.into(),
                granted_at,
            },
            router_key: views::router_key_view(&realm, &granted, &sync),
        }))
    }

    pub(super) async fn realm_revoke(&mut self, model_id: &str, realm_id: &str) -> R<()> {
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
        self.bump_realm_routing(realm_id).await?;
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
        Ok(Ok(()))
    }

    /// The realm just got its key: members without any config (they joined before its first grant,
    /// or before LiteLLM was configured) are configured as a join would have done (realm routing,
    /// first active model by name). Agents with a config, explicit or not, are left alone. This reads
    /// every member once, at the realm's first key only.
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
}
