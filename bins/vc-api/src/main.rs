//! `vc-api`: the REST ingress.

/// mimalloc instead of the system allocator: the services allocate many small, short-lived values
/// (decoded records, frames) across threads, where glibc's malloc spent a quarter of the worker's CPU
/// (see `docs/decisions/0008-allocator.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vc_api::cli::main()
}
