//! Benchmark, ignored by default: `cargo test --release -p vc-tests --test edge_bench -- --ignored
//! --nocapture`. `VC_EDGE_BENCH_AGENTS` agents (default 2000) on one edge, in this process.
//!
//! Prints the time to connect and configure them all, the time for a realm push to reach them all, and
//! this process's RSS growth per agent (edge session and agent client together; measure the edge alone
//! by running the `vc-edge` binary and `vc-agent swarm` as separate processes).

mod edge_support;

use std::time::{Duration, Instant};

use edge_support::*;
use vc_agent::Swarm;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Connect N agents, then fan a realm push out to all of them, three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn fan_out_to_many_agents() {
    let n: usize = std::env::var("VC_EDGE_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let env = Env::start().await;
    let edge = env.edge(env.edge_config("edge-bench")).await;
    let seed = "edge-bench";
    let keys: Vec<_> = (0..n as u64)
        .map(|i| vc_agent::keys::key_from_seed(seed, i))
        .collect();
    let dids: Vec<String> = keys.iter().map(vc_agent::keys::did_of).collect();
    let recs: Vec<_> = dids
        .iter()
        .map(|d| (d.clone(), env.state(1, Some("rb"), "m")))
        .collect();
    env.put_agents(&recs).await;
    let before = rss_kb();
    let t = Instant::now();
    let mut opts = agent_opts(&[&edge]);
    opts.connect_timeout = Duration::from_secs(30);
    opts.backoff_max = Duration::from_secs(5);
    let swarm = Swarm::spawn(keys, &opts);
    vc_tests::assert_eventually!(
        swarm.agents().iter().all(|a| a.version() == Some(1)),
        Duration::from_secs(120)
    );
    eprintln!("{n} agents connected and configured in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "RSS growth: {} bytes per agent (edge session + agent client)",
        (rss_kb() - before) * 1024 / n as u64
    );
    for v in 2..5u64 {
        let t = Instant::now();
        env.update_realm("rb", &dids, env.state(v, Some("rb"), "m"))
            .await;
        let published = t.elapsed();
        vc_tests::assert_eventually!(
            swarm.agents().iter().all(|a| a.version() == Some(v)),
            Duration::from_secs(60)
        );
        eprintln!("v{v}: Redis writes + publish {published:?}; all {n} agents hold it {:?} after the publish", t.elapsed() - published);
    }
    swarm.stop().await;
}
