//! # vc-api: the REST ingress
//!
//! ## Layout
//! - [`routes`]: handlers of contract §2, one module per resource (`models`, `realms`, `agents`, `ops`,
//!   and `tokens`: realm-admin tokens, written straight to Redis with their audit events); reads from
//!   Redis, writes through [`submit`].
//! - [`submit`]: a write becomes one command on JetStream (`vc.cmd.<kind>`, `Nats-Msg-Id` = command id);
//!   the handler waits for the worker's outcome on this instance's reply inbox, up to `VC_COMMAND_WAIT_MS`,
//!   then answers 202 with a status URL.
//! - [`access`]: the `/api` middleware: authentication once per request, `auth.failed` audit events
//!   (rate-limited). [`auth`]: who the caller is and what it may do.
//! - [`extract`], [`error`]: JSON body rules (1 MiB, 415, 400), the one error type.
//! - [`read`]: the read model (catalog from the change log, presence and acks from the edges'
//!   reports), paging, filters and ETags.
//! - [`feed`]: `GET /api/events`, the change feed (Server-Sent Events from the `VC_EVT` stream).
//! - [`ui`]: the dashboard, static files embedded at build time, served at `/`.
//! - [`limits`]: per-token request rate and requests in flight (429 with `Retry-After`).
//! - [`metrics`]: `/metrics` counters (requests by route and status class, commands, 202s, auth failures).
//!
//! Shutdown ([`run`]): `/readyz` turns 503 at once, requests are still served for
//! [`Deps::drain_delay`] (so load balancers stop sending), then the listener closes and in-flight
//! requests get up to [`DRAIN_DEADLINE`] to finish.
//!
//! The API never calls LiteLLM.

pub mod access;
pub mod auth;
pub mod cli;
pub mod error;
pub mod extract;
pub mod feed;
pub mod limits;
pub mod metrics;
pub mod read;
pub mod routes;
pub mod submit;
pub mod ui;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vc_shared::crypto::Sealer;
use vc_shared::store::Store;

pub use auth::Actor;

/// Shared state of the handlers. Cheap to clone (axum clones it for every request and layer): text
/// is shared, not copied.
#[derive(Clone)]
pub struct AppState {
    /// NATS.
    pub nats: async_nats::Client,
    /// JetStream context.
    pub js: async_nats::jetstream::Context,
    /// Redis.
    pub store: Store,
    /// Seals secrets before they go on the bus (the API's `command` key only: it opens nothing).
    pub sealer: Sealer,
    /// The bootstrap admin token.
    pub admin_token: Arc<str>,
    /// How long a write waits for its outcome.
    pub command_wait: Duration,
    /// This instance's reply inbox prefix.
    pub inbox: Arc<str>,
    /// Requests waiting for outcomes.
    pub waiters: submit::Waiters,
    /// LiteLLM admin URL (shown by status only).
    pub litellm_base_url: Option<Arc<str>>,
    /// LiteLLM URL agents use.
    pub litellm_public_url: Option<Arc<str>>,
    /// Set on SIGTERM.
    pub draining: Arc<AtomicBool>,
    /// Counters served at `/metrics`.
    pub metrics: metrics::ApiMetrics,
    /// Rate limit of `auth.failed` audit writes (per instance).
    pub auth_events: Arc<access::RateLimit>,
    /// Per-token request rate and in-flight limits.
    pub limits: Arc<limits::TokenLimits>,
    /// The read model every read is served from.
    pub read: read::ReadModel,
    /// Rendered list pages.
    pub pages: Arc<read::page::PageCache>,
    /// The live side of `GET /api/events`.
    pub feed: feed::Feed,
}

/// What `run` is given.
pub struct Deps {
    /// NATS.
    pub nats: async_nats::Client,
    /// Redis.
    pub store: Store,
    /// A second Redis connection, held by the read model's wait on the change log.
    pub tail: Store,
    /// Seals the secrets of commands: a sealer of the `command` purpose (`VC_API_SECRET_KEY`).
    pub sealer: Sealer,
    /// Admin token.
    pub admin_token: String,
    /// Outcome wait.
    pub command_wait: Duration,
    /// LiteLLM's URLs, when configured (shown only; the API never calls LiteLLM, so its master key
    /// may be empty: [`vc_shared::config::Settings::litellm_endpoints`]).
    pub litellm: Option<vc_shared::config::LitellmSettings>,
    /// Stream replicas (streams are created if missing).
    pub stream_replicas: usize,
    /// On shutdown, how long requests are still served after `/readyz` turned 503, before the listener
    /// closes (lets load balancers notice). `main`: [`DEFAULT_DRAIN_DELAY`]; tests: zero.
    pub drain_delay: Duration,
    /// Per-token limits (`VC_API_TOKEN_RATE`, `VC_API_TOKEN_BURST`, `VC_API_TOKEN_CONCURRENCY`).
    pub limits: limits::TokenLimits,
}

/// Drain delay of the binary.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(2);
/// Once the listener is closed, how long in-flight requests get before `run` returns anyway.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(15);
/// Request timeout beyond the outcome wait: auth, validation, reads, and the publish, which is retried
/// for up to 10 s while JetStream has no leader (`submit`), plus 5 s of slack.
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vaultysclaw control plane",
        description = "REST API of the control plane (contract §2)."
    ),
    components(schemas(vc_shared::error::ErrorCode))
)]
struct ApiDoc;

/// The `/api` routes and their OpenAPI document, built from the same handler list.
pub fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            routes::models::list_models,
            routes::models::create_model
        ))
        .routes(routes!(
            routes::models::get_model,
            routes::models::update_model,
            routes::models::delete_model
        ))
        .routes(routes!(
            routes::models::list_model_realms,
            routes::models::grant,
            routes::models::revoke_query
        ))
        .routes(routes!(routes::models::revoke))
        .routes(routes!(
            routes::realms::list_realms,
            routes::realms::create_realm
        ))
        .routes(routes!(
            routes::realms::get_realm,
            routes::realms::update_realm,
            routes::realms::delete_realm
        ))
        .routes(routes!(routes::realms::get_realm_models))
        .routes(routes!(routes::realms::rotate_key))
        .routes(routes!(routes::spend::get_spend))
        .routes(routes!(routes::spend::refresh_spend))
        .routes(routes!(routes::spend::webhook_deliveries))
        .routes(routes!(routes::realms::list_realm_agents))
        .routes(routes!(routes::realms::add_agent))
        .routes(routes!(routes::realms::remove_agent))
        .routes(routes!(
            routes::agents::list_agents,
            routes::agents::create_agent
        ))
        .routes(routes!(
            routes::agents::get_agent,
            routes::agents::delete_agent
        ))
        .routes(routes!(
            routes::agents::get_llm_config,
            routes::agents::put_llm_config,
            routes::agents::delete_llm_config
        ))
        .routes(routes!(routes::agents::realm_llm))
        .routes(routes!(routes::ops::get_command))
        .routes(routes!(routes::ops::litellm_status))
        .routes(routes!(routes::ops::litellm_reconcile))
        .routes(routes!(routes::ops::audit))
        .routes(routes!(feed::events))
        .routes(routes!(
            routes::session::login,
            routes::session::current,
            routes::session::logout
        ))
        .routes(routes!(
            routes::tokens::list_tokens,
            routes::tokens::create_token
        ))
        .routes(routes!(routes::tokens::delete_token))
        .split_for_parts()
}

/// The whole router: the dashboard (`/`, `/ui/*`), `/api/*`, `/api/openapi.json`, `/healthz`, `/readyz`, `/metrics`.
///
/// Layers, outermost first: timeout (`command_wait` + [`REQUEST_TIMEOUT_MARGIN`], so a write that waits
/// its full outcome time still answers its 202 itself), panic catcher, tracing, request metrics, and on
/// `/api` the access middleware.
pub fn router(state: AppState, ops: vc_shared::ops::Ops) -> Router {
    let request_timeout = state.command_wait + REQUEST_TIMEOUT_MARGIN;
    let metrics = state.metrics.clone();
    let guard = axum::middleware::from_fn_with_state(state.clone(), access::guard);
    let (api, doc) = api_routes();
    let doc = Arc::new(doc);
    let api = api
        .route(
            "/api/openapi.json",
            axum::routing::get(move |_actor: Actor| {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(guard)
        .with_state(state);
    Router::new()
        .merge(ui::router())
        .merge(api)
        .merge(vc_shared::ops::router(ops))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error::ApiError::new(vc_shared::error::ErrorCode::Internal, "internal error")
                .into_response_boxed()
        }))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            deadline,
        ))
}

/// Sets the read model's and the feed's gauges every 5 s until `stop`, and forgets idle tokens'
/// limit states.
async fn refresh_gauges(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = &state.metrics;
        m.read_model_change.set(state.read.applied() as i64);
        m.read_model_agents.set(state.read.counts().2 as i64);
        m.read_model_loads.set(state.read.loads() as i64);
        m.feed_clients.set(state.feed.clients() as i64);
        state.limits.forget_idle();
    }
}

/// Answers a request that outlives `limit` with the contract's JSON error (503 `UNAVAILABLE`).
async fn deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error::ApiError::unavailable(
            "the request took too long; a write may still be applied: retry it with the same \
             Idempotency-Key",
        )
        .into_response_boxed(),
    }
}

impl error::ApiError {
    fn into_response_boxed(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// Errors of `run`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setup failed.
    #[error("setup: {0}")]
    Setup(String),
    /// Serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown`; then drains: `/readyz` answers 503 at once, requests are still
/// served for `deps.drain_delay`, then the listener closes and in-flight requests get up to
/// [`DRAIN_DEADLINE`] to finish (outcome replies keep flowing meanwhile).
pub async fn run(
    listener: TcpListener,
    deps: Deps,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let js = async_nats::jetstream::new(deps.nats.clone());
    vc_shared::bus::ensure_streams(&js, deps.stream_replicas)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    let inbox = format!("_INBOX.vcapi.{}", uuid::Uuid::new_v4().simple());
    let waiters = submit::Waiters::default();
    let replies = tokio::spawn(submit::listen_replies(
        deps.nats.clone(),
        inbox.clone(),
        waiters.clone(),
    ));
    let draining = Arc::new(AtomicBool::new(false));
    let api_metrics = metrics::ApiMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    api_metrics.register(&mut registry);
    let follow_stop = tokio_util::sync::CancellationToken::new();
    let state = AppState {
        nats: deps.nats.clone(),
        js,
        store: deps.store.clone(),
        sealer: deps.sealer,
        admin_token: deps.admin_token.into(),
        command_wait: deps.command_wait,
        inbox: inbox.into(),
        waiters,
        litellm_base_url: deps.litellm.as_ref().map(|l| l.base_url.as_str().into()),
        litellm_public_url: deps.litellm.as_ref().map(|l| l.public_url.as_str().into()),
        draining: draining.clone(),
        metrics: api_metrics,
        auth_events: Arc::new(access::RateLimit::default()),
        limits: Arc::new(deps.limits),
        read: read::ReadModel::default(),
        pages: Arc::default(),
        feed: feed::Feed::default(),
    };
    let live = feed::start(&state.js)
        .await
        .map_err(|e| Error::Setup(format!("event stream: {e}")))?;
    let feed_follower = tokio::spawn(feed::follow(
        state.feed.clone(),
        state.js.clone(),
        live,
        follow_stop.clone(),
    ));
    let follower = tokio::spawn(read::follow(
        state.read.clone(),
        deps.tail.clone(),
        deps.store.clone(),
        deps.nats.clone(),
        follow_stop.clone(),
    ));
    let loaded = state.read.loaded_flag();
    let gauges = tokio::spawn(refresh_gauges(state.clone(), follow_stop.clone()));
    let ops = vc_shared::ops::Ops {
        readiness: vc_shared::ops::Readiness {
            nats: deps.nats.clone(),
            store: deps.store.clone(),
            draining: draining.clone(),
            loaded: Some(loaded),
        },
        registry: Arc::new(registry),
    };
    let app = router(state, ops);
    tracing::info!(addr = ?listener.local_addr().ok(), "API listening (the dashboard is served at /).");
    // Shutdown protocol: signal → draining (readyz 503) → keep serving `drain_delay` → stop accepting →
    // in-flight requests finish, at most DRAIN_DEADLINE → return.
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let d = draining.clone();
    let drain_delay = deps.drain_delay;
    let signal = tokio::spawn(async move {
        shutdown.await;
        d.store(true, Ordering::Relaxed);
        tracing::info!(delay = ?drain_delay, "API draining: readyz 503, still serving.");
        tokio::time::sleep(drain_delay).await;
        tracing::info!("API closing its listener; in-flight requests finish.");
        let _ = close_tx.send(());
        let _ = closed_tx.send(());
    });
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = close_rx.await;
        })
        .into_future();
    tokio::pin!(serve);
    let deadline = async move {
        if closed_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_DEADLINE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = &mut serve => r,
        () = deadline => {
            tracing::warn!(deadline = ?DRAIN_DEADLINE, "In-flight requests did not finish in time; stopping anyway.");
            Ok(())
        }
    };
    signal.abort();
    replies.abort();
    follow_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), follower).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), feed_follower).await;
    gauges.abort();
    result.map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_over_its_deadline_gets_the_json_error() {
        let app: Router = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(50),
                deadline,
            ));
        let get = |uri: &'static str| {
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let fast = app.clone().oneshot(get("/fast")).await.expect("answer");
        assert_eq!(fast.status(), 200);
        let slow = app.oneshot(get("/slow")).await.expect("answer");
        assert_eq!(slow.status(), 503);
        let body = axum::body::to_bytes(slow.into_body(), 4096)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["code"], "UNAVAILABLE");
        assert!(v["error"]
            .as_str()
            .is_some_and(|e| e.contains("Idempotency-Key")));
    }
}
