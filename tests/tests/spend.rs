//! Spend, limits and budget alerts (issue "Spend, limits and budget alerts"), against the LiteLLM
//! emulator:
//!
//! 1. A realm's `rpmLimit`, `tpmLimit` and `maxParallelRequests` (PATCH) reach its key and its team;
//!    bad values are refused naming the field; `null` removes a limit; the team's limit counts every key.
//! 2. The spend (the realm's team's) is read on demand; each threshold of the budget raises one
//!    `realm.budget.threshold` per period (audit, NATS, a signed webhook retried until delivered); at the
//!    budget the guard blocks the keys, a raised budget lifts it, and so does a new budget period.
//!
//! The same flow against the real proxy is in the contract tier (`contract::real_litellm_spend_limits`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use vc_tests::assert_eventually;
use vc_tests::stack::Stack;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const SECRET: &str = "webhook-secret-of-at-least-32-chars";

/// A model granted to a realm with a budget: (realm id, model id, LiteLLM model name).
async fn world(s: &Stack, name: &str, budget: f64) -> (String, String, String) {
    let m = s
        .post(
            "/api/models",
            json!({"name": name, "provider": "openai", "modelId": "gpt-s", "apiKey": "sk-up-s"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let r = s
        .post("/api/realms", json!({"name": format!("{name} realm")}))
        .await;
    let realm = r.body["realm"]["id"].as_str().unwrap().to_string();
    let model = m.body["model"]["id"].as_str().unwrap().to_string();
    let g = s
        .post(
            &format!("/api/models/{model}/realms"),
            json!({"realmId": realm, "monthlyBudgetUsd": budget}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    let name = m.body["model"]["litellmModelName"].as_str().unwrap().into();
    (realm, model, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_limits_reach_the_key_and_the_team() {
    let s = Stack::builder().litellm(true).start().await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let (realm, _, model) = world(&s, "Limits", 50.0).await;
    for (bad, field) in [
        (json!({"rpmLimit": 0}), "rpmLimit"),
        (json!({"tpmLimit": -5}), "tpmLimit"),
        (
            json!({"maxParallelRequests": "many"}),
            "maxParallelRequests",
        ),
        (json!({"rpmLimit": 1.5}), "rpmLimit"),
    ] {
        let r = s.patch(&format!("/api/realms/{realm}"), bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.text.contains(field), "{}", r.text);
    }
    let r = s
        .patch(
            &format!("/api/realms/{realm}"),
            json!({"rpmLimit": 2, "tpmLimit": 100000, "maxParallelRequests": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let limits = json!({"rpmLimit": 2, "tpmLimit": 100000, "maxParallelRequests": 3});
    assert_eq!(r.body["realm"]["limits"], limits, "{}", r.text);
    assert_eq!(r.body["realm"]["routerKey"]["limits"], limits, "{}", r.text);
    let team_id = format!("vc-realm-{realm}");
    let key = emu.keys()[0].clone();
    assert_eq!(key.rpm_limit, Some(2));
    assert_eq!(key.tpm_limit, Some(100000));
    let team = emu
        .teams()
        .into_iter()
        .find(|t| t.team_id == team_id)
        .unwrap();
    assert_eq!(team.rpm_limit, Some(2));
    // The third call in the minute is refused.
    assert_eq!(s.emu_chat(&key.key, &model).await, 200);
    assert_eq!(s.emu_chat(&key.key, &model).await, 200);
    assert_eq!(s.emu_chat(&key.key, &model).await, 429);
    // `null` removes a limit; the others stay.
    let r = s
        .patch(&format!("/api/realms/{realm}"), json!({"rpmLimit": null}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["realm"]["limits"],
        json!({"rpmLimit": null, "tpmLimit": 100000, "maxParallelRequests": 3})
    );
    assert_eventually!(emu.keys()[0].rpm_limit.is_none(), secs(10));
    assert_eq!(emu.keys()[0].tpm_limit, Some(100000));
    let updated = s.audit_events("realm.updated").await;
    assert!(
        updated
            .iter()
            .any(|e| e["details"]["limits"]["rpmLimit"] == 2),
        "{updated:?}"
    );
}

/// What the webhook receiver saw: (headers, body).
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1 that answers 500 to its first request and 200 after.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut v = seen.lock().unwrap();
                    v.push((headers, body.to_vec()));
                    if v.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_thresholds_guard_and_signed_webhooks() {
    let (url, seen) = receiver().await;
    let s = Stack::builder()
        .litellm(true)
        .budget(vc_worker::BudgetSettings {
            // On demand only: each reading below is a refresh.
            spend_every: Duration::ZERO,
            thresholds: vec![0.5, 0.8, 1.0],
            webhooks: Some((vec![url.clone()], SECRET.into())),
        })
        .start()
        .await;
    let emu = s.emu.as_ref().unwrap().emu.clone();
    let (realm, model_id, model) = world(&s, "Spend", 10.0).await;
    let team = format!("vc-realm-{realm}");
    let key = emu.keys()[0].key.clone();
    let nc = s.nats_client().await;
    let mut thresholds = nc.subscribe("vc.evt.realm.budget.threshold").await.unwrap();
    let refresh = |label: &'static str| {
        let s = &s;
        let realm = realm.clone();
        async move {
            let r = s
                .post(&format!("/api/realms/{realm}/spend/refresh"), json!({}))
                .await;
            assert_eq!(r.status, 200, "{label}: {}", r.text);
            assert_eq!(r.body["realmId"], realm.as_str());
            r.body["spend"].clone()
        }
    };

    // Nothing read yet.
    let r = s.get(&format!("/api/realms/{realm}/spend")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["budgetUsd"], 10.0);
    assert_eq!(r.body["readAt"], Value::Null);

    // Half the budget: the 0.5 threshold, once.
    emu.set_team_spend(&team, 5.0);
    let sp = refresh("half").await;
    assert_eq!(sp["spendUsd"], 5.0, "{sp}");
    assert_eq!(sp["remainingUsd"], 5.0, "{sp}");
    assert!(sp["periodResetAt"].is_string(), "{sp}");
    assert!(sp["readAt"].is_string(), "{sp}");
    assert_eventually!(
        s.audit_events("realm.budget.threshold").await.len() == 1,
        secs(10)
    );
    let ev = tokio::time::timeout(secs(10), thresholds.next())
        .await
        .expect("a threshold event on NATS")
        .unwrap();
    let ev: Value = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!(ev["details"]["fraction"], 0.5, "{ev}");
    assert_eq!(ev["details"]["spendUsd"], 5.0, "{ev}");
    assert_eq!(ev["details"]["budgetUsd"], 10.0, "{ev}");
    refresh("half again").await;
    // 0.8, then nothing new.
    emu.set_team_spend(&team, 8.5);
    refresh("eighty").await;
    refresh("eighty again").await;
    assert_eventually!(
        s.audit_events("realm.budget.threshold").await.len() == 2,
        secs(10)
    );
    let sp = s.get(&format!("/api/realms/{realm}/spend")).await.body;
    assert_eq!(sp["thresholdsCrossed"], json!([0.5, 0.8]), "{sp}");
    assert_eq!(s.emu_chat(&key, &model).await, 200);

    // The budget spent: the 1.0 threshold, and the guard blocks the key in LiteLLM (nothing pushed).
    emu.set_team_spend(&team, 10.0);
    refresh("spent").await;
    assert_eventually!(
        s.audit_events("realm.budget.blocked").await.len() == 1,
        secs(10)
    );
    assert_eventually!(emu.keys()[0].blocked == Some(true), secs(10));
    assert_eq!(s.emu_chat(&key, &model).await, 401);
    let sp = s.get(&format!("/api/realms/{realm}/spend")).await.body;
    assert_eq!(sp["thresholdsCrossed"], json!([0.5, 0.8, 1.0]), "{sp}");
    assert_eq!(sp["remainingUsd"], 0.0, "{sp}");
    assert_eq!(sp["guard"]["budgetUsd"], 10.0, "{sp}");
    let rk = s.get(&format!("/api/realms/{realm}")).await.body["realm"]["routerKey"].clone();
    assert!(rk["budgetGuard"]["blockedAt"].is_string(), "{rk}");

    // A raised budget lifts the guard.
    let g = s
        .post(
            &format!("/api/models/{model_id}/realms"),
            json!({"realmId": realm, "monthlyBudgetUsd": 20.0}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(
        g.body["routerKey"]["budgetGuard"],
        Value::Null,
        "{}",
        g.text
    );
    assert_eventually!(emu.keys()[0].blocked != Some(true), secs(10));
    assert_eq!(s.emu_chat(&key, &model).await, 200);
    let lifted = s.audit_events("realm.budget.unblocked").await;
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0]["details"]["reason"], "budget raised");
    // A new budget starts the thresholds over: 10 of 20 is the 0.5 threshold of the new budget.
    let sp = refresh("raised").await;
    // 10 USD and the call above.
    let left = sp["remainingUsd"].as_f64().unwrap();
    assert!((left - 10.0).abs() < 0.01, "{sp}");
    assert_eventually!(
        s.audit_events("realm.budget.threshold").await.len() == 4,
        secs(10)
    );
    let sp = s.get(&format!("/api/realms/{realm}/spend")).await.body;
    assert_eq!(sp["thresholdsCrossed"], json!([0.5]), "{sp}");

    // Spent again, then a new budget period (LiteLLM's reset): unblocked, thresholds start over.
    emu.set_team_spend(&team, 20.0);
    refresh("spent again").await;
    assert_eventually!(emu.keys()[0].blocked == Some(true), secs(10));
    emu.end_budget_period();
    let sp = refresh("new period").await;
    assert_eq!(sp["spendUsd"], 0.0, "{sp}");
    assert_eventually!(
        s.audit_events("realm.budget.unblocked").await.len() == 2,
        secs(10)
    );
    assert_eventually!(emu.keys()[0].blocked != Some(true), secs(10));
    let sp = s.get(&format!("/api/realms/{realm}/spend")).await.body;
    assert_eq!(sp["thresholdsCrossed"], json!([]), "{sp}");
    assert_eq!(sp["guard"], Value::Null, "{sp}");

    // Webhooks: every budget event, signed; the first attempt got a 500 and was retried.
    let want = s.audit_events("realm.budget.threshold").await.len()
        + s.audit_events("realm.budget.blocked").await.len()
        + s.audit_events("realm.budget.unblocked").await.len();
    assert_eventually!(seen.lock().unwrap().len() > want, secs(30));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut ids = std::collections::BTreeSet::new();
    for (headers, body) in seen.lock().unwrap().iter() {
        let sig = headers
            .get("vc-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap();
        assert!(
            vc_shared::webhook::verify(SECRET, sig, body, now, 300),
            "signature {sig}"
        );
        let ev: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            headers.get("vc-event-id").unwrap().to_str().unwrap(),
            ev["id"]
        );
        ids.insert(ev["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), want, "each budget event delivered");
    // Each attempt is logged once the receiver answered it.
    let delivered = || async {
        let d = s.get("/api/webhooks/deliveries?limit=500").await;
        assert_eq!(d.status, 200, "{}", d.text);
        d.body["deliveries"].as_array().unwrap().clone()
    };
    assert_eventually!(
        delivered()
            .await
            .iter()
            .filter(|x| x["status"] == "delivered")
            .count()
            == want,
        secs(10)
    );
    let deliveries = delivered().await;
    assert!(deliveries
        .iter()
        .any(|x| x["status"] == "retrying" && x["httpStatus"] == 500));
    assert_eq!(s.get("/api/webhooks/deliveries?limit=0").await.status, 400);
}
