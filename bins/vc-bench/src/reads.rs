//! `vc-bench reads`: the read path, against an API **process** (its read model loaded), with a load
//! generator of N keep-alive connections in this process.
//!
//! | scenario | what it measures |
//! |---|---|
//! | `models` | `GET /api/models` (first page of 100) with 100 and with 1,000 models registered |
//! | `agents` | `GET /api/agents?limit=100` (pages walked from random cursors) with 50,000 agents |
//! | `agent` | `GET /api/agents/{did}` of random agents among 50,000 |
//! | `load` | how long an API instance takes to load 50,000 agents at start, and its RSS then |
//! | `feed` | `GET /api/events` with 1,000 clients connected: a change (a realm created) → each client |
//! | `dashboard` | with `--dashboard`: the dashboard's agents page over those 50,000 agents in headless Chromium (`tests/browser/fleet.mjs`): first page, a DID filter, the online filter, the next page |

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vc_tests::stack::{Stack, ADMIN_TOKEN};

use crate::progress;
use crate::report::{ms, quantile, write_summary};

type R<T> = Result<T, String>;

/// Sizes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Model counts for `models` (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub(crate) models: Vec<usize>,
    /// Agents for `agents` and `agent`.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) agents: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// Seconds of load per figure.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Change-feed clients for `feed`.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) feed_clients: usize,
    /// Changes timed for `feed`.
    #[arg(long, default_value_t = 10)]
    pub(crate) feed_changes: usize,
    /// Also measure the dashboard's agents page in headless Chromium (needs node, Chromium and
    /// `npm ci` in tests/browser, as `scripts/test` installs them).
    #[arg(long)]
    pub(crate) dashboard: bool,
    /// Rounds of the dashboard measurement.
    #[arg(long, default_value_t = 5)]
    pub(crate) dashboard_rounds: usize,
    /// Small sizes for CI (overrides the sizes above).
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Where the JSON summary goes.
    #[arg(long, default_value = "bench/results")]
    pub(crate) out: String,
}

/// A load run's figures.
struct Load {
    requests: usize,
    errors: usize,
    secs: f64,
    lat_ms: Vec<f64>,
}

impl Load {
    fn row(mut self, what: &str) -> Value {
        let v = json!({
            "what": what,
            "requests": self.requests,
            "errors": self.errors,
            "requestsPerSec": (self.requests as f64 / self.secs).round(),
            "p50Ms": quantile(&mut self.lat_ms, 0.5),
            "p99Ms": quantile(&mut self.lat_ms, 0.99),
            "maxMs": quantile(&mut self.lat_ms, 1.0),
        });
        progress!("reads: {v}");
        v
    }
}

/// `connections` tasks, each on its own keep-alive connection, GET `path(i)` in a loop for `secs`.
async fn load(
    base: &str,
    connections: usize,
    secs: u64,
    path: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> R<Load> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let base = base.to_string();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let (mut n, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .get(format!("{base}{}", path(i)))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(ms(t.elapsed()));
                        n += 1;
                    }
                    _ => errors += 1,
                }
                i += connections;
            }
            (n, errors, lat)
        }));
    }
    let mut out = Load {
        requests: 0,
        errors: 0,
        secs: 0.0,
        lat_ms: Vec::new(),
    };
    for t in tasks {
        let (n, e, l) = t.await.map_err(|e| e.to_string())?;
        out.requests += n;
        out.errors += e;
        out.lat_ms.extend(l);
    }
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

async fn register_models(s: &Stack, from: usize, to: usize) -> R<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let next = next.clone();
        let http = reqwest::Client::new();
        let url = format!("{}/api/models", s.api_url);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= to {
                    return Ok(());
                }
                let r = http
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(
                        &json!({"name": format!("Model {i:05}"), "provider": "openai",
                        "modelId": format!("m-{i}"), "apiKey": "sk-bench"}),
                    )
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().as_u16() != 201 {
                    return Err(format!("register model: {}", r.status()));
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the read benchmarks and writes the summary.
pub(crate) async fn run(mut args: Args) -> R<()> {
    if args.smoke {
        args.models = vec![20];
        args.agents = 500;
        args.seconds = 1;
        args.connections = 4;
        args.feed_clients = 20;
        args.feed_changes = 2;
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy().to_string();
    let s = Stack::builder().litellm(true).workers(1).start().await;
    let api_role = [("VC_BENCH_ROLE", "api".to_string())];
    let mut rows = Vec::new();

    // Models: registered through REST; a fresh API process serves the reads.
    let mut registered = 0;
    for &n in &args.models {
        register_models(&s, registered, n).await?;
        registered = n;
        let (p, addr) = s.spawn_api_process_with(&me, &api_role).await;
        let base = format!("http://{addr}");
        let l = load(
            &base,
            args.connections,
            args.seconds,
            Arc::new(|_| "/api/models".to_string()),
        )
        .await?;
        let mut row = l.row(&format!("GET /api/models, {n} models"));
        row["models"] = json!(n);
        rows.push(row);
        p.kill9();
    }

    // Agents: written straight into Redis (as the worker writes them), then loaded by a fresh API.
    let realm = s
        .post("/api/realms", json!({"name": "Bench readers"}))
        .await;
    let realm = realm.body["realm"]["id"]
        .as_str()
        .ok_or("realm create failed")?
        .to_string();
    let keys: Vec<String> = (0..args.agents)
        .map(|_| {
            let k = vc_shared::did::generate_key();
            vc_shared::did::did_from_key(&k.verifying_key())
        })
        .collect();
    let model = s.store.models().await.map_err(|e| e.to_string())?;
    let model = model.first().map(|m| m.id.clone()).unwrap_or_default();
    crate::seed::routed_agents(&s.store, &realm, &model, &keys).await?;
    let t = Instant::now();
    let (p, addr) = s.spawn_api_process_with(&me, &api_role).await;
    let loaded = t.elapsed();
    let rss = rss_kib(p.pid());
    progress!(
        "reads: an API process with {} agents ready in {loaded:?}, RSS {rss} KiB",
        args.agents
    );
    rows.push(
        json!({"what": "API start with the read model loaded", "agents": args.agents,
        "readyMs": ms(loaded), "rssKiB": rss}),
    );
    let base = format!("http://{addr}");
    // Cursors spread over the whole list: the first page of each walk starts at a random agent.
    let mut sorted = keys.clone();
    sorted.sort();
    let created = s
        .store
        .agent(&sorted[0])
        .await
        .map_err(|e| e.to_string())?
        .map(|a| a.created_at)
        .unwrap_or_default();
    let cursors: Arc<Vec<String>> = Arc::new(
        sorted
            .iter()
            .step_by((sorted.len() / 512).max(1))
            .map(|d| vc_api::read::page::encode_cursor(&created, d))
            .collect(),
    );
    let c = cursors.clone();
    let l = load(
        &base,
        args.connections,
        args.seconds,
        Arc::new(move |i| format!("/api/agents?limit=100&cursor={}", c[i % c.len()])),
    )
    .await?;
    let mut row = l.row(&format!(
        "GET /api/agents?limit=100, {} agents",
        args.agents
    ));
    row["agents"] = json!(args.agents);
    rows.push(row);
    let dids = Arc::new(keys);
    let d = dids.clone();
    let l = load(
        &base,
        args.connections,
        args.seconds,
        Arc::new(move |i| format!("/api/agents/{}", d[(i * 7919) % d.len()])),
    )
    .await?;
    let mut row = l.row(&format!("GET /api/agents/{{did}}, {} agents", args.agents));
    row["agents"] = json!(args.agents);
    rows.push(row);
    rows.extend(feed(&s, &base, &args).await?);
    if args.dashboard {
        rows.push(dashboard(&base, &dids[0], args.agents, args.dashboard_rounds).await?);
    }
    p.kill9();

    let summary = json!({
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "smoke": args.smoke,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "connections": args.connections,
        "seconds": args.seconds,
        "reads": rows,
    });
    let path = write_summary(&args.out, "reads", &summary)?;
    progress!("summary written to {path}");
    print_table(&summary);
    Ok(())
}

/// The agents page in headless Chromium over `agents` agents (`tests/browser/fleet.mjs`): each figure's
/// median and max over `rounds`.
async fn dashboard(base: &str, did: &str, agents: usize, rounds: usize) -> R<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/browser/fleet.mjs");
    progress!("reads: the dashboard's agents page in Chromium, {rounds} rounds");
    let out = tokio::time::timeout(
        Duration::from_secs(120 + 30 * rounds as u64),
        tokio::process::Command::new("node")
            .arg(script)
            .env("VC_API_URL", base)
            .env("VC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VC_FLEET_DID", did)
            .env("VC_FLEET_REPEAT", rounds.to_string())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "the dashboard measurement did not finish in time".to_string())?
    .map_err(|e| format!("cannot run node {script}: {e} (install Node.js 18+)"))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed ({}); see its output above",
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("{script} printed no JSON line: {text}"))?;
    let mut row = json!({"what": format!("dashboard agents page, {agents} agents"), "agents": agents,
        "rounds": rounds, "rowsShown": figures["rowsShown"]});
    for key in ["firstPageMs", "filterDidMs", "filterOnlineMs", "nextPageMs"] {
        let mut v: Vec<f64> = figures[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let name = key.trim_end_matches("Ms");
        row[format!("{name}P50Ms")] = json!(quantile(&mut v, 0.5));
        row[format!("{name}MaxMs")] = json!(quantile(&mut v, 1.0));
    }
    progress!("reads: {row}");
    Ok(row)
}

/// `clients` change-feed clients on the API at `base`; `changes` realms created through the stack's API,
/// one at a time: how long after the POST was sent (and after the event's `at`) each client had it.
async fn feed(s: &Stack, base: &str, args: &Args) -> R<Vec<Value>> {
    let (clients, changes) = (args.feed_clients, args.feed_changes);
    let connected = Arc::new(tokio::sync::Semaphore::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Instant)>(clients * 4);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = format!("{base}/api/events");
        let connected = connected.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let Ok(mut r) = http.get(&url).bearer_auth(ADMIN_TOKEN).send().await else {
                connected.add_permits(1);
                return;
            };
            connected.add_permits(1);
            let mut buf = String::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                let at = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if block.contains("event: realm.created") {
                        let name = block
                            .split("\"name\":\"")
                            .nth(1)
                            .and_then(|r| r.split('"').next())
                            .unwrap_or("")
                            .to_string();
                        if tx.send((name, at)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let all = connected
        .acquire_many(clients as u32)
        .await
        .map_err(|e| e.to_string())?;
    all.forget();
    progress!("feed: {clients} clients connected");
    let (mut from_post, mut from_event) = (Vec::new(), Vec::new());
    for i in 0..changes {
        let name = format!("Feed change {i} {}", uuid::Uuid::new_v4().simple());
        let sent = Instant::now();
        let r = s.post("/api/realms", json!({"name": name})).await;
        let answered = sent.elapsed();
        if r.status != 201 {
            return Err(format!("realm create: {} {}", r.status, r.text));
        }
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got < clients {
            let Ok(Some((n, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                return Err(format!(
                    "feed: {got} of {clients} clients had change {i} after 30 s"
                ));
            };
            if n == name {
                got += 1;
                from_post.push(ms(at.duration_since(sent)));
                from_event.push(ms(at.duration_since(sent).saturating_sub(answered)));
            }
        }
        progress!("feed: change {i} reached {clients} clients");
    }
    for t in tasks {
        t.abort();
    }
    let row = json!({
        "what": format!("GET /api/events, {clients} clients: a realm created → each client"),
        "clients": clients,
        "changes": changes,
        "fromPostMs": {"p50": quantile(&mut from_post.clone(), 0.5), "p99": quantile(&mut from_post.clone(), 0.99), "max": quantile(&mut from_post, 1.0)},
        "afterAnswerMs": {"p50": quantile(&mut from_event.clone(), 0.5), "p99": quantile(&mut from_event.clone(), 0.99), "max": quantile(&mut from_event, 1.0)},
    });
    progress!("reads: {row}");
    Ok(vec![row])
}

#[allow(clippy::print_stdout)]
fn print_table(summary: &Value) {
    println!("| read | req/s | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|");
    for r in summary["reads"].as_array().into_iter().flatten() {
        if let Some(f) = r.get("fromPostMs") {
            println!(
                "| {} | | p50 {} ms | p99 {} ms | max {} ms | (from the POST sent) |",
                r["what"].as_str().unwrap_or(""),
                f["p50"],
                f["p99"],
                f["max"]
            );
        } else if r.get("requestsPerSec").is_some() {
            println!(
                "| {} | {} | {} ms | {} ms | {} ms | {} |",
                r["what"].as_str().unwrap_or(""),
                r["requestsPerSec"],
                r["p50Ms"],
                r["p99Ms"],
                r["maxMs"],
                r["errors"]
            );
        } else if r.get("firstPageP50Ms").is_some() {
            // Median (max) of the rounds, in the browser.
            println!(
                "| {} | first page {} ({}) ms | DID filter {} ({}) ms | online filter {} ({}) ms | next page {} ({}) ms | median (max) of {} rounds |",
                r["what"].as_str().unwrap_or(""),
                r["firstPageP50Ms"],
                r["firstPageMaxMs"],
                r["filterDidP50Ms"],
                r["filterDidMaxMs"],
                r["filterOnlineP50Ms"],
                r["filterOnlineMaxMs"],
                r["nextPageP50Ms"],
                r["nextPageMaxMs"],
                r["rounds"]
            );
        } else {
            println!(
                "| {} ({} agents) | ready in {} ms, RSS {} KiB | | | | |",
                r["what"].as_str().unwrap_or(""),
                r["agents"],
                r["readyMs"],
                r["rssKiB"]
            );
        }
    }
}
