//! Request bodies and query strings, validated the way FastAPI + Pydantic v2 (lax mode) do it.
//!
//! Handlers read the raw bytes, call [`json_object`], then pull typed fields out with [`Fields`],
//! which collects every problem before failing — as Pydantic reports all errors at once.

use axum::http::{header, HeaderMap};
use serde_json::{json, Map, Value};

use crate::error::{detail, ApiError};

/// A body field that may be absent, explicitly `null`, or set: `/key/update` treats each differently.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<T> {
    /// Not in the body.
    Absent,
    /// Given as JSON `null`.
    Null,
    /// Given with a valid value.
    Set(T),
}

impl<T> Field<T> {
    /// The value, treating `null` like absence.
    pub(crate) fn value(self) -> Option<T> {
        match self {
            Field::Set(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }
}

/// Parse a JSON object body like FastAPI does for a Pydantic body model.
///
/// Empty body → 422 `missing`; not declared JSON → 422 `model_attributes_type`; malformed → 422
/// `json_invalid`; valid JSON that is not an object → the bare 500 the real proxy answers.
pub(crate) fn json_object(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::validation(
            "missing",
            vec![json!("body")],
            "Field required",
            Value::Null,
        ));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct.to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim().to_owned();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::validation(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::PlainInternal),
        Err(e) => Err(ApiError::Validation(vec![json!({
            "type": "json_invalid",
            "loc": ["body", e.column().saturating_sub(1)],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "Expecting value"},
        })])),
    }
}

/// Typed access to the fields of a body (or query) object, collecting validation errors.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// First element of every `loc`: `"body"` or `"query"`.
    root: &'static str,
    errors: Vec<Value>,
}

impl<'a> Fields<'a> {
    /// Fields of a JSON body.
    pub(crate) fn body(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            root: "body",
            errors: Vec::new(),
        }
    }

    /// Fields of a query string (values are strings; Pydantic parses them the same way).
    pub(crate) fn query(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            root: "query",
            errors: Vec::new(),
        }
    }

    /// Fail with a 422 listing every error seen, if any.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }

    fn push(&mut self, kind: &str, path: &[Value], msg: &str, input: &Value) {
        let mut loc = vec![json!(self.root)];
        loc.extend_from_slice(path);
        self.errors.push(detail(kind, loc, msg, input.clone()));
    }

    fn get(&self, name: &str) -> Field<&'a Value> {
        match self.obj.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(v) => Field::Set(v),
        }
    }

    /// A required `str` (`missing` when absent, `string_type` when `null`).
    pub(crate) fn require_str(&mut self, name: &str) -> Option<String> {
        match self.get(name) {
            Field::Absent => {
                let input = Value::Object(self.obj.clone());
                self.push("missing", &[json!(name)], "Field required", &input);
                None
            }
            Field::Null => {
                self.push(
                    "string_type",
                    &[json!(name)],
                    "Input should be a valid string",
                    &Value::Null,
                );
                None
            }
            Field::Set(_) => self.str(name).value(),
        }
    }

    /// A required `List[str]` (`missing` when absent, `list_type` when `null`).
    pub(crate) fn require_str_list(&mut self, name: &str) -> Option<Vec<String>> {
        match self.get(name) {
            Field::Absent => {
                let input = Value::Object(self.obj.clone());
                self.push("missing", &[json!(name)], "Field required", &input);
                None
            }
            Field::Null => {
                self.reject_null(name, "list_type", "Input should be a valid list");
                None
            }
            Field::Set(_) => self.str_list(name).value(),
        }
    }

    /// Report a `null` given for a field that has a default but is not `Optional` (`models: list
    /// = []`, `blocked: bool = False`): Pydantic validates the `null` against the type and fails.
    pub(crate) fn reject_null(&mut self, name: &str, kind: &str, msg: &str) {
        if self.get(name) == Field::Null {
            self.push(kind, &[json!(name)], msg, &Value::Null);
        }
    }

    /// An optional `str`.
    pub(crate) fn str(&mut self, name: &str) -> Field<String> {
        match self.get(name) {
            Field::Set(Value::String(s)) => Field::Set(s.clone()),
            Field::Set(other) => {
                self.push(
                    "string_type",
                    &[json!(name)],
                    "Input should be a valid string",
                    other,
                );
                Field::Absent
            }
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional `float` (ints, numeric strings and bools are accepted, as in lax mode).
    pub(crate) fn f64(&mut self, name: &str) -> Field<f64> {
        match self.get(name) {
            Field::Set(v) => match v {
                Value::Number(n) => n.as_f64().map_or(Field::Absent, Field::Set),
                Value::Bool(b) => Field::Set(if *b { 1.0 } else { 0.0 }),
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) => Field::Set(f),
                    Err(_) => {
                        self.push(
                            "float_parsing",
                            &[json!(name)],
                            "Input should be a valid number, unable to parse string as a number",
                            v,
                        );
                        Field::Absent
                    }
                },
                other => {
                    self.push(
                        "float_type",
                        &[json!(name)],
                        "Input should be a valid number",
                        other,
                    );
                    Field::Absent
                }
            },
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional `int` (integral floats, numeric strings and bools are accepted).
    pub(crate) fn i64(&mut self, name: &str) -> Field<i64> {
        match self.get(name) {
            Field::Set(v) => match int_of(v) {
                Ok(i) => Field::Set(i),
                Err((kind, msg)) => {
                    self.push(kind, &[json!(name)], msg, v);
                    Field::Absent
                }
            },
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional `bool` (`"true"`, `"yes"`, `1`, ... are accepted).
    pub(crate) fn bool(&mut self, name: &str) -> Field<bool> {
        match self.get(name) {
            Field::Set(v) => match bool_of(v) {
                Ok(b) => Field::Set(b),
                Err((kind, msg)) => {
                    self.push(kind, &[json!(name)], msg, v);
                    Field::Absent
                }
            },
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional `List[str]`.
    pub(crate) fn str_list(&mut self, name: &str) -> Field<Vec<String>> {
        match self.get(name) {
            Field::Set(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            ok = false;
                            self.push(
                                "string_type",
                                &[json!(name), json!(i)],
                                "Input should be a valid string",
                                other,
                            );
                        }
                    }
                }
                if ok {
                    Field::Set(out)
                } else {
                    Field::Absent
                }
            }
            Field::Set(other) => {
                self.push(
                    "list_type",
                    &[json!(name)],
                    "Input should be a valid list",
                    other,
                );
                Field::Absent
            }
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional untyped `list` (items are checked by the caller, as the proxy's DB layer does).
    pub(crate) fn list(&mut self, name: &str) -> Field<Vec<Value>> {
        match self.get(name) {
            Field::Set(Value::Array(items)) => Field::Set(items.clone()),
            Field::Set(other) => {
                self.push(
                    "list_type",
                    &[json!(name)],
                    "Input should be a valid list",
                    other,
                );
                Field::Absent
            }
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional `dict`.
    pub(crate) fn object(&mut self, name: &str) -> Field<Map<String, Value>> {
        self.object_as(
            name,
            "dict_type",
            "Input should be a valid dictionary",
            None,
        )
    }

    /// An optional nested Pydantic model (`model_type` error naming `class_name`).
    pub(crate) fn model(&mut self, name: &str, class_name: &str) -> Field<Map<String, Value>> {
        let msg = format!("Input should be a valid dictionary or instance of {class_name}");
        self.object_as(name, "model_type", &msg, Some(class_name))
    }

    fn object_as(
        &mut self,
        name: &str,
        kind: &str,
        msg: &str,
        class_name: Option<&str>,
    ) -> Field<Map<String, Value>> {
        match self.get(name) {
            Field::Set(Value::Object(map)) => Field::Set(map.clone()),
            Field::Set(other) => {
                let loc = vec![json!(self.root), json!(name)];
                let mut d = detail(kind, loc, msg, other.clone());
                if let (Some(class), Some(obj)) = (class_name, d.as_object_mut()) {
                    obj.insert("ctx".into(), json!({ "class_name": class }));
                }
                self.errors.push(d);
                Field::Absent
            }
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
        }
    }

    /// An optional integer query parameter with bounds (`ge`/`le` errors carry `ctx`).
    pub(crate) fn bounded_int(&mut self, name: &str, ge: i64, le: Option<i64>) -> Option<i64> {
        let v = self.i64(name).value()?;
        let input = self.obj.get(name).cloned().unwrap_or(Value::Null);
        if v < ge {
            let msg = format!("Input should be greater than or equal to {ge}");
            let mut d = detail(
                "greater_than_equal",
                vec![json!(self.root), json!(name)],
                &msg,
                input,
            );
            if let Some(obj) = d.as_object_mut() {
                obj.insert("ctx".into(), json!({ "ge": ge }));
            }
            self.errors.push(d);
            return None;
        }
        if let Some(le) = le.filter(|le| v > *le) {
            let msg = format!("Input should be less than or equal to {le}");
            let mut d = detail(
                "less_than_equal",
                vec![json!(self.root), json!(name)],
                &msg,
                input,
            );
            if let Some(obj) = d.as_object_mut() {
                obj.insert("ctx".into(), json!({ "le": le }));
            }
            self.errors.push(d);
            return None;
        }
        Some(v)
    }
}

fn int_of(v: &Value) -> Result<i64, (&'static str, &'static str)> {
    const INT_TYPE: (&str, &str) = ("int_type", "Input should be a valid integer");
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
                    Some(_) => Err((
                        "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                    )),
                    None => Err(INT_TYPE),
                }
            }
        }
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| {
            (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        }),
        _ => Err(INT_TYPE),
    }
}

fn bool_of(v: &Value) -> Result<bool, (&'static str, &'static str)> {
    const PARSING: (&str, &str) = (
        "bool_parsing",
        "Input should be a valid boolean, unable to interpret input",
    );
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(PARSING),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            _ => Err(PARSING),
        },
        _ => Err(("bool_type", "Input should be a valid boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error() {
        let obj = json!({"models": "m1", "max_budget": "abc", "rpm_limit": 1.5, "key": null});
        let obj = obj.as_object().cloned().unwrap_or_default();
        let mut f = Fields::body(&obj);
        assert_eq!(f.str_list("models"), Field::Absent);
        assert_eq!(f.f64("max_budget"), Field::Absent);
        assert_eq!(f.i64("rpm_limit"), Field::Absent);
        assert_eq!(f.str("key"), Field::Null);
        assert_eq!(f.str("absent"), Field::Absent);
        match f.finish() {
            Err(ApiError::Validation(d)) => {
                assert_eq!(d.len(), 3);
                assert_eq!(d[0]["type"], "list_type");
                assert_eq!(d[1]["type"], "float_parsing");
                assert_eq!(d[2]["type"], "int_from_float");
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }
}
