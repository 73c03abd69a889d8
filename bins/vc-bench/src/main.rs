//! `vc-bench`: the control plane's benchmarks (see `BENCHMARKS.md`). Not tests: nothing is asserted.
//!
//! The same binary also runs as a `vc-api`, `vc-edge` or `vc-worker` process when `VC_BENCH_ROLE` says so, so that
//! benchmarks can run real edge and worker processes built from the current sources.

/// mimalloc instead of the system allocator: the services allocate many small, short-lived values
/// (decoded records, frames) across threads, where glibc's malloc spent a quarter of the worker's CPU
/// (see `docs/decisions/0008-allocator.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod reads;
mod report;
mod seed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vc-bench",
    about = "Benchmarks of the control plane: progress on stderr, a JSON summary under bench/results/.",
    long_about = "Benchmarks of the control plane, over real nats-server and redis-server processes on \
                  loopback (installed like the tests'), the LiteLLM emulator, and real edge and worker \
                  processes. Progress lines go to stderr, a Markdown table to stdout, and a JSON summary \
                  to bench/results/. Nothing is asserted: these are measurements, not tests."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The command path: lane time of realm-level changes at 10k-50k routed agents, REST grant to the
    /// last of N connected agents, burst throughput with 2 workers, REST writes at 64 clients, and
    /// failover after SIGKILL of the lane holder.
    Commands(commands::Args),
    /// The read path: `GET /api/models` with 100 and 1,000 models, `GET /api/agents?limit=100` and
    /// `GET /api/agents/{did}` with 50,000 agents, at 32 connections, against an API process; and how
    /// long an API takes to load 50,000 agents.
    Reads(reads::Args),
}

fn main() -> ExitCode {
    match std::env::var("VC_BENCH_ROLE").as_deref() {
        Ok("edge") => return vc_edge::cli::main(),
        Ok("worker") => return vc_worker::cli::main(),
        Ok("api") => return vc_api::cli::main(),
        _ => {}
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vc-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Commands(args) => rt.block_on(commands::run(args)),
        Command::Reads(args) => rt.block_on(reads::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
