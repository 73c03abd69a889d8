//! Configuration: one typed [`Settings`], loaded once in `main` from `--config FILE` (TOML) and the
//! environment (environment wins), and validated once with every problem reported.
//!
//! Library code never reads the environment: `main` reads it once through [`Settings::load_for_main`],
//! and everything else takes it as a map (see [`Settings::load`]), so tests build settings as plain data.
//!
//! | env | TOML key | meaning | default |
//! |---|---|---|---|
//! | `NATS_URL` | `nats_url` | NATS server(s), comma-separated | `nats://127.0.0.1:4222` |
//! | `REDIS_URL` | `redis_url` | Redis URL; several comma-separated (or `redis+cluster://`) = Redis Cluster | `redis://127.0.0.1:6379` |
//! | `LITELLM_BASE_URL` | `litellm_base_url` | LiteLLM admin endpoint (unset: sync skipped) | unset |
//! | `LITELLM_MASTER_KEY` | `litellm_master_key` | LiteLLM master key (unset: sync skipped) | unset |
//! | `LITELLM_PUBLIC_URL` | `litellm_public_url` | base URL agents are told to use | `LITELLM_BASE_URL` |
//! | `VC_ADMIN_TOKEN` | `admin_token` | bootstrap global-admin bearer token (api) | required by `vc-api` |
//! | `VC_SECRET_KEY` | `secret_key` | master key, 32 bytes, base64: every key derives from it (worker) | required by `vc-worker` |
//! | `VC_SECRET_KEY_PREVIOUS` | `secret_key_previous` | earlier master keys, comma-separated: open only (rotation; worker) | unset |
//! | `VC_API_SECRET_KEY` | `api_secret_key` | the API's key: seals secrets in commands (`vc-worker keys api`) | required by `vc-api` |
//! | `VC_EDGE_SECRET_KEY` | `edge_secret_key` | the edge's key: opens the keys of agents' configs (`vc-worker keys edge`) | required by `vc-edge` |
//! | `VC_EDGE_SECRET_KEY_PREVIOUS` | `edge_secret_key_previous` | the edge keys of earlier master keys, comma-separated (rotation) | unset |
//! | `VC_LOG_FORMAT` | `log_format` | `text` or `json` | `text` |
//! | `VC_API_ADDR` | `api_addr` | `vc-api` listen address | `127.0.0.1:8080` |
//! | `VC_COMMAND_WAIT_MS` | `command_wait_ms` | how long the API waits for an outcome before 202 | `5000` |
//! | `VC_API_TOKEN_RATE` | `api_token_rate` | requests per second per token on one API instance (0 = no limit) | `50` |
//! | `VC_API_TOKEN_BURST` | `api_token_burst` | requests a token may send at once above its rate | `100` |
//! | `VC_API_TOKEN_CONCURRENCY` | `api_token_concurrency` | requests in flight per token on one API instance (0 = no limit) | `32` |
//! | `VC_EDGE_ADDR` | `edge_addr` | `vc-edge` listen address | `127.0.0.1:8090` |
//! | `VC_EDGE_ID` | `edge_id` | edge id | derived: hostname + random suffix |
//! | `VC_EDGE_MAX_CONNECTIONS` | `edge_max_connections` | WebSocket sessions per edge | `10000` |
//! | `VC_EDGE_TLS_CERT` | `edge_tls_cert` | edge TLS certificate chain, PEM file (with `VC_EDGE_TLS_KEY`) | unset (plain `ws://`) |
//! | `VC_EDGE_TLS_KEY` | `edge_tls_key` | private key of that certificate, PEM file (with `VC_EDGE_TLS_CERT`) | unset |
//! | `VC_WORKER_METRICS_ADDR` | `worker_metrics_addr` | worker `/healthz` `/readyz` `/metrics` | unset (not served) |
//! | `VC_NATS_STREAM_REPLICAS` | `nats_stream_replicas` | replicas of the JetStream streams (3 on a cluster) | `1` |
//! | `VC_RECONCILE_INTERVAL_SECS` | `reconcile_interval_secs` | periodic LiteLLM reconcile (0 = off) | `300` |
//! | `VC_LITELLM_TIMEOUT_MS` | `litellm_timeout_ms` | timeout of one LiteLLM admin call | `10000` |
//! | `VC_KEY_ROTATION_GRACE_SECS` | `key_rotation_grace_secs` | how long a replaced realm key keeps working (0 = retired at once) | `30` |
//! | `VC_SPEND_INTERVAL_SECS` | `spend_interval_secs` | how often the worker reads each realm's spend from LiteLLM (0 = on demand only) | `60` |
//! | `VC_BUDGET_THRESHOLDS` | `budget_thresholds` | fractions of a realm's budget that raise `realm.budget.threshold`, once per period each | `0.5,0.8,1.0` |
//! | `VC_BUDGET_WEBHOOK_URLS` | `budget_webhook_urls` | URLs (comma-separated) the budget events are POSTed to, signed (worker) | unset |
//! | `VC_BUDGET_WEBHOOK_SECRET` | `budget_webhook_secret` | HMAC-SHA256 key of the webhook signatures, ≥ 32 characters (worker) | required with URLs |
//!
//! Each service is given only the secrets it uses, and refuses the others (a shared environment file
//! would hand the edges the master key): `vc-worker` the master key(s) and `LITELLM_MASTER_KEY`;
//! `vc-api` `VC_ADMIN_TOKEN` and `VC_API_SECRET_KEY`; `vc-edge` `VC_EDGE_SECRET_KEY` (and its previous
//! keys) only. See [`crate::crypto`] for what each key opens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::crypto::{Purpose, PurposeKey, Sealer, SecretKey};

/// Which service is validating (each needs a different subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `vc-api`.
    Api,
    /// `vc-worker`.
    Worker,
    /// `vc-edge`.
    Edge,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// All settings of the control plane's services.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// NATS server(s), comma-separated.
    #[serde(default = "default_nats_url")]
    pub nats_url: String,
    /// Redis URL(s).
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// LiteLLM admin endpoint.
    #[serde(default)]
    pub litellm_base_url: Option<String>,
    /// LiteLLM master key.
    #[serde(default)]
    pub litellm_master_key: Option<String>,
    /// Base URL agents use for LiteLLM.
    #[serde(default)]
    pub litellm_public_url: Option<String>,
    /// Bootstrap admin token.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Master key, base64 (worker).
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Earlier master keys, base64, comma-separated: they open, never seal (worker).
    #[serde(default)]
    pub secret_key_previous: Option<String>,
    /// The API's purpose key (`command`), as `vc-worker keys api` prints it.
    #[serde(default)]
    pub api_secret_key: Option<String>,
    /// The edge's purpose key (`agent-config-key`), as `vc-worker keys edge` prints it.
    #[serde(default)]
    pub edge_secret_key: Option<String>,
    /// The edge keys of earlier master keys, comma-separated (rotation).
    #[serde(default)]
    pub edge_secret_key_previous: Option<String>,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// API listen address.
    #[serde(default = "default_api_addr")]
    pub api_addr: String,
    /// How long the API waits for a command outcome (ms).
    #[serde(default = "default_command_wait_ms")]
    pub command_wait_ms: u64,
    /// Requests per second per token (API; 0 = no limit).
    #[serde(default = "default_api_token_rate")]
    pub api_token_rate: u32,
    /// Burst above the rate (API).
    #[serde(default = "default_api_token_burst")]
    pub api_token_burst: u32,
    /// Requests in flight per token (API; 0 = no limit).
    #[serde(default = "default_api_token_concurrency")]
    pub api_token_concurrency: u32,
    /// Edge listen address.
    #[serde(default = "default_edge_addr")]
    pub edge_addr: String,
    /// Edge id.
    #[serde(default)]
    pub edge_id: Option<String>,
    /// Sessions per edge.
    #[serde(default = "default_edge_max_connections")]
    pub edge_max_connections: usize,
    /// Edge TLS: the certificate chain, a PEM file (leaf first). Set with `edge_tls_key` or not at all.
    #[serde(default)]
    pub edge_tls_cert: Option<String>,
    /// Edge TLS: the private key of `edge_tls_cert`, a PEM file.
    #[serde(default)]
    pub edge_tls_key: Option<String>,
    /// Worker health/metrics address.
    #[serde(default)]
    pub worker_metrics_addr: Option<String>,
    /// Stream replicas.
    #[serde(default = "default_replicas")]
    pub nats_stream_replicas: usize,
    /// Reconcile interval (s); 0 disables the periodic reconcile.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_secs: u64,
    /// Timeout of one LiteLLM call (ms).
    #[serde(default = "default_litellm_timeout_ms")]
    pub litellm_timeout_ms: u64,
    /// Default grace period of a replaced realm key (s).
    #[serde(default = "default_key_rotation_grace")]
    pub key_rotation_grace_secs: u64,
    /// How often the worker reads each realm's spend (s); 0 = on demand only.
    #[serde(default = "default_spend_interval")]
    pub spend_interval_secs: u64,
    /// Budget fractions that raise an alert, comma-separated.
    #[serde(default)]
    pub budget_thresholds: Option<String>,
    /// Webhook URLs of the budget events, comma-separated.
    #[serde(default)]
    pub budget_webhook_urls: Option<String>,
    /// HMAC key of the webhook signatures.
    #[serde(default)]
    pub budget_webhook_secret: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret shows only whether it is set.
        let hidden = |v: &Option<String>| v.as_ref().map(|_| crate::redact::Redacted);
        f.debug_struct("Settings")
            .field("nats_url", &redact_url_credentials(&self.nats_url))
            .field("redis_url", &"<redacted>")
            .field("litellm_base_url", &self.litellm_base_url)
            .field("litellm_master_key", &hidden(&self.litellm_master_key))
            .field("litellm_public_url", &self.litellm_public_url)
            .field("admin_token", &hidden(&self.admin_token))
            .field("secret_key", &hidden(&self.secret_key))
            .field("secret_key_previous", &hidden(&self.secret_key_previous))
            .field("api_secret_key", &hidden(&self.api_secret_key))
            .field("edge_secret_key", &hidden(&self.edge_secret_key))
            .field(
                "edge_secret_key_previous",
                &hidden(&self.edge_secret_key_previous),
            )
            .field("api_addr", &self.api_addr)
            .field("edge_addr", &self.edge_addr)
            .field("edge_id", &self.edge_id)
            .field("edge_tls_cert", &self.edge_tls_cert)
            .field("edge_tls_key", &self.edge_tls_key)
            .field("budget_webhook_urls", &self.budget_webhook_urls)
            .field(
                "budget_webhook_secret",
                &hidden(&self.budget_webhook_secret),
            )
            .finish_non_exhaustive()
    }
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn default_api_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_command_wait_ms() -> u64 {
    5000
}
fn default_api_token_rate() -> u32 {
    50
}
fn default_api_token_burst() -> u32 {
    100
}
fn default_api_token_concurrency() -> u32 {
    32
}
fn default_edge_addr() -> String {
    "127.0.0.1:8090".into()
}
fn default_edge_max_connections() -> usize {
    10_000
}
fn default_replicas() -> usize {
    1
}
fn default_reconcile_interval() -> u64 {
    300
}
fn default_litellm_timeout_ms() -> u64 {
    10_000
}
fn default_key_rotation_grace() -> u64 {
    30
}
fn default_spend_interval() -> u64 {
    60
}

/// Environment variable → TOML key.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("NATS_URL", "nats_url"),
    ("REDIS_URL", "redis_url"),
    ("LITELLM_BASE_URL", "litellm_base_url"),
    ("LITELLM_MASTER_KEY", "litellm_master_key"),
    ("LITELLM_PUBLIC_URL", "litellm_public_url"),
    ("VC_ADMIN_TOKEN", "admin_token"),
    ("VC_SECRET_KEY", "secret_key"),
    ("VC_SECRET_KEY_PREVIOUS", "secret_key_previous"),
    ("VC_API_SECRET_KEY", "api_secret_key"),
    ("VC_EDGE_SECRET_KEY", "edge_secret_key"),
    ("VC_EDGE_SECRET_KEY_PREVIOUS", "edge_secret_key_previous"),
    ("VC_LOG_FORMAT", "log_format"),
    ("VC_API_ADDR", "api_addr"),
    ("VC_COMMAND_WAIT_MS", "command_wait_ms"),
    ("VC_API_TOKEN_RATE", "api_token_rate"),
    ("VC_API_TOKEN_BURST", "api_token_burst"),
    ("VC_API_TOKEN_CONCURRENCY", "api_token_concurrency"),
    ("VC_EDGE_ADDR", "edge_addr"),
    ("VC_EDGE_ID", "edge_id"),
    ("VC_EDGE_MAX_CONNECTIONS", "edge_max_connections"),
    ("VC_EDGE_TLS_CERT", "edge_tls_cert"),
    ("VC_EDGE_TLS_KEY", "edge_tls_key"),
    ("VC_WORKER_METRICS_ADDR", "worker_metrics_addr"),
    ("VC_NATS_STREAM_REPLICAS", "nats_stream_replicas"),
    ("VC_RECONCILE_INTERVAL_SECS", "reconcile_interval_secs"),
    ("VC_LITELLM_TIMEOUT_MS", "litellm_timeout_ms"),
    ("VC_KEY_ROTATION_GRACE_SECS", "key_rotation_grace_secs"),
    ("VC_SPEND_INTERVAL_SECS", "spend_interval_secs"),
    ("VC_BUDGET_THRESHOLDS", "budget_thresholds"),
    ("VC_BUDGET_WEBHOOK_URLS", "budget_webhook_urls"),
    ("VC_BUDGET_WEBHOOK_SECRET", "budget_webhook_secret"),
];

/// `scheme://user:password@host` → `scheme://user:***@host`, for logs and errors.
pub fn redact_url_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let userinfo = &u[s + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{}{user}:***{}", &u[..s + 3], &u[at..])
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// TOML keys whose values are whole numbers.
const NUMERIC_KEYS: &[&str] = &[
    "command_wait_ms",
    "api_token_rate",
    "api_token_burst",
    "api_token_concurrency",
    "edge_max_connections",
    "nats_stream_replicas",
    "reconcile_interval_secs",
    "litellm_timeout_ms",
    "key_rotation_grace_secs",
    "spend_interval_secs",
];

fn http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.len() > "https://".len()
        && !u.chars().any(char::is_whitespace)
}

/// Where LiteLLM is, when configured.
#[derive(Clone)]
pub struct LitellmSettings {
    /// Admin endpoint, without trailing `/`.
    pub base_url: String,
    /// Master key (empty in `vc-api`, which never calls LiteLLM: [`Settings::litellm_endpoints`]).
    pub master_key: String,
    /// URL agents use.
    pub public_url: String,
    /// Call timeout.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for LitellmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitellmSettings")
            .field("base_url", &self.base_url)
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// A service's purpose key from its variable `var`: given, well-formed, and of `purpose`.
fn purpose_key(
    var: &str,
    text: Option<String>,
    purpose: Purpose,
    program: &str,
    keys_arg: &str,
) -> Result<PurposeKey, String> {
    let text = text.ok_or_else(|| {
        format!("{var} is required by {program} (`vc-worker keys {keys_arg}` prints it from VC_SECRET_KEY)")
    })?;
    let key = PurposeKey::from_text(&text).map_err(|e| format!("{var}: {e}"))?;
    if key.purpose() != purpose {
        return Err(format!(
            "{var} is a {} key; {program} needs its {purpose} key (`vc-worker keys {keys_arg}`)",
            key.purpose()
        ));
    }
    Ok(key)
}

/// Bad command line or configuration (see [`crate::cli`] for the exit codes).
pub use crate::cli::EX_USAGE;

/// Shortest admin token accepted: a guessable admin token is the whole system.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

impl Settings {
    /// Defaults, as if no file and no environment were given.
    pub fn defaults() -> Settings {
        serde_json::from_str("{}").expect("defaults deserialize")
    }

    /// Loads from an optional TOML file, then the given environment (which wins). Every problem is
    /// reported, not just the first.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, Vec<String>> {
        let mut errors = Vec::new();
        let mut b = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                errors.push(format!("config file {} does not exist", f.display()));
            } else {
                b = b.add_source(
                    config::File::from(f)
                        .format(config::FileFormat::Toml)
                        .required(true),
                );
            }
        }
        for (var, key) in ENV_KEYS {
            let Some(v) = env.get(*var).filter(|v| !v.is_empty()) else {
                continue;
            };
            // Type errors are found here, one per variable, so that all of them are reported together.
            if NUMERIC_KEYS.contains(key) && v.trim().parse::<u64>().is_err() {
                errors.push(format!("{var} must be a whole number (got {v:?})"));
                continue;
            }
            if *key == "log_format" && !matches!(v.as_str(), "text" | "json") {
                errors.push(format!("{var} must be \"text\" or \"json\" (got {v:?})"));
                continue;
            }
            match b.clone().set_override(*key, v.clone()) {
                Ok(next) => b = next,
                Err(e) => errors.push(format!("{var}: {e}")),
            }
        }
        let loaded = b
            .build()
            .and_then(|c| c.try_deserialize::<Settings>())
            .map_err(|e| format!("configuration: {e}"));
        match loaded {
            Ok(s) if errors.is_empty() => Ok(s),
            Ok(_) => Err(errors),
            Err(e) => {
                errors.push(e);
                Err(errors)
            }
        }
    }

    /// What a program's `main` starts from: the settings from `--config FILE` (or `--config=FILE`) and
    /// the process environment, validated once for `service` with [`Settings::load_validated`], and
    /// that environment (for `RUST_LOG`, `HOSTNAME`). The one place that reads the process's arguments
    /// and environment; `main` calls it first. On any problem, every one is printed to stderr as
    /// `<program>: configuration error: …` and the answer is exit code 64 (`EX_USAGE`).
    pub fn load_for_main(
        service: Service,
        program: &str,
    ) -> Result<(Settings, HashMap<String, String>), std::process::ExitCode> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Self::load_for_main_with_args(service, program, &args)
    }

    /// [`Settings::load_for_main`] with the arguments left once the program took its own words off the
    /// command line (`vc-worker reseal`, `vc-worker keys edge`): only `--config FILE` may remain.
    pub fn load_for_main_with_args(
        service: Service,
        program: &str,
        args: &[String],
    ) -> Result<(Settings, HashMap<String, String>), std::process::ExitCode> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = match args {
            [] => Ok(None),
            [flag, file] if flag == "--config" => Ok(Some(std::path::PathBuf::from(file))),
            [arg] if arg.starts_with("--config=") => {
                Ok(Some(std::path::PathBuf::from(&arg["--config=".len()..])))
            }
            _ => Err(vec![format!("usage: {program} [--config FILE]")]),
        };
        match file.and_then(|f| Settings::load_validated(f.as_deref(), &env, service)) {
            Ok(s) => Ok((s, env)),
            Err(errors) => {
                for e in errors {
                    eprintln!("{program}: configuration error: {e}");
                }
                Err(std::process::ExitCode::from(EX_USAGE))
            }
        }
    }

    /// [`Settings::load`] then [`Settings::validate`], reporting the problems of both at once (the
    /// validation runs on what could be loaded, with defaults where a value was refused).
    pub fn load_validated(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        service: Service,
    ) -> Result<Settings, Vec<String>> {
        match Settings::load(file, env) {
            Ok(s) => s.validate(service).map(|_| s),
            Err(mut errors) => {
                // Validate the values that were acceptable, so their problems are reported too.
                let acceptable: HashMap<String, String> = env
                    .iter()
                    .filter(|(k, v)| {
                        !errors.iter().any(|e| {
                            e.starts_with(&format!("{k} ")) || e.starts_with(&format!("{k}:"))
                        }) && !v.is_empty()
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Ok(s) = Settings::load(None, &acceptable) {
                    if let Err(more) = s.validate(service) {
                        errors.extend(more);
                    }
                }
                Err(errors)
            }
        }
    }

    /// Checks every setting the given service needs; all problems at once.
    pub fn validate(&self, service: Service) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.nats_url.split(',').all(|u| u.trim().is_empty()) {
            errors.push("NATS_URL must name at least one server".to_string());
        }
        for u in self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            if !(u.starts_with("nats://")
                || u.starts_with("tls://")
                || u.starts_with("ws://")
                || !u.contains("://"))
            {
                errors.push(format!(
                    "NATS_URL entry {:?} must be nats://host:port",
                    redact_url_credentials(u)
                ));
            }
        }
        for u in self
            .redis_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            if u.starts_with("rediss://") {
                errors.push(
                    "REDIS_URL: rediss:// (TLS) is not supported by this build; use redis:// on a private network"
                        .to_string(),
                );
                break;
            }
            if !(u.starts_with("redis://") || u.starts_with("redis+cluster://")) {
                errors.push("REDIS_URL must start with redis:// or redis+cluster://".to_string());
                break;
            }
        }
        self.validate_secrets(service, &mut errors);
        if let Some(u) = &self.litellm_base_url {
            if crate::command::validate_url("LITELLM_BASE_URL", u).is_err() {
                errors.push("LITELLM_BASE_URL must be an http or https URL".to_string());
            }
        }
        if let Some(u) = &self.litellm_public_url {
            if crate::command::validate_url("LITELLM_PUBLIC_URL", u).is_err() {
                errors.push("LITELLM_PUBLIC_URL must be an http or https URL".to_string());
            }
        }
        if !(1..=5).contains(&self.nats_stream_replicas) {
            errors.push("VC_NATS_STREAM_REPLICAS must be from 1 to 5".to_string());
        }
        match service {
            Service::Api => {
                match &self.admin_token {
                    None => errors.push("VC_ADMIN_TOKEN is required by vc-api".to_string()),
                    Some(t) if t.chars().count() < MIN_ADMIN_TOKEN_CHARS => errors.push(format!(
                        "VC_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
                    )),
                    Some(_) => {}
                }
                if self.api_addr.parse::<SocketAddr>().is_err() {
                    errors.push(format!(
                        "VC_API_ADDR {:?} is not an address such as 127.0.0.1:8080",
                        self.api_addr
                    ));
                }
                if !(100..=120_000).contains(&self.command_wait_ms) {
                    errors.push("VC_COMMAND_WAIT_MS must be from 100 to 120000".to_string());
                }
                if self.api_token_rate > 0 && self.api_token_burst == 0 {
                    errors.push(
                        "VC_API_TOKEN_BURST must be at least 1 while VC_API_TOKEN_RATE limits requests"
                            .to_string(),
                    );
                }
            }
            Service::Edge => {
                if self.edge_addr.parse::<SocketAddr>().is_err() {
                    errors.push(format!(
                        "VC_EDGE_ADDR {:?} is not an address such as 127.0.0.1:8090",
                        self.edge_addr
                    ));
                }
                if let Some(id) = &self.edge_id {
                    if id.is_empty()
                        || id.len() > 64
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        errors.push(
                            "VC_EDGE_ID must be 1-64 characters of letters, digits, '-' or '_'"
                                .to_string(),
                        );
                    }
                }
                if !(1..=1_000_000).contains(&self.edge_max_connections) {
                    errors.push("VC_EDGE_MAX_CONNECTIONS must be from 1 to 1000000".to_string());
                }
                // Both or neither. The files themselves are read (and their PEM checked) by the edge
                // at start, once these settings are valid.
                let set = |v: &Option<String>| v.as_deref().is_some_and(|p| !p.trim().is_empty());
                match (set(&self.edge_tls_cert), set(&self.edge_tls_key)) {
                    (true, false) => errors.push(
                        "VC_EDGE_TLS_KEY is required when VC_EDGE_TLS_CERT is set (the PEM file of the certificate's private key)"
                            .to_string(),
                    ),
                    (false, true) => errors.push(
                        "VC_EDGE_TLS_CERT is required when VC_EDGE_TLS_KEY is set (the PEM file of the certificate chain)"
                            .to_string(),
                    ),
                    _ => {}
                }
            }
            Service::Worker => {
                if let Some(a) = &self.worker_metrics_addr {
                    if a.parse::<SocketAddr>().is_err() {
                        errors.push(format!(
                            "VC_WORKER_METRICS_ADDR {a:?} is not an address such as 127.0.0.1:9090"
                        ));
                    }
                }
                if !(100..=300_000).contains(&self.litellm_timeout_ms) {
                    errors.push("VC_LITELLM_TIMEOUT_MS must be from 100 to 300000".to_string());
                }
                if let Err(e) = self.thresholds() {
                    errors.push(e);
                }
                if let Err(e) = self.webhooks() {
                    errors.push(e);
                }
                if self.spend_interval_secs > 86_400 {
                    errors.push("VC_SPEND_INTERVAL_SECS must be from 0 to 86400".to_string());
                }
                if self.key_rotation_grace_secs > crate::rotation::MAX_GRACE_SECS {
                    errors.push(format!(
                        "VC_KEY_ROTATION_GRACE_SECS must be from 0 to {}",
                        crate::rotation::MAX_GRACE_SECS
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The secrets of `service`: each is required and valid, and no other service's secret is given
    /// (each service gets only its own; see the module docs).
    fn validate_secrets(&self, service: Service, errors: &mut Vec<String>) {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|t| !t.trim().is_empty());
        let mut refuse = |var: &str, v: &Option<String>, program: &str| {
            if given(v) {
                errors.push(format!(
                    "{var} must not be given to {program}: each service gets only its own secrets (see docs/configuration.md)"
                ));
            }
        };
        match service {
            Service::Worker => {
                refuse("VC_ADMIN_TOKEN", &self.admin_token, "vc-worker");
                refuse("VC_API_SECRET_KEY", &self.api_secret_key, "vc-worker");
                refuse("VC_EDGE_SECRET_KEY", &self.edge_secret_key, "vc-worker");
                refuse(
                    "VC_EDGE_SECRET_KEY_PREVIOUS",
                    &self.edge_secret_key_previous,
                    "vc-worker",
                );
            }
            Service::Api => {
                refuse(
                    "VC_BUDGET_WEBHOOK_SECRET",
                    &self.budget_webhook_secret,
                    "vc-api",
                );
                refuse("VC_SECRET_KEY", &self.secret_key, "vc-api");
                refuse(
                    "VC_SECRET_KEY_PREVIOUS",
                    &self.secret_key_previous,
                    "vc-api",
                );
                refuse("VC_EDGE_SECRET_KEY", &self.edge_secret_key, "vc-api");
                refuse(
                    "VC_EDGE_SECRET_KEY_PREVIOUS",
                    &self.edge_secret_key_previous,
                    "vc-api",
                );
                refuse("LITELLM_MASTER_KEY", &self.litellm_master_key, "vc-api");
            }
            Service::Edge => {
                refuse(
                    "VC_BUDGET_WEBHOOK_SECRET",
                    &self.budget_webhook_secret,
                    "vc-edge",
                );
                refuse("VC_SECRET_KEY", &self.secret_key, "vc-edge");
                refuse(
                    "VC_SECRET_KEY_PREVIOUS",
                    &self.secret_key_previous,
                    "vc-edge",
                );
                refuse("VC_API_SECRET_KEY", &self.api_secret_key, "vc-edge");
                refuse("VC_ADMIN_TOKEN", &self.admin_token, "vc-edge");
                refuse("LITELLM_MASTER_KEY", &self.litellm_master_key, "vc-edge");
            }
        }
        if let Err(e) = self.sealer(service) {
            errors.push(e);
        }
    }

    /// `VC_BUDGET_THRESHOLDS`, parsed (default `0.5,0.8,1.0`).
    pub fn thresholds(&self) -> Result<Vec<f64>, String> {
        match self.budget_thresholds.as_deref() {
            None => Ok(crate::budget::DEFAULT_THRESHOLDS.to_vec()),
            Some(t) => crate::budget::parse_thresholds(t),
        }
    }

    /// The budget webhooks: URLs and signing key (`None` without URLs).
    pub fn webhooks(&self) -> Result<Option<(Vec<String>, String)>, String> {
        let urls: Vec<String> = self
            .budget_webhook_urls
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Ok(None);
        }
        if let Some(u) = urls.iter().find(|u| !http_url(u)) {
            return Err(format!(
                "VC_BUDGET_WEBHOOK_URLS: {u:?} is not an http:// or https:// URL"
            ));
        }
        let secret = self
            .budget_webhook_secret
            .clone()
            .filter(|s| s.trim().len() >= 32)
            .ok_or("VC_BUDGET_WEBHOOK_SECRET (at least 32 characters) is required with VC_BUDGET_WEBHOOK_URLS")?;
        Ok(Some((urls, secret)))
    }

    /// The sealer of `service`, from its keys: the worker's holds the master key(s) (every purpose),
    /// the API's the `command` key, the edge's the `agent-config-key` key(s).
    pub fn sealer(&self, service: Service) -> Result<Sealer, String> {
        let set = |v: &Option<String>| v.clone().filter(|t| !t.trim().is_empty());
        match service {
            Service::Worker => {
                let current = set(&self.secret_key)
                    .ok_or("VC_SECRET_KEY is required by vc-worker (32 random bytes, base64)")?;
                let current =
                    SecretKey::from_base64(&current).map_err(|e| format!("VC_SECRET_KEY: {e}"))?;
                let previous =
                    SecretKey::list_from_base64(self.secret_key_previous.as_deref().unwrap_or(""))
                        .map_err(|e| format!("VC_SECRET_KEY_PREVIOUS: {e}"))?;
                Sealer::with_previous(current, previous)
                    .map_err(|e| format!("VC_SECRET_KEY_PREVIOUS: {e}"))
            }
            Service::Api => {
                let key = purpose_key(
                    "VC_API_SECRET_KEY",
                    set(&self.api_secret_key),
                    Purpose::Command,
                    "vc-api",
                    "api",
                )?;
                Sealer::restricted(key, Vec::new()).map_err(|e| format!("VC_API_SECRET_KEY: {e}"))
            }
            Service::Edge => {
                let key = purpose_key(
                    "VC_EDGE_SECRET_KEY",
                    set(&self.edge_secret_key),
                    Purpose::AgentConfigKey,
                    "vc-edge",
                    "edge",
                )?;
                let previous = PurposeKey::list_from_text(
                    self.edge_secret_key_previous.as_deref().unwrap_or(""),
                )
                .map_err(|e| format!("VC_EDGE_SECRET_KEY_PREVIOUS: {e}"))?;
                if let Some(p) = previous
                    .iter()
                    .find(|p| p.purpose() != Purpose::AgentConfigKey)
                {
                    return Err(format!(
                        "VC_EDGE_SECRET_KEY_PREVIOUS holds a {} key; the edge's keys are {} keys (`vc-worker keys edge` with the earlier master key)",
                        p.purpose(),
                        Purpose::AgentConfigKey
                    ));
                }
                Sealer::restricted(key, previous)
                    .map_err(|e| format!("VC_EDGE_SECRET_KEY_PREVIOUS: {e}"))
            }
        }
    }

    /// LiteLLM's URLs when `LITELLM_BASE_URL` is set, without the master key (empty): what `vc-api`
    /// shows, as it never calls LiteLLM.
    pub fn litellm_endpoints(&self) -> Option<LitellmSettings> {
        let base = self
            .litellm_base_url
            .as_deref()?
            .trim_end_matches('/')
            .to_string();
        Some(LitellmSettings {
            public_url: self
                .litellm_public_url
                .clone()
                .unwrap_or_else(|| base.clone())
                .trim_end_matches('/')
                .to_string(),
            base_url: base,
            master_key: String::new(),
            timeout: std::time::Duration::from_millis(self.litellm_timeout_ms),
        })
    }

    /// LiteLLM settings when both the URL and the master key are set.
    pub fn litellm(&self) -> Option<LitellmSettings> {
        let base = self
            .litellm_base_url
            .as_deref()?
            .trim_end_matches('/')
            .to_string();
        let key = self.litellm_master_key.clone().filter(|k| !k.is_empty())?;
        Some(LitellmSettings {
            public_url: self
                .litellm_public_url
                .clone()
                .unwrap_or_else(|| base.clone())
                .trim_end_matches('/')
                .to_string(),
            base_url: base,
            master_key: key,
            timeout: std::time::Duration::from_millis(self.litellm_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_wins_and_all_errors_reported() {
        let s = Settings::load(
            None,
            &env(&[("VC_API_ADDR", "nope"), ("VC_COMMAND_WAIT_MS", "1")]),
        )
        .unwrap();
        let errs = s.validate(Service::Api).unwrap_err();
        assert!(
            errs.iter().any(|e| e.starts_with("VC_API_SECRET_KEY")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("VC_ADMIN_TOKEN")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("VC_API_ADDR")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("VC_COMMAND_WAIT_MS")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let short = "0123456789abcdef0123456789abcde"; // 31 characters
        let s = Settings::load(None, &env(&[("VC_ADMIN_TOKEN", short)])).unwrap();
        let errs = s.validate(Service::Api).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("VC_ADMIN_TOKEN must be at least 32 characters")),
            "{errs:?}"
        );
        let long = format!("{short}f");
        let s = Settings::load(None, &env(&[("VC_ADMIN_TOKEN", &long)])).unwrap();
        let errs = s.validate(Service::Api).unwrap_err();
        assert!(
            !errs.iter().any(|e| e.contains("VC_ADMIN_TOKEN")),
            "{errs:?}"
        );
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("vc-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "nats_url = \"nats://a:1\"\nredis_url = \"redis://b:2\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &env(&[("REDIS_URL", "redis://c:3")])).unwrap();
        assert_eq!(s.nats_url, "nats://a:1");
        assert_eq!(s.redis_url, "redis://c:3");
        std::fs::write(&f, "bogus = 1\n").unwrap();
        assert!(Settings::load(Some(&f), &env(&[])).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_and_validation_errors_reported_together() {
        let errs = Settings::load_validated(
            Some(Path::new("/nonexistent/vc.toml")),
            &env(&[
                ("VC_COMMAND_WAIT_MS", "abc"),
                ("VC_LOG_FORMAT", "JSON"),
                ("VC_API_ADDR", "nope"),
            ]),
            Service::Api,
        )
        .unwrap_err();
        for needle in [
            "does not exist",
            "VC_COMMAND_WAIT_MS",
            "VC_LOG_FORMAT",
            "VC_API_ADDR",
            "VC_API_SECRET_KEY",
            "VC_ADMIN_TOKEN",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{needle} missing in {errs:?}"
            );
        }
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_url_credentials("nats://api:pw@a:4222,nats://b:4222"),
            "nats://api:***@a:4222,nats://b:4222"
        );
        let s = Settings::load(None, &env(&[("NATS_URL", "nats://api:secretpw@h:1")])).unwrap();
        assert!(!format!("{s:?}").contains("secretpw"));
    }

    const MASTER: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn purpose_key_text(master: &str, p: Purpose) -> String {
        SecretKey::from_base64(master)
            .unwrap()
            .purpose_key(p)
            .to_text()
    }

    #[test]
    fn edge_tls_needs_both_files() {
        let edge_key = purpose_key_text(MASTER, Purpose::AgentConfigKey);
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![("VC_EDGE_SECRET_KEY", edge_key.as_str())];
            pairs.extend_from_slice(extra);
            Settings::load(None, &env(&pairs)).unwrap()
        };
        assert_eq!(with(&[]).validate(Service::Edge), Ok(()));
        let both = with(&[
            ("VC_EDGE_TLS_CERT", "edge.crt"),
            ("VC_EDGE_TLS_KEY", "edge.key"),
        ]);
        assert_eq!(both.validate(Service::Edge), Ok(()));
        assert_eq!(both.edge_tls_cert.as_deref(), Some("edge.crt"));
        let errs = with(&[("VC_EDGE_TLS_CERT", "edge.crt")])
            .validate(Service::Edge)
            .unwrap_err();
        assert!(
            errs.len() == 1 && errs[0].starts_with("VC_EDGE_TLS_KEY is required"),
            "{errs:?}"
        );
        let errs = with(&[("VC_EDGE_TLS_KEY", "edge.key")])
            .validate(Service::Edge)
            .unwrap_err();
        assert!(
            errs.len() == 1 && errs[0].starts_with("VC_EDGE_TLS_CERT is required"),
            "{errs:?}"
        );
        // Other services do not care.
        let worker = Settings::load(
            None,
            &env(&[("VC_SECRET_KEY", MASTER), ("VC_EDGE_TLS_CERT", "edge.crt")]),
        )
        .unwrap();
        assert!(worker.validate(Service::Worker).is_ok());
    }

    #[test]
    fn each_service_takes_its_own_secrets_only() {
        let old = SecretKey::generate();
        let edge_key = purpose_key_text(MASTER, Purpose::AgentConfigKey);
        let api_key = purpose_key_text(MASTER, Purpose::Command);
        let admin = "0123456789abcdef0123456789abcdef";
        let ok = |service, pairs: &[(&str, &str)]| {
            let s = Settings::load(None, &env(pairs)).unwrap();
            assert_eq!(s.validate(service), Ok(()), "{pairs:?}");
            s.sealer(service).unwrap()
        };
        let worker = ok(
            Service::Worker,
            &[
                ("VC_SECRET_KEY", MASTER),
                ("VC_SECRET_KEY_PREVIOUS", &old.to_base64()),
                ("LITELLM_MASTER_KEY", "sk-1"),
            ],
        );
        assert!(worker.holds(Purpose::ModelApiKey) && worker.holds_key_id(old.key_id()));
        let edge = ok(
            Service::Edge,
            &[
                ("VC_EDGE_SECRET_KEY", &edge_key),
                (
                    "VC_EDGE_SECRET_KEY_PREVIOUS",
                    &old.purpose_key(Purpose::AgentConfigKey).to_text(),
                ),
            ],
        );
        assert!(edge.holds(Purpose::AgentConfigKey) && !edge.holds(Purpose::ModelApiKey));
        assert_eq!(edge.key_id(), worker.key_id());
        let api = ok(
            Service::Api,
            &[("VC_API_SECRET_KEY", &api_key), ("VC_ADMIN_TOKEN", admin)],
        );
        assert!(api.holds(Purpose::Command) && !api.holds(Purpose::AgentConfigKey));

        // Another service's secrets are refused, all of them reported at once.
        let errs = Settings::load(
            None,
            &env(&[
                ("VC_EDGE_SECRET_KEY", &edge_key),
                ("VC_SECRET_KEY", MASTER),
                ("VC_ADMIN_TOKEN", admin),
                ("LITELLM_MASTER_KEY", "sk-1"),
                ("VC_API_SECRET_KEY", &api_key),
            ]),
        )
        .unwrap()
        .validate(Service::Edge)
        .unwrap_err();
        for var in [
            "VC_SECRET_KEY ",
            "VC_ADMIN_TOKEN ",
            "LITELLM_MASTER_KEY ",
            "VC_API_SECRET_KEY ",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(var)), "{var}: {errs:?}");
        }
        assert_eq!(errs.len(), 4, "{errs:?}");
        let errs = Settings::load(
            None,
            &env(&[("VC_API_SECRET_KEY", &api_key), ("VC_SECRET_KEY", MASTER)]),
        )
        .unwrap()
        .validate(Service::Api)
        .unwrap_err();
        assert!(
            errs.iter().any(|e| e.starts_with("VC_SECRET_KEY must not")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("VC_ADMIN_TOKEN is required")),
            "{errs:?}"
        );

        // The wrong purpose, or a master key where a purpose key belongs, is named.
        let errs = Settings::load(None, &env(&[("VC_EDGE_SECRET_KEY", &api_key)]))
            .unwrap()
            .validate(Service::Edge)
            .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("is a command key; vc-edge needs its agent-config-key key")),
            "{errs:?}"
        );
        let errs = Settings::load(None, &env(&[("VC_EDGE_SECRET_KEY", MASTER)]))
            .unwrap()
            .validate(Service::Edge)
            .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("VC_EDGE_SECRET_KEY: purpose key must be")),
            "{errs:?}"
        );
        let errs = Settings::load(
            None,
            &env(&[
                ("VC_SECRET_KEY", MASTER),
                ("VC_SECRET_KEY_PREVIOUS", "AAAA"),
            ]),
        )
        .unwrap()
        .validate(Service::Worker)
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("VC_SECRET_KEY_PREVIOUS: secret key must be 32 bytes")),
            "{errs:?}"
        );
        let errs = Settings::load(None, &env(&[]))
            .unwrap()
            .validate(Service::Worker)
            .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("VC_SECRET_KEY is required by vc-worker")),
            "{errs:?}"
        );
    }

    #[test]
    fn litellm_needs_both() {
        let s = Settings::load(None, &env(&[("LITELLM_BASE_URL", "http://x:4000/")])).unwrap();
        assert!(s.litellm().is_none());
        let s = Settings::load(
            None,
            &env(&[
                ("LITELLM_BASE_URL", "http://x:4000/"),
                ("LITELLM_MASTER_KEY", "sk-1"),
            ]),
        )
        .unwrap();
        let l = s.litellm().unwrap();
        assert_eq!(l.base_url, "http://x:4000");
        assert_eq!(l.public_url, "http://x:4000");
    }
}
