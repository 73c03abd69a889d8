//! The dashboard's session: a token exchanged for an `HttpOnly`, `SameSite=Strict` cookie that
//! authenticates the REST API; writes by cookie need the CSRF token (a cross-site form post writes
//! nothing); logout ends the session server-side; a deleted realm-admin token ends its sessions.

use serde_json::{json, Value};
use vc_tests::stack::{Stack, ADMIN_TOKEN};

struct Reply {
    status: u16,
    cookie: Option<String>,
    body: Value,
}

async fn send(
    s: &Stack,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", s.api_url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        cookie,
        body,
    }
}

async fn login(s: &Stack, token: &str) -> (String, String) {
    let r = send(
        s,
        reqwest::Method::POST,
        "/api/session",
        &[],
        Some(("application/json", json!({"token": token}).to_string())),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let pair = set.split(';').next().unwrap().to_string();
    assert!(pair.starts_with("vc_session=") && pair.len() > 40, "{pair}");
    let csrf = r.body["session"]["csrfToken"].as_str().unwrap().to_string();
    (pair, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_with_csrf_and_logout() {
    let s = Stack::builder().start().await;

    // A wrong token is refused with a message; an empty body names the field.
    let bad = send(
        &s,
        reqwest::Method::POST,
        "/api/session",
        &[],
        Some(("application/json", json!({"token": "nope"}).to_string())),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body["error"], "invalid token");
    assert!(bad.cookie.is_none());
    let empty = send(
        &s,
        reqwest::Method::POST,
        "/api/session",
        &[],
        Some(("application/json", "{}".into())),
    )
    .await;
    assert_eq!(empty.status, 400);
    assert!(empty.body["error"].as_str().unwrap().starts_with("token:"));

    // Asking without any credentials is not an error: there is no session.
    let none = send(&s, reqwest::Method::GET, "/api/session", &[], None).await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.body, json!({"session": null}));
    // A cookie of no session is a 401.
    let stale = send(
        &s,
        reqwest::Method::GET,
        "/api/session",
        &[("cookie", "vc_session=0123456789abcdef")],
        None,
    )
    .await;
    assert_eq!(stale.status, 401, "{}", stale.body);

    let (cookie, csrf) = login(&s, ADMIN_TOKEN).await;
    let with_cookie = [("cookie", cookie.as_str())];
    // Reads by cookie.
    let models = send(&s, reqwest::Method::GET, "/api/models", &with_cookie, None).await;
    assert_eq!(models.status, 200, "{}", models.body);
    let me = send(&s, reqwest::Method::GET, "/api/session", &with_cookie, None).await;
    assert_eq!(me.body["session"]["actor"], "admin");
    assert_eq!(
        me.body["session"]["csrfToken"],
        csrf.as_str(),
        "the same token after a reload"
    );

    // A cross-site form post carries the cookie but not the CSRF token: refused, nothing written.
    let form = send(
        &s,
        reqwest::Method::POST,
        "/api/realms",
        &[
            ("cookie", cookie.as_str()),
            ("origin", "https://evil.example"),
        ],
        Some((
            "application/x-www-form-urlencoded",
            "name=Forged".to_string(),
        )),
    )
    .await;
    assert_eq!(form.status, 403, "{}", form.body);
    let json_no_csrf = send(
        &s,
        reqwest::Method::POST,
        "/api/realms",
        &with_cookie,
        Some(("application/json", json!({"name": "Forged"}).to_string())),
    )
    .await;
    assert_eq!(json_no_csrf.status, 403);
    let wrong_csrf = send(
        &s,
        reqwest::Method::POST,
        "/api/realms",
        &[("cookie", cookie.as_str()), ("x-csrf-token", "0000")],
        Some(("application/json", json!({"name": "Forged"}).to_string())),
    )
    .await;
    assert_eq!(wrong_csrf.status, 403);
    let realms = s.get("/api/realms").await;
    assert_eq!(realms.body["realms"], json!([]), "nothing was created");

    // With the token the write goes through.
    let ok = send(
        &s,
        reqwest::Method::POST,
        "/api/realms",
        &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        Some(("application/json", json!({"name": "Real"}).to_string())),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let realm = ok.body["realm"]["id"].as_str().unwrap().to_string();
    // Bearer clients work as before, with no CSRF token.
    assert_eq!(s.get("/api/realms").await.status, 200);

    // A realm admin's session sees its realm only; deleting its token ends the session.
    let t = s
        .post(
            "/api/tokens",
            json!({"name": "ops", "role": "realm-admin", "realmIds": [realm]}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let (ra_cookie, _) = login(&s, t.body["secret"].as_str().unwrap()).await;
    let ra = [("cookie", ra_cookie.as_str())];
    let listed = send(&s, reqwest::Method::GET, "/api/realms", &ra, None).await;
    assert_eq!(listed.body["realms"].as_array().unwrap().len(), 1);
    assert_eq!(
        send(&s, reqwest::Method::GET, "/api/models", &ra, None)
            .await
            .status,
        403
    );
    let token_id = t.body["token"]["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/api/tokens/{token_id}")).await.status,
        204
    );
    assert_eq!(
        send(&s, reqwest::Method::GET, "/api/realms", &ra, None)
            .await
            .status,
        401
    );

    // Logout ends the session server-side: the old cookie gets 401 afterwards.
    let out = send(
        &s,
        reqwest::Method::DELETE,
        "/api/session",
        &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        None,
    )
    .await;
    assert_eq!(out.status, 204);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    let after = send(&s, reqwest::Method::GET, "/api/models", &with_cookie, None).await;
    assert_eq!(after.status, 401);
    assert!(after.body["error"].as_str().unwrap().contains("session"));
}
