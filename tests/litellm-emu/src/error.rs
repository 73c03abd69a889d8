//! The three error shapes the real proxy answers with, and the Python-flavoured formatting its
//! messages carry.
//!
//! LiteLLM raises `ProxyException`s (`{"error": {message, type, param, code}}`), lets a few
//! `HTTPException`s through unwrapped (`{"detail": ...}`), and FastAPI turns body/query validation
//! failures into `422 {"detail": [{type, loc, msg, input}]}`. A handful of malformed bodies crash the
//! handler and come back as Starlette's plain-text `500 Internal Server Error`. Every handler maps
//! to the wire through [`ApiError`] exactly once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error as the real proxy would put it on the wire.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// A LiteLLM `ProxyException`: `{"error": {"message", "type", "param", "code"}}`.
    Proxy {
        status: StatusCode,
        message: String,
        /// `error.type`: a string, the string `"None"`, or JSON `null`, as the route does it.
        kind: Value,
        /// `error.param`: usually the string `"None"`, sometimes a field name or `null`.
        param: Value,
    },
    /// A FastAPI `HTTPException` that reached the client unwrapped: `{"detail": <detail>}`.
    Detail { status: StatusCode, detail: Value },
    /// FastAPI request validation: `422 {"detail": [...]}`.
    Validation(Vec<Value>),
    /// Starlette's bare `500 Internal Server Error` (text/plain), seen when a handler crashes.
    PlainInternal,
}

impl ApiError {
    /// A `ProxyException` with `type` and `param` given as JSON values.
    pub(crate) fn proxy(
        status: u16,
        message: impl Into<String>,
        kind: Value,
        param: Value,
    ) -> Self {
        ApiError::Proxy {
            status: status_or_500(status),
            message: message.into(),
            kind,
            param,
        }
    }

    /// The most common shape: `type` = `"auth_error"`, `param` = `"None"`.
    pub(crate) fn auth(status: u16, message: impl Into<String>) -> Self {
        Self::proxy(status, message, json!("auth_error"), json!("None"))
    }

    /// `type` = `"internal_server_error"`, `param` = `"None"` (what `handle_exception_on_proxy` emits).
    pub(crate) fn internal(status: u16, message: impl Into<String>) -> Self {
        Self::proxy(
            status,
            message,
            json!("internal_server_error"),
            json!("None"),
        )
    }

    /// `type` and `param` both the string `"None"` (router and rate-limit errors).
    pub(crate) fn untyped(status: u16, message: impl Into<String>) -> Self {
        Self::proxy(status, message, json!("None"), json!("None"))
    }

    /// A single FastAPI validation error at `loc`.
    pub(crate) fn validation(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Self {
        ApiError::Validation(vec![detail(kind, loc, msg, input)])
    }
}

/// One FastAPI validation entry.
pub(crate) fn detail(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Proxy {
                status,
                message,
                kind,
                param,
            } => {
                let body = json!({"error": {
                    "message": message,
                    "type": kind,
                    "param": param,
                    "code": status.as_u16().to_string(),
                }});
                (status, Json(body)).into_response()
            }
            ApiError::Detail { status, detail } => {
                (status, Json(json!({ "detail": detail }))).into_response()
            }
            ApiError::Validation(details) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": details })),
            )
                .into_response(),
            ApiError::PlainInternal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; charset=utf-8",
                )],
                "Internal Server Error",
            )
                .into_response(),
        }
    }
}

/// Python's `repr()` of a string: single quotes unless the text holds a `'` and no `"`.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `str({'error': msg})` — how LiteLLM turns an `HTTPException(detail={"error": ...})` into a message.
pub(crate) fn py_error_dict(msg: &str) -> String {
    format!("{{'error': {}}}", py_repr(msg))
}

/// Python's `repr()` of a list of strings: `['a', 'b']`.
pub(crate) fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Python's `repr()` of a float: `1.0`, `0.0001`, `-3.0`.
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs_match_cpython() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(
            py_error_dict("Model with id=x not found in db"),
            "{'error': 'Model with id=x not found in db'}"
        );
        assert_eq!(py_list(&["m1".into(), "m2".into()]), "['m1', 'm2']");
        assert_eq!(py_float(-1.0), "-1.0");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(1.5), "1.5");
    }
}
