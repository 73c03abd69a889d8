//! Secrets at rest and on the bus: authenticated encryption under keys derived from `VC_SECRET_KEY`.
//!
//! Every secret (upstream provider keys, realm virtual keys, manual agent keys, keys in commands) is
//! sealed with XChaCha20-Poly1305 before it is written to Redis or published on NATS.
//!
//! - **Per-purpose keys.** The 32-byte master key ([`SecretKey`], `VC_SECRET_KEY`) never encrypts
//!   anything itself: each [`Purpose`] has its own cipher key, HKDF-SHA256(master, salt
//!   `vaultysclaw sealed v2`, info = the purpose's label). A service that needs one purpose only is
//!   given that purpose's key ([`PurposeKey`]) and nothing else: the edge opens the keys of agents'
//!   configs and cannot open a registry provider key, a realm's key at rest or a command's secret.
//! - **Key id.** A master key is named by its [`KeyId`], the first 4 bytes of HKDF-SHA256(master, same
//!   salt, info `vc:key-id`) in hex; every sealed value names the key that sealed it, so a service can
//!   hold the current key and previous ones (rotation) and pick the right one.
//! - **Entity binding.** The associated data is the purpose's label, a zero byte and the id of the entity
//!   the secret belongs to (model id, realm id, agent DID, command id): a value cannot be moved into
//!   another field, nor to another entity's record, and opened there.
//!
//! A sealed value is the text `v2.<kid>.<base64url(nonce || ciphertext)>`, the 24-byte nonce random per
//! value. Values of the older format `v1.<base64url(nonce || ciphertext)>` (sealed directly with the
//! master key, the purpose's label alone as associated data) still open with the master key; new
//! values are always `v2`, and `vc-worker reseal` rewrites old ones.
//!
//! # Examples
//! ```
//! use vc_shared::crypto::{CryptoError, Purpose, SecretKey, Sealer};
//! let key = SecretKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
//! let sealer = Sealer::new(key);
//! let sealed = sealer.seal(Purpose::ModelApiKey, "model-1", "sk-upstream").unwrap();
//! assert!(sealed.starts_with(&format!("v2.{}.", sealer.key_id())));
//! assert_eq!(sealer.open(Purpose::ModelApiKey, "model-1", &sealed).unwrap(), "sk-upstream");
//! assert!(sealer.open(Purpose::RealmKey, "model-1", &sealed).is_err());
//! assert!(sealer.open(Purpose::ModelApiKey, "model-2", &sealed).is_err());
//!
//! // The edge's key opens configs' keys only.
//! let edge = Sealer::restricted(sealer.purpose_key(Purpose::AgentConfigKey).unwrap(), Vec::new()).unwrap();
//! assert_eq!(
//!     edge.open(Purpose::ModelApiKey, "model-1", &sealed),
//!     Err(CryptoError::NotHeld(Purpose::ModelApiKey))
//! );
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};

const V1: &str = "v1.";
const V2: &str = "v2.";
const NONCE_LEN: usize = 24;
/// AEAD tag length (Poly1305).
const TAG_LEN: usize = 16;
/// HKDF salt of every key derived from a master key (fixed: the master key is the only secret input).
const HKDF_SALT: &[u8] = b"vaultysclaw sealed v2";
/// HKDF info of a master key's id.
const KEY_ID_INFO: &[u8] = b"vc:key-id";

/// What a sealed value is; bound into the ciphertext as associated data, and the info of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// An upstream provider API key of a registry model (bound to the model id).
    ModelApiKey,
    /// A realm's LiteLLM virtual key at rest (bound to the realm id).
    RealmKey,
    /// The API key inside an agent's LLM config: a manual config's key (bound to the agent's DID), and
    /// the keys in routing states that edges open (bound to the realm or the model id).
    AgentConfigKey,
    /// A secret carried inside a command on the bus (bound to the command id).
    Command,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 4] = [
        Purpose::ModelApiKey,
        Purpose::RealmKey,
        Purpose::AgentConfigKey,
        Purpose::Command,
    ];

    /// The label: associated data, and the HKDF info of the purpose's key.
    fn label(self) -> &'static str {
        match self {
            Purpose::ModelApiKey => "vc:model-api-key",
            Purpose::RealmKey => "vc:realm-key",
            Purpose::AgentConfigKey => "vc:agent-config-key",
            Purpose::Command => "vc:command",
        }
    }

    /// The short name in a [`PurposeKey`]'s text and in messages.
    pub fn name(self) -> &'static str {
        &self.label()[3..]
    }

    fn from_name(name: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Associated data of a `v2` value: label ‖ 0x00 ‖ entity id.
    fn aad(self, entity: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.label().len() + 1 + entity.len());
        aad.extend_from_slice(self.label().as_bytes());
        aad.push(0);
        aad.extend_from_slice(entity.as_bytes());
        aad
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A key is not base64 of exactly 32 bytes.
    #[error("secret key must be 32 bytes, base64-encoded (got {0} bytes)")]
    BadKeyLength(usize),
    /// A key is not base64.
    #[error("secret key is not valid base64")]
    BadKeyEncoding,
    /// A purpose key's text is not `<purpose>:<key id>:<base64 of 32 bytes>`.
    #[error("purpose key must be <purpose>:<key id>:<base64 of 32 bytes> as `vc-worker keys` prints it ({0})")]
    BadPurposeKey(String),
    /// Two different keys have the same id (or keys of several purposes were mixed).
    #[error("keys conflict: {0}")]
    KeyConflict(String),
    /// The value is not in the sealed format.
    #[error("sealed value is malformed")]
    Malformed,
    /// Authentication failed: wrong key, purpose or entity, or a tampered value.
    #[error("sealed value could not be opened (wrong key, purpose or entity, or tampered)")]
    Open,
    /// The value was sealed under a master key that none of the configured keys is.
    #[error("sealed under key id {0}, which no configured key has (configure that key as a previous key, or re-seal)")]
    UnknownKeyId(String),
    /// This sealer holds no key of that purpose (a service given one purpose's key only).
    #[error("this service holds no {0} key: it can neither open nor seal such values")]
    NotHeld(Purpose),
    /// A `v1` value, which only the master key opens, met a sealer that holds purpose keys only.
    #[error("a v1 sealed value opens only with the master key; run `vc-worker reseal` to rewrite it as v2")]
    NeedsMasterKey,
}

/// The id of a master key: 4 bytes, shown as 8 lower-case hex characters. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// Parses 8 lower-case hex characters.
    pub fn parse(text: &str) -> Option<KeyId> {
        if text.len() != 8
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut id = [0u8; 4];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(KeyId(id))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The id of the key a `v2` value was sealed under (`None` for other values). Reading it needs no key.
pub fn sealed_key_id(sealed: &str) -> Option<KeyId> {
    let rest = sealed.strip_prefix(V2)?;
    let (kid, _) = rest.split_once('.')?;
    KeyId::parse(kid)
}

/// Whether `sealed` is in the `v1` format (sealed with the master key itself).
pub fn is_v1(sealed: &str) -> bool {
    sealed.starts_with(V1)
}

fn decode_key(text: &str) -> Result<[u8; 32], CryptoError> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| CryptoError::BadKeyEncoding)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadKeyLength(bytes.len()))
}

/// A master key: 32 bytes that every purpose key and the key id derive from. Its `Debug` never shows
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", self.key_id())
    }
}

impl SecretKey {
    /// Parses standard (or URL-safe) base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        decode_key(text).map(Self)
    }

    /// Parses a comma-separated list of keys (`VC_SECRET_KEY_PREVIOUS`); empty entries are skipped.
    pub fn list_from_base64(text: &str) -> Result<Vec<Self>, CryptoError> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Self::from_base64)
            .collect()
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

    fn expand(&self, info: &[u8], out: &mut [u8]) {
        // HKDF-SHA256 expands up to 255 * 32 bytes; 32 and 4 always fit.
        Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0)
            .expand(info, out)
            .expect("HKDF output length is valid");
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        let mut id = [0u8; 4];
        self.expand(KEY_ID_INFO, &mut id);
        KeyId(id)
    }

    /// The cipher key of one purpose, as given to a service that needs that purpose only.
    pub fn purpose_key(&self, purpose: Purpose) -> PurposeKey {
        let mut key = [0u8; 32];
        self.expand(purpose.label().as_bytes(), &mut key);
        PurposeKey {
            purpose,
            kid: self.key_id(),
            key,
        }
    }
}

/// One purpose's cipher key, derived from a master key, with the master key's id: what a service that
/// needs that purpose only is given (`VC_EDGE_SECRET_KEY`, `VC_API_SECRET_KEY`). Written as
/// `<purpose>:<key id>:<base64 of 32 bytes>`, e.g. `agent-config-key:1a2b3c4d:…`. Its `Debug` never
/// shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PurposeKey {
    purpose: Purpose,
    kid: KeyId,
    key: [u8; 32],
}

impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PurposeKey({}:{}, <redacted>)", self.purpose, self.kid)
    }
}

impl PurposeKey {
    /// Parses `<purpose>:<key id>:<base64>`.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let mut parts = text.trim().splitn(3, ':');
        let (Some(purpose), Some(kid), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::BadPurposeKey("expected three parts".into()));
        };
        let purpose = Purpose::from_name(purpose)
            .ok_or_else(|| CryptoError::BadPurposeKey(format!("unknown purpose {purpose:?}")))?;
        let kid = KeyId::parse(kid)
            .ok_or_else(|| CryptoError::BadPurposeKey("the key id is not 8 hex digits".into()))?;
        let key = decode_key(key).map_err(|e| CryptoError::BadPurposeKey(e.to_string()))?;
        Ok(PurposeKey { purpose, kid, key })
    }

    /// Parses a comma-separated list (`VC_EDGE_SECRET_KEY_PREVIOUS`); empty entries are skipped.
    pub fn list_from_text(text: &str) -> Result<Vec<Self>, CryptoError> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Self::from_text)
            .collect()
    }

    /// `<purpose>:<key id>:<base64>`: what `vc-worker keys` prints.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}:{}",
            self.purpose,
            self.kid,
            STANDARD.encode(self.key)
        )
    }

    /// Its purpose.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The id of the master key it derives from.
    pub fn key_id(&self) -> KeyId {
        self.kid
    }
}

/// The keys a [`Sealer`] holds.
struct Keyring {
    /// The key id new values are sealed under.
    current: KeyId,
    /// Cipher of each (key id, purpose) held.
    ciphers: HashMap<(KeyId, Purpose), XChaCha20Poly1305>,
    /// Purposes held (under the current key).
    purposes: Vec<Purpose>,
    /// Ciphers of the master keys themselves, current first: only for `v1` values. Empty in a sealer
    /// given purpose keys only.
    v1: Vec<XChaCha20Poly1305>,
    /// The current master key, to derive purpose keys from (`None` in a sealer of purpose keys).
    master: Option<SecretKey>,
}

/// Seals and opens secrets. Holds either master keys (the worker: every purpose, `v1` values too) or
/// purpose keys (the edge and the API: one purpose, `v2` values only); in both cases a current key
/// that seals and previous keys that only open. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    ring: Arc<Keyring>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealer(current {}, {} keys, <redacted>)",
            self.ring.current,
            self.ring.ciphers.len()
        )
    }
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

impl Sealer {
    /// A sealer of every purpose with one master key.
    pub fn new(key: SecretKey) -> Self {
        Self::with_previous(key, Vec::new()).expect("one key cannot conflict")
    }

    /// A sealer of every purpose: `current` seals; `previous` keys only open (rotation). The same key
    /// given twice counts once; two different keys with one id are refused.
    pub fn with_previous(
        current: SecretKey,
        previous: Vec<SecretKey>,
    ) -> Result<Self, CryptoError> {
        let mut masters: Vec<SecretKey> = Vec::with_capacity(1 + previous.len());
        for k in std::iter::once(current).chain(previous) {
            match masters.iter().find(|m| m.key_id() == k.key_id()) {
                Some(m) if *m == k => {}
                Some(_) => {
                    return Err(CryptoError::KeyConflict(format!(
                        "two different master keys have the id {}",
                        k.key_id()
                    )))
                }
                None => masters.push(k),
            }
        }
        let mut ciphers = HashMap::new();
        for m in &masters {
            for p in Purpose::ALL {
                ciphers.insert((m.key_id(), p), cipher(&m.purpose_key(p).key));
            }
        }
        Ok(Sealer {
            ring: Arc::new(Keyring {
                current: masters[0].key_id(),
                ciphers,
                purposes: Purpose::ALL.to_vec(),
                v1: masters.iter().map(|m| cipher(&m.0)).collect(),
                master: masters.into_iter().next(),
            }),
        })
    }

    /// A sealer of one purpose only, from purpose keys (`current` seals; `previous` keys only open),
    /// all of the same purpose: opening or sealing anything else fails with [`CryptoError::NotHeld`],
    /// and `v1` values with [`CryptoError::NeedsMasterKey`].
    pub fn restricted(current: PurposeKey, previous: Vec<PurposeKey>) -> Result<Self, CryptoError> {
        let purpose = current.purpose;
        let mut ciphers = HashMap::new();
        let mut seen: HashMap<KeyId, [u8; 32]> = HashMap::new();
        for k in std::iter::once(current.clone()).chain(previous) {
            if k.purpose != purpose {
                return Err(CryptoError::KeyConflict(format!(
                    "a {} key among {purpose} keys",
                    k.purpose
                )));
            }
            match seen.get(&k.kid) {
                Some(existing) if *existing == k.key => continue,
                Some(_) => {
                    return Err(CryptoError::KeyConflict(format!(
                        "two different {purpose} keys have the id {}",
                        k.kid
                    )))
                }
                None => {}
            }
            seen.insert(k.kid, k.key);
            ciphers.insert((k.kid, purpose), cipher(&k.key));
        }
        Ok(Sealer {
            ring: Arc::new(Keyring {
                current: current.kid,
                ciphers,
                purposes: vec![purpose],
                v1: Vec::new(),
                master: None,
            }),
        })
    }

    /// The id of the key new values are sealed under.
    pub fn key_id(&self) -> KeyId {
        self.ring.current
    }

    /// Whether this sealer holds a key with id `kid` (of any purpose it holds).
    pub fn holds_key_id(&self, kid: KeyId) -> bool {
        self.ring.ciphers.keys().any(|(k, _)| *k == kid)
    }

    /// Whether it holds keys of `purpose`.
    pub fn holds(&self, purpose: Purpose) -> bool {
        self.ring.purposes.contains(&purpose)
    }

    /// The current key of one purpose, to hand to a service that needs that purpose only. Only a
    /// sealer of master keys derives them (`None` for a sealer of purpose keys, which has no reason to
    /// hand its key on).
    pub fn purpose_key(&self, purpose: Purpose) -> Option<PurposeKey> {
        self.ring.master.as_ref().map(|m| m.purpose_key(purpose))
    }

    /// Seals `plaintext` as a secret of `purpose` belonging to `entity`, under the current key.
    pub fn seal(
        &self,
        purpose: Purpose,
        entity: &str,
        plaintext: &str,
    ) -> Result<String, CryptoError> {
        let kid = self.ring.current;
        let cipher = self
            .ring
            .ciphers
            .get(&(kid, purpose))
            .ok_or(CryptoError::NotHeld(purpose))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &purpose.aad(entity),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(format!("{V2}{kid}.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed as a secret of `purpose` belonging to `entity` (`entity` is not checked
    /// for `v1` values, which did not bind one).
    pub fn open(
        &self,
        purpose: Purpose,
        entity: &str,
        sealed: &str,
    ) -> Result<String, CryptoError> {
        if !self.holds(purpose) {
            return Err(CryptoError::NotHeld(purpose));
        }
        if let Some(body) = sealed.strip_prefix(V2) {
            let (kid, body) = body.split_once('.').ok_or(CryptoError::Malformed)?;
            let kid = KeyId::parse(kid).ok_or(CryptoError::Malformed)?;
            let (nonce, ct) = split(body)?;
            let cipher = self
                .ring
                .ciphers
                .get(&(kid, purpose))
                .ok_or_else(|| CryptoError::UnknownKeyId(kid.to_string()))?;
            let pt = cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ct,
                        aad: &purpose.aad(entity),
                    },
                )
                .map_err(|_| CryptoError::Open)?;
            return String::from_utf8(pt).map_err(|_| CryptoError::Malformed);
        }
        if let Some(body) = sealed.strip_prefix(V1) {
            let (nonce, ct) = split(body)?;
            if self.ring.v1.is_empty() {
                return Err(CryptoError::NeedsMasterKey);
            }
            for cipher in &self.ring.v1 {
                let opened = cipher.decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ct,
                        aad: purpose.label().as_bytes(),
                    },
                );
                if let Ok(pt) = opened {
                    return String::from_utf8(pt).map_err(|_| CryptoError::Malformed);
                }
            }
            return Err(CryptoError::Open);
        }
        Err(CryptoError::Malformed)
    }

    /// Whether `sealed` is a `v2` value under the current key (what [`Sealer::reseal`] leaves alone).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed_key_id(sealed) == Some(self.ring.current)
    }

    /// A value rewritten under the current key: `None` when it is already (a `v2` value of the current
    /// key id), else the value opened (with whichever key sealed it) and sealed again.
    pub fn reseal(
        &self,
        purpose: Purpose,
        entity: &str,
        sealed: &str,
    ) -> Result<Option<String>, CryptoError> {
        if self.is_current(sealed) {
            return Ok(None);
        }
        let clear = self.open(purpose, entity, sealed)?;
        self.seal(purpose, entity, &clear).map(Some)
    }

    /// Whether `text` looks like a sealed value (it may still fail to open).
    pub fn is_sealed(text: &str) -> bool {
        (text.starts_with(V1) && text.len() > V1.len() + 40)
            || (sealed_key_id(text).is_some() && text.len() > V2.len() + 9 + 40)
    }
}

/// The nonce and ciphertext of a sealed value's body.
fn split(body: &str) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CryptoError::Malformed)?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    Ok((nonce.try_into().expect("NONCE_LEN bytes"), ct.to_vec()))
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

    /// A `v1` value as the previous version sealed it: the master key itself, the label as AAD.
    fn seal_v1(key: &SecretKey, purpose: Purpose, plaintext: &str) -> String {
        let nonce = [7u8; NONCE_LEN];
        let ct = cipher(&key.0)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: purpose.label().as_bytes(),
                },
            )
            .unwrap();
        format!("{V1}{}", URL_SAFE_NO_PAD.encode([&nonce[..], &ct].concat()))
    }

    #[test]
    fn roundtrip_binds_purpose_entity_and_key() {
        let s = Sealer::new(SecretKey::generate());
        let sealed = s.seal(Purpose::RealmKey, "r1", "sk-abc").unwrap();
        assert!(!sealed.contains("sk-abc"));
        assert!(sealed.starts_with(&format!("v2.{}.", s.key_id())));
        assert_eq!(sealed_key_id(&sealed), Some(s.key_id()));
        assert!(Sealer::is_sealed(&sealed));
        assert_eq!(s.open(Purpose::RealmKey, "r1", &sealed).unwrap(), "sk-abc");
        assert_eq!(
            s.open(Purpose::ModelApiKey, "r1", &sealed),
            Err(CryptoError::Open)
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "r2", &sealed),
            Err(CryptoError::Open),
            "another entity's record"
        );
        let other = Sealer::new(SecretKey::generate());
        assert_eq!(
            other.open(Purpose::RealmKey, "r1", &sealed),
            Err(CryptoError::UnknownKeyId(s.key_id().to_string()))
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "r1", "v1.zz"),
            Err(CryptoError::Malformed)
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "r1", "v2.zz.abc"),
            Err(CryptoError::Malformed)
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "r1", "sk-abc"),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn key_ids_and_purpose_keys_are_stable_derivations() {
        let zero = SecretKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        let kid = zero.key_id().to_string();
        assert_eq!(kid.len(), 8);
        assert!(kid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(zero.key_id(), zero.clone().key_id());
        assert_ne!(zero.key_id(), SecretKey::generate().key_id());
        // Each purpose has its own key, none of them the master key.
        let keys: Vec<[u8; 32]> = Purpose::ALL
            .iter()
            .map(|p| zero.purpose_key(*p).key)
            .collect();
        for (i, a) in keys.iter().enumerate() {
            assert_ne!(a, &zero.0);
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let pk = zero.purpose_key(Purpose::AgentConfigKey);
        let text = pk.to_text();
        assert!(
            text.starts_with(&format!("agent-config-key:{kid}:")),
            "{text}"
        );
        assert_eq!(PurposeKey::from_text(&text).unwrap(), pk);
        assert!(!format!("{pk:?}").contains(&text[text.len() - 20..]));
        for bad in [
            "",
            "agent-config-key",
            &format!("nope:{kid}:{}", STANDARD.encode([0u8; 32])),
            &format!("command:XYZ:{}", STANDARD.encode([0u8; 32])),
            &format!("command:{kid}:AAAA"),
        ] {
            assert!(
                matches!(
                    PurposeKey::from_text(bad),
                    Err(CryptoError::BadPurposeKey(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_edge_sealer_opens_config_keys_only() {
        let master = SecretKey::generate();
        let worker = Sealer::new(master.clone());
        let edge =
            Sealer::restricted(master.purpose_key(Purpose::AgentConfigKey), Vec::new()).unwrap();
        let cfg = worker
            .seal(Purpose::AgentConfigKey, "r1", "sk-frame")
            .unwrap();
        assert_eq!(
            edge.open(Purpose::AgentConfigKey, "r1", &cfg).unwrap(),
            "sk-frame"
        );
        for p in [Purpose::ModelApiKey, Purpose::RealmKey, Purpose::Command] {
            let sealed = worker.seal(p, "r1", "sk-not-for-edges").unwrap();
            assert_eq!(edge.open(p, "r1", &sealed), Err(CryptoError::NotHeld(p)));
            // Not even by pretending it is a config key: another key, so it does not open.
            assert_eq!(
                edge.open(Purpose::AgentConfigKey, "r1", &sealed),
                Err(CryptoError::Open)
            );
            assert_eq!(edge.seal(p, "r1", "x"), Err(CryptoError::NotHeld(p)));
        }
        // v1 values need the master key.
        let old = seal_v1(&master, Purpose::AgentConfigKey, "sk-old");
        assert_eq!(
            edge.open(Purpose::AgentConfigKey, "r1", &old),
            Err(CryptoError::NeedsMasterKey)
        );
        assert!(edge.purpose_key(Purpose::AgentConfigKey).is_none());
        // The API's key seals commands only.
        let api = Sealer::restricted(master.purpose_key(Purpose::Command), Vec::new()).unwrap();
        let cmd = api.seal(Purpose::Command, "cmd-1", "sk-rest").unwrap();
        assert_eq!(
            worker.open(Purpose::Command, "cmd-1", &cmd).unwrap(),
            "sk-rest"
        );
        assert_eq!(
            api.seal(Purpose::AgentConfigKey, "r1", "x"),
            Err(CryptoError::NotHeld(Purpose::AgentConfigKey))
        );
        // Keys of one purpose only.
        assert!(matches!(
            Sealer::restricted(
                master.purpose_key(Purpose::Command),
                vec![master.purpose_key(Purpose::AgentConfigKey)]
            ),
            Err(CryptoError::KeyConflict(_))
        ));
    }

    #[test]
    fn v1_values_still_open_with_the_master_key() {
        let master = SecretKey::generate();
        let s = Sealer::new(master.clone());
        let old = seal_v1(&master, Purpose::ModelApiKey, "sk-legacy");
        assert!(Sealer::is_sealed(&old) && is_v1(&old));
        assert_eq!(
            s.open(Purpose::ModelApiKey, "any-entity", &old).unwrap(),
            "sk-legacy"
        );
        assert_eq!(
            s.open(Purpose::RealmKey, "any-entity", &old),
            Err(CryptoError::Open)
        );
        // A rotated deployment opens v1 values of its previous key too.
        let rotated = Sealer::with_previous(SecretKey::generate(), vec![master]).unwrap();
        assert_eq!(
            rotated.open(Purpose::ModelApiKey, "m", &old).unwrap(),
            "sk-legacy"
        );
        let new = rotated
            .reseal(Purpose::ModelApiKey, "m", &old)
            .unwrap()
            .unwrap();
        assert!(rotated.is_current(&new));
        assert_eq!(rotated.reseal(Purpose::ModelApiKey, "m", &new), Ok(None));
    }

    #[test]
    fn rotation_opens_previous_keys_and_seals_under_the_current_one() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let old = Sealer::new(a.clone());
        let sealed_a = old.seal(Purpose::RealmKey, "r1", "sk-a").unwrap();
        let rotated = Sealer::with_previous(b.clone(), vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(rotated.key_id(), b.key_id());
        assert!(rotated.holds_key_id(a.key_id()));
        assert!(!rotated.is_current(&sealed_a));
        let sealed_b = rotated
            .reseal(Purpose::RealmKey, "r1", &sealed_a)
            .unwrap()
            .expect("rewritten");
        assert!(sealed_b.starts_with(&format!("v2.{}.", b.key_id())));
        let only_b = Sealer::new(b.clone());
        assert_eq!(
            only_b.open(Purpose::RealmKey, "r1", &sealed_b).unwrap(),
            "sk-a"
        );
        assert_eq!(
            only_b.open(Purpose::RealmKey, "r1", &sealed_a),
            Err(CryptoError::UnknownKeyId(a.key_id().to_string()))
        );
        // Edges rotate the same way, with the previous frame key.
        let edge = Sealer::restricted(
            b.purpose_key(Purpose::AgentConfigKey),
            vec![a.purpose_key(Purpose::AgentConfigKey)],
        )
        .unwrap();
        let frame_a = old
            .seal(Purpose::AgentConfigKey, "did:key:z1", "sk-f")
            .unwrap();
        assert_eq!(
            edge.open(Purpose::AgentConfigKey, "did:key:z1", &frame_a)
                .unwrap(),
            "sk-f"
        );
        assert_eq!(edge.key_id(), b.key_id());
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
        assert!(!format!("{k:?}").contains(&k.to_base64()));
        let list = SecretKey::list_from_base64(&format!(" {}, ,{}", k.to_base64(), k.to_base64()))
            .unwrap();
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn virtual_keys_are_unique_and_prefixed() {
        let a = generate_virtual_key();
        assert!(a.starts_with("sk-vc-") && a.len() == 54);
        assert_ne!(a, generate_virtual_key());
        assert_eq!(key_prefix(&a), "sk-vc-".to_string() + &a[6..8]);
    }
}
