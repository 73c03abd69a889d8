//! Reads of the key rotation driver (`vc-worker`): which realms rotate, and whether every online agent
//! routed through one has acknowledged the version that carried its new key.

use super::{keys, timed, Store, StoreError};

/// DIDs read per step of the routed-set scan.
const SCAN_COUNT: usize = 500;

impl Store {
    /// Realms whose key is being rotated (`{vc}:rotating`).
    pub async fn rotating_realms(&self) -> Result<Vec<String>, StoreError> {
        self.smembers(keys::ROTATING).await
    }

    /// The first agent routed through `realm_id` that is online and has not acknowledged `version`
    /// (or a later one); `None` when every online routed agent has. Scans the routed set a chunk at a
    /// time and stops at the first such agent, so a rotation still waiting on acks costs one chunk.
    pub async fn first_unacked_online(
        &self,
        realm_id: &str,
        version: u64,
    ) -> Result<Option<String>, StoreError> {
        let key = keys::realm_routed(realm_id);
        let mut cursor: u64 = 0;
        loop {
            let mut c = self.conn.clone();
            let (next, dids): (u64, Vec<String>) = timed(
                redis::cmd("SSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c),
            )
            .await?;
            let checks = dids.iter().map(|did| async move {
                let mut c = self.conn.clone();
                let online: Option<String> = timed(
                    redis::cmd("HGET")
                        .arg(keys::presence(did))
                        .arg("online")
                        .query_async(&mut c),
                )
                .await?;
                if online.as_deref() != Some("1") {
                    return Ok::<bool, StoreError>(true);
                }
                let acked: Option<String> =
                    timed(redis::cmd("GET").arg(keys::ack(did)).query_async(&mut c)).await?;
                Ok(acked
                    .and_then(|a| a.parse::<u64>().ok())
                    .is_some_and(|a| a >= version))
            });
            let done = futures::future::try_join_all(checks).await?;
            if let Some(i) = done.iter().position(|ok| !ok) {
                return Ok(Some(dids[i].clone()));
            }
            if next == 0 {
                return Ok(None);
            }
            cursor = next;
        }
    }
}
