//! The agent WebSocket protocol (contract §3): the frames between `vc-edge` and agents, their JSON
//! envelope, the close codes and the limits. `vc-edge` decodes [`ClientMsg`] and encodes [`ServerMsg`];
//! `vc-agent` (and any other agent) does the reverse. `docs/agent-protocol.md` is the prose version.
//!
//! Every frame is one text message holding the envelope
//! `{"messageId", "type", "agentId"?, "payload", "timestamp"}` (RFC 3339 timestamp):
//!
//! ```text
//! agent                                   edge
//!   │ ◀── auth_challenge {sessionId, nonce, edgeId}
//!   │ ──▶ auth_response  {did, signature}        signature = Ed25519 over "vc-agent-auth:v1:<nonce>:<edgeId>"
//!   │ ◀── auth_complete  {agentId, sessionId, heartbeatIntervalMs}   (or auth_failed {reason} + close 44xx)
//!   │ ◀── llm_config     {config, version, mode, realmId?}           at once, then on every change
//!   │ ──▶ llm_config_ack {version}
//!   │ ──▶ heartbeat      {activeLlm?}   ◀── pong {}
//!   │ ◀── error          {error, code}  (unknown or malformed frame; the session stays open)
//! ```
//!
//! # Examples
//! ```
//! use vc_shared::ws::{ClientMsg, Heartbeat, ServerMsg};
//! let text = ClientMsg::Heartbeat(Heartbeat { active_llm: None }).encode(None);
//! let env = ClientMsg::decode(&text).unwrap();
//! assert!(matches!(env.msg, ClientMsg::Heartbeat(_)));
//! assert!(ServerMsg::decode("{\"type\":\"nope\",\"payload\":{}}").is_err());
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{LlmConfig, Mode};

/// The HTTP path of the WebSocket endpoint on every edge.
pub const PATH: &str = "/ws";
/// Largest frame or message an edge accepts (larger ones close the session with [`close::TOO_BIG`]).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long an agent has to send a valid `auth_response` after the challenge.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an edge pings each agent (WebSocket ping frames).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// An edge closes a peer it has heard nothing from (no frame, no pong) for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The heartbeat interval edges announce in `auth_complete` by default.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// WebSocket close codes used by edges.
pub mod close {
    /// Normal closure (an agent leaving).
    pub const NORMAL: u16 = 1000;
    /// The peer was silent for [`super::IDLE_TIMEOUT`].
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket protocol violation (e.g. an unmasked frame from the agent).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation: frame flood, or the agent reads too slowly (its send queue is full).
    pub const POLICY: u16 = 1008;
    /// A frame or message over [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The edge is shutting down (drain): reconnect, to another edge if you know one.
    pub const RESTART: u16 = 1012;
    /// The edge cannot serve now (Redis or NATS unavailable): reconnect after a backoff.
    pub const TRY_AGAIN: u16 = 1013;
    /// Bad signature, or a malformed `auth_response`.
    pub const BAD_AUTH: u16 = 4401;
    /// The DID is not registered, or the agent was deleted.
    pub const NOT_REGISTERED: u16 = 4403;
    /// No valid `auth_response` within [`super::AUTH_TIMEOUT`].
    pub const AUTH_TIMEOUT: u16 = 4408;
    /// A newer session of the same DID (on any edge) took over.
    pub const SUPERSEDED: u16 = 4409;
}

/// The `type` strings of the frames.
pub mod kind {
    /// Server → agent.
    pub const AUTH_CHALLENGE: &str = "auth_challenge";
    /// Agent → server.
    pub const AUTH_RESPONSE: &str = "auth_response";
    /// Server → agent.
    pub const AUTH_COMPLETE: &str = "auth_complete";
    /// Server → agent.
    pub const AUTH_FAILED: &str = "auth_failed";
    /// Server → agent.
    pub const LLM_CONFIG: &str = "llm_config";
    /// Agent → server.
    pub const LLM_CONFIG_ACK: &str = "llm_config_ack";
    /// Agent → server.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Server → agent.
    pub const PONG: &str = "pong";
    /// Server → agent.
    pub const ERROR: &str = "error";
}

/// `auth_challenge` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthChallenge {
    /// This connection's session id.
    pub session_id: String,
    /// 32 random bytes, lower-case hex; valid for this connection's single `auth_response`.
    pub nonce: String,
    /// The edge's id; part of the signed message, so a signature is valid on this edge only.
    pub edge_id: String,
}

/// `auth_response` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    /// The agent's `did:key` (Ed25519).
    pub did: String,
    /// Ed25519 signature of `vc-agent-auth:v1:<nonce>:<edgeId>`, base64url without padding.
    pub signature: String,
}

/// `auth_complete` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthComplete {
    /// The authenticated DID.
    pub agent_id: String,
    /// The session id of the challenge.
    pub session_id: String,
    /// How often the agent should send `heartbeat`.
    pub heartbeat_interval_ms: u64,
}

/// `auth_failed` payload (the edge closes the connection right after it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthFailed {
    /// Why, for humans.
    pub reason: String,
}

/// `llm_config` payload: the agent's whole current config state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfigPayload {
    /// The config, or `null`: fall back to the agent's local environment.
    pub config: Option<LlmConfig>,
    /// Strictly increasing per agent; an agent ignores a version at or below the one it holds.
    pub version: u64,
    /// Where the config comes from (`null` when `config` is `null`).
    pub mode: Option<Mode>,
    /// The realm the config routes through (realm mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
}

/// `llm_config_ack` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfigAck {
    /// The version the agent now holds.
    pub version: u64,
}

/// `heartbeat` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// What the agent actually uses, e.g. `{"provider": "openai-compatible", "model": "gpt-4o"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_llm: Option<serde_json::Value>,
}

/// `pong` payload (empty object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pong {}

/// `error` payload: the frame named was refused; the session stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPayload {
    /// What is wrong, naming the field or frame type.
    pub error: String,
    /// A contract error code (`BAD_REQUEST`, `UNAUTHORIZED`, …).
    pub code: String,
}

/// Frames an agent sends (decoded by edges).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// `auth_response`.
    AuthResponse(AuthResponse),
    /// `llm_config_ack`.
    LlmConfigAck(LlmConfigAck),
    /// `heartbeat`.
    Heartbeat(Heartbeat),
}

/// Frames an edge sends (decoded by agents).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// `auth_challenge`.
    AuthChallenge(AuthChallenge),
    /// `auth_complete`.
    AuthComplete(AuthComplete),
    /// `auth_failed`.
    AuthFailed(AuthFailed),
    /// `llm_config`.
    LlmConfig(LlmConfigPayload),
    /// `pong`.
    Pong(Pong),
    /// `error`.
    Error(ErrorPayload),
}

/// A decoded frame: the envelope's fields and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<M> {
    /// `messageId`, when the sender set one.
    pub message_id: Option<String>,
    /// `agentId`, when set.
    pub agent_id: Option<String>,
    /// `timestamp`, when set (not checked).
    pub timestamp: Option<String>,
    /// The message.
    pub msg: M,
}

/// Why a frame could not be decoded. Plain data, no boxing: this runs for every frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("frame must be a JSON object")]
    NotObject,
    /// No string `type` field.
    #[error("frame has no string \"type\"")]
    MissingType,
    /// A `type` this side does not know.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// The payload does not fit the type.
    #[error("malformed {kind} payload: {reason}")]
    BadPayload {
        /// The frame type.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The frame type when the type was known but its payload was wrong.
    pub fn known_kind(&self) -> Option<&'static str> {
        match self {
            DecodeError::BadPayload { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFrame<'a, P: Serialize> {
    message_id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    payload: &'a P,
    timestamp: String,
}

/// Encodes one frame: a fresh `messageId` (UUID v4), the type, the optional `agentId`, the payload and
/// the current time.
pub fn encode_frame<P: Serialize>(kind: &str, agent_id: Option<&str>, payload: &P) -> String {
    let frame = OutFrame {
        message_id: uuid::Uuid::new_v4().to_string(),
        kind,
        agent_id,
        payload,
        timestamp: crate::domain::now_rfc3339(),
    };
    // Serializing these plain structs cannot fail (string keys, no maps with non-string keys).
    serde_json::to_string(&frame).unwrap_or_default()
}

struct RawFrame {
    message_id: Option<String>,
    agent_id: Option<String>,
    timestamp: Option<String>,
    kind: String,
    payload: serde_json::Value,
}

fn split_frame(text: &str) -> Result<RawFrame, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(DecodeError::NotObject);
    };
    let kind = match obj.remove("type") {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(DecodeError::MissingType),
    };
    let text_field = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let payload = match obj.remove("payload") {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(p) => p,
    };
    Ok(RawFrame {
        message_id: text_field(obj.remove("messageId")),
        agent_id: text_field(obj.remove("agentId")),
        timestamp: text_field(obj.remove("timestamp")),
        kind,
        payload,
    })
}

fn payload<T: DeserializeOwned>(
    kind: &'static str,
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|e| DecodeError::BadPayload {
        kind,
        reason: e.to_string(),
    })
}

fn envelope<M>(raw: RawFrame, msg: M) -> Envelope<M> {
    Envelope {
        message_id: raw.message_id,
        agent_id: raw.agent_id,
        timestamp: raw.timestamp,
        msg,
    }
}

impl ClientMsg {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::AuthResponse(_) => kind::AUTH_RESPONSE,
            ClientMsg::LlmConfigAck(_) => kind::LLM_CONFIG_ACK,
            ClientMsg::Heartbeat(_) => kind::HEARTBEAT,
        }
    }

    /// Decodes a text frame.
    pub fn decode(text: &str) -> Result<Envelope<ClientMsg>, DecodeError> {
        let mut raw = split_frame(text)?;
        let p = std::mem::take(&mut raw.payload);
        let msg = match raw.kind.as_str() {
            kind::AUTH_RESPONSE => ClientMsg::AuthResponse(payload(kind::AUTH_RESPONSE, p)?),
            kind::LLM_CONFIG_ACK => ClientMsg::LlmConfigAck(payload(kind::LLM_CONFIG_ACK, p)?),
            kind::HEARTBEAT => ClientMsg::Heartbeat(payload(kind::HEARTBEAT, p)?),
            other => return Err(DecodeError::UnknownType(other.chars().take(64).collect())),
        };
        Ok(envelope(raw, msg))
    }

    /// Encodes the frame (agents put their DID in `agent_id`, optional).
    pub fn encode(&self, agent_id: Option<&str>) -> String {
        match self {
            ClientMsg::AuthResponse(p) => encode_frame(self.kind(), agent_id, p),
            ClientMsg::LlmConfigAck(p) => encode_frame(self.kind(), agent_id, p),
            ClientMsg::Heartbeat(p) => encode_frame(self.kind(), agent_id, p),
        }
    }
}

impl ServerMsg {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMsg::AuthChallenge(_) => kind::AUTH_CHALLENGE,
            ServerMsg::AuthComplete(_) => kind::AUTH_COMPLETE,
            ServerMsg::AuthFailed(_) => kind::AUTH_FAILED,
            ServerMsg::LlmConfig(_) => kind::LLM_CONFIG,
            ServerMsg::Pong(_) => kind::PONG,
            ServerMsg::Error(_) => kind::ERROR,
        }
    }

    /// Decodes a text frame.
    pub fn decode(text: &str) -> Result<Envelope<ServerMsg>, DecodeError> {
        let mut raw = split_frame(text)?;
        let p = std::mem::take(&mut raw.payload);
        let msg = match raw.kind.as_str() {
            kind::AUTH_CHALLENGE => ServerMsg::AuthChallenge(payload(kind::AUTH_CHALLENGE, p)?),
            kind::AUTH_COMPLETE => ServerMsg::AuthComplete(payload(kind::AUTH_COMPLETE, p)?),
            kind::AUTH_FAILED => ServerMsg::AuthFailed(payload(kind::AUTH_FAILED, p)?),
            kind::LLM_CONFIG => ServerMsg::LlmConfig(payload(kind::LLM_CONFIG, p)?),
            kind::PONG => ServerMsg::Pong(Pong {}),
            kind::ERROR => ServerMsg::Error(payload(kind::ERROR, p)?),
            other => return Err(DecodeError::UnknownType(other.chars().take(64).collect())),
        };
        Ok(envelope(raw, msg))
    }

    /// Encodes the frame. Broadcast `llm_config` frames are encoded once for many agents and so carry
    /// no `agentId`.
    pub fn encode(&self, agent_id: Option<&str>) -> String {
        match self {
            ServerMsg::AuthChallenge(p) => encode_frame(self.kind(), agent_id, p),
            ServerMsg::AuthComplete(p) => encode_frame(self.kind(), agent_id, p),
            ServerMsg::AuthFailed(p) => encode_frame(self.kind(), agent_id, p),
            ServerMsg::LlmConfig(p) => encode_frame(self.kind(), agent_id, p),
            ServerMsg::Pong(p) => encode_frame(self.kind(), agent_id, p),
            ServerMsg::Error(p) => encode_frame(self.kind(), agent_id, p),
        }
    }
}

/// 32 random bytes, lower-case hex: a fresh authentication nonce.
pub fn new_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_config_shape() {
        let p = LlmConfigPayload {
            config: None,
            version: 3,
            mode: None,
            realm_id: None,
        };
        let text = ServerMsg::LlmConfig(p.clone()).encode(None);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "llm_config");
        assert_eq!(
            v["payload"],
            serde_json::json!({"config": null, "version": 3, "mode": null})
        );
        assert!(v.get("agentId").is_none());
        assert!(v["messageId"].as_str().is_some_and(|s| s.len() == 36));
        assert!(time::OffsetDateTime::parse(
            v["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
        assert_eq!(
            ServerMsg::decode(&text).unwrap().msg,
            ServerMsg::LlmConfig(p)
        );
    }

    #[test]
    fn client_frames_roundtrip_and_errors() {
        let r = ClientMsg::AuthResponse(AuthResponse {
            did: "did:key:z6Mk".into(),
            signature: "sig".into(),
        });
        let text = r.encode(Some("did:key:z6Mk"));
        let env = ClientMsg::decode(&text).unwrap();
        assert_eq!(env.msg, r);
        assert_eq!(env.agent_id.as_deref(), Some("did:key:z6Mk"));
        assert!(matches!(
            ClientMsg::decode("nope"),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(ClientMsg::decode("[1]"), Err(DecodeError::NotObject));
        assert_eq!(
            ClientMsg::decode("{\"payload\":{}}"),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            ClientMsg::decode("{\"type\":\"x\"}"),
            Err(DecodeError::UnknownType("x".into()))
        );
        let bad =
            ClientMsg::decode("{\"type\":\"llm_config_ack\",\"payload\":{\"version\":\"x\"}}")
                .unwrap_err();
        assert_eq!(bad.known_kind(), Some("llm_config_ack"));
        // A heartbeat without a payload is fine.
        assert_eq!(
            ClientMsg::decode("{\"type\":\"heartbeat\"}").unwrap().msg,
            ClientMsg::Heartbeat(Heartbeat { active_llm: None })
        );
    }

    #[test]
    fn nonce_is_32_bytes_hex() {
        let n = new_nonce();
        assert_eq!(n.len(), 64);
        assert!(n
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(n, new_nonce());
    }
}
