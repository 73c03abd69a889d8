//! Signed webhooks of the budget events (`VC_BUDGET_WEBHOOK_URLS`, `VC_BUDGET_WEBHOOK_SECRET`).
//!
//! Each delivery is `POST <url>` with the event as its JSON body (`{id, at, actor, kind, subject,
//! details}`) and the header `Vc-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC keyed with
//! the secret over `<t>.<body>`. A receiver recomputes it over the raw body, compares in constant time,
//! and refuses a `t` too far from its clock (replays). `Vc-Event-Id` names the event: a delivery retried
//! after a timeout may arrive twice, so receivers de-duplicate on it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Vc-Signature";
/// The event id header (deduplication on the receiver's side).
pub const EVENT_ID_HEADER: &str = "Vc-Event-Id";
/// The event kind header.
pub const EVENT_KIND_HEADER: &str = "Vc-Event-Kind";

/// The events that are delivered as webhooks.
pub const EVENT_KINDS: [&str; 3] = [
    "realm.budget.threshold",
    "realm.budget.blocked",
    "realm.budget.unblocked",
];

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `Vc-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a `Vc-Signature` value against `body`: the signature must match (constant-time) and `t` be
/// within `tolerance_secs` of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    (now - t).abs() <= tolerance_secs && mac(secret, t, body).verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let body = br#"{"kind":"realm.budget.threshold"}"#;
        let s = sign("a-secret-of-at-least-32-characters!!", 1_800_000_000, body);
        assert!(s.starts_with("t=1800000000,v1="));
        assert_eq!(s.len(), "t=1800000000,v1=".len() + 64);
        let secret = "a-secret-of-at-least-32-characters!!";
        assert!(verify(secret, &s, body, 1_800_000_010, 300));
        assert!(!verify(secret, &s, body, 1_800_000_400, 300), "too old");
        assert!(!verify("another", &s, body, 1_800_000_010, 300));
        assert!(!verify(secret, &s, b"{}", 1_800_000_010, 300));
        assert!(!verify(secret, "garbage", body, 1_800_000_010, 300));
        // HMAC-SHA256("key", "1.x"), as Python's hmac module computes it.
        assert_eq!(
            sign("key", 1, b"x"),
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }
}
