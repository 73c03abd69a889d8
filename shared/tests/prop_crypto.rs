//! Property tests of sealed secrets (`vc_shared::crypto`): `Sealer::open` runs on values read from Redis
//! and NATS (commands carry `apiKeySealed` from any publisher), so arbitrary text, arbitrary `v1.`
//! payloads and tampered values must be refused without a panic; only the exact value, key and purpose
//! open; `SecretKey::from_base64` (`VC_SECRET_KEY`) never panics.
//!
//! Cases: `PROPTEST_CASES` (default 1024 per property); `scripts/fuzz` runs 100,000.

mod prop_support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use prop_support::*;
use proptest::prelude::*;
use vc_shared::crypto::{CryptoError, Purpose, Sealer, SecretKey};

const DEFAULT_CASES: u32 = 1024;

const PURPOSES: [Purpose; 4] = [
    Purpose::ModelApiKey,
    Purpose::RealmKey,
    Purpose::AgentConfigKey,
    Purpose::Command,
];

fn purpose() -> BoxedStrategy<Purpose> {
    prop::sample::select(PURPOSES.to_vec()).boxed()
}

fn sealer(seed: [u8; 32]) -> Sealer {
    Sealer::new(SecretKey::from_base64(&STANDARD.encode(seed)).expect("32 bytes"))
}

/// Sealed-looking text: arbitrary text, `v1.` + arbitrary base64url, other prefixes.
fn sealed_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        3 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| format!("v1.{}", URL_SAFE_NO_PAD.encode(b))),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| format!("v1.{}", STANDARD.encode(b))),
        1 => "v[0-9]\\.[A-Za-z0-9_=+/-]{0,120}",
        1 => text().prop_map(|t| format!("v1.{t}")),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// Arbitrary values are refused (malformed or not opening), never a panic.
    #[test]
    fn arbitrary_values_are_refused(seed in any::<[u8; 32]>(), p in purpose(), value in sealed_text()) {
        let r = sealer(seed).open(p, &value);
        prop_assert!(matches!(r, Err(CryptoError::Malformed) | Err(CryptoError::Open)), "{:?}", r);
        if !value.starts_with("v1.") {
            prop_assert_eq!(r, Err(CryptoError::Malformed));
        }
    }

    /// Every plaintext round-trips for its own key and purpose only.
    #[test]
    fn roundtrip_binds_key_and_purpose(
        seed in any::<[u8; 32]>(),
        other_seed in any::<[u8; 32]>(),
        p in purpose(),
        q in purpose(),
        plaintext in text(),
    ) {
        let s = sealer(seed);
        let sealed = s.seal(p, &plaintext).unwrap();
        prop_assert!(Sealer::is_sealed(&sealed));
        prop_assert!(plaintext.len() < 4 || !sealed.contains(&plaintext) || plaintext.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        prop_assert_eq!(s.open(p, &sealed), Ok(plaintext.clone()));
        if q != p {
            prop_assert_eq!(s.open(q, &sealed), Err(CryptoError::Open));
        }
        if other_seed != seed {
            prop_assert_eq!(sealer(other_seed).open(p, &sealed), Err(CryptoError::Open));
        }
    }

    /// Flipping, cutting or extending a sealed value's bytes is always detected.
    #[test]
    fn tampering_is_detected(
        seed in any::<[u8; 32]>(),
        p in purpose(),
        plaintext in text(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        how in 0u8..3,
    ) {
        let s = sealer(seed);
        let sealed = s.seal(p, &plaintext).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        let i = at.index(raw.len());
        match how {
            0 => raw[i] ^= flip,
            1 => raw.truncate(i),
            _ => raw.insert(i, flip),
        }
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
        prop_assert!(s.open(p, &tampered).is_err());
    }

    /// `VC_SECRET_KEY` parsing: no panic on any text; accepted exactly when it decodes to 32 bytes.
    #[test]
    fn secret_key_parsing(text in prop_oneof![
        text(),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| STANDARD.encode(b)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ]) {
        match SecretKey::from_base64(&text) {
            Ok(k) => {
                let bytes = STANDARD.decode(k.to_base64()).unwrap();
                prop_assert_eq!(bytes.len(), 32);
                prop_assert!(!format!("{k:?}").contains(&k.to_base64()), "Debug never shows the key");
            }
            Err(e) => prop_assert!(matches!(e, CryptoError::BadKeyEncoding | CryptoError::BadKeyLength(_))),
        }
    }
}
