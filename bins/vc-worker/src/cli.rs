//! The program behind the `vc-worker` binary.

use std::process::ExitCode;
use std::time::Duration;

use vc_shared::config::{Service, Settings};

/// The `vc-worker` program: settings from `--config FILE` and the environment (validated once, every
/// error reported, exit code 64), then [`crate::run`] until SIGTERM or Ctrl-C. `main` is only this call;
/// the test harness builds the same entry point as a binary to kill -9 real worker processes.
#[tokio::main]
pub async fn main() -> ExitCode {
    let (settings, env) = match Settings::load_for_main(Service::Worker, "vc-worker") {
        Ok(v) => v,
        Err(code) => return code,
    };
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_worker=info,vc_shared=info",
    );
    let sealer = settings.sealer(Service::Worker).expect("validated");
    let nats = match vc_shared::bus::connect(&settings.nats_url, "vc-worker").await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let store = match vc_shared::store::Store::connect(&settings.redis_url).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let metrics = match &settings.worker_metrics_addr {
        Some(a) => match tokio::net::TcpListener::bind(a).await {
            Ok(l) => Some(l),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let deps = crate::Deps {
        nats,
        store,
        sealer,
        litellm: settings.litellm(),
        stream_replicas: settings.nats_stream_replicas,
        reconcile_every: Duration::from_secs(settings.reconcile_interval_secs),
    };
    match crate::run(metrics, deps, vc_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    tracing::error!(error = %e, "vc-worker failed.");
    eprintln!("vc-worker: {e}");
    ExitCode::from(1)
}
