//! `vc-worker`: consumes commands, applies them to Redis, syncs LiteLLM, pushes configs.

fn main() -> std::process::ExitCode {
    vc_worker::cli::main()
}
