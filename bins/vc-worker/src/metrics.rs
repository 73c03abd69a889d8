//! Worker metrics (Prometheus text at `/metrics` when `VC_WORKER_METRICS_ADDR` is set).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `vc_worker_commands_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// Command kind.
    pub kind: String,
    /// `succeeded` or `failed`.
    pub status: String,
}

/// Labels of `vc_worker_litellm_syncs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of `vc_worker_lane_phase_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// In the lane: `prefetch` (the batch's reads, one round trip or two), `apply` (commands applied
    /// in memory, with the reads the prefetch missed), `commit` (the atomic Redis
    /// step), `handoff` (waiting for the emitter when it is behind). Beside it: `emit` (a batch's
    /// pushes, events, sync jobs, outcomes and acks).
    pub phase: String,
}

fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The worker's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// How long the lane was held per batch (applying, committing, emitting), seconds.
    pub lane_batch_seconds: Histogram,
    /// Time per batch in each phase of the lane, seconds.
    pub lane_phase_seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    /// Commands per committed batch.
    pub lane_batch_commands: Histogram,
    /// Redis reads the lane made while applying (what neither the lane cache nor the prefetch had).
    pub lane_reads: Counter,
    /// Commands completed, by kind and status.
    pub commands: Family<CommandLabels, Counter>,
    /// LiteLLM syncs, by result.
    pub syncs: Family<SyncLabels, Counter>,
    /// Commands sent to the dead-letter subject.
    pub dead_letters: Counter,
    /// Outcomes not sent because `Vc-Reply-To` is not an `_INBOX.` subject.
    pub replies_refused: Counter,
    /// Times this worker took the command lane.
    pub lane_acquired: Counter,
    /// 1 while this worker holds the command lane.
    pub lane_held: prometheus_client::metrics::gauge::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            lane_batch_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            lane_phase_seconds: Family::new_with_constructor(phase_histogram),
            lane_batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            lane_reads: Counter::default(),
            commands: Family::default(),
            syncs: Family::default(),
            dead_letters: Counter::default(),
            replies_refused: Counter::default(),
            lane_acquired: Counter::default(),
            lane_held: Default::default(),
        }
    }
}

impl Metrics {
    /// Records `d` for one phase of a lane batch.
    pub fn lane_phase(&self, phase: &str, d: std::time::Duration) {
        self.lane_phase_seconds
            .get_or_create(&PhaseLabels {
                phase: phase.into(),
            })
            .observe(d.as_secs_f64());
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vc_worker_commands",
            "Commands completed, by kind and status",
            self.commands.clone(),
        );
        registry.register(
            "vc_worker_litellm_syncs",
            "LiteLLM syncs, by result",
            self.syncs.clone(),
        );
        registry.register(
            "vc_worker_dead_letters",
            "Commands sent to vc.dlq.cmd",
            self.dead_letters.clone(),
        );
        registry.register(
            "vc_worker_replies_refused",
            "Outcomes not sent because Vc-Reply-To is not an _INBOX subject",
            self.replies_refused.clone(),
        );
        registry.register(
            "vc_worker_lane_batch_seconds",
            "How long the command lane was held per batch: applying, committing, emitting",
            self.lane_batch_seconds.clone(),
        );
        registry.register(
            "vc_worker_lane_phase_seconds",
            "Time per batch in each phase of the command lane: prefetch, apply, commit, handoff (in the lane), emit (beside it)",
            self.lane_phase_seconds.clone(),
        );
        registry.register(
            "vc_worker_lane_batch_commands",
            "Commands per committed batch",
            self.lane_batch_commands.clone(),
        );
        registry.register(
            "vc_worker_lane_reads",
            "Redis reads the command lane made while applying commands (cache and prefetch misses)",
            self.lane_reads.clone(),
        );
        registry.register(
            "vc_worker_lane_held",
            "1 while this worker holds the command lane",
            self.lane_held.clone(),
        );
        registry.register(
            "vc_worker_lane_acquired",
            "Times this worker took the command lane (became the one applying commands)",
            self.lane_acquired.clone(),
        );
    }
}
