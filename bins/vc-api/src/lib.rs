//! # vc-api: the REST ingress
//!
//! ## Layout
//! - [`routes`]: handlers of contract §2; reads from Redis, writes through [`submit`].
//! - [`submit`]: a write becomes one command on JetStream (`vc.cmd.<kind>`, `Nats-Msg-Id` = command id);
//!   the handler waits for the worker's outcome on this instance's reply inbox, up to `VC_COMMAND_WAIT_MS`,
//!   then answers 202 with a status URL.
//! - [`auth`], [`extract`], [`error`]: bearer auth, JSON body rules (1 MiB, 415, 400), the one error type.
//!
//! The API never calls LiteLLM.

pub mod auth;
pub mod error;
pub mod extract;
pub mod routes;
pub mod submit;

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

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Audit name (`admin`, `token:<id>`).
    pub name: String,
    /// Global admin.
    pub admin: bool,
    /// Realms a realm admin administers.
    pub realm_ids: Vec<String>,
}

/// Shared state of the handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// NATS.
    pub nats: async_nats::Client,
    /// JetStream context.
    pub js: async_nats::jetstream::Context,
    /// Redis.
    pub store: Store,
    /// Seals secrets before they go on the bus.
    pub sealer: Sealer,
    /// The bootstrap admin token.
    pub admin_token: Arc<str>,
    /// How long a write waits for its outcome.
    pub command_wait: Duration,
    /// This instance's reply inbox prefix.
    pub inbox: String,
    /// Requests waiting for outcomes.
    pub waiters: submit::Waiters,
    /// LiteLLM admin URL (shown by status only).
    pub litellm_base_url: Option<String>,
    /// LiteLLM URL agents use.
    pub litellm_public_url: Option<String>,
    /// Set on SIGTERM.
    pub draining: Arc<AtomicBool>,
}

/// What `run` is given.
pub struct Deps {
    /// NATS.
    pub nats: async_nats::Client,
    /// Redis.
    pub store: Store,
    /// Sealer.
    pub sealer: Sealer,
    /// Admin token.
    pub admin_token: String,
    /// Outcome wait.
    pub command_wait: Duration,
    /// LiteLLM settings, when configured.
    pub litellm: Option<vc_shared::config::LitellmSettings>,
    /// Stream replicas (streams are created if missing).
    pub stream_replicas: usize,
}

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
        .routes(routes!(routes::list_models, routes::create_model))
        .routes(routes!(
            routes::get_model,
            routes::update_model,
            routes::delete_model
        ))
        .routes(routes!(
            routes::list_model_realms,
            routes::grant,
            routes::revoke_query
        ))
        .routes(routes!(routes::revoke))
        .routes(routes!(routes::list_realms, routes::create_realm))
        .routes(routes!(
            routes::get_realm,
            routes::update_realm,
            routes::delete_realm
        ))
        .routes(routes!(routes::get_realm_models))
        .routes(routes!(routes::add_agent))
        .routes(routes!(routes::remove_agent))
        .routes(routes!(routes::list_agents, routes::create_agent))
        .routes(routes!(routes::get_agent, routes::delete_agent))
        .routes(routes!(
            routes::get_llm_config,
            routes::put_llm_config,
            routes::delete_llm_config
        ))
        .routes(routes!(routes::realm_llm))
        .routes(routes!(routes::get_command))
        .routes(routes!(routes::litellm_status))
        .routes(routes!(routes::litellm_reconcile))
        .routes(routes!(routes::audit))
        .split_for_parts()
}

/// The whole router: `/api/*`, `/api/openapi.json`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: AppState, ops: vc_shared::ops::Ops) -> Router {
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
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(vc_shared::ops::router(ops))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error::ApiError::new(vc_shared::error::ErrorCode::Internal, "internal error")
                .into_response_boxed()
        }))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(60),
        ))
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

/// Serves on `listener` until `shutdown`; then drains (readyz 503, in-flight requests finish, 15 s cap).
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
    let state = AppState {
        nats: deps.nats.clone(),
        js,
        store: deps.store.clone(),
        sealer: deps.sealer,
        admin_token: deps.admin_token.into(),
        command_wait: deps.command_wait,
        inbox,
        waiters,
        litellm_base_url: deps.litellm.as_ref().map(|l| l.base_url.clone()),
        litellm_public_url: deps.litellm.as_ref().map(|l| l.public_url.clone()),
        draining: draining.clone(),
    };
    let ops = vc_shared::ops::Ops {
        readiness: vc_shared::ops::Readiness {
            nats: deps.nats.clone(),
            store: deps.store.clone(),
            draining: draining.clone(),
        },
        registry: Arc::new(prometheus_client::registry::Registry::default()),
    };
    let app = router(state, ops);
    tracing::info!(addr = ?listener.local_addr().ok(), "API listening.");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = draining.clone();
    tokio::spawn(async move {
        shutdown.await;
        d.store(true, Ordering::Relaxed);
        tracing::info!("API draining.");
        let _ = tx.send(());
    });
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx.await;
    });
    let result = serve.await;
    replies.abort();
    result.map_err(Error::from)
}
