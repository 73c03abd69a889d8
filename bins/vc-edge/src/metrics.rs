//! The edge's Prometheus metrics (served on `/metrics`), with read accessors for tests.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A `kind` label (`agent`/`realm` for subscriptions and pushes, a reason for failures and closes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    kind: &'static str,
}

/// The edge's metrics. Cheap to clone: every clone updates and reads the same values; a test keeps a
/// clone of the one it put into [`crate::Deps`].
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    sessions: Gauge,
    frames_sent: Counter,
    frames_received: Counter,
    auth_failures: Family<Kind, Counter>,
    pushes_received: Family<Kind, Counter>,
    subscriptions: Family<Kind, Gauge>,
    closes: Family<Kind, Counter>,
    resyncs: Counter,
    refused: Family<Kind, Counter>,
    acks_written: Counter,
    acks_dropped: Counter,
    tls_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every edge metric registered (prefix `vc_edge_`).
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("vc_edge");
        let sessions = Gauge::default();
        r.register(
            "sessions",
            "Authenticated agent sessions on this edge",
            sessions.clone(),
        );
        let frames_sent = Counter::default();
        r.register(
            "frames_sent",
            "Text frames written to agents",
            frames_sent.clone(),
        );
        let frames_received = Counter::default();
        r.register(
            "frames_received",
            "Frames read from agents (all but close)",
            frames_received.clone(),
        );
        let auth_failures = Family::<Kind, Counter>::default();
        r.register(
            "auth_failures",
            "Failed authentications by reason",
            auth_failures.clone(),
        );
        let pushes_received = Family::<Kind, Counter>::default();
        r.register(
            "pushes_received",
            "NATS push messages received, by subject kind",
            pushes_received.clone(),
        );
        let subscriptions = Family::<Kind, Gauge>::default();
        r.register(
            "subscriptions",
            "NATS push subjects subscribed, by kind",
            subscriptions.clone(),
        );
        let closes = Family::<Kind, Counter>::default();
        r.register(
            "closes",
            "Sessions closed by the edge, by reason",
            closes.clone(),
        );
        let resyncs = Counter::default();
        r.register(
            "resyncs",
            "Re-syncs of all sessions from Redis after a NATS reconnect",
            resyncs.clone(),
        );
        let refused = Family::<Kind, Counter>::default();
        r.register(
            "refused_upgrades",
            "WebSocket upgrades refused with 503, by reason",
            refused.clone(),
        );
        let acks_written = Counter::default();
        r.register(
            "acks_written",
            "Agent acks recorded in Redis",
            acks_written.clone(),
        );
        let acks_dropped = Counter::default();
        r.register(
            "acks_dropped",
            "Agent acks dropped after three failed Redis writes",
            acks_dropped.clone(),
        );
        let tls_failures = Counter::default();
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out (untrusted certificate, plain HTTP on the TLS port)",
            tls_failures.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            sessions,
            frames_sent,
            frames_received,
            auth_failures,
            pushes_received,
            subscriptions,
            closes,
            resyncs,
            refused,
            acks_written,
            acks_dropped,
            tls_failures,
        }
    }

    /// Agent acks recorded in Redis so far.
    pub fn acks_recorded(&self) -> u64 {
        self.acks_written.get()
    }

    pub(crate) fn acks_written(&self, n: usize) {
        self.acks_written.inc_by(n as u64);
    }

    pub(crate) fn acks_dropped(&self, n: usize) {
        self.acks_dropped.inc_by(n as u64);
    }

    /// The registry (for `/metrics`).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Authenticated sessions now.
    pub fn sessions(&self) -> i64 {
        self.sessions.get()
    }

    /// Text frames written to agents so far.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent.get()
    }

    /// Frames read from agents so far.
    pub fn frames_received(&self) -> u64 {
        self.frames_received.get()
    }

    /// Authentication failures with `reason` (`bad_signature`, `malformed`, `not_registered`, `timeout`,
    /// `unavailable`).
    pub fn auth_failures(&self, reason: &'static str) -> u64 {
        self.auth_failures
            .get_or_create(&Kind { kind: reason })
            .get()
    }

    /// NATS push messages received on `agent` or `realm` subjects.
    pub fn pushes_received(&self, kind: &'static str) -> u64 {
        self.pushes_received.get_or_create(&Kind { kind }).get()
    }

    /// NATS subjects subscribed now, `agent` or `realm`.
    pub fn subscriptions(&self, kind: &'static str) -> i64 {
        self.subscriptions.get_or_create(&Kind { kind }).get()
    }

    /// Sessions the edge closed for `reason` (`superseded`, `deleted`, `slow`, `flood`, `too_big`,
    /// `idle`, `drain`).
    pub fn closes(&self, reason: &'static str) -> u64 {
        self.closes.get_or_create(&Kind { kind: reason }).get()
    }

    /// Re-syncs after NATS reconnects.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.get()
    }

    /// Upgrades refused (`draining`, `full`).
    pub fn refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&Kind { kind: reason }).get()
    }

    /// TLS handshakes that failed or timed out.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_failures.get()
    }

    pub(crate) fn session_opened(&self) {
        self.sessions.inc();
    }
    pub(crate) fn session_closed(&self) {
        self.sessions.dec();
    }
    pub(crate) fn frame_sent(&self) {
        self.frames_sent.inc();
    }
    pub(crate) fn frame_received(&self) {
        self.frames_received.inc();
    }
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&Kind { kind: reason })
            .inc();
    }
    pub(crate) fn push_received(&self, kind: &'static str) {
        self.pushes_received.get_or_create(&Kind { kind }).inc();
    }
    pub(crate) fn subscribed(&self, kind: &'static str, delta: i64) {
        self.subscriptions
            .get_or_create(&Kind { kind })
            .inc_by(delta);
    }
    pub(crate) fn closed(&self, reason: &'static str) {
        self.closes.get_or_create(&Kind { kind: reason }).inc();
    }
    pub(crate) fn resynced(&self) {
        self.resyncs.inc();
    }
    pub(crate) fn tls_failed(&self) {
        self.tls_failures.inc();
    }
    pub(crate) fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&Kind { kind: reason }).inc();
    }
}
