//! What each realm spent, as the worker last read it from LiteLLM (`spend:{<realmId>}`, JSON
//! [`RealmSpend`]). Written beside the command lane (never by it), read by the API.

use super::{timed, Store, StoreError};
use crate::budget::RealmSpend;

/// The key of a realm's spend record.
pub fn spend_key(realm_id: &str) -> String {
    format!("spend:{{{realm_id}}}")
}

impl Store {
    /// The realm's last spend reading, if any.
    pub async fn realm_spend(&self, realm_id: &str) -> Result<Option<RealmSpend>, StoreError> {
        let key = spend_key(realm_id);
        super::decode_json(&key, self.get(&key).await?)
    }

    /// Stores a spend reading.
    pub async fn put_realm_spend(
        &self,
        realm_id: &str,
        spend: &RealmSpend,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: Option<String> = timed(
            redis::cmd("SET")
                .arg(spend_key(realm_id))
                .arg(serde_json::to_string(spend).unwrap_or_default())
                .query_async(&mut c),
        )
        .await?;
        Ok(())
    }

    /// Forgets a deleted realm's spend record.
    pub async fn forget_realm_spend(&self, realm_id: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = timed(
            redis::cmd("DEL")
                .arg(spend_key(realm_id))
                .query_async(&mut c),
        )
        .await?;
        Ok(())
    }
}

/// The log of webhook deliveries (newest first, capped at [`WEBHOOK_LOG_LEN`]).
pub const WEBHOOK_LOG: &str = "webhooks:{deliveries}";

/// Entries kept in [`WEBHOOK_LOG`].
pub const WEBHOOK_LOG_LEN: usize = 500;

/// One delivery attempt of a webhook, as `GET /api/webhooks/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The event delivered.
    pub event_id: String,
    /// Its kind.
    pub kind: String,
    /// Its subject (`realm:<id>`).
    pub subject: String,
    /// Where it was sent.
    pub url: String,
    /// Attempt number (1 = first).
    pub attempt: u32,
    /// `delivered`, `retrying` (another attempt follows) or `failed` (no more attempts).
    pub status: String,
    /// HTTP status of the answer, if one came.
    pub http_status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// RFC 3339.
    pub at: String,
}

impl Store {
    /// Records a delivery attempt.
    pub async fn log_webhook_delivery(&self, d: &WebhookDelivery) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        p.atomic()
            .cmd("LPUSH")
            .arg(WEBHOOK_LOG)
            .arg(serde_json::to_string(d).unwrap_or_default())
            .ignore()
            .cmd("LTRIM")
            .arg(WEBHOOK_LOG)
            .arg(0)
            .arg(WEBHOOK_LOG_LEN as i64 - 1)
            .ignore();
        let _: () = timed(p.query_async(&mut c)).await?;
        Ok(())
    }

    /// The latest `limit` delivery attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<String> = timed(
            redis::cmd("LRANGE")
                .arg(WEBHOOK_LOG)
                .arg(0)
                .arg(limit.clamp(1, WEBHOOK_LOG_LEN) as i64 - 1)
                .query_async(&mut c),
        )
        .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }
}
