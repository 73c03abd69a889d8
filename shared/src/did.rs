//! `did:key` identifiers for Ed25519 keys, and the agent authentication signature.
//!
//! A `did:key` for Ed25519 is `did:key:z` + base58btc(0xed 0x01 ‖ 32-byte public key) (multicodec
//! `ed25519-pub`, varint-encoded as `0xed01`); it always starts `did:key:z6Mk`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// Why a DID or a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// Not of the form `did:key:z…`.
    #[error("did must start with \"did:key:z\" (a base58btc multibase did:key)")]
    NotDidKey,
    /// The multibase part does not decode.
    #[error("did:key multibase value is not valid base58btc")]
    BadMultibase,
    /// The key is not Ed25519 (multicodec 0xed01) or has the wrong length.
    #[error("did:key must hold an Ed25519 public key (multicodec 0xed01, 32 bytes)")]
    NotEd25519,
    /// The bytes are not a valid Ed25519 point.
    #[error("did:key holds an invalid Ed25519 public key")]
    BadKey,
    /// A small-order point: signatures by it can be forged without a private key.
    #[error("did:key holds a weak (small-order) Ed25519 public key")]
    WeakKey,
    /// The signature is not base64url of 64 bytes.
    #[error("signature must be 64 bytes, base64url without padding")]
    BadSignatureEncoding,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// Longest DID accepted (a did:key for Ed25519 is 56 characters).
pub const MAX_DID_LEN: usize = 128;

/// Parses a `did:key` into its Ed25519 verifying key.
pub fn parse_did_key(did: &str) -> Result<VerifyingKey, DidError> {
    if did.len() > MAX_DID_LEN {
        return Err(DidError::NotDidKey);
    }
    let mb = did.strip_prefix("did:key:").ok_or(DidError::NotDidKey)?;
    if !mb.starts_with('z') {
        return Err(DidError::NotDidKey);
    }
    let (base, bytes) = multibase::decode(mb).map_err(|_| DidError::BadMultibase)?;
    if base != multibase::Base::Base58Btc {
        return Err(DidError::NotDidKey);
    }
    if bytes.len() != 34 || bytes[..2] != ED25519_MULTICODEC {
        return Err(DidError::NotEd25519);
    }
    let arr: [u8; 32] = bytes[2..].try_into().map_err(|_| DidError::NotEd25519)?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| DidError::BadKey)?;
    if key.is_weak() {
        return Err(DidError::WeakKey);
    }
    Ok(key)
}

/// The `did:key` of an Ed25519 public key.
pub fn did_from_key(key: &VerifyingKey) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&ED25519_MULTICODEC);
    bytes.extend_from_slice(key.as_bytes());
    format!(
        "did:key:{}",
        multibase::encode(multibase::Base::Base58Btc, bytes)
    )
}

/// The bytes an agent signs to authenticate: `vc-agent-auth:v1:<nonce>:<edgeId>`.
pub fn auth_message(nonce: &str, edge_id: &str) -> String {
    format!("vc-agent-auth:v1:{nonce}:{edge_id}")
}

/// Signs the authentication message (agent side), base64url without padding.
pub fn sign_auth(key: &SigningKey, nonce: &str, edge_id: &str) -> String {
    use base64::Engine;
    let sig = key.sign(auth_message(nonce, edge_id).as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes())
}

/// Verifies an authentication signature by the key of `did` (edge side).
pub fn verify_auth(
    did: &str,
    nonce: &str,
    edge_id: &str,
    signature_b64url: &str,
) -> Result<(), DidError> {
    use base64::Engine;
    let key = parse_did_key(did)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature_b64url.trim_end_matches('='))
        .map_err(|_| DidError::BadSignatureEncoding)?;
    let arr: [u8; 64] = raw
        .as_slice()
        .try_into()
        .map_err(|_| DidError::BadSignatureEncoding)?;
    // Strict: no non-canonical signature encodings and no small-order R (RFC 8032's checks that plain
    // `verify` leaves out), so one signature has one meaning.
    key.verify_strict(
        auth_message(nonce, edge_id).as_bytes(),
        &Signature::from_bytes(&arr),
    )
    .map_err(|_| DidError::BadSignature)
}

/// A fresh Ed25519 key (agent `keygen`, tests).
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_roundtrip_and_signature() {
        let k = generate_key();
        let did = did_from_key(&k.verifying_key());
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(parse_did_key(&did).unwrap(), k.verifying_key());
        let sig = sign_auth(&k, "00ff", "edge-1");
        verify_auth(&did, "00ff", "edge-1", &sig).unwrap();
        assert_eq!(
            verify_auth(&did, "00ff", "edge-2", &sig),
            Err(DidError::BadSignature)
        );
        assert_eq!(
            verify_auth(&did, "00ff", "edge-1", "abc"),
            Err(DidError::BadSignatureEncoding)
        );
    }

    /// The neutral point (y = 1) is a valid encoding of a small-order point: with R = that point and
    /// s = 0, a "signature" verifies for any message under a cofactorless check that lets weak keys in.
    #[test]
    fn weak_keys_and_their_forgeries_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut bytes = ED25519_MULTICODEC.to_vec();
        bytes.extend_from_slice(&identity);
        let did = format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, bytes)
        );
        assert_eq!(parse_did_key(&did), Err(DidError::WeakKey));
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(&identity);
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged);
        assert_eq!(
            verify_auth(&did, "00ff", "edge-1", &forged),
            Err(DidError::WeakKey)
        );
        // And the same forgery against a real key does not verify.
        let k = generate_key();
        let real = did_from_key(&k.verifying_key());
        assert_eq!(
            verify_auth(&real, "00ff", "edge-1", &forged),
            Err(DidError::BadSignature)
        );
    }

    #[test]
    fn rejects_other_dids() {
        assert_eq!(
            parse_did_key("did:web:example.com"),
            Err(DidError::NotDidKey)
        );
        assert_eq!(parse_did_key("did:key:z0OIl"), Err(DidError::BadMultibase));
        // secp256k1 multicodec (0xe7 0x01) is refused.
        let mut b = vec![0xe7, 0x01];
        b.extend_from_slice(&[1u8; 33]);
        let did = format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, b)
        );
        assert_eq!(parse_did_key(&did), Err(DidError::NotEd25519));
    }
}
