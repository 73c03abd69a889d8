//! Emitting a command's side effects after its commit: config pushes to edges, events, LiteLLM sync.

use std::collections::BTreeMap;

use bytes::Bytes;
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::{Push, RealmGroup};

use crate::apply::Effects;

/// Most DIDs in one realm broadcast message.
const MAX_DIDS_PER_MESSAGE: usize = 4000;
/// Most bytes of groups in one realm broadcast message: half of NATS' 1 MiB payload limit (our
/// configs' `max_payload`), whatever the number and size of the groups. Bounding only the DIDs let a
/// message of many distinct states (~500 bytes each) exceed the limit; its publish then failed on
/// every retry and the command held up the whole queue.
const MAX_BYTES_PER_MESSAGE: usize = 512 * 1024;

/// Publishes the pushes and events of `effects`. Pushes carry the agents' *current* state read from
/// Redis, so a re-emission after a redelivery never sends anything stale (edges drop versions they have
/// already sent).
pub async fn emit(
    nats: &async_nats::Client,
    store: &Store,
    effects: &Effects,
) -> Result<(), EmitError> {
    for (realm_id, dids) in &effects.realm_pushes {
        let dids: Vec<String> = dids.iter().cloned().collect();
        let agents = store.agents_by_did(&dids).await?;
        // Group agents whose state is identical, so an edge encodes each distinct frame once.
        let mut groups: BTreeMap<String, RealmGroup> = BTreeMap::new();
        for a in agents {
            let k = serde_json::to_string(&a.state).unwrap_or_default();
            groups
                .entry(k)
                .or_insert_with(|| RealmGroup {
                    agents: Vec::new(),
                    state: a.state.clone(),
                })
                .agents
                .push(a.did);
        }
        for batch in batches(groups.into_values()) {
            publish(
                nats,
                subjects::push_realm(realm_id),
                &Push::RealmConfigs {
                    realm_id: realm_id.clone(),
                    groups: batch,
                },
            )
            .await?;
        }
    }
    for did in &effects.agent_pushes {
        if let Some(a) = store.agent(did).await? {
            publish(
                nats,
                subjects::push_agent(did),
                &Push::AgentConfig {
                    did: did.clone(),
                    state: a.state,
                },
            )
            .await?;
        }
    }
    for did in &effects.deleted_agents {
        publish(
            nats,
            subjects::push_agent(did),
            &Push::AgentDeleted { did: did.clone() },
        )
        .await?;
    }
    for ev in &effects.events {
        let payload = Bytes::from(serde_json::to_vec(ev).unwrap_or_default());
        nats.publish(subjects::event(&ev.kind), payload)
            .await
            .map_err(|e| EmitError::Nats(e.to_string()))?;
    }
    Ok(())
}

/// Splits a realm's groups into messages of at most [`MAX_DIDS_PER_MESSAGE`] DIDs and about
/// [`MAX_BYTES_PER_MESSAGE`] bytes (a group too big for one message is split by its DIDs).
fn batches(groups: impl IntoIterator<Item = RealmGroup>) -> Vec<Vec<RealmGroup>> {
    let mut out = Vec::new();
    let mut batch: Vec<RealmGroup> = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for g in groups {
        let state_bytes = serde_json::to_vec(&g.state).map_or(0, |v| v.len());
        // DIDs per chunk so that one chunk alone stays within the byte budget.
        let did_bytes = g.agents.iter().map(|d| d.len() + 3).max().unwrap_or(1);
        let per_chunk = ((MAX_BYTES_PER_MESSAGE.saturating_sub(state_bytes + 64)) / did_bytes)
            .clamp(1, MAX_DIDS_PER_MESSAGE);
        for chunk in g.agents.chunks(per_chunk) {
            let size = state_bytes + 64 + chunk.iter().map(|d| d.len() + 3).sum::<usize>();
            if (count + chunk.len() > MAX_DIDS_PER_MESSAGE || bytes + size > MAX_BYTES_PER_MESSAGE)
                && !batch.is_empty()
            {
                out.push(std::mem::take(&mut batch));
                (count, bytes) = (0, 0);
            }
            count += chunk.len();
            bytes += size;
            batch.push(RealmGroup {
                agents: chunk.to_vec(),
                state: g.state.clone(),
            });
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

async fn publish(nats: &async_nats::Client, subject: String, push: &Push) -> Result<(), EmitError> {
    let payload = Bytes::from(serde_json::to_vec(push).unwrap_or_default());
    nats.publish(subject, payload)
        .await
        .map_err(|e| EmitError::Nats(e.to_string()))
}

/// Why emitting failed (the command is retried; emission is idempotent).
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// Redis.
    #[error(transparent)]
    Store(#[from] vc_shared::store::StoreError),
    /// NATS.
    #[error("nats publish failed: {0}")]
    Nats(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use vc_shared::wire::{ConfigState, SealedLlmConfig};

    fn group(i: usize, dids: usize) -> RealmGroup {
        RealmGroup {
            agents: (0..dids)
                .map(|j| format!("did:key:z6Mk{i:0>20}{j:0>24}"))
                .collect(),
            state: ConfigState {
                config: Some(SealedLlmConfig {
                    provider: "openai-compatible".into(),
                    model: format!("openai/model-{i}"),
                    base_url: Some("http://litellm.example:4000".into()),
                    api_key_sealed: Some(format!("v1.{}", "A".repeat(120))),
                    allowed_models: Some(vec!["openai/a".into(), "openai/b".into()]),
                    system_prompt: None,
                    max_tokens: None,
                }),
                version: 7,
                mode: None,
                realm_id: Some("r".into()),
            },
        }
    }

    fn check(groups: Vec<RealmGroup>) -> usize {
        let total: usize = groups.iter().map(|g| g.agents.len()).sum();
        let out = batches(groups);
        let mut seen = 0;
        for b in &out {
            let msg = Push::RealmConfigs {
                realm_id: "r".into(),
                groups: b.clone(),
            };
            let len = serde_json::to_vec(&msg).unwrap().len();
            assert!(len <= 1024 * 1024, "message of {len} bytes");
            let dids: usize = b.iter().map(|g| g.agents.len()).sum();
            assert!(dids <= MAX_DIDS_PER_MESSAGE);
            seen += dids;
        }
        assert_eq!(seen, total, "every DID is in one message");
        out.len()
    }

    #[test]
    fn many_distinct_states_fit_the_payload_limit() {
        assert!(check((0..5000).map(|i| group(i, 1)).collect()) > 1);
    }

    #[test]
    fn one_state_for_many_agents_is_split_by_dids() {
        assert_eq!(check(vec![group(0, 3000)]), 1);
        assert_eq!(check(vec![group(0, 10_000)]), 3);
    }
}
