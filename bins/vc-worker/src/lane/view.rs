//! The catalog as a batch sees it: Redis, overlaid with the writes of the batch's earlier commands
//! (not yet committed). Commands of one batch are applied in order, each on this view, and the whole
//! batch is committed at once; the result equals applying them one by one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use vc_shared::command::CommandRecord;
use vc_shared::domain::{Membership, StoredAgent, StoredModel, StoredRealm, SyncRecord};
use vc_shared::routing::{Dependency, ModelRouting, RealmRouting, Routing};
use vc_shared::store::{decode_json, keys, Op, Store, StoreError};

use super::cache::LaneCache;

/// A key's value as the batch left it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Deleted (of whatever type it was).
    Gone,
    /// A string.
    Str(String),
    /// A hash: fields set (`Some`) or deleted (`None`) over Redis' (or over nothing, if `cleared`).
    Hash {
        cleared: bool,
        fields: HashMap<String, Option<String>>,
    },
    /// A set: members added (`true`) or removed (`false`) over Redis' (or over nothing).
    Set {
        cleared: bool,
        members: HashMap<String, bool>,
    },
}

/// The writes of a batch so far.
#[derive(Debug, Default)]
pub struct Overlay {
    entries: HashMap<String, Entry>,
    /// Models this batch wrote, decoded once (forgotten when written again).
    models: Mutex<HashMap<String, Option<Arc<StoredModel>>>>,
}

impl Overlay {
    /// Every key the batch wrote, as it left it.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Records a command's writes (audit appends are not read back and are skipped).
    pub fn record(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Set { key, value } | Op::Setpx { key, value, .. } => {
                    self.forget_decoded(key);
                    self.entries.insert(key.clone(), Entry::Str(value.clone()));
                }
                Op::Del { key } | Op::Unlink { key } => {
                    self.forget_decoded(key);
                    self.entries.insert(key.clone(), Entry::Gone);
                }
                Op::Hset { key, field, value } => {
                    self.hash(key).insert(field.clone(), Some(value.clone()));
                }
                Op::Hdel { key, field } => {
                    self.hash(key).insert(field.clone(), None);
                }
                Op::Sadd { key, member } => {
                    self.set(key).insert(member.clone(), true);
                }
                Op::Srem { key, member } => {
                    self.set(key).insert(member.clone(), false);
                }
                Op::Xadd { .. } => {}
            }
        }
    }

    /// A model this batch wrote, if decoded already.
    fn decoded_model(&self, key: &str) -> Option<Option<Arc<StoredModel>>> {
        self.models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Keeps a model this batch wrote, decoded.
    fn remember_model(&self, key: &str, model: Option<Arc<StoredModel>>) {
        self.models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), model);
    }

    fn forget_decoded(&mut self, key: &str) {
        self.models
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn hash(&mut self, key: &str) -> &mut HashMap<String, Option<String>> {
        let e = self.entries.entry(key.to_string()).or_insert(Entry::Hash {
            cleared: false,
            fields: HashMap::new(),
        });
        if !matches!(e, Entry::Hash { .. }) {
            *e = Entry::Hash {
                cleared: true,
                fields: HashMap::new(),
            };
        }
        match e {
            Entry::Hash { fields, .. } => fields,
            _ => unreachable!("set just above"),
        }
    }

    fn set(&mut self, key: &str) -> &mut HashMap<String, bool> {
        let e = self.entries.entry(key.to_string()).or_insert(Entry::Set {
            cleared: false,
            members: HashMap::new(),
        });
        if !matches!(e, Entry::Set { .. }) {
            *e = Entry::Set {
                cleared: true,
                members: HashMap::new(),
            };
        }
        match e {
            Entry::Set { members, .. } => members,
            _ => unreachable!("set just above"),
        }
    }
}

/// Redis through the batch's overlay: the reads commands make while they are applied.
pub struct View<'a> {
    /// Redis (also for what commands never write: presence).
    pub store: &'a Store,
    overlay: &'a Overlay,
    cache: &'a LaneCache,
}

impl<'a> View<'a> {
    /// Reads `store` (through `cache`) as `overlay` left it.
    pub fn new(store: &'a Store, overlay: &'a Overlay, cache: &'a LaneCache) -> Self {
        View {
            store,
            overlay,
            cache,
        }
    }

    async fn base_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(v) = self.cache.get(key) {
            return Ok(v);
        }
        self.cache.missed();
        let v = self.store.raw_get(key).await?;
        self.cache.put_string(key, v.clone());
        Ok(v)
    }

    async fn base_hgetall(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        if let Some(v) = self.cache.hgetall(key) {
            return Ok(v);
        }
        self.cache.missed();
        let v = self.store.raw_hgetall(key).await?;
        self.cache.put_hash(key, &v);
        Ok(v)
    }

    /// A whole catalog hash as Redis holds it, shared with the cache (no copy when it is known).
    async fn base_hash(&self, key: &str) -> Result<Arc<BTreeMap<String, String>>, StoreError> {
        if let Some(h) = self.cache.hash(key) {
            return Ok(h);
        }
        let all = self.base_hgetall(key).await?;
        Ok(self
            .cache
            .hash(key)
            .unwrap_or_else(|| Arc::new(all.into_iter().collect())))
    }

    async fn base_hget(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        if let Some(v) = self.cache.hget(key, field) {
            return Ok(v);
        }
        self.cache.missed();
        let v = self.store.raw_hget(key, field).await?;
        self.cache.put_field(key, field, v.clone());
        Ok(v)
    }

    async fn base_count(&self, key: &str, set: bool) -> Result<usize, StoreError> {
        if let Some(n) = self.cache.count(key) {
            return Ok(n);
        }
        self.cache.missed();
        let n = if set {
            self.store.raw_scard(key).await?
        } else {
            self.store.raw_hlen(key).await?
        };
        self.cache.put_count(key, n);
        Ok(n)
    }

    /// Whether each of `names` is in Redis' `key` (a set's members or a hash's fields), asking Redis
    /// only for those the cache does not know.
    async fn base_exists(
        &self,
        key: &str,
        names: &[&str],
        set: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.cache.exists(key, n).is_none())
            .collect();
        if !unknown.is_empty() {
            self.cache.missed();
            let answers = if set {
                self.store.raw_smismember(key, &unknown).await?
            } else {
                self.store.raw_hexists(key, &unknown).await?
            };
            for (n, there) in unknown.iter().zip(answers) {
                self.cache.put_exists(key, n, there);
            }
        }
        Ok(names
            .iter()
            .map(|n| self.cache.exists(key, n).unwrap_or(false))
            .collect())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.overlay.entries.get(key) {
            Some(Entry::Str(v)) => Ok(Some(v.clone())),
            Some(_) => Ok(None),
            None => self.base_get(key).await,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        decode_json(key, self.get(key).await?)
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .hash(key)
            .await?
            .iter()
            .map(|(f, v)| (f.clone(), v.clone()))
            .collect())
    }

    /// A whole hash as the batch left it: shared, not copied, when the batch did not write it.
    async fn hash(&self, key: &str) -> Result<Arc<BTreeMap<String, String>>, StoreError> {
        let (cleared, fields) = match self.overlay.entries.get(key) {
            None => return self.base_hash(key).await,
            Some(Entry::Hash { cleared, fields }) => (*cleared, fields),
            Some(_) => return Ok(Arc::default()),
        };
        let mut all = if cleared {
            Arc::default()
        } else {
            self.base_hash(key).await?
        };
        let merged = Arc::make_mut(&mut all);
        for (f, v) in fields {
            match v {
                Some(v) => merged.insert(f.clone(), v.clone()),
                None => merged.remove(f),
            };
        }
        Ok(all)
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        match self.overlay.entries.get(key) {
            None => self.base_hget(key, field).await,
            Some(Entry::Hash { cleared, fields }) => match fields.get(field) {
                Some(v) => Ok(v.clone()),
                None if *cleared => Ok(None),
                None => self.base_hget(key, field).await,
            },
            Some(_) => Ok(None),
        }
    }

    async fn hlen(&self, key: &str) -> Result<usize, StoreError> {
        let (cleared, fields) = match self.overlay.entries.get(key) {
            None => return self.base_count(key, false).await,
            Some(Entry::Hash { cleared, fields }) => (*cleared, fields),
            Some(_) => return Ok(0),
        };
        if cleared {
            return Ok(fields.values().filter(|v| v.is_some()).count());
        }
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let base = self.base_count(key, false).await? as i64;
        let exists = self.base_exists(key, &names, false).await?;
        let delta: i64 = names
            .iter()
            .zip(exists)
            .map(|(f, e)| match (fields[*f].is_some(), e) {
                (true, false) => 1,
                (false, true) => -1,
                _ => 0,
            })
            .sum();
        Ok((base + delta).max(0) as usize)
    }

    async fn scard(&self, key: &str) -> Result<usize, StoreError> {
        let (cleared, members) = match self.overlay.entries.get(key) {
            None => return self.base_count(key, true).await,
            Some(Entry::Set { cleared, members }) => (*cleared, members),
            Some(_) => return Ok(0),
        };
        if cleared {
            return Ok(members.values().filter(|p| **p).count());
        }
        let names: Vec<&str> = members.keys().map(String::as_str).collect();
        let base = self.base_count(key, true).await? as i64;
        let exists = self.base_exists(key, &names, true).await?;
        let delta: i64 = names
            .iter()
            .zip(exists)
            .map(|(m, e)| match (members[*m], e) {
                (true, false) => 1,
                (false, true) => -1,
                _ => 0,
            })
            .sum();
        Ok((base + delta).max(0) as usize)
    }

    // ---- what commands read ----

    /// Catalog revision (as Redis has it: the overlay never writes it).
    pub async fn rev(&self) -> Result<u64, StoreError> {
        Ok(self
            .get(keys::REV)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Last config version handed out.
    pub async fn version_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .get(keys::VERSION_SEQ)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// A command record.
    pub async fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.get_json(&keys::command(id)).await
    }

    /// A model. Models are read again and again (every granted model of a realm, for each change of
    /// its routing), so the model as Redis holds it is kept decoded in the lane cache.
    pub async fn model(&self, id: &str) -> Result<Option<Arc<StoredModel>>, StoreError> {
        let key = keys::model(id);
        if self.overlay.entries.contains_key(&key) {
            if let Some(m) = self.overlay.decoded_model(&key) {
                return Ok(m);
            }
            let m = self.get_json::<StoredModel>(&key).await?.map(Arc::new);
            self.overlay.remember_model(&key, m.clone());
            return Ok(m);
        }
        if let Some(m) = self.cache.decoded_model(&key) {
            return Ok(m);
        }
        let m = decode_json::<StoredModel>(&key, self.base_get(&key).await?)?.map(Arc::new);
        self.cache.put_decoded_model(&key, m.clone());
        Ok(m)
    }

    /// A realm.
    pub async fn realm(&self, id: &str) -> Result<Option<StoredRealm>, StoreError> {
        self.get_json(&keys::realm(id)).await
    }

    /// An agent.
    pub async fn agent(&self, did: &str) -> Result<Option<StoredAgent>, StoreError> {
        self.get_json(&keys::agent(did)).await
    }

    /// An agent's membership records, those of deleted realms included.
    pub async fn agent_realms_raw(&self, did: &str) -> Result<Vec<Membership>, StoreError> {
        let key = keys::agent_realms(did);
        decode_all(&key, self.hgetall(&key).await?)
    }

    /// A realm's members.
    pub async fn realm_members(&self, id: &str) -> Result<Vec<Membership>, StoreError> {
        let key = keys::realm_members(id);
        decode_all(&key, self.hgetall(&key).await?)
    }

    /// How many members a realm has.
    pub async fn realm_member_count(&self, id: &str) -> Result<usize, StoreError> {
        self.hlen(&keys::realm_members(id)).await
    }

    /// How many agents are routed through a realm.
    pub async fn realm_routed_count(&self, id: &str) -> Result<usize, StoreError> {
        self.scard(&keys::realm_routed(id)).await
    }

    /// A realm's grants: (model id, grantedAt).
    pub async fn realm_grants(
        &self,
        id: &str,
    ) -> Result<Arc<BTreeMap<String, String>>, StoreError> {
        self.hash(&keys::realm_grants(id)).await
    }

    /// A model's grants: (realm id, grantedAt).
    pub async fn model_grants(
        &self,
        id: &str,
    ) -> Result<Arc<BTreeMap<String, String>>, StoreError> {
        self.hash(&keys::model_grants(id)).await
    }

    /// Number of realms a model is granted to.
    pub async fn model_grant_count(&self, id: &str) -> Result<usize, StoreError> {
        self.hlen(&keys::model_grants(id)).await
    }

    /// Model id by LiteLLM name.
    pub async fn model_id_by_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.hget(keys::MODEL_NAMES, name).await
    }

    /// Realm id by slug.
    pub async fn realm_id_by_slug(&self, slug: &str) -> Result<Option<String>, StoreError> {
        self.hget(keys::REALM_SLUGS, slug).await
    }

    /// A dependency's routing state.
    pub async fn routing(&self, dep: &Dependency) -> Result<Option<Routing>, StoreError> {
        Ok(match dep {
            Dependency::Realm(id) => self
                .get_json::<RealmRouting>(&keys::routing_realm(id))
                .await?
                .map(Routing::Realm),
            Dependency::Model(id) => self
                .get_json::<ModelRouting>(&keys::routing_model(id))
                .await?
                .map(Routing::Model),
        })
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

    /// A realm's last spend reading (written beside the lane by the spend task).
    pub async fn realm_spend(
        &self,
        id: &str,
    ) -> Result<Option<vc_shared::budget::RealmSpend>, StoreError> {
        self.get_json(&vc_shared::store::spend_key(id)).await
    }

    /// An agent's presence (never written by commands; read once per batch).
    pub async fn presence(&self, did: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.base_hgetall(&keys::presence(did)).await
    }
}

fn decode_all(key: &str, raw: Vec<(String, String)>) -> Result<Vec<Membership>, StoreError> {
    raw.into_iter()
        .filter_map(|(_, v)| decode_json(key, Some(v)).transpose())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_tracks_types_and_deletes() {
        let mut o = Overlay::default();
        o.record(&[
            Op::Hset {
                key: "h".into(),
                field: "a".into(),
                value: "1".into(),
            },
            Op::Del { key: "h".into() },
            Op::Hset {
                key: "h".into(),
                field: "b".into(),
                value: "2".into(),
            },
            Op::Sadd {
                key: "s".into(),
                member: "x".into(),
            },
            Op::Srem {
                key: "s".into(),
                member: "y".into(),
            },
        ]);
        match o.entries.get("h") {
            Some(Entry::Hash { cleared, fields }) => {
                assert!(*cleared, "a hash written after a delete starts empty");
                assert_eq!(fields.get("b"), Some(&Some("2".to_string())));
                assert!(!fields.contains_key("a"));
            }
            e => panic!("{e:?}"),
        }
        match o.entries.get("s") {
            Some(Entry::Set { cleared, members }) => {
                assert!(!cleared);
                assert_eq!(members.get("x"), Some(&true));
                assert_eq!(members.get("y"), Some(&false));
            }
            e => panic!("{e:?}"),
        }
    }
}
