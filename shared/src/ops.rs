//! Operational endpoints every service serves: `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use crate::store::Store;

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// NATS client (ready when connected).
    pub nats: async_nats::Client,
    /// Redis store (ready when `PING` answers).
    pub store: Store,
    /// Set when the service starts draining: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// When given, the service is ready only once it is set (e.g. the API's read model is loaded).
    pub loaded: Option<Arc<AtomicBool>>,
}

impl Readiness {
    /// `Ok` when NATS is connected, Redis answers and the service is not draining; else the reason.
    pub async fn check(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining".into());
        }
        if self
            .loaded
            .as_ref()
            .is_some_and(|l| !l.load(Ordering::Relaxed))
        {
            return Err("loading".into());
        }
        if self.nats.connection_state() != async_nats::connection::State::Connected {
            return Err("nats disconnected".into());
        }
        self.store.ping().await.map_err(|e| format!("redis: {e}"))
    }
}

/// Shared state of the ops endpoints.
#[derive(Clone)]
pub struct Ops {
    /// Readiness checks.
    pub readiness: Readiness,
    /// Metrics registry.
    pub registry: Arc<Registry>,
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
}

async fn readyz(State(ops): State<Ops>) -> Response {
    match ops.readiness.check().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "error": reason, "code": "UNAVAILABLE"})),
        )
            .into_response(),
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &ops.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The `/healthz`, `/readyz`, `/metrics` routes.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}
