//! Fuzzing the REST API (contract §2) with untrusted bodies, content types, path ids and query strings,
//! against a real in-process `vc-api` + `vc-worker` over real `nats-server` and `redis-server`.
//!
//! Every response must be a 2xx or a 4xx — never a 5xx (no dependency is down here, so not even 503) —
//! and every 4xx must be the contract's JSON `{"error", "code"}` with the code matching the status,
//! without a stack trace or the request's `apiKey`. Beyond that, an independent oracle says what the
//! answer must be: 415 for a non-JSON content type, 400 "body is not valid JSON" / "body must be a JSON
//! object", and — for a JSON object — exactly what `Command::parse` says of the body the API builds
//! (path ids merged, `apiKey` in clear), so REST and NATS refuse with the same words, naming the field.
//!
//! Cases: `PROPTEST_CASES`, else the defaults below (CI); `scripts/fuzz` runs 100,000 per property.

#[path = "../../shared/tests/prop_support/mod.rs"]
mod prop_support;

use std::time::{Duration, Instant};

use prop_support::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{json, Map, Value};
use vc_shared::command::{Command, CommandKind};
use vc_tests::stack::{Stack, ADMIN_TOKEN};

/// Default cases of the body property (each case is one HTTP request; refused ones take ~1 ms, applied
/// ones a worker round trip).
const BODY_CASES: u32 = 1000;
/// Default cases of the other properties.
const SMALL_CASES: u32 = 500;

/// The entities every valid fuzzed write may touch.
#[derive(Debug, Clone)]
struct Fixture {
    model: String,
    realm: String,
    did: String,
}

/// The write routes that take a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateModel,
    UpdateModel,
    Grant,
    CreateRealm,
    UpdateRealm,
    AddAgent,
    CreateAgent,
    SetLlmConfig,
}

const ROUTES: [Route; 8] = [
    Route::CreateModel,
    Route::UpdateModel,
    Route::Grant,
    Route::CreateRealm,
    Route::UpdateRealm,
    Route::AddAgent,
    Route::CreateAgent,
    Route::SetLlmConfig,
];

impl Route {
    fn for_kind(kind: CommandKind) -> Option<Route> {
        ROUTES.into_iter().find(|r| r.kind() == kind)
    }

    fn kind(self) -> CommandKind {
        match self {
            Route::CreateModel => CommandKind::ModelRegister,
            Route::UpdateModel => CommandKind::ModelUpdate,
            Route::Grant => CommandKind::RealmGrant,
            Route::CreateRealm => CommandKind::RealmCreate,
            Route::UpdateRealm => CommandKind::RealmUpdate,
            Route::AddAgent => CommandKind::RealmAgentAdd,
            Route::CreateAgent => CommandKind::AgentRegister,
            Route::SetLlmConfig => CommandKind::AgentLlmConfigSet,
        }
    }

    fn method(self) -> Method {
        match self {
            Route::UpdateModel | Route::SetLlmConfig => Method::PUT,
            Route::UpdateRealm => Method::PATCH,
            _ => Method::POST,
        }
    }

    /// The path with `id` (or the fixture's) in its slot.
    fn path(self, fx: &Fixture, id: Option<&str>) -> String {
        let seg = |fallback: &str| {
            id.map(encode_segment)
                .unwrap_or_else(|| fallback.to_string())
        };
        match self {
            Route::CreateModel => "/api/models".into(),
            Route::UpdateModel => format!("/api/models/{}", seg(&fx.model)),
            Route::Grant => format!("/api/models/{}/realms", seg(&fx.model)),
            Route::CreateRealm => "/api/realms".into(),
            Route::UpdateRealm => format!("/api/realms/{}", seg(&fx.realm)),
            Route::AddAgent => format!("/api/realms/{}/agents", seg(&fx.realm)),
            Route::CreateAgent => "/api/agents".into(),
            Route::SetLlmConfig => format!("/api/agents/{}/llm-config", seg(&fx.did)),
        }
    }

    /// The body fields the API takes from the path (they override the body's).
    fn path_field(self) -> Option<&'static str> {
        match self {
            Route::UpdateModel => Some("id"),
            Route::Grant => Some("modelId"),
            Route::UpdateRealm | Route::AddAgent => Some("realmId"),
            Route::SetLlmConfig => Some("did"),
            _ => None,
        }
    }

    fn path_value(self, fx: &Fixture) -> String {
        match self {
            Route::UpdateModel | Route::Grant => fx.model.clone(),
            Route::UpdateRealm | Route::AddAgent => fx.realm.clone(),
            Route::SetLlmConfig => fx.did.clone(),
            _ => String::new(),
        }
    }

    /// Creations ignore a client-chosen `id`.
    fn strips_id(self) -> bool {
        matches!(self, Route::CreateModel | Route::CreateRealm)
    }
}

/// Percent-encodes a path segment (every byte outside the unreserved set).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Content types: the JSON ones the API accepts, others it must refuse with 415, and arbitrary text.
const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("Application/JSON"),
    Some("application/merge-patch+json"),
    Some("text/plain"),
    Some("text/json"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=x"),
    Some("application/octet-stream"),
    Some(""),
    None,
];

/// The API's rule: `application/json…` or any `+json` type (case-insensitive).
fn is_json_type(ct: Option<&str>) -> bool {
    ct.map(str::to_ascii_lowercase)
        .is_some_and(|c| c.starts_with("application/json") || c.contains("+json"))
}

/// Types that are certainly not JSON (the API must answer 415 to a non-blank body).
fn is_certainly_not_json(ct: Option<&str>) -> bool {
    matches!(
        ct,
        None | Some("")
            | Some("text/plain")
            | Some("application/x-www-form-urlencoded")
            | Some("multipart/form-data; boundary=x")
            | Some("application/octet-stream")
    )
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Raw(b) => b.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Req {
    route: Route,
    body: Body,
    content_type: Option<String>,
    idempotency_key: Option<String>,
}

fn content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        8 => Just(Some("application/json".to_string())),
        4 => prop::sample::select(CONTENT_TYPES).prop_map(|c| c.map(str::to_string)),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
    .boxed()
}

/// Printable text with at least one ASCII letter or digit (a name every validator accepts).
fn name_text() -> BoxedStrategy<String> {
    "[A-Za-z0-9][\\PC&&[^\u{85}]]{0,40}"
        .prop_map(|s: String| s.trim_end().to_string())
        .boxed()
}

fn valid_url() -> BoxedStrategy<String> {
    (
        prop::sample::select(vec!["http", "https", "HTTP"]),
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z]{2,6}){0,2}",
        prop::option::of(1u16..),
        "(/[A-Za-z0-9._~-]{0,10}){0,3}",
    )
        .prop_filter("not punycode", |(_, host, _, _)| {
            !host.split('.').any(|l| l.starts_with("xn--"))
        })
        .prop_map(|(scheme, host, port, path)| match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        })
        .boxed()
}

const PROVIDERS: &[&str] = &[
    "openai-compatible",
    "openai",
    "anthropic",
    "google",
    "ollama",
];

fn opt(s: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop::option::of(s).boxed()
}

/// A model price a validator accepts (0 to 1000 USD per token), or `null` (none, or clear).
fn price() -> BoxedStrategy<Option<Value>> {
    opt(prop_oneof![
        (0.0f64..=1e-3).prop_map(|f| json!(f)),
        (0.0f64..=1000.0).prop_map(|f| json!(f)),
        Just(json!(0)),
        Just(json!(1000)),
        Just(Value::Null),
    ]
    .boxed())
}

/// Bodies a validator accepts (unicode names, odd but valid URLs, budgets, limits), on the fixtures or
/// on unknown ids, plus unknown extra fields: they reach the worker, which applies or refuses them.
fn valid_body(route: Route, fx: &Fixture) -> BoxedStrategy<Map<String, Value>> {
    let fx = fx.clone();
    let s = |x: BoxedStrategy<String>| x.prop_map(Value::String).boxed();
    let id_or = |known: String| {
        prop_oneof![3 => Just(known), 1 => "[A-Za-z0-9_:-]{1,40}".prop_map(|s| s)]
            .prop_map(Value::String)
            .boxed()
    };
    let fields: BoxedStrategy<Vec<(&'static str, Option<Value>)>> = match route {
        Route::CreateModel | Route::UpdateModel => (
            opt(s(name_text())),
            prop::sample::select(PROVIDERS),
            opt(s("[A-Za-z0-9._:/-]{1,60}".boxed())),
            opt(s(valid_url())),
            opt(prop_oneof![s(text()), Just(Value::Null).boxed()].boxed()),
            opt(s(text()
                .prop_filter("no control", |t| !t.chars().any(char::is_control))
                .boxed())),
            opt(prop::sample::select(vec!["active", "inactive"])
                .prop_map(|x| json!(x))
                .boxed()),
            [price(), price()],
        )
            .prop_map(
                move |(
                    name,
                    provider,
                    model_id,
                    base_url,
                    api_key,
                    description,
                    status,
                    prices,
                )| {
                    let provider = Some(json!(provider));
                    let [input, output] = prices;
                    if route == Route::CreateModel {
                        vec![
                            ("name", name.or(Some(json!("Fuzz model")))),
                            ("provider", provider),
                            ("modelId", model_id.or(Some(json!("m")))),
                            ("baseUrl", base_url.or(Some(json!("http://upstream:1")))),
                            ("apiKey", api_key.filter(|k| k.is_string())),
                            ("description", description),
                            ("inputCostPerToken", input),
                            ("outputCostPerToken", output),
                        ]
                    } else {
                        vec![
                            ("name", name),
                            ("modelId", model_id),
                            ("baseUrl", base_url),
                            ("apiKey", api_key),
                            ("description", description),
                            ("status", status),
                            ("inputCostPerToken", input),
                            ("outputCostPerToken", output),
                        ]
                    }
                },
            )
            .boxed(),
        Route::Grant => (
            id_or(fx.realm.clone()),
            opt(prop_oneof![
                (0.0f64..=1e9).prop_map(|f| json!(f)),
                Just(Value::Null),
                Just(json!(0))
            ]
            .boxed()),
        )
            .prop_map(|(realm, budget)| {
                vec![("realmId", Some(realm)), ("monthlyBudgetUsd", budget)]
            })
            .boxed(),
        Route::CreateRealm | Route::UpdateRealm => (
            opt(s(name_text())),
            opt(s("[A-Za-z0-9][a-z0-9 -]{0,30}".boxed())),
            opt(s("#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})".boxed())),
            opt(s(text()
                .prop_filter("no control", |t| !t.chars().any(char::is_control))
                .boxed())),
        )
            .prop_map(move |(name, slug, color, description)| {
                let name = if route == Route::CreateRealm {
                    name.or(Some(json!("Fuzz realm")))
                } else {
                    name
                };
                vec![
                    ("name", name),
                    ("slug", slug),
                    ("color", color),
                    ("description", description),
                ]
            })
            .boxed(),
        Route::AddAgent => (
            prop_oneof![Just(fx.did.clone()), valid_did()].prop_map(Value::String),
            opt(any::<bool>().prop_map(Value::Bool).boxed()),
        )
            .prop_map(|(did, primary)| vec![("agentDid", Some(did)), ("isPrimary", primary)])
            .boxed(),
        Route::CreateAgent => (valid_did(), name_text())
            .prop_map(|(did, name)| vec![("did", Some(json!(did))), ("name", Some(json!(name)))])
            .boxed(),
        Route::SetLlmConfig => prop_oneof![
            (id_or(fx.realm.clone()), id_or(fx.model.clone()))
                .prop_map(|(r, m)| vec![("realmId", Some(r)), ("realmModelId", Some(m))]),
            id_or(fx.model.clone()).prop_map(|m| vec![("registryModelId", Some(m))]),
            (
                prop::sample::select(PROVIDERS),
                "[A-Za-z0-9._:/-]{1,60}",
                opt(s(valid_url())),
                opt(s(text()
                    .prop_filter("no control", |t| !t
                        .chars()
                        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')))
                    .boxed())),
                opt((1i64..=10_000_000).prop_map(|n| json!(n)).boxed()),
                opt(s("sk-[A-Za-z0-9]{12,40}".boxed())),
            )
                .prop_map(|(p, m, u, sp, mt, k)| vec![
                    ("provider", Some(json!(p))),
                    ("model", Some(json!(m))),
                    ("baseUrl", u),
                    ("systemPrompt", sp),
                    ("maxTokens", mt),
                    ("apiKey", k),
                ]),
        ]
        .boxed(),
    };
    (
        fields,
        prop::collection::vec(("x-[a-z]{1,8}", json_value()), 0..3),
    )
        .prop_map(|(fields, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in fields {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            m
        })
        .boxed()
}

fn request(fx: &Fixture) -> BoxedStrategy<Req> {
    let fx = fx.clone();
    prop::sample::select(ROUTES.to_vec())
        .prop_flat_map(move |route| {
            let body = prop_oneof![
                4 => object_for(fields_of(route.kind())).prop_map(|o| Body::Json(Value::Object(o))),
                2 => valid_body(route, &fx).prop_map(|o| Body::Json(Value::Object(o))),
                2 => json_value().prop_map(Body::Json),
                2 => raw_body().prop_map(Body::Raw),
            ];
            (
                Just(route),
                body,
                content_type(),
                prop::option::weighted(0.1, "[ -~]{0,300}"),
            )
        })
        .prop_map(|(route, body, content_type, idempotency_key)| Req {
            route,
            body,
            content_type,
            idempotency_key,
        })
        .boxed()
}

/// A response, as read.
#[derive(Debug)]
struct Answer {
    status: u16,
    text: String,
    json: Option<Value>,
}

async fn send(
    s: &Stack,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut rb = s
        .http
        .request(method, format!("{}{path}", s.api_url))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(ct) = content_type {
        rb = rb.header(reqwest::header::CONTENT_TYPE, ct);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await.expect("the API answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).ok();
    Answer { status, text, json }
}

/// The contract's general rules for any answer: 2xx/4xx only, JSON errors with the matching code.
fn check_shape(what: &str, a: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        (200..300).contains(&a.status) || (400..500).contains(&a.status),
        "{what}: status {} (never a 5xx: nothing is down) body {}",
        a.status,
        a.text
    );
    prop_assert!(
        !a.text.contains("panicked") && !a.text.contains(".rs:"),
        "{what}: internals in the body: {}",
        a.text
    );
    if a.status >= 400 {
        let code = match a.status {
            400 => "BAD_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            409 => "CONFLICT",
            413 => "PAYLOAD_TOO_LARGE",
            415 => "UNSUPPORTED_MEDIA_TYPE",
            other => {
                return Err(TestCaseError::fail(format!(
                    "{what}: status {other} is not in the contract: {}",
                    a.text
                )))
            }
        };
        let obj = a.json.as_ref().and_then(Value::as_object);
        prop_assert!(
            obj.is_some_and(|o| o.len() == 2
                && o.get("error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| !e.trim().is_empty())
                && o.get("code").and_then(Value::as_str) == Some(code)),
            "{what}: {} is not {{\"error\": <message>, \"code\": \"{code}\"}}: {}",
            a.status,
            a.text
        );
    } else if a.status != 204 {
        prop_assert!(
            a.json.is_some(),
            "{what}: {} without a JSON body: {}",
            a.status,
            a.text
        );
    }
    Ok(())
}

fn error_of(a: &Answer) -> &str {
    a.json
        .as_ref()
        .and_then(|v| v["error"].as_str())
        .unwrap_or("")
}

/// The body the API validates for `obj` on `route` (`build_body`): path ids merged, a client
/// `apiKeySealed` dropped, `apiKey` still in clear (it is sealed only once the body is valid).
fn as_validated(route: Route, fx: &Fixture, mut obj: Map<String, Value>) -> Vec<u8> {
    if route.strips_id() {
        obj.remove("id");
    }
    if let Some(f) = route.path_field() {
        obj.insert(f.to_string(), Value::String(route.path_value(fx)));
    }
    obj.remove("apiKeySealed");
    serde_json::to_vec(&Value::Object(obj)).unwrap()
}

/// What the answer to `req` must be, beyond [`check_shape`].
fn check_oracle(req: &Req, fx: &Fixture, a: &Answer) -> Result<(), TestCaseError> {
    let bytes = req.body.bytes();
    let ct = req.content_type.as_deref();
    let what = format!(
        "{:?} {:?} {}",
        req.route,
        ct,
        String::from_utf8_lossy(&bytes)
    );
    check_shape(&what, a)?;
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    if !blank && is_certainly_not_json(ct) {
        prop_assert_eq!(a.status, 415, "{}: {}", what, a.text);
        return Ok(());
    }
    if !blank && !is_json_type(ct) {
        // Some other content type: refused with 415 (or parsed, if the API deems it JSON).
        return Ok(());
    }
    let obj = if blank {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Err(_) => {
                prop_assert_eq!(a.status, 400, "{}: {}", what, a.text);
                prop_assert!(
                    error_of(a).starts_with("body is not valid JSON"),
                    "{}: {}",
                    what,
                    a.text
                );
                return Ok(());
            }
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                prop_assert_eq!(a.status, 400, "{}: {}", what, a.text);
                prop_assert!(
                    error_of(a).starts_with("body must be a JSON object"),
                    "{}: {}",
                    what,
                    a.text
                );
                return Ok(());
            }
        }
    };
    // The API never echoes the client's apiKey (in errors or results).
    if let Some(Value::String(key)) = obj.get("apiKey") {
        let mut others = obj.clone();
        others.remove("apiKey");
        let others = Value::Object(others).to_string();
        if key.trim().len() >= 12 && !others.contains(key.trim()) {
            prop_assert!(
                !a.text.contains(key.trim()),
                "{}: apiKey echoed: {}",
                what,
                a.text
            );
        }
    }
    match Command::parse(req.route.kind(), &as_validated(req.route, fx, obj.clone())) {
        Err(e) => {
            prop_assert_eq!(
                a.status,
                400,
                "{}: expected {:?}, got {}",
                what,
                e.message,
                a.text
            );
            // Same words as the command validator, so the field is named.
            prop_assert_eq!(error_of(a), e.message.as_str(), "{}", what);
            if !is_body_level(&e.message) {
                let fields = fields_of(req.route.kind());
                prop_assert!(
                    names_a_field(error_of(a), fields),
                    "{}: {} names none of {:?}",
                    what,
                    a.text,
                    fields
                );
            }
        }
        Ok(_) => {
            // Valid: applied by the worker or refused by the domain (404, 409, 400). Never 202 here: the
            // worker answers within the 10 s wait unless it died or is stuck on an earlier command.
            prop_assert!(
                matches!(a.status, 200 | 201 | 204 | 400 | 404 | 409),
                "{}: {} {}",
                what,
                a.status,
                a.text
            );
        }
    }
    Ok(())
}

/// One runtime and one stack per property; fixtures registered.
struct Harness {
    rt: tokio::runtime::Runtime,
    stack: Option<Stack>,
    fx: Fixture,
    /// Answers by status, printed after the run (shows how deep the inputs got).
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (stack, fx) = rt.block_on(async {
            let s = Stack::builder().command_wait(Duration::from_secs(10)).start().await;
            let m = s
                .post("/api/models", json!({"name": "Fuzz fixture model", "provider": "openai", "modelId": "gpt-4o"}))
                .await;
            assert_eq!(m.status, 201, "{}", m.text);
            let r = s.post("/api/realms", json!({"name": "Fuzz fixture realm"})).await;
            assert_eq!(r.status, 201, "{}", r.text);
            let (_, did) = vc_tests::stack::new_agent();
            let a = s.post("/api/agents", json!({"did": did, "name": "Fuzz fixture agent"})).await;
            assert_eq!(a.status, 201, "{}", a.text);
            let fx = Fixture {
                model: m.body["model"]["id"].as_str().unwrap().to_string(),
                realm: r.body["realm"]["id"].as_str().unwrap().to_string(),
                did,
            };
            let g = s
                .post(&format!("/api/models/{}/realms", fx.model), json!({"realmId": fx.realm}))
                .await;
            assert_eq!(g.status, 200, "{}", g.text);
            let j = s
                .post(&format!("/api/realms/{}/agents", fx.realm), json!({"agentDid": fx.did}))
                .await;
            assert_eq!(j.status, 200, "{}", j.text);
            (s, fx)
        });
        Harness {
            rt,
            stack: Some(stack),
            fx,
            statuses: Default::default(),
        }
    }

    /// [`send`], counted.
    fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let a = self.rt.block_on(send(
            self.stack(),
            method,
            path,
            content_type,
            body,
            headers,
        ));
        *self.statuses.lock().unwrap().entry(a.status).or_default() += 1;
        a
    }

    fn stack(&self) -> &Stack {
        self.stack.as_ref().expect("running")
    }

    /// Runs a property, printing the count and the time taken (for docs/reliability.md).
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
        eprintln!(
            "fuzz_rest {name}: {n} cases in {:.1} s; answers by status: {:?}",
            started.elapsed().as_secs_f64(),
            std::mem::take(&mut *self.statuses.lock().unwrap())
        );
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
        let stack = self.stack();
        assert!(
            stack.workers.iter().all(|w| !w.task.is_finished())
                && stack.api.as_ref().is_some_and(|a| !a.task.is_finished()),
            "{name}: a service stopped"
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            self.rt.block_on(async move { drop(s) });
        }
    }
}

/// Arbitrary bodies (objects of the route's fields with wrong types, nulls, unicode, huge numbers, extra
/// fields; any JSON value; raw bytes, broken and deeply nested JSON) with arbitrary content types on every
/// write route.
#[test]
fn bodies_and_content_types() {
    let h = Harness::start();
    h.run(
        "bodies_and_content_types",
        BODY_CASES,
        request(&h.fx),
        |h, req| {
            let mut headers = Vec::new();
            if let Some(k) = &req.idempotency_key {
                headers.push(("Idempotency-Key", k.as_str()));
            }
            let a = h.send(
                req.route.method(),
                &req.route.path(&h.fx, None),
                req.content_type.as_deref(),
                Some(req.body.bytes()),
                &headers,
            );
            check_oracle(&req, &h.fx, &a)
        },
    );
}

/// A valid body with exactly one field made wrong: 400, and the message names that field.
#[test]
fn one_wrong_field_is_named() {
    let h = Harness::start();
    let did = h.fx.did.clone();
    h.run(
        "one_wrong_field_is_named",
        SMALL_CASES,
        wrong_field_cases(&did, Via::Rest),
        |h, case| {
            let route = Route::for_kind(case.kind).expect("a REST route");
            let mut body = case.body.clone();
            if let Some(f) = route.path_field() {
                body.remove(f);
            }
            let a = h.send(
                route.method(),
                &route.path(&h.fx, None),
                Some("application/json"),
                Some(serde_json::to_vec(&Value::Object(body.clone())).unwrap()),
                &[],
            );
            let what = format!("{route:?} {}", Value::Object(body));
            check_shape(&what, &a)?;
            prop_assert_eq!(a.status, 400, "{}: {}", what, a.text);
            prop_assert!(
                error_of(&a).contains(case.field),
                "{}: {} does not name {}",
                what,
                a.text,
                case.field
            );
            Ok(())
        },
    );
}

/// Path segment strategy: arbitrary text (percent-encoded), invalid UTF-8 escapes, dots, huge.
fn path_segment() -> BoxedStrategy<String> {
    prop_oneof![
        4 => text().prop_filter("non-empty", |s| !s.is_empty()).prop_map(|s| encode_segment(&s)),
        1 => prop::collection::vec(any::<u8>(), 1..20)
            .prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect::<String>()),
        1 => prop::sample::select(vec![".", "..", "%2e%2e", "%2F", "a%2Fb", "%00", "%", "%zz", "x%"])
            .prop_map(str::to_string),
        1 => (129usize..5000).prop_map(|n| "x".repeat(n)),
        1 => valid_did(),
    ]
    .boxed()
}

/// Every route with ids in its path (writes and their reads), with arbitrary ids.
fn path_request() -> BoxedStrategy<(Method, String)> {
    (0usize..16, path_segment(), path_segment())
        .prop_map(|(i, a, b)| {
            let (m, p) = match i {
                0 => (Method::PUT, format!("/api/models/{a}")),
                1 => (Method::DELETE, format!("/api/models/{a}")),
                2 => (Method::GET, format!("/api/models/{a}")),
                3 => (Method::POST, format!("/api/models/{a}/realms")),
                4 => (Method::DELETE, format!("/api/models/{a}/realms/{b}")),
                5 => (Method::PATCH, format!("/api/realms/{a}")),
                6 => (Method::DELETE, format!("/api/realms/{a}")),
                7 => (Method::GET, format!("/api/realms/{a}")),
                8 => (Method::POST, format!("/api/realms/{a}/agents")),
                9 => (Method::DELETE, format!("/api/realms/{a}/agents/{b}")),
                10 => (Method::DELETE, format!("/api/agents/{a}")),
                11 => (Method::GET, format!("/api/agents/{a}")),
                12 => (Method::PUT, format!("/api/agents/{a}/llm-config")),
                13 => (Method::DELETE, format!("/api/agents/{a}/llm-config")),
                14 => (Method::GET, format!("/api/commands/{a}")),
                _ => (Method::GET, format!("/api/realms/{a}/models")),
            };
            (m, p)
        })
        .boxed()
}

/// Arbitrary ids in paths: never a 5xx, errors are the contract's JSON.
#[test]
fn path_ids() {
    let h = Harness::start();
    h.run(
        "path_ids",
        SMALL_CASES,
        path_request(),
        |h, (method, path)| {
            let body = matches!(method, Method::POST | Method::PUT | Method::PATCH)
                .then(|| br#"{"name":"x","realmId":"r","agentDid":"did:key:z"}"#.to_vec());
            // http's `Uri` holds at most 65,534 bytes: longer paths never leave any Rust client.
            prop_assume!(path.len() < 65_000);
            let a = h.send(method.clone(), &path, Some("application/json"), body, &[]);
            check_shape(&format!("{method} {path}"), &a)
        },
    );
}

/// Arbitrary query strings on the routes that read one (revoke `?realmId=`, audit `?after=&limit=`).
#[test]
fn query_strings() {
    let h = Harness::start();
    let query = prop_oneof![
        text().prop_map(|s| encode_segment(&s)),
        "[ -~]{0,60}".prop_map(|s| s.replace(['#', ' '], "+")),
        (
            prop::sample::select(vec!["realmId", "after", "limit", "x"]),
            text()
        )
            .prop_map(|(k, v)| format!("{k}={}", encode_segment(&v))),
        (text(), text()).prop_map(|(a, b)| format!(
            "realmId={}&realmId={}",
            encode_segment(&a),
            encode_segment(&b)
        )),
        (any::<i64>(), text()).prop_map(|(l, a)| format!("limit={l}&after={}", encode_segment(&a))),
    ];
    h.run(
        "query_strings",
        SMALL_CASES,
        (any::<bool>(), query),
        |h, (revoke, q)| {
            let (m, p) = if revoke {
                (
                    Method::DELETE,
                    format!("/api/models/{}/realms?{q}", h.fx.model),
                )
            } else {
                (Method::GET, format!("/api/audit?{q}"))
            };
            // http's `Uri` (hence any Rust client) holds at most 65,534 bytes; longer ones never leave
            // the client (two 3,000-character texts of 4-byte characters, percent-encoded, do not fit).
            prop_assume!(p.len() < 65_000);
            let a = h.send(m.clone(), &p, None, None, &[]);
            check_shape(&format!("{m} {p}"), &a)
        },
    );
}

/// Sends one request over a raw connection, writing the body while reading the answer (an API that
/// refuses an oversized body answers before reading it all, and may close the connection: a client
/// that first writes everything would only see the reset).
async fn send_raw(s: &Stack, method: &Method, path: &str, body: Vec<u8>) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.api_url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        let _ = wr.flush().await;
        wr
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut raw)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let json = serde_json::from_str(&body).ok();
    Answer {
        status,
        text: body,
        json,
    }
}

/// Bodies at and over the 1 MiB limit on every write route: 413 over it (JSON error), 400 or 2xx under.
#[test]
fn body_size_limit() {
    let h = Harness::start();
    let s = h.stack();
    for route in ROUTES {
        for (size, over) in [
            (1024 * 1024, false),
            (1024 * 1024 + 1, true),
            (4 * 1024 * 1024, true),
        ] {
            // `{"description":"xxxx…"}` of exactly `size` bytes.
            let filler = size - r#"{"description":""}"#.len();
            let body = format!(r#"{{"description":"{}"}}"#, "x".repeat(filler));
            assert_eq!(body.len(), size);
            let a = h.rt.block_on(send_raw(
                s,
                &route.method(),
                &route.path(&h.fx, None),
                body.into_bytes(),
            ));
            let what = format!("{route:?} {size} bytes");
            check_shape(&what, &a).unwrap_or_else(|e| panic!("{e}"));
            if over {
                assert_eq!(a.status, 413, "{what}: {}", a.text);
            } else {
                assert!(matches!(a.status, 400 | 404), "{what}: {}", a.text);
            }
        }
    }
}

// ---- defects found by the fuzzing, kept as regression tests (see docs/reliability.md "Bad input") ------

/// Input: `POST /api/models {"name":"m","provider":"openai","modelId":"x","apiKey":"sk-\u0001"}` (and an
/// `apiKey` over 8192 bytes): the same body on NATS is refused ("apiKey contains control characters").
#[test]
fn bug_rest_api_key_skips_validation() {
    let h = Harness::start();
    let s = h.stack();
    for (i, key) in ["sk-a\u{1}b".to_string(), "k".repeat(9000)]
        .into_iter()
        .enumerate()
    {
        let body = json!({"name": format!("Key check {i}"), "provider": "openai", "modelId": "x", "apiKey": key});
        let direct = Command::parse(
            CommandKind::ModelRegister,
            &serde_json::to_vec(&body).unwrap(),
        );
        assert!(direct.is_err(), "NATS refuses it: {direct:?}");
        let r = h.rt.block_on(s.post("/api/models", body));
        assert_eq!(r.status, 400, "REST must refuse it too: {}", r.text);
        assert!(
            r.body["error"].as_str().unwrap_or("").contains("apiKey"),
            "{}",
            r.text
        );
    }
}

/// Input: `PATCH /api/models`, `PUT /api/agents/x` (a method the path does not have).
#[test]
fn bug_method_not_allowed_is_not_json() {
    let h = Harness::start();
    for (m, p) in [
        (Method::PATCH, "/api/models"),
        (Method::PUT, "/api/agents/x"),
        (Method::POST, "/api/audit"),
    ] {
        let a = h.send(
            m.clone(),
            p,
            Some("application/json"),
            Some(b"{}".to_vec()),
            &[],
        );
        assert!(
            a.json
                .as_ref()
                .is_some_and(|v| v["error"].is_string() && v["code"].is_string()),
            "{m} {p}: {} {:?}",
            a.status,
            a.text
        );
    }
}

/// Input: `GET /api/models/%FF` (a path id that is not UTF-8), and `GET /api/audit?limit=x`.
#[test]
fn bug_path_and_query_rejections_are_not_json() {
    let h = Harness::start();
    for (m, p) in [
        (Method::GET, "/api/models/%FF"),
        (Method::DELETE, "/api/realms/%C3%28"),
        (Method::GET, "/api/audit?limit=x"),
        (Method::DELETE, "/api/models/m/realms?realmId=a&realmId=b"),
    ] {
        let a = h.send(m.clone(), p, None, None, &[]);
        assert!(
            a.json
                .as_ref()
                .is_some_and(|v| v["error"].is_string() && v["code"] == "BAD_REQUEST"),
            "{m} {p}: {} {:?}",
            a.status,
            a.text
        );
    }
}
