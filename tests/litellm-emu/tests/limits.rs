//! Limits over real HTTP: `rpm_limit`, `tpm_limit` and `max_parallel_requests` of keys and teams,
//! as stored, echoed, cleared, enforced on chat, and checked when a key moves to a team.

mod support;

use serde_json::{json, Value};
use support::{message, start, Env};

/// The token of the key made `n`-th.
fn token(env: &Env, n: usize) -> String {
    env.emu().keys()[n].token.clone()
}

/// The message of a 429 up to its reset time, which ends it (`Limit resets at: <date> UTC`).
fn limited(status: u16, body: &Value) -> String {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "None");
    assert_eq!(body["error"]["param"], "None");
    assert_eq!(body["error"]["code"], "429");
    let m = message(body);
    let (head, reset) = m.split_once("Limit resets at: ").unwrap_or((m, ""));
    assert!(
        reset.len() == "2026-11-25 10:33:28 UTC".len() && reset.ends_with(" UTC"),
        "{m}"
    );
    head.to_owned()
}

/// Keys: the three limits on generate, in every row, cleared one by one by `null` on update.
#[tokio::test]
async fn key_limits_are_stored_and_cleared() {
    let env = start().await;
    let (s, b) = env
        .post(
            "/key/generate",
            json!({"rpm_limit": 5, "tpm_limit": 100, "max_parallel_requests": 3}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let key = b["key"].as_str().unwrap_or("").to_owned();
    for (field, want) in [
        ("rpm_limit", 5),
        ("tpm_limit", 100),
        ("max_parallel_requests", 3),
    ] {
        assert_eq!(b[field], want, "generate: {field}");
    }
    let (_, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["max_parallel_requests"], 3);
    assert_eq!(info["info"]["tpm_limit"], 100);
    let (_, list) = env.get("/key/list?return_full_object=true").await;
    assert_eq!(list["keys"][0]["max_parallel_requests"], 3);
    let vk = &env.emu().keys()[0];
    assert_eq!(
        (vk.rpm_limit, vk.tpm_limit, vk.max_parallel_requests),
        (Some(5), Some(100), Some(3))
    );

    let mut expected = json!({"rpm_limit": 5, "tpm_limit": 100, "max_parallel_requests": 3});
    for field in ["max_parallel_requests", "tpm_limit", "rpm_limit"] {
        let (s, b) = env
            .post("/key/update", json!({"key": key, field: null}))
            .await;
        assert_eq!(s, 200, "{b}");
        expected[field] = Value::Null;
        for f in ["rpm_limit", "tpm_limit", "max_parallel_requests"] {
            assert_eq!(b[f], expected[f], "after clearing {field}: {f}");
        }
    }
    let vk = &env.emu().keys()[0];
    assert_eq!(
        (vk.rpm_limit, vk.tpm_limit, vk.max_parallel_requests),
        (None, None, None)
    );
    let (_, b) = env
        .post(
            "/key/update",
            json!({"key": key, "max_parallel_requests": 2}),
        )
        .await;
    assert_eq!(b["max_parallel_requests"], 2);
    let (s, b) = env
        .post(
            "/key/update",
            json!({"key": key, "max_parallel_requests": 1.5}),
        )
        .await;
    assert_eq!(
        (s, &b["detail"][0]["type"]),
        (422, &json!("int_from_float"))
    );
}

/// Teams: `rpm_limit`/`tpm_limit` on new and update, `null` clears each; `max_parallel_requests`
/// is not a field of either request (ignored, the row shows null).
#[tokio::test]
async fn team_limits_are_stored_and_cleared() {
    let env = start().await;
    let b = env
        .new_team(json!({"team_id": "t1", "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 4}))
        .await;
    assert_eq!(
        (&b["rpm_limit"], &b["tpm_limit"]),
        (&json!(10), &json!(1000))
    );
    assert_eq!(b["max_parallel_requests"], Value::Null);
    let (s, b) = env
        .post(
            "/team/update",
            json!({"team_id": "t1", "rpm_limit": null, "max_parallel_requests": 4}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["rpm_limit"], Value::Null);
    assert_eq!(b["data"]["tpm_limit"], 1000);
    assert_eq!(b["data"]["max_parallel_requests"], Value::Null);
    let (_, b) = env
        .post(
            "/team/update",
            json!({"team_id": "t1", "tpm_limit": null, "rpm_limit": 3}),
        )
        .await;
    assert_eq!(
        (&b["data"]["rpm_limit"], &b["data"]["tpm_limit"]),
        (&json!(3), &Value::Null)
    );
    let (_, info) = env.get("/team/info?team_id=t1").await;
    assert_eq!(info["team_info"]["rpm_limit"], 3);
    let t = &env.emu().teams()[0];
    assert_eq!(
        (t.rpm_limit, t.tpm_limit, t.max_parallel_requests),
        (Some(3), None, None)
    );
}

/// A team's `rpm_limit` counts the requests of all its keys together; the 429 names the team.
#[tokio::test]
async fn team_rpm_counts_every_key() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_team(json!({"team_id": "t1", "rpm_limit": 2})).await;
    let a = env.new_key(json!({"team_id": "t1"})).await;
    let b = env.new_key(json!({"team_id": "t1"})).await;
    assert_eq!(env.chat(&a, "a").await.0, 200);
    assert_eq!(env.chat(&b, "a").await.0, 200);
    let (s, body) = env.chat(&a, "a").await;
    assert_eq!(
        limited(s, &body),
        "Rate limit exceeded for team: t1. Limit type: requests. Current limit: 2, Remaining: 0. "
    );
    let (s, body) = env.chat(&b, "a").await;
    assert_eq!(s, 429, "{body}");
    let spent = env.emu().teams()[0].spend;
    assert!(
        (spent - 2.0 * litellm_emu::DEFAULT_SPEND_PER_REQUEST).abs() < 1e-12,
        "{spent}"
    );

    // A key outside the team, or of another team, is not counted with it.
    let other = env.new_key(json!({})).await;
    assert_eq!(env.chat(&other, "a").await.0, 200);
    // Lifting the limit (null clears it) lets the team's keys call again.
    env.post("/team/update", json!({"team_id": "t1", "rpm_limit": null}))
        .await;
    assert_eq!(env.chat(&a, "a").await.0, 200);
}

/// The key's own limit is checked before its team's; a call the team refuses still spends a
/// request of the key's window (the proxy counts every limited counter before it checks).
#[tokio::test]
async fn key_rpm_and_team_rpm_together() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let solo = env.new_key(json!({"rpm_limit": 1})).await;
    assert_eq!(env.chat(&solo, "a").await.0, 200);
    let (s, body) = env.chat(&solo, "a").await;
    assert_eq!(
        limited(s, &body),
        format!(
            "Rate limit exceeded for api_key: {}. Limit type: requests. Current limit: 1, Remaining: 0. ",
            token(&env, 0)
        )
    );

    env.new_team(json!({"team_id": "t1", "rpm_limit": 1})).await;
    let key = env.new_key(json!({"team_id": "t1", "rpm_limit": 3})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    let (s, body) = env.chat(&key, "a").await;
    assert!(limited(s, &body).starts_with("Rate limit exceeded for team: t1."));
    env.post("/team/update", json!({"team_id": "t1", "rpm_limit": 10}))
        .await;
    assert_eq!(env.chat(&key, "a").await.0, 200, "the key's third request");
    let (s, body) = env.chat(&key, "a").await;
    assert!(
        limited(s, &body).starts_with(&format!(
            "Rate limit exceeded for api_key: {}.",
            token(&env, 1)
        )),
        "the refused call counted for the key"
    );
}

/// `tpm_limit` counts one token per admitted call plus the completion tokens of each served one
/// (5): with a limit of 10, two calls pass, the third is refused — for a key and for a team.
#[tokio::test]
async fn tpm_limits() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let key = env.new_key(json!({"tpm_limit": 10})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    assert_eq!(env.chat(&key, "a").await.0, 200);
    let (s, body) = env.chat(&key, "a").await;
    assert_eq!(
        limited(s, &body),
        format!(
            "Rate limit exceeded for api_key: {}. Limit type: tokens. Current limit: 10, Remaining: 0. ",
            token(&env, 0)
        )
    );

    env.new_team(json!({"team_id": "t1", "tpm_limit": 10}))
        .await;
    let a = env.new_key(json!({"team_id": "t1"})).await;
    let b = env.new_key(json!({"team_id": "t1"})).await;
    assert_eq!(env.chat(&a, "a").await.0, 200);
    assert_eq!(env.chat(&b, "a").await.0, 200);
    let (s, body) = env.chat(&a, "a").await;
    assert_eq!(
        limited(s, &body),
        "Rate limit exceeded for team: t1. Limit type: tokens. Current limit: 10, Remaining: 0. "
    );
}

/// `max_parallel_requests`: calls never overlap in the emulator, so 1 never binds and 0 refuses.
#[tokio::test]
async fn max_parallel_requests() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    let one = env.new_key(json!({"max_parallel_requests": 1})).await;
    for _ in 0..3 {
        assert_eq!(env.chat(&one, "a").await.0, 200);
    }
    let none = env.new_key(json!({"max_parallel_requests": 0})).await;
    let (s, body) = env.chat(&none, "a").await;
    assert_eq!(
        limited(s, &body),
        format!(
            "Rate limit exceeded for api_key: {}. Limit type: max_parallel_requests. Current limit: 0, Remaining: 0. ",
            token(&env, 1)
        )
    );
    assert_eq!(
        env.emu().keys()[1].spend,
        0.0,
        "a refused call costs nothing"
    );
}

/// Moving a key into a team: limits equal to the team's are accepted, higher ones refused (403);
/// as in the proxy, the rpm comparison is only reached for a key with a `tpm_limit`, and a team
/// limit of 0 counts as none.
#[tokio::test]
async fn moving_a_key_checks_its_limits() {
    let env = start().await;
    env.new_team(json!({"team_id": "t1", "rpm_limit": 5, "tpm_limit": 100}))
        .await;
    env.new_team(json!({"team_id": "t0", "rpm_limit": 0, "tpm_limit": 0}))
        .await;
    let mv = |key: String, team: &str| {
        let body = json!({"key": key, "team_id": team});
        async { env.post("/key/update", body).await }
    };

    let equal = env.new_key(json!({"rpm_limit": 5, "tpm_limit": 100})).await;
    let (s, b) = mv(equal, "t1").await;
    assert_eq!(s, 200, "equal limits are accepted: {b}");
    assert_eq!(b["team_id"], "t1");

    let tpm = env.new_key(json!({"tpm_limit": 101})).await;
    let (s, b) = mv(tpm.clone(), "t1").await;
    assert_eq!(
        (s, b),
        (
            403,
            json!({"error": {
                "message": format!("Key={} has a tpm_limit=101 which is greater than the team's tpm_limit=100.", token(&env, 1)),
                "type": "auth_error", "param": "None", "code": "403",
            }})
        )
    );
    let rpm = env.new_key(json!({"rpm_limit": 6, "tpm_limit": 1})).await;
    let (s, b) = mv(rpm, "t1").await;
    assert_eq!(s, 403);
    assert!(
        message(&b).ends_with("has a rpm_limit=6 which is greater than the team's rpm_limit=5.")
    );
    let rpm_only = env.new_key(json!({"rpm_limit": 6})).await;
    assert_eq!(
        mv(rpm_only, "t1").await.0,
        200,
        "no tpm_limit: rpm not compared"
    );
    assert_eq!(mv(tpm, "t0").await.0, 200, "a team limit of 0 is none");
}
