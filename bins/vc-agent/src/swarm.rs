//! Many agents in one process, for tests and benchmarks.

use ed25519_dalek::SigningKey;

use crate::{AgentClient, AgentHandle, AgentOptions, AgentStatus};

/// One agent of a [`Swarm`].
pub struct SwarmAgent {
    /// Its DID.
    pub did: String,
    handle: AgentHandle,
}

impl SwarmAgent {
    /// A copy of its status.
    pub fn status(&self) -> AgentStatus {
        self.handle.status()
    }

    /// The version it holds.
    pub fn version(&self) -> Option<u64> {
        self.handle.version()
    }
}

/// Agents running side by side; agent `i` tries edge `i mod n` first, so they spread over the edges.
pub struct Swarm {
    agents: Vec<SwarmAgent>,
}

impl Swarm {
    /// Starts one agent per key (in the background).
    pub fn spawn(keys: Vec<SigningKey>, opts: &AgentOptions) -> Swarm {
        let agents = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let mut o = opts.clone();
                o.first_edge = opts.first_edge + i;
                let client = AgentClient::new(key, o);
                let did = client.did().to_string();
                SwarmAgent {
                    did,
                    handle: client.spawn(),
                }
            })
            .collect();
        Swarm { agents }
    }

    /// The agents, in key order.
    pub fn agents(&self) -> &[SwarmAgent] {
        &self.agents
    }

    /// How many agents hold a live session.
    pub fn connected(&self) -> usize {
        self.agents
            .iter()
            .filter(|a| a.handle.status().session_id.is_some())
            .count()
    }

    /// Stops every agent (each closes its session with 1000).
    pub async fn stop(self) {
        futures::future::join_all(self.agents.into_iter().map(|a| a.handle.stop())).await;
    }
}
