//! Reading routing states and deriving agents' effective configs from them (the API, the edges and the
//! worker's pushes all read them here).

use std::collections::{BTreeSet, HashMap};

use super::{decode_json, keys, timed, Store, StoreError};
use crate::domain::StoredAgent;
use crate::routing::{effective, Dependency, ModelRouting, RealmRouting, Routing};
use crate::wire::ConfigState;

fn routing_key(dep: &Dependency) -> String {
    match dep {
        Dependency::Realm(id) => keys::routing_realm(id),
        Dependency::Model(id) => keys::routing_model(id),
    }
}

impl Store {
    /// A realm's routing state (a tombstone once deleted; `None` before its first key).
    pub async fn realm_routing(&self, id: &str) -> Result<Option<RealmRouting>, StoreError> {
        self.get_json(&keys::routing_realm(id)).await
    }

    /// A model's routing state (a tombstone once deleted).
    pub async fn model_routing(&self, id: &str) -> Result<Option<ModelRouting>, StoreError> {
        self.get_json(&keys::routing_model(id)).await
    }

    /// The routing state of one dependency.
    pub async fn routing(&self, dep: &Dependency) -> Result<Option<Routing>, StoreError> {
        Ok(match dep {
            Dependency::Realm(id) => self.realm_routing(id).await?.map(Routing::Realm),
            Dependency::Model(id) => self.model_routing(id).await?.map(Routing::Model),
        })
    }

    /// The routing states of several dependencies (missing ones absent), `MGET` in chunks of 500.
    pub async fn routings(
        &self,
        deps: impl IntoIterator<Item = Dependency>,
    ) -> Result<HashMap<Dependency, Routing>, StoreError> {
        let deps: Vec<Dependency> = deps
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = HashMap::with_capacity(deps.len());
        for chunk in deps.chunks(500) {
            let names: Vec<String> = chunk.iter().map(routing_key).collect();
            let mut c = self.conn.clone();
            let raw: Vec<Option<String>> =
                timed(redis::cmd("MGET").arg(&names).query_async(&mut c)).await?;
            for ((dep, key), v) in chunk.iter().zip(&names).zip(raw) {
                let routing = match dep {
                    Dependency::Realm(_) => {
                        decode_json::<RealmRouting>(key, v)?.map(Routing::Realm)
                    }
                    Dependency::Model(_) => {
                        decode_json::<ModelRouting>(key, v)?.map(Routing::Model)
                    }
                };
                if let Some(r) = routing {
                    out.insert(dep.clone(), r);
                }
            }
        }
        Ok(out)
    }

    /// An agent's effective config state (reads its dependency's routing).
    pub async fn effective_state(&self, agent: &StoredAgent) -> Result<ConfigState, StoreError> {
        let routing = match agent.dependency() {
            Some(dep) => self.routing(&dep).await?,
            None => None,
        };
        Ok(effective(&agent.route(), routing.as_ref()))
    }

    /// The effective config states of several agents, in their order (one read per distinct
    /// dependency).
    pub async fn effective_states(
        &self,
        agents: &[StoredAgent],
    ) -> Result<Vec<ConfigState>, StoreError> {
        let routings = self
            .routings(agents.iter().filter_map(StoredAgent::dependency))
            .await?;
        Ok(agents
            .iter()
            .map(|a| {
                let dep = a.dependency().and_then(|d| routings.get(&d));
                effective(&a.route(), dep)
            })
            .collect())
    }
}
