//! Real `nats-server` and `redis-server` processes for tests, one guard per process.
//!
//! Every guard starts its server(s) on free loopback ports with state in its own temporary directory, waits
//! until the server answers, and kills the process (SIGKILL) and removes the directory when dropped. Each
//! server's output goes to a log file in that directory; a failure to start panics with the log's tail.
//!
//! ```no_run
//! use vc_tests::servers::{NatsServer, RedisServer};
//! let nats = NatsServer::start();
//! let redis = RedisServer::start();
//! // NATS_URL = nats.url(), REDIS_URL = redis.url()
//! ```
//!
//! Binaries: `nats-server` (or `$VC_NATS_SERVER_BIN`), `redis-server` and `redis-cli` (or
//! `$VC_REDIS_SERVER_BIN`, `$VC_REDIS_CLI_BIN`) from `PATH`, `/usr/sbin` or `/usr/bin`; `scripts/test`
//! installs the Debian packages when they are missing. NATS configuration comes from the repository's
//! `nats/` directory: `single.conf` (or `sync-always.conf` when the server is 2.10 or newer) for
//! [`NatsServer`], `cluster.conf` for [`NatsCluster`] (whatever the version: a cluster's durability comes from
//! its replicas).
//!
//! Readiness:
//! * NATS: a TCP connection receives the server's `INFO` line announcing JetStream. JetStream (with the
//!   recovery of its stored streams) is enabled before the server accepts clients, so this is enough.
//! * NATS cluster: additionally each node's monitoring endpoint `/jsz` (on the node's `-m` port) is polled
//!   until every running node names the same JetStream meta leader and the leader sees all the other running
//!   nodes as current peers, so an R3 stream can be created right away.
//! * Redis: `PING` answers `+PONG` (not `-LOADING` while the AOF is replayed); a cluster also waits for
//!   `cluster_state:ok` on every node.
//!
//! Timeouts are scaled by `VC_TEST_PATIENCE` (see [`crate::wait::patience_factor`]).
//!
//! The start functions block (they are plain functions, usable from sync and async tests alike); they
//! take well under a second for a single server and a few seconds for a cluster.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::wait::scaled;

/// How long a single server may take to answer after being spawned (scaled by `VC_TEST_PATIENCE`).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster may take to form (meta leader elected, slots assigned).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a port was taken between choosing it and the server binding it.
const PORT_ATTEMPTS: usize = 5;
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------------

/// The workspace root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// A loopback TCP port that was free a moment ago (bind `127.0.0.1:0`, read the port, release it).
///
/// Ports are never handed out twice by one test process. Another process may still grab the port before
/// the server binds it; the guards notice ("address already in use") and retry with new ports.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0 to find a free port");
        let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

fn find_bin(env_var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env_var}={} does not name an existing file",
            p.display()
        );
        return p;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in PATH, /usr/sbin or /usr/bin: install it (`scripts/test` does: \
                 apt-get install nats-server redis-server) or set {env_var}"
            )
        })
}

/// The `nats-server` binary the guards run: `$VC_NATS_SERVER_BIN` when set, else `nats-server`.
pub fn nats_server_bin() -> PathBuf {
    find_bin("VC_NATS_SERVER_BIN", "nats-server")
}

/// The `redis-server` binary: `$VC_REDIS_SERVER_BIN` when set, else `redis-server`.
pub fn redis_server_bin() -> PathBuf {
    find_bin("VC_REDIS_SERVER_BIN", "redis-server")
}

/// The `redis-cli` binary: `$VC_REDIS_CLI_BIN` when set, else `redis-cli`.
pub fn redis_cli_bin() -> PathBuf {
    find_bin("VC_REDIS_CLI_BIN", "redis-cli")
}

/// `(major, minor, patch)` of [`nats_server_bin`], from `nats-server --version` ("nats-server: v2.9.10").
pub fn nats_server_version() -> (u32, u32, u32) {
    static VERSION: OnceLock<(u32, u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let bin = nats_server_bin();
        let out = Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {} --version: {e}", bin.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        parse_version(&text).unwrap_or_else(|| {
            panic!(
                "cannot read a version from `{} --version`: {text:?}",
                bin.display()
            )
        })
    })
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().find(|w| {
        w.trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit())
    })?;
    let mut parts = word
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The config [`NatsServer`] uses: `nats/sync-always.conf` (fsync every write) for servers >= 2.10, else
/// `nats/single.conf` (2.9 does not know `sync_interval`).
pub fn nats_single_config() -> PathBuf {
    let name = if nats_server_version() >= (2, 10, 0) {
        "sync-always.conf"
    } else {
        "single.conf"
    };
    repo_root().join("nats").join(name)
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = String::new();
            for line in &all[start..] {
                let _ = writeln!(out, "    {line}");
            }
            if out.is_empty() {
                out.push_str("    (empty)\n");
            }
            out
        }
        Err(e) => format!("    (cannot read {}: {e})\n", path.display()),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One child process whose output is appended to a log file; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: impl Into<String>, program: PathBuf, args: Vec<OsString>, log: PathBuf) -> Self {
        Self {
            name: name.into(),
            program,
            args,
            log,
            child: None,
        }
    }

    fn spawn(&mut self) {
        self.kill();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", self.log.display()));
        let err = log.try_clone().expect("clone log file handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// `Some(status)` when the process has exited (or was never started).
    fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => Some(ExitStatus::default()),
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_says_port_taken(&self) -> bool {
        fs::read_to_string(&self.log)
            .map(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("address already in use") || t.contains("address in use")
            })
            .unwrap_or(false)
    }

    fn describe(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!(
            "{} `{} {}`\n  log {}:\n{}",
            self.name,
            self.program.display(),
            args.join(" "),
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a server did not become ready.
#[derive(Debug)]
enum StartError {
    /// The process exited and its log says a port was taken: retry with other ports.
    PortTaken,
    /// Anything else, with a description for the panic message.
    Failed(String),
}

/// Polls `probe` until it succeeds, the process exits, or the timeout passes.
fn wait_ready(
    proc: &mut Proc,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.exited() {
            // Give the log a moment to be complete.
            sleep(Duration::from_millis(20));
            if proc.log_says_port_taken() {
                return Err(StartError::PortTaken);
            }
            return Err(StartError::Failed(format!(
                "{} exited ({status}) before it was ready\n  {}",
                proc.name,
                proc.describe()
            )));
        }
        let last = match probe() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let desc = proc.describe();
            proc.kill();
            return Err(StartError::Failed(format!(
                "{} not ready after {timeout:?} (last probe: {last})\n  {desc}",
                proc.name
            )));
        }
        sleep(POLL);
    }
}

/// Reads the greeting of a NATS server and checks that it announces JetStream.
fn probe_nats(port: u16) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("read INFO from 127.0.0.1:{port}: {e}"))?;
    if !line.starts_with("INFO ") {
        return Err(format!("unexpected greeting {line:?}"));
    }
    if !line.contains("\"jetstream\":true") {
        return Err("INFO does not announce JetStream yet".into());
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET against 127.0.0.1 (for nats-server's monitoring endpoints).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .map_err(|e| format!("send GET {path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------------------
// NATS: single server
// ---------------------------------------------------------------------------------------------------------

/// One `nats-server` with JetStream on a free loopback port, its store in a temporary directory.
///
/// Command line: `nats-server -c <repo>/nats/single.conf -js -a 127.0.0.1 -p <port> -m <monitor port>
/// -sd <tempdir>/jetstream` (`sync-always.conf` instead for servers >= 2.10). The log is `<tempdir>/nats.log`.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    monitor_port: u16,
    proc: Proc,
    dir: TempDir,
}

impl NatsServer {
    /// Starts the server and waits (up to 10 s × patience) until it greets clients with JetStream on.
    /// Panics, with the log's tail, when it does not.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vc-nats-")
            .tempdir()
            .expect("create temporary directory for nats-server");
        let config = nats_single_config();
        let store = dir.path().join("jetstream");
        let log = dir.path().join("nats.log");
        for _ in 0..PORT_ATTEMPTS {
            let (port, monitor_port) = (free_port(), free_port());
            let args: Vec<OsString> = vec![
                "-c".into(),
                config.clone().into(),
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
                "-m".into(),
                monitor_port.to_string().into(),
                "-sd".into(),
                store.clone().into(),
            ];
            let mut proc = Proc::new(
                format!("nats-server :{port}"),
                nats_server_bin(),
                args,
                log.clone(),
            );
            proc.spawn();
            match wait_ready(&mut proc, scaled(START_TIMEOUT), || probe_nats(port)) {
                Ok(()) => {
                    tracing::debug!(port, dir = %dir.path().display(), "nats-server ready");
                    return Self {
                        port,
                        monitor_port,
                        proc,
                        dir,
                    };
                }
                Err(StartError::PortTaken) => continue,
                Err(StartError::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!(
            "nats-server: no free port after {PORT_ATTEMPTS} attempts\n{}",
            log_tail(&log, 30)
        );
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The temporary directory holding the store (`jetstream/`) and the log (`nats.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Kills the server with SIGKILL (no lame-duck, no flush) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Kills the server if it runs and starts it again on the same port with the same store directory
    /// (streams and their messages are recovered), waiting until it is ready.
    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.spawn();
        let port = self.port;
        if let Err(e) = wait_ready(&mut self.proc, scaled(START_TIMEOUT), || probe_nats(port)) {
            match e {
                StartError::PortTaken => panic!(
                    "nats-server restart: port {port} was taken by another process\n  {}",
                    self.proc.describe()
                ),
                StartError::Failed(msg) => panic!("nats-server restart: {msg}"),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Kill before the TempDir field is dropped (and removed).
        self.proc.kill();
    }
}

// ---------------------------------------------------------------------------------------------------------
// NATS: cluster
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug)]
struct NatsNode {
    name: String,
    port: u16,
    monitor_port: u16,
    route_port: u16,
    proc: Proc,
}

/// A NATS cluster (cluster name `vc`) of `n` nodes with JetStream, on loopback.
///
/// Node `i` (0-based) is named `n{i+1}` and runs `nats-server -c <repo>/nats/cluster.conf -js -a 127.0.0.1
/// -p <port> -m <monitor port> -sd <tempdir>/n{i+1} --name n{i+1} --cluster_name vc
/// --cluster nats://127.0.0.1:<route port> --routes <all route urls>`; logs are `<tempdir>/n{i+1}.log`.
///
/// [`NatsCluster::start`] returns when every node greets clients and all nodes agree on a JetStream meta
/// leader that sees every other node as a current peer (polled on each node's `/jsz`).
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for R3 streams) and waits for the cluster to form (30 s × patience).
    pub fn start(n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one node");
        let dir = tempfile::Builder::new()
            .prefix("vc-nats-cluster-")
            .tempdir()
            .expect("create temporary directory for the NATS cluster");
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(n, &dir) {
                Ok(nodes) => {
                    let mut cluster = Self { nodes, dir };
                    if let Err(msg) = cluster.wait_formed(scaled(CLUSTER_TIMEOUT)) {
                        panic!("{msg}");
                    }
                    tracing::debug!(urls = %cluster.urls(), "NATS cluster ready");
                    return cluster;
                }
                Err(StartError::PortTaken) => continue,
                Err(StartError::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!("NATS cluster: no free ports after {PORT_ATTEMPTS} attempts");
    }

    fn try_start(n: usize, dir: &TempDir) -> Result<Vec<NatsNode>, StartError> {
        let config = repo_root().join("nats").join("cluster.conf");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes = ports
            .iter()
            .map(|(_, _, r)| format!("nats://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(n);
        for (i, &(port, monitor_port, route_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            // A previous attempt (ports taken) may have left a store naming other peers.
            let _ = fs::remove_dir_all(dir.path().join(&name));
            let args: Vec<OsString> = vec![
                "-c".into(),
                config.clone().into(),
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
                "-m".into(),
                monitor_port.to_string().into(),
                "-sd".into(),
                dir.path().join(&name).into(),
                "--name".into(),
                name.clone().into(),
                "--cluster_name".into(),
                "vc".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{route_port}").into(),
                "--routes".into(),
                routes.clone().into(),
            ];
            let log = dir.path().join(format!("{name}.log"));
            let mut proc = Proc::new(
                format!("nats-server {name} :{port}"),
                nats_server_bin(),
                args,
                log,
            );
            proc.spawn();
            nodes.push(NatsNode {
                name,
                port,
                monitor_port,
                route_port,
                proc,
            });
        }
        // All nodes were spawned before waiting on any, so they find each other while we wait.
        let deadline = Instant::now() + scaled(START_TIMEOUT);
        for node in &mut nodes {
            let port = node.port;
            let left = deadline.saturating_duration_since(Instant::now());
            wait_ready(&mut node.proc, left.max(POLL), || probe_nats(port))?;
        }
        Ok(nodes)
    }

    /// Waits until every running node names the same meta leader and the leader reports all other
    /// running nodes as current peers.
    fn wait_formed(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.formed() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            for node in &mut self.nodes {
                if node.proc.child.is_some() {
                    if let Some(status) = node.proc.exited() {
                        return Err(format!(
                            "NATS node {} exited ({status})\n  {}",
                            node.name,
                            node.proc.describe()
                        ));
                    }
                }
            }
            if Instant::now() >= deadline {
                let mut msg = format!("NATS cluster not formed after {timeout:?}: {last}\n");
                for node in &self.nodes {
                    msg.push_str(&node.proc.describe());
                }
                return Err(msg);
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn formed(&self) -> Result<(), String> {
        let running: Vec<&NatsNode> = self
            .nodes
            .iter()
            .filter(|n| n.proc.child.is_some())
            .collect();
        let mut leader: Option<String> = None;
        let mut leader_view: Option<serde_json::Value> = None;
        for node in &running {
            let (status, body) = http_get(node.monitor_port, "/jsz")?;
            if status != 200 {
                return Err(format!("{}: /jsz answered {status}", node.name));
            }
            let jsz: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{}: /jsz: {e}", node.name))?;
            let meta = &jsz["meta_cluster"];
            let l = meta["leader"].as_str().unwrap_or_default();
            if l.is_empty() {
                return Err(format!("{} has no meta leader yet", node.name));
            }
            match &leader {
                None => leader = Some(l.to_owned()),
                Some(seen) if seen != l => {
                    return Err(format!("nodes disagree on the meta leader ({seen} vs {l})"));
                }
                Some(_) => {}
            }
            if node.name == l {
                leader_view = Some(meta.clone());
            }
        }
        let leader = leader.unwrap_or_default();
        let meta =
            leader_view.ok_or_else(|| format!("meta leader {leader} is not a running node"))?;
        let empty = Vec::new();
        let replicas = meta["replicas"].as_array().unwrap_or(&empty);
        for node in running.iter().filter(|n| n.name != leader) {
            let peer = replicas
                .iter()
                .find(|r| r["name"].as_str() == Some(node.name.as_str()))
                .ok_or_else(|| format!("leader {leader} does not list peer {} yet", node.name))?;
            if peer["current"].as_bool() != Some(true) || peer["offline"].as_bool() == Some(true) {
                return Err(format!(
                    "peer {} is not current on leader {leader}",
                    node.name
                ));
            }
        }
        Ok(())
    }

    /// All client URLs, comma-separated (the form `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The client port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The monitoring port of node `i`.
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].monitor_port
    }

    /// The route (cluster) port of node `i`.
    pub fn route_port(&self, i: usize) -> u16 {
        self.nodes[i].route_port
    }

    /// The server name of node `i` (`n1`, `n2`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The temporary directory with each node's store (`n1/`, ...) and log (`n1.log`, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills node `i` with SIGKILL. The others keep running (and elect a new leader if needed).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].proc.kill();
    }

    /// Starts node `i` again (same ports, same store) and waits until it has rejoined: it greets clients and
    /// the running nodes agree on a leader that sees it as current (30 s × patience).
    pub fn restart_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.proc.kill();
        node.proc.spawn();
        let port = node.port;
        match wait_ready(&mut node.proc, scaled(CLUSTER_TIMEOUT), || probe_nats(port)) {
            Ok(()) => {}
            Err(StartError::PortTaken) => panic!(
                "NATS node {} restart: a port was taken by another process\n  {}",
                node.name,
                node.proc.describe()
            ),
            Err(StartError::Failed(msg)) => panic!("NATS node restart: {msg}"),
        }
        if let Err(msg) = self.wait_formed(scaled(CLUSTER_TIMEOUT)) {
            panic!("{msg}");
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.proc.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------------------

/// Options for [`RedisServer::start_with`].
#[derive(Clone, Debug)]
pub struct RedisOpts {
    /// `--appendonly yes|no` (default: yes).
    pub appendonly: bool,
    /// `--appendfsync always|everysec|no` (default: `always`, so a SIGKILL loses nothing).
    pub appendfsync: String,
    /// Further `redis-server` arguments, e.g. `["--maxmemory", "64mb"]`.
    pub extra_args: Vec<String>,
}

impl Default for RedisOpts {
    fn default() -> Self {
        Self {
            appendonly: true,
            appendfsync: "always".into(),
            extra_args: Vec::new(),
        }
    }
}

impl RedisOpts {
    fn args(&self, port: u16, dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--port".into(),
            port.to_string().into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.into(),
            "--daemonize".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            if self.appendonly { "yes" } else { "no" }.into(),
            "--appendfsync".into(),
            self.appendfsync.clone().into(),
            "--loglevel".into(),
            "notice".into(),
        ];
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }
}

/// Sends one command (as a RESP array) and returns the raw reply text.
fn redis_cmd(port: u16, parts: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", parts.len());
    for p in parts {
        let _ = write!(req, "${}\r\n{p}\r\n", p.len());
    }
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send {parts:?}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| format!("read reply to {parts:?}: {e}"))?;
    if let Some(len) = first.strip_prefix('$') {
        let len: i64 = len
            .trim()
            .parse()
            .map_err(|_| format!("bad reply {first:?}"))?;
        if len < 0 {
            return Ok(String::new());
        }
        let mut buf = vec![0; usize::try_from(len).unwrap_or(0) + 2];
        reader
            .read_exact(&mut buf)
            .map_err(|e| format!("read reply to {parts:?}: {e}"))?;
        buf.truncate(buf.len() - 2);
        return Ok(String::from_utf8_lossy(&buf).into_owned());
    }
    Ok(first.trim_end().to_owned())
}

fn probe_redis(port: u16) -> Result<(), String> {
    let reply = redis_cmd(port, &["PING"])?;
    if reply == "+PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {reply:?}"))
    }
}

fn spawn_redis(
    name: String,
    dir: &Path,
    log: &Path,
    args_for: impl Fn(u16) -> Vec<OsString>,
) -> Result<(u16, Proc), StartError> {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut proc = Proc::new(
            format!("{name} :{port}"),
            redis_server_bin(),
            args_for(port),
            log.to_path_buf(),
        );
        proc.spawn();
        match wait_ready(&mut proc, scaled(START_TIMEOUT), || probe_redis(port)) {
            Ok(()) => return Ok((port, proc)),
            Err(StartError::PortTaken) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StartError::Failed(format!(
        "{name}: no free port after {PORT_ATTEMPTS} attempts (data dir {})\n{}",
        dir.display(),
        log_tail(log, 30)
    )))
}

/// One `redis-server` on a free loopback port with its data (AOF) in a temporary directory.
///
/// Defaults: `--appendonly yes --appendfsync always --save ""`; the log is `<tempdir>/redis.log`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    proc: Proc,
    dir: TempDir,
}

impl RedisServer {
    /// Starts with [`RedisOpts::default`] and waits (10 s × patience) until `PING` answers.
    pub fn start() -> Self {
        Self::start_with(RedisOpts::default())
    }

    /// Starts with the given options and waits until `PING` answers.
    pub fn start_with(opts: RedisOpts) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vc-redis-")
            .tempdir()
            .expect("create temporary directory for redis-server");
        let data = dir.path().to_path_buf();
        let log = dir.path().join("redis.log");
        match spawn_redis("redis-server".into(), &data, &log, |port| {
            opts.args(port, &data)
        }) {
            Ok((port, proc)) => {
                tracing::debug!(port, dir = %dir.path().display(), "redis-server ready");
                Self { port, proc, dir }
            }
            Err(StartError::Failed(msg)) => panic!("{msg}"),
            Err(StartError::PortTaken) => unreachable!("spawn_redis retries taken ports"),
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary data directory (AOF under `appendonlydir/`, log `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Kills the server with SIGKILL and reaps it. Idempotent.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Kills the server if it runs and starts it again on the same port and data directory, so the AOF
    /// is replayed; waits until `PING` answers `+PONG` (after loading).
    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.spawn();
        let port = self.port;
        if let Err(e) = wait_ready(&mut self.proc, scaled(START_TIMEOUT), || probe_redis(port)) {
            match e {
                StartError::PortTaken => panic!(
                    "redis-server restart: port {port} was taken by another process\n  {}",
                    self.proc.describe()
                ),
                StartError::Failed(msg) => panic!("redis-server restart: {msg}"),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

#[derive(Debug)]
struct RedisNode {
    port: u16,
    bus_port: u16,
    proc: Proc,
}

/// A Redis Cluster of `n` masters (no replicas) on loopback, all 16384 slots assigned.
///
/// Each node runs with `--cluster-enabled yes --cluster-config-file <tempdir>/node{i}/nodes.conf
/// --cluster-port <free port> --cluster-node-timeout 2000` plus the [`RedisOpts::default`] persistence
/// options; the cluster is created with `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`
/// and [`RedisCluster::start`] returns once every node reports `cluster_state:ok`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts `n` masters (at least 3: Redis Cluster refuses fewer) and creates the cluster.
    pub fn start(n: usize) -> Self {
        assert!(
            n >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let dir = tempfile::Builder::new()
            .prefix("vc-redis-cluster-")
            .tempdir()
            .expect("create temporary directory for the Redis cluster");
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let data = dir.path().join(format!("node{i}"));
            fs::create_dir_all(&data).expect("create node directory");
            let log = dir.path().join(format!("node{i}.log"));
            let bus_port = free_port();
            let spawned = spawn_redis(format!("redis-server node{i}"), &data, &log, |port| {
                let mut args = RedisOpts::default().args(port, &data);
                let cluster_args: [OsString; 8] = [
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    data.join("nodes.conf").into(),
                    "--cluster-port".into(),
                    bus_port.to_string().into(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ];
                args.extend(cluster_args);
                args
            });
            match spawned {
                Ok((port, proc)) => nodes.push(RedisNode {
                    port,
                    bus_port,
                    proc,
                }),
                Err(StartError::Failed(msg)) => panic!("{msg}"),
                Err(StartError::PortTaken) => unreachable!("spawn_redis retries taken ports"),
            }
        }
        let mut cluster = Self { nodes, dir };
        cluster.create();
        if let Err(msg) = cluster.wait_ok(scaled(CLUSTER_TIMEOUT)) {
            panic!("{msg}");
        }
        tracing::debug!(urls = ?cluster.urls(), "Redis cluster ready");
        cluster
    }

    fn create(&mut self) {
        let cli = redis_cli_bin();
        let log_path = self.dir.path().join("cluster-create.log");
        let log = File::create(&log_path).expect("create cluster-create.log");
        let mut cmd = Command::new(&cli);
        cmd.arg("--cluster").arg("create");
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} --cluster create: {e}", cli.display()));
        let deadline = Instant::now() + scaled(CLUSTER_TIMEOUT);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => panic!(
                    "redis-cli --cluster create failed ({status}):\n{}",
                    log_tail(&log_path, 40)
                ),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-cli --cluster create did not finish in time:\n{}",
                        log_tail(&log_path, 40)
                    );
                }
                Ok(None) => sleep(POLL),
                Err(e) => panic!("wait for redis-cli: {e}"),
            }
        }
    }

    fn wait_ok(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = None;
            for (i, node) in self.nodes.iter().enumerate() {
                if node.proc.child.is_none() {
                    continue;
                }
                match redis_cmd(node.port, &["CLUSTER", "INFO"]) {
                    Ok(info) if info.contains("cluster_state:ok") => {}
                    Ok(info) => {
                        let state = info
                            .lines()
                            .find(|l| l.starts_with("cluster_state:"))
                            .unwrap_or("no cluster_state")
                            .trim()
                            .to_owned();
                        last = Some(format!("node{i}: {state}"));
                    }
                    Err(e) => last = Some(format!("node{i}: {e}")),
                }
            }
            let Some(last) = last else { return Ok(()) };
            if Instant::now() >= deadline {
                let mut msg = format!("Redis cluster not ok after {timeout:?}: {last}\n");
                for node in &self.nodes {
                    msg.push_str(&node.proc.describe());
                }
                return Err(msg);
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// [`RedisCluster::urls`] joined with commas.
    pub fn urls_csv(&self) -> String {
        self.urls().join(",")
    }

    /// The client port of node `i` (0-based).
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The cluster bus port of node `i`.
    pub fn bus_port(&self, i: usize) -> u16 {
        self.nodes[i].bus_port
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The temporary directory (`node{i}/` data, `node{i}.log` logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills node `i` with SIGKILL; its slots are unavailable until it comes back (no replicas).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].proc.kill();
    }

    /// Starts node `i` again (same ports, data and `nodes.conf`) and waits until the cluster is ok.
    pub fn restart_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.proc.kill();
        node.proc.spawn();
        let port = node.port;
        match wait_ready(&mut node.proc, scaled(START_TIMEOUT), || probe_redis(port)) {
            Ok(()) => {}
            Err(StartError::PortTaken) => panic!(
                "Redis node{i} restart: port {port} was taken\n  {}",
                node.proc.describe()
            ),
            Err(StartError::Failed(msg)) => panic!("Redis node{i} restart: {msg}"),
        }
        if let Err(msg) = self.wait_ok(scaled(CLUSTER_TIMEOUT)) {
            panic!("{msg}");
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.proc.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{eventually, patience};
    use async_nats::jetstream;

    fn port_open(port: u16) -> bool {
        TcpStream::connect_timeout(&addr(port), Duration::from_millis(300)).is_ok()
    }

    #[test]
    fn parses_nats_versions() {
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }

    #[test]
    fn configs_exist() {
        for name in ["single.conf", "cluster.conf", "sync-always.conf"] {
            assert!(
                repo_root().join("nats").join(name).is_file(),
                "nats/{name} missing"
            );
        }
        assert!(nats_single_config().is_file());
    }

    #[tokio::test]
    async fn nats_server_keeps_stream_across_kill_and_restart() {
        crate::wait::trace_init();
        let mut nats = NatsServer::start();
        assert!(nats.is_running());
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        js.create_stream(jetstream::stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("harness.one", "hello".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        drop(js);
        drop(client);

        nats.kill();
        assert!(!nats.is_running());
        assert!(!port_open(nats.port()), "port still open after kill");

        let dir = nats.dir().to_path_buf();
        nats.restart();
        assert!(nats.is_running());
        let client = async_nats::connect(nats.url()).await.expect("reconnect");
        let js = jetstream::new(client);
        let messages = eventually("stream recovered after restart", patience(), || async {
            let mut stream = js.get_stream("HARNESS").await.map_err(|e| e.to_string())?;
            let info = stream.info().await.map_err(|e| e.to_string())?;
            Ok::<u64, String>(info.state.messages)
        })
        .await;
        assert_eq!(messages, 1);

        drop(nats);
        assert!(!dir.exists(), "temporary directory not removed on drop");
    }

    #[tokio::test]
    async fn redis_restart_keeps_key_via_aof() {
        crate::wait::trace_init();
        let mut redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).expect("client");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let () = redis::cmd("SET")
            .arg("harness:key")
            .arg("kept")
            .query_async(&mut con)
            .await
            .expect("SET");
        drop(con);

        redis.kill();
        assert!(!redis.is_running());
        assert!(!port_open(redis.port()), "port still open after kill");
        redis.restart();

        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("reconnect");
        let value: Option<String> = redis::cmd("GET")
            .arg("harness:key")
            .query_async(&mut con)
            .await
            .expect("GET");
        assert_eq!(value.as_deref(), Some("kept"));

        let dir = redis.dir().to_path_buf();
        drop(redis);
        assert!(!dir.exists(), "temporary directory not removed on drop");
    }

    #[test]
    fn redis_start_with_options() {
        let redis = RedisServer::start_with(RedisOpts {
            appendonly: false,
            appendfsync: "everysec".into(),
            extra_args: vec!["--maxmemory".into(), "32mb".into()],
        });
        let reply = redis_cmd(redis.port(), &["CONFIG", "GET", "maxmemory"]).expect("CONFIG GET");
        assert!(reply.starts_with("*2"), "unexpected reply {reply:?}");
        let aof = redis_cmd(redis.port(), &["CONFIG", "GET", "appendonly"]).expect("CONFIG GET");
        assert!(aof.starts_with("*2"), "unexpected reply {aof:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_cluster_accepts_r3_stream_and_survives_a_node() {
        crate::wait::trace_init();
        let mut cluster = NatsCluster::start(3);
        assert_eq!(cluster.len(), 3);
        assert_eq!(cluster.urls().split(',').count(), 3);

        let urls: Vec<String> = cluster.urls().split(',').map(str::to_owned).collect();
        let client = async_nats::connect(urls).await.expect("connect to cluster");
        let js = jetstream::new(client);
        let mut stream = js
            .create_stream(jetstream::stream::Config {
                name: "HARNESS_R3".into(),
                subjects: vec!["harness.r3.>".into()],
                storage: jetstream::stream::StorageType::File,
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("create R3 stream");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 3);
        let cluster_info = info.cluster.clone().expect("cluster info");
        assert_eq!(cluster_info.replicas.len(), 2, "{cluster_info:?}");

        js.publish("harness.r3.a", "one".into())
            .await
            .expect("publish")
            .await
            .expect("ack");

        // Lose one node: two of three still form a quorum and accept writes.
        cluster.kill_node(2);
        assert!(!port_open(cluster.port(2)));
        eventually(
            "R3 stream writable with a node down",
            patience(),
            || async {
                let ack = js
                    .publish("harness.r3.b", "two".into())
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            },
        )
        .await;

        cluster.restart_node(2);
        let messages = eventually("stream holds both messages", patience(), || async {
            let stream = js
                .get_stream("HARNESS_R3")
                .await
                .map_err(|e| e.to_string())?;
            let info = stream.cached_info();
            if info.state.messages >= 2 {
                Ok(info.state.messages)
            } else {
                Err(format!("{} messages", info.state.messages))
            }
        })
        .await;
        assert!(messages >= 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_cluster_serves_keys_across_slots() {
        crate::wait::trace_init();
        let mut cluster = RedisCluster::start(3);
        assert_eq!(cluster.urls().len(), 3);
        let client = redis::cluster::ClusterClient::new(cluster.urls()).expect("cluster client");
        let mut con = client.get_async_connection().await.expect("connect");
        for i in 0..20 {
            let () = redis::cmd("SET")
                .arg(format!("harness:{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .expect("SET");
        }
        for i in 0..20 {
            let v: i64 = redis::cmd("GET")
                .arg(format!("harness:{i}"))
                .query_async(&mut con)
                .await
                .expect("GET");
            assert_eq!(v, i);
        }
        // Keys were spread over more than one node.
        let mut nodes_with_keys = 0;
        for i in 0..cluster.len() {
            let n = redis_cmd(cluster.port(i), &["DBSIZE"]).expect("DBSIZE");
            if n != ":0" {
                nodes_with_keys += 1;
            }
        }
        assert!(nodes_with_keys >= 2, "keys all on one node");

        cluster.kill_node(1);
        assert!(!port_open(cluster.port(1)));
        cluster.restart_node(1);
        for i in 0..20 {
            let v: i64 = eventually("key readable after node restart", patience(), || {
                let mut con = con.clone();
                async move {
                    redis::cmd("GET")
                        .arg(format!("harness:{i}"))
                        .query_async::<i64>(&mut con)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
            assert_eq!(v, i);
        }
    }
}
