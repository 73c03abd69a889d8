//! The lane's emitter: what a committed batch sends (pushes, events, command jobs, outcomes, acks) goes
//! out beside the lane, so the holder applies and commits the next batch meanwhile.
//!
//! - **Order.** One task emits the batches one after the other, in commit order; a batch whose emission
//!   fails is emitted again (every [`RETRY_EVERY`]) before any later one, so events and outcomes never
//!   overtake each other. Emission is idempotent (pushes carry the state read at emission time), so a
//!   batch emitted again, or again after a redelivery of its commands, is harmless.
//! - **Bounds.** At most [`DEPTH`] committed batches wait for the emitter; past that the lane waits for
//!   it (backpressure: a lane never runs ahead of what NATS takes). While it retries, the emitter keeps
//!   its commands' deliveries alive with progress acks, so they are not delivered again for nothing.
//! - **Stop.** When the holder stops, the emitter finishes what it holds within [`DRAIN`]; what is left
//!   then is delivered again after `ack_wait` and emitted by whichever worker holds the lane (its
//!   sequences are applied: they are recognised and only emitted).

use std::time::Duration;

use async_nats::jetstream::AckKind;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::batch::{self, Step};
use crate::Worker;

/// Committed batches waiting for the emitter at most.
pub const DEPTH: usize = 2;
/// How long a failed emission waits before it is tried again.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long a stopping holder waits for the emitter to finish.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The emitter of one lane holding.
pub(super) struct Emitter {
    /// `None` once draining.
    tx: Option<mpsc::Sender<(Vec<Step>, Option<u64>)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Emitter {
    /// Starts the emitter task.
    pub(super) fn start(worker: Worker) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        let task = tokio::spawn(emit_all(worker, rx));
        Emitter { tx: Some(tx), task }
    }

    /// Hands a committed batch to the emitter, waiting while [`DEPTH`] batches are queued.
    /// Hands a committed batch over, with the change-log number its commit wrote (outcomes carry it).
    pub(super) async fn send(&self, steps: Vec<Step>, change: Option<u64>) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::SendError((steps, _))) = tx.send((steps, change)).await {
            // The task ended (it only does when the lane is dropped): the commands come back after
            // `ack_wait` and are emitted then.
            debug!(
                commands = steps.len(),
                "Emitter gone; the batch is emitted on redelivery."
            );
        }
    }

    /// Lets the emitter finish what it holds, for at most [`DRAIN`].
    pub(super) async fn drain(mut self) {
        self.tx = None;
        if tokio::time::timeout(DRAIN, &mut self.task).await.is_err() {
            warn!("The emitter did not finish in time; its commands are emitted on redelivery.");
        }
        // Dropped here: the task is aborted if it is still running.
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        // A lane dropped mid-flight (its worker killed in process) must not leave the task running.
        self.task.abort();
    }
}

async fn emit_all(worker: Worker, mut rx: mpsc::Receiver<(Vec<Step>, Option<u64>)>) {
    let keep_alive = worker.command_ack_wait / 4;
    while let Some((mut steps, change)) = rx.recv().await {
        let started = std::time::Instant::now();
        let mut last_progress = tokio::time::Instant::now();
        loop {
            match batch::finish(&worker, steps, change).await {
                Ok(()) => break,
                Err(back) => steps = back,
            }
            tokio::time::sleep(RETRY_EVERY).await;
            if last_progress.elapsed() >= keep_alive {
                for s in &steps {
                    let _ = s.msg.ack_with(AckKind::Progress).await;
                }
                last_progress = tokio::time::Instant::now();
            }
        }
        worker.metrics.lane_phase("emit", started.elapsed());
    }
}
