//! One batch of the lane: commands prepared in stream order on the overlay view (each sees the writes
//! of the ones before it), committed in one atomic step, then their pushes, events, outcomes and acks.

use std::borrow::Cow;
use std::collections::BTreeSet;

use async_nats::jetstream::{self, AckKind};
use tracing::{debug, info, warn};
use vc_shared::command::{
    validate_command_id, Command, CommandRecord, CommandStatus, Outcome, OutcomeError, HDR_ACTOR,
    HDR_MSG_ID, HDR_REPLY_TO,
};
use vc_shared::domain::now_rfc3339;
use vc_shared::error::{DomainError, ErrorCode};
use vc_shared::store::{keys, Op, COMMAND_TTL_MS};
use vc_shared::subjects;

use super::view::View;
use crate::apply::{self, ApplyError, Ctx, Effects};
use crate::consumer::{self, header};
use crate::queue::{CommandJob, JobCommand};
use crate::{push, Worker};

/// One command of a batch, prepared.
pub(super) struct Step {
    pub(super) msg: jetstream::Message,
    pub(super) seq: u64,
    kind: StepKind,
}

enum StepKind {
    /// No usable `Nats-Msg-Id`: answered with an empty id, dead-lettered, never redelivered. Nothing is
    /// committed.
    NoId,
    /// Its record is complete already (applied before: a redelivery, or the same id published again
    /// after the dedupe window): its effects and outcome are sent again, nothing is applied.
    Replay(CommandRecord),
    /// Delivered again after its sequence was applied, with no complete record (it expired): acked.
    Nothing,
    /// Recorded by this batch: its writes are in the batch's commit.
    Recorded {
        record: CommandRecord,
        /// Boxed: the largest part of a step, kept off the batch's array of steps.
        effects: Box<Effects>,
        /// Why it is dead-lettered, if it is (undecodable, unknown kind).
        dead_letter: Option<String>,
        /// A requested reconcile (runs beside the lane).
        reconcile: bool,
    },
}

impl Step {
    /// Whether the message is terminated rather than acked (never to be redelivered).
    fn poison(&self) -> bool {
        matches!(
            &self.kind,
            StepKind::NoId
                | StepKind::Recorded {
                    dead_letter: Some(_),
                    ..
                }
        )
    }

    /// The command's id, if it was recorded or replayed (the only steps with effects).
    fn command_id(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Recorded { record, .. } | StepKind::Replay(record) => {
                Some(&record.command_id)
            }
            _ => None,
        }
    }

    fn effects(&self) -> Option<Cow<'_, Effects>> {
        match &self.kind {
            StepKind::Recorded { effects, .. } => Some(Cow::Borrowed(effects.as_ref())),
            StepKind::Replay(rec) => rec
                .effects
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
                .map(Cow::Owned),
            _ => None,
        }
    }
}

/// The LiteLLM work of a batch, as one command job: the entities its commands touched, and the
/// commands whose outcomes follow their syncs (`None`: no command has any).
fn batch_job(steps: &[Step], effects: &[Option<Cow<'_, Effects>>]) -> Option<CommandJob> {
    let mut models = BTreeSet::new();
    let mut realms = BTreeSet::new();
    let mut spend = BTreeSet::new();
    let mut commands = Vec::new();
    for (step, e) in steps.iter().zip(effects) {
        let (Some(e), Some(id)) = (e, step.command_id()) else {
            continue;
        };
        if !has_sync(e) {
            continue;
        }
        models.extend(e.sync_models.iter().cloned());
        realms.extend(e.sync_realms.iter().cloned());
        spend.extend(e.spend_realms.iter().cloned());
        commands.push(JobCommand {
            command_id: id.to_string(),
            seq: step.seq,
            reply_to: header(&step.msg, HDR_REPLY_TO),
            // A command answered again keeps its first outcome.
            refresh: matches!(step.kind, StepKind::Recorded { .. }),
        });
    }
    (!commands.is_empty()).then(|| CommandJob {
        commands,
        models: models.into_iter().collect(),
        realms: realms.into_iter().collect(),
        spend: spend.into_iter().collect(),
    })
}

/// Whether a command has LiteLLM work (its outcome then follows the batch's command job).
fn has_sync(e: &Effects) -> bool {
    !e.sync_models.is_empty() || !e.sync_realms.is_empty() || !e.spend_realms.is_empty()
}

fn failed_record(id: &str, kind: &str, submitted_at: String, error: DomainError) -> CommandRecord {
    CommandRecord {
        command_id: id.into(),
        kind: kind.into(),
        status: CommandStatus::Failed,
        result: None,
        error: Some(error.into()),
        submitted_at,
        completed_at: Some(now_rfc3339()),
        effects: None,
    }
}

fn record_op(record: &CommandRecord) -> Op {
    Op::Setpx {
        key: keys::command(&record.command_id),
        value: serde_json::to_string(record).unwrap_or_default(),
        ms: COMMAND_TTL_MS,
    }
}

/// Prepares one command on `view`: its step and its writes. `applied` is set for a message whose
/// sequence the lane has applied already: it is never applied again.
pub(super) async fn prepare(
    worker: &Worker,
    view: &View<'_>,
    msg: jetstream::Message,
    seq: u64,
    applied: bool,
) -> Result<(Step, Vec<Op>), ApplyError> {
    let step = |kind| Step {
        msg: msg.clone(),
        seq,
        kind,
    };
    let Some(id) = header(&msg, HDR_MSG_ID).filter(|id| validate_command_id(id).is_ok()) else {
        return Ok((step(StepKind::NoId), Vec::new()));
    };
    let existing = view.command(&id).await?;
    if let Some(rec) = existing
        .as_ref()
        .filter(|r| r.status != CommandStatus::Pending)
    {
        return Ok((step(StepKind::Replay(rec.clone())), Vec::new()));
    }
    if applied {
        return Ok((step(StepKind::Nothing), Vec::new()));
    }
    let submitted_at = existing.map(|r| r.submitted_at).unwrap_or_else(now_rfc3339);
    let Some((source, kind)) = subjects::command_route(&msg.subject) else {
        let error =
            DomainError::bad_request(format!("unknown command kind in subject {}", msg.subject));
        let record = failed_record(&id, msg.subject.as_str(), submitted_at, error);
        let ops = vec![record_op(&record)];
        let kind = StepKind::Recorded {
            record,
            effects: Box::default(),
            dead_letter: Some("unknown kind".into()),
            reconcile: false,
        };
        return Ok((step(kind), ops));
    };
    let command = match Command::parse_checked(kind, &msg.payload) {
        Ok(c) => c,
        Err(e) => {
            let dead_letter = e.is_undecodable().then(|| e.error().message.clone());
            let record = failed_record(&id, kind.as_str(), submitted_at, e.into_error());
            let ops = vec![record_op(&record)];
            let kind = StepKind::Recorded {
                record,
                effects: Box::default(),
                dead_letter,
                reconcile: false,
            };
            return Ok((step(kind), ops));
        }
    };
    if kind.worker_only() && source != subjects::CommandSource::Worker {
        // The steps of a rotation follow the worker's LiteLLM sync: from anyone else, an activation
        // could push a key LiteLLM does not hold yet.
        let error = DomainError::forbidden(format!(
            "{} is issued by vc-worker only (on vc.cmd.worker.{})",
            kind.as_str(),
            kind.as_str()
        ));
        let record = failed_record(&id, kind.as_str(), submitted_at, error);
        let ops = vec![record_op(&record)];
        let kind = StepKind::Recorded {
            record,
            effects: Box::default(),
            dead_letter: None,
            reconcile: false,
        };
        return Ok((step(kind), ops));
    }
    let reconcile = matches!(command, Command::LitellmReconcile);
    // The actor is the subject's to say (NATS permissions), not the header's: see `CommandSource`.
    let actor = source.actor(header(&msg, HDR_ACTOR));
    let ctx = Ctx {
        store: view,
        sealer: &worker.sealer,
        litellm: worker.settings.litellm.as_ref(),
        command_id: &id,
        actor: &actor,
        rotation_grace_secs: worker.settings.key_rotation_grace.as_secs(),
    };
    let applied = apply::apply(&ctx, command).await?;
    let (status, result, error) = match applied.result {
        Ok(r) => (CommandStatus::Succeeded, r, None),
        Err(e) => (CommandStatus::Failed, None, Some(OutcomeError::from(e))),
    };
    let record = CommandRecord {
        command_id: id.clone(),
        kind: kind.as_str().into(),
        status,
        result,
        error,
        submitted_at,
        completed_at: Some(now_rfc3339()),
        effects: Some(serde_json::to_value(&applied.effects).unwrap_or_default()),
    };
    let mut ops = applied.ops;
    ops.push(record_op(&record));
    let kind = StepKind::Recorded {
        record,
        effects: Box::new(applied.effects),
        dead_letter: None,
        reconcile,
    };
    Ok((step(kind), ops))
}

/// After the commit (or, for a batch of redeliveries, at once): pushes and events of the whole batch,
/// then each command's outcome, dead letter and ack. An error leaves the messages unacknowledged: they
/// come back as redeliveries of applied sequences, whose effects are emitted again.
pub(super) async fn finish(
    worker: &Worker,
    steps: Vec<Step>,
    change: Option<u64>,
) -> Result<(), Vec<Step>> {
    let effects: Vec<Option<Cow<'_, Effects>>> = steps.iter().map(Step::effects).collect();
    let emitted = async {
        for e in effects.iter().flatten() {
            for did in &e.deleted_agents {
                worker.store.forget_agent_runtime(did).await?;
            }
        }
        let all: Vec<&Effects> = effects.iter().flatten().map(|e| e.as_ref()).collect();
        push::emit_batch(&worker.nats, &worker.store, &all).await?;
        // Budget events also go to the webhooks (queued, delivered beside the lane).
        crate::webhook::enqueue(worker, all.iter().flat_map(|e| e.events.iter()))
            .await
            .map_err(push::EmitError::Webhook)
    };
    if let Err(e) = emitted.await {
        warn!(error = %e, commands = steps.len(), "Emitting effects failed; they are sent again on redelivery.");
        drop(effects);
        return Err(steps);
    }
    // The LiteLLM work, stored as one command job before the commands are acked: a worker that dies
    // now loses none. The job syncs the batch's entities and then sends its commands' outcomes.
    let syncs: Vec<bool> = effects
        .iter()
        .map(|e| e.as_deref().is_some_and(has_sync))
        .collect();
    if let Some(job) = batch_job(&steps, &effects) {
        if let Err(e) = crate::queue::enqueue_commands(worker, &job).await {
            warn!(error = %e, "Queueing LiteLLM syncs failed; they are queued again on redelivery.");
            drop(effects);
            return Err(steps);
        }
    }
    drop(effects);
    for (step, sync) in steps.iter().zip(syncs) {
        let reply_to = header(&step.msg, HDR_REPLY_TO);
        match &step.kind {
            StepKind::NoId => {
                let outcome = Outcome {
                    command_id: String::new(),
                    status: CommandStatus::Failed,
                    result: None,
                    error: Some(OutcomeError {
                        code: ErrorCode::BadRequest,
                        message:
                            "Nats-Msg-Id header is required (1-128 printable ASCII characters)"
                                .into(),
                    }),
                    change: None,
                };
                consumer::reply(worker, reply_to.as_deref(), &outcome).await;
                consumer::dead_letter(worker, &step.msg, "missing or invalid Nats-Msg-Id").await;
            }
            StepKind::Replay(rec) => {
                debug!(command.id = %rec.command_id, "Command already applied; its effects and outcome are sent again.");
                if !sync {
                    if let Some(o) = rec.outcome() {
                        consumer::reply(worker, reply_to.as_deref(), &o).await;
                    }
                }
            }
            StepKind::Nothing => {}
            StepKind::Recorded {
                record,
                dead_letter,
                reconcile,
                ..
            } => {
                count(worker, record);
                if let Some(reason) = dead_letter {
                    consumer::dead_letter(worker, &step.msg, reason).await;
                }
                if *reconcile {
                    spawn_background(worker, {
                        let w = worker.clone();
                        async move { crate::reconcile::reconcile_requested(&w).await }
                    });
                }
                // With LiteLLM work, the outcome follows its sync job.
                if !sync {
                    if let Some(mut o) = record.outcome() {
                        o.change = change;
                        consumer::reply(worker, reply_to.as_deref(), &o).await;
                    }
                }
            }
        }
    }
    for step in &steps {
        let ack = if step.poison() {
            step.msg.ack_with(AckKind::Term).await
        } else {
            step.msg.ack().await
        };
        if let Err(e) = ack {
            // Harmless: the command comes back as a redelivery of an applied sequence.
            debug!(error = %e, seq = step.seq, "Ack not sent.");
        }
    }
    Ok(())
}

fn count(worker: &Worker, record: &CommandRecord) {
    let status = format!("{:?}", record.status).to_lowercase();
    worker
        .metrics
        .commands
        .get_or_create(&crate::metrics::CommandLabels {
            kind: record.kind.clone(),
            status: status.clone(),
        })
        .inc();
    match &record.error {
        None => debug!(command.id = %record.command_id, kind = %record.kind, "Command applied."),
        Some(e) => {
            debug!(command.id = %record.command_id, kind = %record.kind, error = %e.message, "Command refused.")
        }
    }
}

/// Runs `f` among the worker's background tasks (aborted when the worker stops).
fn spawn_background(worker: &Worker, f: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(mut set) = worker.background.lock() {
        set.spawn(f);
        while set.try_join_next().is_some() {}
    }
}

/// Logs a committed batch.
pub(super) fn log_batch(steps: &[Step], rev: u64) {
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        info!(
            commands = steps.len(),
            first_seq = first.seq,
            last_seq = last.seq,
            rev,
            "Commands committed."
        );
    }
}
