//! The command lane in Redis: the lease of the one worker that applies commands, with a fencing token
//! checked by every batch commit, and the stream sequence of the last command applied (committed with
//! the batch, so a command is applied exactly once whichever worker holds the lane).
//!
//! Also the plain reads the worker's in-memory overlay needs (a batch of commands is applied in memory,
//! each command seeing the writes of the ones before it, then committed at once).

use std::time::Duration;

use super::{
    keys, push_ops, timed, Conn, Op, Store, StoreError, APPLY_OPS_LUA, AUDIT_MAX_LEN, CHANGES_LUA,
};

const LANE_ACQUIRE_LUA: &str = r#"
-- KEYS[1] = lane, KEYS[2] = lane epoch, KEYS[3] = lane seq; ARGV[1] = holder, ARGV[2] = ttl ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
local token = epoch .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {token, redis.call('GET', KEYS[3]) or '0'}
"#;

const LANE_RENEW_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

const LANE_RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const COMMIT_BATCH_LUA: &str = r#"
-- KEYS[1] = {vc}:rev, KEYS[2] = lane, KEYS[3] = lane seq
-- ARGV[1] = expected rev, ARGV[2] = audit max length, ARGV[3] = lane token,
-- ARGV[4] = expected lane seq, ARGV[5] = new lane seq, ARGV[6] = number of commands,
-- ARGV[7..] = the writes (see apply_ops)
-- Returns {new rev, change-log number (0: no catalog key written)}, or {-1|-3|-4}.
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return {-3} end
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[4]) then return {-4} end
local rev = tonumber(redis.call('GET', KEYS[1]) or '0')
if rev ~= tonumber(ARGV[1]) then return {-1} end
local err, change = apply_ops(7, ARGV[2])
if err then return redis.error_reply(err) end
redis.call('SET', KEYS[3], ARGV[5])
return {redis.call('INCRBY', KEYS[1], ARGV[6]), change}
"#;

static LANE_ACQUIRE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(LANE_ACQUIRE_LUA));
static LANE_RENEW: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(LANE_RENEW_LUA));
static LANE_RELEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(LANE_RELEASE_LUA));
static COMMIT_BATCH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!("{CHANGES_LUA}{APPLY_OPS_LUA}{COMMIT_BATCH_LUA}"))
});

/// The lane's lease as taken by one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneLease {
    /// `<epoch>:<holder>`: the fencing token every batch commit checks.
    pub token: String,
    /// Stream sequence of the last command applied when the lease was taken.
    pub applied_seq: u64,
}

/// What a batch commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCommit {
    /// Written: the new revision (the old one plus the number of commands), and the number of the
    /// change-log entry the commit wrote (`0` when it wrote no catalog key).
    Applied {
        /// The new revision.
        rev: u64,
        /// The change-log number (`0`: none).
        change: u64,
    },
    /// The revision moved (a write outside the lane): re-read and apply the batch again.
    Conflict,
    /// The lease is no longer this holder's: another worker holds the lane; nothing was written.
    LaneLost,
    /// The last applied sequence is not the one expected: nothing was written.
    SeqMoved,
}

impl Store {
    /// Takes the lane if nobody holds it.
    pub async fn lane_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LaneLease>, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = LANE_ACQUIRE.key(keys::LANE);
        inv.key(keys::LANE_EPOCH)
            .key(keys::LANE_SEQ)
            .arg(holder)
            .arg(ttl.as_millis() as u64);
        let r: Option<(String, String)> = timed(inv.invoke_async(&mut c)).await?;
        Ok(r.map(|(token, seq)| LaneLease {
            token,
            applied_seq: seq.parse().unwrap_or(0),
        }))
    }

    /// Extends the lease; `false` if it is no longer held with `token`.
    pub async fn lane_renew(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = LANE_RENEW.key(keys::LANE);
        inv.arg(token).arg(ttl.as_millis() as u64);
        let n: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    /// Gives the lane up (a draining worker), if still held with `token`.
    pub async fn lane_release(&self, token: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let mut inv = LANE_RELEASE.key(keys::LANE);
        inv.arg(token);
        let _: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    /// Commits a batch's writes at once, if the lane is still held with its token, the last applied
    /// sequence and the revision are the ones it expects; then records its last sequence as applied
    /// and adds its commands to the revision.
    pub async fn commit_batch(&self, batch: &BatchWrites<'_>) -> Result<BatchCommit, StoreError> {
        let mut c = self.conn.clone();
        let n: Vec<i64> = timed(batch.invocation().invoke_async(&mut c)).await?;
        Ok(batch_commit(&n))
    }

    /// [`Store::commit_batch`], and in the same round trip, right after it, the reads of `reads`
    /// ([`Store::raw_read_many`]'s four kinds): what the next batch will read, as the commit leaves it.
    /// The reads come back only if the batch was applied; `None` also on a Redis Cluster (where the
    /// commit goes alone) and when nothing is to be read.
    pub async fn commit_batch_then_read(
        &self,
        batch: &BatchWrites<'_>,
        reads: &ReadPlan,
    ) -> Result<(BatchCommit, Option<ManyReads>), StoreError> {
        if reads.is_empty() || matches!(self.conn, Conn::Cluster(_)) {
            return Ok((self.commit_batch(batch).await?, None));
        }
        let mut p = redis::pipe();
        p.invoke_script(&batch.invocation());
        reads.push_reads(&mut p);
        // Each answer on its own: a read that fails must not hide the commit's outcome.
        p.ignore_errors();
        let mut c = self.conn.clone();
        let answers: Vec<redis::Value> = timed(p.query_async(&mut c)).await?;
        let mut answers = answers.into_iter();
        let n: Vec<i64> = match answers.next() {
            // EVALSHA of a script this server does not know (it restarted): nothing ran; the commit
            // goes alone, which loads the script.
            Some(redis::Value::ServerError(e))
                if e.kind() == Some(redis::ServerErrorKind::NoScript) =>
            {
                return Ok((self.commit_batch(batch).await?, None));
            }
            Some(redis::Value::ServerError(e)) => return Err(StoreError::Redis(e.into())),
            v => take(&mut v.into_iter(), "the pipelined commit")?,
        };
        let committed = batch_commit(&n);
        if !matches!(committed, BatchCommit::Applied { .. }) {
            return Ok((committed, None));
        }
        // The batch is applied: reads that cannot be decoded are only reads not made ahead.
        Ok((committed, reads.answers(&mut answers).ok()))
    }

    /// `GET key`.
    pub async fn raw_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.get(key).await
    }

    /// `MGET keys` (in chunks of 500), in order.
    pub async fn raw_mget(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MGET_CHUNK) {
            let mut c = self.conn.clone();
            let v: Vec<Option<String>> =
                timed(redis::cmd("MGET").arg(chunk).query_async(&mut c)).await?;
            out.extend(v);
        }
        Ok(out)
    }

    /// `HGETALL key` (sorted by field).
    pub async fn raw_hgetall(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.hgetall(key).await
    }

    /// `HGET key field`.
    pub async fn raw_hget(&self, key: &str, field: &str) -> Result<Option<String>, StoreError> {
        self.hget(key, field).await
    }

    /// `HLEN key`.
    pub async fn raw_hlen(&self, key: &str) -> Result<usize, StoreError> {
        self.hlen(key).await
    }

    /// Whether each field exists in the hash (one pipeline).
    pub async fn raw_hexists(&self, key: &str, fields: &[&str]) -> Result<Vec<bool>, StoreError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for f in fields {
            p.cmd("HEXISTS").arg(key).arg(*f);
        }
        let mut c = self.conn.clone();
        timed(p.query_async(&mut c)).await
    }

    /// `SMEMBERS key` (sorted).
    pub async fn raw_smembers(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.smembers(key).await
    }

    /// `SCARD key`.
    pub async fn raw_scard(&self, key: &str) -> Result<usize, StoreError> {
        let mut c = self.conn.clone();
        timed(redis::cmd("SCARD").arg(key).query_async(&mut c)).await
    }

    /// Whether each member is in the set (`SMISMEMBER`).
    pub async fn raw_smismember(
        &self,
        key: &str,
        members: &[&str],
    ) -> Result<Vec<bool>, StoreError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        timed(
            redis::cmd("SMISMEMBER")
                .arg(key)
                .arg(members)
                .query_async(&mut c),
        )
        .await
    }

    /// The reads of `plan` at once, in one pipeline (one round trip; none for an empty plan).
    pub async fn raw_read_many(&self, plan: &ReadPlan) -> Result<ManyReads, StoreError> {
        if plan.is_empty() {
            return Ok(ManyReads::default());
        }
        let mut p = redis::pipe();
        plan.push_reads(&mut p);
        let mut c = self.conn.clone();
        let answers: Vec<redis::Value> = timed(p.query_async(&mut c)).await?;
        plan.answers(&mut answers.into_iter())
    }
}

/// A batch to commit: the lane's fencing token, what it expects, and its writes.
#[derive(Debug, Clone, Copy)]
pub struct BatchWrites<'a> {
    /// The lease's fencing token.
    pub token: &'a str,
    /// The revision the batch was applied on.
    pub expected_rev: u64,
    /// The last sequence applied before it.
    pub expected_seq: u64,
    /// Its last sequence.
    pub new_seq: u64,
    /// How many commands it holds (added to the revision).
    pub commands: u64,
    /// Its writes.
    pub ops: &'a [Op],
}

impl BatchWrites<'_> {
    /// The batch commit script's call: its keys, the checks' arguments, then the writes.
    fn invocation(&self) -> redis::ScriptInvocation<'static> {
        let mut inv = COMMIT_BATCH.key(keys::REV);
        inv.key(keys::LANE)
            .key(keys::LANE_SEQ)
            .arg(self.expected_rev)
            .arg(AUDIT_MAX_LEN)
            .arg(self.token)
            .arg(self.expected_seq)
            .arg(self.new_seq)
            .arg(self.commands);
        push_ops(&mut inv, self.ops);
        inv
    }
}

/// What the batch commit script answered.
fn batch_commit(answer: &[i64]) -> BatchCommit {
    match answer {
        [-1] => BatchCommit::Conflict,
        [-3] => BatchCommit::LaneLost,
        [-4] => BatchCommit::SeqMoved,
        [rev, change] => BatchCommit::Applied {
            rev: *rev as u64,
            change: (*change).max(0) as u64,
        },
        // Not an answer of this script: nothing is taken as written.
        _ => BatchCommit::SeqMoved,
    }
}

/// Reads to make with [`Store::commit_batch_then_read`] (the kinds of [`Store::raw_read_many`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadPlan {
    /// `GET` (one `MGET`).
    pub strings: Vec<String>,
    /// `HGETALL`.
    pub hashes: Vec<String>,
    /// `SCARD` (`true`) or `HLEN`.
    pub counts: Vec<(String, bool)>,
    /// `HGET` (key, field).
    pub fields: Vec<(String, String)>,
}

impl ReadPlan {
    /// Whether nothing is to be read.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
            && self.hashes.is_empty()
            && self.counts.is_empty()
            && self.fields.is_empty()
    }

    /// Appends the reads to `p`, in the order [`ReadPlan::answers`] takes their answers back.
    fn push_reads(&self, p: &mut redis::Pipeline) {
        for chunk in self.strings.chunks(MGET_CHUNK) {
            p.cmd("MGET").arg(chunk);
        }
        for k in &self.hashes {
            p.cmd("HGETALL").arg(k);
        }
        for (k, set) in &self.counts {
            p.cmd(if *set { "SCARD" } else { "HLEN" }).arg(k);
        }
        for (k, f) in &self.fields {
            p.cmd("HGET").arg(k).arg(f);
        }
    }

    /// The answers to [`ReadPlan::push_reads`], taken from `answers` in order (hashes sorted by field).
    fn answers(
        &self,
        answers: &mut impl Iterator<Item = redis::Value>,
    ) -> Result<ManyReads, StoreError> {
        let mut got = ManyReads {
            strings: Vec::with_capacity(self.strings.len()),
            hashes: Vec::with_capacity(self.hashes.len()),
            counts: Vec::with_capacity(self.counts.len()),
            fields: Vec::with_capacity(self.fields.len()),
        };
        for _ in self.strings.chunks(MGET_CHUNK) {
            got.strings
                .extend(take::<Vec<Option<String>>>(answers, "MGET")?);
        }
        for _ in &self.hashes {
            let mut h: Vec<(String, String)> = take(answers, "HGETALL")?;
            h.sort();
            got.hashes.push(h);
        }
        for _ in &self.counts {
            got.counts.push(take(answers, "SCARD/HLEN")?);
        }
        for _ in &self.fields {
            got.fields.push(take(answers, "HGET")?);
        }
        Ok(got)
    }
}

/// Keys per `MGET`.
const MGET_CHUNK: usize = 500;

/// The next pipelined answer, decoded as `T`.
fn take<T: redis::FromRedisValue>(
    answers: &mut impl Iterator<Item = redis::Value>,
    what: &str,
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: format!("(pipelined {what})"),
        reason,
    };
    let v = answers.next().ok_or_else(|| corrupt("no answer".into()))?;
    redis::from_redis_value(v).map_err(|e| corrupt(e.to_string()))
}

/// Answers of [`Store::raw_read_many`], in the order asked.
#[derive(Debug, Default)]
pub struct ManyReads {
    /// Values of the strings (`None`: no such key).
    pub strings: Vec<Option<String>>,
    /// The hashes, each sorted by field.
    pub hashes: Vec<Vec<(String, String)>>,
    /// The counts.
    pub counts: Vec<usize>,
    /// Values of the hash fields (`None`: no such field).
    pub fields: Vec<Option<String>>,
}
