//! Who is calling: the bootstrap global admin (`VC_ADMIN_TOKEN`) or a realm-admin token
//! (`POST /api/tokens`, looked up by the SHA-256 of its secret), and what each may do.
//!
//! | actor | may |
//! |---|---|
//! | global admin (`admin`) | everything |
//! | realm admin (`token:<id>`) | read its realms (`GET /api/realms` filtered, `/api/realms/{id}`, `/models`); add and remove agents of its realms; read agents that are members of one of its realms (`/api/agents/{did}`, `/llm-config`, `/realm-llm` limited to its realms); set their config to realm routing through one of its realms; clear a config that routes through one of its realms; read the commands it submitted |
//!
//! Everything else answers 403 `FORBIDDEN`. Every 401 and every 403 of these checks is recorded as an
//! `auth.failed` audit event by [`crate::access`].

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use vc_shared::crypto::sha256_hex;
use vc_shared::domain::ConfigSource;

use crate::error::ApiError;
use crate::AppState;

/// Prefix of realm-admin token secrets.
pub const TOKEN_PREFIX: &str = "vct_";
/// Length of a token secret: the prefix and 32 random bytes in hex.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 64;

/// Constant-time comparison of two secrets (through their digests, so lengths leak nothing either).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Whether a bearer value has the shape of a realm-admin token secret (checked before any Redis call,
/// so that floods of garbage tokens cost nothing but a hash).
fn looks_like_token(t: &str) -> bool {
    t.len() == TOKEN_LEN
        && t.starts_with(TOKEN_PREFIX)
        && t.as_bytes()[TOKEN_PREFIX.len()..]
            .iter()
            .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "vc_session";
/// Header that carries a session's CSRF token on writes authenticated by the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Authenticates a request: its bearer token, or else its session cookie (see
/// [`crate::routes::session`]). A Redis failure is a 503 (not an auth failure).
pub async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Actor, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            return session_actor(id, state).await;
        }
        return Err(ApiError::unauthorized(
            "Authorization: Bearer <token> is required (or the session cookie of POST /api/session)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be \"Bearer <token>\""))?;
    authenticate_token(token, state).await
}

/// The token of an `Authorization` value: the scheme `Bearer` in any case (RFC 9110: schemes are
/// case-insensitive), one or more spaces, the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The actor a bearer token (the admin token or a realm-admin token's secret) stands for.
pub async fn authenticate_token(token: &str, state: &AppState) -> Result<Actor, ApiError> {
    if same_secret(token, &state.admin_token) {
        return Ok(Actor {
            name: "admin".into(),
            admin: true,
            realm_ids: Vec::new(),
            csrf_sha256: None,
        });
    }
    if looks_like_token(token) {
        if let Some(t) = state.store.token_by_secret_hash(&sha256_hex(token)).await? {
            return Ok(Actor {
                name: format!("token:{}", t.id),
                admin: false,
                realm_ids: t.realm_ids,
                csrf_sha256: None,
            });
        }
    }
    Err(ApiError::unauthorized("invalid token"))
}

/// The actor of a session cookie: the session must exist (not expired, not logged out) and, for a
/// realm admin, its token must still exist.
async fn session_actor(id: &str, state: &AppState) -> Result<Actor, ApiError> {
    let expired = || ApiError::unauthorized("session expired or ended: log in again");
    if id.len() > 128 {
        return Err(expired());
    }
    let s = state
        .store
        .session(&sha256_hex(id))
        .await?
        .ok_or_else(expired)?;
    if let Some(t) = &s.token_id {
        if state.store.token(t).await?.is_none() {
            return Err(expired());
        }
    }
    Ok(Actor {
        name: s.actor,
        admin: s.admin,
        realm_ids: s.realm_ids,
        csrf_sha256: Some(s.csrf_sha256),
    })
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Audit name (`admin`, `token:<id>`).
    pub name: String,
    /// Global admin.
    pub admin: bool,
    /// Realms a realm admin administers.
    pub realm_ids: Vec<String>,
    /// Set when the request was authenticated by a session cookie: the SHA-256 of the session's CSRF
    /// token, which every write must carry ([`CSRF_HEADER`]).
    pub csrf_sha256: Option<String>,
}

impl Actor {
    /// The realms this caller may see: `None` (all) for the global admin, its own for a realm admin.
    pub fn visible_realms(&self) -> Option<&[String]> {
        (!self.admin).then_some(self.realm_ids.as_slice())
    }

    /// 403 for a write authenticated by a session cookie without its CSRF token: a form or script on
    /// another site that makes the browser send the cookie cannot know the token.
    pub fn check_csrf(
        &self,
        method: &axum::http::Method,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let Some(want) = &self.csrf_sha256 else {
            return Ok(());
        };
        if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
            return Ok(());
        }
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(sha256_hex);
        if given.is_some_and(|g| same_secret(&g, want)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "a write authenticated by the session cookie needs its X-CSRF-Token header (from POST or GET /api/session)",
            ))
        }
    }

    /// Whether this is a global admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// 403 unless global admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this operation needs a global admin token",
            ))
        }
    }

    /// Whether this actor may read the realm.
    pub fn can_read_realm(&self, realm_id: &str) -> bool {
        self.admin || self.realm_ids.iter().any(|r| r == realm_id)
    }

    /// 403 unless admin or admin of the realm.
    pub fn require_realm(&self, realm_id: &str) -> Result<(), ApiError> {
        if self.can_read_realm(realm_id) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token does not administer realm {realm_id}"
            )))
        }
    }

    /// 403 unless admin, or the agent is a member of one of this actor's realms. For a realm admin an
    /// unknown agent is a 403 too (checked before existence: no probing of other realms' DIDs).
    pub async fn require_agent(&self, state: &AppState, did: &str) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        let realms = state.store.agent_realms(did).await?;
        if realms.iter().any(|m| self.realm_ids.contains(&m.realm_id)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "agent {did} is not in a realm this token administers"
            )))
        }
    }

    /// For a realm admin: 403 unless the agent belongs to no realm yet or already to one of this actor's
    /// realms. Taking an agent that another realm holds into one's own realm (and then re-routing it)
    /// needs a global admin.
    pub async fn require_adoptable(&self, state: &AppState, did: &str) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        let realms = state.store.agent_realms(did).await?;
        if realms.is_empty() || realms.iter().any(|m| self.realm_ids.contains(&m.realm_id)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "agent {did} belongs to realms this token does not administer"
            )))
        }
    }

    /// For a realm admin: 403 unless the agent's config source is realm routing through one of this
    /// actor's realms (what a realm admin may clear).
    pub fn require_routed_here(
        &self,
        did: &str,
        source: Option<&ConfigSource>,
    ) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        match source {
            Some(ConfigSource::Realm { realm_id, .. }) if self.realm_ids.contains(realm_id) => {
                Ok(())
            }
            _ => Err(ApiError::forbidden(format!(
                "agent {did} is not routed through a realm this token administers"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("bEaReR abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    use super::*;

    #[test]
    fn token_shape() {
        let good = format!("{TOKEN_PREFIX}{}", "ab".repeat(32));
        assert!(looks_like_token(&good));
        assert!(!looks_like_token(&good[..good.len() - 1]));
        assert!(!looks_like_token(&good.to_uppercase()));
        assert!(!looks_like_token(&format!("xxx_{}", "ab".repeat(32))));
        assert!(!looks_like_token("vct_é"));
    }

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; vc_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let by_cookie = Actor {
            name: "admin".into(),
            admin: true,
            realm_ids: Vec::new(),
            csrf_sha256: Some(sha256_hex("tok")),
        };
        let post = axum::http::Method::POST;
        assert!(by_cookie.check_csrf(&post, &HeaderMap::new()).is_err());
        assert!(by_cookie
            .check_csrf(&axum::http::Method::GET, &HeaderMap::new())
            .is_ok());
        let mut with = HeaderMap::new();
        with.insert(CSRF_HEADER, "tok".parse().unwrap());
        assert!(by_cookie.check_csrf(&post, &with).is_ok());
        let bearer = Actor {
            csrf_sha256: None,
            ..by_cookie
        };
        assert!(bearer.check_csrf(&post, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn realm_admin_checks() {
        let a = Actor {
            name: "token:t".into(),
            admin: false,
            realm_ids: vec!["r1".into()],
            csrf_sha256: None,
        };
        assert!(a.require_admin().unwrap_err().access_denied);
        assert!(a.require_realm("r1").is_ok());
        assert!(a.require_realm("r2").is_err());
        let here = ConfigSource::Realm {
            realm_id: "r1".into(),
            model_id: "m".into(),
        };
        let there = ConfigSource::Realm {
            realm_id: "r2".into(),
            model_id: "m".into(),
        };
        let reg = ConfigSource::Registry {
            model_id: "m".into(),
        };
        assert!(a.require_routed_here("d", Some(&here)).is_ok());
        assert!(a.require_routed_here("d", Some(&there)).is_err());
        assert!(a.require_routed_here("d", Some(&reg)).is_err());
        assert!(a.require_routed_here("d", None).is_err());
    }
}
