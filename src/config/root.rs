//! How the interpolated TOML tree becomes the typed [`Config`]: the composition root (each
//! `type` and the struct it deserializes into), full key paths in every error, and the
//! secret files read at load.
//!
//! Each component table is deserialized alone, with `serde_path_to_error`, under its full
//! path (`sources.<id>.…`), after its `type` was taken out and matched here: serde's
//! internally tagged enums would lose the key path below the component (and buffer values
//! in a way that quotes them in errors). Must not: do network I/O, or quote a secret.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{
    Config, ConfigError, MAX_SECRET_FILE_BYTES, SinkConfig, SourceConfig, StateConfig, invalid,
};
use crate::secret::Secret;

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
        sources: components("sources", top.remove("sources"), source_from)?,
        sinks: components("sinks", top.remove("sinks"), sink_from)?,
    })
}

/// Read every `*_file` secret into its inline key (and forget the path), so a missing
/// or unreadable file is a config error now rather than a runtime failure later, and
/// the file is read once.
pub(super) fn read_secret_files(config: &mut Config) -> Result<(), ConfigError> {
    for (id, source) in &mut config.sources {
        match source {
            SourceConfig::Vbo(c) => take_secret_file(
                &format!("sources.{id}.password"),
                &mut c.password,
                &mut c.password_file,
            )?,
            SourceConfig::Vdc(c) => {
                let key = format!("sources.{id}.api_key");
                take_secret_file(&key, &mut c.api_key, &mut c.api_key_file)?;
                check_header_secret(&key, c.api_key.as_ref())?;
            }
        }
    }
    for (id, sink) in &mut config.sinks {
        match sink {
            SinkConfig::SplunkHec(c) => {
                let key = format!("sinks.{id}.token");
                take_secret_file(&key, &mut c.token, &mut c.token_file)?;
                check_header_secret(&key, c.token.as_ref())?;
            }
            SinkConfig::Kafka(c) => {
                if let Some(sasl) = &mut c.sasl {
                    take_secret_file(
                        &format!("sinks.{id}.sasl.password"),
                        &mut sasl.password,
                        &mut sasl.password_file,
                    )?;
                }
            }
            SinkConfig::Stdout(_) | SinkConfig::File(_) | SinkConfig::Syslog(_) => {}
        }
    }
    Ok(())
}

/// Deserialize `value` as a `T`; errors name the full key below `key` (`key` itself for
/// problems of the whole table, such as a missing field).
fn typed<T: DeserializeOwned>(key: &str, value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let full = if path == "." || path.is_empty() {
            key.to_string()
        } else {
            format!("{key}.{path}")
        };
        invalid(full, e.into_inner().to_string())
    })
}

/// The components of `sources` or `sinks`, each built by `build(key, type, table)` from
/// its table without the `type` key.
fn components<T>(
    table: &str,
    value: Option<toml::Value>,
    build: fn(&str, &str, toml::Table) -> Result<T, ConfigError>,
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
            None => return Err(invalid(&key, "missing field `type`")),
        };
        let component = build(&key, &kind, fields)?;
        out.insert(id, component);
    }
    Ok(out)
}

/// serde's own wording for an unknown `type`.
fn unknown_type(key: &str, kind: &str, known: &'static [&'static str]) -> ConfigError {
    let e = <serde::de::value::Error as serde::de::Error>::unknown_variant(kind, known);
    invalid(format!("{key}.type"), e.to_string())
}

/// The composition root for sources: `type` → config struct.
fn source_from(key: &str, kind: &str, fields: toml::Table) -> Result<SourceConfig, ConfigError> {
    let value = toml::Value::Table(fields);
    match kind {
        "vbo" => typed(key, value).map(SourceConfig::Vbo),
        "vdc" => typed(key, value).map(SourceConfig::Vdc),
        other => Err(unknown_type(key, other, &["vbo", "vdc"])),
    }
}

/// The composition root for sinks: `type` → config struct.
fn sink_from(key: &str, kind: &str, fields: toml::Table) -> Result<SinkConfig, ConfigError> {
    let value = toml::Value::Table(fields);
    match kind {
        "stdout" => typed(key, value).map(SinkConfig::Stdout),
        "file" => typed(key, value).map(SinkConfig::File),
        "syslog" => typed(key, value).map(SinkConfig::Syslog),
        "splunk_hec" => typed(key, value).map(SinkConfig::SplunkHec),
        "kafka" => typed(key, value).map(SinkConfig::Kafka),
        other => Err(unknown_type(
            key,
            other,
            &["stdout", "file", "syslog", "splunk_hec", "kafka"],
        )),
    }
}

/// Move the secret in `file` (when set) into `inline`; `key` is the inline key, e.g.
/// "sources.vbo_main.password" (errors name `<key>_file`).
fn take_secret_file(
    key: &str,
    inline: &mut Option<Secret>,
    file: &mut Option<PathBuf>,
) -> Result<(), ConfigError> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    if inline.is_some() {
        let name = key.rsplit('.').next().unwrap_or(key);
        return Err(invalid(
            key,
            format!("set either `{name}` or `{name}_file`, not both"),
        ));
    }
    *inline = Some(read_secret_file(&format!("{key}_file"), &path)?);
    Ok(())
}

/// A secret file's content without its trailing newline: at most [`MAX_SECRET_FILE_BYTES`],
/// UTF-8, not empty. Errors name `key` and the path, never the content.
pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(invalid(
            key,
            format!(
                "{} is larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?",
                path.display()
            ),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid(key, format!("{} is not UTF-8 text", path.display())))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(secret))
}

/// Secrets sent in an HTTP header (HEC token, VDC API key) can't hold control characters.
fn check_header_secret(key: &str, secret: Option<&Secret>) -> Result<(), ConfigError> {
    if secret.is_some_and(|s| s.expose().chars().any(|c| c.is_control() && c != '\t')) {
        return Err(invalid(
            key,
            "contains control characters (a stray newline?), which cannot travel in an HTTP header; the value is not shown",
        ));
    }
    Ok(())
}
