//! Helpers shared by the fault scenarios (`fault_*.rs`, issue 5 items 1–5): sizes (CI or soak), a
//! deterministic generator of mixed commands, publishing with PubAck tracking, and normalized snapshots of
//! the whole observable state (REST views and the LiteLLM emulator) for comparisons.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vc_shared::command::CommandStatus;
use vc_shared::store::{keys, Store};
use vc_tests::stack::Stack;

/// `VC_SOAK=1` (set by `scripts/soak`) selects the long variants.
pub fn soak() -> bool {
    std::env::var("VC_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A size: `$var` when set, else the soak or the CI value.
pub fn size(var: &str, ci: usize, soak_value: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(if soak() { soak_value } else { ci })
}

/// `d` scaled by `VC_TEST_PATIENCE`.
pub fn secs(s: u64) -> Duration {
    vc_tests::wait::scaled(Duration::from_secs(s))
}

#[allow(unused_imports)]
pub use vc_tests::mix::{mixed_commands, publish_all, Cmd};

/// `{vc}:rev`: every completed command (applied or refused) bumps it exactly once.
pub async fn rev(store: &Store) -> u64 {
    store.rev().await.unwrap_or(0)
}

/// Waits until `{vc}:rev` reaches `n` (bounded), returning how long it took.
pub async fn wait_rev(store: &Store, n: u64, within: Duration) -> Duration {
    let t = Instant::now();
    vc_tests::wait::eventually(&format!("{{vc}}:rev reaches {n}"), within, || async {
        let r = store.rev().await.map_err(|e| e.to_string())?;
        if r >= n {
            Ok(r)
        } else {
            Err(format!("at {r}"))
        }
    })
    .await;
    t.elapsed()
}

/// The status of each command record (`None` when missing).
pub async fn statuses(store: &Store, ids: &[String]) -> HashMap<String, Option<CommandStatus>> {
    let mut out = HashMap::new();
    for id in ids {
        let s = store
            .command(id)
            .await
            .expect("read record")
            .map(|r| r.status);
        out.insert(id.clone(), s);
    }
    out
}

/// Every audit event as `(event id, event JSON)`, oldest first.
pub async fn audit(store: &Store) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .audit_after(cursor.as_deref(), 1000)
            .await
            .expect("audit");
        if page.is_empty() {
            return out;
        }
        cursor = page.last().map(|(id, _)| id.clone());
        for (_, data) in page {
            let v: Value = serde_json::from_str(&data).expect("audit JSON");
            out.push((v["id"].as_str().unwrap_or_default().to_string(), v));
        }
    }
}

/// Audit events per command id (the event id is `<commandId>#<n>`), checking no event id repeats.
pub fn events_per_command(events: &[(String, Value)]) -> BTreeMap<String, usize> {
    let mut seen = HashSet::new();
    let mut per = BTreeMap::new();
    for (id, _) in events {
        assert!(seen.insert(id.clone()), "audit event {id} written twice");
        let cmd = id.split('#').next().unwrap_or_default().to_string();
        *per.entry(cmd).or_insert(0) += 1;
    }
    per
}

/// Removes volatile fields (timestamps, key prefixes and ids: key values are random) recursively.
pub fn normalize(v: &mut Value) {
    const VOLATILE: [&str; 11] = [
        "createdAt",
        "updatedAt",
        "syncedAt",
        "lastSeen",
        "keyPrefix",
        "keyId",
        "grantedAt",
        "submittedAt",
        "completedAt",
        "since",
        "at",
    ];
    match v {
        Value::Object(m) => {
            for k in VOLATILE {
                m.remove(k);
            }
            for (_, x) in m.iter_mut() {
                normalize(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn sorted_by(mut v: Vec<Value>, field: &str) -> Vec<Value> {
    v.sort_by(|a, b| a[field].to_string().cmp(&b[field].to_string()));
    v
}

/// The observable state, normalized: models, realms, agents, each agent's llm-config (key values are
/// never visible; the key's *models* are), and LiteLLM's deployments and keys (ids, names, models,
/// budgets; not key values).
pub async fn snapshot(s: &Stack) -> Value {
    // `no-cache`: the API's read model catches up with everything committed first (these commands were
    // published on NATS, not through this API's REST writes).
    let get = |path: String| async move {
        let r = s
            .request(
                reqwest::Method::GET,
                &path,
                None,
                None,
                &[("cache-control", "no-cache")],
            )
            .await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.body
    };
    // Every page of a list.
    let all = |path: &'static str, key: &'static str| async move {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                Some(c) => format!("{path}?limit=1000&cursor={c}"),
                None => format!("{path}?limit=1000"),
            };
            let page = get(url).await;
            items.extend(page[key].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(c) => next = Some(c.to_string()),
                None => return items,
            }
        }
    };
    let models = sorted_by(all("/api/models", "models").await, "id");
    let realms = sorted_by(all("/api/realms", "realms").await, "id");
    let mut agents = sorted_by(all("/api/agents", "agents").await, "did");
    let mut configs = serde_json::Map::new();
    for a in &mut agents {
        if let Some(rs) = a["realms"].as_array_mut() {
            rs.sort_by_key(|r| r["realmId"].to_string());
        }
        let did = a["did"].as_str().unwrap_or_default().to_string();
        configs.insert(
            did.clone(),
            get(format!("/api/agents/{did}/llm-config")).await,
        );
    }
    let mut state = json!({
        "models": models,
        "realms": realms,
        "agents": agents,
        "configs": configs,
        "litellm": litellm_snapshot(s),
    });
    normalize(&mut state);
    state
}

/// LiteLLM's deployments (id, name, upstream, base) and keys (alias, sorted models, budget, blocked,
/// realm metadata), sorted.
pub fn litellm_snapshot(s: &Stack) -> Value {
    let Some(emu) = s.emu.as_ref().map(|e| &e.emu) else {
        return Value::Null;
    };
    let mut deps: Vec<Value> = emu
        .deployments()
        .into_iter()
        .map(|d| {
            json!({"id": d.id, "modelName": d.model_name,
                "model": d.litellm_params.get("model"), "apiBase": d.litellm_params.get("api_base"),
                "hasKey": d.litellm_params.contains_key("api_key")})
        })
        .collect();
    deps.sort_by_key(|d| d["id"].to_string());
    let mut ks: Vec<Value> = emu
        .keys()
        .into_iter()
        .map(|k| {
            let mut models = k.models.clone();
            models.sort();
            json!({"alias": k.key_alias, "models": models, "maxBudget": k.max_budget,
                "budgetDuration": k.budget_duration, "blocked": k.blocked,
                "realmId": k.metadata.get("vc_realm_id"), "realmName": k.metadata.get("vc_realm_name")})
        })
        .collect();
    ks.sort_by_key(|k| k["alias"].to_string());
    json!({"deployments": deps, "keys": ks})
}

/// Checks LiteLLM holds no duplicate: one deployment per id and per name, one key per alias.
pub fn assert_no_litellm_duplicates(s: &Stack) {
    let emu = &s.emu.as_ref().expect("emulator").emu;
    let deps = emu.deployments();
    let ids: HashSet<_> = deps.iter().map(|d| d.id.clone()).collect();
    let names: HashSet<_> = deps.iter().map(|d| d.model_name.clone()).collect();
    assert_eq!(ids.len(), deps.len(), "duplicate deployment ids: {deps:?}");
    assert_eq!(names.len(), deps.len(), "duplicate deployment names");
    let ks = emu.keys();
    let aliases: HashSet<_> = ks.iter().map(|k| k.key_alias.clone()).collect();
    assert_eq!(aliases.len(), ks.len(), "duplicate keys per alias");
}

/// Waits until every model and realm key shows `litellm.state` `synced` (bounded); returns the time.
pub async fn wait_all_synced(s: &Stack, within: Duration) -> Duration {
    let t = Instant::now();
    vc_tests::wait::eventually("every model and realm key synced", within, || async {
        let models = s.get("/api/models").await.body;
        for m in models["models"].as_array().cloned().unwrap_or_default() {
            if m["litellm"]["state"] != "synced" {
                return Err(format!("model {} is {}", m["id"], m["litellm"]));
            }
        }
        let realms = s.get("/api/realms").await.body;
        for r in realms["realms"].as_array().cloned().unwrap_or_default() {
            if !r["routerKey"].is_null() && r["routerKey"]["litellm"]["state"] != "synced" {
                return Err(format!(
                    "realm {} key is {}",
                    r["id"], r["routerKey"]["litellm"]
                ));
            }
        }
        Ok(())
    })
    .await;
    t.elapsed()
}

/// The first difference between two JSON values, as a path and both sides (for readable failures).
pub fn first_diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (l, r) = (
                    x.get(k.as_str()).unwrap_or(&Value::Null),
                    y.get(k.as_str()).unwrap_or(&Value::Null),
                );
                if let Some(d) = first_diff(l, r, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_diff(l, r, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

/// Reads a key straight from Redis (assertions on raw records).
pub async fn raw_get(store: &Store, key: &str) -> Option<String> {
    let mut c = store.conn();
    redis::cmd("GET").arg(key).query_async(&mut c).await.ok()
}

/// The `{vc}:rev` key name (for messages).
pub const REV_KEY: &str = keys::REV;

/// `POST /api/realms {name}` as a load generator sends it: the HTTP status (0 when the request did
/// not get through) and the realm id (or the command id of a 202).
pub async fn post_realm(
    http: &reqwest::Client,
    api_url: &str,
    name: &str,
) -> (u16, Option<String>) {
    let r = http
        .post(format!("{api_url}/api/realms"))
        .bearer_auth(vc_tests::stack::ADMIN_TOKEN)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await;
    match r {
        Ok(r) => {
            let st = r.status().as_u16();
            let b: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            let id = b["realm"]["id"]
                .as_str()
                .or(b["commandId"].as_str())
                .map(str::to_string);
            (st, id)
        }
        Err(_) => (0, None),
    }
}

/// The info of the shared command consumer `vc-worker`.
pub async fn cmd_consumer_info(
    js: &async_nats::jetstream::Context,
) -> Option<async_nats::jetstream::consumer::Info> {
    let stream = js.get_stream(vc_shared::subjects::CMD_STREAM).await.ok()?;
    let mut c = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            vc_shared::subjects::CMD_CONSUMER,
        )
        .await
        .ok()?;
    c.info().await.ok().cloned()
}
