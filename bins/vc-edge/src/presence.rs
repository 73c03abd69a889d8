//! Background duties of an edge: keeping its sessions' presence alive in Redis, and re-syncing every
//! session from Redis after the NATS client reconnects (core NATS pushes sent meanwhile are lost).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{info, warn};
use vc_shared::domain::now_rfc3339;
use vc_shared::ws::close;

use crate::hub::Hub;

/// Most presence refreshes in flight at once (the multiplexed Redis connection pipelines them).
const REFRESH_CONCURRENCY: usize = 64;

/// Every `presence_refresh`: extends each live session's presence record (re-creating it if it
/// expired). A session whose record a newer session holds missed that session's claim: it closes 4409.
pub(crate) async fn refresh_loop(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(hub.cfg.presence_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = now_rfc3339();
        let mut failures = 0usize;
        let mut results = futures::stream::iter(hub.snapshot())
            .map(|s| {
                let hub = &hub;
                let now = &now;
                async move {
                    let r = hub
                        .store
                        .presence_refresh(
                            &s.did,
                            &s.session_id,
                            &hub.cfg.edge_id,
                            s.since,
                            now,
                            hub.cfg.presence_ttl,
                        )
                        .await;
                    (s, r)
                }
            })
            .buffer_unordered(REFRESH_CONCURRENCY);
        while let Some((s, r)) = results.next().await {
            match r {
                Ok(true) => {}
                Ok(false) => {
                    if s.ctl.close(
                        close::SUPERSEDED,
                        "superseded",
                        "a newer session of this agent took over",
                    ) {
                        hub.metrics.closed("superseded");
                    }
                }
                Err(_) => failures += 1,
            }
        }
        if failures > 0 {
            warn!(
                failures,
                "Presence refresh failed for some sessions; retrying next period."
            );
        }
    }
}

/// Watches the NATS client's connect counter; after every reconnect, re-syncs all sessions.
pub(crate) async fn watch_nats(hub: Arc<Hub>) {
    let stats = hub.nats.statistics();
    let mut seen = stats.connects.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(hub.cfg.nats_watch_interval).await;
        let now = stats.connects.load(Ordering::Relaxed);
        if now > seen {
            seen = now;
            info!(
                connects = now,
                "NATS connection (re)established; re-syncing sessions from Redis."
            );
            hub.resync().await;
        }
    }
}
