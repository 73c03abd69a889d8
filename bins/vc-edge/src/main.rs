//! `vc-edge`: configuration → telemetry → connect → bind → [`vc_edge::run`] until SIGTERM/SIGINT.

fn main() -> std::process::ExitCode {
    vc_edge::cli::main()
}
