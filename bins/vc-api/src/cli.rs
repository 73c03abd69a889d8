//! The program behind the `vc-api` binary: configuration → telemetry → connect → bind → [`crate::run`]
//! until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use vc_shared::cli::{EX_OSERR, EX_UNAVAILABLE};
use vc_shared::config::{Service, Settings};

const ABOUT: &str = "vc-api: the REST API and dashboard of the control plane. It validates requests and \
publishes commands to NATS JetStream (it never calls LiteLLM), and serves reads from its read model.";
const USAGE: &str = "usage: vc-api [--config FILE]";

/// The `vc-api` program: settings from `--config FILE` and the environment (validated once, every error
/// reported), then [`crate::run`] until SIGTERM or Ctrl-C. `main` is only this call; benchmarks run the
/// same entry point as a process of their own.
#[tokio::main]
pub async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(text) = vc_shared::cli::info_request(
        &args,
        || vc_shared::cli::help_text(Service::Api, "vc-api", ABOUT, USAGE),
        "vc-api",
    ) {
        return vc_shared::cli::print_info(&text);
    }
    let (settings, env) = match Settings::load_for_main(Service::Api, "vc-api") {
        Ok(v) => v,
        Err(code) => return code,
    };
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_api=info,vc_shared=info,tower_http=warn",
    );
    // The API's key seals secrets of commands only (`VC_API_SECRET_KEY`): it opens nothing.
    let sealer = settings.sealer(Service::Api).expect("validated");
    let connect = async {
        let nats = vc_shared::bus::connect(&settings.nats_url, "vc-api")
            .await
            .map_err(|e| e.to_string())?;
        let store = vc_shared::store::Store::connect(&settings.redis_url)
            .await
            .map_err(|e| e.to_string())?;
        // The read model's wait on the change log holds a connection of its own.
        let tail = vc_shared::store::Store::connect(&settings.redis_url)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((nats, store, tail))
    };
    let (nats, store, tail) = match connect.await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start.");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&settings.api_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %settings.api_addr, "Cannot bind.");
            return ExitCode::from(EX_OSERR);
        }
    };
    let deps = crate::Deps {
        nats,
        store,
        tail,
        sealer,
        admin_token: settings.admin_token.clone().expect("validated"),
        command_wait: Duration::from_millis(settings.command_wait_ms),
        litellm: settings.litellm_endpoints(),
        stream_replicas: settings.nats_stream_replicas,
        drain_delay: crate::DEFAULT_DRAIN_DELAY,
        limits: crate::limits::TokenLimits::new(
            settings.api_token_rate,
            settings.api_token_burst,
            settings.api_token_concurrency,
        ),
    };
    match crate::run(listener, deps, vc_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "API failed.");
            ExitCode::FAILURE
        }
    }
}
