//! Fuzzing the agent WebSocket protocol (contract §3) against a real `vc-edge` (library `run`, over real
//! `nats-server` and `redis-server`): arbitrary text and binary frames, before and after authentication.
//!
//! For every frame an independent oracle (the frame's size, UTF-8-ness, and `ClientMsg::decode`) says
//! what the edge must do, and the edge must do exactly that — never a panic, never a silent hang:
//! - an `error` frame `{error, code}` (`UNAUTHORIZED` for a valid non-auth frame before authentication,
//!   `BAD_REQUEST` otherwise), the session staying open;
//! - `pong` for a heartbeat, nothing for the ack of a version at or below the highest one the session
//!   sent (acks only move forward), an error for any other ack;
//! - `auth_failed` then close 4401 for any `auth_response` that is not validly signed (or malformed);
//! - close 1009 over 64 KiB, 1007 for text that is not UTF-8, 1002 for protocol violations.
//!
//! After each frame that keeps the session open, a heartbeat probe must be answered (so the session is
//! alive and every reply was seen). The edge's flood limit is raised for the run (floods are covered in
//! `edge_protocol.rs`).
//!
//! Cases: `PROPTEST_CASES`, else the default below (CI); `scripts/fuzz` runs 100,000.

#[path = "../../shared/tests/prop_support/mod.rs"]
mod prop_support;

mod edge_support;

use std::time::{Duration, Instant};

use edge_support::*;
use futures::{SinkExt, StreamExt};
use prop_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use vc_shared::ws::{close, kind, ClientMsg, MAX_MESSAGE_BYTES};

/// Default cases (1–4 frames each, before or after authentication).
const CASES: u32 = 300;
/// How long a reply may take.
const REPLY: Duration = Duration::from_secs(10);
/// The `activeLlm` limit of the edge (bigger heartbeats are refused with an error frame).
const MAX_ACTIVE_LLM_BYTES: usize = 4096;

/// One frame an agent may send.
#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A text frame whose bytes are not UTF-8.
    BadUtf8(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A continuation frame with no message started.
    OrphanContinuation,
    /// A data frame with a reserved opcode.
    ReservedOpcode(u8),
    /// A text frame with a reserved bit set.
    Rsv1,
}

/// Frame text: any string, JSON of any value, envelopes of every client type with arbitrary payloads.
fn frame_text() -> BoxedStrategy<String> {
    let ty = prop_oneof![
        4 => prop::sample::select(vec![kind::AUTH_RESPONSE, kind::LLM_CONFIG_ACK, kind::HEARTBEAT])
            .prop_map(|k| json!(k)),
        1 => prop::sample::select(vec![kind::AUTH_CHALLENGE, kind::LLM_CONFIG, kind::PONG, kind::ERROR])
            .prop_map(|k| json!(k)),
        1 => json_leaf(),
    ];
    let payload = prop_oneof![
        2 => json_value(),
        2 => (prop_oneof![valid_did().prop_map(Value::String), json_leaf()],
              prop_oneof!["[A-Za-z0-9_-]{86}".prop_map(Value::String), json_leaf()])
            .prop_map(|(did, signature)| json!({"did": did, "signature": signature})),
        2 => prop_oneof![Just(json!(0)), Just(json!(1)), Just(json!(2)), number(), json_leaf()].prop_map(|v| json!({"version": v})),
        2 => json_value().prop_map(|v| json!({"activeLlm": v})),
        1 => (5000usize..10_000).prop_map(|n| json!({"activeLlm": "a".repeat(n)})),
        1 => Just(Value::Null),
    ];
    prop_oneof![
        2 => text(),
        2 => json_value().prop_map(|v| v.to_string()),
        6 => (prop::option::of(ty), prop::option::of(payload), prop::option::of(json_leaf()))
            .prop_map(|(t, p, mid)| {
                let mut o = serde_json::Map::new();
                if let Some(t) = t { o.insert("type".into(), t); }
                if let Some(p) = p { o.insert("payload".into(), p); }
                if let Some(m) = mid { o.insert("messageId".into(), m); }
                Value::Object(o).to_string()
            }),
        1 => raw_body().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// Text frames around the 64 KiB limit: `{"type":"heartbeat","x":"yyy…"}` of exactly `len` bytes.
fn sized_text() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        MAX_MESSAGE_BYTES - 1,
        MAX_MESSAGE_BYTES,
        MAX_MESSAGE_BYTES + 1,
        2 * MAX_MESSAGE_BYTES,
    ])
    .prop_map(|len| {
        let head = r#"{"type":"heartbeat","x":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "y".repeat(len - head.len() - tail.len()))
    })
    .boxed()
}

fn frame() -> BoxedStrategy<Frame> {
    prop_oneof![
        40 => frame_text().prop_map(Frame::Text),
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Binary),
        2 => (prop::collection::vec(any::<u8>(), 0..40), prop::sample::select(vec![
                &b"\xff"[..], b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
             ]))
            .prop_map(|(mut b, bad)| { b.extend_from_slice(bad); Frame::BadUtf8(b) }),
        2 => prop::collection::vec(any::<u8>(), 0..125).prop_map(Frame::Ping),
        1 => prop::collection::vec(any::<u8>(), 0..125).prop_map(Frame::Pong),
        1 => sized_text().prop_map(Frame::Text),
        1 => Just(Frame::OrphanContinuation),
        1 => (3u8..8).prop_map(Frame::ReservedOpcode),
        1 => Just(Frame::Rsv1),
    ]
    .boxed()
}

/// What the edge must answer to one frame.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// An `error` frame with this code; the session stays open.
    Error(&'static str),
    Pong,
    /// Nothing (a valid ack, a ping answered at the protocol level, an unsolicited pong).
    Nothing,
    /// `auth_failed`, then close with this code.
    AuthFailed(u16),
    /// Close with this code.
    Close(u16),
}

/// The oracle.
fn expect(frame: &Frame, authed: bool, sent_version: u64) -> Expect {
    match frame {
        Frame::Text(t) if t.len() > MAX_MESSAGE_BYTES => Expect::Close(close::TOO_BIG),
        Frame::BadUtf8(_) => Expect::Close(close::INVALID_DATA),
        Frame::OrphanContinuation | Frame::ReservedOpcode(_) | Frame::Rsv1 => {
            Expect::Close(close::PROTOCOL_ERROR)
        }
        Frame::Ping(_) | Frame::Pong(_) => Expect::Nothing,
        Frame::Binary(_) => Expect::Error("BAD_REQUEST"),
        Frame::Text(t) => match (ClientMsg::decode(t), authed) {
            (Ok(env), false) => match env.msg {
                ClientMsg::AuthResponse(_) => Expect::AuthFailed(close::BAD_AUTH),
                _ => Expect::Error("UNAUTHORIZED"),
            },
            (Err(e), false) if e.known_kind() == Some(kind::AUTH_RESPONSE) => {
                Expect::AuthFailed(close::BAD_AUTH)
            }
            (Err(_), _) => Expect::Error("BAD_REQUEST"),
            (Ok(env), true) => match env.msg {
                ClientMsg::AuthResponse(_) => Expect::Error("BAD_REQUEST"),
                // An ack of a version at or below the highest sent is honest (acks only move forward).
                ClientMsg::LlmConfigAck(a) if a.version <= sent_version => Expect::Nothing,
                ClientMsg::LlmConfigAck(_) => Expect::Error("BAD_REQUEST"),
                ClientMsg::Heartbeat(h) => match h.active_llm.filter(|v| !v.is_null()) {
                    Some(v) if v.to_string().len() > MAX_ACTIVE_LLM_BYTES => {
                        Expect::Error("BAD_REQUEST")
                    }
                    _ => Expect::Pong,
                },
            },
        },
    }
}

/// What was read from the edge.
#[derive(Debug)]
enum Event {
    Text(Value),
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Gone,
    /// Nothing for [`REPLY`]: the edge is stuck.
    Timeout,
}

async fn next_event(ws: &mut Raw) -> Event {
    loop {
        match tokio::time::timeout(REPLY, ws.next()).await {
            Err(_) => return Event::Timeout,
            Ok(None) | Ok(Some(Err(_))) => return Event::Gone,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Event::Text(
                    serde_json::from_str(&t).unwrap_or_else(|_| json!({"unparsable": t.as_str()})),
                )
            }
            Ok(Some(Ok(Message::Close(f)))) => return Event::Close(f.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send_frame(ws: &mut Raw, f: &Frame) {
    let msg = match f {
        Frame::Text(t) => Message::text(t.clone()),
        Frame::Binary(b) => Message::binary(b.clone()),
        Frame::BadUtf8(b) => {
            Message::Frame(WsFrame::message(b.clone(), OpCode::Data(Data::Text), true))
        }
        Frame::Ping(b) => Message::Ping(b.clone().into()),
        Frame::Pong(b) => Message::Pong(b.clone().into()),
        Frame::OrphanContinuation => Message::Frame(WsFrame::message(
            b"tail".to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )),
        Frame::ReservedOpcode(op) => Message::Frame(WsFrame::message(
            b"x".to_vec(),
            OpCode::Data(Data::Reserved(*op)),
            true,
        )),
        Frame::Rsv1 => {
            let mut fr = WsFrame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
            fr.header_mut().rsv1 = true;
            Message::Frame(fr)
        }
    };
    // The edge may already have closed (a write error then shows as the close we read next).
    let _ = ws.send(msg).await;
}

fn heartbeat() -> Frame {
    Frame::Text(r#"{"type":"heartbeat","payload":{}}"#.into())
}

/// The edge, one registered agent, and the connections of the run.
struct Harness {
    env: Env,
    edge: Edge,
    key: ed25519_dalek::SigningKey,
    did: String,
    /// The authenticated session, when open.
    session: Option<Raw>,
    stats: std::collections::BTreeMap<String, u64>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Harness {
    async fn start() -> Harness {
        let (key, did) = keys(1).remove(0);
        let env = Env::start().await;
        let mut cfg = env.edge_config("edge-fuzz");
        cfg.rate_per_sec = 1_000_000;
        cfg.rate_burst = 1_000_000;
        let edge = env.edge(cfg).await;
        env.put_agent(&did, &env.state(1, None, "m")).await;
        Harness {
            env,
            edge,
            key,
            did,
            session: None,
            stats: Default::default(),
        }
    }

    fn edge(&self) -> &Edge {
        &self.edge
    }

    /// The edge's view, for failure messages.
    fn diag(&self) -> String {
        let m = &self.edge.metrics;
        format!(
            "edge: {} sessions, frames in/out {}/{}, closes too_big={} idle={} flood={} slow={} superseded={}",
            m.sessions(),
            m.frames_received(),
            m.frames_sent(),
            m.closes("too_big"),
            m.closes("idle"),
            m.closes("flood"),
            m.closes("slow"),
            m.closes("superseded"),
        )
    }

    /// A fresh connection that has read its challenge.
    async fn pre_auth(&self) -> Result<(Raw, Value), TestCaseError> {
        let mut ws = raw_connect(self.edge()).await;
        match next_event(&mut ws).await {
            Event::Text(v) if v["type"] == "auth_challenge" => Ok((ws, v)),
            other => Err(TestCaseError::fail(format!(
                "expected auth_challenge, got {other:?} ({})",
                self.diag()
            ))),
        }
    }

    /// The authenticated session (opened, authenticated and given its config when needed).
    async fn session(&mut self) -> Result<Raw, TestCaseError> {
        if let Some(ws) = self.session.take() {
            return Ok(ws);
        }
        let (mut ws, challenge) = self.pre_auth().await?;
        let nonce = challenge["payload"]["nonce"].as_str().unwrap_or("");
        let edge_id = challenge["payload"]["edgeId"].as_str().unwrap_or("");
        let sig = vc_shared::did::sign_auth(&self.key, nonce, edge_id);
        send(
            &mut ws,
            json!({"type": "auth_response", "payload": {"did": self.did, "signature": sig}})
                .to_string(),
        )
        .await;
        for want in ["auth_complete", "llm_config"] {
            match next_event(&mut ws).await {
                Event::Text(v) if v["type"] == want => {}
                other => {
                    return Err(TestCaseError::fail(format!(
                        "authentication: expected {want}, got {other:?} ({})",
                        self.diag()
                    )))
                }
            }
        }
        Ok(ws)
    }

    /// Sends `frames` on a fresh pre-auth connection or on the session; checks every answer.
    async fn case(&mut self, authed: bool, frames: &[Frame]) -> Result<(), TestCaseError> {
        let mut ws = if authed {
            self.session().await?
        } else {
            self.pre_auth().await?.0
        };
        let mut open = true;
        for f in frames {
            let e = expect(f, authed, 1);
            *self
                .stats
                .entry(format!("{e:?}").split('(').next().unwrap_or("").to_string())
                .or_default() += 1;
            let what = format!(
                "{} {:?} → expected {e:?}",
                if authed { "authed" } else { "pre-auth" },
                short(f)
            );
            send_frame(&mut ws, f).await;
            match &e {
                Expect::Close(code) | Expect::AuthFailed(code) => {
                    let mut saw_failed = false;
                    loop {
                        match next_event(&mut ws).await {
                            Event::Text(v) if v["type"] == "auth_failed" => {
                                prop_assert!(
                                    v["payload"]["reason"]
                                        .as_str()
                                        .is_some_and(|r| !r.is_empty()),
                                    "{}: {}",
                                    what,
                                    v
                                );
                                saw_failed = true;
                            }
                            Event::Text(v) => {
                                return Err(TestCaseError::fail(format!(
                                    "{what}: got {v} before the close"
                                )))
                            }
                            Event::Close(c) => {
                                prop_assert_eq!(c, Some(*code), "{}", what);
                                break;
                            }
                            ev @ (Event::Gone | Event::Timeout) => {
                                return Err(TestCaseError::fail(format!(
                                    "{what}: {ev:?} instead of the close ({})",
                                    self.diag()
                                )))
                            }
                        }
                    }
                    if matches!(e, Expect::AuthFailed(_)) {
                        prop_assert!(saw_failed, "{}: no auth_failed before the close", what);
                    }
                    open = false;
                    break;
                }
                _ => {
                    // The probe: a heartbeat (answered with pong after authentication, with an
                    // UNAUTHORIZED error before). Replies come in order, so the fuzzed frame's reply, if
                    // any, comes first.
                    send_frame(&mut ws, &heartbeat()).await;
                    let mut replies = Vec::new();
                    loop {
                        match next_event(&mut ws).await {
                            Event::Text(v) => {
                                let is_probe = if authed {
                                    v["type"] == "pong"
                                } else {
                                    v["type"] == "error" && v["payload"]["code"] == "UNAUTHORIZED"
                                };
                                replies.push(v);
                                let want = match e {
                                    Expect::Nothing => 1,
                                    _ => 2,
                                };
                                if is_probe && replies.len() >= want {
                                    break;
                                }
                                prop_assert!(replies.len() < 3, "{}: replies {:?}", what, replies);
                            }
                            other => {
                                return Err(TestCaseError::fail(format!(
                                    "{what}: {other:?} after the replies {replies:?} ({})",
                                    self.diag()
                                )))
                            }
                        }
                    }
                    let first = &replies[0];
                    match e {
                        Expect::Nothing => {
                            prop_assert_eq!(replies.len(), 1, "{}: {:?}", what, replies)
                        }
                        Expect::Pong => {
                            prop_assert_eq!(&first["type"], "pong", "{}: {:?}", what, replies)
                        }
                        Expect::Error(code) => {
                            prop_assert_eq!(&first["type"], "error", "{}: {:?}", what, replies);
                            prop_assert_eq!(
                                &first["payload"]["code"],
                                code,
                                "{}: {:?}",
                                what,
                                replies
                            );
                            prop_assert!(
                                first["payload"]["error"]
                                    .as_str()
                                    .is_some_and(|m| !m.trim().is_empty()),
                                "{}: {:?}",
                                what,
                                replies
                            );
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        if authed && open {
            self.session = Some(ws);
        }
        Ok(())
    }
}

/// A frame for messages: long texts cut.
fn short(f: &Frame) -> String {
    let s = format!("{f:?}");
    if s.len() > 300 {
        format!(
            "{}… ({} bytes)",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())],
            s.len()
        )
    } else {
        s
    }
}

/// Arbitrary frames before and after authentication: the oracle's answer every time, the session alive
/// after every frame that does not close it, the edge never stuck.
#[test]
fn frames_before_and_after_auth() {
    let rt = runtime();
    let h = std::cell::RefCell::new(rt.block_on(Harness::start()));
    let config = io_config(CASES);
    let n = config.cases;
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &(any::<bool>(), prop::collection::vec(frame(), 1..=4)),
        |(authed, frames)| rt.block_on(h.borrow_mut().case(authed, &frames)),
    );
    let mut h = h.into_inner();
    eprintln!(
        "fuzz_ws frames_before_and_after_auth: {n} cases in {:.1} s; expected answers: {:?}",
        started.elapsed().as_secs_f64(),
        h.stats
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async move {
        // Still serving: the agent authenticates again and gets its config; the edge's task is alive.
        h.session = None;
        h.session().await.expect("the edge still serves");
        assert_eq!(
            h.env
                .store
                .agent(&h.did)
                .await
                .ok()
                .flatten()
                .map(|a| a.did),
            Some(h.did.clone())
        );
        drop(h);
    });
}

/// A client close frame with any code ends the session cleanly (the edge answers the close).
#[test]
fn client_close_codes() {
    let rt = runtime();
    rt.block_on(async {
        let mut h = Harness::start().await;
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4000, 4401, 4999,
        ] {
            for authed in [false, true] {
                let mut ws = if authed {
                    h.session().await.expect("session")
                } else {
                    h.pre_auth().await.expect("challenge").0
                };
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "bye".into(),
                    })))
                    .await;
                match next_event(&mut ws).await {
                    Event::Close(_) | Event::Gone => {}
                    other => panic!("{code} authed={authed}: {other:?}"),
                }
            }
        }
    });
}
