//! Reconcile: compare LiteLLM with our whole state and repair it — re-create missing deployments by id
//! and missing realm keys with the same key value, fix changed ones, delete our orphans. Runs
//! periodically (one worker at a time, by lease) and on demand (`litellm.reconcile` command).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
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
    /// Realm keys re-created with their value.
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

/// Reconciles once, if no other worker is (lease). Errors are logged and counted.
pub async fn reconcile_once(worker: &Worker) {
    if worker.syncer.litellm.is_none() {
        return;
    }
    let _ = crate::sync::leased(&worker.store, "reconcile", LEASE, reconcile_locked(worker)).await;
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
                        let id = alias.trim_start_matches(KEY_ALIAS_PREFIX);
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
        reconcile_once(&worker).await;
        next = tokio::time::Instant::now() + every;
    }
}
