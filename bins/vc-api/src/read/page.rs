//! Paging, filters and conditional responses of the read endpoints.
//!
//! - **Cursors**: lists walk an immutable order (models newest first, realms and agents oldest first,
//!   ties by id), and a cursor is the position after the last item of a page (its creation time and
//!   id, base64url, opaque to clients). A page starts strictly after it, so an item created, changed
//!   or deleted between two pages never makes another one appear twice or go missing.
//! - **ETags**: every read answers with a strong `ETag` (a hash of the body); `If-None-Match` with the
//!   same value gets `304 Not Modified` and no body.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;

use crate::error::ApiError;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// Most items per page.
pub const MAX_LIMIT: usize = 1_000;

/// A list's query string, checked: only the parameters the list knows, each well-formed.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// Page size.
    pub limit: usize,
    /// Position after which the page starts.
    pub after: Option<(String, String)>,
    /// The list's own filters, by name (validated by the caller's `filters`).
    pub filters: HashMap<String, String>,
}

/// Parses `limit`, `cursor` and the filters a list accepts (`filters`); anything else is a 400 naming
/// the parameter.
pub fn parse(raw: &HashMap<String, String>, filters: &[&str]) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in raw {
        match k.as_str() {
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit: must be an integer from 1 to {MAX_LIMIT}, got {v:?}"
                        ))
                    })?
            }
            "cursor" => q.after = Some(decode_cursor(v)?),
            f if filters.contains(&f) => {
                q.filters.insert(k.clone(), v.clone());
            }
            _ => {
                let mut known = vec!["limit", "cursor"];
                known.extend_from_slice(filters);
                return Err(ApiError::bad_request(format!(
                    "{k}: unknown query parameter (this list takes {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(q)
}

/// A boolean filter (`true` / `false`).
pub fn flag(q: &ListQuery, name: &str) -> Result<Option<bool>, ApiError> {
    match q.filters.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name}: must be true or false, got {v:?}"
        ))),
    }
}

/// A filter that takes one of `allowed`.
pub fn one_of<'a>(
    q: &'a ListQuery,
    name: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    match q.filters.get(name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name}: must be one of {}, got {v:?}",
            allowed.join(", ")
        ))),
    }
}

/// A free-text filter of 1–200 characters.
pub fn text<'a>(q: &'a ListQuery, name: &str) -> Result<Option<&'a str>, ApiError> {
    match q.filters.get(name) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.chars().count() <= 200 => Ok(Some(v)),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name}: must be 1 to 200 characters"
        ))),
    }
}

const CURSOR_TAG: &str = "c1";

/// The cursor after an item at `(created, id)`.
pub fn encode_cursor(created: &str, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{CURSOR_TAG}\n{created}\n{id}"))
}

fn decode_cursor(s: &str) -> Result<(String, String), ApiError> {
    let bad =
        || ApiError::bad_request("cursor: not a cursor this API returned (pass `next` as is)");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(CURSOR_TAG), Some(created), Some(id)) if !id.is_empty() => {
            Ok((created.to_string(), id.to_string()))
        }
        _ => Err(bad()),
    }
}

/// Takes up to `limit` items; `next` is the cursor after the last one when more follow.
pub fn take<T>(
    mut items: impl Iterator<Item = T>,
    limit: usize,
    key: impl Fn(&T) -> (String, String),
) -> (Vec<T>, Option<String>) {
    let page: Vec<T> = items.by_ref().take(limit).collect();
    let next = if page.len() == limit && items.next().is_some() {
        page.last().map(|t| {
            let (c, i) = key(t);
            encode_cursor(&c, &i)
        })
    } else {
        None
    };
    (page, next)
}

/// A page of a list held whole in order of `key` (ascending): the items after the query's cursor, up to
/// its limit (the lists walked from an ordered index start at the cursor and use [`take`]).
pub fn take_after<T>(
    items: impl Iterator<Item = T>,
    q: &ListQuery,
    key: impl Fn(&T) -> (String, String),
) -> (Vec<T>, Option<String>) {
    let after = q.after.as_ref();
    let items = items.filter(|t| after.is_none_or(|a| key(t) > *a));
    take(items, q.limit, &key)
}

/// A rendered JSON body and its ETag.
#[derive(Clone)]
pub struct Rendered {
    body: Bytes,
    etag: HeaderValue,
}

impl Rendered {
    /// Renders `v`.
    pub fn of<T: serde::Serialize>(v: &T) -> Result<Rendered, ApiError> {
        let body = serde_json::to_vec(v).map_err(|e| {
            ApiError::new(
                vc_shared::error::ErrorCode::Internal,
                format!("encode: {e}"),
            )
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let etag = HeaderValue::from_str(&format!("\"{:016x}{:08x}\"", h.finish(), body.len()))
            .expect("hex is a valid header value");
        Ok(Rendered {
            body: body.into(),
            etag,
        })
    }

    /// 200 with the body and its ETag, or 304 when the request's `If-None-Match` names it.
    pub fn respond(&self, req: &HeaderMap) -> Response {
        let matches = req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t.as_bytes() == self.etag.as_bytes());
        if matches {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, self.etag.clone())],
            )
                .into_response();
        }
        (
            StatusCode::OK,
            [
                (header::ETAG, self.etag.clone()),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            self.body.clone(),
        )
            .into_response()
    }
}

/// Rendered pages by request (path, query, caller's scope), valid while the read model's clock has
/// not moved. Bounded: when full it starts over.
#[derive(Default)]
pub struct PageCache {
    pages: Mutex<HashMap<String, (u64, Rendered)>>,
}

/// Pages the cache holds at most.
const CACHE_PAGES: usize = 1_024;

impl PageCache {
    /// The page for `key` rendered at `version`, rendering it with `render` if need be.
    pub fn get_or_render(
        &self,
        key: String,
        version: u64,
        render: impl FnOnce() -> Result<Rendered, ApiError>,
    ) -> Result<Rendered, ApiError> {
        {
            let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((v, r)) = pages.get(&key) {
                if *v == version {
                    return Ok(r.clone());
                }
            }
        }
        let r = render()?;
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if pages.len() >= CACHE_PAGES {
            pages.clear();
        }
        pages.insert(key, (version, r.clone()));
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let c = encode_cursor("2026-12-07T10:00:00Z", "did:key:z6Mk");
        let q = parse(&raw(&[("cursor", &c)]), &[]).unwrap();
        assert_eq!(
            q.after,
            Some(("2026-12-07T10:00:00Z".into(), "did:key:z6Mk".into()))
        );
        for bad in ["", "x", "!!", &encode_cursor("a", "")] {
            let e = parse(&raw(&[("cursor", bad)]), &[]).unwrap_err();
            assert!(e.message.starts_with("cursor:"), "{}", e.message);
        }
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert_eq!(parse(&raw(&[]), &[]).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(parse(&raw(&[("limit", "1000")]), &[]).unwrap().limit, 1000);
        for bad in ["0", "1001", "-1", "x", ""] {
            let e = parse(&raw(&[("limit", bad)]), &[]).unwrap_err();
            assert!(e.message.starts_with("limit:"), "{}", e.message);
        }
        let e = parse(&raw(&[("realm", "r")]), &["realmId"]).unwrap_err();
        assert!(e.message.starts_with("realm: unknown"), "{}", e.message);
        let q = parse(&raw(&[("online", "yes")]), &["online"]).unwrap();
        assert!(flag(&q, "online")
            .unwrap_err()
            .message
            .starts_with("online:"));
    }

    #[test]
    fn pages_end_with_no_cursor() {
        let items = || (0..5).map(|i| (format!("t{i}"), format!("id{i}")));
        let (p, next) = take(items(), 2, |t| t.clone());
        assert_eq!(p.len(), 2);
        assert_eq!(next, Some(encode_cursor("t1", "id1")));
        let (p, next) = take(items(), 5, |t| t.clone());
        assert_eq!((p.len(), next), (5, None));
        let q = parse(
            &raw(&[("limit", "2"), ("cursor", &encode_cursor("t1", "id1"))]),
            &[],
        )
        .unwrap();
        let (p, next) = take_after(items(), &q, |t| t.clone());
        assert_eq!(
            p,
            [
                ("t2".to_string(), "id2".to_string()),
                ("t3".into(), "id3".into())
            ]
        );
        assert_eq!(next, Some(encode_cursor("t3", "id3")));
    }

    #[test]
    fn etags_answer_304() {
        let r = Rendered::of(&serde_json::json!({"a": 1})).unwrap();
        let etag = r.respond(&HeaderMap::new()).headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(r.respond(&h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(r.respond(&h).status(), StatusCode::OK);
    }
}
