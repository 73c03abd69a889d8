//! `litellm-emu`: run the LiteLLM emulator by hand.
//!
//! ```text
//! litellm-emu --addr 127.0.0.1:4000 --master-key sk-1234 [--update-reload-delay-ms 3000]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use litellm_emu::{Emulator, EmulatorConfig, DEFAULT_SPEND_PER_REQUEST};

/// `EX_USAGE`: the address could not be bound.
const EXIT_USAGE: u8 = 64;

/// An in-memory emulator of the LiteLLM proxy admin API and virtual keys.
#[derive(Debug, Parser)]
#[command(name = "litellm-emu", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: SocketAddr,
    /// The proxy's master key.
    #[arg(long, env = "LITELLM_MASTER_KEY")]
    master_key: String,
    /// Delay before a `POST /model/update` reaches routing (the real proxy's reload period).
    #[arg(long, default_value_t = 0)]
    update_reload_delay_ms: u64,
    /// USD charged to a virtual key per successful chat completion with an unpriced deployment.
    #[arg(long, default_value_t = DEFAULT_SPEND_PER_REQUEST)]
    spend_per_request: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("{}=info", env!("CARGO_CRATE_NAME")).into()),
        )
        .init();
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("litellm-emu: cannot bind {}: {e}", args.addr);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let emu = Emulator::new(EmulatorConfig {
        master_key: args.master_key,
        update_reload_delay: Duration::from_millis(args.update_reload_delay_ms),
        spend_per_request: args.spend_per_request,
    });
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match litellm_emu::run(listener, emu, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Server failed.");
            ExitCode::FAILURE
        }
    }
}
