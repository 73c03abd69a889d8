//! What an edge reports about its agents, in batches: acks go to Redis (then to the bus as
//! `vc.evt.agent.acked`), sessions that begin or end go to the bus (`vc.evt.agent.presence`), so API
//! read models and other services follow presence and delivery without polling.
//!
//! One task per edge takes everything its sessions queued since its last round and handles it at once.
//! A push reaches every agent of a realm together, so their acks arrive together: 10,000 agents used to
//! mean 10,000 Redis script calls, each with its own future, timer and reply, competing for the CPU
//! with the frames still being sent; batched, they are a few calls and a few messages. Nothing waits
//! for a report (the agent gets no reply to an ack), and an edge that drains flushes what it holds
//! before it stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use vc_shared::domain::now_rfc3339;
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::{AckedEvent, AckedVersion, Event, PresenceChange, PresenceEvent};

use crate::metrics::Metrics;

/// Reports waiting for the task, at most (a session that finds the queue full waits for room).
const QUEUE: usize = 16_384;
/// Reports taken into one round, at most.
const BATCH: usize = 2_048;
/// How long a drain waits for the last reports to go out.
const FLUSH_WITHIN: Duration = Duration::from_secs(2);

enum Item {
    Ack(Arc<str>, u64),
    Presence(PresenceChange),
    /// Answered once everything queued before it is handled.
    Flush(oneshot::Sender<()>),
}

/// Where sessions hand their reports (cheap to clone).
#[derive(Clone)]
pub(crate) struct Reports {
    tx: mpsc::Sender<Item>,
}

/// What the task needs.
pub(crate) struct Sink {
    pub(crate) store: Store,
    pub(crate) nats: async_nats::Client,
    pub(crate) edge_id: String,
    pub(crate) metrics: Metrics,
}

impl Reports {
    /// The handle and the task to run (a duty of the edge).
    pub(crate) fn new(sink: Sink) -> (Reports, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Reports { tx }, run(rx, sink))
    }

    /// Queues an ack; waits only while the queue is full.
    pub(crate) async fn ack(&self, did: Arc<str>, version: u64) {
        let _ = self.tx.send(Item::Ack(did, version)).await;
    }

    /// Queues a session's beginning (`online`) or end.
    pub(crate) async fn presence(&self, did: &str, online: bool, since: i64) {
        self.change(did, online, since, None).await;
    }

    /// Queues a change of what a live session's agent reports it uses (heartbeat `activeLlm`).
    pub(crate) async fn active_llm(&self, did: &str, since: i64, value: Option<serde_json::Value>) {
        self.change(did, true, since, value).await;
    }

    async fn change(
        &self,
        did: &str,
        online: bool,
        since: i64,
        active_llm: Option<serde_json::Value>,
    ) {
        let change = PresenceChange {
            did: did.to_string(),
            online,
            since,
            at: now_rfc3339(),
            active_llm,
        };
        let _ = self.tx.send(Item::Presence(change)).await;
    }

    /// Waits (at most 2 s) until every report queued before this call is handled.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            self.tx.send(Item::Flush(done)).await.ok()?;
            wait.await.ok()
        };
        if tokio::time::timeout(FLUSH_WITHIN, flushed).await.is_err() {
            warn!("Reports not all handled before the drain deadline.");
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Item>, sink: Sink) {
    let mut items = Vec::with_capacity(BATCH);
    let mut acks: Vec<(Arc<str>, u64)> = Vec::with_capacity(BATCH);
    let mut changes = Vec::new();
    let mut flushes = Vec::new();
    while rx.recv_many(&mut items, BATCH).await > 0 {
        for item in items.drain(..) {
            match item {
                Item::Ack(did, v) => acks.push((did, v)),
                Item::Presence(c) => changes.push(c),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !changes.is_empty() {
            let event = PresenceEvent {
                edge_id: sink.edge_id.clone(),
                changes: std::mem::take(&mut changes),
            };
            publish(
                &sink,
                subjects::EVT_AGENT_PRESENCE,
                "agent.presence",
                &event,
            )
            .await;
        }
        if !acks.is_empty() && write_acks(&sink, &acks).await {
            let event = AckedEvent {
                edge_id: sink.edge_id.clone(),
                acks: acks
                    .iter()
                    .map(|(did, version)| AckedVersion {
                        did: did.to_string(),
                        version: *version,
                    })
                    .collect(),
            };
            publish(&sink, subjects::EVT_AGENT_ACKED, "agent.acked", &event).await;
        }
        acks.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Publishes `details` in the envelope of every event on `vc.evt.>` (actor and subject `edge:<id>`).
/// Core publish: a report lost while NATS is away is caught up by the readers' periodic re-read of
/// presence and acks from Redis.
async fn publish<T: serde::Serialize>(sink: &Sink, subject: &'static str, kind: &str, details: &T) {
    let edge = format!("edge:{}", sink.edge_id);
    let event = Event {
        id: uuid::Uuid::new_v4().to_string(),
        at: now_rfc3339(),
        actor: edge.clone(),
        kind: kind.to_string(),
        subject: edge,
        details: serde_json::to_value(details).unwrap_or_default(),
    };
    let body = serde_json::to_vec(&event).unwrap_or_default();
    if let Err(e) = sink.nats.publish(subject, body.into()).await {
        warn!(error = %e, subject, "Cannot publish a report.");
    }
}

/// Writes one batch of acks, trying again twice (after 100 and 300 ms) if Redis fails; the batch is
/// dropped (and counted) only after the third failure, so a Redis failover loses no ack.
async fn write_acks(sink: &Sink, acks: &[(Arc<str>, u64)]) -> bool {
    let batch: Vec<(&str, u64)> = acks.iter().map(|(d, v)| (&**d, *v)).collect();
    for (attempt, pause) in [100u64, 300, 0].into_iter().enumerate() {
        match sink.store.record_acks(&batch).await {
            Ok(_) => {
                sink.metrics.acks_written(batch.len());
                return true;
            }
            Err(e) if pause > 0 => {
                warn!(error = %e, acks = batch.len(), attempt, "Cannot record acks; trying again.");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => {
                sink.metrics.acks_dropped(batch.len());
                warn!(error = %e, acks = batch.len(), "Cannot record acks; dropped.");
            }
        }
    }
    false
}
