//! Emitting a command's side effects after its commit: routing pushes to edges, events.
//!
//! Every push carries the state read back from Redis now, not the one the command computed, so a
//! re-emission after a redelivery never sends anything stale (edges keep the newest version they saw).
//! A realm or model change is one message, whatever the number of agents routed through it: edges
//! derive each held agent's frame from it.

use std::collections::BTreeSet;

use bytes::Bytes;
use vc_shared::routing::{Dependency, Routing};
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::Push;

use crate::apply::Effects;

/// Publishes the pushes and events of a batch of committed commands. Pushes are coalesced (a realm,
/// model or agent changed by several commands is pushed once, with its state read now); events go out
/// in command order. Reads are batched (`MGET`).
pub async fn emit_batch(
    nats: &async_nats::Client,
    store: &Store,
    batch: &[&Effects],
) -> Result<(), EmitError> {
    let mut realms = BTreeSet::new();
    let mut models = BTreeSet::new();
    let mut agents = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for e in batch {
        realms.extend(e.realm_pushes.iter().cloned());
        models.extend(e.model_pushes.iter().cloned());
        agents.extend(e.agent_pushes.iter().cloned());
        deleted.extend(e.deleted_agents.iter().cloned());
    }
    let deps = realms
        .iter()
        .map(|id| Dependency::Realm(id.clone()))
        .chain(models.iter().map(|id| Dependency::Model(id.clone())));
    let routings = store.routings(deps).await?;
    for routing in routings.values() {
        let (subject, push) = match routing {
            Routing::Realm(r) => (
                subjects::push_realm(&r.realm_id),
                Push::RealmRouting { routing: r.clone() },
            ),
            Routing::Model(m) => (
                subjects::push_model(&m.model_id),
                Push::ModelRouting { routing: m.clone() },
            ),
        };
        publish(nats, subject, &push).await?;
    }
    let dids: Vec<String> = agents.into_iter().collect();
    let records = store.agents_by_did(&dids).await?;
    let agent_routings = store
        .routings(records.iter().filter_map(|a| a.dependency()))
        .await?;
    for a in records {
        let (mut realm, mut model) = (None, None);
        match a.dependency().and_then(|d| agent_routings.get(&d)) {
            Some(Routing::Realm(r)) => realm = Some(Box::new(r.clone())),
            Some(Routing::Model(m)) => model = Some(Box::new(m.clone())),
            None => {}
        }
        let push = Push::AgentRoute {
            did: a.did.clone(),
            route: a.route(),
            realm,
            model,
        };
        publish(nats, subjects::push_agent(&a.did), &push).await?;
    }
    for did in deleted {
        publish(
            nats,
            subjects::push_agent(&did),
            &Push::AgentDeleted { did: did.clone() },
        )
        .await?;
    }
    for ev in batch.iter().flat_map(|e| &e.events) {
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
    /// Queueing a webhook failed.
    #[error("queueing a webhook failed: {0}")]
    Webhook(String),
}
