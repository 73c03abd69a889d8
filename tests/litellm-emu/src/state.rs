//! The emulator's state: LiteLLM's database (deployments, virtual keys and teams), the router's view
//! of the deployments, rate-limit windows, and the fault-injection switches.
//!
//! Everything sits behind `std::sync::Mutex`es held only for short, synchronous sections; no
//! handler awaits while holding one (`clippy::await_holding_lock` is denied workspace-wide).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::limits::RateWindow;
use crate::pytime;
use crate::spend::PRICE_PARAMS;

/// Lock a mutex, recovering the data if a panicking thread poisoned it (state stays usable in tests).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `created_by` / `updated_by` of rows made with the master key.
pub(crate) const ADMIN_USER_ID: &str = "default_user_id";

/// `litellm_params` keys that `/model/info` never shows (`remove_sensitive_info_from_deployment`).
const SENSITIVE_PARAMS: [&str; 5] = [
    "api_key",
    "client_secret",
    "vertex_credentials",
    "aws_access_key_id",
    "aws_secret_access_key",
];

/// Flags the proxy adds to every stored `litellm_params`.
const DEFAULT_PARAM_FLAGS: [&str; 3] = [
    "use_litellm_proxy",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
];

/// A deployment as stored in LiteLLM's database (a snapshot for tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    /// The `model_id` column: what `/model/delete`, `/model/update` and `?litellm_model_id=` address.
    pub id: String,
    /// The public model name; not unique (deployments sharing it are load-balanced).
    pub model_name: String,
    /// `litellm_params` in clear, including `api_key` (the real proxy stores them encrypted).
    pub litellm_params: Map<String, Value>,
    /// The stored `model_info` JSON. Its `id` normally equals [`Deployment::id`], but a
    /// `PATCH /model/{id}/update` carrying `model_info` without `id` replaces it with a random
    /// uuid, exactly as the real proxy does.
    pub model_info: Map<String, Value>,
    /// Creation time (millisecond precision, as read back from Postgres).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last update time.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// True while a `POST /model/update` is stored but not yet visible to routing and `/model/info`.
    pub update_pending: bool,
}

/// A virtual key as stored in LiteLLM's database (a snapshot for tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualKey {
    /// The plaintext key (`sk-...`); the real proxy only keeps [`VirtualKey::token`].
    pub key: String,
    /// `sha256(key)` in hex: the primary key of LiteLLM's key table.
    pub token: String,
    /// `sk-...` + the last four characters of the key.
    pub key_name: String,
    /// Unique alias, if any.
    pub key_alias: Option<String>,
    /// Model names the key may call; empty means **all** models.
    pub models: Vec<String>,
    /// Spend cap in USD; `None` = unlimited.
    pub max_budget: Option<f64>,
    /// Budget period as given (`"30d"`, `"1mo"`, or anything: garbage is stored silently).
    pub budget_duration: Option<String>,
    /// When the spend resets, computed from `budget_duration`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub budget_reset_at: Option<OffsetDateTime>,
    /// Expiry, from `duration`; `None` = never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// Free-form metadata: a JSON object, or `null` right after a `/key/update` with
    /// `"metadata": null` (the next update rewrites it as `{}`, as the real proxy does).
    pub metadata: Value,
    /// Spend so far in USD.
    pub spend: f64,
    /// `Some(true)` blocks every call with the key.
    pub blocked: Option<bool>,
    /// Team id, if any (not validated on generate, validated on update, like the real proxy).
    /// A `team_id` naming no team constrains nothing.
    pub team_id: Option<String>,
    /// Tokens-per-minute limit (enforced on chat completions, see `limits`).
    pub tpm_limit: Option<i64>,
    /// Requests-per-minute limit (enforced on chat completions).
    pub rpm_limit: Option<i64>,
    /// Concurrent calls allowed; the emulator's calls never overlap, so only 0 binds.
    pub max_parallel_requests: Option<i64>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last update time.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl VirtualKey {
    /// Whether the key may call `model` (`[]` and `all-proxy-models` grant everything).
    pub(crate) fn allows(&self, model: &str) -> bool {
        self.grants_all() || self.models.iter().any(|m| m == model)
    }

    /// Whether the key's model list grants every model.
    pub(crate) fn grants_all(&self) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == "all-proxy-models")
    }

    /// Whether the key has expired at `now`.
    pub(crate) fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e < now)
    }
}

/// A team as stored in LiteLLM's database (a snapshot for tests).
///
/// A team caps every key whose `team_id` names it: its `models`, `blocked`, `max_budget` and
/// `rpm_limit`/`tpm_limit` are checked on each call, and its `spend` grows with theirs and
/// outlives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    /// The primary key (a uuid unless given to `/team/new`).
    pub team_id: String,
    /// Display name; not unique.
    pub team_alias: Option<String>,
    /// Model names the team's keys may call; empty means **all** models.
    pub models: Vec<String>,
    /// Spend cap in USD for all the team's keys together; `None` = unlimited.
    pub max_budget: Option<f64>,
    /// Budget period as given (garbage is stored silently, as for keys).
    pub budget_duration: Option<String>,
    /// Computed from `budget_duration` when it is set; left stale when it is cleared.
    #[serde(with = "time::serde::rfc3339::option")]
    pub budget_reset_at: Option<OffsetDateTime>,
    /// Spend so far in USD: the sum of its keys' calls, deleted keys included.
    pub spend: f64,
    /// `true` refuses every call made with the team's keys.
    pub blocked: bool,
    /// Free-form metadata: a JSON object, or `null` after a `/team/update` with `"metadata": null`.
    pub metadata: Value,
    /// Tokens-per-minute limit for all the team's keys together (enforced on chat completions).
    pub tpm_limit: Option<i64>,
    /// Requests-per-minute limit for all the team's keys together (enforced on chat completions).
    pub rpm_limit: Option<i64>,
    /// The table's `max_parallel_requests` column. No route writes it: neither `/team/new` nor
    /// `/team/update` declares the field, and the proxy drops undeclared fields. Always `None`.
    pub max_parallel_requests: Option<i64>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last update time.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Team {
    /// Whether the team's keys may call `model` (`[]`, `*` and `all-proxy-models` grant everything).
    pub(crate) fn allows(&self, model: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|m| m == model || m == "*" || m == "all-proxy-models")
    }
}

/// What the router (and `/model/info`) sees of one deployment.
#[derive(Debug, Clone)]
pub(crate) struct RouterView {
    pub(crate) model_name: String,
    pub(crate) params: Map<String, Value>,
    pub(crate) model_info: Map<String, Value>,
    /// Order in the router's model list: a deployment re-added by a reload moves to the end.
    pub(crate) seq: u64,
}

/// One deployment row plus the router's (possibly stale) copy of it.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRow {
    pub(crate) id: String,
    pub(crate) model_name: String,
    pub(crate) params: Map<String, Value>,
    pub(crate) model_info: Map<String, Value>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    /// Stable "ciphertexts" per param: `(plaintext it was made from, ciphertext)`.
    ciphers: HashMap<String, (String, String)>,
    /// What routing uses now.
    pub(crate) router: RouterView,
    /// A stored update the router picks up at its next reload (`Instant`).
    pub(crate) pending: Option<(RouterView, Instant)>,
}

impl DeploymentRow {
    /// A new row, immediately routable.
    pub(crate) fn new(
        id: String,
        model_name: String,
        params: Map<String, Value>,
        model_info: Map<String, Value>,
        now: OffsetDateTime,
        seq: u64,
    ) -> Self {
        let params = normalize_params(params);
        let router = RouterView {
            model_name: model_name.clone(),
            params: params.clone(),
            model_info: model_info.clone(),
            seq,
        };
        DeploymentRow {
            id,
            model_name,
            params,
            model_info,
            created_at: now,
            updated_at: now,
            ciphers: HashMap::new(),
            router,
            pending: None,
        }
    }

    /// The database row as `/model/new` and the update routes return it (values "encrypted").
    pub(crate) fn db_json(&mut self) -> Value {
        let mut enc = Map::new();
        for (k, v) in &self.params {
            let shown = match v {
                Value::String(plain) => {
                    let fresh = match self.ciphers.get(k) {
                        Some((p, c)) if p == plain => c.clone(),
                        _ => {
                            let c = pseudo_encrypt(plain);
                            self.ciphers.insert(k.clone(), (plain.clone(), c.clone()));
                            c
                        }
                    };
                    Value::String(fresh)
                }
                other => other.clone(),
            };
            enc.insert(k.clone(), shown);
        }
        let mut info = self.model_info.clone();
        info.entry("db_model").or_insert(Value::Bool(false));
        json!({
            "model_id": self.id,
            "model_name": self.model_name,
            "litellm_params": enc,
            "model_info": info,
            "created_at": pytime::iso_z(self.created_at),
            "created_by": ADMIN_USER_ID,
            "updated_at": pytime::iso_z(self.updated_at),
            "updated_by": ADMIN_USER_ID,
        })
    }

    /// The router's entry as `/model/info` lists it (no credentials, `db_model: true`).
    pub(crate) fn info_json(&self) -> Value {
        let mut params = self.router.params.clone();
        for k in SENSITIVE_PARAMS {
            params.remove(k);
        }
        let mut info = self.router.model_info.clone();
        info.insert("id".into(), Value::String(self.id.clone()));
        info.insert("db_model".into(), Value::Bool(true));
        // The proxy registers a priced deployment's costs and reports them with its info.
        for k in PRICE_PARAMS {
            if let Some(price) = params.get(k) {
                info.insert(k.into(), price.clone());
            }
        }
        json!({
            "model_name": self.router.model_name,
            "litellm_params": params,
            "model_info": info,
        })
    }

    /// The current stored values as a router entry.
    pub(crate) fn snapshot(&self, seq: u64) -> RouterView {
        RouterView {
            model_name: self.model_name.clone(),
            params: self.params.clone(),
            model_info: self.model_info.clone(),
            seq,
        }
    }

    fn public(&self) -> Deployment {
        Deployment {
            id: self.id.clone(),
            model_name: self.model_name.clone(),
            litellm_params: self.params.clone(),
            model_info: self.model_info.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            update_pending: self.pending.is_some(),
        }
    }
}

/// Drop `null`s and add the flags the proxy stores with every deployment.
pub(crate) fn normalize_params(params: Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = params.into_iter().filter(|(_, v)| !v.is_null()).collect();
    for flag in DEFAULT_PARAM_FLAGS {
        out.entry(flag).or_insert(Value::Bool(false));
    }
    out
}

/// An opaque, url-safe base64 string shaped like LiteLLM's NaCl secretbox output
/// (24-byte nonce + 16-byte tag + ciphertext). Not decryptable, by design.
fn pseudo_encrypt(plain: &str) -> String {
    let mut bytes = vec![0_u8; 24 + 16 + plain.len()];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE.encode(bytes)
}

/// LiteLLM's database plus its in-memory router.
#[derive(Debug, Default)]
pub(crate) struct Db {
    /// Deployments in creation order (the `model_id` is unique).
    pub(crate) deployments: Vec<DeploymentRow>,
    /// Keys in creation order (the `token` is unique).
    pub(crate) keys: Vec<VirtualKey>,
    /// Teams in creation order (the `team_id` is unique).
    pub(crate) teams: Vec<Team>,
    /// Rate-limit windows by descriptor (`api_key:<token>`, `team:<team_id>`); see `limits`.
    pub(crate) rate: HashMap<String, RateWindow>,
    /// Round-robin cursor per model name.
    pub(crate) round_robin: HashMap<String, usize>,
    /// Monotonic counter for router order.
    seq: u64,
    /// How long a `POST /model/update` takes to reach the router.
    pub(crate) reload_delay: Duration,
}

impl Db {
    /// The next router position.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Let the router pick up every stored update whose reload time has come.
    pub(crate) fn reload_router(&mut self, now: Instant) {
        for i in 0..self.deployments.len() {
            let due = matches!(&self.deployments[i].pending, Some((_, at)) if *at <= now);
            if due {
                let seq = self.next_seq();
                let row = &mut self.deployments[i];
                if let Some((mut view, _)) = row.pending.take() {
                    view.seq = seq;
                    row.router = view;
                }
            }
        }
    }

    /// Deployments in the router's order (call [`Db::reload_router`] first).
    pub(crate) fn routed(&self) -> Vec<&DeploymentRow> {
        let mut rows: Vec<&DeploymentRow> = self.deployments.iter().collect();
        rows.sort_by_key(|r| r.router.seq);
        rows
    }

    /// Distinct routable model names, in router order.
    pub(crate) fn routed_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for row in self.routed() {
            if !names.contains(&row.router.model_name) {
                names.push(row.router.model_name.clone());
            }
        }
        names
    }

    /// Index of the deployment with this `model_id`.
    pub(crate) fn deployment_index(&self, id: &str) -> Option<usize> {
        self.deployments.iter().position(|d| d.id == id)
    }

    /// Index of the key addressed by plaintext (`sk-...`, hashed) or by token.
    pub(crate) fn key_index(&self, key_or_token: &str) -> Option<usize> {
        let token = token_of(key_or_token);
        self.keys.iter().position(|k| k.token == token)
    }

    /// Index of the team with this `team_id`.
    pub(crate) fn team_index(&self, team_id: &str) -> Option<usize> {
        self.teams.iter().position(|t| t.team_id == team_id)
    }

    /// The team a key belongs to, if its `team_id` names an existing team (a dangling
    /// `team_id`, accepted by `/key/generate`, constrains nothing).
    pub(crate) fn team_of(&self, vk: &VirtualKey) -> Option<&Team> {
        let id = vk.team_id.as_deref()?;
        self.teams.iter().find(|t| t.team_id == id)
    }

    /// Snapshots of every deployment.
    pub(crate) fn public_deployments(&self) -> Vec<Deployment> {
        self.deployments.iter().map(DeploymentRow::public).collect()
    }

    /// Wipe everything, as a new database would (the reload delay is configuration, kept).
    pub(crate) fn wipe(&mut self) {
        let reload_delay = self.reload_delay;
        *self = Db {
            reload_delay,
            ..Db::default()
        };
    }
}

/// `sha256(key)` as lowercase hex.
pub(crate) fn hash_key(key: &str) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// LiteLLM's `_hash_token_if_needed`: `sk-...` values are hashed, anything else is taken as a token.
pub(crate) fn token_of(key_or_token: &str) -> String {
    if key_or_token.starts_with("sk-") {
        hash_key(key_or_token)
    } else {
        key_or_token.to_owned()
    }
}

/// `sk-...` + the last four characters (`abbreviate_api_key`).
pub(crate) fn key_name(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("sk-...{tail}")
}

/// One queued fault: the next `remaining` requests under `prefix` answer `status`.
#[derive(Debug, Clone)]
pub(crate) struct FailRule {
    pub(crate) prefix: String,
    pub(crate) remaining: usize,
    pub(crate) status: u16,
}

/// Fault-injection switches and request counters.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Every request answers 503 while set.
    pub(crate) down: bool,
    /// Added before every request is handled.
    pub(crate) latency: Duration,
    /// Queued failures, matched in order.
    pub(crate) rules: Vec<FailRule>,
    /// Hits per exact path (control routes under `/emu/` are not counted).
    pub(crate) counts: HashMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_and_tokens() {
        assert_eq!(key_name("sk-custom-123"), "sk-...-123");
        assert_eq!(key_name("sk-x"), "sk-...sk-x");
        assert_eq!(
            hash_key("sk-custom-123"),
            "56090a422aee236b0807bbb12ce7f37030ddc5e7ecfb6abc00a713596b0da5c8"
        );
        assert_eq!(token_of("abc"), "abc");
    }
}
