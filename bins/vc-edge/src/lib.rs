//! # vc-edge: holds agent WebSockets and delivers their LLM configs
//!
//! Agents connect to any edge (`GET /ws`), authenticate with their `did:key` (contract §3,
//! `docs/agent-protocol.md`) and receive their current `llm_config` at once, then every newer one.
//! Edges are stateless apart from their connections: the agent's config state lives in Redis (written
//! by `vc-worker`), changes arrive as core-NATS pushes, and presence/acks go back to Redis.
//!
//! ## Layout
//! - [`run`]: the accept loop (one listener for `/ws` and the operational endpoints), drain on shutdown.
//! - `listen`: peeks each connection's request line and routes it; 503 for refused upgrades.
//! - `tls`: [`EdgeTls`], the TLS server settings (`VC_EDGE_TLS_CERT`, `VC_EDGE_TLS_KEY`), and the
//!   connection type that is plain TCP or TLS (handshake first, then the request line is read and
//!   replayed).
//! - `session`: one connection: handshake, challenge/response, then a reader and a writer.
//! - `hub`: sessions by DID, reference-counted NATS subscriptions, the dispatcher that fans pushes out.
//! - `presence`: presence refresh, and the re-sync after a NATS reconnect.
//! - `reports`: agents' acks (to Redis, then the bus) and sessions begun or ended (to the bus), in
//!   batches.
//! - [`EdgeConfig`], [`Metrics`], [`Probe`]: settings, metrics, introspection for tests.
//!
//! ## Message flow
//! ```text
//! vc-worker ─▶ Redis {vc}:agent:<did> (state)        agent ─ auth_response ─▶ edge: verify, read Redis,
//!     └──────▶ NATS vc.push.agent.<did>  ─┐                                   claim presence, subscribe
//!              NATS vc.push.realm.<id>   ─┴▶ edge dispatcher ─▶ hub ─▶ session queue ─▶ agent (llm_config)
//! agent ─ llm_config_ack / heartbeat ─▶ edge ─▶ Redis ack:{<did>}, presence:{<did>} ─▶ vc-api views
//!                                         └──▶ NATS vc.evt.agent.acked / .presence ─▶ vc-api read model
//! ```
//!
//! ## Transport
//! Plain `ws://` and `http://` by default: for loopback and development, or behind a TLS proxy. With
//! `VC_EDGE_TLS_CERT` and `VC_EDGE_TLS_KEY` (PEM files) the one listener speaks only TLS (`wss://`,
//! `https://`), since every `llm_config` frame carries an API key. A plain edge on a non-loopback
//! address logs a warning at start.
//!
//! ## Guarantees
//! - A push reaches exactly the agents it names; an edge subscribes only to the subjects of the agents
//!   it holds (and of the realms they are routed through), so it sees no traffic for other realms.
//! - Versions only move forward per session, and every new subscription is followed by a NATS round
//!   trip and a Redis re-read (no push lost while subscribing). After a NATS reconnect every session is
//!   re-synced from Redis.
//! - The newest session of a DID (ranked by the Redis clock at its presence claim) wins everywhere:
//!   older ones close 4409, by push or, failing that, at the next presence refresh.
//! - Everything is bounded: connections (semaphore), connections authenticating at once (a reconnect
//!   storm is served in turn), per-session send queue, frame size, inbound rate, authentication time,
//!   idle time, drain time.
//! - Idle sessions are cheap: measured ~16–20 KB of RSS per idle authenticated session (release build,
//!   2,000–10,000 sessions), ~6 KB of it the NATS client's channel for the agent's own subject.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};
use vc_shared::bus::{self, BusError};
use vc_shared::config::{Service, Settings};
use vc_shared::crypto::{self, Sealer};
use vc_shared::ops::{self, Ops, Readiness};
use vc_shared::store::{keys, Store, StoreError};

pub mod cli;
mod config;
mod hub;
mod listen;
mod metrics;
mod presence;
mod reports;
mod session;
mod tls;

pub use config::{derive_edge_id, EdgeConfig};
pub use metrics::Metrics;
pub use tls::{EdgeTls, TlsError};

use hub::Hub;
use listen::Route;

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings unusable (e.g. `VC_EDGE_SECRET_KEY`, or a key of another master key).
    #[error("configuration: {0}")]
    Config(String),
    /// NATS.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The edge's own NATS subscription failed.
    #[error("nats subscribe failed: {0}")]
    Subscribe(String),
    /// The listener.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// What an edge runs on. Built by [`Deps::connect`] in `main`, field by field in tests.
pub struct Deps {
    /// NATS client, used by this edge only (its subscriptions are the edge's interest).
    pub nats: async_nats::Client,
    /// Redis.
    pub store: Store,
    /// Opens the sealed API keys of configs before they go to their agent: a sealer of the
    /// `agent-config-key` purpose only (`VC_EDGE_SECRET_KEY`), which cannot open a registry's provider
    /// keys, a realm's key at rest or a command's secret.
    pub sealer: Sealer,
    /// Identity, limits, timings.
    pub config: EdgeConfig,
    /// Metrics (keep a clone to read them).
    pub metrics: Metrics,
    /// Introspection handle (keep a clone to look inside the running edge).
    pub probe: Probe,
}

impl Deps {
    /// Connects NATS and Redis per validated settings, for an edge with `config` (see
    /// [`EdgeConfig::from_settings`]).
    pub async fn connect(settings: &Settings, config: EdgeConfig) -> Result<Deps, Error> {
        let sealer = settings.sealer(Service::Edge).map_err(Error::Config)?;
        let nats = bus::connect(&settings.nats_url, &format!("vc-edge-{}", config.edge_id)).await?;
        let store = Store::connect(&settings.redis_url).await?;
        Ok(Deps {
            nats,
            store,
            sealer,
            config,
            metrics: Metrics::new(),
            probe: Probe::default(),
        })
    }
}

/// A look inside a running edge, for tests and debugging. Empty until [`run`] starts and after it ends.
#[derive(Clone, Default)]
pub struct Probe {
    hub: Arc<OnceLock<Weak<Hub>>>,
}

impl Probe {
    fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.get().and_then(Weak::upgrade)
    }

    /// The NATS subjects the edge subscribes now (`vc.push.agent.<did>`, `vc.push.realm.<id>`), sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.hub().map(|h| h.subjects()).unwrap_or_default()
    }

    /// Session setups and re-routes in flight (subscribing, making the NATS round trip or re-reading
    /// the agent); 0 once the edge has settled.
    pub fn settling(&self) -> usize {
        self.hub().map_or(0, |h| h.settling_now())
    }

    /// The DIDs with a session on this edge now, sorted.
    pub fn dids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .hub()
            .map(|h| {
                h.snapshot()
                    .into_iter()
                    .map(|s| s.did.to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }
}

/// How many connections may wait to be taken by the HTTP side at once.
const HTTP_BACKLOG: usize = 256;
/// How long connections still being refused or classified get at the end of a drain.
const CONN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long the HTTP side gets to finish in-flight requests at shutdown.
const HTTP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks that the edge holds the key this deployment's secrets are sealed under. The worker's key canary
/// (`{vc}:secret-check`) names it: the master key of every sealed value, or the oldest one while a
/// rotation is under way (the canary moves to the new key when `vc-worker reseal` has rewritten every
/// value). The canary is a `command` secret, which the edge cannot open: only its key id is read. No
/// canary yet (no worker has started): nothing to check.
async fn check_keys(store: &Store, sealer: &Sealer) -> Result<(), Error> {
    let Some(canary) = store.raw_get(keys::SECRET_CHECK).await? else {
        return Ok(());
    };
    if crypto::is_v1(&canary) {
        return Err(Error::Config(
            "this deployment's secrets are in the v1 format, which only the master key opens: run `vc-worker reseal` before starting edges of this version".into(),
        ));
    }
    match crypto::sealed_key_id(&canary) {
        Some(kid) if !sealer.holds_key_id(kid) => Err(Error::Config(format!(
            "this deployment's secrets are sealed under key id {kid}, but VC_EDGE_SECRET_KEY is of key id {} and VC_EDGE_SECRET_KEY_PREVIOUS has none of key id {kid}: derive the edge's key with `vc-worker keys edge` from that master key",
            sealer.key_id()
        ))),
        _ => Ok(()),
    }
}

/// Serves agents and the operational endpoints on `listener` until `shutdown` resolves, then drains:
/// `/readyz` turns 503, new upgrades get 503, every session is closed 1012, and `run` returns once they
/// are gone or `config.drain_timeout` has passed. Dropping the returned future stops everything at once
/// (connections are dropped without a close frame, like a killed process).
pub async fn run(
    listener: TcpListener,
    deps: Deps,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let Deps {
        nats,
        store,
        sealer,
        config,
        metrics,
        probe,
    } = deps;
    check_keys(&store, &sealer).await?;
    let local: SocketAddr = listener.local_addr()?;
    let tls = config.tls.is_some();
    if !tls && !local.ip().is_loopback() {
        warn!(
            addr = %local,
            "Plain ws:// sends API keys in clear; set VC_EDGE_TLS_CERT/VC_EDGE_TLS_KEY or put a TLS proxy in front."
        );
    }
    let draining = Arc::new(AtomicBool::new(false));
    let barrier = nats
        .subscribe(hub::barrier_subject(&config.edge_id))
        .await
        .map_err(|e| Error::Subscribe(e.to_string()))?
        .boxed();
    // Subscriptions are set up by sessions and consumed by the dispatcher; bounded, and drained
    // continuously by the dispatcher.
    let (add_tx, add_rx) = mpsc::channel(1024);
    let sem = Arc::new(Semaphore::new(config.max_connections));
    let edge_id = config.edge_id.clone();
    let (hub, reporter) = Hub::new(
        config,
        nats.clone(),
        store.clone(),
        sealer,
        metrics.clone(),
        draining.clone(),
        add_tx,
    );
    let hub = Arc::new(hub);
    let _ = probe.hub.set(Arc::downgrade(&hub));

    // Long-lived duties; aborted when `run` returns or is dropped.
    let mut duties = JoinSet::new();
    duties.spawn(hub.clone().dispatch(add_rx, barrier));
    duties.spawn(presence::refresh_loop(hub.clone()));
    duties.spawn(presence::watch_nats(hub.clone()));
    duties.spawn(reporter);
    let (http_tx, http_rx) = mpsc::channel(HTTP_BACKLOG);
    let http_stop = CancellationToken::new();
    let router = ops::router(Ops {
        readiness: Readiness {
            nats,
            store,
            draining: draining.clone(),
            loaded: None,
        },
        registry: metrics.registry(),
    })
    .route(vc_shared::ws::PATH, axum::routing::any(ws_not_first));
    let stop = http_stop.clone();
    let http = AbortOnDropHandle::new(tokio::spawn(async move {
        let serve = axum::serve(
            listen::ChannelListener {
                rx: http_rx,
                addr: local,
            },
            router,
        )
        .with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            warn!(error = %e, "Operational endpoints stopped.");
        }
    }));
    info!(edge_id = %edge_id, addr = %local, tls, "Edge serving.");

    // Every connection's task; dropping the set aborts them all.
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => accept(r, &hub, &sem, &http_tx, &mut conns).await,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }

    info!(
        sessions = hub.metrics.sessions(),
        "Draining: closing every session with 1012."
    );
    draining.store(true, Ordering::SeqCst);
    hub.drain.cancel();
    let deadline = Instant::now() + hub.cfg.drain_timeout;
    while hub.metrics.sessions() > 0 {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                warn!(left = hub.metrics.sessions(), "Drain deadline reached; dropping the remaining sessions.");
                break;
            }
            // Still answering: upgrades get 503, `/readyz` says draining.
            r = listener.accept() => accept(r, &hub, &sem, &http_tx, &mut conns).await,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // What is left are refusals and classifications in flight: a moment to finish, then abort.
    let _ = tokio::time::timeout(CONN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
    http_stop.cancel();
    drop(http_tx);
    let _ = tokio::time::timeout(HTTP_GRACE, http).await;
    hub.reports.flush().await;
    duties.shutdown().await;
    info!("Edge stopped.");
    Ok(())
}

async fn accept(
    r: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    hub: &Arc<Hub>,
    sem: &Arc<Semaphore>,
    http_tx: &mpsc::Sender<(tls::Conn, SocketAddr)>,
    conns: &mut JoinSet<()>,
) {
    match r {
        Ok((stream, peer)) => {
            let hub = hub.clone();
            let sem = sem.clone();
            let http_tx = http_tx.clone();
            conns.spawn(async move {
                let routed = listen::classify(
                    stream,
                    peer,
                    hub.cfg.tls.as_ref(),
                    &hub.metrics,
                    hub.cfg.handshake_timeout,
                )
                .await;
                let Some((route, stream)) = routed else {
                    return;
                };
                match route {
                    Route::Ws if hub.is_draining() => {
                        hub.metrics.refuse("draining");
                        listen::refuse(stream, "edge is draining").await;
                    }
                    Route::Ws => match sem.try_acquire_owned() {
                        Ok(permit) => session::serve(hub, stream, peer, permit).await,
                        Err(_) => {
                            hub.metrics.refuse("full");
                            listen::refuse(stream, "edge is at its connection limit").await;
                        }
                    },
                    Route::Http => {
                        let _ = http_tx.send((stream, peer)).await;
                    }
                }
            });
        }
        Err(e) => {
            // Out of file descriptors, typically: back off instead of spinning.
            warn!(error = %e, "Accept failed.");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// `/ws` reached the HTTP side: it was not the first request of its connection.
async fn ws_not_first() -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "error": "the WebSocket upgrade must be the first request on its connection",
            "code": "BAD_REQUEST"
        })),
    )
}
