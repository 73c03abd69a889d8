//! The command consumer and what every path through it shares: the durable consumer's settings,
//! headers, outcomes, dead letters, the failed record of a command that cannot be applied, and the
//! side effects of a committed command. The lane that applies commands is [`crate::lane`].

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use tracing::{info, warn};
use vc_shared::command::{
    CommandKind, CommandRecord, CommandResult, CommandStatus, Outcome, HDR_MSG_ID,
};
use vc_shared::domain::{now_rfc3339, ModelView, RouterKeyView};
use vc_shared::error::DomainError;
use vc_shared::store::{keys, Commit, Op, COMMAND_TTL_MS};
use vc_shared::subjects;
use vc_shared::views;

use crate::Worker;

/// How long a delivered command may stay unacknowledged before JetStream delivers it again (the lane
/// holder sends progress acks every quarter of it): with the lane's lease, what a dead lane holder
/// costs.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// Most commands delivered to the lane holder and not yet acknowledged.
pub const MAX_ACK_PENDING: i64 = 1024;
/// Retries of an optimistic-concurrency conflict before giving up on a record-only write.
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

/// The shared durable consumer of commands, with the lane's settings (`ack_wait`, and up to
/// [`MAX_ACK_PENDING`] commands delivered and not yet acknowledged: the lane holder's batches). An
/// existing consumer with other settings (an older version's, or another `ack_wait`) is updated. Only
/// the worker holding the lane pulls from it.
pub async fn command_consumer(
    js: &jetstream::Context,
    ack_wait: Duration,
) -> Result<pull::Stream, String> {
    let stream = js
        .get_stream(subjects::CMD_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let config = pull::Config {
        durable_name: Some(subjects::CMD_CONSUMER.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        max_ack_pending: MAX_ACK_PENDING,
        max_deliver: -1,
        filter_subject: subjects::CMD_ALL.into(),
        ..Default::default()
    };
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(subjects::CMD_CONSUMER, config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let have = &consumer.cached_info().config;
    if have.ack_wait != ack_wait || have.max_ack_pending != MAX_ACK_PENDING {
        consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| format!("updating the command consumer: {e}"))?;
    }
    consumer
        .stream()
        .max_messages_per_batch(crate::lane::MAX_BATCH)
        // Short pull requests: one left behind by a holder that died expires within a second (the
        // server may deliver to it until then, and what it delivers waits for ack_wait).
        .expires(Duration::from_secs(1))
        .heartbeat(Duration::from_millis(400))
        .messages()
        .await
        .map_err(|e| e.to_string())
}

pub(crate) fn header(msg: &jetstream::Message, name: &str) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
}

/// Sends `outcome` to `reply_to` when it is an `_INBOX.` subject
/// ([`vc_shared::command::reply_subject_allowed`]); otherwise logs the refusal (the outcome stays
/// readable at `GET /api/commands/{id}`).
pub(crate) async fn reply(worker: &Worker, reply_to: Option<&str>, outcome: &Outcome) {
    let Some(subject) = reply_to else {
        return;
    };
    if !vc_shared::command::reply_subject_allowed(subject) {
        worker.metrics.replies_refused.inc();
        let shown: String = subject.chars().take(128).collect();
        warn!(
            reply_to = %shown.escape_debug(),
            command_id = %outcome.command_id,
            "Vc-Reply-To is not an _INBOX subject: the outcome is not sent (GET /api/commands/{{id}} has it)."
        );
        return;
    }
    let payload = Bytes::from(serde_json::to_vec(outcome).unwrap_or_default());
    if let Err(e) = worker.nats.publish(subject.to_string(), payload).await {
        warn!(error = %e, "Could not send the outcome; it stays readable at /api/commands/{{id}}.");
    }
}

pub(crate) async fn dead_letter(worker: &Worker, msg: &jetstream::Message, reason: &str) {
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
/// `Nats-Msg-Id` that deduplicates it, then `extra`) and waits for JetStream's acknowledgement. The
/// string values of secret fields (`apiKey`) in the payload are replaced by `<redacted>` (header
/// `Vc-Dlq-Redacted: true`): `VC_DLQ` is read by operators and keeps its messages for weeks.
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
    let payload = match vc_shared::redact::redact_secret_fields(&payload) {
        Some(redacted) => {
            headers.insert("Vc-Dlq-Redacted", "true");
            Bytes::from(redacted)
        }
        None => payload,
    };
    jetstream::new(worker.nats.clone())
        .publish_with_headers(subjects::DLQ_CMD, headers, payload)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("not acknowledged: {e}"))?;
    Ok(())
}

/// After their commands' LiteLLM syncs, the entities in the results may be `synced`: refreshes the
/// results of `records`. Each stored result is read as its kind's [`CommandResult`]; the model of
/// `model.register` and `model.update`, and the realm's key of `realm.grant`, are read again, once per
/// entity however many results show it. Returns, for each record, whether it changed (a result of
/// another kind, or one that does not read as its kind's, is left as it is).
pub(crate) async fn refresh_results(
    worker: &Worker,
    records: &mut [&mut CommandRecord],
) -> Vec<bool> {
    let mut results: Vec<Option<CommandResult>> = records
        .iter()
        .map(|record| {
            if record.status != CommandStatus::Succeeded {
                return None;
            }
            let kind = CommandKind::parse(&record.kind)?;
            CommandResult::from_value(kind, record.result.as_ref()?)
                .ok()
                .flatten()
        })
        .collect();
    let mut models: HashMap<String, Option<ModelView>> = HashMap::new();
    let mut router_keys: HashMap<String, Option<Option<RouterKeyView>>> = HashMap::new();
    let mut spends: HashMap<String, Option<vc_shared::budget::SpendView>> = HashMap::new();
    for result in results.iter().flatten() {
        match result {
            CommandResult::Spend(r) if !spends.contains_key(&r.realm_id) => {
                let view = spend_view(worker, &r.realm_id).await;
                spends.insert(r.realm_id.clone(), view);
            }
            CommandResult::Model(r) if !models.contains_key(&r.model.id) => {
                let view = match worker.store.model(&r.model.id).await {
                    Ok(Some(m)) => views::load_model_view(&worker.store, &m).await.ok(),
                    _ => None,
                };
                models.insert(r.model.id.clone(), view);
            }
            CommandResult::Grant(r) if !router_keys.contains_key(&r.grant.realm_id) => {
                let view = match worker.store.realm(&r.grant.realm_id).await {
                    Ok(Some(realm)) => views::load_realm_view(&worker.store, &realm)
                        .await
                        .ok()
                        .map(|v| v.router_key),
                    _ => None,
                };
                router_keys.insert(r.grant.realm_id.clone(), view);
            }
            _ => {}
        }
    }
    records
        .iter_mut()
        .zip(results.iter_mut())
        .map(|(record, result)| {
            let Some(result) = result else {
                return false;
            };
            match result {
                CommandResult::Model(r) => match models.get(&r.model.id) {
                    Some(Some(view)) => r.model = view.clone(),
                    _ => return false,
                },
                CommandResult::Grant(r) => match router_keys.get(&r.grant.realm_id) {
                    Some(Some(view)) => r.router_key = view.clone(),
                    _ => return false,
                },
                CommandResult::Spend(r) => match spends.get(&r.realm_id) {
                    Some(Some(view)) => r.spend = view.clone(),
                    _ => return false,
                },
                _ => return false,
            }
            record.result = Some(result.to_value());
            true
        })
        .collect()
}

/// A realm's spend as stored now (`None` when the realm is gone or unreadable).
async fn spend_view(worker: &Worker, realm_id: &str) -> Option<vc_shared::budget::SpendView> {
    let realm = worker.store.realm(realm_id).await.ok()??;
    let spend = worker.store.realm_spend(realm_id).await.ok()?;
    Some(views::spend_view(&realm, spend.as_ref()))
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
