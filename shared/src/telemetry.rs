//! Tracing setup, called once by each binary's `main` (libraries never install a subscriber).
//!
//! Level policy: ERROR only when an operator must act; WARN for a failure the system retries by itself;
//! INFO for lifecycle (start, ready, drain) and applied commands; DEBUG for per-message detail.
//! Secrets are never logged: secret-bearing types redact themselves in `Debug`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `default_filter` applies when `rust_log` is unset.
pub fn init(format: LogFormat, rust_log: Option<&str>, default_filter: &str) {
    let filter = rust_log
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
