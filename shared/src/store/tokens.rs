//! API tokens and command issuers, written by `vc-api` only.
//!
//! Straight to Redis (access-control data, not domain commands: see
//! docs/access.md). The keys carry the `{vc}` tag so that a token write and its audit event commit in one
//! script, like a command's writes; they are not part of the catalog revision (`{vc}:rev` is untouched:
//! no command reads them).
//!
//! | key | type | content |
//! |---|---|---|
//! | `{vc}:tokens` | set | token ids (the listing index) |
//! | `{vc}:token:<id>` | string | [`StoredToken`] JSON (with the secret's SHA-256, never the secret) |
//! | `{vc}:token-hash:<sha256 of the secret>` | string | token id (lookup on every request) |
//! | `{vc}:cmd-issuer:<command id>` | string | the realm-admin actor (`token:<id>`) that submitted the command; expires with the command record |

use serde::Serialize;

use super::{keys, timed, Store, StoreError, AUDIT_MAX_LEN, COMMAND_TTL_MS};

/// Keys of API tokens and command issuers.
pub mod token_keys {
    /// Set of token ids.
    pub const TOKENS: &str = "{vc}:tokens";

    /// `{vc}:token:<id>`.
    pub fn token(id: &str) -> String {
        format!("{{vc}}:token:{id}")
    }

    /// `{vc}:token-hash:<sha256>`.
    pub fn token_hash(sha256: &str) -> String {
        format!("{{vc}}:token-hash:{sha256}")
    }

    /// `{vc}:cmd-issuer:<command id>`.
    pub fn command_issuer(command_id: &str) -> String {
        format!("{{vc}}:cmd-issuer:{command_id}")
    }
}

/// A realm-admin API token as stored: the secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    /// Token id (UUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role (`realm-admin`).
    pub role: String,
    /// Realms the token administers.
    pub realm_ids: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
}

const TOKEN_CREATE_LUA: &str = r#"
-- KEYS = token, token-hash, tokens set, audit; ARGV = token JSON, token id, event JSON, audit max len
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'data', ARGV[3])
return 1
"#;

const TOKEN_DELETE_LUA: &str = r#"
-- KEYS = token, token-hash, tokens set, audit; ARGV = token id, event JSON, audit max len
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
return 1
"#;

const DROP_PENDING_LUA: &str = r#"
-- KEYS[1] = command record. Deletes it only while it is still pending (a worker may have completed it).
local rec = redis.call('GET', KEYS[1])
if not rec then return 0 end
local ok, decoded = pcall(cjson.decode, rec)
if ok and decoded['status'] == 'pending' then return redis.call('DEL', KEYS[1]) end
return 0
"#;

static TOKEN_CREATE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TOKEN_CREATE_LUA));
static TOKEN_DELETE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TOKEN_DELETE_LUA));
static DROP_PENDING: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(DROP_PENDING_LUA));

impl Store {
    /// Stores a new token and appends `event_json` to the audit stream, atomically. `false` when a token
    /// with the same secret hash exists already (the caller draws a new secret).
    pub async fn create_token(
        &self,
        token: &StoredToken,
        event_json: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = TOKEN_CREATE.key(token_keys::token(&token.id));
        inv.key(token_keys::token_hash(&token.secret_sha256))
            .key(token_keys::TOKENS)
            .key(keys::AUDIT)
            .arg(serde_json::to_string(token).unwrap_or_default())
            .arg(&token.id)
            .arg(event_json)
            .arg(AUDIT_MAX_LEN);
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// A token by id.
    pub async fn token(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        self.get_json(&token_keys::token(id)).await
    }

    /// The token whose secret has this SHA-256 (lower-case hex), if any.
    pub async fn token_by_secret_hash(
        &self,
        sha256: &str,
    ) -> Result<Option<StoredToken>, StoreError> {
        let Some(id) = self.get(&token_keys::token_hash(sha256)).await? else {
            return Ok(None);
        };
        // The record must still name this hash (a concurrent delete removes both keys at once).
        Ok(self.token(&id).await?.filter(|t| t.secret_sha256 == sha256))
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let ids = self.smembers(token_keys::TOKENS).await?;
        let mut v: Vec<StoredToken> = self
            .mget_json(&ids.iter().map(|i| token_keys::token(i)).collect::<Vec<_>>())
            .await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Deletes a token (its hash lookup too) and appends `event_json` to the audit stream, atomically.
    /// `false` when there is no such token.
    pub async fn delete_token(&self, id: &str, event_json: &str) -> Result<bool, StoreError> {
        let Some(t) = self.token(id).await? else {
            return Ok(false);
        };
        let mut c = self.conn.clone();
        let mut inv = TOKEN_DELETE.key(token_keys::token(id));
        inv.key(token_keys::token_hash(&t.secret_sha256))
            .key(token_keys::TOKENS)
            .key(keys::AUDIT)
            .arg(id)
            .arg(event_json)
            .arg(AUDIT_MAX_LEN);
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Appends one event (JSON of [`crate::wire::Event`]) to the audit stream outside any command commit
    /// (auth failures).
    pub async fn append_audit(&self, event_json: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = timed(
            redis::cmd("XADD")
                .arg(keys::AUDIT)
                .arg("MAXLEN")
                .arg("~")
                .arg(AUDIT_MAX_LEN)
                .arg("*")
                .arg("data")
                .arg(event_json)
                .query_async(&mut c),
        )
        .await?;
        Ok(())
    }

    /// Records which realm-admin actor submitted a command (kept as long as the command record).
    pub async fn put_command_issuer(
        &self,
        command_id: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: Option<String> = timed(
            redis::cmd("SET")
                .arg(token_keys::command_issuer(command_id))
                .arg(actor)
                .arg("PX")
                .arg(COMMAND_TTL_MS)
                .query_async(&mut c),
        )
        .await?;
        Ok(())
    }

    /// The actor recorded by [`Store::put_command_issuer`], if any.
    pub async fn command_issuer(&self, command_id: &str) -> Result<Option<String>, StoreError> {
        self.get(&token_keys::command_issuer(command_id)).await
    }

    /// Removes a command's record if it is still pending: its publish failed, so no worker will complete
    /// it under this submission. Returns whether it was removed.
    pub async fn drop_pending_command(&self, command_id: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let inv = DROP_PENDING.key(keys::command(command_id));
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }
}
