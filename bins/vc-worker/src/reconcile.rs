//! Reconcile: compare LiteLLM with our whole state and repair it — re-create missing deployments by id
//! and missing realm keys with the same key value, fix changed ones, delete our orphans. Runs
//! periodically (one worker at a time, by lease) and on demand (`litellm.reconcile` command).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use vc_shared::command::CommandKind;
use vc_shared::domain::now_rfc3339;

use crate::sync::{Action, KEY_ALIAS_PREFIX};
use crate::Worker;

/// Redis key of the last reconcile report (read by `GET /api/litellm/status`).
pub const STATUS_KEY: &str = "litellm:{status}";

/// What the last reconcile found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Deployments re-created.
    pub missing_deployments: u64,
    /// Deployments changed behind our back, repaired.
    pub changed_deployments: u64,
    /// Our deployments with no model, deleted.
    pub orphan_deployments: u64,
    /// Realm keys re-created with their value, or asked for (a realm granted models while LiteLLM
    /// was not configured).
    pub missing_keys: u64,
    /// Realm keys changed behind our back, repaired.
    pub changed_keys: u64,
    /// Our keys with no realm, deleted.
    pub orphan_keys: u64,
    /// Entities that could not be repaired this time.
    pub errors: u64,
}

/// The report stored at [`STATUS_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When it finished.
    pub last_reconcile_at: Option<String>,
    /// Whether LiteLLM answered.
    pub healthy: bool,
    /// Findings.
    pub drift: Drift,
}

/// How long the reconcile lease lasts unless renewed (it is renewed while the reconcile runs, so a
/// worker that dies in the middle of one blocks the next for at most this long; it was a fixed 300 s).
const LEASE: Duration = Duration::from_secs(30);

/// How long an on-demand reconcile waits for a running one (another worker's) to finish.
const REQUESTED_WAIT: Duration = Duration::from_secs(120);

/// Reconciles once, if no other worker is (lease); `false` when another held the lease. Errors are
/// logged and counted.
pub async fn reconcile_once(worker: &Worker) -> bool {
    if worker.syncer.litellm.is_none() {
        return false;
    }
    matches!(
        crate::sync::leased(&worker.store, "reconcile", LEASE, reconcile_locked(worker)).await,
        Ok(Some(()))
    )
}

/// The reconcile asked for by a `litellm.reconcile` command: one that *starts* after the request.
/// When another reconcile is running it may have read LiteLLM before the change that prompted the
/// request, so this one waits for the lease (up to [`REQUESTED_WAIT`]) instead of being skipped.
pub async fn reconcile_requested(worker: &Worker) {
    let deadline = tokio::time::Instant::now() + REQUESTED_WAIT;
    while !reconcile_once(worker).await {
        if worker.syncer.litellm.is_none() || tokio::time::Instant::now() >= deadline {
            warn!("Requested reconcile skipped: another one held the lease throughout.");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn reconcile_locked(worker: &Worker) {
    let Some(ll) = worker.syncer.litellm.clone() else {
        return;
    };
    let mut drift = Drift::default();
    let healthy = ll.health().await.is_ok();
    if healthy {
        if let Ok(models) = worker.store.models().await {
            for m in &models {
                match worker.syncer.sync_model(&m.id).await {
                    Ok(Action::Created) => drift.missing_deployments += 1,
                    Ok(Action::Updated) | Ok(Action::Deleted) => drift.changed_deployments += 1,
                    Ok(_) => {}
                    Err(_) => drift.errors += 1,
                }
            }
            match ll.deployments().await {
                Ok(deps) => {
                    for (id, d) in deps {
                        // Only deployments we created are ours to delete.
                        if d.vc_managed && !models.iter().any(|m| m.id == id) {
                            if ll.delete_deployment(&id).await.is_ok() {
                                drift.orphan_deployments += 1;
                            } else {
                                drift.errors += 1;
                            }
                        }
                    }
                }
                Err(_) => drift.errors += 1,
            }
        } else {
            drift.errors += 1;
        }
        if let Ok(realms) = worker.store.realms().await {
            for r in realms.iter().filter(|r| r.key.is_none()) {
                match mint_missing_key(worker, &r.id).await {
                    Ok(true) => drift.missing_keys += 1,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, realm = %r.id, "Could not ask for the realm's key.");
                        drift.errors += 1;
                    }
                }
            }
            for r in &realms {
                match worker.syncer.sync_realm(&r.id).await {
                    Ok(Action::Created) => drift.missing_keys += 1,
                    Ok(Action::Updated) | Ok(Action::Deleted) => drift.changed_keys += 1,
                    Ok(_) => {}
                    Err(_) => drift.errors += 1,
                }
            }
            match ll.key_aliases(KEY_ALIAS_PREFIX).await {
                Ok(aliases) => {
                    for alias in aliases {
                        // `vc-realm-<id>` (current key) or `vc-realm-<id>.<keyId>` (a rotation's
                        // pending or replaced key): realm ids never hold a '.'.
                        let id = alias
                            .trim_start_matches(KEY_ALIAS_PREFIX)
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        if !realms.iter().any(|r| r.id == id && r.key.is_some()) {
                            if ll.delete_key_alias(&alias).await.is_ok() {
                                drift.orphan_keys += 1;
                            } else {
                                drift.errors += 1;
                            }
                        }
                    }
                }
                Err(_) => drift.errors += 1,
            }
        } else {
            drift.errors += 1;
        }
    }
    let report = Report {
        last_reconcile_at: Some(now_rfc3339()),
        healthy,
        drift,
    };
    info!(healthy, drift = ?report.drift, "LiteLLM reconcile finished.");
    let mut c = worker.store.conn();
    let set: Result<(), _> = redis::cmd("SET")
        .arg(STATUS_KEY)
        .arg(serde_json::to_string(&report).unwrap_or_default())
        .query_async(&mut c)
        .await;
    if let Err(e) = set {
        warn!(error = %e, "Could not store the reconcile report.");
    }
}

/// A realm granted models while LiteLLM was not configured has no key: grants mint the realm's key
/// only when LiteLLM is configured. Once it is, the reconcile asks for the key through the command
/// queue (never by writing the catalog itself, which would race with commands): it publishes a
/// `realm.grant` of a model the realm already holds, budget unchanged, which mints the key, re-resolves
/// the realm's agents (they are pushed the key) and syncs LiteLLM, in order with every other command.
/// Its `Nats-Msg-Id` is derived from the realm and the catalog revision, so workers reconciling at once
/// send it once. `Ok(true)` when a key was asked for.
async fn mint_missing_key(worker: &Worker, realm_id: &str) -> Result<bool, String> {
    let grants = worker
        .store
        .realm_grants(realm_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some(model_id) = grants.iter().map(|(m, _)| m.clone()).min() else {
        return Ok(false);
    };
    let rev = worker.store.rev().await.map_err(|e| e.to_string())?;
    let id = crate::own::derived_id("reconcile-mint", &["vc-mint", realm_id, &rev.to_string()]);
    let body = serde_json::json!({"modelId": model_id, "realmId": realm_id});
    crate::own::publish(worker, CommandKind::RealmGrant, &id, "reconcile", &body).await?;
    info!(realm = %realm_id, "Realm without a key: asked for one (realm.grant of a held model).");
    Ok(true)
}

/// Periodic reconcile until `shutdown`.
pub async fn run_periodic(
    worker: Worker,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if every.is_zero() || worker.syncer.litellm.is_none() {
        return;
    }
    // First pass soon after start: repairs a LiteLLM that lost state while we were down.
    let mut next = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
        let _ = reconcile_once(&worker).await;
        next = tokio::time::Instant::now() + every;
    }
}
