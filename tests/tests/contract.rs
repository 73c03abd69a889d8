//! Contract tier: the same sync scenarios against the REAL LiteLLM proxy (`../shared/litellm/real-litellm`,
//! started by `scripts/test`). Skipped, with a message, when `VC_CONTRACT_LITELLM_URL` is not set.

mod edge_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vc_tests::stack::Stack;
use vc_tests::wait::eventually;

struct Real {
    url: String,
    key: String,
    fake_openai: Option<String>,
    http: reqwest::Client,
}

fn real() -> Option<Real> {
    let url = std::env::var("VC_CONTRACT_LITELLM_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        eprintln!("contract tier: SKIPPED (VC_CONTRACT_LITELLM_URL not set; scripts/test sets it when ../shared/litellm/real-litellm exists)");
        return None;
    };
    Some(Real {
        url: url.trim_end_matches('/').to_string(),
        key: std::env::var("VC_CONTRACT_LITELLM_MASTER_KEY")
            .unwrap_or_else(|_| "sk-vc-master".into()),
        fake_openai: std::env::var("VC_CONTRACT_FAKE_OPENAI_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    })
}

impl Real {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn deployments_with_id(&self, id: &str) -> Vec<Value> {
        let (_, b) = self.get("/model/info").await;
        b["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["model_info"]["id"] == id)
            .collect()
    }

    async fn chat(&self, key: &str, model: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/chat/completions", self.url))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix} {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Register → one deployment with model_info.id = registry id; update and a replayed command keep one;
/// delete removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_litellm_model_sync_by_id() {
    let Some(real) = real() else { return };
    let s = Stack::builder()
        .litellm_external(&real.url, &real.key)
        .start()
        .await;
    let base = real
        .fake_openai
        .clone()
        .map(|u| format!("{u}/v1"))
        .unwrap_or_else(|| "http://127.0.0.1:9/v1".into());
    let name = unique("Contract Model");
    let r = s.post("/api/models", json!({"name": name, "provider": "openai-compatible", "modelId": "fake-model", "baseUrl": base, "apiKey": "sk-upstream-contract"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["model"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["model"]["litellm"]["state"], "synced", "{}", r.text);
    assert_eq!(real.deployments_with_id(&id).await.len(), 1);

    let u = s
        .put(
            &format!("/api/models/{id}"),
            json!({"modelId": "fake-model-2"}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    let d = real.deployments_with_id(&id).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["litellm_params"]["model"], "openai/fake-model-2");

    // A replayed command (same Nats-Msg-Id) never adds a second deployment.
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc);
    let body = serde_json::to_vec(
        &json!({"name": unique("Replayed"), "provider": "openai", "modelId": "gpt-x"}),
    )
    .unwrap();
    for _ in 0..3 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "contract-replay-1");
        js.publish_with_headers("vc.cmd.model.register", h, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(
        "replayed command applied",
        Duration::from_secs(30),
        || async {
            let c = s.get("/api/commands/contract-replay-1").await;
            (c.body["status"] == "succeeded")
                .then(|| c.body["result"]["model"]["id"].as_str().map(str::to_string))
                .flatten()
        },
    )
    .await;
    let replay_id = s.get("/api/commands/contract-replay-1").await.body["result"]["model"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The record completes at commit; the LiteLLM sync follows it.
    let model_path = format!("/api/models/{replay_id}");
    eventually("replayed model synced", Duration::from_secs(60), || async {
        (s.get(&model_path).await.body["model"]["litellm"]["state"] == "synced").then_some(())
    })
    .await;
    assert_eq!(real.deployments_with_id(&replay_id).await.len(), 1);

    assert_eq!(s.delete(&format!("/api/models/{id}")).await.status, 204);
    assert!(real.deployments_with_id(&id).await.is_empty());
    assert_eq!(
        s.delete(&format!("/api/models/{replay_id}")).await.status,
        204
    );
}

/// A realm key: generated once with the realm's models and a monthly budget, updated in place on grant
/// and revoke; a revoked model is refused by LiteLLM at once; realm delete deletes the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_litellm_realm_key_lifecycle() {
    let Some(real) = real() else { return };
    let Some(fake) = real.fake_openai.clone() else {
        eprintln!("contract tier: realm scenario SKIPPED (VC_CONTRACT_FAKE_OPENAI_URL not set)");
        return;
    };
    let s = Stack::builder()
        .litellm_external(&real.url, &real.key)
        .start()
        .await;
    let mut ids = Vec::new();
    for n in ["A", "B"] {
        let r = s.post("/api/models", json!({"name": unique(&format!("Realm Model {n}")), "provider": "openai-compatible", "modelId": "fake-model", "baseUrl": format!("{fake}/v1"), "apiKey": "sk-up"})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push((
            r.body["model"]["id"].as_str().unwrap().to_string(),
            r.body["model"]["litellmModelName"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    let realm = s
        .post("/api/realms", json!({"name": unique("Contract Realm")}))
        .await;
    assert_eq!(realm.status, 201, "{}", realm.text);
    let realm_id = realm.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{}/realms", ids[0].0),
            json!({"realmId": realm_id, "monthlyBudgetUsd": 25.0}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(g.body["routerKey"]["hasVirtualKey"], true);
    assert_eq!(
        g.body["routerKey"]["litellm"]["state"], "synced",
        "{}",
        g.text
    );
    let g = s
        .post(
            &format!("/api/models/{}/realms", ids[1].0),
            json!({"realmId": realm_id}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);

    // The key value, as an agent receives it.
    let (_, did) = vc_tests::stack::new_agent();
    assert_eq!(
        s.post("/api/agents", json!({"did": did, "name": "contract agent"}))
            .await
            .status,
        201
    );
    let add = s
        .post(
            &format!("/api/realms/{realm_id}/agents"),
            json!({"agentDid": did, "isPrimary": true}),
        )
        .await;
    assert_eq!(add.body["llmPushed"], true, "{}", add.text);
    let agent = s.store.agent(&did).await.unwrap().unwrap();
    let state = s.store.effective_state(&agent).await.unwrap();
    let cfg = vc_shared::views::open_config(&s.sealer(), &did, &state)
        .unwrap()
        .unwrap();
    let key = cfg.api_key.clone().unwrap();

    let (st, info) = real.get(&format!("/key/info?key={key}")).await;
    assert_eq!(st, 200, "{info}");
    let mut models: Vec<String> = info["info"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    models.sort();
    let mut want = vec![ids[0].1.clone(), ids[1].1.clone()];
    want.sort();
    assert_eq!(models, want);
    assert_eq!(info["info"]["max_budget"], 25.0);
    assert_eq!(info["info"]["budget_duration"], "1mo");

    let (st, body) = real.chat(&key, &ids[0].1).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        s.delete(&format!("/api/models/{}/realms/{realm_id}", ids[0].0))
            .await
            .status,
        204
    );
    let (st, body) = real.chat(&key, &ids[0].1).await;
    assert_eq!(st, 401, "revoked model must be refused: {body}");
    let (st, body) = real.chat(&key, &ids[1].1).await;
    assert_eq!(st, 200, "{body}");

    // Last model revoked: the key must not reach all models.
    assert_eq!(
        s.delete(&format!(
            "/api/models/{}/realms?realmId={realm_id}",
            ids[1].0
        ))
        .await
        .status,
        204
    );
    let (st, body) = real.chat(&key, &ids[1].1).await;
    assert!(
        st == 401 || st == 400 || st == 403,
        "key of an empty realm must reach nothing: {st} {body}"
    );

    assert_eq!(
        s.delete(&format!("/api/realms/{realm_id}")).await.status,
        204
    );
    let (st, _) = real.get(&format!("/key/info?key={key}")).await;
    assert!(st == 404 || st == 400 || st == 401, "deleted key: {st}");
    for (id, _) in ids {
        s.delete(&format!("/api/models/{id}")).await;
    }
}

/// Runs `real-litellm reset` on the proxy under test (its database dropped and recreated, the proxy
/// restarted: LiteLLM has lost every model and key). `None` when the kit's location was not given.
fn reset_real_litellm(real: &Real) -> Option<()> {
    let kit = std::env::var("VC_CONTRACT_LITELLM_KIT")
        .ok()
        .filter(|k| !k.is_empty())?;
    let port = std::env::var("VC_CONTRACT_LITELLM_PORT").ok()?;
    let db = std::env::var("VC_CONTRACT_LITELLM_DB").ok()?;
    let status = std::process::Command::new("bash")
        .arg(&kit)
        .arg("reset")
        .env("LITELLM_PORT", port)
        .env("LITELLM_DB", db)
        .env("LITELLM_MASTER_KEY", &real.key)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run real-litellm reset");
    assert!(status.success(), "real-litellm reset failed: {status}");
    Some(())
}

/// Issue 5 item 5 against the real proxy: LiteLLM wiped (`real-litellm reset`), then
/// `POST /api/litellm/reconcile` re-creates the deployment under the same id and the realm key with the
/// SAME value, models and budget, so the key the agent holds works again without a re-push; then drift
/// (the key's models changed and the deployment deleted behind our back) is repaired the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_litellm_wiped_then_reconciled_keeps_the_same_key() {
    let Some(real) = real() else { return };
    let Some(fake) = real.fake_openai.clone() else {
        eprintln!("contract tier: wipe scenario SKIPPED (VC_CONTRACT_FAKE_OPENAI_URL not set)");
        return;
    };
    if std::env::var("VC_CONTRACT_LITELLM_KIT").map_or(true, |k| k.is_empty()) {
        eprintln!("contract tier: wipe scenario SKIPPED (VC_CONTRACT_LITELLM_KIT not set; scripts/test sets it)");
        return;
    }
    let s = Stack::builder()
        .litellm_external(&real.url, &real.key)
        .start()
        .await;
    let m = s.post("/api/models", json!({"name": unique("Wiped Model"), "provider": "openai-compatible", "modelId": "fake-model", "baseUrl": format!("{fake}/v1"), "apiKey": "sk-up-wipe"})).await;
    assert_eq!(m.status, 201, "{}", m.text);
    let model_id = m.body["model"]["id"].as_str().unwrap().to_string();
    let model_name = m.body["model"]["litellmModelName"]
        .as_str()
        .unwrap()
        .to_string();
    let realm = s
        .post("/api/realms", json!({"name": unique("Wiped Realm")}))
        .await;
    let realm_id = realm.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model_id}/realms"),
            json!({"realmId": realm_id, "monthlyBudgetUsd": 30.0}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let (_, did) = vc_tests::stack::new_agent();
    s.post("/api/agents", json!({"did": did, "name": "wipe agent"}))
        .await;
    let add = s
        .post(
            &format!("/api/realms/{realm_id}/agents"),
            json!({"agentDid": did}),
        )
        .await;
    assert_eq!(add.body["llmPushed"], true, "{}", add.text);
    let agent = s.store.agent(&did).await.unwrap().unwrap();
    let state = s.store.effective_state(&agent).await.unwrap();
    let version = state.version;
    let key = vc_shared::views::open_config(&s.sealer(), &did, &state)
        .unwrap()
        .unwrap()
        .api_key
        .unwrap();
    let (st, body) = real.chat(&key, &model_name).await;
    assert_eq!(st, 200, "{body}");

    // LiteLLM loses everything.
    let t = std::time::Instant::now();
    reset_real_litellm(&real).expect("kit");
    eprintln!("contract tier: real-litellm reset took {:?}", t.elapsed());
    assert!(real.deployments_with_id(&model_id).await.is_empty());
    let (st, _) = real.chat(&key, &model_name).await;
    assert!(st == 401 || st == 400, "the wiped key is refused: {st}");

    let reconcile = |label: &'static str| {
        let s = &s;
        async move {
            let before = s.get("/api/litellm/status").await.body["lastReconcileAt"].clone();
            let r = s.post("/api/litellm/reconcile", json!({})).await;
            assert_eq!(r.status, 202, "{}", r.text);
            eventually(label, Duration::from_secs(120), || async {
                let st = s.get("/api/litellm/status").await.body;
                (!st["lastReconcileAt"].is_null() && st["lastReconcileAt"] != before).then_some(st)
            })
            .await
        }
    };
    let st = reconcile("a reconcile after the wipe").await;
    assert_eq!(st["healthy"], true, "{st}");
    assert!(
        st["drift"]["missingDeployments"].as_u64() >= Some(1),
        "{st}"
    );
    assert!(st["drift"]["missingKeys"].as_u64() >= Some(1), "{st}");
    assert_eq!(real.deployments_with_id(&model_id).await.len(), 1);
    let (code, info) = real.get(&format!("/key/info?key={key}")).await;
    assert_eq!(code, 200, "the same key value exists again: {info}");
    assert_eq!(info["info"]["models"], json!([model_name.clone()]));
    assert_eq!(info["info"]["max_budget"], 30.0);
    eventually(
        "chat with the same key",
        Duration::from_secs(60),
        || async { (real.chat(&key, &model_name).await.0 == 200).then_some(()) },
    )
    .await;
    // No re-push was needed: the agent's config and version did not change.
    let again = s.store.agent(&did).await.unwrap().unwrap();
    let again = s.store.effective_state(&again).await.unwrap();
    assert_eq!(again.version, version, "no new config version");

    // Drift: the key's models replaced and the deployment deleted behind our back.
    let r = real
        .http
        .post(format!("{}/key/update", real.url))
        .bearer_auth(&real.key)
        .json(&json!({"key": key, "models": ["not-ours"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let r = real
        .http
        .post(format!("{}/model/delete", real.url))
        .bearer_auth(&real.key)
        .json(&json!({"id": model_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let st = reconcile("a reconcile after the drift").await;
    assert!(st["drift"]["changedKeys"].as_u64() >= Some(1), "{st}");
    assert!(
        st["drift"]["missingDeployments"].as_u64() >= Some(1),
        "{st}"
    );
    let (_, info) = real.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["models"], json!([model_name.clone()]));
    assert_eq!(real.deployments_with_id(&model_id).await.len(), 1);
    eventually("chat after the repair", Duration::from_secs(60), || async {
        (real.chat(&key, &model_name).await.0 == 200).then_some(())
    })
    .await;
    let realm_view = s.get(&format!("/api/realms/{realm_id}")).await;
    assert_eq!(
        realm_view.body["realm"]["routerKey"]["litellm"]["state"], "synced",
        "{}",
        realm_view.text
    );
    s.delete(&format!("/api/realms/{realm_id}")).await;
    s.delete(&format!("/api/models/{model_id}")).await;
}

/// The LiteLLM key an agent holds.
fn held_key(agent: &vc_agent::AgentHandle) -> Option<String> {
    agent.status().current()?.config.as_ref()?.api_key.clone()
}

/// Issue "Trust" item 1 against the real proxy: removing a member rotates the realm key. The removed
/// member's key gets 401 within the grace period; the remaining member chats before, during and after
/// the rotation without one failed call; the budget is the realm team's, so what the old key spent this
/// month still counts against the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_litellm_key_rotation() {
    let Some(real) = real() else { return };
    let Some(fake) = real.fake_openai.clone() else {
        eprintln!("contract tier: rotation scenario SKIPPED (VC_CONTRACT_FAKE_OPENAI_URL not set)");
        return;
    };
    let grace = Duration::from_secs(10);
    let s = Stack::builder()
        .litellm_external(&real.url, &real.key)
        .key_rotation_grace(grace)
        .start()
        .await;
    // A model LiteLLM has a price for (its cost map), served by the fake upstream: calls cost money.
    let m = s.post("/api/models", json!({"name": unique("Rotation Model"), "provider": "openai-compatible", "modelId": "gpt-4o-mini", "baseUrl": format!("{fake}/v1"), "apiKey": "sk-up-rot"})).await;
    assert_eq!(m.status, 201, "{}", m.text);
    let model_id = m.body["model"]["id"].as_str().unwrap().to_string();
    let model_name = m.body["model"]["litellmModelName"]
        .as_str()
        .unwrap()
        .to_string();
    let realm = s
        .post("/api/realms", json!({"name": unique("Rotation Realm")}))
        .await;
    let realm_id = realm.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model_id}/realms"),
            json!({"realmId": realm_id, "monthlyBudgetUsd": 25.0}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let edge = edge_support::spawn_edge(
        &s.nats_url(),
        &s.redis_url(),
        &s.secret,
        vc_edge::EdgeConfig::new("edge-contract-rotation"),
    )
    .await;
    let mut members = Vec::new();
    for name in ["stays", "leaves"] {
        let (key, did) = vc_tests::stack::new_agent();
        let r = s
            .post("/api/agents", json!({"did": did, "name": name}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let add = s
            .post(
                &format!("/api/realms/{realm_id}/agents"),
                json!({"agentDid": did}),
            )
            .await;
        assert_eq!(add.body["llmPushed"], true, "{}", add.text);
        let agent = edge_support::spawn_agent(&key, edge_support::agent_opts(&[&edge]));
        eventually("the member's config", Duration::from_secs(15), || async {
            held_key(&agent).map(|_| ())
        })
        .await;
        members.push((agent, did));
    }
    let (leaves, leaver) = members.pop().unwrap();
    let (stays, _) = members.pop().unwrap();
    let old = held_key(&stays).unwrap();
    assert_eq!(held_key(&leaves).as_deref(), Some(old.as_str()));
    let team = format!("vc-realm-{realm_id}");
    let (st, info) = real.get(&format!("/key/info?key={old}")).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["info"]["team_id"], team.as_str(), "{info}");

    // The remaining member chats throughout: before, during and after the rotation.
    let stays = Arc::new(stays);
    let stop = Arc::new(AtomicBool::new(false));
    let chatting = {
        let (stays, stop, http) = (stays.clone(), stop.clone(), real.http.clone());
        let (url, model) = (format!("{}/chat/completions", real.url), model_name.clone());
        tokio::spawn(async move {
            let (mut calls, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let key = held_key(&stays).unwrap_or_default();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                calls += 1;
                match r {
                    Ok(r) if r.status().as_u16() == 200 => {}
                    Ok(r) => failures.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failures.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (calls, failures)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let r = s
        .delete(&format!("/api/realms/{realm_id}/agents/{leaver}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually(
        "the new key at the remaining member",
        Duration::from_secs(30),
        || async { held_key(&stays).filter(|k| k != &old).map(|_| ()) },
    )
    .await;
    let pushed = t0.elapsed();
    eventually(
        "the removed member's key refused",
        grace + Duration::from_secs(10),
        || async { (real.chat(&old, &model_name).await.0 == 401).then_some(()) },
    )
    .await;
    let revoked = t0.elapsed();
    assert!(
        revoked < grace + Duration::from_secs(5),
        "401 after {revoked:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (calls, failures) = chatting.await.unwrap();
    assert!(
        failures.is_empty(),
        "the remaining member's failed calls: {failures:?}"
    );
    assert!(calls >= 20, "{calls} calls");
    let new = held_key(&stays).unwrap();
    let (st, info) = real.get(&format!("/key/info?key={new}")).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["info"]["team_id"], team.as_str(), "{info}");
    assert_eq!(info["info"]["max_budget"], 25.0);

    // The team's spend holds the old key's calls (LiteLLM writes spend in batches: wait until the team
    // has more than the new key alone).
    let (team_spend, new_spend) = eventually("spend recorded", Duration::from_secs(90), || async {
        let (_, t) = real.get(&format!("/team/info?team_id={team}")).await;
        let (_, k) = real.get(&format!("/key/info?key={new}")).await;
        let team_spend = t["team_info"]["spend"].as_f64().unwrap_or(0.0);
        let new_spend = k["info"]["spend"].as_f64().unwrap_or(0.0);
        (new_spend > 0.0 && team_spend > 2.0 * new_spend).then_some((team_spend, new_spend))
    })
    .await;
    // A budget between what the new key spent and what the realm spent this month: the new key is
    // refused, because the month's spend made with the old key counts.
    let budget = (team_spend + new_spend) / 2.0;
    let g = s
        .post(
            &format!("/api/models/{model_id}/realms"),
            json!({"realmId": realm_id, "monthlyBudgetUsd": budget}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let (st, body) = real.chat(&new, &model_name).await;
    assert_eq!(st, 400, "over the realm's budget: {body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    let rk = s.get(&format!("/api/realms/{realm_id}")).await.body["realm"]["routerKey"].clone();
    assert_eq!(rk["rotation"]["rotations"], 1, "{rk}");
    eprintln!(
        "contract tier: rotation on member removal: new key pushed after {pushed:?}, removed member's key \
         401 after {revoked:?} (grace {grace:?}); {calls} calls of the remaining member, none failed; \
         team spend {team_spend:.7} USD vs new key {new_spend:.7} USD, budget {budget:.7} refuses the new key"
    );
    s.delete(&format!("/api/realms/{realm_id}")).await;
    let (st, _) = real.get(&format!("/team/info?team_id={team}")).await;
    assert_eq!(st, 404, "the realm's team is deleted with it");
    s.delete(&format!("/api/models/{model_id}")).await;
}

/// Issue "Spend, limits and budget alerts" against the real proxy: a realm's `rpmLimit: 2` makes the
/// third chat in a minute a 429; a model with its own price and a realm with a small budget: the spend
/// reads back from LiteLLM, the 50 %, 80 % and 100 % thresholds are recorded, and the budget then blocks
/// further calls (LiteLLM's own check and the control plane's guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_litellm_spend_limits() {
    let Some(real) = real() else { return };
    let Some(fake) = real.fake_openai.clone() else {
        eprintln!("contract tier: spend scenario SKIPPED (VC_CONTRACT_FAKE_OPENAI_URL not set)");
        return;
    };
    let s = Stack::builder()
        .litellm_external(&real.url, &real.key)
        .budget(vc_worker::BudgetSettings {
            spend_every: Duration::ZERO,
            thresholds: vec![0.5, 0.8, 1.0],
            webhooks: None,
        })
        .start()
        .await;
    // 0.001 USD per token: a chat with the fake upstream (10 prompt + 5 completion tokens) costs 0.015.
    let m = s
        .post(
            "/api/models",
            json!({"name": unique("Priced Model"), "provider": "openai-compatible",
        "modelId": "fake-priced", "baseUrl": format!("{fake}/v1"), "apiKey": "sk-up-price",
        "inputCostPerToken": 0.001, "outputCostPerToken": 0.001}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let model_id = m.body["model"]["id"].as_str().unwrap().to_string();
    let model = m.body["model"]["litellmModelName"]
        .as_str()
        .unwrap()
        .to_string();
    let realm = s
        .post("/api/realms", json!({"name": unique("Spend Realm")}))
        .await;
    let realm_id = realm.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model_id}/realms"),
            json!({"realmId": realm_id, "monthlyBudgetUsd": 0.05}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let stored = s.store.realm(&realm_id).await.unwrap().unwrap();
    let key = s
        .sealer()
        .open(
            vc_shared::crypto::Purpose::RealmKey,
            &realm_id,
            &stored.key.unwrap().key_sealed,
        )
        .unwrap();

    // The rate limit: the third call in the minute is refused.
    let r = s
        .patch(&format!("/api/realms/{realm_id}"), json!({"rpmLimit": 2}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["realm"]["routerKey"]["limits"]["rpmLimit"], 2);
    let (st, info) = real.get(&format!("/key/info?key={key}")).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["info"]["rpm_limit"], 2, "{info}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(real.chat(&key, &model).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 429], "rpmLimit 2");
    let r = s
        .patch(
            &format!("/api/realms/{realm_id}"),
            json!({"rpmLimit": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Spend: 2 calls (0.03 USD of 0.05) → 50 %; one more (0.045) → 80 %; one more (0.06) → 100 %.
    let refresh_until = |label: &'static str, at_least: f64| {
        let (s, realm_id) = (&s, realm_id.clone());
        async move {
            eventually(label, Duration::from_secs(90), || async {
                let r = s
                    .post(&format!("/api/realms/{realm_id}/spend/refresh"), json!({}))
                    .await;
                let spend = r.body["spend"]["spendUsd"].as_f64().unwrap_or(0.0);
                (spend >= at_least - 1e-9).then(|| r.body["spend"].clone())
            })
            .await
        }
    };
    let sp = refresh_until("0.03 USD spent", 0.03).await;
    assert_eq!(sp["budgetUsd"], 0.05, "{sp}");
    assert!(sp["periodResetAt"].is_string(), "{sp}");
    assert_eq!(real.chat(&key, &model).await.0, 200);
    refresh_until("0.045 USD spent", 0.045).await;
    assert_eq!(real.chat(&key, &model).await.0, 200);
    let sp = refresh_until("0.06 USD spent", 0.06).await;
    assert_eq!(sp["remainingUsd"], 0.0, "{sp}");
    let crossed = eventually(
        "the three thresholds recorded",
        Duration::from_secs(30),
        || async {
            let sp = s.get(&format!("/api/realms/{realm_id}/spend")).await.body;
            (sp["thresholdsCrossed"] == json!([0.5, 0.8, 1.0]) && sp["guard"].is_object())
                .then_some(sp)
        },
    )
    .await;
    let audit = s.get("/api/audit?limit=1000").await.body;
    let fractions: Vec<f64> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["kind"] == "realm.budget.threshold" && e["subject"] == format!("realm:{realm_id}")
        })
        .map(|e| e["details"]["fraction"].as_f64().unwrap())
        .collect();
    assert_eq!(fractions, vec![0.5, 0.8, 1.0], "one event per threshold");
    // The budget blocks further calls: LiteLLM's own check, and the key blocked by the guard.
    eventually(
        "the key blocked in LiteLLM",
        Duration::from_secs(30),
        || async {
            let (_, info) = real.get(&format!("/key/info?key={key}")).await;
            (info["info"]["blocked"] == true).then_some(())
        },
    )
    .await;
    let (st, body) = real.chat(&key, &model).await;
    assert!(
        st == 400 || st == 401,
        "a call over the budget: {st} {body}"
    );
    eprintln!(
        "contract tier: rpmLimit 2 → {statuses:?}; spend {} USD of 0.05, thresholds {:?}, guard {}; the next call {st}",
        crossed["spendUsd"], crossed["thresholdsCrossed"], crossed["guard"]["reason"]
    );
    s.delete(&format!("/api/realms/{realm_id}")).await;
    s.delete(&format!("/api/models/{model_id}")).await;
}
