//! What a command leaves behind: its status, its [`Outcome`] and its [`CommandRecord`], and the ids
//! derived from its command id.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::DomainError;

/// The status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Accepted, not yet applied.
    Pending,
    /// Applied.
    Succeeded,
    /// Refused.
    Failed,
}

/// `error` of an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeError {
    /// Error code (`BAD_REQUEST`, `NOT_FOUND`, …).
    pub code: crate::error::ErrorCode,
    /// Message naming the field or thing.
    pub message: String,
}

impl From<DomainError> for OutcomeError {
    fn from(e: DomainError) -> Self {
        OutcomeError {
            code: e.code,
            message: e.message,
        }
    }
}

/// The outcome of a command, sent to `Vc-Reply-To` (contract §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Command id.
    pub command_id: String,
    /// `succeeded` or `failed`.
    pub status: CommandStatus,
    /// What the REST call returns.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
    /// The change-log number of the commit that applied the command, when the lane holder answers right
    /// after it (absent on replays and on outcomes sent after a LiteLLM sync): `vc-api` waits until its
    /// read model has applied that change, instead of asking Redis where the log ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<u64>,
}

/// A command as `GET /api/commands/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// Command id.
    pub command_id: String,
    /// Kind name.
    pub kind: String,
    /// Status.
    pub status: CommandStatus,
    /// Result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
    /// RFC 3339.
    pub submitted_at: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Internal: the side effects to re-emit if the command is delivered again after its commit
    /// (pushes, LiteLLM syncs, events). Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub effects: Option<serde_json::Value>,
}

impl CommandRecord {
    /// The outcome this record holds, if the command completed.
    pub fn outcome(&self) -> Option<Outcome> {
        (self.status != CommandStatus::Pending).then(|| Outcome {
            command_id: self.command_id.clone(),
            status: self.status,
            result: self.result.clone(),
            error: self.error.clone(),
            change: None,
        })
    }
}

/// Deterministic entity id for a command that creates one without naming it: a UUIDv5 of the command id,
/// so a redelivered command always creates the same id.
pub fn derived_id(command_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("vc-command:{command_id}").as_bytes(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derived_id("c1"), derived_id("c1"));
        assert_ne!(derived_id("c1"), derived_id("c2"));
    }
}
