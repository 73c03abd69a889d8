//! The program behind the `vc-edge` binary: configuration → telemetry → connect → bind →
//! [`crate::run`] until SIGTERM/SIGINT.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use vc_shared::config::{Service, Settings};

/// `EX_USAGE`: bad command line or configuration.
const EX_USAGE: u8 = 64;
/// `EX_UNAVAILABLE`: a dependency (NATS, Redis) could not be reached.
const EX_UNAVAILABLE: u8 = 69;
/// `EX_OSERR`: the listen address could not be bound.
const EX_OSERR: u8 = 71;

fn config_path(args: &[String]) -> Result<Option<PathBuf>, String> {
    match args {
        [] => Ok(None),
        [flag, file] if flag == "--config" => Ok(Some(PathBuf::from(file))),
        [arg] if arg.starts_with("--config=") => Ok(Some(PathBuf::from(&arg["--config=".len()..]))),
        _ => Err("usage: vc-edge [--config FILE]".to_string()),
    }
}

/// The `vc-edge` program: settings from `--config FILE` and the environment (validated once, every error
/// reported), then [`crate::run`] until SIGTERM or Ctrl-C. `main` is only this call; the test harness
/// builds the same entry point as a binary to kill -9 real edge processes.
#[tokio::main]
pub async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = config_path(&args)
        .map_err(|e| vec![e])
        .and_then(|file| Settings::load_validated(file.as_deref(), &env, Service::Edge));
    let settings = match settings {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("vc-edge: {e}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_edge=info",
    );
    let hostname = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    let deps = match crate::Deps::connect(&settings, hostname.as_deref()).await {
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
