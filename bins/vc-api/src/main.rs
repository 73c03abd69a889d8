//! `vc-api`: the REST ingress.

/// mimalloc instead of the system allocator: the services allocate many small, short-lived values
/// (decoded records, frames) across threads, where glibc's malloc spent a quarter of the worker's CPU
/// (see `docs/decisions/0008-allocator.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Duration;

use vc_shared::config::{Service, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let (settings, env) = match Settings::load_for_main(Service::Api, "vc-api") {
        Ok(v) => v,
        Err(code) => return code,
    };
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_api=info,vc_shared=info,tower_http=warn",
    );
    let sealer = vc_shared::crypto::Sealer::new(settings.secret().expect("validated"));
    let nats = match vc_shared::bus::connect(&settings.nats_url, "vc-api").await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let store = match vc_shared::store::Store::connect(&settings.redis_url).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let tail = match vc_shared::store::Store::connect(&settings.redis_url).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let listener = match tokio::net::TcpListener::bind(&settings.api_addr).await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let deps = vc_api::Deps {
        nats,
        store,
        tail,
        sealer,
        admin_token: settings.admin_token.clone().expect("validated"),
        command_wait: Duration::from_millis(settings.command_wait_ms),
        litellm: settings.litellm(),
        stream_replicas: settings.nats_stream_replicas,
        drain_delay: vc_api::DEFAULT_DRAIN_DELAY,
    };
    match vc_api::run(listener, deps, vc_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    tracing::error!(error = %e, "vc-api failed.");
    eprintln!("vc-api: {e}");
    ExitCode::from(1)
}
