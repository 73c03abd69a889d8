//! A deterministic mix of commands (the soak's and the benchmarks' workload) and publishing it on
//! JetStream with PubAck tracking.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vc_shared::command::{HDR_MSG_ID, HDR_REPLY_TO};

/// One command to publish.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// `Nats-Msg-Id`.
    pub id: String,
    /// `vc.cmd.<kind>`.
    pub subject: String,
    /// JSON body.
    pub body: Value,
}

impl Cmd {
    /// A command of `kind` with a fresh id.
    pub fn new(kind: &str, body: Value) -> Cmd {
        Cmd {
            id: uuid::Uuid::new_v4().to_string(),
            subject: format!("vc.cmd.{kind}"),
            body,
        }
    }

    /// The kind (`model.register`, ...).
    pub fn kind(&self) -> &str {
        self.subject.trim_start_matches("vc.cmd.")
    }
}

/// A deterministic stream of `n` mixed commands: model register/update, realm create, grant (some with
/// budgets), revoke, agent register, realm join and llm-config set in its three forms. Entities get
/// explicit ids so later commands can name them; some commands are refused by the worker (a revoke of a
/// model not granted, a realm config for a non-member...), which is part of the mix.
pub fn mixed_commands(n: usize, seed: u64) -> Vec<Cmd> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut models: Vec<String> = Vec::new();
    let mut realms: Vec<String> = Vec::new();
    let mut agents: Vec<String> = Vec::new();
    let max_models = (n / 25).clamp(4, 60);
    let max_realms = (n / 40).clamp(3, 40);
    let max_agents = (n / 6).clamp(5, 3000);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let roll: u32 = rng.gen_range(0..100);
        // 0 model.register, 1 model.update, 2 realm.create, 3 grant, 4 revoke, 5 agent.register,
        // 6 realm.agent.add, 7 llm-config set.
        let what = match roll {
            0..=7 if models.len() < max_models => 0,
            0..=19 => 1,
            20..=25 if realms.len() < max_realms => 2,
            20..=43 => 3,
            44..=53 => 4,
            54..=67 if agents.len() < max_agents => 5,
            54..=81 => 6,
            _ => 7,
        };
        // Fall back to creating what a command needs when nothing exists yet.
        let mut what = what;
        if models.is_empty() && matches!(what, 1 | 3 | 4 | 7) {
            what = 0;
        }
        if realms.is_empty() && matches!(what, 3 | 4 | 6) {
            what = 2;
        }
        if agents.is_empty() && matches!(what, 6 | 7) {
            what = 5;
        }
        let pick = |rng: &mut StdRng, v: &[String]| v[rng.gen_range(0..v.len())].clone();
        let c = match what {
            0 => {
                let i = models.len();
                let id = format!("model-{seed}-{i}");
                models.push(id.clone());
                let mut body = json!({"id": id, "name": format!("Model {i}"), "provider": "openai",
                    "modelId": format!("gpt-{i}")});
                if rng.gen_bool(0.5) {
                    body["apiKey"] = json!(format!("sk-upstream-{seed}-{i}"));
                }
                Cmd::new("model.register", body)
            }
            1 => {
                let id = pick(&mut rng, &models);
                let body = match rng.gen_range(0..4) {
                    0 => json!({"id": id, "name": format!("Renamed {}", rng.gen_range(0..1000))}),
                    1 => json!({"id": id, "modelId": format!("gpt-v{}", rng.gen_range(0..1000))}),
                    2 => json!({"id": id, "status": "inactive"}),
                    _ => json!({"id": id, "status": "active"}),
                };
                Cmd::new("model.update", body)
            }
            2 => {
                let i = realms.len();
                let id = format!("realm-{seed}-{i}");
                realms.push(id.clone());
                Cmd::new(
                    "realm.create",
                    json!({"id": id, "name": format!("Realm {i}")}),
                )
            }
            3 => {
                let mut body = json!({"modelId": pick(&mut rng, &models),
                    "realmId": pick(&mut rng, &realms)});
                match rng.gen_range(0..10) {
                    0 => body["monthlyBudgetUsd"] = json!(rng.gen_range(1..500)),
                    1 => body["monthlyBudgetUsd"] = Value::Null,
                    _ => {}
                }
                Cmd::new("realm.grant", body)
            }
            4 => Cmd::new(
                "realm.revoke",
                json!({"modelId": pick(&mut rng, &models), "realmId": pick(&mut rng, &realms)}),
            ),
            5 => {
                let k = vc_shared::did::generate_key();
                let did = vc_shared::did::did_from_key(&k.verifying_key());
                agents.push(did.clone());
                Cmd::new(
                    "agent.register",
                    json!({"did": did, "name": format!("agent {}", agents.len())}),
                )
            }
            6 => Cmd::new(
                "realm.agent.add",
                json!({"realmId": pick(&mut rng, &realms), "agentDid": pick(&mut rng, &agents),
                    "isPrimary": rng.gen_bool(0.3)}),
            ),
            _ => {
                let did = pick(&mut rng, &agents);
                let body = match rng.gen_range(0..3) {
                    0 if !realms.is_empty() => json!({"did": did,
                        "realmId": pick(&mut rng, &realms), "realmModelId": pick(&mut rng, &models)}),
                    1 => json!({"did": did, "registryModelId": pick(&mut rng, &models)}),
                    _ => json!({"did": did, "provider": "openai",
                        "model": format!("manual-{}", rng.gen_range(0..100)),
                        "apiKey": format!("sk-manual-{}", rng.gen_range(0..100))}),
                };
                Cmd::new("agent.llm_config.set", body)
            }
        };
        out.push(c);
    }
    out
}

/// Publishes `cmds` in order on one connection (pipelined, `window` PubAcks outstanding at most) and
/// returns the ids JetStream acknowledged, in publish order, with the ones it refused.
pub async fn publish_all(
    js: &async_nats::jetstream::Context,
    cmds: &[Cmd],
    window: usize,
    reply_to: Option<&str>,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut acked = Vec::with_capacity(cmds.len());
    let mut refused = Vec::new();
    for chunk in cmds.chunks(window.max(1)) {
        let mut pending = Vec::with_capacity(chunk.len());
        for c in chunk {
            let mut h = async_nats::HeaderMap::new();
            h.insert(HDR_MSG_ID, c.id.as_str());
            if let Some(r) = reply_to {
                h.insert(HDR_REPLY_TO, r);
            }
            let body = serde_json::to_vec(&c.body).expect("json").into();
            pending.push((
                c.id.clone(),
                js.publish_with_headers(c.subject.clone(), h, body).await,
            ));
        }
        for (id, p) in pending {
            match p {
                Ok(ack) => match ack.await {
                    Ok(_) => acked.push(id),
                    Err(e) => refused.push((id, e.to_string())),
                },
                Err(e) => refused.push((id, e.to_string())),
            }
        }
    }
    (acked, refused)
}
