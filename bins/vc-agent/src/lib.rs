//! # vc-agent: the reference agent client
//!
//! Connects to one of a list of edges, authenticates with its `did:key` (Ed25519), receives its LLM
//! config, acknowledges every version it holds, sends heartbeats with what it uses, and reconnects
//! across the edge list with exponential backoff and jitter. The protocol is `docs/agent-protocol.md`;
//! the frames are [`vc_shared::ws`].
//!
//! ## Layout
//! - [`keys`]: key files, deterministic keys for swarms, DIDs.
//! - [`AgentClient`]: one agent; [`AgentClient::run`] until shutdown, [`AgentClient::spawn`] in the
//!   background with an [`AgentHandle`] to watch it; [`connect_and_run`] with an event channel.
//! - [`Swarm`]: many agents in one process (tests, benchmarks).
//! - [`AgentTls`]: the roots a `wss://` edge's certificate must chain to (the system's by default,
//!   or a CA file's), as one rustls configuration shared by every connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vc_agent::AgentError> {
//! use vc_agent::{keys, AgentClient, AgentOptions};
//! let key = keys::read_key_file(std::path::Path::new("agent.key"))?;
//! let agent = AgentClient::new(key, AgentOptions::new(vec!["ws://127.0.0.1:8090/ws".into()])).spawn();
//! // … agent.status() shows the configs received so far.
//! agent.stop().await;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vc_shared::ws::{
    self, close, AuthResponse, ClientMsg, Heartbeat, LlmConfigAck, LlmConfigPayload, ServerMsg,
};

pub mod keys;
mod swarm;
mod tls;

pub use swarm::{Swarm, SwarmAgent};
pub use tls::AgentTls;

/// Why the client could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A key file is missing, unreadable, or not a key.
    #[error("key file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No edge URL given, or one is not a ws:// or wss:// URL.
    #[error(
        "edge URL {0:?} must be ws://host:port[/ws] or wss://host:port[/ws] (http:// and https:// are rewritten)"
    )]
    BadUrl(String),
    /// A CA file (`--ca`) is missing, unreadable, or holds no usable certificate.
    #[error("CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An edge refused the agent's signature (4401): the key is not the DID's, or the agent is broken.
    #[error("authentication refused by {edge}: {reason}")]
    Rejected {
        /// The edge URL.
        edge: String,
        /// The edge's reason.
        reason: String,
    },
    /// Filesystem.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Edge WebSocket URLs, tried in turn (`ws://host:port/ws`, or `wss://` for TLS).
    pub edges: Vec<String>,
    /// Whom to trust on `wss://`: `None` = the system's root certificates
    /// ([`AgentTls::system_roots`], loaded once per process on the first `wss://` connection);
    /// `Some` = only those given (e.g. [`AgentTls::from_ca_file`]). Unused for `ws://`.
    pub tls: Option<AgentTls>,
    /// Index in `edges` of the first edge tried (swarms spread their agents).
    pub first_edge: usize,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`, with jitter (×0.5–1).
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// TCP connect + WebSocket handshake + authentication must complete within this.
    pub connect_timeout: Duration,
    /// Reconnect when nothing (not even a ping) came from the edge for this long (edges ping every 20 s).
    pub idle_timeout: Duration,
    /// Send heartbeats at the interval the edge announces.
    pub heartbeat: bool,
    /// Acknowledge configs (`llm_config_ack`). Only tests turn this off.
    pub ack: bool,
    /// Stop (instead of reconnecting) when a newer session of the same DID takes over (4409): another
    /// process runs with this key, and fighting over the session would never end.
    pub stop_on_superseded: bool,
    /// tungstenite read buffer per connection.
    pub read_buffer_bytes: usize,
    /// How many entries [`AgentStatus`] keeps of each history (configs, close codes, errors): the
    /// newest ones, so a client that runs for months holds a bounded amount of memory.
    pub history: usize,
}

impl AgentOptions {
    /// Defaults for the given edges.
    pub fn new(edges: Vec<String>) -> Self {
        AgentOptions {
            edges,
            tls: None,
            first_edge: 0,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(65),
            heartbeat: true,
            ack: true,
            stop_on_superseded: true,
            read_buffer_bytes: 4096,
            history: 64,
        }
    }
}

/// Normalizes an edge URL: `http(s)://` → `ws(s)://`, and a bare host gets the `/ws` path.
pub fn normalize_edge_url(url: &str) -> Result<String, AgentError> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| AgentError::BadUrl(url.to_string()))?;
    let scheme = match scheme {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return Err(AgentError::BadUrl(url.to_string())),
    };
    if rest.is_empty() {
        return Err(AgentError::BadUrl(url.to_string()));
    }
    let rest = match rest.find('/') {
        None => format!("{rest}{}", ws::PATH),
        Some(i) if &rest[i..] == "/" => format!("{}{}", &rest[..i], ws::PATH),
        Some(_) => rest.to_string(),
    };
    Ok(format!("{scheme}://{rest}"))
}

/// What happened to an agent, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Authenticated on `edge`.
    Connected {
        /// The edge URL.
        edge: String,
        /// The edge's id (from the challenge).
        edge_id: String,
        /// The session id.
        session_id: String,
    },
    /// A config newer than the one held: now applied (and acknowledged).
    Config(LlmConfigPayload),
    /// An `error` frame from the edge.
    EdgeError {
        /// Message.
        error: String,
        /// Code.
        code: String,
    },
    /// The connection ended (`code` of the edge's close frame, if any).
    Disconnected {
        /// The edge URL.
        edge: String,
        /// Close code.
        code: Option<u16>,
        /// Close reason or error.
        reason: String,
    },
}

/// An event of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEvent {
    /// The agent.
    pub did: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

/// An agent's state as seen from outside (see [`AgentClient::status`]).
#[derive(Debug, Clone, Default)]
pub struct AgentStatus {
    /// The edge URL of the live session, if any.
    pub edge: Option<String>,
    /// That edge's id.
    pub edge_id: Option<String>,
    /// The live session's id.
    pub session_id: Option<String>,
    /// The configs applied, oldest first (each newer than the previous): the last
    /// [`AgentOptions::history`] of them.
    pub configs: VecDeque<LlmConfigPayload>,
    /// The `messageId` of the frame of each config in `configs` (a broadcast frame encoded once by an
    /// edge has the same id for every agent it reached there).
    pub message_ids: VecDeque<Option<String>>,
    /// `llm_config` frames received in total, applied or not.
    pub frames: usize,
    /// `llm_config` frames ignored because their version was not newer.
    pub stale: usize,
    /// Successful authentications.
    pub sessions: usize,
    /// How the last connection attempt or session ended: the edge's close code, if any, and a reason.
    pub last_close: Option<(Option<u16>, String)>,
    /// The close codes received from an edge, in order (the last [`AgentOptions::history`]).
    pub close_codes: VecDeque<u16>,
    /// `error` frames received (`error`, `code`): the last [`AgentOptions::history`].
    pub errors: VecDeque<(String, String)>,
    /// The client stopped for good.
    pub stopped: bool,
}

/// Drops the oldest entries beyond `cap` (at least one is kept).
fn keep_last<T>(q: &mut VecDeque<T>, cap: usize) {
    while q.len() > cap.max(1) {
        q.pop_front();
    }
}

impl AgentStatus {
    /// The version held, if any config was received.
    pub fn version(&self) -> Option<u64> {
        self.configs.back().map(|c| c.version)
    }

    /// The config held.
    pub fn current(&self) -> Option<&LlmConfigPayload> {
        self.configs.back()
    }
}

/// How the client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop.
    Shutdown,
    /// A newer session of the same DID took over (4409) and `stop_on_superseded` was set.
    Superseded,
}

/// One agent.
pub struct AgentClient {
    key: SigningKey,
    did: Arc<str>,
    opts: AgentOptions,
    status: Arc<Mutex<AgentStatus>>,
    events: Option<mpsc::Sender<AgentEvent>>,
}

/// A spawned [`AgentClient`].
pub struct AgentHandle {
    did: Arc<str>,
    status: Arc<Mutex<AgentStatus>>,
    stop: CancellationToken,
    task: JoinHandle<Result<Exit, AgentError>>,
}

impl AgentHandle {
    /// The agent's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// A copy of the agent's status now.
    pub fn status(&self) -> AgentStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The version held now.
    pub fn version(&self) -> Option<u64> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .version()
    }

    /// Whether the client task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the agent (closing its session with 1000) and waits for it.
    pub async fn stop(self) -> Option<Result<Exit, AgentError>> {
        self.stop.cancel();
        self.task.await.ok()
    }

    /// Waits for the client to end by itself (e.g. superseded).
    pub async fn join(self) -> Option<Result<Exit, AgentError>> {
        self.task.await.ok()
    }

    /// Drops the connection abruptly, without a close frame (like a crashed agent).
    pub fn abort(self) {
        self.task.abort();
    }
}

enum SessionEnd {
    Shutdown,
    /// The connection ended; `authenticated` tells whether it got that far.
    Ended {
        authenticated: bool,
        code: Option<u16>,
        reason: String,
    },
}

impl AgentClient {
    /// An agent with `key`.
    pub fn new(key: SigningKey, opts: AgentOptions) -> Self {
        let did: Arc<str> = Arc::from(keys::did_of(&key).as_str());
        AgentClient {
            key,
            did,
            opts,
            status: Arc::default(),
            events: None,
        }
    }

    /// Also report every event on `tx` (the client waits when the channel is full).
    pub fn with_events(mut self, tx: mpsc::Sender<AgentEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// The agent's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The agent's status, shared (updated as frames arrive).
    pub fn status(&self) -> Arc<Mutex<AgentStatus>> {
        self.status.clone()
    }

    /// Runs in the background.
    pub fn spawn(self) -> AgentHandle {
        let stop = CancellationToken::new();
        let (did, status) = (self.did.clone(), self.status.clone());
        let s = stop.clone();
        let task = tokio::spawn(async move { self.run(s.cancelled_owned()).await });
        AgentHandle {
            did,
            status,
            stop,
            task,
        }
    }

    fn update(&self, f: impl FnOnce(&mut AgentStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn emit(&self, kind: EventKind) {
        if let Some(tx) = &self.events {
            let _ = tx
                .send(AgentEvent {
                    did: self.did.clone(),
                    kind,
                })
                .await;
        }
    }

    /// Connects, authenticates, keeps the config current, and reconnects across the edges (exponential
    /// backoff with jitter, next edge on each attempt) until `shutdown` resolves. Returns early when
    /// superseded (4409, if so configured) or refused (4401).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Exit, AgentError> {
        let edges: Vec<String> = self
            .opts
            .edges
            .iter()
            .map(|u| normalize_edge_url(u))
            .collect::<Result<_, _>>()?;
        if edges.is_empty() {
            return Err(AgentError::BadUrl(String::new()));
        }
        let stop = CancellationToken::new();
        let reconnect = self.reconnect_loop(&edges, &stop);
        tokio::pin!(reconnect);
        tokio::pin!(shutdown);
        let result = tokio::select! {
            r = &mut reconnect => r,
            _ = &mut shutdown => {
                // Let the live session say goodbye (close 1000).
                stop.cancel();
                reconnect.await
            }
        };
        self.update(|s| {
            s.stopped = true;
            s.edge = None;
            s.session_id = None;
        });
        result
    }

    async fn reconnect_loop(
        &self,
        edges: &[String],
        stop: &CancellationToken,
    ) -> Result<Exit, AgentError> {
        let mut idx = self.opts.first_edge % edges.len();
        let mut failures: u32 = 0;
        loop {
            let edge = &edges[idx];
            let end = tokio::select! {
                biased;
                _ = stop.cancelled() => SessionEnd::Shutdown,
                e = self.session(edge, stop) => e,
            };
            let (authenticated, code) = match end {
                SessionEnd::Shutdown => return Ok(Exit::Shutdown),
                SessionEnd::Ended {
                    authenticated,
                    code,
                    reason,
                } => {
                    debug!(did = %self.did, edge, ?code, reason, "Disconnected.");
                    self.update(|s| {
                        s.edge = None;
                        s.edge_id = None;
                        s.session_id = None;
                        s.last_close = Some((code, reason.clone()));
                        s.close_codes.extend(code);
                        keep_last(&mut s.close_codes, self.opts.history);
                    });
                    self.emit(EventKind::Disconnected {
                        edge: edge.clone(),
                        code,
                        reason: reason.clone(),
                    })
                    .await;
                    match code {
                        Some(close::SUPERSEDED) if self.opts.stop_on_superseded => {
                            info!(did = %self.did, "A newer session of this agent took over; stopping.");
                            return Ok(Exit::Superseded);
                        }
                        Some(close::BAD_AUTH) => {
                            return Err(AgentError::Rejected {
                                edge: edge.clone(),
                                reason,
                            })
                        }
                        _ => {}
                    }
                    (authenticated, code)
                }
            };
            failures = if authenticated {
                0
            } else {
                failures.saturating_add(1)
            };
            idx = (idx + 1) % edges.len();
            let delay = if code == Some(close::RESTART) && authenticated {
                // The edge is draining: move on at once (with a little jitter against herds).
                self.opts
                    .backoff_initial
                    .mul_f64(rand::thread_rng().gen_range(0.0..0.5))
            } else {
                backoff(self.opts.backoff_initial, self.opts.backoff_max, failures)
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(Exit::Shutdown),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection, from TCP connect to its end.
    async fn session(&self, edge: &str, stop: &CancellationToken) -> SessionEnd {
        let ended = |authenticated: bool, code: Option<u16>, reason: String| SessionEnd::Ended {
            authenticated,
            code,
            reason,
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(self.opts.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(4 * ws::MAX_MESSAGE_BYTES))
            .max_frame_size(Some(4 * ws::MAX_MESSAGE_BYTES));
        // TLS settings are built once (per options, or per process for the system roots) and shared.
        let connector = edge.starts_with("wss://").then(|| {
            let tls = match &self.opts.tls {
                Some(t) => t.client_config(),
                None => AgentTls::system_roots().client_config(),
            };
            tokio_tungstenite::Connector::Rustls(tls)
        });
        let deadline = Instant::now() + self.opts.connect_timeout;
        let mut wsock = match tokio::time::timeout_at(
            deadline,
            tokio_tungstenite::connect_async_tls_with_config(edge, Some(config), true, connector),
        )
        .await
        {
            Ok(Ok((w, _))) => w,
            Ok(Err(e)) => return ended(false, None, connect_error(&e)),
            Err(_) => return ended(false, None, "connect timed out".into()),
        };
        // Challenge → response → complete (or failed).
        let mut edge_id = String::new();
        let session_id;
        let heartbeat_ms;
        loop {
            let msg = match tokio::time::timeout_at(deadline, wsock.next()).await {
                Err(_) => return ended(false, None, "authentication timed out".into()),
                Ok(None) => return ended(false, None, "connection closed".into()),
                Ok(Some(Err(e))) => return ended(false, None, e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => match ServerMsg::decode(&t).map(|e| e.msg) {
                    Ok(ServerMsg::AuthChallenge(c)) => {
                        let signature = vc_shared::did::sign_auth(&self.key, &c.nonce, &c.edge_id);
                        let r = ClientMsg::AuthResponse(AuthResponse {
                            did: self.did.to_string(),
                            signature,
                        });
                        if let Err(e) = wsock.send(Message::text(r.encode(None))).await {
                            return ended(false, None, e.to_string());
                        }
                        edge_id = c.edge_id;
                    }
                    Ok(ServerMsg::AuthComplete(c)) => {
                        session_id = c.session_id;
                        heartbeat_ms = c.heartbeat_interval_ms;
                        break;
                    }
                    Ok(ServerMsg::AuthFailed(f)) => {
                        debug!(did = %self.did, reason = %f.reason, "Authentication failed.")
                    }
                    Ok(other) => {
                        debug!(did = %self.did, kind = other.kind(), "Unexpected frame before auth_complete.")
                    }
                    Err(e) => debug!(did = %self.did, error = %e, "Undecodable frame."),
                },
                Message::Close(f) => {
                    let (code, reason) = close_parts(f);
                    return ended(false, code, reason);
                }
                _ => {}
            }
        }
        self.update(|s| {
            s.edge = Some(edge.to_string());
            s.edge_id = Some(edge_id.clone());
            s.session_id = Some(session_id.clone());
            s.sessions += 1;
        });
        self.emit(EventKind::Connected {
            edge: edge.to_string(),
            edge_id,
            session_id,
        })
        .await;

        let period = Duration::from_millis(heartbeat_ms.clamp(1_000, 3_600_000));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "agent stopping".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), wsock.close(Some(frame))).await;
                    return SessionEnd::Shutdown;
                }
                _ = heartbeat.tick(), if self.opts.heartbeat => {
                    let active = self.status.lock().unwrap_or_else(|e| e.into_inner()).current().and_then(|c| {
                        c.config.as_ref().map(|c| serde_json::json!({"provider": c.provider, "model": c.model}))
                    });
                    let hb = ClientMsg::Heartbeat(Heartbeat { active_llm: active }).encode(Some(&self.did));
                    if let Err(e) = wsock.send(Message::text(hb)).await {
                        return ended(true, None, e.to_string());
                    }
                    continue;
                }
                n = tokio::time::timeout(self.opts.idle_timeout, wsock.next()) => n,
            };
            let msg = match next {
                Err(_) => return ended(true, None, "edge silent; reconnecting".into()),
                Ok(None) => return ended(true, None, "connection closed".into()),
                Ok(Some(Err(e))) => return ended(true, None, e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => match ServerMsg::decode(&t).map(|e| (e.message_id, e.msg)) {
                    Ok((id, ServerMsg::LlmConfig(p))) => {
                        if let Err(e) = self.on_config(&mut wsock, p, id).await {
                            return ended(true, None, e);
                        }
                    }
                    Ok((_, ServerMsg::Error(e))) => {
                        warn!(did = %self.did, error = %e.error, code = %e.code, "Edge reported an error.");
                        self.update(|s| {
                            s.errors.push_back((e.error.clone(), e.code.clone()));
                            keep_last(&mut s.errors, self.opts.history);
                        });
                        self.emit(EventKind::EdgeError {
                            error: e.error,
                            code: e.code,
                        })
                        .await;
                    }
                    Ok(_) => {}
                    Err(e) => debug!(did = %self.did, error = %e, "Undecodable frame."),
                },
                Message::Close(f) => {
                    let (code, reason) = close_parts(f);
                    return ended(true, code, reason);
                }
                _ => {}
            }
        }
    }

    /// Applies a config if it is newer than the one held; acknowledges the version held.
    async fn on_config(
        &self,
        wsock: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        p: LlmConfigPayload,
        message_id: Option<String>,
    ) -> Result<(), String> {
        let version = p.version;
        let mut newer = false;
        let mut ack = false;
        self.update(|s| {
            s.frames += 1;
            match s.version() {
                Some(v) if version < v => s.stale += 1,
                Some(v) if version == v => {
                    s.stale += 1;
                    ack = true;
                }
                _ => {
                    s.configs.push_back(p.clone());
                    s.message_ids.push_back(message_id);
                    keep_last(&mut s.configs, self.opts.history);
                    keep_last(&mut s.message_ids, self.opts.history);
                    newer = true;
                    ack = true;
                }
            }
        });
        if newer {
            self.emit(EventKind::Config(p)).await;
        }
        if ack && self.opts.ack {
            let a = ClientMsg::LlmConfigAck(LlmConfigAck { version }).encode(Some(&self.did));
            wsock
                .send(Message::text(a))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Why a connection attempt failed; a TLS failure (e.g. an untrusted certificate) says so.
fn connect_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("TLS handshake failed: {tls}"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

fn close_parts(f: Option<CloseFrame>) -> (Option<u16>, String) {
    match f {
        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
        None => (None, "closed without a code".into()),
    }
}

/// `min(max, initial × 2^failures) × U(0.5, 1)`.
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.min(16));
    exp.min(max)
        .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Runs one agent with `key` until `shutdown`, reporting every event on `events`.
pub async fn connect_and_run(
    key: SigningKey,
    opts: AgentOptions,
    events: mpsc::Sender<AgentEvent>,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, AgentError> {
    AgentClient::new(key, opts)
        .with_events(events)
        .run(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_keep_the_newest_entries() {
        let mut q: VecDeque<u64> = (1..=5).collect();
        keep_last(&mut q, 3);
        assert_eq!(q, [3, 4, 5]);
        keep_last(&mut q, 0);
        assert_eq!(q, [5], "the entry held is never dropped");
    }

    #[test]
    fn urls() {
        assert_eq!(normalize_edge_url("ws://h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_edge_url("http://h:1/").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_edge_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(
            normalize_edge_url("https://h/x/ws").unwrap(),
            "wss://h/x/ws"
        );
        assert!(normalize_edge_url("h:1").is_err());
        assert!(normalize_edge_url("ftp://h").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        for f in 0..20 {
            let d = backoff(i, m, f);
            assert!(d <= m);
            assert!(d >= (i * 2u32.pow(f.min(4))).min(m) / 2);
        }
    }
}
