//! Model registry end to end: REST → NATS JetStream → worker → Redis + LiteLLM (emulator) and back.

use std::time::Duration;

use serde_json::json;
use vc_tests::stack::Stack;
use vc_tests::wait::eventually;

fn llama() -> serde_json::Value {
    json!({"name": "Llama 3 (local)", "provider": "openai-compatible", "modelId": "llama3-8b",
           "baseUrl": "http://ollama:11434/v1", "apiKey": "sk-upstream-secret-1"})
}

/// Register, read, update, delete: shapes, write-only key, litellm state synced, deployment by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_crud_syncs_litellm_by_id() {
    let s = Stack::builder().litellm(true).start().await;
    let r = s.post("/api/models", llama()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let m = &r.body["model"];
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["litellmModelName"], "openai-compatible/llama-3-local");
    assert_eq!(m["hasApiKey"], true);
    assert_eq!(m["status"], "active");
    assert_eq!(m["realmCount"], 0);
    assert_eq!(m["litellm"]["state"], "synced", "{}", r.text);
    assert!(!r.text.contains("sk-upstream-secret-1"));
    let emu = &s.emu.as_ref().unwrap().emu;
    let deps = emu.deployments();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].id, id);
    assert_eq!(deps[0].model_name, "openai-compatible/llama-3-local");
    assert_eq!(deps[0].litellm_params["model"], "openai/llama3-8b");

    let g = s.get(&format!("/api/models/{id}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["model"]["realms"], json!([]));
    assert!(!g.text.contains("sk-upstream"));
    let list = s.get("/api/models").await;
    assert_eq!(list.body["models"].as_array().unwrap().len(), 1);

    // Rename keeps the LiteLLM name; a changed upstream updates the same deployment id, never a second one.
    let u = s
        .put(
            &format!("/api/models/{id}"),
            json!({"name": "Renamed", "modelId": "llama3-70b", "apiKey": null}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["model"]["name"], "Renamed");
    assert_eq!(
        u.body["model"]["litellmModelName"],
        "openai-compatible/llama-3-local"
    );
    assert_eq!(u.body["model"]["hasApiKey"], false);
    let deps = emu.deployments();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(deps[0].id, id);
    assert_eq!(deps[0].litellm_params["model"], "openai/llama3-70b");

    // Clash on the LiteLLM name.
    let c = s.post("/api/models", json!({"name": "llama 3 local", "provider": "openai-compatible", "modelId": "x", "baseUrl": "http://a"})).await;
    assert_eq!(c.status, 409, "{}", c.text);
    assert_eq!(c.body["code"], "CONFLICT");

    let d = s.delete(&format!("/api/models/{id}")).await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert!(emu.deployments().is_empty());
    assert_eq!(s.get(&format!("/api/models/{id}")).await.status, 404);
}

/// Prices reach the deployment's `litellm_params`; a bad one is a 400 naming its field; a change or a
/// clear re-creates the deployment under the same id and is listed in `model.updated`; absent keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_sync_into_the_deployment() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = &s.emu.as_ref().unwrap().emu;
    let priced = |input: serde_json::Value, output: serde_json::Value| {
        let mut b = llama();
        b["inputCostPerToken"] = input;
        b["outputCostPerToken"] = output;
        b
    };
    for (body, msg) in [
        (
            priced(json!(-0.001), json!(0.001)),
            "inputCostPerToken must be a number >= 0",
        ),
        (
            priced(json!(0.001), json!(1001)),
            "outputCostPerToken is too large (at most 1000)",
        ),
        (priced(json!("0.001"), json!(0.001)), "inputCostPerToken: "),
    ] {
        let r = s.post("/api/models", body.clone()).await;
        assert_eq!(r.status, 400, "{body} → {}", r.text);
        assert_eq!(r.body["code"], "BAD_REQUEST");
        let e = r.body["error"].as_str().unwrap();
        assert!(e.starts_with(msg), "{body} → {e}");
    }
    assert!(emu.deployments().is_empty());

    let r = s
        .post("/api/models", priced(json!(0.001), json!(0.000002)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let m = &r.body["model"];
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["inputCostPerToken"], 0.001);
    assert_eq!(m["outputCostPerToken"], 0.000002);
    assert_eq!(m["litellm"]["state"], "synced", "{}", r.text);
    let deps = emu.deployments();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(deps[0].litellm_params["input_cost_per_token"], 0.001);
    assert_eq!(deps[0].litellm_params["output_cost_per_token"], 0.000002);
    let path = format!("/api/models/{id}");
    let g = s.get(&path).await;
    assert_eq!(g.body["model"]["inputCostPerToken"], 0.001, "{}", g.text);
    let listed = s.get("/api/models").await;
    assert_eq!(listed.body["models"][0]["outputCostPerToken"], 0.000002);

    // Absent keeps: a rename leaves the prices and the deployment alone.
    let (news, deletes) = (
        emu.request_count("/model/new"),
        emu.request_count("/model/delete"),
    );
    let u = s.put(&path, json!({"name": "Llama renamed"})).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["model"]["inputCostPerToken"], 0.001);
    assert_eq!(u.body["model"]["outputCostPerToken"], 0.000002);
    assert_eq!(emu.request_count("/model/new"), news);
    assert_eq!(emu.request_count("/model/delete"), deletes);

    // A bad price on update changes nothing.
    let u = s.put(&path, json!({"outputCostPerToken": -1})).await;
    assert_eq!(u.status, 400, "{}", u.text);
    assert_eq!(u.body["error"], "outputCostPerToken must be a number >= 0");

    // A new price re-creates the deployment (delete + new, same id); the other price is kept.
    let u = s.put(&path, json!({"inputCostPerToken": 0.0000005})).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["model"]["inputCostPerToken"], 0.0000005);
    assert_eq!(u.body["model"]["outputCostPerToken"], 0.000002);
    assert_eq!(u.body["model"]["litellm"]["state"], "synced", "{}", u.text);
    assert_eq!(emu.request_count("/model/new"), news + 1);
    assert_eq!(emu.request_count("/model/delete"), deletes + 1);
    let deps = emu.deployments();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(deps[0].id, id);
    assert_eq!(deps[0].litellm_params["input_cost_per_token"], 0.0000005);
    assert_eq!(deps[0].litellm_params["output_cost_per_token"], 0.000002);
    assert_eq!(deps[0].litellm_params["model"], "openai/llama3-8b");

    // `null` clears: back to LiteLLM's own price, the parameter gone from the deployment.
    let u = s.put(&path, json!({"outputCostPerToken": null})).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["model"]["outputCostPerToken"], json!(null));
    assert_eq!(u.body["model"]["inputCostPerToken"], 0.0000005);
    assert_eq!(emu.request_count("/model/new"), news + 2);
    let deps = emu.deployments();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(deps[0].id, id);
    assert!(!deps[0].litellm_params.contains_key("output_cost_per_token"));
    assert_eq!(deps[0].litellm_params["input_cost_per_token"], 0.0000005);

    // The audit log names what changed.
    let events = s.get("/api/audit?limit=1000").await;
    let changed: Vec<serde_json::Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "model.updated")
        .map(|e| e["details"]["changed"].clone())
        .collect();
    assert_eq!(
        changed,
        [
            json!(["name"]),
            json!(["inputCostPerToken"]),
            json!(["outputCostPerToken"])
        ]
    );

    // A model without prices: null in its view, nothing in its deployment.
    let r = s
        .post(
            "/api/models",
            json!({"name": "GPT 4o", "provider": "openai", "modelId": "gpt-4o"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["model"]["inputCostPerToken"], json!(null));
    assert_eq!(r.body["model"]["outputCostPerToken"], json!(null));
    let plain = emu
        .deployments()
        .into_iter()
        .find(|d| d.model_name == "openai/gpt-4o")
        .unwrap();
    assert!(!plain.litellm_params.contains_key("input_cost_per_token"));
    assert!(!plain.litellm_params.contains_key("output_cost_per_token"));
}

/// A realm key's call to a priced model is charged at the model's prices (10 prompt + 5 completion
/// tokens at 0.001 cost 0.015 USD, as on the real proxy), at the new ones after a change, and at
/// LiteLLM's default once they are cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_charged_at_the_model_prices() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = &s.emu.as_ref().unwrap().emu;
    let mut body = llama();
    body["inputCostPerToken"] = json!(0.001);
    body["outputCostPerToken"] = json!(0.001);
    let m = s.post("/api/models", body).await;
    assert_eq!(m.status, 201, "{}", m.text);
    let id = m.body["model"]["id"].as_str().unwrap().to_string();
    let name = m.body["model"]["litellmModelName"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post("/api/realms", json!({"name": "Priced"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let realm = r.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{id}/realms"),
            json!({"realmId": realm}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let key = emu.keys()[0].key.clone();
    // The cost LiteLLM reports for one call with the realm's key.
    let cost = || async {
        let r = s
            .http
            .post(format!(
                "{}/chat/completions",
                s.emu.as_ref().unwrap().base_url
            ))
            .bearer_auth(&key)
            .json(&json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let c = r.headers()["x-litellm-response-cost"].to_str().unwrap();
        c.parse::<f64>().unwrap()
    };
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let c = cost().await;
    assert!(near(c, 0.015), "{c}");
    let u = s
        .put(
            &format!("/api/models/{id}"),
            json!({"inputCostPerToken": 0.002, "outputCostPerToken": 0}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    let c = cost().await;
    assert!(near(c, 0.02), "{c}");
    let u = s
        .put(
            &format!("/api/models/{id}"),
            json!({"inputCostPerToken": null, "outputCostPerToken": null}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    let c = cost().await;
    let default = litellm_emu::DEFAULT_SPEND_PER_REQUEST;
    assert!(near(c, default), "{c} (default {default})");
}

/// Every invalid field is a 400 naming it; auth is required; bodies must be JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_auth() {
    let s = Stack::builder().start().await;
    let cases = [
        (json!({}), "name is required"),
        (json!({"name": "x"}), "provider is required"),
        (
            json!({"name": "x", "provider": "azure", "modelId": "m"}),
            "provider must be one of",
        ),
        (
            json!({"name": "x", "provider": "openai"}),
            "modelId is required",
        ),
        (
            json!({"name": "x", "provider": "ollama", "modelId": "m"}),
            "baseUrl is required",
        ),
        (
            json!({"name": "x", "provider": "openai", "modelId": "m", "baseUrl": "not a url"}),
            "baseUrl must be",
        ),
        (
            json!({"name": 5, "provider": "openai", "modelId": "m"}),
            "name",
        ),
        (
            json!({"name": "x", "provider": "openai", "modelId": "m", "description": ["a"]}),
            "description",
        ),
        (
            json!({"name": "!!!", "provider": "openai", "modelId": "m"}),
            "name must contain",
        ),
    ];
    for (body, msg) in cases {
        let r = s.post("/api/models", body.clone()).await;
        assert_eq!(r.status, 400, "{body} → {}", r.text);
        assert_eq!(r.body["code"], "BAD_REQUEST");
        assert!(
            r.body["error"].as_str().unwrap().contains(msg),
            "{body} → {}",
            r.text
        );
    }
    let r = s
        .request(reqwest::Method::GET, "/api/models", None, Some(""), &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "UNAUTHORIZED");
    let r = s
        .request(
            reqwest::Method::GET,
            "/api/models",
            None,
            Some("wrong-token"),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let raw = s
        .http
        .post(format!("{}/api/models", s.api_url))
        .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 415);
    let raw = s
        .http
        .post(format!("{}/api/models", s.api_url))
        .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let big = "x".repeat(1024 * 1024 + 10);
    let raw = s
        .http
        .post(format!("{}/api/models", s.api_url))
        .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 413);
    assert_eq!(s.get("/api/nope").await.status, 404);
    let u = s
        .put("/api/models/does-not-exist", json!({"name": "y"}))
        .await;
    assert_eq!(u.status, 404, "{}", u.text);
}

/// LiteLLM unset: models still register, state "skipped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_unset_is_skipped() {
    let s = Stack::builder().start().await;
    let r = s
        .post(
            "/api/models",
            json!({"name": "GPT 4o", "provider": "openai", "modelId": "gpt-4o"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["model"]["litellm"]["state"], "skipped", "{}", r.text);
    assert_eq!(r.body["model"]["litellmModelName"], "openai/gpt-4o");
}

/// LiteLLM answering 500: state error with lastError, then synced once it recovers (retried with backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_failure_then_recovery() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    emu.fail_next("/model", 3, 500);
    let r = s
        .post(
            "/api/models",
            json!({"name": "Claude", "provider": "anthropic", "modelId": "claude-3"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["model"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["model"]["litellm"]["state"], "error", "{}", r.text);
    assert!(r.body["model"]["litellm"]["lastError"]
        .as_str()
        .unwrap()
        .contains("500"));
    let path = format!("/api/models/{id}");
    eventually(
        "model synced after LiteLLM recovers",
        Duration::from_secs(30),
        || async {
            let g = s.get(&path).await;
            (g.body["model"]["litellm"]["state"] == "synced").then_some(())
        },
    )
    .await;
    assert_eq!(emu.deployments().len(), 1);
    assert_eq!(
        emu.deployments()[0].litellm_params["model"],
        "anthropic/claude-3"
    );
}

/// Idempotency-Key: a retried request returns the first outcome and applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_applies_once() {
    let s = Stack::builder().litellm(true).start().await;
    let body = json!({"name": "Mistral", "provider": "openai-compatible", "modelId": "mistral", "baseUrl": "http://m:1"});
    let h = [("Idempotency-Key", "abc-123")];
    let a = s
        .request(
            reqwest::Method::POST,
            "/api/models",
            Some(body.clone()),
            None,
            &h,
        )
        .await;
    let b = s
        .request(reqwest::Method::POST, "/api/models", Some(body), None, &h)
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(a.body["model"]["id"], b.body["model"]["id"]);
    assert_eq!(
        s.get("/api/models").await.body["models"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.emu.as_ref().unwrap().emu.deployments().len(), 1);
}

/// Commands straight on NATS: outcome on Vc-Reply-To; a replayed Nats-Msg-Id adds nothing; malformed
/// payloads fail with BAD_REQUEST once and land in vc.dlq.cmd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_command_interface() {
    use futures::StreamExt;
    let s = Stack::builder().litellm(true).start().await;
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut replies = nc.subscribe("_INBOX.test.replies.>").await.unwrap();
    let mut dlq = nc.subscribe("vc.dlq.cmd").await.unwrap();
    let body = serde_json::to_vec(
        &json!({"name": "Gemini", "provider": "google", "modelId": "gemini-pro", "apiKey": "sk-g",
                "outputCostPerToken": 0.00001}),
    )
    .unwrap();
    for _ in 0..2 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "ext-cmd-1");
        h.insert("Vc-Reply-To", "_INBOX.test.replies.1");
        js.publish_with_headers("vc.cmd.model.register", h, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let msg = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .unwrap()
        .unwrap();
    let o: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(o["commandId"], "ext-cmd-1");
    assert_eq!(o["status"], "succeeded", "{o}");
    assert_eq!(o["result"]["model"]["provider"], "google");
    assert_eq!(o["result"]["model"]["outputCostPerToken"], 0.00001);
    assert_eq!(o["result"]["model"]["inputCostPerToken"], json!(null));
    let cmd = s.get("/api/commands/ext-cmd-1").await;
    assert_eq!(cmd.status, 200);
    assert_eq!(cmd.body["status"], "succeeded");
    assert_eq!(cmd.body["kind"], "model.register");
    assert!(cmd.body.get("effects").is_none());

    // Malformed: not JSON.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "ext-bad-1");
    h.insert("Vc-Reply-To", "_INBOX.test.replies.2");
    js.publish_with_headers("vc.cmd.model.register", h, "{{{".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .unwrap()
        .unwrap();
    let o: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(o["status"], "failed");
    assert_eq!(o["error"]["code"], "BAD_REQUEST");
    let d = tokio::time::timeout(Duration::from_secs(15), dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&d.payload[..], b"{{{");
    // Malformed with a key in it: the dead letter keeps everything but the key.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "ext-bad-key");
    h.insert("Vc-Reply-To", "_INBOX.test.replies.2");
    js.publish_with_headers(
        "vc.cmd.model.register",
        h,
        br#"{"name":"Leaky","apiKey":"sk-leaked-into-dlq","provider":"#
            .to_vec()
            .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .unwrap()
        .unwrap();
    let o: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(o["status"], "failed");
    let d = tokio::time::timeout(Duration::from_secs(15), dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &d.payload[..],
        br#"{"name":"Leaky","apiKey":"<redacted>","provider":"#
    );
    assert_eq!(
        d.headers
            .as_ref()
            .and_then(|h| h.get("Vc-Dlq-Redacted"))
            .map(|v| v.as_str()),
        Some("true")
    );
    // Invalid field: failed outcome, no DLQ; the stream keeps flowing.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "ext-bad-2");
    h.insert("Vc-Reply-To", "_INBOX.test.replies.3");
    js.publish_with_headers(
        "vc.cmd.model.register",
        h,
        br#"{"name":"x"}"#.to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(15), replies.next())
        .await
        .unwrap()
        .unwrap();
    let o: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(o["error"]["message"], "provider is required");
    assert_eq!(s.emu.as_ref().unwrap().emu.deployments().len(), 1);
    assert_eq!(
        s.get("/api/models").await.body["models"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A worker killed mid-stream loses nothing: every acknowledged command is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_restart_loses_nothing() {
    let mut s = Stack::builder()
        .litellm(true)
        .workers(1)
        .command_wait(Duration::from_millis(300))
        .start()
        .await;
    let nc = s.nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let n = 40;
    for i in 0..n {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("burst-{i}").as_str());
        let body = serde_json::to_vec(&json!({"name": format!("model {i}"), "provider": "openai", "modelId": format!("m{i}")})).unwrap();
        js.publish_with_headers("vc.cmd.model.register", h, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
        if i == n / 2 {
            s.workers.remove(0).kill();
        }
    }
    let w = s.spawn_worker().await;
    s.workers.push(w);
    let w2 = s.spawn_worker().await;
    s.workers.push(w2);
    eventually("all models registered", Duration::from_secs(90), || async {
        let l = s.get("/api/models").await;
        (l.body["models"].as_array().map(|a| a.len()) == Some(n)).then_some(())
    })
    .await;
    eventually(
        "all deployments synced",
        Duration::from_secs(60),
        || async { (s.emu.as_ref().unwrap().emu.deployments().len() == n).then_some(()) },
    )
    .await;
    let mut ids: Vec<String> = s
        .emu
        .as_ref()
        .unwrap()
        .emu
        .deployments()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no duplicate deployment");
}

/// Health, readiness and metrics; the OpenAPI document lists every route the router serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_endpoints_and_openapi() {
    let s = Stack::builder().start().await;
    for p in ["/healthz", "/readyz", "/metrics"] {
        let r = s
            .http
            .get(format!("{}{p}", s.api_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{p}");
    }
    let doc = s.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/models",
        "/api/models/{id}",
        "/api/models/{id}/realms",
        "/api/models/{id}/realms/{realmId}",
        "/api/realms",
        "/api/realms/{id}",
        "/api/realms/{id}/models",
        "/api/realms/{id}/agents",
        "/api/realms/{id}/agents/{did}",
        "/api/agents",
        "/api/agents/{did}",
        "/api/agents/{did}/llm-config",
        "/api/agents/{did}/realm-llm",
        "/api/commands/{id}",
        "/api/litellm/status",
        "/api/litellm/reconcile",
        "/api/audit",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let schemas = &doc.body["components"]["schemas"];
    for schema in ["ModelView", "ModelRegisterBody", "ModelUpdateBody"] {
        for field in ["inputCostPerToken", "outputCostPerToken"] {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "openapi's {schema} lacks {field}"
            );
        }
    }
    // Every documented path/method is served (not 404 / 405) by the router.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "x1")
                .replace("{realmId}", "r1")
                .replace(
                    "{did}",
                    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
                );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.request(m, &concrete, None, None, &[]).await;
            assert!(
                r.status != 405
                    && !(r.status == 404
                        && r.body["error"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("no such route"))),
                "{method} {path} → {}",
                r.status
            );
        }
    }
    // Readiness fails when Redis is down.
    let mut s = s;
    s.redis.kill();
    eventually(
        "readyz 503 without redis",
        Duration::from_secs(20),
        || async {
            let r = s
                .http
                .get(format!("{}/readyz", s.api_url))
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 503).then_some(())
        },
    )
    .await;
}
