//! `GET /api/events` over real NATS (JetStream `VC_EVT`) + Redis: live changes, presence and acks from an
//! edge, resume with `Last-Event-ID` without loss, a resume point past retention, what a realm admin
//! sees, bad resume points.

mod edge_support;

use std::time::Duration;

use edge_support::*;
use serde_json::{json, Value};
use vc_edge::EdgeConfig;
use vc_tests::stack::{Stack, ADMIN_TOKEN};

/// A Server-Sent Events client: `(id, event, data)` triples.
struct Sse {
    body: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &Stack, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new()
            .get(format!("{}/api/events", s.api_url))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Sse {
            body: r,
            buf: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), within 10 s.
    async fn next(&mut self) -> (Option<String>, String, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (id, event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream is open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one of `kind` about `subject` (returns it, with the ids seen on the way).
    async fn until(&mut self, kind: &str, subject: &str) -> (String, Value, Vec<String>) {
        let mut ids = Vec::new();
        loop {
            let (id, event, data) = self.next().await;
            let id = id.expect("every change has an id");
            ids.push(id.clone());
            if event == kind && data["subject"] == subject {
                return (id, data, ids);
            }
        }
    }
}

/// Changes arrive live, presence and acks included; a client that reconnects with `Last-Event-ID`
/// gets what it missed, in order, then the live ones; a realm admin sees its realm's events only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_live_and_resumed() {
    let s = Stack::builder().litellm(true).start().await;
    // The API opens its live consumer before it serves: what is published from now on is on the feed.
    let mut feed = Sse::open(&s, ADMIN_TOKEN, None).await;

    let r = s.post("/api/realms", json!({"name": "Red"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let red = r.body["realm"]["id"].as_str().unwrap().to_string();
    let (first_id, ev, _) = feed.until("realm.created", &format!("realm:{red}")).await;
    assert_eq!(ev["kind"], "realm.created");
    assert!(first_id.parse::<u64>().unwrap() > 0);

    // An agent connects through an edge: registered, online, acked.
    let edge = spawn_edge(
        &s.nats.url(),
        &s.redis.url(),
        &s.secret,
        EdgeConfig::new("edge-feed"),
    )
    .await;
    let ks = keys(1);
    let did = ks[0].1.clone();
    let r = s
        .post("/api/agents", json!({"did": did, "name": "feeder"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    feed.until("agent.registered", &format!("agent:{did}"))
        .await;
    let agent = spawn_agent(&ks[0].0, agent_opts(&[&edge]));
    let (_, presence, _) = feed.until("agent.presence", "edge:edge-feed").await;
    assert_eq!(presence["details"]["changes"][0]["did"], did.as_str());
    assert_eq!(presence["details"]["changes"][0]["online"], true);
    let (_, acked, _) = feed.until("agent.acked", "edge:edge-feed").await;
    assert_eq!(acked["details"]["acks"][0]["did"], did.as_str());

    // Disconnect; changes happen meanwhile; resume with the last id seen.
    drop(feed);
    let r = s.post("/api/realms", json!({"name": "Amber"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let amber = r.body["realm"]["id"].as_str().unwrap().to_string();
    let r = s
        .post(
            &format!("/api/realms/{red}/agents"),
            json!({"agentDid": did}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut resumed = Sse::open(&s, ADMIN_TOKEN, Some(&first_id)).await;
    let (_, _, ids) = resumed
        .until("realm.created", &format!("realm:{amber}"))
        .await;
    let ids: Vec<u64> = ids.iter().map(|i| i.parse().unwrap()).collect();
    assert_eq!(
        ids.first().copied(),
        Some(first_id.parse::<u64>().unwrap() + 1),
        "resumes right after the last id seen"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    resumed
        .until("realm.agent.added", &format!("realm:{red}"))
        .await;
    // And live after that.
    let r = s
        .patch(&format!("/api/realms/{red}"), json!({"name": "Crimson"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    resumed
        .until("realm.updated", &format!("realm:{red}"))
        .await;

    // A realm admin of Amber sees Amber's events, not Red's nor its agents'.
    let t = s
        .post(
            "/api/tokens",
            json!({"name": "amber-admin", "role": "realm-admin", "realmIds": [amber]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    let token = t.body["secret"].as_str().unwrap().to_string();
    let mut scoped = Sse::open(&s, &token, Some(&first_id)).await;
    let (_, _, ev) = scoped.next().await;
    assert_eq!(
        ev["subject"],
        format!("realm:{amber}"),
        "first visible event: {ev}"
    );
    agent.stop().await;

    // A resume point past the retention window: the feed says so first, then follows. The stream's
    // history cannot be purged (deny_purge): old events leave it by its limits, as in production (here
    // the message limit, lowered to 2).
    let js = async_nats::jetstream::new(s.nats_client().await);
    let mut evt = js.get_stream("VC_EVT").await.unwrap();
    assert!(evt.purge().await.is_err(), "VC_EVT refuses purges");
    let mut config = evt.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge);
    config.max_messages = 2;
    js.update_stream(config).await.unwrap();
    let mut gone = Sse::open(&s, ADMIN_TOKEN, Some("1")).await;
    let (id, event, data) = gone.next().await;
    assert_eq!(event, "reset", "{data}");
    assert_eq!(id, None);
    assert!(data["first"].as_u64().unwrap() > 2, "{data}");
    let r = s.post("/api/realms", json!({"name": "After purge"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let after = r.body["realm"]["id"].as_str().unwrap().to_string();
    gone.until("realm.created", &format!("realm:{after}")).await;

    // Bad resume points.
    for bad in ["abc", "-1", "1.5"] {
        let r = s
            .request(
                reqwest::Method::GET,
                "/api/events",
                None,
                None,
                &[("last-event-id", bad)],
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Last-Event-ID:"));
    }
}
