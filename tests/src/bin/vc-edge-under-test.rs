//! The `vc-edge` program, built inside the test package so that fault tests can run (and kill -9) real
//! edge processes built from the current sources: it is exactly `vc-edge`'s `main`.

fn main() -> std::process::ExitCode {
    vc_edge::cli::main()
}
