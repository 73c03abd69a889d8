//! Realm key rotation (issue "Trust", item 1), against the LiteLLM emulator:
//!
//! 1. Removing a member rotates the realm key: the remaining member is sent the new key and never sees
//!    a failed call, and the removed member's key stops working once the remaining member acked.
//! 2. `POST /api/realms/{id}/key/rotate`: a member online that never acknowledges holds the old key for
//!    the grace period, and not longer; `graceSeconds: 0` retires the old key at once; bad input is
//!    refused with the field named; the budget is the realm team's, so spend before a rotation counts.
//! 3. The rotation's own steps are the worker's: published by anyone else they are refused.
//!
//! The same flow against the real proxy is in the contract tier (`contract::real_litellm_key_rotation`).

mod edge_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_support::{agent_opts, raw_connect, recv_json, send, spawn_agent, spawn_edge, Edge};
use futures::StreamExt;
use serde_json::{json, Value};
use vc_agent::AgentHandle;
use vc_edge::EdgeConfig;
use vc_tests::assert_eventually;
use vc_tests::stack::Stack;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct World {
    model_name: String,
    realm: String,
}

/// A model granted to a realm with a budget (the realm's key is minted).
async fn world(s: &Stack, name: &str) -> World {
    let m = s
        .post(
            "/api/models",
            json!({"name": name, "provider": "openai", "modelId": "gpt-r", "apiKey": "sk-upstream-r"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let r = s
        .post("/api/realms", json!({"name": format!("{name} realm")}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = World {
        model_name: m.body["model"]["litellmModelName"].as_str().unwrap().into(),
        realm: r.body["realm"]["id"].as_str().unwrap().into(),
    };
    let g = s
        .post(
            &format!(
                "/api/models/{}/realms",
                m.body["model"]["id"].as_str().unwrap()
            ),
            json!({"realmId": w.realm, "monthlyBudgetUsd": 25}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    w
}

/// A member of the realm (configured through it), connected to `edge`; its DID.
async fn member(s: &Stack, w: &World, edge: &Edge) -> (AgentHandle, String) {
    let (key, did) = vc_tests::stack::new_agent();
    let r = s
        .post("/api/agents", json!({"did": did, "name": "rotating agent"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let j = s
        .post(
            &format!("/api/realms/{}/agents", w.realm),
            json!({"agentDid": did}),
        )
        .await;
    assert_eq!(j.body["llmPushed"], true, "{}", j.text);
    let agent = spawn_agent(&key, agent_opts(&[edge]));
    assert_eventually!(key_of(&agent).is_some(), secs(15));
    (agent, did)
}

/// The LiteLLM key an agent holds.
fn key_of(agent: &AgentHandle) -> Option<String> {
    agent.status().current()?.config.as_ref()?.api_key.clone()
}

async fn router_key(s: &Stack, realm: &str) -> Value {
    let r = s.get(&format!("/api/realms/{realm}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["realm"]["routerKey"].clone()
}

/// Chats with whatever key `agent` holds, every 20 ms, until `stop`; counts calls and failures.
fn chatter(
    s: &Stack,
    agent: Arc<AgentHandle>,
    model: String,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<Vec<(u16, String)>>, Arc<AtomicU64>) {
    let http = s.http.clone();
    let url = format!("{}/chat/completions", s.emu.as_ref().unwrap().base_url);
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let key = key_of(&agent).unwrap_or_default();
            let status = http
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            counter.fetch_add(1, Ordering::Relaxed);
            if status != 200 {
                failures.push((status, key.chars().take(8).collect()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        failures
    });
    (task, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_rotates_the_key_without_a_failed_call() {
    let s = Stack::builder()
        .litellm(true)
        .key_rotation_grace(secs(30))
        .start()
        .await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let w = world(&s, "Rotate").await;
    let edge = spawn_edge(
        &s.nats_url(),
        &s.redis_url(),
        &s.secret,
        EdgeConfig::new("edge-rotation"),
    )
    .await;
    let (stays, _) = member(&s, &w, &edge).await;
    let (leaves, leaver) = member(&s, &w, &edge).await;
    let old = key_of(&stays).unwrap();
    assert_eq!(key_of(&leaves).as_deref(), Some(old.as_str()));
    assert_eq!(s.emu_chat(&old, &w.model_name).await, 200);
    let rk = router_key(&s, &w.realm).await;
    assert_eq!(rk["rotation"]["state"], "stable", "{rk}");
    assert_eq!(rk["rotation"]["rotations"], 0, "{rk}");

    let stays = Arc::new(stays);
    let stop = Arc::new(AtomicBool::new(false));
    let (chatting, calls) = chatter(&s, stays.clone(), w.model_name.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t0 = Instant::now();
    let r = s
        .delete(&format!("/api/realms/{}/agents/{leaver}", w.realm))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The remaining member is sent a new key.
    assert_eventually!(key_of(&stays).is_some_and(|k| k != old), secs(15));
    let pushed = t0.elapsed();
    // The old key stops working once the only online member left acknowledged the new one: well
    // within the 30 s grace period.
    let deadline = Instant::now() + secs(15);
    while s.emu_chat(&old, &w.model_name).await == 200 {
        assert!(
            Instant::now() < deadline,
            "the removed member's key still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revoked = t0.elapsed();
    assert_eq!(s.emu_chat(&old, &w.model_name).await, 401);
    // The remaining member chats on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let failures = chatting.await.unwrap();
    let n = calls.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "failed calls during the rotation: {failures:?}"
    );
    assert!(n > 10, "the remaining member chatted {n} times");
    let new = key_of(&stays).unwrap();
    assert_eq!(s.emu_chat(&new, &w.model_name).await, 200);

    // One key in LiteLLM again, in the realm's team, which holds the budget.
    assert_eventually!(
        router_key(&s, &w.realm).await["rotation"]["state"] == "stable",
        secs(10)
    );
    let rk = router_key(&s, &w.realm).await;
    assert_eq!(rk["rotation"]["rotations"], 1, "{rk}");
    assert_eq!(rk["keyPrefix"], new[..8], "{rk}");
    assert_eventually!(emu.keys().len() == 1, secs(10));
    let team = format!("vc-realm-{}", w.realm);
    assert_eq!(emu.keys()[0].team_id.as_deref(), Some(team.as_str()));
    let teams = emu.teams();
    let t = teams.iter().find(|t| t.team_id == team).expect("team");
    assert_eq!(t.max_budget, Some(25.0));
    // Audit: who, why, which keys (prefixes only).
    let rotated = s.audit_events("realm.key.rotated").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["details"]["reason"], "member-removed");
    assert_eq!(rotated[0]["details"]["previousKeyPrefix"], old[..8]);
    assert!(!rotated[0].to_string().contains(&old[8..]));
    assert_eq!(s.audit_events("realm.key.retired").await.len(), 1);
    eprintln!(
        "[rotation] member removed: new key at the remaining member after {pushed:?}, old key 401 after \
         {revoked:?}; {n} calls of the remaining member, none failed"
    );
}

/// An online member that never acknowledges: the old key works for the grace period, then not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_rotation_honours_the_grace_period_and_a_leak_retires_at_once() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let w = world(&s, "Grace").await;
    let edge = spawn_edge(
        &s.nats_url(),
        &s.redis_url(),
        &s.secret,
        EdgeConfig::new("edge-grace"),
    )
    .await;
    let (agent, _) = member(&s, &w, &edge).await;
    let old = key_of(&agent).unwrap();
    // A second member on a raw socket: authenticated, sent its config, never acks.
    let (raw_key, raw_did) = vc_tests::stack::new_agent();
    s.post(
        "/api/agents",
        json!({"did": raw_did, "name": "silent agent"}),
    )
    .await;
    s.post(
        &format!("/api/realms/{}/agents", w.realm),
        json!({"agentDid": raw_did}),
    )
    .await;
    let mut ws = raw_connect(&edge).await;
    let challenge = recv_json(&mut ws).await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    let sig = vc_shared::did::sign_auth(&raw_key, &nonce, "edge-grace");
    send(
        &mut ws,
        json!({"messageId": "m1", "type": "auth_response", "payload": {"did": raw_did, "signature": sig},
            "timestamp": "2026-01-01T00:00:00Z"})
        .to_string(),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["type"], "auth_complete");
    assert_eq!(recv_json(&mut ws).await["type"], "llm_config");
    // It reads (so pings are answered and the session stays up) and never acks.
    let silent = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });

    // Bad input is refused, naming what is wrong.
    for bad in [
        json!({"graceSeconds": -1}),
        json!({"graceSeconds": "soon"}),
        json!({"graceSeconds": 604801}),
    ] {
        let r = s
            .post(&format!("/api/realms/{}/key/rotate", w.realm), bad.clone())
            .await;
        assert_eq!(r.status, 400, "{bad} → {}", r.text);
        assert!(r.text.contains("graceSeconds"), "{}", r.text);
    }
    let r = s.post("/api/realms/nope/key/rotate", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let keyless = s.post("/api/realms", json!({"name": "No key"})).await;
    let r = s
        .post(
            &format!(
                "/api/realms/{}/key/rotate",
                keyless.body["realm"]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);

    let t0 = Instant::now();
    let r = s
        .post(
            &format!("/api/realms/{}/key/rotate", w.realm),
            json!({"graceSeconds": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["realmId"], w.realm.as_str());
    assert!(
        ["pending", "retiring"]
            .contains(&r.body["routerKey"]["rotation"]["state"].as_str().unwrap()),
        "{}",
        r.text
    );
    assert_eventually!(key_of(&agent).is_some_and(|k| k != old), secs(15));
    let new = key_of(&agent).unwrap();
    // The silent member holds the old key: it works until the grace period is over.
    let rk = router_key(&s, &w.realm).await;
    assert_eq!(rk["rotation"]["state"], "retiring", "{rk}");
    assert_eq!(rk["rotation"]["retiring"][0]["keyPrefix"], old[..8], "{rk}");
    assert_eq!(s.emu_chat(&old, &w.model_name).await, 200);
    let deadline = Instant::now() + secs(15);
    while s.emu_chat(&old, &w.model_name).await == 200 {
        assert!(
            Instant::now() < deadline,
            "the old key outlived its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retired = t0.elapsed();
    assert_eq!(s.emu_chat(&old, &w.model_name).await, 401);
    assert!(
        retired >= secs(3),
        "retired after {retired:?}, before the 3 s grace period"
    );
    assert_eq!(s.emu_chat(&new, &w.model_name).await, 200);

    // The realm's team holds the budget: this month's spend, made with the keys before, still counts
    // after the next rotation.
    let team = format!("vc-realm-{}", w.realm);
    emu.set_team_spend(&team, 30.0);
    assert_eq!(s.emu_chat(&new, &w.model_name).await, 400);

    // A leaked key: `graceSeconds: 0` retires the old key as soon as the new one is pushed.
    let r = s
        .post(
            &format!("/api/realms/{}/key/rotate", w.realm),
            json!({"graceSeconds": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eventually!(key_of(&agent).is_some_and(|k| k != new), secs(15));
    let deadline = Instant::now() + secs(5);
    loop {
        let st = s.emu_chat(&new, &w.model_name).await;
        if st == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leaked key still answers {st}: {}",
            router_key(&s, &w.realm).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latest = key_of(&agent).unwrap();
    assert_eq!(
        s.emu_chat(&latest, &w.model_name).await,
        400,
        "over the team's budget"
    );
    emu.set_team_spend(&team, 0.0);
    assert_eq!(s.emu_chat(&latest, &w.model_name).await, 200);
    assert_eventually!(
        router_key(&s, &w.realm).await["rotation"]["state"] == "stable",
        secs(10)
    );
    assert_eq!(router_key(&s, &w.realm).await["rotation"]["rotations"], 2);
    let rotated = s.audit_events("realm.key.rotated").await;
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(rotated
        .iter()
        .all(|e| e["details"]["reason"] == "requested"));
    assert_eq!(rotated[1]["details"]["graceSeconds"], 0);
    silent.abort();
    eprintln!("[rotation] grace 3 s with a silent member: old key retired after {retired:?}");
}

/// `realm.key.activate` and `realm.key.retire` are the worker's own steps: published on the public
/// subject they are refused, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_steps_from_outside_the_worker_are_refused() {
    let s = Stack::builder().litellm(true).start().await;
    let w = world(&s, "Steps").await;
    let before = router_key(&s, &w.realm).await;
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut replies = nc.subscribe("_INBOX.test.steps.>").await.unwrap();
    for (i, kind) in ["realm.key.activate", "realm.key.retire"]
        .iter()
        .enumerate()
    {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("steps-{i}").as_str());
        h.insert("Vc-Reply-To", format!("_INBOX.test.steps.{i}").as_str());
        let body = json!({"realmId": w.realm, "keyId": "0123456789abcdef"});
        js.publish_with_headers(
            format!("vc.cmd.{kind}"),
            h,
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let msg = tokio::time::timeout(secs(15), replies.next())
            .await
            .expect("an outcome")
            .unwrap();
        let o: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(o["status"], "failed", "{o}");
        assert_eq!(o["error"]["code"], "FORBIDDEN", "{o}");
        assert!(
            o["error"]["message"]
                .as_str()
                .unwrap()
                .contains("vc-worker"),
            "{o}"
        );
    }
    let after = router_key(&s, &w.realm).await;
    assert_eq!(before["keyPrefix"], after["keyPrefix"]);
    assert_eq!(after["rotation"]["state"], "stable");
}
