//! Fuzzing the NATS command interface (contract §4) against a real `vc-worker` over a real
//! `nats-server` (JetStream) and `redis-server`: arbitrary payloads and headers on `vc.cmd.<kind>` for
//! every kind and on unknown kinds.
//!
//! For every message published (each with a unique `Nats-Msg-Id`, or a missing/invalid one on purpose):
//! - with a `Vc-Reply-To`, exactly one outcome arrives on it: `failed` with `BAD_REQUEST` and the
//!   validator's own words when the command is invalid (unknown kind, bad id, bad body), any status when
//!   it is valid;
//! - it appears on `vc.dlq.cmd` (stream `VC_DLQ`) exactly once when it is undecodable (not one JSON
//!   object, unknown kind, missing/invalid `Nats-Msg-Id`), and never otherwise;
//! - a valid command published right after it (the canary, a `realm.update`) is applied within
//!   [`PROMPT`]: the one-in-flight stream never blocks on a poison message.
//!
//! Cases: `PROPTEST_CASES`, else the defaults below (CI); `scripts/fuzz` runs 100,000 per property.

#[path = "../../shared/tests/prop_support/mod.rs"]
mod prop_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use prop_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use vc_shared::command::{
    validate_command_id, Command, CommandKind, HDR_ACTOR, HDR_MSG_ID, HDR_REPLY_TO,
};
use vc_tests::stack::Stack;

/// Default cases (batches of 1–4 fuzzed messages plus a canary) of the main property.
const BATCH_CASES: u32 = 200;
/// Default cases of the flood property (up to 64 poison messages, then a canary).
const FLOOD_CASES: u32 = 24;
/// Default cases of the raw-header property (ignored while its bugs are open).
const SMALL_RAW_CASES: u32 = 64;
/// How soon the canary after poison messages must be applied.
const PROMPT: Duration = Duration::from_secs(10);
/// The canary's realm (created at start).
const CANARY_REALM: &str = "fuzz-canary";

/// Where a fuzzed message is published.
#[derive(Debug, Clone)]
enum Target {
    Kind(CommandKind),
    /// `vc.cmd.<this>`: not a kind.
    Other(String),
}

impl Target {
    fn subject(&self) -> String {
        match self {
            Target::Kind(k) => vc_shared::subjects::command(*k),
            Target::Other(s) => format!("vc.cmd.{s}"),
        }
    }
}

/// The `Nats-Msg-Id` of a fuzzed message (made unique per message where it is present).
#[derive(Debug, Clone)]
enum MsgId {
    /// Valid: `fz<n>-` + printable ASCII.
    Valid(String),
    Missing,
    Empty,
    /// Over 128 characters.
    TooLong(usize),
    /// Contains a space.
    Space,
    /// Contains a non-ASCII character.
    NonAscii,
}

#[derive(Debug, Clone)]
enum ReplyTo {
    Inbox,
    Missing,
    /// Not a subject one can publish to.
    Invalid(&'static str),
}

#[derive(Debug, Clone)]
struct FuzzMsg {
    target: Target,
    payload: Vec<u8>,
    id: MsgId,
    reply: ReplyTo,
    actor: Option<String>,
    headers: Vec<(String, String)>,
}

fn target() -> BoxedStrategy<Target> {
    prop_oneof![
        6 => kind().prop_map(Target::Kind),
        1 => prop::collection::vec("[A-Za-z0-9_$-]{1,12}|[\\p{L}]{1,6}", 1..4)
            .prop_map(|t| t.join("."))
            .prop_filter("not a kind", |s| CommandKind::parse(s).is_none())
            .prop_map(Target::Other),
        1 => (kind(), prop::sample::select(vec!["", ".x", ".model", "x"]))
            .prop_map(|(k, suffix)| {
                let name = k.as_str();
                match suffix {
                    "" => name.to_uppercase(),
                    "x" => format!("x{name}"),
                    s => format!("{name}{s}"),
                }
            })
            .prop_filter("not a kind", |s| CommandKind::parse(s).is_none())
            .prop_map(Target::Other),
    ]
    .boxed()
}

/// Payloads: bodies shaped like the kind's (arbitrary values), one-wrong-field bodies, valid bodies,
/// any JSON, raw bytes.
fn payload(t: &Target) -> BoxedStrategy<Vec<u8>> {
    let kind = match t {
        Target::Kind(k) => *k,
        Target::Other(_) => CommandKind::RealmCreate,
    };
    let did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let wrong = wrong_field_cases_of(did, Via::Direct, Some(kind))
        .map(|w| {
            w.prop_map(|c| serde_json::to_vec(&Value::Object(c.body)).unwrap())
                .boxed()
        })
        .unwrap_or_else(|| valid_payload(kind));
    prop_oneof![
        3 => object_for(fields_of(kind)).prop_map(|o| serde_json::to_vec(&Value::Object(o)).unwrap()),
        2 => wrong,
        1 => valid_payload(kind),
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => raw_body(),
    ]
    .boxed()
}

/// A valid body of `kind` on random ids (mostly unknown: the worker refuses with NOT_FOUND).
fn valid_payload(kind: CommandKind) -> BoxedStrategy<Vec<u8>> {
    (
        "[A-Za-z0-9_-]{1,20}",
        "[A-Za-z0-9][\\PC&&[^\u{85}]]{0,30}",
        valid_did(),
    )
        .prop_map(move |(id, name, did)| {
            let name = name.trim_end().to_string();
            let v = match kind {
                CommandKind::ModelRegister => {
                    json!({"name": name, "provider": "openai", "modelId": id})
                }
                CommandKind::ModelUpdate => json!({"id": id, "description": name}),
                CommandKind::ModelDelete => json!({ "id": id }),
                CommandKind::RealmCreate => json!({"name": name}),
                CommandKind::RealmUpdate => json!({"realmId": id, "description": name}),
                CommandKind::RealmDelete => json!({ "realmId": id }),
                CommandKind::RealmGrant | CommandKind::RealmRevoke => {
                    json!({"modelId": id, "realmId": id})
                }
                CommandKind::RealmAgentAdd | CommandKind::RealmAgentRemove => {
                    json!({"realmId": id, "agentDid": did})
                }
                CommandKind::AgentRegister => json!({"did": did, "name": name}),
                CommandKind::AgentDelete | CommandKind::AgentLlmConfigClear => {
                    json!({ "did": did })
                }
                CommandKind::AgentLlmConfigSet => json!({"did": did, "registryModelId": id}),
                CommandKind::LitellmReconcile => json!({}),
                CommandKind::RealmKeyRotate => json!({"realmId": id, "graceSeconds": 0}),
                CommandKind::RealmKeyActivate | CommandKind::RealmKeyRetire => {
                    json!({"realmId": id, "keyId": "0123456789abcdef"})
                }
                CommandKind::RealmSpendRefresh => json!({ "realmId": id }),
                CommandKind::RealmBudgetAlert => {
                    json!({"realmId": id, "spendUsd": 5, "budgetUsd": 10, "fractions": [0.5]})
                }
                CommandKind::RealmBudgetGuard => {
                    json!({"realmId": id, "spendUsd": 10, "budgetUsd": 10, "block": true})
                }
            };
            serde_json::to_vec(&v).unwrap()
        })
        .boxed()
}

fn msg_id() -> BoxedStrategy<MsgId> {
    prop_oneof![
        12 => "[!-~]{0,20}".prop_map(MsgId::Valid),
        1 => Just(MsgId::Missing),
        1 => Just(MsgId::Empty),
        1 => (129usize..400).prop_map(MsgId::TooLong),
        1 => Just(MsgId::Space),
        1 => Just(MsgId::NonAscii),
    ]
    .boxed()
}

fn reply_to() -> BoxedStrategy<ReplyTo> {
    prop_oneof![
        10 => Just(ReplyTo::Inbox),
        1 => Just(ReplyTo::Missing),
        1 => prop::sample::select(vec!["", "fuzz reply", "fuzz..reply", ".fuzz", "fuzz."])
            .prop_map(ReplyTo::Invalid),
    ]
    .boxed()
}

/// Extra headers: arbitrary names and printable values (NATS's own `Nats-*` headers are left out: they
/// steer JetStream itself, and a refused publish tests nothing of ours).
fn extra_headers() -> BoxedStrategy<Vec<(String, String)>> {
    prop::collection::vec(
        (
            "[A-Za-z][A-Za-z0-9-]{0,20}".prop_filter("not Nats-", |n| {
                !n.to_ascii_lowercase().starts_with("nats-")
                    && !n.eq_ignore_ascii_case(HDR_REPLY_TO)
            }),
            "[!-~]([ -~]{0,60}[!-~])?",
        ),
        0..3,
    )
    .boxed()
}

fn fuzz_msg() -> BoxedStrategy<FuzzMsg> {
    target()
        .prop_flat_map(|t| {
            (
                payload(&t),
                Just(t),
                msg_id(),
                reply_to(),
                prop::option::of("[ -~]{0,80}"),
                extra_headers(),
            )
        })
        .prop_map(|(payload, target, id, reply, actor, headers)| FuzzMsg {
            target,
            payload,
            id,
            reply,
            actor: actor
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty()),
            headers,
        })
        .boxed()
}

/// Poison only: undecodable bodies, unknown kinds, bad ids.
fn poison_msg() -> BoxedStrategy<FuzzMsg> {
    (fuzz_msg(), 0u8..3)
        .prop_map(|(mut m, how)| {
            match how {
                0 => {
                    m.payload = b"\x00not json".to_vec();
                }
                1 => m.target = Target::Other("no.such.kind".into()),
                _ => m.id = MsgId::Missing,
            }
            m
        })
        .boxed()
}

/// What must happen to one published message.
enum OutcomeRule {
    /// Failed with `BAD_REQUEST` and a message satisfying the predicate's description.
    Failed(&'static str, Box<dyn Fn(&str) -> bool>),
    /// Any outcome (a valid command: applied, or refused by the domain).
    Any,
}

/// Whether a body is one JSON object (the oracle of "decodable"), independent of `Command::parse`.
fn is_one_object(payload: &[u8]) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|v| v.is_object())
}

/// The rule for a message with this concrete id.
fn rules(m: &FuzzMsg, id: Option<&str>) -> (OutcomeRule, bool) {
    let id_ok = id.is_some_and(|i| validate_command_id(i).is_ok());
    if !id_ok {
        return (
            OutcomeRule::Failed("names Nats-Msg-Id", Box::new(|e| e.contains("Nats-Msg-Id"))),
            true,
        );
    }
    let kind = match &m.target {
        Target::Other(_) => {
            return (
                OutcomeRule::Failed(
                    "unknown command kind",
                    Box::new(|e| e.contains("unknown command kind")),
                ),
                true,
            )
        }
        Target::Kind(k) => *k,
    };
    if kind == CommandKind::LitellmReconcile {
        // Internal kind, no body: any payload is accepted.
        return (OutcomeRule::Any, false);
    }
    let undecodable = !is_one_object(&m.payload);
    match Command::parse(kind, &m.payload) {
        Err(e) => {
            let words = e.message.clone();
            (
                OutcomeRule::Failed("the validator's words", Box::new(move |got| got == words)),
                undecodable,
            )
        }
        Ok(_) => {
            assert!(!undecodable, "the validator accepted a non-object");
            (OutcomeRule::Any, false)
        }
    }
}

type Inbox = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// The stack, a client, the reply inbox and the DLQ reader.
struct Harness {
    rt: tokio::runtime::Runtime,
    stack: Option<Stack>,
    js: jetstream::Context,
    inbox: Inbox,
    notify: Arc<tokio::sync::Notify>,
    next: std::sync::atomic::AtomicU64,
    /// Slowest canary so far.
    worst: Mutex<Duration>,
    published: std::sync::atomic::AtomicU64,
}

/// One published message and what must become of it.
struct Sent {
    what: String,
    /// The `Nats-Msg-Id` its dead letter must carry: `dlq-<id>`, or `dlq-seq-<stream sequence>`.
    dlq_id: String,
    id: Option<String>,
    reply: Option<String>,
    rule: OutcomeRule,
    dlq: bool,
    subject: String,
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let inbox: Inbox = Default::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (stack, nats) = rt.block_on(async {
            let s = Stack::builder().start().await;
            let nats = s.nats_client().await;
            let mut sub = nats.subscribe("_INBOX.fuzz.>").await.expect("subscribe");
            nats.flush().await.expect("flush");
            let (inbox, notify) = (inbox.clone(), notify.clone());
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    let v = serde_json::from_slice(&m.payload)
                        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&m.payload)}));
                    inbox
                        .lock()
                        .unwrap()
                        .entry(m.subject.to_string())
                        .or_default()
                        .push(v);
                    notify.notify_waiters();
                }
            });
            (s, nats)
        });
        let js = {
            let _guard = rt.enter();
            jetstream::new(nats.clone())
        };
        let h = Harness {
            rt,
            stack: Some(stack),
            js,
            inbox,
            notify,
            next: 0.into(),
            worst: Mutex::new(Duration::ZERO),
            published: 0.into(),
        };
        // The canary's realm.
        let created = h.rt.block_on(h.command(
            CommandKind::RealmCreate,
            json!({"id": CANARY_REALM, "name": "Fuzz canary"}),
        ));
        assert_eq!(created["status"], "succeeded", "{created}");
        h
    }

    fn n(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `subject` has an outcome (or the deadline passes).
    async fn outcome(&self, subject: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            if let Some(v) = self
                .inbox
                .lock()
                .unwrap()
                .get(subject)
                .and_then(|v| v.first().cloned())
            {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Publishes a valid command and waits for its outcome.
    async fn command(&self, kind: CommandKind, body: Value) -> Value {
        let n = self.n();
        let reply = format!("_INBOX.fuzz.canary.{n}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HDR_MSG_ID, format!("canary-{n}").as_str());
        headers.insert(HDR_REPLY_TO, reply.as_str());
        self.js
            .publish_with_headers(
                vc_shared::subjects::command(kind),
                headers,
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
        self.outcome(&reply, PROMPT)
            .await
            .unwrap_or_else(|| json!({"status": "no outcome in time"}))
    }

    /// The canary: a valid `realm.update`, applied within [`PROMPT`]; returns how long it took.
    async fn canary(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let o = self
            .command(
                CommandKind::RealmUpdate,
                json!({"realmId": CANARY_REALM, "description": format!("canary {}", self.n())}),
            )
            .await;
        if o["status"] != "succeeded" {
            return Err(format!("the canary after the poison was not applied: {o}"));
        }
        let took = started.elapsed();
        let mut w = self.worst.lock().unwrap();
        *w = (*w).max(took);
        Ok(took)
    }

    async fn dlq_last_seq(&self) -> u64 {
        let mut s = self
            .js
            .get_stream(vc_shared::subjects::DLQ_STREAM)
            .await
            .expect("DLQ stream");
        s.info().await.expect("DLQ info").state.last_sequence
    }

    /// DLQ entries after `after`: (`Nats-Msg-Id` header, original subject).
    async fn dlq_since(&self, after: u64) -> Vec<(Option<String>, String)> {
        let last = self.dlq_last_seq().await;
        let s = self
            .js
            .get_stream(vc_shared::subjects::DLQ_STREAM)
            .await
            .expect("DLQ stream");
        let mut out = Vec::new();
        for seq in after + 1..=last {
            if let Ok(m) = s.get_raw_message(seq).await {
                let id = m.headers.get(HDR_MSG_ID).map(|v| v.as_str().to_string());
                let orig = m
                    .headers
                    .get("Vc-Original-Subject")
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                out.push((id, orig));
            }
        }
        out
    }

    /// Publishes one fuzzed message; `None` when JetStream refused or deduplicated it.
    async fn publish(&self, m: &FuzzMsg) -> Option<Sent> {
        let n = self.n();
        let id = match &m.id {
            MsgId::Valid(s) => Some(format!("fz{n}-{s}")),
            MsgId::Missing => None,
            MsgId::Empty => Some(String::new()),
            MsgId::TooLong(len) => Some(format!("fz{n}-{}", "x".repeat(*len))),
            MsgId::Space => Some(format!("fz{n} x")),
            MsgId::NonAscii => Some(format!("fz{n}-é")),
        };
        let reply = match m.reply {
            ReplyTo::Inbox => Some(format!("_INBOX.fuzz.reply.{n}")),
            ReplyTo::Missing => None,
            ReplyTo::Invalid(s) => Some(s.to_string()),
        };
        let mut headers = async_nats::HeaderMap::new();
        for (k, v) in &m.headers {
            headers.insert(k.as_str(), v.as_str());
        }
        if let Some(i) = &id {
            headers.insert(HDR_MSG_ID, i.as_str());
        }
        if let Some(r) = &reply {
            headers.insert(HDR_REPLY_TO, r.as_str());
        }
        if let Some(a) = &m.actor {
            headers.insert(HDR_ACTOR, a.as_str());
        }
        let subject = m.target.subject();
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, m.payload.clone().into())
            .await
            .ok()?
            .await
            .ok()?;
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if ack.duplicate {
            return None;
        }
        let (rule, dlq) = rules(m, id.as_deref());
        let dlq_id = match &id {
            Some(i) if !i.trim().is_empty() => format!("dlq-{i}"),
            _ => format!("dlq-seq-{}", ack.sequence),
        };
        Some(Sent {
            dlq_id,
            what: format!(
                "{subject} id={id:?} reply={reply:?} payload={:?}",
                String::from_utf8_lossy(&m.payload)
            ),
            id,
            reply: reply.filter(|r| r.starts_with("_INBOX.fuzz.reply.")),
            rule,
            dlq,
            subject,
        })
    }

    /// Checks one message's outcome and DLQ entries (after the canary: everything before it is applied,
    /// and every outcome arrived).
    fn check(&self, s: &Sent) -> Result<(), TestCaseError> {
        if let Some(reply) = &s.reply {
            let got = self
                .inbox
                .lock()
                .unwrap()
                .get(reply)
                .cloned()
                .unwrap_or_default();
            prop_assert_eq!(got.len(), 1, "{}: outcomes {:?}", s.what, got);
            let o = &got[0];
            let expected_id =
                s.id.as_deref()
                    .filter(|i| validate_command_id(i).is_ok())
                    .unwrap_or("");
            prop_assert_eq!(
                o["commandId"].as_str(),
                Some(expected_id),
                "{}: {}",
                s.what,
                o
            );
            match &s.rule {
                OutcomeRule::Failed(desc, ok) => {
                    prop_assert_eq!(&o["status"], "failed", "{}: {}", s.what, o);
                    prop_assert_eq!(&o["error"]["code"], "BAD_REQUEST", "{}: {}", s.what, o);
                    let msg = o["error"]["message"].as_str().unwrap_or("");
                    prop_assert!(ok(msg), "{}: {} ({})", s.what, o, desc);
                }
                OutcomeRule::Any => {
                    prop_assert!(
                        o["status"] == "succeeded"
                            || o["status"] == "failed" && o["error"]["code"].is_string(),
                        "{}: {}",
                        s.what,
                        o
                    );
                }
            }
        }
        Ok(())
    }

    /// Publishes a batch, then the canary; checks every message.
    fn batch(&self, msgs: &[FuzzMsg]) -> Result<(), TestCaseError> {
        self.rt.block_on(async {
            let before = self.dlq_last_seq().await;
            let mut sent = Vec::new();
            for m in msgs {
                if let Some(s) = self.publish(m).await {
                    sent.push(s);
                }
            }
            let took = self.canary().await.map_err(TestCaseError::fail)?;
            prop_assert!(took < PROMPT, "canary took {took:?}");
            if took > Duration::from_secs(1) {
                // Not a failure (the bound is PROMPT), but worth a look in the long runs' logs.
                eprintln!(
                    "fuzz_nats: slow canary ({took:?}) after {:#?}",
                    sent.iter().map(|s| s.what.as_str()).collect::<Vec<_>>()
                );
            }
            // A command with LiteLLM work is answered once its sync job has run, which may be after
            // the canary's (later) outcome: wait for every answer, within the same bound.
            let deadline = Instant::now() + PROMPT;
            while Instant::now() < deadline {
                let all = {
                    let inbox = self.inbox.lock().unwrap();
                    sent.iter()
                        .filter_map(|s| s.reply.as_ref())
                        .all(|r| inbox.get(r).is_some_and(|v| !v.is_empty()))
                };
                if all {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let dlq = self.dlq_since(before).await;
            for s in &sent {
                self.check(s)?;
            }
            check_dead_letters(&sent, &dlq)
        })
    }

    fn run<S: Strategy>(
        &self,
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(&Self, S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let config = io_config(cases);
        let n = config.cases;
        let started = Instant::now();
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |v| test(self, v));
        // No late duplicate outcome for any message.
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
        let dup: Vec<_> = self
            .inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (k.clone(), v.len()))
            .collect();
        eprintln!(
            "fuzz_nats {name}: {n} cases, {} messages published, in {:.1} s; slowest canary {:?}",
            self.published.load(std::sync::atomic::Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            self.worst.lock().unwrap()
        );
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
        assert!(dup.is_empty(), "{name}: several outcomes for {dup:?}");
        let stack = self.stack.as_ref().unwrap();
        assert!(
            stack.workers.iter().all(|w| !w.task.is_finished()),
            "{name}: a worker stopped"
        );
    }
}

/// Dead letters carry the original subject and `dlq-<id>`, or `dlq-seq-<stream sequence>` when the
/// command had no id or an empty one: each undecodable message is there exactly once, nothing else is.
fn check_dead_letters(
    sent: &[Sent],
    dlq: &[(Option<String>, String)],
) -> Result<(), TestCaseError> {
    type Key = (Option<String>, String);
    // Per key: dead letters expected, the messages.
    let mut expected: HashMap<Key, (usize, Vec<&str>)> = HashMap::new();
    for s in sent {
        let key = (Some(s.dlq_id.clone()), s.subject.clone());
        let e = expected.entry(key).or_default();
        if s.dlq {
            e.0 += 1;
        }
        e.1.push(&s.what);
    }
    let mut got: HashMap<Key, usize> = HashMap::new();
    for d in dlq {
        *got.entry(d.clone()).or_default() += 1;
    }
    let keys: std::collections::HashSet<&Key> = expected.keys().chain(got.keys()).collect();
    for key in keys {
        let n = got.get(key).copied().unwrap_or(0);
        let (want, what) = expected.get(key).cloned().unwrap_or_default();
        prop_assert!(
            n == want,
            "{:?}: {} dead letters, expected {} for {:?}",
            key,
            n,
            want,
            what
        );
    }
    Ok(())
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            self.rt.block_on(async move { drop(s) });
        }
    }
}

/// Batches of 1–4 arbitrary messages (payloads, kinds, ids, reply subjects, headers), each checked, then
/// a canary.
#[test]
fn arbitrary_commands() {
    let h = Harness::start();
    h.run(
        "arbitrary_commands",
        BATCH_CASES,
        prop::collection::vec(fuzz_msg(), 1..=4),
        |h, msgs| h.batch(&msgs),
    );
}

/// Up to 64 poison messages back to back, then a valid command: applied within [`PROMPT`], and every
/// poison message has its one outcome and its one dead letter.
#[test]
fn poison_flood_never_blocks() {
    let h = Harness::start();
    h.run(
        "poison_flood_never_blocks",
        FLOOD_CASES,
        prop::collection::vec(poison_msg(), 1..=64),
        |h, msgs| h.batch(&msgs),
    );
}

// ---- defects found by the fuzzing, kept as regression tests (see docs/reliability.md "Bad input") ------

/// Input: ten different poison commands (unknown kind `vc.cmd.no.such.kind`, body `{}`), each with an
/// empty `Nats-Msg-Id` header, within two minutes: each is dead-lettered. (Found by fuzzing: the dead
/// letter's own `Nats-Msg-Id` was `dlq-` + the empty id, and the DLQ's duplicate window kept only the
/// first; now it is `dlq-seq-<stream sequence>`.)
#[test]
fn poison_with_empty_id_is_dead_lettered_once_each() {
    let h = Harness::start();
    let poison = |reply| FuzzMsg {
        target: Target::Other("no.such.kind".into()),
        payload: b"{}".to_vec(),
        id: MsgId::Empty,
        reply,
        actor: None,
        headers: Vec::new(),
    };
    h.rt.block_on(async {
        // nats-server 2.9 finds a message's `Nats-Msg-Id` by substring: when the dead letter's
        // `Vc-Dlq-Reason: missing or invalid Nats-Msg-Id` header happens to come first (header order
        // varies), the id is not seen and the letter is kept. With ten letters some are dropped all the
        // same.
        let before = h.dlq_last_seq().await;
        for _ in 0..10 {
            h.publish(&poison(ReplyTo::Inbox)).await.expect("stored");
        }
        h.canary().await.expect("canary");
        let dlq = h.dlq_since(before).await;
        assert_eq!(
            dlq.len(),
            10,
            "each poison message is dead-lettered: {dlq:?}"
        );
    });
}

/// Publishes one message over a raw NATS connection (`HPUB`), so the header block can hold bytes a
/// client library would refuse to send.
async fn raw_hpub(url: &str, subject: &str, header: &[u8], payload: &[u8]) -> bool {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("nats://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    rd.read_line(&mut line).await.expect("INFO");
    wr.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n")
        .await
        .unwrap();
    let mut msg = format!(
        "HPUB {subject} {} {}\r\n",
        header.len(),
        header.len() + payload.len()
    )
    .into_bytes();
    msg.extend_from_slice(header);
    msg.extend_from_slice(payload);
    msg.extend_from_slice(b"\r\nPING\r\n");
    wr.write_all(&msg).await.unwrap();
    loop {
        line.clear();
        if rd.read_line(&mut line).await.unwrap_or(0) == 0 || line.starts_with("-ERR") {
            return false;
        }
        if line.starts_with("PONG") {
            return true;
        }
    }
}

/// `HPUB`s an unreadable header block (which names `Vc-Reply-To: _INBOX.fuzz.raw`) on `realm.create`, then
/// checks that the canary is applied within [`PROMPT`], that the command is dead-lettered once (with
/// its header block, base64, in `Vc-Original-Headers`) and that its sender gets a failed outcome
/// naming the headers.
fn unreadable_header_is_dead_lettered(header: &[u8]) -> Result<(), String> {
    let h = Harness::start();
    let url = h.stack.as_ref().expect("running").nats.url();
    h.rt.block_on(async {
        let before = h.dlq_last_seq().await;
        assert!(
            raw_hpub(
                &url,
                "vc.cmd.realm.create",
                header,
                br#"{"name":"raw header"}"#
            )
            .await,
            "the server accepts the message"
        );
        h.canary().await?;
        let outcome = h.outcome("_INBOX.fuzz.raw", PROMPT).await;
        let ok = outcome.as_ref().is_some_and(|o| {
            o["status"] == "failed"
                && o["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("NATS headers cannot be read"))
        });
        if !ok {
            return Err(format!("no failed outcome naming the headers: {outcome:?}"));
        }
        let dlq = h.dlq_since(before).await;
        let letter_ok = dlq.len() == 1
            && dlq[0]
                .0
                .as_deref()
                .is_some_and(|id| id.starts_with("dlq-seq-"))
            && dlq[0].1 == "vc.cmd.realm.create";
        if !letter_ok {
            return Err(format!("expected one dead letter: {dlq:?}"));
        }
        let s =
            h.js.get_stream(vc_shared::subjects::DLQ_STREAM)
                .await
                .expect("DLQ stream");
        let letter = s
            .get_raw_message(h.dlq_last_seq().await)
            .await
            .expect("letter");
        let original = letter
            .headers
            .get("Vc-Original-Headers")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(original)
            .unwrap_or_default();
        if decoded != header {
            return Err("Vc-Original-Headers is not the header block as sent".into());
        }
        Ok(())
    })
}

/// Input: `HPUB vc.cmd.realm.create` with the header block `NATS/1.0\r\nNats-Msg-Id: raw-1\r\nX-Bad:
/// \xff\xfe\r\n\r\n` (a header value that is not UTF-8; also a header name with a space, a header line
/// without a colon). nats-server stores it; the worker's client (async-nats) cannot parse the delivery
/// and never sees it. It blocked the one-in-flight stream for good (observed > 70 s with `ack_wait`
/// 2 s) until the worker learnt to read the first command of the queue through the stream API and
/// dead-letter it (`bins/vc-worker/src/stuck.rs`).
#[test]
fn unparsable_header_is_dead_lettered_and_never_blocks() {
    for header in [
        &b"NATS/1.0\r\nNats-Msg-Id: raw-1\r\nVc-Reply-To: _INBOX.fuzz.raw\r\nX-Bad: \xff\xfe\r\n\r\n"[..],
        b"NATS/1.0\r\nNats-Msg-Id: raw-2\r\nVc-Reply-To: _INBOX.fuzz.raw\r\nBad Name: x\r\n\r\n",
        b"NATS/1.0\r\nNats-Msg-Id: raw-3\r\nVc-Reply-To: _INBOX.fuzz.raw\r\ngarbage\r\n\r\n",
    ] {
        unreadable_header_is_dead_lettered(header)
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(header)));
    }
}

/// Input: `HPUB vc.cmd.realm.create` with the header block `NATS/1.0 408 Request Timeout\r\n
/// Nats-Msg-Id: raw-4\r\n\r\n` (a status line; 100, 409, 503 and a version line other than `NATS/1.0`
/// do the same): the worker's pull consumer takes the stored command for a server status and never
/// processes or acks it; it blocked the stream for good before `stuck.rs`.
#[test]
fn status_line_header_is_dead_lettered_and_never_blocks() {
    for header in [
        &b"NATS/1.0 408 Request Timeout\r\nNats-Msg-Id: raw-4\r\nVc-Reply-To: _INBOX.fuzz.raw\r\n\r\n"[..],
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Msg-Id: raw-5\r\nVc-Reply-To: _INBOX.fuzz.raw\r\n\r\n",
        b"HTTP/1.1\r\nNats-Msg-Id: raw-8\r\nVc-Reply-To: _INBOX.fuzz.raw\r\n\r\n",
    ] {
        unreadable_header_is_dead_lettered(header)
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(header)));
    }
}

/// Arbitrary header blocks over the raw protocol (arbitrary bytes in names and values, status lines),
/// each followed by a canary: whatever the header block, the stream goes on.
#[test]
fn raw_header_bytes() {
    let h = Harness::start();
    let url = h.stack.as_ref().expect("running").nats.url();
    let line = prop::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..40,
    );
    let strategy = (
        prop::option::of(prop::sample::select(vec![
            " 100",
            " 408 Request Timeout",
            " 409",
            " 503",
            " 200 OK",
        ])),
        prop::collection::vec((line.clone(), line), 0..4),
    );
    let seq = std::sync::atomic::AtomicU64::new(0);
    h.run(
        "raw_header_bytes",
        SMALL_RAW_CASES,
        strategy,
        |h, (status, lines)| {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut header = format!(
                "NATS/1.0{}\r\nNats-Msg-Id: raw-{n}\r\n",
                status.unwrap_or("")
            )
            .into_bytes();
            for (name, value) in lines {
                header.extend_from_slice(&name);
                header.extend_from_slice(b": ");
                header.extend_from_slice(&value);
                header.extend_from_slice(b"\r\n");
            }
            header.extend_from_slice(b"\r\n");
            h.rt.block_on(async {
                if raw_hpub(&url, "vc.cmd.realm.create", &header, br#"{"name":"raw"}"#).await {
                    h.canary().await.map_err(TestCaseError::fail)?;
                }
                Ok(())
            })
        },
    );
}
