//! Secrets scan: run a full scenario (models with upstream keys, realms with virtual keys, grants,
//! agents on an edge receiving their configs, manual keys, revoke, delete) while capturing every log
//! line, every NATS message, every REST response and, at the end, a dump of every Redis key; then look
//! for every secret the scenario created. The only place a key may appear in clear is the agent's own
//! WebSocket `llm_config` (not captured here).

mod edge_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_support::*;
use futures::StreamExt;
use serde_json::json;
use vc_edge::EdgeConfig;
use vc_shared::crypto::Purpose;
use vc_tests::assert_eventually;
use vc_tests::stack::{Stack, ADMIN_TOKEN};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn redis_dump(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
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
        let v: redis::Value = match t.as_str() {
            "string" => redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(&k)
                .arg("-")
                .arg("+")
                .query_async(&mut c)
                .await
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
                .unwrap(),
            _ => redis::Value::Nil,
        };
        out.push_str(&format!("{k} => {v:?}\n"));
    }
    out
}

/// Zero hits for every secret in logs, NATS traffic, REST responses and a Redis dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_bus_responses_or_redis() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace,h2=info,hyper=info,hyper_util=info,reqwest=info,tungstenite=info,tokio_tungstenite=info,async_nats=debug,redis=info")
        .with_writer(move || writer.clone())
        .init();

    let s = Stack::builder().litellm(true).start().await;
    let nc = s.nats_client().await;
    let mut all = nc.subscribe(">").await.unwrap();
    let bus = Arc::new(Mutex::new(Vec::<u8>::new()));
    let bus_w = bus.clone();
    let tap = tokio::spawn(async move {
        while let Some(m) = all.next().await {
            let mut b = bus_w.lock().unwrap_or_else(|e| e.into_inner());
            b.extend_from_slice(m.subject.as_bytes());
            b.push(b' ');
            if let Some(h) = &m.headers {
                b.extend_from_slice(format!("{h:?}").as_bytes());
            }
            b.extend_from_slice(&m.payload);
            b.push(b'\n');
        }
    });
    let edge = spawn_edge(
        &s.nats.url(),
        &s.redis.url(),
        &s.secret,
        EdgeConfig::new("edge-s1"),
    )
    .await;

    let mut responses = String::new();
    let upstream = [
        "sk-upstream-alpha-secret-1111",
        "sk-upstream-beta-secret-2222",
    ];
    let manual = "sk-manual-agent-secret-3333";
    let mut models = Vec::new();
    for (i, key) in upstream.iter().enumerate() {
        let r = s.post("/api/models", json!({"name": format!("Model {i}"), "provider": "openai-compatible", "modelId": format!("m{i}"), "baseUrl": "http://upstream.example/v1", "apiKey": key})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        responses.push_str(&r.text);
        models.push(r.body["model"]["id"].as_str().unwrap().to_string());
    }
    let realm = s.post("/api/realms", json!({"name": "Secret Realm"})).await;
    responses.push_str(&realm.text);
    let realm_id = realm.body["realm"]["id"].as_str().unwrap().to_string();
    for m in &models {
        let g = s
            .post(
                &format!("/api/models/{m}/realms"),
                json!({"realmId": realm_id, "monthlyBudgetUsd": 10}),
            )
            .await;
        assert_eq!(g.status, 200, "{}", g.text);
        responses.push_str(&g.text);
    }
    let ks = keys(2);
    let mut agents = Vec::new();
    for (k, did) in &ks {
        responses.push_str(
            &s.post("/api/agents", json!({"did": did, "name": "a"}))
                .await
                .text,
        );
        agents.push(spawn_agent(k, agent_opts(&[&edge])));
    }
    let join = s
        .post(
            &format!("/api/realms/{realm_id}/agents"),
            json!({"agentDid": ks[0].1}),
        )
        .await;
    assert_eq!(join.body["llmPushed"], true, "{}", join.text);
    responses.push_str(&join.text);
    let put = s
        .put(
            &format!("/api/agents/{}/llm-config", ks[1].1),
            json!({"provider": "openai", "model": "gpt-4o", "apiKey": manual}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    responses.push_str(&put.text);
    let reg = s
        .put(
            &format!("/api/agents/{}/llm-config", ks[1].1),
            json!({"registryModelId": models[1]}),
        )
        .await;
    responses.push_str(&reg.text);
    // The agents do receive their keys (over the WebSocket only).
    assert_eventually!(
        agents[0]
            .status()
            .current()
            .is_some_and(|c| c.config.as_ref().is_some_and(|x| x.api_key.is_some())),
        Duration::from_secs(15)
    );
    assert_eventually!(
        agents[1].status().current().is_some_and(|c| c
            .config
            .as_ref()
            .is_some_and(|x| x.api_key.as_deref() == Some(upstream[1]))),
        Duration::from_secs(15)
    );
    let realm_key = agents[0]
        .status()
        .current()
        .unwrap()
        .config
        .clone()
        .unwrap()
        .api_key
        .unwrap();
    for path in [
        "/api/models".to_string(),
        format!("/api/models/{}", models[0]),
        "/api/realms".to_string(),
        format!("/api/realms/{realm_id}"),
        format!("/api/realms/{realm_id}/models"),
        "/api/agents".to_string(),
        format!("/api/agents/{}/llm-config", ks[0].1),
        format!("/api/agents/{}/llm-config", ks[1].1),
        format!("/api/agents/{}/realm-llm", ks[0].1),
        "/api/audit?limit=1000".to_string(),
        "/api/litellm/status".to_string(),
        "/api/openapi.json".to_string(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        responses.push_str(&r.text);
    }
    responses.push_str(
        &s.delete(&format!("/api/models/{}/realms/{realm_id}", models[0]))
            .await
            .text,
    );
    responses.push_str(&s.delete(&format!("/api/realms/{realm_id}")).await.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tap.abort();

    let mut secrets: Vec<String> = upstream.iter().map(|s| s.to_string()).collect();
    secrets.push(manual.into());
    secrets.push(realm_key.clone());
    secrets.push(ADMIN_TOKEN.into());
    secrets.push("sk-emu-master".into());
    secrets.push(s.secret.to_base64());
    // The keys derived for the edge and the API (the key part of `<purpose>:<key id>:<base64>`).
    for p in [Purpose::AgentConfigKey, Purpose::Command] {
        let text = s.secret.purpose_key(p).to_text();
        secrets.push(text.rsplit(':').next().unwrap().to_string());
    }
    let dump = redis_dump(&s.redis.url()).await;
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let bus = String::from_utf8_lossy(&bus.lock().unwrap()).into_owned();
    assert!(
        logs.len() > 10_000,
        "logs were captured ({} bytes)",
        logs.len()
    );
    assert!(
        bus.contains("vc.cmd.api.model.register") && bus.contains("vc.push."),
        "bus traffic was captured"
    );
    assert!(dump.contains("{vc}:model:"), "redis was dumped");
    for secret in &secrets {
        for (name, text) in [
            ("logs", &logs),
            ("nats", &bus),
            ("responses", &responses),
            ("redis", &dump),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "secret {}… found in {name}",
                &secret[..6]
            );
        }
    }
    for a in agents {
        a.abort();
    }
}
