//! Worker metrics (Prometheus text at `/metrics` when `VC_WORKER_METRICS_ADDR` is set).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// The worker's metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Commands completed, by kind and status.
    pub commands: Family<CommandLabels, Counter>,
    /// LiteLLM syncs, by result.
    pub syncs: Family<SyncLabels, Counter>,
    /// Commands sent to the dead-letter subject.
    pub dead_letters: Counter,
    /// Times this worker took the command lane.
    pub lane_acquired: Counter,
}

impl Metrics {
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
            "vc_worker_lane_acquired",
            "Times this worker took the command lane (became the one applying commands)",
            self.lane_acquired.clone(),
        );
    }
}
