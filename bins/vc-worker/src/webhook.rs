//! Budget event webhooks (`VC_BUDGET_WEBHOOK_URLS`): each budget event of a committed batch becomes one
//! job per URL in `VC_SYNC` (`vc.sync.webhook`, `Nats-Msg-Id` from the event id and the URL, so a batch
//! emitted again queues nothing twice), delivered by whichever worker takes it: signed
//! (`vc_shared::webhook`), with a timeout, retried with backoff up to [`MAX_ATTEMPTS`] times. Every
//! attempt is logged (`GET /api/webhooks/deliveries`).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use vc_shared::domain::now_rfc3339;
use vc_shared::store::WebhookDelivery;
use vc_shared::webhook::{sign, EVENT_ID_HEADER, EVENT_KINDS, EVENT_KIND_HEADER, SIGNATURE_HEADER};
use vc_shared::wire::Event;

use crate::Worker;

/// Subject of webhook jobs (in `VC_SYNC`).
pub const SUBJECT: &str = "vc.sync.webhook";

/// Attempts of one delivery (backoff 1 s, 2 s, 4 s … 60 s between them: about 3 minutes in all).
pub const MAX_ATTEMPTS: i64 = 8;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One event to one URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookJob {
    /// Where to.
    pub url: String,
    /// The event (its JSON is the body).
    pub event: Event,
}

/// Queues the budget events among `events` for every configured URL.
pub async fn enqueue<'a>(
    worker: &Worker,
    events: impl Iterator<Item = &'a Event>,
) -> Result<(), String> {
    let Some((urls, _)) = worker.settings.budget.webhooks.as_ref() else {
        return Ok(());
    };
    let js = jetstream::new(worker.nats.clone());
    for event in events.filter(|e| EVENT_KINDS.contains(&e.kind.as_str())) {
        for (i, url) in urls.iter().enumerate() {
            let job = WebhookJob {
                url: url.clone(),
                event: event.clone(),
            };
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                vc_shared::command::HDR_MSG_ID,
                format!("webhook-{}-{i}", event.id).as_str(),
            );
            js.publish_with_headers(
                SUBJECT,
                h,
                serde_json::to_vec(&job).unwrap_or_default().into(),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Delivers one job (the `delivered`-th attempt); returns how to acknowledge it.
pub async fn deliver(worker: &Worker, payload: &[u8], delivered: i64) -> AckKind {
    let Ok(job) = serde_json::from_slice::<WebhookJob>(payload) else {
        warn!("Undecodable webhook job dropped.");
        return AckKind::Term;
    };
    let Some((_, secret)) = worker.settings.budget.webhooks.as_ref() else {
        // Webhooks were turned off since the job was queued.
        return AckKind::Term;
    };
    let body = serde_json::to_vec(&job.event).unwrap_or_default();
    let sent_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let result = async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| (None, e.to_string()))?;
        let resp = client
            .post(&job.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret, sent_at, &body))
            .header(EVENT_ID_HEADER, &job.event.id)
            .header(EVENT_KIND_HEADER, &job.event.kind)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| (None, e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((Some(status.as_u16()), format!("answered {status}")))
        }
    }
    .await;
    let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
    let (status, http_status, error, ack) = match result {
        Ok(s) => ("delivered", Some(s), None, AckKind::Ack),
        Err((s, e)) if delivered >= MAX_ATTEMPTS => ("failed", s, Some(e), AckKind::Term),
        Err((s, e)) => (
            "retrying",
            s,
            Some(e),
            AckKind::Nak(Some(crate::queue::backoff(delivered))),
        ),
    };
    if let Some(e) = &error {
        warn!(event = %job.event.id, kind = %job.event.kind, attempt, error = %e, status, "Webhook not delivered.");
    } else {
        debug!(event = %job.event.id, kind = %job.event.kind, attempt, "Webhook delivered.");
    }
    let entry = WebhookDelivery {
        event_id: job.event.id.clone(),
        kind: job.event.kind.clone(),
        subject: job.event.subject.clone(),
        url: vc_shared::config::redact_url_credentials(&job.url),
        attempt,
        status: status.into(),
        http_status,
        error,
        at: now_rfc3339(),
    };
    if let Err(e) = worker.store.log_webhook_delivery(&entry).await {
        debug!(error = %e, "Webhook delivery not logged.");
    }
    ack
}
