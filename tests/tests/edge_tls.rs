//! TLS on the agent link: an edge given a certificate (from a CA made here, at run time) serves
//! `wss://` and `https://` on its one listener, and nothing in clear; agents verify the edge against
//! the CA they are given, or against the system's roots.

mod edge_support;

use std::path::PathBuf;
use std::time::Duration;

use edge_support::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use vc_agent::AgentTls;
use vc_edge::EdgeTls;
use vc_tests::assert_eventually;

/// A CA, and a certificate for `localhost` and 127.0.0.1 signed by it, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    /// The CA certificate.
    ca: PathBuf,
    ca_pem: String,
    /// The edge's certificate and key.
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "vc test CA");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "vc test edge");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &*ca).unwrap();

        let write = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, body).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", &ca.pem()),
            ca_pem: ca.pem(),
            cert: write("edge.crt", &cert.pem()),
            key: write("edge.key", &key.serialize_pem()),
            _dir: dir,
        }
    }
}

async fn tls_edge(env: &Env, pki: &Pki, id: &str, max_connections: usize) -> Edge {
    let mut cfg = env.edge_config(id);
    cfg.max_connections = max_connections;
    cfg.tls = Some(EdgeTls::from_pem_files(&pki.cert, &pki.key).expect("edge TLS"));
    env.edge(cfg).await
}

fn agent_with(edge: &Edge, tls: Option<AgentTls>) -> vc_agent::AgentOptions {
    let mut o = agent_opts(&[edge]);
    o.tls = tls;
    o
}

/// An agent given the edge's CA connects over `wss://`, authenticates, receives its config (API key
/// included) and a pushed update, and acknowledges both; an upgrade beyond the cap gets its 503 over
/// TLS; `/healthz` and `/metrics` answer over `https://` to a client that trusts only that CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_the_ca_gets_its_config_over_wss() {
    let env = Env::start().await;
    let pki = Pki::new();
    let edge = tls_edge(&env, &pki, "edge-tls-1", 1).await;
    assert!(edge.ws_url().starts_with("wss://127.0.0.1:"));
    let (key, did) = keys(1).remove(0);
    env.put_agent(&did, &env.state(1, None, "m-tls")).await;

    let ca = AgentTls::from_ca_file(&pki.ca).expect("CA file");
    let agent = spawn_agent(&key, agent_with(&edge, Some(ca)));
    assert_eventually!(agent.version() == Some(1));
    let s = agent.status();
    assert_eq!(s.sessions, 1);
    assert_eq!(s.edge_id.as_deref(), Some("edge-tls-1"));
    let cfg = s.current().unwrap().config.clone().expect("a config");
    assert_eq!(cfg.api_key.as_deref(), Some("sk-test-1"));
    assert_eventually!(env.store.acked_version(&did).await.unwrap() == Some(1));

    env.update_agent(&did, env.state(2, None, "m-tls")).await;
    assert_eventually!(agent.version() == Some(2));
    assert_eventually!(env.store.acked_version(&did).await.unwrap() == Some(2));
    assert_eq!(edge.probe.dids(), vec![did.clone()]);
    assert_eq!(agent.status().sessions, 1, "one session throughout");

    // At the cap (1): the refusal is read through the TLS stream, request line replayed.
    let (key2, _) = keys(1).remove(0);
    let ca = AgentTls::from_ca_file(&pki.ca).expect("CA file");
    let second = spawn_agent(&key2, agent_with(&edge, Some(ca)));
    assert_eventually!(second
        .status()
        .last_close
        .is_some_and(|(_, reason)| reason.contains("503")));
    assert_eventually!(edge.metrics.refused("full") >= 1);
    assert_eq!(second.status().sessions, 0);
    second.stop().await;

    let https = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = https
        .get(edge.http("/healthz"))
        .send()
        .await
        .expect("https");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let metrics = https
        .get(edge.http("/metrics"))
        .send()
        .await
        .expect("https")
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vc_edge_sessions 1"), "{metrics}");
    assert!(
        metrics.contains("vc_edge_tls_handshake_failures_total"),
        "{metrics}"
    );
    agent.stop().await;
}

/// Who cannot verify the edge gets no session: an agent on the system's roots and one given another
/// CA fail the TLS handshake with an error that says so; a plain `ws://` client and a plain `http://`
/// request to the TLS port fail. The edge counts the failed handshakes and still serves an agent with
/// the right CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusting_and_plain_clients_get_nothing() {
    let env = Env::start().await;
    let pki = Pki::new();
    let other = Pki::new();
    let edge = tls_edge(&env, &pki, "edge-tls-2", 100).await;
    let ks = keys(3);
    for (_, did) in &ks {
        env.put_agent(did, &env.state(1, None, "m-tls")).await;
    }

    let system = spawn_agent(&ks[0].0, agent_with(&edge, None));
    let other_ca = AgentTls::from_ca_file(&other.ca).expect("CA file");
    let wrong = spawn_agent(&ks[1].0, agent_with(&edge, Some(other_ca)));
    for a in [&system, &wrong] {
        assert_eventually!(a
            .status()
            .last_close
            .is_some_and(|(code, reason)| code.is_none()
                && reason.starts_with("TLS handshake failed")
                && reason.contains("certificate")));
    }
    let reason = system.status().last_close.unwrap().1;
    tracing::info!(%reason, "An agent on the system roots was refused.");

    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{}/ws", edge.addr)),
    )
    .await
    .expect("a plain ws:// client fails quickly");
    assert!(plain.is_err(), "plain ws:// to a TLS edge must fail");
    let http = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::get(format!("http://{}/healthz", edge.addr)),
    )
    .await
    .expect("a plain http:// request fails quickly");
    assert!(http.is_err(), "plain http:// to a TLS edge must fail");
    // Two agents (at least once each) and the two plain clients.
    assert_eventually!(edge.metrics.tls_handshake_failures() >= 4);

    for a in [&system, &wrong] {
        let s = a.status();
        assert_eq!((s.sessions, s.version()), (0, None), "{s:?}");
    }
    assert!(edge.probe.dids().is_empty());
    assert_eq!(edge.metrics.sessions(), 0);

    let ca = AgentTls::from_ca_file(&pki.ca).expect("CA file");
    let good = spawn_agent(&ks[2].0, agent_with(&edge, Some(ca)));
    assert_eventually!(good.version() == Some(1));
    assert_eq!(edge.probe.dids(), vec![ks[2].1.clone()]);
    for a in [system, wrong, good] {
        a.stop().await;
    }
}
