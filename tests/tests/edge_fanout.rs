//! Fan-out across three edges and a few hundred agents (issue 4 §8), the worker simulated by Redis
//! writes and NATS pushes: a realm push reaches exactly its agents, once; edges see no traffic for
//! realms they hold no agent of; agents move, reconnect, get taken over, get deleted; an edge dies.

mod edge_support;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use edge_support::*;
use vc_agent::{Exit, Swarm};
use vc_shared::ws::close;
use vc_tests::assert_eventually;

fn patience(secs: u64) -> Duration {
    vc_tests::wait::scaled(Duration::from_secs(secs))
}

/// 300 agents over 3 edges: realm r1 (edges A, B), realm r2 (edges B, C), manual configs (all edges).
/// A realm push reaches every agent of the realm exactly once (one encoded frame per edge), each acks,
/// other agents get nothing, and the edge without r1 agents receives no r1 message at all. Then edge B
/// dies: its agents reconnect elsewhere and end up with the latest version, including an update
/// published while they were reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_push_reaches_exactly_its_agents_across_three_edges() {
    let env = Env::start().await;
    let a = env.edge(env.edge_config("edge-a")).await;
    let mut b = env.edge(env.edge_config("edge-b")).await;
    let c = env.edge(env.edge_config("edge-c")).await;
    let ks = keys(300);
    let dids: Vec<String> = ks.iter().map(|(_, d)| d.clone()).collect();
    let (r1, r2, manual) = (&dids[..100], &dids[100..200], &dids[200..]);
    let mut recs = Vec::new();
    recs.extend(
        r1.iter()
            .map(|d| (d.clone(), env.state(1, Some("r1"), "m1"))),
    );
    recs.extend(
        r2.iter()
            .map(|d| (d.clone(), env.state(1, Some("r2"), "m2"))),
    );
    recs.extend(manual.iter().map(|d| (d.clone(), env.state(1, None, "m3"))));
    env.put_agents(&recs).await;

    let keys_of =
        |r: std::ops::Range<usize>| ks[r].iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let started = Instant::now();
    let s1 = Swarm::spawn(keys_of(0..100), &agent_opts(&[&a, &b]));
    let s2 = Swarm::spawn(keys_of(100..200), &agent_opts(&[&b, &c]));
    let s3 = Swarm::spawn(keys_of(200..300), &agent_opts(&[&a, &b, &c]));
    let all = || s1.agents().iter().chain(s2.agents()).chain(s3.agents());
    assert_eventually!(
        all().all(|x| x.version() == Some(1)),
        patience(30),
        "all 300 agents hold v1"
    );
    eprintln!(
        "300 agents connected and configured in {:?}",
        started.elapsed()
    );

    // Interest: each edge subscribes exactly the subjects of what it holds.
    let held: usize = [&a, &b, &c].iter().map(|e| e.probe.dids().len()).sum();
    assert_eq!(held, 300);
    for e in [&a, &b, &c] {
        assert_eq!(
            e.agent_subjects().len(),
            e.probe.dids().len(),
            "{}: one agent subject per held agent",
            e.id
        );
    }
    assert_eq!(a.realm_subjects(), vec!["vc.push.realm.r1".to_string()]);
    assert_eq!(
        b.realm_subjects(),
        vec![
            "vc.push.realm.r1".to_string(),
            "vc.push.realm.r2".to_string()
        ]
    );
    assert_eq!(c.realm_subjects(), vec!["vc.push.realm.r2".to_string()]);
    // Every session's setup (subscribe, round trip, re-read) is over: a re-read still in flight would
    // derive the new version for its agent alone.
    assert_eventually!([&a, &b, &c].iter().all(|e| e.probe.settling() == 0));
    let realm_pushes = |e: &Edge| e.metrics.pushes_received("realm");
    let before = [realm_pushes(&a), realm_pushes(&b), realm_pushes(&c)];

    // "Grant" on r1: version 2 for its 100 agents, one broadcast.
    let t = Instant::now();
    env.update_realm("r1", r1, env.state(2, Some("r1"), "m1-new"))
        .await;
    assert_eventually!(
        s1.agents().iter().all(|x| x.version() == Some(2)),
        patience(10),
        "r1 agents hold v2"
    );
    eprintln!(
        "realm push fanned out to 100 agents on 2 edges in {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = BTreeSet::new();
    for x in s1.agents() {
        let s = x.status();
        let versions: Vec<u64> = s.configs.iter().map(|c| c.version).collect();
        assert_eq!(versions, vec![1, 2], "{}", x.did);
        assert_eq!(s.frames, 2, "no duplicate frame: {}", x.did);
        assert_eq!(s.configs[1].config.as_ref().unwrap().model, "m1-new");
        assert_eq!(
            s.configs[1].config.as_ref().unwrap().api_key.as_deref(),
            Some("sk-test-2")
        );
        ids.insert(s.message_ids[1].clone().expect("messageId"));
    }
    assert_eq!(
        ids.len(),
        2,
        "the broadcast frame was encoded once per edge (A and B), not per agent"
    );
    for x in s2.agents().iter().chain(s3.agents()) {
        assert_eq!(
            x.status().frames,
            1,
            "agents of other realms received nothing: {}",
            x.did
        );
    }
    assert_eq!(realm_pushes(&a), before[0] + 1);
    assert_eq!(realm_pushes(&b), before[1] + 1);
    assert_eq!(
        realm_pushes(&c),
        before[2],
        "edge C holds no r1 agent and received no r1 message"
    );
    let acked = || async {
        for d in r1 {
            if env.store.acked_version(d).await.unwrap() != Some(2) {
                return false;
            }
        }
        true
    };
    assert_eventually!(acked().await, patience(10), "every r1 agent acked v2");

    // Edge B dies (no goodbye). At once the worker updates both realms; B's agents are reconnecting.
    let on_b: HashSet<String> = b.probe.dids().into_iter().collect();
    assert!(!on_b.is_empty());
    b.kill();
    env.update_realm("r1", r1, env.state(3, Some("r1"), "m1-v3"))
        .await;
    env.update_realm("r2", r2, env.state(3, Some("r2"), "m2-v3"))
        .await;
    assert_eventually!(
        s1.agents()
            .iter()
            .chain(s2.agents())
            .all(|x| x.version() == Some(3)),
        patience(20),
        "every realm agent holds v3 after edge B died"
    );
    assert_eventually!(
        s3.connected() == 100 && s1.connected() == 100 && s2.connected() == 100,
        patience(20)
    );
    for x in all() {
        let s = x.status();
        assert!(
            s.configs
                .iter()
                .zip(s.configs.iter().skip(1))
                .all(|(a, b)| a.version < b.version),
            "versions only move forward"
        );
        assert_ne!(s.edge_id.as_deref(), Some("edge-b"));
        if on_b.contains(&x.did) {
            assert!(s.sessions >= 2, "{} reconnected elsewhere", x.did);
        }
    }
    let held: usize = [&a, &c].iter().map(|e| e.probe.dids().len()).sum();
    assert_eq!(held, 300);
    assert_eq!(a.realm_subjects(), vec!["vc.push.realm.r1".to_string()]);
    assert_eq!(c.realm_subjects(), vec!["vc.push.realm.r2".to_string()]);
    s1.stop().await;
    s2.stop().await;
    s3.stop().await;
    assert_eventually!(a.metrics.sessions() == 0 && c.metrics.sessions() == 0);
    assert!(
        a.probe.subjects().is_empty() && c.probe.subjects().is_empty(),
        "everything unsubscribed"
    );
}

/// An agent moves from edge A to edge B (A unsubscribes, B delivers); an agent that was offline while
/// its config changed gets the latest on connect; a second session of a DID takes over (4409, on
/// another edge and on the same edge); deleting the agent closes its session with 4403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_offline_takeover_delete() {
    let env = Env::start().await;
    let a = env.edge(env.edge_config("edge-a")).await;
    let b = env.edge(env.edge_config("edge-b")).await;
    let mut ks = keys(2);
    let (kx, x) = ks.remove(0);
    let (ky, y) = ks.remove(0);
    env.put_agent(&x, &env.state(1, Some("r1"), "m1")).await;
    env.put_agent(&y, &env.state(1, None, "m")).await;

    // X on A.
    let x1 = spawn_agent(&kx, agent_opts(&[&a]));
    assert_eventually!(x1.version() == Some(1));
    assert_eventually!(
        a.probe.subjects()
            == vec![
                vc_shared::subjects::push_agent(&x),
                "vc.push.realm.r1".to_string()
            ]
    );
    // Moves to B.
    assert_eq!(x1.stop().await.unwrap().unwrap(), Exit::Shutdown);
    let x2 = spawn_agent(&kx, agent_opts(&[&b]));
    assert_eventually!(x2.version() == Some(1));
    assert_eventually!(
        a.probe.subjects().is_empty(),
        patience(5),
        "A let go of X's subjects"
    );
    let a_realm = a.metrics.pushes_received("realm");
    env.update_realm(
        "r1",
        std::slice::from_ref(&x),
        env.state(2, Some("r1"), "m1b"),
    )
    .await;
    assert_eventually!(x2.version() == Some(2));
    assert_eq!(x2.status().frames, 2);
    assert_eq!(
        a.metrics.pushes_received("realm"),
        a_realm,
        "A no longer receives r1 traffic"
    );
    assert_eventually!(env.store.acked_version(&x).await.unwrap() == Some(2));

    // Y was offline while its config changed twice (pushes with nobody listening).
    env.update_agent(&y, env.state(4, None, "m4")).await;
    env.update_agent(&y, env.state(5, None, "m5")).await;
    let y1 = spawn_agent(&ky, agent_opts(&[&a]));
    assert_eventually!(y1.version() == Some(5));
    let s = y1.status();
    assert_eq!(s.configs.len(), 1, "only the latest, at once");
    assert_eq!(s.configs[0].config.as_ref().unwrap().model, "m5");

    // Takeover from another edge: X's session on B closes 4409 and that client stops.
    let x3 = spawn_agent(&kx, agent_opts(&[&a]));
    assert_eventually!(x3.version() == Some(2));
    let ended = tokio::time::timeout(patience(10), x2.join())
        .await
        .expect("old session ends");
    assert_eq!(ended.unwrap().unwrap(), Exit::Superseded);
    assert_eventually!(b.probe.dids().is_empty() && b.probe.subjects().is_empty());
    assert_eventually!(env.presence(&x).await.get("edgeId").map(String::as_str) == Some("edge-a"));
    // Takeover on the same edge.
    let x4 = spawn_agent(&kx, agent_opts(&[&a]));
    let ended = tokio::time::timeout(patience(10), x3.join())
        .await
        .expect("old session ends");
    assert_eq!(ended.unwrap().unwrap(), Exit::Superseded);
    assert_eventually!(x4.status().session_id.is_some());
    assert_eventually!(
        a.probe.dids() == {
            let mut v = vec![x.clone(), y.clone()];
            v.sort();
            v
        }
    );
    assert!(a.metrics.closes("superseded") >= 1 && b.metrics.closes("superseded") >= 1);
    let sid = x4.status().session_id.unwrap();
    assert_eventually!(env.presence(&x).await.get("sessionId") == Some(&sid));

    // Deleted: 4403 now, and 4403 at every retry (no longer registered).
    env.delete_agent(&x).await;
    assert_eventually!(x4.status().close_codes.front() == Some(&close::NOT_REGISTERED));
    assert_eventually!(
        x4.status().close_codes.len() >= 2,
        patience(5),
        "retries are refused too"
    );
    assert!(x4
        .status()
        .close_codes
        .iter()
        .all(|c| *c == close::NOT_REGISTERED));
    assert_eventually!(a.probe.dids() == vec![y.clone()]);
    x4.abort();
    y1.stop().await;
}
