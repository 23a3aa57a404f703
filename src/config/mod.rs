//! The configuration model (TOML, components keyed by id, Vector-like) and its validation.
//!
//! Owns: parsing, `${ENV}` interpolation, `*_file` secret resolution, defaults, and every
//! check that can be made without the network. Every error names the key path and says
//! what to do; secret values never appear in errors or `Debug` output.
//!
//! Loading happens in these steps: TOML text → `toml::Value` → interpolate `${VAR}` in
//! string values (so an env value can never break TOML syntax) → typed structs with
//! `deny_unknown_fields` → [`Config::validate`] for cross-references and ranges → secret
//! files read (so a missing `password_file` is a config error, exit 2, like any other).
//!
//! Components are dispatched on their `type` by hand (`config_load.rs`, the composition
//! root), and each component table is then deserialized alone under its full path
//! (`sources.<id>.…`), so every error names the whole key.
//!
//! Limits: durations are at most [`MAX_DURATION`]; the config file is read up to
//! [`MAX_CONFIG_BYTES`] and secret files up to [`MAX_SECRET_FILE_BYTES`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::secret::Secret;

#[path = "config_load.rs"]
mod load;

/// A configuration problem. `Display` is the whole user-facing message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config error at `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

/// A [`ConfigError::Invalid`] for `key` (components use this for their own checks).
pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The longest duration any key accepts (3650 days): far beyond any sensible interval or
/// timeout, and far enough from the limits of `Instant` and `DateTime` arithmetic that no
/// configured value can overflow it.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The largest config file read (a config is a few kB; this stops `/dev/zero` and mistakes).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// The largest secret file read (`password_file`, `token_file`, `api_key_file`).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Keys whose values are secrets: their values are never quoted in errors.
const SECRET_KEYS: [&str; 3] = ["password", "token", "api_key"];

/// The whole configuration. Built by [`Config::load`] / [`Config::from_toml`] (the top
/// level is `state`, `ops`, `sources` and `sinks`).
#[derive(Debug, Clone)]
pub struct Config {
    pub state: StateConfig,
    pub ops: Option<OpsConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// An endpoint configured with plain `http://`: what would travel in clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleartext {
    /// The config key, e.g. `sources.vbo_main.url`.
    pub key: String,
    /// What travels over it, e.g. "the password and access tokens".
    pub carries: &'static str,
}

impl Cleartext {
    /// What is wrong, without the key (for `check`, whose row names the key).
    pub fn problem(&self) -> String {
        format!("http:// sends {} in clear text; use https://", self.carries)
    }

    /// One line for the startup log.
    pub fn message(&self) -> String {
        format!(
            "{} uses http://: {} travel in clear text; use https://",
            self.key, self.carries
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory for checkpoints (one file per source) and any spool.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/var/lib/veeam-siem"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    pub listen: std::net::SocketAddr,
}

/// A source, by its `type` key (dispatched in `config_load.rs`).
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Vbo(VboSourceConfig),
    Vdc(crate::sources::vdc::VdcSourceConfig),
}

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Vbo(_) => "vbo",
            SourceConfig::Vdc(_) => "vdc",
        }
    }
}

/// VB365 REST API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V6,
    V7,
    V8,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V6 => "v6",
            ApiVersion::V7 => "v7",
            ApiVersion::V8 => "v8",
        }
    }
}

/// TLS settings for an HTTPS peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA (or the self-signed certificate) to trust, in addition to the
    /// system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Insecure; logged as a warning at startup.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `type = "vbo"`: a Veeam Backup for Microsoft 365 REST server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VboSourceConfig {
    pub url: String,
    #[serde(default = "default_api_version")]
    pub api_version: ApiVersion,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_vbo_poll", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Horizon of the first run; default: 7 days before the first start.
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Sessions are re-listed from `horizon - lookback` to catch sessions that appear late
    /// and to be safe whether the server's `startTimeFrom` is inclusive or not.
    #[serde(default = "default_lookback", deserialize_with = "de_duration")]
    pub lookback: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Attempts per request for retryable failures (5xx, 429, timeouts, resets).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Keep the raw record JSON in `event.original`.
    #[serde(default)]
    pub keep_original: bool,
}

/// A sink, by its `type` key (dispatched in `config_load.rs`).
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Stdout(StdoutSinkConfig),
    File(FileSinkConfig),
    Syslog(crate::sinks::syslog::SyslogSinkConfig),
    SplunkHec(crate::sinks::splunk_hec::HecSinkConfig),
    Kafka(crate::sinks::kafka::KafkaSinkConfig),
}

impl SinkConfig {
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::Stdout(c) => &c.inputs,
            SinkConfig::File(c) => &c.inputs,
            SinkConfig::Syslog(c) => &c.inputs,
            SinkConfig::SplunkHec(c) => &c.inputs,
            SinkConfig::Kafka(c) => &c.inputs,
        }
    }

    /// Keep only the inputs `keep` accepts (backfill narrows a sink to chosen sources).
    pub fn retain_inputs(&mut self, keep: impl Fn(&str) -> bool) {
        let inputs = match self {
            SinkConfig::Stdout(c) => &mut c.inputs,
            SinkConfig::File(c) => &mut c.inputs,
            SinkConfig::Syslog(c) => &mut c.inputs,
            SinkConfig::SplunkHec(c) => &mut c.inputs,
            SinkConfig::Kafka(c) => &mut c.inputs,
        };
        inputs.retain(|id| keep(id));
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::Kafka(_) => "kafka",
        }
    }
}

/// `type = "stdout"`: NDJSON on standard output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    pub inputs: Vec<String>,
    /// Indented JSON for humans (not NDJSON any more).
    #[serde(default)]
    pub pretty: bool,
}

/// `type = "file"`: NDJSON appended to a file; acknowledged after fsync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub inputs: Vec<String>,
    /// Path; `strftime` patterns (`%Y-%m-%d`) are expanded with the UTC write time.
    pub path: String,
    /// Mode of the files the sink creates, an octal string ("0640" for a sidecar reader);
    /// default "0600". Directories it creates get the matching traverse bits.
    #[serde(default)]
    pub file_mode: Option<String>,
}

fn default_api_version() -> ApiVersion {
    ApiVersion::V8
}
fn default_vbo_poll() -> Duration {
    Duration::from_secs(30)
}
fn default_page_size() -> u32 {
    500
}
fn default_lookback() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retries() -> u32 {
    8
}

/// humantime durations: "30s", "5m", "1h 30m", at most [`MAX_DURATION`]. Use with
/// `deserialize_with`; the loader names the key in the error.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let value = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\""
        ))
    })?;
    if value > MAX_DURATION {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is longer than the longest duration accepted ({} days)",
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    Ok(value)
}

/// A VB365 source with its secret resolved and URL checked.
#[derive(Debug, Clone)]
pub struct VboSource {
    pub id: String,
    pub url: Url,
    pub password: Secret,
    pub settings: VboSourceConfig,
}

impl Config {
    /// Read, interpolate, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
            .map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(read_error(std::io::Error::other(format!(
                "larger than {MAX_CONFIG_BYTES} bytes; is it the right file?"
            ))));
        }
        Self::from_toml(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parse from text with a custom environment (tests).
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        interpolate(&mut value, &mut Vec::new(), env)?;
        let mut config = load::from_value(value)?;
        config.validate(path.parent().unwrap_or(Path::new(".")))?;
        load::read_secret_files(&mut config)?;
        Ok(config)
    }

    /// Endpoints configured with plain `http://` (VB365 and VDC sources, Splunk HEC sinks):
    /// their passwords, tokens, keys (and events) would travel in clear text. The startup
    /// log warns about each once, and `check` shows each as a warning.
    pub fn cleartext_endpoints(&self) -> Vec<Cleartext> {
        let plain = |url: &str| {
            Url::parse(url.trim())
                .map(|u| u.scheme() == "http")
                .unwrap_or(false)
        };
        let mut out = Vec::new();
        for (id, source) in &self.sources {
            let (url, carries) = match source {
                SourceConfig::Vbo(c) => (&c.url, "the password and access tokens"),
                SourceConfig::Vdc(c) => (&c.url, "the API key and the job logs"),
            };
            if plain(url) {
                out.push(Cleartext {
                    key: format!("sources.{id}.url"),
                    carries,
                });
            }
        }
        for (id, sink) in &self.sinks {
            if let SinkConfig::SplunkHec(c) = sink
                && plain(&c.endpoint)
            {
                out.push(Cleartext {
                    key: format!("sinks.{id}.endpoint"),
                    carries: "the HEC token and the events",
                });
            }
        }
        out
    }

    /// Cross-reference and range checks. `base` resolves relative `*_file` paths.
    fn validate(&self, _base: &Path) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "no source is configured; add e.g. [sources.vbo_main] with type = \"vbo\"",
            ));
        }
        if self.sinks.is_empty() {
            return Err(invalid(
                "sinks",
                "no sink is configured; add e.g. [sinks.console] with type = \"stdout\" and inputs = [...]",
            ));
        }
        for id in self.sources.keys() {
            check_id("sources", id)?;
            if self.sinks.contains_key(id) {
                return Err(invalid(
                    format!("sinks.{id}"),
                    format!(
                        "id `{id}` is used by a source and a sink; component ids must be unique"
                    ),
                ));
            }
        }
        for (id, sink) in &self.sinks {
            check_id("sinks", id)?;
            let key = format!("sinks.{id}.inputs");
            if sink.inputs().is_empty() {
                return Err(invalid(
                    key,
                    "is empty; list the source ids this sink reads",
                ));
            }
            for input in sink.inputs() {
                if !self.sources.contains_key(input) {
                    let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
                    return Err(invalid(
                        key,
                        format!(
                            "unknown source `{input}`; known sources: {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
            match sink {
                SinkConfig::File(f) => {
                    if f.path.trim().is_empty() {
                        return Err(invalid(format!("sinks.{id}.path"), "must not be empty"));
                    }
                    if let Err(e) = crate::sinks::file::expand_path(&f.path, Utc::now()) {
                        return Err(invalid(format!("sinks.{id}.path"), e));
                    }
                    if let Some(Err(e)) = f
                        .file_mode
                        .as_deref()
                        .map(crate::sinks::file::parse_file_mode)
                    {
                        return Err(invalid(format!("sinks.{id}.file_mode"), e));
                    }
                }
                SinkConfig::Stdout(_) => {}
                // Each component validates itself; `key` is e.g. "sinks.siem".
                SinkConfig::Syslog(c) => c.validate(&format!("sinks.{id}"))?,
                SinkConfig::SplunkHec(c) => c.validate(&format!("sinks.{id}"))?,
                SinkConfig::Kafka(c) => c.validate(&format!("sinks.{id}"))?,
            }
        }
        for (id, source) in &self.sources {
            if !self
                .sinks
                .values()
                .any(|s| s.inputs().iter().any(|i| i == id))
            {
                return Err(invalid(
                    format!("sources.{id}"),
                    "no sink reads this source; add it to a sink's `inputs` or remove it",
                ));
            }
            match source {
                SourceConfig::Vbo(c) => {
                    parse_url(&format!("sources.{id}.url"), &c.url)?;
                    if !(1..=10_000).contains(&c.page_size) {
                        return Err(invalid(
                            format!("sources.{id}.page_size"),
                            format!("must be between 1 and 10000 (got {})", c.page_size),
                        ));
                    }
                    for (name, value) in [
                        ("poll_interval", c.poll_interval),
                        ("request_timeout", c.request_timeout),
                    ] {
                        if value.is_zero() {
                            return Err(invalid(
                                format!("sources.{id}.{name}"),
                                "must be greater than zero",
                            ));
                        }
                    }
                    if c.username.trim().is_empty() {
                        return Err(invalid(
                            format!("sources.{id}.username"),
                            "must not be empty",
                        ));
                    }
                    match (&c.password, &c.password_file) {
                        (Some(_), Some(_)) => {
                            return Err(invalid(
                                format!("sources.{id}.password"),
                                "set either `password` or `password_file`, not both",
                            ));
                        }
                        (None, None) => {
                            return Err(invalid(
                                format!("sources.{id}.password"),
                                "missing; set `password = \"${VBO_PASSWORD}\"` or `password_file = \"/run/secrets/vbo\"`",
                            ));
                        }
                        _ => {}
                    }
                    check_tls(&format!("sources.{id}.tls"), &c.tls)?;
                }
                SourceConfig::Vdc(c) => c.validate(&format!("sources.{id}"))?,
            }
        }
        Ok(())
    }

    /// The VB365 sources with secrets read from files where configured.
    pub fn vbo_source(&self, id: &str) -> Result<VboSource, ConfigError> {
        let Some(SourceConfig::Vbo(c)) = self.sources.get(id) else {
            return Err(invalid(format!("sources.{id}"), "is not a vbo source"));
        };
        let url = parse_url(&format!("sources.{id}.url"), &c.url)?;
        let password = resolve_secret(
            &format!("sources.{id}.password"),
            c.password.as_ref(),
            c.password_file.as_deref(),
        )?;
        Ok(VboSource {
            id: id.to_string(),
            url,
            password,
            settings: c.clone(),
        })
    }

    /// Source ids read by a sink, in config order.
    pub fn sinks_of(&self, source_id: &str) -> Vec<String> {
        self.sinks
            .iter()
            .filter(|(_, s)| s.inputs().iter().any(|i| i == source_id))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Component ids become file names (checkpoints) and metric labels: keep them simple.
fn check_id(table: &str, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("{table}.{id}"),
            "ids may only contain letters, digits, `_` and `-` (at most 64)",
        ))
    }
}

/// Checks shared by every `tls` table (`key` is e.g. "sources.vbo_main.tls").
pub fn check_tls(key: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    if let Some(ca) = &tls.ca_file
        && !ca.is_file()
    {
        return Err(invalid(
            format!("{key}.ca_file"),
            format!("{} does not exist or is not a file", ca.display()),
        ));
    }
    Ok(())
}

/// Parse an http(s) URL; credentials in URLs are refused so they can't leak into logs.
/// Errors never show userinfo (see [`redact_userinfo`]).
pub fn parse_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim()).map_err(|e| {
        invalid(
            key,
            format!(
                "`{}` is not a URL ({e}); write e.g. \"https://vbo.example.net:4443\"",
                redact_userinfo(text.trim())
            ),
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(invalid(key, "must start with https:// (or http://)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not contain credentials; use the username/password keys",
        ));
    }
    if url.host_str().is_none() {
        return Err(invalid(key, "has no host"));
    }
    Ok(url)
}

/// `text` (a URL, maybe one that doesn't even parse) with everything that may be userinfo
/// replaced by `***`: all of it up to the last `@` after `scheme://`. Over-redacts a path
/// holding an `@`, which is fine for a message; never shows a password.
pub fn redact_userinfo(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

/// Resolve a secret given inline or as a file (trailing newline trimmed).
pub fn resolve_secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Secret, ConfigError> {
    let secret = match (inline, file) {
        (Some(s), None) => s.clone(),
        (None, Some(path)) => load::read_secret_file(&format!("{key}_file"), path)?,
        (Some(_), Some(_)) => {
            return Err(invalid(
                key,
                format!("set either `{key}` or `{key}_file`, not both"),
            ));
        }
        (None, None) => return Err(invalid(key, "missing")),
    };
    if secret.is_empty() {
        return Err(invalid(key, "is empty"));
    }
    Ok(secret)
}

/// Replace `${VAR}` / `${VAR:-default}` in every string value; `$$` is a literal `$`.
fn interpolate(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            let secret = path
                .last()
                .is_some_and(|k| SECRET_KEYS.contains(&k.as_str()));
            *s = interpolate_str(s, env, !secret)
                .map_err(|problem| invalid(path.join("."), problem))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate(item, path, env)?;
                path.pop();
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                path.push(k.clone());
                interpolate(v, path, env)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// `quote`: errors may quote the text (not for secret keys).
fn interpolate_str(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    quote: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                "unterminated `${`; write ${NAME} (or $$ for a literal $)".to_string()
            })?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(if quote {
                    format!("`${{{expr}}}` is not a valid variable reference")
                } else {
                    "holds an invalid `${...}` variable reference (the value is not shown); write ${NAME}, ${NAME:-default}, or $$ for a literal $".to_string()
                });
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set; export it or use `${{{name}:-default}}`"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), &|name| match name {
            "VBO_PASSWORD" => Some("s3cret-value".into()),
            _ => None,
        })
    }

    const GOOD: &str = r#"
        [state]
        dir = "/tmp/x"
        [sources.vbo_main]
        type = "vbo"
        url = "https://vbo.example.net:4443"
        username = "svc"
        password = "${VBO_PASSWORD}"
        poll_interval = "45s"
        [sinks.console]
        type = "stdout"
        inputs = ["vbo_main"]
    "#;

    fn err_text(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        let src = c.vbo_source("vbo_main").unwrap();
        assert_eq!(src.password.expose(), "s3cret-value");
        assert_eq!(src.settings.poll_interval, Duration::from_secs(45));
        assert_eq!(src.settings.page_size, 500);
        assert_eq!(src.settings.api_version, ApiVersion::V8);
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err_text(&GOOD.replace("poll_interval", "pollinterval"));
        assert!(e.contains("sources.vbo_main"), "{e}");
        assert!(e.contains("pollinterval"), "{e}");
    }

    #[test]
    fn missing_env_is_named() {
        let e = err_text(&GOOD.replace("VBO_PASSWORD", "NOPE_NOT_SET"));
        assert!(e.contains("sources.vbo_main.password"), "{e}");
        assert!(e.contains("NOPE_NOT_SET"), "{e}");
    }

    #[test]
    fn env_default_and_escape() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(interpolate_str("a${A}b", &env, true).unwrap(), "axb");
        assert_eq!(interpolate_str("${B:-dflt}", &env, true).unwrap(), "dflt");
        assert_eq!(interpolate_str("$${A}", &env, true).unwrap(), "${A}");
        assert_eq!(interpolate_str("cost $5", &env, true).unwrap(), "cost $5");
        assert!(interpolate_str("${A", &env, true).is_err());
    }

    #[test]
    fn bad_duration_names_key() {
        let e = err_text(&GOOD.replace("\"45s\"", "\"soon\""));
        assert!(
            e.contains("poll_interval") || e.contains("sources.vbo_main"),
            "{e}"
        );
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn unknown_input_is_an_error() {
        let e = err_text(&GOOD.replace("inputs = [\"vbo_main\"]", "inputs = [\"vbo_x\"]"));
        assert!(
            e.contains("sinks.console.inputs") && e.contains("vbo_x"),
            "{e}"
        );
    }

    #[test]
    fn unread_source_is_an_error() {
        let text = format!(
            "{GOOD}\n[sources.other]\ntype = \"vbo\"\nurl = \"https://h\"\nusername = \"u\"\npassword = \"p\"\n"
        );
        let e = err_text(&text);
        assert!(e.contains("sources.other") && e.contains("no sink"), "{e}");
    }

    #[test]
    fn duplicate_id_is_an_error() {
        let text =
            format!("{GOOD}\n[sinks.vbo_main]\ntype = \"stdout\"\ninputs = [\"vbo_main\"]\n");
        let e = err_text(&text);
        assert!(e.contains("unique"), "{e}");
    }

    #[test]
    fn page_size_range() {
        let e = err_text(&GOOD.replace("poll_interval = \"45s\"", "page_size = 20000"));
        assert!(e.contains("sources.vbo_main.page_size"), "{e}");
    }

    #[test]
    fn credentials_in_url_refused_without_echo() {
        let e = err_text(&GOOD.replace("https://vbo", "https://admin:pw@vbo"));
        assert!(
            e.contains("sources.vbo_main.url") && !e.contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn password_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = GOOD.replace(
            "password = \"${VBO_PASSWORD}\"",
            &format!("password_file = {:?}", f.display().to_string()),
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.vbo_source("vbo_main").unwrap().password.expose(),
            "from-file"
        );
    }

    #[test]
    fn unknown_type_is_named() {
        let e = err_text(&GOOD.replace("type = \"stdout\"", "type = \"carrier_pigeon\""));
        assert!(
            e.contains("sinks.console") && e.contains("carrier_pigeon"),
            "{e}"
        );
    }

    /// Every component is parsed under its full path, whatever goes wrong where.
    #[test]
    fn errors_name_the_full_key_and_never_a_secret_value() {
        let hec = |keys: &str| {
            format!(
                "{GOOD}\n[sinks.splunk]\ntype = \"splunk_hec\"\ninputs = [\"vbo_main\"]\nendpoint = \"https://splunk.example.net:8088\"\n{keys}\n"
            )
        };
        let cases: Vec<(String, &str, &[&str])> = vec![
            (
                GOOD.replace("\"${VBO_PASSWORD}\"", "98765432123"),
                "`sources.vbo_main.password`",
                &["98765432123"],
            ),
            (
                GOOD.replace("\"${VBO_PASSWORD}\"", "{ v = \"Tbl-Secret-1\" }"),
                "`sources.vbo_main.password`",
                &["Tbl-Secret-1"],
            ),
            (
                GOOD.replace("\"${VBO_PASSWORD}\"", "\"p${not valid}w\""),
                "`sources.vbo_main.password`",
                &["not valid"],
            ),
            (
                hec("token = 4455667788"),
                "`sinks.splunk.token`",
                &["4455667788"],
            ),
            (
                hec("token = \"Ctl-Secret\\nx\""),
                "`sinks.splunk.token`",
                &["Ctl-Secret"],
            ),
            (
                GOOD.replace("poll_interval = \"45s\"", "tls = { ca_file = 5 }"),
                "`sources.vbo_main.tls.ca_file`",
                &[],
            ),
            (
                GOOD.replace("poll_interval = \"45s\"", "request_timeout = \"0s\""),
                "`sources.vbo_main.request_timeout`",
                &[],
            ),
            (
                GOOD.replace("type = \"stdout\"\n", ""),
                "at `sinks.console`: missing field `type`",
                &[],
            ),
            (
                GOOD.replace("type = \"stdout\"", "type = 5"),
                "at `sinks.console.type`: must be a string",
                &[],
            ),
            (
                format!("surprise = 1\n{GOOD}"),
                "at `surprise`: unknown key",
                &[],
            ),
            (
                "sources = 5\n[sinks.console]\ntype = \"stdout\"\ninputs = [\"a\"]\n".to_string(),
                "at `sources`: must be a table",
                &[],
            ),
            (
                GOOD.replace(
                    "https://vbo.example.net:4443",
                    "https://u:Url-Pw-1@vbo example.net",
                ),
                "`sources.vbo_main.url`",
                &["Url-Pw-1"],
            ),
        ];
        for (text, key, hidden) in cases {
            let e = err_text(&text);
            assert!(e.contains(key), "want {key}: {e}");
            for h in hidden {
                assert!(!e.contains(h), "{h} leaked: {e}");
            }
            assert!(!e.contains("s3cret-value"), "{e}");
        }
    }

    #[test]
    fn secret_files_are_read_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let with_file = |path: &Path| {
            GOOD.replace(
                "password = \"${VBO_PASSWORD}\"",
                &format!("password_file = {:?}", path.display().to_string()),
            )
        };
        let e = err_text(&with_file(&dir.path().join("missing")));
        assert!(
            e.contains("`sources.vbo_main.password_file`") && e.contains("missing"),
            "{e}"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, "Big-Secret".repeat(10_000)).unwrap();
        let e = err_text(&with_file(&big));
        assert!(
            e.contains("`sources.vbo_main.password_file`") && e.contains("larger"),
            "{e}"
        );
        assert!(!e.contains("Big-Secret"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\r\n").unwrap();
        let e = err_text(&with_file(&empty));
        assert!(
            e.contains("`sources.vbo_main.password_file`") && e.contains("empty"),
            "{e}"
        );
        let good = dir.path().join("good");
        std::fs::write(&good, "from-file\n").unwrap();
        let c = parse(&with_file(&good)).unwrap();
        let SourceConfig::Vbo(v) = &c.sources["vbo_main"] else {
            panic!("not vbo")
        };
        assert!(v.password_file.is_none(), "read once, at load");
        assert_eq!(v.password.as_ref().map(Secret::expose), Some("from-file"));
        assert_eq!(
            c.vbo_source("vbo_main").unwrap().password.expose(),
            "from-file"
        );
    }

    #[test]
    fn userinfo_is_redacted_even_from_broken_urls() {
        for (text, want) in [
            ("https://a:Pw@host:1/x", "https://***@host:1/x"),
            ("https://a:P@w@host", "https://***@host"),
            ("a:Pw@host", "***@host"),
            ("https://host/x", "https://host/x"),
        ] {
            assert_eq!(redact_userinfo(text), want);
        }
    }

    #[test]
    fn clear_text_endpoints_are_listed() {
        let text = format!(
            "{}\n[sources.vdc]\ntype = \"vdc\"\nurl = \"https://vdc.example.net\"\napi_key = \"k\"\n[sinks.splunk]\ntype = \"splunk_hec\"\ninputs = [\"vdc\"]\nendpoint = \"HTTP://splunk:8088\"\ntoken = \"t\"\n",
            GOOD.replace("https://vbo", "http://vbo")
        );
        let c = parse(&text).unwrap();
        let keys: Vec<String> = c.cleartext_endpoints().into_iter().map(|c| c.key).collect();
        assert_eq!(keys, ["sources.vbo_main.url", "sinks.splunk.endpoint"]);
        assert!(parse(GOOD).unwrap().cleartext_endpoints().is_empty());
    }

    /// Every duration key of every component, fed extreme values: each is accepted (and
    /// the component then builds without panicking) or refused with an error naming the
    /// key; nothing above [`MAX_DURATION`] gets through, and zero only where it means
    /// something (`lookback`).
    #[test]
    fn extreme_durations_are_clean_errors_or_sane_values() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!(
            r#"
            [state]
            dir = {state:?}
            [sources.vbo_main]
            type = "vbo"
            url = "https://vbo.example.net:4443"
            username = "svc"
            password = "p"
            #vbo#
            [sources.vdc_main]
            type = "vdc"
            url = "https://vdc.example.net"
            api_key = "k"
            #vdc#
            [sinks.console]
            type = "stdout"
            inputs = ["vbo_main", "vdc_main"]
            [sinks.siem]
            type = "syslog"
            inputs = ["vbo_main"]
            address = "127.0.0.1:9"
            mode = "tcp"
            #syslog#
            [sinks.splunk]
            type = "splunk_hec"
            inputs = ["vbo_main"]
            endpoint = "https://127.0.0.1:9"
            token = "t"
            indexer_ack = true
            #hec#
            [sinks.bus]
            type = "kafka"
            inputs = ["vbo_main"]
            brokers = "127.0.0.1:9"
            topic = "t"
            #kafka#
            "#,
            state = dir.path().display().to_string()
        );
        let keys = [
            ("#vbo#", "sources.vbo_main", "poll_interval", false),
            ("#vbo#", "sources.vbo_main", "lookback", true),
            ("#vbo#", "sources.vbo_main", "request_timeout", false),
            ("#vdc#", "sources.vdc_main", "poll_interval", false),
            ("#vdc#", "sources.vdc_main", "lookback", true),
            ("#vdc#", "sources.vdc_main", "request_timeout", false),
            ("#syslog#", "sinks.siem", "timeout", false),
            ("#hec#", "sinks.splunk", "ack_timeout", false),
            ("#hec#", "sinks.splunk", "ack_poll_interval", false),
            ("#hec#", "sinks.splunk", "request_timeout", false),
            ("#hec#", "sinks.splunk", "retry_max_delay", false),
            ("#kafka#", "sinks.bus", "message_timeout", false),
            ("#kafka#", "sinks.bus", "healthcheck_timeout", false),
            ("#kafka#", "sinks.bus", "flush_timeout", false),
        ];
        // (value, must it be refused?) — `None`: either way, but cleanly.
        let values: [(&str, Option<bool>); 10] = [
            ("0s", None),
            ("1ns", None),
            ("3650days", None),
            ("3651days", Some(true)),
            ("300000years", Some(true)),
            ("18446744073709551615s", Some(true)),
            ("18446744073709551616s", Some(true)),
            ("99999999999999999999years", Some(true)),
            ("-1s", Some(true)),
            ("", Some(true)),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _context = rt.enter();
        for (marker, table, key, zero_ok) in keys {
            for (value, refused) in values {
                let refused = match (value, refused) {
                    ("0s", _) => Some(!zero_ok),
                    (_, r) => r,
                };
                let mut text = template.clone();
                for m in ["#vbo#", "#vdc#", "#syslog#", "#hec#", "#kafka#"] {
                    let line = if m == marker {
                        format!("{key} = {value:?}")
                    } else {
                        String::new()
                    };
                    text = text.replace(m, &line);
                }
                let what = format!("{table}.{key} = {value:?}");
                match parse(&text) {
                    Err(e) => {
                        let e = e.to_string();
                        assert_ne!(refused, Some(false), "{what} refused: {e}");
                        let named = if refused == Some(true) {
                            format!("`{table}.{key}`")
                        } else {
                            format!("`{table}.")
                        };
                        assert!(e.contains(&named), "{what}: {e}");
                    }
                    Ok(config) => {
                        assert_ne!(refused, Some(true), "{what} accepted");
                        build_everything(&config, dir.path());
                    }
                }
            }
        }
    }

    /// Build every source and sink of `config` the way the pipeline does (no network I/O).
    fn build_everything(config: &Config, state: &Path) {
        for (id, source) in &config.sources {
            match source {
                SourceConfig::Vbo(_) => {
                    let src = config.vbo_source(id).unwrap();
                    crate::sources::vbo::VboPoller::new(&src, None).unwrap();
                }
                SourceConfig::Vdc(c) => {
                    let src = crate::sources::vdc::VdcSource::resolve(id, c).unwrap();
                    crate::sources::vdc::VdcPoller::new(&src, None).unwrap();
                }
            }
        }
        let ctx = crate::sinks::SinkContext {
            state_dir: state.to_path_buf(),
        };
        for (id, sink) in &config.sinks {
            if let Err(e) = crate::sinks::build(id, sink, &ctx) {
                panic!("sink {id} does not build: {e}");
            }
        }
    }
}
