//! LiteLLM sync: make LiteLLM match our state for one model deployment or one realm key.
//!
//! Sync is level-triggered: it reads the *current* desired state from Redis and the actual state from
//! LiteLLM, and does what differs. So it can be retried, repeated or reordered freely, and a redelivered
//! command never creates a second deployment or key: deployments are addressed by `model_info.id` (our
//! registry id) and keys by the value we chose (`key`), which LiteLLM returns unchanged when re-used.
//! One entity is synced by one worker at a time (a Redis lease).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vc_shared::budget::RealmLimits;
use vc_shared::crypto::{sha256_hex, Purpose, Sealer};
use vc_shared::domain::{now_rfc3339, ModelStatus, StoredModel, SyncRecord, SyncStateKind};
use vc_shared::rotation::is_due;
use vc_shared::store::{keys, Store, StoreError};
use vc_shared::views;

use crate::litellm::{KeyInfo, Litellm, LitellmError, TeamInfo};

/// Model name a realm key gets when it reaches no model: LiteLLM reads `[]` as *all* models.
pub const NO_MODELS: &str = "vc-no-models";
/// Alias prefix of realm keys (`vc-realm-<realmId>`).
pub const KEY_ALIAS_PREFIX: &str = "vc-realm-";
/// How long one entity's sync lease lasts unless renewed. The holder renews it every third of this
/// while it syncs (see [`leased`]), so a sync may take as long as it needs, and a worker that dies
/// holding the lease (kill -9, in the middle of a sync) blocks that entity's sync for at most 15 s.
/// It used to be a fixed 60 s lease: a crash blocked the entity for a minute, and a sync slower than a
/// minute (several LiteLLM calls at a 30 s timeout) lost its lease while still running.
pub const LEASE: Duration = Duration::from_secs(15);

/// Runs `f` under the lease `lock:{<name>}` (`ttl`, renewed every `ttl / 3` while `f` runs), then
/// releases it. `Ok(None)` when another holder has the lease. A renewal that fails (Redis unreachable
/// for longer than `ttl`) does not stop `f`: every leased task here is level-triggered and harmless to
/// run twice; the lease only avoids doing the work twice at once.
pub async fn leased<T>(
    store: &Store,
    name: &str,
    ttl: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<Option<T>, StoreError> {
    let Some(token) = store.try_lock(name, ttl).await? else {
        return Ok(None);
    };
    tokio::pin!(f);
    let every = ttl / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let out = loop {
        tokio::select! {
            v = &mut f => break v,
            _ = renew.tick() => {
                if !matches!(store.extend_lock(name, &token, ttl).await, Ok(true)) {
                    tracing::warn!(lease = name, "Lease lost while working; carrying on.");
                }
            }
        }
    };
    let _ = store.unlock(name, &token).await;
    Ok(Some(out))
}

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another worker holds the entity's lease: try later.
    #[error("another worker is syncing {0}")]
    Busy(String),
    /// LiteLLM failed.
    #[error(transparent)]
    Litellm(#[from] LitellmError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret could not be opened.
    #[error("stored secret could not be opened: {0}")]
    Crypto(#[from] vc_shared::crypto::CryptoError),
}

/// What a sync changed in LiteLLM (for drift reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Nothing differed.
    None,
    /// Created what was missing.
    Created,
    /// Changed what differed.
    Updated,
    /// Deleted what should not exist.
    Deleted,
    /// LiteLLM is not configured.
    Skipped,
}

/// What one realm key must look like in LiteLLM.
struct KeyWant<'a> {
    key: &'a str,
    alias: &'a str,
    team_id: &'a str,
    models: &'a [String],
    blocked: bool,
    budget: Option<f64>,
    limits: RealmLimits,
    metadata: &'a Value,
}

/// `rpm_limit`, `tpm_limit` and, for a key, `max_parallel_requests` into a key or team body (`null`
/// clears them). LiteLLM's team requests have no `max_parallel_requests`: the key carries it.
fn put_limits(body: &mut Value, l: &RealmLimits, key: bool) {
    body["rpm_limit"] = json!(l.rpm_limit);
    body["tpm_limit"] = json!(l.tpm_limit);
    if key {
        body["max_parallel_requests"] = json!(l.max_parallel_requests);
    }
}

/// The limits a team holds of `l` (see [`put_limits`]).
fn team_limits(l: &RealmLimits) -> RealmLimits {
    RealmLimits {
        max_parallel_requests: None,
        ..*l
    }
}

fn same_budget(want: Option<f64>, have: Option<f64>) -> bool {
    match (want, have) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => false,
    }
}

/// The sync engine.
#[derive(Clone)]
pub struct Syncer {
    /// LiteLLM client, when configured.
    pub litellm: Option<Litellm>,
    /// Store.
    pub store: Store,
    /// Sealer.
    pub sealer: Sealer,
}

/// Our digest of the deployment `m` must have in LiteLLM (`model_info.vc_hash`): a deployment whose
/// digest differs is re-created.
fn deployment_hash(m: &StoredModel, api_key: Option<&str>) -> String {
    let mut text = format!(
        "{}|{}|{}|{}",
        m.litellm_model_name,
        m.provider.litellm_upstream(&m.model_id),
        m.base_url.as_deref().unwrap_or(""),
        api_key.map(sha256_hex).unwrap_or_default()
    );
    // Prices join the digest only when one is set, so a deployment synced before prices existed keeps
    // its digest and is not re-created by the upgrade.
    if m.input_cost_per_token.is_some() || m.output_cost_per_token.is_some() {
        let price = |p: Option<f64>| p.map(|p| p.to_string()).unwrap_or_default();
        text.push_str(&format!(
            "|{}|{}",
            price(m.input_cost_per_token),
            price(m.output_cost_per_token)
        ));
    }
    sha256_hex(&text)[..16].to_string()
}

impl Syncer {
    async fn with_lease<T>(
        &self,
        name: String,
        f: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        match leased(&self.store, &name, LEASE, f).await? {
            Some(out) => out,
            None => Err(SyncError::Busy(name)),
        }
    }

    async fn record(
        &self,
        realm: bool,
        id: &str,
        gen: u64,
        result: &Result<Action, SyncError>,
    ) -> Result<(), StoreError> {
        let (key, prev) = if realm {
            (keys::sync_realm(id), self.store.sync_realm(id).await?)
        } else {
            (keys::sync_model(id), self.store.sync_model(id).await?)
        };
        let rec = match result {
            Ok(Action::Skipped) => SyncRecord {
                gen,
                state: Some(SyncStateKind::Skipped),
                last_error: None,
                synced_at: prev.synced_at,
            },
            Ok(_) => SyncRecord {
                gen,
                state: Some(SyncStateKind::Synced),
                last_error: None,
                synced_at: Some(now_rfc3339()),
            },
            Err(SyncError::Busy(_)) => return Ok(()),
            Err(e) => SyncRecord {
                gen,
                state: Some(SyncStateKind::Error),
                last_error: Some(e.to_string()),
                synced_at: prev.synced_at,
            },
        };
        self.store.put_sync_record(&key, &rec).await.map(|_| ())
    }

    /// Syncs one model's deployment.
    pub async fn sync_model(&self, id: &str) -> Result<Action, SyncError> {
        let this = self.clone();
        let id_owned = id.to_string();
        self.with_lease(format!("sync:model:{id}"), async move {
            let model = this.store.model(&id_owned).await?;
            let gen = model.as_ref().map(|m| m.gen).unwrap_or(0);
            let result = this.sync_model_locked(&id_owned, model.as_ref()).await;
            if model.is_some() {
                this.record(false, &id_owned, gen, &result).await?;
            }
            result
        })
        .await
    }

    async fn sync_model_locked(
        &self,
        id: &str,
        model: Option<&StoredModel>,
    ) -> Result<Action, SyncError> {
        let Some(ll) = &self.litellm else {
            return Ok(Action::Skipped);
        };
        let desired = model.filter(|m| m.status == ModelStatus::Active);
        let actual = ll.deployment(id).await?;
        match (desired, actual) {
            (None, None) => Ok(Action::None),
            (None, Some(_)) => {
                ll.delete_deployment(id).await?;
                Ok(Action::Deleted)
            }
            (Some(m), actual) => {
                let api_key = m
                    .api_key_sealed
                    .as_deref()
                    .map(|k| self.sealer.open(Purpose::ModelApiKey, &m.id, k))
                    .transpose()?;
                let hash = deployment_hash(m, api_key.as_deref());
                let existed = actual.is_some();
                if let Some(a) = actual {
                    if a.vc_hash.as_deref() == Some(hash.as_str())
                        && a.model_name == m.litellm_model_name
                    {
                        return Ok(Action::None);
                    }
                    // Delete + new under the same id takes effect at once; /model/update waits for the
                    // proxy's next reload from its database (spec: seen after 3 s to 27 s).
                    ll.delete_deployment(id).await?;
                }
                let mut params = json!({"model": m.provider.litellm_upstream(&m.model_id)});
                if let Some(b) = &m.base_url {
                    params["api_base"] = json!(b);
                }
                if let Some(k) = &api_key {
                    params["api_key"] = json!(k);
                }
                // LiteLLM charges these to the keys calling the deployment instead of its own prices.
                if let Some(p) = m.input_cost_per_token {
                    params["input_cost_per_token"] = json!(p);
                }
                if let Some(p) = m.output_cost_per_token {
                    params["output_cost_per_token"] = json!(p);
                }
                ll.create_deployment(json!({
                    "model_name": m.litellm_model_name,
                    "litellm_params": params,
                    "model_info": {"id": m.id, "vc_managed": true, "vc_hash": hash},
                }))
                .await?;
                Ok(if existed {
                    Action::Updated
                } else {
                    Action::Created
                })
            }
        }
    }

    /// Syncs one realm's key.
    pub async fn sync_realm(&self, realm_id: &str) -> Result<Action, SyncError> {
        let this = self.clone();
        let id = realm_id.to_string();
        self.with_lease(format!("sync:realm:{realm_id}"), async move {
            let realm = this.store.realm(&id).await?;
            let gen = realm.as_ref().map(|r| r.gen).unwrap_or(0);
            let result = this.sync_realm_locked(&id).await;
            if realm.as_ref().is_some_and(|r| r.key.is_some()) {
                this.record(true, &id, gen, &result).await?;
            }
            result
        })
        .await
    }

    async fn sync_realm_locked(&self, realm_id: &str) -> Result<Action, SyncError> {
        let Some(ll) = &self.litellm else {
            return Ok(Action::Skipped);
        };
        // The team holds the budget (spend survives key rotations); its id is the realm's alias.
        let team_id = format!("{KEY_ALIAS_PREFIX}{realm_id}");
        let realm = self.store.realm(realm_id).await?;
        let Some((realm, rk)) = realm.and_then(|r| r.key.clone().map(|k| (r, k))) else {
            // Deleting the team deletes its keys; a key from before teams goes by its alias.
            let team = ll.delete_team(&team_id).await?;
            let legacy = ll.delete_key_alias(&team_id).await?;
            return Ok(if team || legacy {
                Action::Deleted
            } else {
                Action::None
            });
        };
        let granted = views::load_realm_models(&self.store, realm_id).await?;
        let allowed = views::allowed_models(&granted);
        // No model: LiteLLM reads `[]` as all. The guard: the budget is spent (see `vc_shared::budget`).
        let blocked = allowed.is_empty() || rk.guard.is_some();
        let models = if allowed.is_empty() {
            vec![NO_MODELS.to_string()]
        } else {
            allowed
        };
        let metadata =
            json!({"vc_managed": true, "vc_realm_id": realm.id, "vc_realm_name": realm.name});
        let mut changed = false;
        let team = match ll.team_info(&team_id).await? {
            Some(t) => {
                let budget_same = same_budget(rk.monthly_budget_usd, t.max_budget)
                    && (rk.monthly_budget_usd.is_none()
                        || t.budget_duration.as_deref() == Some("1mo"));
                if !budget_same
                    || team_limits(&t.limits) != team_limits(&realm.limits)
                    || t.metadata.get("vc_realm_name") != metadata.get("vc_realm_name")
                {
                    let mut body = json!({
                        "team_id": team_id,
                        "team_alias": team_id,
                        "metadata": metadata,
                        "max_budget": rk.monthly_budget_usd,
                    });
                    put_limits(&mut body, &realm.limits, false);
                    if rk.monthly_budget_usd.is_some() {
                        body["budget_duration"] = json!("1mo");
                    }
                    ll.update_team(body).await?;
                    changed = true;
                }
                t
            }
            None => {
                let mut body = json!({
                    "team_id": team_id,
                    "team_alias": team_id,
                    "metadata": metadata,
                    "models": [],
                });
                if let Some(b) = rk.monthly_budget_usd {
                    body["max_budget"] = json!(b);
                    body["budget_duration"] = json!("1mo");
                }
                put_limits(&mut body, &realm.limits, false);
                ll.create_team(body).await?;
                changed = true;
                TeamInfo::default()
            }
        };
        // The keys that must work: replaced keys not yet due and a pending one, then the current key
        // (last, so that the alias naming the realm is free when it moves to a new current key).
        let mut desired: Vec<(String, String)> = Vec::new();
        for r in rk
            .rotation
            .retiring
            .iter()
            .filter(|r| !is_due(&r.retire_at))
        {
            let key = self
                .sealer
                .open(Purpose::RealmKey, realm_id, &r.key_sealed)?;
            desired.push((key, format!("{team_id}.{}", r.key_id)));
        }
        if let Some(p) = &rk.rotation.pending {
            let key = self
                .sealer
                .open(Purpose::RealmKey, realm_id, &p.key_sealed)?;
            desired.push((key, format!("{team_id}.{}", p.key_id)));
        }
        let current = self
            .sealer
            .open(Purpose::RealmKey, realm_id, &rk.key_sealed)?;
        desired.push((current, team_id.clone()));
        // Keys of the team that must not work (retired, replaced beyond the bound, or a pending key
        // that was superseded) go first: one of them may hold the alias the current key must take.
        let tokens: Vec<String> = desired.iter().map(|(k, _)| sha256_hex(k)).collect();
        for k in &team.keys {
            if let Some(t) = k
                .token
                .as_deref()
                .filter(|t| !tokens.iter().any(|d| d == t))
            {
                ll.delete_key(t).await?;
                changed = true;
            }
        }
        let mut current_created = false;
        for (i, (key, alias)) in desired.iter().enumerate() {
            let token = sha256_hex(key);
            let row = team
                .keys
                .iter()
                .find(|k| k.token.as_deref() == Some(token.as_str()))
                .cloned();
            let want = KeyWant {
                key,
                alias,
                team_id: &team_id,
                models: &models,
                blocked,
                budget: rk.monthly_budget_usd,
                limits: realm.limits,
                metadata: &metadata,
            };
            match self.sync_key(ll, &want, row).await? {
                Action::Created if i + 1 == desired.len() => {
                    current_created = true;
                    changed = true;
                }
                Action::None => {}
                _ => changed = true,
            }
        }
        Ok(if current_created {
            Action::Created
        } else if changed {
            Action::Updated
        } else {
            Action::None
        })
    }

    /// Makes one key match `want`, given its row in the team (`None`: not in the team, maybe not in
    /// LiteLLM at all, or a key from before teams).
    async fn sync_key(
        &self,
        ll: &Litellm,
        want: &KeyWant<'_>,
        row: Option<KeyInfo>,
    ) -> Result<Action, SyncError> {
        let mut body = json!({
            "key": want.key,
            "models": want.models,
            "key_alias": want.alias,
            "team_id": want.team_id,
            "metadata": want.metadata,
            "blocked": want.blocked,
        });
        if let Some(b) = want.budget {
            body["max_budget"] = json!(b);
            body["budget_duration"] = json!("1mo");
        }
        put_limits(&mut body, &want.limits, true);
        let info = match row {
            Some(r) => Some(r),
            None => ll.key_info(want.key).await?,
        };
        let Some(info) = info else {
            self.generate(ll, want.alias, body).await?;
            return Ok(Action::Created);
        };
        let mut have: Vec<&str> = info.models.iter().map(String::as_str).collect();
        let mut wanted: Vec<&str> = want.models.iter().map(String::as_str).collect();
        have.sort_unstable();
        wanted.sort_unstable();
        let budget_same = same_budget(want.budget, info.max_budget)
            && (want.budget.is_none() || info.budget_duration.as_deref() == Some("1mo"));
        let same = wanted == have
            && info.blocked == want.blocked
            && budget_same
            && info.key_alias.as_deref() == Some(want.alias)
            && info.team_id.as_deref() == Some(want.team_id)
            && info.limits == want.limits
            && info.metadata.get("vc_realm_name") == want.metadata.get("vc_realm_name");
        if same {
            return Ok(Action::None);
        }
        if want.budget.is_none() && info.max_budget.is_some() {
            // `null` does not clear a field on /key/update: re-create the key with the same value.
            ll.delete_key(want.key).await?;
            self.generate(ll, want.alias, body).await?;
            return Ok(Action::Updated);
        }
        if !ll.update_key(body.clone()).await? {
            self.generate(ll, want.alias, body).await?;
        }
        Ok(Action::Updated)
    }

    async fn generate(&self, ll: &Litellm, alias: &str, body: Value) -> Result<(), SyncError> {
        match ll.generate_key(body.clone()).await {
            Ok(()) => Ok(()),
            Err(LitellmError::Status { status: 400, .. }) => {
                // The alias is held by another key (e.g. a stale one): ours wins.
                ll.delete_key_alias(alias).await?;
                ll.generate_key(body).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use vc_shared::domain::Provider;

    use super::*;

    fn model() -> StoredModel {
        StoredModel {
            id: "m1".into(),
            name: "Llama".into(),
            description: None,
            provider: Provider::OpenAiCompatible,
            model_id: "llama3-8b".into(),
            base_url: Some("http://vllm:8000/v1".into()),
            api_key_sealed: None,
            litellm_model_name: "openai-compatible/llama".into(),
            status: ModelStatus::Active,
            created_at: String::new(),
            updated_at: String::new(),
            gen: 1,
            input_cost_per_token: None,
            output_cost_per_token: None,
        }
    }

    /// Without prices the digest is the one synced before prices existed; each price changes it.
    #[test]
    fn prices_change_the_deployment_hash_only_when_set() {
        let m = model();
        let before_prices = sha256_hex(&format!(
            "openai-compatible/llama|openai/llama3-8b|http://vllm:8000/v1|{}",
            sha256_hex("sk-1")
        ))[..16]
            .to_string();
        assert_eq!(deployment_hash(&m, Some("sk-1")), before_prices);
        let priced = |i: Option<f64>, o: Option<f64>| {
            deployment_hash(
                &StoredModel {
                    input_cost_per_token: i,
                    output_cost_per_token: o,
                    ..model()
                },
                Some("sk-1"),
            )
        };
        let hashes = [
            before_prices,
            priced(Some(1e-6), None),
            priced(None, Some(1e-6)),
            priced(Some(1e-6), Some(1e-6)),
            priced(Some(2e-6), Some(1e-6)),
            priced(Some(0.0), None),
        ];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(priced(Some(1e-6), None), priced(Some(1e-6), None));
    }
}
