//! NATS subjects and stream names: who publishes, who subscribes.
//!
//! | subject | publisher | subscriber | transport |
//! |---|---|---|---|
//! | `vc.cmd.<kind>` | other services (NATS user `integration`) | `vc-worker` holding the lane (stream `VC_CMD`) | JetStream |
//! | `vc.cmd.api.<kind>` | `vc-api` only (its NATS user's permission) | the same | JetStream |
//! | `vc.cmd.worker.<kind>` | `vc-worker` only (reconcile) | the same | JetStream |
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

/// Who published a command, as its subject says. The NATS permissions (`nats/auth.conf`) let only the
/// `api` user publish under `vc.cmd.api.` and only the `worker` user under `vc.cmd.worker.`, so the
/// subject, unlike a header, is proof of the publisher: the worker takes the audit actor (`Vc-Actor`)
/// only from those two, and names every other command's actor `integration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandSource {
    /// `vc.cmd.api.<kind>`: `vc-api`, on behalf of the caller named in `Vc-Actor`.
    Api,
    /// `vc.cmd.worker.<kind>`: the worker itself (reconcile).
    Worker,
    /// `vc.cmd.<kind>`: another service (the public interface).
    Integration,
}

impl CommandSource {
    /// The subject segment after `vc.cmd.` (`None` for the public interface).
    fn segment(self) -> Option<&'static str> {
        match self {
            CommandSource::Api => Some("api"),
            CommandSource::Worker => Some("worker"),
            CommandSource::Integration => None,
        }
    }

    /// The audit actor of a command: `Vc-Actor` from the API or the worker (their permissions make
    /// the header theirs), `integration` for anyone else whatever the header says.
    pub fn actor(self, header: Option<String>) -> String {
        match self {
            CommandSource::Api => header.unwrap_or_else(|| "api".into()),
            CommandSource::Worker => header.unwrap_or_else(|| "worker".into()),
            CommandSource::Integration => "integration".into(),
        }
    }
}

/// `vc.cmd.<kind>`: the public subject of a command (other services publish there).
pub fn command(kind: CommandKind) -> String {
    format!("{CMD_PREFIX}.{}", kind.as_str())
}

/// The subject `source` publishes `kind` on: `vc.cmd.api.<kind>`, `vc.cmd.worker.<kind>` or
/// `vc.cmd.<kind>`.
pub fn command_from(source: CommandSource, kind: CommandKind) -> String {
    match source.segment() {
        Some(seg) => format!("{CMD_PREFIX}.{seg}.{}", kind.as_str()),
        None => command(kind),
    }
}

/// The source and kind of a command subject, if it is one.
pub fn command_route(subject: &str) -> Option<(CommandSource, CommandKind)> {
    let rest = subject.strip_prefix(CMD_PREFIX)?.strip_prefix('.')?;
    for source in [CommandSource::Api, CommandSource::Worker] {
        let seg = source.segment().unwrap_or_default();
        if let Some(kind) = rest.strip_prefix(seg).and_then(|r| r.strip_prefix('.')) {
            return CommandKind::parse(kind).map(|k| (source, k));
        }
    }
    CommandKind::parse(rest).map(|k| (CommandSource::Integration, k))
}

/// The kind of a command subject, if it is one.
pub fn command_kind(subject: &str) -> Option<CommandKind> {
    command_route(subject).map(|(_, k)| k)
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

    #[test]
    fn command_subjects_name_their_source() {
        let k = CommandKind::RealmGrant;
        assert_eq!(
            command_from(CommandSource::Api, k),
            "vc.cmd.api.realm.grant"
        );
        assert_eq!(
            command_from(CommandSource::Worker, k),
            "vc.cmd.worker.realm.grant"
        );
        assert_eq!(
            command_from(CommandSource::Integration, k),
            "vc.cmd.realm.grant"
        );
        for source in [
            CommandSource::Api,
            CommandSource::Worker,
            CommandSource::Integration,
        ] {
            assert_eq!(command_route(&command_from(source, k)), Some((source, k)));
        }
        assert_eq!(command_route("vc.cmd.api.nope"), None);
        assert_eq!(command_route("vc.cmd.api"), None);
        assert_eq!(command_route("vc.other.realm.grant"), None);
        assert_eq!(
            CommandSource::Integration.actor(Some("admin".into())),
            "integration"
        );
        assert_eq!(CommandSource::Api.actor(Some("token:t".into())), "token:t");
    }

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
