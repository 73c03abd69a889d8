//! Browser tier: the dashboard of vc-api in real headless Chromium, driven by a Node scenario
//! (`tests/browser/dashboard.mjs`, playwright-core, helpers in `tests/browser/lib.mjs`).
//!
//! The test starts the stack (API, worker, LiteLLM emulator) and one in-process edge, then runs the
//! scenario with the stack in its environment (`VC_API_URL`, `VC_ADMIN_TOKEN`, `VC_AGENT_DID`,
//! `VC_EDGE_URL`, `VC_ARTIFACTS`, `VC_CHROMIUM`). The scenario asks for what a browser cannot do itself
//! with a line protocol on its stdout; each request gets one reply line on its stdin:
//!
//! | request (stdout)            | reply (stdin)                                                        |
//! |-----------------------------|----------------------------------------------------------------------|
//! | `@vc agent-connect`         | `ok` once the agent runs and got its first `llm_config` (even null)  |
//! | `@vc agent-config <model>`  | `ok <version>` once the agent holds a config of `<model>` (`null`: no config) and the API shows that version acked; else `fail <what it holds>` |
//! | `@vc agent-disconnect`      | `ok` once the agent stopped and the API shows it offline              |
//! | `@vc team-spend <realm> <usd>` | `ok` once the LiteLLM emulator's team of the realm has spent `<usd>` |
//! | anything else after `@vc `  | `fail unknown command`                                               |
//!
//! Other stdout lines are echoed to stderr. The scenario's stderr (its progress) is the test's, so it
//! shows even without `--nocapture`; so do the echoes and the protocol log, to keep the order. Screenshots
//! land in `<target>/dashboard-artifacts/` (cleared first).
//!
//! The tier needs `node` (>= 18), Chromium (`VC_CHROMIUM` or Debian's `/usr/bin/chromium`) and
//! `tests/browser/node_modules` (`npm ci` there); `scripts/test` installs all three. Without them the
//! test is skipped with a line on stderr, or fails when `CI` is set.

mod edge_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use edge_support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use vc_agent::AgentHandle;
use vc_edge::EdgeConfig;
use vc_tests::stack::{Stack, ADMIN_TOKEN};
use vc_tests::wait::{scaled, POLL_INTERVAL};

/// The scenario, relative to the workspace root.
const SCENARIO: &str = "tests/browser/dashboard.mjs";
/// playwright-core, installed by `npm ci` in `tests/browser`.
const PLAYWRIGHT: &str = "tests/browser/node_modules/playwright-core/package.json";
/// Node, from PATH.
const NODE: &str = "node";
/// Debian's Chromium (package `chromium`), unless `VC_CHROMIUM` names another.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Oldest Node the scenarios support (Debian 12's nodejs is 18).
const MIN_NODE_MAJOR: u32 = 18;
/// The whole scenario, browser start included (× `VC_TEST_PATIENCE`).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);
/// One protocol request: the agent connecting, a config reaching it and being acked, or it going
/// offline (× `VC_TEST_PATIENCE`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The edge's heartbeat: presence and acks reach the API quickly.
const HEARTBEAT: Duration = Duration::from_millis(300);
/// Prefix of the scenario's protocol lines.
const PROTOCOL_PREFIX: &str = "@vc ";

/// The dashboard's scenario passes in Chromium against the real stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let Some(tools) = browser_tools() else {
        return;
    };
    let root = workspace_root();
    let artifacts = artifacts_dir(&root);
    match std::fs::remove_dir_all(&artifacts) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("clearing {}: {e}", artifacts.display()),
    }
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");

    let s = Stack::builder().litellm(true).start().await;
    let mut cfg = EdgeConfig::new("edge-dash");
    cfg.heartbeat_interval = HEARTBEAT;
    let edge = spawn_edge(&s.nats.url(), &s.redis.url(), &s.secret, cfg).await;
    let (key, did) = keys(1).remove(0);

    let mut child = Command::new(NODE)
        .arg(root.join(SCENARIO))
        .current_dir(&root)
        .env("VC_API_URL", &s.api_url)
        .env("VC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VC_AGENT_DID", &did)
        .env("VC_EDGE_URL", edge.ws_url())
        .env("VC_ARTIFACTS", &artifacts)
        .env("VC_CHROMIUM", &tools.chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {NODE} {SCENARIO}: {e}"));

    let mut driver = Driver {
        s: &s,
        edge: &edge,
        key,
        did,
        agent: None,
    };
    let limit = scaled(SCENARIO_TIMEOUT);
    let outcome = tokio::time::timeout(limit, driver.serve(&mut child)).await;
    if let Some(agent) = driver.agent.take() {
        agent.abort();
    }
    match outcome {
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "dashboard scenario failed: still running after {limit:?} (killed); screenshots in {}",
                artifacts.display()
            );
        }
        Ok(status) => assert!(
            status.success(),
            "dashboard scenario failed ({SCENARIO} exited with {status}; its stderr is above); \
             screenshots in {}",
            artifacts.display()
        ),
    }
}

// ----- prerequisites ----------------------------------------------------------------------------------

/// What the browser tier runs with (besides [`NODE`]).
struct BrowserTools {
    chromium: PathBuf,
}

/// The tools, or `None` after printing why the test is skipped. Panics instead when `CI` is set: CI
/// must run the browser tier, and `scripts/test` installs what it needs.
fn browser_tools() -> Option<BrowserTools> {
    let root = workspace_root();
    let mut missing = Vec::new();
    match node_major(NODE) {
        Ok(v) if v >= MIN_NODE_MAJOR => {}
        Ok(v) => missing.push(format!("node >= {MIN_NODE_MAJOR} (found {v})")),
        Err(e) => missing.push(format!("node >= {MIN_NODE_MAJOR} ({e})")),
    }
    let chromium = std::env::var_os("VC_CHROMIUM")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium ({} not found; package chromium, or set VC_CHROMIUM)",
            chromium.display()
        ));
    }
    if !root.join(PLAYWRIGHT).is_file() {
        missing.push("playwright-core (tests/browser/node_modules: `npm ci` there)".to_owned());
    }
    if missing.is_empty() {
        return Some(BrowserTools { chromium });
    }
    let what = missing.join(", ");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "dashboard browser tests cannot run under CI: missing {what} \
             (scripts/test installs them)"
        );
    }
    say(&format!(
        "SKIPPED: dashboard browser tests need {what} (run scripts/test, which installs them)"
    ));
    None
}

/// The major version of `node --version` (`v20.11.1` → 20).
fn node_major(node: &str) -> Result<u32, String> {
    let out = std::process::Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{node} not found on PATH"),
            _ => format!("`{node} --version`: {e}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("`{node} --version` printed {:?}", text.trim()))
}

/// The workspace root (this package is `<root>/tests`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `<target>/dashboard-artifacts`: `CARGO_TARGET_DIR` (a relative one taken from the workspace root)
/// or `<root>/target`.
fn artifacts_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(|v| root.join(v))
        .unwrap_or_else(|| root.join("target"));
    target.join("dashboard-artifacts")
}

// ----- the line protocol ------------------------------------------------------------------------------

/// Serves the scenario's requests with the stack, the edge and the agent's key.
struct Driver<'a> {
    s: &'a Stack,
    edge: &'a Edge,
    key: SigningKey,
    did: String,
    /// The agent, while the scenario wants it connected.
    agent: Option<AgentHandle>,
}

impl Driver<'_> {
    /// Reads the scenario's stdout to its end, answering requests; returns how the scenario exited.
    async fn serve(&mut self, child: &mut Child) -> ExitStatus {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stdin = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    say(&format!("dashboard.rs: reading the scenario's stdout: {e}"));
                    break;
                }
            };
            let Some(request) = line.strip_prefix(PROTOCOL_PREFIX) else {
                say(&line);
                continue;
            };
            let reply = self.answer(request.trim()).await;
            say(&format!("dashboard.rs: @vc {} → {reply}", request.trim()));
            reply_to(&mut stdin, &reply).await;
        }
        // The scenario closed its stdout: it is exiting.
        drop(stdin);
        child.wait().await.expect("waiting for the scenario")
    }

    /// The reply line to one request (`ok [text]` or `fail reason`, never more than one line).
    async fn answer(&mut self, request: &str) -> String {
        let (cmd, arg) = request.split_once(' ').unwrap_or((request, ""));
        let result = match cmd {
            "agent-connect" => self.agent_connect().await,
            "agent-config" => self.agent_config(arg.trim()).await,
            "agent-disconnect" => self.agent_disconnect().await,
            "team-spend" => self.team_spend(arg.trim()),
            _ => Err("unknown command".to_owned()),
        };
        let line = match result {
            Ok(text) if text.is_empty() => "ok".to_owned(),
            Ok(text) => format!("ok {text}"),
            Err(reason) => format!("fail {reason}"),
        };
        line.replace(['\r', '\n'], " ")
    }

    /// Sets what the realm's team has spent in the LiteLLM emulator (`<realm id> <usd>`).
    fn team_spend(&self, arg: &str) -> Result<String, String> {
        let (realm, usd) = arg
            .split_once(' ')
            .ok_or("usage: team-spend <realm id> <usd>")?;
        let usd: f64 = usd
            .trim()
            .parse()
            .map_err(|_| format!("not a number: {usd}"))?;
        let emu = &self.s.emu.as_ref().ok_or("no LiteLLM emulator")?.emu;
        let team = format!("vc-realm-{realm}");
        if !emu.teams().iter().any(|t| t.team_id == team) {
            return Err(format!("no team {team} in the emulator"));
        }
        emu.set_team_spend(&team, usd);
        Ok(String::new())
    }

    /// Starts the agent if it is not running, and waits for its first `llm_config`.
    async fn agent_connect(&mut self) -> Result<String, String> {
        if self.agent.as_ref().is_some_and(AgentHandle::is_finished) {
            self.agent = None;
        }
        let agent: &AgentHandle = self
            .agent
            .get_or_insert_with(|| spawn_agent(&self.key, agent_opts(&[self.edge])));
        poll(scaled(REQUEST_TIMEOUT), || async move {
            let st = agent.status();
            if st.configs.is_empty() {
                Err(format!(
                    "the agent got no llm_config (sessions {}, last close {:?}, errors {:?})",
                    st.sessions, st.last_close, st.errors
                ))
            } else {
                Ok(String::new())
            }
        })
        .await
    }

    /// Waits until the agent holds a config of `model` (`null`: no config) and the API shows that
    /// version acked; replies with the version.
    async fn agent_config(&mut self, model: &str) -> Result<String, String> {
        if model.is_empty() {
            return Err("usage: agent-config <model>|null".to_owned());
        }
        let want = (model != "null").then_some(model);
        let agent = self
            .agent
            .as_ref()
            .ok_or("the agent is not connected (agent-connect first)")?;
        let (s, did) = (self.s, self.did.as_str());
        poll(scaled(REQUEST_TIMEOUT), || async move {
            let st = agent.status();
            let Some(cur) = st.current() else {
                return Err("the agent holds no config: it received no llm_config".to_owned());
            };
            let held = cur.config.as_ref().map(|c| c.model.as_str());
            let acked = acked_version(s, did).await;
            if held == want && acked.is_some_and(|a| a >= cur.version) {
                return Ok(cur.version.to_string());
            }
            let holds = match held {
                Some(m) => format!("model {m:?}"),
                None => "config null".to_owned(),
            };
            let acked = acked.map_or_else(|| "none".to_owned(), |a| a.to_string());
            Err(format!(
                "the agent holds {holds} at version {} (API ackedVersion {acked})",
                cur.version
            ))
        })
        .await
    }

    /// Stops the agent (closing its session) and waits until the API shows it offline.
    async fn agent_disconnect(&mut self) -> Result<String, String> {
        if let Some(agent) = self.agent.take() {
            if tokio::time::timeout(scaled(REQUEST_TIMEOUT), agent.stop())
                .await
                .is_err()
            {
                return Err("the agent did not stop in time".to_owned());
            }
        }
        let (s, path) = (self.s, &format!("/api/agents/{}", self.did));
        poll(scaled(REQUEST_TIMEOUT), || async move {
            let r = s.get(path).await;
            match (r.status, &r.body["agent"]["online"]) {
                // Deleted by the scenario: offline too.
                (404, _) => Ok(String::new()),
                (200, serde_json::Value::Bool(false)) => Ok(String::new()),
                (status, online) => Err(format!(
                    "GET {path}: {status}, online {online} (agent stopped)"
                )),
            }
        })
        .await
    }
}

/// `ackedVersion` of the agent in `GET /api/agents/{did}`.
async fn acked_version(s: &Stack, did: &str) -> Option<u64> {
    s.get(&format!("/api/agents/{did}")).await.body["agent"]["ackedVersion"].as_u64()
}

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Ok`; after `limit`, returns the last `Err` it
/// gave (an attempt still running at the deadline is cut short).
async fn poll<F, Fut>(limit: Duration, mut f: F) -> Result<String, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = "no attempt finished".to_owned();
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = e,
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("after {limit:?}: {last}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Writes one reply line to the scenario (ignoring a scenario that has stopped reading: its exit status
/// tells what happened).
async fn reply_to(stdin: &mut Option<ChildStdin>, reply: &str) {
    let Some(w) = stdin.as_mut() else {
        return;
    };
    let sent = async {
        w.write_all(format!("{reply}\n").as_bytes()).await?;
        w.flush().await
    }
    .await;
    if let Err(e) = sent {
        say(&format!(
            "dashboard.rs: the scenario's stdin is closed ({e})"
        ));
        *stdin = None;
    }
}

/// A line on the test's stderr, written directly rather than with `eprintln!` (which the test harness
/// captures): it then shows in order with the scenario's own stderr, which the scenario writes to the
/// same descriptor.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
