//! Fault: Redis dies (issue 5 item 4).
//!
//! 1. A single `redis-server` with AOF is killed with SIGKILL in the middle of a stream of writes (REST and
//!    JetStream) and restarted on the same data: every write whose outcome was "succeeded" is there after
//!    the restart, every command JetStream acknowledged completes, and the API and the worker recover
//!    without being restarted. Run with `appendfsync always` (the harness's default) and `everysec` (the
//!    stack's): a killed *process* loses nothing in either mode; only a machine crash can cost `everysec`
//!    its last second (see docs/reliability.md).
//! 2. A 3-master Redis Cluster: one end-to-end scenario (register, realm, grant, agent join, config) with
//!    the primary owning the `{vc}` slot killed mid-way (no replicas: that slot is gone until the node comes
//!    back). Writes are refused (503) or wait in JetStream; nothing is acknowledged and lost; once the node
//!    is restarted everything completes and the scenario finishes.

mod fault_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fault_support::*;
use futures::StreamExt;
use serde_json::{json, Value};
use vc_shared::command::{CommandStatus, HDR_MSG_ID, HDR_REPLY_TO};
use vc_tests::servers::RedisOpts;
use vc_tests::stack::Stack;

/// What a load generator saw.
#[derive(Default)]
struct Load {
    /// REST: (sent at, status, realm id or command id).
    rest: Vec<(Instant, u16, Option<String>)>,
    /// JetStream: command ids acknowledged by the stream.
    acked: Vec<String>,
    /// Outcomes received on the reply subject: command id → status.
    outcomes: HashMap<String, String>,
}

async fn redis_kill_and_restart(appendfsync: &str) {
    let mut s = Stack::builder()
        .redis_opts(RedisOpts {
            appendfsync: appendfsync.into(),
            ..RedisOpts::default()
        })
        .command_wait(Duration::from_secs(5))
        .start()
        .await;
    let load = Arc::new(Mutex::new(Load::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let nc = s.nats_client().await;
    let reply_subject = format!("_INBOX.test.redis.{}", uuid::Uuid::new_v4().simple());
    let mut replies = nc.subscribe(reply_subject.clone()).await.unwrap();
    let collector = {
        let load = load.clone();
        tokio::spawn(async move {
            while let Some(m) = replies.next().await {
                let o: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                if let (Some(id), Some(st)) = (o["commandId"].as_str(), o["status"].as_str()) {
                    load.lock()
                        .unwrap()
                        .outcomes
                        .insert(id.to_string(), st.to_string());
                }
            }
        })
    };
    let js_load = {
        let (load, stop, js, reply) = (
            load.clone(),
            stop.clone(),
            async_nats::jetstream::new(nc.clone()),
            reply_subject.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = uuid::Uuid::new_v4().to_string();
                let mut h = async_nats::HeaderMap::new();
                h.insert(HDR_MSG_ID, id.as_str());
                h.insert(HDR_REPLY_TO, reply.as_str());
                let body = serde_json::to_vec(&json!({"name": format!("js {i}")})).unwrap();
                let r = async {
                    js.publish_with_headers("vc.cmd.realm.create", h, body.into())
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())
                };
                if r.await.is_ok() {
                    load.lock().unwrap().acked.push(id);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let rest_load = {
        let (load, stop, url) = (load.clone(), stop.clone(), s.api_url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sent = Instant::now();
                let (st, id) = post_realm(&http, &url, &format!("rest {i}")).await;
                load.lock().unwrap().rest.push((sent, st, id));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };

    // CI: one kill; `scripts/soak`: several, 3 s apart (`VC_FAULT_REDIS_CYCLES`).
    let cycles = size("VC_FAULT_REDIS_CYCLES", 1, 10);
    let (mut killed_at, mut restarted_at) = (Instant::now(), Instant::now());
    let (mut down_for, mut readable_after) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..cycles {
        tokio::time::sleep(secs(3)).await;
        let before = rev(&s.store).await;
        killed_at = Instant::now();
        s.redis.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| s.redis.restart());
        down_for = down_for.max(killed_at.elapsed());
        restarted_at = Instant::now();
        // The first read after the restart (the services' connections reconnect on use): nothing that
        // was committed before the kill is missing.
        let after = vc_tests::wait::eventually("Redis readable again", secs(10), || async {
            s.store.rev().await
        })
        .await;
        readable_after = readable_after.max(restarted_at.elapsed());
        assert!(
            after >= before,
            "the restart lost commits ({after} < {before})"
        );
    }
    tokio::time::sleep(secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    js_load.await.unwrap();
    rest_load.await.unwrap();

    // Every JetStream-acknowledged command completes; every "succeeded" outcome is visible.
    let acked = load.lock().unwrap().acked.clone();
    let t = Instant::now();
    vc_tests::wait::eventually("every acknowledged command completed", secs(60), || async {
        let st = statuses(&s.store, &acked).await;
        let open = st
            .values()
            .filter(|v| **v != Some(CommandStatus::Succeeded))
            .count();
        (open == 0).then_some(()).ok_or(format!("{open} open"))
    })
    .await;
    let drained = t.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    collector.abort();
    let load = std::mem::take(&mut *load.lock().unwrap());
    let mut lost = Vec::new();
    for (id, st) in &load.outcomes {
        if st == "succeeded" {
            let realm = vc_shared::command::derived_id(id);
            if s.get(&format!("/api/realms/{realm}")).await.status != 200 {
                lost.push(id.clone());
            }
        }
    }
    let mut codes: HashMap<u16, usize> = HashMap::new();
    for (sent, st, id) in &load.rest {
        *codes.entry(*st).or_default() += 1;
        match (st, id) {
            (201, Some(realm)) if s.get(&format!("/api/realms/{realm}")).await.status != 200 => {
                lost.push(format!(
                    "REST realm {realm} (sent {:?} after the last kill)",
                    sent.checked_duration_since(killed_at)
                ));
            }
            (202, Some(cmd)) => {
                vc_tests::wait::eventually("a 202 command completes", secs(30), || async {
                    s.store
                        .command(cmd)
                        .await
                        .ok()
                        .flatten()
                        .filter(|r| r.status != CommandStatus::Pending)
                })
                .await;
            }
            _ => {}
        }
    }
    let first_201_after = load
        .rest
        .iter()
        .find(|(sent, st, _)| *sent > restarted_at && *st == 201)
        .map(|(sent, _, _)| sent.duration_since(restarted_at));
    let succeeded = load.outcomes.values().filter(|v| *v == "succeeded").count();
    // REST answer time around the outage (sent at → next request sent ≈ answer time + 30 ms).
    let slowest_rest = load
        .rest
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0))
        .max()
        .unwrap_or_default();
    eprintln!(
        "[fault] appendfsync {appendfsync}: {cycles} kill(s), Redis down {down_for:?} each (SIGKILL, restart \
         on the same AOF); first read at most {readable_after:?} after a restart; {} JetStream commands acked, {succeeded} \
         'succeeded' outcomes received, REST answers {codes:?}; first REST 201 sent {first_201_after:?} after \
         the restart, slowest REST answer {slowest_rest:?}; backlog drained {drained:?} after the load stopped; lost: {}",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        first_201_after.is_some(),
        "the API recovered by itself: {codes:?}"
    );
    // Reads and writes work through the same (never restarted) services.
    assert_eq!(s.get("/api/realms").await.status, 200);
    let w = s
        .post("/api/realms", json!({"name": "after the restart"}))
        .await;
    assert_eq!(w.status, 201, "{}", w.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill9_with_appendfsync_always_loses_no_acknowledged_write() {
    redis_kill_and_restart("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill9_with_appendfsync_everysec_loses_no_acknowledged_write() {
    redis_kill_and_restart("everysec").await;
}

/// The cluster node (index) whose slots include the slot of `{vc}`.
async fn vc_slot_owner(s: &Stack) -> usize {
    let cluster = s.redis_cluster.as_ref().expect("cluster");
    let url = cluster.urls()[0].clone();
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("{vc}")
        .query_async(&mut c)
        .await
        .unwrap();
    for i in 0..cluster.len() {
        let client = redis::Client::open(cluster.urls()[i].clone()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .unwrap();
        let me = nodes.lines().find(|l| l.contains("myself")).unwrap();
        for range in me.split_whitespace().skip(8) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                if (a..=b).contains(&slot) {
                    return i;
                }
            }
        }
    }
    panic!("no node owns slot {slot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_end_to_end_with_the_vc_primary_killed() {
    let mut s = Stack::builder()
        .redis_cluster(3)
        .litellm(true)
        .command_wait(Duration::from_secs(5))
        .start()
        .await;
    // Before: model, realm, grant (key minted), agent.
    let m = s
        .post(
            "/api/models",
            json!({"name": "Cluster Model", "provider": "openai", "modelId": "gpt-c", "apiKey": "sk-up-cluster"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let model = m.body["model"]["id"].as_str().unwrap().to_string();
    let r = s
        .post("/api/realms", json!({"name": "Cluster Realm"}))
        .await;
    let realm = r.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model}/realms"),
            json!({"realmId": realm, "monthlyBudgetUsd": 20}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let (_, did) = vc_tests::stack::new_agent();
    assert_eq!(
        s.post("/api/agents", json!({"did": did, "name": "cluster agent"}))
            .await
            .status,
        201
    );

    // Kill the primary that owns {vc} (no replicas: its slots are gone until it returns).
    let owner = vc_slot_owner(&s).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    s.redis_cluster.as_mut().unwrap().kill_node(owner);
    let killed_at = Instant::now();
    // REST: refused with 503 at once (the API cannot even write the pending record) - never acked.
    let t = Instant::now();
    let join = s
        .post(
            &format!("/api/realms/{realm}/agents"),
            json!({"agentDid": did}),
        )
        .await;
    let rest_during = (join.status, t.elapsed());
    assert_eq!(join.status, 503, "{}", join.text);
    let t = Instant::now();
    // Reads are served from the API's read model: the last state it knew, at once.
    let read = s.get("/api/realms").await;
    assert_eq!(read.status, 200, "reads go on: {}", read.text);
    assert_eq!(read.body["realms"][0]["id"], realm.as_str());
    let read_during = t.elapsed();
    // A command published on NATS is acknowledged by JetStream and waits: the worker retries it.
    let js = async_nats::jetstream::new(s.nats_client().await);
    let cmd_id = uuid::Uuid::new_v4().to_string();
    let mut h = async_nats::HeaderMap::new();
    h.insert(HDR_MSG_ID, cmd_id.as_str());
    js.publish_with_headers(
        "vc.cmd.realm.agent.add",
        h,
        serde_json::to_vec(&json!({"realmId": realm, "agentDid": did}))
            .unwrap()
            .into(),
    )
    .await
    .unwrap()
    .await
    .expect("JetStream acknowledges the command while Redis is partly down");
    let acked_after = killed_at.elapsed();
    // The other masters: the cluster is down as a whole (cluster-require-full-coverage), so keys on the
    // surviving nodes (presence, leases) are refused too once the node is marked failed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let client =
        redis::Client::open(s.redis_cluster.as_ref().unwrap().urls()[others[0]].clone()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .unwrap();
    let state = info
        .lines()
        .find(|l| l.starts_with("cluster_state:"))
        .unwrap_or("")
        .trim()
        .to_string();
    assert_eq!(
        s.store
            .command(&cmd_id)
            .await
            .ok()
            .flatten()
            .map(|r| r.status),
        None,
        "not applied while {{vc}} is unreachable"
    );
    let down_for = killed_at.elapsed();

    // Restart the node (same port, same AOF): the waiting command completes without any restart of
    // the services, and the scenario goes on.
    let t = Instant::now();
    tokio::task::block_in_place(|| s.redis_cluster.as_mut().unwrap().restart_node(owner));
    let restart = t.elapsed();
    let t = Instant::now();
    let rec = vc_tests::wait::eventually("the waiting command completes", secs(60), || async {
        s.store
            .command(&cmd_id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.status != CommandStatus::Pending)
    })
    .await;
    let completed_after = t.elapsed();
    assert_eq!(rec.status, CommandStatus::Succeeded, "{rec:?}");
    let t = Instant::now();
    vc_tests::wait::eventually("the API answers again", secs(30), || async {
        s.get("/api/realms").await.status == 200
    })
    .await;
    let api_back = t.elapsed();
    // Agent joined (auto-configured through the realm); then an explicit config; all visible.
    let cfg = s.get(&format!("/api/agents/{did}/llm-config")).await;
    assert_eq!(cfg.body["mode"], "realm", "{}", cfg.text);
    let put = s
        .put(
            &format!("/api/agents/{did}/llm-config"),
            json!({"realmId": realm, "realmModelId": model}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let agent = s.get(&format!("/api/agents/{did}")).await;
    assert_eq!(agent.status, 200);
    assert_eq!(
        agent.body["agent"]["configVersion"], put.body["version"],
        "{}",
        agent.text
    );
    let emu = &s.emu.as_ref().unwrap().emu;
    vc_tests::assert_eventually!(emu.keys().len() == 1 && emu.deployments().len() == 1);
    assert_eq!(emu.keys()[0].max_budget, Some(20.0));
    let realm_view = s.get(&format!("/api/realms/{realm}")).await;
    assert_eq!(
        realm_view.body["realm"]["agentCount"], 1,
        "{}",
        realm_view.text
    );
    eprintln!(
        "[fault] Redis Cluster: killed the {{vc}} primary (node {owner}); during the outage REST writes answered \
         {rest_during:?} (status, latency) and reads 200 from the read model in {read_during:?}; a JetStream command was \
         acknowledged {acked_after:?} after the kill and waited; surviving masters reported {state} after \
         {down_for:?}; node restarted in {restart:?}; the waiting command completed \
         {completed_after:?} later and the API answered {api_back:?} later, without restarting any service"
    );
}
