//! The Redis store: keyspace, reads, and the atomic commit of a command's writes.
//!
//! # Keyspace
//! Everything a command changes lives under the hash tag `{vc}` (one Redis Cluster slot), so that a
//! command's writes commit atomically in one Lua call on a cluster as on a single server. The catalog is
//! small (models, realms, grants, memberships, agent records) and written by one command at a time.
//! High-churn per-agent data (presence, acks) and locks live under their own tags so they spread
//! across a cluster. No request path scans the keyspace: every listing reads an index set or hash.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{vc}:rev` | string | catalog revision: the number of commands committed (optimistic concurrency) |
//! | `{vc}:lane`, `{vc}:lane-epoch`, `{vc}:lane-seq` | string | the command lane's lease (fencing token), its epochs, the `VC_CMD` sequence of the last command applied |
//! | `{vc}:secret-check` | string | a canary sealed with `VC_SECRET_KEY` (wrong key → services refuse to start) |
//! | `litellm:{status}` | string | last reconcile report (worker → `GET /api/litellm/status`) |
//! | `{vc}:version-seq` | string | last config version handed out (one counter for all agents) |
//! | `{vc}:model:<id>` | string | [`StoredModel`] JSON |
//! | `{vc}:models` | set | model ids |
//! | `{vc}:model-names` | hash | litellmModelName → model id (uniqueness) |
//! | `{vc}:model:<id>:grants` | hash | realm id → grantedAt |
//! | `{vc}:model:<id>:routed` | set | DIDs in registry mode on the model |
//! | `{vc}:routing:model:<id>` | string | [`crate::routing::ModelRouting`] JSON (a tombstone after delete) |
//! | `{vc}:routing:realm:<id>` | string | [`crate::routing::RealmRouting`] JSON (a tombstone after delete) |
//! | `{vc}:realm:<id>` | string | [`StoredRealm`] JSON (with the sealed key) |
//! | `{vc}:realms` | set | realm ids |
//! | `{vc}:rotating` | set | realm ids whose key is being rotated (pending or retiring keys) |
//! | `{vc}:realm-slugs` | hash | slug → realm id |
//! | `{vc}:realm:<id>:grants` | hash | model id → grantedAt |
//! | `{vc}:realm:<id>:members` | hash | DID → [`Membership`] JSON |
//! | `{vc}:realm:<id>:routed` | set | DIDs routed through the realm |
//! | `{vc}:agent:<did>` | string | [`StoredAgent`] JSON |
//! | `{vc}:agents` | set | DIDs |
//! | `{vc}:agent:<did>:realms` | hash | realm id → [`Membership`] JSON |
//! | `{vc}:cmd:<id>` | string | [`CommandRecord`] JSON, expires after [`COMMAND_TTL_MS`] |
//! | `{vc}:idem:<sha256>` | string | command id of an `Idempotency-Key`, expires after [`IDEMPOTENCY_TTL_MS`] |
//! | `{vc}:sync:model:<id>`, `{vc}:sync:realm:<id>` | string | [`SyncRecord`] JSON |
//! | `spend:{<realmId>}` | string | [`crate::budget::RealmSpend`] JSON: the realm's spend as the worker last read it from LiteLLM |
//! | `webhooks:{deliveries}` | list | [`WebhookDelivery`] JSON, newest first, capped at [`WEBHOOK_LOG_LEN`] |
//! | `{vc}:audit` | stream | audit events, capped at [`AUDIT_MAX_LEN`] |
//! | `presence:{<did>}` | hash | online, edgeId, sessionId, lastSeen, activeLlm (expires) |
//! | `ack:{<did>}` | string | last acknowledged config version |
//! | `lock:{<name>}` | string | short leases (LiteLLM sync of one entity, reconcile) |

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::CommandRecord;
use crate::domain::{Membership, StoredAgent, StoredModel, StoredRealm, SyncRecord};

mod changes;
mod lane;
mod presence;
mod rotation;
mod routing;
mod sealed;
mod sessions;
mod spend;
mod tokens;

pub use changes::{Change, ChangesHead};
pub use lane::{BatchCommit, BatchWrites, LaneLease, ManyReads, ReadPlan};
pub use presence::PresenceHold;
pub use sealed::{ResealCount, ResealPlan, ResealReport, SealedRecord};
pub use sessions::StoredSession;
pub use spend::{spend_key, WebhookDelivery, WEBHOOK_LOG, WEBHOOK_LOG_LEN};
pub use tokens::{token_keys, StoredToken};

/// How long a command's record (and so its dedupe) is kept: 7 days.
pub const COMMAND_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// How long an `Idempotency-Key` is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Audit stream length cap (approximate trimming).
pub const AUDIT_MAX_LEN: u64 = 1_000_000;
/// Timeout of one Redis call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Key builders. Every catalog key carries the `{vc}` hash tag.
pub mod keys {
    /// Catalog revision.
    pub const REV: &str = "{vc}:rev";
    /// Model ids.
    pub const MODELS: &str = "{vc}:models";
    /// LiteLLM name → model id.
    pub const MODEL_NAMES: &str = "{vc}:model-names";
    /// Realm ids.
    pub const REALMS: &str = "{vc}:realms";
    /// Realms whose key is being rotated (a pending or retiring key).
    pub const ROTATING: &str = "{vc}:rotating";
    /// Slug → realm id.
    pub const REALM_SLUGS: &str = "{vc}:realm-slugs";
    /// DIDs.
    pub const AGENTS: &str = "{vc}:agents";
    /// Audit stream.
    pub const AUDIT: &str = "{vc}:audit";
    /// The change log (a stream; see `CHANGES_LUA`).
    pub const CHANGES: &str = "{vc}:changes";
    /// Number of the newest change-log entry.
    pub const CHANGES_SEQ: &str = "{vc}:changes-seq";
    /// A value sealed with the deployment's secret key, to detect a wrong `VC_SECRET_KEY` at start.
    pub const SECRET_CHECK: &str = "{vc}:secret-check";
    /// The command lane's lease: `<epoch>:<holder>` of the worker applying commands (expires unless
    /// renewed).
    pub const LANE: &str = "{vc}:lane";
    /// Epochs of the lane's lease (the fencing token's first part).
    pub const LANE_EPOCH: &str = "{vc}:lane-epoch";
    /// JetStream sequence (`VC_CMD`) of the last command applied.
    pub const LANE_SEQ: &str = "{vc}:lane-seq";
    /// Last config version handed out (versions come from one counter, so one realm broadcast carries
    /// one version for all its agents).
    pub const VERSION_SEQ: &str = "{vc}:version-seq";
    /// A model.
    pub fn model(id: &str) -> String {
        format!("{{vc}}:model:{id}")
    }
    /// A model's grants.
    pub fn model_grants(id: &str) -> String {
        format!("{{vc}}:model:{id}:grants")
    }
    /// DIDs in registry mode on the model.
    pub fn model_routed(id: &str) -> String {
        format!("{{vc}}:model:{id}:routed")
    }
    /// A model's routing state (what registry-mode agents derive their config from; kept as a
    /// tombstone after a delete).
    pub fn routing_model(id: &str) -> String {
        format!("{{vc}}:routing:model:{id}")
    }
    /// A realm's routing state (what its routed agents derive their config from; kept as a tombstone
    /// after a delete).
    pub fn routing_realm(id: &str) -> String {
        format!("{{vc}}:routing:realm:{id}")
    }
    /// A realm.
    pub fn realm(id: &str) -> String {
        format!("{{vc}}:realm:{id}")
    }
    /// A realm's grants.
    pub fn realm_grants(id: &str) -> String {
        format!("{{vc}}:realm:{id}:grants")
    }
    /// A realm's members.
    pub fn realm_members(id: &str) -> String {
        format!("{{vc}}:realm:{id}:members")
    }
    /// DIDs routed through a realm.
    pub fn realm_routed(id: &str) -> String {
        format!("{{vc}}:realm:{id}:routed")
    }
    /// An agent.
    pub fn agent(did: &str) -> String {
        format!("{{vc}}:agent:{did}")
    }
    /// An agent's memberships.
    pub fn agent_realms(did: &str) -> String {
        format!("{{vc}}:agent:{did}:realms")
    }
    /// A command record.
    pub fn command(id: &str) -> String {
        format!("{{vc}}:cmd:{id}")
    }
    /// An idempotency key (already hashed).
    pub fn idempotency(hash: &str) -> String {
        format!("{{vc}}:idem:{hash}")
    }
    /// Sync record of a model.
    pub fn sync_model(id: &str) -> String {
        format!("{{vc}}:sync:model:{id}")
    }
    /// Sync record of a realm key.
    pub fn sync_realm(id: &str) -> String {
        format!("{{vc}}:sync:realm:{id}")
    }
    /// Presence of an agent.
    pub fn presence(did: &str) -> String {
        format!("presence:{{{did}}}")
    }
    /// Last acknowledged version of an agent.
    pub fn ack(did: &str) -> String {
        format!("ack:{{{did}}}")
    }
    /// A lease.
    pub fn lock(name: &str) -> String {
        format!("lock:{{{name}}}")
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Could not connect.
    #[error("redis connect failed: {0}")]
    Connect(String),
    /// A call failed.
    #[error("redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// A call timed out.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Stored data could not be decoded.
    #[error("stored value at {key} is corrupt: {reason}")]
    Corrupt {
        /// Key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// One write of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `SET key value`.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `SET key value PX ms`.
    Setpx {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Expiry.
        ms: u64,
    },
    /// `DEL key`.
    Del {
        /// Key.
        key: String,
    },
    /// `HSET key field value`.
    Hset {
        /// Key.
        key: String,
        /// Field.
        field: String,
        /// Value.
        value: String,
    },
    /// `HDEL key field`.
    Hdel {
        /// Key.
        key: String,
        /// Field.
        field: String,
    },
    /// `SADD key member`.
    Sadd {
        /// Key.
        key: String,
        /// Member.
        member: String,
    },
    /// `UNLINK key`: constant time in the commit, whatever the size of the value (Redis frees it in the
    /// background).
    Unlink {
        /// Key.
        key: String,
    },
    /// `SREM key member`.
    Srem {
        /// Key.
        key: String,
        /// Member.
        member: String,
    },
    /// `XADD key MAXLEN ~ n * data <value>`.
    Xadd {
        /// Key.
        key: String,
        /// Value (JSON).
        value: String,
    },
}

impl Op {
    /// `SET key json(value)`.
    pub fn set_json<T: Serialize>(key: String, value: &T) -> Op {
        Op::Set {
            key,
            value: serde_json::to_string(value).unwrap_or_default(),
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Written; the new revision.
    Applied(u64),
    /// The revision moved since it was read: re-read and recompute.
    Conflict,
    /// The command was already applied (its record is complete).
    AlreadyApplied,
}

/// The writes of a commit, as a Lua function shared by the one-command and the batch commit scripts.
/// The writes travel as flat script arguments from `ARGV[first]` on, as [`push_ops`] lays them out
/// (a code, then the op's arguments), not as a JSON array: the records and events they carry are JSON
/// already, and escaping them into an array that `cjson` decodes in Redis cost as much as the writes.
const APPLY_OPS_LUA: &str = r#"
-- s key value | p key value ms | d key | u key | h key field value | H key field | a key member |
-- r key member | x key value
-- Every catalog key written (not command records, idempotency keys or the audit stream) is noted in
-- the change log (see note_changes).
local function apply_ops(first, maxlen)
  local i, n = first, #ARGV
  local changed, seen = {}, {}
  while i <= n do
    local op, key = ARGV[i], ARGV[i+1]
    if op == 's' then redis.call('SET', key, ARGV[i+2]); i = i + 3
    elseif op == 'p' then redis.call('SET', key, ARGV[i+2], 'PX', ARGV[i+3]); i = i + 4
    elseif op == 'd' then redis.call('DEL', key); i = i + 2
    elseif op == 'u' then redis.call('UNLINK', key); i = i + 2
    elseif op == 'h' then redis.call('HSET', key, ARGV[i+2], ARGV[i+3]); i = i + 4
    elseif op == 'H' then redis.call('HDEL', key, ARGV[i+2]); i = i + 3
    elseif op == 'a' then redis.call('SADD', key, ARGV[i+2]); i = i + 3
    elseif op == 'r' then redis.call('SREM', key, ARGV[i+2]); i = i + 3
    elseif op == 'x' then redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'data', ARGV[i+2]); i = i + 3; key = nil
    else return 'unknown op ' .. tostring(op) end
    if key and not seen[key] and string.sub(key, 1, 9) ~= '{vc}:cmd:' and string.sub(key, 1, 10) ~= '{vc}:idem:' then
      seen[key] = true
      changed[#changed + 1] = key
    end
  end
  return nil, note_changes(changed)
end
"#;

/// The change log: every write of catalog keys appends one entry to `{vc}:changes` (a stream trimmed
/// to about [`CHANGES_MAX_LEN`] entries) with `n`, a counter without gaps (`{vc}:changes-seq`), and `k`,
/// the keys written, one per line. API instances follow it to keep their read model current
/// (`vc-api` `read`); a reader that sees `n` jump has missed entries and reloads everything.
const CHANGES_LUA: &str = r#"
local function note_changes(changed)
  if #changed == 0 then return 0 end
  local n = redis.call('INCR', '{vc}:changes-seq')
  redis.call('XADD', '{vc}:changes', 'MAXLEN', '~', 20000, '*', 'n', n, 'k', table.concat(changed, '\n'))
  return n
end
"#;

/// Entries the change log keeps, about (`MAXLEN ~` in [`CHANGES_LUA`]).
pub const CHANGES_MAX_LEN: usize = 20_000;

/// Appends `ops` to a commit script's arguments, laid out as `apply_ops` reads them.
fn push_ops(inv: &mut redis::ScriptInvocation<'_>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Set { key, value } => inv.arg("s").arg(key).arg(value),
            Op::Setpx { key, value, ms } => inv.arg("p").arg(key).arg(value).arg(*ms),
            Op::Del { key } => inv.arg("d").arg(key),
            Op::Unlink { key } => inv.arg("u").arg(key),
            Op::Hset { key, field, value } => inv.arg("h").arg(key).arg(field).arg(value),
            Op::Hdel { key, field } => inv.arg("H").arg(key).arg(field),
            Op::Sadd { key, member } => inv.arg("a").arg(key).arg(member),
            Op::Srem { key, member } => inv.arg("r").arg(key).arg(member),
            Op::Xadd { key, value } => inv.arg("x").arg(key).arg(value),
        };
    }
}

/// One command's commit: revision check, not-yet-applied check, writes, `INCR {vc}:rev`.
const COMMIT_LUA: &str = r#"
-- KEYS[1] = {vc}:rev, KEYS[2] = command record key; ARGV[1] = expected rev,
-- ARGV[2] = audit max length, ARGV[3..] = the writes (see apply_ops)
local rev = tonumber(redis.call('GET', KEYS[1]) or '0')
if rev ~= tonumber(ARGV[1]) then return -1 end
local rec = redis.call('GET', KEYS[2])
if rec then
  local ok, decoded = pcall(cjson.decode, rec)
  if ok and decoded['status'] ~= 'pending' then return -2 end
end
local err = apply_ops(3, ARGV[2])
if err then return redis.error_reply(err) end
return redis.call('INCR', KEYS[1])
"#;

const SYNC_RECORD_LUA: &str = r#"
-- KEYS[1] = sync record key; ARGV[1] = gen; ARGV[2] = new record JSON
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and tonumber(decoded['gen'] or 0) > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
note_changes({KEYS[1]})
return 1
"#;

const UNLOCK_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const EXTEND_LOCK_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

static EXTEND_LOCK: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(EXTEND_LOCK_LUA));

/// A connection to a single Redis or a Redis Cluster.
#[derive(Clone)]
pub enum Conn {
    /// One server (reconnects by itself).
    Single(redis::aio::ConnectionManager),
    /// A cluster (follows slot moves and failovers).
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The store. Cheap to clone: one multiplexed connection shared, and its scripts are statics (a
/// `redis::Script` holds its source, several KiB copied on every clone otherwise).
#[derive(Clone)]
pub struct Store {
    conn: Conn,
}

static COMMIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!("{CHANGES_LUA}{APPLY_OPS_LUA}{COMMIT_LUA}"))
});
static SYNC_RECORD: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(&format!("{CHANGES_LUA}{SYNC_RECORD_LUA}")));
static UNLOCK: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(UNLOCK_LUA));

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(_) => Err(StoreError::Timeout(CALL_TIMEOUT)),
    }
}

pub fn decode_json<T: DeserializeOwned>(
    key: &str,
    raw: Option<String>,
) -> Result<Option<T>, StoreError> {
    match raw {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            }),
    }
}

impl Store {
    /// Connects. `url` is one `redis://` URL, or several comma-separated for a Redis Cluster (also when
    /// it starts with `redis+cluster://`, which is rewritten to `redis://`).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let urls: Vec<String> = url
            .split(',')
            .map(|u| u.trim().replacen("redis+cluster://", "redis://", 1))
            .filter(|u| !u.is_empty())
            .collect();
        let cluster = urls.len() > 1 || url.starts_with("redis+cluster://");
        let conn = if cluster {
            let client = redis::cluster::ClusterClientBuilder::new(urls)
                .connection_timeout(Duration::from_secs(3))
                .response_timeout(CALL_TIMEOUT)
                .build()
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            let c = tokio::time::timeout(Duration::from_secs(10), client.get_async_connection())
                .await
                .map_err(|_| StoreError::Connect("timed out".into()))?
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            Conn::Cluster(c)
        } else {
            let client = redis::Client::open(urls.first().cloned().unwrap_or_default())
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(3)))
                .set_response_timeout(Some(CALL_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2));
            let c = tokio::time::timeout(
                Duration::from_secs(10),
                redis::aio::ConnectionManager::new_with_config(client, cfg),
            )
            .await
            .map_err(|_| StoreError::Connect("timed out".into()))?
            .map_err(|e| StoreError::Connect(e.to_string()))?;
            Conn::Single(c)
        };
        Ok(Store { conn })
    }

    /// The raw connection (for service-specific keys such as presence).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        timed(redis::cmd("PING").query_async::<String>(&mut c))
            .await
            .map(|_| ())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        timed(redis::cmd("GET").arg(key).query_async(&mut c)).await
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        decode_json(key, self.get(key).await?)
    }

    async fn mget_json<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let mut c = self.conn.clone();
            let raw: Vec<Option<String>> =
                timed(redis::cmd("MGET").arg(chunk).query_async(&mut c)).await?;
            for (k, v) in chunk.iter().zip(raw) {
                if let Some(t) = decode_json(k, v)? {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }

    async fn smembers(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        let mut v: Vec<String> = timed(redis::cmd("SMEMBERS").arg(key).query_async(&mut c)).await?;
        v.sort();
        Ok(v)
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut c = self.conn.clone();
        let mut v: Vec<(String, String)> =
            timed(redis::cmd("HGETALL").arg(key).query_async(&mut c)).await?;
        v.sort();
        Ok(v)
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        timed(redis::cmd("HGET").arg(key).arg(field).query_async(&mut c)).await
    }

    async fn hlen(&self, key: &str) -> Result<usize, StoreError> {
        let mut c = self.conn.clone();
        timed(redis::cmd("HLEN").arg(key).query_async(&mut c)).await
    }

    /// Last config version handed out.
    pub async fn version_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .get(keys::VERSION_SEQ)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Overwrites a completed command's record (to refresh its result after LiteLLM sync).
    pub async fn update_command(&self, rec: &CommandRecord) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: Option<String> = timed(
            redis::cmd("SET")
                .arg(keys::command(&rec.command_id))
                .arg(serde_json::to_string(rec).unwrap_or_default())
                .arg("XX")
                .arg("PX")
                .arg(COMMAND_TTL_MS)
                .query_async(&mut c),
        )
        .await?;
        Ok(())
    }

    /// Current catalog revision.
    pub async fn rev(&self) -> Result<u64, StoreError> {
        Ok(self
            .get(keys::REV)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// A model.
    pub async fn model(&self, id: &str) -> Result<Option<StoredModel>, StoreError> {
        self.get_json(&keys::model(id)).await
    }

    /// Every model, sorted by creation (newest first).
    pub async fn models(&self) -> Result<Vec<StoredModel>, StoreError> {
        let ids = self.smembers(keys::MODELS).await?;
        let mut v: Vec<StoredModel> = self
            .mget_json(&ids.iter().map(|i| keys::model(i)).collect::<Vec<_>>())
            .await?;
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Models by id (missing ones skipped).
    pub async fn models_by_id(&self, ids: &[String]) -> Result<Vec<StoredModel>, StoreError> {
        self.mget_json(&ids.iter().map(|i| keys::model(i)).collect::<Vec<_>>())
            .await
    }

    /// The model holding a LiteLLM name.
    pub async fn model_id_by_name(&self, litellm_name: &str) -> Result<Option<String>, StoreError> {
        self.hget(keys::MODEL_NAMES, litellm_name).await
    }

    /// A model's grants: (realm id, grantedAt).
    pub async fn model_grants(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.hgetall(&keys::model_grants(id)).await
    }

    /// Number of realms a model is granted to.
    pub async fn model_grant_count(&self, id: &str) -> Result<usize, StoreError> {
        self.hlen(&keys::model_grants(id)).await
    }

    /// A realm.
    pub async fn realm(&self, id: &str) -> Result<Option<StoredRealm>, StoreError> {
        self.get_json(&keys::realm(id)).await
    }

    /// Every realm, sorted by name.
    pub async fn realms(&self) -> Result<Vec<StoredRealm>, StoreError> {
        let ids = self.smembers(keys::REALMS).await?;
        let mut v: Vec<StoredRealm> = self
            .mget_json(&ids.iter().map(|i| keys::realm(i)).collect::<Vec<_>>())
            .await?;
        v.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(v)
    }

    /// Realms by id (missing ones skipped).
    pub async fn realms_by_id(&self, ids: &[String]) -> Result<Vec<StoredRealm>, StoreError> {
        self.mget_json(&ids.iter().map(|i| keys::realm(i)).collect::<Vec<_>>())
            .await
    }

    /// The realm holding a slug.
    pub async fn realm_id_by_slug(&self, slug: &str) -> Result<Option<String>, StoreError> {
        self.hget(keys::REALM_SLUGS, slug).await
    }

    /// A realm's grants: (model id, grantedAt).
    pub async fn realm_grants(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.hgetall(&keys::realm_grants(id)).await
    }

    /// A realm's members.
    pub async fn realm_members(&self, id: &str) -> Result<Vec<Membership>, StoreError> {
        let key = keys::realm_members(id);
        self.hgetall(&key)
            .await?
            .into_iter()
            .map(|(_, v)| decode_json(&key, Some(v)).map(|m| m.expect("some")))
            .collect()
    }

    /// How many members a realm has.
    pub async fn realm_member_count(&self, id: &str) -> Result<usize, StoreError> {
        self.hlen(&keys::realm_members(id)).await
    }

    /// How many agents are routed through a realm.
    pub async fn realm_routed_count(&self, id: &str) -> Result<usize, StoreError> {
        let mut c = self.conn.clone();
        timed(
            redis::cmd("SCARD")
                .arg(keys::realm_routed(id))
                .query_async(&mut c),
        )
        .await
    }

    /// An agent.
    pub async fn agent(&self, did: &str) -> Result<Option<StoredAgent>, StoreError> {
        self.get_json(&keys::agent(did)).await
    }

    /// Agents by DID (missing ones skipped).
    pub async fn agents_by_did(&self, dids: &[String]) -> Result<Vec<StoredAgent>, StoreError> {
        self.mget_json(&dids.iter().map(|d| keys::agent(d)).collect::<Vec<_>>())
            .await
    }

    /// Every agent, sorted by creation.
    pub async fn agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        let dids = self.smembers(keys::AGENTS).await?;
        let mut v = self.agents_by_did(&dids).await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.did.cmp(&b.did)));
        Ok(v)
    }

    /// An agent's memberships of realms that exist. (A realm delete leaves its members' back
    /// references behind, in constant time; the worker drops them when it next changes the agent.)
    pub async fn agent_realms(&self, did: &str) -> Result<Vec<Membership>, StoreError> {
        let all = self.agent_realms_raw(did).await?;
        if all.is_empty() {
            return Ok(all);
        }
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("SMISMEMBER");
        cmd.arg(keys::REALMS);
        for m in &all {
            cmd.arg(&m.realm_id);
        }
        let exists: Vec<bool> = timed(cmd.query_async(&mut c)).await?;
        Ok(all
            .into_iter()
            .zip(exists)
            .filter_map(|(m, e)| e.then_some(m))
            .collect())
    }

    /// An agent's membership records as stored, those of deleted realms included.
    pub async fn agent_realms_raw(&self, did: &str) -> Result<Vec<Membership>, StoreError> {
        let key = keys::agent_realms(did);
        self.hgetall(&key)
            .await?
            .into_iter()
            .map(|(_, v)| decode_json(&key, Some(v)).map(|m| m.expect("some")))
            .collect()
    }

    /// A command record.
    pub async fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.get_json(&keys::command(id)).await
    }

    /// Command records, in the order of `ids`, read together (`None`: no record, or one that does not
    /// decode).
    pub async fn commands(&self, ids: &[String]) -> Result<Vec<Option<CommandRecord>>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| keys::command(id)).collect();
        let raw = self.raw_mget(&keys).await?;
        Ok(keys
            .iter()
            .zip(raw)
            .map(|(k, v)| decode_json(k, v).ok().flatten())
            .collect())
    }

    /// Writes a pending record unless one exists. Returns whether it was written.
    pub async fn put_pending_command(&self, rec: &CommandRecord) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = timed(
            redis::cmd("SET")
                .arg(keys::command(&rec.command_id))
                .arg(serde_json::to_string(rec).unwrap_or_default())
                .arg("NX")
                .arg("PX")
                .arg(COMMAND_TTL_MS)
                .query_async(&mut c),
        )
        .await?;
        Ok(v.is_some())
    }

    /// Claims an idempotency key for a command id; returns the command id that holds it (the given one
    /// when newly claimed).
    pub async fn claim_idempotency(
        &self,
        hash: &str,
        command_id: &str,
    ) -> Result<String, StoreError> {
        let key = keys::idempotency(hash);
        let mut c = self.conn.clone();
        let set: Option<String> = timed(
            redis::cmd("SET")
                .arg(&key)
                .arg(command_id)
                .arg("NX")
                .arg("PX")
                .arg(IDEMPOTENCY_TTL_MS)
                .query_async(&mut c),
        )
        .await?;
        if set.is_some() {
            return Ok(command_id.to_string());
        }
        Ok(self
            .get(&key)
            .await?
            .unwrap_or_else(|| command_id.to_string()))
    }

    /// The sync record of a model.
    pub async fn sync_model(&self, id: &str) -> Result<SyncRecord, StoreError> {
        Ok(self
            .get_json(&keys::sync_model(id))
            .await?
            .unwrap_or_default())
    }

    /// The sync record of a realm key.
    pub async fn sync_realm(&self, id: &str) -> Result<SyncRecord, StoreError> {
        Ok(self
            .get_json(&keys::sync_realm(id))
            .await?
            .unwrap_or_default())
    }

    /// Writes a sync record unless a newer generation is already recorded.
    pub async fn put_sync_record(&self, key: &str, rec: &SyncRecord) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = SYNC_RECORD.key(key);
        inv.arg(rec.gen)
            .arg(serde_json::to_string(rec).unwrap_or_default());
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Commits a command's writes atomically if the catalog is still at `expected_rev` and the command
    /// has not completed yet.
    pub async fn commit(
        &self,
        expected_rev: u64,
        command_id: &str,
        ops: &[Op],
    ) -> Result<Commit, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = COMMIT.key(keys::REV);
        inv.key(keys::command(command_id))
            .arg(expected_rev)
            .arg(AUDIT_MAX_LEN);
        push_ops(&mut inv, ops);
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(match n {
            -1 => Commit::Conflict,
            -2 => Commit::AlreadyApplied,
            n => Commit::Applied(n as u64),
        })
    }

    /// Takes a lease; returns its token when taken.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut c = self.conn.clone();
        let v: Option<String> = timed(
            redis::cmd("SET")
                .arg(keys::lock(name))
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut c),
        )
        .await?;
        Ok(v.map(|_| token))
    }

    /// Releases a lease if still held with `token`.
    pub async fn unlock(&self, name: &str, token: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let mut inv = UNLOCK.key(keys::lock(name));
        inv.arg(token);
        let _: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    /// Extends a lease to `ttl` from now if still held with `token`; returns whether it was. A holder
    /// renews its lease while it works, so the lease can be short: a holder that dies (kill -9) blocks
    /// the next one for at most `ttl`.
    pub async fn extend_lock(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = EXTEND_LOCK.key(keys::lock(name));
        inv.arg(token).arg(ttl_ms(ttl));
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Audit events after `cursor` (exclusive), oldest first, at most `limit`.
    pub async fn audit_after(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let start = match cursor {
            Some(c) => format!("({c}"),
            None => "-".to_string(),
        };
        let mut c = self.conn.clone();
        let raw: Vec<(String, Vec<(String, String)>)> = timed(
            redis::cmd("XRANGE")
                .arg(keys::AUDIT)
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut c),
        )
        .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, fields)| {
                fields
                    .into_iter()
                    .find(|(k, _)| k == "data")
                    .map(|(_, v)| (id, v))
            })
            .collect())
    }

    /// Whether an agent has a live session, per its presence record.
    pub async fn presence(&self, did: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.hgetall(&keys::presence(did)).await
    }

    /// Presence of many agents, in order (one call per agent, as presence keys live in different
    /// slots; up to 256 in flight at once).
    pub async fn presences(
        &self,
        dids: &[String],
    ) -> Result<Vec<Vec<(String, String)>>, StoreError> {
        let mut out = Vec::with_capacity(dids.len());
        for chunk in dids.chunks(256) {
            out.extend(
                futures::future::try_join_all(chunk.iter().map(|d| self.presence(d))).await?,
            );
        }
        Ok(out)
    }

    /// Forgets an agent's runtime traces (acked version, presence) after the agent is deleted, so a
    /// later re-registration of the same DID starts clean. These keys live outside the `{vc}` slot, so
    /// this runs after the commit (and again on redelivery: it is idempotent).
    pub async fn forget_agent_runtime(&self, did: &str) -> Result<(), StoreError> {
        for key in [keys::ack(did), keys::presence(did)] {
            let mut c = self.conn.clone();
            let _: i64 = timed(redis::cmd("DEL").arg(key).query_async(&mut c)).await?;
        }
        Ok(())
    }

    /// Checks that `sealer` holds the key this deployment's secrets were sealed with: the first caller
    /// stores a sealed canary; later callers must be able to open it. A mismatch would otherwise show
    /// up only as commands failing one by one.
    pub async fn check_secret_key(
        &self,
        sealer: &crate::crypto::Sealer,
    ) -> Result<bool, StoreError> {
        use crate::crypto::Purpose;
        const CANARY: &str = "vc-secret-key-check";
        let sealed = sealer
            .seal(Purpose::Command, keys::SECRET_CHECK, CANARY)
            .unwrap_or_default();
        let mut c = self.conn.clone();
        let _: Option<String> = timed(
            redis::cmd("SET")
                .arg(keys::SECRET_CHECK)
                .arg(&sealed)
                .arg("NX")
                .query_async(&mut c),
        )
        .await?;
        let stored = self.get(keys::SECRET_CHECK).await?.unwrap_or_default();
        let opened = sealer.open(Purpose::Command, keys::SECRET_CHECK, &stored);
        Ok(opened.ok().as_deref() == Some(CANARY))
    }

    /// Last acknowledged config version of an agent.
    pub async fn acked_version(&self, did: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .get(&keys::ack(did))
            .await?
            .and_then(|s| s.parse().ok()))
    }
}
