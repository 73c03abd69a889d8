//! The command consumer: one command in flight across all workers, applied atomically, acked after
//! success, failed loudly (and never redelivered) when bad.
//!
//! Ordering: the durable consumer `vc-worker` has `max_ack_pending = 1`, so JetStream hands out the next
//! command only after the previous one is acked, whichever worker holds it: commands apply in stream
//! order, and the final state equals a serial replay. A worker that dies mid-command loses its lease
//! after `ack_wait` and the command goes to another worker, which either finds it committed (and
//! re-emits its effects) or applies it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, info, warn, Instrument};
use vc_shared::command::{
    Command, CommandKind, CommandRecord, CommandStatus, Outcome, OutcomeError, HDR_ACTOR,
    HDR_MSG_ID, HDR_REPLY_TO,
};
use vc_shared::domain::now_rfc3339;
use vc_shared::error::DomainError;
use vc_shared::store::{keys, Commit, Op, COMMAND_TTL_MS};
use vc_shared::subjects;

use crate::apply::{self, Applied, Ctx, Effects};
use crate::{push, Worker};

/// How long a worker may hold a command before JetStream gives it to another (progress acks extend it).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often a long command reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Budget for inline LiteLLM syncs after a commit; what does not fit goes to the sync queue.
const INLINE_SYNC_BUDGET: Duration = Duration::from_secs(4);
/// Retries of an optimistic-concurrency conflict before giving the command back.
const MAX_CONFLICTS: usize = 20;

/// What to do with a message, mapped to ack/nak/term in exactly one place.
#[derive(Debug)]
pub enum Processing {
    /// Done (applied, or refused with a final outcome): ack.
    Done,
    /// Transient failure: redeliver after a delay.
    Retry(Duration),
    /// Undecodable: dead-lettered; never redeliver.
    Poison,
}

/// The shared durable consumer of commands (created with `ack_wait` if it does not exist yet) and the
/// `ack_wait` it really has: an existing consumer keeps its own, and that one is what counts for
/// progress acks and ack retries.
pub async fn command_consumer(
    js: &jetstream::Context,
    ack_wait: Duration,
) -> Result<(Duration, pull::Stream), String> {
    let stream = js
        .get_stream(subjects::CMD_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            subjects::CMD_CONSUMER,
            pull::Config {
                durable_name: Some(subjects::CMD_CONSUMER.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: 1,
                max_deliver: -1,
                filter_subject: subjects::CMD_ALL.into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let effective = Some(consumer.cached_info().config.ack_wait)
        .filter(|d| !d.is_zero())
        .unwrap_or(ack_wait);
    let messages = consumer
        .stream()
        .max_messages_per_batch(1)
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(2))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    Ok((effective, messages))
}

/// Runs the command loop until `shutdown`; the command in hand is finished first.
pub async fn run_commands(worker: Worker, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let js = jetstream::new(worker.nats.clone());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (ack_wait, mut messages) = match command_consumer(&js, worker.command_ack_wait).await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Command consumer unavailable; retrying.");
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
                None => break,
                Some(Err(e)) => {
                    debug!(error = %e, "Command pull interrupted; resubscribing.");
                    break;
                }
                Some(Ok(m)) => m,
            };
            let span = tracing::info_span!("command", subject = %msg.subject);
            let status = handle_with_progress(&worker, &msg, ack_wait)
                .instrument(span)
                .await;
            let ack = match status {
                Processing::Done => ack_confirmed(&worker, &msg, ack_wait).await,
                Processing::Retry(d) => msg.ack_with(AckKind::Nak(Some(d))).await,
                Processing::Poison => msg.ack_with(AckKind::Term).await,
            };
            if let Err(e) = ack {
                warn!(error = %e, "Ack failed; the command will be redelivered and deduplicated.");
            }
        }
    }
}

/// Acknowledges a done command and waits for JetStream to confirm, retrying until `ack_wait` has
/// passed. A plain ack is fire-and-forget: one sent while the consumer's leader changes (a NATS node
/// lost) or while the client reconnects is silently lost, and the next command is then held back for
/// the whole `ack_wait` (30 s) until the done command is redelivered. A confirmed ack is retried
/// through the election instead. (An ack request nobody answers comes back as "no responders", which
/// counts as a failure here, unlike `double_ack`, which takes any reply for a confirmation.)
async fn ack_confirmed(
    worker: &Worker,
    msg: &jetstream::Message,
    ack_wait: Duration,
) -> Result<(), async_nats::Error> {
    let Some(reply) = msg.reply.clone() else {
        return msg.ack().await;
    };
    let deadline = tokio::time::Instant::now() + ack_wait;
    loop {
        let attempt = worker
            .nats
            .request(reply.clone(), Bytes::from_static(b"+ACK"))
            .await;
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                debug!(error = %e, "Ack not confirmed; retrying.");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn handle_with_progress(
    worker: &Worker,
    msg: &jetstream::Message,
    ack_wait: Duration,
) -> Processing {
    let fut = handle(worker, msg);
    tokio::pin!(fut);
    let every = PROGRESS_EVERY
        .min(ack_wait / 3)
        .max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tick.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    }
}

fn header(msg: &jetstream::Message, name: &str) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
}

async fn reply(worker: &Worker, reply_to: Option<&str>, outcome: &Outcome) {
    if let Some(subject) = reply_to {
        let payload = Bytes::from(serde_json::to_vec(outcome).unwrap_or_default());
        if let Err(e) = worker.nats.publish(subject.to_string(), payload).await {
            warn!(error = %e, "Could not send the outcome; it stays readable at /api/commands/{{id}}.");
        }
    }
}

async fn dead_letter(worker: &Worker, msg: &jetstream::Message, reason: &str) {
    // Deduplicated per command: a redelivery of the same poison command is dead-lettered once. The id
    // is `dlq-<Nats-Msg-Id>`, or `dlq-seq-<stream sequence>` when the command has no usable id (every
    // id-less message is its own command; a shared `dlq-` would keep only the first of a window).
    let dedupe = match header(msg, HDR_MSG_ID).filter(|id| !id.trim().is_empty()) {
        Some(id) => Some(format!("dlq-{id}")),
        None => msg
            .info()
            .ok()
            .map(|i| format!("dlq-seq-{}", i.stream_sequence)),
    };
    let sent = publish_dead_letter(
        worker,
        msg.subject.as_str(),
        reason,
        dedupe.as_deref(),
        &[],
        msg.payload.clone(),
    )
    .await;
    if let Err(e) = sent {
        warn!(error = %e, "Dead-letter publish failed.");
    }
    worker.metrics.dead_letters.inc();
}

/// Publishes a dead letter on `vc.dlq.cmd` (headers `Vc-Original-Subject`, `Vc-Dlq-Reason`, the
/// `Nats-Msg-Id` that deduplicates it, then `extra`) and waits for JetStream's acknowledgement.
pub(crate) async fn publish_dead_letter(
    worker: &Worker,
    original_subject: &str,
    reason: &str,
    dedupe_id: Option<&str>,
    extra: &[(&str, String)],
    payload: Bytes,
) -> Result<(), String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Vc-Original-Subject", original_subject);
    headers.insert("Vc-Dlq-Reason", reason);
    if let Some(id) = dedupe_id {
        headers.insert(HDR_MSG_ID, id);
    }
    for (name, value) in extra {
        headers.insert(*name, value.as_str());
    }
    jetstream::new(worker.nats.clone())
        .publish_with_headers(subjects::DLQ_CMD, headers, payload)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("not acknowledged: {e}"))?;
    Ok(())
}

fn is_undecodable(e: &DomainError) -> bool {
    e.message.starts_with("body is not valid JSON")
        || e.message.starts_with("body must be a JSON object")
        || e.message.starts_with("body is required")
}

async fn handle(worker: &Worker, msg: &jetstream::Message) -> Processing {
    let reply_to = header(msg, HDR_REPLY_TO);
    let actor = header(msg, HDR_ACTOR).unwrap_or_else(|| "nats".into());
    let Some(command_id) =
        header(msg, HDR_MSG_ID).filter(|id| vc_shared::command::validate_command_id(id).is_ok())
    else {
        let outcome = Outcome {
            command_id: String::new(),
            status: CommandStatus::Failed,
            result: None,
            error: Some(OutcomeError {
                code: vc_shared::error::ErrorCode::BadRequest,
                message: "Nats-Msg-Id header is required (1-128 printable ASCII characters)".into(),
            }),
        };
        reply(worker, reply_to.as_deref(), &outcome).await;
        dead_letter(worker, msg, "missing or invalid Nats-Msg-Id").await;
        return Processing::Poison;
    };
    let Some(kind) = subjects::command_kind(&msg.subject) else {
        let err =
            DomainError::bad_request(format!("unknown command kind in subject {}", msg.subject));
        dead_letter(worker, msg, "unknown kind").await;
        return finish_failed(
            worker,
            &command_id,
            msg.subject.as_str(),
            reply_to.as_deref(),
            err,
            true,
        )
        .await;
    };
    let existing = match worker.store.command(&command_id).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, command.id = %command_id, "Redis unavailable; command will be retried.");
            return Processing::Retry(Duration::from_secs(1));
        }
    };
    if let Some(rec) = existing
        .as_ref()
        .filter(|r| r.status != CommandStatus::Pending)
    {
        // Redelivered after its commit: re-emit its effects and its outcome, apply nothing.
        debug!(command.id = %command_id, "Command already applied; re-emitting its effects.");
        if let Some(effects) = rec
            .effects
            .clone()
            .and_then(|v| serde_json::from_value::<Effects>(v).ok())
        {
            if let Err(e) = after_commit(worker, &effects).await {
                warn!(error = %e, "Re-emitting effects failed; retrying.");
                return Processing::Retry(Duration::from_secs(1));
            }
        }
        if let Some(o) = rec.outcome() {
            reply(worker, reply_to.as_deref(), &o).await;
        }
        return Processing::Done;
    }
    let submitted_at = existing.map(|r| r.submitted_at).unwrap_or_else(now_rfc3339);
    let command = match Command::parse(kind, &msg.payload) {
        Ok(c) => c,
        Err(e) => {
            let undecodable = is_undecodable(&e);
            if undecodable {
                dead_letter(worker, msg, &e.message).await;
            }
            return finish_failed(
                worker,
                &command_id,
                kind.as_str(),
                reply_to.as_deref(),
                e,
                undecodable,
            )
            .await;
        }
    };
    let reconcile = matches!(command, Command::LitellmReconcile);
    let ctx = Ctx {
        store: &worker.store,
        sealer: &worker.sealer,
        litellm: worker.settings.litellm.as_ref(),
        command_id: &command_id,
        actor: &actor,
    };
    for _ in 0..MAX_CONFLICTS {
        let applied: Applied = match apply::apply(&ctx, command.clone()).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, command.id = %command_id, "Applying failed; command will be retried.");
                return Processing::Retry(Duration::from_secs(1));
            }
        };
        let (status, result, error) = match &applied.result {
            Ok(r) => (CommandStatus::Succeeded, r.clone(), None),
            Err(e) => (
                CommandStatus::Failed,
                None,
                Some(OutcomeError::from(e.clone())),
            ),
        };
        let mut record = CommandRecord {
            command_id: command_id.clone(),
            kind: kind.as_str().into(),
            status,
            result,
            error,
            submitted_at: submitted_at.clone(),
            completed_at: Some(now_rfc3339()),
            effects: Some(serde_json::to_value(&applied.effects).unwrap_or_default()),
        };
        let mut ops = applied.ops.clone();
        ops.push(Op::Setpx {
            key: keys::command(&command_id),
            value: serde_json::to_string(&record).unwrap_or_default(),
            ms: COMMAND_TTL_MS,
        });
        match worker.store.commit(applied.rev, &command_id, &ops).await {
            Ok(Commit::Conflict) => continue,
            Ok(Commit::AlreadyApplied) => return Processing::Retry(Duration::from_millis(10)),
            Ok(Commit::Applied(_)) => {}
            Err(e) => {
                warn!(error = %e, command.id = %command_id, "Commit failed; command will be retried.");
                return Processing::Retry(Duration::from_secs(1));
            }
        }
        worker
            .metrics
            .commands
            .get_or_create(&crate::metrics::CommandLabels {
                kind: kind.as_str().into(),
                status: format!("{status:?}").to_lowercase(),
            })
            .inc();
        if status == CommandStatus::Succeeded {
            info!(command.id = %command_id, kind = kind.as_str(), "Command applied.");
        } else {
            info!(command.id = %command_id, kind = kind.as_str(), error = ?record.error.as_ref().map(|e| &e.message), "Command refused.");
        }
        if let Err(e) = after_commit(worker, &applied.effects).await {
            // Committed: a redelivery finds the record and re-emits the effects.
            warn!(error = %e, "Emitting effects failed; retrying.");
            return Processing::Retry(Duration::from_secs(1));
        }
        if reconcile {
            // Not inline: a reconcile may take minutes and must not hold the command queue. It runs
            // among the worker's background tasks, which stop with the worker.
            let w = worker.clone();
            if let Ok(mut set) = worker.background.lock() {
                set.spawn(async move { crate::reconcile::reconcile_requested(&w).await });
                // Reap finished ones so the set stays small.
                while set.try_join_next().is_some() {}
            }
        }
        if status == CommandStatus::Succeeded && refresh_result(worker, kind, &mut record).await {
            let _ = worker.store.update_command(&record).await;
        }
        if let Some(o) = record.outcome() {
            reply(worker, reply_to.as_deref(), &o).await;
        }
        return Processing::Done;
    }
    warn!(command.id = %command_id, "Too many concurrent-write conflicts; giving the command back.");
    Processing::Retry(Duration::from_millis(200))
}

/// After the inline LiteLLM sync, the entity in the result may be `synced`: refresh the result.
async fn refresh_result(worker: &Worker, kind: CommandKind, record: &mut CommandRecord) -> bool {
    let Some(result) = record.result.as_mut() else {
        return false;
    };
    match kind {
        CommandKind::ModelRegister | CommandKind::ModelUpdate => {
            let Some(id) = result
                .pointer("/model/id")
                .and_then(|v| v.as_str())
                .map(str::to_string)
            else {
                return false;
            };
            if let Ok(Some(m)) = worker.store.model(&id).await {
                if let Ok(v) = vc_shared::views::load_model_view(&worker.store, &m).await {
                    result["model"] = serde_json::to_value(v).unwrap_or_default();
                    return true;
                }
            }
            false
        }
        CommandKind::RealmGrant => {
            let Some(id) = result
                .pointer("/grant/realmId")
                .and_then(|v| v.as_str())
                .map(str::to_string)
            else {
                return false;
            };
            if let Ok(Some(r)) = worker.store.realm(&id).await {
                if let Ok(v) = vc_shared::views::load_realm_view(&worker.store, &r).await {
                    result["routerKey"] = serde_json::to_value(v.router_key).unwrap_or_default();
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// Records `command_id` as failed with `error` and answers `reply_to`; `poison` counts it as dead-lettered.
pub(crate) async fn finish_failed(
    worker: &Worker,
    command_id: &str,
    kind: &str,
    reply_to: Option<&str>,
    error: DomainError,
    poison: bool,
) -> Processing {
    let record = CommandRecord {
        command_id: command_id.into(),
        kind: kind.into(),
        status: CommandStatus::Failed,
        result: None,
        error: Some(error.into()),
        submitted_at: worker
            .store
            .command(command_id)
            .await
            .ok()
            .flatten()
            .map(|r| r.submitted_at)
            .unwrap_or_else(now_rfc3339),
        completed_at: Some(now_rfc3339()),
        effects: None,
    };
    let ops = [Op::Setpx {
        key: keys::command(command_id),
        value: serde_json::to_string(&record).unwrap_or_default(),
        ms: COMMAND_TTL_MS,
    }];
    // The revision check is irrelevant for a record-only write: retry on conflict.
    for _ in 0..MAX_CONFLICTS {
        let rev = match worker.store.rev().await {
            Ok(r) => r,
            Err(_) => return Processing::Retry(Duration::from_secs(1)),
        };
        match worker.store.commit(rev, command_id, &ops).await {
            Ok(Commit::Conflict) => continue,
            Ok(_) => break,
            Err(_) => return Processing::Retry(Duration::from_secs(1)),
        }
    }
    worker
        .metrics
        .commands
        .get_or_create(&crate::metrics::CommandLabels {
            kind: kind.into(),
            status: "failed".into(),
        })
        .inc();
    info!(command.id = %command_id, kind, error = %record.error.as_ref().map(|e| e.message.as_str()).unwrap_or(""), "Command refused.");
    if let Some(o) = record.outcome() {
        reply(worker, reply_to, &o).await;
    }
    if poison {
        Processing::Poison
    } else {
        Processing::Done
    }
}

/// Side effects after a commit: LiteLLM sync (inline within a budget, else queued), pushes, events.
pub async fn after_commit(worker: &Worker, effects: &Effects) -> Result<(), push::EmitError> {
    for did in &effects.deleted_agents {
        worker.store.forget_agent_runtime(did).await?;
    }
    let deadline = tokio::time::Instant::now() + INLINE_SYNC_BUDGET;
    for id in &effects.sync_models {
        crate::queue::sync_now_or_queue(worker, crate::queue::Entity::Model(id.clone()), deadline)
            .await;
    }
    for id in &effects.sync_realms {
        crate::queue::sync_now_or_queue(worker, crate::queue::Entity::Realm(id.clone()), deadline)
            .await;
    }
    push::emit(&worker.nats, &worker.store, effects).await
}
