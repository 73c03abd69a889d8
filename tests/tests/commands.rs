//! Command-level guarantees: every kind replayed after its JetStream dedupe window is never applied
//! twice; LiteLLM outages during grants; realm updates; a wrong secret key; DID re-registration.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use vc_shared::crypto::Purpose;
use vc_tests::stack::{new_agent, Stack};
use vc_tests::wait::eventually;

async fn snapshot(s: &Stack) -> Value {
    let emu = &s.emu.as_ref().unwrap().emu;
    let mut deps: Vec<Value> = emu
        .deployments()
        .into_iter()
        .map(|d| json!([d.id, d.model_name, d.litellm_params.get("model")]))
        .collect();
    deps.sort_by_key(|v| v.to_string());
    let mut keys: Vec<Value> = emu
        .keys()
        .into_iter()
        .map(|k| json!([k.key_alias, k.models, k.max_budget, k.blocked]))
        .collect();
    keys.sort_by_key(|v| v.to_string());
    let agents = s.get("/api/agents").await.body;
    let mut configs = Vec::new();
    for a in agents["agents"].as_array().unwrap() {
        configs.push(
            s.get(&format!(
                "/api/agents/{}/llm-config",
                a["did"].as_str().unwrap()
            ))
            .await
            .body,
        );
    }
    let mut models = s.get("/api/models").await.body;
    // A re-emitted sync re-verifies LiteLLM and refreshes `syncedAt`; everything else must be equal.
    for m in models["models"].as_array_mut().unwrap() {
        m["litellm"]["syncedAt"] = Value::Null;
    }
    json!({
        "models": models,
        "realms": s.get("/api/realms").await.body,
        "agents": agents,
        "configs": configs,
        "audit": s.get("/api/audit?limit=1000").await.body["events"].as_array().unwrap().len(),
        "deployments": deps,
        "keys": keys,
    })
}

/// Every command kind, published on NATS, then replayed with the same ids once JetStream's duplicate
/// window has passed (so the worker itself must recognise them): nothing changes, outcomes are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_replayed_is_applied_once() {
    let s = Stack::builder().litellm(true).start().await;
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let (_, did) = new_agent();
    let (_, did2) = new_agent();
    let mid = "replay-model-1";
    let rid = "replay-realm-1";
    let seq: Vec<(&str, Value)> = vec![
        (
            "model.register",
            json!({"id": mid, "name": "Replay Model", "provider": "openai", "modelId": "rm", "apiKey": "sk-r"}),
        ),
        (
            "model.register",
            json!({"id": "replay-model-2", "name": "Replay Two", "provider": "anthropic", "modelId": "r2"}),
        ),
        ("model.update", json!({"id": mid, "modelId": "rm-2"})),
        ("realm.create", json!({"id": rid, "name": "Replay Realm"})),
        ("realm.update", json!({"realmId": rid, "description": "d"})),
        (
            "realm.grant",
            json!({"modelId": mid, "realmId": rid, "monthlyBudgetUsd": 5}),
        ),
        (
            "realm.grant",
            json!({"modelId": "replay-model-2", "realmId": rid}),
        ),
        ("agent.register", json!({"did": did, "name": "a1"})),
        ("agent.register", json!({"did": did2, "name": "a2"})),
        (
            "realm.agent.add",
            json!({"realmId": rid, "agentDid": did, "isPrimary": true}),
        ),
        ("realm.agent.add", json!({"realmId": rid, "agentDid": did2})),
        (
            "agent.llm_config.set",
            json!({"did": did2, "provider": "openai", "model": "gpt", "apiKey": "sk-m"}),
        ),
        ("agent.llm_config.clear", json!({"did": did2})),
        (
            "realm.revoke",
            json!({"modelId": "replay-model-2", "realmId": rid}),
        ),
        (
            "realm.agent.remove",
            json!({"realmId": rid, "agentDid": did2}),
        ),
        ("agent.delete", json!({"did": did2})),
        ("model.delete", json!({"id": "replay-model-2"})),
        ("realm.delete", json!({"realmId": rid})),
    ];
    let mut replies = nc.subscribe("_INBOX.test.replay.>").await.unwrap();
    let mut first = Vec::new();
    for (i, (kind, body)) in seq.iter().enumerate() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("replay-{i}").as_str());
        h.insert("Vc-Reply-To", format!("_INBOX.test.replay.{i}").as_str());
        js.publish_with_headers(
            format!("vc.cmd.{kind}"),
            h,
            serde_json::to_vec(body).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(20), replies.next())
            .await
            .unwrap()
            .unwrap();
        let mut o: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(o["status"], "succeeded", "{kind}: {o}");
        // `change` (the commit's change-log number) comes only with an answer sent right after the
        // commit (not after a LiteLLM sync, not on a replay): it says where that commit is, not what
        // the command did.
        o.as_object_mut().unwrap().remove("change");
        first.push(o);
    }
    let before = snapshot(&s).await;

    // Shrink the stream's duplicate window so the same Nats-Msg-Ids are accepted again.
    let mut stream = js.get_stream("VC_CMD").await.unwrap();
    let mut cfg = stream.info().await.unwrap().config.clone();
    cfg.duplicate_window = Duration::from_millis(100);
    js.update_stream(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, (kind, body)) in seq.iter().enumerate() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("replay-{i}").as_str());
        h.insert("Vc-Reply-To", format!("_INBOX.test.replay.{i}").as_str());
        let ack = js
            .publish_with_headers(
                format!("vc.cmd.{kind}"),
                h,
                serde_json::to_vec(body).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate, "the replay must reach the worker");
        let m = tokio::time::timeout(Duration::from_secs(20), replies.next())
            .await
            .unwrap()
            .unwrap();
        let o: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(o, first[i], "{kind}: the replay answers the first outcome");
    }
    let after = snapshot(&s).await;
    assert_eq!(before, after, "a replay changes nothing");
}

/// LiteLLM down during grants: the grant succeeds with the key in `error`/`pending`, agents are
/// configured, and the key is created with the right models once LiteLLM is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_during_litellm_outage_complete_later() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let m = s
        .post(
            "/api/models",
            json!({"name": "Outage", "provider": "openai", "modelId": "o"}),
        )
        .await;
    let mid = m.body["model"]["id"].as_str().unwrap().to_string();
    let name = m.body["model"]["litellmModelName"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post("/api/realms", json!({"name": "Outage Realm"})).await;
    let rid = r.body["realm"]["id"].as_str().unwrap().to_string();
    emu.set_down(true);
    let g = s
        .post(
            &format!("/api/models/{mid}/realms"),
            json!({"realmId": rid, "monthlyBudgetUsd": 7}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let state = g.body["routerKey"]["litellm"]["state"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(state == "error" || state == "pending", "{state}");
    let (_, did) = new_agent();
    s.post("/api/agents", json!({"did": did, "name": "o"}))
        .await;
    let j = s
        .post(
            &format!("/api/realms/{rid}/agents"),
            json!({"agentDid": did}),
        )
        .await;
    assert_eq!(j.body["llmPushed"], true);
    assert!(emu.keys().is_empty());
    emu.set_down(false);
    let path = format!("/api/realms/{rid}");
    eventually(
        "realm key synced after the outage",
        Duration::from_secs(30),
        || async {
            (s.get(&path).await.body["realm"]["routerKey"]["litellm"]["state"] == "synced")
                .then_some(())
        },
    )
    .await;
    let keys = emu.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].models, vec![name]);
    assert_eq!(keys[0].max_budget, Some(7.0));
}

/// PATCH a realm: fields, slug clash, 404; a rename reaches the key's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_update_rules() {
    let s = Stack::builder().litellm(true).start().await;
    let a = s
        .post(
            "/api/realms",
            json!({"name": "Alpha Team", "color": "#ff0000"}),
        )
        .await;
    assert_eq!(a.body["realm"]["slug"], "alpha-team");
    let aid = a.body["realm"]["id"].as_str().unwrap().to_string();
    s.post("/api/realms", json!({"name": "Beta", "slug": "beta"}))
        .await;
    assert_eq!(
        s.post("/api/realms", json!({"name": "x", "color": "red"}))
            .await
            .status,
        400
    );
    let clash = s
        .patch(&format!("/api/realms/{aid}"), json!({"slug": "Beta"}))
        .await;
    assert_eq!(clash.status, 409, "{}", clash.text);
    assert_eq!(
        s.patch("/api/realms/nope", json!({"name": "x"}))
            .await
            .status,
        404
    );
    let m = s
        .post(
            "/api/models",
            json!({"name": "M", "provider": "openai", "modelId": "m"}),
        )
        .await;
    let mid = m.body["model"]["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/models/{mid}/realms"),
        json!({"realmId": aid}),
    )
    .await;
    let p = s.patch(&format!("/api/realms/{aid}"), json!({"name": "Alpha Renamed", "slug": "alpha-2", "description": "team", "color": "#00ff00"})).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["realm"]["name"], "Alpha Renamed");
    assert_eq!(p.body["realm"]["slug"], "alpha-2");
    assert_eq!(p.body["realm"]["color"], "#00ff00");
    assert_eq!(p.body["realm"]["modelCount"], 1);
    // The old slug is free again.
    assert_eq!(
        s.post("/api/realms", json!({"name": "alpha team"}))
            .await
            .status,
        201
    );
    let emu = &s.emu.as_ref().unwrap().emu;
    eventually("key metadata renamed", Duration::from_secs(10), || async {
        (emu.keys()
            .first()
            .map(|k| k.metadata["vc_realm_name"].clone())
            == Some(json!("Alpha Renamed")))
        .then_some(())
    })
    .await;
    let cleared = s
        .patch(&format!("/api/realms/{aid}"), json!({"description": null}))
        .await;
    assert_eq!(cleared.body["realm"]["description"], Value::Null);
}

/// A worker with a different VC_SECRET_KEY refuses to start instead of failing commands one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_key_is_refused_at_start() {
    let s = Stack::builder().start().await;
    // The stack's own worker writes the canary when it starts (its task may not have run yet): wait
    // for it, or the wrong-key worker below would find no canary, write its own and run on.
    vc_tests::wait::eventually(
        "the stack's worker wrote the secret-key canary",
        Duration::from_secs(20),
        || async {
            let mut c = s.store.conn();
            let n: u64 = redis::cmd("EXISTS")
                .arg(vc_shared::store::keys::SECRET_CHECK)
                .query_async(&mut c)
                .await
                .unwrap_or(0);
            (n == 1).then_some(())
        },
    )
    .await;
    let deps = vc_worker::Deps {
        nats: s.nats_client().await,
        store: vc_shared::store::Store::connect(&s.redis.url())
            .await
            .unwrap(),
        sealer: vc_shared::crypto::Sealer::new(vc_shared::crypto::SecretKey::generate()),
        litellm: None,
        stream_replicas: 1,
        reconcile_every: Duration::ZERO,
        key_rotation_grace: Duration::from_secs(30),
        budget: Default::default(),
    };
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        vc_worker::run(None, deps, std::future::pending()),
    )
    .await
    .expect("a worker with the wrong key stops at once")
    .unwrap_err();
    assert!(err.to_string().contains("VC_SECRET_KEY"), "{err}");
}

/// A DID deleted and registered again only sees versions move forward and no stale ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistered_did_versions_move_forward() {
    let s = Stack::builder().start().await;
    let (_, did) = new_agent();
    assert_eq!(
        s.post("/api/agents", json!({"did": did, "name": "a"}))
            .await
            .status,
        201
    );
    let v = s
        .put(
            &format!("/api/agents/{did}/llm-config"),
            json!({"provider": "openai", "model": "m"}),
        )
        .await;
    let v1 = v.body["version"].as_u64().unwrap();
    // An ack recorded by an edge.
    let mut c = s.store.conn();
    let _: () = redis::cmd("SET")
        .arg(vc_shared::store::keys::ack(&did))
        .arg(v1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(s.delete(&format!("/api/agents/{did}")).await.status, 204);
    let again = s
        .post("/api/agents", json!({"did": did, "name": "a"}))
        .await;
    assert_eq!(again.status, 201);
    assert!(again.body["agent"]["configVersion"].as_u64().unwrap() > v1);
    let cfg = s.get(&format!("/api/agents/{did}/llm-config")).await;
    assert_eq!(cfg.body["ackedVersion"], Value::Null);
    assert!(cfg.body["version"].as_u64().unwrap() > v1);
}

/// Publishes a `model.register` command with id `id` and returns its outcome.
async fn publish(
    js: &async_nats::jetstream::Context,
    replies: &mut async_nats::Subscriber,
    id: &str,
    body: &[u8],
) -> serde_json::Value {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", id);
    h.insert("Vc-Reply-To", format!("_INBOX.test.bound.{id}").as_str());
    js.publish_with_headers("vc.cmd.model.register", h, body.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .expect("an outcome")
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// A sealed `apiKeySealed` opens only in the command it was sealed for (the command id is bound into
/// it): copied into another command, that command is refused; in its own, the model gets the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_command_secret_opens_only_in_its_command() {
    let s = Stack::builder().start().await;
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut replies = nc.subscribe("_INBOX.test.bound.>").await.unwrap();
    // Sealed as the API seals it, with the API's key only, for command `bound-1`.
    let sealed = s
        .api_sealer()
        .seal(Purpose::Command, "bound-1", "sk-bound-to-one-command")
        .unwrap();
    let body = serde_json::to_vec(&json!({"name": "Bound", "provider": "openai",
        "modelId": "gpt", "apiKeySealed": sealed}))
    .unwrap();
    let copied = publish(&js, &mut replies, "bound-2", &body).await;
    assert_eq!(copied["status"], "failed", "{copied}");
    assert_eq!(copied["error"]["code"], "BAD_REQUEST", "{copied}");
    assert!(
        copied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("apiKeySealed could not be opened"),
        "{copied}"
    );
    let own = publish(&js, &mut replies, "bound-1", &body).await;
    assert_eq!(own["status"], "succeeded", "{own}");
    let id = own["result"]["model"]["id"].as_str().unwrap().to_string();
    let stored = s.store.model(&id).await.unwrap().unwrap();
    assert_eq!(
        s.sealer()
            .open(
                Purpose::ModelApiKey,
                &id,
                stored.api_key_sealed.as_deref().unwrap()
            )
            .unwrap(),
        "sk-bound-to-one-command"
    );
}
