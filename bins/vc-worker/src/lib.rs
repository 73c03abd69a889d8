//! # vc-worker: applies commands, syncs LiteLLM, pushes configs
//!
//! ## Layout
//! - [`lane`]: the command lane (one worker at a time, by lease; commands applied in stream order, in
//!   batches committed atomically); [`consumer`]: what its paths share (consumer settings, outcomes,
//!   dead letters, syncs of committed commands).
//! - [`apply`]: one command → writes, result, side effects (pure of I/O but reads).
//! - [`push`]: side effects out: config pushes to edges, events.
//! - [`sync`], [`queue`], [`reconcile`]: LiteLLM sync (command jobs right after the commit, entity jobs
//!   retried with backoff, periodic repair).
//! - [`litellm`]: the LiteLLM admin client.
//! - [`reseal`]: `vc-worker reseal` (every sealed value under the current key, holding the lane) and
//!   `vc-worker keys` (the purpose keys of the API and the edges).
//!
//! ## Flow
//! `vc.cmd.<kind>` → (lane holder) validate → apply on the batch's view → commit the batch (one Lua
//! call: writes + command records + lane sequence, fenced by the lease) → `vc.push.*` to edges,
//! `vc.evt.*` → outcomes to `Vc-Reply-To` → acks; LiteLLM syncs beside the lane.

pub mod apply;
pub mod cli;
pub mod consumer;
pub mod lane;
pub mod litellm;
pub mod metrics;
pub mod own;
pub mod push;
pub mod queue;
pub mod reconcile;
pub mod reseal;
pub mod rotation;
pub mod spend;
pub mod stuck;
pub mod sync;
pub mod webhook;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::info;
use vc_shared::config::LitellmSettings;
use vc_shared::crypto::Sealer;
use vc_shared::store::Store;

/// What the worker is given.
#[derive(Clone)]
pub struct Deps {
    /// NATS client.
    pub nats: async_nats::Client,
    /// Redis store.
    pub store: Store,
    /// Sealer of every purpose: `VC_SECRET_KEY` seals, `VC_SECRET_KEY_PREVIOUS` keys open too.
    pub sealer: Sealer,
    /// LiteLLM, when configured.
    pub litellm: Option<LitellmSettings>,
    /// JetStream stream replicas.
    pub stream_replicas: usize,
    /// Periodic reconcile interval (zero disables).
    pub reconcile_every: Duration,
    /// Default grace period of a replaced realm key (`VC_KEY_ROTATION_GRACE_SECS`).
    pub key_rotation_grace: Duration,
    /// Spend reading, budget thresholds and webhooks.
    pub budget: BudgetSettings,
}

/// How the worker watches realms' spend (`VC_SPEND_INTERVAL_SECS`, `VC_BUDGET_THRESHOLDS`,
/// `VC_BUDGET_WEBHOOK_URLS`, `VC_BUDGET_WEBHOOK_SECRET`).
#[derive(Clone)]
pub struct BudgetSettings {
    /// How often each realm's spend is read (zero: on demand only).
    pub spend_every: Duration,
    /// Budget fractions that raise an alert, ascending.
    pub thresholds: Vec<f64>,
    /// Webhook URLs of the budget events and their signing key.
    pub webhooks: Option<(Vec<String>, String)>,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            spend_every: Duration::from_secs(60),
            thresholds: vc_shared::budget::DEFAULT_THRESHOLDS.to_vec(),
            webhooks: None,
        }
    }
}

impl std::fmt::Debug for BudgetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetSettings")
            .field("spend_every", &self.spend_every)
            .field("thresholds", &self.thresholds)
            .field("webhook_urls", &self.webhooks.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// Settings the worker's tasks share.
#[derive(Clone)]
pub struct WorkerSettings {
    /// LiteLLM, when configured.
    pub litellm: Option<LitellmSettings>,
    /// Default grace period of a replaced realm key.
    pub key_rotation_grace: Duration,
    /// Spend reading, budget thresholds and webhooks.
    pub budget: BudgetSettings,
}

/// The running worker's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    /// NATS.
    pub nats: async_nats::Client,
    /// Redis.
    pub store: Store,
    /// Sealer.
    pub sealer: Sealer,
    /// Settings.
    pub settings: WorkerSettings,
    /// LiteLLM sync engine.
    pub syncer: sync::Syncer,
    /// Whether the last LiteLLM sync succeeded (while it fails, command jobs do not wait for LiteLLM:
    /// their entities go to retried jobs and the outcome goes at once).
    pub litellm_healthy: Arc<AtomicBool>,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// How long a command may stay unacknowledged before JetStream hands it to another worker.
    pub command_ack_wait: Duration,
    /// Work started by commands that runs beside the lane (requested reconciles); aborted when the
    /// worker stops.
    pub background: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

/// Timings with production defaults (what fault tests run with, too).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `ack_wait` of the shared command consumer (default [`consumer::ACK_WAIT`], 2 s): how long a
    /// command delivered to a lane holder that died waits before it is delivered again. The lane holder
    /// sets it on the consumer and sends progress acks every quarter of it.
    pub command_ack_wait: Duration,
    /// How often the first command of the queue is checked for one the NATS client cannot read
    /// (default [`stuck::CHECK_EVERY`], 2 s); such a command is dead-lettered after two checks.
    pub stuck_check_every: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            command_ack_wait: consumer::ACK_WAIT,
            stuck_check_every: stuck::CHECK_EVERY,
        }
    }
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setup failed.
    #[error("setup: {0}")]
    Setup(String),
    /// Serving metrics failed.
    #[error("metrics server: {0}")]
    Io(#[from] std::io::Error),
}

/// Aborts tasks, and the worker's background set, when dropped.
struct AbortOnDrop(
    Vec<tokio::task::AbortHandle>,
    Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
        if let Ok(mut set) = self.1.lock() {
            set.abort_all();
        }
    }
}

/// Runs the worker until `shutdown` resolves; the command in hand is finished first (deadline 20 s).
/// `metrics_listener` serves `/healthz`, `/readyz` and `/metrics` when given.
pub async fn run(
    metrics_listener: Option<TcpListener>,
    deps: Deps,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_tuned(metrics_listener, deps, Tuning::default(), shutdown).await
}

/// [`run`] with non-default [`Tuning`].
pub async fn run_tuned(
    metrics_listener: Option<TcpListener>,
    deps: Deps,
    tuning: Tuning,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let js = async_nats::jetstream::new(deps.nats.clone());
    vc_shared::bus::ensure_streams(&js, deps.stream_replicas)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    // Streams created by an older version: their history becomes undeletable too.
    if let Err(e) = vc_shared::bus::seal_history(&js).await {
        tracing::warn!(error = %e, "Could not seal VC_EVT and VC_DLQ against deletes and purges.");
    }
    match deps.store.check_secret_key(&deps.sealer).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::Setup(
                reseal::wrong_key_message(&deps.store, &deps.sealer).await,
            ))
        }
        Err(e) => return Err(Error::Setup(format!("redis: {e}"))),
    }
    let litellm = match &deps.litellm {
        Some(l) => Some(
            litellm::Litellm::new(&l.base_url, &l.master_key, l.timeout)
                .map_err(|e| Error::Setup(e.to_string()))?,
        ),
        None => None,
    };
    let worker = Worker {
        nats: deps.nats.clone(),
        store: deps.store.clone(),
        sealer: deps.sealer.clone(),
        settings: WorkerSettings {
            litellm: deps.litellm.clone(),
            key_rotation_grace: deps.key_rotation_grace,
            budget: deps.budget.clone(),
        },
        syncer: sync::Syncer {
            litellm,
            store: deps.store.clone(),
            sealer: deps.sealer.clone(),
        },
        litellm_healthy: Arc::new(AtomicBool::new(true)),
        metrics: metrics::Metrics::default(),
        command_ack_wait: tuning.command_ack_wait,
        background: Arc::default(),
    };
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut registry = prometheus_client::registry::Registry::default();
    worker.metrics.register(&mut registry);
    let ops_task = metrics_listener.map(|l| {
        let ops = vc_shared::ops::Ops {
            readiness: vc_shared::ops::Readiness {
                nats: deps.nats.clone(),
                store: deps.store.clone(),
                draining: draining.clone(),
                loaded: None,
            },
            registry: Arc::new(registry),
        };
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(l, vc_shared::ops::router(ops))
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await
        })
    });
    let commands = tokio::spawn(lane::run(worker.clone(), stop_rx.clone()));
    let syncs = tokio::spawn(queue::run_sync_jobs(worker.clone(), stop_rx.clone()));
    let watch = tokio::spawn(stuck::run_watch(
        worker.clone(),
        tuning.stuck_check_every,
        stop_rx.clone(),
    ));
    let rotations = tokio::spawn(rotation::run(worker.clone(), stop_rx.clone()));
    let spending = tokio::spawn(spend::run_periodic(worker.clone(), stop_rx.clone()));
    let periodic = tokio::spawn(reconcile::run_periodic(
        worker.clone(),
        deps.reconcile_every,
        stop_rx.clone(),
    ));
    // The worker's tasks live no longer than this future: dropping it (an aborted task, a caller's
    // timeout) stops them at once, without finishing the command in hand, exactly as when the process
    // dies. Without this, a dropped `run` only dropped `stop_tx`, and the command loop saw that as a
    // graceful stop: it finished, replied to and acked the command in hand.
    let _tasks = AbortOnDrop(
        [
            Some(commands.abort_handle()),
            Some(syncs.abort_handle()),
            Some(watch.abort_handle()),
            Some(periodic.abort_handle()),
            Some(rotations.abort_handle()),
            Some(spending.abort_handle()),
            ops_task.as_ref().map(|t| t.abort_handle()),
        ]
        .into_iter()
        .flatten()
        .collect(),
        worker.background.clone(),
    );
    info!(litellm = deps.litellm.is_some(), "Worker started.");
    shutdown.await;
    info!("Worker draining.");
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let drain = async {
        let _ = commands.await;
        let _ = syncs.await;
        let _ = watch.await;
        let _ = periodic.await;
        let _ = rotations.await;
        let _ = spending.await;
    };
    if tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "Drain deadline passed; exiting with work in hand (it will be redelivered)."
        );
    }
    let _ = deps.nats.flush().await;
    if let Some(t) = ops_task {
        t.abort();
    }
    info!("Worker stopped.");
    Ok(())
}
