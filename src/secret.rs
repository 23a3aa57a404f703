//! A string that must never be printed: passwords, API keys, tokens.
//!
//! `Debug` and `Display` print `***`; there is deliberately no `Serialize`. The only way to
//! the value is [`Secret::expose`], which makes every use greppable.
//!
//! A server or proxy may still echo a secret back (a form body or a header quoted in an
//! error page). Every live secret is therefore known here, and [`redact`] replaces it, as
//! sent or as it would appear URL- or JSON-encoded, in text from the network before that
//! text reaches an error or a log. The registry holds weak references: a secret dropped
//! (an expired token) leaves it, so it never grows with a long run.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Default for Secret {
    fn default() -> Self {
        Secret(Arc::from(""))
    }
}

/// Secrets shorter than this are not redacted from text (they would match ordinary words).
const MIN_REDACTED_LEN: usize = 4;

/// Every secret alive in the process.
static KNOWN: Mutex<Vec<Weak<str>>> = Mutex::new(Vec::new());

fn known() -> std::sync::MutexGuard<'static, Vec<Weak<str>>> {
    KNOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `text` with every live secret replaced by `***`: as sent, form-URL-encoded (`+` or
/// `%20` for a space) and JSON-escaped. JSON escapes other than serde_json's own (`\/`,
/// `\u002B` as .NET writes `+`, `\u00e9` as Python writes `é`) are first rewritten the
/// way serde_json writes them, so every JSON spelling of a secret is found.
pub fn redact(text: &str) -> Cow<'_, str> {
    let live: Vec<Arc<str>> = known().iter().filter_map(Weak::upgrade).collect();
    if live.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = canonical_json_escapes(text);
    for secret in live {
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let json = serde_json::to_string(&*secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let forms = [secret.to_string(), form.replace('+', "%20"), form, json];
        for form in forms {
            if form.len() >= MIN_REDACTED_LEN && out.contains(form.as_str()) {
                out = Cow::Owned(out.replace(form.as_str(), "***"));
            }
        }
    }
    out
}

/// `text` with `\/` and `\uXXXX` escapes (surrogate pairs included) written as serde_json
/// writes the character: itself, or `\"`, `\\` and serde's escapes for control characters.
/// Other text, and escapes that are not well formed, stay as they are.
fn canonical_json_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains("\\/") && !text.contains("\\u") {
        return Cow::Borrowed(text);
    }
    let hex4 = |s: &str| -> Option<u32> {
        let h = s.get(..4)?;
        h.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(h, 16).ok())
            .flatten()
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (decoded, used) = match after.as_bytes().first() {
            Some(b'/') => (Some('/'), 1),
            Some(b'u') => match hex4(&after[1..]) {
                Some(high @ 0xD800..=0xDBFF) => {
                    let low = after
                        .get(5..7)
                        .filter(|s| *s == "\\u")
                        .and_then(|_| hex4(&after[7..]))
                        .filter(|low| (0xDC00..=0xDFFF).contains(low));
                    match low {
                        Some(low) => (
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)),
                            11,
                        ),
                        None => (None, 0),
                    }
                }
                Some(code) => (char::from_u32(code), 5),
                None => (None, 0),
            },
            // `\\` and the short escapes: copied as they are (the escaped character too,
            // so `\\u0041` stays an escaped backslash followed by text).
            Some(_) => (None, 1),
            None => (None, 0),
        };
        match decoded {
            Some(c) => {
                let mut buf = [0u8; 4];
                let one: &str = c.encode_utf8(&mut buf);
                let written = serde_json::to_string(one).unwrap_or_default();
                // Without the quotes around it.
                out.push_str(
                    written
                        .get(1..written.len().saturating_sub(1))
                        .unwrap_or(one),
                );
                rest = &after[used..];
            }
            None => {
                let copy = 1 + used.min(after.len());
                let copy = (0..=copy)
                    .rev()
                    .find(|n| rest.is_char_boundary(at + n))
                    .unwrap_or(1);
                out.push_str(&rest[at..at + copy]);
                rest = &rest[at + copy..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value: Arc<str> = Arc::from(value.into());
        if value.trim().len() >= MIN_REDACTED_LEN {
            let mut known = known();
            known.retain(|w| w.strong_count() > 0);
            known.push(Arc::downgrade(&value));
        }
        Secret(value)
    }

    /// The secret value. Call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Only strings are secrets; anything else is refused with an error that names the kind of
/// value (integer, table...) but never the value itself: serde's own "invalid type" errors
/// quote numbers and strings, and a mistyped password is still a password. The value goes
/// through `deserialize_any` so every kind reaches our visitor (a format's own type check,
/// e.g. `serde_json::Value`'s for `deserialize_string`, would quote it); secrets come from
/// self-describing formats (TOML) only.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(kind: &str) -> E {
        E::custom(format!(
            "expected a string, got {kind} (the value is not shown); quote it, e.g. \"${{NAME}}\""
        ))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::refuse("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::refuse("an integer"))
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(Self::refuse("an integer"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::refuse("an integer"))
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(Self::refuse("an integer"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_char<E: serde::de::Error>(self, v: char) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::refuse("bytes"))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(Self::refuse("nothing"))
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(SecretVisitor)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(Self::refuse("nothing"))
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(SecretVisitor)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::refuse("an array"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::refuse("a table"))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::refuse("an enum"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn echoed_secrets_are_redacted_while_alive() {
        let password = Secret::new("S3cret Passw0rd!");
        let key = Secret::new("k3y\"quoted");
        let echo = "grant_type=password&password=S3cret+Passw0rd%21 or S3cret%20Passw0rd%21 \
                    or S3cret Passw0rd! and {\"x-api-key\":\"k3y\\\"quoted\"}";
        let shown = redact(echo);
        for leak in ["S3cret", "Passw0rd", "k3y"] {
            assert!(!shown.contains(leak), "{shown}");
        }
        assert_eq!(shown.matches("***").count(), 4, "{shown}");
        drop((password, key));
        assert_eq!(redact("S3cret Passw0rd!"), "S3cret Passw0rd!");
        let short = Secret::new("ab");
        assert_eq!(redact("abc"), "abc");
        drop(short);
    }

    /// Other JSON writers escape differently from serde_json: .NET writes `+` and `&` as
    /// `\u002B` and `\u0026`, PHP `/` as `\/`, Python non-ASCII as `\u00e9` (and astral
    /// characters as surrogate pairs). Each spelling is found.
    #[test]
    fn secrets_in_other_json_escapes_are_redacted() {
        let password = Secret::new("Summer+2025&Co/é\"😀");
        for echo in [
            r#"{"error":"password=Summer\u002B2025\u0026Co\/\u00e9\"\ud83d\ude00"}"#,
            r#"{"error":"password=Summer\u002b2025\u0026Co\/\u00E9\u0022\uD83D\uDE00"}"#,
            r#"{"error":"password=Summer+2025&Co/é\"😀"}"#,
        ] {
            let shown = redact(echo);
            assert!(!shown.contains("Summer"), "{echo} -> {shown}");
            assert_eq!(shown, r#"{"error":"password=***"}"#);
        }
        // Escapes that are not a secret stay readable, and still parse.
        let other = r#"{"a":"x\u002By \\u0041 \n \ud800 \u12"}"#;
        let shown = redact(other);
        assert_eq!(shown, r#"{"a":"x+y \\u0041 \n \ud800 \u12"}"#);
        drop(password);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        password: Secret,
    }

    #[test]
    fn deserialize_errors_never_contain_the_value() {
        // Through `toml::Value` like the config loader (whose errors carry no source text).
        let parse = |text: &str| {
            let value: toml::Value = toml::from_str(text).unwrap();
            <Holder as serde::Deserialize>::deserialize(value)
        };
        let ok = parse("password = \"hunter2\"").unwrap();
        assert_eq!(ok.password.expose(), "hunter2");
        for (text, kind) in [
            ("password = 98765432123", "integer"),
            ("password = -98765432123", "integer"),
            ("password = 98765.4321", "number"),
            ("password = true", "boolean"),
            ("password = [\"h2-98765\"]", "array"),
            ("password = { v = \"h2-98765\" }", "table"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("expected a string"), "{text}: {e}");
            assert!(e.contains(kind), "{text}: {e}");
            for leak in ["98765", "4321", "true", "h2-"] {
                assert!(!e.contains(leak), "{text}: {e}");
            }
        }
        let v = serde_json::json!({"password": 98765432123u64});
        let e = serde_json::from_value::<Holder>(v).unwrap_err().to_string();
        assert!(!e.contains("98765"), "{e}");
    }
}
