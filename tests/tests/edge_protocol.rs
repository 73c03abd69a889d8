//! The agent WebSocket protocol on one edge, frame by frame (contract §3), over real NATS and Redis.

mod edge_support;

use std::time::Duration;

use edge_support::*;
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use vc_shared::ws::{close, ClientMsg, Heartbeat, LlmConfigAck, ServerMsg};
use vc_tests::assert_eventually;

/// Challenge shape, `auth_complete`, the current config at once (even `null`), ack recorded,
/// heartbeat → pong with presence (online, edgeId, lastSeen, activeLlm), offline after goodbye.
#[tokio::test]
async fn handshake_config_ack_heartbeat_presence() {
    let env = Env::start().await;
    let edge = env.edge(env.edge_config("edge-p1")).await;
    let (key, did) = keys(1).remove(0);
    let mut null = env.state(7, None, "m");
    null.config = None;
    null.mode = None;
    env.put_agent(&did, &null).await;

    let mut ws = raw_connect(&edge).await;
    let first = recv_json(&mut ws).await;
    assert_eq!(first["type"], "auth_challenge");
    assert!(first["messageId"].is_string() && first["timestamp"].is_string());
    let nonce = first["payload"]["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 64);
    assert!(
        nonce
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "lower-case hex: {nonce}"
    );
    assert_eq!(first["payload"]["edgeId"], "edge-p1");
    let session_id = first["payload"]["sessionId"].as_str().unwrap().to_string();
    let sig = vc_shared::did::sign_auth(&key, nonce, "edge-p1");
    send(
        &mut ws,
        serde_json::json!({"messageId": "m1", "type": "auth_response", "payload": {"did": did, "signature": sig}, "timestamp": "2026-01-01T00:00:00Z"}).to_string(),
    )
    .await;
    let complete = recv_json(&mut ws).await;
    assert_eq!(complete["type"], "auth_complete");
    assert_eq!(complete["payload"]["agentId"], did.as_str());
    assert_eq!(complete["payload"]["sessionId"], session_id.as_str());
    assert_eq!(complete["payload"]["heartbeatIntervalMs"], 30_000);
    let cfg = recv_json(&mut ws).await;
    assert_eq!(cfg["type"], "llm_config");
    assert_eq!(
        cfg["payload"],
        serde_json::json!({"config": null, "version": 7, "mode": null})
    );

    // A new config: the full payload, key opened for the agent.
    env.update_agent(
        &did,
        env.state(8, Some("realm-x"), "openai-compatible/llama"),
    )
    .await;
    let ServerMsg::LlmConfig(p) = recv(&mut ws).await else {
        panic!("llm_config")
    };
    assert_eq!(p.version, 8);
    assert_eq!(p.realm_id.as_deref(), Some("realm-x"));
    assert_eq!(
        p.config.as_ref().unwrap().api_key.as_deref(),
        Some("sk-test-8")
    );

    // Ack → ackedVersion; an ack of a version never sent is refused with an error frame.
    send(
        &mut ws,
        ClientMsg::LlmConfigAck(LlmConfigAck { version: 8 }).encode(Some(&did)),
    )
    .await;
    assert_eventually!(env.store.acked_version(&did).await.unwrap() == Some(8));
    send(
        &mut ws,
        ClientMsg::LlmConfigAck(LlmConfigAck { version: 99 }).encode(None),
    )
    .await;
    let ServerMsg::Error(e) = recv(&mut ws).await else {
        panic!("error frame")
    };
    assert_eq!(e.code, "BAD_REQUEST");
    assert_eq!(env.store.acked_version(&did).await.unwrap(), Some(8));

    // Heartbeat → pong, presence.
    let active =
        serde_json::json!({"provider": "openai-compatible", "model": "openai-compatible/llama"});
    send(
        &mut ws,
        ClientMsg::Heartbeat(Heartbeat {
            active_llm: Some(active.clone()),
        })
        .encode(Some(&did)),
    )
    .await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::Pong(_)));
    let p = env.presence(&did).await;
    assert_eq!(p.get("online").map(String::as_str), Some("1"));
    assert_eq!(p.get("edgeId").map(String::as_str), Some("edge-p1"));
    assert_eq!(p.get("sessionId"), Some(&session_id));
    assert!(p.contains_key("lastSeen"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&p["activeLlm"]).unwrap(),
        active
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(vc_shared::store::keys::presence(&did))
        .query_async(&mut env.store.conn())
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 90_000,
        "live presence expires by itself: {pttl}"
    );
    // The API's view reads the same fields.
    let rec = env.store.agent(&did).await.unwrap().unwrap();
    let view = vc_shared::views::load_agent_view(&env.store, &rec)
        .await
        .unwrap();
    assert!(view.online);
    assert_eq!(view.edge_id.as_deref(), Some("edge-p1"));
    assert_eq!(view.acked_version, Some(8));
    assert_eq!(view.active_llm, Some(active));

    // Goodbye: offline, lastSeen kept.
    ws.close(None).await.unwrap();
    assert_eventually!(env.presence(&did).await.get("online").map(String::as_str) == Some("0"));
    let view = vc_shared::views::load_agent_view(&env.store, &rec)
        .await
        .unwrap();
    assert!(!view.online && view.edge_id.is_none() && view.last_seen.is_some());
    assert_eventually!(edge.metrics.sessions() == 0);
    assert!(
        edge.agent_subjects().is_empty(),
        "unsubscribed when the last session left"
    );
}

/// Bad signature, signature made for another edge, replayed response, unknown DID, malformed
/// response, no response in time: `auth_failed` and the contract's close code each time.
#[tokio::test]
async fn authentication_failures() {
    let env = Env::start().await;
    let mut cfg = env.edge_config("edge-p2");
    cfg.auth_timeout = Duration::from_millis(400);
    let edge = env.edge(cfg).await;
    let mut ks = keys(2);
    let (key, did) = ks.remove(0);
    let (other_key, unknown_did) = ks.remove(0);
    env.put_agent(&did, &env.state(1, None, "m")).await;

    let closes_with = |code: u16| {
        move |(c, frames): (Option<u16>, Vec<ServerMsg>)| {
            assert_eq!(c, Some(code), "frames: {frames:?}");
            assert!(
                frames.iter().any(|f| matches!(f, ServerMsg::AuthFailed(_))),
                "auth_failed first: {frames:?}"
            );
        }
    };

    // Signed with another key.
    let mut ws = raw_connect(&edge).await;
    answer_challenge(&mut ws, &other_key, &did, None).await;
    closes_with(close::BAD_AUTH)(expect_close(&mut ws, Duration::from_secs(5)).await);

    // Signed for another edge's id (cross-edge replay).
    let mut ws = raw_connect(&edge).await;
    answer_challenge(&mut ws, &key, &did, Some("edge-elsewhere")).await;
    closes_with(close::BAD_AUTH)(expect_close(&mut ws, Duration::from_secs(5)).await);

    // A valid response, captured and replayed on a new connection (its nonce was single-use).
    let mut ws = raw_connect(&edge).await;
    let ServerMsg::AuthChallenge(c) = recv(&mut ws).await else {
        panic!()
    };
    let captured = ClientMsg::AuthResponse(vc_shared::ws::AuthResponse {
        did: did.clone(),
        signature: vc_shared::did::sign_auth(&key, &c.nonce, &c.edge_id),
    })
    .encode(None);
    send(&mut ws, captured.clone()).await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::AuthComplete(_)));
    let mut replay = raw_connect(&edge).await;
    let _ = recv(&mut replay).await;
    send(&mut replay, captured).await;
    closes_with(close::BAD_AUTH)(expect_close(&mut replay, Duration::from_secs(5)).await);
    // The original session is untouched by the failed replay.
    assert!(matches!(recv(&mut ws).await, ServerMsg::LlmConfig(_)));

    // Unknown DID (valid signature by its own key).
    let mut ws2 = raw_connect(&edge).await;
    answer_challenge(&mut ws2, &other_key, &unknown_did, None).await;
    closes_with(close::NOT_REGISTERED)(expect_close(&mut ws2, Duration::from_secs(5)).await);

    // Malformed auth_response payload, and a DID that is not a did:key.
    let mut ws3 = raw_connect(&edge).await;
    let _ = recv(&mut ws3).await;
    send(
        &mut ws3,
        r#"{"type":"auth_response","payload":{"did":42}}"#.to_string(),
    )
    .await;
    closes_with(close::BAD_AUTH)(expect_close(&mut ws3, Duration::from_secs(5)).await);
    let mut ws3 = raw_connect(&edge).await;
    let _ = recv(&mut ws3).await;
    send(
        &mut ws3,
        r#"{"type":"auth_response","payload":{"did":"did:web:x","signature":"AAAA"}}"#.to_string(),
    )
    .await;
    closes_with(close::BAD_AUTH)(expect_close(&mut ws3, Duration::from_secs(5)).await);

    // Silence: 4408 after the (shortened) auth timeout; a frame of another type does not help.
    let mut ws4 = raw_connect(&edge).await;
    let _ = recv(&mut ws4).await;
    send(
        &mut ws4,
        ClientMsg::Heartbeat(Heartbeat::default()).encode(None),
    )
    .await;
    let (code, frames) = expect_close(&mut ws4, Duration::from_secs(5)).await;
    assert_eq!(code, Some(close::AUTH_TIMEOUT), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, ServerMsg::Error(e) if e.code == "UNAUTHORIZED")),
        "{frames:?}"
    );

    assert!(edge.metrics.auth_failures("bad_signature") >= 3);
    assert_eq!(edge.metrics.auth_failures("not_registered"), 1);
    assert_eq!(edge.metrics.auth_failures("timeout"), 1);
    assert_eq!(edge.metrics.sessions(), 1);
}

/// Unknown and malformed frames get an `error` frame and the session stays open; binary too.
#[tokio::test]
async fn garbage_frames_get_error_frames() {
    let env = Env::start().await;
    let edge = env.edge(env.edge_config("edge-p3")).await;
    let (key, did) = keys(1).remove(0);
    env.put_agent(&did, &env.state(1, None, "m")).await;
    let mut ws = raw_connect(&edge).await;
    answer_challenge(&mut ws, &key, &did, None).await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::AuthComplete(_)));
    assert!(matches!(recv(&mut ws).await, ServerMsg::LlmConfig(_)));
    for garbage in [
        "not json at all",
        "[1,2,3]",
        r#"{"payload":{}}"#,
        r#"{"type":"launch_missiles","payload":{}}"#,
        r#"{"type":"llm_config_ack","payload":{"version":"seven"}}"#,
        r#"{"type":"auth_response","payload":{"did":"x","signature":"y"}}"#,
    ] {
        send(&mut ws, garbage.to_string()).await;
        let f = recv_json(&mut ws).await;
        assert_eq!(f["type"], "error", "{garbage}");
        assert_eq!(f["payload"]["code"], "BAD_REQUEST", "{garbage}");
        assert!(f["payload"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()));
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(matches!(recv(&mut ws).await, ServerMsg::Error(_)));
    // Still open and working.
    send(
        &mut ws,
        ClientMsg::Heartbeat(Heartbeat::default()).encode(None),
    )
    .await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::Pong(_)));
}

/// A frame over 64 KiB closes 1009; a flood closes 1008; a silent peer is closed after the idle timeout.
#[tokio::test]
async fn oversize_flood_and_idle_peers_are_closed() {
    let env = Env::start().await;
    let mut cfg = env.edge_config("edge-p4");
    cfg.idle_timeout = Duration::from_millis(600);
    cfg.ping_interval = Duration::from_secs(60);
    let edge = env.edge(cfg).await;
    let ks = keys(3);
    for (_, did) in &ks {
        env.put_agent(did, &env.state(1, None, "m")).await;
    }
    let connect = |i: usize| {
        let (k, d) = (ks[i].0.clone(), ks[i].1.clone());
        let edge = &edge;
        async move {
            let mut ws = raw_connect(edge).await;
            answer_challenge(&mut ws, &k, &d, None).await;
            assert!(matches!(recv(&mut ws).await, ServerMsg::AuthComplete(_)));
            assert!(matches!(recv(&mut ws).await, ServerMsg::LlmConfig(_)));
            ws
        }
    };

    let mut ws = connect(0).await;
    let big = format!(
        r#"{{"type":"heartbeat","payload":{{"activeLlm":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let _ = ws.send(Message::text(big)).await;
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await.0,
        Some(close::TOO_BIG)
    );

    // Exactly at the limit is fine (a frame whose payload is 64 KiB − 1 byte).
    let mut ws = connect(1).await;
    let filler = "y".repeat(64 * 1024 - 60);
    let ok = format!(r#"{{"type":"nope","payload":{{"x":"{filler}"}}}}"#);
    assert!(ok.len() < 64 * 1024);
    send(&mut ws, ok).await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::Error(_)));
    // Flood: far beyond the burst of 40 in an instant.
    for _ in 0..200 {
        if ws
            .send(Message::text(
                ClientMsg::Heartbeat(Heartbeat::default()).encode(None),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, _) = expect_close(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(close::POLICY));
    assert_eq!(edge.metrics.closes("flood"), 1);

    // Idle: connect, then do not read (so no pong either) and send nothing.
    let ws = connect(2).await;
    assert_eventually!(edge.metrics.closes("idle") == 1, Duration::from_secs(5));
    drop(ws);
    assert_eq!(edge.metrics.closes("too_big"), 1);
    assert_eventually!(edge.metrics.sessions() == 0);
}

/// An agent that does not read is disconnected once its bounded send queue is full (not buffered
/// forever).
#[tokio::test]
async fn slow_agent_is_disconnected() {
    let env = Env::start().await;
    let mut cfg = env.edge_config("edge-p5");
    cfg.send_queue = 4;
    cfg.write_timeout = Duration::from_millis(500);
    let edge = env.edge(cfg).await;
    let (key, did) = keys(1).remove(0);
    env.put_agent(&did, &env.state(1, None, "m")).await;
    let mut ws = raw_connect(&edge).await;
    answer_challenge(&mut ws, &key, &did, None).await;
    assert!(matches!(recv(&mut ws).await, ServerMsg::AuthComplete(_)));
    // Stop reading; push ~20 MiB of configs (big system prompts) through the agent subject.
    for v in 2..400u64 {
        let mut s = env.state(v, None, "m");
        if let Some(c) = s.config.as_mut() {
            c.system_prompt = Some("p".repeat(50 * 1024));
        }
        env.publish(
            vc_shared::subjects::push_agent(&did),
            &env.agent_push(&did, &s),
        )
        .await;
        if edge.metrics.closes("slow") > 0 {
            break;
        }
    }
    assert_eventually!(edge.metrics.closes("slow") == 1, Duration::from_secs(10));
    assert_eventually!(edge.metrics.sessions() == 0, Duration::from_secs(10));
    drop(ws);
}

/// Drain: `/readyz` 503, new upgrades 503, every session closed 1012, `run` returns in time.
#[tokio::test]
async fn drain_closes_every_session_with_1012() {
    let env = Env::start().await;
    let mut edge = env.edge(env.edge_config("edge-p6")).await;
    let ks = keys(21);
    for (_, did) in &ks {
        env.put_agent(did, &env.state(1, None, "m")).await;
    }
    assert_eq!(
        reqwest::get(edge.http("/readyz")).await.unwrap().status(),
        200
    );
    let agents: Vec<_> = ks[..20]
        .iter()
        .map(|(k, _)| spawn_agent(k, agent_opts(&[&edge])))
        .collect();
    // One raw agent that will not answer the close handshake keeps the drain open for a moment.
    let mut raw = raw_connect(&edge).await;
    answer_challenge(&mut raw, &ks[20].0, &ks[20].1, None).await;
    assert_eventually!(edge.metrics.sessions() == 21);

    let started = std::time::Instant::now();
    edge.begin_shutdown();
    assert_eventually!(
        reqwest::get(edge.http("/readyz"))
            .await
            .map(|r| r.status() == 503)
            .unwrap_or(false),
        Duration::from_secs(2)
    );
    let refused = tokio_tungstenite::connect_async(edge.ws_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!(
            "upgrade during drain must be refused with 503: {:?}",
            other.map(|_| ())
        ),
    }
    edge.finished().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drained in {:?}",
        started.elapsed()
    );
    for a in &agents {
        let s = a.status();
        assert_eq!(
            s.close_codes.front(),
            Some(&close::RESTART),
            "closed with 1012: {:?}",
            s.last_close
        );
    }
    let (code, _) = expect_close(&mut raw, Duration::from_secs(5)).await;
    assert_eq!(code, Some(close::RESTART));
    assert!(edge.metrics.closes("drain") >= 21);
    for a in agents {
        a.abort();
    }
}

/// Presence of agents on an edge that dies without a goodbye expires by itself.
#[tokio::test]
async fn presence_expires_when_an_edge_dies() {
    let env = Env::start().await;
    let mut cfg = env.edge_config("edge-p7");
    cfg.presence_ttl = Duration::from_millis(1500);
    cfg.presence_refresh = Duration::from_millis(300);
    let mut edge = env.edge(cfg).await;
    let (key, did) = keys(1).remove(0);
    env.put_agent(&did, &env.state(1, None, "m")).await;
    let mut o = agent_opts(&[&edge]);
    o.backoff_initial = Duration::from_secs(30);
    o.backoff_max = Duration::from_secs(30);
    let agent = spawn_agent(&key, o);
    assert_eventually!(env.presence(&did).await.get("online").map(String::as_str) == Some("1"));
    // Refreshed while alive: still online after several TTLs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.presence(&did).await.get("online").map(String::as_str),
        Some("1")
    );
    edge.kill();
    assert_eventually!(env.presence(&did).await.is_empty(), Duration::from_secs(5));
    agent.abort();
}

/// An edge that loses NATS and gets it back re-syncs its agents from Redis (a push sent while it
/// was disconnected is not lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_reconnect_resyncs_from_redis() {
    let mut env = Env::start().await;
    let edge = env.edge(env.edge_config("edge-p8")).await;
    let (key, did) = keys(1).remove(0);
    env.put_agent(&did, &env.state(1, None, "m")).await;
    let agent = spawn_agent(&key, agent_opts(&[&edge]));
    assert_eventually!(agent.version() == Some(1));
    env.nats.kill();
    // The worker's write lands in Redis; its push is lost with the server.
    env.put_agent(&did, &env.state(2, None, "m2")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.nats.restart());
    assert_eventually!(agent.version() == Some(2), Duration::from_secs(20));
    assert!(edge.metrics.resyncs() >= 1);
    assert_eq!(
        agent.status().sessions,
        1,
        "the WebSocket session survived the NATS outage"
    );
    agent.stop().await;
}

/// The connection cap: upgrades beyond it get 503; the operational endpoints still answer; server
/// pings keep a reading agent alive past the idle timeout.
#[tokio::test]
async fn connection_cap_pings_and_metrics() {
    let env = Env::start().await;
    let mut cfg = env.edge_config("edge-p9");
    cfg.max_connections = 2;
    cfg.ping_interval = Duration::from_millis(200);
    cfg.idle_timeout = Duration::from_millis(700);
    let edge = env.edge(cfg).await;
    let ks = keys(2);
    for (_, did) in &ks {
        env.put_agent(did, &env.state(1, None, "m")).await;
    }
    let agents: Vec<_> = ks
        .iter()
        .map(|(k, _)| spawn_agent(k, agent_opts(&[&edge])))
        .collect();
    assert_eventually!(edge.metrics.sessions() == 2);
    match tokio_tungstenite::connect_async(edge.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("over the cap: 503 expected, got {:?}", other.map(|_| ())),
    }
    assert_eq!(edge.metrics.refused("full"), 1);
    // Pings every 200 ms; the agents answer them, so they outlive the 700 ms idle timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(edge.metrics.closes("idle"), 0);
    assert!(agents.iter().all(|a| a.status().sessions == 1));
    let text = reqwest::get(edge.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "vc_edge_sessions 2",
        "vc_edge_frames_sent_total ",
        "vc_edge_frames_received_total ",
        "vc_edge_pushes_received_total{kind=\"agent\"} ",
        "vc_edge_subscriptions{kind=\"agent\"} 2",
        "vc_edge_refused_upgrades_total{kind=\"full\"} 1",
    ] {
        assert!(text.contains(line), "{line:?} in /metrics:\n{text}");
    }
    assert_eq!(
        reqwest::get(edge.http("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(edge.http("/readyz")).await.unwrap().status(),
        200
    );
    for a in agents {
        a.stop().await;
    }
}
