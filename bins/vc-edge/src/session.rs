//! One agent connection: WebSocket handshake, authentication, then a reader and a writer until either
//! ends, then a clean close and cleanup.
//!
//! The reader and the writer are two futures joined in the connection's one task (rather than two
//! tasks): they still run concurrently (a slow Redis call on the reader never holds back a frame) and
//! either one ending cancels the other through the session token, while the one task stays owned by the
//! edge's task set, so stopping the edge stops every session with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, debug_span, warn, Instrument};
use vc_shared::did::{self, DidError};
use vc_shared::domain::{now_rfc3339, StoredAgent};
use vc_shared::error::ErrorCode;
use vc_shared::routing::{AgentRoute, Dependency, Routing};
use vc_shared::subjects;
use vc_shared::wire::Push;
use vc_shared::ws::{
    self, close, kind, AuthChallenge, AuthComplete, AuthFailed, ClientMsg, ErrorPayload, Pong,
    ServerMsg,
};

use crate::hub::{Hub, Outbound, Reroute, SessionCtl, SubTicket};
use crate::tls::Conn;

type Ws = WebSocketStream<Conn>;

/// How long the edge waits for the peer's side of a close handshake before dropping the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering (an oversized frame's remainder, say).
const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// Largest `activeLlm` (as JSON text) kept in presence.
const MAX_ACTIVE_LLM_BYTES: usize = 4096;

/// Inbound flood control: a token bucket per session.
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        Bucket {
            tokens: burst as f64,
            last: Instant::now(),
            rate: rate_per_sec as f64,
            burst: burst as f64,
        }
    }

    /// Takes one token; `false` when the peer is over its rate.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The tungstenite settings of agent connections: small eager read buffer, no write batching (frames
/// go out at once), and the contract's 64 KiB limit on frames and messages.
pub(crate) fn ws_config(hub: &Hub) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(hub.cfg.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * hub.cfg.max_message_bytes)
        .max_message_size(Some(hub.cfg.max_message_bytes))
        .max_frame_size(Some(hub.cfg.max_message_bytes))
}

/// Serves one `GET /ws` connection to its end. `permit` is this connection's slot under the cap.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    stream: Conn,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let _ = stream.set_nodelay(true);
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config(&hub)));
    let mut ws = match tokio::time::timeout(hub.cfg.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "WebSocket handshake failed.");
            return;
        }
        Err(_) => return,
    };
    let slot = match tokio::time::timeout(hub.cfg.handshake_timeout, hub.auth_slots.acquire()).await
    {
        Ok(Ok(slot)) => slot,
        _ => {
            hub.metrics.auth_failed("busy");
            close_and_linger(&mut ws, close::TRY_AGAIN, "edge busy, retry later").await;
            return;
        }
    };
    let mut bucket = Bucket::new(hub.cfg.rate_per_sec, hub.cfg.rate_burst);
    // A debug span (R10): free at the default level, where every idle session would otherwise keep
    // its span alive in the subscriber.
    let span = debug_span!("ws", client.addr = %peer, did = tracing::field::Empty);
    // Boxed: its state (challenge, strings, Redis calls) is freed once authenticated instead of
    // sizing every idle session's future.
    let (authed, initial) = match Box::pin(authenticate(&hub, &mut ws, &mut bucket))
        .instrument(span.clone())
        .await
    {
        // Only the route is kept (and only until it is queued), not the whole record.
        Some((a, agent)) => {
            // The routing state the agent's config derives from; if it cannot be read now, the
            // re-read after the subscriptions are in place delivers the frame.
            let routing = match agent.dependency() {
                Some(dep) => match hub.store.routing(&dep).await {
                    Ok(r) => Some((dep, r)),
                    Err(e) => {
                        warn!(error = %e, "Cannot read the agent's routing state; it follows the re-read.");
                        None
                    }
                },
                None => None,
            };
            (a, (agent.route(), routing))
        }
        None => return,
    };
    drop(slot);
    span.record("did", &*authed.did);
    run(hub, ws, bucket, authed, initial).instrument(span).await;
}

struct Authed {
    did: Arc<str>,
    session_id: Arc<str>,
    since: i64,
}

async fn send_now(hub: &Hub, ws: &mut Ws, text: String) -> bool {
    match tokio::time::timeout(hub.cfg.write_timeout, ws.send(Message::text(text))).await {
        Ok(Ok(())) => {
            hub.metrics.frame_sent();
            true
        }
        _ => false,
    }
}

fn error_frame(error: impl Into<String>, code: ErrorCode) -> String {
    ServerMsg::Error(ErrorPayload {
        error: error.into(),
        code: code.as_str().to_string(),
    })
    .encode(None)
}

/// `auth_failed {reason}`, then close with `code`.
async fn fail(hub: &Hub, ws: &mut Ws, code: u16, label: &'static str, reason: &str) {
    hub.metrics.auth_failed(label);
    debug!(code, reason, "Authentication failed.");
    send_now(
        hub,
        ws,
        ServerMsg::AuthFailed(AuthFailed {
            reason: reason.to_string(),
        })
        .encode(None),
    )
    .await;
    close_and_linger(ws, code, reason).await;
}

/// Sends a close frame, then waits briefly for the peer's side (reading and discarding what it still
/// sends, so the kernel does not answer unread data with a reset that could destroy our close frame).
async fn close_and_linger(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(truncate_reason(reason)),
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(Some(frame))).await;
    linger(ws).await;
}

async fn linger(ws: &mut Ws) {
    let deadline = Instant::now() + CLOSE_LINGER;
    // First the WebSocket way (the peer's close frame), then the raw bytes until EOF.
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if m.is_close() {
            break;
        }
    }
    let s = ws.get_mut();
    let _ = tokio::time::timeout_at(deadline, s.shutdown()).await;
    // On the heap, not in the session's future: only closing sessions need it.
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Close reasons are at most 123 bytes on the wire.
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Challenge → response → verification → registration check → presence claim → `auth_complete`.
/// `None` when the connection ended (it has been closed as the contract says).
async fn authenticate(
    hub: &Hub,
    ws: &mut Ws,
    bucket: &mut Bucket,
) -> Option<(Authed, StoredAgent)> {
    let session_id = uuid::Uuid::new_v4().to_string();
    // Single use: the nonce lives in this function only and a connection gets one `auth_response`.
    let nonce = ws::new_nonce();
    let challenge = AuthChallenge {
        session_id: session_id.clone(),
        nonce: nonce.clone(),
        edge_id: hub.cfg.edge_id.clone(),
    };
    if !send_now(hub, ws, ServerMsg::AuthChallenge(challenge).encode(None)).await {
        return None;
    }
    let deadline = Instant::now() + hub.cfg.auth_timeout;
    let response = loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                let reason = format!(
                    "no valid auth_response within {} s",
                    hub.cfg.auth_timeout.as_secs_f64()
                );
                fail(hub, ws, close::AUTH_TIMEOUT, "timeout", &reason).await;
                return None;
            }
            Ok(None) => return None,
            Ok(Some(Err(e))) => {
                close_for_error(ws, &e).await;
                return None;
            }
            Ok(Some(Ok(m))) => m,
        };
        // Every frame but the close counts against the flood limit (pongs too: a healthy peer sends
        // one per server ping).
        if !matches!(msg, Message::Close(_)) {
            hub.metrics.frame_received();
            if !bucket.take() {
                hub.metrics.closed("flood");
                close_and_linger(ws, close::POLICY, "too many frames").await;
                return None;
            }
        }
        let reply = match msg {
            Message::Text(t) => match ClientMsg::decode(&t) {
                Ok(env) => match env.msg {
                    ClientMsg::AuthResponse(r) => break r,
                    other => error_frame(
                        format!(
                            "{} before authentication: send auth_response first",
                            other.kind()
                        ),
                        ErrorCode::Unauthorized,
                    ),
                },
                Err(e) if e.known_kind() == Some(kind::AUTH_RESPONSE) => {
                    fail(hub, ws, close::BAD_AUTH, "malformed", &e.to_string()).await;
                    return None;
                }
                Err(e) => error_frame(e.to_string(), ErrorCode::BadRequest),
            },
            Message::Binary(_) => error_frame(
                "binary frames are not supported: send JSON text frames",
                ErrorCode::BadRequest,
            ),
            Message::Close(_) => return None,
            _ => continue,
        };
        if !send_now(hub, ws, reply).await {
            return None;
        }
    };
    if let Err(e) = did::verify_auth(&response.did, &nonce, &hub.cfg.edge_id, &response.signature) {
        let label = if e == DidError::BadSignature {
            "bad_signature"
        } else {
            "malformed"
        };
        fail(hub, ws, close::BAD_AUTH, label, &e.to_string()).await;
        return None;
    }
    let agent = match hub.store.agent(&response.did).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            fail(
                hub,
                ws,
                close::NOT_REGISTERED,
                "not_registered",
                "agent is not registered",
            )
            .await;
            return None;
        }
        Err(e) => {
            warn!(error = %e, "Cannot read the agent record; refusing the session for now.");
            fail(
                hub,
                ws,
                close::TRY_AGAIN,
                "unavailable",
                "temporarily unavailable, retry later",
            )
            .await;
            return None;
        }
    };
    let since = match hub
        .store
        .presence_claim(
            &agent.did,
            &session_id,
            &hub.cfg.edge_id,
            &now_rfc3339(),
            hub.cfg.presence_ttl,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot write presence; refusing the session for now.");
            fail(
                hub,
                ws,
                close::TRY_AGAIN,
                "unavailable",
                "temporarily unavailable, retry later",
            )
            .await;
            return None;
        }
    };
    let complete = AuthComplete {
        agent_id: agent.did.clone(),
        session_id: session_id.clone(),
        heartbeat_interval_ms: hub.cfg.heartbeat_interval.as_millis() as u64,
    };
    if !send_now(
        hub,
        ws,
        ServerMsg::AuthComplete(complete).encode(Some(&agent.did)),
    )
    .await
    {
        let _ = hub
            .store
            .presence_offline(
                &agent.did,
                &session_id,
                &now_rfc3339(),
                hub.cfg.presence_offline_ttl,
            )
            .await;
        return None;
    }
    hub.reports.presence(&agent.did, true, since).await;
    let authed = Authed {
        did: Arc::from(agent.did.as_str()),
        session_id: Arc::from(session_id),
        since,
    };
    Some((authed, agent))
}

/// Closes for a read error: 1009 for oversized frames, 1007 for text that is not UTF-8, 1002 for other
/// protocol violations; a transport error means the peer is gone.
async fn close_for_error(ws: &mut Ws, e: &WsError) {
    match e {
        WsError::Capacity(_) => {
            close_and_linger(ws, close::TOO_BIG, "frame or message over 64 KiB").await
        }
        WsError::Utf8 => close_and_linger(ws, close::INVALID_DATA, "text frame is not UTF-8").await,
        WsError::Protocol(_) => close_and_linger(ws, close::PROTOCOL_ERROR, "protocol error").await,
        _ => {}
    }
}

/// The authenticated part of a session.
/// An agent's route and, when read, the routing state it depends on.
type Initial = (AgentRoute, Option<(Dependency, Option<Routing>)>);

async fn run(hub: Arc<Hub>, ws: Ws, bucket: Bucket, a: Authed, initial: Initial) {
    let (tx, rx) = mpsc::channel(hub.cfg.send_queue);
    let ctl = Arc::new(SessionCtl::new(hub.drain.child_token()));
    let agent_ticket = hub.register(&a.did, &a.session_id, a.since, tx.clone(), ctl.clone());
    hub.metrics.session_opened();
    // The current state at once (the setup below re-reads it once the subscriptions are in place).
    let (route, routing) = initial;
    let reroutes = hub.deliver_route(&a.did, &route, routing);
    drop(route);
    let (sink, stream) = ws.split();
    let (sink, stream, ()) = tokio::join!(
        writer(&hub, sink, rx, &ctl),
        reader(&hub, stream, bucket, &ctl, &tx, &a),
        // Boxed: it finishes early, and its memory goes with it.
        Box::pin(setup(&hub, &a, agent_ticket, reroutes, &ctl)),
    );
    hub.unregister(&a.did, &a.session_id);
    if let Ok(mut ws) = sink.reunite(stream) {
        if let Some(r) = ctl.reason() {
            debug!(code = r.code, reason = %r.text, label = r.label, "Session closed by the edge.");
            linger(&mut ws).await;
        }
    }
    match hub
        .store
        .presence_offline(
            &a.did,
            &a.session_id,
            &now_rfc3339(),
            hub.cfg.presence_offline_ttl,
        )
        .await
    {
        Ok(true) => hub.reports.presence(&a.did, false, a.since).await,
        // A newer session holds the record: it reported itself.
        Ok(false) => {}
        Err(e) => {
            warn!(error = %e, did = %a.did, "Cannot mark the agent offline; its presence expires by itself.");
            hub.reports.presence(&a.did, false, a.since).await;
        }
    }
    // Counted until the very end: a drain waits for every close handshake and goodbye.
    hub.metrics.session_closed();
}

/// Subscribes the agent's subjects, announces the session (older ones anywhere close 4409), makes a
/// round trip through NATS, then re-reads the agent so nothing published meanwhile is missed.
async fn setup(
    hub: &Arc<Hub>,
    a: &Authed,
    agent_ticket: SubTicket,
    reroutes: Vec<Reroute>,
    ctl: &SessionCtl,
) {
    let _settling = hub.settling();
    let work = async {
        if let Err(e) = hub.ensure(&agent_ticket).await {
            warn!(error = %e, did = %a.did, "Cannot subscribe to the agent's subject.");
            ctl.close(
                close::TRY_AGAIN,
                "unavailable",
                "edge cannot subscribe, retry later",
            );
            return;
        }
        for r in &reroutes {
            let _ = hub.ensure(&r.ticket).await;
        }
        let claim = Push::SessionClaimed {
            did: a.did.to_string(),
            session_id: a.session_id.to_string(),
            edge_id: hub.cfg.edge_id.clone(),
            at_ms: a.since,
        };
        let payload = serde_json::to_vec(&claim).unwrap_or_default();
        if let Err(e) = hub
            .nats
            .publish(subjects::push_agent(&a.did), payload.into())
            .await
        {
            warn!(error = %e, did = %a.did, "Cannot publish the session claim; presence refresh will settle it.");
        }
        hub.barrier().await;
        hub.reread(&a.did).await;
    };
    tokio::select! {
        _ = ctl.token.cancelled() => {}
        _ = work => {}
    }
}

/// Writes queued frames and pings; on the session's end sends its close frame.
async fn writer(
    hub: &Hub,
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    ctl: &SessionCtl,
) -> SplitSink<Ws, Message> {
    let mut ping = tokio::time::interval_at(
        Instant::now() + hub.cfg.ping_interval,
        hub.cfg.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (msg, version) = tokio::select! {
            biased;
            _ = ctl.token.cancelled() => break,
            m = rx.recv() => match m {
                Some(o) => (Message::Text(o.frame), o.version),
                None => break,
            },
            _ = ping.tick() => (Message::Ping(Default::default()), None),
        };
        let is_text = msg.is_text();
        let sent = tokio::select! {
            biased;
            _ = ctl.token.cancelled() => break,
            r = tokio::time::timeout(hub.cfg.write_timeout, sink.send(msg)) => r,
        };
        match sent {
            Ok(Ok(())) => {
                if is_text {
                    hub.metrics.frame_sent();
                }
                if let Some(v) = version {
                    ctl.mark_sent(v);
                }
            }
            Ok(Err(_)) => {
                ctl.end();
                break;
            }
            Err(_) => {
                if ctl.close(close::POLICY, "slow", "agent reads too slowly") {
                    hub.metrics.closed("slow");
                }
                break;
            }
        }
    }
    let frame = match ctl.reason() {
        Some(r) => Some((r.code, r.text.clone())),
        None if hub.is_draining() => {
            ctl.close(close::RESTART, "drain", "edge shutting down");
            hub.metrics.closed("drain");
            Some((close::RESTART, "edge shutting down".to_string()))
        }
        None => None,
    };
    if let Some((code, text)) = frame {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(truncate_reason(&text)),
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, sink.send(Message::Close(Some(frame)))).await;
    }
    // Flushes, including tungstenite's automatic reply to a close frame from the peer.
    let _ = tokio::time::timeout(CLOSE_LINGER, sink.close()).await;
    sink
}

/// Reads the agent's frames until the session ends.
async fn reader(
    hub: &Hub,
    mut stream: SplitStream<Ws>,
    mut bucket: Bucket,
    ctl: &SessionCtl,
    tx: &mpsc::Sender<Outbound>,
    a: &Authed,
) -> SplitStream<Ws> {
    let reply = |text: String| match tx.try_send(Outbound {
        frame: Utf8Bytes::from(text),
        version: None,
    }) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            if ctl.close(
                close::POLICY,
                "slow",
                "agent reads too slowly (send queue full)",
            ) {
                hub.metrics.closed("slow");
            }
        }
    };
    // The `activeLlm` last reported on the bus (reported again only when it changes).
    let mut reported_llm: Option<String> = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = ctl.token.cancelled() => break,
            r = tokio::time::timeout(hub.cfg.idle_timeout, stream.next()) => r,
        };
        let msg = match next {
            Err(_) => {
                let why = format!("no frame for {} s", hub.cfg.idle_timeout.as_secs_f64());
                if ctl.close(close::GOING_AWAY, "idle", why) {
                    hub.metrics.closed("idle");
                }
                break;
            }
            Ok(None) => {
                ctl.end();
                break;
            }
            Ok(Some(Err(e))) => {
                match e {
                    WsError::Capacity(_) => {
                        if ctl.close(close::TOO_BIG, "too_big", "frame or message over 64 KiB") {
                            hub.metrics.closed("too_big");
                        }
                    }
                    WsError::Utf8 => {
                        ctl.close(close::INVALID_DATA, "protocol", "text frame is not UTF-8");
                    }
                    WsError::Protocol(_) => {
                        ctl.close(close::PROTOCOL_ERROR, "protocol", "protocol error");
                    }
                    _ => ctl.end(),
                }
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        // Every frame but the close counts against the flood limit (pongs too: a healthy peer sends
        // one per server ping).
        if !matches!(msg, Message::Close(_)) {
            hub.metrics.frame_received();
            if !bucket.take() {
                if ctl.close(close::POLICY, "flood", "too many frames") {
                    hub.metrics.closed("flood");
                }
                break;
            }
        }
        match msg {
            Message::Text(t) => {
                if let Some(r) = handle_text(hub, ctl, a, &t, &mut reported_llm).await {
                    reply(r);
                }
            }
            Message::Binary(_) => reply(error_frame(
                "binary frames are not supported: send JSON text frames",
                ErrorCode::BadRequest,
            )),
            Message::Close(_) => {
                ctl.end();
                break;
            }
            _ => {}
        }
    }
    stream
}

/// Handles one text frame of an authenticated agent; returns the reply frame, if any.
async fn handle_text(
    hub: &Hub,
    ctl: &SessionCtl,
    a: &Authed,
    text: &str,
    reported_llm: &mut Option<String>,
) -> Option<String> {
    let env = match ClientMsg::decode(text) {
        Ok(env) => env,
        Err(e) => return Some(error_frame(e.to_string(), ErrorCode::BadRequest)),
    };
    match env.msg {
        ClientMsg::AuthResponse(_) => {
            Some(error_frame("already authenticated", ErrorCode::BadRequest))
        }
        ClientMsg::LlmConfigAck(ack) => {
            if !ctl.was_sent(ack.version) {
                return Some(error_frame(
                    format!(
                        "llm_config_ack: version {} was not sent on this session",
                        ack.version
                    ),
                    ErrorCode::BadRequest,
                ));
            }
            hub.reports.ack(a.did.clone(), ack.version).await;
            None
        }
        ClientMsg::Heartbeat(h) => {
            let active = h.active_llm.filter(|v| !v.is_null()).map(|v| v.to_string());
            if active
                .as_ref()
                .is_some_and(|s| s.len() > MAX_ACTIVE_LLM_BYTES)
            {
                return Some(error_frame(
                    format!("heartbeat: activeLlm over {MAX_ACTIVE_LLM_BYTES} bytes"),
                    ErrorCode::BadRequest,
                ));
            }
            let now = now_rfc3339();
            match hub
                .store
                .presence_heartbeat(
                    &a.did,
                    &a.session_id,
                    &now,
                    active.as_deref(),
                    hub.cfg.presence_ttl,
                )
                .await
            {
                Ok(vc_shared::store::PresenceHold::Held) => {
                    if active.is_some() && active != *reported_llm {
                        let value = active.as_deref().and_then(|s| serde_json::from_str(s).ok());
                        hub.reports.active_llm(&a.did, a.since, value).await;
                        *reported_llm = active;
                    }
                }
                Ok(vc_shared::store::PresenceHold::Superseded) => {
                    if ctl.close(
                        close::SUPERSEDED,
                        "superseded",
                        "a newer session of this agent took over",
                    ) {
                        hub.metrics.closed("superseded");
                    }
                    return None;
                }
                Ok(vc_shared::store::PresenceHold::Missing) => {
                    let _ = hub
                        .store
                        .presence_refresh(
                            &a.did,
                            &a.session_id,
                            &hub.cfg.edge_id,
                            a.since,
                            &now,
                            hub.cfg.presence_ttl,
                        )
                        .await;
                }
                Err(e) => warn!(error = %e, did = %a.did, "Cannot record a heartbeat."),
            }
            Some(ServerMsg::Pong(Pong {}).encode(None))
        }
    }
}
