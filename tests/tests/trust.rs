//! Smaller trust findings, each tried through the real API: weak DIDs are refused, the `Bearer` scheme
//! is case-insensitive, a realm admin learns nothing about other realms through an agent they share,
//! and a token over its request rate gets 429 with `Retry-After` (other tokens unaffected).

use serde_json::json;
use vc_tests::stack::{Stack, ADMIN_TOKEN};

/// `did:key` of the neutral point (y = 1): a valid encoding of a small-order key, whose "signatures" can
/// be forged without any private key (`z` + base58btc of 0xed 0x01, 0x01, 31 zero bytes).
const WEAK_DID: &str = "did:key:z6MkeXATEjyXENzBXBxgC5EHk2JE5aqd7qMGGtDpLUH1e2Sj";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_dids_and_bearer_case() {
    let s = Stack::builder().start().await;
    let r = s
        .post("/api/agents", json!({"did": WEAK_DID, "name": "weak"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"].as_str().unwrap().contains("weak"),
        "{}",
        r.text
    );

    let with_auth = |value: String| {
        let s = &s;
        async move {
            s.request(
                reqwest::Method::GET,
                "/api/models",
                None,
                Some(""),
                &[("authorization", &value)],
            )
            .await
        }
    };
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let r = with_auth(format!("{scheme} {ADMIN_TOKEN}")).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text);
    }
    let r = with_auth(format!("Basic {ADMIN_TOKEN}")).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_admin_sees_only_its_realms_of_a_shared_agent() {
    let s = Stack::builder().litellm(true).start().await;
    let mine = s.post("/api/realms", json!({"name": "Mine"})).await;
    let mine = mine.body["realm"]["id"].as_str().unwrap().to_string();
    let theirs = s.post("/api/realms", json!({"name": "Theirs"})).await;
    let theirs = theirs.body["realm"]["id"].as_str().unwrap().to_string();
    let m = s
        .post(
            "/api/models",
            json!({"name": "Alpha", "provider": "openai", "modelId": "alpha"}),
        )
        .await;
    let m = m.body["model"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{m}/realms"),
            json!({"realmId": theirs}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let (_, did) = vc_tests::stack::new_agent();
    assert_eq!(
        s.post("/api/agents", json!({"did": did, "name": "shared"}))
            .await
            .status,
        201
    );
    // Primary in theirs (so routed through it), also a member of mine.
    for (realm, primary) in [(&theirs, true), (&mine, false)] {
        let r = s
            .post(
                &format!("/api/realms/{realm}/agents"),
                json!({"agentDid": did, "isPrimary": primary}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let t = s
        .post(
            "/api/tokens",
            json!({"name": "lead", "role": "realm-admin", "realmIds": [mine]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    let token = t.body["secret"].as_str().unwrap().to_string();
    let get = |path: String| {
        let s = &s;
        let token = token.clone();
        async move {
            s.request(reqwest::Method::GET, &path, None, Some(&token), &[])
                .await
        }
    };

    let admin_view = s.get(&format!("/api/agents/{did}")).await;
    assert_eq!(
        admin_view.body["agent"]["realms"].as_array().unwrap().len(),
        2
    );
    let one = get(format!("/api/agents/{did}")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    let listed = get(format!("/api/realms/{mine}/agents")).await;
    let detail = get(format!("/api/realms/{mine}")).await;
    let config = get(format!("/api/agents/{did}/llm-config")).await;
    let realm_llm = get(format!("/api/agents/{did}/realm-llm")).await;
    assert_eq!(config.body["mode"], "realm", "{}", config.text);
    assert!(config.body["realmId"].is_null(), "{}", config.text);
    for (what, r) in [
        ("agent", &one),
        ("realm agents", &listed),
        ("realm", &detail),
        ("llm-config", &config),
        ("realm-llm", &realm_llm),
    ] {
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        assert!(
            !r.text.contains(&theirs) && !r.text.contains("Theirs"),
            "{what} shows the other realm: {}",
            r.text
        );
    }
    assert_eq!(
        one.body["agent"]["realms"],
        json!([{"realmId": mine, "realmName": "Mine", "isPrimary": false}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    // 2 requests per second, bursts of 3, for every token of this API.
    let s = Stack::builder().api_limits(2, 3, 0).start().await;
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let r = reqwest::Client::new()
            .get(format!("{}/api/models", s.api_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], "TOO_MANY_REQUESTS", "{body}");
        }
    }
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    assert!(codes[3..].contains(&429), "{codes:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another token has its own budget.
    let t = reqwest::Client::new()
        .post(format!("{}/api/session", s.api_url))
        .json(&json!({"token": "not-a-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.status(),
        401,
        "login is not limited by the admin's budget"
    );
    // The limit is a rate: a second later the token may send again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = s.get("/api/models").await;
    assert_eq!(again.status, 200, "{}", again.text);
}
