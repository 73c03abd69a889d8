//! API metrics (Prometheus text at `GET /metrics`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `vc_api_http_requests_total` | `method`, `route` (matched route template, `unmatched` otherwise), `status` (`2xx` … `5xx`) | requests answered |
//! | `vc_api_commands_published_total` | `kind` | commands acknowledged by the `VC_CMD` stream |
//! | `vc_api_command_publish_failures_total` | — | commands whose publish failed (503) |
//! | `vc_api_command_waits_timed_out_total` | — | writes answered `202` because no outcome came within `VC_COMMAND_WAIT_MS` |
//! | `vc_api_auth_failures_total` | `status` (`401`, `403`) | access failures |
//! | `vc_api_auth_failure_events_dropped_total` | — | access failures not written to the audit log (rate limit) |

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `vc_api_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (one of the standard ones, else `other`).
    pub method: String,
    /// Matched route template (`/api/realms/{id}`), or `unmatched`: never the raw path, so the label set
    /// stays bounded whatever clients send.
    pub route: String,
    /// Status class.
    pub status: String,
}

/// Labels of `vc_api_commands_published_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Command kind.
    pub kind: String,
}

/// Labels of `vc_api_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// `401` or `403`.
    pub status: String,
}

/// Labels of `vc_api_token_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `rate` or `concurrency`.
    pub reason: String,
}

/// The API's metrics. Cheap to clone (shared counters).
#[derive(Clone, Default)]
pub struct ApiMetrics {
    /// Requests by method, route and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Commands published (acknowledged by the stream), by kind.
    pub commands_published: Family<KindLabels, Counter>,
    /// Publishes that failed (503).
    pub publish_failures: Counter,
    /// Writes answered 202 (no outcome in time).
    pub waits_timed_out: Counter,
    /// Access failures by status.
    pub auth_failures: Family<StatusLabels, Counter>,
    /// Access failures not recorded in the audit log because of the rate limit.
    pub auth_events_dropped: Counter,
    /// Requests refused with 429 by the per-token limits, by `reason` (`rate`, `concurrency`).
    pub token_limited: Family<ReasonLabels, Counter>,
    /// The read model's last applied change-log number (refreshed every 5 s).
    pub read_model_change: Gauge,
    /// Agents in the read model (refreshed every 5 s).
    pub read_model_agents: Gauge,
    /// Full loads of the read model (at start, then after a gap in the change log).
    pub read_model_loads: Gauge,
    /// Live `GET /api/events` clients (refreshed every 5 s).
    pub feed_clients: Gauge,
}

impl ApiMetrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vc_api_http_requests",
            "HTTP requests answered, by method, matched route and status class",
            self.requests.clone(),
        );
        registry.register(
            "vc_api_commands_published",
            "Commands acknowledged by the VC_CMD stream, by kind",
            self.commands_published.clone(),
        );
        registry.register(
            "vc_api_command_publish_failures",
            "Commands whose publish failed or was not acknowledged in time (503)",
            self.publish_failures.clone(),
        );
        registry.register(
            "vc_api_command_waits_timed_out",
            "Writes answered 202 because no outcome arrived within VC_COMMAND_WAIT_MS",
            self.waits_timed_out.clone(),
        );
        registry.register(
            "vc_api_auth_failures",
            "Requests refused by access control, by status (401, 403)",
            self.auth_failures.clone(),
        );
        registry.register(
            "vc_api_auth_failure_events_dropped",
            "Access failures not written to the audit log (over the rate limit)",
            self.auth_events_dropped.clone(),
        );
        registry.register(
            "vc_api_token_limited",
            "Requests refused with 429 by the per-token limits, by reason (rate, concurrency)",
            self.token_limited.clone(),
        );
        registry.register(
            "vc_api_read_model_change",
            "Number of the last change-log entry the read model applied (compare with {vc}:changes-seq)",
            self.read_model_change.clone(),
        );
        registry.register(
            "vc_api_read_model_agents",
            "Agents held by the read model",
            self.read_model_agents.clone(),
        );
        registry.register(
            "vc_api_read_model_loads",
            "Full loads of the read model since start (1 = only the first)",
            self.read_model_loads.clone(),
        );
        registry.register(
            "vc_api_feed_clients",
            "Live GET /api/events clients of this instance",
            self.feed_clients.clone(),
        );
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware counting every request by method, matched route and status class.
pub async fn track(State(metrics): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.into(),
            route,
            status: status_class(resp.status().as_u16()).into(),
        })
        .inc();
    resp
}
