//! The LiteLLM sync queue (stream `VC_SYNC`): jobs that could not run inline after a commit, retried
//! with exponential backoff until LiteLLM takes them. Jobs only name the entity; the sync reads the
//! current desired state, so duplicates and reordering are harmless.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use tracing::{debug, warn};
use vc_shared::subjects;

use crate::sync::{Action, SyncError};
use crate::Worker;

/// An entity to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A model deployment.
    Model(String),
    /// A realm key.
    Realm(String),
}

impl Entity {
    fn subject(&self) -> String {
        match self {
            Entity::Model(id) => subjects::sync_model(id),
            Entity::Realm(id) => subjects::sync_realm(id),
        }
    }

    fn parse(subject: &str) -> Option<Entity> {
        if let Some(id) = subject.strip_prefix("vc.sync.model.") {
            return Some(Entity::Model(id.to_string()));
        }
        subject
            .strip_prefix("vc.sync.realm.")
            .map(|id| Entity::Realm(id.to_string()))
    }
}

/// Backoff of the n-th redelivery: 1 s, 2 s, 4 s … capped at 60 s.
pub fn backoff(delivered: i64) -> Duration {
    let exp = (delivered.max(1) - 1).min(6) as u32;
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(60))
}

/// Runs one sync.
pub async fn sync(worker: &Worker, e: &Entity) -> Result<Action, SyncError> {
    let r = match e {
        Entity::Model(id) => worker.syncer.sync_model(id).await,
        Entity::Realm(id) => worker.syncer.sync_realm(id).await,
    };
    match &r {
        Ok(_) => {
            worker.litellm_healthy.store(true, Ordering::Relaxed);
            worker
                .metrics
                .syncs
                .get_or_create(&crate::metrics::SyncLabels {
                    result: "ok".into(),
                })
                .inc();
        }
        Err(SyncError::Litellm(err)) => {
            if err.is_transient() {
                worker.litellm_healthy.store(false, Ordering::Relaxed);
            }
            worker
                .metrics
                .syncs
                .get_or_create(&crate::metrics::SyncLabels {
                    result: "error".into(),
                })
                .inc();
        }
        Err(_) => {}
    }
    r
}

/// Syncs inline when LiteLLM looks healthy and time remains; otherwise (or on failure) queues a job.
pub async fn sync_now_or_queue(worker: &Worker, e: Entity, deadline: tokio::time::Instant) {
    let healthy = worker.litellm_healthy.load(Ordering::Relaxed);
    if worker.syncer.litellm.is_none() || (healthy && tokio::time::Instant::now() < deadline) {
        match tokio::time::timeout_at(deadline + Duration::from_secs(10), sync(worker, &e)).await {
            Ok(Ok(_)) => return,
            Ok(Err(err)) => debug!(error = %err, entity = ?e, "Inline sync failed; queueing."),
            Err(_) => debug!(entity = ?e, "Inline sync over budget; queueing."),
        }
    }
    enqueue(worker, &e).await;
}

/// Queues a sync job.
pub async fn enqueue(worker: &Worker, e: &Entity) {
    let js = jetstream::new(worker.nats.clone());
    match js.publish(e.subject(), bytes::Bytes::new()).await {
        Ok(ack) => {
            if let Err(err) = ack.await {
                warn!(error = %err, entity = ?e, "Sync job not persisted; the periodic reconcile will repair.");
            }
        }
        Err(err) => {
            warn!(error = %err, entity = ?e, "Sync job not queued; the periodic reconcile will repair.")
        }
    }
}

/// Consumes sync jobs until `shutdown`.
pub async fn run_sync_jobs(worker: Worker, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let js = jetstream::new(worker.nats.clone());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let consumer = async {
            let stream = js
                .get_stream(subjects::SYNC_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let c: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    subjects::SYNC_CONSUMER,
                    pull::Config {
                        durable_name: Some(subjects::SYNC_CONSUMER.into()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(60),
                        max_ack_pending: 64,
                        max_deliver: -1,
                        filter_subject: subjects::SYNC_ALL.into(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            c.stream()
                .max_messages_per_batch(8)
                .heartbeat(Duration::from_secs(2))
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(|e| e.to_string())
        };
        let mut messages = match consumer.await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Sync consumer unavailable; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                m = messages.next() => m,
            };
            let msg = match next {
                None | Some(Err(_)) => break,
                Some(Ok(m)) => m,
            };
            let Some(entity) = Entity::parse(&msg.subject) else {
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            };
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
            let ack = match sync(&worker, &entity).await {
                Ok(_) => msg.ack().await,
                Err(SyncError::Busy(_)) => {
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await
                }
                Err(e) => {
                    let d = backoff(delivered);
                    warn!(error = %e, entity = ?entity, retry_in = ?d, "LiteLLM sync failed; will retry.");
                    msg.ack_with(AckKind::Nak(Some(d))).await
                }
            };
            if let Err(e) = ack {
                debug!(error = %e, "Sync ack failed.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(100), Duration::from_secs(60));
    }

    #[test]
    fn entities_roundtrip() {
        for e in [Entity::Model("m1".into()), Entity::Realm("r-2".into())] {
            assert_eq!(Entity::parse(&e.subject()), Some(e));
        }
    }
}
