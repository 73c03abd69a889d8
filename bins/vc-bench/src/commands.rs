//! `vc-bench commands`: the command path.
//!
//! | scenario | what it measures |
//! |---|---|
//! | `lane` | lane time (`vc_worker_lane_batch_seconds`) of a grant and a revoke to a realm routing N agents |
//! | `fanout` | REST grant → the last of N connected agents (over several edge processes) holds the new version |
//! | `burst` | 20,000 mixed commands (the soak's mix) published at once, 2 workers: commands/s |
//! | `rest` | REST writes (`POST /api/realms`) at 64 concurrent clients: requests/s, p50, p99 |
//! | `failover` | SIGKILL of the worker process holding the lane → the next command applied |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vc_agent::{AgentOptions, Swarm};
use vc_tests::mix::{mixed_commands, publish_all};
use vc_tests::stack::Stack;

use crate::progress;
use crate::report::{ms, quantile, write_summary};

/// Sizes and scenarios.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Scenarios to run (comma-separated): lane, fanout, burst, rest, failover.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lane,fanout,burst,rest,failover"
    )]
    pub(crate) only: Vec<String>,
    /// Routed agents per realm for `lane` (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,20000,50000")]
    pub(crate) lane_agents: Vec<usize>,
    /// Grant/revoke pairs per size for `lane`.
    #[arg(long, default_value_t = 10)]
    pub(crate) lane_rounds: usize,
    /// Connected agents for `fanout`.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) fanout_agents: usize,
    /// Edge processes for `fanout`.
    #[arg(long, default_value_t = 3)]
    pub(crate) edges: usize,
    /// Grants (or revokes) timed for `fanout`.
    #[arg(long, default_value_t = 5)]
    pub(crate) fanout_rounds: usize,
    /// Commands in the `burst`.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) burst: usize,
    /// LiteLLM emulator latencies for `burst`, in milliseconds (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    pub(crate) latency_ms: Vec<u64>,
    /// Concurrent clients for `rest`.
    #[arg(long, default_value_t = 64)]
    pub(crate) rest_clients: usize,
    /// Requests for `rest`.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) rest_requests: usize,
    /// Kills of the lane holder for `failover`.
    #[arg(long, default_value_t = 50)]
    pub(crate) kills: usize,
    /// Small sizes for CI (overrides the sizes above).
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Where the JSON summary goes.
    #[arg(long, default_value = "bench/results")]
    pub(crate) out: String,
}

impl Args {
    fn smoke_sized(mut self) -> Self {
        if self.smoke {
            self.lane_agents = vec![500, 1000];
            self.lane_rounds = 2;
            self.fanout_agents = 200;
            self.fanout_rounds = 2;
            self.burst = 500;
            self.latency_ms = vec![0];
            self.rest_requests = 500;
            self.rest_clients = 16;
            self.kills = 2;
        }
        self
    }

    fn wants(&self, s: &str) -> bool {
        self.only.iter().any(|o| o == s)
    }
}

type R<T> = Result<T, String>;

/// Runs the chosen scenarios and writes the summary.
pub(crate) async fn run(args: Args) -> R<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        vc_tests::wait::trace_init();
    }
    let args = args.smoke_sized();
    for s in &args.only {
        if !["lane", "fanout", "burst", "rest", "failover"].contains(&s.as_str()) {
            return Err(format!(
                "--only: unknown scenario {s:?} (lane, fanout, burst, rest, failover)"
            ));
        }
    }
    let mut summary = serde_json::Map::new();
    summary.insert(
        "build".into(),
        json!(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    );
    summary.insert("smoke".into(), json!(args.smoke));
    summary.insert(
        "cores".into(),
        json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );
    if args.wants("lane") {
        summary.insert("lane".into(), lane(&args).await?);
    }
    if args.wants("fanout") {
        summary.insert("fanout".into(), fanout(&args).await?);
    }
    if args.wants("burst") {
        summary.insert("burst".into(), burst(&args).await?);
    }
    if args.wants("rest") {
        summary.insert("rest".into(), rest(&args).await?);
    }
    if args.wants("failover") {
        summary.insert("failover".into(), failover(&args).await?);
    }
    let summary = Value::Object(summary);
    let path = write_summary(&args.out, "commands", &summary)?;
    progress!("summary written to {path}");
    print_table(&summary);
    Ok(())
}

fn check(r: &vc_tests::stack::Resp, status: u16, what: &str) -> R<()> {
    if r.status == status {
        Ok(())
    } else {
        Err(format!("{what}: HTTP {} {}", r.status, r.text))
    }
}

async fn created(s: &Stack, path: &str, body: Value, pointer: &str) -> R<String> {
    let r = s.post(path, body).await;
    check(&r, 201, path)?;
    r.body
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{path}: no {pointer} in {}", r.text))
}

/// A realm with a key and model A granted; model B registered, not granted.
async fn realm_with_models(s: &Stack) -> R<(String, String, String)> {
    let model = |n: &str| json!({"name": n, "provider": "openai", "modelId": n.to_lowercase()});
    let a = created(s, "/api/models", model("Bench A"), "/model/id").await?;
    let b = created(s, "/api/models", model("Bench B"), "/model/id").await?;
    let realm = created(s, "/api/realms", json!({"name": "Bench"}), "/realm/id").await?;
    let g = s
        .post(
            &format!("/api/models/{a}/realms"),
            json!({"realmId": realm}),
        )
        .await;
    check(&g, 200, "first grant")?;
    Ok((realm, a, b))
}

fn dids(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| vc_shared::did::did_from_key(&vc_shared::did::generate_key().verifying_key()))
        .collect()
}

/// Resets Redis' per-command call counts (`CONFIG RESETSTAT`).
async fn redis_stats_reset(url: &str) -> R<()> {
    let mut c = redis_conn(url).await?;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut c)
        .await
        .map_err(|e| format!("CONFIG RESETSTAT: {e}"))
}

/// Redis calls by command since the last reset, most called first (`INFO commandstats`).
async fn redis_calls(url: &str) -> R<Vec<(String, u64)>> {
    let mut c = redis_conn(url).await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .map_err(|e| format!("INFO commandstats: {e}"))?;
    // Lines like `cmdstat_get:calls=12,usec=34,...`.
    let mut out: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "config" && name != "info")
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.1));
    Ok(out)
}

async fn redis_conn(url: &str) -> R<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| format!("redis {url}: {e}"))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis {url}: {e}"))
}

/// `(sum, count)` of a histogram in a Prometheus text page.
async fn histogram(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    name: &str,
) -> R<(f64, f64)> {
    labeled_histogram(http, addr, name, "").await
}

/// Sum and count of one labeled series of a histogram (`labels` as printed: `{phase="apply"}`).
async fn labeled_histogram(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    name: &str,
    labels: &str,
) -> R<(f64, f64)> {
    let text = metrics_page(http, addr).await?;
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_{suffix}{labels} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((value("sum"), value("count")))
}

/// The Prometheus text page of `addr`.
async fn metrics_page(http: &reqwest::Client, addr: std::net::SocketAddr) -> R<String> {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())
}

/// A counter's value in a Prometheus text page (`<name>_total`).
async fn counter(http: &reqwest::Client, addr: std::net::SocketAddr, name: &str) -> R<f64> {
    let text = metrics_page(http, addr).await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0))
}

// ---- lane ----------------------------------------------------------------------------------------

async fn lane(args: &Args) -> R<Value> {
    let mut out = Vec::new();
    for &n in &args.lane_agents {
        let s = Stack::builder().litellm(true).workers(1).start().await;
        let (realm, a, b) = realm_with_models(&s).await?;
        let t = Instant::now();
        let fleet = dids(n);
        crate::seed::routed_agents(&s.store, &realm, &a, &fleet).await?;
        progress!(
            "lane: {n} agents routed through one realm, written in {:?}",
            t.elapsed()
        );
        let addr = s.workers[0].addr.ok_or("the worker serves no metrics")?;
        let name = "vc_worker_lane_batch_seconds";
        let (mut grant, mut revoke, mut rest_ms) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.lane_rounds {
            for (grant_it, into) in [(true, &mut grant), (false, &mut revoke)] {
                let (s0, c0) = histogram(&s.http, addr, name).await?;
                let t = Instant::now();
                let r = if grant_it {
                    s.post(
                        &format!("/api/models/{b}/realms"),
                        json!({"realmId": realm}),
                    )
                    .await
                } else {
                    s.delete(&format!("/api/models/{b}/realms/{realm}")).await
                };
                rest_ms.push(ms(t.elapsed()));
                check(&r, if grant_it { 200 } else { 204 }, "grant/revoke")?;
                let (s1, c1) = histogram(&s.http, addr, name).await?;
                if c1 - c0 >= 1.0 {
                    into.push((s1 - s0) / (c1 - c0) * 1000.0);
                }
            }
        }
        let states = s
            .store
            .effective_states(
                &s.store
                    .agents_by_did(&fleet[..fleet.len().min(1000)])
                    .await
                    .map_err(|e| e.to_string())?,
            )
            .await
            .map_err(|e| e.to_string())?;
        let routing = s
            .store
            .realm_routing(&realm)
            .await
            .map_err(|e| e.to_string())?;
        let all_follow = routing.is_some_and(|r| states.iter().all(|st| st.version == r.version));
        let row = json!({
            "agents": n,
            "grantLaneMs": {"mean": mean(&grant), "max": max(&grant)},
            "revokeLaneMs": {"mean": mean(&revoke), "max": max(&revoke)},
            "restMs": {"p50": quantile(&mut rest_ms.clone(), 0.5), "max": max(&rest_ms)},
            "agentsDeriveTheNewVersion": all_follow,
        });
        progress!("lane: {n} routed agents: {row}");
        out.push(row);
    }
    Ok(json!(out))
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        (v.iter().sum::<f64>() / v.len() as f64 * 1000.0).round() / 1000.0
    }
}

fn max(v: &[f64]) -> f64 {
    (v.iter().copied().fold(0.0, f64::max) * 1000.0).round() / 1000.0
}

// ---- fan-out -------------------------------------------------------------------------------------

async fn fanout(args: &Args) -> R<Value> {
    let n = args.fanout_agents;
    let s = Stack::builder().litellm(true).workers(1).start().await;
    let (realm, a, b) = realm_with_models(&s).await?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy().to_string();
    let mut edges = Vec::new();
    for i in 0..args.edges {
        let (p, addr) = s
            .spawn_edge_process_with(
                &me,
                &format!("bench-edge-{i}"),
                &[("VC_BENCH_ROLE", "edge".into())],
            )
            .await;
        edges.push((p, addr));
    }
    let keys: Vec<_> = (0..n).map(|_| vc_shared::did::generate_key()).collect();
    let fleet: Vec<String> = keys
        .iter()
        .map(|k| vc_shared::did::did_from_key(&k.verifying_key()))
        .collect();
    crate::seed::routed_agents(&s.store, &realm, &a, &fleet).await?;
    let urls = edges
        .iter()
        .map(|(_, addr)| format!("ws://{addr}/ws"))
        .collect();
    let mut opts = AgentOptions::new(urls);
    opts.connect_timeout = Duration::from_secs(60);
    let t = Instant::now();
    let swarm = Swarm::spawn(keys, &opts);
    let initial = s
        .store
        .realm_routing(&realm)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |r| r.version);
    wait_all(&swarm, initial, Duration::from_secs(300)).await?;
    progress!(
        "fanout: {n} agents connected over {} edge processes and configured in {:?}",
        args.edges,
        t.elapsed()
    );
    let mut rounds = Vec::new();
    for i in 0..args.fanout_rounds {
        let grant = i % 2 == 0;
        let t = Instant::now();
        let r = if grant {
            s.post(
                &format!("/api/models/{b}/realms"),
                json!({"realmId": realm}),
            )
            .await
        } else {
            s.delete(&format!("/api/models/{b}/realms/{realm}")).await
        };
        let answered = t.elapsed();
        check(&r, if grant { 200 } else { 204 }, "grant/revoke")?;
        let v = s
            .store
            .realm_routing(&realm)
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |r| r.version);
        wait_all(&swarm, v, Duration::from_secs(60)).await?;
        let all = t.elapsed();
        progress!(
            "fanout: {} → REST answered in {:?}, all {n} agents held version {v} after {:?}",
            if grant { "grant" } else { "revoke" },
            answered,
            all
        );
        rounds.push(json!({"change": if grant { "grant" } else { "revoke" },
            "restMs": ms(answered), "lastAgentMs": ms(all)}));
    }
    swarm.stop().await;
    let mut last: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r["lastAgentMs"].as_f64())
        .collect();
    Ok(json!({
        "agents": n,
        "edges": args.edges,
        "rounds": rounds,
        "lastAgentMs": {"p50": quantile(&mut last, 0.5), "max": max(&last)},
    }))
}

/// Waits until every agent of the swarm holds `version` (or newer); 2 ms resolution. Only agents still
/// behind are looked at again, so the watching costs the machine (shared with the agents, edges and
/// servers) as little as possible.
async fn wait_all(swarm: &Swarm, version: u64, within: Duration) -> R<()> {
    let deadline = Instant::now() + within;
    let agents = swarm.agents();
    let mut pending: Vec<usize> = (0..agents.len()).collect();
    loop {
        pending.retain(|&i| agents[i].version().is_none_or(|v| v < version));
        let behind = pending.len();
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{behind} agents still below version {version} after {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---- burst ---------------------------------------------------------------------------------------

/// What the lane did over a run, from both workers' metrics (whichever held it).
struct LaneStats {
    /// Seconds spent in batches.
    busy: f64,
    batches: f64,
    /// Reads made while applying (not prefetched).
    reads: f64,
    /// Milliseconds per phase.
    phases: serde_json::Map<String, Value>,
}

async fn lane_stats(s: &Stack) -> R<LaneStats> {
    let mut st = LaneStats {
        busy: 0.0,
        batches: 0.0,
        reads: 0.0,
        phases: serde_json::Map::new(),
    };
    for w in &s.workers {
        if let Some(addr) = w.addr {
            let (sum, count) = histogram(&s.http, addr, "vc_worker_lane_batch_seconds").await?;
            st.busy += sum;
            st.batches += count;
            st.reads += counter(&s.http, addr, "vc_worker_lane_reads").await?;
            for phase in ["prefetch", "apply", "commit", "handoff", "emit"] {
                let labels = format!("{{phase=\"{phase}\"}}");
                let (sum, _) =
                    labeled_histogram(&s.http, addr, "vc_worker_lane_phase_seconds", &labels)
                        .await?;
                let ms = st.phases.get(phase).and_then(Value::as_f64).unwrap_or(0.0);
                st.phases
                    .insert(phase.into(), json!(ms + (sum * 1000.0).round()));
            }
        }
    }
    Ok(st)
}

async fn burst(args: &Args) -> R<Value> {
    let mut out = Vec::new();
    for &latency in &args.latency_ms {
        let s = Stack::builder().litellm(true).workers(2).start().await;
        if let Some(e) = &s.emu {
            e.emu.set_latency(Duration::from_millis(latency));
        }
        let cmds = mixed_commands(args.burst, 0x0b0b_0001);
        let js = async_nats::jetstream::new(s.nats_client().await);
        redis_stats_reset(&s.redis_url()).await?;
        let t = Instant::now();
        let (ok, refused) = publish_all(&js, &cmds, 1000, None).await;
        let published = t.elapsed();
        if !refused.is_empty() {
            return Err(format!("JetStream refused {} commands", refused.len()));
        }
        let n = ok.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        while s.store.rev().await.unwrap_or(0) < n {
            if Instant::now() >= deadline {
                return Err(format!("burst: not all {n} commands applied in 600 s"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let applied = t.elapsed();
        let rate = n as f64 / applied.as_secs_f64();
        let LaneStats {
            busy,
            batches,
            reads: lane_reads,
            phases,
        } = lane_stats(&s).await?;
        let calls = redis_calls(&s.redis_url()).await?;
        let top: Vec<Value> = calls
            .iter()
            .take(8)
            .map(|(c, n)| json!({"command": c, "calls": n}))
            .collect();
        let total: u64 = calls.iter().map(|(_, n)| n).sum();
        let row = json!({
            "commands": n,
            "litellmLatencyMs": latency,
            "redisCallsPerCommand": (total as f64 / n as f64 * 10.0).round() / 10.0,
            "redisTopCalls": top,
            "workers": 2,
            "publishedInMs": ms(published),
            "appliedInMs": ms(applied),
            "commandsPerSec": rate.round(),
            "laneBusyMs": (busy * 1000.0).round(),
            "lanePhasesMs": phases,
            "batches": batches,
            "laneMsPerCommand": (busy * 1e6 / n as f64).round() / 1000.0,
            "laneReadsPerCommand": (lane_reads / n as f64 * 100.0).round() / 100.0,
        });
        progress!("burst: {row}");
        out.push(row);
    }
    Ok(json!(out))
}

// ---- REST writes ---------------------------------------------------------------------------------

async fn rest(args: &Args) -> R<Value> {
    let s = Arc::new(Stack::builder().litellm(true).workers(2).start().await);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = args.rest_requests;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.rest_clients {
        let (s, next) = (s.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return (lat, statuses);
                }
                let t = Instant::now();
                let r = s
                    .post("/api/realms", json!({"name": format!("Rest Bench {i}")}))
                    .await;
                lat.push(ms(t.elapsed()));
                *statuses.entry(r.status).or_insert(0usize) += 1;
            }
        }));
    }
    let mut lat = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for task in tasks {
        let (l, st) = task.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        for (k, v) in st {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let elapsed = t.elapsed();
    let lane = lane_stats(&s).await?;
    let row = json!({
        "requests": total,
        "clients": args.rest_clients,
        "laneBusyMs": (lane.busy * 1000.0).round(),
        "lanePhasesMs": lane.phases,
        "batches": lane.batches,
        "elapsedMs": ms(elapsed),
        "requestsPerSec": (total as f64 / elapsed.as_secs_f64()).round(),
        "p50Ms": quantile(&mut lat, 0.5),
        "p90Ms": quantile(&mut lat, 0.9),
        "p99Ms": quantile(&mut lat, 0.99),
        "maxMs": quantile(&mut lat, 1.0),
        "statuses": statuses,
    });
    progress!("rest: {row}");
    Ok(row)
}

// ---- failover ------------------------------------------------------------------------------------

async fn failover(args: &Args) -> R<Value> {
    let s = Stack::builder().litellm(true).workers(0).start().await;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy().to_string();
    let spawn = |s: &Stack| {
        let port = vc_tests::servers::free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let p = s.spawn_worker_process_with(
            &me,
            &[
                ("VC_BENCH_ROLE", "worker".into()),
                ("VC_WORKER_METRICS_ADDR", addr.to_string()),
            ],
        );
        (p, addr)
    };
    let mut workers = vec![spawn(&s), spawn(&s)];
    // A steady stream of commands (100/s) while the holder is killed again and again.
    let js = async_nats::jetstream::new(s.nats_client().await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let cmd = vc_tests::mix::Cmd::new(
                    "realm.create",
                    json!({"name": format!("Failover {i}")}),
                );
                let _ = publish_all(&js, std::slice::from_ref(&cmd), 1, None).await;
                i += 1;
            }
        })
    };
    let mut stalls = Vec::new();
    for k in 0..args.kills {
        // Steady state first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut holder = None;
        for (i, (_, addr)) in workers.iter().enumerate() {
            let page = s
                .http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .ok();
            let text = match page {
                Some(p) => p.text().await.unwrap_or_default(),
                None => String::new(),
            };
            if text.lines().any(|l| l.trim() == "vc_worker_lane_held 1") {
                holder = Some(i);
            }
        }
        let Some(i) = holder else {
            progress!("failover: no lane holder found before kill {k}; waiting");
            continue;
        };
        let before = s.store.rev().await.unwrap_or(0);
        let (p, _) = workers.remove(i);
        let killed = Instant::now();
        p.kill9();
        workers.push(spawn(&s));
        let deadline = killed + Duration::from_secs(60);
        loop {
            // Commands applied before the kill may still land right after it: wait for one more
            // than were applied a few milliseconds after the kill.
            let now = s.store.rev().await.unwrap_or(0);
            if now > before + 1 && killed.elapsed() > Duration::from_millis(50) {
                break;
            }
            if Instant::now() >= deadline {
                return Err("failover: no command applied within 60 s of a kill".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stall = ms(killed.elapsed());
        progress!("failover: kill {}/{}: next command applied {stall} ms after SIGKILL of the lane holder", k + 1, args.kills);
        stalls.push(stall);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = publisher.await;
    let row = json!({
        "kills": stalls.len(),
        "stallMs": {
            "p50": quantile(&mut stalls.clone(), 0.5),
            "p99": quantile(&mut stalls.clone(), 0.99),
            "max": max(&stalls),
        },
    });
    progress!("failover: {row}");
    Ok(row)
}

// ---- table ---------------------------------------------------------------------------------------

#[allow(clippy::print_stdout)]
fn print_table(summary: &Value) {
    println!("| scenario | figure |");
    println!("|---|---|");
    for row in summary["lane"].as_array().into_iter().flatten() {
        println!(
            "| lane, {} routed agents | grant {} ms mean / {} ms max, revoke {} ms mean / {} ms max |",
            row["agents"], row["grantLaneMs"]["mean"], row["grantLaneMs"]["max"],
            row["revokeLaneMs"]["mean"], row["revokeLaneMs"]["max"]
        );
    }
    if let Some(f) = summary.get("fanout") {
        println!(
            "| fan-out, {} agents over {} edges | REST grant → last agent: p50 {} ms, max {} ms |",
            f["agents"], f["edges"], f["lastAgentMs"]["p50"], f["lastAgentMs"]["max"]
        );
    }
    for row in summary["burst"].as_array().into_iter().flatten() {
        println!(
            "| burst, {} mixed commands, LiteLLM {} ms | {} commands/s |",
            row["commands"], row["litellmLatencyMs"], row["commandsPerSec"]
        );
    }
    if let Some(r) = summary.get("rest") {
        println!(
            "| REST writes, {} clients | {} req/s, p50 {} ms, p99 {} ms |",
            r["clients"], r["requestsPerSec"], r["p50Ms"], r["p99Ms"]
        );
    }
    if let Some(f) = summary.get("failover") {
        println!(
            "| failover, {} kills | next command p50 {} ms, p99 {} ms, max {} ms |",
            f["kills"], f["stallMs"]["p50"], f["stallMs"]["p99"], f["stallMs"]["max"]
        );
    }
}
