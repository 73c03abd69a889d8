//! The `vc-api` program, built inside the test package so that tests can run real API processes built
//! from the current sources (its command line, exit codes): it is exactly `vc-api`'s `main`.

fn main() -> std::process::ExitCode {
    vc_api::cli::main()
}
