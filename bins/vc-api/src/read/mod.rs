//! The read model: each API instance serves its reads from an in-memory copy of the catalog, kept
//! current from the change log in Redis, and of agents' presence and acks, kept current from the
//! edges' reports on the bus (decision 0009).
//!
//! - **Catalog**: loaded once at start, then every entry of `{vc}:changes` (written by the same Lua
//!   call as the commit it describes) names the keys to read again. Entries are numbered without gaps;
//!   a reader that sees a gap (it fell behind the log's trimming) loads everything again.
//! - **Presence and acks**: `vc.evt.agent.presence` and `vc.evt.agent.acked` from the edges, and a
//!   re-read of every agent's presence and ack from Redis every [`RUNTIME_REREAD`] (a report lost while
//!   NATS was away, an edge that died without a goodbye).
//! - **Read-your-writes**: a write's outcome comes after its commit, so its changes are in the log by
//!   then; the handler waits (briefly) until the model has applied the log that far
//!   ([`ReadModel::catch_up`]).
//! - Until the first load completes, `/readyz` answers 503 (`loading`) and reads wait for it (503
//!   after 5 s).

pub(crate) mod catalog;
pub mod page;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vc_shared::store::{keys, ChangesHead, ReadPlan, Store, StoreError};
use vc_shared::subjects;
use vc_shared::views::PresenceView;
use vc_shared::wire::{AckedEvent, Event, PresenceEvent};

use catalog::{plan, Catalog, Record};

/// How often presence and acks are read again from Redis.
pub const RUNTIME_REREAD: Duration = Duration::from_secs(30);
/// Records read in one pipeline while loading.
const LOAD_CHUNK: usize = 2_000;
/// Change-log entries taken at once.
const TAIL_COUNT: usize = 512;
/// How long one wait on the change log lasts (below the store's 5 s call timeout).
const TAIL_BLOCK: Duration = Duration::from_secs(1);
/// How long a write's handler waits for the read model to catch up with it.
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(2);

/// The read model of one API instance (cheap to clone).
#[derive(Clone, Default)]
pub struct ReadModel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    catalog: RwLock<Catalog>,
    /// Number of the last change-log entry applied.
    applied: watch::Sender<u64>,
    /// Moves on every change, presence and acks included (the page cache's and ETags' clock).
    version: AtomicU64,
    loaded: Arc<AtomicBool>,
    /// Full loads so far.
    loads: AtomicU64,
}

impl ReadModel {
    /// Reads the catalog (never hold this across an await).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Catalog) -> R) -> R {
        let c = self.inner.catalog.read().unwrap_or_else(|e| e.into_inner());
        f(&c)
    }

    /// Changes the catalog; `f` says whether anything changed, and only then does the model's clock
    /// move (so a report that changes nothing keeps rendered pages and ETags valid).
    fn write(&self, f: impl FnOnce(&mut Catalog) -> bool) {
        let mut c = self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if f(&mut c) {
            self.inner.version.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The flag set once the first load is done (for `/readyz`).
    pub fn loaded_flag(&self) -> Arc<AtomicBool> {
        self.inner.loaded.clone()
    }

    /// Waits (at most `within`) for the first load; whether it is done.
    pub async fn loaded(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_loaded() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Whether the first load is done (reads come from memory).
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::SeqCst)
    }

    /// The model's clock: moves whenever anything in it changes.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::SeqCst)
    }

    /// Number of the last change-log entry applied.
    pub fn applied(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// Waits until the change log is applied up to `n`, at most `within`; whether it was.
    pub async fn wait_applied(&self, n: u64, within: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        tokio::time::timeout(within, rx.wait_for(|a| *a >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Read-your-writes for a write whose commit wrote change-log entry `n` (its outcome said so):
    /// waits until the model has applied it (at most [`CATCH_UP_WITHIN`]), without asking Redis.
    pub async fn catch_up_to(&self, n: u64) {
        if !self.is_loaded() || self.applied() >= n {
            return;
        }
        if !self.wait_applied(n, CATCH_UP_WITHIN).await {
            warn!(
                n,
                applied = self.applied(),
                "Read model behind the change log."
            );
        }
    }

    /// Read-your-writes: waits until everything committed so far is in the model (at most
    /// [`CATCH_UP_WITHIN`]). A model not loaded yet has nothing to catch up with (its load will read
    /// the write).
    pub async fn catch_up(&self, store: &Store) {
        if !self.is_loaded() {
            return;
        }
        match store.changes_seq().await {
            Ok(n) if n > self.applied() => {
                if !self.wait_applied(n, CATCH_UP_WITHIN).await {
                    warn!(
                        n,
                        applied = self.applied(),
                        "Read model behind the change log."
                    );
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Cannot read the change log's head."),
        }
    }

    /// Full loads so far (1 after the first).
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::SeqCst)
    }

    /// Models, realms and agents held.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.read(Catalog::counts)
    }
}

/// Keeps `model` current until `stop` is cancelled. `tail` is a store of its own (its connection
/// waits on the change log); `store` serves the re-reads.
pub async fn follow(
    model: ReadModel,
    tail: Store,
    store: Store,
    nats: async_nats::Client,
    stop: CancellationToken,
) {
    let reports = tokio::spawn(follow_reports(model.clone(), nats, stop.clone()));
    let runtime = tokio::spawn(reread_runtime_every(
        model.clone(),
        store.clone(),
        stop.clone(),
    ));
    let mut backoff = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let head = tokio::select! {
            _ = stop.cancelled() => break,
            r = load_all(&model, &store) => r,
        };
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "Cannot load the read model; trying again.");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        tokio::select! {
            _ = stop.cancelled() => break,
            () = tail_log(&model, &tail, &store, head) => {}
        }
    }
    reports.abort();
    runtime.abort();
}

/// Loads every record, presence and ack; returns where the change log stood before (entries after it
/// are applied on top, again if need be: re-reading a record is harmless).
async fn load_all(model: &ReadModel, store: &Store) -> Result<ChangesHead, StoreError> {
    let started = std::time::Instant::now();
    let head = store.changes_head().await?;
    let models = store.raw_smembers(keys::MODELS).await?;
    let realms = store.raw_smembers(keys::REALMS).await?;
    let agents = store.raw_smembers(keys::AGENTS).await?;
    let mut records = Vec::with_capacity(4 * (models.len() + realms.len()) + 2 * agents.len());
    for id in &models {
        records.extend([
            Record::Model(id.clone()),
            Record::ModelGrants(id.clone()),
            Record::SyncModel(id.clone()),
            Record::RoutingModel(id.clone()),
        ]);
    }
    for id in &realms {
        records.extend([
            Record::Realm(id.clone()),
            Record::RealmGrants(id.clone()),
            Record::SyncRealm(id.clone()),
            Record::RoutingRealm(id.clone()),
        ]);
    }
    for did in &agents {
        records.extend([Record::Agent(did.clone()), Record::AgentRealms(did.clone())]);
    }
    let mut fresh = Catalog::default();
    for chunk in records.chunks(LOAD_CHUNK) {
        let reload = plan(chunk.iter().cloned());
        let reads = store.raw_read_many(&reload.plan).await?;
        fresh.absorb(&reload, reads);
    }
    let runtime = read_runtime(store, &agents).await?;
    fresh.reset_runtime(&agents, runtime);
    model.write(|c| {
        *c = fresh;
        true
    });
    model.inner.applied.send_replace(head.n);
    model.inner.loaded.store(true, Ordering::SeqCst);
    model.inner.loads.fetch_add(1, Ordering::SeqCst);
    info!(
        models = models.len(),
        realms = realms.len(),
        agents = agents.len(),
        change = head.n,
        took_ms = started.elapsed().as_millis() as u64,
        "Read model loaded."
    );
    Ok(head)
}

/// Applies the change log from `head` on; returns when it must be loaded again (a gap, or Redis
/// failing for a while).
async fn tail_log(model: &ReadModel, tail: &Store, store: &Store, head: ChangesHead) {
    let mut last_id = head.id;
    let mut failures = 0u32;
    loop {
        let entries = match tail.changes_after(&last_id, TAIL_BLOCK, TAIL_COUNT).await {
            Ok(e) => {
                failures = 0;
                e
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "Cannot read the change log.");
                if failures >= 10 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let Some(last) = entries.last() else {
            continue;
        };
        // Every entry read comes after the last one applied, so it must be the next number: anything
        // else is a gap (this reader fell behind the trimming) or a log that started over (Redis lost
        // it).
        let applied = model.applied();
        if entries.first().is_some_and(|e| e.n != applied + 1) {
            warn!(
                expected = applied + 1,
                got = entries[0].n,
                "The change log does not follow on from this reader's; loading again."
            );
            return;
        }
        let records: Vec<Record> = entries
            .iter()
            .flat_map(|e| e.keys.iter().filter_map(|k| Record::of(k)))
            .collect();
        if !records.is_empty() {
            let reload = plan(records);
            match store.raw_read_many(&reload.plan).await {
                Ok(reads) => model.write(|c| {
                    c.absorb(&reload, reads);
                    true
                }),
                Err(e) => {
                    warn!(error = %e, "Cannot read changed records; reading the entries again.");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            }
        }
        model.inner.applied.send_replace(last.n);
        last_id = last.id.clone();
    }
}

/// Presence and ack of each DID, in order.
async fn read_runtime(
    store: &Store,
    dids: &[String],
) -> Result<Vec<(PresenceView, Option<u64>)>, StoreError> {
    let mut out = Vec::with_capacity(dids.len());
    for chunk in dids.chunks(LOAD_CHUNK / 2) {
        let plan = ReadPlan {
            strings: chunk.iter().map(|d| keys::ack(d)).collect(),
            hashes: chunk.iter().map(|d| keys::presence(d)).collect(),
            counts: Vec::new(),
            fields: Vec::new(),
        };
        let reads = store.raw_read_many(&plan).await?;
        for (ack, fields) in reads.strings.into_iter().zip(reads.hashes) {
            out.push((
                PresenceView::from_fields(&fields),
                ack.and_then(|s| s.parse().ok()),
            ));
        }
    }
    Ok(out)
}

async fn reread_runtime_every(model: ReadModel, store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RUNTIME_REREAD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !model.is_loaded() {
            continue;
        }
        let dids = model.read(Catalog::dids);
        match read_runtime(&store, &dids).await {
            Ok(reads) => model.write(|c| c.reset_runtime(&dids, reads)),
            Err(e) => warn!(error = %e, "Cannot read presence and acks again."),
        }
    }
}

/// Applies the edges' presence and ack reports as they come.
async fn follow_reports(model: ReadModel, nats: async_nats::Client, stop: CancellationToken) {
    let subs = async {
        let p = nats.subscribe(subjects::EVT_AGENT_PRESENCE).await?;
        let a = nats.subscribe(subjects::EVT_AGENT_ACKED).await?;
        Ok::<_, async_nats::SubscribeError>(futures::stream::select(p, a))
    };
    let mut msgs = match subs.await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot follow the edges' reports; presence is re-read every 30 s only.");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = msgs.next() => match m { Some(m) => m, None => return },
        };
        let Ok(ev) = serde_json::from_slice::<Event>(&msg.payload) else {
            continue;
        };
        if msg.subject.as_str() == subjects::EVT_AGENT_PRESENCE {
            let Ok(ev) = serde_json::from_value::<PresenceEvent>(ev.details) else {
                continue;
            };
            model.write(|c| {
                let mut changed = false;
                for ch in ev.changes {
                    let p = PresenceView {
                        online: ch.online,
                        edge_id: ch.online.then(|| ev.edge_id.clone()),
                        last_seen: Some(ch.at),
                        active_llm: ch.active_llm,
                        since: ch.since,
                    };
                    changed |= c.set_presence(&ch.did, p);
                }
                changed
            });
        } else if let Ok(ev) = serde_json::from_value::<AckedEvent>(ev.details) {
            model.write(|c| {
                let mut changed = false;
                for a in ev.acks {
                    changed |= c.set_ack(&a.did, a.version);
                }
                changed
            });
        }
    }
}
