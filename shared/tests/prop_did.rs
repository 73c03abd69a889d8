//! Property tests of `did:key` parsing and agent signature verification (`vc_shared::did`), which every
//! edge runs on untrusted `auth_response` frames and the API on every agent DID: arbitrary strings,
//! arbitrary multibase payloads and arbitrary signatures never panic; only an Ed25519 `did:key` parses,
//! and it round-trips; only the exact signature over the exact nonce and edge id verifies.
//!
//! Cases: `PROPTEST_CASES` (default 1024 per property, 128 for those that sign); `scripts/fuzz` runs
//! 100,000.

mod prop_support;

use base64::Engine;
use ed25519_dalek::SigningKey;
use prop_support::*;
use proptest::prelude::*;
use vc_shared::did::{did_from_key, parse_did_key, sign_auth, verify_auth, DidError, MAX_DID_LEN};

const DEFAULT_CASES: u32 = 1024;
const SIGNATURE_CASES: u32 = 128;

fn b58(bytes: &[u8]) -> String {
    multibase::encode(multibase::Base::Base58Btc, bytes)
}

/// Bytes that may or may not be an Ed25519 multicodec key: random lengths, the right or a wrong prefix.
fn multicodec_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        any::<[u8; 32]>().prop_map(|k| [&[0xed, 0x01][..], &k].concat()),
        (any::<[u8; 2]>(), any::<[u8; 32]>()).prop_map(|(p, k)| [&p[..], &k].concat()),
        (prop::collection::vec(any::<u8>(), 0..40)).prop_map(|k| [&[0xed, 0x01][..], &k].concat()),
    ]
    .boxed()
}

/// DID-like strings: arbitrary text, `did:key:` + arbitrary multibase text, encodings of arbitrary bytes.
fn did_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        2 => "did:key:[zZfFmu1-9A-Za-z]{0,70}",
        3 => multicodec_bytes().prop_map(|b| format!("did:key:{}", b58(&b))),
        1 => multicodec_bytes().prop_map(|b| format!("did:key:{}", multibase::encode(multibase::Base::Base64Url, b))),
        1 => valid_did().prop_map(|d| format!(" {d}")),
        1 => valid_did().prop_map(|d| d.to_uppercase()),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// Arbitrary DID text: no panic; whatever parses is an Ed25519 `did:key` that round-trips exactly.
    #[test]
    fn only_ed25519_did_keys_parse(did in did_text()) {
        match parse_did_key(&did) {
            Ok(key) => {
                prop_assert!(did.starts_with("did:key:z6Mk"), "{}", did);
                prop_assert_eq!(did_from_key(&key), did);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// `did:key:z` + base58btc of arbitrary bytes parses exactly when the bytes are 0xed01 + 32 bytes of
    /// a valid point that is not of small order, and the error says which part is wrong.
    #[test]
    fn multicodec_prefix_and_length_are_checked(bytes in multicodec_bytes()) {
        let did = format!("did:key:{}", b58(&bytes));
        let r = parse_did_key(&did);
        if did.len() > MAX_DID_LEN {
            prop_assert_eq!(r, Err(DidError::NotDidKey));
        } else if bytes.len() != 34 || bytes[..2] != [0xed, 0x01] {
            prop_assert_eq!(r, Err(DidError::NotEd25519));
        } else {
            let arr: [u8; 32] = bytes[2..].try_into().unwrap();
            match ed25519_dalek::VerifyingKey::from_bytes(&arr) {
                Err(_) => prop_assert_eq!(r, Err(DidError::BadKey)),
                Ok(k) if k.is_weak() => prop_assert_eq!(r, Err(DidError::WeakKey)),
                Ok(_) => prop_assert!(r.is_ok()),
            }
        }
    }


    /// Arbitrary DID, nonce, edge id and signature text: no panic, an error for anything unsigned.
    #[test]
    fn arbitrary_auth_responses_never_panic(
        did in did_text(),
        nonce in text(),
        edge in text(),
        sig in prop_oneof![
            text(),
            "[A-Za-z0-9_=-]{80,90}",
            prop::collection::vec(any::<u8>(), 0..100)
                .prop_map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
            prop::collection::vec(any::<u8>(), 64)
                .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        ],
    ) {
        let r = verify_auth(&did, &nonce, &edge, &sig);
        prop_assert!(r.is_err());
    }
}

proptest! {
    // Signing and verifying are slow in debug builds: fewer cases by default (`scripts/fuzz` runs the
    // long variant in release mode).
    #![proptest_config(config(SIGNATURE_CASES))]

    /// Keys from arbitrary seeds: DID round-trip, and the signature verifies for exactly its own nonce,
    /// edge id and DID.
    #[test]
    fn signatures_verify_only_for_their_message(
        seed in any::<[u8; 32]>(),
        other_seed in any::<[u8; 32]>(),
        nonce in text(),
        edge in text(),
        other in text(),
    ) {
        let key = SigningKey::from_bytes(&seed);
        let did = did_from_key(&key.verifying_key());
        prop_assert_eq!(parse_did_key(&did).unwrap(), key.verifying_key());
        let sig = sign_auth(&key, &nonce, &edge);
        prop_assert_eq!(verify_auth(&did, &nonce, &edge, &sig), Ok(()));
        // Padding is tolerated.
        prop_assert_eq!(verify_auth(&did, &nonce, &edge, &format!("{sig}==")), Ok(()));
        if other != nonce {
            prop_assert!(verify_auth(&did, &other, &edge, &sig).is_err());
        }
        if other != edge {
            prop_assert!(verify_auth(&did, &nonce, &other, &sig).is_err());
        }
        if other_seed != seed {
            let other_did = did_from_key(&SigningKey::from_bytes(&other_seed).verifying_key());
            prop_assert_eq!(verify_auth(&other_did, &nonce, &edge, &sig), Err(DidError::BadSignature));
        }
    }

    /// Any change to a valid signature's bytes is refused.
    #[test]
    fn tampered_signatures_are_refused(
        seed in any::<[u8; 32]>(),
        nonce in "[0-9a-f]{64}",
        at in 0usize..64,
        flip in 1u8..=255,
    ) {
        let key = SigningKey::from_bytes(&seed);
        let did = did_from_key(&key.verifying_key());
        let sig = sign_auth(&key, &nonce, "edge-1");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&sig).unwrap();
        raw[at] ^= flip;
        let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(verify_auth(&did, &nonce, "edge-1", &bad).is_err());
    }
}
