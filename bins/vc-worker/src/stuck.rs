//! Commands the NATS client cannot read, found and dead-lettered so they never block the queue.
//!
//! Anyone allowed to publish on `vc.cmd.>` may send a header block that nats-server stores as it came
//! but async-nats refuses: a value that is not UTF-8, a header name with a space, a line without a
//! colon, a version line other than `NATS/1.0`, or a status code (`NATS/1.0 408 …`, which the pull
//! consumer takes for a server status). Such a command is delivered, never seen by the worker (the
//! client drops the connection or the frame), never acked, and redelivered forever; the lane applies
//! commands in stream order ([decision 0001](../../../docs/decisions/0001-command-ordering.md)), so every
//! later command waits.
//!
//! The queue is a work-queue stream, so its first message is the oldest not yet applied and acked. Every worker checks it
//! periodically; when the same first message is still there one period later, the worker reads it
//! through the stream's JSON API (which returns the header block base64-encoded instead of parsing it)
//! and, if the client cannot parse it, publishes it to `vc.dlq.cmd` (header block base64 in
//! `Vc-Original-Headers`) and deletes it from the stream. Readable commands are never touched: a slow
//! or retried command is the consumer's business. Two workers doing this at once are harmless: the dead
//! letter is deduplicated by its `Nats-Msg-Id` (`dlq-seq-<stream sequence>`), and a second delete finds
//! nothing.

use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use tracing::{debug, warn};
use vc_shared::command::{validate_command_id, CommandStatus, HDR_MSG_ID, HDR_REPLY_TO};
use vc_shared::error::DomainError;
use vc_shared::subjects;

use crate::consumer::Processing;
use crate::Worker;

/// How often a worker looks at the first command of the queue.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The stored message, as `STREAM.MSG.GET` returns it.
#[derive(Debug, Deserialize)]
struct StoredMessage {
    subject: String,
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MsgGetResponse {
    #[serde(default)]
    message: Option<StoredMessage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Checks the first command every `every` until `shutdown`.
pub async fn run_watch(
    worker: Worker,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let js = jetstream::new(worker.nats.clone());
    let mut seen: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = check_once(&worker, &js, &mut seen).await {
            debug!(error = %e, "Could not check the first command of the queue.");
        }
    }
}

/// One check. `seen` is the first sequence seen at the previous check: a message is only read once it
/// has been first in the queue for a whole period.
async fn check_once(
    worker: &Worker,
    js: &jetstream::Context,
    seen: &mut Option<u64>,
) -> Result<(), String> {
    // `get_stream` reads the stream's info: one JetStream API call per check.
    let stream = js
        .get_stream(subjects::CMD_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let state = stream.cached_info().state.clone();
    if state.messages == 0 {
        *seen = None;
        return Ok(());
    }
    let first = state.first_sequence;
    if seen.replace(first) != Some(first) {
        return Ok(());
    }
    let response: MsgGetResponse = js
        .request(
            format!("STREAM.MSG.GET.{}", subjects::CMD_STREAM),
            &serde_json::json!({ "seq": first }),
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some(stored) = response.message else {
        // Acked or deleted meanwhile.
        return match response.error {
            Some(e) => Err(format!("message {first}: {e}")),
            None => Ok(()),
        };
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let header_block = match &stored.hdrs {
        Some(h) => engine.decode(h).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let reason = match unreadable_subject(&stored.subject) {
        Some(r) => r,
        None if header_block.is_empty() => return Ok(()),
        None => match unreadable_header(&header_block) {
            Some(r) => r,
            None => return Ok(()),
        },
    };
    let payload = match &stored.data {
        Some(d) => engine.decode(d).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    warn!(
        seq = stored.seq,
        reason, "A command the NATS client cannot read blocks the queue; dead-lettering it."
    );
    crate::consumer::publish_dead_letter(
        worker,
        &printable(&stored.subject),
        &format!("the NATS client cannot read this command: {reason}"),
        Some(&format!("dlq-seq-{}", stored.seq)),
        &[
            ("Vc-Original-Headers", engine.encode(&header_block)),
            ("Vc-Original-Seq", stored.seq.to_string()),
        ],
        Bytes::from(payload),
    )
    .await
    .map_err(|e| format!("dead letter: {e}"))?;
    worker.metrics.dead_letters.inc();
    answer_sender(worker, &stored.subject, &header_block, reason).await?;
    match stream.delete_message(stored.seq).await {
        Ok(_) => {}
        // Another worker deleted it first.
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND
            ) => {}
        Err(e) => return Err(format!("delete {}: {e}", stored.seq)),
    }
    *seen = None;
    Ok(())
}

/// When the header block still names a valid command id (and perhaps a reply subject), records the
/// command as failed, as for any other poison command, so its sender learns why from the reply or
/// `GET /api/commands/{id}`. A command already completed under that id (a replay) keeps its record.
async fn answer_sender(
    worker: &Worker,
    subject: &str,
    header_block: &[u8],
    reason: &str,
) -> Result<(), String> {
    let lenient = String::from_utf8_lossy(header_block);
    let value_of = |wanted: &str| {
        lenient.lines().skip(1).find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_string())
        })
    };
    let Some(id) = value_of(HDR_MSG_ID).filter(|id| validate_command_id(id).is_ok()) else {
        return Ok(());
    };
    match worker.store.command(&id).await {
        Ok(Some(rec)) if rec.status != CommandStatus::Pending => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(format!("read command {id}: {e}")),
    }
    let reply_to =
        value_of(HDR_REPLY_TO).filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_graphic()));
    let kind = subjects::command_kind(subject).map_or("unknown", |k| k.as_str());
    let error = DomainError::bad_request(format!(
        "the command's NATS headers cannot be read: {reason}"
    ));
    match crate::consumer::finish_failed(worker, &id, kind, reply_to.as_deref(), error, true).await
    {
        Processing::Retry(_) => Err(format!("could not record command {id} as failed")),
        _ => Ok(()),
    }
}

/// Why async-nats cannot take a message on this subject (the server sends it as it was published).
fn unreadable_subject(subject: &str) -> Option<&'static str> {
    // The server's JSON replaces bytes that are not UTF-8 with U+FFFD.
    subject
        .contains('\u{fffd}')
        .then_some("the subject is not UTF-8")
}

/// Why async-nats (0.51, `connection.rs`) cannot parse this header block as a plain message, following
/// its parser step by step; `None` when it can.
fn unreadable_header(block: &[u8]) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(block) else {
        return Some("the header block is not UTF-8");
    };
    let mut lines = text.lines();
    let Some(version) = lines.next() else {
        return Some("the header block has no version line");
    };
    let Some(suffix) = version.strip_prefix("NATS/1.0") else {
        return Some("the header version line does not begin with NATS/1.0");
    };
    if !suffix.trim().is_empty() {
        return Some(
            "the header version line carries a status, which marks a server status message",
        );
    }
    for line in lines {
        if line.is_empty() || line.starts_with(char::is_whitespace) {
            // Empty, or a continuation of the previous value.
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return Some("a header line has no colon");
        };
        if async_nats::HeaderName::from_str(name).is_err() {
            return Some("a header name is not a valid token");
        }
    }
    None
}

/// `s` with control characters replaced, fit for a header value.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_header_blocks_pass() {
        for block in [
            &b"NATS/1.0\r\nNats-Msg-Id: a-1\r\n\r\n"[..],
            b"NATS/1.0\r\n\r\n",
            b"NATS/1.0 \r\nNats-Msg-Id: a\r\nVc-Actor: x y z\r\n\r\n",
            b"NATS/1.0\r\nX-Long: part one\r\n  part two\r\n\r\n",
            b"NATS/1.0\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\n\r\n",
        ] {
            assert_eq!(
                unreadable_header(block),
                None,
                "{}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn unreadable_header_blocks_are_named() {
        for (block, why) in [
            (&b"NATS/1.0\r\nX-Bad: \xff\xfe\r\n\r\n"[..], "not UTF-8"),
            (b"NATS/1.0\r\nBad Name: x\r\n\r\n", "not a valid token"),
            (b"NATS/1.0\r\ngarbage\r\n\r\n", "no colon"),
            (
                b"NATS/1.0 408 Request Timeout\r\nNats-Msg-Id: a\r\n\r\n",
                "status",
            ),
            (b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", "status"),
            (b"HTTP/1.1\r\nNats-Msg-Id: a\r\n\r\n", "NATS/1.0"),
            (b"", "no version line"),
        ] {
            let got = unreadable_header(block);
            assert!(
                got.is_some_and(|r| r.contains(why)),
                "{}: {got:?}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn the_verdict_matches_what_the_client_rejects() {
        // A header block the client can build is one it can read back.
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "cmd-1");
        h.insert("Vc-Reply-To", "_INBOX.x.y");
        let mut block = b"NATS/1.0\r\n".to_vec();
        for (name, values) in h.iter() {
            for v in values {
                block.extend_from_slice(format!("{name}: {}\r\n", v.as_str()).as_bytes());
            }
        }
        block.extend_from_slice(b"\r\n");
        assert_eq!(unreadable_header(&block), None);
        assert_eq!(unreadable_subject("vc.cmd.realm.create"), None);
        assert!(unreadable_subject("vc.cmd.\u{fffd}").is_some());
    }
}
