//! Commands the worker issues itself (on `vc.cmd.worker.<kind>`): the reconcile's key requests, the
//! rotation driver's steps, the spend task's budget records. They go through the command stream like
//! every other command, so they apply in order with the rest and leave records, events and audit entries.

use std::time::Duration;

use vc_shared::command::{CommandKind, HDR_ACTOR, HDR_MSG_ID};
use vc_shared::subjects;

use crate::Worker;

/// How long one publish (with JetStream's acknowledgement) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A command id derived from `parts`: workers that decide the same step at once send one command
/// (JetStream drops the duplicates by `Nats-Msg-Id`; the lane answers a later one from its record).
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, parts.join("\n").as_bytes());
    format!("{prefix}-{id}")
}

/// Publishes `body` as a `kind` command of the worker (`actor` in the audit), with command id `id`.
pub async fn publish(
    worker: &Worker,
    kind: CommandKind,
    id: &str,
    actor: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HDR_MSG_ID, id);
    headers.insert(HDR_ACTOR, actor);
    let send = async {
        async_nats::jetstream::new(worker.nats.clone())
            .publish_with_headers(
                subjects::command_from(subjects::CommandSource::Worker, kind),
                headers,
                serde_json::to_vec(body).unwrap_or_default().into(),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, send)
        .await
        .map_err(|_| format!("publishing {} timed out", kind.as_str()))??;
    Ok(())
}
