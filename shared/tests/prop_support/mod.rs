//! Strategies and helpers shared by the property tests of untrusted input: `shared/tests/prop_*.rs` (pure,
//! no I/O) and, through `#[path]`, `tests/tests/fuzz_*.rs` (REST, NATS, WebSocket against real processes).
//!
//! - [`cases`] / [`config`]: the case count is `PROPTEST_CASES` when set, else the suite's default (kept
//!   small enough for CI); `scripts/fuzz` runs the long variants. Failures are not persisted (no files
//!   appear in the tree): proptest prints the shrunk input, which goes into a regression test by hand.
//! - JSON: [`text`], [`number`], [`json_value`] (nested arrays/objects, unicode, huge and odd numbers,
//!   nulls), [`object_for`] (objects whose keys are mostly the command's real field names), [`raw_body`]
//!   (arbitrary bytes, broken and deeply nested JSON text).
//! - [`wrong_field_cases`]: a valid body of each command kind with exactly one field made wrong (wrong
//!   type, missing, blank, too long, control characters, bad id/DID/URL/colour/number...): the error must
//!   name that field.
//!
//! Only `proptest`, `serde_json`, `ed25519_dalek` and `vc_shared` are used, so both crates can include it.

#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};
use vc_shared::command::CommandKind;

/// `PROPTEST_CASES` when set (and a positive number), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A proptest config of [`cases`]`(default)` cases, without failure persistence.
pub fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    }
}

/// [`config`] for suites doing I/O per case: shrinking is bounded (each step is a network round trip).
pub fn io_config(default: u32) -> Config {
    Config {
        max_shrink_iters: 512,
        max_shrink_time: 120_000,
        ..config(default)
    }
}

// ---- strings and numbers ---------------------------------------------------------------------------

/// Strings that tend to break parsers and validators.
pub const SPECIAL_STRINGS: &[&str] = &[
    "",
    " ",
    "\t\n\r ",
    "null",
    "true",
    "0",
    "-1",
    "1e400",
    "NaN",
    "{}",
    "[]",
    "\"",
    "\\",
    "a\u{0}b",
    "\u{7f}",
    "\u{85}",
    "\u{a0}x\u{a0}",
    "\u{202e}gnp.exe",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "😀🤖",
    "İ",
    "\u{212a}",
    "日本語モデル",
    "did:key:z6Mk",
    "did:key:z",
    "did:web:example.com",
    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    "http://",
    "https://example.com/v1",
    "http://127.0.0.1:1/",
    "ftp://example.com",
    "javascript:alert(1)",
    "#fff",
    "#6366f1",
    "openai",
    "openai-compatible",
    "ollama",
    "anthropic",
    "google",
    "active",
    "inactive",
    "../../etc/passwd",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "%00%ff",
    "vc.cmd.>",
    "*",
    ">",
    "a.b",
    "a b",
    "realm:1",
    "model_1-x",
];

/// Arbitrary text: any unicode, ASCII-ish tokens, special strings, long runs, control characters.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        3 => "[a-zA-Z0-9 _.:#/-]{0,40}",
        2 => prop::sample::select(SPECIAL_STRINGS).prop_map(str::to_string),
        1 => (any::<char>(), 0usize..3000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => control_text(),
        1 => "\\PC{0,300}",
    ]
    .boxed()
}

/// Control characters that validators refuse (everything `char::is_control` but `\n`, `\t`, `\r`).
const CONTROLS: &[char] = &[
    '\u{0}', '\u{1}', '\u{7}', '\u{8}', '\u{b}', '\u{c}', '\u{e}', '\u{1b}', '\u{1f}', '\u{7f}',
    '\u{80}', '\u{85}', '\u{9f}',
];

/// `<alnum><control><alnum>`: a control character that trimming cannot remove.
pub fn control_text() -> BoxedStrategy<String> {
    (
        "[a-zA-Z0-9]{1,20}",
        prop::sample::select(CONTROLS),
        "[a-zA-Z0-9]{1,20}",
    )
        .prop_map(|(a, c, b)| format!("{a}{c}{b}"))
        .boxed()
}

/// JSON numbers: any i64/u64/finite f64, and the edges (0, -0.0, i64/u64 extremes, 1e308, limits of
/// the validators).
pub fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(-1),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(10_000_000),
            json!(10_000_001),
            json!(1_000_000_000),
            json!(0.5),
            json!(-0.0),
            json!(1e9),
            json!(1.000_000_001e9),
            json!(1e308),
            json!(-1e308),
            json!(f64::MIN_POSITIVE),
        ]),
    ]
    .boxed()
}

/// A JSON leaf: null, bool, number or string.
pub fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => number(),
        3 => text().prop_map(Value::String),
    ]
    .boxed()
}

/// Every field name of every command body (camelCase), plus envelope and frame keys.
pub const ALL_FIELDS: &[&str] = &[
    "id",
    "name",
    "provider",
    "modelId",
    "baseUrl",
    "apiKey",
    "apiKeySealed",
    "description",
    "status",
    "realmId",
    "did",
    "slug",
    "color",
    "monthlyBudgetUsd",
    "inputCostPerToken",
    "outputCostPerToken",
    "agentDid",
    "isPrimary",
    "realmModelId",
    "registryModelId",
    "model",
    "systemPrompt",
    "maxTokens",
    "type",
    "payload",
    "messageId",
    "agentId",
    "timestamp",
    "signature",
    "version",
    "activeLlm",
];

/// An object key: a real field name (so validators see it), or arbitrary text.
pub fn key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(ALL_FIELDS).prop_map(str::to_string),
        1 => text(),
    ]
    .boxed()
}

/// Arbitrary JSON: nested arrays and objects (depth up to 6), unicode, odd numbers, nulls.
pub fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A valid `did:key` (Ed25519) from an arbitrary seed.
pub fn valid_did() -> BoxedStrategy<String> {
    any::<[u8; 32]>()
        .prop_map(|seed| {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            vc_shared::did::did_from_key(&key.verifying_key())
        })
        .boxed()
}

/// A value for a command field: mostly plausible (ids, DIDs, URLs, providers), often of the wrong type.
pub fn field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        2 => "[a-zA-Z0-9_:-]{1,20}".prop_map(Value::String),
        1 => valid_did().prop_map(Value::String),
        1 => number(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => json_value(),
    ]
    .boxed()
}

/// An object whose keys are mostly `fields` (a command's real field names), with arbitrary values.
pub fn object_for(fields: &'static [&'static str]) -> BoxedStrategy<Map<String, Value>> {
    let k = if fields.is_empty() {
        key()
    } else {
        prop_oneof![
            4 => prop::sample::select(fields).prop_map(str::to_string),
            1 => key(),
        ]
        .boxed()
    };
    prop::collection::vec((k, field_value()), 0..10)
        .prop_map(|kv| kv.into_iter().collect())
        .boxed()
}

/// Deeply nested JSON text (up to 3000 levels, far past serde_json's recursion limit of 128), at the
/// top level or inside a field, sometimes unterminated.
pub fn deep_json_text() -> BoxedStrategy<Vec<u8>> {
    (1usize..3000, 0u8..4, any::<bool>(), key())
        .prop_map(|(depth, shape, closed, field)| {
            let (open, close) = match shape {
                0 | 1 => ("[".repeat(depth), "]".repeat(depth)),
                _ => ("{\"a\":".repeat(depth), "}".repeat(depth)),
            };
            let inner = format!("{open}1{}", if closed { close.as_str() } else { "" });
            let text = if shape % 2 == 0 {
                inner
            } else {
                format!("{{{}:{inner}}}", Value::String(field))
            };
            text.into_bytes()
        })
        .boxed()
}

/// Fixed raw bodies worth trying every time.
pub const RAW_SPECIALS: &[&[u8]] = &[
    b"",
    b"   \n\t",
    b"{}",
    b"[]",
    b"null",
    b"\"{}\"",
    b"\xef\xbb\xbf{}",
    b"{} trailing",
    b"{}{}",
    b"{\"name\":\"a\",}",
    b"{\"name\":\"a\"",
    b"{\"name\":\"\xff\xfe\"}",
    b"{\"name\":\"a\x00b\"}",
    b"{\"name\":\"\\ud800\"}",
    b"{\"monthlyBudgetUsd\":1e400}",
    b"{\"maxTokens\":99999999999999999999999}",
    b"{\"name\":\"a\",\"name\":\"b\"}",
    b"\x00\x00\x00\x00",
    b"name=x&provider=openai",
];

/// Arbitrary bytes, JSON text with one byte broken or cut, deep nesting, and [`RAW_SPECIALS`].
pub fn raw_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..512),
        3 => (json_value(), any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(
            |(v, at, byte, how)| {
                let mut b = serde_json::to_vec(&v).unwrap_or_default();
                if b.is_empty() {
                    return b;
                }
                let i = at.index(b.len());
                match how {
                    0 => b.truncate(i),
                    1 => b[i] = byte,
                    _ => b.insert(i, byte),
                }
                b
            }
        ),
        1 => deep_json_text(),
        2 => prop::sample::select(RAW_SPECIALS).prop_map(<[u8]>::to_vec),
    ]
    .boxed()
}

// ---- command bodies ---------------------------------------------------------------------------------

/// The JSON field names of a command kind's body.
pub fn fields_of(kind: CommandKind) -> &'static [&'static str] {
    const ID_BODY: &[&str] = &["id", "realmId", "did"];
    match kind {
        CommandKind::ModelRegister => &[
            "id",
            "name",
            "provider",
            "modelId",
            "baseUrl",
            "apiKey",
            "apiKeySealed",
            "description",
            "inputCostPerToken",
            "outputCostPerToken",
        ],
        CommandKind::ModelUpdate => &[
            "id",
            "name",
            "description",
            "status",
            "provider",
            "modelId",
            "baseUrl",
            "apiKey",
            "apiKeySealed",
            "inputCostPerToken",
            "outputCostPerToken",
        ],
        CommandKind::ModelDelete
        | CommandKind::RealmDelete
        | CommandKind::AgentDelete
        | CommandKind::AgentLlmConfigClear => ID_BODY,
        CommandKind::RealmCreate => &["id", "name", "slug", "description", "color"],
        CommandKind::RealmUpdate => &[
            "realmId",
            "name",
            "slug",
            "description",
            "color",
            "rpmLimit",
            "tpmLimit",
            "maxParallelRequests",
        ],
        CommandKind::RealmGrant | CommandKind::RealmRevoke => {
            &["modelId", "realmId", "monthlyBudgetUsd"]
        }
        CommandKind::RealmAgentAdd | CommandKind::RealmAgentRemove => {
            &["realmId", "agentDid", "isPrimary"]
        }
        CommandKind::AgentRegister => &["did", "name"],
        CommandKind::AgentLlmConfigSet => &[
            "did",
            "realmId",
            "realmModelId",
            "registryModelId",
            "provider",
            "model",
            "apiKey",
            "apiKeySealed",
            "baseUrl",
            "systemPrompt",
            "maxTokens",
        ],
        CommandKind::LitellmReconcile => &[],
        CommandKind::RealmKeyRotate => &["realmId", "graceSeconds"],
        CommandKind::RealmKeyActivate | CommandKind::RealmKeyRetire => &["realmId", "keyId"],
        CommandKind::RealmSpendRefresh => ID_BODY,
        CommandKind::RealmBudgetAlert | CommandKind::RealmBudgetGuard => &[
            "realmId",
            "period",
            "spendUsd",
            "budgetUsd",
            "fractions",
            "block",
        ],
    }
}

/// Whether an error message is about the body as a whole (not JSON, not an object, absent) rather than
/// one of its fields.
pub fn is_body_level(message: &str) -> bool {
    message.starts_with("body ")
}

/// Whether `message` names one of `fields`.
pub fn names_a_field(message: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| message.contains(f))
}

/// Any command kind.
pub fn kind() -> BoxedStrategy<CommandKind> {
    prop::sample::select(CommandKind::ALL.to_vec()).boxed()
}

/// One invalid variant of a valid body: the body and the field that was made wrong.
#[derive(Debug, Clone)]
pub struct WrongField {
    /// The command kind.
    pub kind: CommandKind,
    /// The body (a valid one with `field` changed).
    pub body: Map<String, Value>,
    /// The field that is wrong.
    pub field: &'static str,
}

/// Where a wrong value can reach the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight to `Command::parse` (a command published on NATS): every field.
    Direct,
    /// Through the REST API: fields the path carries (`id`, `realmId`, `did`, ...) and the `id` of
    /// creations are set by the API, so they are not mutated here.
    Rest,
}

fn some(s: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    s.prop_map(Some).boxed()
}

/// A value of a type other than string (and not null).
fn not_a_string() -> BoxedStrategy<Option<Value>> {
    some(prop_oneof![
        number(),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec(json_leaf(), 0..4).prop_map(Value::Array),
        json_value().prop_filter("container", |v| v.is_array() || v.is_object()),
    ])
}

/// A value of a type other than number (and not null).
fn not_a_number() -> BoxedStrategy<Option<Value>> {
    some(prop_oneof![
        text().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(json!([])),
        Just(json!({"amount": 5})),
    ])
}

/// Absent, null, or blank.
fn missing() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        "[ \t\n\r]{0,5}".prop_map(|s| Some(Value::String(s))),
    ]
    .boxed()
}

/// Blank (present but empty after trimming).
fn blank() -> BoxedStrategy<Option<Value>> {
    some("[ \t\n\r]{0,5}".prop_map(Value::String))
}

fn control() -> BoxedStrategy<Option<Value>> {
    some(control_text().prop_map(Value::String))
}

/// Longer than `max` bytes, no surrounding whitespace, no control characters.
fn too_long(max: usize) -> BoxedStrategy<Option<Value>> {
    (
        1usize..64,
        prop::sample::select(vec!['a', 'Z', '9', 'é', '日', '😀']),
    )
        .prop_map(move |(extra, c)| {
            let n = max / c.len_utf8() + extra;
            Some(Value::String(std::iter::repeat_n(c, n).collect()))
        })
        .boxed()
}

/// Non-blank, no ASCII letter or digit (after lower-casing), no control characters.
fn no_alnum() -> BoxedStrategy<Option<Value>> {
    prop::collection::vec(
        prop::sample::select(
            "!@#$%^&*()_+=[]{};:'\"<>?,./~`-日本語éßЖ€ "
                .chars()
                .collect::<Vec<_>>(),
        ),
        1..20,
    )
    .prop_map(|cs| cs.into_iter().collect::<String>())
    .prop_filter("non-blank", |s| !s.trim().is_empty())
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

/// Not an id (`[A-Za-z0-9_:-]{1,128}`), non-blank.
fn bad_id() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        (
            "[a-z0-9]{1,10}",
            prop::sample::select(vec![
                " ", ".", "/", "*", ">", "é", "\u{1}", "%", "@", "\u{a0}"
            ]),
            "[a-z0-9]{1,10}"
        )
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        (129usize..300).prop_map(|n| "x".repeat(n)),
    ]
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

/// Not a `did:key` Ed25519 DID, non-blank.
fn bad_did() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        text(),
        "did:key:z[1-9A-HJ-NP-Za-km-z]{0,60}".prop_map(|s| s.to_string()),
        "did:(web|peer|key):[a-zA-Z0-9.]{0,40}".prop_map(|s| s.to_string()),
    ]
    .prop_filter("not a valid did", |s| {
        !s.trim().is_empty() && vc_shared::did::parse_did_key(s.trim()).is_err()
    })
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

/// Not an http(s) URL with a host, non-blank, within the length limit.
fn bad_url() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        prop::sample::select(vec![
            "not a url",
            "ftp://example.com",
            "mailto:a@b.c",
            "/v1",
            "file:///etc/passwd",
            "http://",
            "://x",
            "data:text/plain,x",
            "javascript:alert(1)",
            "http//example.com",
            "example.com",
        ])
        .prop_map(str::to_string),
        text(),
    ]
    .prop_filter("not a valid url", |s| {
        !s.trim().is_empty()
            && s.len() <= vc_shared::command::MAX_URL_LEN
            && vc_shared::command::validate_url("baseUrl", s).is_err()
    })
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

fn is_hex_colour(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| {
        matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Not a hex colour, non-blank.
fn bad_color() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        prop::sample::select(vec![
            "red", "#12", "#12345", "#ggg", "123456", "#1234567", "##fff"
        ])
        .prop_map(str::to_string),
        "#?[0-9a-fA-Fg-z]{0,10}",
        text(),
    ]
    .prop_filter("not a colour", |s| {
        let t = s.trim();
        !t.is_empty() && t.len() <= 32 && !is_hex_colour(t)
    })
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

/// Not a provider name, non-blank.
fn bad_provider() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        prop::sample::select(vec!["azure", "OpenAI", "openai ", "bedrock", "open-ai"])
            .prop_map(str::to_string),
        text(),
    ]
    .prop_filter("not a provider", |s| {
        let t = s.trim();
        !t.is_empty()
            && t.len() <= 64
            && !t.chars().any(char::is_control)
            && vc_shared::domain::Provider::parse(t).is_none()
    })
    .prop_map(|s| Some(Value::String(s)))
    .boxed()
}

fn bad_status() -> BoxedStrategy<Option<Value>> {
    text()
        .prop_filter("not a status", |s| s != "active" && s != "inactive")
        .prop_map(|s| Some(Value::String(s)))
        .boxed()
}

fn bad_budget() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        (-1e300f64..-1e-300).prop_map(|f| Some(json!(f))),
        (1.000_001e9f64..1e300).prop_map(|f| Some(json!(f))),
        Just(Some(json!(-1))),
        Just(Some(json!(i64::MIN))),
        Just(Some(json!(u64::MAX))),
        not_a_number(),
    ]
    .boxed()
}

/// A model price out of 0..=1000 USD per token, or not a number (`null` is valid: "none" or "clear").
fn bad_price() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        (-1e300f64..-1e-300).prop_map(|f| Some(json!(f))),
        (1_000.000_001_f64..1e300).prop_map(|f| Some(json!(f))),
        Just(Some(json!(-1))),
        Just(Some(json!(1001))),
        Just(Some(json!(i64::MIN))),
        Just(Some(json!(u64::MAX))),
        not_a_number(),
    ]
    .boxed()
}

fn bad_max_tokens() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        (i64::MIN..=0).prop_map(|n| Some(json!(n))),
        (10_000_001i64..=i64::MAX).prop_map(|n| Some(json!(n))),
        Just(Some(json!(u64::MAX))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Some(json!(f))),
        not_a_number(),
    ]
    .boxed()
}

fn not_a_bool() -> BoxedStrategy<Option<Value>> {
    some(prop_oneof![
        text().prop_map(Value::String),
        number(),
        Just(json!([true])),
        Just(json!({})),
    ])
}

/// A required string field (`max` bytes): absent/null/blank, wrong type, control characters, too long.
fn required_text(max: usize) -> Vec<BoxedStrategy<Option<Value>>> {
    vec![missing(), not_a_string(), control(), too_long(max)]
}

/// An optional string field: wrong type, control characters, too long.
fn optional_text(max: usize) -> Vec<BoxedStrategy<Option<Value>>> {
    vec![not_a_string(), control(), too_long(max)]
}

/// A required id field.
fn required_id() -> Vec<BoxedStrategy<Option<Value>>> {
    vec![missing(), not_a_string(), bad_id()]
}

/// A required DID field.
fn required_did() -> Vec<BoxedStrategy<Option<Value>>> {
    vec![missing(), not_a_string(), bad_did()]
}

/// Wrong values of one field (`None`: the field is left out).
type Wrong = Vec<BoxedStrategy<Option<Value>>>;

struct Table {
    kind: CommandKind,
    base: Map<String, Value>,
    rows: Vec<(&'static str, Via, Wrong)>,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The wrong-field tables: for each kind, a valid base body and, per field, values that must be refused
/// with a message naming the field. `did` is a valid DID used by the bases.
fn tables(did: &str) -> Vec<Table> {
    use CommandKind as K;
    use Via::{Direct, Rest};
    let name = || {
        let mut v = required_text(200);
        v.push(no_alnum());
        v
    };
    let api_key = |via: Via| -> Vec<BoxedStrategy<Option<Value>>> {
        match via {
            // Through REST an apiKey string is sealed before validation (see the ignored bug test
            // in fuzz_rest.rs), so only its type can be wrong there.
            Rest => vec![not_a_string()],
            Direct => vec![control(), too_long(vc_shared::command::MAX_SECRET_LEN)],
        }
    };
    vec![
        Table {
            kind: K::ModelRegister,
            base: obj(json!({"name": "Fuzz model", "provider": "openai", "modelId": "gpt-4o"})),
            rows: vec![
                ("id", Direct, vec![not_a_string(), bad_id(), blank()]),
                ("name", Rest, name()),
                (
                    "provider",
                    Rest,
                    vec![missing(), not_a_string(), bad_provider()],
                ),
                ("modelId", Rest, required_text(200)),
                (
                    "baseUrl",
                    Rest,
                    vec![not_a_string(), bad_url(), control(), too_long(2048)],
                ),
                ("description", Rest, optional_text(4000)),
                ("apiKey", Rest, api_key(Rest)),
                ("apiKey", Direct, api_key(Direct)),
                ("inputCostPerToken", Rest, vec![bad_price()]),
                ("outputCostPerToken", Rest, vec![bad_price()]),
            ],
        },
        Table {
            kind: K::ModelUpdate,
            base: obj(json!({"id": "fuzz-model"})),
            rows: vec![
                ("id", Direct, required_id()),
                (
                    "name",
                    Rest,
                    vec![
                        blank(),
                        not_a_string(),
                        control(),
                        too_long(200),
                        no_alnum(),
                    ],
                ),
                ("description", Rest, optional_text(4000)),
                ("status", Rest, vec![not_a_string(), bad_status()]),
                (
                    "provider",
                    Rest,
                    vec![blank(), not_a_string(), bad_provider()],
                ),
                (
                    "modelId",
                    Rest,
                    vec![blank(), not_a_string(), control(), too_long(200)],
                ),
                (
                    "baseUrl",
                    Rest,
                    vec![not_a_string(), bad_url(), control(), too_long(2048)],
                ),
                ("apiKey", Rest, api_key(Rest)),
                ("apiKey", Direct, api_key(Direct)),
                ("inputCostPerToken", Rest, vec![bad_price()]),
                ("outputCostPerToken", Rest, vec![bad_price()]),
            ],
        },
        Table {
            kind: K::ModelDelete,
            base: obj(json!({"id": "fuzz-model"})),
            rows: vec![("id", Direct, required_id())],
        },
        Table {
            kind: K::RealmCreate,
            base: obj(json!({"name": "Fuzz realm"})),
            rows: vec![
                ("id", Direct, vec![not_a_string(), bad_id(), blank()]),
                ("name", Rest, name()),
                (
                    "slug",
                    Rest,
                    vec![
                        not_a_string(),
                        no_alnum(),
                        control(),
                        too_long(200),
                        (101usize..200)
                            .prop_map(|n| Some(json!("a".repeat(n))))
                            .boxed(),
                    ],
                ),
                ("description", Rest, optional_text(4000)),
                ("color", Rest, vec![not_a_string(), bad_color(), control()]),
            ],
        },
        Table {
            kind: K::RealmUpdate,
            base: obj(json!({"realmId": "fuzz-realm"})),
            rows: vec![
                ("realmId", Direct, required_id()),
                (
                    "name",
                    Rest,
                    vec![blank(), not_a_string(), control(), too_long(200)],
                ),
                (
                    "slug",
                    Rest,
                    vec![
                        not_a_string(),
                        no_alnum(),
                        blank(),
                        (101usize..300)
                            .prop_map(|n| Some(json!("b".repeat(n))))
                            .boxed(),
                    ],
                ),
                ("description", Rest, optional_text(4000)),
                ("color", Rest, vec![not_a_string(), bad_color(), control()]),
            ],
        },
        Table {
            kind: K::RealmDelete,
            base: obj(json!({"realmId": "fuzz-realm"})),
            rows: vec![("realmId", Direct, required_id())],
        },
        Table {
            kind: K::RealmGrant,
            base: obj(json!({"modelId": "fuzz-model", "realmId": "fuzz-realm"})),
            rows: vec![
                ("modelId", Direct, required_id()),
                ("realmId", Rest, required_id()),
                ("monthlyBudgetUsd", Rest, vec![bad_budget()]),
            ],
        },
        Table {
            kind: K::RealmRevoke,
            base: obj(json!({"modelId": "fuzz-model", "realmId": "fuzz-realm"})),
            rows: vec![
                ("modelId", Direct, required_id()),
                ("realmId", Direct, required_id()),
            ],
        },
        Table {
            kind: K::RealmAgentAdd,
            base: obj(json!({"realmId": "fuzz-realm", "agentDid": did})),
            rows: vec![
                ("realmId", Direct, required_id()),
                ("agentDid", Rest, required_did()),
                ("isPrimary", Rest, vec![not_a_bool()]),
            ],
        },
        Table {
            kind: K::RealmAgentRemove,
            base: obj(json!({"realmId": "fuzz-realm", "agentDid": did})),
            rows: vec![
                ("realmId", Direct, required_id()),
                ("agentDid", Direct, required_did()),
            ],
        },
        Table {
            kind: K::AgentRegister,
            base: obj(json!({"did": did, "name": "Fuzz agent"})),
            rows: vec![
                ("did", Rest, required_did()),
                ("name", Rest, required_text(200)),
            ],
        },
        Table {
            kind: K::AgentDelete,
            base: obj(json!({"did": did})),
            rows: vec![("did", Direct, required_did())],
        },
        Table {
            kind: K::AgentLlmConfigClear,
            base: obj(json!({"did": did})),
            rows: vec![("did", Direct, required_did())],
        },
        // agent.llm_config.set, manual form.
        Table {
            kind: K::AgentLlmConfigSet,
            base: obj(json!({"did": did, "provider": "openai", "model": "gpt-4o"})),
            rows: vec![
                ("did", Direct, required_did()),
                (
                    "provider",
                    Rest,
                    vec![missing(), not_a_string(), bad_provider()],
                ),
                ("model", Rest, required_text(200)),
                (
                    "baseUrl",
                    Rest,
                    vec![not_a_string(), bad_url(), control(), too_long(2048)],
                ),
                ("systemPrompt", Rest, optional_text(65536)),
                ("maxTokens", Rest, vec![bad_max_tokens()]),
                ("apiKey", Rest, api_key(Rest)),
                ("apiKey", Direct, api_key(Direct)),
            ],
        },
        // agent.llm_config.set, realm routing.
        Table {
            kind: K::AgentLlmConfigSet,
            base: obj(json!({"did": did, "realmId": "fuzz-realm", "realmModelId": "fuzz-model"})),
            rows: vec![
                ("realmId", Rest, vec![blank(), not_a_string(), bad_id()]),
                ("realmModelId", Rest, required_id()),
            ],
        },
        // agent.llm_config.set, registry model.
        Table {
            kind: K::AgentLlmConfigSet,
            base: obj(json!({"did": did, "registryModelId": "fuzz-model"})),
            rows: vec![(
                "registryModelId",
                Rest,
                vec![blank(), not_a_string(), bad_id()],
            )],
        },
    ]
}

/// Every wrong-field case reachable `via` (REST cases are also direct cases), as one strategy.
pub fn wrong_field_cases(did: &str, via: Via) -> BoxedStrategy<WrongField> {
    wrong_field_cases_of(did, via, None).expect("cases")
}

/// [`wrong_field_cases`] of one kind only (`None` when the kind has no fields to get wrong).
pub fn wrong_field_cases_of(
    did: &str,
    via: Via,
    only: Option<CommandKind>,
) -> Option<BoxedStrategy<WrongField>> {
    let mut arms: Vec<BoxedStrategy<WrongField>> = Vec::new();
    for t in tables(did) {
        if only.is_some_and(|k| k != t.kind) {
            continue;
        }
        for (field, reach, values) in t.rows {
            if via == Via::Rest && reach == Via::Direct {
                continue;
            }
            for v in values {
                let base = t.base.clone();
                let kind = t.kind;
                arms.push(
                    v.prop_map(move |value| {
                        let mut body = base.clone();
                        match value {
                            Some(v) => body.insert(field.to_string(), v),
                            None => body.remove(field),
                        };
                        WrongField { kind, body, field }
                    })
                    .boxed(),
                );
            }
        }
    }
    (!arms.is_empty()).then(|| Union::new(arms).boxed())
}
