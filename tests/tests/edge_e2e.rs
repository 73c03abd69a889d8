//! End to end through the real services: REST → vc-api → NATS → vc-worker → Redis/NATS → two edges →
//! agents (vc-agent library), and back (acks and presence visible in the API).

mod edge_support;

use std::time::Duration;

use edge_support::*;
use serde_json::json;
use vc_edge::EdgeConfig;
use vc_shared::ws::close;
use vc_tests::assert_eventually;
use vc_tests::stack::Stack;

/// Agents on two edges: joining a realm with a key auto-configures them (realm routing, virtual key),
/// a second grant re-pushes the realm's agents (new version, same key), a manual config reaches one agent; every
/// version is acknowledged and `GET /api/agents` shows `ackedVersion`, `online`, `edgeId` and the
/// heartbeat's `activeLlm`; deleting an agent closes its session with 4403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_to_agents_through_two_edges() {
    let s = Stack::builder().litellm(true).start().await;
    let mut cfg = EdgeConfig::new("edge-e1");
    cfg.heartbeat_interval = Duration::from_millis(300);
    let e1 = spawn_edge(&s.nats.url(), &s.redis.url(), &s.secret, cfg).await;
    let mut cfg = EdgeConfig::new("edge-e2");
    cfg.heartbeat_interval = Duration::from_millis(300);
    let e2 = spawn_edge(&s.nats.url(), &s.redis.url(), &s.secret, cfg).await;

    let ks = keys(6);
    for (_, did) in &ks {
        let r = s
            .post("/api/agents", json!({"did": did, "name": "agent"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Spread: even agents start with e1, odd ones with e2.
    let agents: Vec<_> = ks
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let mut o = agent_opts(&[&e1, &e2]);
            o.first_edge = i;
            spawn_agent(k, o)
        })
        .collect();
    // Registered, no config yet: each gets `config: null` at once.
    assert_eventually!(agents.iter().all(|a| a
        .status()
        .configs
        .front()
        .is_some_and(|c| c.config.is_none())));

    let m1 = s
        .post(
            "/api/models",
            json!({"name": "Alpha", "provider": "openai", "modelId": "alpha", "apiKey": "sk-up"}),
        )
        .await;
    assert_eq!(m1.status, 201, "{}", m1.text);
    let m1 = m1.body["model"]["id"].as_str().unwrap().to_string();
    let m2 = s
        .post(
            "/api/models",
            json!({"name": "Beta", "provider": "openai", "modelId": "beta", "apiKey": "sk-up"}),
        )
        .await;
    let m2 = m2.body["model"]["id"].as_str().unwrap().to_string();
    let r = s.post("/api/realms", json!({"name": "eng"})).await;
    let realm = r.body["realm"]["id"].as_str().unwrap().to_string();
    // First grant: key minted. Then the members join: each has no config, so each is auto-configured
    // through the realm.
    let g = s
        .post(
            &format!("/api/models/{m1}/realms"),
            json!({"realmId": realm}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    for (_, did) in &ks[..4] {
        let j = s
            .post(
                &format!("/api/realms/{realm}/agents"),
                json!({"agentDid": did}),
            )
            .await;
        assert_eq!(j.status, 200, "{}", j.text);
        assert_eq!(j.body["llmPushed"], true);
    }
    let in_realm = |a: &vc_agent::AgentHandle| {
        a.status()
            .current()
            .is_some_and(|c| c.realm_id.as_deref() == Some(realm.as_str()) && c.config.is_some())
    };
    assert_eventually!(agents[..4].iter().all(in_realm), Duration::from_secs(15));
    let first = agents[0].status().current().cloned().unwrap();
    let key = first
        .config
        .as_ref()
        .unwrap()
        .api_key
        .clone()
        .expect("realm key delivered to the agent");
    assert!(key.starts_with("sk-"));
    assert_eq!(
        first
            .config
            .as_ref()
            .unwrap()
            .allowed_models
            .as_ref()
            .unwrap()
            .len(),
        1
    );
    // Second grant: same key, new allowed list, new version for every member.
    let v1: Vec<u64> = agents[..4].iter().map(|a| a.version().unwrap()).collect();
    let g = s
        .post(
            &format!("/api/models/{m2}/realms"),
            json!({"realmId": realm}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eventually!(
        agents[..4]
            .iter()
            .zip(&v1)
            .all(|(a, v)| a.version().unwrap() > *v
                && a.status()
                    .current()
                    .unwrap()
                    .config
                    .as_ref()
                    .unwrap()
                    .allowed_models
                    .as_ref()
                    .unwrap()
                    .len()
                    == 2),
        Duration::from_secs(15)
    );
    assert_eq!(
        agents[0]
            .status()
            .current()
            .unwrap()
            .config
            .as_ref()
            .unwrap()
            .api_key
            .as_deref(),
        Some(key.as_str())
    );
    // Non-members got nothing beyond their initial null.
    for a in &agents[4..] {
        assert_eq!(a.status().configs.len(), 1);
    }
    // Manual config for a non-member.
    let (_, lone) = &ks[5];
    let put = s
        .put(
            &format!("/api/agents/{lone}/llm-config"),
            json!({"provider": "openai", "model": "gpt-4o", "apiKey": "sk-manual"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eventually!(agents[5]
        .status()
        .current()
        .and_then(|c| c.config.clone())
        .is_some_and(|c| c.api_key.as_deref() == Some("sk-manual")));

    // Acks, presence and activeLlm through the API.
    let check = || async {
        let list = s.get("/api/agents").await;
        let list = list.body["agents"].as_array().cloned().unwrap_or_default();
        list.iter().all(|a| {
            a["online"] == true
                && a["ackedVersion"] == a["configVersion"]
                && (a["edgeId"] == "edge-e1" || a["edgeId"] == "edge-e2")
                && a["lastSeen"].is_string()
        }) && list.len() == 6
    };
    assert_eventually!(
        check().await,
        Duration::from_secs(15),
        "every agent online with ackedVersion == configVersion"
    );
    let one = s.get(&format!("/api/agents/{lone}")).await;
    assert_eventually!(
        s.get(&format!("/api/agents/{lone}")).await.body["agent"]["activeLlm"]
            == json!({"provider": "openai", "model": "gpt-4o"}),
        Duration::from_secs(5)
    );
    let edge_of_lone = one.body["agent"]["edgeId"].as_str().unwrap().to_string();
    assert_eq!(Some(edge_of_lone.clone()), agents[5].status().edge_id);
    let cfg = s.get(&format!("/api/agents/{lone}/llm-config")).await;
    assert_eq!(cfg.body["ackedVersion"], cfg.body["version"]);

    // Delete: the live session closes 4403 (whichever edge holds it).
    let d = s.delete(&format!("/api/agents/{lone}")).await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert_eventually!(
        agents[5].status().close_codes.front() == Some(&close::NOT_REGISTERED),
        Duration::from_secs(10)
    );
    let holder = if edge_of_lone == "edge-e1" { &e1 } else { &e2 };
    assert_eventually!(!holder.probe.dids().contains(lone));
    for a in agents {
        a.abort();
    }
}
