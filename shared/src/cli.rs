//! What the three services share on their command line: `--help` (every option and environment
//! variable the service reads, with its default), `--version`, and one exit-code policy.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | stopped normally (SIGTERM, Ctrl-C), or `--help` / `--version` |
//! | 1 | failed while running |
//! | [`EX_USAGE`] 64 | bad command line or configuration (every problem is printed) |
//! | [`EX_UNAVAILABLE`] 69 | a dependency (NATS, Redis) could not be reached at start |
//! | [`EX_OSERR`] 71 | the listen address could not be bound |
//! | [`EX_TEMPFAIL`] 75 | try again later (`vc-worker reseal` while a worker holds the command lane) |

use crate::config::Service;

/// Bad command line or configuration.
pub const EX_USAGE: u8 = 64;
/// A dependency (NATS, Redis) could not be reached.
pub const EX_UNAVAILABLE: u8 = 69;
/// The listen address could not be bound.
pub const EX_OSERR: u8 = 71;
/// Try again later.
pub const EX_TEMPFAIL: u8 = 75;

const API: u8 = 1;
const WORKER: u8 = 2;
const EDGE: u8 = 4;
const ALL: u8 = API | WORKER | EDGE;

/// One environment variable as `--help` shows it: name, the services that read it, default, meaning.
struct Var(&'static str, u8, &'static str, &'static str);

/// Every variable the services read (kept equal to [`crate::config::ENV_KEYS`] by a test).
const VARS: &[Var] = &[
    Var(
        "NATS_URL",
        ALL,
        "nats://127.0.0.1:4222",
        "NATS server(s), comma-separated; user:password@ in the URL",
    ),
    Var(
        "REDIS_URL",
        ALL,
        "redis://127.0.0.1:6379",
        "Redis; several URLs (or redis+cluster://) = Redis Cluster",
    ),
    Var(
        "LITELLM_BASE_URL",
        API | WORKER,
        "unset (LiteLLM sync skipped)",
        "LiteLLM admin endpoint",
    ),
    Var(
        "LITELLM_MASTER_KEY",
        WORKER,
        "unset (LiteLLM sync skipped)",
        "LiteLLM master key (secret)",
    ),
    Var(
        "LITELLM_PUBLIC_URL",
        API | WORKER,
        "LITELLM_BASE_URL",
        "the LiteLLM URL agents are told to use",
    ),
    Var(
        "VC_ADMIN_TOKEN",
        API,
        "required",
        "bootstrap global-admin bearer token, at least 32 characters (secret)",
    ),
    Var(
        "VC_SECRET_KEY",
        WORKER,
        "required",
        "master key: 32 random bytes, base64 (secret)",
    ),
    Var(
        "VC_SECRET_KEY_PREVIOUS",
        WORKER,
        "unset",
        "earlier master keys, comma-separated: they open, never seal (rotation)",
    ),
    Var(
        "VC_API_SECRET_KEY",
        API,
        "required",
        "the API's key, from `vc-worker keys api` (secret)",
    ),
    Var(
        "VC_EDGE_SECRET_KEY",
        EDGE,
        "required",
        "the edge's key, from `vc-worker keys edge` (secret)",
    ),
    Var(
        "VC_EDGE_SECRET_KEY_PREVIOUS",
        EDGE,
        "unset",
        "edge keys of earlier master keys, comma-separated",
    ),
    Var("VC_LOG_FORMAT", ALL, "text", "log format: text or json"),
    Var("VC_API_ADDR", API, "127.0.0.1:8080", "listen address"),
    Var(
        "VC_COMMAND_WAIT_MS",
        API,
        "5000",
        "how long a write waits for its outcome before answering 202",
    ),
    Var(
        "VC_API_TOKEN_RATE",
        API,
        "50",
        "requests per second per token on one instance (0 = no limit)",
    ),
    Var(
        "VC_API_TOKEN_BURST",
        API,
        "100",
        "requests a token may send at once above its rate",
    ),
    Var(
        "VC_API_TOKEN_CONCURRENCY",
        API,
        "32",
        "requests in flight per token on one instance (0 = no limit)",
    ),
    Var("VC_EDGE_ADDR", EDGE, "127.0.0.1:8090", "listen address"),
    Var(
        "VC_EDGE_ID",
        EDGE,
        "hostname + random suffix",
        "this edge's id",
    ),
    Var(
        "VC_EDGE_MAX_CONNECTIONS",
        EDGE,
        "10000",
        "WebSocket sessions at most",
    ),
    Var(
        "VC_EDGE_TLS_CERT",
        EDGE,
        "unset (plain ws://)",
        "certificate chain, PEM file (with VC_EDGE_TLS_KEY)",
    ),
    Var(
        "VC_EDGE_TLS_KEY",
        EDGE,
        "unset",
        "private key of that certificate, PEM file",
    ),
    Var(
        "VC_WORKER_METRICS_ADDR",
        WORKER,
        "unset (not served)",
        "address of /healthz, /readyz, /metrics",
    ),
    Var(
        "VC_NATS_STREAM_REPLICAS",
        API | WORKER,
        "1",
        "JetStream stream replicas (3 on a cluster)",
    ),
    Var(
        "VC_RECONCILE_INTERVAL_SECS",
        WORKER,
        "300",
        "period of the LiteLLM reconcile (0 = off)",
    ),
    Var(
        "VC_LITELLM_TIMEOUT_MS",
        WORKER,
        "10000",
        "timeout of one LiteLLM admin call",
    ),
    Var(
        "VC_KEY_ROTATION_GRACE_SECS",
        WORKER,
        "30",
        "how long a replaced realm key keeps working (0 = retired at once)",
    ),
    Var(
        "VC_SPEND_INTERVAL_SECS",
        WORKER,
        "60",
        "how often each realm's spend is read from LiteLLM (0 = on demand)",
    ),
    Var(
        "VC_BUDGET_THRESHOLDS",
        WORKER,
        "0.5,0.8,1.0",
        "budget fractions that raise realm.budget.threshold",
    ),
    Var(
        "VC_BUDGET_WEBHOOK_URLS",
        WORKER,
        "unset",
        "URLs the budget events are POSTed to, comma-separated",
    ),
    Var(
        "VC_BUDGET_WEBHOOK_SECRET",
        WORKER,
        "unset",
        "HMAC key of the webhook signatures, at least 32 characters (secret)",
    ),
];

fn bit(service: Service) -> u8 {
    match service {
        Service::Api => API,
        Service::Worker => WORKER,
        Service::Edge => EDGE,
    }
}

/// `<program> <version>`.
pub fn version_text(program: &str) -> String {
    format!("{program} {}", env!("CARGO_PKG_VERSION"))
}

/// The `--help` text of `program` (`service`): `usage` lines, the options, then every environment
/// variable the service reads with its default. Variables are read once at start; the environment
/// wins over `--config FILE`, whose TOML keys are the variable names in lower case without `VC_`.
pub fn help_text(service: Service, program: &str, about: &str, usage: &str) -> String {
    let mut out = format!("{about}\n\n{usage}\n\nOptions:\n");
    out.push_str(
        "  --config FILE    settings from a TOML file (keys: the variables below in lower case,\n",
    );
    out.push_str(
        "                   without VC_: api_addr, nats_url, ...); the environment wins\n",
    );
    out.push_str("  -h, --help       this text\n");
    out.push_str("  -V, --version    the version\n\nEnvironment (default):\n");
    let width = VARS.iter().map(|v| v.0.len()).max().unwrap_or(0);
    for v in VARS.iter().filter(|v| v.1 & bit(service) != 0) {
        out.push_str(&format!("  {:width$}  {} (default: {})\n", v.0, v.3, v.2));
    }
    out.push_str(&format!(
        "  {:width$}  log filter, e.g. info or {}=debug\n",
        "RUST_LOG",
        program.replace('-', "_")
    ));
    out.push_str(
        "\nExit codes: 0 stopped (or --help, --version); 1 failed while running; 64 bad command line or\n\
         configuration; 69 NATS or Redis unreachable at start; 71 cannot bind the listen address.\n",
    );
    out
}

/// What the command line asks of a service before its settings: `Some(text)` to print and exit 0.
pub fn info_request(
    args: &[String],
    help: impl FnOnce() -> String,
    program: &str,
) -> Option<String> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => Some(help()),
        Some("-V" | "--version") => Some(version_text(program)),
        _ => None,
    }
}

/// Prints `text` (`--help`, `--version`) on standard output; exit code 0 (1 if it cannot be written).
pub fn print_info(text: &str) -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_variable_the_settings_read() {
        let names: Vec<&str> = VARS.iter().map(|v| v.0).collect();
        let read: Vec<&str> = crate::config::ENV_KEYS.iter().map(|(e, _)| *e).collect();
        assert_eq!(
            names, read,
            "VARS and ENV_KEYS must list the same variables, in order"
        );
        let api = help_text(
            Service::Api,
            "vc-api",
            "about",
            "usage: vc-api [--config FILE]",
        );
        assert!(api.contains("VC_ADMIN_TOKEN") && api.contains("(default: 127.0.0.1:8080)"));
        assert!(
            !api.contains("VC_SECRET_KEY "),
            "the API does not read the master key"
        );
        let edge = help_text(Service::Edge, "vc-edge", "about", "usage");
        assert!(edge.contains("VC_EDGE_TLS_CERT") && !edge.contains("LITELLM_MASTER_KEY"));
        let worker = help_text(Service::Worker, "vc-worker", "about", "usage");
        assert!(worker.contains("VC_BUDGET_WEBHOOK_SECRET") && worker.contains("RUST_LOG"));
        assert_eq!(
            info_request(&["--version".into()], String::new, "vc-api").unwrap(),
            format!("vc-api {}", env!("CARGO_PKG_VERSION"))
        );
        assert!(info_request(&["--config".into(), "f".into()], String::new, "x").is_none());
    }
}
