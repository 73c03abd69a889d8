//! The LiteLLM admin API client: only the calls the sync needs, each with a timeout, errors typed.
//!
//! Semantics follow `spec/litellm-admin-api.md` (the real proxy, sharp edges included): deployments
//! are addressed by `model_info.id`; an unknown id answers 400; an unknown key answers 401 on
//! `/key/update` and 404 on `/key/info`; `models: []` means *all* models.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vc_shared::budget::RealmLimits;

/// Errors of a LiteLLM call. The message never contains the master key or a virtual key.
#[derive(Debug, thiserror::Error)]
pub enum LitellmError {
    /// The proxy could not be reached or did not answer in time.
    #[error("litellm unreachable: {0}")]
    Transport(String),
    /// The proxy answered with an error status.
    #[error("litellm answered {status} on {route}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Route (no query string).
        route: &'static str,
        /// Error message from the body (truncated).
        message: String,
    },
    /// The proxy answered 200 with a body we could not read.
    #[error("litellm answered an unexpected body on {0}")]
    Body(&'static str),
}

impl LitellmError {
    /// Whether retrying later may help (transport errors and 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            LitellmError::Transport(_) | LitellmError::Body(_) => true,
            LitellmError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
        }
    }
}

/// A deployment as `/model/info` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `model_name`.
    pub model_name: String,
    /// `litellm_params.model`.
    pub upstream: String,
    /// `litellm_params.api_base`.
    pub api_base: Option<String>,
    /// `model_info.vc_hash`: our digest of the desired deployment (incl. the key's hash).
    pub vc_hash: Option<String>,
    /// `model_info.vc_managed`: created by this control plane (only those are ever deleted as orphans).
    pub vc_managed: bool,
}

/// A key as `/key/info` (or a key row of `/team/info`) shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// `token`: the key's SHA-256 (hex), when the row carries it.
    pub token: Option<String>,
    /// `team_id`.
    pub team_id: Option<String>,
    /// `models`.
    pub models: Vec<String>,
    /// `max_budget`.
    pub max_budget: Option<f64>,
    /// `budget_duration`.
    pub budget_duration: Option<String>,
    /// `key_alias`.
    pub key_alias: Option<String>,
    /// `blocked`.
    pub blocked: bool,
    /// `metadata`.
    pub metadata: Value,
    /// `rpm_limit`, `tpm_limit`, `max_parallel_requests`.
    pub limits: RealmLimits,
}

/// A team as `/team/info` shows it, with its keys (the default: a team that does not exist yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamInfo {
    /// `max_budget`.
    pub max_budget: Option<f64>,
    /// `budget_duration`.
    pub budget_duration: Option<String>,
    /// `metadata`.
    pub metadata: Value,
    /// `spend` (USD, this budget period).
    pub spend: f64,
    /// `budget_reset_at`.
    pub budget_reset_at: Option<String>,
    /// `rpm_limit`, `tpm_limit`, `max_parallel_requests`.
    pub limits: RealmLimits,
    /// The team's keys.
    pub keys: Vec<KeyInfo>,
}

/// The client.
#[derive(Clone)]
pub struct Litellm {
    http: reqwest::Client,
    base: String,
    master_key: String,
}

impl std::fmt::Debug for Litellm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Litellm")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn truncate(s: &str) -> String {
    let s: String = s.chars().take(300).collect();
    // Never echo anything that looks like a key back into logs or states.
    s.split_whitespace()
        .map(|w| if w.contains("sk-") { "[redacted]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

fn error_message(body: &Value) -> String {
    if let Some(m) = body.pointer("/error/message").and_then(Value::as_str) {
        return truncate(m);
    }
    if let Some(d) = body.get("detail") {
        return truncate(&d.to_string());
    }
    truncate(&body.to_string())
}

impl Litellm {
    /// A client for `base` (no trailing `/`) with a per-call `timeout`.
    pub fn new(base: &str, master_key: &str, timeout: Duration) -> Result<Self, LitellmError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3).min(timeout))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| LitellmError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            master_key: master_key.to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        route: &'static str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), LitellmError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, route))
            .bearer_auth(&self.master_key)
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| LitellmError::Transport(truncate(&e.without_url().to_string())))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| LitellmError::Transport(truncate(&e.without_url().to_string())))?;
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    fn fail(status: StatusCode, route: &'static str, body: &Value) -> LitellmError {
        LitellmError::Status {
            status: status.as_u16(),
            route,
            message: error_message(body),
        }
    }

    /// `POST route` with `body`: `Ok(true)` on success, `Ok(false)` when the proxy answers `absent`
    /// (the thing is not there), an error otherwise.
    async fn post(
        &self,
        route: &'static str,
        body: Value,
        absent: Option<StatusCode>,
    ) -> Result<bool, LitellmError> {
        let (s, b) = self
            .call(reqwest::Method::POST, route, &[], Some(body))
            .await?;
        if s.is_success() {
            Ok(true)
        } else if Some(s) == absent {
            Ok(false)
        } else {
            Err(Self::fail(s, route, &b))
        }
    }

    /// `GET /health/liveliness`.
    pub async fn health(&self) -> Result<(), LitellmError> {
        let (s, b) = self
            .call(reqwest::Method::GET, "/health/liveliness", &[], None)
            .await?;
        if s.is_success() {
            Ok(())
        } else {
            Err(Self::fail(s, "/health/liveliness", &b))
        }
    }

    /// The deployment with `model_info.id == id`, if any.
    pub async fn deployment(&self, id: &str) -> Result<Option<Deployment>, LitellmError> {
        let route = "/model/info";
        let (s, b) = self
            .call(
                reqwest::Method::GET,
                route,
                &[("litellm_model_id", id)],
                None,
            )
            .await?;
        if s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !s.is_success() {
            return Err(Self::fail(s, route, &b));
        }
        let data = b
            .get("data")
            .and_then(Value::as_array)
            .ok_or(LitellmError::Body(route))?;
        Ok(data
            .iter()
            .find(|d| d.pointer("/model_info/id").and_then(Value::as_str) == Some(id))
            .map(parse_deployment))
    }

    /// Every deployment: (model_info.id, deployment).
    pub async fn deployments(&self) -> Result<Vec<(String, Deployment)>, LitellmError> {
        let route = "/model/info";
        let (s, b) = self.call(reqwest::Method::GET, route, &[], None).await?;
        if !s.is_success() {
            return Err(Self::fail(s, route, &b));
        }
        let data = b
            .get("data")
            .and_then(Value::as_array)
            .ok_or(LitellmError::Body(route))?;
        Ok(data
            .iter()
            .filter_map(|d| {
                d.pointer("/model_info/id")
                    .and_then(Value::as_str)
                    .map(|id| (id.to_string(), parse_deployment(d)))
            })
            .collect())
    }

    /// `POST /model/new`.
    pub async fn create_deployment(&self, body: Value) -> Result<(), LitellmError> {
        self.post("/model/new", body, None).await.map(|_| ())
    }

    /// `POST /model/delete` by id; `Ok(false)` when there was none.
    pub async fn delete_deployment(&self, id: &str) -> Result<bool, LitellmError> {
        let route = "/model/delete";
        let (s, b) = self
            .call(reqwest::Method::POST, route, &[], Some(json!({"id": id})))
            .await?;
        if s.is_success() {
            return Ok(true);
        }
        if s == StatusCode::BAD_REQUEST && error_message(&b).contains("not found") {
            return Ok(false);
        }
        Err(Self::fail(s, route, &b))
    }

    /// `GET /key/info`; `None` when the key is unknown. The key travels as its hashed token (SHA-256
    /// hex, which the proxy accepts in place of the key): a query string ends up in access logs, and
    /// the key itself must not.
    pub async fn key_info(&self, key: &str) -> Result<Option<KeyInfo>, LitellmError> {
        let route = "/key/info";
        let token = vc_shared::crypto::sha256_hex(key);
        let (s, b) = self
            .call(reqwest::Method::GET, route, &[("key", &token)], None)
            .await?;
        if s == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !s.is_success() {
            return Err(Self::fail(s, route, &b));
        }
        let info = b.get("info").ok_or(LitellmError::Body(route))?;
        Ok(Some(parse_key(info)))
    }

    /// `POST /key/generate` (with our chosen `key` value).
    pub async fn generate_key(&self, body: Value) -> Result<(), LitellmError> {
        self.post("/key/generate", body, None).await.map(|_| ())
    }

    /// `POST /key/update`; `Ok(false)` when the key is unknown (LiteLLM answers 401).
    pub async fn update_key(&self, body: Value) -> Result<bool, LitellmError> {
        self.post("/key/update", body, Some(StatusCode::UNAUTHORIZED))
            .await
    }

    /// `POST /key/delete` by alias; `Ok(false)` when there was none.
    pub async fn delete_key_alias(&self, alias: &str) -> Result<bool, LitellmError> {
        self.post(
            "/key/delete",
            json!({"key_aliases": [alias]}),
            Some(StatusCode::NOT_FOUND),
        )
        .await
    }

    /// `POST /key/delete` by key value or its token (SHA-256 hex); `Ok(false)` when there was none.
    pub async fn delete_key(&self, key: &str) -> Result<bool, LitellmError> {
        self.post(
            "/key/delete",
            json!({"keys": [key]}),
            Some(StatusCode::NOT_FOUND),
        )
        .await
    }

    /// `GET /team/info`: the team and its keys; `None` when there is no such team.
    pub async fn team_info(&self, team_id: &str) -> Result<Option<TeamInfo>, LitellmError> {
        let route = "/team/info";
        let (s, b) = self
            .call(reqwest::Method::GET, route, &[("team_id", team_id)], None)
            .await?;
        if s == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !s.is_success() {
            return Err(Self::fail(s, route, &b));
        }
        let info = b.get("team_info").ok_or(LitellmError::Body(route))?;
        Ok(Some(TeamInfo {
            max_budget: info.get("max_budget").and_then(Value::as_f64),
            budget_duration: string(info.get("budget_duration")),
            metadata: info.get("metadata").cloned().unwrap_or(Value::Null),
            spend: info.get("spend").and_then(Value::as_f64).unwrap_or(0.0),
            budget_reset_at: string(info.get("budget_reset_at")),
            limits: parse_limits(info),
            keys: b
                .get("keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(parse_key).collect())
                .unwrap_or_default(),
        }))
    }

    /// `POST /team/new` (with our chosen `team_id`).
    pub async fn create_team(&self, body: Value) -> Result<(), LitellmError> {
        self.post("/team/new", body, None).await.map(|_| ())
    }

    /// `POST /team/update`; `Ok(false)` when there is no such team.
    pub async fn update_team(&self, body: Value) -> Result<bool, LitellmError> {
        self.post("/team/update", body, Some(StatusCode::NOT_FOUND))
            .await
    }

    /// `POST /team/delete` (the proxy deletes the team's keys with it); `Ok(false)` when there was
    /// none.
    pub async fn delete_team(&self, team_id: &str) -> Result<bool, LitellmError> {
        self.post(
            "/team/delete",
            json!({"team_ids": [team_id]}),
            Some(StatusCode::NOT_FOUND),
        )
        .await
    }

    /// Every key alias starting with `prefix` (paged `/key/list`), for reconciling orphans.
    pub async fn key_aliases(&self, prefix: &str) -> Result<Vec<String>, LitellmError> {
        let route = "/key/list";
        let mut out = Vec::new();
        for page in 1..=1000u32 {
            let p = page.to_string();
            let (s, b) = self
                .call(
                    reqwest::Method::GET,
                    route,
                    &[
                        ("page", &p),
                        ("size", "100"),
                        ("return_full_object", "true"),
                    ],
                    None,
                )
                .await?;
            if !s.is_success() {
                return Err(Self::fail(s, route, &b));
            }
            let keys = b
                .get("keys")
                .and_then(Value::as_array)
                .ok_or(LitellmError::Body(route))?;
            for k in keys {
                if let Some(a) = k.get("key_alias").and_then(Value::as_str) {
                    if a.starts_with(prefix) {
                        out.push(a.to_string());
                    }
                }
            }
            let total_pages = b.get("total_pages").and_then(Value::as_u64).unwrap_or(1);
            if u64::from(page) >= total_pages || keys.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn parse_key(info: &Value) -> KeyInfo {
    KeyInfo {
        token: string(info.get("token")),
        team_id: string(info.get("team_id")),
        models: strings(info.get("models")),
        max_budget: info.get("max_budget").and_then(Value::as_f64),
        budget_duration: string(info.get("budget_duration")),
        key_alias: string(info.get("key_alias")),
        // The proxy answers `null` for a key never blocked.
        blocked: info
            .get("blocked")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        metadata: info.get("metadata").cloned().unwrap_or(Value::Null),
        limits: parse_limits(info),
    }
}

fn parse_limits(v: &Value) -> RealmLimits {
    RealmLimits {
        rpm_limit: v.get("rpm_limit").and_then(Value::as_u64),
        tpm_limit: v.get("tpm_limit").and_then(Value::as_u64),
        max_parallel_requests: v.get("max_parallel_requests").and_then(Value::as_u64),
    }
}

fn parse_deployment(d: &Value) -> Deployment {
    Deployment {
        model_name: d
            .get("model_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        upstream: d
            .pointer("/litellm_params/model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        api_base: d
            .pointer("/litellm_params/api_base")
            .and_then(Value::as_str)
            .map(str::to_string),
        vc_hash: d
            .pointer("/model_info/vc_hash")
            .and_then(Value::as_str)
            .map(str::to_string),
        vc_managed: d
            .pointer("/model_info/vc_managed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}
