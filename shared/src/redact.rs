//! `Debug` for types that carry secrets: every field as derived `Debug` would show it, except the secret
//! ones, shown as `Some(<redacted>)` or `None`. A value logged with `?` (or in a panic message, an
//! assertion, a dead letter's error) then never carries the secret.

/// Implements `Debug` for `$ty`: `$field`s shown as usual, `$secret`s (each an `Option<_>`) redacted.
///
/// ```ignore
/// redacted_debug!(LlmConfig { provider, model, base_url } secret { api_key });
/// ```
#[macro_export]
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* $(,)? } secret { $($secret:ident),+ $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(
                        stringify!($secret),
                        &self.$secret.as_ref().map(|_| $crate::redact::Redacted),
                    ))+
                    .finish()
            }
        }
    };
}

/// Shown as `<redacted>`.
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Names of the fields whose string values [`redact_secret_fields`] hides.
pub const SECRET_FIELDS: &[&str] = &["apiKey", "api_key"];

/// The payload with the string value of every secret field (`"apiKey": "…"`, see [`SECRET_FIELDS`])
/// replaced by `<redacted>`, or `None` when there is none. Works on the text, so also on payloads that
/// are not valid JSON (a truncated or malformed command is exactly what gets dead-lettered); a value cut
/// off by the end of the payload is redacted to the end.
pub fn redact_secret_fields(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    let mut changed = false;
    while i < payload.len() {
        if let Some(value_start) = secret_value_at(payload, i) {
            out.extend_from_slice(&payload[i..value_start]);
            out.extend_from_slice(b"<redacted>");
            i = string_end(payload, value_start);
            changed = true;
        } else {
            out.push(payload[i]);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// If a quoted secret field name starts at `i` and is followed by `:` and an opening quote, the index
/// right after that quote.
fn secret_value_at(p: &[u8], i: usize) -> Option<usize> {
    if p[i] != b'"' {
        return None;
    }
    let name = SECRET_FIELDS.iter().find(|f| {
        let end = i + 1 + f.len();
        p.get(i + 1..end) == Some(f.as_bytes()) && p.get(end) == Some(&b'"')
    })?;
    let mut j = i + name.len() + 2;
    while p.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    if p.get(j) != Some(&b':') {
        return None;
    }
    j += 1;
    while p.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    (p.get(j) == Some(&b'"')).then_some(j + 1)
}

/// The index of the closing quote of the string that starts at `from` (escapes skipped), or the end.
fn string_end(p: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < p.len() {
        match p[j] {
            b'\\' => j += 2,
            b'"' => return j,
            _ => j += 1,
        }
    }
    p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_even_in_broken_json() {
        let r = |s: &str| redact_secret_fields(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            r(r#"{"name":"x","apiKey":"sk-secret","provider":"openai"}"#).unwrap(),
            r#"{"name":"x","apiKey":"<redacted>","provider":"openai"}"#
        );
        assert_eq!(
            r(r#"{"apiKey" : "sk-\"quoted\" secret", "api_key":"k2"}"#).unwrap(),
            r#"{"apiKey" : "<redacted>", "api_key":"<redacted>"}"#
        );
        // Truncated in the middle of the value.
        assert_eq!(
            r(r#"{"apiKey":"sk-sec"#).unwrap(),
            r#"{"apiKey":"<redacted>"#
        );
        // Nothing secret, or a null key: left as it is.
        assert_eq!(r(r#"{"apiKey":null,"name":"apiKey"}"#), None);
        assert_eq!(r("{{{"), None);
        assert_eq!(r(r#"{"apiKeySealed":"v1.abc"}"#), None);
    }

    #[test]
    fn debug_of_secret_bearing_types_hides_the_secret() {
        let c = crate::domain::LlmConfig {
            provider: "openai".into(),
            model: "gpt".into(),
            base_url: None,
            api_key: Some("sk-very-secret".into()),
            allowed_models: None,
            system_prompt: None,
            max_tokens: None,
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("sk-very-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        let b = crate::command::ModelRegisterBody {
            api_key: Some("sk-very-secret".into()),
            api_key_sealed: Some("sealed".into()),
            name: Some("n".into()),
            ..Default::default()
        };
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("sealed\""),
            "{shown}"
        );
        assert!(shown.contains("name: Some(\"n\")"), "{shown}");
        let b = crate::command::LlmConfigSetBody {
            api_key: Some("sk-very-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{b:?}").contains("sk-very-secret"));
        let b = crate::command::ModelUpdateBody {
            api_key: Some(Some("sk-very-secret".into())),
            ..Default::default()
        };
        assert!(!format!("{b:?}").contains("sk-very-secret"));
        let s = crate::command::SecretInput::Clear("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "Clear(<redacted>)");
    }
}
