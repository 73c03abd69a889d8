//! Property tests of WebSocket frame decoding (`vc_shared::ws`): edges decode every agent frame with
//! `ClientMsg::decode`, agents decode edge frames with `ServerMsg::decode`. Arbitrary text, arbitrary
//! JSON and envelopes with arbitrary payloads never panic and always land in the right error class (the
//! edge maps the class to an `error` frame or, for a malformed `auth_response`, to close 4401); valid
//! frames round-trip.
//!
//! Cases: `PROPTEST_CASES` (default 1024 per property); `scripts/fuzz` runs 100,000.

mod prop_support;

use prop_support::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use vc_shared::ws::{
    kind, AuthChallenge, AuthFailed, AuthResponse, ClientMsg, DecodeError, ErrorPayload, Heartbeat,
    LlmConfigAck, Pong, ServerMsg,
};

const DEFAULT_CASES: u32 = 1024;

const CLIENT_KINDS: &[&str] = &[kind::AUTH_RESPONSE, kind::LLM_CONFIG_ACK, kind::HEARTBEAT];
const SERVER_KINDS: &[&str] = &[
    kind::AUTH_CHALLENGE,
    kind::AUTH_COMPLETE,
    kind::AUTH_FAILED,
    kind::LLM_CONFIG,
    kind::PONG,
    kind::ERROR,
];

/// A frame type: a real one (of either side), or arbitrary text.
fn frame_type() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select([CLIENT_KINDS, SERVER_KINDS].concat()).prop_map(|k| json!(k)),
        1 => text().prop_map(Value::String),
        1 => json_leaf(),
    ]
    .boxed()
}

/// Payloads shaped like the real ones, with arbitrary values.
fn payload() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => json_value(),
        2 => (prop_oneof![text().prop_map(Value::String), valid_did().prop_map(Value::String), json_leaf()],
              prop_oneof![text().prop_map(Value::String), "[A-Za-z0-9_-]{86}".prop_map(Value::String), json_leaf()])
            .prop_map(|(did, signature)| json!({"did": did, "signature": signature})),
        2 => prop_oneof![number(), text().prop_map(Value::String), json_leaf()]
            .prop_map(|v| json!({"version": v})),
        2 => json_value().prop_map(|v| json!({"activeLlm": v})),
        1 => Just(Value::Null),
    ]
    .boxed()
}

/// An envelope object: `type`, `payload`, the optional envelope fields with arbitrary values, extras.
fn envelope() -> BoxedStrategy<Value> {
    (
        prop::option::of(frame_type()),
        prop::option::of(payload()),
        prop::option::of(json_leaf()),
        prop::option::of(json_leaf()),
        prop::option::of(json_leaf()),
        prop::collection::vec((key(), json_leaf()), 0..3),
    )
        .prop_map(|(t, p, mid, aid, ts, extra)| {
            let mut o: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [
                ("type", t),
                ("payload", p),
                ("messageId", mid),
                ("agentId", aid),
                ("timestamp", ts),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
        .boxed()
}

/// Arbitrary frame text: any string, JSON text of any value or envelope, broken JSON.
fn frame_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        2 => json_value().prop_map(|v| v.to_string()),
        4 => envelope().prop_map(|v| v.to_string()),
        1 => raw_body().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// The classification the edge relies on, checked against an independent reading of the frame.
fn check_classification(
    text: &str,
    result: Result<&'static str, DecodeError>,
    known: &[&str],
) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_str::<Value>(text);
    match result {
        Ok(k) => {
            let v = parsed.expect("decoded frames are JSON");
            prop_assert_eq!(v.get("type").and_then(Value::as_str), Some(k));
        }
        Err(DecodeError::NotJson(m)) => {
            prop_assert!(parsed.is_err(), "{:?} is JSON", text);
            prop_assert!(!m.is_empty());
        }
        Err(DecodeError::NotObject) => prop_assert!(matches!(parsed, Ok(ref v) if !v.is_object())),
        Err(DecodeError::MissingType) => {
            let v = parsed.expect("JSON");
            prop_assert!(v.is_object() && !v.get("type").is_some_and(Value::is_string));
        }
        Err(DecodeError::UnknownType(t)) => {
            let v = parsed.expect("JSON");
            let real = v["type"].as_str().expect("string type");
            prop_assert!(!known.contains(&real));
            prop_assert!(t.chars().count() <= 64, "echoed type is bounded");
            prop_assert!(real.starts_with(&t));
        }
        Err(e @ DecodeError::BadPayload { .. }) => {
            let v = parsed.expect("JSON");
            prop_assert_eq!(e.known_kind(), v["type"].as_str());
            prop_assert!(known.contains(&e.known_kind().unwrap_or("")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// Agent frames as the edge decodes them: no panic, the right error class, a non-empty message.
    #[test]
    fn client_frames_decode_or_classify(text in frame_text()) {
        let r = ClientMsg::decode(&text);
        if let Err(e) = &r {
            prop_assert!(!e.to_string().is_empty());
        }
        check_classification(&text, r.map(|e| e.msg.kind()), CLIENT_KINDS)?;
    }

    /// Edge frames as agents decode them: same properties.
    #[test]
    fn server_frames_decode_or_classify(text in frame_text()) {
        let r = ServerMsg::decode(&text);
        check_classification(&text, r.map(|e| e.msg.kind()), SERVER_KINDS)?;
    }

    /// Envelope fields are taken when they are strings and ignored otherwise; extra fields are ignored.
    #[test]
    fn envelope_fields(v in envelope()) {
        if let Ok(env) = ClientMsg::decode(&v.to_string()) {
            prop_assert_eq!(env.message_id.as_deref(), v.get("messageId").and_then(Value::as_str));
            prop_assert_eq!(env.agent_id.as_deref(), v.get("agentId").and_then(Value::as_str));
            prop_assert_eq!(env.timestamp.as_deref(), v.get("timestamp").and_then(Value::as_str));
        }
    }

    /// Valid agent frames round-trip through encode/decode, whatever their strings and numbers.
    #[test]
    fn client_frames_roundtrip(
        did in text(),
        signature in text(),
        version in any::<u64>(),
        active in prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
        agent_id in prop::option::of(text()),
        which in 0u8..3,
    ) {
        // serde_json parses floats fast rather than exactly (no `float_roundtrip`): compare with the value
        // as JSON text reads back, which is what any receiver sees.
        let reread = |v: Value| serde_json::from_str::<Value>(&v.to_string()).unwrap();
        let (msg, expected) = match which {
            0 => {
                let m = ClientMsg::AuthResponse(AuthResponse { did, signature });
                (m.clone(), m)
            }
            1 => {
                let m = ClientMsg::LlmConfigAck(LlmConfigAck { version });
                (m.clone(), m)
            }
            _ => (
                ClientMsg::Heartbeat(Heartbeat { active_llm: active.clone() }),
                ClientMsg::Heartbeat(Heartbeat { active_llm: active.map(reread) }),
            ),
        };
        let text = msg.encode(agent_id.as_deref());
        let env = ClientMsg::decode(&text).expect("own frames decode");
        prop_assert_eq!(env.msg, expected);
        prop_assert_eq!(env.agent_id, agent_id);
        prop_assert!(env.message_id.is_some() && env.timestamp.is_some());
    }

    /// Valid edge frames (challenge, failure, error, pong) round-trip.
    #[test]
    fn server_frames_roundtrip(a in text(), b in text(), c in text(), which in 0u8..4) {
        let msg = match which {
            0 => ServerMsg::AuthChallenge(AuthChallenge { session_id: a, nonce: b, edge_id: c }),
            1 => ServerMsg::AuthFailed(AuthFailed { reason: a }),
            2 => ServerMsg::Error(ErrorPayload { error: a, code: b }),
            _ => ServerMsg::Pong(Pong {}),
        };
        let env = ServerMsg::decode(&msg.encode(None)).expect("own frames decode");
        prop_assert_eq!(env.msg, msg);
    }
}

/// Deep nesting past serde_json's recursion limit is an ordinary "not JSON" error, not a stack overflow.
#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [127usize, 128, 129, 10_000, 60_000] {
        let text = format!(
            r#"{{"type":"heartbeat","payload":{{"activeLlm":{}1{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let r = ClientMsg::decode(&text);
        if depth < 120 {
            assert!(r.is_ok(), "{depth}: {r:?}");
        } else {
            assert!(matches!(r, Err(DecodeError::NotJson(_))), "{depth}: {r:?}");
        }
    }
}
