//! Rate limits on chat calls, as the proxy's v3 parallel-request limiter applies them on a single
//! instance (in-memory counters).
//!
//! A call counts against *descriptors*, in this order: its key (`api_key: <token>`, when the key
//! has an `rpm_limit`, `tpm_limit` or `max_parallel_requests`), then the key's team (`team:
//! <team_id>`, when the team exists and has an `rpm_limit` or `tpm_limit`; a team has no
//! `max_parallel_requests`). So a team's `rpm_limit` counts the requests of all its keys together.
//! Each descriptor has a fixed one-minute window opened by its first counted call. For each call:
//!
//! 1. a counter already **over** its limit → 429, nothing counted;
//! 2. otherwise every limited counter of every descriptor is incremented — requests by 1, tokens
//!    by 1 too (the proxy's pre-call step adds one to each counter of the window), parallel calls
//!    by 1 — and a counter now over its limit → 429. The refused call still counts, everywhere: a
//!    call the team refuses spends a request of the key's window as well;
//! 3. a served call adds its `completion_tokens` (the proxy's default `token_rate_limit_type` is
//!    `output`) to the token counters and ends its parallel slot.
//!
//! The first counter over its limit (key before team; requests, tokens, parallel) names the 429:
//! `Rate limit exceeded for api_key: <token>. Limit type: requests. Current limit: 2, Remaining: 0.
//! Limit resets at: <window end>` (`team: <team_id>`, `tokens`, `max_parallel_requests` alike).
//! With the default 5 completion tokens per call, a `tpm_limit` of 10 lets two calls a minute
//! through (counters 6, then 12), and refuses the third.
//!
//! `max_parallel_requests` is enforced as the proxy does, but the emulator answers a call at once:
//! calls never overlap, so only a limit of 0 (every call refused) ever binds.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use crate::error::ApiError;
use crate::pytime;
use crate::state::{Team, VirtualKey};

/// Length of a rate-limit window.
const RATE_WINDOW: Duration = Duration::minutes(1);

/// One descriptor's counters in its current window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateWindow {
    started: OffsetDateTime,
    requests: i64,
    tokens: i64,
}

impl RateWindow {
    fn open(now: OffsetDateTime) -> Self {
        RateWindow {
            started: now,
            requests: 0,
            tokens: 0,
        }
    }
}

/// What one call counts against: a key or a team, with its limits.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// `api_key` or `team`, as the 429 names it.
    kind: &'static str,
    /// The key's token or the team's id.
    value: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
    parallel: Option<i64>,
}

impl Scope {
    fn id(&self) -> String {
        format!("{}:{}", self.kind, self.value)
    }

    /// The counters with a limit, in the proxy's order: `(type, limit, count at admission)`.
    /// A parallel slot is free again when its call returns, so only this call occupies one.
    fn counters(&self, w: &RateWindow) -> Vec<(&'static str, i64, i64)> {
        let mut out = Vec::new();
        if let Some(l) = self.rpm {
            out.push(("requests", l, w.requests));
        }
        if let Some(l) = self.tpm {
            out.push(("tokens", l, w.tokens));
        }
        if let Some(l) = self.parallel {
            out.push(("max_parallel_requests", l, 0));
        }
        out
    }
}

/// The descriptors a call with `vk` counts against: the key, then its team, each when limited.
pub(crate) fn scopes(vk: &VirtualKey, team: Option<&Team>) -> Vec<Scope> {
    let mut out = Vec::new();
    if vk.rpm_limit.is_some() || vk.tpm_limit.is_some() || vk.max_parallel_requests.is_some() {
        out.push(Scope {
            kind: "api_key",
            value: vk.token.clone(),
            rpm: vk.rpm_limit,
            tpm: vk.tpm_limit,
            parallel: vk.max_parallel_requests,
        });
    }
    if let Some(t) = team.filter(|t| t.rpm_limit.is_some() || t.tpm_limit.is_some()) {
        out.push(Scope {
            kind: "team",
            value: t.team_id.clone(),
            rpm: t.rpm_limit,
            tpm: t.tpm_limit,
            parallel: None,
        });
    }
    out
}

fn exceeded(scope: &Scope, kind: &str, limit: i64, window: &RateWindow) -> ApiError {
    ApiError::untyped(
        429,
        format!(
            "Rate limit exceeded for {}: {}. Limit type: {kind}. Current limit: {limit}, Remaining: 0. Limit resets at: {}",
            scope.kind,
            scope.value,
            pytime::rate_limit_reset(window.started + RATE_WINDOW)
        ),
    )
}

/// The current window of `scope`, opening a new one when the last has ended.
fn window<'a>(
    rate: &'a mut HashMap<String, RateWindow>,
    scope: &Scope,
    now: OffsetDateTime,
) -> &'a mut RateWindow {
    let w = rate
        .entry(scope.id())
        .or_insert_with(|| RateWindow::open(now));
    if now >= w.started + RATE_WINDOW {
        *w = RateWindow::open(now);
    }
    w
}

/// The first counter over its limit, if any.
fn first_over(
    rate: &mut HashMap<String, RateWindow>,
    scopes: &[Scope],
    now: OffsetDateTime,
    occupied: i64,
) -> Option<ApiError> {
    for scope in scopes {
        let w = *window(rate, scope, now);
        for (kind, limit, count) in scope.counters(&w) {
            let count = if kind == "max_parallel_requests" {
                count + occupied
            } else {
                count
            };
            if count > limit {
                return Some(exceeded(scope, kind, limit, &w));
            }
        }
    }
    None
}

/// Admit a call against `scopes` (steps 1 and 2 above), or answer the 429.
pub(crate) fn admit(
    rate: &mut HashMap<String, RateWindow>,
    scopes: &[Scope],
) -> Result<(), ApiError> {
    let now = pytime::now();
    if let Some(e) = first_over(rate, scopes, now, 0) {
        return Err(e);
    }
    for scope in scopes {
        let w = window(rate, scope, now);
        if scope.rpm.is_some() {
            w.requests += 1;
        }
        if scope.tpm.is_some() {
            w.tokens += 1;
        }
    }
    match first_over(rate, scopes, now, 1) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Count a served call's tokens in the windows of `scopes` (step 3 above).
pub(crate) fn record_tokens(rate: &mut HashMap<String, RateWindow>, scopes: &[Scope], tokens: u32) {
    let now = pytime::now();
    for scope in scopes {
        window(rate, scope, now).tokens += i64::from(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(rpm: Option<i64>, tpm: Option<i64>) -> Scope {
        Scope {
            kind: "api_key",
            value: "tok".into(),
            rpm,
            tpm,
            parallel: None,
        }
    }

    #[test]
    fn a_window_ends_after_a_minute() {
        let mut rate = HashMap::new();
        let s = [scope(Some(1), None)];
        assert!(admit(&mut rate, &s).is_ok());
        assert!(admit(&mut rate, &s).is_err());
        assert!(
            admit(&mut rate, &s).is_err(),
            "over the limit: refused at once"
        );
        if let Some(w) = rate.get_mut("api_key:tok") {
            w.started -= Duration::seconds(61);
        }
        assert!(admit(&mut rate, &s).is_ok(), "a new window");
        assert_eq!(rate["api_key:tok"].requests, 1);
    }

    #[test]
    fn tokens_count_one_at_admission_and_the_completion_after() {
        let mut rate = HashMap::new();
        let s = [scope(None, Some(10))];
        assert!(admit(&mut rate, &s).is_ok());
        record_tokens(&mut rate, &s, 5);
        assert_eq!(rate["api_key:tok"].tokens, 6);
        assert!(admit(&mut rate, &s).is_ok());
        record_tokens(&mut rate, &s, 5);
        let err = admit(&mut rate, &s).err().map(|e| format!("{e:?}"));
        assert!(
            err.is_some_and(|e| e.contains("Limit type: tokens. Current limit: 10, Remaining: 0.")),
            "12 > 10"
        );
        assert_eq!(
            rate["api_key:tok"].tokens, 12,
            "a refused call adds nothing"
        );
    }
}
