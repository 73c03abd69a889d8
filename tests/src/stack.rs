//! In-process control plane for scenarios: real `nats-server` and `redis-server`, the services'
//! library `run` on `127.0.0.1:0`, and optionally the LiteLLM emulator.
//!
//! ```no_run
//! # async fn f() {
//! let stack = vc_tests::stack::Stack::builder().litellm(true).start().await;
//! let resp = stack.post("/api/models", serde_json::json!({"name": "m", "provider": "openai", "modelId": "gpt"})).await;
//! assert_eq!(resp.status, 201);
//! # }
//! ```

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use vc_shared::config::LitellmSettings;
use vc_shared::crypto::{Purpose, Sealer, SecretKey};
use vc_shared::store::Store;

use crate::servers::{NatsCluster, NatsServer, RedisCluster, RedisOpts, RedisServer};

/// Admin token used by every in-process API.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijklmnop";

/// A running service task; dropping it stops the service (abort).
pub struct Service {
    /// Stop signal.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The task.
    pub task: JoinHandle<()>,
    /// Listen address, if any.
    pub addr: Option<std::net::SocketAddr>,
}

impl Service {
    /// Graceful stop, then wait (bounded).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }

    /// Abrupt stop (like kill -9 of that process: no drain).
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A service running as its own OS process, configured through the environment as an operator would;
/// killed with SIGKILL when dropped. Its log goes to a file of its own temporary directory.
pub struct Process {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Process {
    /// kill -9, then reap: the process gets no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log (stdout and stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builder of a [`Stack`].
#[derive(Default)]
pub struct StackBuilder {
    litellm: bool,
    external: Option<(String, String)>,
    workers: Option<usize>,
    command_wait: Option<Duration>,
    nats_cluster: Option<usize>,
    redis_cluster: Option<usize>,
    redis_opts: Option<RedisOpts>,
    stream_replicas: Option<usize>,
    reconcile_every: Option<Duration>,
    key_rotation_grace: Option<Duration>,
    budget: Option<vc_worker::BudgetSettings>,
    api_limits: Option<(u32, u32, u32)>,
}

/// An HTTP response as tests see it.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// Raw body text.
    pub text: String,
}

/// The stack.
pub struct Stack {
    /// NATS.
    pub nats: NatsServer,
    /// Redis.
    pub redis: RedisServer,
    /// LiteLLM emulator, when enabled.
    pub emu: Option<litellm_emu::EmulatorHandle>,
    /// External LiteLLM (base URL, master key), when used instead of the emulator.
    pub external: Option<(String, String)>,
    /// The master key (`VC_SECRET_KEY` of workers; the API's and the edges' keys derive from it).
    pub secret: SecretKey,
    /// Earlier master keys (`VC_SECRET_KEY_PREVIOUS`; a rotation in progress), empty by default.
    pub previous_secrets: Vec<SecretKey>,
    /// API base URL.
    pub api_url: String,
    /// The API service.
    pub api: Option<Service>,
    /// Worker services.
    pub workers: Vec<Service>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// A store handle for assertions.
    pub store: Store,
    /// The NATS cluster the services use, when started with [`StackBuilder::nats_cluster`] (then
    /// [`Stack::nats`] is a spare single server that no service uses).
    pub nats_cluster: Option<NatsCluster>,
    /// The Redis Cluster the services use, when started with [`StackBuilder::redis_cluster`] (then
    /// [`Stack::redis`] is a spare single server that no service uses).
    pub redis_cluster: Option<RedisCluster>,
    command_wait: Duration,
    nats_url: String,
    redis_url: String,
    stream_replicas: usize,
    reconcile_every: Duration,
    key_rotation_grace: Duration,
    budget: vc_worker::BudgetSettings,
    api_limits: (u32, u32, u32),
}

impl StackBuilder {
    /// With the LiteLLM emulator.
    pub fn litellm(mut self, on: bool) -> Self {
        self.litellm = on;
        self
    }
    /// With an external LiteLLM (the real proxy of the contract tier): base URL and master key.
    pub fn litellm_external(mut self, base_url: &str, master_key: &str) -> Self {
        self.external = Some((
            base_url.trim_end_matches('/').to_string(),
            master_key.to_string(),
        ));
        self
    }
    /// Number of in-process workers (default 1; 0 when the test runs its own, e.g. worker processes).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }
    /// API outcome wait.
    pub fn command_wait(mut self, d: Duration) -> Self {
        self.command_wait = Some(d);
        self
    }
    /// Services use a NATS cluster of `n` nodes ([`NatsCluster`], all URLs comma-separated in their
    /// `NATS_URL`) instead of the single server; streams get `min(n, 3)` replicas unless
    /// [`StackBuilder::stream_replicas`] says otherwise.
    pub fn nats_cluster(mut self, n: usize) -> Self {
        self.nats_cluster = Some(n);
        self
    }
    /// Services use a Redis Cluster of `n` masters ([`RedisCluster`], node URLs comma-separated in
    /// their `REDIS_URL`, which the store treats as a cluster) instead of the single server.
    pub fn redis_cluster(mut self, n: usize) -> Self {
        self.redis_cluster = Some(n);
        self
    }
    /// Options of the single Redis server (default [`RedisOpts::default`]: AOF, `appendfsync always`).
    pub fn redis_opts(mut self, opts: RedisOpts) -> Self {
        self.redis_opts = Some(opts);
        self
    }
    /// JetStream stream replicas the services ask for (default 1, or the NATS cluster's size up to 3).
    pub fn stream_replicas(mut self, n: usize) -> Self {
        self.stream_replicas = Some(n);
        self
    }
    /// Workers reconcile LiteLLM every `d` (default: never; the production default is 300 s).
    pub fn reconcile_every(mut self, d: Duration) -> Self {
        self.reconcile_every = Some(d);
        self
    }
    /// Default grace period of a replaced realm key (default: the production 30 s).
    pub fn key_rotation_grace(mut self, d: Duration) -> Self {
        self.key_rotation_grace = Some(d);
        self
    }
    /// Spend reading, budget thresholds and webhooks of the workers (default: production's).
    pub fn budget(mut self, b: vc_worker::BudgetSettings) -> Self {
        self.budget = Some(b);
        self
    }
    /// The API's per-token limits: requests per second, burst, requests in flight (default: none, as
    /// tests and benchmarks send far more than a production token may).
    pub fn api_limits(mut self, rate: u32, burst: u32, concurrency: u32) -> Self {
        self.api_limits = Some((rate, burst, concurrency));
        self
    }

    /// Starts everything.
    pub async fn start(self) -> Stack {
        crate::wait::trace_init();
        let nats = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .expect("nats");
        let redis_opts = self.redis_opts.clone().unwrap_or_default();
        let redis = tokio::task::spawn_blocking(move || RedisServer::start_with(redis_opts))
            .await
            .expect("redis");
        let nats_cluster = match self.nats_cluster {
            Some(n) => Some(
                tokio::task::spawn_blocking(move || NatsCluster::start(n))
                    .await
                    .expect("nats cluster"),
            ),
            None => None,
        };
        let redis_cluster = match self.redis_cluster {
            Some(n) => Some(
                tokio::task::spawn_blocking(move || RedisCluster::start(n))
                    .await
                    .expect("redis cluster"),
            ),
            None => None,
        };
        let nats_url = nats_cluster
            .as_ref()
            .map(NatsCluster::urls)
            .unwrap_or_else(|| nats.url());
        let redis_url = redis_cluster
            .as_ref()
            .map(RedisCluster::urls_csv)
            .unwrap_or_else(|| redis.url());
        let stream_replicas = self
            .stream_replicas
            .unwrap_or_else(|| self.nats_cluster.map(|n| n.clamp(1, 3)).unwrap_or(1));
        let emu = if self.litellm {
            Some(
                litellm_emu::Emulator::spawn(litellm_emu::EmulatorConfig {
                    master_key: "sk-emu-master".into(),
                    ..Default::default()
                })
                .await,
            )
        } else {
            None
        };
        let store = Store::connect(&redis_url).await.expect("store");
        let mut stack = Stack {
            nats,
            redis,
            emu,
            external: self.external.clone(),
            secret: SecretKey::generate(),
            previous_secrets: Vec::new(),
            api_url: String::new(),
            api: None,
            workers: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http"),
            store,
            nats_cluster,
            redis_cluster,
            command_wait: self.command_wait.unwrap_or(Duration::from_secs(10)),
            nats_url,
            redis_url,
            stream_replicas,
            reconcile_every: self.reconcile_every.unwrap_or(Duration::ZERO),
            key_rotation_grace: self.key_rotation_grace.unwrap_or(Duration::from_secs(30)),
            budget: self.budget.unwrap_or_default(),
            api_limits: self.api_limits.unwrap_or((0, 0, 0)),
        };
        for _ in 0..self.workers.unwrap_or(1) {
            let w = stack.spawn_worker().await;
            stack.workers.push(w);
        }
        let api = stack.spawn_api().await;
        stack.api_url = format!("http://{}", api.addr.expect("addr"));
        stack.api = Some(api);
        stack
    }
}

impl Stack {
    /// A builder.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// LiteLLM settings pointing at the emulator.
    pub fn litellm_settings(&self) -> Option<LitellmSettings> {
        if let Some((base, key)) = &self.external {
            return Some(LitellmSettings {
                base_url: base.clone(),
                master_key: key.clone(),
                public_url: base.clone(),
                timeout: Duration::from_secs(30),
            });
        }
        self.emu.as_ref().map(|e| LitellmSettings {
            base_url: e.base_url.clone(),
            master_key: "sk-emu-master".into(),
            public_url: "http://litellm.public.example:4000".into(),
            timeout: Duration::from_secs(3),
        })
    }

    /// The workers' sealer: every purpose, the master key and its previous ones.
    pub fn sealer(&self) -> Sealer {
        Sealer::with_previous(self.secret.clone(), self.previous_secrets.clone())
            .expect("distinct keys")
    }

    /// The edges' sealer: the `agent-config-key` key of the master key (and of the previous ones), as
    /// `VC_EDGE_SECRET_KEY` gives it.
    pub fn edge_sealer(&self) -> Sealer {
        edge_sealer(&self.secret, &self.previous_secrets)
    }

    /// The API's sealer: the `command` key of the master key, as `VC_API_SECRET_KEY` gives it.
    pub fn api_sealer(&self) -> Sealer {
        Sealer::restricted(self.secret.purpose_key(Purpose::Command), Vec::new()).expect("one key")
    }

    /// The `NATS_URL` the services use (the cluster's URLs, comma-separated, in cluster mode).
    pub fn nats_url(&self) -> String {
        self.nats_url.clone()
    }

    /// The `REDIS_URL` the services use (the cluster's node URLs, comma-separated, in cluster mode).
    pub fn redis_url(&self) -> String {
        self.redis_url.clone()
    }

    /// The JetStream stream replicas the services ask for.
    pub fn stream_replicas(&self) -> usize {
        self.stream_replicas
    }

    /// Starts one more worker (library `run`, in-process).
    pub async fn spawn_worker(&self) -> Service {
        let nats = vc_shared::bus::connect(&self.nats_url, "test-worker")
            .await
            .expect("nats");
        let store = Store::connect(&self.redis_url).await.expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().ok();
        let deps = vc_worker::Deps {
            nats,
            store,
            sealer: self.sealer(),
            litellm: self.litellm_settings(),
            stream_replicas: self.stream_replicas,
            reconcile_every: self.reconcile_every,
            key_rotation_grace: self.key_rotation_grace,
            budget: self.budget.clone(),
        };
        // Tests publish unreadable commands on purpose (fuzz_nats): find them in a quarter second
        // rather than the production 2 s, so each costs the suite well under a second.
        let tuning = vc_worker::Tuning {
            stuck_check_every: Duration::from_millis(250),
            ..Default::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = vc_worker::run_tuned(Some(listener), deps, tuning, async move {
                let _ = rx.await;
            })
            .await
            {
                tracing::error!(error = %e, "worker exited");
            }
        });
        Service {
            stop: Some(tx),
            task,
            addr,
        }
    }

    /// Starts a worker **process** from `bin`, a build of `vc-worker`'s `main` (integration tests of this
    /// package get one as `env!("CARGO_BIN_EXE_vc-worker-under-test")`), with the settings of this stack
    /// in its environment.
    pub fn spawn_worker_process(&self, bin: &str) -> Process {
        self.spawn_worker_process_with(bin, &[])
    }

    /// [`Stack::spawn_worker_process`] with more environment variables.
    pub fn spawn_worker_process_with(&self, bin: &str, extra: &[(&str, String)]) -> Process {
        let mut env = vec![
            ("VC_SECRET_KEY", self.secret.to_base64()),
            ("VC_NATS_STREAM_REPLICAS", self.stream_replicas.to_string()),
            (
                "VC_RECONCILE_INTERVAL_SECS",
                self.reconcile_every.as_secs().to_string(),
            ),
            (
                "VC_KEY_ROTATION_GRACE_SECS",
                self.key_rotation_grace.as_secs().to_string(),
            ),
            ("RUST_LOG", "vc_worker=warn,vc_shared=warn".to_string()),
        ];
        if !self.previous_secrets.is_empty() {
            let previous: Vec<String> = self
                .previous_secrets
                .iter()
                .map(SecretKey::to_base64)
                .collect();
            env.push(("VC_SECRET_KEY_PREVIOUS", previous.join(",")));
        }
        env.extend(self.litellm_env(true));
        env.extend(extra.iter().cloned());
        self.spawn_process(bin, &env)
    }

    /// Starts an edge **process** from `bin`, a build of `vc-edge`'s `main`
    /// (`env!("CARGO_BIN_EXE_vc-edge-under-test")`), listening on a free loopback port; returns once its
    /// `/readyz` answers 200.
    pub async fn spawn_edge_process(
        &self,
        bin: &str,
        edge_id: &str,
    ) -> (Process, std::net::SocketAddr) {
        self.spawn_edge_process_with(bin, edge_id, &[]).await
    }

    /// [`Stack::spawn_edge_process`] with more environment variables.
    pub async fn spawn_edge_process_with(
        &self,
        bin: &str,
        edge_id: &str,
        extra: &[(&str, String)],
    ) -> (Process, std::net::SocketAddr) {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::servers::free_port())
            .parse()
            .expect("addr");
        let mut env = vec![
            (
                "VC_EDGE_SECRET_KEY",
                self.secret.purpose_key(Purpose::AgentConfigKey).to_text(),
            ),
            ("VC_EDGE_ADDR", addr.to_string()),
            ("VC_EDGE_ID", edge_id.to_string()),
            ("RUST_LOG", "vc_edge=warn,vc_shared=warn".to_string()),
        ];
        if !self.previous_secrets.is_empty() {
            let previous: Vec<String> = self
                .previous_secrets
                .iter()
                .map(|k| k.purpose_key(Purpose::AgentConfigKey).to_text())
                .collect();
            env.push(("VC_EDGE_SECRET_KEY_PREVIOUS", previous.join(",")));
        }
        env.extend(extra.iter().cloned());
        let p = self.spawn_process(bin, &env);
        self.wait_ready(
            &p,
            addr,
            &format!("edge {edge_id}"),
            Duration::from_secs(20),
        )
        .await;
        (p, addr)
    }

    /// Waits until the process `p` answers 200 on `http://addr/readyz`; panics with its log after `within`.
    async fn wait_ready(
        &self,
        p: &Process,
        addr: std::net::SocketAddr,
        what: &str,
        within: Duration,
    ) {
        let ready = format!("http://{addr}/readyz");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ok = self
                .http
                .get(&ready)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} not ready within {within:?}: {}",
                p.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts an API **process** from `bin` (a build of `vc-api`'s `cli::main`) on a free loopback port,
    /// with `extra` environment variables; returns once its `/readyz` answers 200 (its read model is
    /// loaded).
    pub async fn spawn_api_process_with(
        &self,
        bin: &str,
        extra: &[(&str, String)],
    ) -> (Process, std::net::SocketAddr) {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::servers::free_port())
            .parse()
            .expect("addr");
        let mut env = vec![
            (
                "VC_API_SECRET_KEY",
                self.secret.purpose_key(Purpose::Command).to_text(),
            ),
            ("VC_API_ADDR", addr.to_string()),
            ("VC_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
            ("VC_NATS_STREAM_REPLICAS", self.stream_replicas.to_string()),
            ("VC_API_TOKEN_RATE", self.api_limits.0.to_string()),
            ("VC_API_TOKEN_BURST", self.api_limits.1.to_string()),
            ("VC_API_TOKEN_CONCURRENCY", self.api_limits.2.to_string()),
            ("RUST_LOG", "vc_api=warn,vc_shared=warn".to_string()),
        ];
        env.extend(self.litellm_env(false));
        env.extend(extra.iter().cloned());
        let p = self.spawn_process(bin, &env);
        self.wait_ready(&p, addr, "api", Duration::from_secs(120))
            .await;
        (p, addr)
    }

    /// The LiteLLM settings of this stack as a service process's environment (none without LiteLLM);
    /// the master key only for the worker (`master_key`), the one service that calls LiteLLM.
    fn litellm_env(&self, master_key: bool) -> Vec<(&'static str, String)> {
        self.litellm_settings()
            .map(|l| {
                let mut env = vec![
                    ("LITELLM_BASE_URL", l.base_url),
                    ("LITELLM_PUBLIC_URL", l.public_url),
                    ("VC_LITELLM_TIMEOUT_MS", l.timeout.as_millis().to_string()),
                ];
                if master_key {
                    env.push(("LITELLM_MASTER_KEY", l.master_key));
                }
                env
            })
            .unwrap_or_default()
    }

    /// Starts `bin` with this stack's NATS and Redis, plus `env` (the service's own secrets among them),
    /// in its environment (nothing inherited but `PATH`); its output goes to a log file.
    fn spawn_process(&self, bin: &str, env: &[(&str, String)]) -> Process {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("out.log")).expect("log file");
        let mut cmd = std::process::Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NATS_URL", &self.nats_url)
            .env("REDIS_URL", &self.redis_url)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Process { child, dir }
    }

    /// Starts an API (library `run`, in-process).
    pub async fn spawn_api(&self) -> Service {
        let nats = vc_shared::bus::connect(&self.nats_url, "test-api")
            .await
            .expect("nats");
        let store = Store::connect(&self.redis_url).await.expect("store");
        let tail = Store::connect(&self.redis_url).await.expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().ok();
        let deps = vc_api::Deps {
            nats,
            store,
            tail,
            sealer: self.api_sealer(),
            admin_token: ADMIN_TOKEN.into(),
            command_wait: self.command_wait,
            litellm: self.litellm_settings(),
            stream_replicas: self.stream_replicas,
            drain_delay: Duration::ZERO,
            limits: vc_api::limits::TokenLimits::new(
                self.api_limits.0,
                self.api_limits.1,
                self.api_limits.2,
            ),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = vc_api::run(listener, deps, async move {
                let _ = rx.await;
            })
            .await
            {
                tracing::error!(error = %e, "api exited");
            }
        });
        // Wait until it is ready: its read model loaded (a test's first read must not race the load;
        // a read arriving before would wait for it, or answer 503 past 5 s on a busy machine).
        let url = format!("http://{}/readyz", addr.expect("addr"));
        crate::wait::eventually("api ready", Duration::from_secs(90), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await;
        Service {
            stop: Some(tx),
            task,
            addr,
        }
    }

    /// A raw NATS client.
    pub async fn nats_client(&self) -> async_nats::Client {
        vc_shared::bus::connect(&self.nats_url, "test-client")
            .await
            .expect("nats")
    }

    /// Sends a request with the admin token (or `token`).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.api_url));
        if let Some(t) = token.or(Some(ADMIN_TOKEN)).filter(|t| !t.is_empty()) {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    /// GET with the admin token.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(reqwest::Method::GET, path, None, None, &[])
            .await
    }
    /// POST with the admin token.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(reqwest::Method::POST, path, Some(body), None, &[])
            .await
    }
    /// PUT with the admin token.
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(reqwest::Method::PUT, path, Some(body), None, &[])
            .await
    }
    /// PATCH with the admin token.
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.request(reqwest::Method::PATCH, path, Some(body), None, &[])
            .await
    }
    /// DELETE with the admin token.
    pub async fn delete(&self, path: &str) -> Resp {
        self.request(reqwest::Method::DELETE, path, None, None, &[])
            .await
    }

    /// A chat completion with `key` on the LiteLLM emulator: its HTTP status (0 when none came).
    pub async fn emu_chat(&self, key: &str, model: &str) -> u16 {
        let url = format!(
            "{}/chat/completions",
            self.emu.as_ref().expect("emulator").base_url
        );
        self.http
            .post(url)
            .bearer_auth(key)
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// The audit events of `kind` among the first 1,000, oldest first.
    pub async fn audit_events(&self, kind: &str) -> Vec<Value> {
        let r = self.get("/api/audit?limit=1000").await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

/// An edge's sealer for master key `secret` (and `previous` ones): their `agent-config-key` keys only,
/// as `VC_EDGE_SECRET_KEY` and `VC_EDGE_SECRET_KEY_PREVIOUS` give them.
pub fn edge_sealer(secret: &SecretKey, previous: &[SecretKey]) -> Sealer {
    Sealer::restricted(
        secret.purpose_key(Purpose::AgentConfigKey),
        previous
            .iter()
            .map(|k| k.purpose_key(Purpose::AgentConfigKey))
            .collect(),
    )
    .expect("keys of one purpose")
}

/// A fresh agent key and its DID.
pub fn new_agent() -> (ed25519_dalek::SigningKey, String) {
    let k = vc_shared::did::generate_key();
    let did = vc_shared::did::did_from_key(&k.verifying_key());
    (k, did)
}
