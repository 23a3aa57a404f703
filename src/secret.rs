//! A string that must never be printed: passwords, API keys, tokens.
//!
//! `Debug` and `Display` print `***`; there is deliberately no `Serialize`. The only way to
//! the value is [`Secret::expose`], which makes every use greppable.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
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
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
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
        Ok(Secret(v.to_string()))
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
