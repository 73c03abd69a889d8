//! Who is calling: the bootstrap global admin (`VC_ADMIN_TOKEN`).

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use vc_shared::error::ErrorCode;

use crate::error::ApiError;
use crate::{Actor, AppState};

/// Constant-time comparison of two secrets (through their digests, so lengths leak nothing either).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Authenticates the bearer token of a request.
pub async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Actor, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "Authorization: Bearer <token> is required",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "Authorization header must be \"Bearer <token>\"",
            )
        })?;
    if same_secret(token, &state.admin_token) {
        return Ok(Actor {
            name: "admin".into(),
            admin: true,
            realm_ids: Vec::new(),
        });
    }
    tracing::info!("Rejected a request with an unknown bearer token.");
    Err(ApiError::new(ErrorCode::Unauthorized, "invalid token"))
}

impl Actor {
    /// Whether this is a global admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// 403 unless global admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
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
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token does not administer realm {realm_id}"),
            ))
        }
    }

    /// 403 unless admin, or the agent is a member of one of this actor's realms.
    pub async fn require_agent(&self, state: &AppState, did: &str) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        let realms = state.store.agent_realms(did).await?;
        if realms.iter().any(|m| self.realm_ids.contains(&m.realm_id)) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("agent {did} is not in a realm this token administers"),
            ))
        }
    }
}
