//! Shared helpers of the edge scenarios (`edge_*.rs`): real NATS and Redis, edges in-process, the
//! worker simulated by writing agent records and routing states to Redis and publishing pushes on
//! NATS, and a raw WebSocket client for protocol-level checks.
//!
//! Scenarios describe what an agent should receive as a [`ConfigState`]; [`Env::route_of`] turns it
//! into what the worker stores (the agent's route, and for realm routing the realm's routing state)
//! so that the edge's derivation gives that state back.
//!
//! Keys are sealed as the worker seals them (bound to the realm, or for a manual config to the agent's
//! DID, which [`Env::route_of`] knows), and edges get only the `agent-config-key` key, as
//! `VC_EDGE_SECRET_KEY` gives it.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vc_agent::{AgentClient, AgentHandle, AgentOptions};
use vc_edge::{Deps, EdgeConfig, Metrics, Probe};
use vc_shared::crypto::{Purpose, Sealer, SecretKey};
use vc_shared::domain::{ConfigSource, LlmConfig, Mode, Provider, StoredAgent};
use vc_shared::routing::{AgentRoute, RealmRouting, RoutedModel};
use vc_shared::store::{keys, Store};
use vc_shared::wire::{ConfigState, Push, SealedLlmConfig};
use vc_shared::ws::{AuthResponse, ClientMsg, ServerMsg};
use vc_tests::servers::{NatsServer, RedisServer};

/// What [`Env::state`] binds a manual config's key to until [`Env::route_of`] gives it to an agent.
pub const MANUAL_OWNER: &str = "manual-config-not-given-yet";

/// NATS, Redis, the secret key, and clients to play the worker.
pub struct Env {
    pub nats: NatsServer,
    pub redis: RedisServer,
    /// The worker's sealer (every purpose).
    pub sealer: Sealer,
    pub store: Store,
    /// The "worker's" NATS client.
    pub bus: async_nats::Client,
    secret: SecretKey,
}

impl Env {
    pub async fn start() -> Env {
        vc_tests::wait::trace_init();
        let nats = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .expect("nats");
        let redis = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis");
        let secret = SecretKey::generate();
        let store = Store::connect(&redis.url()).await.expect("store");
        let bus = vc_shared::bus::connect(&nats.url(), "test-worker-sim")
            .await
            .expect("nats client");
        vc_shared::bus::wait_connected(&bus, Duration::from_secs(10))
            .await
            .expect("nats connected");
        Env {
            nats,
            redis,
            sealer: Sealer::new(secret.clone()),
            store,
            bus,
            secret,
        }
    }

    /// A config state: realm routing through `realm`, or a manual config when `realm` is `None`. A
    /// manual config's key is sealed for [`MANUAL_OWNER`] here, and for the agent's DID once the state
    /// is given to an agent ([`Env::route_of`]).
    pub fn state(&self, version: u64, realm: Option<&str>, model: &str) -> ConfigState {
        let cfg = LlmConfig {
            provider: "openai-compatible".into(),
            model: model.into(),
            base_url: Some("http://litellm.test:4000".into()),
            api_key: Some(format!("sk-test-{version}")),
            allowed_models: realm.map(|_| vec![model.to_string()]),
            system_prompt: None,
            max_tokens: None,
        };
        let owner = realm.unwrap_or(MANUAL_OWNER);
        ConfigState {
            config: Some(SealedLlmConfig::seal(&self.sealer, owner, &cfg).expect("seal")),
            version,
            mode: Some(if realm.is_some() {
                Mode::Realm
            } else {
                Mode::Manual
            }),
            realm_id: realm.map(str::to_string),
            key_owner: realm.map(str::to_string),
        }
    }

    /// The route of agent `did` (and, for realm routing, the realm's routing state) from which the
    /// edge derives `state`. A realm's state lists the config's allowed models, the chosen one among
    /// them. A manual config's key is sealed again for the agent, as the worker seals it.
    pub fn route_of(&self, did: &str, state: &ConfigState) -> (AgentRoute, Option<RealmRouting>) {
        let route = |source| AgentRoute {
            version: state.version,
            source,
        };
        let Some(c) = state.config.as_ref() else {
            return (route(None), None);
        };
        match (state.mode, state.realm_id.as_deref()) {
            (Some(Mode::Realm), Some(realm)) => {
                let routing = RealmRouting {
                    realm_id: realm.to_string(),
                    version: state.version,
                    deleted: false,
                    base_url: c.base_url.clone(),
                    key_sealed: c.api_key_sealed.clone(),
                    models: c
                        .allowed_models
                        .clone()
                        .unwrap_or_else(|| vec![c.model.clone()])
                        .into_iter()
                        .map(|m| RoutedModel {
                            id: m.clone(),
                            litellm_model_name: m,
                        })
                        .collect(),
                };
                let source = ConfigSource::Realm {
                    realm_id: realm.to_string(),
                    model_id: c.model.clone(),
                };
                (route(Some(source)), Some(routing))
            }
            _ => {
                let api_key_sealed = c.api_key_sealed.as_deref().map(|k| {
                    let key = self
                        .sealer
                        .open(Purpose::AgentConfigKey, MANUAL_OWNER, k)
                        .expect("a key sealed by Env::state");
                    self.sealer
                        .seal(Purpose::AgentConfigKey, did, &key)
                        .expect("seal")
                });
                let source = ConfigSource::Manual {
                    provider: Provider::parse(&c.provider).expect("a known provider"),
                    model: c.model.clone(),
                    api_key_sealed,
                    base_url: c.base_url.clone(),
                    system_prompt: c.system_prompt.clone(),
                    max_tokens: c.max_tokens,
                };
                (route(Some(source)), None)
            }
        }
    }

    /// The push the worker sends when an agent's own route changes to give it `state`.
    pub fn agent_push(&self, did: &str, state: &ConfigState) -> Push {
        let (route, realm) = self.route_of(did, state);
        Push::AgentRoute {
            did: did.to_string(),
            route,
            realm: realm.map(Box::new),
            model: None,
        }
    }

    fn agent_record(&self, did: &str, name: String, state: &ConfigState) -> StoredAgent {
        let (route, _) = self.route_of(did, state);
        StoredAgent {
            did: did.to_string(),
            name,
            created_at: vc_shared::domain::now_rfc3339(),
            source: route.source,
            version: route.version,
        }
    }

    /// Writes (or overwrites) an agent record, and its realm's routing state, as the worker would.
    pub async fn put_agent(&self, did: &str, state: &ConfigState) {
        self.put_agents(&[(did.to_string(), state.clone())]).await;
    }

    /// Many agent records (and their realms' routing states) at once (pipelined).
    pub async fn put_agents(&self, agents: &[(String, ConfigState)]) {
        let mut c = self.store.conn();
        for chunk in agents.chunks(200) {
            let mut p = redis::pipe();
            for (did, state) in chunk {
                let rec = self.agent_record(did, format!("agent {}", &did[did.len() - 6..]), state);
                p.cmd("SET")
                    .arg(keys::agent(did))
                    .arg(serde_json::to_string(&rec).unwrap())
                    .ignore();
                p.cmd("SADD").arg(keys::AGENTS).arg(did).ignore();
                if let (_, Some(routing)) = self.route_of(did, state) {
                    p.cmd("SET")
                        .arg(keys::routing_realm(&routing.realm_id))
                        .arg(serde_json::to_string(&routing).unwrap())
                        .ignore();
                }
            }
            let _: () = p.query_async(&mut c).await.expect("pipeline");
        }
    }

    pub async fn del_agent(&self, did: &str) {
        let mut c = self.store.conn();
        let _: () = redis::cmd("DEL")
            .arg(keys::agent(did))
            .query_async(&mut c)
            .await
            .expect("DEL");
    }

    pub async fn publish(&self, subject: String, push: &Push) {
        self.bus
            .publish(subject, serde_json::to_vec(push).unwrap().into())
            .await
            .expect("publish");
        self.bus.flush().await.expect("flush");
    }

    /// Worker-style per-agent update: Redis first, then the push.
    pub async fn update_agent(&self, did: &str, state: ConfigState) {
        self.put_agent(did, &state).await;
        self.publish(
            vc_shared::subjects::push_agent(did),
            &self.agent_push(did, &state),
        )
        .await;
    }

    /// Worker-style realm update: the realm's routing state (from `state`, a realm-routed state of
    /// `realm`), written once, then one push; the agents' records are not touched. `dids` are the
    /// agents expected to follow it (they are routed through the realm already).
    pub async fn update_realm(&self, realm: &str, dids: &[String], state: ConfigState) {
        assert!(!dids.is_empty());
        let (_, routing) = self.route_of(&dids[0], &state);
        let routing = routing.expect("a realm-routed state");
        assert_eq!(routing.realm_id, realm);
        let mut c = self.store.conn();
        let _: () = redis::cmd("SET")
            .arg(keys::routing_realm(realm))
            .arg(serde_json::to_string(&routing).unwrap())
            .query_async(&mut c)
            .await
            .expect("SET routing");
        self.publish(
            vc_shared::subjects::push_realm(realm),
            &Push::RealmRouting { routing },
        )
        .await;
    }

    /// Deletes an agent as the worker does: record gone, then `AgentDeleted`.
    pub async fn delete_agent(&self, did: &str) {
        self.del_agent(did).await;
        self.publish(
            vc_shared::subjects::push_agent(did),
            &Push::AgentDeleted {
                did: did.to_string(),
            },
        )
        .await;
    }

    pub async fn presence(&self, did: &str) -> std::collections::HashMap<String, String> {
        self.store
            .presence(did)
            .await
            .expect("presence")
            .into_iter()
            .collect()
    }

    /// An edge's config with timings short enough for tests.
    pub fn edge_config(&self, id: &str) -> EdgeConfig {
        let mut c = EdgeConfig::new(id);
        c.drain_timeout = Duration::from_secs(5);
        c.nats_watch_interval = Duration::from_millis(200);
        c
    }

    /// Starts an edge (its own NATS client and Redis connection) on 127.0.0.1:0.
    pub async fn edge(&self, config: EdgeConfig) -> Edge {
        spawn_edge(&self.nats.url(), &self.redis.url(), &self.secret, config).await
    }
}

/// Starts an edge over the given servers (its own NATS client and Redis connection) on 127.0.0.1:0,
/// with the edge's key of master key `secret` (the `agent-config-key` key only),
/// and waits until it answers `/healthz` (over TLS when `config.tls` is set; the certificate is not
/// checked here, the TLS scenarios check it).
pub async fn spawn_edge(
    nats_url: &str,
    redis_url: &str,
    secret: &SecretKey,
    config: EdgeConfig,
) -> Edge {
    let sealer = vc_tests::stack::edge_sealer(secret, &[]);
    spawn_edge_sealed(nats_url, redis_url, sealer, config).await
}

/// [`spawn_edge`] with the edge's sealer given (e.g. with previous keys during a rotation).
pub async fn spawn_edge_sealed(
    nats_url: &str,
    redis_url: &str,
    sealer: Sealer,
    config: EdgeConfig,
) -> Edge {
    let nats = vc_shared::bus::connect(nats_url, &format!("vc-edge-{}", config.edge_id))
        .await
        .expect("edge nats");
    vc_shared::bus::wait_connected(&nats, Duration::from_secs(10))
        .await
        .expect("edge nats connected");
    let store = Store::connect(redis_url).await.expect("edge store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::new();
    let probe = Probe::default();
    let id = config.edge_id.clone();
    let tls = config.tls.is_some();
    let deps = Deps {
        nats,
        store,
        sealer,
        config,
        metrics: metrics.clone(),
        probe: probe.clone(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        vc_edge::run(listener, deps, async move {
            let _ = rx.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let edge = Edge {
        id,
        addr,
        tls,
        metrics,
        probe,
        stop: Some(tx),
        task: Some(task),
    };
    let url = edge.http("/healthz");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    vc_tests::wait::eventually("edge answers /healthz", vc_tests::wait::patience(), || {
        let (url, client) = (url.clone(), client.clone());
        async move {
            client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    })
    .await;
    edge
}

/// An edge running in-process.
pub struct Edge {
    pub id: String,
    pub addr: SocketAddr,
    /// Serves TLS (`wss://`, `https://`).
    pub tls: bool,
    pub metrics: Metrics,
    pub probe: Probe,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl Edge {
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Like SIGTERM: returns once `run` has returned.
    pub async fn shutdown(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("edge stops in time")
            .expect("join")
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits for `run` to return (after [`Edge::begin_shutdown`]).
    pub async fn finished(&mut self) -> Result<(), String> {
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("edge stops in time")
            .expect("join")
    }

    /// Like kill -9: the edge's task is aborted; its connections drop without a close frame.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// The agent subjects this edge subscribes now.
    pub fn agent_subjects(&self) -> Vec<String> {
        self.probe
            .subjects()
            .into_iter()
            .filter(|s| s.starts_with("vc.push.agent."))
            .collect()
    }

    /// The realm subjects this edge subscribes now.
    pub fn realm_subjects(&self) -> Vec<String> {
        self.probe
            .subjects()
            .into_iter()
            .filter(|s| s.starts_with("vc.push.realm."))
            .collect()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` fresh keys with their DIDs.
pub fn keys(n: usize) -> Vec<(SigningKey, String)> {
    (0..n)
        .map(|_| {
            let k = vc_shared::did::generate_key();
            let did = vc_shared::did::did_from_key(&k.verifying_key());
            (k, did)
        })
        .collect()
}

/// Agent options for tests: quick reconnects.
pub fn agent_opts(edges: &[&Edge]) -> AgentOptions {
    let mut o = AgentOptions::new(edges.iter().map(|e| e.ws_url()).collect());
    o.backoff_initial = Duration::from_millis(50);
    o.backoff_max = Duration::from_millis(500);
    o.connect_timeout = Duration::from_secs(10);
    o
}

pub fn spawn_agent(key: &SigningKey, opts: AgentOptions) -> AgentHandle {
    AgentClient::new(key.clone(), opts).spawn()
}

// ----- raw protocol client ---------------------------------------------------------------------------

pub type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn raw_connect(edge: &Edge) -> Raw {
    let (ws, _) = tokio_tungstenite::connect_async(edge.ws_url())
        .await
        .expect("connect");
    ws
}

/// The next text frame, decoded (pings and pongs skipped). Panics on close or timeout.
pub async fn recv(ws: &mut Raw) -> ServerMsg {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        match m {
            Message::Text(t) => return ServerMsg::decode(&t).expect("decodable server frame").msg,
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// The next text frame, raw JSON.
pub async fn recv_json(ws: &mut Raw) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// Reads until the edge closes; returns the close code (and the text frames seen before it).
pub async fn expect_close(ws: &mut Raw, within: Duration) -> (Option<u16>, Vec<ServerMsg>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no close within {within:?}; frames: {seen:?}"),
            Ok(None) => return (None, seen),
            Ok(Some(Err(_))) => return (None, seen),
            Ok(Some(Ok(Message::Close(f)))) => return (f.map(|f| u16::from(f.code)), seen),
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(e) = ServerMsg::decode(&t) {
                    seen.push(e.msg)
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

pub async fn send(ws: &mut Raw, text: String) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Reads the challenge, signs it with `key` (for `edge_id`, default the challenge's) and sends the
/// response for `did`. Returns the challenge.
pub async fn answer_challenge(
    ws: &mut Raw,
    key: &SigningKey,
    did: &str,
    edge_id: Option<&str>,
) -> vc_shared::ws::AuthChallenge {
    let ServerMsg::AuthChallenge(c) = recv(ws).await else {
        panic!("expected auth_challenge")
    };
    let sig = vc_shared::did::sign_auth(key, &c.nonce, edge_id.unwrap_or(&c.edge_id));
    send(
        ws,
        ClientMsg::AuthResponse(AuthResponse {
            did: did.to_string(),
            signature: sig,
        })
        .encode(None),
    )
    .await;
    c
}
