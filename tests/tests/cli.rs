//! The three services as command-line programs (issue "A newcomer's first hour", item 4): `--help` lists
//! every option and environment variable with its default, `--version` answers, and one exit-code policy:
//! 0 for `--help`/`--version`, 64 for a bad command line or configuration (every problem printed), 69 when
//! NATS or Redis cannot be reached at start.

use std::process::{Command, Output};

const API: &str = env!("CARGO_BIN_EXE_vc-api-under-test");
const WORKER: &str = env!("CARGO_BIN_EXE_vc-worker-under-test");
const EDGE: &str = env!("CARGO_BIN_EXE_vc-edge-under-test");

/// Runs `bin` with `args` and only the environment `env` (nothing inherited).
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run the program")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_and_version_answer_with_every_variable() {
    for (bin, name, must) in [
        (
            API,
            "vc-api",
            &[
                "VC_ADMIN_TOKEN",
                "VC_API_ADDR",
                "(default: 127.0.0.1:8080)",
                "VC_API_TOKEN_RATE",
            ][..],
        ),
        (
            WORKER,
            "vc-worker",
            &[
                "VC_SECRET_KEY",
                "LITELLM_MASTER_KEY",
                "VC_KEY_ROTATION_GRACE_SECS",
                "vc-worker reseal",
            ][..],
        ),
        (
            EDGE,
            "vc-edge",
            &["VC_EDGE_SECRET_KEY", "VC_EDGE_TLS_CERT", "(default: 10000)"][..],
        ),
    ] {
        for flag in ["--help", "-h"] {
            let o = run(bin, &[flag], &[]);
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(0), "{name} {flag}: {err}");
            for m in must {
                assert!(out.contains(m), "{name} {flag} lacks {m}:\n{out}");
            }
            assert!(
                out.contains("NATS_URL")
                    && out.contains("RUST_LOG")
                    && out.contains("--config FILE")
            );
            assert!(out.contains("Exit codes"), "{out}");
        }
        let o = run(bin, &["--version"], &[]);
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(out.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
    }
    // Each lists only what it reads: the edge never gets the master key, the API never the LiteLLM one.
    let (edge, _) = text(&run(EDGE, &["--help"], &[]));
    assert!(!edge.contains("VC_SECRET_KEY ") && !edge.contains("LITELLM_MASTER_KEY"));
    let (api, _) = text(&run(API, &["--help"], &[]));
    assert!(!api.contains("LITELLM_MASTER_KEY") && !api.contains("VC_EDGE_SECRET_KEY"));
}

#[test]
fn configuration_errors_are_64_and_unreachable_dependencies_69() {
    // Every problem at once, exit 64.
    let o = run(
        API,
        &[],
        &[
            ("VC_API_ADDR", "not an address"),
            ("VC_COMMAND_WAIT_MS", "soon"),
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(
        err.contains("VC_ADMIN_TOKEN") && err.contains("VC_COMMAND_WAIT_MS"),
        "{err}"
    );
    let o = run(WORKER, &["--bogus"], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o).1);
    let o = run(
        EDGE,
        &[],
        &[(
            "VC_SECRET_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("must not be given to vc-edge"), "{err}");
    // Valid settings, nothing listening at Redis: 69.
    let o = run(
        WORKER,
        &[],
        &[
            (
                "VC_SECRET_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("NATS_URL", "nats://127.0.0.1:1"),
        ],
    );
    assert_eq!(o.status.code(), Some(69), "{}", text(&o).1);
}
