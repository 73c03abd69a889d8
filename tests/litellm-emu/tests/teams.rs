//! Teams over real HTTP: the `/team/*` routes, team keys, and what a team does to its keys' calls.

mod support;

use serde_json::{json, Value};
use support::{error_type, message, start, MASTER};

/// `/team/new`: the row's shape, a generated uuid, `budget_reset_at`, duplicate ids, aliases.
#[tokio::test]
async fn team_new() {
    let env = start().await;
    let b = env
        .new_team(json!({
            "team_id": "t1", "team_alias": "realm-a", "models": ["a"], "max_budget": 5,
            "budget_duration": "30d", "metadata": {"realm": "a"}, "tpm_limit": 100,
            "rpm_limit": 10, "max_parallel_requests": 3,
        }))
        .await;
    for (field, want) in [
        ("team_id", json!("t1")),
        ("team_alias", json!("realm-a")),
        ("organization_id", Value::Null),
        ("admins", json!([])),
        ("members", json!([])),
        (
            "members_with_roles",
            json!([{"user_id": "default_user_id", "user_email": null, "role": "admin"}]),
        ),
        ("team_member_permissions", json!([])),
        ("metadata", json!({"realm": "a"})),
        ("tpm_limit", json!(100)),
        ("rpm_limit", json!(10)),
        ("max_budget", json!(5.0)),
        ("budget_duration", json!("30d")),
        ("models", json!(["a"])),
        ("blocked", json!(false)),
        ("router_settings", json!({})),
        ("spend", json!(0.0)),
        ("max_parallel_requests", Value::Null),
        ("model_id", Value::Null),
        ("litellm_model_table", Value::Null),
        ("object_permission", Value::Null),
        ("object_permission_id", Value::Null),
    ] {
        assert_eq!(b[field], want, "{field}");
    }
    let reset = b["budget_reset_at"].as_str().unwrap_or("");
    assert!(reset.ends_with("-01T00:00:00Z"), "{reset}");
    assert!(b["created_at"].as_str().unwrap_or("").ends_with('Z'));
    assert_eq!(b.as_object().map(|m| m.len()), Some(24));

    let b = env.new_team(json!({"team_alias": "realm-a"})).await;
    assert_eq!(
        b["team_id"].as_str().map(str::len),
        Some(36),
        "uuid generated"
    );
    assert_eq!(b["team_alias"], "realm-a", "aliases are not unique");
    assert_eq!(b["budget_reset_at"], Value::Null);
    assert_eq!(b["models"], json!([]));
    assert_eq!(b["metadata"], json!({}));

    let (s, b) = env.post("/team/new", json!({"team_id": "t1"})).await;
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": {
                "message": "{'error': 'Team id = t1 already exists. Please use a different team id.'}",
                "type": "internal_server_error", "param": "None", "code": "400",
            }})
        )
    );
    let (s, b) = env.post("/team/new", json!({"max_budget": -1})).await;
    assert_eq!(s, 400);
    assert_eq!(
        message(&b),
        "{'error': 'max_budget cannot be negative. Received: -1.0'}"
    );
    let (s, b) = env
        .post("/team/new", json!({"models": null, "blocked": null}))
        .await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["type"], "list_type");
    assert_eq!(b["detail"][1]["type"], "bool_type");
    assert_eq!(env.emu().teams().len(), 2);
}

/// `/team/update`: `{team_id, data}`, `null` clears `max_budget`, unknown team 404, missing id 422.
#[tokio::test]
async fn team_update() {
    let env = start().await;
    env.new_team(json!({"team_id": "t1", "max_budget": 5, "metadata": {"x": 1}}))
        .await;
    let (s, b) = env
        .post(
            "/team/update",
            json!({"team_id": "t1", "models": ["a", "b"], "blocked": true, "metadata": {"y": 2}, "budget_duration": "1mo"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["team_id"], "t1");
    assert_eq!(b["data"]["team_id"], "t1");
    assert_eq!(b["data"]["models"], json!(["a", "b"]));
    assert_eq!(b["data"]["blocked"], true);
    assert_eq!(
        b["data"]["metadata"],
        json!({"y": 2}),
        "replaced, not merged"
    );
    assert_eq!(b["data"]["max_budget"], 5.0);
    assert!(b["data"]["budget_reset_at"].is_string());

    let (s, b) = env
        .post("/team/update", json!({"team_id": "t1", "max_budget": null}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["max_budget"], Value::Null, "null clears it");
    assert_eq!(env.emu().teams()[0].max_budget, None);
    assert_eq!(b["data"]["models"], json!(["a", "b"]), "absent: unchanged");
    let (_, b) = env
        .post(
            "/team/update",
            json!({"team_id": "t1", "budget_duration": null}),
        )
        .await;
    assert_eq!(
        b["data"]["budget_duration"],
        Value::Null,
        "null clears it too"
    );
    assert!(
        b["data"]["budget_reset_at"].is_string(),
        "its reset time stays"
    );

    let (s, b) = env
        .post("/team/update", json!({"team_id": "nope", "max_budget": 1}))
        .await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"error": {
                "message": "{'error': 'Team not found, passed team_id=nope'}",
                "type": "internal_server_error", "param": "None", "code": "404",
            }})
        )
    );
    let (s, b) = env.post("/team/update", json!({"max_budget": 1})).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["type"], "missing");
    assert_eq!(b["detail"][0]["loc"], json!(["body", "team_id"]));
    let (s, _) = env
        .post("/team/update", json!({"team_id": "t1", "models": null}))
        .await;
    assert_eq!(s, 500, "models is not nullable");
}

/// `/team/info`: the row, the team's keys (with `token`), 404 and 422; keys read their own team only.
#[tokio::test]
async fn team_info() {
    let env = start().await;
    env.new_team(json!({"team_id": "t1", "team_alias": "one"}))
        .await;
    env.new_team(json!({"team_id": "t2"})).await;
    let k1 = env
        .new_key(json!({"team_id": "t1", "key_alias": "k1"}))
        .await;
    env.new_key(json!({"team_id": "t2"})).await;
    env.new_key(json!({})).await;

    let (s, b) = env.get("/team/info?team_id=t1").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["team_id"], "t1");
    assert_eq!(b["team_info"]["team_alias"], "one");
    assert_eq!(b["team_info"]["team_member_budget_table"], Value::Null);
    assert_eq!(b["team_memberships"], json!([]));
    let keys = b["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key_alias"], "k1");
    assert_eq!(keys[0]["team_id"], "t1");
    assert_eq!(keys[0]["token"], env.emu().keys()[0].token);

    let (s, b) = env.get("/team/info?team_id=nope").await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"error": {
                "message": "{'message': 'Team not found, passed team id: nope.'}",
                "type": "auth_error", "param": "None", "code": "404",
            }})
        )
    );
    let (s, _) = env.get("/team/info").await;
    assert_eq!(s, 422);

    let (s, _) = env
        .call("GET", "/team/info?team_id=t1", Some(&k1), None)
        .await;
    assert_eq!(s, 200, "a team key reads its own team");
    let (s, b) = env
        .call("GET", "/team/info?team_id=t2", Some(&k1), None)
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        message(&b),
        "{'error': 'Team key for team=t1 not authorized to access this team=t2'}"
    );
}

/// `/team/delete` deletes the teams and their keys; an unknown id is a bare 404 and deletes nothing.
#[tokio::test]
async fn team_delete() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_team(json!({"team_id": "t1"})).await;
    env.new_team(json!({"team_id": "t2"})).await;
    let k1 = env.new_key(json!({"team_id": "t1"})).await;
    let k2 = env.new_key(json!({"team_id": "t2"})).await;
    let loose = env.new_key(json!({})).await;

    let (s, b) = env
        .post("/team/delete", json!({"team_ids": ["t1", "nope"]}))
        .await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"detail": {"error": "Team not found, passed team_id=nope"}})
        )
    );
    assert_eq!(env.emu().teams().len(), 2);
    assert_eq!(env.emu().keys().len(), 3);

    let (s, b) = env.post("/team/delete", json!({"team_ids": ["t1"]})).await;
    assert_eq!((s, b), (200, json!({"deleted_teams": ["t1"]})));
    let teams: Vec<String> = env.emu().teams().into_iter().map(|t| t.team_id).collect();
    assert_eq!(teams, ["t2"]);
    assert_eq!(env.emu().keys().len(), 2, "t1's key went with it");
    let (s, b) = env.chat(&k1, "a").await;
    assert_eq!((s, error_type(&b)), (401, "token_not_found_in_db"));
    assert_eq!(env.chat(&k2, "a").await.0, 200);
    assert_eq!(env.chat(&loose, "a").await.0, 200);

    let (s, b) = env.post("/team/delete", json!({})).await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["loc"], json!(["body", "team_ids"]));
}

/// `/team/list`: a bare array of rows, by `team_alias`; virtual keys are refused.
#[tokio::test]
async fn team_list() {
    let env = start().await;
    let (s, b) = env.get("/team/list").await;
    assert_eq!((s, b), (200, json!([])));
    env.new_team(json!({"team_id": "t1", "team_alias": "b"}))
        .await;
    env.new_team(json!({"team_id": "t2", "team_alias": "a"}))
        .await;
    env.new_team(json!({"team_id": "t3"})).await;
    let (s, b) = env.get("/team/list").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["team_id"].as_str())
        .collect();
    assert_eq!(ids, ["t3", "t2", "t1"]);
    assert_eq!(b[0]["team_memberships"], json!([]));
    assert_eq!(b[0]["spend"], 0.0);

    let key = env.new_key(json!({"team_id": "t1"})).await;
    let (s, b) = env.call("GET", "/team/list", Some(&key), None).await;
    assert_eq!(s, 401);
    assert!(b["detail"]["error"]
        .as_str()
        .unwrap_or("")
        .starts_with("Only admin users"));
}

/// Keys and teams: `team_id` on generate (unchecked) and update (checked), `/key/info`,
/// `/key/list?team_id=`, and `/key/delete` by plaintext or hash.
#[tokio::test]
async fn team_keys() {
    let env = start().await;
    env.new_team(json!({"team_id": "t1", "models": ["a"], "rpm_limit": 5}))
        .await;
    env.new_team(json!({"team_id": "t2"})).await;

    let dangling = env.new_key(json!({"team_id": "ghost"})).await;
    let (_, info) = env.get(&format!("/key/info?key={dangling}")).await;
    assert_eq!(info["info"]["team_id"], "ghost", "generate does not check");
    let (s, b) = env
        .post("/key/update", json!({"key": dangling, "team_id": "ghost"}))
        .await;
    assert_eq!(s, 404, "update does, even for the key's own team");
    assert_eq!(
        message(&b),
        "{'error': \"Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.\"}"
    );

    let key = env
        .new_key(json!({"key_alias": "k", "models": ["a", "b"], "max_budget": 2}))
        .await;
    let (s, b) = env
        .post("/key/update", json!({"key": key, "team_id": "t1"}))
        .await;
    assert_eq!(s, 401, "t1 does not allow model b: {b}");
    assert_eq!(error_type(&b), "team_model_access_denied");
    assert_eq!(
        message(&b),
        "team not allowed to access model. This team can only access models=['a']. Tried to access b"
    );
    let (s, b) = env
        .post("/key/update", json!({"key": key, "team_id": "t2"}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["team_id"], "t2");
    let (_, info) = env.get(&format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["team_id"], "t2");

    env.new_team(json!({"team_id": "t3", "tpm_limit": 10}))
        .await;
    let fast = env.new_key(json!({"tpm_limit": 100})).await;
    let (s, b) = env
        .post("/key/update", json!({"key": fast, "team_id": "t3"}))
        .await;
    assert_eq!(s, 403);
    assert!(
        message(&b).ends_with("has a tpm_limit=100 which is greater than the team's tpm_limit=10.")
    );
    env.post("/key/delete", json!({"keys": [fast]})).await;

    let (_, b) = env
        .get("/key/list?team_id=t2&return_full_object=true")
        .await;
    assert_eq!(b["total_count"], 1);
    let row = &b["keys"][0];
    assert_eq!(row["token"], env.emu().keys()[1].token);
    assert_eq!(row["key_alias"], "k");
    assert_eq!(row["team_id"], "t2");
    assert_eq!(row["models"], json!(["a", "b"]));
    assert_eq!(row["blocked"], Value::Null);
    assert_eq!(row["max_budget"], 2.0);
    let (_, b) = env.get("/key/list?team_id=t1").await;
    assert_eq!(b["total_count"], 0);

    // `max_budget: null` clears; `budget_duration: null` does not (keys, not teams).
    let (_, b) = env
        .post("/key/update", json!({"key": key, "budget_duration": "30d"}))
        .await;
    assert_eq!(b["budget_duration"], "30d");
    let (s, b) = env
        .post(
            "/key/update",
            json!({"key": key, "max_budget": null, "budget_duration": null}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["max_budget"], Value::Null);
    assert_eq!(b["budget_duration"], "30d");

    let token = env.emu().keys()[1].token.clone();
    let (s, b) = env
        .post("/key/delete", json!({"keys": [token.clone()]}))
        .await;
    assert_eq!((s, b), (200, json!({"deleted_keys": [token]})));
    let (s, b) = env
        .post("/key/delete", json!({"keys": [dangling.clone()]}))
        .await;
    assert_eq!((s, b), (200, json!({"deleted_keys": [dangling]})));
    assert!(env.emu().keys().is_empty());
}

/// A call charges the key and its team; the team's spend survives the key; its budget stops calls.
#[tokio::test]
async fn team_spend_and_budget() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_team(json!({"team_id": "t1", "max_budget": 1}))
        .await;
    let key = env.new_key(json!({"team_id": "t1"})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    assert_eq!(env.chat(&key, "a").await.0, 200);
    let spent = env.emu().teams()[0].spend;
    assert!((spent - 0.0002).abs() < 1e-12, "{spent}");
    assert_eq!(env.emu().keys()[0].spend, spent);

    // Rotation: a new key, the old one deleted; the team keeps its spend and adds the new key's.
    let rotated = env.new_key(json!({"team_id": "t1"})).await;
    assert_eq!(env.post("/key/delete", json!({"keys": [key]})).await.0, 200);
    assert_eq!(env.chat(&rotated, "a").await.0, 200);
    let (_, info) = env.get("/team/info?team_id=t1").await;
    let spend = info["team_info"]["spend"].as_f64().unwrap_or(0.0);
    assert!((spend - 0.0003).abs() < 1e-12, "{spend}");

    // At exactly the budget a call still passes (the proxy compares with `>`); over it, not.
    env.emu().set_team_spend("t1", 1.0);
    assert_eq!(env.chat(&rotated, "a").await.0, 200);
    env.emu().set_team_spend("t1", 2.5);
    let (s, b) = env.chat(&rotated, "a").await;
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": {
                "message": "Budget has been exceeded! Team=t1 Current cost: 2.5, Max budget: 1.0",
                "type": "budget_exceeded", "param": null, "code": "400",
            }})
        )
    );
    assert_eq!(
        env.emu().teams()[0].spend,
        2.5,
        "a refused call costs nothing"
    );
    let (s, _) = env.call("GET", "/v1/models", Some(&rotated), None).await;
    assert_eq!(s, 400, "every route of the key is refused");

    // The key's own budget is checked first.
    let capped = env.new_key(json!({"team_id": "t1", "max_budget": 1})).await;
    env.emu().set_spend(&capped, 1.0);
    let (s, b) = env.chat(&capped, "a").await;
    assert_eq!(s, 400);
    assert_eq!(
        message(&b),
        "Budget has been exceeded! Current cost: 1.0, Max budget: 1.0"
    );

    // Lifting the team budget (null clears it) lets the keys call again.
    env.post("/team/update", json!({"team_id": "t1", "max_budget": null}))
        .await;
    assert_eq!(env.chat(&rotated, "a").await.0, 200);
}

/// A blocked team refuses its keys like a blocked key; team `models` restrict the team's keys.
#[tokio::test]
async fn team_blocked_and_models() {
    let env = start().await;
    env.new_model("a", "id-a", "openai/a").await;
    env.new_model("b", "id-b", "openai/b").await;
    env.new_team(json!({"team_id": "t1", "models": ["a"]}))
        .await;
    let key = env.new_key(json!({"team_id": "t1"})).await;
    assert_eq!(env.chat(&key, "a").await.0, 200);
    let (s, b) = env.chat(&key, "b").await;
    assert_eq!((s, error_type(&b)), (401, "team_model_access_denied"));
    let (_, models) = env.call("GET", "/v1/models", Some(&key), None).await;
    assert_eq!(models["data"][0]["id"], "a");
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1));

    let (s, _) = env
        .post("/team/update", json!({"team_id": "t1", "blocked": true}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = env.chat(&key, "a").await;
    assert_eq!(
        (s, b),
        (
            401,
            json!({"error": {
                "message": "Authentication Error, Team=t1 is blocked. Update via `/team/unblock` if your admin.",
                "type": "auth_error", "param": "None", "code": "401",
            }})
        )
    );
    let (s, _) = env
        .call("GET", &format!("/key/info?key={key}"), Some(&key), None)
        .await;
    assert_eq!(s, 401, "every route of the key is refused");
    let spend = env.emu().teams()[0].spend;

    env.post(
        "/team/update",
        json!({"team_id": "t1", "blocked": false, "models": []}),
    )
    .await;
    assert_eq!(env.chat(&key, "b").await.0, 200, "[] = all models");
    assert!(env.emu().teams()[0].spend > spend);

    // A key of a team that does not exist is constrained by no team.
    let dangling = env.new_key(json!({"team_id": "ghost"})).await;
    assert_eq!(env.chat(&dangling, "b").await.0, 200);
}

/// `/emu/state` lists teams, `/emu/team-spend` sets a team's spend, reset wipes teams.
#[tokio::test]
async fn team_controls() {
    let env = start().await;
    env.new_team(json!({"team_id": "t1", "team_alias": "one"}))
        .await;
    let (s, _) = env
        .post("/emu/team-spend", json!({"team_id": "t1", "spend": 0.5}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .post("/emu/team-spend", json!({"team_id": "nope", "spend": 0.5}))
        .await;
    assert_eq!(s, 404);
    let (_, state) = env.get("/emu/state").await;
    assert_eq!(state["teams"][0]["team_id"], "t1");
    assert_eq!(state["teams"][0]["spend"], 0.5);
    let team = &env.emu().teams()[0];
    assert_eq!(team.team_alias.as_deref(), Some("one"));
    assert!(!team.blocked);

    let key = env.new_key(json!({"team_id": "t1"})).await;
    let (s, _) = env
        .call(
            "POST",
            "/team/new",
            Some(&key),
            Some(json!({"team_id": "t9"})),
        )
        .await;
    assert_eq!(s, 401, "admin only");
    assert_eq!(
        env.call("POST", "/emu/reset", Some(MASTER), None).await.0,
        200
    );
    assert!(env.emu().teams().is_empty());
}
