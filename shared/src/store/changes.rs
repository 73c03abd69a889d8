//! Reading the change log (`{vc}:changes`, written by every commit and sync-record write: see
//! `CHANGES_LUA`), which API instances follow to keep their read model current.

use std::time::Duration;

use redis::Value;

use super::{keys, timed, Store, StoreError};

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Stream entry id (where to read on from).
    pub id: String,
    /// Position in the log: 1, 2, 3… without gaps.
    pub n: u64,
    /// The catalog keys written.
    pub keys: Vec<String>,
}

/// Where the log ends now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesHead {
    /// Id of the newest entry (`0-0` when the log is empty).
    pub id: String,
    /// Its `n` (0 when the log is empty).
    pub n: u64,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Decodes `[id, [field, value, …]]`.
fn entry(v: &Value) -> Option<Change> {
    let Value::Array(parts) = v else { return None };
    let id = text(parts.first()?)?;
    let Value::Array(fields) = parts.get(1)? else {
        return None;
    };
    let mut n = None;
    let mut keys = Vec::new();
    for pair in fields.chunks(2) {
        match (pair.first().and_then(text).as_deref(), pair.get(1)) {
            (Some("n"), Some(v)) => n = text(v).and_then(|s| s.parse().ok()),
            (Some("k"), Some(v)) => {
                keys = text(v)
                    .unwrap_or_default()
                    .split('\n')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    Some(Change { id, n: n?, keys })
}

fn corrupt(reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: keys::CHANGES.into(),
        reason: reason.into(),
    }
}

impl Store {
    /// Where the change log ends now.
    pub async fn changes_head(&self) -> Result<ChangesHead, StoreError> {
        let mut c = self.conn.clone();
        let v: Value = timed(
            redis::cmd("XREVRANGE")
                .arg(keys::CHANGES)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut c),
        )
        .await?;
        match v {
            Value::Array(items) if !items.is_empty() => {
                let e = entry(&items[0]).ok_or_else(|| corrupt("undecodable entry"))?;
                Ok(ChangesHead { id: e.id, n: e.n })
            }
            _ => Ok(ChangesHead {
                id: "0-0".into(),
                n: 0,
            }),
        }
    }

    /// The number of the newest change (0 before the first): a write's changes are all in the log
    /// once its outcome is out, so a reader that has applied this far sees the write.
    pub async fn changes_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .get(keys::CHANGES_SEQ)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Up to `count` entries after `after`, waiting up to `block` for the first one (an empty list when
    /// none came). The wait holds this store's connection: call it on a [`Store`] of its own.
    pub async fn changes_after(
        &self,
        after: &str,
        block: Duration,
        count: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let mut c = self.conn.clone();
        let v: Value = timed(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(keys::CHANGES)
                .arg(after)
                .query_async(&mut c),
        )
        .await?;
        // [[stream, [entry, …]]] or nil (RESP2), or a map (RESP3).
        let entries = match &v {
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(s)) => s.get(1).cloned(),
                _ => None,
            },
            Value::Map(m) => m.first().map(|(_, e)| e.clone()),
            _ => None,
        };
        let Some(Value::Array(entries)) = entries else {
            return Ok(Vec::new());
        };
        entries
            .iter()
            .map(|e| entry(e).ok_or_else(|| corrupt("undecodable entry")))
            .collect()
    }
}
