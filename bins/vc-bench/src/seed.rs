//! Fleets written straight into Redis, exactly as the worker writes registered agents routed through a
//! realm (records, indexes, memberships): registering 50,000 agents through the command path would
//! measure the command path instead of what a benchmark asks about.

use vc_shared::domain::{now_rfc3339, ConfigSource, Membership, StoredAgent};
use vc_shared::store::{keys, Store};

/// Writes `dids` as registered agents, members of `realm_id` and routed through it to `model_id`.
pub(crate) async fn routed_agents(
    store: &Store,
    realm_id: &str,
    model_id: &str,
    dids: &[String],
) -> Result<(), String> {
    let version = store.version_seq().await.map_err(|e| e.to_string())?;
    let now = now_rfc3339();
    let mut c = store.conn();
    for chunk in dids.chunks(500) {
        let mut p = redis::pipe();
        for did in chunk {
            let agent = StoredAgent {
                did: did.clone(),
                name: "bench agent".into(),
                created_at: now.clone(),
                source: Some(ConfigSource::Realm {
                    realm_id: realm_id.into(),
                    model_id: model_id.into(),
                }),
                version,
            };
            let m = serde_json::to_string(&Membership {
                realm_id: realm_id.into(),
                agent_did: did.clone(),
                is_primary: true,
                joined_at: now.clone(),
            })
            .map_err(|e| e.to_string())?;
            let a = serde_json::to_string(&agent).map_err(|e| e.to_string())?;
            p.cmd("SET").arg(keys::agent(did)).arg(a).ignore();
            p.cmd("SADD").arg(keys::AGENTS).arg(did).ignore();
            p.cmd("SADD")
                .arg(keys::realm_routed(realm_id))
                .arg(did)
                .ignore();
            p.cmd("HSET")
                .arg(keys::realm_members(realm_id))
                .arg(did)
                .arg(&m)
                .ignore();
            p.cmd("HSET")
                .arg(keys::agent_realms(did))
                .arg(realm_id)
                .arg(&m)
                .ignore();
        }
        let () = p.query_async(&mut c).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
