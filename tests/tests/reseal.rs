//! Key rotation end to end: secrets sealed under master key A (one of them in the older `v1` format, as
//! a deployment upgraded from the previous version holds it), the workers stopped, `vc-worker reseal`
//! (the CLI, as a process) with B as `VC_SECRET_KEY` and A as `VC_SECRET_KEY_PREVIOUS`, then a worker,
//! an API and an edge holding only B (the edge only B's `agent-config-key` key): every secret opens,
//! every agent gets its key, and every sealed value in Redis is `v2.<key id of B>.`.

mod edge_support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use edge_support::*;
use serde_json::{json, Value};
use vc_edge::EdgeConfig;
use vc_shared::crypto::{Purpose, Sealer, SecretKey};
use vc_shared::domain::ConfigSource;
use vc_shared::store::keys;
use vc_tests::assert_eventually;
use vc_tests::stack::{edge_sealer, Stack};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_vc-worker-under-test");

/// A `v1` value as the previous version sealed it: XChaCha20-Poly1305 under the master key itself, the
/// purpose's label as associated data (written out here, not with `vc_shared::crypto`, which seals
/// `v2` only).
fn seal_v1(key: &SecretKey, label: &str, plaintext: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key.to_base64())
        .unwrap();
    let cipher = XChaCha20Poly1305::new(raw.as_slice().into());
    let nonce = [42u8; 24];
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: label.as_bytes(),
            },
        )
        .unwrap();
    format!("v1.{}", URL_SAFE_NO_PAD.encode([&nonce[..], &ct].concat()))
}

/// `vc-worker-under-test <args>` with only `env` (and `PATH`): exit status, stdout, stderr.
async fn worker_cli(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = tokio::process::Command::new(WORKER_BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("run vc-worker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every string value in Redis (catalog records, canary, command records…), with its key.
async fn all_strings(s: &Stack) -> Vec<(String, String)> {
    let mut c = s.store.conn();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in names {
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        if t == "string" {
            let v: String = redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap();
            out.push((k, v));
        }
    }
    out
}

async fn put_raw(s: &Stack, key: &str, value: &str) {
    let mut c = s.store.conn();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// Rotation from A (with a `v1` value left by an older version) to B: a worker or an edge without A
/// refuses to start before the re-seal; the re-seal (CLI) rewrites every sealed value and a second run
/// rewrites nothing; afterwards services holding only B serve every secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_moves_every_secret_to_the_new_key() {
    let mut s = Stack::builder().litellm(true).start().await;
    let a = s.secret.clone();
    let b = SecretKey::generate();
    let (kid_a, kid_b) = (a.key_id().to_string(), b.key_id().to_string());

    // Secrets under A: a model's upstream key, a realm's virtual key (minted by the grant), a manual
    // agent key; the routing states edges read carry the realm's and the model's keys.
    let upstream = "sk-upstream-reseal-1111";
    let manual = "sk-manual-reseal-2222";
    let m = s
        .post(
            "/api/models",
            json!({"name": "Rotated", "provider": "openai-compatible", "modelId": "m",
                   "baseUrl": "http://upstream.example/api", "apiKey": upstream}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let model = m.body["model"]["id"].as_str().unwrap().to_string();
    let r = s.post("/api/realms", json!({"name": "Rotation"})).await;
    let realm = r.body["realm"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model}/realms"),
            json!({"realmId": realm}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let ks = keys(3);
    let (d_manual, d_registry, d_realm) = (&ks[0].1, &ks[1].1, &ks[2].1);
    for (_, did) in &ks {
        let r = s
            .post("/api/agents", json!({"did": did, "name": "a"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = s
        .put(
            &format!("/api/agents/{d_manual}/llm-config"),
            json!({"provider": "openai", "model": "gpt-x", "apiKey": manual}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .put(
            &format!("/api/agents/{d_registry}/llm-config"),
            json!({"registryModelId": model}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .post(
            &format!("/api/realms/{realm}/agents"),
            json!({"agentDid": d_realm}),
        )
        .await;
    assert_eq!(r.body["llmPushed"], true, "{}", r.text);
    let stored_realm = s.store.realm(&realm).await.unwrap().unwrap();
    let realm_key = s
        .sealer()
        .open(
            Purpose::RealmKey,
            &realm,
            &stored_realm.key.as_ref().unwrap().key_sealed,
        )
        .unwrap();

    // Stop the workers (the re-seal takes the command lane) and make the model's key a `v1` value, as
    // an older version left it.
    for w in s.workers.drain(..) {
        w.stop().await;
    }
    let model_key = keys::model(&model);
    let mut rec: Value =
        serde_json::from_str(&s.store.raw_get(&model_key).await.unwrap().unwrap()).unwrap();
    rec["apiKeySealed"] = json!(seal_v1(&a, "vc:model-api-key", upstream));
    put_raw(&s, &model_key, &rec.to_string()).await;
    assert_eq!(
        s.sealer()
            .open(
                Purpose::ModelApiKey,
                &model,
                rec["apiKeySealed"].as_str().unwrap()
            )
            .unwrap(),
        upstream,
        "v1 values still open with the master key"
    );

    // Before the re-seal, services holding only B refuse to start, naming A's key id.
    let only_b = vc_worker::Deps {
        nats: s.nats_client().await,
        store: vc_shared::store::Store::connect(&s.redis_url())
            .await
            .unwrap(),
        sealer: Sealer::new(b.clone()),
        litellm: None,
        stream_replicas: 1,
        reconcile_every: Duration::ZERO,
        key_rotation_grace: Duration::from_secs(30),
        budget: Default::default(),
    };
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        vc_worker::run(None, only_b, std::future::pending()),
    )
    .await
    .expect("refused at once")
    .unwrap_err();
    assert!(err.to_string().contains(&kid_a), "{err}");
    let edge_only_b = vc_edge::Deps {
        nats: s.nats_client().await,
        store: vc_shared::store::Store::connect(&s.redis_url())
            .await
            .unwrap(),
        sealer: edge_sealer(&b, &[]),
        config: EdgeConfig::new("edge-only-b"),
        metrics: vc_edge::Metrics::new(),
        probe: vc_edge::Probe::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        vc_edge::run(listener, edge_only_b, std::future::pending()),
    )
    .await
    .expect("refused at once")
    .unwrap_err();
    assert!(err.to_string().contains(&kid_a), "{err}");

    // The re-seal, as an operator runs it, then again.
    let env = [
        ("REDIS_URL", s.redis_url()),
        ("VC_SECRET_KEY", b.to_base64()),
        ("VC_SECRET_KEY_PREVIOUS", a.to_base64()),
    ];
    let (ok, out, err) = worker_cli(&["reseal"], &env).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("current key id {kid_b}")), "{out}");
    // The words of the `total` line of a reseal's report.
    let total = |out: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.trim_start().starts_with("total"))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // Model, realm, manual agent, realm routing, model routing, canary.
    assert_eq!(
        total(&out),
        ["total", "6", "sealed", "6", "rewritten", "0", "failed"],
        "{out}"
    );
    let (ok, out, err) = worker_cli(&["reseal"], &env).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        total(&out),
        ["total", "6", "sealed", "0", "rewritten", "0", "failed"],
        "a second run rewrites nothing: {out}"
    );

    // Every sealed value is B's now; nothing of A (v1 or v2) is left anywhere in Redis.
    let strings = all_strings(&s).await;
    for (k, v) in &strings {
        assert!(!v.contains("\"v1.") && !v.starts_with("v1."), "{k}: {v}");
        assert!(!v.contains(&format!("v2.{kid_a}.")), "{k}: {v}");
    }
    let sealed_in = |key: &str, pointer: &str| -> String {
        let v = &strings.iter().find(|(k, _)| k == key).unwrap().1;
        if pointer.is_empty() {
            return v.clone();
        }
        let rec: Value = serde_json::from_str(v).unwrap();
        rec.pointer(pointer).unwrap().as_str().unwrap().to_string()
    };
    let sealed = [
        sealed_in(&keys::model(&model), "/apiKeySealed"),
        sealed_in(&keys::realm(&realm), "/key/keySealed"),
        sealed_in(&keys::agent(d_manual), "/source/apiKeySealed"),
        sealed_in(&keys::routing_realm(&realm), "/keySealed"),
        sealed_in(&keys::routing_model(&model), "/config/apiKeySealed"),
        sealed_in(keys::SECRET_CHECK, ""),
    ];
    for v in &sealed {
        assert!(v.starts_with(&format!("v2.{kid_b}.")), "{v}");
    }
    // B alone opens them, each bound to its entity.
    let b_only = Sealer::new(b.clone());
    assert_eq!(
        b_only
            .open(Purpose::ModelApiKey, &model, &sealed[0])
            .unwrap(),
        upstream
    );
    assert_eq!(
        b_only.open(Purpose::RealmKey, &realm, &sealed[1]).unwrap(),
        realm_key
    );
    assert_eq!(
        b_only
            .open(Purpose::AgentConfigKey, d_manual, &sealed[2])
            .unwrap(),
        manual
    );
    assert!(b_only
        .open(Purpose::RealmKey, "another-realm", &sealed[1])
        .is_err());

    // Services holding only B: a worker (its canary check passes), an API with B's command key, an
    // edge with B's edge key.
    s.secret = b.clone();
    s.previous_secrets = Vec::new();
    let w = s.spawn_worker().await;
    s.workers.push(w);
    let old_api = s.api.take();
    let api = s.spawn_api().await;
    s.api_url = format!("http://{}", api.addr.unwrap());
    s.api = Some(api);
    if let Some(old) = old_api {
        old.stop().await;
    }
    let edge = spawn_edge(&s.nats.url(), &s.redis.url(), &b, EdgeConfig::new("edge-b")).await;
    let agents: Vec<_> = ks
        .iter()
        .map(|(k, _)| spawn_agent(k, agent_opts(&[&edge])))
        .collect();
    let key_of = |i: usize| {
        agents[i]
            .status()
            .current()
            .and_then(|c| c.config.as_ref())
            .and_then(|c| c.api_key.clone())
    };
    assert_eventually!(
        key_of(0).as_deref() == Some(manual)
            && key_of(1).as_deref() == Some(upstream)
            && key_of(2).as_deref() == Some(realm_key.as_str()),
        Duration::from_secs(20)
    );

    // New secrets go through B end to end: the API seals the key for its command, the worker opens
    // it and seals it for the agent, the edge opens it for the frame.
    let rotated_manual = "sk-manual-after-rotation-3333";
    let r = s
        .put(
            &format!("/api/agents/{d_manual}/llm-config"),
            json!({"provider": "openai", "model": "gpt-y", "apiKey": rotated_manual}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eventually!(key_of(0).as_deref() == Some(rotated_manual));
    let agent = s.store.agent(d_manual).await.unwrap().unwrap();
    let Some(ConfigSource::Manual {
        api_key_sealed: Some(k),
        ..
    }) = agent.source
    else {
        panic!("a manual config with a key");
    };
    assert!(k.starts_with(&format!("v2.{kid_b}.")), "{k}");

    // `vc-worker keys edge` prints the edge's key of B, which is what that edge was given.
    let (ok, out, err) = worker_cli(&["keys", "edge"], &[("VC_SECRET_KEY", b.to_base64())]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), b.purpose_key(Purpose::AgentConfigKey).to_text());
    assert!(out
        .trim()
        .starts_with(&format!("agent-config-key:{kid_b}:")));
    let (ok, out, _) = worker_cli(
        &["keys", "api", "--previous"],
        &[
            ("VC_SECRET_KEY", b.to_base64()),
            ("VC_SECRET_KEY_PREVIOUS", a.to_base64()),
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(out.trim(), a.purpose_key(Purpose::Command).to_text());
    for a in agents {
        a.stop().await;
    }
}

/// While a worker holds the command lane, a re-seal waits for it and gives up instead of racing the
/// commands; the lane is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_does_not_run_beside_a_worker() {
    let s = Stack::builder().start().await;
    // The running worker holds the lane once it has started.
    let mut c = s.store.conn();
    vc_tests::wait::eventually("lane held", Duration::from_secs(20), || {
        let mut c = c.clone();
        async move {
            let held: Option<String> = redis::cmd("GET")
                .arg(keys::LANE)
                .query_async(&mut c)
                .await
                .unwrap();
            held.is_some()
        }
    })
    .await;
    let holder: String = redis::cmd("GET")
        .arg(keys::LANE)
        .query_async(&mut c)
        .await
        .unwrap();
    let err = vc_worker::reseal::reseal(&s.store, &s.sealer(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, vc_worker::reseal::ResealError::LaneBusy(_)),
        "{err}"
    );
    assert!(err.to_string().contains("stop every vc-worker"), "{err}");
    let after: String = redis::cmd("GET")
        .arg(keys::LANE)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(holder, after);
    // Commands still apply.
    let r = s.post("/api/realms", json!({"name": "still"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
}
