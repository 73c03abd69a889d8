//! Realms, grants, realm keys and agent configs over real NATS + Redis, with the LiteLLM emulator.

use serde_json::{json, Value};
use vc_tests::stack::{new_agent, Stack};

async fn model(s: &Stack, name: &str) -> (String, String) {
    let r = s.post("/api/models", json!({"name": name, "provider": "openai", "modelId": name.to_lowercase(), "apiKey": "sk-upstream-realms"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["model"]["id"].as_str().unwrap().into(),
        r.body["model"]["litellmModelName"].as_str().unwrap().into(),
    )
}

async fn realm(s: &Stack, name: &str) -> String {
    let r = s.post("/api/realms", json!({"name": name})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["realm"]["id"].as_str().unwrap().into()
}

async fn agent(s: &Stack) -> String {
    let (_, did) = new_agent();
    let r = s
        .post("/api/agents", json!({"did": did, "name": "agent"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    did
}

fn key_of(s: &Stack, realm_id: &str) -> Option<String> {
    s.emu
        .as_ref()
        .unwrap()
        .emu
        .keys()
        .into_iter()
        .find(|k| k.key_alias.as_deref() == Some(&format!("vc-realm-{realm_id}")))
        .map(|k| k.key)
}

/// One key per realm, updated in place; budgets; revoke; last model revoked blocks the key; delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_per_realm_changed_in_place() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let (m1, n1) = model(&s, "Alpha").await;
    let (m2, n2) = model(&s, "Beta").await;
    let r = realm(&s, "Engineering").await;
    assert_eq!(
        s.post("/api/realms", json!({"name": "engineering"}))
            .await
            .status,
        409
    );
    let g = s
        .post(
            &format!("/api/models/{m1}/realms"),
            json!({"realmId": r, "monthlyBudgetUsd": 50}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let rk = &g.body["routerKey"];
    assert_eq!(rk["hasVirtualKey"], true);
    assert!(rk["keyPrefix"].as_str().unwrap().len() <= 8);
    assert_eq!(rk["allowedModels"], json!([n1]));
    assert_eq!(rk["monthlyBudgetUsd"], 50.0);
    let key = key_of(&s, &r).expect("key generated");
    assert!(!g.text.contains(&key));
    let k = emu.keys().into_iter().find(|k| k.key == key).unwrap();
    assert_eq!(k.max_budget, Some(50.0));
    assert_eq!(k.budget_duration.as_deref(), Some("1mo"));
    assert_eq!(k.metadata["vc_realm_id"], json!(r));

    assert_eq!(
        s.post(&format!("/api/models/{m2}/realms"), json!({"realmId": r}))
            .await
            .status,
        200
    );
    assert_eq!(emu.keys().len(), 1, "same key updated, no second key");
    let mut models = emu.keys()[0].models.clone();
    models.sort();
    assert_eq!(models, vec![n1.clone(), n2.clone()]);
    assert_eq!(
        emu.keys()[0].max_budget,
        Some(50.0),
        "budget kept when not given"
    );

    // Inactivating a model removes it from the key.
    assert_eq!(
        s.put(&format!("/api/models/{m2}"), json!({"status": "inactive"}))
            .await
            .status,
        200
    );
    assert_eq!(emu.keys()[0].models, vec![n1.clone()]);
    let rm = s.get(&format!("/api/realms/{r}/models")).await;
    assert_eq!(rm.body["models"].as_array().unwrap().len(), 1);

    // Revoking the last active model must not leave a key that reaches all models.
    assert_eq!(
        s.delete(&format!("/api/models/{m1}/realms?realmId={r}"))
            .await
            .status,
        204
    );
    let k = emu.keys().into_iter().find(|k| k.key == key).unwrap();
    assert!(!k.models.is_empty(), "[] would mean all models");
    assert!(!k.models.contains(&n1));

    assert_eq!(s.delete(&format!("/api/realms/{r}")).await.status, 204);
    assert!(emu.keys().is_empty(), "realm delete deletes its key");
}

/// Auto-configuration on join, explicit configs kept, fallback on revoke, versions strictly increase,
/// realm-llm shape, membership rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_configs_follow_their_realm() {
    let s = Stack::builder().litellm(true).start().await;
    let (m1, n1) = model(&s, "Alpha").await;
    let (m2, _n2) = model(&s, "Beta").await;
    let r = realm(&s, "Team").await;
    let other = realm(&s, "Other").await;
    for m in [&m1, &m2] {
        assert_eq!(
            s.post(&format!("/api/models/{m}/realms"), json!({"realmId": r}))
                .await
                .status,
            200
        );
    }
    let a = agent(&s).await;
    let b = agent(&s).await;
    // b has an explicit manual config before joining.
    let put = s
        .put(
            &format!("/api/agents/{b}/llm-config"),
            json!({"provider": "openai", "model": "gpt-4o", "apiKey": "sk-manual-secret"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["config"]["apiKeySet"], true);
    assert!(!put.text.contains("sk-manual-secret"));

    let join = s
        .post(
            &format!("/api/realms/{r}/agents"),
            json!({"agentDid": a, "isPrimary": true}),
        )
        .await;
    assert_eq!(join.status, 200, "{}", join.text);
    assert_eq!(join.body, json!({"ok": true, "llmPushed": true}));
    let join_b = s
        .post(&format!("/api/realms/{r}/agents"), json!({"agentDid": b}))
        .await;
    assert_eq!(
        join_b.body["llmPushed"], false,
        "explicit configs are never overwritten"
    );
    assert_eq!(
        s.post(
            &format!("/api/realms/{other}/agents"),
            json!({"agentDid": a, "isPrimary": true})
        )
        .await
        .status,
        200
    );

    let cfg = s.get(&format!("/api/agents/{a}/llm-config")).await;
    assert_eq!(cfg.body["mode"], "realm");
    assert_eq!(
        cfg.body["config"]["model"], n1,
        "first active model by name"
    );
    assert_eq!(
        cfg.body["config"]["baseUrl"],
        "http://litellm.public.example:4000"
    );
    assert_eq!(cfg.body["config"]["apiKeySet"], true);
    let v1 = cfg.body["version"].as_u64().unwrap();

    // Realm routing to a model: 403 for a non-member, 404 for a non-granted model.
    let c = agent(&s).await;
    let denied = s
        .put(
            &format!("/api/agents/{c}/llm-config"),
            json!({"realmId": r, "realmModelId": m1}),
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    let (m3, _) = model(&s, "Gamma").await;
    let nf = s
        .put(
            &format!("/api/agents/{a}/llm-config"),
            json!({"realmId": r, "realmModelId": m3}),
        )
        .await;
    assert_eq!(nf.status, 404, "{}", nf.text);
    let nokey = s
        .put(
            &format!("/api/agents/{a}/llm-config"),
            json!({"realmId": other, "realmModelId": m1}),
        )
        .await;
    assert_eq!(nokey.status, 400);
    assert_eq!(
        nokey.body["error"],
        "Realm has no LiteLLM virtual key configured"
    );
    let set = s
        .put(
            &format!("/api/agents/{a}/llm-config"),
            json!({"realmId": r, "realmModelId": m2}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let v2 = set.body["version"].as_u64().unwrap();
    assert!(v2 > v1);

    // Revoking the routed model falls back to the realm's first active model.
    assert_eq!(
        s.delete(&format!("/api/models/{m2}/realms/{r}"))
            .await
            .status,
        204
    );
    let cfg = s.get(&format!("/api/agents/{a}/llm-config")).await;
    assert_eq!(cfg.body["config"]["model"], n1);
    assert_eq!(cfg.body["config"]["allowedModels"], json!([n1]));
    let v3 = cfg.body["version"].as_u64().unwrap();
    assert!(v3 > v2);
    // b (manual) untouched by grants and revokes.
    let cb = s.get(&format!("/api/agents/{b}/llm-config")).await;
    assert_eq!(cb.body["mode"], "manual");
    assert_eq!(cb.body["config"]["model"], "gpt-4o");

    // realm-llm: primary first.
    let rl = s.get(&format!("/api/agents/{a}/realm-llm")).await;
    assert_eq!(rl.body["litellmConfigured"], true);
    let realms = rl.body["realms"].as_array().unwrap();
    assert_eq!(
        realms[0]["realmId"],
        json!(other),
        "the primary realm first: {}",
        rl.text
    );
    assert_eq!(realms[1]["hasVirtualKey"], true);
    assert_eq!(realms[1]["models"][0]["litellmModelName"], n1);
    let agents = s.get("/api/agents").await;
    let row = agents.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["did"] == json!(a))
        .cloned()
        .unwrap();
    assert_eq!(
        row["realms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["isPrimary"] == true)
            .count(),
        1
    );

    // Realm delete: routed agents get config null.
    assert_eq!(s.delete(&format!("/api/realms/{r}")).await.status, 204);
    let cfg = s.get(&format!("/api/agents/{a}/llm-config")).await;
    assert_eq!(cfg.body["config"], Value::Null);
    assert!(cfg.body["version"].as_u64().unwrap() > v3);
    // Clear.
    let clr = s.delete(&format!("/api/agents/{b}/llm-config")).await;
    assert_eq!(clr.status, 200);
    assert_eq!(clr.body["pushed"], false);

    // No whole key in any response of this scenario (spot check of the listing endpoints).
    for path in ["/api/models", "/api/realms", "/api/agents"] {
        let t = s.get(path).await.text;
        for k in s.emu.as_ref().unwrap().emu.keys() {
            assert!(!t.contains(&k.key));
        }
        assert!(!t.contains("sk-upstream-realms") && !t.contains("sk-manual-secret"));
    }
}

/// LiteLLM unset: grants, realms and configs work; keys simply absent.
/// Agents that joined a realm before its first grant (no key yet, so nothing to route through) are
/// configured when the first grant mints the key, as a join would have done; an agent with an explicit
/// config is left alone, and later grants configure nobody new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_who_joined_before_the_first_grant_are_configured_by_it() {
    let s = Stack::builder().litellm(true).start().await;
    let (m1, n1) = model(&s, "Alpha").await;
    let (m2, _) = model(&s, "Beta").await;
    let r = realm(&s, "Early").await;
    let waiting = agent(&s).await;
    let explicit = agent(&s).await;
    let put = s
        .put(
            &format!("/api/agents/{explicit}/llm-config"),
            json!({"provider": "openai", "model": "gpt-4o", "apiKey": "sk-manual-early"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    for a in [&waiting, &explicit] {
        let j = s
            .post(&format!("/api/realms/{r}/agents"), json!({"agentDid": a}))
            .await;
        assert_eq!(
            j.body,
            json!({"ok": true, "llmPushed": false}),
            "{}",
            j.text
        );
    }
    assert_eq!(
        s.get(&format!("/api/agents/{waiting}/llm-config"))
            .await
            .body["config"],
        Value::Null
    );
    let g = s
        .post(&format!("/api/models/{m1}/realms"), json!({"realmId": r}))
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let cfg = s.get(&format!("/api/agents/{waiting}/llm-config")).await;
    assert_eq!(cfg.body["mode"], "realm", "{}", cfg.text);
    assert_eq!(cfg.body["config"]["model"], n1);
    let v1 = cfg.body["version"].as_u64().unwrap();
    let other = s.get(&format!("/api/agents/{explicit}/llm-config")).await;
    assert_eq!(other.body["mode"], "manual", "{}", other.text);
    assert_eq!(other.body["config"]["model"], "gpt-4o");
    // The second grant changes the key's models: the routed agent gets a new version, still on m1.
    let g2 = s
        .post(&format!("/api/models/{m2}/realms"), json!({"realmId": r}))
        .await;
    assert_eq!(g2.status, 200, "{}", g2.text);
    let cfg2 = s.get(&format!("/api/agents/{waiting}/llm-config")).await;
    assert!(cfg2.body["version"].as_u64().unwrap() > v1);
    assert_eq!(cfg2.body["config"]["model"], n1);
    assert_eq!(
        s.get(&format!("/api/agents/{explicit}/llm-config"))
            .await
            .body["mode"],
        "manual"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realms_without_litellm() {
    let s = Stack::builder().start().await;
    let (m1, _) = model(&s, "Alpha").await;
    let r = realm(&s, "Solo").await;
    let g = s
        .post(&format!("/api/models/{m1}/realms"), json!({"realmId": r}))
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(g.body["routerKey"], Value::Null);
    let a = agent(&s).await;
    let j = s
        .post(&format!("/api/realms/{r}/agents"), json!({"agentDid": a}))
        .await;
    assert_eq!(j.body["llmPushed"], false);
    let rl = s.get(&format!("/api/agents/{a}/realm-llm")).await;
    assert_eq!(rl.body["realms"][0]["hasVirtualKey"], false);
    let reg = s
        .put(
            &format!("/api/agents/{a}/llm-config"),
            json!({"registryModelId": m1}),
        )
        .await;
    assert_eq!(reg.status, 200, "{}", reg.text);
    assert_eq!(reg.body["config"]["model"], "alpha");
    assert_eq!(reg.body["config"]["apiKeySet"], true);
    let realm_view = s.get(&format!("/api/realms/{r}")).await;
    assert_eq!(realm_view.body["realm"]["agentCount"], 1);
    assert_eq!(realm_view.body["realm"]["modelCount"], 1);
}

/// Agent registration rules and the llm-config forms' errors over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registration_and_config_errors() {
    let s = Stack::builder().start().await;
    let bad = s
        .post(
            "/api/agents",
            json!({"did": "did:web:example.com", "name": "x"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.body["error"]
        .as_str()
        .unwrap()
        .starts_with("did is not a valid did:key"));
    let no_name = s.post("/api/agents", json!({"did": new_agent().1})).await;
    assert_eq!(no_name.body["error"], "name is required");
    let did = agent(&s).await;
    let dup = s
        .post("/api/agents", json!({"did": did, "name": "again"}))
        .await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    let one = s.get(&format!("/api/agents/{did}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["agent"]["did"], json!(did));
    assert_eq!(one.body["agent"]["online"], false);
    assert_eq!(
        s.get(&format!("/api/agents/{}", new_agent().1))
            .await
            .status,
        404
    );
    let cases = [
        (json!({"realmId": "r1"}), 400, "realmModelId is required"),
        (
            json!({"registryModelId": "nope"}),
            404,
            "model nope not found",
        ),
        (json!({"provider": "openai"}), 400, "model is required"),
        (
            json!({"provider": "bogus", "model": "m"}),
            400,
            "provider must be one of",
        ),
        (
            json!({"provider": "openai", "model": "m", "baseUrl": "ftp://x"}),
            400,
            "baseUrl must be",
        ),
        (
            json!({"provider": "openai", "model": "m", "maxTokens": -1}),
            400,
            "maxTokens",
        ),
    ];
    for (body, status, msg) in cases {
        let r = s
            .put(&format!("/api/agents/{did}/llm-config"), body.clone())
            .await;
        assert_eq!(r.status, status, "{body} → {}", r.text);
        assert!(
            r.body["error"].as_str().unwrap().contains(msg),
            "{body} → {}",
            r.text
        );
    }
    let empty = s.get(&format!("/api/agents/{did}/llm-config")).await;
    assert_eq!(empty.body["config"], Value::Null);
    assert_eq!(empty.body["mode"], Value::Null);
}
