//! The emulator over real HTTP: every ⚠ edge of `litellm-admin-api.md`, plus the test controls.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{error_type, start, MASTER};

/// A second `/model/new` with the same name adds a deployment, and chat load-balances over both.
#[tokio::test]
async fn duplicate_model_name_adds_a_deployment() {
    let env = start().await;
    assert_eq!(env.new_model("gpt", "id-a", "openai/a").await.0, 200);
    assert_eq!(env.new_model("gpt", "id-b", "openai/b").await.0, 200);
    assert_eq!(env.emu().deployments().len(), 2);
    let (_, info) = env.get("/model/info").await;
    assert_eq!(info["data"].as_array().map(Vec::len), Some(2));

    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let url = format!("{}/chat/completions", env.handle.base_url);
        let req = env
            .http
            .post(url)
            .bearer_auth(MASTER)
            .json(&json!({"model": "gpt", "messages": []}));
        let (s, b, h) = env.send(req).await;
        assert_eq!(s, 200, "{b}");
        served.insert(h["x-litellm-model-id"].to_str().unwrap_or("").to_owned());
    }
    assert_eq!(served.len(), 2, "both deployments serve");
}

/// A duplicate `model_info.id` is a 500; a missing id is generated; `api_key` comes back encrypted.
#[tokio::test]
async fn duplicate_model_id_is_500() {
    let env = start().await;
    let (s, b) = env.new_model("gpt", "id-a", "openai/a").await;
    assert_eq!(s, 200);
    assert_eq!(b["model_id"], "id-a");
    assert_ne!(b["litellm_params"]["api_key"], "sk-upstream-secret");
    assert_eq!(b["model_info"]["db_model"], false);

    let (s, b) = env.new_model("other", "id-a", "openai/x").await;
    assert_eq!(s, 500);
    assert_eq!(b["error"]["code"], "500");
    assert_eq!(env.emu().deployments().len(), 1);

    let (s, b) = env
        .post(
            "/model/new",
            json!({"model_name": "n", "litellm_params": {"model": "openai/n"}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["model_id"].as_str().map(str::len),
        Some(36),
        "uuid generated"
    );
}

/// Delete is by id; an unknown id is a 400 with the stringified Python dict.
#[tokio::test]
async fn delete_by_id_and_unknown_id() {
    let env = start().await;
    env.new_model("gpt", "id-a", "openai/a").await;
    let (s, b) = env.post("/model/delete", json!({"id": "id-a"})).await;
    assert_eq!(
        (s, b),
        (200, json!({"message": "Model: id-a deleted successfully"}))
    );
    let (s, b) = env.post("/model/delete", json!({"id": "id-a"})).await;
    assert_eq!(s, 400);
    assert_eq!(
        b["error"]["message"],
        "{'error': 'Model with id=id-a not found in db'}"
    );
    assert_eq!(b["error"]["code"], "400");
    let (s, b) = env.post("/model/delete", json!({})).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["loc"], json!(["body", "id"]));
}

/// `/model/info` hides `api_key`, reports `db_model: true`, and 400s on an unknown id.
#[tokio::test]
async fn model_info_shape_and_lookup() {
    let env = start().await;
    env.new_model("gpt", "id-a", "openai/a").await;
    let (s, b) = env.get("/model/info?litellm_model_id=id-a").await;
    assert_eq!(s, 200);
    let d = &b["data"][0];
    assert_eq!(d["model_name"], "gpt");
    assert_eq!(d["litellm_params"]["model"], "openai/a");
    assert!(d["litellm_params"].get("api_key").is_none());
    assert_eq!(d["model_info"], json!({"id": "id-a", "db_model": true}));
    let (s, b) = env.get("/model/info?litellm_model_id=nope").await;
    assert_eq!(s, 400);
    assert_eq!(
        b["detail"]["error"],
        "Model id = nope not found on litellm proxy"
    );
}

/// `POST /model/update` merges only `litellm_params`, and routing sees it after the reload delay.
#[tokio::test]
async fn model_update_waits_for_reload() {
    let env = start().await;
    env.emu()
        .set_update_reload_delay(Duration::from_millis(300));
    env.new_model("gpt", "id-a", "openai/a").await;
    let (s, b) = env
        .post(
            "/model/update",
            json!({"model_name": "renamed", "litellm_params": {"model": "openai/b"}, "model_info": {"id": "id-a"}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["model_name"], "gpt",
        "model_name is ignored by /model/update"
    );
    assert!(env.emu().deployments()[0].update_pending);

    let (_, info) = env.get("/model/info").await;
    assert_eq!(
        info["data"][0]["litellm_params"]["model"], "openai/a",
        "not reloaded yet"
    );
    let (_, chat) = env.chat(MASTER, "gpt").await;
    assert_eq!(
        chat["choices"][0]["message"]["content"],
        "emulated reply from openai/a"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, info) = env.get("/model/info").await;
    assert_eq!(info["data"][0]["litellm_params"]["model"], "openai/b");
    assert_eq!(info["data"][0]["model_name"], "gpt");

    let (s, b) = env
        .post(
            "/model/update",
            json!({"litellm_params": {"rpm": 1}, "model_info": {"id": "nope"}}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["error"]["message"],
        "Authentication Error, model not found"
    );
    let (s, _) = env
        .post("/model/update", json!({"model_info": {"id": "id-a"}}))
        .await;
    assert_eq!(s, 400, "litellm_params is required");
}

/// `PATCH /model/{id}/update` merges everything and is routed at once; unknown id → 404.
#[tokio::test]
async fn patch_update_is_immediate() {
    let env = start().await;
    env.emu().set_update_reload_delay(Duration::from_secs(60));
    env.new_model("gpt", "id-a", "openai/a").await;
    let (s, b) = env
        .call(
            "PATCH",
            "/model/id-a/update",
            Some(MASTER),
            Some(json!({"model_name": "gpt2"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, info) = env.get("/model/info?litellm_model_id=id-a").await;
    assert_eq!(info["data"][0]["model_name"], "gpt2");
    let (s, b) = env
        .call("PATCH", "/model/nope/update", Some(MASTER), Some(json!({})))
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_type(&b), "not_found_error");
}

/// `models: []` (or absent) grants every model, on chat and on `/v1/models`.
#[tokio::test]
async fn empty_models_means_all_models() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_model("b", "id-b", "openai/b").await;
    let key = env.new_key(json!({"models": []})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    assert_eq!(env.chat(&key, "b").await.0, 200);
    let (_, models) = env.call("GET", "/v1/models", Some(&key), None).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let restricted = env.new_key(json!({"models": ["a"]})).await;
    let (_, models) = env.call("GET", "/models", Some(&restricted), None).await;
    assert_eq!(
        models["data"],
        json!([{"id": "a", "object": "model", "created": 1_677_610_602, "owned_by": "openai"}])
    );
}

/// Re-using a custom key answers 200 but leaves the stored row unchanged.
#[tokio::test]
async fn custom_key_reuse_keeps_existing_row() {
    let env = start().await;
    let (s, first) = env
        .post(
            "/key/generate",
            json!({"key": "sk-custom-1", "models": ["a"], "key_alias": "one"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(first["key_name"], "sk-...om-1");
    assert_eq!(first["token"], first["token_id"]);
    let (s, again) = env
        .post(
            "/key/generate",
            json!({"key": "sk-custom-1", "models": ["b"], "max_budget": 9}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["token"], first["token"]);
    let keys = env.emu().keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].models, ["a"]);
    assert_eq!(keys[0].key_alias.as_deref(), Some("one"));
    assert_eq!(keys[0].max_budget, None);

    let (s, b) = env
        .post("/key/generate", json!({"key": "custom-no-prefix"}))
        .await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("must start with 'sk-'"));
}

/// `key_alias` is unique across keys (generate and update), except for the key's own alias.
#[tokio::test]
async fn key_alias_is_unique() {
    let env = start().await;
    let a = env.new_key(json!({"key_alias": "realm-a"})).await;
    let b = env.new_key(json!({})).await;
    let (s, body) = env
        .post("/key/generate", json!({"key_alias": "realm-a"}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(error_type(&body), "bad_request_error");
    assert_eq!(body["error"]["param"], "key_alias");
    let (s, _) = env
        .post("/key/update", json!({"key": b, "key_alias": "realm-a"}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .post("/key/update", json!({"key": a, "key_alias": "realm-a"}))
        .await;
    assert_eq!(s, 200);
}

/// `/key/update`: missing key 422, unknown key 401, `null` ignored for some fields and clearing others.
#[tokio::test]
async fn key_update_semantics() {
    let env = start().await;
    let key = env
        .new_key(json!({"models": ["a"], "max_budget": 5, "budget_duration": "30d", "key_alias": "k", "metadata": {"x": 1}}))
        .await;
    let (s, b) = env.post("/key/update", json!({"models": ["a"]})).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["loc"], json!(["body", "key"]));
    let (s, b) = env
        .post("/key/update", json!({"key": "sk-unknown", "models": []}))
        .await;
    assert_eq!(s, 401, "{b}");

    // `null` does not clear `budget_duration` or `duration`...
    let (s, b) = env
        .post(
            "/key/update",
            json!({"key": key, "budget_duration": null, "duration": null}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["budget_duration"], "30d");
    assert_eq!(b["max_budget"], 5.0);
    // ...but it does clear `max_budget` and `key_alias` (as the real proxy does).
    let (s, b) = env
        .post(
            "/key/update",
            json!({"key": key, "max_budget": null, "key_alias": null}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["max_budget"], Value::Null);
    assert_eq!(b["key_alias"], Value::Null);
    // `metadata: null` is written as null; the next update rewrites it as `{}`.
    let (_, b) = env
        .post("/key/update", json!({"key": key, "metadata": null}))
        .await;
    assert_eq!(b["metadata"], Value::Null);
    let (_, b) = env
        .post("/key/update", json!({"key": key, "rpm_limit": 3}))
        .await;
    assert_eq!(b["metadata"], json!({}));
    // `models: null` is rejected by the database layer.
    let (s, _) = env
        .post("/key/update", json!({"key": key, "models": null}))
        .await;
    assert_eq!(s, 400);

    // By hash, `models: []` = all models; the change is effective at once.
    let token = env.emu().keys()[0].token.clone();
    env.new_model("b", "id-b", "openai/b").await;
    assert_eq!(env.chat(&key, "b").await.0, 401);
    let (s, b) = env
        .post("/key/update", json!({"key": token, "models": []}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["key"], token);
    assert_eq!(env.chat(&key, "b").await.0, 200);
}

/// `/key/delete`: 404 when nothing matches, 422 without keys or aliases, by alias works.
#[tokio::test]
async fn key_delete_errors() {
    let env = start().await;
    let key = env.new_key(json!({"key_alias": "al"})).await;
    let (s, b) = env.post("/key/delete", json!({})).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["type"], "value_error");
    let (s, b) = env.post("/key/delete", json!({"keys": ["sk-nope"]})).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["message"], "{'error': 'No keys found'}");
    let (s, b) = env
        .post("/key/delete", json!({"key_aliases": ["al"]}))
        .await;
    assert_eq!((s, b), (200, json!({"deleted_keys": ["al"]})));
    let (s, _) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(s, 404);
}

/// The virtual-key checks on chat, in order, with their statuses and error types.
#[tokio::test]
async fn chat_checks() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_model("b", "id-b", "openai/b").await;
    let key = env
        .new_key(json!({"key": "sk-realm-1", "models": ["a"], "max_budget": 1.0}))
        .await;

    let (s, b) = env.chat(&key, "a").await;
    assert_eq!(s, 200);
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "emulated reply from openai/a"
    );
    assert!(env.emu().keys()[0].spend > 0.0, "spend charged");

    let (s, b) = env.chat(&key, "b").await;
    assert_eq!((s, error_type(&b)), (401, "key_model_access_denied"));

    env.emu().set_spend(&key, 1.0);
    let (s, b) = env.chat(&key, "a").await;
    assert_eq!((s, error_type(&b)), (400, "budget_exceeded"));
    let (_, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["spend"], 1.0);

    let (s, b) = env.chat(&key, "nope").await;
    assert_eq!(
        (s, error_type(&b)),
        (401, "key_model_access_denied"),
        "model check precedes budget"
    );

    let all = env.new_key(json!({})).await;
    let (s, b) = env.chat(&all, "nope").await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("Invalid model name"));

    let blocked = env.new_key(json!({"blocked": true})).await;
    let (s, b) = env.chat(&blocked, "a").await;
    assert_eq!((s, error_type(&b)), (401, "auth_error"));

    let expired = env.new_key(json!({"duration": "0s"})).await;
    let (s, b) = env.chat(&expired, "a").await;
    assert_eq!((s, error_type(&b)), (400, "expired_key"));

    assert_eq!(env.post("/key/delete", json!({"keys": [key]})).await.0, 200);
    let (s, b) = env.chat(&key, "a").await;
    assert_eq!((s, error_type(&b)), (401, "token_not_found_in_db"));

    // Re-created with the same value: same hash, works at once.
    let again = env
        .new_key(json!({"key": "sk-realm-1", "models": ["a"]}))
        .await;
    assert_eq!(again, key);
    assert_eq!(env.chat(&key, "a").await.0, 200);
}

/// `rpm_limit` answers 429 once the minute's budget of requests is used.
#[tokio::test]
async fn rpm_limit_429() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let key = env.new_key(json!({"rpm_limit": 2})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    assert_eq!(env.chat(&key, "a").await.0, 200);
    let (s, b) = env.chat(&key, "a").await;
    assert_eq!(s, 429);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("Rate limit exceeded"));
}

/// A virtual key on admin routes: 401 on `/key/*`, 403 on `/model/*`, but `/model/info` is filtered.
#[tokio::test]
async fn virtual_key_on_admin_routes() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_model("b", "id-b", "openai/b").await;
    let key = env.new_key(json!({"models": ["a"]})).await;
    for path in ["/key/generate", "/key/update", "/key/delete"] {
        let (s, b) = env.call("POST", path, Some(&key), Some(json!({}))).await;
        assert_eq!(s, 401, "{path}: {b}");
    }
    let (s, _) = env.call("GET", "/key/list", Some(&key), None).await;
    assert_eq!(s, 403);
    let body = json!({"model_name": "x", "litellm_params": {"model": "openai/x"}});
    let (s, _) = env.call("POST", "/model/new", Some(&key), Some(body)).await;
    assert_eq!(s, 403);
    let (s, _) = env
        .call(
            "POST",
            "/model/delete",
            Some(&key),
            Some(json!({"id": "id-a"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, b) = env.call("GET", "/model/info", Some(&key), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(env.emu().deployments().len(), 2);
}

/// Missing, malformed and wrong credentials are 401; `x-litellm-api-key` works; health needs none.
#[tokio::test]
async fn auth_headers() {
    let env = start().await;
    let (s, b) = env.call("GET", "/model/info", None, None).await;
    assert_eq!(s, 401);
    assert_eq!(
        b["error"]["message"],
        "Authentication Error, No api key passed in."
    );
    let url = format!("{}/model/info", env.handle.base_url);
    let (s, b, _) = env
        .send(env.http.get(&url).header("Authorization", MASTER))
        .await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("Bearer"));
    let (s, _, _) = env
        .send(env.http.get(&url).header("x-litellm-api-key", MASTER))
        .await;
    assert_eq!(s, 200);
    let (s, b) = env.call("GET", "/model/info", Some("sk-wrong"), None).await;
    assert_eq!((s, error_type(&b)), (401, "token_not_found_in_db"));
    let (s, _) = env.call("GET", "/health/liveliness", None, None).await;
    assert_eq!(s, 200);
    let (s, b) = env.call("GET", "/health/readiness", None, None).await;
    assert_eq!((s, &b["db"]), (200, &json!("connected")));
}

/// Bad JSON is a FastAPI 422; a JSON array body is the proxy's bare 500; invalid duration is 500.
#[tokio::test]
async fn body_validation() {
    let env = start().await;
    let url = format!("{}/key/generate", env.handle.base_url);
    let req = |body: &'static str| {
        env.http
            .post(&url)
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(body)
    };
    let (s, b, _) = env.send(req("{not json")).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["type"], "json_invalid");
    let (s, b, _) = env.send(req("[]")).await;
    assert_eq!((s, b), (500, json!("Internal Server Error")));
    let (s, b) = env
        .post("/key/generate", json!({"models": "a", "max_budget": "x"}))
        .await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"].as_array().map(Vec::len), Some(2));
    let (s, b) = env
        .post("/key/generate", json!({"duration": "bogus"}))
        .await;
    assert_eq!(s, 500);
    assert_eq!(
        b["error"]["message"],
        "Internal Server Error, Invalid duration format"
    );
    let (s, b) = env.post("/key/generate", json!({"max_budget": -1})).await;
    assert_eq!(s, 400);
    assert_eq!(
        b["error"]["message"],
        "{'error': 'max_budget cannot be negative. Received: -1.0'}"
    );
}

/// `budget_duration` "30d" and "1mo" reset on the 1st of next month; garbage is accepted.
#[tokio::test]
async fn budget_durations() {
    let env = start().await;
    for bd in ["30d", "1mo"] {
        let key = env.new_key(json!({"budget_duration": bd})).await;
        let (_, info) = env.get(&format!("/key/info?key={key}")).await;
        let reset = info["info"]["budget_reset_at"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(reset.ends_with("-01T00:00:00+00:00"), "{bd}: {reset}");
    }
    let key = env
        .new_key(json!({"budget_duration": "garbage", "duration": "1h"}))
        .await;
    let (s, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(s, 200);
    assert_eq!(info["info"]["budget_duration"], "garbage");
    assert!(info["info"]["expires"].is_string());
}

/// `/key/list` pages newest-first, caps `size` at 100, and can return full rows.
#[tokio::test]
async fn key_list() {
    let env = start().await;
    for i in 0..3 {
        env.new_key(json!({"key_alias": format!("k{i}"), "team_id": "t"}))
            .await;
    }
    let (s, b) = env.get("/key/list?page=1&size=2").await;
    assert_eq!(s, 200);
    assert_eq!(b["total_count"], 3);
    assert_eq!(b["total_pages"], 2);
    assert_eq!(b["keys"].as_array().map(Vec::len), Some(2));
    assert!(b["keys"][0].is_string(), "hashes by default");
    let (s, _) = env.get("/key/list?size=101").await;
    assert_eq!(s, 422);
    let (_, b) = env
        .get("/key/list?key_alias=k1&return_full_object=true")
        .await;
    assert_eq!(b["keys"][0]["key_alias"], "k1");
    assert_eq!(b["keys"][0]["models"], json!([]));
    let (_, b) = env.get("/key/list?team_id=t").await;
    assert_eq!(b["total_count"], 3);
}

/// `/key/regenerate` is Enterprise-only.
#[tokio::test]
async fn regenerate_is_enterprise_only() {
    let env = start().await;
    let key = env.new_key(json!({})).await;
    let (s, b) = env.post("/key/regenerate", json!({"key": key})).await;
    assert_eq!(s, 500);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("Enterprise"));
}

/// `fail_next`, `set_down`, `set_latency`, `reset` and `request_count`.
#[tokio::test]
async fn fault_injection() {
    let env = start().await;
    env.emu().fail_next("/model/", 2, 502);
    assert_eq!(env.get("/model/info").await.0, 502);
    let (s, b) = env.new_model("a", "id-a", "openai/a").await;
    assert_eq!((s, &b["error"]["code"]), (502, &json!("502")));
    assert_eq!(env.get("/model/info").await.0, 200);
    assert_eq!(env.emu().request_count("/model/info"), 2);
    assert!(
        env.emu().deployments().is_empty(),
        "failed request did nothing"
    );

    env.emu().set_down(true);
    assert_eq!(
        env.call("GET", "/health/readiness", None, None).await.0,
        503
    );
    env.emu().set_down(false);
    assert_eq!(
        env.call("GET", "/health/readiness", None, None).await.0,
        200
    );

    env.emu().set_latency(Duration::from_millis(150));
    let t = std::time::Instant::now();
    env.get("/model/info").await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    env.emu().set_latency(Duration::ZERO);

    env.new_model("a", "id-a", "openai/a").await;
    env.new_key(json!({})).await;
    env.emu().reset();
    assert!(env.emu().deployments().is_empty());
    assert!(env.emu().keys().is_empty());
}

/// The same controls over HTTP under `/emu/*` (master key only, never affected by faults).
#[tokio::test]
async fn http_controls() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let key = env.new_key(json!({"max_budget": 1})).await;

    let (s, _) = env.post("/emu/down", json!({"down": true})).await;
    assert_eq!(s, 200);
    assert_eq!(env.get("/model/info").await.0, 503);
    assert_eq!(env.post("/emu/down", json!({"down": false})).await.0, 200);
    assert_eq!(env.get("/model/info").await.0, 200);

    assert_eq!(
        env.post(
            "/emu/fail",
            json!({"pathPrefix": "/key/", "count": 1, "status": 500})
        )
        .await
        .0,
        200
    );
    assert_eq!(env.get("/key/list").await.0, 500);
    assert_eq!(env.get("/key/list").await.0, 200);

    assert_eq!(
        env.post("/emu/spend", json!({"key": key, "spend": 2.5}))
            .await
            .0,
        200
    );
    assert_eq!(env.chat(&key, "a").await.0, 400);
    assert_eq!(env.post("/emu/latency", json!({"ms": 0})).await.0, 200);

    let (s, state) = env.get("/emu/state").await;
    assert_eq!(s, 200);
    assert_eq!(
        state["deployments"][0]["litellm_params"]["api_key"],
        "sk-upstream-secret"
    );
    assert_eq!(state["keys"][0]["key"], key);
    assert_eq!(state["keys"][0]["spend"], 2.5);

    let (s, _) = env.call("POST", "/emu/reset", Some(&key), None).await;
    assert_eq!(s, 401, "virtual keys cannot drive the emulator");
    assert_eq!(
        env.call("POST", "/emu/reset", Some(MASTER), None).await.0,
        200
    );
    assert!(env.emu().keys().is_empty());
}

/// Drift behind the control plane's back: tampered models and a deployment deleted by id.
#[tokio::test]
async fn drift_helpers() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let key = env.new_key(json!({"models": ["a"]})).await;
    env.emu().tamper_key_models(&key, vec!["zzz".into()]);
    let (_, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["models"], json!(["zzz"]));
    assert_eq!(env.chat(&key, "a").await.0, 401);

    assert!(env.emu().delete_deployment_by_id("id-a"));
    assert!(!env.emu().delete_deployment_by_id("id-a"));
    assert_eq!(env.get("/model/info?litellm_model_id=id-a").await.0, 400);
}
