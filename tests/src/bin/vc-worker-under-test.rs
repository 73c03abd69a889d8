//! The `vc-worker` program, built inside the test package so that fault tests can run (and kill -9)
//! real worker processes built from the current sources: it is exactly `vc-worker`'s `main`.

fn main() -> std::process::ExitCode {
    vc_worker::cli::main()
}
