//! Access control over real NATS + Redis: realm-admin tokens, what a realm admin may and may not do,
//! the audit of auth failures and its paging, the API's publish-failure and drain behaviour, and NATS
//! users with per-component permissions (`nats/auth.conf`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use vc_shared::crypto::sha256_hex;
use vc_shared::domain::ConfigSource;
use vc_tests::servers::{free_port, log_tail, nats_server_bin, nats_server_version, repo_root};
use vc_tests::stack::{new_agent, Resp, Stack, ADMIN_TOKEN};
use vc_tests::wait::{eventually, patience, scaled};

// ---------------------------------------------------------------------------------------------------------
// REST helpers
// ---------------------------------------------------------------------------------------------------------

async fn call(s: &Stack, method: Method, path: &str, body: Option<Value>, token: &str) -> Resp {
    s.request(method, path, body, Some(token), &[]).await
}

async fn realm(s: &Stack, name: &str) -> String {
    let r = s.post("/api/realms", json!({"name": name})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["realm"]["id"].as_str().unwrap().into()
}

async fn model(s: &Stack, name: &str) -> String {
    let r = s
        .post(
            "/api/models",
            json!({"name": name, "provider": "openai", "modelId": name.to_lowercase(), "apiKey": "sk-upstream-access-test"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["model"]["id"].as_str().unwrap().into()
}

async fn agent(s: &Stack) -> String {
    let (_, did) = new_agent();
    let r = s
        .post("/api/agents", json!({"did": did, "name": "agent"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    did
}

async fn token(s: &Stack, name: &str, realms: &[&str]) -> (String, String) {
    let r = s
        .post(
            "/api/tokens",
            json!({"name": name, "role": "realm-admin", "realmIds": realms}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["token"]["id"].as_str().unwrap().into(),
        r.body["secret"].as_str().unwrap().into(),
    )
}

/// Every key and value in Redis, as text (test-only: uses KEYS).
async fn redis_dump(s: &Stack) -> String {
    let mut c = s.store.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = String::new();
    for k in keys {
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let v: Vec<String> = match t.as_str() {
            "string" => vec![redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap()],
            "hash" => {
                let v: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                v.into_iter().flat_map(|(a, b)| [a, b]).collect()
            }
            "set" => redis::cmd("SMEMBERS")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "stream" => {
                let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(&k)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                v.into_iter()
                    .flat_map(|(id, f)| {
                        std::iter::once(id).chain(f.into_iter().flat_map(|(a, b)| [a, b]))
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        out.push_str(&format!("{k} => {}\n", v.join(" ")));
    }
    out
}

async fn keys_like(s: &Stack, pattern: &str) -> Vec<String> {
    let mut c = s.store.conn();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// All audit events, oldest first (one page of up to 1000).
async fn audit(s: &Stack) -> Vec<Value> {
    let r = s.get("/api/audit?limit=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["events"].as_array().unwrap().clone()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(s: &Stack) -> String {
    reqwest::get(format!("{}/metrics", s.api_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Tokens and what a realm admin may do
// ---------------------------------------------------------------------------------------------------------

/// A token is created by a global admin only, its secret is shown once and stored only as a SHA-256,
/// it is listed without secret or hash, it authenticates until deleted (then 401), and both writes are
/// in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifecycle_secret_shown_once_and_stored_hashed() {
    let s = Stack::builder().start().await;
    let r1 = realm(&s, "Token One").await;
    let r2 = realm(&s, "Token Two").await;

    // Validation names the field.
    for (body, status, field) in [
        (
            json!({"role": "realm-admin", "realmIds": [r1]}),
            400,
            "name",
        ),
        (
            json!({"name": " ", "role": "realm-admin", "realmIds": [r1]}),
            400,
            "name",
        ),
        (
            json!({"name": "x".repeat(201), "role": "realm-admin", "realmIds": [r1]}),
            400,
            "name",
        ),
        (
            json!({"name": "n", "role": "admin", "realmIds": [r1]}),
            400,
            "role",
        ),
        (json!({"name": "n", "realmIds": [r1]}), 400, "role"),
        (json!({"name": "n", "role": "realm-admin"}), 400, "realmIds"),
        (
            json!({"name": "n", "role": "realm-admin", "realmIds": []}),
            400,
            "realmIds",
        ),
        (
            json!({"name": "n", "role": "realm-admin", "realmIds": [r1, "nope-realm"]}),
            404,
            "realmIds",
        ),
    ] {
        let r = s.post("/api/tokens", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(
            r.body["error"].as_str().unwrap().contains(field),
            "{body}: {}",
            r.text
        );
    }

    let r = s
        .post(
            "/api/tokens",
            json!({"name": "Team one", "role": "realm-admin", "realmIds": [r1]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let id = r.body["token"]["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("vct_") && secret.len() == 68, "{secret}");
    assert_eq!(r.body["token"]["name"], "Team one");
    assert_eq!(r.body["token"]["role"], "realm-admin");
    assert_eq!(r.body["token"]["realmIds"], json!([r1]));
    assert!(r.body["token"]["createdAt"].is_string());
    let hash = sha256_hex(&secret);

    // Listed without secret or hash; shown once only.
    let l = s.get("/api/tokens").await;
    assert_eq!(l.status, 200, "{}", l.text);
    let tokens = l.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], json!(id));
    assert!(tokens[0].get("secret").is_none());
    assert!(!l.text.contains(&secret) && !l.text.contains(&hash));

    // Stored hashed: no plaintext secret anywhere in Redis; the hash is the lookup key.
    let dump = redis_dump(&s).await;
    assert!(!dump.contains(&secret), "plaintext secret in Redis");
    assert!(
        !dump.contains(&secret["vct_".len()..]),
        "secret hex in Redis"
    );
    assert_eq!(
        keys_like(&s, &format!("{{vc}}:token-hash:{hash}"))
            .await
            .len(),
        1
    );

    // It authenticates as a realm admin of r1 only.
    let realms = call(&s, Method::GET, "/api/realms", None, &secret).await;
    assert_eq!(realms.status, 200, "{}", realms.text);
    let ids: Vec<&str> = realms.body["realms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![r1.as_str()]);
    // Tokens are a global admin's business.
    let body = json!({"name": "mine", "role": "realm-admin", "realmIds": [r1]});
    assert_eq!(
        call(&s, Method::POST, "/api/tokens", Some(body), &secret)
            .await
            .status,
        403
    );
    assert_eq!(
        call(&s, Method::GET, "/api/tokens", None, &secret)
            .await
            .status,
        403
    );
    let del = call(
        &s,
        Method::DELETE,
        &format!("/api/tokens/{id}"),
        None,
        &secret,
    )
    .await;
    assert_eq!(del.status, 403);
    assert_eq!(del.body["code"], "FORBIDDEN");

    // A second token for two realms.
    let (id2, secret2) = token(&s, "Both", &[&r1, &r2]).await;
    assert_ne!(secret, secret2);
    assert_eq!(
        call(&s, Method::GET, "/api/realms", None, &secret2)
            .await
            .body["realms"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Delete: 204, then 404; the token no longer works (401), the other one still does.
    assert_eq!(s.delete(&format!("/api/tokens/{id}")).await.status, 204);
    assert_eq!(s.delete(&format!("/api/tokens/{id}")).await.status, 404);
    assert_eq!(s.delete("/api/tokens/not-a-token").await.status, 404);
    let gone = call(&s, Method::GET, "/api/realms", None, &secret).await;
    assert_eq!(gone.status, 401, "{}", gone.text);
    assert_eq!(gone.body["code"], "UNAUTHORIZED");
    assert_eq!(
        call(&s, Method::GET, "/api/realms", None, &secret2)
            .await
            .status,
        200
    );
    assert!(keys_like(&s, &format!("{{vc}}:token-hash:{hash}"))
        .await
        .is_empty());
    let l = s.get("/api/tokens").await;
    assert_eq!(l.body["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["tokens"][0]["id"], json!(id2));

    // Both writes are audited, without secrets.
    let events = audit(&s).await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("token."))
        .map(|e| (e["kind"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    let (s1, s2) = (format!("token:{id}"), format!("token:{id2}"));
    assert_eq!(
        kinds,
        vec![
            ("token.created", s1.as_str()),
            ("token.created", s2.as_str()),
            ("token.deleted", s1.as_str())
        ]
    );
    let created = events
        .iter()
        .find(|e| e["kind"] == "token.created")
        .unwrap();
    assert_eq!(created["actor"], "admin");
    assert_eq!(created["details"]["realmIds"], json!([r1]));
    let text = serde_json::to_string(&events).unwrap();
    for secret in [&secret, &secret2] {
        assert!(!text.contains(secret.as_str()));
        assert!(!text.contains(&sha256_hex(secret)));
    }
}

/// A realm admin reads its realm and manages its agents and their realm-routing configs; everything
/// else is 403, and no request of its can give an agent another realm's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_admin_manages_only_its_realms_agents() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let m1 = model(&s, "Access Alpha").await;
    let m2 = model(&s, "Access Beta").await;
    let r1 = realm(&s, "Access One").await;
    let r2 = realm(&s, "Access Two").await;
    for (m, r) in [(&m1, &r1), (&m2, &r2)] {
        let g = s
            .post(&format!("/api/models/{m}/realms"), json!({"realmId": r}))
            .await;
        assert_eq!(g.status, 200, "{}", g.text);
    }
    let key_of = |realm_id: &str| {
        emu.keys()
            .into_iter()
            .find(|k| k.key_alias.as_deref() == Some(&format!("vc-realm-{realm_id}")))
            .map(|k| k.key)
            .expect("realm key")
    };
    let (k1, k2) = (key_of(&r1), key_of(&r2));
    let a1 = agent(&s).await; // in r1
    let a2 = agent(&s).await; // in r2
    let a3 = agent(&s).await; // in no realm yet
    for (a, r) in [(&a1, &r1), (&a2, &r2)] {
        let j = s
            .post(&format!("/api/realms/{r}/agents"), json!({"agentDid": a}))
            .await;
        assert_eq!(j.status, 200, "{}", j.text);
    }
    let (tid, t) = token(&s, "Team one", &[&r1]).await;
    let get = |p: String| {
        let (s, t) = (&s, &t);
        async move { call(s, Method::GET, &p, None, t).await }
    };

    // Reads of its realm.
    let l = get("/api/realms".into()).await;
    assert_eq!(l.status, 200);
    assert_eq!(l.body["realms"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["realms"][0]["id"], json!(r1));
    let r = get(format!("/api/realms/{r1}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["agents"].as_array().unwrap().len(), 1);
    assert_eq!(get(format!("/api/realms/{r1}/models")).await.status, 200);
    assert_eq!(get(format!("/api/agents/{a1}")).await.status, 200);
    assert_eq!(
        get(format!("/api/agents/{a1}/llm-config")).await.status,
        200
    );
    let rl = get(format!("/api/agents/{a1}/realm-llm")).await;
    assert_eq!(rl.status, 200, "{}", rl.text);
    assert_eq!(rl.body["realms"].as_array().unwrap().len(), 1);

    // Everything else: 403 FORBIDDEN.
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/realms/{r2}"), None),
        (Method::GET, format!("/api/realms/{r2}/models"), None),
        (
            Method::POST,
            "/api/realms".into(),
            Some(json!({"name": "Mine"})),
        ),
        (
            Method::PATCH,
            format!("/api/realms/{r1}"),
            Some(json!({"name": "Renamed"})),
        ),
        (Method::DELETE, format!("/api/realms/{r1}"), None),
        (Method::GET, "/api/models".into(), None),
        (
            Method::POST,
            "/api/models".into(),
            Some(json!({"name": "X", "provider": "openai", "modelId": "x"})),
        ),
        (Method::GET, format!("/api/models/{m1}"), None),
        (
            Method::PUT,
            format!("/api/models/{m1}"),
            Some(json!({"name": "Y"})),
        ),
        (Method::DELETE, format!("/api/models/{m1}"), None),
        (Method::GET, format!("/api/models/{m1}/realms"), None),
        (
            Method::POST,
            format!("/api/models/{m2}/realms"),
            Some(json!({"realmId": r1})),
        ),
        (
            Method::DELETE,
            format!("/api/models/{m1}/realms/{r1}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/models/{m1}/realms?realmId={r1}"),
            None,
        ),
        (Method::GET, "/api/agents".into(), None),
        (
            Method::POST,
            "/api/agents".into(),
            Some(json!({"did": new_agent().1, "name": "n"})),
        ),
        (Method::DELETE, format!("/api/agents/{a1}"), None),
        (Method::GET, format!("/api/agents/{a2}"), None),
        (Method::GET, format!("/api/agents/{a2}/llm-config"), None),
        (Method::GET, format!("/api/agents/{a2}/realm-llm"), None),
        (Method::GET, format!("/api/agents/{}", new_agent().1), None),
        (Method::DELETE, format!("/api/agents/{a2}/llm-config"), None),
        (
            Method::POST,
            format!("/api/realms/{r2}/agents"),
            Some(json!({"agentDid": a3})),
        ),
        (
            Method::POST,
            format!("/api/realms/{r1}/agents"),
            Some(json!({"agentDid": a2})),
        ),
        (
            Method::DELETE,
            format!("/api/realms/{r2}/agents/{a2}"),
            None,
        ),
        // Another realm's key, or the forms that are not realm routing.
        (
            Method::PUT,
            format!("/api/agents/{a1}/llm-config"),
            Some(json!({"realmId": r2, "realmModelId": m2})),
        ),
        (
            Method::PUT,
            format!("/api/agents/{a2}/llm-config"),
            Some(json!({"realmId": r1, "realmModelId": m1})),
        ),
        (
            Method::PUT,
            format!("/api/agents/{a1}/llm-config"),
            Some(json!({"registryModelId": m2})),
        ),
        (
            Method::PUT,
            format!("/api/agents/{a1}/llm-config"),
            Some(json!({"provider": "openai", "model": "gpt", "apiKey": "sk-mine"})),
        ),
        (Method::GET, "/api/tokens".into(), None),
        (
            Method::POST,
            "/api/tokens".into(),
            Some(json!({"name": "n", "role": "realm-admin", "realmIds": [r1]})),
        ),
        (Method::DELETE, format!("/api/tokens/{tid}"), None),
        (Method::GET, "/api/litellm/status".into(), None),
        (Method::POST, "/api/litellm/reconcile".into(), None),
        (Method::GET, "/api/audit".into(), None),
    ];
    for (method, path, body) in forbidden {
        let r = call(&s, method.clone(), &path, body.clone(), &t).await;
        assert_eq!(r.status, 403, "{method} {path} {body:?}: {}", r.text);
        assert_eq!(r.body["code"], "FORBIDDEN", "{method} {path}");
    }

    // Manage its agents: adopt an agent without a realm, route it, remove it.
    let j = call(
        &s,
        Method::POST,
        &format!("/api/realms/{r1}/agents"),
        Some(json!({"agentDid": a3})),
        &t,
    )
    .await;
    assert_eq!(j.status, 200, "{}", j.text);
    let put = call(
        &s,
        Method::PUT,
        &format!("/api/agents/{a1}/llm-config"),
        Some(json!({"realmId": r1, "realmModelId": m1})),
        &t,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert!(!put.text.contains(&k1) && !put.text.contains(&k2));
    // Its own realm with the other realm's model: refused by the worker (not a grant of r1).
    let wrong = call(
        &s,
        Method::PUT,
        &format!("/api/agents/{a1}/llm-config"),
        Some(json!({"realmId": r1, "realmModelId": m2})),
        &t,
    )
    .await;
    assert_eq!(wrong.status, 404, "{}", wrong.text);
    // The agent holds r1's key, never r2's.
    let stored = s.store.agent(&a1).await.unwrap().unwrap();
    assert!(
        matches!(&stored.source, Some(ConfigSource::Realm { realm_id, .. }) if *realm_id == r1)
    );
    let cfg = s
        .store
        .effective_state(&stored)
        .await
        .unwrap()
        .open(&s.sealer(), &a1)
        .unwrap()
        .unwrap();
    assert_eq!(cfg.api_key.as_deref(), Some(k1.as_str()));
    assert_ne!(cfg.api_key.as_deref(), Some(k2.as_str()));

    // Clear: allowed while routed through its realm; not once a global admin chose another form.
    let del = call(
        &s,
        Method::DELETE,
        &format!("/api/agents/{a1}/llm-config"),
        None,
        &t,
    )
    .await;
    assert_eq!(del.status, 200, "{}", del.text);
    let reg = s
        .put(
            &format!("/api/agents/{a1}/llm-config"),
            json!({"registryModelId": m1}),
        )
        .await;
    assert_eq!(reg.status, 200, "{}", reg.text);
    let del = call(
        &s,
        Method::DELETE,
        &format!("/api/agents/{a1}/llm-config"),
        None,
        &t,
    )
    .await;
    assert_eq!(del.status, 403, "{}", del.text);
    let rm = call(
        &s,
        Method::DELETE,
        &format!("/api/realms/{r1}/agents/{a3}"),
        None,
        &t,
    )
    .await;
    assert_eq!(rm.status, 204, "{}", rm.text);

    // Commands: a realm admin reads back the ones it submitted, not the admin's.
    let mine = keys_like(&s, "{vc}:cmd-issuer:*").await;
    assert!(!mine.is_empty());
    for k in &mine {
        let id = k.rsplit(':').next().unwrap();
        let r = get(format!("/api/commands/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(s.get(&format!("/api/commands/{id}")).await.status == 200);
    }
    let all = keys_like(&s, "{vc}:cmd:*").await;
    let admin_cmd = all
        .iter()
        .map(|k| k.rsplit(':').next().unwrap().to_string())
        .find(|id| !mine.iter().any(|m| m.ends_with(id.as_str())))
        .unwrap();
    assert_eq!(get(format!("/api/commands/{admin_cmd}")).await.status, 403);
    assert_eq!(
        s.get(&format!("/api/commands/{admin_cmd}")).await.status,
        200
    );

    // No response to the realm admin ever carried a realm key.
    let everything = [
        get("/api/realms".into()).await.text,
        get(format!("/api/realms/{r1}")).await.text,
        get(format!("/api/realms/{r1}/models")).await.text,
        get(format!("/api/agents/{a1}")).await.text,
        get(format!("/api/agents/{a1}/llm-config")).await.text,
        get(format!("/api/agents/{a1}/realm-llm")).await.text,
    ]
    .join("\n");
    assert!(!everything.contains(&k1) && !everything.contains(&k2));
}

// ---------------------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------------------

/// Every 401 and access 403 becomes an `auth.failed` event (audit log and `vc.evt.auth.failed`) naming
/// path, method and reason but no token material; the writes are rate-limited and the rest counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_audited_without_secrets() {
    let s = Stack::builder().start().await;
    let nats = s.nats_client().await;
    let mut evt = nats.subscribe("vc.evt.auth.failed").await.unwrap();
    nats.flush().await.unwrap();
    let r1 = realm(&s, "Audit One").await;
    let (tid, t) = token(&s, "Auditor", &[&r1]).await;
    let bogus = format!("vct_{}", "0f".repeat(32));
    let not_a_token = "totally-wrong-token-value";

    let none = call(&s, Method::GET, "/api/models", None, "").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["code"], "UNAUTHORIZED");
    let basic = s
        .request(
            Method::GET,
            "/api/models",
            None,
            Some(""),
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_eq!(basic.status, 401);
    assert_eq!(
        call(&s, Method::GET, "/api/realms?x=1", None, &bogus)
            .await
            .status,
        401
    );
    assert_eq!(
        call(&s, Method::DELETE, "/api/models/m-1", None, not_a_token)
            .await
            .status,
        401
    );
    assert_eq!(
        call(&s, Method::GET, "/api/models", None, &t).await.status,
        403
    );
    // Unknown routes under /api need a token too.
    assert_eq!(
        call(&s, Method::GET, "/api/nope", None, "").await.status,
        401
    );
    // Not an access failure: a domain 404.
    assert_eq!(s.get("/api/realms/no-such-realm").await.status, 404);

    let failed = eventually("6 auth.failed events", patience(), || async {
        let ev: Vec<Value> = audit(&s)
            .await
            .into_iter()
            .filter(|e| e["kind"] == "auth.failed")
            .collect();
        (ev.len() >= 6).then_some(ev)
    })
    .await;
    assert_eq!(failed.len(), 6, "{failed:#?}");
    for e in &failed {
        assert_eq!(e["subject"], "api");
        for f in ["reason", "path", "method"] {
            assert!(e["details"][f].is_string(), "{e}");
        }
    }
    let anonymous: Vec<&Value> = failed
        .iter()
        .filter(|e| e["actor"] == "anonymous")
        .collect();
    assert_eq!(anonymous.len(), 5);
    let by_token: Vec<&Value> = failed
        .iter()
        .filter(|e| e["actor"] == json!(format!("token:{tid}")))
        .collect();
    assert_eq!(by_token.len(), 1);
    assert_eq!(by_token[0]["details"]["path"], "/api/models");
    assert_eq!(by_token[0]["details"]["method"], "GET");
    assert_eq!(by_token[0]["details"]["status"], 403);
    let deleted = failed
        .iter()
        .find(|e| e["details"]["method"] == "DELETE")
        .unwrap();
    assert_eq!(deleted["details"]["path"], "/api/models/m-1");
    assert_eq!(deleted["details"]["reason"], "invalid token");
    // The query string is not kept; no token material anywhere.
    let text = serde_json::to_string(&audit(&s).await).unwrap();
    assert!(!text.contains("x=1"));
    for secret in [
        bogus.as_str(),
        not_a_token,
        t.as_str(),
        ADMIN_TOKEN,
        "dXNlcjpwYXNz",
    ] {
        assert!(!text.contains(secret), "audit log contains {secret}");
    }
    // The same events on NATS.
    let mut seen = 0;
    while seen < 6 {
        let m = tokio::time::timeout(scaled(Duration::from_secs(10)), evt.next())
            .await
            .expect("auth.failed on NATS")
            .unwrap();
        let ev: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(ev["kind"], "auth.failed");
        assert!(!String::from_utf8_lossy(&m.payload).contains(&bogus));
        seen += 1;
    }

    // A flood: at most 100 events per second are written, the rest are counted as dropped.
    let before = failed.len();
    let started = Instant::now();
    let flood = 400;
    futures::stream::iter(0..flood)
        .for_each_concurrent(32, |_| async {
            let r = call(&s, Method::GET, "/api/models", None, &bogus).await;
            assert_eq!(r.status, 401);
        })
        .await;
    let secs = started.elapsed().as_secs_f64().ceil() as usize + 1;
    let m = metrics_text(&s).await;
    let dropped = metric(&m, "vc_api_auth_failure_events_dropped_total") as usize;
    let failures = metric(&m, "vc_api_auth_failures_total") as usize;
    assert_eq!(failures, before + flood);
    let written = eventually("flood events written", patience(), || async {
        let n = audit(&s)
            .await
            .iter()
            .filter(|e| e["kind"] == "auth.failed")
            .count();
        (n + dropped == before + flood).then_some(n - before)
    })
    .await;
    assert!(written <= 100 * secs, "{written} events in {secs} windows");
    assert!(dropped > 0, "400 failures in {secs}s were all written");
}

/// `GET /api/audit` pages with `after` = the previous page's `next`, oldest first, without gaps or
/// repeats; bad cursors and limits are 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pages_with_after_and_next() {
    let s = Stack::builder().start().await;
    let r1 = realm(&s, "Paging").await;
    for i in 0..4 {
        let (id, _) = token(&s, &format!("t{i}"), &[&r1]).await;
        if i % 2 == 0 {
            assert_eq!(s.delete(&format!("/api/tokens/{id}")).await.status, 204);
        }
    }
    let _ = call(&s, Method::GET, "/api/models", None, "wrong").await;
    let all = eventually("all events", patience(), || async {
        let a = audit(&s).await;
        a.iter().any(|e| e["kind"] == "auth.failed").then_some(a)
    })
    .await;
    assert!(all.len() >= 8, "{all:#?}");

    let mut paged: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/api/audit?limit=3&after={a}"),
            None => "/api/audit?limit=3".into(),
        };
        let r = s.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let events = r.body["events"].as_array().unwrap().clone();
        assert!(events.len() <= 3);
        if events.is_empty() {
            break;
        }
        assert_eq!(r.body["next"], events.last().unwrap()["id"]);
        after = Some(r.body["next"].as_str().unwrap().to_string());
        paged.extend(events);
        pages += 1;
    }
    assert!(pages >= 3);
    let ids = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&paged), ids(&all));
    for bad in [
        "/api/audit?limit=0",
        "/api/audit?limit=1001",
        "/api/audit?after=abc",
    ] {
        assert_eq!(s.get(bad).await.status, 400, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// API fixes: publish failure, drain, metrics
// ---------------------------------------------------------------------------------------------------------

/// A write whose publish fails answers 503 without leaving a pending record behind, and a retry with
/// the same Idempotency-Key applies it, exactly once (even though the first publish reached the stream
/// after the reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_failure_lets_a_retry_apply_once() {
    let mut s = Stack::builder().start().await;
    let body = json!({"name": "Retry Me", "provider": "openai", "modelId": "retry"});
    let key = [("idempotency-key", "publish-failure-1")];
    tokio::task::block_in_place(|| s.nats.kill());
    let r = s
        .request(Method::POST, "/api/models", Some(body.clone()), None, &key)
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["code"], "UNAVAILABLE");
    // No pending record was left for the failed publish.
    let mut c = s.store.conn();
    let recs: Vec<String> = redis::cmd("KEYS")
        .arg("{vc}:cmd:*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut pending = 0;
    for k in &recs {
        let v: String = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
        if v.contains("\"pending\"") {
            pending += 1;
        }
    }
    assert_eq!(pending, 0, "pending record left behind");
    let m = metrics_text(&s).await;
    assert_eq!(metric(&m, "vc_api_command_publish_failures_total"), 1.0);

    tokio::task::block_in_place(|| s.nats.restart());
    let ready = format!("{}/readyz", s.api_url);
    eventually("api ready again", scaled(Duration::from_secs(30)), || {
        let ready = ready.clone();
        async move {
            reqwest::get(&ready)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    })
    .await;
    let r = eventually("retry applies", scaled(Duration::from_secs(30)), || async {
        let r = s
            .request(Method::POST, "/api/models", Some(body.clone()), None, &key)
            .await;
        (r.status == 201).then_some(r).ok_or("not yet")
    })
    .await;
    assert_eq!(r.body["model"]["name"], "Retry Me");
    // A further retry answers the same outcome; the model exists once.
    let again = s
        .request(Method::POST, "/api/models", Some(body.clone()), None, &key)
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body["model"]["id"], r.body["model"]["id"]);
    let models = s.get("/api/models").await;
    assert_eq!(models.body["models"].as_array().unwrap().len(), 1);
}

/// On shutdown the API fails `/readyz` at once, keeps serving during the drain delay, then stops
/// accepting and lets an in-flight write finish (its 202); metrics count requests by route and status
/// class, published commands and outcome waits that timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_serves_then_finishes_in_flight_requests() {
    let mut s = Stack::builder()
        .command_wait(Duration::from_millis(1500))
        .start()
        .await;
    let _ = realm(&s, "Before Drain").await;
    // Without a worker, writes wait their full outcome time, then answer 202.
    for w in s.workers.drain(..) {
        w.stop().await;
    }
    let nats = s.nats_client().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let deps = vc_api::Deps {
        nats,
        store: vc_shared::store::Store::connect(&s.redis.url())
            .await
            .unwrap(),
        tail: vc_shared::store::Store::connect(&s.redis.url())
            .await
            .unwrap(),
        sealer: s.api_sealer(),
        admin_token: ADMIN_TOKEN.into(),
        command_wait: Duration::from_millis(3000),
        litellm: None,
        stream_replicas: 1,
        drain_delay: Duration::from_millis(1500),
        limits: vc_api::limits::TokenLimits::unlimited(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(vc_api::run(listener, deps, async move {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    eventually("drain api up", patience(), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await;
    let get = |p: &str| {
        http.get(format!("{base}{p}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(get("/api/realms").await.unwrap().status(), 200);

    // An in-flight write (no worker: it waits 3 s, then answers 202).
    let write = {
        let http = http.clone();
        let base = base.clone();
        tokio::spawn(async move {
            http.post(format!("{base}/api/realms"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"name": "During Drain"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "readyz fails while draining");
    assert_eq!(
        get("/api/realms").await.unwrap().status(),
        200,
        "still serving during the drain delay"
    );
    assert_eq!(
        write.await.unwrap().unwrap(),
        202,
        "in-flight write finished"
    );
    tokio::time::timeout(Duration::from_secs(20), api)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    assert!(get("/api/realms").await.is_err(), "listener closed");

    // Metrics of the stack's API: by matched route (never the raw path) and status class.
    let _ = s.get("/api/realms/does-not-exist").await;
    let r = s.post("/api/realms", json!({"name": "Pending One"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = metrics_text(&s).await;
    assert!(
        metric(
            &m,
            "vc_api_http_requests_total{method=\"GET\",route=\"/api/realms/{id}\",status=\"4xx\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "vc_api_http_requests_total{method=\"POST\",route=\"/api/realms\",status=\"2xx\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(!m.contains("does-not-exist"));
    assert!(
        metric(&m, "vc_api_commands_published_total{kind=\"realm.create\"}") >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "vc_api_command_waits_timed_out_total") >= 1.0,
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// NATS users (nats/auth.conf)
// ---------------------------------------------------------------------------------------------------------

const USERS: [&str; 4] = ["api", "worker", "edge", "integration"];

/// `nats-server` with `nats/single-auth.conf` (or `sync-always-auth.conf` on >= 2.10), passwords in its
/// environment, on a free port; killed on drop.
struct AuthNats {
    port: u16,
    passwords: HashMap<&'static str, String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl AuthNats {
    fn start() -> AuthNats {
        let dir = tempfile::Builder::new()
            .prefix("vc-nats-auth-")
            .tempdir()
            .unwrap();
        let conf = if nats_server_version() >= (2, 10, 0) {
            "sync-always-auth.conf"
        } else {
            "single-auth.conf"
        };
        let conf = repo_root().join("nats").join(conf);
        let passwords: HashMap<&'static str, String> = USERS
            .iter()
            // A letter first: nats-server parses the variable's value as a config value ("3e5…" would
            // be a number).
            .map(|u| (*u, format!("vc{}", uuid::Uuid::new_v4().simple())))
            .collect();
        let log = dir.path().join("nats.log");
        for _ in 0..5 {
            let port = free_port();
            let out = File::create(&log).unwrap();
            let mut cmd = Command::new(nats_server_bin());
            cmd.arg("-c")
                .arg(&conf)
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir.path().join("js"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            for u in USERS {
                cmd.env(
                    format!("VC_NATS_{}_PASSWORD", u.to_uppercase()),
                    &passwords[u],
                );
            }
            let mut child = cmd.spawn().expect("spawn nats-server");
            let deadline = Instant::now() + scaled(Duration::from_secs(10));
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .and_then(|s| {
                        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                        let mut line = String::new();
                        BufReader::new(s).read_line(&mut line).ok()?;
                        Some(line.contains("\"jetstream\":true"))
                    })
                    .unwrap_or(false);
                if ready {
                    return AuthNats {
                        port,
                        passwords,
                        child,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("nats-server with auth not ready:\n{}", log_tail(&log, 30));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("address already in use")
            {
                panic!("nats-server with auth exited:\n{}", log_tail(&log, 30));
            }
        }
        panic!("nats-server with auth: no free port");
    }

    /// `nats://<user>:<password>@127.0.0.1:<port>`: the form `scripts/stack` hands each service.
    fn url(&self, user: &str) -> String {
        format!(
            "nats://{user}:{}@127.0.0.1:{}",
            self.passwords[user], self.port
        )
    }
}

impl Drop for AuthNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server errors (permission violations) a client received.
type Errors = Arc<Mutex<Vec<String>>>;

/// Connects as the user named in `NATS_URL`-style URLs (`nats://user:pass@host:port`, comma-separated),
/// recording the server's errors. async-nats ignores credentials in URLs (nats-io/nats.rs#1623), so they
/// are taken from the first URL that has them and stripped from the addresses (which async-nats may log):
/// the same handling `vc_shared::bus::connect` needs for the stack's per-component users.
async fn connect(url: &str, name: &str) -> Result<(async_nats::Client, Errors), String> {
    let mut creds: Option<(String, String)> = None;
    let mut addrs = Vec::new();
    for u in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let addr: async_nats::ServerAddr = u.parse().map_err(|e| format!("{e}"))?;
        if creds.is_none() && addr.has_user_pass() {
            creds = Some((
                addr.username().unwrap_or_default().to_string(),
                addr.password().unwrap_or_default().to_string(),
            ));
        }
        let mut bare = addr.into_inner();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        addrs.push(async_nats::ServerAddr::from_url(bare).map_err(|e| e.to_string())?);
    }
    let errors: Errors = Arc::default();
    let sink = errors.clone();
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |ev| {
            let sink = sink.clone();
            async move {
                if let async_nats::Event::ServerError(e) = ev {
                    sink.lock().unwrap().push(e.to_string());
                }
            }
        });
    if let Some((user, pass)) = creds {
        opts = opts.user_and_password(user, pass);
    }
    let client = opts.connect(addrs).await.map_err(|e| e.to_string())?;
    Ok((client, errors))
}

fn violations(errors: &Errors) -> Vec<String> {
    errors
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("Permissions Violation"))
        .cloned()
        .collect()
}

/// Each component's NATS user is confined: wrong passwords are refused, the api user cannot subscribe
/// to pushes, the edge user cannot publish commands (nothing reaches the stream), and neither can read
/// commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_users_are_confined() {
    vc_tests::wait::trace_init();
    let nats = tokio::task::spawn_blocking(AuthNats::start).await.unwrap();
    let wrong = format!("nats://api:wrong-password@127.0.0.1:{}", nats.port);
    assert!(
        connect(&wrong, "intruder").await.is_err(),
        "wrong password accepted"
    );
    let anon = format!("nats://127.0.0.1:{}", nats.port);
    assert!(
        connect(&anon, "anonymous").await.is_err(),
        "no user accepted"
    );

    let (worker, worker_err) = connect(&nats.url("worker"), "worker").await.unwrap();
    let js = async_nats::jetstream::new(worker.clone());
    vc_shared::bus::ensure_streams(&js, 1).await.unwrap();
    let (api, api_err) = connect(&nats.url("api"), "api").await.unwrap();
    let (edge, edge_err) = connect(&nats.url("edge"), "edge").await.unwrap();
    let (integ, integ_err) = connect(&nats.url("integration"), "integration")
        .await
        .unwrap();

    // api: no pushes.
    let mut api_push = api.subscribe("vc.push.>").await.unwrap();
    let mut integ_push = integ.subscribe("vc.push.realm.*").await.unwrap();
    let mut edge_push = edge.subscribe("vc.push.>").await.unwrap();
    let mut edge_cmd = edge.subscribe("vc.cmd.>").await.unwrap();
    for c in [&api, &integ, &edge] {
        c.flush().await.unwrap();
    }
    worker
        .publish("vc.push.realm.r1", "push".into())
        .await
        .unwrap();
    worker.flush().await.unwrap();
    let got = tokio::time::timeout(scaled(Duration::from_secs(5)), edge_push.next())
        .await
        .expect("the edge receives pushes")
        .unwrap();
    assert_eq!(got.subject.as_str(), "vc.push.realm.r1");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), api_push.next())
            .await
            .map(|m| m.is_none())
            .unwrap_or(true)
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), integ_push.next())
            .await
            .map(|m| m.is_none())
            .unwrap_or(true)
    );

    // edge: no commands, neither publishing (core or JetStream) nor reading them.
    let mut stream = js.get_stream("VC_CMD").await.unwrap();
    let before = stream.info().await.unwrap().state.messages;
    edge.publish("vc.cmd.model.delete", "{\"id\":\"x\"}".into())
        .await
        .unwrap();
    let edge_js = async_nats::jetstream::new(edge.clone());
    let ack = edge_js
        .publish("vc.cmd.model.delete", "{\"id\":\"y\"}".into())
        .await;
    if let Ok(ack) = ack {
        assert!(
            tokio::time::timeout(Duration::from_secs(3), ack)
                .await
                .map(|r| r.is_err())
                .unwrap_or(true),
            "edge got a publish ack for a command"
        );
    }
    edge.flush().await.unwrap();
    // The worker may publish commands? No: only api and integration.
    worker
        .publish("vc.cmd.model.delete", "{}".into())
        .await
        .unwrap();
    worker.flush().await.unwrap();
    // The integration user may.
    let ok = async_nats::jetstream::new(integ.clone())
        .publish(
            "vc.cmd.realm.create",
            "{\"name\":\"From integration\"}".into(),
        )
        .await
        .unwrap()
        .await;
    assert!(ok.is_ok(), "integration publish: {ok:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = stream.info().await.unwrap().state.messages;
    assert_eq!(
        after,
        before + 1,
        "only the integration's command was stored"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), edge_cmd.next())
            .await
            .map(|m| m.is_none())
            .unwrap_or(true)
    );

    eventually("violations reported", patience(), || async {
        let (a, e, i, w) = (
            violations(&api_err),
            violations(&edge_err),
            violations(&integ_err),
            violations(&worker_err),
        );
        let ok = a
            .iter()
            .any(|v| v.contains("Subscription to \"vc.push.>\""))
            && i.iter()
                .any(|v| v.contains("Subscription to \"vc.push.realm.*\""))
            && e.iter()
                .any(|v| v.contains("Publish to \"vc.cmd.model.delete\""))
            && e.iter().any(|v| v.contains("Subscription to \"vc.cmd.>\""))
            && w.iter()
                .any(|v| v.contains("Publish to \"vc.cmd.model.delete\""));
        ok.then_some(()).ok_or(format!(
            "api {a:?} edge {e:?} integration {i:?} worker {w:?}"
        ))
    })
    .await;
}

/// A whole flow with each component on its own NATS user: the API publishes commands, the worker
/// applies them and pushes, an edge delivers configs to an agent, an integration submits a command and
/// follows the events (token and auth-failure events from the API included); no component hits a
/// permission violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_with_per_component_users() {
    vc_tests::wait::trace_init();
    let nats = tokio::task::spawn_blocking(AuthNats::start).await.unwrap();
    let redis = tokio::task::spawn_blocking(vc_tests::servers::RedisServer::start)
        .await
        .unwrap();
    let emu = litellm_emu::Emulator::spawn(litellm_emu::EmulatorConfig {
        master_key: "sk-emu-master".into(),
        ..Default::default()
    })
    .await;
    let litellm = vc_shared::config::LitellmSettings {
        base_url: emu.base_url.clone(),
        master_key: "sk-emu-master".into(),
        public_url: "http://litellm.public.example:4000".into(),
        timeout: Duration::from_secs(3),
    };
    let secret = vc_shared::crypto::SecretKey::generate();
    let sealer = vc_shared::crypto::Sealer::new(secret.clone());
    let api_sealer = vc_shared::crypto::Sealer::restricted(
        secret.purpose_key(vc_shared::crypto::Purpose::Command),
        Vec::new(),
    )
    .unwrap();
    let redis_url = redis.url();
    let store = || vc_shared::store::Store::connect(&redis_url);

    // Worker (creates the streams).
    let (wc, worker_err) = connect(&nats.url("worker"), "vc-worker").await.unwrap();
    let worker = tokio::spawn(vc_worker::run(
        None,
        vc_worker::Deps {
            nats: wc,
            store: store().await.unwrap(),
            sealer: sealer.clone(),
            litellm: Some(litellm.clone()),
            stream_replicas: 1,
            reconcile_every: Duration::ZERO,
            key_rotation_grace: Duration::from_secs(30),
            budget: Default::default(),
        },
        std::future::pending::<()>(),
    ));
    // API.
    let (ac, api_err) = connect(&nats.url("api"), "vc-api").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = tokio::spawn(vc_api::run(
        listener,
        vc_api::Deps {
            nats: ac,
            store: store().await.unwrap(),
            tail: store().await.unwrap(),
            sealer: api_sealer,
            admin_token: ADMIN_TOKEN.into(),
            command_wait: Duration::from_secs(10),
            litellm: Some(litellm.clone()),
            stream_replicas: 1,
            drain_delay: Duration::ZERO,
            limits: vc_api::limits::TokenLimits::unlimited(),
        },
        std::future::pending::<()>(),
    ));
    // Edge.
    let (ec, edge_err) = connect(&nats.url("edge"), "vc-edge").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws = format!("ws://{}/ws", listener.local_addr().unwrap());
    let edge = tokio::spawn(vc_edge::run(
        listener,
        vc_edge::Deps {
            nats: ec,
            store: store().await.unwrap(),
            sealer: vc_tests::stack::edge_sealer(&secret, &[]),
            config: vc_edge::EdgeConfig::new("edge-auth-1"),
            metrics: vc_edge::Metrics::new(),
            probe: vc_edge::Probe::default(),
        },
        std::future::pending::<()>(),
    ));
    // Integration: follows events.
    let (integ, integ_err) = connect(&nats.url("integration"), "integration")
        .await
        .unwrap();
    let mut events = integ.subscribe("vc.evt.>").await.unwrap();
    integ.flush().await.unwrap();

    let http = reqwest::Client::new();
    eventually("api ready", scaled(Duration::from_secs(30)), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await;
    let send = |method: Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                text,
            )
        }
    };

    let (st, m, t) = send(
        Method::POST,
        "/api/models",
        Some(json!({"name": "Flow", "provider": "openai", "modelId": "flow", "apiKey": "sk-up-flow"})),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let model_id = m["model"]["id"].as_str().unwrap().to_string();
    let (st, r, t) = send(Method::POST, "/api/realms", Some(json!({"name": "Flow"}))).await;
    assert_eq!(st, 201, "{t}");
    let realm_id = r["realm"]["id"].as_str().unwrap().to_string();
    let (st, _, t) = send(
        Method::POST,
        &format!("/api/models/{model_id}/realms"),
        Some(json!({"realmId": realm_id})),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let realm_key = emu
        .emu
        .keys()
        .into_iter()
        .find(|k| k.key_alias.as_deref() == Some(&format!("vc-realm-{realm_id}")))
        .unwrap()
        .key;

    // An agent on the edge gets its realm config, then a manual one, pushed through NATS.
    let (key, did) = new_agent();
    let (st, _, t) = send(
        Method::POST,
        "/api/agents",
        Some(json!({"did": did, "name": "flow agent"})),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let handle = vc_agent::AgentClient::new(key, vc_agent::AgentOptions::new(vec![ws])).spawn();
    eventually("agent connected", patience(), || async {
        handle.status().configs.front().cloned()
    })
    .await;
    let (st, _, t) = send(
        Method::POST,
        &format!("/api/realms/{realm_id}/agents"),
        Some(json!({"agentDid": did})),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let realm_cfg = eventually("realm config pushed", patience(), || async {
        handle
            .status()
            .current()
            .filter(|c| c.realm_id.as_deref() == Some(&realm_id))
            .cloned()
    })
    .await;
    assert_eq!(
        realm_cfg.config.unwrap().api_key.as_deref(),
        Some(realm_key.as_str())
    );
    let (st, _, t) = send(
        Method::PUT,
        &format!("/api/agents/{did}/llm-config"),
        Some(json!({"provider": "openai", "model": "gpt-flow", "apiKey": "sk-manual-flow"})),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    eventually("manual config pushed", patience(), || async {
        handle
            .status()
            .current()
            .and_then(|c| c.config.clone())
            .filter(|c| c.model == "gpt-flow")
    })
    .await;

    // The integration submits a command and gets its outcome on an _INBOX subject.
    let reply = format!("_INBOX.integration.{}", uuid::Uuid::new_v4().simple());
    let mut outcomes = integ.subscribe(reply.clone()).await.unwrap();
    integ.flush().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    let cmd_id = uuid::Uuid::now_v7().to_string();
    headers.insert("Nats-Msg-Id", cmd_id.as_str());
    headers.insert("Vc-Reply-To", reply.as_str());
    async_nats::jetstream::new(integ.clone())
        .publish_with_headers(
            "vc.cmd.realm.create",
            headers,
            "{\"name\":\"From Integration\"}".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let outcome = tokio::time::timeout(scaled(Duration::from_secs(15)), outcomes.next())
        .await
        .expect("outcome")
        .unwrap();
    let outcome: Value = serde_json::from_slice(&outcome.payload).unwrap();
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["commandId"], json!(cmd_id));

    // Confinement: a command whose Vc-Reply-To names the JetStream API (a purge of the audit stream) and
    // whose Vc-Actor claims to be the admin. The command applies; nothing is purged; the actor is the
    // NATS user's.
    let integ_js = async_nats::jetstream::new(integ.clone());
    let evt_state = || async {
        let mut evt = integ_js.get_stream("VC_EVT").await.unwrap();
        evt.info().await.unwrap().state.clone()
    };
    let evt_before = evt_state().await;
    assert!(evt_before.messages > 0);
    let forged_id = uuid::Uuid::now_v7().to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", forged_id.as_str());
    headers.insert("Vc-Reply-To", "$JS.API.STREAM.PURGE.VC_EVT");
    headers.insert("Vc-Actor", "admin");
    integ_js
        .publish_with_headers(
            "vc.cmd.realm.create",
            headers,
            "{\"name\":\"Forged\"}".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let forged_realm = eventually("the forged command applied", patience(), || async {
        let (st, c, _) = send(Method::GET, &format!("/api/commands/{forged_id}"), None).await;
        (st == 200 && c["status"] == "succeeded")
            .then(|| c["result"]["realm"]["id"].as_str().unwrap().to_string())
    })
    .await;
    let (_, audit, _) = send(Method::GET, "/api/audit?limit=1000", None).await;
    let created = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "realm.created" && e["subject"] == format!("realm:{forged_realm}"))
        .cloned()
        .expect("the audit has the forged command's event");
    assert_eq!(created["actor"], "integration", "{created}");
    // The API's own subject is not the integration's: a publish there is refused by NATS.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
    headers.insert("Vc-Actor", "admin");
    integ
        .publish_with_headers(
            "vc.cmd.api.realm.create",
            headers,
            "{\"name\":\"Posing as the API\"}".into(),
        )
        .await
        .unwrap();
    integ.flush().await.unwrap();
    // Nor can it purge the audit stream itself; and VC_EVT refuses purges from anyone.
    assert!(integ_js
        .get_stream("VC_EVT")
        .await
        .unwrap()
        .purge()
        .await
        .is_err());
    let evt_after = evt_state().await;
    assert_eq!(
        evt_after.first_sequence, evt_before.first_sequence,
        "VC_EVT was purged"
    );
    assert!(evt_after.messages > evt_before.messages);
    let (_, realms, _) = send(Method::GET, "/api/realms?q=Posing", None).await;
    assert_eq!(
        realms["realms"],
        json!([]),
        "the integration posed as the API"
    );

    // API events: a token, an auth failure.
    let (st, _, t) = send(
        Method::POST,
        "/api/tokens",
        Some(json!({"name": "flow", "role": "realm-admin", "realmIds": [realm_id]})),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let denied = http
        .get(format!("{base}/api/models"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let mut kinds = std::collections::BTreeSet::new();
    let want = [
        "realm.created",
        "token.created",
        "auth.failed",
        "agent.config.pushed",
    ];
    let deadline = Instant::now() + scaled(Duration::from_secs(15));
    while !want.iter().all(|k| kinds.contains(*k)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(m)) = tokio::time::timeout(left, events.next()).await else {
            panic!("events seen {kinds:?}, want {want:?}");
        };
        let ev: Value = serde_json::from_slice(&m.payload).unwrap();
        let text = String::from_utf8_lossy(&m.payload);
        for secret in [realm_key.as_str(), "sk-up-flow", "sk-manual-flow"] {
            assert!(!text.contains(secret), "secret in event {ev}");
        }
        kinds.insert(ev["kind"].as_str().unwrap().to_string());
    }

    // The integration's two refused attempts above, and nothing else.
    let expected = |v: &String| {
        v.contains("Publish to \"vc.cmd.api.realm.create\"")
            || v.contains("$JS.API.STREAM.PURGE.VC_EVT")
    };
    for (who, errs) in [
        ("api", &api_err),
        ("worker", &worker_err),
        ("edge", &edge_err),
        ("integration", &integ_err),
    ] {
        let v: Vec<String> = violations(errs)
            .into_iter()
            .filter(|v| !expected(v))
            .collect();
        assert!(v.is_empty(), "{who} hit permission violations: {v:?}");
    }
    handle.abort();
    api.abort();
    edge.abort();
    worker.abort();
}
