//! The program behind the `vc-edge` binary: configuration → telemetry → connect → bind →
//! [`crate::run`] until SIGTERM/SIGINT.

use std::process::ExitCode;

use vc_shared::cli::{EX_OSERR, EX_UNAVAILABLE, EX_USAGE};
use vc_shared::config::{Service, Settings};

use crate::EdgeConfig;

const ABOUT: &str =
    "vc-edge: holds agents' WebSocket sessions (ws://, or wss:// with a certificate), \
authenticates them by their did:key, and delivers each one its llm_config from the realm and agent \
pushes on NATS. Run many side by side.";
const USAGE: &str = "usage: vc-edge [--config FILE]";

/// The `vc-edge` program: settings from `--config FILE` and the environment (validated once, every error
/// reported), then [`crate::run`] until SIGTERM or Ctrl-C. `main` is only this call; the test harness
/// builds the same entry point as a binary to kill -9 real edge processes.
#[tokio::main]
pub async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(text) = vc_shared::cli::info_request(
        &args,
        || vc_shared::cli::help_text(Service::Edge, "vc-edge", ABOUT, USAGE),
        "vc-edge",
    ) {
        return vc_shared::cli::print_info(&text);
    }
    let (settings, env) = match Settings::load_for_main(Service::Edge, "vc-edge") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let hostname = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    // The TLS files are read here, once the settings are valid; problems are reported the same way.
    let config = match EdgeConfig::from_settings(&settings, hostname.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("vc-edge: configuration error: {e}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_edge=info",
    );
    let deps = match crate::Deps::connect(&settings, config).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start.");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&settings.edge_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %settings.edge_addr, "Cannot bind.");
            return ExitCode::from(EX_OSERR);
        }
    };
    match crate::run(listener, deps, vc_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Edge failed.");
            ExitCode::FAILURE
        }
    }
}
