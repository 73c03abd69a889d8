//! `vc-agent`: the reference agent client's command line (`keygen`, `did`, `dids`, `run`, `swarm`).
//!
//! `run` prints each config it receives as one JSON line on stdout (`{config, version, mode,
//! realmId?}`); logs go to stderr (`RUST_LOG`, default `vc_agent=info`).
//!
//! `wss://` edges are verified against the system's root certificates, or with `--ca FILE` against
//! only the CA certificates of that PEM file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vc_agent::{keys, AgentClient, AgentOptions, AgentTls, EventKind, Exit, Swarm};

#[derive(Parser)]
#[command(
    name = "vc-agent",
    about = "Reference agent for the control plane's edge WebSocket protocol"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a new Ed25519 key file (mode 0600) and print its DID.
    Keygen {
        /// Key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the DID of a key file.
    Did {
        /// Key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the DIDs of a swarm's keys, one per line (to register them).
    Dids {
        #[command(flatten)]
        keys: SwarmKeys,
    },
    /// Connect and keep the config current; print each config received as one JSON line.
    Run {
        /// Edge URLs, comma-separated (ws://host:port/ws, or wss:// for TLS); tried in turn.
        #[arg(long, value_delimiter = ',', required = true)]
        edge: Vec<String>,
        /// Key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
        /// Longest reconnect delay, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        backoff_max_ms: u64,
    },
    /// Run many agents in one process; print each agent's last version as JSON lines at the end.
    Swarm {
        /// Edge URLs, comma-separated; agent i starts with edge i mod n.
        #[arg(long, value_delimiter = ',', required = true)]
        edge: Vec<String>,
        #[command(flatten)]
        keys: SwarmKeys,
        #[command(flatten)]
        tls: TlsArgs,
        /// Stop after this many seconds (default: at SIGINT/SIGTERM).
        #[arg(long)]
        duration_secs: Option<u64>,
        /// Print a summary line on stderr this often (milliseconds).
        #[arg(long, default_value_t = 5000)]
        report_ms: u64,
    },
}

#[derive(clap::Args)]
struct TlsArgs {
    /// PEM file of the CA certificate(s) that wss:// edges' certificates must chain to; only those
    /// are trusted. Default: the system's root certificates.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Built once, shared by every connection (and every agent of a swarm).
    fn load(&self) -> Result<Option<AgentTls>, vc_agent::AgentError> {
        self.ca.as_deref().map(AgentTls::from_ca_file).transpose()
    }
}

#[derive(clap::Args)]
struct SwarmKeys {
    /// Number of agents.
    #[arg(long)]
    count: usize,
    /// Directory of key files `agent-NNNNN.key` (missing ones are created).
    #[arg(long, conflicts_with = "seed", required_unless_present = "seed")]
    keys_dir: Option<PathBuf>,
    /// Derive the keys from this seed instead (tests and benchmarks only).
    #[arg(long)]
    seed: Option<String>,
}

impl SwarmKeys {
    fn load(&self) -> Result<Vec<ed25519_dalek::SigningKey>, vc_agent::AgentError> {
        match (&self.keys_dir, &self.seed) {
            (Some(dir), _) => keys::swarm_keys_in_dir(dir, self.count),
            (None, Some(seed)) => Ok((0..self.count as u64)
                .map(|i| keys::key_from_seed(seed, i))
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let rust_log = std::env::var("RUST_LOG").ok();
    vc_shared::telemetry::init(
        vc_shared::config::LogFormat::Text,
        rust_log.as_deref(),
        "vc_agent=info",
    );
    match run(cli.cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vc-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<ExitCode, vc_agent::AgentError> {
    match cmd {
        Cmd::Keygen { out, force } => {
            let k = keys::generate();
            keys::write_key_file(&out, &k, force)?;
            line(&keys::did_of(&k));
        }
        Cmd::Did { key } => line(&keys::did_of(&keys::read_key_file(&key)?)),
        Cmd::Dids { keys } => {
            for k in keys.load()? {
                line(&keys::did_of(&k));
            }
        }
        Cmd::Run {
            edge,
            key,
            tls,
            backoff_max_ms,
        } => {
            let mut opts = AgentOptions::new(edge);
            opts.tls = tls.load()?;
            opts.backoff_max = Duration::from_millis(backoff_max_ms);
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let client = AgentClient::new(keys::read_key_file(&key)?, opts).with_events(tx);
            tracing::info!(did = client.did(), "Starting.");
            let printer = tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    match ev.kind {
                        EventKind::Config(p) => {
                            line(&serde_json::to_string(&p).unwrap_or_default())
                        }
                        EventKind::Connected { edge, edge_id, .. } => {
                            tracing::info!(edge, edge_id, "Connected.")
                        }
                        EventKind::Disconnected { edge, code, reason } => {
                            tracing::info!(edge, ?code, reason, "Disconnected.")
                        }
                        EventKind::EdgeError { .. } => {}
                    }
                }
            });
            let exit = client.run(vc_shared::shutdown::signal()).await;
            let _ = printer.await;
            return Ok(match exit? {
                Exit::Shutdown => ExitCode::SUCCESS,
                Exit::Superseded => ExitCode::from(3),
            });
        }
        Cmd::Swarm {
            edge,
            keys,
            tls,
            duration_secs,
            report_ms,
        } => {
            let mut opts = AgentOptions::new(edge);
            opts.tls = tls.load()?;
            let keys = keys.load()?;
            let n = keys.len();
            opts.backoff_initial = Duration::from_millis(200);
            opts.backoff_max = Duration::from_secs(10);
            let swarm = Swarm::spawn(keys, &opts);
            let until = async {
                match duration_secs {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => vc_shared::shutdown::signal().await,
                }
            };
            tokio::pin!(until);
            let mut tick = tokio::time::interval(Duration::from_millis(report_ms.max(10)));
            loop {
                tokio::select! {
                    _ = &mut until => break,
                    _ = tick.tick() => {
                        let versions: Vec<Option<u64>> = swarm.agents().iter().map(|a| a.version()).collect();
                        let with = versions.iter().filter(|v| v.is_some()).count();
                        let max = versions.iter().flatten().max().copied();
                        let at_max = versions.iter().filter(|v| v.is_some() && **v == max).count();
                        tracing::info!(agents = n, connected = swarm.connected(), with_config = with, max_version = ?max, at_max, "Swarm.");
                    }
                }
            }
            for a in swarm.agents() {
                let s = a.status();
                let v = serde_json::json!({
                    "did": a.did,
                    "version": s.version(),
                    "edgeId": s.edge_id,
                    "configs": s.configs.len(),
                    "sessions": s.sessions,
                });
                line(&v.to_string());
            }
            swarm.stop().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
