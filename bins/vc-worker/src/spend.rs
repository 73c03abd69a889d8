//! The spend task: reads each realm's spend from LiteLLM beside the command lane (every
//! `VC_SPEND_INTERVAL_SECS`, one worker at a time, and on demand after a `realm.spend.refresh`), stores
//! it at `spend:{<realmId>}`, and turns what it read into the worker's budget commands:
//!
//! - `realm.budget.alert` for the thresholds (`VC_BUDGET_THRESHOLDS`) the spend has reached and the
//!   realm has not recorded for this budget period;
//! - `realm.budget.guard` `block: true` when LiteLLM reports the budget spent and the realm's keys are
//!   not blocked by the guard yet; `block: false` once the period the guard belongs to has passed.
//!
//! The spend is the realm's LiteLLM team's (`vc-realm-<id>`): every key of the realm, replaced ones
//! included, is created under it (decision 0013), so it is continuous across key rotations.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tracing::{debug, warn};
use vc_shared::budget::{newly_crossed, RealmSpend};
use vc_shared::command::CommandKind;
use vc_shared::domain::{now_rfc3339, StoredRealm};

use crate::sync::KEY_ALIAS_PREFIX;
use crate::Worker;

/// Realms read at once by a periodic pass.
const AT_ONCE: usize = 8;

/// The spend task's lease (renewed while a pass runs).
const LEASE: Duration = Duration::from_secs(30);

/// Reads every realm's spend every `worker.settings.budget.spend_every` until `shutdown` (never when
/// zero, or without LiteLLM).
pub async fn run_periodic(worker: Worker, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let every = worker.settings.budget.spend_every;
    if every.is_zero() || worker.syncer.litellm.is_none() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let pass = async {
            let realms = match worker.store.realms().await {
                Ok(r) => r,
                Err(e) => return warn!(error = %e, "Spend pass skipped: realms unreadable."),
            };
            futures::stream::iter(realms.into_iter().filter(|r| r.key.is_some()))
                .for_each_concurrent(AT_ONCE, |r| {
                    let worker = &worker;
                    async move {
                        if let Err(e) = refresh(worker, &r.id).await {
                            debug!(realm = %r.id, error = %e, "Spend not read; read again at the next pass.");
                        }
                    }
                })
                .await;
        };
        let _ = crate::sync::leased(&worker.store, "spend", LEASE, pass).await;
    }
}

/// Reads one realm's spend from LiteLLM, stores it, and sends the budget commands it calls for.
/// `Ok(None)` when there is nothing to read (no LiteLLM, no realm, no key, no team yet).
pub async fn refresh(worker: &Worker, realm_id: &str) -> Result<Option<RealmSpend>, String> {
    let Some(ll) = worker.syncer.litellm.as_ref() else {
        return Ok(None);
    };
    let Some(realm) = worker
        .store
        .realm(realm_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        let _ = worker.store.forget_realm_spend(realm_id).await;
        return Ok(None);
    };
    if realm.key.is_none() {
        return Ok(None);
    }
    let team = format!("{KEY_ALIAS_PREFIX}{realm_id}");
    let Some(t) = ll.team_info(&team).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let spend = RealmSpend {
        spend_usd: t.spend,
        period_reset_at: t.budget_reset_at,
        read_at: now_rfc3339(),
    };
    worker
        .store
        .put_realm_spend(realm_id, &spend)
        .await
        .map_err(|e| e.to_string())?;
    judge(worker, &realm, &spend).await?;
    Ok(Some(spend))
}

/// The budget commands a reading calls for.
async fn judge(worker: &Worker, realm: &StoredRealm, spend: &RealmSpend) -> Result<(), String> {
    let Some(k) = realm.key.as_ref() else {
        return Ok(());
    };
    let period = spend.period_reset_at.as_deref();
    let period_text = period.unwrap_or("none");
    if let Some(budget) = k.monthly_budget_usd {
        let fresh = newly_crossed(
            &worker.settings.budget.thresholds,
            spend.spend_usd,
            budget,
            &k.alerts,
            period,
        );
        if !fresh.is_empty() {
            let list: Vec<String> = fresh.iter().map(f64::to_string).collect();
            // The budget is part of the id: a new budget starts the thresholds over.
            let id = crate::own::derived_id(
                "budget-alert",
                &[&realm.id, period_text, &budget.to_string(), &list.join(",")],
            );
            let body = json!({"realmId": realm.id, "period": period, "spendUsd": spend.spend_usd,
                "budgetUsd": budget, "fractions": fresh});
            crate::own::publish(worker, CommandKind::RealmBudgetAlert, &id, "budget", &body)
                .await?;
        }
        if spend.spend_usd >= budget && k.guard.is_none() {
            let id = crate::own::derived_id(
                "budget-block",
                &[&realm.id, period_text, &budget.to_string()],
            );
            let body = json!({"realmId": realm.id, "period": period, "spendUsd": spend.spend_usd,
                "budgetUsd": budget, "block": true});
            crate::own::publish(worker, CommandKind::RealmBudgetGuard, &id, "budget", &body)
                .await?;
        }
    }
    if let Some(g) = &k.guard {
        // A new period (LiteLLM reset the team's spend): the guard's period has passed.
        if g.period_reset_at.as_deref() != period || period.is_none() {
            let id = crate::own::derived_id("budget-unblock", &[&realm.id, period_text]);
            let body = json!({"realmId": realm.id, "period": period, "spendUsd": spend.spend_usd,
                "budgetUsd": k.monthly_budget_usd.unwrap_or(0.0), "block": false});
            crate::own::publish(worker, CommandKind::RealmBudgetGuard, &id, "budget", &body)
                .await?;
        }
    }
    Ok(())
}
