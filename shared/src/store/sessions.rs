//! Dashboard sessions, written by `vc-api` only: `session:{<sha256 of the session id>}` holds a
//! [`StoredSession`] (JSON) and expires with the session. The session id itself (the cookie) and its CSRF
//! token are never stored, only their SHA-256.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{timed, ttl_ms, Store, StoreError};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSession {
    /// The actor it authenticates (`admin`, `token:<id>`).
    pub actor: String,
    /// Global admin.
    pub admin: bool,
    /// A realm admin's realms (as its token had them at login).
    pub realm_ids: Vec<String>,
    /// The realm-admin token it was opened with: a deleted token ends its sessions.
    pub token_id: Option<String>,
    /// Lower-case hex SHA-256 of the session's CSRF token.
    pub csrf_sha256: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

fn key(id_sha256: &str) -> String {
    format!("session:{{{id_sha256}}}")
}

impl Store {
    /// Stores a session for `ttl`.
    pub async fn put_session(
        &self,
        id_sha256: &str,
        s: &StoredSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(s).unwrap_or_default();
        timed(
            redis::cmd("SET")
                .arg(key(id_sha256))
                .arg(json)
                .arg("PX")
                .arg(ttl_ms(ttl))
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// The session whose id has this SHA-256, if it exists and has not expired.
    pub async fn session(&self, id_sha256: &str) -> Result<Option<StoredSession>, StoreError> {
        self.get_json(&key(id_sha256)).await
    }

    /// Ends a session; whether it existed.
    pub async fn delete_session(&self, id_sha256: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = timed(redis::cmd("DEL").arg(key(id_sha256)).query_async(&mut c)).await?;
        Ok(n == 1)
    }
}
