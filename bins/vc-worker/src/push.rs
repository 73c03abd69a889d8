//! Emitting a command's side effects after its commit: config pushes to edges, events, LiteLLM sync.

use std::collections::BTreeMap;

use bytes::Bytes;
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::{Push, RealmGroup};

use crate::apply::Effects;

/// Most DIDs in one realm broadcast message (keeps each message far below NATS' 1 MiB payload limit).
const MAX_DIDS_PER_MESSAGE: usize = 4000;

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
        let mut batch: Vec<RealmGroup> = Vec::new();
        let mut count = 0;
        for g in groups.into_values() {
            for chunk in g.agents.chunks(MAX_DIDS_PER_MESSAGE) {
                if count + chunk.len() > MAX_DIDS_PER_MESSAGE && !batch.is_empty() {
                    publish(
                        nats,
                        subjects::push_realm(realm_id),
                        &Push::RealmConfigs {
                            realm_id: realm_id.clone(),
                            groups: std::mem::take(&mut batch),
                        },
                    )
                    .await?;
                    count = 0;
                }
                count += chunk.len();
                batch.push(RealmGroup {
                    agents: chunk.to_vec(),
                    state: g.state.clone(),
                });
            }
        }
        if !batch.is_empty() {
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
