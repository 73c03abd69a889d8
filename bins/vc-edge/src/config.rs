//! The edge's own settings: identity, limits and timings, as plain data (tests shorten the timings).

use std::time::Duration;

use vc_shared::config::Settings;
use vc_shared::ws;

/// Everything an edge needs to know besides its connections. Built by [`EdgeConfig::from_settings`] in
/// `main`, or by [`EdgeConfig::new`] plus field edits in tests.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// This edge's id: sent in `auth_challenge`, covered by agents' signatures (a signature made for
    /// another edge does not verify here), and written to presence.
    pub edge_id: String,
    /// Most WebSocket sessions at once (a [`tokio::sync::Semaphore`]); upgrades beyond get 503.
    pub max_connections: usize,
    /// Most connections authenticating at once. Others wait, before their challenge is sent, for up
    /// to `handshake_timeout` (then close 1013): a reconnect storm is served in turn instead of every
    /// connection timing out together.
    pub max_authenticating: usize,
    /// Time for the HTTP upgrade request to arrive and complete.
    pub handshake_timeout: Duration,
    /// Time to a valid `auth_response` (contract: 10 s), then close 4408.
    pub auth_timeout: Duration,
    /// WebSocket ping period (contract: 20 s).
    pub ping_interval: Duration,
    /// A peer silent this long is closed 1001 (contract: 60 s).
    pub idle_timeout: Duration,
    /// Heartbeat period announced to agents in `auth_complete`.
    pub heartbeat_interval: Duration,
    /// Expiry of a live presence record; refreshed every `presence_refresh` by the edge.
    pub presence_ttl: Duration,
    /// How often the edge refreshes its sessions' presence (well under `presence_ttl`).
    pub presence_refresh: Duration,
    /// How long an offline presence record (with `lastSeen`) is kept after a goodbye.
    pub presence_offline_ttl: Duration,
    /// Frames queued per session before the agent counts as too slow and is closed 1008.
    pub send_queue: usize,
    /// Longest a single frame write may block before the agent counts as too slow.
    pub write_timeout: Duration,
    /// Largest frame or message accepted (contract: 64 KiB), else close 1009.
    pub max_message_bytes: usize,
    /// tungstenite's read buffer per connection (allocated eagerly; small keeps idle sessions cheap).
    pub read_buffer_bytes: usize,
    /// Sustained inbound frames per second per session (token bucket refill).
    pub rate_per_sec: u32,
    /// Inbound burst per session (token bucket size); beyond it: close 1008.
    pub rate_burst: u32,
    /// On shutdown: how long sessions get to close (1012) before the edge stops anyway.
    pub drain_timeout: Duration,
    /// How often the edge checks whether its NATS client reconnected (then it re-syncs from Redis).
    pub nats_watch_interval: Duration,
    /// How long a subscribe/publish round trip through NATS may take before the edge gives up on it.
    pub barrier_timeout: Duration,
}

impl EdgeConfig {
    /// The contract's defaults for an edge called `edge_id`.
    pub fn new(edge_id: impl Into<String>) -> Self {
        EdgeConfig {
            edge_id: edge_id.into(),
            max_connections: 10_000,
            // Authentication is a signature check and three Redis round trips: 256 in flight keep
            // two cores busy without letting a storm of thousands share the CPU until all time out.
            max_authenticating: 256,
            handshake_timeout: Duration::from_secs(10),
            auth_timeout: ws::AUTH_TIMEOUT,
            ping_interval: ws::PING_INTERVAL,
            idle_timeout: ws::IDLE_TIMEOUT,
            heartbeat_interval: ws::HEARTBEAT_INTERVAL,
            presence_ttl: Duration::from_secs(90),
            presence_refresh: Duration::from_secs(30),
            presence_offline_ttl: Duration::from_secs(7 * 24 * 3600),
            // An agent normally has 0–2 frames in flight (config + pong); 64 absorbs a burst of
            // pushes while one write is slow, and costs nothing until used.
            send_queue: 64,
            write_timeout: Duration::from_secs(10),
            max_message_bytes: ws::MAX_MESSAGE_BYTES,
            // Agent frames are acks and heartbeats of ~200 bytes; larger messages grow the buffer on
            // demand (up to `max_message_bytes`). Measured: 4 KiB → 1 KiB saves ~3 KB per idle session.
            read_buffer_bytes: 1024,
            // An agent sends a heartbeat every 30 s and one ack per config: 20/s sustained with a
            // burst of 40 is far above honest use and cheap to enforce.
            rate_per_sec: 20,
            rate_burst: 40,
            // Contract: exit within 10 s of SIGTERM. Sessions close in parallel (each waits at most
            // 1 s for its peer's close handshake); 7 s leaves room for the rest of the shutdown.
            drain_timeout: Duration::from_secs(7),
            nats_watch_interval: Duration::from_secs(1),
            barrier_timeout: Duration::from_secs(5),
        }
    }

    /// From validated [`Settings`] (`VC_EDGE_ID`, `VC_EDGE_MAX_CONNECTIONS`); without `VC_EDGE_ID` the id
    /// is derived from `hostname` plus a random suffix.
    pub fn from_settings(settings: &Settings, hostname: Option<&str>) -> Self {
        let id = settings
            .edge_id
            .clone()
            .unwrap_or_else(|| derive_edge_id(hostname));
        let mut c = EdgeConfig::new(id);
        c.max_connections = settings.edge_max_connections;
        c
    }
}

/// `<hostname>-<6 hex>` (or `edge-<6 hex>`), restricted to the characters `VC_EDGE_ID` allows, so two
/// edges on one host get different ids.
pub fn derive_edge_id(hostname: Option<&str>) -> String {
    use rand::RngCore;
    let host: String = hostname
        .unwrap_or("")
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = host.trim_matches('-');
    let mut b = [0u8; 3];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let base = if host.is_empty() { "edge" } else { host };
    format!("{base}-{}", hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_valid_and_unique() {
        let a = derive_edge_id(Some("node-1.example.com"));
        assert!(a.starts_with("node-1-example-com-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, derive_edge_id(Some("node-1.example.com")));
        assert!(derive_edge_id(None).starts_with("edge-"));
    }
}
