//! What a call costs, and the end of a budget period.
//!
//! A deployment created (or updated) with `litellm_params.input_cost_per_token` and
//! `output_cost_per_token` (USD per token) is charged at those prices: a call costs
//! `prompt_tokens * input + completion_tokens * output`, with the token counts of the usage the
//! emulated completion reports ([`CANNED_USAGE`]); a missing price counts as 0. A deployment
//! without either price is charged [`crate::EmulatorConfig::spend_per_request`]. Prices are read
//! from the router's view of the deployment, so a `POST /model/update` that changes them applies
//! after the reload delay, like any other `litellm_params`.
//!
//! The prices are `Optional[float]` fields of the proxy's `LiteLLM_Params`: Pydantic (lax mode)
//! takes numbers, numeric strings and booleans, stores them as floats, and answers 422 for
//! anything else.
//!
//! Budget periods: the proxy's reset job (every ten minutes or so) finds the keys and teams whose
//! `budget_reset_at` has passed, sets their `spend` to 0 and, when they have a `budget_duration`,
//! their `budget_reset_at` to the next reset computed from the time of the run (a row without
//! `budget_duration` — a team whose duration was cleared — keeps its stale `budget_reset_at` and
//! is reset again at every run). Expired keys are skipped. The emulator has no such job: a test
//! ends the period with [`crate::Emulator::end_budget_period`], which runs it as if at each
//! row's `budget_reset_at` (or now, if that has passed already).

use serde_json::{json, Map, Number, Value};
use time::OffsetDateTime;

use crate::error::detail;
use crate::pytime;
use crate::state::Db;

/// The `litellm_params` that price a deployment, USD per token.
pub(crate) const PRICE_PARAMS: [&str; 2] = ["input_cost_per_token", "output_cost_per_token"];

/// The token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
}

impl Usage {
    pub(crate) fn total_tokens(self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The usage every emulated completion reports, and what it is charged for.
pub(crate) const CANNED_USAGE: Usage = Usage {
    prompt_tokens: 10,
    completion_tokens: 5,
};

/// What a call with `usage` to a deployment routed with `params` costs, or `None` when the
/// deployment has no price (the caller then charges the configured default).
pub(crate) fn priced_cost(params: &Map<String, Value>, usage: Usage) -> Option<f64> {
    let price = |name: &str| params.get(name).and_then(Value::as_f64);
    let (input, output) = (price(PRICE_PARAMS[0]), price(PRICE_PARAMS[1]));
    if input.is_none() && output.is_none() {
        return None;
    }
    let (prompt, completion) = (
        f64::from(usage.prompt_tokens),
        f64::from(usage.completion_tokens),
    );
    Some(prompt * input.unwrap_or(0.0) + completion * output.unwrap_or(0.0))
}

/// Validate and coerce the prices in a request's `litellm_params` as Pydantic does: numbers are
/// kept, numeric strings and booleans become numbers, `null` is left for the caller to drop.
/// Returns the 422 entries for the values that are not numbers.
pub(crate) fn coerce_prices(params: &mut Map<String, Value>) -> Vec<Value> {
    let mut errors = Vec::new();
    for name in PRICE_PARAMS {
        let Some(v) = params.get_mut(name) else {
            continue;
        };
        let coerced = match &*v {
            Value::Null | Value::Number(_) => continue,
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        match coerced.and_then(Number::from_f64) {
            Some(n) => *v = Value::Number(n),
            None => {
                let (kind, msg) = if v.is_string() {
                    (
                        "float_parsing",
                        "Input should be a valid number, unable to parse string as a number",
                    )
                } else {
                    ("float_type", "Input should be a valid number")
                };
                errors.push(detail(
                    kind,
                    vec![json!("body"), json!("litellm_params"), json!(name)],
                    msg,
                    v.clone(),
                ));
            }
        }
    }
    errors
}

/// When the reset job, run at `job`, moves a budget set with `budget_duration` next; `None`
/// (the row keeps its `budget_reset_at`) without a duration.
fn next_reset(budget_duration: Option<&str>, job: OffsetDateTime) -> Option<OffsetDateTime> {
    // The duration was accepted when the row was written: only date overflow could fail here.
    budget_duration.and_then(|d| pytime::budget_reset_at(d, job).ok())
}

/// End the budget period of every key and team whose `budget_reset_at` is set, as the proxy's
/// reset job does when it runs at that moment: `spend` = 0, `budget_reset_at` = the next reset.
/// Returns how many rows (keys and teams) were reset.
pub(crate) fn end_budget_period(db: &mut Db, now: OffsetDateTime) -> usize {
    let updated = pytime::db_time(now);
    let mut reset = 0;
    for vk in &mut db.keys {
        let Some(at) = vk.budget_reset_at else {
            continue;
        };
        let job = at.max(now);
        if vk.expires.is_some_and(|e| e <= job) {
            continue;
        }
        vk.spend = 0.0;
        if let Some(next) = next_reset(vk.budget_duration.as_deref(), job) {
            vk.budget_reset_at = Some(next);
        }
        vk.updated_at = updated;
        reset += 1;
    }
    for team in &mut db.teams {
        let Some(at) = team.budget_reset_at else {
            continue;
        };
        team.spend = 0.0;
        if let Some(next) = next_reset(team.budget_duration.as_deref(), at.max(now)) {
            team.budget_reset_at = Some(next);
        }
        team.updated_at = updated;
        reset += 1;
    }
    reset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn prices_make_the_cost() {
        let p = params(json!({"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}));
        assert_eq!(
            priced_cost(&p, CANNED_USAGE),
            Some(10.0 * 0.001 + 5.0 * 0.002)
        );
        let only_input = params(json!({"input_cost_per_token": 0.001}));
        assert_eq!(priced_cost(&only_input, CANNED_USAGE), Some(0.01));
        assert_eq!(
            priced_cost(&params(json!({"model": "x"})), CANNED_USAGE),
            None
        );
        assert_eq!(CANNED_USAGE.total_tokens(), 15);
    }

    #[test]
    fn prices_are_coerced_like_pydantic() {
        let mut p = params(json!({
            "input_cost_per_token": "0.5", "output_cost_per_token": true, "model": "x",
        }));
        assert!(coerce_prices(&mut p).is_empty());
        assert_eq!(p["input_cost_per_token"], json!(0.5));
        assert_eq!(p["output_cost_per_token"], json!(1.0));
        let mut bad = params(json!({"input_cost_per_token": "cheap", "output_cost_per_token": []}));
        let errors = coerce_prices(&mut bad);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["type"], "float_parsing");
        assert_eq!(
            errors[0]["loc"],
            json!(["body", "litellm_params", "input_cost_per_token"])
        );
        assert_eq!(errors[1]["type"], "float_type");
    }

    #[test]
    fn the_next_period_follows_the_last() {
        use time::macros::datetime;
        let dec1 = datetime!(2026-12-01 0:00 UTC);
        assert_eq!(
            next_reset(Some("30d"), dec1),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            next_reset(Some("1d"), dec1),
            Some(datetime!(2026-12-02 0:00 UTC))
        );
        // 2026-11-30 is a Monday: the next weekly reset is a week on.
        assert_eq!(
            next_reset(Some("7d"), datetime!(2026-11-30 0:00 UTC)),
            Some(datetime!(2026-12-07 0:00 UTC))
        );
        assert_eq!(
            next_reset(Some("1h"), datetime!(2026-11-25 11:00 UTC)),
            Some(datetime!(2026-11-25 12:00 UTC))
        );
        assert_eq!(next_reset(None, dec1), None);
    }
}
