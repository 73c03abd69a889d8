//! An in-process emulator of the LiteLLM proxy (1.80.17) admin API and virtual-key semantics.
//!
//! Fast integration tests drive the control plane against this emulator instead of the real
//! proxy. It reproduces what the real proxy does — including its sharp edges — as documented in
//! the team's `litellm-admin-api.md` and as observed against `litellm[proxy]==1.80.17` with
//! Postgres: duplicate `model_name`s add deployments, `POST /model/update` only merges
//! `litellm_params` and reaches the router after a reload delay, `models: []` means *all* models,
//! re-using a custom key returns 200 without touching the stored row, an unknown key on
//! `/key/update` is a 401, `null` clears some fields on `/key/update` and not others, error
//! messages are stringified Python dicts, and so on.
//!
//! Teams hold a budget across key rotations: every call adds its cost to the key's spend and to
//! its team's, and the team's spend outlives the key. `/team/delete` deletes the team's keys too;
//! `/key/generate` accepts a `team_id` naming no team (such a key is constrained by no team), while
//! `/key/update` insists the team exists. A key of a blocked team is refused (401), as is a call
//! to a model outside the team's `models` (401; `[]` = all models), and once the team has spent
//! *more* than its `max_budget` every call is a 400 `budget_exceeded` (the key's own budget is
//! checked first, with `>=`).
//!
//! Spend, blocking and limits:
//! - A deployment with `litellm_params.input_cost_per_token` / `output_cost_per_token` charges
//!   `prompt_tokens * input + completion_tokens * output` for the usage its completion reports
//!   (10 + 5 tokens); one without prices charges [`EmulatorConfig::spend_per_request`]. The cost
//!   goes to the key and its team, and into `x-litellm-response-cost`; `/model/info` shows the
//!   prices in `litellm_params` and `model_info`.
//! - `/key/block` and `/key/unblock` set a key's `blocked`; a blocked key is a 401 everywhere.
//! - Keys take `rpm_limit`, `tpm_limit` and `max_parallel_requests`, teams `rpm_limit` and
//!   `tpm_limit` (a team's count all its keys' calls together); `null` on update clears each.
//!   Chat enforces them per one-minute window as the proxy's v3 limiter does (429 naming the key
//!   or the team); calls never overlap here, so `max_parallel_requests` binds only at 0.
//! - Budgets with a `budget_duration` do not reset by themselves: [`Emulator::end_budget_period`]
//!   (`POST /emu/end-period`) runs the proxy's reset job as at the end of the period.
//!
//! # Layout
//!
//! - [`Emulator`] (this file): the shared state handle, its test controls (fault injection,
//!   inspection, spend and budget periods, drift), [`run`] and [`Emulator::spawn`].
//! - `state`: LiteLLM's "database" (deployments, virtual keys, teams) and the router's view of
//!   it; the public snapshot types [`Deployment`], [`VirtualKey`] and [`Team`].
//! - `auth`: master key / virtual key authentication with the real messages, and the checks a
//!   key's team imposes.
//! - `models`, `keys`, `teams`, `chat`: the `/model/*`, `/key/*`, `/team/*` and
//!   `/chat/completions` + `/v1/models` routes; `key_rows`: the JSON shapes of a key's row.
//! - `spend`: what a call costs (a deployment's prices, or the configured default), and the end
//!   of a budget period; `limits`: the rpm/tpm/parallel limits of keys and teams on chat.
//! - `control`: fault-injection middleware, `/emu/*` control routes, health and fallbacks.
//! - `body`, `error`, `pytime`: FastAPI-style validation, the wire error shapes, and LiteLLM's
//!   duration and datetime arithmetic.
//!
//! Request flow: fault middleware (count → latency → down → injected failure) → handler →
//! `auth::authenticate` → body validation → a short critical section on the state mutex →
//! response built outside the lock.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() {
//! use litellm_emu::{Emulator, EmulatorConfig};
//! let handle = Emulator::spawn(EmulatorConfig::default()).await;
//! let url = format!("{}/model/info", handle.base_url);
//! // ... point the control plane at `handle.base_url` with `handle.emu.master_key()` ...
//! assert!(handle.emu.deployments().is_empty());
//! # let _ = url;
//! # }
//! ```

// The big `json!` literals that mirror LiteLLM's key rows need more macro depth than the default.
#![recursion_limit = "256"]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod auth;
mod body;
mod chat;
mod control;
mod error;
mod key_rows;
mod keys;
mod limits;
mod models;
mod pytime;
mod spend;
mod state;
mod teams;

pub use state::{Deployment, Team, VirtualKey};

use state::{lock, Db, FailRule, Faults};

/// Largest request body accepted (1 MiB); admin payloads are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Master key used by [`EmulatorConfig::default`].
pub const DEFAULT_MASTER_KEY: &str = "sk-emu-master";

/// USD added to a key's spend (and its team's) per successful chat completion with a deployment
/// that has no prices, by default.
pub const DEFAULT_SPEND_PER_REQUEST: f64 = 0.0001;

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The proxy's master key (`Authorization: Bearer <master_key>`).
    pub master_key: String,
    /// Delay before a `POST /model/update` reaches routing and `/model/info` (the real proxy's
    /// periodic reload: 3–30 s). Zero (the default) makes updates visible at once.
    pub update_reload_delay: Duration,
    /// USD charged to a virtual key (and to its team) for each successful chat completion with a
    /// deployment that has no `input_cost_per_token` / `output_cost_per_token`; a priced
    /// deployment charges its prices times the usage the completion reports.
    pub spend_per_request: f64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            master_key: DEFAULT_MASTER_KEY.to_owned(),
            update_reload_delay: Duration::ZERO,
            spend_per_request: DEFAULT_SPEND_PER_REQUEST,
        }
    }
}

/// Shared state behind an [`Emulator`] handle.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Fixed at construction.
    pub(crate) cfg: EmulatorConfig,
    /// LiteLLM's database and router. Locked briefly by handlers and test controls.
    pub(crate) db: Mutex<Db>,
    /// Fault switches and counters. Locked by the fault middleware and test controls.
    pub(crate) faults: Mutex<Faults>,
}

/// The emulator: state plus control handle. Cheap to clone (an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Emulator {
    pub(crate) inner: Arc<Inner>,
}

/// A running emulator on `127.0.0.1:<random port>`; dropping it stops the server.
#[derive(Debug)]
pub struct EmulatorHandle {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The emulator's state and controls.
    pub emu: Emulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Graceful shutdown would wait for open keep-alive connections; tests want it gone now.
        self.task.abort();
    }
}

/// Serve `state` on a pre-bound `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Emulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "LiteLLM emulator listening.");
    }
    axum::serve(listener, state.router())
        .with_graceful_shutdown(shutdown)
        .await
}

impl Emulator {
    /// A fresh emulator with an empty database.
    pub fn new(cfg: EmulatorConfig) -> Self {
        let mut db = Db::default();
        db.reload_delay = cfg.update_reload_delay;
        Emulator {
            inner: Arc::new(Inner {
                cfg,
                db: Mutex::new(db),
                faults: Mutex::new(Faults::default()),
            }),
        }
    }

    /// The HTTP routes of the proxy plus `/emu/*` controls, with this emulator as state.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health/liveliness", get(control::liveliness))
            .route("/health/liveness", get(control::liveliness))
            .route("/health/readiness", get(control::readiness))
            .route("/model/new", post(models::new_model))
            .route("/model/update", post(models::update_model))
            .route("/model/{model_id}/update", patch(models::patch_model))
            .route("/model/delete", post(models::delete_model))
            .route("/model/info", get(models::model_info))
            .route("/v1/model/info", get(models::model_info))
            .route("/key/generate", post(keys::generate))
            .route("/key/update", post(keys::update))
            .route("/key/delete", post(keys::delete))
            .route("/key/info", get(keys::info))
            .route("/key/list", get(keys::list))
            .route("/key/block", post(keys::block))
            .route("/key/unblock", post(keys::unblock))
            .route("/key/regenerate", post(keys::regenerate))
            .route("/key/{key}/regenerate", post(keys::regenerate))
            .route("/team/new", post(teams::new_team))
            .route("/team/update", post(teams::update_team))
            .route("/team/delete", post(teams::delete_team))
            .route("/team/info", get(teams::team_info))
            .route("/team/list", get(teams::list_teams))
            .route("/chat/completions", post(chat::completions))
            .route("/v1/chat/completions", post(chat::completions))
            .route("/models", get(chat::models))
            .route("/v1/models", get(chat::models))
            .route("/emu/reset", post(control::emu_reset))
            .route("/emu/fail", post(control::emu_fail))
            .route("/emu/down", post(control::emu_down))
            .route("/emu/latency", post(control::emu_latency))
            .route("/emu/reload-delay", post(control::emu_reload_delay))
            .route("/emu/state", get(control::emu_state))
            .route("/emu/spend", post(control::emu_spend))
            .route("/emu/team-spend", post(control::emu_team_spend))
            .route("/emu/end-period", post(control::emu_end_period))
            .fallback(control::not_found)
            .method_not_allowed_fallback(control::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                control::faults_layer,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// Bind `127.0.0.1:0`, serve in a background task, and return a handle that stops it on drop.
    pub async fn try_spawn(cfg: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let emu = Emulator::new(cfg);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, emu.clone(), async move {
            let _ = rx.await;
        }));
        Ok(EmulatorHandle {
            base_url: format!("http://{addr}"),
            addr,
            emu,
            shutdown: Some(tx),
            task,
        })
    }

    /// Like [`Emulator::try_spawn`], for tests.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn spawn(cfg: EmulatorConfig) -> EmulatorHandle {
        match Self::try_spawn(cfg).await {
            Ok(handle) => handle,
            Err(e) => panic!("litellm-emu: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// The master key this emulator accepts.
    pub fn master_key(&self) -> &str {
        &self.inner.cfg.master_key
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.inner.db)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.inner.faults)
    }

    // ---- fault injection ----

    /// The next `count` requests whose path starts with `path_prefix` answer `status` with a
    /// LiteLLM-style error body (control routes under `/emu/` are never affected).
    pub fn fail_next(&self, path_prefix: &str, count: usize, status: u16) {
        if count == 0 {
            return;
        }
        self.faults().rules.push(FailRule {
            prefix: path_prefix.to_owned(),
            remaining: count,
            status,
        });
    }

    /// While `down`, every request (health checks included) answers 503, as during an outage.
    pub fn set_down(&self, down: bool) {
        self.faults().down = down;
    }

    /// Delay added before every request is handled.
    pub fn set_latency(&self, d: Duration) {
        self.faults().latency = d;
    }

    /// How long a `POST /model/update` takes to reach routing and `/model/info` (applies to
    /// updates made afterwards). `/model/new`, `/model/delete` and `PATCH` are always immediate.
    pub fn set_update_reload_delay(&self, d: Duration) {
        self.db().reload_delay = d;
    }

    /// Wipe every deployment, key and team, as a lost LiteLLM database would.
    pub fn reset(&self) {
        self.db().wipe();
    }

    // ---- inspection ----

    /// Every stored deployment (duplicates by name included), in creation order.
    pub fn deployments(&self) -> Vec<Deployment> {
        self.db().public_deployments()
    }

    /// Every stored virtual key, in creation order.
    pub fn keys(&self) -> Vec<VirtualKey> {
        self.db().keys.clone()
    }

    /// Set a key's spend (plaintext key or token); unknown keys are ignored.
    pub fn set_spend(&self, key: &str, spend: f64) {
        let mut db = self.db();
        if let Some(i) = db.key_index(key) {
            db.keys[i].spend = spend;
        }
    }

    /// Every stored team, in creation order.
    pub fn teams(&self) -> Vec<Team> {
        self.db().teams.clone()
    }

    /// Set a team's spend (`/team/update` cannot); unknown teams are ignored.
    pub fn set_team_spend(&self, team_id: &str, spend: f64) {
        let mut db = self.db();
        if let Some(i) = db.team_index(team_id) {
            db.teams[i].spend = spend;
        }
    }

    /// End the budget period now, as the proxy's reset job does when a period ends: every key and
    /// team whose `budget_reset_at` is set gets `spend` 0 and, if it has a `budget_duration`, its
    /// next `budget_reset_at` (computed as if the job ran at the old one; rows without a duration
    /// keep theirs, expired keys are skipped). The emulator never does this by itself. Returns how
    /// many keys and teams were reset.
    pub fn end_budget_period(&self) -> usize {
        spend::end_budget_period(&mut self.db(), pytime::now())
    }

    /// How many requests hit exactly this path (query excluded; `/emu/*` not counted).
    pub fn request_count(&self, path: &str) -> usize {
        self.faults().counts.get(path).copied().unwrap_or(0)
    }

    // ---- drift behind the control plane's back ----

    /// Replace a key's `models` directly in the database (plaintext key or token).
    pub fn tamper_key_models(&self, key: &str, models: Vec<String>) {
        let mut db = self.db();
        if let Some(i) = db.key_index(key) {
            db.keys[i].models = models;
        }
    }

    /// Delete a deployment by `model_id` directly; returns whether it existed.
    pub fn delete_deployment_by_id(&self, id: &str) -> bool {
        let mut db = self.db();
        match db.deployment_index(id) {
            Some(i) => {
                db.deployments.remove(i);
                true
            }
            None => false,
        }
    }
}
