//! What the lane holder knows of the catalog in Redis, kept from batch to batch while it holds the lane.
//!
//! Only the lane holder writes the catalog, and every write beside the lane (a command recorded as
//! failed by the head-of-queue check) moves the revision. So what the holder read or committed stays
//! true as long as the revision is the one its last commit left: each batch starts with
//! [`LaneCache::begin`], which keeps the cache only if the revision is unchanged, and a committed
//! batch folds its writes in ([`LaneCache::fold`]). Records written beside the lane without a revision
//! (sync records, command records) are [`volatile`]: read again by every batch.
//!
//! The cache is bounded ([`MAX_WEIGHT`] entries): past it, it starts over at the next batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use vc_shared::domain::StoredModel;
use vc_shared::store::keys;

use super::view::{Entry, Overlay};

/// Most entries (strings, hash fields, set members, counts) kept before the cache starts over.
pub const MAX_WEIGHT: usize = 200_000;

/// Keys written beside the lane without moving the revision: never kept past the batch.
pub fn volatile(key: &str) -> bool {
    key == keys::REV
        || key.starts_with("{vc}:sync:")
        || key.starts_with("{vc}:cmd:")
        || key.starts_with("{vc}:lane")
        || key.starts_with("presence:")
        || key.starts_with("spend:")
}

/// The catalog as the lane holder last knew it (see the module docs).
#[derive(Debug, Default)]
pub struct LaneCache {
    inner: Mutex<Known>,
    /// Reads that went to Redis because nothing here knew the answer (see [`LaneCache::take_misses`]).
    misses: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Known {
    /// The revision everything below is true at.
    rev: Option<u64>,
    /// Values of strings (`None`: no such key).
    strings: HashMap<String, Option<String>>,
    /// Whole hashes (shared with the views that read them: a read costs no copy).
    hashes: HashMap<String, Arc<BTreeMap<String, String>>>,
    /// Single fields of hashes not known whole (`None`: no such field).
    fields: HashMap<String, HashMap<String, Option<String>>>,
    /// Whether single members of sets (or fields of hashes) are there.
    present: HashMap<String, HashMap<String, bool>>,
    /// Sets whose members are all in `present`.
    whole_sets: HashSet<String>,
    /// `SCARD` or `HLEN`.
    counts: HashMap<String, usize>,
    /// Models decoded from `strings` (by key), so each is parsed once while it is unchanged.
    models: HashMap<String, Option<Arc<StoredModel>>>,
    /// Volatile strings read by this batch.
    volatile: HashMap<String, Option<String>>,
    /// Volatile hashes read by this batch (presence).
    volatile_hashes: HashMap<String, Vec<(String, String)>>,
    /// Whether the volatile reads were made ahead, right after the last commit, for the next batch
    /// ([`LaneCache::start_ahead`]): that batch keeps them if it starts at that commit's revision.
    ahead: bool,
    /// Entries held (roughly): bounds the cache.
    weight: usize,
}

impl Known {
    fn clear_catalog(&mut self) {
        let volatile = std::mem::take(&mut self.volatile);
        let volatile_hashes = std::mem::take(&mut self.volatile_hashes);
        *self = Known {
            volatile,
            volatile_hashes,
            ..Known::default()
        };
    }

    /// Whether `member` (a set member or a hash field) is in `key`, if known.
    fn exists(&self, key: &str, member: &str) -> Option<bool> {
        if let Some(h) = self.hashes.get(key) {
            return Some(h.contains_key(member));
        }
        if let Some(v) = self.fields.get(key).and_then(|f| f.get(member)) {
            return Some(v.is_some());
        }
        if let Some(p) = self.present.get(key).and_then(|p| p.get(member)) {
            return Some(*p);
        }
        if self.whole_sets.contains(key) || self.counts.get(key) == Some(&0) {
            return Some(false);
        }
        None
    }

    fn forget(&mut self, key: &str) {
        self.models.remove(key);
        self.strings.remove(key);
        self.hashes.remove(key);
        self.fields.remove(key);
        self.present.remove(key);
        self.whole_sets.remove(key);
        self.counts.remove(key);
    }

    /// The count of `key` after `changes` (member → there), if the count and every changed member's
    /// presence before are known.
    fn count_after<'a>(
        &self,
        key: &str,
        changes: impl Iterator<Item = (&'a String, bool)>,
    ) -> Option<usize> {
        let mut n = *self.counts.get(key)? as i64;
        for (m, there) in changes {
            match (self.exists(key, m)?, there) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        Some(n.max(0) as usize)
    }

    fn fold_entry(&mut self, key: &str, entry: &Entry) {
        match entry {
            Entry::Str(v) => {
                self.forget(key);
                self.strings.insert(key.to_string(), Some(v.clone()));
                self.weight += 1;
            }
            Entry::Gone => {
                self.forget(key);
                self.strings.insert(key.to_string(), None);
                self.hashes.insert(key.to_string(), Arc::default());
                self.whole_sets.insert(key.to_string());
                self.counts.insert(key.to_string(), 0);
                self.weight += 1;
            }
            Entry::Hash { cleared, fields } => {
                self.strings.remove(key);
                if *cleared || self.hashes.contains_key(key) {
                    let h = Arc::make_mut(self.hashes.entry(key.to_string()).or_default());
                    if *cleared {
                        h.clear();
                    }
                    for (f, v) in fields {
                        match v {
                            Some(v) => h.insert(f.clone(), v.clone()),
                            None => h.remove(f),
                        };
                    }
                    let n = h.len();
                    self.counts.insert(key.to_string(), n);
                    self.fields.remove(key);
                    self.present.remove(key);
                } else {
                    let count = self.count_after(key, fields.iter().map(|(f, v)| (f, v.is_some())));
                    let known = self.fields.entry(key.to_string()).or_default();
                    for (f, v) in fields {
                        known.insert(f.clone(), v.clone());
                    }
                    self.present.remove(key);
                    match count {
                        Some(n) => self.counts.insert(key.to_string(), n),
                        None => self.counts.remove(key),
                    };
                }
                self.weight += fields.len() + 1;
            }
            Entry::Set { cleared, members } => {
                self.strings.remove(key);
                self.hashes.remove(key);
                self.fields.remove(key);
                let count = if *cleared {
                    Some(members.values().filter(|p| **p).count())
                } else {
                    self.count_after(key, members.iter().map(|(m, p)| (m, *p)))
                };
                if *cleared {
                    self.present.remove(key);
                    self.whole_sets.insert(key.to_string());
                }
                let known = self.present.entry(key.to_string()).or_default();
                for (m, p) in members {
                    known.insert(m.clone(), *p);
                }
                match count {
                    Some(n) => self.counts.insert(key.to_string(), n),
                    None => self.counts.remove(key),
                };
                self.weight += members.len() + 1;
            }
        }
    }
}

impl LaneCache {
    fn lock(&self) -> MutexGuard<'_, Known> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one read that went to Redis.
    pub fn missed(&self) {
        self.misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads that went to Redis since the last call.
    pub fn take_misses(&self) -> u64 {
        self.misses.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// A batch starts at revision `rev`: what is known stays if nothing was written since (and the
    /// cache is within its bound); volatile reads never stay.
    pub fn begin(&self, rev: u64) {
        let mut k = self.lock();
        let read_ahead = std::mem::take(&mut k.ahead) && k.rev == Some(rev);
        if !read_ahead {
            k.volatile.clear();
            k.volatile_hashes.clear();
        }
        if k.rev != Some(rev) || k.weight > MAX_WEIGHT {
            k.clear_catalog();
            k.rev = Some(rev);
        }
    }

    /// Forgets everything (a commit failed or conflicted: what Redis holds is unknown).
    pub fn reset(&self) {
        let mut k = self.lock();
        k.clear_catalog();
        k.volatile.clear();
        k.volatile_hashes.clear();
        k.ahead = false;
    }

    /// What follows are reads made right after the last commit (in its round trip) for the next
    /// batch: the volatile reads of the batch before are dropped now, and these are kept by the next
    /// [`LaneCache::begin`] at the same revision. Call after [`LaneCache::fold`].
    pub fn start_ahead(&self) {
        let mut k = self.lock();
        k.volatile.clear();
        k.volatile_hashes.clear();
        k.ahead = true;
    }

    /// A batch's writes are committed, leaving the revision at `rev`: they become what is known.
    pub fn fold(&self, overlay: &Overlay, rev: u64) {
        let mut k = self.lock();
        for (key, entry) in overlay.entries() {
            if volatile(key) {
                k.volatile.remove(key);
                k.volatile_hashes.remove(key);
            } else {
                k.fold_entry(key, entry);
            }
        }
        k.rev = Some(rev);
    }

    /// A string's value, if known (`Some(None)`: no such key).
    pub fn get(&self, key: &str) -> Option<Option<String>> {
        let k = self.lock();
        if volatile(key) {
            return k.volatile.get(key).cloned();
        }
        k.strings.get(key).cloned()
    }

    /// Records a string read from Redis.
    pub fn put_string(&self, key: &str, value: Option<String>) {
        let mut k = self.lock();
        if volatile(key) {
            k.volatile.insert(key.to_string(), value);
        } else {
            k.models.remove(key);
            k.strings.insert(key.to_string(), value);
            k.weight += 1;
        }
    }

    /// A model as Redis holds it, decoded, if known.
    pub fn decoded_model(&self, key: &str) -> Option<Option<Arc<StoredModel>>> {
        self.lock().models.get(key).cloned()
    }

    /// Records a model decoded from the string Redis holds at `key`.
    pub fn put_decoded_model(&self, key: &str, model: Option<Arc<StoredModel>>) {
        let mut k = self.lock();
        k.models.insert(key.to_string(), model);
        k.weight += 1;
    }

    /// A whole hash, if known.
    pub fn hgetall(&self, key: &str) -> Option<Vec<(String, String)>> {
        let k = self.lock();
        if volatile(key) {
            return k.volatile_hashes.get(key).cloned();
        }
        k.hashes
            .get(key)
            .map(|h| h.iter().map(|(f, v)| (f.clone(), v.clone())).collect())
    }

    /// A whole (non-volatile) hash, if known, shared rather than copied.
    pub fn hash(&self, key: &str) -> Option<Arc<BTreeMap<String, String>>> {
        if volatile(key) {
            return None;
        }
        self.lock().hashes.get(key).cloned()
    }

    /// Whether a whole hash is known.
    pub fn knows_hash(&self, key: &str) -> bool {
        let k = self.lock();
        if volatile(key) {
            return k.volatile_hashes.contains_key(key);
        }
        k.hashes.contains_key(key)
    }

    /// Records a whole hash read from Redis.
    pub fn put_hash(&self, key: &str, all: &[(String, String)]) {
        let mut k = self.lock();
        if volatile(key) {
            k.volatile_hashes.insert(key.to_string(), all.to_vec());
            return;
        }
        k.fields.remove(key);
        k.present.remove(key);
        k.counts.insert(key.to_string(), all.len());
        k.weight += all.len() + 1;
        k.hashes
            .insert(key.to_string(), Arc::new(all.iter().cloned().collect()));
    }

    /// One field of a hash, if known (`Some(None)`: no such field).
    pub fn hget(&self, key: &str, field: &str) -> Option<Option<String>> {
        let k = self.lock();
        if let Some(h) = k.hashes.get(key) {
            return Some(h.get(field).cloned());
        }
        if let Some(v) = k.fields.get(key).and_then(|f| f.get(field)) {
            return Some(v.clone());
        }
        (k.counts.get(key) == Some(&0)).then_some(None)
    }

    /// Records one field read from Redis.
    pub fn put_field(&self, key: &str, field: &str, value: Option<String>) {
        if volatile(key) {
            return;
        }
        let mut k = self.lock();
        if k.hashes.contains_key(key) {
            return;
        }
        k.fields
            .entry(key.to_string())
            .or_default()
            .insert(field.to_string(), value);
        k.weight += 1;
    }

    /// Whether a set member or hash field is there, if known.
    pub fn exists(&self, key: &str, member: &str) -> Option<bool> {
        self.lock().exists(key, member)
    }

    /// Records whether a set member or hash field is there.
    pub fn put_exists(&self, key: &str, member: &str, there: bool) {
        if volatile(key) {
            return;
        }
        let mut k = self.lock();
        k.present
            .entry(key.to_string())
            .or_default()
            .insert(member.to_string(), there);
        k.weight += 1;
    }

    /// A set's or hash's size, if known.
    pub fn count(&self, key: &str) -> Option<usize> {
        self.lock().counts.get(key).copied()
    }

    /// Records a size read from Redis.
    pub fn put_count(&self, key: &str, n: usize) {
        if volatile(key) {
            return;
        }
        let mut k = self.lock();
        k.counts.insert(key.to_string(), n);
        k.weight += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vc_shared::store::Op;

    fn hset(key: &str, field: &str, value: &str) -> Op {
        Op::Hset {
            key: key.into(),
            field: field.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_moved_revision_forgets_the_catalog() {
        let c = LaneCache::default();
        c.begin(5);
        c.put_string("{vc}:model:m", Some("x".into()));
        c.begin(5);
        assert_eq!(c.get("{vc}:model:m"), Some(Some("x".into())));
        c.begin(6);
        assert_eq!(c.get("{vc}:model:m"), None);
    }

    #[test]
    fn volatile_reads_last_one_batch() {
        let c = LaneCache::default();
        c.begin(1);
        c.put_string("{vc}:sync:realm:r", Some("s".into()));
        assert_eq!(c.get("{vc}:sync:realm:r"), Some(Some("s".into())));
        c.begin(1);
        assert_eq!(c.get("{vc}:sync:realm:r"), None);
    }

    #[test]
    fn committed_writes_are_folded_in() {
        let c = LaneCache::default();
        c.begin(1);
        c.put_hash("{vc}:realm:r:grants", &[("a".into(), "t".into())]);
        c.put_count("{vc}:realm:r:routed", 2);
        c.put_exists("{vc}:realm:r:routed", "did:1", false);
        c.put_field("{vc}:realm-slugs", "one", None);
        let mut o = Overlay::default();
        o.record(&[
            hset("{vc}:realm:r:grants", "b", "t2"),
            Op::Hdel {
                key: "{vc}:realm:r:grants".into(),
                field: "a".into(),
            },
            Op::Sadd {
                key: "{vc}:realm:r:routed".into(),
                member: "did:1".into(),
            },
            hset("{vc}:realm-slugs", "one", "r"),
            Op::Set {
                key: "{vc}:realm:r".into(),
                value: "{}".into(),
            },
            Op::Del {
                key: "{vc}:model:gone".into(),
            },
        ]);
        c.fold(&o, 2);
        c.begin(2);
        assert_eq!(
            c.hgetall("{vc}:realm:r:grants"),
            Some(vec![("b".into(), "t2".into())])
        );
        assert_eq!(c.count("{vc}:realm:r:grants"), Some(1));
        assert_eq!(c.count("{vc}:realm:r:routed"), Some(3));
        assert_eq!(c.exists("{vc}:realm:r:routed", "did:1"), Some(true));
        assert_eq!(c.hget("{vc}:realm-slugs", "one"), Some(Some("r".into())));
        assert_eq!(c.hget("{vc}:realm-slugs", "two"), None);
        assert_eq!(c.get("{vc}:realm:r"), Some(Some("{}".into())));
        assert_eq!(c.get("{vc}:model:gone"), Some(None));
        assert_eq!(c.count("{vc}:model:gone"), Some(0));
    }

    #[test]
    fn a_count_with_unknown_members_is_forgotten() {
        let c = LaneCache::default();
        c.begin(1);
        c.put_count("{vc}:realm:r:routed", 2);
        let mut o = Overlay::default();
        o.record(&[Op::Srem {
            key: "{vc}:realm:r:routed".into(),
            member: "did:unknown".into(),
        }]);
        c.fold(&o, 2);
        assert_eq!(c.count("{vc}:realm:r:routed"), None);
        assert_eq!(c.exists("{vc}:realm:r:routed", "did:unknown"), Some(false));
    }

    #[test]
    fn a_decoded_model_is_forgotten_when_written_or_read_again() {
        let c = LaneCache::default();
        c.begin(1);
        c.put_decoded_model("{vc}:model:m", None);
        assert_eq!(c.decoded_model("{vc}:model:m"), Some(None));
        let mut o = Overlay::default();
        o.record(&[Op::Set {
            key: "{vc}:model:m".into(),
            value: "{}".into(),
        }]);
        c.fold(&o, 2);
        assert_eq!(c.decoded_model("{vc}:model:m"), None);
        c.put_decoded_model("{vc}:model:m", None);
        c.put_string("{vc}:model:m", Some("{}".into()));
        assert_eq!(c.decoded_model("{vc}:model:m"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = LaneCache::default();
        c.begin(1);
        for i in 0..=MAX_WEIGHT {
            c.put_string(&format!("{{vc}}:agent:{i}"), None);
        }
        c.begin(1);
        assert_eq!(c.get("{vc}:agent:0"), None);
    }
}
