//! Secrets at rest and on the bus: authenticated encryption with `VC_SECRET_KEY`.
//!
//! Every secret (upstream provider keys, realm virtual keys, manual agent keys) is sealed with
//! XChaCha20-Poly1305 under the 32-byte secret key before it is written to Redis or published on NATS.
//! A sealed value is the text `v1.<base64url(nonce || ciphertext)>`; the 24-byte nonce is random per
//! value. A *purpose* string is bound as associated data, so a value sealed as one kind of secret cannot
//! be swapped into another field and opened there.
//!
//! # Examples
//! ```
//! use vc_shared::crypto::{Purpose, SecretKey, Sealer};
//! let key = SecretKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
//! let sealer = Sealer::new(key);
//! let sealed = sealer.seal(Purpose::ModelApiKey, "sk-upstream").unwrap();
//! assert_eq!(sealer.open(Purpose::ModelApiKey, &sealed).unwrap(), "sk-upstream");
//! assert!(sealer.open(Purpose::RealmKey, &sealed).is_err());
//! ```

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;

/// What a sealed value is; bound into the ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An upstream provider API key of a registry model.
    ModelApiKey,
    /// A realm's LiteLLM virtual key.
    RealmKey,
    /// The API key inside an agent's LLM config (at rest, or in a push on the bus).
    AgentConfigKey,
    /// A secret carried inside a command on the bus.
    Command,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::ModelApiKey => b"vc:model-api-key",
            Purpose::RealmKey => b"vc:realm-key",
            Purpose::AgentConfigKey => b"vc:agent-config-key",
            Purpose::Command => b"vc:command",
        }
    }
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// `VC_SECRET_KEY` is not base64 of exactly 32 bytes.
    #[error("secret key must be 32 bytes, base64-encoded (got {0} bytes)")]
    BadKeyLength(usize),
    /// `VC_SECRET_KEY` is not base64.
    #[error("secret key is not valid base64")]
    BadKeyEncoding,
    /// The value is not in the sealed format.
    #[error("sealed value is malformed")]
    Malformed,
    /// Authentication failed: wrong key, wrong purpose, or tampered value.
    #[error("sealed value could not be opened (wrong key, purpose or tampered)")]
    Open,
}

/// The 32-byte key that seals secrets. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Parses standard (or URL-safe) base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| CryptoError::BadKeyEncoding)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadKeyLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// A fresh random key (for tests and `scripts/stack`).
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Standard base64 of the key, for handing it to a child process.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// Seals and opens secrets with one [`SecretKey`]. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: std::sync::Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// A sealer for the given key.
    pub fn new(key: SecretKey) -> Self {
        Self {
            cipher: std::sync::Arc::new(XChaCha20Poly1305::new((&key.0).into())),
        }
    }

    /// Seals `plaintext` for `purpose`.
    pub fn seal(&self, purpose: Purpose, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `purpose`.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<String, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Malformed)
    }

    /// Whether `text` looks like a sealed value (it may still fail to open).
    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(PREFIX) && text.len() > PREFIX.len() + 40
    }
}

/// Hex SHA-256 of a secret: how LiteLLM names a key (`token`), and how API tokens are stored.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Generates a LiteLLM virtual key value: `sk-vc-` and 48 hex characters (192 random bits).
pub fn generate_virtual_key() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("sk-vc-{}", hex::encode(b))
}

/// The first characters of a secret that are safe to show (at most 8).
pub fn key_prefix(secret: &str) -> String {
    secret.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_purpose_binding() {
        let s = Sealer::new(SecretKey::generate());
        let sealed = s.seal(Purpose::RealmKey, "sk-abc").unwrap();
        assert!(!sealed.contains("sk-abc"));
        assert_eq!(s.open(Purpose::RealmKey, &sealed).unwrap(), "sk-abc");
        assert_eq!(
            s.open(Purpose::ModelApiKey, &sealed),
            Err(CryptoError::Open)
        );
        let other = Sealer::new(SecretKey::generate());
        assert_eq!(
            other.open(Purpose::RealmKey, &sealed),
            Err(CryptoError::Open)
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "v1.zz"),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn key_parsing_reports_length() {
        assert_eq!(
            SecretKey::from_base64("AAAA").unwrap_err(),
            CryptoError::BadKeyLength(3)
        );
        assert_eq!(
            SecretKey::from_base64("!!!").unwrap_err(),
            CryptoError::BadKeyEncoding
        );
        let k = SecretKey::generate();
        assert!(SecretKey::from_base64(&k.to_base64()).is_ok());
    }

    #[test]
    fn virtual_keys_are_unique_and_prefixed() {
        let a = generate_virtual_key();
        assert!(a.starts_with("sk-vc-") && a.len() == 54);
        assert_ne!(a, generate_virtual_key());
        assert_eq!(key_prefix(&a), "sk-vc-".to_string() + &a[6..8]);
    }
}
