//! Per-token limits: a request rate (GCRA, `governor`) and a number of requests in flight, for each
//! caller (the admin token, each realm-admin token; a session counts as its token). Beyond either, the
//! answer is `429 TOO_MANY_REQUESTS` with `Retry-After`. One token cannot starve the others, and a
//! leaked token cannot be used to flood the command lane from one API instance.
//!
//! The change feed (`GET /api/events`) counts against the rate when it connects, not against the
//! requests in flight (it stays open for hours).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one API instance.
pub struct TokenLimits {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    concurrency: usize,
    inflight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the token's request rate.
    Rate(Duration),
    /// Too many of the token's requests in flight.
    Concurrency,
}

impl Refusal {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate(d) => d.as_secs() + u64::from(d.subsec_nanos() > 0),
            Refusal::Concurrency => 1,
        }
        .max(1)
    }
}

/// Held while a request runs: gives its in-flight slot back when dropped.
pub struct Admitted {
    _permit: Option<OwnedSemaphorePermit>,
}

impl TokenLimits {
    /// `rate` requests per second per token with bursts of `burst`, and at most `concurrency` in flight
    /// per token; `0` turns a limit off.
    pub fn new(rate: u32, burst: u32, concurrency: u32) -> Self {
        let rate = NonZeroU32::new(rate).map(|r| {
            let burst = NonZeroU32::new(burst.max(1)).unwrap_or(r);
            RateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        Self {
            rate,
            concurrency: concurrency as usize,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// No limits.
    pub fn unlimited() -> Self {
        Self::new(0, 0, 0)
    }

    /// Admits one request of `token` (`long_lived`: not counted in flight).
    pub fn admit(&self, token: &str, long_lived: bool) -> Result<Admitted, Refusal> {
        if let Some(r) = &self.rate {
            if let Err(not_until) = r.check_key(&token.to_string()) {
                return Err(Refusal::Rate(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ));
            }
        }
        if self.concurrency == 0 || long_lived {
            return Ok(Admitted { _permit: None });
        }
        let sem = {
            let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(token.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.concurrency)))
                .clone()
        };
        sem.try_acquire_owned()
            .map(|p| Admitted { _permit: Some(p) })
            .map_err(|_| Refusal::Concurrency)
    }

    /// Forgets tokens that are idle (their rate state is back to full, nothing in flight), so a stream
    /// of distinct tokens cannot grow the tables. Called periodically.
    pub fn forget_idle(&self) {
        if let Some(r) = &self.rate {
            r.retain_recent();
            r.shrink_to_fit();
        }
        let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.available_permits() < self.concurrency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_over_its_rate_is_told_when_to_come_back() {
        let l = TokenLimits::new(2, 3, 0);
        for _ in 0..3 {
            assert!(l.admit("a", false).is_ok());
        }
        let r = l.admit("a", false).err().expect("over the burst");
        assert!(
            matches!(r, Refusal::Rate(d) if d <= Duration::from_millis(500)),
            "{r:?}"
        );
        assert_eq!(r.retry_after_secs(), 1);
        // Another token is not affected.
        assert!(l.admit("b", false).is_ok());
    }

    #[test]
    fn in_flight_requests_are_capped_per_token() {
        let l = TokenLimits::new(0, 0, 2);
        let one = l.admit("a", false).unwrap();
        let _two = l.admit("a", false).unwrap();
        assert_eq!(l.admit("a", false).err(), Some(Refusal::Concurrency));
        // The feed does not hold a slot.
        assert!(l.admit("a", true).is_ok());
        assert!(l.admit("b", false).is_ok());
        drop(one);
        assert!(l.admit("a", false).is_ok());
        l.forget_idle();
        assert!(l.inflight.lock().unwrap().len() <= 1);
    }

    #[test]
    fn zero_turns_limits_off() {
        let l = TokenLimits::unlimited();
        for _ in 0..10_000 {
            assert!(l.admit("a", false).is_ok());
        }
    }
}
