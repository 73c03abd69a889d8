//! The roots an edge's certificate must chain to on `wss://`: the system's, or a CA file's.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tracing::warn;

use crate::AgentError;

/// TLS client settings for `wss://` edges: a rustls configuration built once and shared (an `Arc`)
/// by every connection of an agent, and by every agent of a [`crate::Swarm`].
#[derive(Clone)]
pub struct AgentTls {
    config: Arc<ClientConfig>,
    /// Where the roots came from (for `Debug`).
    origin: Arc<str>,
    /// How many roots.
    roots: usize,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("origin", &self.origin)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl AgentTls {
    /// The system's root certificates, as `rustls-native-certs` finds them (the platform's store;
    /// on Unix `SSL_CERT_FILE` / `SSL_CERT_DIR` replace it). Loaded once per process.
    pub fn system_roots() -> AgentTls {
        static SYSTEM: OnceLock<AgentTls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    warn!(error = %e, "Could not load some system root certificates.");
                }
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    warn!("No system root certificates found: wss:// edges cannot be verified; pass a CA file (--ca).");
                }
                AgentTls::new(roots, "system roots")
            })
            .clone()
    }

    /// Only the CA certificates in the PEM file `path` (one or more `BEGIN CERTIFICATE` blocks): an
    /// edge's certificate must chain to one of them, the system's roots are not used.
    pub fn from_ca_file(path: &Path) -> Result<AgentTls, AgentError> {
        let bad = |reason: String| AgentError::Ca {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM ({})", vc_shared::pem::reason(&e))))?;
        if certs.is_empty() {
            return Err(bad("no \"BEGIN CERTIFICATE\" block".into()));
        }
        let mut roots = RootCertStore::empty();
        for (i, c) in certs.into_iter().enumerate() {
            roots
                .add(c)
                .map_err(|e| bad(format!("certificate {} is not usable: {e}", i + 1)))?;
        }
        Ok(AgentTls::new(roots, &path.display().to_string()))
    }

    fn new(roots: RootCertStore, origin: &str) -> AgentTls {
        let n = roots.len();
        // ring: the provider the workspace builds (no aws-lc); named explicitly so that a second
        // provider enabled by some dependency never makes the choice ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        AgentTls {
            config: Arc::new(config),
            origin: Arc::from(origin),
            roots: n,
        }
    }

    /// The rustls configuration (an `Arc` clone).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_named() {
        let dir = std::env::temp_dir().join(format!("vc-agent-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = AgentTls::from_ca_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let e = AgentTls::from_ca_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let broken = dir.join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!\n").unwrap();
        let e = AgentTls::from_ca_file(&broken).unwrap_err().to_string();
        assert!(e.contains("broken.pem"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
