//! How the interpolated TOML tree becomes the typed [`Config`]: the top-level keys, each
//! component table handed to its type (listed once, in `config/mod.rs`), and full key
//! paths in every error.
//!
//! Each component table is deserialized alone, with `serde_path_to_error`, under its full
//! path (`sources.<id>.…`), after its `type` was taken out and matched here: serde's
//! internally tagged enums would lose the key path below the component (and buffer values
//! in a way that quotes them in errors). Must not: do network I/O, or quote a secret.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::common::{ConfigError, invalid};
use super::{Config, SinkConfig, SourceConfig, StateConfig};

/// The typed config from the interpolated TOML tree.
pub(super) fn from_value(value: toml::Value) -> Result<Config, ConfigError> {
    let toml::Value::Table(mut top) = value else {
        return Err(invalid("(top level)", "must be a TOML table"));
    };
    if let Some(unknown) = top
        .keys()
        .find(|k| !["state", "ops", "sources", "sinks"].contains(&k.as_str()))
    {
        return Err(invalid(
            unknown.as_str(),
            "unknown key; the top level has `state`, `ops`, `sources` and `sinks`",
        ));
    }
    let state = match top.remove("state") {
        Some(v) => typed("state", v)?,
        None => StateConfig::default(),
    };
    let ops = top.remove("ops").map(|v| typed("ops", v)).transpose()?;
    Ok(Config {
        state,
        ops,
        sources: components("sources", top.remove("sources"), SourceConfig::from_table)?,
        sinks: components("sinks", top.remove("sinks"), SinkConfig::from_table)?,
    })
}

/// Deserialize `value` as a `T`; errors name the full key below `key`, a missing one
/// included (`sources.vbo_main.url`); `key` itself for other problems of the whole table.
pub(super) fn typed<T: DeserializeOwned>(key: &str, value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut full = if path == "." || path.is_empty() {
            key.to_string()
        } else {
            format!("{key}.{path}")
        };
        // serde says "missing field `url`" at the table; the key is what to name.
        let message = e.into_inner().to_string();
        // toml adds "\nin `key`" (the key is named already) and a trailing newline.
        let message = message.split("\nin `").next().unwrap_or_default().trim();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field.to_string());
        if let Some(field) = missing {
            full = format!("{full}.{field}");
            return invalid(full, "is required but missing; add it");
        }
        invalid(full, plain_words(message))
    })
}

/// serde's and chrono's wording in the user's terms: a table, a whole number, an RFC 3339
/// time (chrono's parse errors name no format).
fn plain_words(message: &str) -> String {
    const CHRONO: [&str; 6] = [
        "input contains invalid characters",
        "premature end of input",
        "trailing input",
        "input is out of range",
        "input is not enough for unique date and time",
        "no possible date and time matching input",
    ];
    if CHRONO.contains(&message) {
        return format!(
            "is not a time ({message}); write an RFC 3339 time with its zone, e.g. \"2024-01-01T00:00:00Z\""
        );
    }
    let mut out = message.to_string();
    if let Some(at) = out.find("expected struct ") {
        out.replace_range(at.., "expected a table (`{ key = ... }` or a [section])");
    }
    for int in ["u8", "u16", "u32", "u64", "usize", "i32", "i64"] {
        let serde = format!("expected {int}");
        if out.ends_with(&serde) {
            let at = out.len() - serde.len();
            out.replace_range(at.., "expected a whole number (without quotes)");
        }
    }
    out
}

/// The components of `sources` or `sinks`, each built by `build(key, type, table)` from
/// its table without the `type` key.
fn components<T>(
    table: &str,
    value: Option<toml::Value>,
    build: fn(&str, &str, toml::Value) -> Result<T, ConfigError>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let toml::Value::Table(items) = value else {
        return Err(invalid(
            table,
            format!("must be a table of components keyed by id, e.g. [{table}.main]"),
        ));
    };
    let mut out = BTreeMap::new();
    for (id, item) in items {
        let key = format!("{table}.{id}");
        let toml::Value::Table(mut fields) = item else {
            return Err(invalid(
                &key,
                format!("must be a table, e.g. [{key}] with a `type` key"),
            ));
        };
        let kind = match fields.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => return Err(invalid(format!("{key}.type"), "must be a string")),
            None => {
                return Err(invalid(
                    format!("{key}.type"),
                    "is required but missing; add it (e.g. type = \"vbo\", type = \"splunk_hec\")",
                ));
            }
        };
        let component = build(&key, &kind, toml::Value::Table(fields))?;
        out.insert(id, component);
    }
    Ok(out)
}

/// serde's own wording for an unknown `type`.
pub(super) fn unknown_type(key: &str, kind: &str, known: &'static [&'static str]) -> ConfigError {
    let e = <serde::de::value::Error as serde::de::Error>::unknown_variant(kind, known);
    invalid(format!("{key}.type"), e.to_string())
}
