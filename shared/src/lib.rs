//! # vc-shared: the cross-service contracts of the control plane
//!
//! ## Layout
//! - [`command`]: the command kinds, their bodies and validation, outcomes (the public NATS interface).
//! - [`domain`]: stored records and the contract's JSON views.
//! - [`store`]: the Redis keyspace, reads, and the atomic commit of a command's writes.
//! - [`subjects`]: NATS subjects and streams, with who publishes and who subscribes.
//! - [`budget`]: realm limits, spend, budget thresholds and the budget guard.
//! - [`rotation`]: realm key rotation states and their view.
//! - [`routing`]: realm and model routing states, and the effective config derived from them.
//! - [`wire`]: messages between services on the bus (pushes to edges, events).
//! - [`ws`]: the agent WebSocket protocol frames.
//! - [`crypto`]: sealing secrets with `VC_SECRET_KEY`; [`did`]: `did:key` and agent signatures.
//! - [`webhook`]: signing the budget events' webhooks.
//! - [`redact`]: `Debug` that hides the secret fields of a type.
//! - [`cli`]: `--help`, `--version` and the exit codes of the three services.
//! - [`config`], [`telemetry`], [`shutdown`], [`ops`], [`bus`]: settings, logging, signals, health
//!   and metrics endpoints, NATS setup.
//!
//! ## Message flow
//! ```text
//! REST client ─▶ vc-api ──(vc.cmd.<kind>, JetStream VC_CMD)──▶ vc-worker ──▶ Redis (atomic commit)
//!                   ▲                                              │  ├──▶ LiteLLM admin API (VC_SYNC jobs, beside the lane)
//!                   └────────(Vc-Reply-To outcome)─────────────────┘  ├──▶ vc.push.realm.<id> / vc.push.agent.<did> ─▶ vc-edge ─▶ agents
//!                                                                     └──▶ vc.evt.<kind> (VC_EVT) + audit stream
//! ```

pub mod budget;
pub mod bus;
pub mod cli;
pub mod command;
pub mod config;
pub mod crypto;
pub mod did;
pub mod domain;
pub mod error;
pub mod ops;
pub mod pem;
pub mod redact;
pub mod rotation;
pub mod routing;
pub mod shutdown;
pub mod store;
pub mod subjects;
pub mod telemetry;
pub mod views;
pub mod webhook;
pub mod wire;
pub mod ws;
