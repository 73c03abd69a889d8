//! Property tests of sealed secrets (`vc_shared::crypto`): `Sealer::open` runs on values read from Redis
//! and NATS (commands carry `apiKeySealed` from any publisher), so arbitrary text, arbitrary `v1.` and
//! `v2.` payloads and tampered values must be refused without a panic; only the exact value, key,
//! purpose and entity open; `SecretKey::from_base64` (`VC_SECRET_KEY`) and `PurposeKey::from_text`
//! (`VC_EDGE_SECRET_KEY`, `VC_API_SECRET_KEY`) never panic.
//!
//! Cases: `PROPTEST_CASES` (default 1024 per property); `scripts/fuzz` runs 100,000.

mod prop_support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use prop_support::*;
use proptest::prelude::*;
use vc_shared::crypto::{CryptoError, Purpose, PurposeKey, Sealer, SecretKey};

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

/// Sealed-looking text: arbitrary text, `v1.` or `v2.<kid>.` + arbitrary base64url, other prefixes.
/// `kid` is the key id of the sealer under test, so `v2` values reach the cipher.
fn sealed_text(kid: String) -> BoxedStrategy<String> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..200);
    let k2 = kid.clone();
    prop_oneof![
        2 => text(),
        3 => bytes().prop_map(|b| format!("v1.{}", URL_SAFE_NO_PAD.encode(b))),
        1 => bytes().prop_map(|b| format!("v1.{}", STANDARD.encode(b))),
        3 => bytes().prop_map(move |b| format!("v2.{kid}.{}", URL_SAFE_NO_PAD.encode(b))),
        1 => bytes().prop_map(|b| format!("v2.0badbeef.{}", URL_SAFE_NO_PAD.encode(b))),
        1 => "v[0-9]\\.[A-Za-z0-9_=+/.-]{0,120}",
        1 => text().prop_map(|t| format!("v1.{t}")),
        1 => text().prop_map(move |t| format!("v2.{k2}.{t}")),
    ]
    .boxed()
}

/// Entity ids: model and realm ids, DIDs, command ids, arbitrary text.
fn entity() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z0-9-]{1,40}",
        "did:key:z[1-9A-HJ-NP-Za-km-z]{40,48}",
        text(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    /// Arbitrary values are refused (malformed, of an unknown key, or not opening), never a panic;
    /// the same for a sealer of one purpose.
    #[test]
    fn arbitrary_values_are_refused(
        (seed, value) in any::<[u8; 32]>().prop_flat_map(|seed| {
            let kid = sealer(seed).key_id().to_string();
            (Just(seed), sealed_text(kid))
        }),
        p in purpose(),
        e in entity(),
    ) {
        let s = sealer(seed);
        let r = s.open(p, &e, &value);
        prop_assert!(
            matches!(r, Err(CryptoError::Malformed) | Err(CryptoError::Open) | Err(CryptoError::UnknownKeyId(_))),
            "{:?}", r
        );
        if !value.starts_with("v1.") && !value.starts_with("v2.") {
            prop_assert_eq!(r, Err(CryptoError::Malformed));
        }
        let one = Sealer::restricted(s.purpose_key(p).unwrap(), Vec::new()).unwrap();
        let r = one.open(p, &e, &value);
        prop_assert!(
            matches!(
                r,
                Err(CryptoError::Malformed) | Err(CryptoError::Open) | Err(CryptoError::UnknownKeyId(_)) | Err(CryptoError::NeedsMasterKey)
            ),
            "{:?}", r
        );
    }

    /// Every plaintext round-trips for its own key, purpose and entity only; the purpose's key alone
    /// opens it too, and opens nothing of another purpose.
    #[test]
    fn roundtrip_binds_key_purpose_and_entity(
        seed in any::<[u8; 32]>(),
        other_seed in any::<[u8; 32]>(),
        p in purpose(),
        q in purpose(),
        e in entity(),
        f in entity(),
        plaintext in text(),
    ) {
        let s = sealer(seed);
        let sealed = s.seal(p, &e, &plaintext).unwrap();
        prop_assert!(Sealer::is_sealed(&sealed));
        prop_assert!(plaintext.len() < 4 || !sealed.contains(&plaintext) || plaintext.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        prop_assert_eq!(s.open(p, &e, &sealed), Ok(plaintext.clone()));
        let one = Sealer::restricted(s.purpose_key(p).unwrap(), Vec::new()).unwrap();
        prop_assert_eq!(one.open(p, &e, &sealed), Ok(plaintext.clone()));
        if q != p {
            prop_assert_eq!(s.open(q, &e, &sealed), Err(CryptoError::Open));
            prop_assert_eq!(one.open(q, &e, &sealed), Err(CryptoError::NotHeld(q)));
        }
        if f != e {
            prop_assert_eq!(s.open(p, &f, &sealed), Err(CryptoError::Open));
        }
        if other_seed != seed {
            prop_assert_eq!(
                sealer(other_seed).open(p, &e, &sealed),
                Err(CryptoError::UnknownKeyId(s.key_id().to_string()))
            );
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
        let sealed = s.seal(p, "entity-1", &plaintext).unwrap();
        let head = &sealed[..12]; // "v2.<kid>."
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[12..]).unwrap();
        let i = at.index(raw.len());
        match how {
            0 => raw[i] ^= flip,
            1 => raw.truncate(i),
            _ => raw.insert(i, flip),
        }
        let tampered = format!("{head}{}", URL_SAFE_NO_PAD.encode(&raw));
        prop_assert!(s.open(p, "entity-1", &tampered).is_err());
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

    /// Purpose keys (`VC_EDGE_SECRET_KEY`): no panic on any text; what parses writes back the same.
    #[test]
    fn purpose_key_parsing(text in prop_oneof![
        text(),
        (purpose(), any::<[u8; 32]>()).prop_map(|(p, seed)| sealer(seed).purpose_key(p).unwrap().to_text()),
        (text(), "[0-9a-f]{8}", prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(p, k, b)| format!("{p}:{k}:{}", STANDARD.encode(b))),
    ]) {
        if let Ok(k) = PurposeKey::from_text(&text) {
            prop_assert_eq!(PurposeKey::from_text(&k.to_text()), Ok(k.clone()));
            prop_assert!(!format!("{k:?}").contains(&k.to_text()[20..]), "Debug never shows the key");
        }
    }
}
