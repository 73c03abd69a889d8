//! Before a batch is applied, what its commands will read is fetched in one round trip: each command
//! names the keys it reads first (its record, the entities its body names), and those the lane cache
//! does not know yet are read together. What a command then reads beyond these (entities found through
//! others) is read on demand; a key named here and not read costs nothing but its share of the fetch.

use async_nats::jetstream;
use vc_shared::command::{derived_id, validate_command_id, Command, HDR_MSG_ID};
use vc_shared::domain::litellm_model_name;
use vc_shared::store::{keys, ManyReads, ReadPlan, Store, StoreError};
use vc_shared::subjects;

use super::cache::LaneCache;
use crate::consumer::header;

/// A read a command is expected to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Read {
    /// `GET`.
    Get(String),
    /// `HGETALL`.
    Hash(String),
    /// `SCARD`.
    SetCount(String),
    /// `HLEN`.
    HashCount(String),
    /// An agent's presence (a hash in its own slot).
    Presence(String),
    /// `HGET` (key, field): a name or slug looked up in its index.
    Field(String, String),
}

/// The reads of one command, by what its body names (an entity created without an id gets the one
/// derived from `command_id`).
fn reads(command: &Command, command_id: &str) -> Vec<Read> {
    use Read::*;
    let realm = |id: &str| {
        vec![
            Get(keys::realm(id)),
            Get(keys::routing_realm(id)),
            Get(keys::sync_realm(id)),
            Hash(keys::realm_grants(id)),
            HashCount(keys::realm_members(id)),
            SetCount(keys::realm_routed(id)),
        ]
    };
    let agent = |did: &str| vec![Get(keys::agent(did)), Hash(keys::agent_realms(did))];
    match command {
        Command::ModelRegister(m) => {
            let id = m.id.clone().unwrap_or_else(|| derived_id(command_id));
            vec![
                Get(keys::model(&id)),
                Get(keys::routing_model(&id)),
                Field(
                    keys::MODEL_NAMES.into(),
                    litellm_model_name(m.provider, &m.name),
                ),
            ]
        }
        Command::ModelUpdate(u) => vec![
            Get(keys::model(&u.id)),
            Get(keys::routing_model(&u.id)),
            Get(keys::sync_model(&u.id)),
            Hash(keys::model_grants(&u.id)),
        ],
        Command::ModelDelete { id } => vec![
            Get(keys::model(id)),
            Get(keys::routing_model(id)),
            Hash(keys::model_grants(id)),
        ],
        Command::RealmCreate(r) => {
            let id = r.id.clone().unwrap_or_else(|| derived_id(command_id));
            let mut v = realm(&id);
            v.push(Field(keys::REALM_SLUGS.into(), r.slug.clone()));
            v
        }
        Command::RealmUpdate(r) => {
            let mut v = realm(&r.realm_id);
            v.extend(
                r.slug
                    .iter()
                    .map(|slug| Field(keys::REALM_SLUGS.into(), slug.clone())),
            );
            v
        }
        Command::RealmDelete { realm_id } => {
            let mut v = realm(realm_id);
            v.push(Hash(keys::realm_members(realm_id)));
            v
        }
        Command::RealmGrant {
            model_id, realm_id, ..
        }
        | Command::RealmRevoke { model_id, realm_id } => {
            let mut v = realm(realm_id);
            v.push(Get(keys::model(model_id)));
            v
        }
        Command::RealmAgentAdd {
            realm_id,
            agent_did,
            ..
        }
        | Command::RealmAgentRemove {
            realm_id,
            agent_did,
        } => {
            let mut v = realm(realm_id);
            v.extend(agent(agent_did));
            v
        }
        Command::AgentRegister { did, .. } => vec![Get(keys::agent(did))],
        Command::AgentDelete { did } => agent(did),
        Command::AgentLlmConfigSet { did, .. } | Command::AgentLlmConfigClear { did } => {
            let mut v = agent(did);
            v.push(Presence(did.clone()));
            v
        }
        Command::LitellmReconcile => Vec::new(),
        Command::RealmKeyRotate { realm_id, .. }
        | Command::RealmKeyActivate { realm_id, .. }
        | Command::RealmKeyRetire { realm_id, .. }
        | Command::RealmSpendRefresh { realm_id } => realm(realm_id),
        Command::RealmBudgetAlert(r) | Command::RealmBudgetGuard { report: r, .. } => {
            realm(&r.realm_id)
        }
    }
}

/// Reads what `batch` is expected to read and the cache does not know, into the cache: in one round
/// trip, then one more for what the first one found (the realms of a model whose grants it read).
pub(super) async fn prefetch(
    store: &Store,
    cache: &LaneCache,
    batch: &[(u64, jetstream::Message)],
) -> Result<(), StoreError> {
    let commands = batch_commands(batch.iter().map(|(_, m)| m));
    let mut wanted = vec![Read::Get(keys::VERSION_SEQ.into())];
    wanted.extend(first_reads(&commands));
    fetch(store, cache, wanted).await?;
    // A model's status change touches every realm it is granted to.
    let mut then = Vec::new();
    for (_, command) in &commands {
        if let Some(Command::ModelUpdate(vc_shared::command::ModelUpdate { id, .. }))
        | Some(Command::ModelDelete { id }) = command
        {
            for realm_id in cache
                .hash(&keys::model_grants(id))
                .unwrap_or_default()
                .keys()
            {
                then.push(Read::Get(keys::realm(realm_id)));
                then.push(Read::Hash(keys::realm_grants(realm_id)));
                then.push(Read::SetCount(keys::realm_routed(realm_id)));
            }
        }
    }
    if !then.is_empty() {
        fetch(store, cache, then).await?;
    }
    Ok(())
}

/// What `commands` read first: each one's record, then what its body names.
fn first_reads(commands: &[(String, Option<Command>)]) -> Vec<Read> {
    let mut wanted = Vec::new();
    for (id, command) in commands {
        wanted.push(Read::Get(keys::command(id)));
        if let Some(c) = command {
            wanted.extend(reads(c, id));
        }
    }
    wanted
}

/// Each message's command id and command (`None`: no usable id, or a body that cannot be read).
fn batch_commands<'m>(
    batch: impl IntoIterator<Item = &'m jetstream::Message>,
) -> Vec<(String, Option<Command>)> {
    batch
        .into_iter()
        .filter_map(|msg| {
            let id = header(msg, HDR_MSG_ID).filter(|id| validate_command_id(id).is_ok())?;
            let command = subjects::command_kind(&msg.subject)
                .and_then(|kind| Command::parse_checked(kind, &msg.payload).ok());
            Some((id, command))
        })
        .collect()
}

/// Those of `wanted` the cache does not know: the catalog reads (one round trip) and the agents whose
/// presence to read (their own slots).
fn plan(cache: &LaneCache, wanted: Vec<Read>) -> (ReadPlan, Vec<String>) {
    let mut plan = ReadPlan::default();
    let mut presences = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for read in wanted {
        if !seen.insert(read.clone()) {
            continue;
        }
        match read {
            Read::Get(k) if cache.get(&k).is_none() => plan.strings.push(k),
            Read::Hash(k) if !cache.knows_hash(&k) => plan.hashes.push(k),
            Read::SetCount(k) if cache.count(&k).is_none() => plan.counts.push((k, true)),
            Read::HashCount(k) if cache.count(&k).is_none() => plan.counts.push((k, false)),
            Read::Presence(did) if !cache.knows_hash(&keys::presence(&did)) => presences.push(did),
            Read::Field(k, f) if cache.hget(&k, &f).is_none() => plan.fields.push((k, f)),
            _ => {}
        }
    }
    // A hash read whole gives its count too.
    let hashes = &plan.hashes;
    plan.counts.retain(|(k, set)| *set || !hashes.contains(k));
    (plan, presences)
}

/// Puts what `plan` read into the cache.
fn absorb(cache: &LaneCache, plan: &ReadPlan, got: ManyReads) {
    for (k, v) in plan.strings.iter().zip(got.strings) {
        cache.put_string(k, v);
    }
    for (k, h) in plan.hashes.iter().zip(got.hashes) {
        cache.put_hash(k, &h);
    }
    for ((k, _), n) in plan.counts.iter().zip(got.counts) {
        cache.put_count(k, n);
    }
    for ((k, f), v) in plan.fields.iter().zip(got.fields) {
        cache.put_field(k, f, v);
    }
}

/// Reads those of `wanted` the cache does not know, at once, into the cache.
async fn fetch(store: &Store, cache: &LaneCache, wanted: Vec<Read>) -> Result<(), StoreError> {
    let (plan, presences) = plan(cache, wanted);
    let (got, present) = tokio::try_join!(store.raw_read_many(&plan), store.presences(&presences))?;
    absorb(cache, &plan, got);
    for (did, p) in presences.iter().zip(present) {
        cache.put_hash(&keys::presence(did), &p);
    }
    Ok(())
}

/// The catalog reads the commands of `next` (the batch expected after the one being committed) will
/// make first and the cache does not know: read in the commit's own round trip, right after it
/// ([`Store::commit_batch_then_read`]), so that batch needs no prefetch of its own. Their presences
/// (other slots) and what the first reads lead to are read by that batch.
pub(super) fn plan_ahead<'m>(
    cache: &LaneCache,
    next: impl IntoIterator<Item = &'m jetstream::Message>,
) -> ReadPlan {
    plan(cache, first_reads(&batch_commands(next))).0
}

/// Puts the reads of [`plan_ahead`], made right after a commit, into the cache (after that commit's
/// writes are folded in: they are what Redis held just after it).
pub(super) fn absorb_ahead(cache: &LaneCache, plan: &ReadPlan, got: ManyReads) {
    cache.start_ahead();
    absorb(cache, plan, got);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_names_its_realm_and_model() {
        let r = reads(
            &Command::RealmGrant {
                model_id: "m".into(),
                realm_id: "r".into(),
                monthly_budget_usd: None,
            },
            "c1",
        );
        assert!(r.contains(&Read::Get(keys::model("m"))));
        assert!(r.contains(&Read::Get(keys::realm("r"))));
        assert!(r.contains(&Read::Hash(keys::realm_grants("r"))));
        assert!(r.contains(&Read::SetCount(keys::realm_routed("r"))));
    }

    #[test]
    fn a_create_without_id_names_the_derived_id_and_the_slug() {
        let c = Command::parse(
            vc_shared::command::CommandKind::RealmCreate,
            br#"{"name":"Eng Team"}"#,
        )
        .unwrap();
        let r = reads(&c, "c1");
        let id = derived_id("c1");
        assert!(r.contains(&Read::Get(keys::realm(&id))));
        assert!(r.contains(&Read::Get(keys::routing_realm(&id))));
        assert!(r.contains(&Read::Field(keys::REALM_SLUGS.into(), "eng-team".into())));
        let m = Command::parse(
            vc_shared::command::CommandKind::ModelRegister,
            br#"{"name":"Llama","provider":"openai","modelId":"gpt-4o"}"#,
        )
        .unwrap();
        let r = reads(&m, "c2");
        assert!(r.contains(&Read::Get(keys::model(&derived_id("c2")))));
        assert!(r
            .iter()
            .any(|read| matches!(read, Read::Field(k, _) if k == keys::MODEL_NAMES)));
    }

    #[test]
    fn a_join_names_the_agent_and_its_memberships() {
        let r = reads(
            &Command::RealmAgentAdd {
                realm_id: "r".into(),
                agent_did: "did:key:z".into(),
                is_primary: true,
            },
            "c1",
        );
        assert!(r.contains(&Read::Get(keys::agent("did:key:z"))));
        assert!(r.contains(&Read::Hash(keys::agent_realms("did:key:z"))));
    }
}
