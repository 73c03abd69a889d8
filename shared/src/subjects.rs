//! NATS subjects and stream names: who publishes, who subscribes.
//!
//! | subject | publisher | subscriber | transport |
//! |---|---|---|---|
//! | `vc.cmd.<kind>` | `vc-api`, other services | `vc-worker` holding the lane (stream `VC_CMD`) | JetStream |
//! | `vc.dlq.cmd` | `vc-worker` (undecodable commands) | operators (stream `VC_DLQ`) | JetStream |
//! | `vc.sync.cmd` | `vc-worker` (lane holder: a committed command's LiteLLM work) | `vc-worker` (stream `VC_SYNC`) | JetStream |
//! | `vc.sync.model.<id>`, `vc.sync.realm.<id>` | `vc-worker` | `vc-worker` (stream `VC_SYNC`) | JetStream |
//! | `vc.evt.<kind>` | `vc-worker` | audit, integrations (stream `VC_EVT`) | JetStream |
//! | `vc.push.realm.<realmId>` | `vc-worker` | `vc-edge` nodes holding agents routed through the realm | core |
//! | `vc.push.model.<modelId>` | `vc-worker` | `vc-edge` nodes holding agents in registry mode on the model | core |
//! | `vc.push.agent.<did>` | `vc-worker`, `vc-edge` (takeover) | the `vc-edge` holding the agent | core |
//! | `vc.evt.agent.presence`, `vc.evt.agent.acked` | `vc-edge` (batched reports) | `vc-api` (read model), integrations (stream `VC_EVT`) | core, captured by JetStream |

use crate::command::CommandKind;

/// Prefix of command subjects.
pub const CMD_PREFIX: &str = "vc.cmd";
/// Filter capturing every command.
pub const CMD_ALL: &str = "vc.cmd.>";
/// Stream of commands.
pub const CMD_STREAM: &str = "VC_CMD";
/// Durable consumer of commands shared by all workers.
pub const CMD_CONSUMER: &str = "vc-worker";
/// Dead letters: commands that could not be decoded.
pub const DLQ_CMD: &str = "vc.dlq.cmd";
/// Stream of dead letters.
pub const DLQ_STREAM: &str = "VC_DLQ";
/// Command sync jobs: a committed command's LiteLLM work and outcome (the command id is in the body:
/// ids may hold characters a subject cannot).
pub const SYNC_COMMAND: &str = "vc.sync.cmd";
/// Filter of LiteLLM sync jobs.
pub const SYNC_ALL: &str = "vc.sync.>";
/// Stream of LiteLLM sync jobs.
pub const SYNC_STREAM: &str = "VC_SYNC";
/// Durable consumer of sync jobs shared by all workers.
pub const SYNC_CONSUMER: &str = "vc-sync";
/// Filter of domain events.
pub const EVT_ALL: &str = "vc.evt.>";
/// Stream of domain events.
pub const EVT_STREAM: &str = "VC_EVT";
/// Filter of every realm push.
pub const PUSH_REALM_ALL: &str = "vc.push.realm.*";
/// Filter of every model push.
pub const PUSH_MODEL_ALL: &str = "vc.push.model.*";
/// Filter of every agent push.
pub const PUSH_AGENT_ALL: &str = "vc.push.agent.*";

/// `vc.cmd.<kind>`.
pub fn command(kind: CommandKind) -> String {
    format!("{CMD_PREFIX}.{}", kind.as_str())
}

/// The kind of a command subject, if it is one.
pub fn command_kind(subject: &str) -> Option<CommandKind> {
    subject
        .strip_prefix(CMD_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(CommandKind::parse)
}

/// `vc.sync.model.<id>`.
pub fn sync_model(id: &str) -> String {
    format!("vc.sync.model.{id}")
}

/// `vc.sync.realm.<id>`.
pub fn sync_realm(id: &str) -> String {
    format!("vc.sync.realm.{id}")
}

/// `vc.evt.<kind>`.
pub fn event(kind: &str) -> String {
    format!("vc.evt.{kind}")
}

/// `vc.push.realm.<realmId>`.
pub fn push_realm(realm_id: &str) -> String {
    format!("vc.push.realm.{realm_id}")
}

/// `vc.push.model.<modelId>`.
pub fn push_model(model_id: &str) -> String {
    format!("vc.push.model.{model_id}")
}

/// `vc.push.agent.<did>`.
pub fn push_agent(did: &str) -> String {
    format!("vc.push.agent.{did}")
}

/// The family of a push subject: `"realm"`, `"model"` or `"agent"` (`None` for another subject).
pub fn push_kind(subject: &str) -> Option<&'static str> {
    let rest = subject.strip_prefix("vc.push.")?;
    [
        ("realm.", "realm"),
        ("model.", "model"),
        ("agent.", "agent"),
    ]
    .into_iter()
    .find(|(prefix, _)| rest.starts_with(prefix))
    .map(|(_, kind)| kind)
}

/// Sessions that began or ended on an edge ([`crate::wire::PresenceEvent`]), published by edges,
/// captured by `VC_EVT` like every event.
pub const EVT_AGENT_PRESENCE: &str = "vc.evt.agent.presence";
/// Config versions agents acknowledged ([`crate::wire::AckedEvent`]), published by edges.
pub const EVT_AGENT_ACKED: &str = "vc.evt.agent.acked";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_subjects_roundtrip() {
        for k in CommandKind::ALL {
            assert_eq!(command_kind(&command(k)), Some(k));
        }
        assert_eq!(command_kind("vc.cmd.nope"), None);
    }

    #[test]
    fn push_kinds() {
        assert_eq!(push_kind(&push_realm("r")), Some("realm"));
        assert_eq!(push_kind(&push_model("m")), Some("model"));
        assert_eq!(push_kind(&push_agent("did:key:z")), Some("agent"));
        assert_eq!(push_kind("vc.cmd.realm.create"), None);
    }
}
