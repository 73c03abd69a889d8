//! Agent keys: key files, deterministic keys for swarms, and DIDs.
//!
//! A key file holds the 32-byte Ed25519 secret key as base64url without padding (43 characters) and a
//! newline; reading also accepts standard base64 and 64 hex digits. Files are created with mode 0600.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::AgentError;

/// A fresh random key.
pub fn generate() -> SigningKey {
    vc_shared::did::generate_key()
}

/// The `did:key` of a key.
pub fn did_of(key: &SigningKey) -> String {
    vc_shared::did::did_from_key(&key.verifying_key())
}

/// The text of a key file.
pub fn encode_key(key: &SigningKey) -> String {
    format!("{}\n", URL_SAFE_NO_PAD.encode(key.to_bytes()))
}

/// Parses the text of a key file.
pub fn decode_key(text: &str) -> Result<SigningKey, String> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(t).map_err(|e| e.to_string())?
    } else {
        URL_SAFE_NO_PAD
            .decode(t.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(t))
            .map_err(|_| "not base64url, base64 or hex".to_string())?
    };
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("key must be 32 bytes, got {}", bytes.len()))?;
    Ok(SigningKey::from_bytes(&arr))
}

/// Writes a new key file with mode 0600; refuses to overwrite unless `force`.
pub fn write_key_file(path: &Path, key: &SigningKey, force: bool) -> Result<(), AgentError> {
    let err = |reason: String| AgentError::Key {
        path: path.display().to_string(),
        reason,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `mode` only applies to new files; an overwritten one gets its permissions fixed too.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
    }
    f.write_all(encode_key(key).as_bytes())
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> Result<SigningKey, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| AgentError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    decode_key(&text).map_err(|reason| AgentError::Key {
        path: path.display().to_string(),
        reason,
    })
}

/// The `index`-th key derived from `seed`: SHA-256 of `vc-agent-swarm:v1:<seed>:<index>`. For tests and
/// benchmarks only: anyone who knows the seed has the keys.
pub fn key_from_seed(seed: &str, index: u64) -> SigningKey {
    let digest = Sha256::digest(format!("vc-agent-swarm:v1:{seed}:{index}").as_bytes());
    SigningKey::from_bytes(&digest.into())
}

/// The `count` keys of a swarm directory (`agent-00000.key`, …), creating the missing ones.
pub fn swarm_keys_in_dir(dir: &Path, count: usize) -> Result<Vec<SigningKey>, AgentError> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .map(|i| {
            let path = dir.join(format!("agent-{i:05}.key"));
            if path.exists() {
                read_key_file(&path)
            } else {
                let k = generate();
                write_key_file(&path, &k, false)?;
                Ok(k)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_roundtrip_and_formats() {
        let dir = std::env::temp_dir().join(format!("vc-agent-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = generate();
        let p = dir.join("a.key");
        write_key_file(&p, &k, false).unwrap();
        assert!(
            write_key_file(&p, &k, false).is_err(),
            "refuses to overwrite"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(read_key_file(&p).unwrap().to_bytes(), k.to_bytes());
        assert_eq!(
            decode_key(&hex::encode(k.to_bytes())).unwrap().to_bytes(),
            k.to_bytes()
        );
        assert_eq!(
            decode_key(&STANDARD.encode(k.to_bytes()))
                .unwrap()
                .to_bytes(),
            k.to_bytes()
        );
        assert!(decode_key("abc").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The worked example of `docs/agent-protocol.md`.
    #[test]
    fn protocol_doc_test_vector() {
        let key =
            decode_key("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap();
        assert_eq!(
            did_of(&key),
            "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
        );
        let nonce = "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        assert_eq!(
            vc_shared::did::sign_auth(&key, nonce, "edge-1"),
            "tI9HYw2y9JXisLR1heyPHOkPzRvVTNrIxLrBzcxkQ_hifjg3JUwVy8OEzIU0XnTmuv4XU8VAcwlhS1_Us_FoDw"
        );
    }

    #[test]
    fn seeded_keys_are_deterministic() {
        assert_eq!(
            key_from_seed("s", 1).to_bytes(),
            key_from_seed("s", 1).to_bytes()
        );
        assert_ne!(
            key_from_seed("s", 1).to_bytes(),
            key_from_seed("s", 2).to_bytes()
        );
        assert!(did_of(&key_from_seed("s", 1)).starts_with("did:key:z6Mk"));
    }
}
