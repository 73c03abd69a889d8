//! Every sealed value in the store, and the writes that put them all under the current key
//! (`vc-worker reseal`, after a key rotation or an upgrade from the `v1` format).
//!
//! | record | field | purpose | entity |
//! |---|---|---|---|
//! | `{vc}:model:<id>` | `apiKeySealed` | model API key | model id |
//! | `{vc}:realm:<id>` | `key.keySealed`, and a rotation's `key.rotation.pending.keySealed` and `key.rotation.retiring[*].keySealed` | realm key | realm id |
//! | `{vc}:agent:<did>` | `source.apiKeySealed` (manual configs) | agent config key | DID |
//! | `{vc}:routing:realm:<id>` | `keySealed` | agent config key | realm id |
//! | `{vc}:routing:model:<id>` | `config.apiKeySealed` | agent config key | model id |
//! | `{vc}:secret-check` | the whole value | command | the key's name |
//!
//! Tombstones of deleted realms and models hold no key. Command records, the audit stream and the change
//! log hold none either (views carry `keyPrefix` at most). Records are edited as JSON values, not
//! through their types, so that a field this version does not know survives the rewrite.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{keys, Op, Store, StoreError};
use crate::crypto::{CryptoError, Purpose, Sealer};

/// A kind of record that holds sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SealedRecord {
    /// A registry model (its upstream key).
    Model,
    /// A realm (its virtual key).
    Realm,
    /// An agent (the key of its manual config).
    Agent,
    /// A realm's routing state (its key as edges open it).
    RealmRouting,
    /// A model's routing state (its key as edges open it).
    ModelRouting,
    /// The canary that tells a service its key is this deployment's.
    Canary,
}

impl SealedRecord {
    /// Every kind, in the order they are walked.
    pub const ALL: [SealedRecord; 6] = [
        SealedRecord::Model,
        SealedRecord::Realm,
        SealedRecord::Agent,
        SealedRecord::RealmRouting,
        SealedRecord::ModelRouting,
        SealedRecord::Canary,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            SealedRecord::Model => "models",
            SealedRecord::Realm => "realms",
            SealedRecord::Agent => "agents",
            SealedRecord::RealmRouting => "realm routing states",
            SealedRecord::ModelRouting => "model routing states",
            SealedRecord::Canary => "key canary",
        }
    }

    /// The purpose its sealed value has, and the path of the field in its JSON.
    fn field(self) -> (Purpose, &'static [&'static str]) {
        match self {
            SealedRecord::Model => (Purpose::ModelApiKey, &["apiKeySealed"]),
            SealedRecord::Realm => (Purpose::RealmKey, &["key", "keySealed"]),
            SealedRecord::Agent => (Purpose::AgentConfigKey, &["source", "apiKeySealed"]),
            SealedRecord::RealmRouting => (Purpose::AgentConfigKey, &["keySealed"]),
            SealedRecord::ModelRouting => (Purpose::AgentConfigKey, &["config", "apiKeySealed"]),
            SealedRecord::Canary => (Purpose::Command, &[]),
        }
    }

    /// The key of the record of entity `id`.
    fn key(self, id: &str) -> String {
        match self {
            SealedRecord::Model => keys::model(id),
            SealedRecord::Realm => keys::realm(id),
            SealedRecord::Agent => keys::agent(id),
            SealedRecord::RealmRouting => keys::routing_realm(id),
            SealedRecord::ModelRouting => keys::routing_model(id),
            SealedRecord::Canary => keys::SECRET_CHECK.to_string(),
        }
    }
}

/// Counts of one kind of record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealCount {
    /// Sealed values found.
    pub sealed: usize,
    /// Of those, rewritten under the current key (the others were already).
    pub rewritten: usize,
    /// Of those, not opened (left as they are).
    pub failed: usize,
}

/// What a re-seal found and did.
#[derive(Debug, Default)]
pub struct ResealReport {
    /// Counts per kind of record.
    pub counts: BTreeMap<SealedRecord, ResealCount>,
    /// Values that could not be opened: the record's key and why. While any is left, the canary keeps
    /// its key, so services holding only the current key still refuse to start.
    pub failures: Vec<(String, CryptoError)>,
}

impl ResealReport {
    /// The counts summed over every kind.
    pub fn total(&self) -> ResealCount {
        self.counts
            .values()
            .fold(ResealCount::default(), |a, c| ResealCount {
                sealed: a.sealed + c.sealed,
                rewritten: a.rewritten + c.rewritten,
                failed: a.failed + c.failed,
            })
    }
}

/// The writes of a re-seal and its report.
#[derive(Debug, Default)]
pub struct ResealPlan {
    /// `SET` of every record rewritten (the canary last, and only if nothing failed).
    pub writes: Vec<Op>,
    /// What was found.
    pub report: ResealReport,
}

/// What became of one record's sealed value.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// No sealed value in it.
    None,
    /// Already under the current key.
    Current,
    /// Rewritten: the record's new text.
    Rewritten(String),
    /// Not opened.
    Failed(CryptoError),
}

/// Re-seals the sealed value of one record (`raw`, the record's text) of entity `id`.
fn reseal_record(kind: SealedRecord, id: &str, raw: &str, sealer: &Sealer) -> Outcome {
    let (purpose, path) = kind.field();
    let entity = match kind {
        SealedRecord::Canary => keys::SECRET_CHECK,
        _ => id,
    };
    if path.is_empty() {
        return match sealer.reseal(purpose, entity, raw) {
            Ok(None) => Outcome::Current,
            Ok(Some(v)) => Outcome::Rewritten(v),
            Err(e) => Outcome::Failed(e),
        };
    }
    let Ok(mut record) = serde_json::from_str::<Value>(raw) else {
        return Outcome::Failed(CryptoError::Malformed);
    };
    let mut pointers = vec![format!("/{}", path.join("/"))];
    if kind == SealedRecord::Realm {
        // A rotation's keys (see `crate::rotation`), sealed like the current one.
        pointers.push("/key/rotation/pending/keySealed".into());
        let retiring = record
            .pointer("/key/rotation/retiring")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        pointers.extend((0..retiring).map(|i| format!("/key/rotation/retiring/{i}/keySealed")));
    }
    let (mut found, mut rewritten) = (false, false);
    for pointer in &pointers {
        let Some(field) = record.pointer_mut(pointer) else {
            continue;
        };
        let Some(sealed) = field.as_str() else {
            continue;
        };
        found = true;
        match sealer.reseal(purpose, entity, sealed) {
            Ok(None) => {}
            Ok(Some(v)) => {
                *field = Value::String(v);
                rewritten = true;
            }
            Err(e) => return Outcome::Failed(e),
        }
    }
    match (found, rewritten) {
        (false, _) => Outcome::None,
        (true, false) => Outcome::Current,
        (true, true) => Outcome::Rewritten(record.to_string()),
    }
}

impl Store {
    /// Reads every record that holds a sealed value (see the module docs) and returns the writes that
    /// put them all under `sealer`'s current key. Reads only: the caller commits the writes while it
    /// holds the command lane, so that no command writes these records meanwhile.
    pub async fn reseal_plan(&self, sealer: &Sealer) -> Result<ResealPlan, StoreError> {
        let mut plan = ResealPlan::default();
        let models = self.smembers(keys::MODELS).await?;
        let realms = self.smembers(keys::REALMS).await?;
        let agents = self.smembers(keys::AGENTS).await?;
        for kind in SealedRecord::ALL {
            let ids: &[String] = match kind {
                SealedRecord::Model | SealedRecord::ModelRouting => &models,
                SealedRecord::Realm | SealedRecord::RealmRouting => &realms,
                SealedRecord::Agent => &agents,
                SealedRecord::Canary => &[String::new()],
            };
            let names: Vec<String> = ids.iter().map(|id| kind.key(id)).collect();
            let values = self.raw_mget(&names).await?;
            let count = plan.report.counts.entry(kind).or_default();
            for ((id, key), raw) in ids.iter().zip(names).zip(values) {
                let Some(raw) = raw else { continue };
                let outcome = reseal_record(kind, id, &raw, sealer);
                if outcome != Outcome::None {
                    count.sealed += 1;
                }
                match outcome {
                    Outcome::None | Outcome::Current => {}
                    Outcome::Rewritten(value) => {
                        // The canary moves to the current key only once every other value has.
                        if kind == SealedRecord::Canary && !plan.report.failures.is_empty() {
                            count.failed += 1;
                            continue;
                        }
                        count.rewritten += 1;
                        plan.writes.push(Op::Set { key, value });
                    }
                    Outcome::Failed(e) => {
                        count.failed += 1;
                        plan.report.failures.push((key, e));
                    }
                }
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn records_are_rewritten_field_by_field_and_keep_what_they_do_not_know() {
        let ka = SecretKey::generate();
        let old = Sealer::new(ka.clone());
        // A new current key, the old one as previous.
        let rotated = Sealer::with_previous(SecretKey::generate(), vec![ka]).unwrap();
        let stranger = Sealer::new(SecretKey::generate());
        let sealed = old.seal(Purpose::RealmKey, "r1", "sk-realm").unwrap();
        let raw = serde_json::json!({"id": "r1", "future": 1, "key": {"keySealed": sealed, "keyPrefix": "sk-vc-ab"}})
            .to_string();
        let Outcome::Rewritten(new) = reseal_record(SealedRecord::Realm, "r1", &raw, &rotated)
        else {
            panic!("rewritten");
        };
        let v: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v["future"], 1);
        assert_eq!(v["key"]["keyPrefix"], "sk-vc-ab");
        let resealed = v["key"]["keySealed"].as_str().unwrap();
        assert!(rotated.is_current(resealed));
        assert_eq!(
            rotated.open(Purpose::RealmKey, "r1", resealed).unwrap(),
            "sk-realm"
        );
        // A second pass changes nothing.
        assert_eq!(
            reseal_record(SealedRecord::Realm, "r1", &new, &rotated),
            Outcome::Current
        );
        // A rotation's pending and replaced keys are re-sealed with the current one.
        let seal = |k: &str| old.seal(Purpose::RealmKey, "r1", k).unwrap();
        let rotating =
            serde_json::json!({"id": "r1", "key": {"keySealed": seal("sk-a"), "rotation": {
            "pending": {"keySealed": seal("sk-b"), "keyId": "b"},
            "retiring": [{"keySealed": seal("sk-c")}, {"keySealed": seal("sk-d")}]}}})
            .to_string();
        let Outcome::Rewritten(new) = reseal_record(SealedRecord::Realm, "r1", &rotating, &rotated)
        else {
            panic!("rewritten");
        };
        let v: Value = serde_json::from_str(&new).unwrap();
        for (pointer, plain) in [
            ("/key/keySealed", "sk-a"),
            ("/key/rotation/pending/keySealed", "sk-b"),
            ("/key/rotation/retiring/0/keySealed", "sk-c"),
            ("/key/rotation/retiring/1/keySealed", "sk-d"),
        ] {
            let sealed = v.pointer(pointer).and_then(Value::as_str).unwrap();
            assert!(rotated.is_current(sealed), "{pointer}");
            assert_eq!(
                rotated.open(Purpose::RealmKey, "r1", sealed).unwrap(),
                plain
            );
        }
        assert_eq!(v.pointer("/key/rotation/pending/keyId").unwrap(), "b");
        // Bound to its entity: the value of another realm's record does not open here.
        assert!(matches!(
            reseal_record(SealedRecord::Realm, "r2", &raw, &rotated),
            Outcome::Failed(CryptoError::Open)
        ));
        // A key nobody holds.
        assert!(matches!(
            reseal_record(SealedRecord::Realm, "r1", &raw, &stranger),
            Outcome::Failed(CryptoError::UnknownKeyId(_))
        ));
        // No key, nothing to do (a realm without key, a registry agent, a tombstone).
        for (kind, rec) in [
            (
                SealedRecord::Realm,
                serde_json::json!({"id": "r1", "key": null}),
            ),
            (
                SealedRecord::Agent,
                serde_json::json!({"did": "d", "source": {"mode": "registry", "modelId": "m"}}),
            ),
            (
                SealedRecord::RealmRouting,
                serde_json::json!({"realmId": "r1", "deleted": true}),
            ),
        ] {
            assert_eq!(
                reseal_record(kind, "r1", &rec.to_string(), &old),
                Outcome::None
            );
        }
        // The canary is the sealed value itself.
        let canary = old
            .seal(Purpose::Command, keys::SECRET_CHECK, "vc-secret-key-check")
            .unwrap();
        let Outcome::Rewritten(c) = reseal_record(SealedRecord::Canary, "", &canary, &rotated)
        else {
            panic!("canary rewritten");
        };
        assert_eq!(
            rotated
                .open(Purpose::Command, keys::SECRET_CHECK, &c)
                .unwrap(),
            "vc-secret-key-check"
        );
    }
}
