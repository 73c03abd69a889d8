//! `GET /api/events`: the live change feed, as Server-Sent Events.
//!
//! The feed is the `VC_EVT` stream: every event the worker publishes (models, realms, grants, keys,
//! agents, config pushes), the API's own (tokens, failed authentications) and the edges' reports (agent
//! presence, acks). Each SSE event is one stream message: `id` = its stream sequence, `event` = its
//! kind, `data` = the event JSON (`{id, at, actor, kind, subject, details}`).
//!
//! - **Live**: one ordered consumer per API instance follows the stream from "now" and fans each event
//!   out to its clients through a bounded broadcast ring ([`RING`] events).
//! - **Resume**: a client that sends `Last-Event-ID` (the browser does on reconnect) gets its own
//!   ordered consumer from the next sequence, so nothing is lost within the stream's retention (7 days,
//!   5,000,000 events). When the next sequence is no longer in the stream the feed says so first: an
//!   event `reset` with the first sequence it still has (reload state, then follow).
//! - **Slow clients**: a client that falls [`RING`] events behind the live ring is sent an `error` event
//!   (`SLOW_CONSUMER`) with a `retry` hint and dropped; reconnecting with `Last-Event-ID` resumes without
//!   loss.
//! - **Realm admins** see the events about their realms and about agents that are members of one of them
//!   (presence and ack reports cut down to those agents), nothing else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use vc_shared::subjects;
use vc_shared::wire::Event;

use crate::error::{ApiError, ApiResult};
use crate::read::ReadModel;
use crate::{Actor, AppState};

/// Events a live client may fall behind before it is dropped.
pub const RING: usize = 4_096;
/// What a dropped or disconnected client is told to wait before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct Item {
    /// Stream sequence (the SSE id).
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// The live side of the feed (cheap to clone).
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<Item>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            tx: broadcast::channel(RING).0,
        }
    }
}

impl Feed {
    /// Live clients now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// The stream's messages from `start` on (`None`: from now).
async fn open(
    js: &async_nats::jetstream::Context,
    start: Option<u64>,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, async_nats::Error> {
    let stream = js.get_stream(subjects::EVT_STREAM).await?;
    consume(&stream, start).await
}

/// An ordered consumer of `stream` from `start` on (`None`: from now), and its messages.
async fn consume(
    stream: &async_nats::jetstream::stream::Stream,
    start: Option<u64>,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, async_nats::Error> {
    let deliver_policy = match start {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::New,
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// The live consumer, opened before the API serves (so an event published after `/healthz` answers is
/// on the feed).
pub async fn start(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, async_nats::Error> {
    open(js, None).await
}

/// Hands every event of `messages` to the live clients until `stop`; if the stream breaks, follows it
/// again from the next sequence (nothing skipped).
pub async fn follow(
    feed: Feed,
    js: async_nats::jetstream::Context,
    mut messages: async_nats::jetstream::consumer::pull::Ordered,
    stop: CancellationToken,
) {
    let mut last: Option<u64> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        loop {
            let m = tokio::select! {
                _ = stop.cancelled() => return,
                m = messages.next() => m,
            };
            match m {
                Some(Ok(msg)) => {
                    if let Some(item) = item_of(&msg) {
                        last = Some(item.seq);
                        let _ = feed.tx.send(Arc::new(item));
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, "Event stream interrupted; following it again.");
                    break;
                }
                None => break,
            }
        }
        messages = loop {
            match open(&js, last.map(|l| l + 1)).await {
                Ok(m) => break m,
                Err(e) => {
                    warn!(error = %e, "Cannot follow the event stream; trying again.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        backoff = Duration::from_millis(200);
    }
}

fn item_of(msg: &async_nats::jetstream::Message) -> Option<Item> {
    let seq = msg.info().ok()?.stream_sequence;
    let event = serde_json::from_slice::<Event>(&msg.payload).ok()?;
    Some(Item { seq, event })
}

/// What a caller may see of an event: all of it, a cut-down copy (a presence or ack report limited to
/// the caller's agents), or nothing.
fn visible(actor: &Actor, read: &ReadModel, ev: &Event) -> Option<Event> {
    if actor.is_admin() {
        return Some(ev.clone());
    }
    let member = |did: &str| read.read(|c| c.agent_in_realms(did, &actor.realm_ids));
    if let Some(id) = ev.subject.strip_prefix("realm:") {
        return actor.can_read_realm(id).then(|| ev.clone());
    }
    if let Some(did) = ev.subject.strip_prefix("agent:") {
        if !member(did) {
            return None;
        }
        // An agent shared with another realm: that realm's id is not the caller's to see.
        let mut ev = ev.clone();
        if let Some(d) = ev.details.as_object_mut() {
            if d.get("realmId")
                .and_then(Value::as_str)
                .is_some_and(|r| !actor.can_read_realm(r))
            {
                d.insert("realmId".into(), Value::Null);
            }
        }
        return Some(ev);
    }
    let list = match ev.kind.as_str() {
        "agent.presence" => "changes",
        "agent.acked" => "acks",
        _ => return None,
    };
    let mut ev = ev.clone();
    let items = ev.details.get_mut(list)?.as_array_mut()?;
    items.retain(|c| c["did"].as_str().is_some_and(member));
    if items.is_empty() {
        return None;
    }
    Some(ev)
}

fn sse(seq: u64, ev: &Event) -> SseEvent {
    SseEvent::default()
        .id(seq.to_string())
        .event(ev.kind.clone())
        .json_data(ev)
        .unwrap_or_else(|_| SseEvent::default().comment("undecodable event"))
}

fn notice(kind: &str, data: Value) -> SseEvent {
    SseEvent::default()
        .event(kind)
        .retry(RETRY)
        .json_data(data)
        .unwrap_or_default()
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>;

/// The change feed (Server-Sent Events).
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event (its `id`)")),
    responses((status = 200, description = "`text/event-stream`: one event per change, `id` = stream sequence, `event` = kind, `data` = the event JSON; `reset` when the resume point is gone, `error` when the client is too slow"),
        (status = 400, description = "Last-Event-ID is not a sequence number")))]
pub async fn events(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Last-Event-ID: must be the id of an event (a number), got {v:?}"
            ))
        })?),
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "Last-Event-ID: must be the id of an event (a number)",
            ))
        }
    };
    let read = s.read.clone();
    let stream: Events = match last {
        None => live(s.feed.tx.subscribe(), actor, read),
        Some(after) => resume(&s.js, after, actor, read).await?,
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn live(rx: broadcast::Receiver<Arc<Item>>, actor: Actor, read: ReadModel) -> Events {
    let s = futures::stream::unfold(Some(rx), move |rx| {
        let actor = actor.clone();
        let read = read.clone();
        async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        if let Some(ev) = visible(&actor, &read, &item.event) {
                            return Some((Ok(sse(item.seq, &ev)), Some(rx)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let e = notice(
                            "error",
                            serde_json::json!({
                                "error": format!("client too slow: {n} events behind; reconnect with Last-Event-ID to resume"),
                                "code": "SLOW_CONSUMER",
                            }),
                        );
                        return Some((Ok(e), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Box::pin(s)
}

async fn resume(
    js: &async_nats::jetstream::Context,
    after: u64,
    actor: Actor,
    read: ReadModel,
) -> ApiResult<Events> {
    let unavailable = |e: &dyn std::fmt::Display| {
        warn!(error = %e, "Cannot resume the event stream.");
        ApiError::unavailable("the event stream is unavailable; retry shortly")
    };
    let mut stream = js
        .get_stream(subjects::EVT_STREAM)
        .await
        .map_err(|e| unavailable(&e))?;
    let first = stream
        .info()
        .await
        .map_err(|e| unavailable(&e))?
        .state
        .first_sequence;
    let start = after.saturating_add(1).max(1);
    let mut prefix = Vec::new();
    let start = if start < first {
        prefix.push(Ok(notice(
            "reset",
            serde_json::json!({
                "error": format!("events {start} to {} are past the retention window: reload your state, then follow", first.saturating_sub(1)),
                "first": first,
            }),
        )));
        first
    } else {
        start
    };
    let messages = consume(&stream, Some(start))
        .await
        .map_err(|e| unavailable(&e))?;
    let events = messages
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(move |m| {
            let item = m.ok().as_ref().and_then(item_of);
            let out = item.and_then(|i| visible(&actor, &read, &i.event).map(|ev| sse(i.seq, &ev)));
            std::future::ready(out.map(Ok))
        });
    Ok(Box::pin(futures::stream::iter(prefix).chain(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, kind: &str, subject: &str) -> Arc<Item> {
        Arc::new(Item {
            seq,
            event: Event {
                id: format!("e{seq}"),
                at: "2026-12-07T00:00:00Z".into(),
                actor: "admin".into(),
                kind: kind.into(),
                subject: subject.into(),
                details: serde_json::json!({}),
            },
        })
    }

    fn admin() -> Actor {
        Actor {
            name: "admin".into(),
            admin: true,
            realm_ids: Vec::new(),
            csrf_sha256: None,
        }
    }

    /// A client that falls more than the ring behind gets one `error` event (`SLOW_CONSUMER`, with a
    /// retry hint) and its stream ends; a client that keeps up gets every event in order.
    #[tokio::test]
    async fn slow_clients_are_told_and_dropped() {
        let (tx, _) = broadcast::channel::<Arc<Item>>(2);
        let slow = live(tx.subscribe(), admin(), ReadModel::default());
        for seq in 1..=5 {
            tx.send(item(seq, "realm.created", "realm:r")).unwrap();
        }
        let got: Vec<Result<SseEvent, Infallible>> =
            tokio::time::timeout(Duration::from_secs(2), slow.collect())
                .await
                .expect("the stream ends");
        assert_eq!(got.len(), 1);
        let text = format!("{:?}", got[0].as_ref().unwrap());
        assert!(
            text.contains("SLOW_CONSUMER") && text.contains("retry"),
            "{text}"
        );

        let mut fine = live(tx.subscribe(), admin(), ReadModel::default());
        tx.send(item(6, "realm.created", "realm:r")).unwrap();
        tx.send(item(7, "model.updated", "model:m")).unwrap();
        for seq in [6, 7] {
            let e = fine.next().await.unwrap().unwrap();
            // Debug shows the frame's bytes, a newline as `\n`.
            assert!(format!("{e:?}").contains(&format!("id: {seq}\\n")), "{e:?}");
        }
    }

    /// A realm admin sees its realm's events and nothing about other realms or the registry.
    #[test]
    fn realm_admins_see_their_realms() {
        let ra = Actor {
            name: "token:t".into(),
            admin: false,
            realm_ids: vec!["mine".into()],
            csrf_sha256: None,
        };
        let read = ReadModel::default();
        let ev = |subject: &str| item(1, "realm.updated", subject).event.clone();
        assert!(visible(&ra, &read, &ev("realm:mine")).is_some());
        assert!(visible(&ra, &read, &ev("realm:other")).is_none());
        assert!(visible(&ra, &read, &ev("model:m")).is_none());
        assert!(visible(&ra, &read, &ev("agent:did:key:z6Mk")).is_none());
        assert!(visible(&admin(), &read, &ev("model:m")).is_some());
    }
}
