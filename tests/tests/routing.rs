//! Configs derived from routing states, end to end (REST → worker → edge → agent): registry agents
//! follow their model through one model push, a revoked choice falls back and comes back when
//! granted again, a deleted realm gives its agents `config: null` and leaves no membership behind,
//! its id is never used again, and its former agents are configured by the next realm they join.

mod edge_support;

use std::time::Duration;

use edge_support::*;
use futures::StreamExt;
use serde_json::{json, Value};
use vc_edge::EdgeConfig;
use vc_tests::assert_eventually;
use vc_tests::stack::Stack;

async fn created(s: &Stack, path: &str, body: Value, at: &str) -> String {
    let r = s.post(path, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
        .pointer(at)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{at} in {}", r.text))
        .to_string()
}

async fn ok(r: vc_tests::stack::Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_follow_realm_and_model_routing_states() {
    let s = Stack::builder().litellm(true).start().await;
    let e1 = spawn_edge(
        &s.nats.url(),
        &s.redis.url(),
        &s.secret,
        EdgeConfig::new("edge-r1"),
    )
    .await;
    let e2 = spawn_edge(
        &s.nats.url(),
        &s.redis.url(),
        &s.secret,
        EdgeConfig::new("edge-r2"),
    )
    .await;
    let alpha = created(
        &s,
        "/api/models",
        json!({"name": "Alpha", "provider": "openai", "modelId": "alpha", "apiKey": "sk-alpha"}),
        "/model/id",
    )
    .await;
    let beta = created(
        &s,
        "/api/models",
        json!({"name": "Beta", "provider": "openai", "modelId": "beta", "apiKey": "sk-beta"}),
        "/model/id",
    )
    .await;
    let realm = created(&s, "/api/realms", json!({"name": "Eng"}), "/realm/id").await;
    for m in [&alpha, &beta] {
        ok(
            s.post(
                &format!("/api/models/{m}/realms"),
                json!({"realmId": realm}),
            )
            .await,
            200,
        )
        .await;
    }
    let ks = keys(3);
    for (_, did) in &ks {
        created(
            &s,
            "/api/agents",
            json!({"did": did, "name": "agent"}),
            "/agent/did",
        )
        .await;
    }
    let (a, b, c) = (&ks[0].1, &ks[1].1, &ks[2].1);
    // a and b routed through the realm (b chooses Beta); c in registry mode on Alpha.
    for did in [a, b] {
        ok(
            s.post(
                &format!("/api/realms/{realm}/agents"),
                json!({"agentDid": did}),
            )
            .await,
            200,
        )
        .await;
    }
    ok(
        s.put(
            &format!("/api/agents/{b}/llm-config"),
            json!({"realmId": realm, "realmModelId": beta}),
        )
        .await,
        200,
    )
    .await;
    ok(
        s.put(
            &format!("/api/agents/{c}/llm-config"),
            json!({"registryModelId": alpha}),
        )
        .await,
        200,
    )
    .await;
    let agents: Vec<_> = ks
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let mut o = agent_opts(&[&e1, &e2]);
            o.first_edge = i % 2;
            spawn_agent(k, o)
        })
        .collect();
    let model_of = |i: usize| {
        agents[i]
            .status()
            .current()
            .and_then(|c| c.config.as_ref().map(|c| c.model.clone()))
    };
    assert_eventually!(model_of(0) == Some("openai/alpha".into()));
    assert_eventually!(model_of(1) == Some("openai/beta".into()));
    assert_eventually!(model_of(2) == Some("alpha".into()));
    let key_c = agents[2]
        .status()
        .current()
        .unwrap()
        .config
        .clone()
        .unwrap();
    assert_eq!(key_c.api_key.as_deref(), Some("sk-alpha"));

    // A model update reaches its registry agent through the model's routing state.
    let c_before = agents[2].version().unwrap();
    ok(
        s.put(
            &format!("/api/models/{alpha}"),
            json!({"modelId": "alpha-2", "apiKey": "sk-alpha-2"}),
        )
        .await,
        200,
    )
    .await;
    assert_eventually!(model_of(2) == Some("alpha-2".into()));
    let c_now = agents[2].status().current().unwrap().clone();
    assert!(c_now.version > c_before);
    assert_eq!(c_now.config.unwrap().api_key.as_deref(), Some("sk-alpha-2"));

    // Revoking b's choice: b falls back to the first active model; granting it again brings b
    // back to its own choice (the choice is the agent's; the fallback is derived).
    ok(
        s.delete(&format!("/api/models/{beta}/realms/{realm}"))
            .await,
        204,
    )
    .await;
    assert_eventually!(model_of(1) == Some("openai/alpha".into()));
    let cfg = ok(s.get(&format!("/api/agents/{b}/llm-config")).await, 200).await;
    assert_eq!(cfg["config"]["model"], "openai/alpha");
    assert_eq!(cfg["config"]["allowedModels"], json!(["openai/alpha"]));
    ok(
        s.post(
            &format!("/api/models/{beta}/realms"),
            json!({"realmId": realm}),
        )
        .await,
        200,
    )
    .await;
    assert_eventually!(model_of(1) == Some("openai/beta".into()));
    // Every agent acknowledged what it holds; the API shows the same version.
    for (i, (_, did)) in ks.iter().enumerate() {
        let held = agents[i].version().unwrap();
        assert_eventually!(
            s.get(&format!("/api/agents/{did}")).await.body["agent"]["ackedVersion"] == json!(held)
        );
        let cfg = s.get(&format!("/api/agents/{did}/llm-config")).await.body;
        assert_eq!(cfg["version"], json!(held), "{did}: {cfg}");
    }

    // Realm delete: its agents get null, the membership is gone from their views.
    let a_before = agents[0].version().unwrap();
    ok(s.delete(&format!("/api/realms/{realm}")).await, 204).await;
    assert_eventually!(agents[0]
        .status()
        .current()
        .is_some_and(|c| c.config.is_none() && c.version > a_before));
    assert_eventually!(agents[1]
        .status()
        .current()
        .is_some_and(|c| c.config.is_none()));
    let view = ok(s.get(&format!("/api/agents/{a}")).await, 200).await;
    assert_eq!(view["agent"]["realms"], json!([]), "{view}");
    let cfg = ok(s.get(&format!("/api/agents/{a}/llm-config")).await, 200).await;
    assert_eq!(
        (cfg["config"].clone(), cfg["mode"].clone()),
        (Value::Null, Value::Null)
    );

    // The id of a deleted realm is never used again (a NATS client may choose ids).
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut replies = nc.subscribe("_INBOX.test.routing.>").await.unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "routing-reuse-1");
    h.insert("Vc-Reply-To", "_INBOX.test.routing.1");
    js.publish_with_headers(
        "vc.cmd.realm.create",
        h,
        serde_json::to_vec(&json!({"id": realm, "name": "Eng again"}))
            .unwrap()
            .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .expect("an outcome")
        .unwrap();
    let o: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(o["status"], "failed", "{o}");
    assert_eq!(o["error"]["code"], "CONFLICT", "{o}");
    assert!(
        o["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted realm"),
        "{o}"
    );

    // Its former agents count as unconfigured: the next realm they join configures them.
    let ops = created(&s, "/api/realms", json!({"name": "Ops"}), "/realm/id").await;
    ok(
        s.post(
            &format!("/api/models/{alpha}/realms"),
            json!({"realmId": ops}),
        )
        .await,
        200,
    )
    .await;
    let join = ok(
        s.post(
            &format!("/api/realms/{ops}/agents"),
            json!({"agentDid": a, "isPrimary": true}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(join["llmPushed"], true);
    assert_eventually!(agents[0]
        .status()
        .current()
        .is_some_and(|c| c.realm_id.as_deref() == Some(ops.as_str()) && c.config.is_some()));
    let view = ok(s.get(&format!("/api/agents/{a}")).await, 200).await;
    assert_eq!(
        view["agent"]["realms"].as_array().unwrap().len(),
        1,
        "{view}"
    );

    // Deleting the model: its registry agent gets null.
    ok(s.delete(&format!("/api/models/{alpha}")).await, 204).await;
    assert_eventually!(agents[2]
        .status()
        .current()
        .is_some_and(|c| c.config.is_none()));
    assert_eventually!(agents[0]
        .status()
        .current()
        .is_some_and(|c| c.config.is_none() && c.realm_id.as_deref() == Some(ops.as_str())));
}
