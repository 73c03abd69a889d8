//! The command lane: one worker at a time applies commands, in stream order, in batches.
//!
//! - **Lease.** Workers compete for the lane's lease in Redis (`{vc}:lane`, [`LEASE_TTL`], renewed every
//!   [`RENEW_EVERY`]). Only the holder pulls from the durable consumer; the others wait, trying every
//!   [`STANDBY_POLL`]. Each lease carries a fencing token (`<epoch>:<holder>`) that every batch commit
//!   checks, so a holder that stalled past its lease can never write after its successor.
//! - **Order.** The holder buffers delivered commands by stream sequence and applies a command only when
//!   every earlier sequence is applied (`{vc}:lane-seq`, committed with each batch) or verifiably gone
//!   from the stream. Commands a dead holder had in hand are delivered again after `ack_wait`
//!   ([`crate::consumer::ACK_WAIT`], 2 s) and take their place in the order; commands whose sequence is
//!   applied already are not applied again (their effects and outcome are sent again).
//! - **Batches.** Up to [`MAX_BATCH`] ready commands are applied in memory, each on the view of the ones
//!   before it, and committed in one Lua call. Their pushes and events (coalesced), outcomes and acks
//!   go out beside the lane, in commit order ([`emit`]), while the next batch is applied. LiteLLM is
//!   never called in the lane: syncs run beside it.
//!
//! A holder that dies costs at most the lease's and `ack_wait`'s 2 s before the next command applies; a
//! lost ack costs nothing in the lane (the command comes back and is recognised as applied).

mod batch;
pub mod cache;
pub mod emit;
mod prefetch;
pub mod view;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use vc_shared::store::{BatchCommit, BatchWrites, LaneLease, ReadPlan};
use vc_shared::subjects;

use crate::apply::ApplyError;
use crate::Worker;
use batch::Step;
use cache::LaneCache;
use emit::Emitter;
use view::{Overlay, View};

/// Most commands applied and committed at once.
pub const MAX_BATCH: usize = 256;
/// Length of the lane's lease.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// How often the holder renews the lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How often a standby worker tries to take the lane.
pub const STANDBY_POLL: Duration = Duration::from_millis(200);
/// Commands buffered by the holder at most: above the consumer's own bound (`MAX_ACK_PENDING`, every
/// command delivered and not yet acknowledged), so the holder always reads what is delivered, including
/// the redelivery of an earlier command it waits for.
const MAX_BUFFER: usize = 2 * crate::consumer::MAX_ACK_PENDING as usize;
/// Retries of a batch whose revision moved (a record written beside the lane) before waiting.
const MAX_CONFLICTS: usize = 20;

/// Competes for the lane until `shutdown`; holds it while it can.
pub async fn run(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match worker.store.lane_acquire(&holder, LEASE_TTL).await {
            Ok(Some(lease)) => {
                info!(token = %lease.token, applied_seq = lease.applied_seq, "Holding the command lane.");
                worker.metrics.lane_acquired.inc();
                worker.metrics.lane_held.set(1);
                lead(&worker, lease, &mut shutdown).await;
                worker.metrics.lane_held.set(0);
            }
            Ok(None) => {}
            Err(e) => debug!(error = %e, "Cannot reach Redis to take the command lane."),
        }
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Why the holder stops holding.
enum Stop {
    Shutdown,
    Lost,
}

struct Lane<'a> {
    worker: &'a Worker,
    token: String,
    /// Stream sequence of the last command applied.
    applied: u64,
    /// Delivered, not yet acknowledged commands, by stream sequence.
    buffer: BTreeMap<u64, jetstream::Message>,
    /// Whether the head of the buffer waits for an earlier command (or a transient failure).
    waiting: bool,
    /// The catalog as this holder knows it (kept from batch to batch while the revision is its own).
    cache: LaneCache,
    /// The pull ended or failed while a batch was in hand: pull again once it is done.
    pull_broken: bool,
    /// The revision its last commit left (`None`: read it first). Only the lane moves it, but for the
    /// rare record written beside it (`consumer::finish_failed`), which the commit's check catches.
    rev: Option<u64>,
    /// Emits committed batches beside the lane, in commit order.
    emitter: Emitter,
}

async fn lead(worker: &Worker, lease: LaneLease, shutdown: &mut watch::Receiver<bool>) {
    let lost = Arc::new(AtomicBool::new(false));
    let lost_notify = Arc::new(tokio::sync::Notify::new());
    // Aborted with this future: a holder that is dropped (killed) must stop renewing at once.
    let renew = AbortOnDrop(tokio::spawn(renew_lease(
        worker.clone(),
        lease.token.clone(),
        lost.clone(),
        lost_notify.clone(),
    )));
    let mut lane = Lane {
        worker,
        token: lease.token.clone(),
        applied: lease.applied_seq,
        buffer: BTreeMap::new(),
        waiting: false,
        cache: LaneCache::default(),
        pull_broken: false,
        rev: None,
        emitter: Emitter::start(worker.clone()),
    };
    let stop = lane.hold(shutdown, &lost, &lost_notify).await;
    drop(renew);
    // Committed batches are emitted whoever holds the lane now.
    let Lane {
        buffer, emitter, ..
    } = lane;
    emitter.drain().await;
    // What is buffered goes back to the stream at once (a successor, or this worker later, gets it).
    for msg in buffer.values() {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
    match stop {
        Stop::Shutdown => {
            if let Err(e) = worker.store.lane_release(&lease.token).await {
                debug!(error = %e, "Could not release the command lane; it expires by itself.");
            }
            info!("Released the command lane.");
        }
        Stop::Lost => warn!("Lost the command lane; standing by."),
    }
}

/// JetStream API calls of the lane time out after a second: during a NATS leader election (no leader
/// answers for some seconds) the lane asks again every 200 ms rather than waiting out the client's
/// default 5 s per call, and resumes right after the election.
fn lane_js(worker: &Worker) -> jetstream::Context {
    let mut js = jetstream::new(worker.nats.clone());
    js.set_timeout(Duration::from_secs(1));
    js
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease until it is lost (another holder, or no renewal for a whole lease length).
async fn renew_lease(
    worker: Worker,
    token: String,
    lost: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match worker.store.lane_renew(&token, LEASE_TTL).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => break,
            Err(e) => {
                debug!(error = %e, "Lane lease renewal failed.");
                if last_ok.elapsed() >= LEASE_TTL {
                    break;
                }
            }
        }
    }
    lost.store(true, Ordering::Relaxed);
    notify.notify_one();
}

impl Lane<'_> {
    async fn hold(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        lost: &AtomicBool,
        lost_notify: &tokio::sync::Notify,
    ) -> Stop {
        let js = lane_js(self.worker);
        let ack_wait = self.worker.command_ack_wait;
        let mut progress = tokio::time::interval(ack_wait / 4);
        let mut retry = tokio::time::interval(Duration::from_millis(250));
        loop {
            let mut messages = match crate::consumer::command_consumer(&js, ack_wait).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "Command consumer unavailable; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                        _ = shutdown.changed() => return Stop::Shutdown,
                        _ = lost_notify.notified() => return Stop::Lost,
                    }
                }
            };
            loop {
                if lost.load(Ordering::Relaxed) {
                    return Stop::Lost;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return Stop::Shutdown,
                    _ = lost_notify.notified() => return Stop::Lost,
                    _ = progress.tick() => self.progress().await,
                    _ = retry.tick(), if self.waiting => {
                        if let Err(stop) = self.process(&mut messages).await {
                            return stop;
                        }
                    }
                    m = messages.next(), if self.buffer.len() < MAX_BUFFER => {
                        match m {
                            None => break,
                            Some(Err(e)) => {
                                debug!(error = %e, "Command pull interrupted; pulling again.");
                                break;
                            }
                            Some(Ok(msg)) => self.take(msg),
                        }
                        // Whatever else has arrived joins the batch.
                        self.top_up(&mut messages);
                        if let Err(stop) = self.process(&mut messages).await {
                            return stop;
                        }
                    }
                }
                if std::mem::take(&mut self.pull_broken) {
                    break;
                }
            }
        }
    }

    /// Buffers the commands delivered already (without waiting). A pull that ended or failed is
    /// noted: the consumer is pulled from again once the batch in hand is done.
    fn top_up(&mut self, messages: &mut pull::Stream) {
        while self.buffer.len() < MAX_BUFFER {
            match messages.next().now_or_never() {
                Some(Some(Ok(msg))) => self.take(msg),
                Some(Some(Err(e))) => {
                    debug!(error = %e, "Command pull interrupted; pulling again.");
                    self.pull_broken = true;
                    break;
                }
                Some(None) => {
                    self.pull_broken = true;
                    break;
                }
                None => break,
            }
        }
    }

    fn take(&mut self, msg: jetstream::Message) {
        match msg.info().map(|i| i.stream_sequence) {
            Ok(seq) => {
                self.buffer.insert(seq, msg);
            }
            Err(e) => debug!(error = %e, "A command without JetStream metadata skipped."),
        }
    }

    /// Progress acks for every buffered command (they are ours until applied or given back).
    async fn progress(&self) {
        for msg in self.buffer.values() {
            let _ = msg.ack_with(AckKind::Progress).await;
        }
    }

    /// Applies every ready command, batch by batch.
    async fn process(&mut self, messages: &mut pull::Stream) -> Result<(), Stop> {
        self.waiting = false;
        loop {
            // Sequences applied already: effects and outcomes again, never applied twice.
            let done: Vec<(u64, jetstream::Message)> = {
                let rest = self.buffer.split_off(&(self.applied + 1));
                std::mem::replace(&mut self.buffer, rest)
                    .into_iter()
                    .collect()
            };
            if !done.is_empty() && !self.finish_applied(done).await {
                self.waiting = true;
                return Ok(());
            }
            let Some(&first) = self.buffer.keys().next() else {
                return Ok(());
            };
            if first != self.applied + 1 && !self.gap_is_empty(self.applied + 1, first).await {
                // An earlier command is still out (with a holder that died: it comes back after
                // ack_wait) or unreadable (the head-of-queue check removes it).
                self.waiting = true;
                return Ok(());
            }
            // The batch: consecutive sequences from `first`.
            let mut seqs = vec![first];
            for &s in self.buffer.keys().skip(1) {
                if seqs.len() >= MAX_BATCH || s != seqs[seqs.len() - 1] + 1 {
                    break;
                }
                seqs.push(s);
            }
            let batch: Vec<(u64, jetstream::Message)> = seqs
                .iter()
                .filter_map(|s| self.buffer.remove(s).map(|m| (*s, m)))
                .collect();
            if !self.apply_batch(batch, messages).await? {
                self.waiting = true;
                return Ok(());
            }
        }
    }

    /// Whether no message with a sequence in `from..to` is left in the stream.
    async fn gap_is_empty(&self, from: u64, to: u64) -> bool {
        let js = lane_js(self.worker);
        let Ok(mut stream) = js.get_stream(subjects::CMD_STREAM).await else {
            return false;
        };
        let first = match stream.info().await {
            Ok(i) => i.state.first_sequence,
            Err(_) => return false,
        };
        for seq in from.max(first)..to {
            match stream.get_raw_message(seq).await {
                Ok(_) => return false,
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Applies one batch of consecutive commands and commits it. `Ok(false)`: nothing could be
    /// committed now (the commands are buffered again and retried).
    async fn apply_batch(
        &mut self,
        batch: Vec<(u64, jetstream::Message)>,
        messages: &mut pull::Stream,
    ) -> Result<bool, Stop> {
        let worker = self.worker;
        let started = std::time::Instant::now();
        for _ in 0..MAX_CONFLICTS {
            // The revision of the last commit, without a round trip; after a conflict, read again.
            let rev = match self.rev.take() {
                Some(r) => r,
                None => match worker.store.rev().await {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "Redis unavailable; commands wait.");
                        self.give_back(batch);
                        return Ok(false);
                    }
                },
            };
            let mut overlay = Overlay::default();
            let cache = &self.cache;
            cache.begin(rev);
            // What the batch's commands read first, in one round trip.
            let prefetching = std::time::Instant::now();
            if let Err(e) = prefetch::prefetch(&worker.store, cache, &batch).await {
                debug!(error = %e, "Prefetching the batch's reads failed; reading one by one.");
            }
            worker.metrics.lane_phase("prefetch", prefetching.elapsed());
            let applying = std::time::Instant::now();
            let mut steps: Vec<Step> = Vec::with_capacity(batch.len());
            let mut ops = Vec::new();
            let mut failed: Option<ApplyError> = None;
            for (seq, msg) in &batch {
                let view = View::new(&worker.store, &overlay, cache);
                match batch::prepare(worker, &view, msg.clone(), *seq, false).await {
                    Ok((step, step_ops)) => {
                        overlay.record(&step_ops);
                        ops.extend(step_ops);
                        steps.push(step);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = &failed {
                warn!(error = %e, "Applying a command failed; it waits and is retried.");
            }
            if steps.is_empty() {
                self.give_back(batch);
                return Ok(false);
            }
            let last = steps[steps.len() - 1].seq;
            let n = steps.len() as u64;
            worker.metrics.lane_phase("apply", applying.elapsed());
            worker.metrics.lane_reads.inc_by(cache.take_misses());
            // What the next batch (the commands buffered right after this one) reads first is read
            // in the commit's round trip, right after it: that batch then starts without a prefetch.
            let ahead = match failed {
                None if !self.pull_broken => {
                    self.top_up(messages);
                    prefetch::plan_ahead(&self.cache, self.following(last))
                }
                _ => ReadPlan::default(),
            };
            let committing = std::time::Instant::now();
            let committed = worker
                .store
                .commit_batch_then_read(
                    &BatchWrites {
                        token: &self.token,
                        expected_rev: rev,
                        expected_seq: self.applied,
                        new_seq: last,
                        commands: n,
                        ops: &ops,
                    },
                    &ahead,
                )
                .await;
            worker.metrics.lane_phase("commit", committing.elapsed());
            match committed {
                Ok((
                    BatchCommit::Applied {
                        rev: new_rev,
                        change,
                    },
                    read_ahead,
                )) => {
                    self.cache.fold(&overlay, new_rev);
                    if let Some(got) = read_ahead {
                        prefetch::absorb_ahead(&self.cache, &ahead, got);
                    }
                    self.rev = Some(new_rev);
                    self.applied = last;
                    batch::log_batch(&steps, new_rev);
                    let rest: Vec<_> = batch.into_iter().filter(|(s, _)| *s > last).collect();
                    self.give_back(rest);
                    worker
                        .metrics
                        .lane_batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    worker.metrics.lane_batch_commands.observe(n as f64);
                    // Emitted beside the lane (waiting here only while the emitter is behind).
                    let handing = std::time::Instant::now();
                    self.emitter
                        .send(steps, (change > 0).then_some(change))
                        .await;
                    worker.metrics.lane_phase("handoff", handing.elapsed());
                    return Ok(failed.is_none());
                }
                Ok((BatchCommit::Conflict, _)) => {
                    self.cache.reset();
                    continue;
                }
                Ok((BatchCommit::LaneLost | BatchCommit::SeqMoved, _)) => {
                    self.give_back(batch);
                    return Err(Stop::Lost);
                }
                Err(e) => {
                    // Whether it was committed is unknown: the next batch reads Redis again.
                    self.cache.reset();
                    warn!(error = %e, "Commit failed; the commands wait and are retried.");
                    self.give_back(batch);
                    return Ok(false);
                }
            }
        }
        warn!("The revision kept moving; the commands wait.");
        self.give_back(batch);
        Ok(false)
    }

    /// Commands whose sequence is applied already: their effects and outcomes again, then acks.
    /// `false` if some could not be finished now (they stay buffered for the next retry).
    async fn finish_applied(&mut self, done: Vec<(u64, jetstream::Message)>) -> bool {
        let worker = self.worker;
        let overlay = Overlay::default();
        let cache = LaneCache::default();
        let view = View::new(&worker.store, &overlay, &cache);
        let mut steps = Vec::with_capacity(done.len());
        let mut rest = Vec::new();
        for (seq, msg) in done {
            if !rest.is_empty() {
                rest.push((seq, msg));
                continue;
            }
            match batch::prepare(worker, &view, msg.clone(), seq, true).await {
                Ok((step, _)) => steps.push(step),
                Err(e) => {
                    warn!(error = %e, "Cannot read an applied command's record; retrying.");
                    rest.push((seq, msg));
                }
            }
        }
        if let Err(steps) = batch::finish(worker, steps, None).await {
            rest.extend(steps.into_iter().map(|s| (s.seq, s.msg)));
        }
        if rest.is_empty() {
            return true;
        }
        // Kept until the next retry (below `applied`, they stay first).
        self.give_back(rest);
        false
    }

    /// The buffered commands that directly follow sequence `last` (the next batch, as far as known).
    fn following(&self, last: u64) -> impl Iterator<Item = &jetstream::Message> {
        self.buffer
            .range(last + 1..)
            .zip(last + 1..)
            .take_while(|((seq, _), expected)| **seq == *expected)
            .take(MAX_BATCH)
            .map(|((_, msg), _)| msg)
    }

    fn give_back(&mut self, msgs: Vec<(u64, jetstream::Message)>) {
        self.buffer.extend(msgs);
    }
}
