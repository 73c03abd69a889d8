//! The HTTP client and starters shared by the emulator's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use litellm_emu::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::{json, Value};

pub const MASTER: &str = "sk-test-master";

/// A started emulator plus a small JSON client.
pub struct Env {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> Env {
    start_with(EmulatorConfig {
        master_key: MASTER.into(),
        ..EmulatorConfig::default()
    })
    .await
}

pub async fn start_with(cfg: EmulatorConfig) -> Env {
    Env {
        handle: Emulator::spawn(cfg).await,
        http: reqwest::Client::new(),
    }
}

impl Env {
    pub fn emu(&self) -> &Emulator {
        &self.handle.emu
    }

    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = req
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, headers)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.handle.base_url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (s, b, _) = self.send(req).await;
        (s, b)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(MASTER), Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(MASTER), None).await
    }

    pub async fn chat(&self, key: &str, model: &str) -> (u16, Value) {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        self.call("POST", "/chat/completions", Some(key), Some(body))
            .await
    }

    pub async fn new_model(&self, name: &str, id: &str, upstream: &str) -> (u16, Value) {
        self.post(
            "/model/new",
            json!({
                "model_name": name,
                "litellm_params": {"model": upstream, "api_base": "http://up.invalid/v1", "api_key": "sk-upstream-secret"},
                "model_info": {"id": id},
            }),
        )
        .await
    }

    pub async fn new_team(&self, body: Value) -> Value {
        let (s, b) = self.post("/team/new", body).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    pub async fn new_key(&self, body: Value) -> String {
        let (s, b) = self.post("/key/generate", body).await;
        assert_eq!(s, 200, "{b}");
        b["key"].as_str().expect("key").to_owned()
    }
}

pub fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or("")
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}
