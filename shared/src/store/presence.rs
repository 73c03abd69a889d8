//! Presence and acks of agents, written by `vc-edge` only.
//!
//! `presence:{<did>}` holds `online` ("1" live, "0" after a goodbye),
//! `edgeId` (while online), `sessionId`, `since` (the session's rank: Redis-clock milliseconds, strictly
//! increasing per DID, so "newer session" never depends on the edges' clocks), `lastSeen` (RFC 3339) and
//! `activeLlm` (JSON text from heartbeats). A live record expires unless its edge refreshes it, so a dead
//! edge's agents turn offline by themselves; an offline record keeps `lastSeen` for a while longer.
//! `ack:{<did>}` holds the highest version the agent acknowledged.

use std::time::Duration;

use super::{keys, timed, ttl_ms, Conn, Store, StoreError};

const PRESENCE_CLAIM_LUA: &str = r#"
-- KEYS[1] = presence:{did}; ARGV = sessionId, edgeId, lastSeen, ttl ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('HGET', KEYS[1], 'since') or '0') or 0
local since = now
if since <= prev then since = prev + 1 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'online', '1', 'edgeId', ARGV[2], 'sessionId', ARGV[1], 'since', tostring(since), 'lastSeen', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return since
"#;

const PRESENCE_REFRESH_LUA: &str = r#"
-- KEYS[1] = presence:{did}; ARGV = sessionId, edgeId, since, lastSeen, ttl ms
-- Returns 1 while the session holds the record, 0 when a newer session holds it.
local cur = redis.call('HGET', KEYS[1], 'sessionId')
if cur and cur ~= ARGV[1] then
  local csince = tonumber(redis.call('HGET', KEYS[1], 'since') or '0') or 0
  if csince > tonumber(ARGV[3]) then return 0 end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'online', '1', 'edgeId', ARGV[2], 'sessionId', ARGV[1], 'since', ARGV[3], 'lastSeen', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#;

const PRESENCE_HEARTBEAT_LUA: &str = r#"
-- KEYS[1] = presence:{did}; ARGV = sessionId, lastSeen, ttl ms, activeLlm ('' = unchanged)
-- Returns 1 (held), 0 (a newer session holds the record) or -1 (no record).
local cur = redis.call('HGET', KEYS[1], 'sessionId')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lastSeen', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'activeLlm', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

const PRESENCE_OFFLINE_LUA: &str = r#"
-- KEYS[1] = presence:{did}; ARGV = sessionId, lastSeen, ttl ms of the offline record
if redis.call('HGET', KEYS[1], 'sessionId') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'online', '0', 'lastSeen', ARGV[2])
redis.call('HDEL', KEYS[1], 'edgeId')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

const ACK_MAX_LUA: &str = r#"
-- KEYS[i] = ack:{did}; ARGV[i] = version. Keeps each key's highest version; returns how many moved.
local n = 0
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '-1') or -1
  if tonumber(ARGV[i]) > cur then redis.call('SET', KEYS[i], ARGV[i]); n = n + 1 end
end
return n
"#;

/// Acks recorded by one script call on a single server (bounds the time Redis spends in one script).
const ACKS_PER_CALL: usize = 512;

static PRESENCE_CLAIM: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(PRESENCE_CLAIM_LUA));
static PRESENCE_REFRESH: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(PRESENCE_REFRESH_LUA));
static PRESENCE_HEARTBEAT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(PRESENCE_HEARTBEAT_LUA));
static PRESENCE_OFFLINE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(PRESENCE_OFFLINE_LUA));
static ACK_MAX: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ACK_MAX_LUA));

/// Whether a session still holds its agent's presence record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceHold {
    /// It does.
    Held,
    /// A newer session holds it: the session must close (4409).
    Superseded,
    /// There is no record (expired or flushed): refresh re-creates it.
    Missing,
}

impl Store {
    /// Marks a newly authenticated session as the agent's live one (whatever held the record before)
    /// and returns its rank `since`: Redis-clock milliseconds, strictly greater than the previous
    /// session's. The record expires after `ttl` unless refreshed.
    pub async fn presence_claim(
        &self,
        did: &str,
        session_id: &str,
        edge_id: &str,
        last_seen: &str,
        ttl: Duration,
    ) -> Result<i64, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = PRESENCE_CLAIM.key(keys::presence(did));
        inv.arg(session_id)
            .arg(edge_id)
            .arg(last_seen)
            .arg(ttl_ms(ttl));
        timed(inv.invoke_async(&mut c)).await
    }

    /// Extends a live session's record (re-creating it if it expired). `false` when a newer session
    /// holds the record: the caller closes its session.
    pub async fn presence_refresh(
        &self,
        did: &str,
        session_id: &str,
        edge_id: &str,
        since: i64,
        last_seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = PRESENCE_REFRESH.key(keys::presence(did));
        inv.arg(session_id)
            .arg(edge_id)
            .arg(since)
            .arg(last_seen)
            .arg(ttl_ms(ttl));
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Records a heartbeat (`lastSeen`, and `activeLlm` JSON when given) if the session still holds
    /// the record.
    pub async fn presence_heartbeat(
        &self,
        did: &str,
        session_id: &str,
        last_seen: &str,
        active_llm: Option<&str>,
        ttl: Duration,
    ) -> Result<PresenceHold, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = PRESENCE_HEARTBEAT.key(keys::presence(did));
        inv.arg(session_id)
            .arg(last_seen)
            .arg(ttl_ms(ttl))
            .arg(active_llm.unwrap_or(""));
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(match n {
            1 => PresenceHold::Held,
            0 => PresenceHold::Superseded,
            _ => PresenceHold::Missing,
        })
    }

    /// Marks the agent offline (`online` = "0", `lastSeen` kept for `ttl`) if the session still holds
    /// the record; a newer session's record is left alone.
    pub async fn presence_offline(
        &self,
        did: &str,
        session_id: &str,
        last_seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = PRESENCE_OFFLINE.key(keys::presence(did));
        inv.arg(session_id).arg(last_seen).arg(ttl_ms(ttl));
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Records acknowledged config versions, keeping each agent's highest. On a single server one
    /// script call takes up to 512 acks; on a cluster the acks live in different slots, so each is its
    /// own call (sent together). Returns how many records moved forward.
    pub async fn record_acks(&self, acks: &[(&str, u64)]) -> Result<usize, StoreError> {
        let mut moved = 0usize;
        match &self.conn {
            Conn::Single(_) => {
                for chunk in acks.chunks(ACKS_PER_CALL) {
                    let mut inv = ACK_MAX.prepare_invoke();
                    for (did, _) in chunk {
                        inv.key(keys::ack(did));
                    }
                    for (_, v) in chunk {
                        inv.arg(*v);
                    }
                    let mut c = self.conn.clone();
                    let n: i64 = timed(inv.invoke_async(&mut c)).await?;
                    moved += n.max(0) as usize;
                }
            }
            Conn::Cluster(_) => {
                let calls = acks.iter().map(|(did, v)| {
                    let mut c = self.conn.clone();
                    let mut inv = ACK_MAX.key(keys::ack(did));
                    inv.arg(*v);
                    async move { timed(inv.invoke_async::<i64>(&mut c)).await }
                });
                for r in futures::future::join_all(calls).await {
                    moved += r?.max(0) as usize;
                }
            }
        }
        Ok(moved)
    }
}
