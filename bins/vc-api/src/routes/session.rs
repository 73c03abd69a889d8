//! `/api/session`: the dashboard's login. A bearer token (the admin token or a realm admin's) is
//! exchanged for a session: an `HttpOnly`, `SameSite=Strict` cookie that authenticates the REST API like
//! the token, for [`SESSION_TTL`], and ends server-side at logout.
//!
//! Writes authenticated by the cookie must carry the session's CSRF token in `X-CSRF-Token` (returned by
//! `POST` and `GET /api/session`): a page on another site can make the browser send the cookie (where
//! `SameSite` is not enforced) but cannot read the token. The token is derived from the session id, so
//! it survives a page reload without being stored anywhere.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vc_shared::crypto::sha256_hex;
use vc_shared::domain::now_rfc3339;
use vc_shared::store::StoredSession;

use crate::auth::{authenticate_token, cookie, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::{Actor, AppState};

/// How long a session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// `POST /api/session` body.
#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    /// The admin token or a realm admin's token secret.
    pub token: String,
}

/// A session as the dashboard sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Who the session acts as (`admin`, `token:<id>`).
    pub actor: String,
    /// Global admin.
    pub admin: bool,
    /// A realm admin's realms.
    pub realm_ids: Vec<String>,
    /// Send it as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
}

/// `{session}`.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    /// The session.
    pub session: SessionView,
}

fn csrf_of(session_id: &str) -> String {
    sha256_hex(&format!("vc-csrf:{session_id}"))
}

fn set_cookie(value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    // Behind a TLS-terminating proxy the cookie is `Secure` too.
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let c = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

/// Log in: exchange a token for a session cookie.
#[utoipa::path(post, path = "/api/session", tag = "session", request_body = LoginBody,
    responses((status = 200, body = SessionBody, description = "Set-Cookie: vc_session (HttpOnly, SameSite=Strict)"),
        (status = 400), (status = 401)))]
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let token = body
        .as_ref()
        .and_then(|b| b.get("token"))
        .and_then(|t| t.as_str())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("token: required (the admin token or a realm admin's token)")
        })?;
    let actor = authenticate_token(token, &s).await?;
    let id = {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let csrf = csrf_of(&id);
    let expires = time::OffsetDateTime::now_utc() + SESSION_TTL;
    let expires_at = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let stored = StoredSession {
        actor: actor.name.clone(),
        admin: actor.admin,
        realm_ids: actor.realm_ids.clone(),
        token_id: actor.name.strip_prefix("token:").map(str::to_string),
        csrf_sha256: sha256_hex(&csrf),
        created_at: now_rfc3339(),
        expires_at: expires_at.clone(),
    };
    s.store
        .put_session(&sha256_hex(&id), &stored, SESSION_TTL)
        .await?;
    let body = SessionBody {
        session: SessionView {
            actor: actor.name,
            admin: actor.admin,
            realm_ids: actor.realm_ids,
            csrf_token: csrf,
            expires_at: Some(expires_at),
        },
    };
    Ok((
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            set_cookie(&id, SESSION_TTL.as_secs(), &headers),
        )],
        Json(body),
    )
        .into_response())
}

/// The session of the request's cookie (with its CSRF token); `{"session": null}` for a request without
/// any credentials (no cookie, no bearer token), so a login page can ask without provoking an error.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = SessionBody, description = "the session, or `{\"session\": null}` without credentials"),
        (status = 401, description = "a cookie of a session that ended, or a bad bearer token"), (status = 404, description = "authenticated by a bearer token, not a session")))]
pub async fn current(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> ApiResult<Json<SessionBody>> {
    let id = cookie(&headers, SESSION_COOKIE)
        .filter(|_| actor.csrf_sha256.is_some())
        .ok_or_else(|| ApiError::not_found("no session: this request carries a bearer token"))?;
    let stored = s.store.session(&sha256_hex(id)).await?;
    Ok(Json(SessionBody {
        session: SessionView {
            actor: actor.name,
            admin: actor.admin,
            realm_ids: actor.realm_ids,
            csrf_token: csrf_of(id),
            expires_at: stored.map(|st| st.expires_at),
        },
    }))
}

/// Log out: the session ends server-side (its cookie no longer authenticates) and the cookie is cleared.
#[utoipa::path(delete, path = "/api/session", tag = "session", responses((status = 204), (status = 401), (status = 403)))]
pub async fn logout(
    State(s): State<AppState>,
    _actor: Actor,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        s.store.delete_session(&sha256_hex(id)).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, set_cookie("", 0, &headers))],
    )
        .into_response())
}
