//! Realm key rotation: the states a realm's LiteLLM key passes through, and their view.
//!
//! A rotation replaces the value every member of a realm uses without a failed request
//! ([decision 0013](../../docs/decisions/0013-key-rotation.md)):
//!
//! 1. **Pending.** `realm.key.rotate` (or the removal of a member) mints a new value and stores it as
//!    [`KeyRotation::pending`]. Nothing is pushed yet: the worker's LiteLLM sync first creates the new
//!    key (same models, limits and team), then asks the lane to activate it (`realm.key.activate`).
//! 2. **Retiring.** The activation makes the new value current (pushed once to the realm, like any
//!    realm-level change) and keeps the old one in [`KeyRotation::retiring`] until every online member
//!    routed through the realm has acknowledged the new version, or its grace period has passed
//!    (`realm.key.retire`); the sync then deletes it in LiteLLM.
//! 3. **Stable** again.
//!
//! The budget is held by the realm's LiteLLM team, not by one key, so spend before a rotation still
//! counts after it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crypto::sha256_hex;

/// Longest grace period a rotation may ask for (7 days).
pub const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;

/// Most replaced keys kept working at once: a further rotation retires the oldest at once.
pub const MAX_RETIRING: usize = 4;

/// Public id of a key value: the first 16 hex digits of its SHA-256 (reveals nothing of the key, and
/// tells apart keys whose 8-character prefixes look alike).
pub fn key_id(key: &str) -> String {
    sha256_hex(key)[..16].to_string()
}

/// `at` (RFC 3339) plus `secs`, as RFC 3339 (`at` itself if it does not parse).
pub fn rfc3339_after(at: &str, secs: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(at, &Rfc3339)
        .ok()
        .and_then(|t| t.checked_add(time::Duration::seconds(secs.min(i64::MAX as u64) as i64)))
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

/// Whether the time `at` (RFC 3339) has come; an unreadable time has.
pub fn is_due(at: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(at, &Rfc3339)
        .map(|t| t <= time::OffsetDateTime::now_utc())
        .unwrap_or(true)
}

/// Why a rotation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RotationReason {
    /// Asked for (`POST /api/realms/{id}/key/rotate`, `realm.key.rotate`).
    Requested,
    /// A member left the realm (`realm.agent.remove`).
    MemberRemoved,
    /// A member was deleted (`agent.delete`).
    AgentDeleted,
}

/// A minted key waiting for LiteLLM before it is pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingKey {
    /// The value, sealed with [`crate::crypto::Purpose::RealmKey`], bound to the realm id.
    pub key_sealed: String,
    /// At most the first 8 characters.
    pub key_prefix: String,
    /// [`key_id`] of the value.
    pub key_id: String,
    /// RFC 3339.
    pub requested_at: String,
    /// How long the replaced key keeps working after the activation (seconds).
    pub grace_secs: u64,
    /// Why.
    pub reason: RotationReason,
}

/// A replaced key that still works until it is retired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKey {
    /// The value, sealed with [`crate::crypto::Purpose::RealmKey`], bound to the realm id.
    pub key_sealed: String,
    /// At most the first 8 characters.
    pub key_prefix: String,
    /// [`key_id`] of the value.
    pub key_id: String,
    /// The realm routing version that replaced it: a member that acknowledged this version (or a later
    /// one) holds the new key.
    pub replaced_by_version: u64,
    /// RFC 3339: when it was replaced.
    pub replaced_at: String,
    /// RFC 3339: when it is retired whatever the acknowledgements.
    pub retire_at: String,
    /// Why it was replaced.
    pub reason: RotationReason,
}

/// Rotation state of a realm key (`rotation` of its stored record; empty on records written before
/// rotation existed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// [`key_id`] of the current value (`None` on records written before rotation existed: the
    /// worker computes it from the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// RFC 3339: when the current value went live by a rotation (`None`: never rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// Rotations so far.
    #[serde(default)]
    pub rotations: u64,
    /// A new value being created in LiteLLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingKey>,
    /// Replaced values still working, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringKey>,
}

impl KeyRotation {
    /// Nothing to carry (serialized only when not).
    pub fn is_empty(&self) -> bool {
        self == &KeyRotation::default()
    }

    /// Whether a rotation is under way (pending or retiring keys).
    pub fn in_progress(&self) -> bool {
        self.pending.is_some() || !self.retiring.is_empty()
    }

    /// The view of this state.
    pub fn view(&self) -> RotationView {
        RotationView {
            state: if self.pending.is_some() {
                RotationState::Pending
            } else if !self.retiring.is_empty() {
                RotationState::Retiring
            } else {
                RotationState::Stable
            },
            key_id: self.key_id.clone(),
            rotated_at: self.rotated_at.clone(),
            rotations: self.rotations,
            pending: self.pending.as_ref().map(|p| PendingKeyView {
                key_prefix: p.key_prefix.clone(),
                key_id: p.key_id.clone(),
                requested_at: p.requested_at.clone(),
                grace_seconds: p.grace_secs,
                reason: p.reason,
            }),
            retiring: self
                .retiring
                .iter()
                .map(|r| RetiringKeyView {
                    key_prefix: r.key_prefix.clone(),
                    key_id: r.key_id.clone(),
                    replaced_at: r.replaced_at.clone(),
                    retire_at: r.retire_at.clone(),
                    reason: r.reason,
                })
                .collect(),
        }
    }
}

/// Where a realm key's rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RotationState {
    /// One key, nothing under way.
    Stable,
    /// A new key is being created in LiteLLM; members still hold the current one.
    Pending,
    /// Members were sent the new key; replaced keys work until they are retired.
    Retiring,
}

/// `routerKey.rotation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// Where the rotation stands.
    pub state: RotationState,
    /// Public id of the current key (first 16 hex digits of its SHA-256); `null` until the worker has
    /// recorded it.
    pub key_id: Option<String>,
    /// When the current key went live by a rotation (`null`: never rotated).
    pub rotated_at: Option<String>,
    /// Rotations so far.
    pub rotations: u64,
    /// The key being created, if any.
    pub pending: Option<PendingKeyView>,
    /// Replaced keys that still work, oldest first.
    pub retiring: Vec<RetiringKeyView>,
}

impl Default for RotationView {
    fn default() -> Self {
        KeyRotation::default().view()
    }
}

/// A pending key as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingKeyView {
    /// At most the first 8 characters.
    pub key_prefix: String,
    /// Public id.
    pub key_id: String,
    /// RFC 3339.
    pub requested_at: String,
    /// How long the replaced key keeps working after the activation.
    pub grace_seconds: u64,
    /// Why.
    pub reason: RotationReason,
}

/// A retiring key as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKeyView {
    /// At most the first 8 characters.
    pub key_prefix: String,
    /// Public id.
    pub key_id: String,
    /// RFC 3339.
    pub replaced_at: String,
    /// RFC 3339: the latest it is retired (earlier once every online member acknowledged the new key).
    pub retire_at: String,
    /// Why it was replaced.
    pub reason: RotationReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_rotation_is_not_serialized_and_old_records_read() {
        let r = KeyRotation::default();
        assert!(r.is_empty());
        assert_eq!(serde_json::to_value(&r).unwrap()["rotations"], 0);
        let old: KeyRotation = serde_json::from_str("{}").unwrap();
        assert_eq!(old.view().state, RotationState::Stable);
    }

    #[test]
    fn view_states() {
        let mut r = KeyRotation {
            pending: Some(PendingKey {
                key_sealed: "s".into(),
                key_prefix: "sk-vc-ab".into(),
                key_id: key_id("sk-vc-ab"),
                requested_at: "t".into(),
                grace_secs: 30,
                reason: RotationReason::MemberRemoved,
            }),
            ..KeyRotation::default()
        };
        assert_eq!(r.view().state, RotationState::Pending);
        r.pending = None;
        r.retiring.push(RetiringKey {
            key_sealed: "s".into(),
            key_prefix: "sk-vc-ab".into(),
            key_id: "k".into(),
            replaced_by_version: 3,
            replaced_at: "t".into(),
            retire_at: "t2".into(),
            reason: RotationReason::Requested,
        });
        let v = r.view();
        assert_eq!(v.state, RotationState::Retiring);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["retiring"][0]["retireAt"], "t2");
        assert_eq!(json["retiring"][0]["reason"], "requested");
        assert!(json["retiring"][0].get("keySealed").is_none());
        assert_eq!(key_id("x").len(), 16);
    }

    #[test]
    fn times() {
        assert_eq!(
            rfc3339_after("2026-01-01T00:00:00.000Z", 90),
            "2026-01-01T00:01:30Z"
        );
        assert!(is_due("2020-01-01T00:00:00Z"));
        assert!(!is_due(&rfc3339_after(&crate::domain::now_rfc3339(), 60)));
        assert!(is_due("garbage"));
    }
}
