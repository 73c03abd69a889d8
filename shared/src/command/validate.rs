//! Field validators: every rule a command field is held to, each answering a [`DomainError`] that
//! names the field.

use super::{MAX_COMMAND_ID_LEN, MAX_URL_LEN, MAX_USD_PER_TOKEN};
use crate::did::parse_did_key;
use crate::domain::{slug, Provider};
use crate::error::{DomainError, DomainResult};

pub(super) fn check_len(field: &str, value: &str, max: usize) -> DomainResult<()> {
    if value.len() > max {
        return Err(DomainError::bad_request(format!(
            "{field} is too long (at most {max} bytes of UTF-8)"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(DomainError::bad_request(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

pub(super) fn required(field: &str, value: Option<String>, max: usize) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    check_len(field, &v, max)?;
    Ok(v)
}

pub(super) fn optional(
    field: &str,
    value: Option<String>,
    max: usize,
) -> DomainResult<Option<String>> {
    match value.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            check_len(field, &v, max)?;
            Ok(Some(v))
        }
    }
}

pub(super) fn non_empty_if_given(
    field: &str,
    value: Option<String>,
    max: usize,
) -> DomainResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => required(field, Some(v), max).map(Some),
    }
}

/// Validates an identifier (registry id, realm id): 1–128 of `[A-Za-z0-9_:-]` (no `.`: ids are NATS
/// subject tokens).
pub fn validate_id(field: &str, value: Option<String>) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    if v.len() > 128
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
    {
        return Err(DomainError::bad_request(format!(
            "{field} must be 1-128 characters of letters, digits, '-', '_' or ':'"
        )));
    }
    Ok(v)
}

/// Validates a `did:key` Ed25519 DID.
pub fn validate_did(field: &str, value: Option<String>) -> DomainResult<String> {
    let v = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if v.is_empty() {
        return Err(DomainError::bad_request(format!("{field} is required")));
    }
    parse_did_key(&v).map_err(|e| {
        DomainError::bad_request(format!(
            "{field} is not a valid did:key Ed25519 identifier: {e}"
        ))
    })?;
    Ok(v)
}

/// Validates an http(s) URL.
pub fn validate_url(field: &str, value: &str) -> DomainResult<String> {
    check_len(field, value, MAX_URL_LEN)?;
    let parsed = url::Url::parse(value.trim()).map_err(|e| {
        DomainError::bad_request(format!("{field} must be an http or https URL ({e})"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(DomainError::bad_request(format!(
            "{field} must be an http or https URL"
        )));
    }
    Ok(value.trim().to_string())
}

pub(super) fn provider(field: &str, value: Option<String>) -> DomainResult<Provider> {
    let v = required(field, value, 64)?;
    Provider::parse(&v).ok_or_else(|| {
        DomainError::bad_request(format!(
            "{field} must be one of: {}",
            Provider::ALL
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Validates a model price in USD per token: a number from 0 to [`MAX_USD_PER_TOKEN`]. (JSON carries no
/// NaN or infinity, and `1e400` is refused as invalid JSON: the finiteness check keeps the rule whole.)
pub(super) fn usd_per_token(field: &str, value: f64) -> DomainResult<f64> {
    if !value.is_finite() || value < 0.0 {
        return Err(DomainError::bad_request(format!(
            "{field} must be a number >= 0"
        )));
    }
    if value > MAX_USD_PER_TOKEN {
        return Err(DomainError::bad_request(format!(
            "{field} is too large (at most {MAX_USD_PER_TOKEN})"
        )));
    }
    // `-0` is accepted as 0, and stored and shown as 0.
    Ok(if value == 0.0 { 0.0 } else { value })
}

pub(super) fn color(value: Option<String>) -> DomainResult<Option<String>> {
    match optional("color", value, 32)? {
        None => Ok(None),
        Some(c) => {
            let hex = c.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 4 | 6 | 8) || !hex.chars().all(|ch| ch.is_ascii_hexdigit())
            {
                return Err(DomainError::bad_request(
                    "color must be a hex colour such as #6366f1",
                ));
            }
            Ok(Some(c))
        }
    }
}

pub(super) fn realm_slug(field: &str, value: &str) -> DomainResult<String> {
    let s = slug(value);
    if s.is_empty() {
        return Err(DomainError::bad_request(format!(
            "{field} must contain at least one ASCII letter or digit (a-z, 0-9)"
        )));
    }
    if s.len() > 100 {
        return Err(DomainError::bad_request(format!(
            "{field} is too long (at most 100 characters)"
        )));
    }
    Ok(s)
}

/// Validates a command id given in `Nats-Msg-Id` or `Idempotency-Key`.
pub fn validate_command_id(id: &str) -> DomainResult<()> {
    if id.is_empty() || id.len() > MAX_COMMAND_ID_LEN || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(DomainError::bad_request(format!(
            "command id must be 1-{MAX_COMMAND_ID_LEN} printable ASCII characters"
        )));
    }
    Ok(())
}
