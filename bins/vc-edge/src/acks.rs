//! Acks go to Redis in batches: one writer per edge takes every ack its sessions received since its
//! last write and records them in one call (up to 512 per script call on a single server).
//!
//! A push reaches every agent of a realm at once, so their acks arrive together: 10,000 agents used to
//! mean 10,000 Redis script calls, each with its own future, timer and reply, competing for the CPU
//! with the frames still being sent. Batched, they cost a few calls. An ack is still recorded within
//! one Redis round trip of the batch it joins; nothing waits for it (the agent gets no reply to an
//! ack), and an edge that drains flushes what it holds before it stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use vc_shared::store::Store;

use crate::metrics::Metrics;

/// Acks waiting for the writer, at most (a session that finds the queue full waits for room).
const QUEUE: usize = 16_384;
/// Acks taken into one write, at most.
const BATCH: usize = 2_048;
/// How long a drain waits for the last acks to be written.
const FLUSH_WITHIN: Duration = Duration::from_secs(2);

enum Item {
    Ack(Arc<str>, u64),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Where sessions hand their agents' acks (cheap to clone).
#[derive(Clone)]
pub(crate) struct Acks {
    tx: mpsc::Sender<Item>,
}

impl Acks {
    /// The handle and the writer to run (a duty of the edge).
    pub(crate) fn new(
        store: Store,
        metrics: Metrics,
    ) -> (Acks, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Acks { tx }, write_loop(rx, store, metrics))
    }

    /// Queues an ack; waits only while the queue is full.
    pub(crate) async fn record(&self, did: Arc<str>, version: u64) {
        let _ = self.tx.send(Item::Ack(did, version)).await;
    }

    /// Waits (at most 2 s) until every ack queued before this call is written.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            self.tx.send(Item::Flush(done)).await.ok()?;
            wait.await.ok()
        };
        if tokio::time::timeout(FLUSH_WITHIN, flushed).await.is_err() {
            warn!("Acks not all written before the drain deadline.");
        }
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Item>, store: Store, metrics: Metrics) {
    let mut items = Vec::with_capacity(BATCH);
    let mut acks: Vec<(Arc<str>, u64)> = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while rx.recv_many(&mut items, BATCH).await > 0 {
        for item in items.drain(..) {
            match item {
                Item::Ack(did, v) => acks.push((did, v)),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !acks.is_empty() {
            write(&store, &metrics, &acks).await;
            acks.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch, trying again twice (after 100 and 300 ms) if Redis fails; the batch is dropped
/// (and counted) only after the third failure, so a Redis failover loses no ack.
async fn write(store: &Store, metrics: &Metrics, acks: &[(Arc<str>, u64)]) {
    let batch: Vec<(&str, u64)> = acks.iter().map(|(d, v)| (&**d, *v)).collect();
    for (attempt, pause) in [100u64, 300, 0].into_iter().enumerate() {
        match store.record_acks(&batch).await {
            Ok(_) => {
                metrics.acks_written(batch.len());
                return;
            }
            Err(e) if pause > 0 => {
                warn!(error = %e, acks = batch.len(), attempt, "Cannot record acks; trying again.");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => {
                metrics.acks_dropped(batch.len());
                warn!(error = %e, acks = batch.len(), "Cannot record acks; dropped.");
            }
        }
    }
}
