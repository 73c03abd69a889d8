//! The hub: this edge's sessions by DID, the NATS subjects they need (reference counted), the routing
//! states their configs derive from, and the delivery of pushes to sessions.
//!
//! One NATS subscription per subject, whatever the number of local sessions needing it
//! (`vc.push.agent.<did>` for each held agent, `vc.push.realm.<realmId>` for each realm a held agent is
//! routed through, `vc.push.model.<modelId>` for each registry model a held agent uses). Every
//! subscription feeds one dispatcher task.
//!
//! Pushes carry routing states, not per-agent configs: each session knows its agent's route (source and
//! own version), the hub caches the routing state of every realm and model a held agent depends on, and
//! each session's frame is derived with `vc_shared::routing::effective`. A realm push updates the cache
//! once and re-derives the frames of the local agents routed through the realm, encoding each distinct
//! frame once.
//!
//! Versions only move forward: the hub remembers, per session, the last version it queued and never
//! queues an older or equal one, whichever path (agent push, routing push, Redis re-read) it came from,
//! and it keeps the newest routing state it has seen of each dependency. Every time a session starts to
//! need a new subject, the hub subscribes, makes a round trip through NATS ([`Hub::barrier`]: from then
//! on the server has the subscription), and re-reads the agent and its dependency from Redis, so a push
//! published while the subscription was being set up is never lost. Until a dependency's state is known
//! the session's frame waits for that re-read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_nats::{Client, Message};
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};
use vc_shared::crypto::Sealer;
use vc_shared::routing::{effective, AgentRoute, Dependency, Routing};
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::{ConfigState, Push};
use vc_shared::ws::{self, LlmConfigPayload, ServerMsg};

use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::reports::{Reports, Sink};

/// A subscription's messages, ending when its subject is released.
pub(crate) type SubStream = BoxStream<'static, Message>;

/// One frame for one session's writer.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The encoded frame (shared with every other session receiving the same broadcast).
    pub(crate) frame: Utf8Bytes,
    /// Set for `llm_config` frames: the writer records it as sent once written.
    pub(crate) version: Option<u64>,
}

/// Why and how the edge closes a session: set once (first reason wins), then the token is cancelled.
#[derive(Debug, Clone)]
pub(crate) struct CloseReason {
    pub(crate) code: u16,
    /// Metric label.
    pub(crate) label: &'static str,
    /// Close frame reason text (at most 123 bytes on the wire).
    pub(crate) text: String,
}

/// A session's control block, shared by its reader, writer and the hub.
#[derive(Debug)]
pub(crate) struct SessionCtl {
    /// Cancelled when the session must end (a close reason, the peer leaving, or the edge draining:
    /// it is a child of the edge's drain token). The reader and writer both watch it.
    pub(crate) token: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// 1 + the last `llm_config` version written to the socket; 0 = none yet.
    sent: AtomicU64,
}

impl SessionCtl {
    pub(crate) fn new(token: CancellationToken) -> Self {
        SessionCtl {
            token,
            reason: OnceLock::new(),
            sent: AtomicU64::new(0),
        }
    }

    /// Ends the session with a close frame. Returns whether this was the first reason given.
    pub(crate) fn close(&self, code: u16, label: &'static str, text: impl Into<String>) -> bool {
        let first = self
            .reason
            .set(CloseReason {
                code,
                label,
                text: text.into(),
            })
            .is_ok();
        self.token.cancel();
        first
    }

    /// Ends the session without a close frame of ours (the peer left).
    pub(crate) fn end(&self) {
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<&CloseReason> {
        self.reason.get()
    }

    pub(crate) fn mark_sent(&self, version: u64) {
        self.sent
            .fetch_max(version.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a config of at least `version` was written on this session (an ack for it is honest).
    pub(crate) fn was_sent(&self, version: u64) -> bool {
        let s = self.sent.load(Ordering::Relaxed);
        s > 0 && version < s
    }
}

/// A local session as the hub sees it.
struct Slot {
    session_id: Arc<str>,
    /// Rank from the presence claim (Redis clock, strictly increasing per DID): higher is newer.
    since: i64,
    tx: mpsc::Sender<Outbound>,
    ctl: Arc<SessionCtl>,
    /// Last version queued to this session.
    known: Option<u64>,
    /// The newest route of this session's agent seen so far.
    route: Option<AgentRoute>,
    /// The realm or model the route depends on (its subject is held for it).
    dep: Option<Dependency>,
}

/// A subject wanted by at least one local session.
struct SubEntry {
    refs: usize,
    kind: &'static str,
    /// Cancelled when the last reference goes: ends the subscription's stream (which unsubscribes).
    token: CancellationToken,
    /// Set once the subscription exists on the client.
    ready: Arc<OnceCell<()>>,
}

/// What a caller needs to make sure a subject is subscribed.
#[derive(Clone)]
pub(crate) struct SubTicket {
    subject: String,
    token: CancellationToken,
    ready: Arc<OnceCell<()>>,
}

/// A session whose agent now depends on another realm or model: once that subject is subscribed, the
/// agent and its dependency must be re-read.
pub(crate) struct Reroute {
    pub(crate) did: Arc<str>,
    pub(crate) ticket: SubTicket,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Arc<str>, Vec<Slot>>,
    subs: HashMap<String, SubEntry>,
    /// Routing states of the dependencies held (`None`: read from Redis, and absent there). An entry
    /// lives while its subject is held.
    routings: HashMap<Dependency, Option<Routing>>,
}

/// The subject carrying a dependency's routing pushes, and its metric label.
fn dep_subject(dep: &Dependency) -> (String, &'static str) {
    match dep {
        Dependency::Realm(id) => (subjects::push_realm(id), "realm"),
        Dependency::Model(id) => (subjects::push_model(id), "model"),
    }
}

/// The effective state of a route, if the routing state it needs is known.
fn derive(
    routings: &HashMap<Dependency, Option<Routing>>,
    route: &AgentRoute,
) -> Option<ConfigState> {
    match Dependency::of(route.source.as_ref()) {
        None => Some(effective(route, None)),
        Some(dep) => routings.get(&dep).map(|r| effective(route, r.as_ref())),
    }
}

/// Round trips through NATS: publish a sequence number to our own subject; when it comes back, the
/// server has processed every subscription this client sent before it.
struct Barrier {
    subject: String,
    next: AtomicU64,
    waiters: Mutex<Vec<(u64, oneshot::Sender<()>)>>,
}

/// A local session, as listed by [`Hub::snapshot`].
pub(crate) struct SessionRef {
    pub(crate) did: Arc<str>,
    pub(crate) session_id: Arc<str>,
    pub(crate) since: i64,
    pub(crate) ctl: Arc<SessionCtl>,
}

/// One session setup or re-route in flight: a frame it delivers is derived for its agent alone, so a
/// test that counts frame encodings waits for none to be left ([`crate::Probe::settling`]).
pub(crate) struct Settling(Arc<AtomicUsize>);

impl Drop for Settling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The hub. One per edge, shared by every task of the edge.
pub(crate) struct Hub {
    pub(crate) cfg: EdgeConfig,
    pub(crate) nats: Client,
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
    /// Where sessions hand their agents' acks and presence changes.
    pub(crate) reports: Reports,
    sealer: Sealer,
    /// Cancelled when the edge drains; every session token is its child.
    pub(crate) drain: CancellationToken,
    /// Set when the edge drains (also read by `/readyz`).
    pub(crate) draining: Arc<AtomicBool>,
    state: Mutex<State>,
    /// New subscriptions for the dispatcher; it owns every subscription's stream.
    add_tx: mpsc::Sender<SubStream>,
    /// Slots for connections authenticating now (`max_authenticating`).
    pub(crate) auth_slots: tokio::sync::Semaphore,
    /// Session setups and re-routes in flight (subscribe, round trip, re-read): see [`Settling`].
    settling: Arc<AtomicUsize>,
    barrier: Barrier,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// The hub, and the reporting task to run beside it (see `reports`).
    pub(crate) fn new(
        cfg: EdgeConfig,
        nats: Client,
        store: Store,
        sealer: Sealer,
        metrics: Metrics,
        draining: Arc<AtomicBool>,
        add_tx: mpsc::Sender<SubStream>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (reports, reporter) = Reports::new(Sink {
            store: store.clone(),
            nats: nats.clone(),
            edge_id: cfg.edge_id.clone(),
            metrics: metrics.clone(),
        });
        let barrier = Barrier {
            subject: barrier_subject(&cfg.edge_id),
            next: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
        };
        let hub = Hub {
            auth_slots: tokio::sync::Semaphore::new(cfg.max_authenticating.max(1)),
            cfg,
            nats,
            store,
            metrics,
            reports,
            sealer,
            drain: CancellationToken::new(),
            draining,
            state: Mutex::new(State::default()),
            add_tx,
            barrier,
            settling: Arc::default(),
        };
        (hub, reporter)
    }

    /// Counts one setup or re-route in flight until the returned guard drops.
    pub(crate) fn settling(&self) -> Settling {
        self.settling.fetch_add(1, Ordering::SeqCst);
        Settling(self.settling.clone())
    }

    /// Setups and re-routes in flight now.
    pub(crate) fn settling_now(&self) -> usize {
        self.settling.load(Ordering::SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    // ----- sessions -------------------------------------------------------------------------------

    /// Adds an authenticated session; returns the ticket of its agent subject. Older local sessions of
    /// the same DID are closed 4409 at once (other edges learn it from the `SessionClaimed` push).
    pub(crate) fn register(
        &self,
        did: &Arc<str>,
        session_id: &Arc<str>,
        since: i64,
        tx: mpsc::Sender<Outbound>,
        ctl: Arc<SessionCtl>,
    ) -> SubTicket {
        let mut st = lock(&self.state);
        let slots = st.sessions.entry(did.clone()).or_default();
        for s in slots.iter().filter(|s| s.since < since) {
            if s.ctl.close(
                ws::close::SUPERSEDED,
                "superseded",
                "a newer session of this agent took over",
            ) {
                self.metrics.closed("superseded");
            }
        }
        slots.push(Slot {
            session_id: session_id.clone(),
            since,
            tx,
            ctl,
            known: None,
            route: None,
            dep: None,
        });
        self.acquire(&mut st, subjects::push_agent(did), "agent")
    }

    /// Removes a session and releases the subjects it held.
    pub(crate) fn unregister(&self, did: &str, session_id: &str) {
        let mut st = lock(&self.state);
        let Some(slots) = st.sessions.get_mut(did) else {
            return;
        };
        let Some(i) = slots.iter().position(|s| &*s.session_id == session_id) else {
            return;
        };
        let slot = slots.swap_remove(i);
        if slots.is_empty() {
            st.sessions.remove(did);
        }
        if let Some(dep) = &slot.dep {
            self.release_dep(&mut st, dep);
        }
        self.release(&mut st, &subjects::push_agent(did));
    }

    /// Every local session (for presence refresh and re-sync).
    pub(crate) fn snapshot(&self) -> Vec<SessionRef> {
        let st = lock(&self.state);
        st.sessions
            .iter()
            .flat_map(|(did, slots)| {
                slots.iter().map(|s| SessionRef {
                    did: did.clone(),
                    session_id: s.session_id.clone(),
                    since: s.since,
                    ctl: s.ctl.clone(),
                })
            })
            .collect()
    }

    /// Closes every local session of `did`.
    pub(crate) fn close_did(&self, did: &str, code: u16, label: &'static str, text: &str) {
        let st = lock(&self.state);
        for s in st.sessions.get(did).into_iter().flatten() {
            if s.ctl.close(code, label, text) {
                self.metrics.closed(label);
            }
        }
    }

    /// A session ranked `at` took over `did` (on this or another edge): older local sessions close 4409.
    fn supersede(&self, did: &str, session_id: &str, at: i64) {
        let st = lock(&self.state);
        for s in st.sessions.get(did).into_iter().flatten() {
            if &*s.session_id != session_id
                && s.since < at
                && s.ctl.close(
                    ws::close::SUPERSEDED,
                    "superseded",
                    "a newer session of this agent took over",
                )
            {
                self.metrics.closed("superseded");
            }
        }
    }

    // ----- delivery -------------------------------------------------------------------------------

    /// The `llm_config` frame of agent `did`'s state (API key opened), or `None` if the sealed key
    /// cannot be opened (a `VC_EDGE_SECRET_KEY` of another master key, a previous key missing during a
    /// rotation, a `v1` value not re-sealed yet): an operator must act, and the agent keeps what it has.
    fn encode(&self, state: &ConfigState, did: &str, agent_id: Option<&str>) -> Option<Utf8Bytes> {
        let config = match state.open(&self.sealer, did) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, version = state.version, "Cannot open a config's API key; is VC_EDGE_SECRET_KEY derived from the worker's VC_SECRET_KEY?");
                return None;
            }
        };
        let payload = LlmConfigPayload {
            config,
            version: state.version,
            mode: state.mode,
            realm_id: state.realm_id.clone(),
        };
        Some(Utf8Bytes::from(
            ServerMsg::LlmConfig(payload).encode(agent_id),
        ))
    }

    /// Queues `state` to one session if it has not had this version (or a newer one). `frame` caches
    /// the encoded frame across calls with the same state.
    fn queue(
        &self,
        s: &mut Slot,
        state: &ConfigState,
        frame: &mut Option<Option<Utf8Bytes>>,
        did: &str,
        agent_id: Option<&str>,
    ) {
        if s.known.is_some_and(|k| state.version <= k) {
            return;
        }
        let Some(bytes) = frame
            .get_or_insert_with(|| self.encode(state, did, agent_id))
            .clone()
        else {
            return;
        };
        s.known = Some(state.version);
        match s.tx.try_send(Outbound {
            frame: bytes,
            version: Some(state.version),
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if s.ctl.close(
                    ws::close::POLICY,
                    "slow",
                    "agent reads too slowly (send queue full)",
                ) {
                    self.metrics.closed("slow");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Keeps `routing` if its dependency is held and it is newer than what the hub has.
    fn learn(st: &mut State, routing: Option<Routing>, dep: &Dependency) {
        if !st.routings.contains_key(dep) && !st.subs.contains_key(&dep_subject(dep).0) {
            return;
        }
        let entry = st.routings.entry(dep.clone()).or_insert(None);
        match (entry.as_ref(), routing) {
            (_, None) => {}
            (Some(have), Some(new)) if have.version() >= new.version() => {}
            (_, Some(new)) => *entry = Some(new),
        }
    }

    /// Takes an agent's route (from a push or a Redis read) and, if given, the routing state of what it
    /// depends on (`Some(None)`: read from Redis and absent), then queues the derived state to every
    /// local session of `did` that has not had it. Returns the sessions whose new dependency subject
    /// needs a re-read.
    pub(crate) fn deliver_route(
        &self,
        did: &str,
        route: &AgentRoute,
        routing: Option<(Dependency, Option<Routing>)>,
    ) -> Vec<Reroute> {
        let mut out = Vec::new();
        let mut st = lock(&self.state);
        let Some(slots) = st.sessions.get_mut(did) else {
            return out;
        };
        // Newer routes replace older ones; a dependency that changes moves the session's subject.
        let mut moves: Vec<(Option<Dependency>, Option<Dependency>)> = Vec::new();
        for s in slots.iter_mut() {
            if s.route.as_ref().is_some_and(|r| r.version >= route.version) {
                continue;
            }
            s.route = Some(route.clone());
            let dep = Dependency::of(route.source.as_ref());
            if s.dep != dep {
                moves.push((s.dep.take(), dep.clone()));
                s.dep = dep;
            }
        }
        for (old, new) in moves {
            if let Some(new) = new {
                let (subject, kind) = dep_subject(&new);
                let ticket = self.acquire(&mut st, subject, kind);
                out.push(Reroute {
                    did: Arc::from(did),
                    ticket,
                });
            }
            if let Some(old) = old {
                self.release_dep(&mut st, &old);
            }
        }
        if let Some((dep, r)) = routing {
            Self::learn(&mut st, r, &dep);
        }
        let st = &mut *st;
        let Some(slots) = st.sessions.get_mut(did) else {
            return out;
        };
        for s in slots.iter_mut() {
            let Some(state) = s.route.as_ref().and_then(|r| derive(&st.routings, r)) else {
                continue;
            };
            let mut frame = None;
            self.queue(s, &state, &mut frame, did, Some(did));
        }
        out
    }

    /// A realm's or model's new routing state: cached (if newer), then the frames of every local
    /// session depending on it are derived again; each distinct frame is encoded once (without
    /// `agentId`; the key is the realm's or the model's, bound to its id, whichever agent gets it).
    fn deliver_routing(&self, routing: Routing) {
        let dep = routing.dependency();
        let mut st = lock(&self.state);
        Self::learn(&mut st, Some(routing), &dep);
        let st = &mut *st;
        let Some(Some(current)) = st.routings.get(&dep) else {
            return;
        };
        let mut frames: HashMap<(u64, Option<String>), Option<Option<Utf8Bytes>>> = HashMap::new();
        for (did, slots) in st.sessions.iter_mut() {
            for s in slots.iter_mut().filter(|s| s.dep.as_ref() == Some(&dep)) {
                let Some(route) = s.route.as_ref() else {
                    continue;
                };
                let state = effective(route, Some(current));
                let key = (
                    state.version,
                    state.config.as_ref().map(|c| c.model.clone()),
                );
                let frame = frames.entry(key).or_default();
                self.queue(s, &state, frame, did, None);
            }
        }
    }

    fn release_dep(&self, st: &mut State, dep: &Dependency) {
        let subject = dep_subject(dep).0;
        self.release(st, &subject);
        if !st.subs.contains_key(&subject) {
            st.routings.remove(dep);
        }
    }

    /// For each reroute: subscribe to the realm, round trip, re-read the agent and deliver if newer.
    pub(crate) fn follow(self: &Arc<Self>, reroutes: Vec<Reroute>) {
        for r in reroutes {
            let hub = self.clone();
            let settling = self.settling();
            tokio::spawn(async move {
                let _settling = settling;
                if hub.ensure(&r.ticket).await.is_err() {
                    return;
                }
                hub.barrier().await;
                hub.reread(&r.did).await;
            });
        }
    }

    /// Re-reads an agent and its dependency's routing state from Redis and delivers what is newer
    /// (closing its sessions if the agent no longer exists).
    pub(crate) async fn reread(self: &Arc<Self>, did: &str) {
        let read = async {
            let Some(a) = self.store.agent(did).await? else {
                return Ok(None);
            };
            let routing = match a.dependency() {
                Some(dep) => {
                    let r = self.store.routing(&dep).await?;
                    Some((dep, r))
                }
                None => None,
            };
            Ok::<_, vc_shared::store::StoreError>(Some((a.route(), routing)))
        };
        match read.await {
            Ok(Some((route, routing))) => {
                let more = self.deliver_route(did, &route, routing);
                self.follow(more);
            }
            Ok(None) => self.close_did(did, ws::close::NOT_REGISTERED, "deleted", "agent deleted"),
            Err(e) => {
                warn!(error = %e, did, "Re-read of an agent failed; the next push or re-sync will catch up.")
            }
        }
    }

    // ----- subscriptions --------------------------------------------------------------------------

    fn acquire(&self, st: &mut State, subject: String, kind: &'static str) -> SubTicket {
        let e = st.subs.entry(subject.clone()).or_insert_with(|| {
            self.metrics.subscribed(kind, 1);
            SubEntry {
                refs: 0,
                kind,
                token: CancellationToken::new(),
                ready: Arc::new(OnceCell::new()),
            }
        });
        e.refs += 1;
        SubTicket {
            subject,
            token: e.token.clone(),
            ready: e.ready.clone(),
        }
    }

    fn release(&self, st: &mut State, subject: &str) {
        let Some(e) = st.subs.get_mut(subject) else {
            return;
        };
        e.refs -= 1;
        if e.refs == 0 {
            if let Some(e) = st.subs.remove(subject) {
                e.token.cancel();
                self.metrics.subscribed(e.kind, -1);
            }
        }
    }

    /// Makes sure the ticket's subject is subscribed on the client (the first caller subscribes, the
    /// others wait for it).
    pub(crate) async fn ensure(&self, t: &SubTicket) -> Result<(), async_nats::SubscribeError> {
        t.ready
            .get_or_try_init(|| async {
                let sub = self.nats.subscribe(t.subject.clone()).await?;
                let stream = sub.take_until(t.token.clone().cancelled_owned()).boxed();
                // The dispatcher lives as long as the hub; if it is gone the edge is stopping.
                let _ = self.add_tx.send(stream).await;
                debug!(subject = %t.subject, "Subscribed.");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// A round trip through NATS (see the module docs). `false` if it did not complete in time (NATS
    /// down: the re-sync after reconnecting catches up).
    pub(crate) async fn barrier(&self) -> bool {
        let seq = self.barrier.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self
                .barrier
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            w.retain(|(_, tx)| !tx.is_closed());
            w.push((seq, tx));
        }
        if self
            .nats
            .publish(self.barrier.subject.clone(), seq.to_string().into())
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::timeout(self.cfg.barrier_timeout, rx)
            .await
            .is_ok()
    }

    fn barrier_reached(&self, seq: u64) {
        let mut w = self
            .barrier
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (done, rest): (Vec<_>, Vec<_>) = w.drain(..).partition(|(s, _)| *s <= seq);
        *w = rest;
        drop(w);
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// The dispatcher: owns every subscription stream and handles each message in turn. Handling is
    /// synchronous (decode, lock, queue), so one task keeps up with the bus; anything that needs Redis
    /// is spawned.
    pub(crate) async fn dispatch(
        self: Arc<Self>,
        mut add_rx: mpsc::Receiver<SubStream>,
        barrier: SubStream,
    ) {
        let mut all: SelectAll<SubStream> = SelectAll::new();
        all.push(barrier);
        loop {
            tokio::select! {
                s = add_rx.recv() => match s {
                    Some(s) => all.push(s),
                    None => break,
                },
                Some(m) = all.next() => self.on_message(m),
            }
        }
    }

    fn on_message(self: &Arc<Self>, m: Message) {
        if m.subject.as_str() == self.barrier.subject {
            if let Some(seq) = std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                self.barrier_reached(seq);
            }
            return;
        }
        self.metrics
            .push_received(subjects::push_kind(&m.subject).unwrap_or("agent"));
        let push: Push = match serde_json::from_slice(&m.payload) {
            Ok(p) => p,
            Err(e) => {
                warn!(subject = %m.subject, error = %e, "Undecodable push skipped.");
                return;
            }
        };
        match push {
            Push::AgentRoute {
                did,
                route,
                realm,
                model,
            } => {
                let routing = realm
                    .map(|r| Routing::Realm(*r))
                    .or(model.map(|m| Routing::Model(*m)))
                    .map(|r| (r.dependency(), Some(r)));
                let r = self.deliver_route(&did, &route, routing);
                self.follow(r);
            }
            Push::RealmRouting { routing } => self.deliver_routing(Routing::Realm(routing)),
            Push::ModelRouting { routing } => self.deliver_routing(Routing::Model(routing)),
            Push::AgentDeleted { did } => {
                self.close_did(&did, ws::close::NOT_REGISTERED, "deleted", "agent deleted")
            }
            Push::SessionClaimed {
                did,
                session_id,
                at_ms,
                ..
            } => self.supersede(&did, &session_id, at_ms),
        }
    }

    /// After a NATS reconnect (pushes may have been missed): re-read every held agent and deliver
    /// what is newer; close the sessions of agents deleted meanwhile.
    pub(crate) async fn resync(self: &Arc<Self>) {
        self.metrics.resynced();
        self.barrier().await;
        let mut dids: Vec<Arc<str>> = self.snapshot().into_iter().map(|s| s.did).collect();
        dids.sort();
        dids.dedup();
        for chunk in dids.chunks(500) {
            let names: Vec<String> = chunk.iter().map(|d| d.to_string()).collect();
            let read = async {
                let agents = self.store.agents_by_did(&names).await?;
                let routings = self
                    .store
                    .routings(agents.iter().filter_map(|a| a.dependency()))
                    .await?;
                Ok::<_, vc_shared::store::StoreError>((agents, routings))
            };
            match read.await {
                Ok((agents, routings)) => {
                    let found: HashMap<&str, &vc_shared::domain::StoredAgent> =
                        agents.iter().map(|a| (a.did.as_str(), a)).collect();
                    for did in chunk {
                        match found.get(&**did) {
                            Some(a) => {
                                let routing = a
                                    .dependency()
                                    .map(|d| (d.clone(), routings.get(&d).cloned()));
                                let r = self.deliver_route(did, &a.route(), routing);
                                self.follow(r);
                            }
                            None => self.close_did(
                                did,
                                ws::close::NOT_REGISTERED,
                                "deleted",
                                "agent deleted",
                            ),
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Re-sync read failed; sessions keep their configs until the next push.")
                }
            }
        }
    }

    /// The subjects this edge subscribes now (for tests and debugging).
    pub(crate) fn subjects(&self) -> Vec<String> {
        let st = lock(&self.state);
        let mut v: Vec<String> = st.subs.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The subject of an edge's barrier round trips (only that edge subscribes to it).
pub(crate) fn barrier_subject(edge_id: &str) -> String {
    format!("_VC_EDGE.{edge_id}.barrier")
}
