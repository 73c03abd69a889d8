//! NATS connection and JetStream stream setup shared by the services.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::subjects;

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect.
    #[error("nats connect failed: {0}")]
    Connect(String),
    /// A JetStream call failed.
    #[error("jetstream: {0}")]
    JetStream(String),
    /// A call timed out.
    #[error("nats call timed out after {0:?}")]
    Timeout(Duration),
}

/// Timeout of one NATS request (publish ack, stream info).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands kept unprocessed at most (the stream refuses new ones beyond: publishers see an error).
pub const CMD_MAX_MSGS: i64 = 1_000_000;
/// Sync jobs kept at most.
pub const SYNC_MAX_MSGS: i64 = 200_000;
/// How long events are kept.
pub const EVT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long stream setup retries while JetStream is not ready.
pub const STREAM_SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// JetStream duplicate window for commands (our own dedupe in Redis lasts longer).
pub const CMD_DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Connects with retry-on-reconnect and a bounded outgoing buffer. `name` identifies the client in
/// `nats-server` monitoring.
///
/// `url` may carry credentials (`nats://user:password@host:4222`, the per-component users of
/// `nats/auth.conf`). async-nats ignores credentials in URLs (nats-io/nats.rs#1623), so they are taken
/// from the first URL that has them, passed as options, and stripped from the addresses (which
/// async-nats may log); an address is never echoed in an error with its password.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    let mut creds: Option<(String, String)> = None;
    let mut urls: Vec<async_nats::ServerAddr> = Vec::new();
    for (i, u) in url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
    {
        let addr = u
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| BusError::Connect(format!("NATS_URL entry {}: {e}", i + 1)))?;
        if creds.is_none() && addr.has_user_pass() {
            creds = Some((
                addr.username().unwrap_or_default().to_string(),
                addr.password().unwrap_or_default().to_string(),
            ));
        }
        let mut bare = addr.into_inner();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        urls.push(
            async_nats::ServerAddr::from_url(bare)
                .map_err(|e| BusError::Connect(format!("NATS_URL entry {}: {e}", i + 1)))?,
        );
    }
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(CALL_TIMEOUT))
        .client_capacity(8192)
        .subscription_capacity(65_536)
        .max_reconnects(None);
    if let Some((user, password)) = creds {
        opts = opts.user_and_password(user, password);
    }
    let client = opts
        .connect(urls)
        .await
        .map_err(|e| BusError::Connect(e.to_string()))?;
    Ok(client)
}

/// Waits until the client is connected (bounded).
pub async fn wait_connected(client: &async_nats::Client, within: Duration) -> Result<(), BusError> {
    let deadline = tokio::time::Instant::now() + within;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            return Err(BusError::Timeout(within));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Creates the streams the control plane uses when missing (an existing stream keeps its config: change
/// replicas or limits with `nats stream edit`). Idempotent; every service may call it.
pub async fn ensure_streams(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    let specs = [
        stream::Config {
            name: subjects::CMD_STREAM.into(),
            subjects: vec![subjects::CMD_ALL.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: CMD_MAX_MSGS,
            discard: stream::DiscardPolicy::New,
            duplicate_window: CMD_DUPLICATE_WINDOW,
            max_message_size: 1024 * 1024,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: subjects::SYNC_STREAM.into(),
            subjects: vec![subjects::SYNC_ALL.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: SYNC_MAX_MSGS,
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(60),
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: subjects::EVT_STREAM.into(),
            subjects: vec![subjects::EVT_ALL.into()],
            retention: stream::RetentionPolicy::Limits,
            max_age: EVT_MAX_AGE,
            max_messages: 5_000_000,
            discard: stream::DiscardPolicy::Old,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            // The audit trail: nobody deletes or purges it; it ages out.
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        },
        stream::Config {
            name: subjects::DLQ_STREAM.into(),
            subjects: vec!["vc.dlq.>".into()],
            retention: stream::RetentionPolicy::Limits,
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_messages: 100_000,
            discard: stream::DiscardPolicy::Old,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        },
    ];
    // JetStream may not be ready yet right after a server (re)start: retry until a deadline.
    let deadline = tokio::time::Instant::now() + STREAM_SETUP_DEADLINE;
    for spec in specs {
        let name = spec.name.clone();
        loop {
            let fut = js.get_or_create_stream(spec.clone());
            let err = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => BusError::JetStream(format!("stream {name}: {e}")),
                Err(_) => BusError::Timeout(CALL_TIMEOUT),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(err);
            }
            tracing::warn!(error = %err, "JetStream not ready; retrying stream setup.");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Streams whose messages nobody may delete or purge (`deny_delete`, `deny_purge`): the audit trail
/// and the dead letters.
pub const SEALED_HISTORY: [&str; 2] = [subjects::EVT_STREAM, subjects::DLQ_STREAM];

/// Turns on `deny_delete` and `deny_purge` on [`SEALED_HISTORY`] streams created before they were
/// set (JetStream allows turning them on, never off). The worker calls it at start; its NATS user may
/// update those two streams.
pub async fn seal_history(js: &jetstream::Context) -> Result<(), BusError> {
    for name in SEALED_HISTORY {
        let mut s = tokio::time::timeout(CALL_TIMEOUT, js.get_stream(name))
            .await
            .map_err(|_| BusError::Timeout(CALL_TIMEOUT))?
            .map_err(|e| BusError::JetStream(format!("stream {name}: {e}")))?;
        let mut config = s.cached_info().config.clone();
        if config.deny_delete && config.deny_purge {
            continue;
        }
        config.deny_delete = true;
        config.deny_purge = true;
        tokio::time::timeout(CALL_TIMEOUT, js.update_stream(config))
            .await
            .map_err(|_| BusError::Timeout(CALL_TIMEOUT))?
            .map_err(|e| BusError::JetStream(format!("sealing stream {name}: {e}")))?;
        tracing::info!(
            stream = name,
            "Stream sealed: messages can no longer be deleted or purged."
        );
        let _ = s.info().await;
    }
    Ok(())
}
