//! `vc-worker reseal`: every sealed value in Redis rewritten under the current `VC_SECRET_KEY` (after a
//! key rotation, or an upgrade from the `v1` format), and the keys `vc-worker keys` prints.
//!
//! ## Why it holds the command lane
//! The lane holder is the only writer of the records that carry sealed values (models, realms, agents,
//! routing states): a re-seal that read a record while a command rewrote it would put the old record
//! back. So the re-seal takes the lane's lease exactly as a worker does ([`Store::lane_acquire`]),
//! renews it while it works, commits its writes as batches fenced by that lease
//! ([`Store::commit_batch`], zero commands: the lane's sequence does not move), and releases it. No
//! command commits meanwhile; commands wait in the stream. A running worker holds the lane for as long
//! as it runs, so the workers are stopped first: the re-seal gives up after [`ACQUIRE_WAIT`].
//!
//! A worker that holds the lane again starts with an empty catalog cache (the cache lives with one
//! holding of the lane), so it reads the rewritten records. API instances follow the change log, which
//! each batch commit appends to.
//!
//! It is idempotent: a value already under the current key is left alone, so a second run rewrites
//! nothing. A value that does not open (sealed under a key not configured, or damaged) is reported and
//! left as it is; the key canary then keeps its key, so a worker holding only the new key still refuses
//! to start until every value is rewritten.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use vc_shared::crypto::{self, Sealer};
use vc_shared::store::{keys, BatchCommit, BatchWrites, ResealReport, Store, StoreError};

/// Length of the re-seal's lease on the lane: a re-seal that dies blocks the workers this long at most.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the re-seal renews its lease (five renewals per lease length).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long the re-seal tries to take the lane before it gives up (a running worker never lets go).
pub const ACQUIRE_WAIT: Duration = Duration::from_secs(30);
/// How often it tries.
const ACQUIRE_POLL: Duration = Duration::from_millis(200);
/// Records rewritten per commit (each commit is one Lua call, which blocks Redis while it runs).
const WRITES_PER_COMMIT: usize = 200;
/// Commits retried after the revision moved (a command recorded as failed beside the lane).
const MAX_CONFLICTS: usize = 20;

/// Why a re-seal stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// A worker holds the command lane.
    #[error("the command lane is held (by a running worker) after {0:?} of waiting: stop every vc-worker first (commands wait in the stream meanwhile), then run `vc-worker reseal` again")]
    LaneBusy(Duration),
    /// The lease was lost while writing (not renewed in time, or taken by force).
    #[error("lost the command lane after {0} records were written; nothing is wrong with those, run `vc-worker reseal` again for the rest")]
    LaneLost(usize),
    /// The revision kept moving.
    #[error(
        "the catalog revision kept moving while the lane was held; run `vc-worker reseal` again"
    )]
    Conflicts,
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-seals every sealed value of the store under `sealer`'s current key while holding the command
/// lane (see the module docs), waiting up to `wait` for the lane. Returns what it found and did.
pub async fn reseal(
    store: &Store,
    sealer: &Sealer,
    wait: Duration,
) -> Result<ResealReport, ResealError> {
    let holder = format!("reseal-{}", uuid::Uuid::new_v4());
    let deadline = tokio::time::Instant::now() + wait;
    let lease = loop {
        if let Some(lease) = store.lane_acquire(&holder, LEASE_TTL).await? {
            break lease;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ResealError::LaneBusy(wait));
        }
        tokio::time::sleep(ACQUIRE_POLL).await;
    };
    info!(token = %lease.token, "Holding the command lane for the re-seal.");
    let lost = Arc::new(AtomicBool::new(false));
    let renew = {
        let store = store.clone();
        let token = lease.token.clone();
        let lost = lost.clone();
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match store.lane_renew(&token, LEASE_TTL).await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => break,
                    Err(e) => {
                        warn!(error = %e, "Lane lease renewal failed; retrying.");
                        if last_ok.elapsed() >= LEASE_TTL {
                            break;
                        }
                    }
                }
            }
            lost.store(true, Ordering::Relaxed);
        })
    };
    let result = write_all(store, sealer, &lease.token, lease.applied_seq, &lost).await;
    renew.abort();
    if let Err(e) = store.lane_release(&lease.token).await {
        warn!(error = %e, "Could not release the command lane; it expires by itself.");
    }
    info!("Released the command lane.");
    result
}

/// Plans the writes and commits them in batches fenced by the lease `token`.
async fn write_all(
    store: &Store,
    sealer: &Sealer,
    token: &str,
    applied_seq: u64,
    lost: &AtomicBool,
) -> Result<ResealReport, ResealError> {
    let plan = store.reseal_plan(sealer).await?;
    let mut rev = store.rev().await?;
    let mut written = 0;
    for chunk in plan.writes.chunks(WRITES_PER_COMMIT) {
        let mut conflicts = 0;
        loop {
            if lost.load(Ordering::Relaxed) {
                return Err(ResealError::LaneLost(written));
            }
            let batch = BatchWrites {
                token,
                expected_rev: rev,
                expected_seq: applied_seq,
                new_seq: applied_seq,
                commands: 0,
                ops: chunk,
            };
            match store.commit_batch(&batch).await? {
                BatchCommit::Applied { rev: n, .. } => {
                    rev = n;
                    written += chunk.len();
                    break;
                }
                // A command recorded as failed beside the lane moved the revision; such a write touches
                // no sealed record, so the same writes go again at the new revision.
                BatchCommit::Conflict if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    rev = store.rev().await?;
                }
                BatchCommit::Conflict => return Err(ResealError::Conflicts),
                BatchCommit::LaneLost | BatchCommit::SeqMoved => {
                    return Err(ResealError::LaneLost(written))
                }
            }
        }
    }
    Ok(plan.report)
}

/// Why the key canary did not open, for the worker's refusal to start.
pub async fn wrong_key_message(store: &Store, sealer: &Sealer) -> String {
    let canary = store.raw_get(keys::SECRET_CHECK).await.ok().flatten();
    match canary.as_deref().and_then(crypto::sealed_key_id) {
        Some(kid) if !sealer.holds_key_id(kid) => format!(
            "this deployment's secrets are sealed under key id {kid}, which neither VC_SECRET_KEY (key id {}) nor VC_SECRET_KEY_PREVIOUS is: give that key (as VC_SECRET_KEY_PREVIOUS while rotating, until `vc-worker reseal` has run)",
            sealer.key_id()
        ),
        _ => "VC_SECRET_KEY does not match the key this deployment's secrets were sealed with (the key canary {vc}:secret-check does not open)".to_string(),
    }
}
