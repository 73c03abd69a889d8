//! Spend, prices, blocking and limits over real HTTP: what a call costs, `/key/block`,
//! rpm/tpm limits of keys and teams, and the end of a budget period.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{start, Env};

impl Env {
    /// A deployment `name` (id `id`) priced at `input` / `output` USD per token.
    async fn new_priced_model(&self, name: &str, id: &str, input: Value, output: Value) -> Value {
        let (s, b) = self
            .post(
                "/model/new",
                json!({
                    "model_name": name,
                    "litellm_params": {
                        "model": format!("openai/{name}"), "api_key": "sk-upstream",
                        "input_cost_per_token": input, "output_cost_per_token": output,
                    },
                    "model_info": {"id": id},
                }),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A priced deployment charges `prompt_tokens * input + completion_tokens * output` to the key
/// and its team, with the usage the completion reports; without prices, the default per request.
#[tokio::test]
async fn prices_are_charged() {
    let env = start().await;
    let b = env
        .new_priced_model("priced", "id-p", json!(0.001), json!(0.001))
        .await;
    assert_eq!(b["litellm_params"]["input_cost_per_token"], 0.001);
    env.new_model("free", "id-f", "openai/free").await;
    env.new_team(json!({"team_id": "t1"})).await;
    let key = env.new_key(json!({"team_id": "t1"})).await;

    let url = format!("{}/chat/completions", env.handle.base_url);
    let req = env
        .http
        .post(url)
        .bearer_auth(&key)
        .json(&json!({"model": "priced", "messages": [{"role": "user", "content": "hi"}]}));
    let (s, b, headers) = env.send(req).await;
    assert_eq!(s, 200, "{b}");
    let usage = &b["usage"];
    assert_eq!(
        (
            usage["prompt_tokens"].as_f64(),
            usage["completion_tokens"].as_f64()
        ),
        (Some(10.0), Some(5.0))
    );
    assert_eq!(usage["total_tokens"], 15);
    let cost = 10.0 * 0.001 + 5.0 * 0.001;
    assert!(close(cost, 0.015));
    assert!(close(env.emu().keys()[0].spend, cost));
    assert!(close(env.emu().teams()[0].spend, cost));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    assert_eq!(header("x-litellm-response-cost"), "0.015");
    assert_eq!(header("x-litellm-key-spend"), "0.015");

    // Without prices: the configured default per request.
    assert_eq!(env.chat(&key, "free").await.0, 200);
    let default = litellm_emu::DEFAULT_SPEND_PER_REQUEST;
    assert!(close(env.emu().keys()[0].spend, cost + default));
    assert!(close(env.emu().teams()[0].spend, cost + default));

    // The master key's calls are priced too (nothing to charge them to).
    let (s, _) = env
        .call(
            "POST",
            "/chat/completions",
            Some(support::MASTER),
            Some(json!({"model": "priced", "messages": []})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(close(env.emu().keys()[0].spend, cost + default));
}

/// `/model/info` shows the prices in `litellm_params` and in `model_info`; an update that
/// changes them applies after the reload delay, as for any `litellm_params`.
#[tokio::test]
async fn price_updates_follow_the_reload_rule() {
    let env = start().await;
    env.new_priced_model("m", "id-m", json!(0.001), json!(0.002))
        .await;
    let (_, info) = env.get("/model/info").await;
    let row = &info["data"][0];
    assert_eq!(row["litellm_params"]["input_cost_per_token"], 0.001);
    assert_eq!(row["litellm_params"]["output_cost_per_token"], 0.002);
    assert_eq!(row["model_info"]["input_cost_per_token"], 0.001);
    assert_eq!(row["model_info"]["output_cost_per_token"], 0.002);
    let key = env.new_key(json!({})).await;

    env.emu()
        .set_update_reload_delay(Duration::from_millis(300));
    let (s, b) = env
        .post(
            "/model/update",
            json!({"model_info": {"id": "id-m"}, "litellm_params": {"input_cost_per_token": "0.01"}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["litellm_params"]["input_cost_per_token"], 0.01,
        "stored as a float"
    );
    assert_eq!(env.chat(&key, "m").await.0, 200);
    let old = 10.0 * 0.001 + 5.0 * 0.002;
    assert!(
        close(env.emu().keys()[0].spend, old),
        "old price until the reload"
    );
    let (_, info) = env.get("/model/info").await;
    assert_eq!(
        info["data"][0]["litellm_params"]["input_cost_per_token"],
        0.001
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, info) = env.get("/model/info").await;
    assert_eq!(info["data"][0]["model_info"]["input_cost_per_token"], 0.01);
    assert_eq!(env.chat(&key, "m").await.0, 200);
    let new = 10.0 * 0.01 + 5.0 * 0.002;
    assert!(close(env.emu().keys()[0].spend, old + new));

    // Not a number: 422 at the field, as Pydantic reports it.
    let (s, b) = env
        .post(
            "/model/update",
            json!({"model_info": {"id": "id-m"}, "litellm_params": {"output_cost_per_token": "cheap"}}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["type"], "float_parsing");
    assert_eq!(
        b["detail"][0]["loc"],
        json!(["body", "litellm_params", "output_cost_per_token"])
    );
    let (s, b) = env
        .post(
            "/model/new",
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "input_cost_per_token": [1]}}),
        )
        .await;
    assert_eq!((s, &b["detail"][0]["type"]), (422, &json!("float_type")));
    assert_eq!(env.emu().deployments().len(), 1);
}

/// `/key/block` and `/key/unblock` by plaintext or token: the row with `blocked`, a blocked key
/// refused with the proxy's 401, an unknown key 401 `token_not_found_in_db`.
#[tokio::test]
async fn block_and_unblock() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let key = env
        .new_key(json!({"key_alias": "k", "rpm_limit": 7, "max_budget": 3}))
        .await;
    let token = env.emu().keys()[0].token.clone();
    assert_eq!(env.chat(&key, "a").await.0, 200);

    let (s, b) = env.post("/key/block", json!({"key": key})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["blocked"], true);
    assert_eq!(b["token"], token);
    assert_eq!(b["key_alias"], "k");
    assert_eq!(b["rpm_limit"], 7);
    assert_eq!(b["max_budget"], 3.0);
    assert!(b["created_at"].as_str().unwrap_or("").ends_with('Z'));
    assert!(
        b.get("team_spend").is_none(),
        "the table row, not the auth view"
    );
    assert_eq!(env.emu().keys()[0].blocked, Some(true));

    let (s, b) = env.chat(&key, "a").await;
    assert_eq!(
        (s, b),
        (
            401,
            json!({"error": {
                "message": "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.",
                "type": "auth_error", "param": "None", "code": "401",
            }})
        )
    );
    let (_, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["blocked"], true);

    let (s, b) = env.post("/key/unblock", json!({"key": token})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["blocked"], false);
    assert_eq!(env.emu().keys()[0].blocked, Some(false));
    assert_eq!(env.chat(&key, "a").await.0, 200);

    // Unknown keys: the message names the token (the plaintext is hashed first).
    let unknown = "sk-nobody";
    let (s, b) = env.post("/key/block", json!({"key": unknown})).await;
    let hashed = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(unknown.as_bytes()))
    };
    assert_eq!(
        (s, b),
        (
            401,
            json!({"error": {
                "message": format!("Authentication Error, Invalid proxy server token passed. key={hashed}, not found in db. Create key via `/key/generate` call."),
                "type": "token_not_found_in_db", "param": "key", "code": "401",
            }})
        )
    );
    let (s, b) = env.post("/key/unblock", json!({"key": "abc123"})).await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("key=abc123, not found in db."));

    let (s, b) = env.post("/key/block", json!({})).await;
    assert_eq!((s, &b["detail"][0]["loc"]), (422, &json!(["body", "key"])));
    let (s, _) = env
        .call("POST", "/key/block", Some(&key), Some(json!({"key": key})))
        .await;
    assert_eq!(s, 401, "admin only");
}

/// The end of a budget period (`Emulator::end_budget_period`, `POST /emu/end-period`): spend back
/// to 0 and `budget_reset_at` one period on, for keys and teams with a `budget_reset_at`.
#[tokio::test]
async fn budget_periods_end() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_team(json!({"team_id": "t1", "max_budget": 1, "budget_duration": "30d"}))
        .await;
    env.new_team(json!({"team_id": "t2", "budget_duration": "1d"}))
        .await;
    let daily = env
        .new_key(json!({"team_id": "t1", "max_budget": 0.5, "budget_duration": "1d"}))
        .await;
    let once = env.new_key(json!({"max_budget": 0.5})).await;
    let expired = env
        .new_key(json!({"budget_duration": "1d", "duration": "0s"}))
        .await;
    env.emu().set_spend(&daily, 0.5);
    env.emu().set_spend(&once, 0.5);
    env.emu().set_spend(&expired, 0.25);
    env.emu().set_team_spend("t1", 0.75);
    env.emu().set_team_spend("t2", 0.25);
    assert_eq!(env.chat(&daily, "a").await.0, 400, "over budget");
    // t2's duration is cleared: its stale `budget_reset_at` stays.
    env.post(
        "/team/update",
        json!({"team_id": "t2", "budget_duration": null}),
    )
    .await;
    let before_keys = env.emu().keys();
    let before_teams = env.emu().teams();

    assert_eq!(env.emu().end_budget_period(), 3, "daily, t1 and t2");
    let keys = env.emu().keys();
    let teams = env.emu().teams();
    assert_eq!(keys[0].spend, 0.0);
    assert_eq!(keys[1].spend, 0.5, "no budget period: untouched");
    assert_eq!(keys[2].spend, 0.25, "expired: skipped");
    assert_eq!(keys[2].budget_reset_at, before_keys[2].budget_reset_at);
    assert_eq!((teams[0].spend, teams[1].spend), (0.0, 0.0));
    let day = time::Duration::days(1);
    let old = before_keys[0].budget_reset_at.expect("daily resets");
    assert_eq!(keys[0].budget_reset_at, Some(old + day));
    let old_team = before_teams[0].budget_reset_at.expect("t1 resets");
    let new_team = teams[0].budget_reset_at.expect("t1 still resets");
    assert_eq!(new_team.month(), old_team.month().next());
    assert_eq!((new_team.day(), new_team.hour()), (1, 0));
    assert_eq!(teams[1].budget_reset_at, before_teams[1].budget_reset_at);

    // The key calls again; its info shows the new reset time.
    assert_eq!(env.chat(&daily, "a").await.0, 200);
    let (_, info) = env.get(&format!("/key/info?key={daily}")).await;
    let shown = info["info"]["budget_reset_at"].as_str().unwrap_or("");
    assert!(shown.ends_with("T00:00:00+00:00"), "{shown}");

    // Over HTTP: the next period.
    let (s, b) = env.post("/emu/end-period", json!({})).await;
    assert_eq!((s, b), (200, json!({"ok": true, "reset": 3})));
    assert_eq!(env.emu().keys()[0].spend, 0.0);
    assert_eq!(env.emu().keys()[0].budget_reset_at, Some(old + day + day));
    let (s, _) = env
        .call("POST", "/emu/end-period", Some(&daily), None)
        .await;
    assert_eq!(s, 401, "master key only");
}
