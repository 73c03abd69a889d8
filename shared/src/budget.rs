//! Spend, limits and the brakes on them: a realm's rate limits, what it spent this budget period (read
//! from LiteLLM by the worker), the budget thresholds it crossed, and the budget guard.
//!
//! - **Limits** ([`RealmLimits`]) are the realm's: synced to its LiteLLM key and to its team, so they hold
//!   across key rotations (the team counts every key's requests together).
//! - **Spend** ([`RealmSpend`]) is the realm's LiteLLM team's: every key of the realm is created under it,
//!   so spend made with a replaced key still counts. The worker reads it beside the command lane,
//!   every `VC_SPEND_INTERVAL_SECS` and on demand, and stores it at `spend:{<realmId>}`.
//! - **Thresholds** (`VC_BUDGET_THRESHOLDS`, fractions of the budget) are recorded once per budget period
//!   each ([`BudgetAlerts`]), by a command of the worker, so the event, the audit entry and the change feed
//!   come from the one place every change comes from.
//! - **The guard** ([`BudgetGuard`]): when LiteLLM reports spend at or over the budget, the worker blocks
//!   the realm's keys itself (LiteLLM's own check has been bypassed before), until the period resets or
//!   the budget is raised above the spend.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Highest accepted limit value.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// Default `VC_BUDGET_THRESHOLDS`.
pub const DEFAULT_THRESHOLDS: [f64; 3] = [0.5, 0.8, 1.0];

/// A realm's request limits, enforced by LiteLLM on its key and its team (`null`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealmLimits {
    /// Requests per minute (LiteLLM `rpm_limit`).
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute (LiteLLM `tpm_limit`).
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    /// Requests in flight at once (LiteLLM `max_parallel_requests`).
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
}

impl RealmLimits {
    /// No limit set.
    pub fn is_empty(&self) -> bool {
        self == &RealmLimits::default()
    }
}

/// A change of limits: for each, `None` keeps it, `Some(None)` removes it, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    /// `rpmLimit`.
    pub rpm_limit: Option<Option<u64>>,
    /// `tpmLimit`.
    pub tpm_limit: Option<Option<u64>>,
    /// `maxParallelRequests`.
    pub max_parallel_requests: Option<Option<u64>>,
}

impl LimitsUpdate {
    /// `limits` with this change applied.
    pub fn apply(&self, mut limits: RealmLimits) -> RealmLimits {
        if let Some(v) = self.rpm_limit {
            limits.rpm_limit = v;
        }
        if let Some(v) = self.tpm_limit {
            limits.tpm_limit = v;
        }
        if let Some(v) = self.max_parallel_requests {
            limits.max_parallel_requests = v;
        }
        limits
    }
}

/// What the realm spent in its current budget period, as the worker last read it from LiteLLM
/// (`spend:{<realmId>}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmSpend {
    /// USD spent by the realm's keys this period (the LiteLLM team's `spend`).
    pub spend_usd: f64,
    /// When the period resets (the team's `budget_reset_at`); `None` without a budget period.
    pub period_reset_at: Option<String>,
    /// RFC 3339: when the worker read it.
    pub read_at: String,
}

/// `GET /api/realms/{id}/spend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendView {
    /// USD spent this budget period (0 until the worker first read it).
    pub spend_usd: f64,
    /// The monthly budget; `null` without one.
    pub budget_usd: Option<f64>,
    /// `budgetUsd - spendUsd`, at least 0; `null` without a budget.
    pub remaining_usd: Option<f64>,
    /// When the budget period resets (the 1st of next month, UTC); `null` without a budget.
    pub period_reset_at: Option<String>,
    /// When the worker read the spend from LiteLLM; `null` before its first read.
    pub read_at: Option<String>,
    /// Budget fractions crossed this period (e.g. `[0.5, 0.8]`).
    pub thresholds_crossed: Vec<f64>,
    /// The budget guard: set while the control plane itself blocks the realm's keys.
    pub guard: Option<BudgetGuard>,
}

impl SpendView {
    /// The view from the last reading (if any), the realm's budget, and its key's budget state.
    pub fn new(
        spend: Option<&RealmSpend>,
        budget: Option<f64>,
        alerts: &BudgetAlerts,
        guard: Option<&BudgetGuard>,
    ) -> SpendView {
        let spend_usd = spend.map_or(0.0, |s| s.spend_usd);
        let period = spend.and_then(|s| s.period_reset_at.clone());
        SpendView {
            spend_usd,
            budget_usd: budget,
            remaining_usd: budget.map(|b| (b - spend_usd).max(0.0)),
            period_reset_at: budget.and(period.clone()),
            read_at: spend.map(|s| s.read_at.clone()),
            thresholds_crossed: if alerts.period.is_some() && alerts.period == period {
                alerts.crossed.clone()
            } else {
                Vec::new()
            },
            guard: guard.cloned(),
        }
    }
}

/// Budget thresholds a realm crossed in one budget period (on its key record).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAlerts {
    /// The period they belong to: its `periodResetAt`.
    #[serde(default)]
    pub period: Option<String>,
    /// Fractions crossed, ascending.
    #[serde(default)]
    pub crossed: Vec<f64>,
}

impl BudgetAlerts {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.period.is_none() && self.crossed.is_empty()
    }

    /// Whether `fraction` was crossed already in `period`.
    pub fn has(&self, period: Option<&str>, fraction: f64) -> bool {
        self.period.as_deref() == period && self.crossed.iter().any(|f| same(*f, fraction))
    }

    /// Records `fraction` for `period` (a new period starts a new list).
    pub fn record(&mut self, period: Option<&str>, fraction: f64) {
        if self.period.as_deref() != period {
            self.period = period.map(str::to_string);
            self.crossed.clear();
        }
        if !self.crossed.iter().any(|f| same(*f, fraction)) {
            self.crossed.push(fraction);
            self.crossed.sort_by(f64::total_cmp);
        }
    }
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The control plane blocks the realm's keys itself: LiteLLM reported the budget spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetGuard {
    /// RFC 3339.
    pub blocked_at: String,
    /// Why, in words.
    pub reason: String,
    /// Spend LiteLLM reported (USD).
    pub spend_usd: f64,
    /// The budget it reached (USD).
    pub budget_usd: f64,
    /// The period it belongs to: the keys are unblocked once it has passed.
    pub period_reset_at: Option<String>,
}

/// Parses `VC_BUDGET_THRESHOLDS`: comma-separated fractions in (0, 10], e.g. `0.5,0.8,1.0`.
pub fn parse_thresholds(text: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 10.0 => out.push(f),
            _ => {
                return Err(format!(
                    "VC_BUDGET_THRESHOLDS: {part:?} is not a fraction of the budget from 0 (excluded) to 10, \
                     e.g. 0.5,0.8,1.0"
                ))
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out.dedup_by(|a, b| same(*a, *b));
    Ok(out)
}

/// The thresholds `spend / budget` has reached and `alerts` does not hold for `period`.
pub fn newly_crossed(
    thresholds: &[f64],
    spend: f64,
    budget: f64,
    alerts: &BudgetAlerts,
    period: Option<&str>,
) -> Vec<f64> {
    if budget <= 0.0 && spend <= 0.0 {
        return Vec::new();
    }
    thresholds
        .iter()
        .copied()
        .filter(|t| spend >= t * budget - 1e-12)
        .filter(|t| !alerts.has(period, *t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_cross_once_per_period() {
        assert_eq!(
            parse_thresholds("0.8, 0.5,1.0,0.5").unwrap(),
            vec![0.5, 0.8, 1.0]
        );
        assert!(parse_thresholds("0.5,abc").unwrap_err().contains("\"abc\""));
        assert!(parse_thresholds("0").is_err());
        assert_eq!(parse_thresholds("").unwrap(), Vec::<f64>::new());
        let t = [0.5, 0.8, 1.0];
        let mut a = BudgetAlerts::default();
        assert_eq!(
            newly_crossed(&t, 4.0, 10.0, &a, Some("p1")),
            Vec::<f64>::new()
        );
        assert_eq!(newly_crossed(&t, 8.5, 10.0, &a, Some("p1")), vec![0.5, 0.8]);
        a.record(Some("p1"), 0.5);
        a.record(Some("p1"), 0.8);
        assert_eq!(
            newly_crossed(&t, 9.0, 10.0, &a, Some("p1")),
            Vec::<f64>::new()
        );
        assert_eq!(newly_crossed(&t, 10.0, 10.0, &a, Some("p1")), vec![1.0]);
        // A new period starts over.
        assert_eq!(newly_crossed(&t, 6.0, 10.0, &a, Some("p2")), vec![0.5]);
        a.record(Some("p2"), 0.5);
        assert_eq!(a.crossed, vec![0.5]);
    }

    #[test]
    fn spend_view() {
        let s = RealmSpend {
            spend_usd: 12.5,
            period_reset_at: Some("2027-01-01T00:00:00Z".into()),
            read_at: "t".into(),
        };
        let mut alerts = BudgetAlerts::default();
        alerts.record(Some("2027-01-01T00:00:00Z"), 0.5);
        let v = SpendView::new(Some(&s), Some(10.0), &alerts, None);
        assert_eq!(v.remaining_usd, Some(0.0));
        assert_eq!(v.thresholds_crossed, vec![0.5]);
        let v = SpendView::new(Some(&s), None, &alerts, None);
        assert_eq!(
            (v.budget_usd, v.remaining_usd, v.period_reset_at),
            (None, None, None)
        );
        let v = SpendView::new(None, Some(10.0), &BudgetAlerts::default(), None);
        assert_eq!(
            (v.spend_usd, v.remaining_usd, v.read_at),
            (0.0, Some(10.0), None)
        );
        let up = LimitsUpdate {
            rpm_limit: Some(Some(2)),
            tpm_limit: Some(None),
            max_parallel_requests: None,
        };
        let l = up.apply(RealmLimits {
            rpm_limit: None,
            tpm_limit: Some(5),
            max_parallel_requests: Some(3),
        });
        assert_eq!(
            l,
            RealmLimits {
                rpm_limit: Some(2),
                tpm_limit: None,
                max_parallel_requests: Some(3)
            }
        );
    }
}
