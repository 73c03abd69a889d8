//! The in-memory copy of the catalog one API instance serves its reads from, and the pure functions
//! that turn it into the contract's views and pages.
//!
//! It mirrors the Redis records key by key: the change log names the keys a commit wrote
//! ([`Catalog::plan`] says what to read again), and [`Catalog::absorb`] replaces each record with what
//! Redis holds now (absent = deleted). The indexes that lists walk in order are kept beside the
//! records, so a page costs the page, not the fleet.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use vc_shared::domain::{
    AgentView, Membership, ModelRealmView, ModelView, RealmView, StoredAgent, StoredModel,
    StoredRealm, SyncRecord,
};
use vc_shared::routing::{effective, Dependency, ModelRouting, RealmRouting, Routing};
use vc_shared::store::{keys, ManyReads, ReadPlan};
use vc_shared::views::{self, PresenceView};
use vc_shared::wire::ConfigState;

/// What the change log's keys name (keys of no interest to reads are `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Record {
    Model(String),
    ModelGrants(String),
    Realm(String),
    RealmGrants(String),
    Agent(String),
    AgentRealms(String),
    SyncModel(String),
    SyncRealm(String),
    RoutingModel(String),
    RoutingRealm(String),
}

impl Record {
    /// Classifies a catalog key. Ids never end in `:grants`, `:members`, `:routed` or `:realms` (they
    /// are UUIDs from REST, or `[A-Za-z0-9_:-]` names chosen on NATS that the keyspace itself could not
    /// tell apart either).
    pub(crate) fn of(key: &str) -> Option<Record> {
        let rest = key.strip_prefix("{vc}:")?;
        let (kind, id) = rest.split_once(':')?;
        let suffixed = |s: &str| id.strip_suffix(s).map(str::to_string);
        Some(match kind {
            "model" => {
                if let Some(id) = suffixed(":grants") {
                    Record::ModelGrants(id)
                } else if id.ends_with(":routed") {
                    return None;
                } else {
                    Record::Model(id.into())
                }
            }
            "realm" => {
                if let Some(id) = suffixed(":grants") {
                    Record::RealmGrants(id)
                } else if id.ends_with(":members") || id.ends_with(":routed") {
                    // Members are followed through each agent's own memberships (small records);
                    // the realm's hash is the same relation seen from the other side.
                    return None;
                } else {
                    Record::Realm(id.into())
                }
            }
            "agent" => match suffixed(":realms") {
                Some(did) => Record::AgentRealms(did),
                None => Record::Agent(id.into()),
            },
            "sync" => match id.split_once(':')? {
                ("model", id) => Record::SyncModel(id.into()),
                ("realm", id) => Record::SyncRealm(id.into()),
                _ => return None,
            },
            "routing" => match id.split_once(':')? {
                ("model", id) => Record::RoutingModel(id.into()),
                ("realm", id) => Record::RoutingRealm(id.into()),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn key(&self) -> String {
        match self {
            Record::Model(id) => keys::model(id),
            Record::ModelGrants(id) => keys::model_grants(id),
            Record::Realm(id) => keys::realm(id),
            Record::RealmGrants(id) => keys::realm_grants(id),
            Record::Agent(did) => keys::agent(did),
            Record::AgentRealms(did) => keys::agent_realms(did),
            Record::SyncModel(id) => keys::sync_model(id),
            Record::SyncRealm(id) => keys::sync_realm(id),
            Record::RoutingModel(id) => keys::routing_model(id),
            Record::RoutingRealm(id) => keys::routing_realm(id),
        }
    }

    fn is_hash(&self) -> bool {
        matches!(
            self,
            Record::ModelGrants(_) | Record::RealmGrants(_) | Record::AgentRealms(_)
        )
    }
}

/// Reads of a set of records, and the records in the order their answers come back.
pub(crate) struct Reload {
    pub(crate) plan: ReadPlan,
    strings: Vec<Record>,
    hashes: Vec<Record>,
}

/// Plans reading `records` again (strings first, then hashes, so that a batch's memberships find
/// their agents).
pub(crate) fn plan(records: impl IntoIterator<Item = Record>) -> Reload {
    let mut seen = std::collections::HashSet::new();
    let (mut strings, mut hashes) = (Vec::new(), Vec::new());
    for r in records {
        if seen.insert(r.clone()) {
            if r.is_hash() {
                hashes.push(r);
            } else {
                strings.push(r);
            }
        }
    }
    Reload {
        plan: ReadPlan {
            strings: strings.iter().map(Record::key).collect(),
            hashes: hashes.iter().map(Record::key).collect(),
            counts: Vec::new(),
            fields: Vec::new(),
        },
        strings,
        hashes,
    }
}

/// The catalog, presence and acks.
#[derive(Default)]
pub(crate) struct Catalog {
    models: HashMap<String, StoredModel>,
    /// Newest first.
    model_order: BTreeSet<(Reverse<String>, String)>,
    model_grants: HashMap<String, Vec<(String, String)>>,
    realms: HashMap<String, StoredRealm>,
    /// Oldest first.
    realm_order: BTreeSet<(String, String)>,
    realm_grants: HashMap<String, Vec<(String, String)>>,
    agents: HashMap<String, StoredAgent>,
    /// Oldest first.
    agent_order: BTreeSet<(String, String)>,
    agent_realms: HashMap<String, Vec<Membership>>,
    /// Per realm, its members in agent order (created, DID).
    realm_members: HashMap<String, BTreeSet<(String, String)>>,
    /// The creation time each agent's memberships are filed under in `realm_members`.
    filed_as: HashMap<String, String>,
    sync_models: HashMap<String, SyncRecord>,
    sync_realms: HashMap<String, SyncRecord>,
    routings: HashMap<Dependency, Routing>,
    presence: HashMap<String, PresenceView>,
    acks: HashMap<String, u64>,
}

fn decode<T: serde::de::DeserializeOwned>(raw: &Option<String>) -> Option<T> {
    raw.as_deref().and_then(|s| serde_json::from_str(s).ok())
}

impl Catalog {
    /// Replaces the records of `reload` with Redis's answers.
    pub(crate) fn absorb(&mut self, reload: &Reload, reads: ManyReads) {
        for (r, raw) in reload.strings.iter().zip(&reads.strings) {
            match r {
                Record::Model(id) => self.set_model(id, decode(raw)),
                Record::Realm(id) => self.set_realm(id, decode(raw)),
                Record::Agent(did) => self.set_agent(did, decode(raw)),
                Record::SyncModel(id) => set_or_remove(&mut self.sync_models, id, decode(raw)),
                Record::SyncRealm(id) => set_or_remove(&mut self.sync_realms, id, decode(raw)),
                Record::RoutingModel(id) => {
                    let dep = Dependency::Model(id.clone());
                    let v = decode::<ModelRouting>(raw).map(Routing::Model);
                    set_or_remove(&mut self.routings, &dep, v);
                }
                Record::RoutingRealm(id) => {
                    let dep = Dependency::Realm(id.clone());
                    let v = decode::<RealmRouting>(raw).map(Routing::Realm);
                    set_or_remove(&mut self.routings, &dep, v);
                }
                _ => {}
            }
        }
        for (r, fields) in reload.hashes.iter().zip(reads.hashes) {
            match r {
                Record::ModelGrants(id) => set_or_remove(
                    &mut self.model_grants,
                    id,
                    Some(fields).filter(|f| !f.is_empty()),
                ),
                Record::RealmGrants(id) => set_or_remove(
                    &mut self.realm_grants,
                    id,
                    Some(fields).filter(|f| !f.is_empty()),
                ),
                Record::AgentRealms(did) => {
                    let ms: Vec<Membership> = fields
                        .iter()
                        .filter_map(|(_, v)| serde_json::from_str(v).ok())
                        .collect();
                    self.set_agent_realms(did, ms);
                }
                _ => {}
            }
        }
    }

    fn set_model(&mut self, id: &str, m: Option<StoredModel>) {
        if let Some(old) = self.models.remove(id) {
            self.model_order.remove(&(Reverse(old.created_at), old.id));
        }
        if let Some(m) = m {
            self.model_order
                .insert((Reverse(m.created_at.clone()), m.id.clone()));
            self.models.insert(id.to_string(), m);
        }
    }

    fn set_realm(&mut self, id: &str, r: Option<StoredRealm>) {
        if let Some(old) = self.realms.remove(id) {
            self.realm_order.remove(&(old.created_at, old.id));
        }
        if let Some(r) = r {
            self.realm_order
                .insert((r.created_at.clone(), r.id.clone()));
            self.realms.insert(id.to_string(), r);
        }
    }

    fn set_agent(&mut self, did: &str, a: Option<StoredAgent>) {
        let old = self.agents.remove(did);
        if let Some(old) = &old {
            self.agent_order
                .remove(&(old.created_at.clone(), old.did.clone()));
        }
        let created = a.as_ref().map(|a| a.created_at.clone());
        if let Some(a) = a {
            self.agent_order
                .insert((a.created_at.clone(), a.did.clone()));
            self.agents.insert(did.to_string(), a);
        } else {
            self.presence.remove(did);
            self.acks.remove(did);
        }
        // The realm indexes are ordered by the agent's creation: re-file its memberships.
        if old.as_ref().map(|o| &o.created_at) != created.as_ref() {
            let ms = self.agent_realms.get(did).cloned().unwrap_or_default();
            self.set_agent_realms(did, ms);
        }
    }

    fn set_agent_realms(&mut self, did: &str, ms: Vec<Membership>) {
        let old = self.agent_realms.remove(did).unwrap_or_default();
        if let Some(created) = self.filed_as.remove(did) {
            let entry = (created, did.to_string());
            for m in old {
                if let Some(set) = self.realm_members.get_mut(&m.realm_id) {
                    set.remove(&entry);
                    if set.is_empty() {
                        self.realm_members.remove(&m.realm_id);
                    }
                }
            }
        }
        if ms.is_empty() {
            return;
        }
        // Filed under the agent's creation time; an agent not loaded yet sorts first, and is
        // re-filed when its record arrives (`set_agent`).
        let created = self
            .agents
            .get(did)
            .map(|a| a.created_at.clone())
            .unwrap_or_default();
        for m in &ms {
            self.realm_members
                .entry(m.realm_id.clone())
                .or_default()
                .insert((created.clone(), did.to_string()));
        }
        self.filed_as.insert(did.to_string(), created);
        self.agent_realms.insert(did.to_string(), ms);
    }

    /// Records a presence report unless a newer session already reported. A report of the same
    /// session without `active_llm` keeps the one known. Whether anything changed.
    pub(crate) fn set_presence(&mut self, did: &str, mut p: PresenceView) -> bool {
        if !self.agents.contains_key(did) {
            return false;
        }
        match self.presence.get(did) {
            Some(cur) if cur.since > p.since => false,
            Some(cur) => {
                if p.active_llm.is_none() && cur.since == p.since {
                    p.active_llm = cur.active_llm.clone();
                }
                let changed = *cur != p;
                self.presence.insert(did.to_string(), p);
                changed
            }
            None => {
                self.presence.insert(did.to_string(), p);
                true
            }
        }
    }

    /// Records an acked version if it is higher than the one known; whether it was.
    pub(crate) fn set_ack(&mut self, did: &str, version: u64) -> bool {
        if !self.agents.contains_key(did) {
            return false;
        }
        let cur = self.acks.entry(did.to_string()).or_default();
        if version > *cur {
            *cur = version;
            true
        } else {
            false
        }
    }

    /// Replaces presence and acks wholesale (a periodic re-read from Redis), keeping a report newer
    /// than the re-read (a higher session rank); whether anything changed.
    pub(crate) fn reset_runtime(
        &mut self,
        dids: &[String],
        reads: Vec<(PresenceView, Option<u64>)>,
    ) -> bool {
        let mut changed = false;
        for (did, (p, ack)) in dids.iter().zip(reads) {
            if !self.agents.contains_key(did) {
                continue;
            }
            match self.presence.get(did) {
                Some(cur) if cur.since > p.since || *cur == p => {}
                _ => {
                    self.presence.insert(did.clone(), p);
                    changed = true;
                }
            }
            if let Some(v) = ack {
                changed |= self.set_ack(did, v);
            }
        }
        changed
    }

    /// Every DID, for the runtime re-read.
    pub(crate) fn dids(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.models.len(), self.realms.len(), self.agents.len())
    }

    // ----- views --------------------------------------------------------------------------------

    pub(crate) fn model(&self, id: &str) -> Option<&StoredModel> {
        self.models.get(id)
    }

    pub(crate) fn realm(&self, id: &str) -> Option<&StoredRealm> {
        self.realms.get(id)
    }

    pub(crate) fn agent(&self, did: &str) -> Option<&StoredAgent> {
        self.agents.get(did)
    }

    pub(crate) fn model_view(&self, m: &StoredModel) -> ModelView {
        let grants = self.model_grants.get(&m.id).map_or(0, Vec::len);
        let sync = self.sync_models.get(&m.id).cloned().unwrap_or_default();
        views::model_view(m, grants, &sync)
    }

    /// A model's grants, as listed on the model.
    pub(crate) fn model_realms(&self, id: &str) -> Vec<ModelRealmView> {
        let mut v: Vec<ModelRealmView> = self
            .model_grants
            .get(id)
            .into_iter()
            .flatten()
            .map(|(realm_id, granted_at)| ModelRealmView {
                realm_name: self
                    .realms
                    .get(realm_id)
                    .map_or_else(|| realm_id.clone(), |r| r.name.clone()),
                realm_id: realm_id.clone(),
                granted_at: granted_at.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.realm_id.cmp(&b.realm_id));
        v
    }

    /// The models granted to a realm that exist.
    pub(crate) fn realm_models(&self, id: &str) -> Vec<&StoredModel> {
        self.realm_grants
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|(m, _)| self.models.get(m))
            .collect()
    }

    pub(crate) fn realm_view(&self, r: &StoredRealm) -> RealmView {
        let granted = self.realm_models(&r.id);
        let members = self.realm_members.get(&r.id).map_or(0, BTreeSet::len);
        let sync = self.sync_realms.get(&r.id).cloned().unwrap_or_default();
        views::realm_view(r, members, &granted, &sync)
    }

    /// An agent's effective config state.
    pub(crate) fn effective(&self, a: &StoredAgent) -> ConfigState {
        let routing = a.dependency().and_then(|d| self.routings.get(&d));
        effective(&a.route(), routing)
    }

    /// The agent as `only` may see it: its memberships of those realms only (a realm admin never learns
    /// another realm's id or name through an agent they share); `None` shows them all.
    pub(crate) fn agent_view(&self, a: &StoredAgent, only: Option<&[String]>) -> AgentView {
        // A membership of a deleted realm is left behind by the (constant-time) realm delete: not
        // shown.
        let named = self
            .agent_realms
            .get(&a.did)
            .into_iter()
            .flatten()
            .filter(|m| only.is_none_or(|o| o.contains(&m.realm_id)))
            .filter_map(|m| Some((m, self.realms.get(&m.realm_id)?.name.as_str())));
        views::agent_view(
            a,
            named,
            self.presence.get(&a.did),
            self.effective(a).version,
            self.acks.get(&a.did).copied(),
        )
    }

    /// Whether the agent is a member of one of `realms` (that exist).
    pub(crate) fn agent_in_realms(&self, did: &str, realms: &[String]) -> bool {
        self.agent_realms.get(did).is_some_and(|ms| {
            ms.iter()
                .any(|m| realms.contains(&m.realm_id) && self.realms.contains_key(&m.realm_id))
        })
    }

    pub(crate) fn is_online(&self, did: &str) -> bool {
        self.presence.get(did).is_some_and(|p| p.online)
    }

    // ----- ordered walks ------------------------------------------------------------------------

    /// Models in list order after `after` (`created`, `id`).
    pub(crate) fn models_after<'a>(
        &'a self,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = &'a StoredModel> + 'a {
        let start = after.map(|(c, i)| (Reverse(c.clone()), i.clone()));
        let range = match start {
            Some(s) => self
                .model_order
                .range((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded)),
            None => self.model_order.range(..),
        };
        range.filter_map(|(_, id)| self.models.get(id))
    }

    /// Realms in list order after `after`.
    pub(crate) fn realms_after<'a>(
        &'a self,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = &'a StoredRealm> + 'a {
        after_in(&self.realm_order, after).filter_map(|(_, id)| self.realms.get(id))
    }

    /// Agents in list order after `after`, all of them or a realm's members.
    pub(crate) fn agents_after<'a>(
        &'a self,
        realm: Option<&str>,
        after: Option<&(String, String)>,
    ) -> Box<dyn Iterator<Item = &'a StoredAgent> + 'a> {
        let order = match realm {
            Some(r) => match self.realm_members.get(r) {
                Some(set) if self.realms.contains_key(r) => set,
                _ => return Box::new(std::iter::empty()),
            },
            None => &self.agent_order,
        };
        Box::new(after_in(order, after).filter_map(|(_, did)| self.agents.get(did)))
    }
}

fn after_in<'a>(
    set: &'a BTreeSet<(String, String)>,
    after: Option<&(String, String)>,
) -> Box<dyn Iterator<Item = &'a (String, String)> + 'a> {
    match after {
        Some(a) => Box::new(set.range((
            std::ops::Bound::Excluded(a.clone()),
            std::ops::Bound::Unbounded,
        ))),
        None => Box::new(set.iter()),
    }
}

fn set_or_remove<K, V>(map: &mut HashMap<K, V>, k: &K, v: Option<V>)
where
    K: std::hash::Hash + Eq + Clone,
{
    match v {
        Some(v) => {
            map.insert(k.clone(), v);
        }
        None => {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_records() {
        assert_eq!(
            Record::of("{vc}:model:m1"),
            Some(Record::Model("m1".into()))
        );
        assert_eq!(
            Record::of("{vc}:model:m1:grants"),
            Some(Record::ModelGrants("m1".into()))
        );
        assert_eq!(Record::of("{vc}:model:m1:routed"), None);
        assert_eq!(
            Record::of("{vc}:realm:r:1"),
            Some(Record::Realm("r:1".into()))
        );
        assert_eq!(Record::of("{vc}:realm:r1:members"), None);
        assert_eq!(
            Record::of("{vc}:agent:did:key:z6Mk1:realms"),
            Some(Record::AgentRealms("did:key:z6Mk1".into()))
        );
        assert_eq!(
            Record::of("{vc}:agent:did:key:z6Mk1"),
            Some(Record::Agent("did:key:z6Mk1".into()))
        );
        assert_eq!(
            Record::of("{vc}:routing:realm:r1"),
            Some(Record::RoutingRealm("r1".into()))
        );
        assert_eq!(
            Record::of("{vc}:sync:model:m1"),
            Some(Record::SyncModel("m1".into()))
        );
        for k in [
            "{vc}:rev",
            "{vc}:models",
            "{vc}:version-seq",
            "presence:{x}",
            "x",
        ] {
            assert_eq!(Record::of(k), None, "{k}");
        }
        for r in [
            Record::Model("a".into()),
            Record::AgentRealms("did:key:z".into()),
            Record::SyncRealm("r".into()),
            Record::RoutingModel("m".into()),
        ] {
            assert_eq!(Record::of(&r.key()), Some(r));
        }
    }
}
