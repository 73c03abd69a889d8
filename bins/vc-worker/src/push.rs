//! Emitting a command's side effects after its commit: routing pushes to edges, events.
//!
//! Every push carries the state read back from Redis now, not the one the command computed, so a
//! re-emission after a redelivery never sends anything stale (edges keep the newest version they saw).
//! A realm or model change is one message, whatever the number of agents routed through it: edges
//! derive each held agent's frame from it.

use bytes::Bytes;
use vc_shared::routing::Routing;
use vc_shared::store::Store;
use vc_shared::subjects;
use vc_shared::wire::Push;

use crate::apply::Effects;

/// Publishes the pushes and events of `effects`.
pub async fn emit(
    nats: &async_nats::Client,
    store: &Store,
    effects: &Effects,
) -> Result<(), EmitError> {
    for realm_id in &effects.realm_pushes {
        if let Some(routing) = store.realm_routing(realm_id).await? {
            publish(
                nats,
                subjects::push_realm(realm_id),
                &Push::RealmRouting { routing },
            )
            .await?;
        }
    }
    for model_id in &effects.model_pushes {
        if let Some(routing) = store.model_routing(model_id).await? {
            publish(
                nats,
                subjects::push_model(model_id),
                &Push::ModelRouting { routing },
            )
            .await?;
        }
    }
    for did in &effects.agent_pushes {
        if let Some(push) = agent_push(store, did).await? {
            publish(nats, subjects::push_agent(did), &push).await?;
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

/// The agent's route with the routing state it depends on (`None` once the agent is gone).
pub async fn agent_push(store: &Store, did: &str) -> Result<Option<Push>, EmitError> {
    let Some(agent) = store.agent(did).await? else {
        return Ok(None);
    };
    let (mut realm, mut model) = (None, None);
    if let Some(dep) = agent.dependency() {
        match store.routing(&dep).await? {
            Some(Routing::Realm(r)) => realm = Some(Box::new(r)),
            Some(Routing::Model(m)) => model = Some(Box::new(m)),
            None => {}
        }
    }
    Ok(Some(Push::AgentRoute {
        did: did.to_string(),
        route: agent.route(),
        realm,
        model,
    }))
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
