//! Waiting for things that happen eventually, and test logging.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use vc_tests::wait::{eventually, patience, scaled};
//! // Option: `None` means "not yet".
//! let n: u32 = eventually("counter reaches 3", patience(), || async { Some(3) }).await;
//! // Result: the last error is quoted in the panic message.
//! let s: String = eventually("status succeeded", scaled(Duration::from_secs(5)), || async {
//!     Ok::<_, String>("succeeded".to_owned())
//! })
//! .await;
//! // bool, via the macro (timeout defaults to `patience()`):
//! vc_tests::assert_eventually!(1 + 1 == 2);
//! # }
//! ```
//!
//! `VC_TEST_PATIENCE` (a positive number, default 1) multiplies the harness's own timeouts and
//! [`patience`]; use [`scaled`] for timeouts of your own so that a slow machine can be given more time
//! without editing tests. [`eventually`] uses the timeout it is given as is.

use std::fmt::Display;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often [`eventually`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The default wait before [`patience`] scales it.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);

/// The multiplier from `VC_TEST_PATIENCE` (default 1.0; ignored unless a positive finite number).
pub fn patience_factor() -> f64 {
    static FACTOR: OnceLock<f64> = OnceLock::new();
    *FACTOR.get_or_init(|| parse_factor(std::env::var("VC_TEST_PATIENCE").ok().as_deref()))
}

fn parse_factor(raw: Option<&str>) -> f64 {
    raw.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(1.0)
}

/// The default timeout for waiting on something: 10 s × `VC_TEST_PATIENCE`.
pub fn patience() -> Duration {
    scaled(DEFAULT_PATIENCE)
}

/// `d` × `VC_TEST_PATIENCE`.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(patience_factor())
}

/// What a poll of [`eventually`] may return: `Option<T>` (`None` = not yet), `Result<T, E>` (`Err` = not
/// yet, with the reason quoted if time runs out) or `bool`.
pub trait Attempt {
    /// The value [`eventually`] returns once the attempt succeeds.
    type Output;
    /// `Ok(value)` when done, `Err(reason)` to try again.
    fn into_result(self) -> Result<Self::Output, String>;
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "returned None".to_owned())
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Output = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

impl Attempt for bool {
    type Output = ();
    fn into_result(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("was false".to_owned())
        }
    }
}

/// Calls `f` every 50 ms until its future yields success (`Some`, `Ok` or `true`) and returns the value.
///
/// Each attempt is itself bounded by the time left, so a hanging attempt cannot outlive `timeout`.
/// Panics after `timeout` with `what` and the last failure reason. The first attempt is made at once.
pub async fn eventually<F, Fut, R>(what: &str, timeout: Duration, mut f: F) -> R::Output
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Attempt,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(POLL_INTERVAL);
        let last = match tokio::time::timeout(left, f()).await {
            Ok(r) => match r.into_result() {
                Ok(v) => return v,
                Err(reason) => reason,
            },
            Err(_) => format!("attempt still running after {left:?}"),
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:?} ({attempts} attempts) waiting for: {what}\n  last failure: {last}",
                start.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asserts that an expression becomes true (or `Some`/`Ok`) within a timeout; evaluates to its value.
///
/// The expression is re-evaluated inside an `async` block every 50 ms, so it may use `.await`.
///
/// ```no_run
/// # async fn demo(n: std::sync::Arc<std::sync::atomic::AtomicU32>) {
/// use std::sync::atomic::Ordering;
/// vc_tests::assert_eventually!(n.load(Ordering::SeqCst) == 3);
/// vc_tests::assert_eventually!(n.load(Ordering::SeqCst) > 0, std::time::Duration::from_secs(2));
/// vc_tests::assert_eventually!(n.load(Ordering::SeqCst) > 0, vc_tests::wait::patience(), "counter moved");
/// # }
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::wait::eventually(stringify!($cond), $crate::wait::patience(), || async { $cond }).await
    };
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::wait::eventually(stringify!($cond), $timeout, || async { $cond }).await
    };
    ($cond:expr, $timeout:expr, $($what:tt)+) => {
        $crate::wait::eventually(&format!($($what)+), $timeout, || async { $cond }).await
    };
}

/// Installs a tracing subscriber for tests once per process (later calls do nothing).
///
/// Filter from `RUST_LOG` (default `warn`); output goes through the test writer, so it is shown only for
/// failing tests (or with `--nocapture`). Does nothing if another global subscriber is already set.
pub fn trace_init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_target(true)
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn factor_parsing() {
        assert_eq!(parse_factor(None), 1.0);
        assert_eq!(parse_factor(Some("2.5")), 2.5);
        assert_eq!(parse_factor(Some(" 3 ")), 3.0);
        assert_eq!(parse_factor(Some("0")), 1.0);
        assert_eq!(parse_factor(Some("-1")), 1.0);
        assert_eq!(parse_factor(Some("NaN")), 1.0);
        assert_eq!(parse_factor(Some("inf")), 1.0);
        assert_eq!(parse_factor(Some("soon")), 1.0);
        assert!(patience() >= Duration::from_millis(1));
        assert_eq!(scaled(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn eventually_returns_the_value_once_ready() {
        trace_init();
        trace_init();
        let n = Arc::new(AtomicU32::new(0));
        let got = eventually("third call", Duration::from_secs(5), || {
            let n = n.clone();
            async move {
                let v = n.fetch_add(1, Ordering::SeqCst) + 1;
                (v >= 3).then_some(v)
            }
        })
        .await;
        assert_eq!(got, 3);

        let s: &str = eventually("ok at once", Duration::from_secs(1), || async {
            Ok::<_, String>("done")
        })
        .await;
        assert_eq!(s, "done");
    }

    #[tokio::test]
    async fn assert_eventually_macro_forms() {
        let n = Arc::new(AtomicU32::new(0));
        let bump = n.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                bump.fetch_add(1, Ordering::SeqCst);
            }
        });
        crate::assert_eventually!(n.load(Ordering::SeqCst) == 3);
        crate::assert_eventually!(n.load(Ordering::SeqCst) == 3, Duration::from_secs(1));
        let v = crate::assert_eventually!(
            Some(n.load(Ordering::SeqCst)).filter(|v| *v == 3),
            Duration::from_secs(1),
            "counter at {}",
            3
        );
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "last failure: not yet: 7")]
    async fn eventually_panics_with_the_last_reason() {
        eventually("never", Duration::from_millis(200), || async {
            Err::<(), _>(format!("not yet: {}", 7))
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "attempt still running")]
    async fn eventually_bounds_a_hanging_attempt() {
        eventually("hangs", Duration::from_millis(200), || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            true
        })
        .await;
    }
}
