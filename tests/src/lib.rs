//! # vc-tests: the integration test harness
//!
//! - [`servers`]: real `nats-server` / `redis-server` processes (single, cluster) on free ports, killed on drop.
//! - [`mix`]: the deterministic mix of commands of the soak and the benchmarks, and publishing it.
//! - [`wait`]: `eventually` / `assert_eventually!` with timeouts.
//! - [`stack`]: the control plane in-process (library `run` of each service) over those servers, with the
//!   LiteLLM emulator when asked.
//!
//! Scenarios live in `tests/tests/*.rs`; the contract tier (`tests/tests/contract.rs`) runs against the
//! real LiteLLM proxy when `VC_CONTRACT_LITELLM_URL` is set.

pub mod mix;
pub mod servers;
pub mod stack;
pub mod wait;
