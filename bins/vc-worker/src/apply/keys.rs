//! `realm.key.rotate`, `realm.key.activate`, `realm.key.retire`, and the rotation a member's removal
//! asks for (see `vc_shared::rotation` for the states).
//!
//! Each writes the realm's own record only; an activation also writes the realm's routing state once
//! (one push, whatever the number of members). LiteLLM is never called here: the sync creates a pending
//! key and deletes a retired one beside the lane, and the rotation driver (`crate::rotation`) issues
//! the activation and retirement commands when their time has come.

use serde_json::json;
use vc_shared::command::KeyResult;
use vc_shared::crypto::{generate_virtual_key, key_prefix, Purpose};
use vc_shared::domain::StoredRealm;
use vc_shared::error::DomainError;
use vc_shared::rotation::{
    key_id, rfc3339_after, PendingKey, RetiringKey, RotationReason, MAX_RETIRING,
};
use vc_shared::store::{keys, Op};
use vc_shared::views;

use super::tx::Tx;
use super::{refuse, ApplyError, R};

impl Tx<'_> {
    pub(super) async fn realm_key_rotate(
        &mut self,
        realm_id: &str,
        grace_secs: Option<u64>,
    ) -> R<KeyResult> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        if realm.key.is_none() {
            refuse!(DomainError::conflict(format!(
                "realm {realm_id} has no key to rotate: a realm gets its LiteLLM key at its first \
                 grant once LiteLLM is configured"
            )));
        }
        let grace = grace_secs.unwrap_or(self.ctx.rotation_grace_secs);
        self.request_rotation(&mut realm, RotationReason::Requested, grace)?;
        Ok(Ok(self.key_result(&realm).await?))
    }

    /// A member left `realm_id` (or was deleted): its key must stop working, so the realm's key is
    /// rotated with the default grace period. Several removals before the new key is live share one
    /// rotation (none of them ever held the pending key).
    pub(super) async fn rotate_after_removal(
        &mut self,
        realm_id: &str,
        reason: RotationReason,
    ) -> Result<(), ApplyError> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            return Ok(());
        };
        if realm.key.is_some() {
            self.request_rotation(&mut realm, reason, self.ctx.rotation_grace_secs)?;
        }
        Ok(())
    }

    /// Mints a pending key for `realm` (which holds a key), or, when one is pending already, keeps it
    /// and shortens its grace period to `grace` if that is shorter.
    fn request_rotation(
        &mut self,
        realm: &mut StoredRealm,
        reason: RotationReason,
        grace: u64,
    ) -> Result<(), ApplyError> {
        let realm_id = realm.id.clone();
        let Some(k) = realm.key.as_mut() else {
            return Ok(());
        };
        match k.rotation.pending.as_mut() {
            Some(p) if p.grace_secs <= grace => return Ok(()),
            Some(p) => {
                p.grace_secs = grace;
                if reason == RotationReason::Requested {
                    p.reason = reason;
                }
            }
            None => {
                let key = generate_virtual_key();
                k.rotation.pending = Some(PendingKey {
                    key_sealed: self.ctx.sealer.seal(Purpose::RealmKey, &realm_id, &key)?,
                    key_prefix: key_prefix(&key),
                    key_id: key_id(&key),
                    requested_at: self.now.clone(),
                    grace_secs: grace,
                    reason,
                });
            }
        }
        // Nothing is pushed yet: the sync creates the new key in LiteLLM first.
        self.touch_realm_key(realm);
        self.put_realm(realm.clone());
        self.op(Op::Sadd {
            key: keys::ROTATING.into(),
            member: realm_id,
        });
        Ok(())
    }

    /// The pending key `key_id` exists in LiteLLM: it becomes current and is pushed to the realm once;
    /// the replaced key keeps working until it is retired.
    pub(super) async fn realm_key_activate(
        &mut self,
        realm_id: &str,
        key_id: &str,
    ) -> R<KeyResult> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(k) = realm.key.as_mut() else {
            refuse!(DomainError::conflict(format!(
                "realm {realm_id} has no key"
            )))
        };
        let Some(p) = k.rotation.pending.take().filter(|p| p.key_id == key_id) else {
            refuse!(DomainError::conflict(format!(
                "key {key_id} is not the pending key of realm {realm_id}"
            )))
        };
        let old_id = match &k.rotation.key_id {
            Some(id) => id.clone(),
            None => vc_shared::rotation::key_id(&self.ctx.sealer.open(
                Purpose::RealmKey,
                realm_id,
                &k.key_sealed,
            )?),
        };
        let version = self.next_version();
        let retire_at = rfc3339_after(&self.now, p.grace_secs);
        let replaced = RetiringKey {
            key_sealed: std::mem::replace(&mut k.key_sealed, p.key_sealed),
            key_prefix: std::mem::replace(&mut k.key_prefix, p.key_prefix.clone()),
            key_id: old_id,
            replaced_by_version: version,
            replaced_at: self.now.clone(),
            retire_at: retire_at.clone(),
            reason: p.reason,
        };
        let details = json!({
            "keyPrefix": p.key_prefix,
            "keyId": p.key_id,
            "previousKeyPrefix": replaced.key_prefix,
            "previousKeyId": replaced.key_id,
            "reason": p.reason,
            "graceSeconds": p.grace_secs,
            "retireAt": retire_at,
            "version": version,
        });
        k.rotation.retiring.push(replaced);
        // Beyond the bound, the oldest replaced keys go at once (the sync deletes them).
        let excess = k.rotation.retiring.len().saturating_sub(MAX_RETIRING);
        k.rotation.retiring.drain(..excess);
        k.rotation.key_id = Some(p.key_id);
        k.rotation.rotated_at = Some(self.now.clone());
        k.rotation.rotations += 1;
        self.touch_realm_key(&mut realm);
        self.put_realm(realm.clone());
        self.bump_realm_routing(realm_id).await?;
        self.event("realm.key.rotated", format!("realm:{realm_id}"), details);
        Ok(Ok(self.key_result(&realm).await?))
    }

    /// The replaced key `key_id` is no longer needed: it is dropped here and deleted in LiteLLM by
    /// the sync that follows.
    pub(super) async fn realm_key_retire(&mut self, realm_id: &str, key_id: &str) -> R<KeyResult> {
        let Some(mut realm) = self.realm(realm_id).await? else {
            refuse!(DomainError::not_found(format!(
                "realm {realm_id} not found"
            )))
        };
        let Some(k) = realm.key.as_mut() else {
            refuse!(DomainError::conflict(format!(
                "realm {realm_id} has no key"
            )))
        };
        let Some(i) = k.rotation.retiring.iter().position(|r| r.key_id == key_id) else {
            refuse!(DomainError::conflict(format!(
                "key {key_id} is not a replaced key of realm {realm_id}"
            )))
        };
        let gone = k.rotation.retiring.remove(i);
        let done = !k.rotation.in_progress();
        self.touch_realm_key(&mut realm);
        self.put_realm(realm.clone());
        if done {
            self.op(Op::Srem {
                key: keys::ROTATING.into(),
                member: realm_id.into(),
            });
        }
        self.event(
            "realm.key.retired",
            format!("realm:{realm_id}"),
            json!({"keyPrefix": gone.key_prefix, "keyId": gone.key_id, "reason": gone.reason}),
        );
        Ok(Ok(self.key_result(&realm).await?))
    }

    /// `{realmId, routerKey}` of `realm` as it is after the command.
    pub(super) async fn key_result(
        &mut self,
        realm: &StoredRealm,
    ) -> Result<KeyResult, ApplyError> {
        let granted = self.granted_models(&realm.id).await?;
        let sync = self.ctx.store.sync_realm(&realm.id).await?;
        Ok(KeyResult {
            realm_id: realm.id.clone(),
            router_key: views::router_key_view(realm, &granted, &sync),
        })
    }
}
