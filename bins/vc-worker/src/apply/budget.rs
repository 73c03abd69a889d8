//! `realm.spend.refresh`, `realm.budget.alert`, `realm.budget.guard` (see `vc_shared::budget`).
//!
//! The lane never reads LiteLLM: the worker's spend task reads the realm's spend beside it and issues
//! the budget commands; these only record what it read (once per period and threshold), so the events,
//! the audit entries and the change feed come from the lane like every other change.

use serde_json::json;
use vc_shared::budget::BudgetGuard;
use vc_shared::command::{BudgetReport, KeyResult, SpendResult};
use vc_shared::error::DomainError;
use vc_shared::views;

use super::tx::Tx;
use super::{refuse, R};

impl Tx<'_> {
    /// Asks the command's job to read the realm's spend from LiteLLM now; the outcome carries it.
    pub(super) async fn realm_spend_refresh(&mut self, realm_id: &str) -> R<SpendResult> {
        let Some(realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        self.effects.spend_realms.insert(realm_id.to_string());
        let spend = self.ctx.store.realm_spend(realm_id).await?;
        Ok(Ok(SpendResult {
            realm_id: realm_id.into(),
            spend: views::spend_view(&realm, spend.as_ref()),
        }))
    }

    /// Records the thresholds of `r` not yet recorded for its period: one `realm.budget.threshold` event
    /// each (audit, `vc.evt.realm.budget.threshold`, `/api/events`, webhooks).
    pub(super) async fn realm_budget_alert(&mut self, r: BudgetReport) -> R<KeyResult> {
        let Some(mut realm) = self.realm(&r.realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {} not found",
                r.realm_id
            )))
        };
        let Some(k) = realm.key.as_mut() else {
            refuse!(DomainError::conflict(format!(
                "realm {} has no key, so no budget",
                r.realm_id
            )))
        };
        let mut fresh = Vec::new();
        for f in &r.fractions {
            if !k.alerts.has(r.period.as_deref(), *f) {
                k.alerts.record(r.period.as_deref(), *f);
                fresh.push(*f);
            }
        }
        if !fresh.is_empty() {
            self.put_realm(realm.clone());
            for f in fresh {
                self.event(
                    "realm.budget.threshold",
                    format!("realm:{}", r.realm_id),
                    json!({"realmId": r.realm_id, "realmName": realm.name, "fraction": f,
                        "spendUsd": r.spend_usd, "budgetUsd": r.budget_usd,
                        "periodResetAt": r.period}),
                );
            }
        }
        Ok(Ok(self.key_result(&realm).await?))
    }

    /// Blocks the realm's keys (LiteLLM reported the budget spent) or unblocks them (a new period).
    pub(super) async fn realm_budget_guard(
        &mut self,
        r: BudgetReport,
        block: bool,
    ) -> R<KeyResult> {
        let Some(mut realm) = self.realm(&r.realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {} not found",
                r.realm_id
            )))
        };
        let Some(k) = realm.key.as_mut() else {
            refuse!(DomainError::conflict(format!(
                "realm {} has no key, so no budget",
                r.realm_id
            )))
        };
        let changed = match (block, &k.guard) {
            (true, None) => {
                // The reading must still hold: a budget raised or removed since then wins.
                match k.monthly_budget_usd {
                    Some(b) if r.spend_usd >= b => {}
                    _ => refuse!(DomainError::conflict(format!(
                        "the budget of realm {} is no longer spent",
                        r.realm_id
                    ))),
                }
                k.guard = Some(BudgetGuard {
                    blocked_at: self.now.clone(),
                    reason: format!(
                        "LiteLLM reported {:.6} USD spent of the {:.2} USD monthly budget",
                        r.spend_usd, r.budget_usd
                    ),
                    spend_usd: r.spend_usd,
                    budget_usd: r.budget_usd,
                    period_reset_at: r.period.clone(),
                });
                true
            }
            (false, Some(g)) if g.period_reset_at != r.period || r.period.is_none() => {
                k.guard = None;
                true
            }
            _ => false,
        };
        if changed {
            // The keys' `blocked` changes in LiteLLM; nothing is pushed (the agents' configs do not).
            self.touch_realm_key(&mut realm);
            self.put_realm(realm.clone());
            let kind = if block {
                "realm.budget.blocked"
            } else {
                "realm.budget.unblocked"
            };
            let reason = if block {
                "budget spent"
            } else {
                "new budget period"
            };
            self.event(
                kind,
                format!("realm:{}", r.realm_id),
                json!({"realmId": r.realm_id, "realmName": realm.name, "reason": reason,
                    "spendUsd": r.spend_usd, "budgetUsd": r.budget_usd, "periodResetAt": r.period}),
            );
        }
        Ok(Ok(self.key_result(&realm).await?))
    }
}
