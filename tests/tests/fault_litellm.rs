//! Fault: LiteLLM down, wiped, or changed behind our back (issue 5 item 5), against the emulator.
//!
//! 1. Down for a while: commands still complete (and agents are configured); models and realm keys show
//!    `error`/`pending` while it is down and `synced` once it is back (sync jobs retried with backoff).
//! 2. Wiped (a lost database): `POST /api/litellm/reconcile` re-creates the deployments by id and the realm
//!    key with the SAME value, so the key an agent was pushed works again without a re-push; the
//!    periodic reconcile does the same on its own.
//! 3. Drift (a key's models changed, a deployment deleted): detected and repaired by the reconcile;
//!    `GET /api/litellm/status` shows `lastReconcileAt` and the drift counts.
//!
//! The same scenarios against the real proxy (`real-litellm reset`) belong to the contract tier.

mod edge_support;
mod fault_support;

use std::time::{Duration, Instant};

use fault_support::*;
use serde_json::{json, Value};
use vc_agent::{AgentClient, AgentHandle, AgentOptions};
use vc_edge::EdgeConfig;
use vc_tests::stack::Stack;

struct World {
    model: String,
    model_name: String,
    realm: String,
}

/// A model granted to a realm (key minted); LiteLLM synced.
async fn world(s: &Stack, name: &str) -> World {
    let m = s
        .post(
            "/api/models",
            json!({"name": name, "provider": "openai", "modelId": "gpt-w", "apiKey": "sk-upstream-w"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let r = s
        .post("/api/realms", json!({"name": format!("{name} realm")}))
        .await;
    let w = World {
        model: m.body["model"]["id"].as_str().unwrap().into(),
        model_name: m.body["model"]["litellmModelName"].as_str().unwrap().into(),
        realm: r.body["realm"]["id"].as_str().unwrap().into(),
    };
    let g = s
        .post(
            &format!("/api/models/{}/realms", w.model),
            json!({"realmId": w.realm, "monthlyBudgetUsd": 25}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    w
}

/// An agent registered, joined to the realm (auto-configured), connected through an edge.
async fn connected_agent(s: &Stack, w: &World) -> (edge_support::Edge, AgentHandle) {
    let (key, join) = joined_agent(s, w).await;
    assert_eq!(join["llmPushed"], true, "{join}");
    let (edge, agent) = connect(s, key).await;
    vc_tests::assert_eventually!(agent.version().is_some(), secs(15));
    (edge, agent)
}

/// An agent registered and joined to the realm; its key and the join's answer.
async fn joined_agent(s: &Stack, w: &World) -> (ed25519_dalek::SigningKey, Value) {
    let (key, did) = vc_tests::stack::new_agent();
    let r = s
        .post("/api/agents", json!({"did": did, "name": "litellm agent"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let j = s
        .post(
            &format!("/api/realms/{}/agents", w.realm),
            json!({"agentDid": did}),
        )
        .await;
    assert_eq!(j.status, 200, "{}", j.text);
    (key, j.body)
}

/// The agent connected through a new edge, once its session is up.
async fn connect(s: &Stack, key: ed25519_dalek::SigningKey) -> (edge_support::Edge, AgentHandle) {
    let edge = edge_support::spawn_edge(
        &s.nats_url(),
        &s.redis_url(),
        &s.secret,
        EdgeConfig::new("edge-litellm"),
    )
    .await;
    let mut o = AgentOptions::new(vec![edge.ws_url()]);
    o.backoff_initial = Duration::from_millis(100);
    let agent = AgentClient::new(key, o).spawn();
    vc_tests::assert_eventually!(agent.status().current().is_some(), secs(15));
    (edge, agent)
}

async fn chat(s: &Stack, key: &str, model: &str) -> u16 {
    let url = format!("{}/chat/completions", s.emu.as_ref().unwrap().base_url);
    s.http
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn states(models: &Value, realms: &Value) -> (Vec<String>, Vec<String>) {
    let m = models["models"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["litellm"]["state"].as_str().unwrap_or("?").to_string())
        .collect();
    let r = realms["realms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| !r["routerKey"].is_null())
        .map(|r| {
            r["routerKey"]["litellm"]["state"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    (m, r)
}

async fn reconcile(s: &Stack) -> Value {
    let before = s.get("/api/litellm/status").await.body["lastReconcileAt"].clone();
    let r = s.post("/api/litellm/reconcile", json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r.body["commandId"].is_string(), "{}", r.text);
    vc_tests::wait::eventually("a new reconcile report", secs(30), || async {
        let st = s.get("/api/litellm/status").await.body;
        (!st["lastReconcileAt"].is_null() && st["lastReconcileAt"] != before).then_some(st)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_down_commands_complete_and_sync_catches_up() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let w = world(&s, "Before Outage").await;
    let (_edge, agent) = connected_agent(&s, &w).await;
    let v0 = agent.version().unwrap();

    emu.set_down(true);
    let down_at = Instant::now();
    // Commands complete while LiteLLM is down.
    let m = s
        .post(
            "/api/models",
            json!({"name": "During Outage", "provider": "anthropic", "modelId": "claude-x"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let first_state = m.body["model"]["litellm"].clone();
    assert_eq!(first_state["state"], "error", "{first_state}");
    assert!(
        first_state["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{first_state}"
    );
    let m2 = m.body["model"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{m2}/realms"),
            json!({"realmId": w.realm}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let key_state = g.body["routerKey"]["litellm"]["state"].clone();
    assert!(
        key_state == "pending" || key_state == "error",
        "{key_state}"
    );
    // The agent is pushed its new config (two models) at once, LiteLLM or not.
    vc_tests::assert_eventually!(agent.version() > Some(v0), secs(10));
    let cfg = agent.status().current().unwrap().config.clone().unwrap();
    assert_eq!(cfg.allowed_models.as_ref().map(Vec::len), Some(2));
    // Throughout the outage GET shows error/pending, never synced for what changed.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (ms, rs) = states(
            &s.get("/api/models").await.body,
            &s.get("/api/realms").await.body,
        );
        assert!(
            !rs.iter().any(|x| x == "synced"),
            "realm key synced while LiteLLM is down: {rs:?}"
        );
        seen.push((ms, rs));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A reconcile while it is down reports LiteLLM unhealthy and changes nothing.
    let st = reconcile(&s).await;
    assert_eq!(st["healthy"], false, "{st}");
    let outage = down_at.elapsed();
    assert!(
        emu.keys()[0].models.len() == 1,
        "LiteLLM unchanged while down"
    );

    emu.set_down(false);
    let synced_after = wait_all_synced(&s, secs(60)).await;
    // LiteLLM matches: both deployments, the key with both models, the budget kept.
    assert_eq!(emu.deployments().len(), 2);
    assert_no_litellm_duplicates(&s);
    let k = &emu.keys()[0];
    let mut models = k.models.clone();
    models.sort();
    let mut want = cfg.allowed_models.clone().unwrap();
    want.sort();
    assert_eq!(models, want);
    assert_eq!(k.max_budget, Some(25.0));
    // The key the agent holds works for both models.
    let key = cfg.api_key.clone().unwrap();
    for mdl in &want {
        assert_eq!(chat(&s, &key, mdl).await, 200, "{mdl}");
    }
    eprintln!(
        "[fault] LiteLLM down {outage:?}: commands completed (201/200), states during the outage {:?} → all synced \
         {synced_after:?} after LiteLLM came back",
        seen.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_wiped_reconcile_restores_same_keys_and_repairs_drift() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let w = world(&s, "Wiped").await;
    let (_edge, agent) = connected_agent(&s, &w).await;
    let pushed = agent.status().current().unwrap().clone();
    let key = pushed.config.as_ref().unwrap().api_key.clone().unwrap();
    let frames = agent.status().frames;
    assert_eq!(chat(&s, &key, &w.model_name).await, 200);
    let before: Vec<_> = emu.deployments().into_iter().map(|d| d.id).collect();

    // LiteLLM loses everything.
    emu.reset();
    assert!(emu.deployments().is_empty() && emu.keys().is_empty());
    assert_eq!(
        chat(&s, &key, &w.model_name).await,
        401,
        "wiped: key unknown"
    );
    let t = Instant::now();
    let st = reconcile(&s).await;
    let took = t.elapsed();
    assert_eq!(st["healthy"], true, "{st}");
    assert_eq!(st["drift"]["missingDeployments"], 1, "{st}");
    assert_eq!(st["drift"]["missingKeys"], 1, "{st}");
    let after: Vec<_> = emu.deployments().into_iter().map(|d| d.id).collect();
    assert_eq!(after, before, "deployments re-created under the same ids");
    assert_eq!(emu.keys().len(), 1);
    assert_eq!(emu.keys()[0].key, key, "the realm key has the same value");
    assert_eq!(emu.keys()[0].max_budget, Some(25.0));
    assert_eq!(emu.keys()[0].models, vec![w.model_name.clone()]);
    // The agent's pushed key works again: no re-push happened.
    assert_eq!(chat(&s, &key, &w.model_name).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.status().frames, frames, "no config was re-pushed");
    assert_eq!(agent.version(), Some(pushed.version));
    wait_all_synced(&s, secs(10)).await;

    // Drift: the key's models changed and the deployment deleted behind our back.
    emu.tamper_key_models(&key, vec!["some-other-model".into()]);
    assert!(emu.delete_deployment_by_id(&w.model));
    assert_eq!(chat(&s, &key, &w.model_name).await, 401);
    let st = reconcile(&s).await;
    assert_eq!(st["drift"]["changedKeys"], 1, "{st}");
    assert_eq!(st["drift"]["missingDeployments"], 1, "{st}");
    assert_eq!(emu.keys()[0].models, vec![w.model_name.clone()]);
    assert_eq!(emu.deployments().len(), 1);
    assert_eq!(chat(&s, &key, &w.model_name).await, 200);
    // A clean LiteLLM: the next reconcile finds nothing.
    let st = reconcile(&s).await;
    let drift = &st["drift"];
    for k in [
        "missingDeployments",
        "changedDeployments",
        "orphanDeployments",
        "missingKeys",
        "changedKeys",
        "orphanKeys",
        "errors",
    ] {
        assert_eq!(drift[k], 0, "{k}: {st}");
    }
    // Orphans we created (vc_managed / vc-realm-*) are deleted; a deployment that is not ours stays.
    let models = s.get("/api/models").await.body;
    assert_eq!(models["models"][0]["litellm"]["state"], "synced");
    eprintln!("[fault] wipe repaired by POST /api/litellm/reconcile in {took:?}; status: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_reconcile_repairs_a_wipe_on_its_own() {
    let s = Stack::builder()
        .litellm(true)
        .reconcile_every(Duration::from_secs(2))
        .start()
        .await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let w = world(&s, "Periodic").await;
    let (_edge, agent) = connected_agent(&s, &w).await;
    let key = agent
        .status()
        .current()
        .unwrap()
        .config
        .clone()
        .unwrap()
        .api_key
        .unwrap();
    let first = vc_tests::wait::eventually("a first periodic reconcile", secs(15), || async {
        let st = s.get("/api/litellm/status").await.body;
        st["lastReconcileAt"].as_str().map(str::to_string)
    })
    .await;
    emu.reset();
    let t = Instant::now();
    vc_tests::wait::eventually("LiteLLM rebuilt without any request", secs(20), || async {
        (emu.keys().len() == 1 && emu.deployments().len() == 1).then_some(())
    })
    .await;
    let took = t.elapsed();
    assert_eq!(emu.keys()[0].key, key);
    assert_eq!(chat(&s, &key, &w.model_name).await, 200);
    // The reconcile that rebuilt LiteLLM records its report when it ends, after its last repair:
    // wait for that report rather than racing it.
    vc_tests::wait::eventually("a later reconcile's report", secs(10), || async {
        let st = s.get("/api/litellm/status").await.body;
        (st["lastReconcileAt"].as_str() != Some(first.as_str())).then_some(())
    })
    .await;
    eprintln!("[fault] periodic reconcile (every 2 s) rebuilt a wiped LiteLLM in {took:?}");
}

/// Grants made while LiteLLM is not configured mint no realm key (there is nowhere to create it), and
/// a budget is refused rather than dropped. Once LiteLLM is configured (workers restarted with it), the
/// reconcile asks for the missing key through the command queue: the realm gets its key, LiteLLM holds
/// it with the realm's models, and the realm's connected agent, which had no config, is pushed one
/// carrying the key, which works for chat; a budget can then be set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_granted_before_litellm_was_configured_gets_its_key() {
    let mut s = Stack::builder()
        .litellm(false)
        .reconcile_every(Duration::from_secs(3600))
        .start()
        .await;
    let m = s
        .post(
            "/api/models",
            json!({"name": "Late", "provider": "openai", "modelId": "gpt-late", "apiKey": "sk-upstream-late"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let r = s.post("/api/realms", json!({"name": "Late realm"})).await;
    let w = World {
        model: m.body["model"]["id"].as_str().unwrap().into(),
        model_name: m.body["model"]["litellmModelName"].as_str().unwrap().into(),
        realm: r.body["realm"]["id"].as_str().unwrap().into(),
    };
    let grant_path = format!("/api/models/{}/realms", w.model);
    let refused = s
        .post(
            &grant_path,
            json!({"realmId": w.realm, "monthlyBudgetUsd": 25}),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("monthlyBudgetUsd")),
        "{}",
        refused.text
    );
    let g = s.post(&grant_path, json!({"realmId": w.realm})).await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert!(
        g.body["routerKey"].is_null(),
        "no key without LiteLLM: {}",
        g.text
    );
    let (key, join) = joined_agent(&s, &w).await;
    assert_eq!(join["llmPushed"], false, "{join}");
    let (_edge, agent) = connect(&s, key).await;
    assert!(
        agent
            .status()
            .current()
            .and_then(|c| c.config.clone())
            .is_none(),
        "no config without LiteLLM"
    );
    // LiteLLM appears; the workers are restarted with it (the API needs nothing).
    s.emu = Some(
        litellm_emu::Emulator::spawn(litellm_emu::EmulatorConfig {
            master_key: "sk-emu-master".into(),
            ..Default::default()
        })
        .await,
    );
    for old in std::mem::take(&mut s.workers) {
        old.stop().await;
    }
    let t = Instant::now();
    let worker = s.spawn_worker().await;
    s.workers.push(worker);
    let emu = s.emu.as_ref().unwrap().emu.clone();
    // The periodic reconcile's first pass (2 s after start) asks for the key.
    vc_tests::assert_eventually!(
        agent
            .status()
            .current()
            .and_then(|c| c.config.clone())
            .and_then(|c| c.api_key)
            .is_some(),
        secs(20)
    );
    let took = t.elapsed();
    let key = agent
        .status()
        .current()
        .unwrap()
        .config
        .clone()
        .unwrap()
        .api_key
        .unwrap();
    vc_tests::wait::eventually("the key in LiteLLM", secs(15), || async {
        (emu.keys().len() == 1 && emu.deployments().len() == 1).then_some(())
    })
    .await;
    assert_eq!(emu.keys()[0].key, key);
    assert_eq!(emu.keys()[0].models, vec![w.model_name.clone()]);
    assert_eq!(chat(&s, &key, &w.model_name).await, 200);
    let st = s.get("/api/litellm/status").await.body;
    assert!(
        st["drift"]["missingKeys"].as_u64() >= Some(1) || st["missingKeys"].as_u64() >= Some(1),
        "{st}"
    );
    // Now a budget can be set, on the same key.
    let b = s
        .post(
            &grant_path,
            json!({"realmId": w.realm, "monthlyBudgetUsd": 25}),
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    vc_tests::wait::eventually("the budget in LiteLLM", secs(15), || async {
        (emu.keys().len() == 1 && emu.keys()[0].max_budget == Some(25.0)).then_some(())
    })
    .await;
    assert_eq!(emu.keys()[0].key, key);
    eprintln!(
        "[fault] a realm granted before LiteLLM was configured: key minted and pushed {took:?} after a worker started with LiteLLM"
    );
}
