//! The key rotation driver: moves each realm key rotation on (see `vc_shared::rotation`).
//!
//! - A **pending** key is activated (`realm.key.activate`) once the realm's sync is recorded at the
//!   realm's current generation: LiteLLM holds the new key, so members can be sent it.
//! - A **replaced** key is retired (`realm.key.retire`) once its grace period has passed, or earlier,
//!   once every online agent routed through the realm has acknowledged the version that carried the
//!   new key and [`ACKED_HOLD_SECS`] has passed since the replacement (a request an agent sent with the old
//!   key just before it switched still reaches LiteLLM while the key works).
//!
//! Both are commands on `vc.cmd.worker.<kind>`, so they apply in order with every other command, and
//! their `Nats-Msg-Id` is derived from the realm and the key: workers that see the same step at once
//! (the driver runs on every worker, and after every realm sync) send it once. LiteLLM is never called
//! here: the syncs that follow the commands create and delete keys.

use std::time::Duration;

use tracing::{debug, warn};
use vc_shared::command::CommandKind;
use vc_shared::domain::SyncStateKind;
use vc_shared::rotation::{is_due, rfc3339_after};

use crate::Worker;

/// How often the driver looks at the realms being rotated.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a replaced key keeps working at least, even once every online member acknowledged the
/// new one (unless its grace period is shorter).
pub const ACKED_HOLD_SECS: u64 = 2;

/// The driver's lease (renewed while a pass runs).
const LEASE: Duration = Duration::from_secs(10);

/// Runs the driver until `shutdown`: every [`CHECK_EVERY`], each realm being rotated is moved on.
pub async fn run(worker: Worker, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // One worker at a time makes the pass (the ack scans are not worth doing twice).
        let pass = async {
            match worker.store.rotating_realms().await {
                Ok(realms) => {
                    for id in realms {
                        advance(&worker, &id).await;
                    }
                }
                Err(e) => debug!(error = %e, "Could not read the realms being rotated."),
            }
        };
        let _ = crate::sync::leased(&worker.store, "rotation", LEASE, pass).await;
    }
}

/// Moves one realm's rotation on, if a step is due. Failures are logged: the next pass retries.
pub async fn advance(worker: &Worker, realm_id: &str) {
    if let Err(e) = try_advance(worker, realm_id).await {
        warn!(realm = %realm_id, error = %e, "Key rotation step not sent; retried at the next pass.");
    }
}

async fn try_advance(worker: &Worker, realm_id: &str) -> Result<(), String> {
    let store = &worker.store;
    let Some(realm) = store.realm(realm_id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let Some(key) = realm.key.as_ref() else {
        return Ok(());
    };
    if let Some(p) = &key.rotation.pending {
        let ready = match worker.syncer.litellm {
            // Nothing to create: LiteLLM is not configured (any more).
            None => true,
            Some(_) => {
                let rec = store
                    .sync_realm(realm_id)
                    .await
                    .map_err(|e| e.to_string())?;
                rec.gen >= realm.gen && rec.state == Some(SyncStateKind::Synced)
            }
        };
        if ready {
            publish(worker, CommandKind::RealmKeyActivate, realm_id, &p.key_id).await?;
        }
    }
    for r in &key.rotation.retiring {
        let done = is_due(&r.retire_at)
            || (is_due(&rfc3339_after(&r.replaced_at, ACKED_HOLD_SECS))
                && store
                    .first_unacked_online(realm_id, r.replaced_by_version)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none());
        if done {
            publish(worker, CommandKind::RealmKeyRetire, realm_id, &r.key_id).await?;
        }
    }
    Ok(())
}

async fn publish(
    worker: &Worker,
    kind: CommandKind,
    realm_id: &str,
    key_id: &str,
) -> Result<(), String> {
    let id = crate::own::derived_id("rotation", &[kind.as_str(), realm_id, key_id]);
    let body = serde_json::json!({"realmId": realm_id, "keyId": key_id});
    crate::own::publish(worker, kind, &id, "rotation", &body).await?;
    debug!(realm = %realm_id, key = %key_id, kind = kind.as_str(), "Key rotation step sent.");
    Ok(())
}
