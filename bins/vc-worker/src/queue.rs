//! The LiteLLM sync queue (stream `VC_SYNC`), worked by every worker, up to [`CONCURRENCY`] jobs at once.
//!
//! - **Command jobs** (`vc.sync.cmd`, body [`CommandJob`]): queued by the lane holder for
//!   every committed command with LiteLLM work, before the command is acked. The job syncs each entity
//!   the command touched (at once: usually a few milliseconds after the commit), refreshes the command's
//!   result (a new model then answers `synced`) and sends the outcome to its `Vc-Reply-To`. A worker
//!   that dies meanwhile loses nothing: the job is delivered again. LiteLLM is never called in the lane.
//! - **Entity jobs** (`vc.sync.model.<id>`, `vc.sync.realm.<id>`, empty body): an entity whose sync
//!   failed, retried with exponential backoff until LiteLLM takes it.
//!
//! Jobs only name entities; a sync reads the current desired state, so duplicates and reordering are
//! harmless, and a job whose entity is recorded as synced at its current generation does nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use vc_shared::command::CommandRecord;
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

/// Most sync jobs a worker works on at once.
pub const CONCURRENCY: usize = 64;
/// How long a sync job may stay unacknowledged (progress acks extend it) before another worker gets it.
const JOB_ACK_WAIT: Duration = Duration::from_secs(15);

/// The LiteLLM work of a committed batch: the entities its commands touched, each synced once, and
/// the commands whose outcomes follow. One job per batch, whatever the number of commands in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "CommandJobWire")]
pub struct CommandJob {
    /// The commands, in stream order.
    pub commands: Vec<JobCommand>,
    /// Models whose deployment to sync.
    #[serde(default)]
    pub models: Vec<String>,
    /// Realms whose key to sync.
    #[serde(default)]
    pub realms: Vec<String>,
    /// Realms whose spend to read from LiteLLM (`realm.spend.refresh`), after the syncs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spend: Vec<String>,
}

/// One command of a [`CommandJob`] and where its outcome goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCommand {
    /// The command.
    pub command_id: String,
    /// `VC_CMD` sequence of the delivery it answers (a command published again is another delivery).
    pub seq: u64,
    /// Where its outcome goes, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Whether the result is refreshed after the syncs (a first application; a command answered again
    /// keeps its first outcome).
    #[serde(default)]
    pub refresh: bool,
}

/// A command job as stored: a batch's (`commands`), or one command's, the form of earlier versions
/// (`commandId`, `seq`, `replyTo`, `refresh` at the top), still read so that jobs queued before an
/// upgrade are worked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandJobWire {
    #[serde(default)]
    commands: Vec<JobCommand>,
    command_id: Option<String>,
    #[serde(default)]
    seq: u64,
    reply_to: Option<String>,
    #[serde(default)]
    refresh: bool,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    realms: Vec<String>,
    #[serde(default)]
    spend: Vec<String>,
}

impl From<CommandJobWire> for CommandJob {
    fn from(w: CommandJobWire) -> Self {
        let mut commands = w.commands;
        if let Some(command_id) = w.command_id {
            commands.push(JobCommand {
                command_id,
                seq: w.seq,
                reply_to: w.reply_to,
                refresh: w.refresh,
            });
        }
        CommandJob {
            commands,
            models: w.models,
            realms: w.realms,
            spend: w.spend,
        }
    }
}

impl CommandJob {
    fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        self.models
            .iter()
            .cloned()
            .map(Entity::Model)
            .chain(self.realms.iter().cloned().map(Entity::Realm))
    }

    /// `Nats-Msg-Id` of the job: `sync-cmd-<digest of its deliveries' sequences>`. The same deliveries
    /// queued again (a batch redelivered after its commit) are stored once; the same command published
    /// again is another delivery, with its own job and outcome.
    fn msg_id(&self) -> String {
        let seqs: Vec<String> = self.commands.iter().map(|c| c.seq.to_string()).collect();
        format!(
            "sync-cmd-{}",
            &vc_shared::crypto::sha256_hex(&seqs.join(","))[..32]
        )
    }
}

/// Stores a batch's command job in `VC_SYNC` and waits for JetStream's acknowledgement.
pub async fn enqueue_commands(worker: &Worker, job: &CommandJob) -> Result<(), String> {
    let js = jetstream::new(worker.nats.clone());
    let mut h = async_nats::HeaderMap::new();
    h.insert(vc_shared::command::HDR_MSG_ID, job.msg_id().as_str());
    let body = bytes::Bytes::from(serde_json::to_vec(job).unwrap_or_default());
    js.publish_with_headers(subjects::SYNC_COMMAND, h, body)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Works a command job: each entity synced once, up to [`JOB_SYNCS_AT_ONCE`] at a time (waiting while
/// another sync of it runs, up to the inline budget; a failure, or LiteLLM known to be failing, makes it
/// an entity job retried with backoff), then the commands' refreshed outcomes.
async fn run_command_job(worker: &Worker, job: &CommandJob) {
    let deadline = tokio::time::Instant::now() + INLINE_BUDGET;
    let syncs = job.entities().map(|e| async move {
        // While LiteLLM fails (a transient error, until a sync succeeds again), the outcome does not
        // wait for it: the entity goes straight to its own job, retried with backoff.
        if !worker.litellm_healthy.load(Ordering::Relaxed) {
            enqueue(worker, &e).await;
            return;
        }
        let attempt = async {
            loop {
                match sync(worker, &e).await {
                    Err(SyncError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    r => return r,
                }
            }
        };
        let done = tokio::time::timeout_at(deadline + Duration::from_secs(10), attempt).await;
        if !matches!(done, Ok(Ok(_))) {
            debug!(entity = ?e, "Sync of a command's entity did not complete; retried as its own job.");
            enqueue(worker, &e).await;
        }
    });
    futures::stream::iter(syncs)
        .buffer_unordered(JOB_SYNCS_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    // Spend asked for, read now (after the syncs: a realm's team exists once its key is synced).
    let reads = job.spend.clone().into_iter().map(|r| async move {
        if let Err(e) = crate::spend::refresh(worker, &r).await {
            debug!(realm = %r, error = %e, "Spend not read on demand; the outcome shows the last reading.");
        }
    });
    futures::stream::iter(reads)
        .buffer_unordered(JOB_SYNCS_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    let ids: Vec<String> = job.commands.iter().map(|c| c.command_id.clone()).collect();
    let Ok(records) = worker.store.commands(&ids).await else {
        return;
    };
    // The job's commands, in stream order, with their records.
    let mut answered: Vec<(&JobCommand, CommandRecord)> = job
        .commands
        .iter()
        .zip(records)
        .filter_map(|(c, r)| r.map(|r| (c, r)))
        .collect();
    // Refreshed where asked (each entity read once for the whole job), then answered.
    let mut fresh: Vec<&mut CommandRecord> = answered
        .iter_mut()
        .filter(|(c, _)| c.refresh)
        .map(|(_, r)| r)
        .collect();
    let changed = crate::consumer::refresh_results(worker, &mut fresh).await;
    let updates = fresh
        .iter()
        .zip(changed)
        .filter(|(_, changed)| *changed)
        .map(|(r, _)| worker.store.update_command(r));
    let _ = futures::future::join_all(updates).await;
    for (c, record) in &answered {
        if let Some(o) = record.outcome() {
            crate::consumer::reply(worker, c.reply_to.as_deref(), &o).await;
        }
    }
}

/// Most entities of one command job synced at once: a batch of grants to many realms syncs them side by
/// side, so its outcomes wait about as long as the slowest sync, not the sum of them.
const JOB_SYNCS_AT_ONCE: usize = 32;

/// How long a command job waits for its entities' syncs before sending the outcome anyway (their
/// state then shows `pending` or `error`, and entity jobs retry them).
const INLINE_BUDGET: Duration = Duration::from_secs(4);

/// Backoff of the n-th redelivery: 1 s, 2 s, 4 s … capped at 60 s.
pub fn backoff(delivered: i64) -> Duration {
    let exp = (delivered.max(1) - 1).min(6) as u32;
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(60))
}

/// Runs one sync, unless the entity is recorded as synced at its current generation already (by its
/// command's job, or by a later command's job in a burst of changes to one entity): then LiteLLM is
/// not called.
pub async fn sync(worker: &Worker, e: &Entity) -> Result<Action, SyncError> {
    if recorded_in_sync(worker, e).await.unwrap_or(false) {
        return Ok(Action::None);
    }
    let r = match e {
        Entity::Model(id) => worker.syncer.sync_model(id).await,
        Entity::Realm(id) => worker.syncer.sync_realm(id).await,
    };
    match &r {
        Ok(_) => {
            if let Entity::Realm(id) = e {
                // A pending key LiteLLM now holds is activated at once, not at the driver's next pass.
                crate::rotation::advance(worker, id).await;
            }
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

/// Whether the entity's current generation is recorded as synced (a queued job for it has nothing
/// left to do; drift is the reconcile's business). A deleted entity is never in sync here: LiteLLM
/// must forget it.
pub async fn recorded_in_sync(
    worker: &Worker,
    e: &Entity,
) -> Result<bool, vc_shared::store::StoreError> {
    let store = &worker.store;
    let (gen, record) = match e {
        Entity::Model(id) => match store.model(id).await? {
            Some(m) => (m.gen, store.sync_model(id).await?),
            None => return Ok(false),
        },
        Entity::Realm(id) => match store.realm(id).await? {
            Some(r) if r.key.is_some() => (r.gen, store.sync_realm(id).await?),
            _ => return Ok(false),
        },
    };
    Ok(record.gen >= gen && record.state == Some(vc_shared::domain::SyncStateKind::Synced))
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

/// Consumes sync jobs until `shutdown`, up to [`CONCURRENCY`] at once.
pub async fn run_sync_jobs(worker: Worker, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let js = jetstream::new(worker.nats.clone());
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut running = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let consumer = async {
            let stream = js
                .get_stream(subjects::SYNC_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let config = pull::Config {
                durable_name: Some(subjects::SYNC_CONSUMER.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: JOB_ACK_WAIT,
                max_ack_pending: 4 * CONCURRENCY as i64,
                max_deliver: -1,
                filter_subject: subjects::SYNC_ALL.into(),
                ..Default::default()
            };
            let mut c: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(subjects::SYNC_CONSUMER, config.clone())
                .await
                .map_err(|e| e.to_string())?;
            if c.cached_info().config.ack_wait != JOB_ACK_WAIT {
                c = stream
                    .create_consumer(config)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            c.stream()
                .max_messages_per_batch(CONCURRENCY)
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
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                p = slots.clone().acquire_owned() => p.expect("never closed"),
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                m = messages.next() => m,
            };
            let msg = match next {
                None | Some(Err(_)) => break,
                Some(Ok(m)) => m,
            };
            let w = worker.clone();
            running.spawn(async move {
                let _permit = permit;
                work(&w, msg).await;
            });
        }
    }
}

/// Works one job, with progress acks while it runs.
async fn work(worker: &Worker, msg: jetstream::Message) {
    let job = async {
        if msg.subject.as_str() == subjects::SYNC_COMMAND {
            match serde_json::from_slice::<CommandJob>(&msg.payload) {
                Ok(job) => run_command_job(worker, &job).await,
                Err(e) => warn!(error = %e, "Undecodable command sync job dropped."),
            }
            return msg.ack().await;
        }
        if msg.subject.as_str() == crate::webhook::SUBJECT {
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
            let ack = crate::webhook::deliver(worker, &msg.payload, delivered).await;
            return msg.ack_with(ack).await;
        }
        let Some(entity) = Entity::parse(&msg.subject) else {
            return msg.ack_with(AckKind::Term).await;
        };
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        match sync(worker, &entity).await {
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
        }
    };
    tokio::pin!(job);
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + JOB_ACK_WAIT / 3,
        JOB_ACK_WAIT / 3,
    );
    let ack = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = progress.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    };
    if let Err(e) = ack {
        debug!(error = %e, "Sync ack failed.");
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
    fn command_jobs_name_their_entities() {
        let job = CommandJob {
            commands: vec![JobCommand {
                command_id: "c1".into(),
                seq: 7,
                refresh: true,
                reply_to: None,
            }],
            models: vec!["m".into()],
            realms: vec!["r".into()],
            spend: Vec::new(),
        };
        assert_eq!(
            job.entities().collect::<Vec<_>>(),
            vec![Entity::Model("m".into()), Entity::Realm("r".into())]
        );
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<CommandJob>(&text).unwrap(), job);
    }

    #[test]
    fn a_one_command_job_of_an_earlier_version_is_read() {
        let text = r#"{"commandId":"c1","seq":7,"replyTo":"in.c1","refresh":true,"models":[],"realms":["r"]}"#;
        let job: CommandJob = serde_json::from_str(text).unwrap();
        assert_eq!(
            job.commands,
            vec![JobCommand {
                command_id: "c1".into(),
                seq: 7,
                reply_to: Some("in.c1".into()),
                refresh: true,
            }]
        );
        assert_eq!(job.realms, vec!["r".to_string()]);
    }

    #[test]
    fn a_job_is_named_by_its_deliveries() {
        let job = |seqs: &[u64]| CommandJob {
            commands: seqs
                .iter()
                .map(|&seq| JobCommand {
                    command_id: format!("c{seq}"),
                    seq,
                    reply_to: None,
                    refresh: true,
                })
                .collect(),
            models: Vec::new(),
            realms: Vec::new(),
            spend: Vec::new(),
        };
        assert_eq!(job(&[5, 7, 9]).msg_id(), job(&[5, 7, 9]).msg_id());
        assert_ne!(job(&[5, 7, 9]).msg_id(), job(&[5, 8, 9]).msg_id());
        assert!(job(&[1]).msg_id().starts_with("sync-cmd-"));
    }

    #[test]
    fn entities_roundtrip() {
        for e in [Entity::Model("m1".into()), Entity::Realm("r-2".into())] {
            assert_eq!(Entity::parse(&e.subject()), Some(e));
        }
    }
}
