//! Paged lists served from the API's read model, over real NATS + Redis: cursors that neither skip
//! nor repeat while writes happen between pages, filters, 400s naming the parameter, ETags and 304s,
//! read-your-writes, presence from the edges' reports, and a second API instance that follows the
//! change log.

mod edge_support;

use std::collections::BTreeSet;

use edge_support::*;
use serde_json::{json, Value};
use vc_edge::EdgeConfig;
use vc_tests::assert_eventually;
use vc_tests::stack::{new_agent, Stack};

async fn register(s: &Stack, name: &str) -> String {
    let (_, did) = new_agent();
    let r = s
        .post("/api/agents", json!({"did": did, "name": name}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    did
}

fn dids(body: &Value) -> Vec<String> {
    body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["did"].as_str().unwrap().to_string())
        .collect()
}

/// Walks a list page by page; returns the DIDs seen, in order.
async fn walk(s: &Stack, path: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        seen.extend(dids(&r.body));
        match r.body["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return seen,
        }
    }
}

/// Cursors walk a stable order: agents created, renamed into other realms or deleted between pages
/// never make one that existed throughout appear twice or go missing; filters; bad parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stable_under_writes_and_filters_name_their_errors() {
    let s = Stack::builder().start().await;
    let mut all = Vec::new();
    for i in 0..25 {
        all.push(register(&s, &format!("agent-{i:02}")).await);
    }
    let r = s.post("/api/realms", json!({"name": "Blue"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let blue = r.body["realm"]["id"].as_str().unwrap().to_string();

    // Page by page, with writes between the pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    let mut deleted = BTreeSet::new();
    loop {
        let url = match &cursor {
            Some(c) => format!("/api/agents?limit=4&cursor={c}"),
            None => "/api/agents?limit=4".to_string(),
        };
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body["agents"].as_array().unwrap().len() <= 4);
        seen.extend(dids(&r.body));
        // Between pages: a new agent, a deleted one ahead of the cursor, a membership change.
        round += 1;
        register(&s, &format!("late-{round}")).await;
        let victim = &all[all.len() - round];
        if !seen.contains(victim) && deleted.len() < 3 {
            assert_eq!(s.delete(&format!("/api/agents/{victim}")).await.status, 204);
            deleted.insert(victim.clone());
        }
        let member = &all[round % all.len()];
        let add = s
            .post(
                &format!("/api/realms/{blue}/agents"),
                json!({"agentDid": member}),
            )
            .await;
        assert_eq!(add.status, 200, "{}", add.text);
        match r.body["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no agent twice: {seen:?}");
    for did in &all {
        if !deleted.contains(did) {
            assert!(
                seen.contains(did),
                "{did} existed throughout and was listed"
            );
        }
    }
    for did in &deleted {
        assert!(!seen.contains(did), "{did} was deleted before its page");
    }

    // A realm's members, paged, both ways.
    let members = walk(&s, &format!("/api/realms/{blue}/agents"), 3).await;
    let filtered = walk(&s, &format!("/api/agents?realmId={blue}"), 3).await;
    assert_eq!(members, filtered);
    assert!(!members.is_empty());
    let realm = s.get(&format!("/api/realms/{blue}")).await;
    assert_eq!(realm.status, 200, "{}", realm.text);
    assert_eq!(
        realm.body["realm"]["agentCount"].as_u64(),
        Some(members.len() as u64)
    );
    assert_eq!(dids(&realm.body), members, "first page on the realm itself");
    assert_eq!(realm.body["agentsNext"], Value::Null);

    // Filters.
    let q = s.get("/api/agents?q=AGENT-1&limit=1000").await;
    assert_eq!(q.status, 200, "{}", q.text);
    let names: Vec<&str> = q.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("agent-1")),
        "{names:?}"
    );
    let prefix = &all[0][..20];
    let by_did = s.get(&format!("/api/agents?q={prefix}")).await;
    assert!(dids(&by_did.body).contains(&all[0]));
    let none = s.get("/api/agents?mode=none&online=false").await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(
        dids(&none.body).len(),
        100.min(all.len() - deleted.len() + round),
        "nobody has a config or a session"
    );
    assert_eq!(
        s.get("/api/agents?mode=realm").await.body["agents"],
        json!([])
    );

    // The read model reports itself on /metrics.
    let metrics = reqwest::get(format!("{}/metrics", s.api_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "vc_api_read_model_change",
        "vc_api_read_model_agents",
        "vc_api_read_model_loads",
        "vc_api_feed_clients",
    ] {
        assert!(metrics.contains(name), "{name} on /metrics");
    }

    // Bad parameters: 400 naming the parameter.
    for (url, param) in [
        ("/api/agents?limit=0", "limit"),
        ("/api/agents?limit=1001", "limit"),
        ("/api/agents?limit=ten", "limit"),
        ("/api/agents?cursor=garbage", "cursor"),
        ("/api/agents?online=maybe", "online"),
        ("/api/agents?mode=auto", "mode"),
        ("/api/agents?sort=name", "sort"),
        ("/api/models?status=gone", "status"),
        ("/api/models?provider=acme", "provider"),
        ("/api/realms?realmId=x", "realmId"),
    ] {
        let r = s.get(url).await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
        assert_eq!(r.body["code"], "BAD_REQUEST", "{url}");
        let msg = r.body["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{param}:")), "{url}: {msg}");
    }
}

/// ETags: a list or a resource answers 304 to its own ETag until it changes; a GET right after a write
/// sees the write, on the instance that took it and (once it followed the log) on another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_read_your_writes() {
    let s = Stack::builder().litellm(true).start().await;
    let m = s
        .post(
            "/api/models",
            json!({"name": "Alpha", "provider": "openai", "modelId": "alpha", "apiKey": "sk-up-lists"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let id = m.body["model"]["id"].as_str().unwrap().to_string();

    for path in ["/api/models".to_string(), format!("/api/models/{id}")] {
        let first = s
            .request(reqwest::Method::GET, &path, None, None, &[])
            .await;
        assert_eq!(first.status, 200);
        let etag = etag_of(&s, &path).await;
        let again = s
            .request(
                reqwest::Method::GET,
                &path,
                None,
                None,
                &[("if-none-match", &etag)],
            )
            .await;
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.text, "", "no body with a 304");
    }

    // Read-your-writes, many times in a row: each GET right after its 200 sees the write.
    let etag = etag_of(&s, &format!("/api/models/{id}")).await;
    for i in 0..20 {
        let name = format!("Alpha {i}");
        let r = s
            .put(&format!("/api/models/{id}"), json!({"name": name}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let got = s.get(&format!("/api/models/{id}")).await;
        assert_eq!(got.body["model"]["name"], name.as_str());
        let listed = s.get("/api/models").await;
        assert_eq!(listed.body["models"][0]["name"], name.as_str());
    }
    let changed = s
        .request(
            reqwest::Method::GET,
            &format!("/api/models/{id}"),
            None,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(changed.status, 200, "a changed model is sent again");

    let r = s.post("/api/realms", json!({"name": "Green"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let green = r.body["realm"]["id"].as_str().unwrap().to_string();
    let listed = s.get("/api/realms").await;
    assert!(listed.body["realms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == green.as_str()));
    let did = register(&s, "fresh").await;
    assert_eq!(s.get(&format!("/api/agents/{did}")).await.status, 200);

    // A second API instance loads the catalog, then follows the change log.
    let api2 = s.spawn_api().await;
    let other = |path: String| {
        let url = format!("http://{}{path}", api2.addr.expect("addr"));
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        other(format!("/api/agents/{did}")).await["agent"]["did"],
        did.as_str()
    );
    let r = s
        .put(&format!("/api/models/{id}"), json!({"status": "inactive"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eventually!(other(format!("/api/models/{id}")).await["model"]["status"] == "inactive");
    assert_eq!(
        s.get("/api/models?status=active").await.body["models"],
        json!([])
    );

    // A command published on NATS, then read with `Cache-Control: no-cache` as soon as it is
    // committed: the read waits for the read model to catch up.
    let js = async_nats::jetstream::new(s.nats_client().await);
    for i in 0..10 {
        let id = uuid::Uuid::new_v4().to_string();
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id.as_str());
        let name = format!("Over NATS {i}");
        js.publish_with_headers(
            "vc.cmd.realm.create",
            h,
            serde_json::to_vec(&json!({"name": name})).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        assert_eventually!(s
            .store
            .command(&id)
            .await
            .unwrap()
            .is_some_and(|c| c.status == vc_shared::command::CommandStatus::Succeeded));
        let r = s
            .request(
                reqwest::Method::GET,
                "/api/realms?limit=1000",
                None,
                None,
                &[("cache-control", "no-cache")],
            )
            .await;
        assert!(
            r.body["realms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == name.as_str()),
            "{name} listed right after its commit"
        );
    }

    // The smaller lists page the same way: a model's grants, a realm's models, tokens.
    let realms: Vec<String> = s.get("/api/realms?limit=1000").await.body["realms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let active = s
        .put(&format!("/api/models/{id}"), json!({"status": "active"}))
        .await;
    assert_eq!(active.status, 200, "{}", active.text);
    for r in realms.iter().take(5) {
        let g = s
            .post(&format!("/api/models/{id}/realms"), json!({"realmId": r}))
            .await;
        assert_eq!(g.status, 200, "{}", g.text);
    }
    let mut granted = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s
            .get(&format!("/api/models/{id}/realms?limit=2{cursor}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        granted.extend(
            r.body["realms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["realmId"].as_str().unwrap().to_string()),
        );
        match r.body["next"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    granted.sort();
    let mut want: Vec<String> = realms.iter().take(5).cloned().collect();
    want.sort();
    assert_eq!(granted, want);
    let rm = s
        .get(&format!("/api/realms/{}/models?limit=1", realms[0]))
        .await;
    assert_eq!(rm.status, 200, "{}", rm.text);
    assert_eq!(rm.body["models"][0]["id"], id.as_str(), "{}", rm.text);
    assert_eq!(rm.body["next"], Value::Null);
    assert!(rm.body["routerKey"].is_object());
    for i in 0..3 {
        let t = s
            .post(
                "/api/tokens",
                json!({"name": format!("t{i}"), "role": "realm-admin", "realmIds": [realms[0]]}),
            )
            .await;
        assert_eq!(t.status, 201, "{}", t.text);
    }
    let first = s.get("/api/tokens?limit=2").await;
    assert_eq!(first.body["tokens"].as_array().unwrap().len(), 2);
    let next = first.body["next"].as_str().unwrap();
    let second = s.get(&format!("/api/tokens?limit=2&cursor={next}")).await;
    assert_eq!(second.body["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["next"], Value::Null);
    assert_eq!(s.get("/api/tokens?limit=0").await.status, 400);
    let inactive = s
        .put(&format!("/api/models/{id}"), json!({"status": "inactive"}))
        .await;
    assert_eq!(inactive.status, 200, "{}", inactive.text);
    assert_eq!(
        s.get("/api/models?status=inactive&provider=openai")
            .await
            .body["models"][0]["id"],
        id.as_str()
    );
}

async fn etag_of(s: &Stack, path: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", s.api_url))
        .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    r.headers()["etag"].to_str().unwrap().to_string()
}

/// Presence comes from the edges' reports: an agent that connects lists as online on its edge
/// (`online=true`), and offline once it leaves; its ack shows as `ackedVersion`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_acks_follow_the_edges_reports() {
    let s = Stack::builder().start().await;
    let edge = spawn_edge(
        &s.nats.url(),
        &s.redis.url(),
        &s.secret,
        EdgeConfig::new("edge-lists"),
    )
    .await;
    let ks = keys(3);
    for (_, did) in &ks {
        let r = s
            .post("/api/agents", json!({"did": did, "name": "p"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let online_dids = |b: Value| {
        let mut v = dids(&b);
        v.sort();
        v
    };
    assert_eq!(
        s.get("/api/agents?online=true").await.body["agents"],
        json!([])
    );
    let first = spawn_agent(&ks[0].0, agent_opts(&[&edge]));
    assert_eventually!(
        online_dids(s.get("/api/agents?online=true").await.body) == vec![ks[0].1.clone()]
    );
    let a = s.get(&format!("/api/agents/{}", ks[0].1)).await;
    assert_eq!(a.body["agent"]["edgeId"], "edge-lists");
    assert_eventually!(
        s.get(&format!("/api/agents/{}", ks[0].1)).await.body["agent"]["ackedVersion"]
            == s.get(&format!("/api/agents/{}", ks[0].1)).await.body["agent"]["configVersion"]
    );
    first.stop().await;
    assert_eventually!(s.get("/api/agents?online=true").await.body["agents"] == json!([]));
    let a = s.get(&format!("/api/agents/{}", ks[0].1)).await;
    assert_eq!(a.body["agent"]["online"], false);
    assert!(a.body["agent"]["lastSeen"].is_string());
}
