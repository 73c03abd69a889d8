//! Fault: worker crashes (issue 5 item 1).
//!
//! Two workers consume a stream of mixed commands while one of them is killed every ~2 s and replaced:
//! real `vc-worker` processes killed with SIGKILL (`worker_processes_killed_with_sigkill_…`, the binary's
//! own `main` built in this package as `vc-worker-under-test`), and in-process workers whose tasks are
//! all aborted at once (`worker_crashes_…`, which can also classify each kill). At the end every command
//! JetStream acknowledged has a completed record, none was committed twice, LiteLLM holds no duplicate,
//! and the whole observable state equals a serial replay of the same commands on a fresh stack with one
//! worker.
//!
//! CI: 2,000 commands with processes, 600 in-process, production settings (`ack_wait` and the lane's
//! lease, 2 s). `scripts/soak`: 10,000 each (`VC_SOAK=1`); sizes can be set with
//! `VC_FAULT_PROC_COMMANDS`, `VC_FAULT_COMMANDS` and `VC_FAULT_KILL_EVERY_MS`.

mod fault_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fault_support::*;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vc_shared::command::{CommandStatus, HDR_MSG_ID, HDR_REPLY_TO};
use vc_tests::stack::Stack;

/// `Service::kill()` must behave like kill -9 of the process: a worker killed after the commit, during
/// the command's LiteLLM sync (its sync job, beside the lane), must not go on to sync and reply: that is
/// the redelivered job's work. Before the fix in `vc_worker::run`, dropping `run` only dropped its stop
/// signal, which the worker took for a graceful stop: it finished the work in hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_does_not_finish_its_command() {
    let mut s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    emu.set_latency(Duration::from_secs(2));
    let nc = s.nats_client().await;
    let mut replies = nc.subscribe("_INBOX.test.fault.reply").await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let id = uuid::Uuid::new_v4().to_string();
    let mut h = async_nats::HeaderMap::new();
    h.insert(HDR_MSG_ID, id.as_str());
    h.insert(HDR_REPLY_TO, "_INBOX.test.fault.reply");
    let body = json!({"name": "Slow Sync", "provider": "openai", "modelId": "gpt-x"});
    js.publish_with_headers(
        "vc.cmd.model.register",
        h,
        serde_json::to_vec(&body).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    vc_tests::wait::eventually("committed", secs(10), || async {
        s.store
            .command(&id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.status == CommandStatus::Succeeded)
    })
    .await;
    // Committed; the worker is now inside the command's sync job (2 s of LiteLLM latency).
    s.workers.pop().expect("one worker").kill();
    let got = tokio::time::timeout(Duration::from_secs(4), replies.next()).await;
    assert!(
        got.is_err(),
        "a killed worker went on and sent its outcome: {got:?}"
    );
    assert!(
        emu.deployments().is_empty(),
        "a killed worker went on syncing"
    );
    // A new worker gets the sync job again (after its 15 s ack_wait), syncs once the dead worker's
    // sync lease has expired, and sends the outcome; nothing is applied again.
    emu.set_latency(Duration::ZERO);
    let w = s.spawn_worker().await;
    s.workers.push(w);
    let again = tokio::time::timeout(secs(40), replies.next())
        .await
        .expect("outcome sent by the new worker")
        .expect("message");
    let o: serde_json::Value = serde_json::from_slice(&again.payload).unwrap();
    assert_eq!(o["status"], "succeeded");
    // The dead worker's sync lease expires (15 s at most: it is no longer renewed) and the re-emitted
    // sync creates the deployment, once.
    let t = Instant::now();
    vc_tests::assert_eventually!(emu.deployments().len() == 1, secs(30));
    eprintln!(
        "[fault] deployment created {:?} after the new worker re-sent the outcome",
        t.elapsed()
    );
    assert_eq!(rev(&s.store).await, 1, "committed once");
}

/// How the workers run, and so how they are killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// In-process `vc_worker::run` tasks, aborted (all of a worker's tasks stop at once).
    InProcess,
    /// Real `vc-worker` processes (the binary's `main`), killed with SIGKILL.
    Processes,
}

/// The two workers under test, whichever way they run.
enum Fleet {
    InProcess(Vec<vc_tests::stack::Service>),
    Processes(Vec<vc_tests::stack::Process>),
}

impl Fleet {
    fn len(&self) -> usize {
        match self {
            Fleet::InProcess(v) => v.len(),
            Fleet::Processes(v) => v.len(),
        }
    }

    /// Kills worker `i` without warning.
    fn kill(&mut self, i: usize) {
        match self {
            Fleet::InProcess(v) => v.remove(i).kill(),
            Fleet::Processes(v) => v.remove(i).kill9(),
        }
    }

    /// Starts one more worker.
    async fn spawn(&mut self, s: &Stack) {
        match self {
            Fleet::InProcess(v) => v.push(s.spawn_worker().await),
            Fleet::Processes(v) => v.push(s.spawn_worker_process(WORKER_BIN)),
        }
    }

    /// Graceful stop (SIGTERM-like for in-process workers; processes are simply killed: their work is done).
    async fn stop(self) {
        match self {
            Fleet::InProcess(v) => {
                for w in v {
                    w.stop().await;
                }
            }
            Fleet::Processes(v) => v.into_iter().for_each(vc_tests::stack::Process::kill9),
        }
    }
}

/// `vc-worker`'s `main`, built in this package (`tests/src/bin/vc-worker-under-test.rs`).
const WORKER_BIN: &str = env!("CARGO_BIN_EXE_vc-worker-under-test");

/// Item 1: kill a worker every ~2 s under a stream of mixed commands; nothing acknowledged is lost,
/// nothing is applied twice, and the final state equals a serial replay. In-process workers (aborted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_crashes_lose_nothing_and_apply_nothing_twice() {
    crash_scenario(Mode::InProcess, size("VC_FAULT_COMMANDS", 600, 10_000)).await;
}

/// Item 1 with real `vc-worker` processes killed with SIGKILL (kill -9) every ~2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_killed_with_sigkill_lose_nothing_and_apply_nothing_twice() {
    crash_scenario(
        Mode::Processes,
        size("VC_FAULT_PROC_COMMANDS", 2000, 10_000),
    )
    .await;
}

async fn crash_scenario(mode: Mode, n: usize) {
    // Production settings: the consumer's ack_wait and the lane's lease are what a kill costs.
    let ack_wait = vc_worker::consumer::ACK_WAIT;
    let kill_every = Duration::from_millis(size("VC_FAULT_KILL_EVERY_MS", 2000, 2000) as u64);
    let seed = 0x5eed_0001;
    let cmds = mixed_commands(n, seed);
    let mut s = Stack::builder()
        .litellm(true)
        .workers(if mode == Mode::InProcess { 2 } else { 0 })
        .start()
        .await;
    let mut fleet = match mode {
        Mode::InProcess => Fleet::InProcess(std::mem::take(&mut s.workers)),
        Mode::Processes => {
            let mut f = Fleet::Processes(Vec::new());
            for _ in 0..2 {
                f.spawn(&s).await;
            }
            f
        }
    };

    // LiteLLM answers in ~10 ms, as a real proxy's admin API does: syncing commands spend a while after
    // their commit, where a kill leaves a committed but unacknowledged command.
    let latency = Duration::from_millis(size("VC_FAULT_LITELLM_LATENCY_MS", 10, 10) as u64);
    s.emu.as_ref().unwrap().emu.set_latency(latency);
    // Publish everything from one connection (stream order = publish order), while the kills go on,
    // paced so that the run spans about ten kills whatever the lane's speed.
    let js = async_nats::jetstream::new(s.nats_client().await);
    let to_publish = cmds.clone();
    let span = kill_every * 10;
    let publisher = tokio::spawn(async move {
        let chunk = 20;
        let every = span / (to_publish.len().div_ceil(chunk) as u32).max(1);
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        let mut tick = tokio::time::interval(every);
        for c in to_publish.chunks(chunk) {
            tick.tick().await;
            let (a, r) = publish_all(&js, c, chunk, None).await;
            ok.extend(a);
            refused.extend(r);
        }
        (ok, refused)
    });
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0usize;
    let mut acked: Option<Vec<String>> = None;
    let mut publisher = Some(publisher);
    let deadline = started + secs(if soak() { 3600 } else { 240 });
    let mut next_kill = Instant::now() + kill_every;
    let cjs = async_nats::jetstream::new(s.nats_client().await);
    // Kills that hit the worker holding the command: (before its commit, after its commit).
    let held = std::sync::Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    // Stalls: time during which no command completed although some were waiting (a killed worker held
    // the command in flight until `ack_wait` passed).
    let (mut last_rev, mut last_move) = (0u64, Instant::now());
    let mut stalls: Vec<Duration> = Vec::new();
    loop {
        if let Some(p) = publisher.as_ref().filter(|p| p.is_finished()) {
            let _ = p;
            let (ok, refused) = publisher.take().unwrap().await.unwrap();
            assert!(refused.is_empty(), "JetStream refused: {refused:?}");
            acked = Some(ok);
        }
        let done = rev(&s.store).await;
        if done != last_rev {
            let gap = last_move.elapsed();
            if gap >= Duration::from_secs(1) && last_rev > 0 {
                stalls.push(gap);
            }
            (last_rev, last_move) = (done, Instant::now());
        }
        if let Some(a) = &acked {
            if done >= a.len() as u64 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} commands completed after {:?} ({kills} kills)",
            started.elapsed()
        );
        if Instant::now() >= next_kill {
            let i = rng.gen_range(0..fleet.len());
            let before = cmd_consumer_state(&cjs).await;
            fleet.kill(i);
            // Classify the kill: did the victim hold the command in flight, before or after its commit?
            if let Some((floor, 1)) = before {
                let cmd_id = cmds[floor as usize].id.clone();
                let (store, cjs, held) = (s.store.clone(), cjs.clone(), held.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let committed = store
                        .command(&cmd_id)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.status != CommandStatus::Pending);
                    tokio::time::sleep(ack_wait / 2).await;
                    if cmd_consumer_state(&cjs)
                        .await
                        .is_some_and(|(f, _)| f == floor)
                    {
                        let mut h = held.lock().unwrap();
                        if committed {
                            h.1 += 1;
                        } else {
                            h.0 += 1;
                        }
                    }
                });
            }
            fleet.spawn(&s).await;
            kills += 1;
            let jitter = rng.gen_range(0.75..1.25);
            next_kill = Instant::now() + kill_every.mul_f64(jitter);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked = acked.unwrap();
    let crash_elapsed = started.elapsed();
    let (held_before, held_after) = *held.lock().unwrap();
    stalls.sort();
    let pct = |p: f64| {
        stalls
            .get(((stalls.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "[fault] crash run ({mode:?}): {} commands completed in {crash_elapsed:?} with {kills} worker kills ({:.0} commands/s); \
         {} stalls of >= 1 s (p50 {:?}, p99 {:?}, longest {:?}); the victim held one command in flight \
         {} times before its commit and {} times after it (committed, not yet acknowledged)",
        acked.len(),
        acked.len() as f64 / crash_elapsed.as_secs_f64(),
        stalls.len(),
        pct(0.5),
        pct(0.99),
        stalls.last().copied().unwrap_or_default(),
        held_before,
        held_after,
    );

    // 1. Every acknowledged command has a completed record.
    let st = statuses(&s.store, &acked).await;
    let missing: Vec<_> = st
        .iter()
        .filter(|(_, v)| !matches!(v, Some(CommandStatus::Succeeded | CommandStatus::Failed)))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a completed record: {missing:?}"
    );
    // 2. Committed exactly once: every commit bumps {vc}:rev once, and the script refuses a second commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rev(&s.store).await,
        acked.len() as u64,
        "{REV_KEY} must equal the number of commands"
    );
    // ... and no audit event was written twice.
    let events = audit(&s.store).await;
    let per_cmd = events_per_command(&events);
    // 3. LiteLLM converges, without duplicates.
    let converge = wait_all_synced(&s, secs(150)).await;
    eprintln!("[fault] LiteLLM sync converged {converge:?} after the last command");
    assert_no_litellm_duplicates(&s);
    let crashed = snapshot(&s).await;
    fleet.stop().await;
    drop(s);

    // 4. The same commands, serially, on a fresh stack with one worker.
    let r = Stack::builder().litellm(true).start().await;
    let js = async_nats::jetstream::new(r.nats_client().await);
    let by_id: BTreeMap<&str, &Cmd> = cmds.iter().map(|c| (c.id.as_str(), c)).collect();
    let replay: Vec<Cmd> = acked.iter().map(|id| by_id[id.as_str()].clone()).collect();
    let t = Instant::now();
    let (ok, refused) = publish_all(&js, &replay, 200, None).await;
    assert!(refused.is_empty() && ok.len() == replay.len());
    wait_rev(
        &r.store,
        ok.len() as u64,
        secs(if soak() { 1800 } else { 180 }),
    )
    .await;
    let replay_elapsed = t.elapsed();
    eprintln!(
        "[fault] serial replay: {} commands in {replay_elapsed:?} ({:.0} commands/s, one worker, no faults)",
        ok.len(),
        ok.len() as f64 / replay_elapsed.as_secs_f64()
    );
    wait_all_synced(&r, secs(60)).await;
    let replayed = snapshot(&r).await;
    let replay_statuses = statuses(&r.store, &ok).await;
    assert_eq!(st, replay_statuses, "each command ended the same way");
    let replay_events = events_per_command(&audit(&r.store).await);
    assert_eq!(per_cmd, replay_events, "audit events per command");
    if let Some(d) = first_diff(&crashed, &replayed, "state") {
        panic!("the crash run's final state differs from the serial replay: {d}");
    }
    let succeeded = st
        .values()
        .filter(|v| **v == Some(CommandStatus::Succeeded))
        .count();
    eprintln!(
        "[fault] compared: {} models, {} realms, {} agents, {} deployments, {} keys; {succeeded} of {} commands succeeded, {} audit events",
        crashed["models"].as_array().map_or(0, Vec::len),
        crashed["realms"].as_array().map_or(0, Vec::len),
        crashed["agents"].as_array().map_or(0, Vec::len),
        crashed["litellm"]["deployments"].as_array().map_or(0, Vec::len),
        crashed["litellm"]["keys"].as_array().map_or(0, Vec::len),
        acked.len(),
        events.len()
    );
}

/// `(ack floor stream sequence, acks pending)` of the command consumer.
async fn cmd_consumer_state(js: &async_nats::jetstream::Context) -> Option<(u64, usize)> {
    let i = cmd_consumer_info(js).await?;
    Some((i.ack_floor.stream_sequence, i.num_ack_pending))
}
