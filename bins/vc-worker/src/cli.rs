//! The program behind the `vc-worker` binary.
//!
//! ```text
//! vc-worker [--config FILE]                  run the worker
//! vc-worker reseal [--config FILE]           rewrite every sealed value under VC_SECRET_KEY (workers stopped)
//! vc-worker keys edge|api [--config FILE]    print VC_EDGE_SECRET_KEY / VC_API_SECRET_KEY, derived from VC_SECRET_KEY
//! vc-worker keys edge|api --previous         the same keys of VC_SECRET_KEY_PREVIOUS, comma-separated
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use vc_shared::cli::{EX_OSERR, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE};
use vc_shared::config::{Service, Settings};
use vc_shared::crypto::{Purpose, SecretKey};

const ABOUT: &str = "vc-worker: applies the commands of NATS JetStream to Redis in order, keeps LiteLLM in \
step (deployments, realm keys and teams, key rotation, spend), and publishes pushes and events. Run \
several: one holds the command lane at a time, all share the LiteLLM work.";

const USAGE: &str = "usage: vc-worker [--config FILE]
       vc-worker reseal [--config FILE]
       vc-worker keys edge|api [--previous] [--config FILE]";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Task {
    Run,
    Reseal,
    Keys { purpose: Purpose, previous: bool },
}

/// Splits the subcommand off the command line; what remains is for [`Settings`] (`--config FILE`).
fn parse(mut args: Vec<String>) -> Result<(Task, Vec<String>), String> {
    let task = match args.first().map(String::as_str) {
        Some("reseal") => {
            args.remove(0);
            Task::Reseal
        }
        Some("keys") => {
            args.remove(0);
            let purpose = match args.first().map(String::as_str) {
                Some("edge") => Purpose::AgentConfigKey,
                Some("api") => Purpose::Command,
                _ => return Err(USAGE.into()),
            };
            args.remove(0);
            let previous = args.iter().any(|a| a == "--previous");
            args.retain(|a| a != "--previous");
            Task::Keys { purpose, previous }
        }
        _ => Task::Run,
    };
    Ok((task, args))
}

/// The `vc-worker` program: settings from `--config FILE` and the environment (validated once, every
/// error reported, exit code 64), then [`crate::run`] until SIGTERM or Ctrl-C, or one of the
/// maintenance tasks. `main` is only this call; the test harness builds the same entry point as a
/// binary to kill -9 real worker processes.
#[tokio::main]
pub async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(text) = vc_shared::cli::info_request(
        &argv,
        || vc_shared::cli::help_text(Service::Worker, "vc-worker", ABOUT, USAGE),
        "vc-worker",
    ) {
        return vc_shared::cli::print_info(&text);
    }
    let (task, args) = match parse(argv) {
        Ok(v) => v,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let (settings, env) =
        match Settings::load_for_main_with_args(Service::Worker, "vc-worker", &args) {
            Ok(v) => v,
            Err(code) => return code,
        };
    if let Task::Keys { purpose, previous } = task {
        // No telemetry: standard output carries the key alone, for `VAR=$(vc-worker keys edge)`.
        return print_keys(&settings, purpose, previous);
    }
    vc_shared::telemetry::init(
        settings.log_format,
        env.get("RUST_LOG").map(String::as_str),
        "vc_worker=info,vc_shared=info",
    );
    let sealer = settings.sealer(Service::Worker).expect("validated");
    let store = match vc_shared::store::Store::connect(&settings.redis_url).await {
        Ok(s) => s,
        Err(e) => return fail_with(e, EX_UNAVAILABLE),
    };
    if task == Task::Reseal {
        return run_reseal(&store, &sealer).await;
    }
    let nats = match vc_shared::bus::connect(&settings.nats_url, "vc-worker").await {
        Ok(c) => c,
        Err(e) => return fail_with(e, EX_UNAVAILABLE),
    };
    let metrics = match &settings.worker_metrics_addr {
        Some(a) => match tokio::net::TcpListener::bind(a).await {
            Ok(l) => Some(l),
            Err(e) => return fail_with(e, EX_OSERR),
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
        key_rotation_grace: Duration::from_secs(settings.key_rotation_grace_secs),
        budget: crate::BudgetSettings {
            spend_every: Duration::from_secs(settings.spend_interval_secs),
            // Validated already.
            thresholds: settings.thresholds().unwrap_or_default(),
            webhooks: settings.webhooks().unwrap_or_default(),
        },
    };
    match crate::run(metrics, deps, vc_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `vc-worker keys`: the purpose key of the current master key (or of each previous one) on stdout.
fn print_keys(settings: &Settings, purpose: Purpose, previous: bool) -> ExitCode {
    let masters = if previous {
        SecretKey::list_from_base64(settings.secret_key_previous.as_deref().unwrap_or(""))
    } else {
        SecretKey::from_base64(settings.secret_key.as_deref().unwrap_or("")).map(|k| vec![k])
    };
    let Ok(masters) = masters else {
        // Validated already; unreachable in practice.
        return ExitCode::from(EX_USAGE);
    };
    let line = masters
        .iter()
        .map(|k| k.purpose_key(purpose).to_text())
        .collect::<Vec<_>>()
        .join(",");
    match writeln!(std::io::stdout(), "{line}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `vc-worker reseal`: [`crate::reseal::reseal`], then its counts on stdout.
async fn run_reseal(
    store: &vc_shared::store::Store,
    sealer: &vc_shared::crypto::Sealer,
) -> ExitCode {
    let report = match crate::reseal::reseal(store, sealer, crate::reseal::ACQUIRE_WAIT).await {
        Ok(r) => r,
        Err(crate::reseal::ResealError::LaneBusy(w)) => {
            eprintln!(
                "vc-worker reseal: {}",
                crate::reseal::ResealError::LaneBusy(w)
            );
            return ExitCode::from(EX_TEMPFAIL);
        }
        Err(crate::reseal::ResealError::Store(e)) => {
            eprintln!("vc-worker reseal: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
        Err(e) => return fail(e),
    };
    let mut out = format!("vc-worker reseal: current key id {}\n", sealer.key_id());
    for (kind, c) in &report.counts {
        out.push_str(&format!(
            "  {:<22} {:>7} sealed {:>7} rewritten {:>5} failed\n",
            kind.name(),
            c.sealed,
            c.rewritten,
            c.failed
        ));
    }
    let t = report.total();
    out.push_str(&format!(
        "  {:<22} {:>7} sealed {:>7} rewritten {:>5} failed\n",
        "total", t.sealed, t.rewritten, t.failed
    ));
    let _ = write!(std::io::stdout(), "{out}");
    if report.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for (key, e) in &report.failures {
        eprintln!("vc-worker reseal: {key}: {e}");
    }
    eprintln!(
        "vc-worker reseal: {} values could not be opened and were left as they are; the key canary keeps its key until they are rewritten (give the key that sealed them as VC_SECRET_KEY_PREVIOUS and run again)",
        report.failures.len()
    );
    ExitCode::FAILURE
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    fail_with(e, 1)
}

/// Reports `e` and answers exit code `code` (see `vc_shared::cli` for the policy).
fn fail_with(e: impl std::fmt::Display, code: u8) -> ExitCode {
    tracing::error!(error = %e, "vc-worker failed.");
    eprintln!("vc-worker: {e}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subcommands_are_split_off() {
        assert_eq!(parse(args(&[])).unwrap(), (Task::Run, args(&[])));
        assert_eq!(
            parse(args(&["--config", "w.toml"])).unwrap(),
            (Task::Run, args(&["--config", "w.toml"]))
        );
        assert_eq!(
            parse(args(&["reseal", "--config=w.toml"])).unwrap(),
            (Task::Reseal, args(&["--config=w.toml"]))
        );
        assert_eq!(
            parse(args(&["keys", "edge"])).unwrap(),
            (
                Task::Keys {
                    purpose: Purpose::AgentConfigKey,
                    previous: false
                },
                args(&[])
            )
        );
        assert_eq!(
            parse(args(&["keys", "api", "--previous"])).unwrap(),
            (
                Task::Keys {
                    purpose: Purpose::Command,
                    previous: true
                },
                args(&[])
            )
        );
        assert!(parse(args(&["keys"])).is_err());
        assert!(parse(args(&["keys", "model"])).is_err());
        // `--help` and `--version` are answered before the subcommand is read.
        let help = vc_shared::cli::info_request(
            &args(&["--help"]),
            || vc_shared::cli::help_text(Service::Worker, "vc-worker", ABOUT, USAGE),
            "vc-worker",
        )
        .unwrap();
        assert!(help.contains("vc-worker reseal") && help.contains("VC_SECRET_KEY"));
    }
}
