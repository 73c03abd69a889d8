//! The edge's own settings: identity, limits, timings and TLS, as plain data (tests shorten the
//! timings and set TLS with [`EdgeTls::from_pem_files`]).

use std::path::Path;
use std::time::Duration;

use vc_shared::config::Settings;
use vc_shared::ws;

use crate::tls::{EdgeTls, TlsError};

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
    /// TLS on the listener (`VC_EDGE_TLS_CERT`, `VC_EDGE_TLS_KEY`): `wss://` and `https://` only.
    /// `None`: plain `ws://` and `http://`, for loopback, development, or behind a TLS proxy. The
    /// handshake counts against `handshake_timeout`.
    pub tls: Option<EdgeTls>,
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
            tls: None,
        }
    }

    /// From validated [`Settings`] (`VC_EDGE_ID`, `VC_EDGE_MAX_CONNECTIONS`, `VC_EDGE_TLS_CERT` and
    /// `VC_EDGE_TLS_KEY`); without `VC_EDGE_ID` the id is derived from `hostname` plus a random suffix.
    /// Reads the TLS files: every problem with them is an error naming the variable and the file.
    pub fn from_settings(settings: &Settings, hostname: Option<&str>) -> Result<Self, Vec<String>> {
        let id = settings
            .edge_id
            .clone()
            .unwrap_or_else(|| derive_edge_id(hostname));
        let mut c = EdgeConfig::new(id);
        c.max_connections = settings.edge_max_connections;
        c.tls = match (
            tls_path(&settings.edge_tls_cert),
            tls_path(&settings.edge_tls_key),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let named = |e: TlsError| {
                    let var = match &e {
                        TlsError::Read { path, .. } if path == Path::new(cert) => {
                            "VC_EDGE_TLS_CERT"
                        }
                        TlsError::Certificate { .. } => "VC_EDGE_TLS_CERT",
                        TlsError::Unusable { .. } => "VC_EDGE_TLS_CERT and VC_EDGE_TLS_KEY",
                        TlsError::Read { .. } | TlsError::Key { .. } => "VC_EDGE_TLS_KEY",
                    };
                    format!("{var}: {e}")
                };
                let tls = EdgeTls::from_pem_files_all_errors(Path::new(cert), Path::new(key))
                    .map_err(|errors| errors.into_iter().map(named).collect::<Vec<_>>())?;
                Some(tls)
            }
            // `Settings::validate` reports these; checked again so that this never runs half-set.
            (Some(_), None) => {
                return Err(vec![
                    "VC_EDGE_TLS_KEY is required when VC_EDGE_TLS_CERT is set".into(),
                ])
            }
            (None, Some(_)) => {
                return Err(vec![
                    "VC_EDGE_TLS_CERT is required when VC_EDGE_TLS_KEY is set".into(),
                ])
            }
        };
        Ok(c)
    }
}

/// A TLS file setting, when set to something other than blanks.
fn tls_path(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|p| !p.is_empty())
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

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(None, &env).unwrap()
    }

    #[test]
    fn tls_settings_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let junk = junk.to_str().unwrap();
        let missing = dir.path().join("missing.key");
        let missing = missing.to_str().unwrap();

        let c = EdgeConfig::from_settings(&settings(&[]), Some("h")).unwrap();
        assert!(c.tls.is_none());
        // Half set: the missing one is named.
        let errs =
            EdgeConfig::from_settings(&settings(&[("VC_EDGE_TLS_CERT", junk)]), None).unwrap_err();
        assert!(
            errs[0].starts_with("VC_EDGE_TLS_KEY is required"),
            "{errs:?}"
        );
        // Bad files: every one reported, each naming its variable and its file.
        let errs = EdgeConfig::from_settings(
            &settings(&[("VC_EDGE_TLS_CERT", junk), ("VC_EDGE_TLS_KEY", missing)]),
            None,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("VC_EDGE_TLS_CERT: ") && errs[0].contains(junk),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("VC_EDGE_TLS_KEY: ") && errs[1].contains(missing),
            "{errs:?}"
        );
    }

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
