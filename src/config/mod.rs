//! The configuration model (TOML, components keyed by id, Vector-like): the composition
//! root that lists the component types, `${ENV}` interpolation, and the checks across
//! components.
//!
//! Owns: parsing, interpolation, `*_file` secret resolution (each component says which of
//! its keys are secret files), defaults, and every check that can be made without the
//! network. Every error names the key path and says what to do; secret values never
//! appear in errors or `Debug` output.
//!
//! Each component's config type lives in the component's directory and implements
//! [`SourceSettings`] or [`SinkSettings`]; the shared rules (durations, URLs, secrets,
//! `tls`) are in [`common`], a leaf every component may use. This module names the
//! component types once ([`SourceConfig`], [`SinkConfig`]) and otherwise only calls the
//! traits.
//!
//! Loading happens in these steps: TOML text → `toml::Value` → interpolate `${VAR}` in
//! string values (so an env value can never break TOML syntax) → typed structs with
//! `deny_unknown_fields`, each component table alone under its full key path (`load.rs`)
//! → [`Config::validate`] for each component and the cross-references → secret files read
//! (so a missing `password_file` is a config error, exit 2, like any other).
//!
//! Limits: durations are at most [`common::MAX_DURATION`]; the config file is read up to
//! [`MAX_CONFIG_BYTES`] and secret files up to [`common::MAX_SECRET_FILE_BYTES`].

pub mod common;
mod load;

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use common::{Cleartext, ConfigError, invalid};

use crate::sinks::SinkSettings;
use crate::sinks::archive::ArchiveSinkConfig;
use crate::sinks::file::FileSinkConfig;
use crate::sinks::kafka::KafkaSinkConfig;
use crate::sinks::splunk_hec::HecSinkConfig;
use crate::sinks::stdout::StdoutSinkConfig;
use crate::sinks::syslog::SyslogSinkConfig;
use crate::sources::SourceSettings;
use crate::sources::vbo::VboSourceConfig;
use crate::sources::vdc::VdcSourceConfig;

/// The largest config file read (a config is a few kB; this stops `/dev/zero` and mistakes).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

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
    /// `ip:port`, or `host:port` (resolved once, at load: `localhost:9598`).
    #[serde(deserialize_with = "de_listen")]
    pub listen: std::net::SocketAddr,
}

fn de_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    use serde::de::Error;
    use std::net::ToSocketAddrs;
    let text = String::deserialize(d)?;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| {
        D::Error::custom(format!(
            "`{text}` is not an address to listen on ({e}); write ip:port or host:port, e.g. \"127.0.0.1:9598\""
        ))
    })?;
    // IPv4 first: `localhost` usually means 127.0.0.1 to whoever scrapes it.
    let all: Vec<_> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| D::Error::custom(format!("`{text}` resolves to no address")))
}

/// An enum over the config types of one kind of component, each with its `type` value:
/// the composition root. The enum derefs to the kind's trait, so callers never match.
macro_rules! components {
    ($(#[$meta:meta])* $name:ident: $settings:ident {
        $($variant:ident($config:ty) = $type_name:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $($variant($config),)+
        }

        impl $name {
            /// Every `type` value, in the order the docs list them.
            pub const TYPES: &'static [&'static str] = &[$($type_name),+];

            /// The component table at `key` (without its `type` key) as type `kind`.
            fn from_table(key: &str, kind: &str, value: toml::Value) -> Result<Self, ConfigError> {
                match kind {
                    $($type_name => load::typed(key, value).map($name::$variant),)+
                    other => Err(load::unknown_type(key, other, Self::TYPES)),
                }
            }
        }

        impl Deref for $name {
            type Target = dyn $settings;
            fn deref(&self) -> &Self::Target {
                match self {
                    $($name::$variant(c) => c,)+
                }
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                match self {
                    $($name::$variant(c) => c,)+
                }
            }
        }
    };
}

components! {
    /// A source, by its `type` key.
    SourceConfig: SourceSettings {
        Vbo(VboSourceConfig) = "vbo",
        Vdc(VdcSourceConfig) = "vdc",
    }
}

components! {
    /// A sink, by its `type` key.
    SinkConfig: SinkSettings {
        Stdout(StdoutSinkConfig) = "stdout",
        File(FileSinkConfig) = "file",
        Syslog(SyslogSinkConfig) = "syslog",
        SplunkHec(HecSinkConfig) = "splunk_hec",
        Kafka(KafkaSinkConfig) = "kafka",
        Archive(ArchiveSinkConfig) = "archive",
        AzureMonitorLogs(crate::sinks::azure_monitor_logs::AzureMonitorLogsConfig) = "azure_monitor_logs",
    }
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

    /// Parse from text with a custom environment (tests). `path` is only named in errors.
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, &e),
        })?;
        interpolate(&mut value, &mut Vec::new(), env)?;
        let mut config = load::from_value(value)?;
        config.validate()?;
        // A sink appending to the config file itself would corrupt it for the next start.
        let own = lexical(path);
        for (id, sink) in &config.sinks {
            if sink
                .local_path()
                .is_some_and(|p| lexical(Path::new(&p)) == own)
            {
                return Err(invalid(
                    format!("sinks.{id}.path"),
                    format!(
                        "is this config file ({}): the sink would append its events to it; give the sink another path",
                        path.display()
                    ),
                ));
            }
        }
        for (id, source) in &mut config.sources {
            source.read_secret_files(&format!("sources.{id}"))?;
        }
        for (id, sink) in &mut config.sinks {
            sink.read_secret_files(&format!("sinks.{id}"))?;
        }
        Ok(config)
    }

    /// Endpoints configured with plain `http://` (sources, and sinks that talk HTTP):
    /// their passwords, tokens, keys (and events) would travel in clear text. The startup
    /// log warns about each once, and `check` shows each as a warning.
    pub fn cleartext_endpoints(&self) -> Vec<Cleartext> {
        let sources = self.sources.iter().filter_map(|(id, source)| {
            Cleartext::of(format!("sources.{id}.url"), source.url(), source.carries())
        });
        let sinks = self
            .sinks
            .iter()
            .flat_map(|(id, sink)| sink.cleartext(&format!("sinks.{id}")));
        sources.chain(sinks).collect()
    }

    /// Each component's own checks, then the references between them.
    fn validate(&self) -> Result<(), ConfigError> {
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
            sink.validate(&format!("sinks.{id}"))?;
        }
        if self.state.dir.as_os_str().is_empty() {
            return Err(invalid(
                "state.dir",
                "is empty; set the directory for checkpoints, e.g. \"/var/lib/veeam-siem\"",
            ));
        }
        // Two writers on one file interleave and cut each other's lines; on one archive they
        // fork the chain. Paths are compared after `.`, `..` and `//` are resolved.
        let state_dir = lexical(&self.state.dir);
        let mut paths: BTreeMap<PathBuf, &str> = BTreeMap::new();
        for (id, sink) in &self.sinks {
            let Some(path) = sink.local_path() else {
                continue;
            };
            let normal = lexical(Path::new(&path));
            if let Some(problem) = state_file_clash(&normal, &state_dir) {
                return Err(invalid(format!("sinks.{id}.path"), problem));
            }
            if let Some(first) = paths.insert(normal, id) {
                return Err(invalid(
                    format!("sinks.{id}.path"),
                    format!(
                        "is also the path of sinks.{first}: two sinks can't write one file or archive; give each its own path (one sink can read several sources)"
                    ),
                ));
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
            source.validate(&format!("sources.{id}"))?;
        }
        Ok(())
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

/// `path` made absolute (against the working directory) with `.`, `..` and repeated
/// separators resolved, without touching the disk: two spellings of one file compare equal.
fn lexical(path: &Path) -> PathBuf {
    let absolute = if path.is_relative() {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if (out.file_name().is_none() || !out.pop()) && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Why a sink's `path` (resolved) would overwrite the daemon's own state, if it would:
/// a checkpoint, the lock, a HEC channel or dead-letter file, or the state dir itself.
fn state_file_clash(path: &Path, state_dir: &Path) -> Option<String> {
    if path == state_dir || state_dir.starts_with(path) {
        return Some(format!(
            "is (or holds) the state directory {}: the sink's files and the checkpoints would overwrite each other; give it a path outside `[state] dir`, or a subdirectory of it",
            state_dir.display()
        ));
    }
    let name = path.file_name()?.to_str()?;
    let ours = name.ends_with(".checkpoint.json")
        || name.ends_with(".checkpoint.json.tmp")
        || name == "veeam-siem.lock"
        || name.ends_with(".hec-channel")
        || name.ends_with(".deadletter.ndjson");
    (path.parent() == Some(state_dir) && ours).then(|| {
        format!(
            "names {name} in the state directory {}, a file the daemon keeps there (checkpoints, lock, HEC channel, dead letters); each checkpoint save would replace the sink's output. Give the sink another path",
            state_dir.display()
        )
    })
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
        // An unquoted TOML date-time would be read as its text: a password or user name
        // that looks like a date must be quoted, as every other non-string value must.
        toml::Value::Datetime(_)
            if path
                .last()
                .is_some_and(|k| SECRET_KEYS.contains(&k.as_str()) || k == "username") =>
        {
            return Err(invalid(
                path.join("."),
                "expected a string, got a TOML date-time (the value is not shown); quote it, e.g. \"${NAME}\"",
            ));
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
            // As in a shell, `:-` gives the default for a variable that is unset or empty.
            match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
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

/// A TOML syntax error with where it is: line, column, and the key or table header of that
/// line. toml's own rendering quotes the line, which may hold a secret value; this names
/// only what comes before a `=`.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_string();
    };
    let at = span.start.min(text.len());
    let before = text.get(..at).unwrap_or_default();
    let line_number = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default().trim();
    let what = if line.starts_with('[') {
        line.split(']').next().map(|h| format!("{h}]"))
    } else {
        // The key with its table (`sources.vbo.page_size`): the nearest header above it.
        let table = before[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .and_then(|h| h.trim_start_matches('[').split(']').next())
            .map(|t| format!("{}.", t.trim()))
            .unwrap_or_default();
        line.split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|k| !k.is_empty())
            .map(|key| format!("`{table}{key}`"))
    };
    match what {
        Some(what) => format!("{message} (line {line_number}, column {column}, at {what})"),
        None => format!("{message} (line {line_number}, column {column})"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::secret::Secret;
    use crate::sources::vbo::{ApiVersion, VboSource};

    /// The resolved VB365 source `id` of `c`.
    fn vbo(c: &Config, id: &str) -> VboSource {
        let SourceConfig::Vbo(settings) = &c.sources[id] else {
            panic!("{id} is not a vbo source")
        };
        VboSource::resolve(id, settings).unwrap()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), &|name| match name {
            "VBO_PASSWORD" => Some("s3cret-value".into()),
            _ => None,
        })
    }

    /// A syntax error says where (line, column, the key or header of the line), never
    /// the value on it.
    #[test]
    fn syntax_errors_name_the_line_and_key_not_the_value() {
        let e = parse("[state]\ndir = \"/tmp\"\n[state]\ndir = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate") && e.contains("line 3"), "{e}");
        let e = parse("[sources.v]\ntype = \"vbo\"\npassword = hunter2-secret\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("`sources.v.password`"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // A duplicate key is named with its table.
        let e = parse("[sources.v]\ntype = \"vbo\"\n  # note [x]\npage_size = 5\npage_size = 6\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("duplicate") && e.contains("`sources.v.page_size`"),
            "{e}"
        );
        let e = parse(
            "page_size = 5
page_size = 6
",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at `page_size`"), "{e}");
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
        let src = vbo(&c, "vbo_main");
        assert_eq!(src.password.expose(), "s3cret-value");
        assert_eq!(src.settings.poll_interval, Duration::from_secs(45));
        assert_eq!(src.settings.page_size, 500);
        assert_eq!(src.settings.api_version, ApiVersion::V8);
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn two_sinks_on_one_path_are_refused() {
        let two = format!(
            "{GOOD}\n[sinks.a]\ntype = \"file\"\ninputs = [\"vbo_main\"]\npath = \"/var/log/v/out.ndjson\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"vbo_main\"]\npath = \"/var/log/v/out.ndjson\"\n"
        );
        let e = err_text(&two);
        assert!(e.contains("sinks.b.path") && e.contains("sinks.a"), "{e}");
        parse(&two.replace("v/out.ndjson\"\n[sinks.b]", "v/a.ndjson\"\n[sinks.b]")).unwrap();
        // Other spellings of the same file.
        for alias in ["/var/log/v/../v/out.ndjson", "/var/log//v/./out.ndjson"] {
            let e = err_text(&two.replacen("/var/log/v/out.ndjson", alias, 1));
            assert!(
                e.contains("sinks.b.path") && e.contains("sinks.a"),
                "{alias}: {e}"
            );
        }
    }

    /// A sink writing one of the daemon's own state files (or the state dir) would be
    /// overwritten by every checkpoint save; an empty state dir is refused too.
    #[test]
    fn sink_paths_on_state_files_and_an_empty_state_dir_are_refused() {
        let with_path = |path: &str| {
            format!(
                "{GOOD}\n[sinks.a]\ntype = \"file\"\ninputs = [\"vbo_main\"]\npath = \"{path}\"\n"
            )
        };
        for path in [
            "/tmp/x/vbo_main.checkpoint.json",
            "/tmp/x/./veeam-siem.lock",
            "/tmp/x",
            "/tmp",
        ] {
            let e = err_text(&with_path(path));
            assert!(
                e.contains("sinks.a.path") && e.contains("/tmp/x"),
                "{path}: {e}"
            );
        }
        parse(&with_path("/tmp/x/out/events.ndjson")).unwrap();
        parse(&with_path("/tmp/x/events.ndjson")).unwrap();
        let e = err_text(&GOOD.replace("dir = \"/tmp/x\"", "dir = \"\""));
        assert!(e.contains("state.dir") && e.contains("empty"), "{e}");
    }

    /// librdkafka quotes the value of a property it does not know: a misspelled secret
    /// property must not reach the error.
    #[test]
    fn a_misspelled_kafka_secret_option_is_not_printed() {
        let e = err_text(&format!(
            "{GOOD}\n[sinks.bus]\ntype = \"kafka\"\ninputs = [\"vbo_main\"]\nbrokers = \"k:9092\"\ntopic = \"t\"\noptions = {{ \"sasl.pasword\" = \"KafkaOptSecret9\" }}\n"
        ));
        assert!(e.contains("sasl.pasword"), "{e}");
        assert!(!e.contains("KafkaOptSecret9"), "{e}");
    }

    #[test]
    fn type_and_time_errors_are_in_the_users_terms() {
        let e = err_text(&GOOD.replace("poll_interval = \"45s\"", "start_time = \"yesterday\""));
        assert!(
            e.contains("sources.vbo_main.start_time") && e.contains("RFC 3339"),
            "{e}"
        );
        let e = err_text(&GOOD.replace("poll_interval = \"45s\"", "page_size = \"500\""));
        assert!(e.contains("expected a whole number"), "{e}");
        let e = err_text(&GOOD.replace("poll_interval = \"45s\"", "tls = \"x\""));
        assert!(
            e.contains("expected a table") && !e.contains("struct"),
            "{e}"
        );
    }

    #[test]
    fn ops_listen_takes_a_host_name() {
        let c = parse(&format!("[ops]\nlisten = \"localhost:9598\"\n{GOOD}")).unwrap();
        assert_eq!(c.ops.unwrap().listen.port(), 9598);
        let e = err_text(&format!("[ops]\nlisten = \"localhost\"\n{GOOD}"));
        assert!(e.contains("ops.listen") && e.contains("host:port"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err_text(&GOOD.replace("poll_interval", "pollinterval"));
        assert!(e.contains("sources.vbo_main"), "{e}");
        assert!(e.contains("pollinterval"), "{e}");
    }

    #[test]
    fn a_sink_may_not_write_into_the_config_file() {
        let text = format!(
            "{GOOD}\n[sinks.own]\ntype = \"file\"\ninputs = [\"vbo_main\"]\npath = \"/etc/veeam-siem/./config.toml\"\n"
        );
        let env = |name: &str| (name == "VBO_PASSWORD").then(|| "pw".to_string());
        let e = Config::from_toml(&text, Path::new("/etc/veeam-siem/config.toml"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sinks.own.path") && e.contains("config file"),
            "{e}"
        );
    }

    #[test]
    fn a_date_time_is_not_taken_for_a_password() {
        let e = err_text(&GOOD.replace("\"${VBO_PASSWORD}\"", "1979-05-27T07:32:00Z"));
        assert!(
            e.contains("sources.vbo_main.password") && e.contains("date-time"),
            "{e}"
        );
        assert!(!e.contains("1979"), "{e}");
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
        // Set but empty: the default too, as in a shell.
        let with_empty = |n: &str| (n == "E").then(String::new);
        assert_eq!(
            interpolate_str("${E:-dflt}", &with_empty, true).unwrap(),
            "dflt"
        );
        assert_eq!(interpolate_str("[${E}]", &with_empty, true).unwrap(), "[]");
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
        let e = err_text(&GOOD.replace("poll_interval = \"45s\"", "max_held_sessions = 0"));
        assert!(e.contains("sources.vbo_main.max_held_sessions"), "{e}");
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
        assert_eq!(vbo(&c, "vbo_main").password.expose(), "from-file");
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
                "at `sinks.console.type`: is required but missing",
                &[],
            ),
            (
                GOOD.replace("url = \"https://vbo.example.net:4443\"\n", ""),
                "at `sources.vbo_main.url`: is required but missing",
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
        assert_eq!(vbo(&c, "vbo_main").password.expose(), "from-file");
    }

    #[test]
    fn clear_text_endpoints_are_listed() {
        let text = format!(
            "{}\n[sources.vdc]\ntype = \"vdc\"\nurl = \"https://vdc.example.net\"\napi_key = \"k\"\n[sinks.splunk]\ntype = \"splunk_hec\"\ninputs = [\"vdc\"]\nendpoint = \"HTTP://splunk:8088\"\ntoken = \"t\"\n[sinks.bus]\ntype = \"kafka\"\ninputs = [\"vdc\"]\nbrokers = \"k:9092\"\ntopic = \"t\"\nsasl = {{ mechanism = \"PLAIN\", username = \"u\", password = \"p\" }}\n[sinks.bus_tls]\ntype = \"kafka\"\ninputs = [\"vdc\"]\nbrokers = \"k:9092\"\ntopic = \"t\"\ntls = {{}}\nsasl = {{ mechanism = \"PLAIN\", username = \"u\", password = \"p\" }}\n[sinks.sentinel]\ntype = \"azure_monitor_logs\"\ninputs = [\"vdc\"]\nendpoint = \"http://dce:1\"\nauthority = \"http://login:2\"\ndcr_immutable_id = \"dcr-00000000000000000000000000000000\"\nstream = \"Custom-X_CL\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            GOOD.replace("https://vbo", "http://vbo")
        );
        let c = parse(&text).unwrap();
        let keys: Vec<String> = c.cleartext_endpoints().into_iter().map(|c| c.key).collect();
        assert_eq!(
            keys,
            [
                "sources.vbo_main.url",
                "sinks.bus.sasl",
                "sinks.sentinel.authority",
                "sinks.sentinel.endpoint",
                "sinks.splunk.endpoint"
            ]
        );
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
            if let Err(e) = source.build(id, None) {
                panic!("source {id} does not build: {e}");
            }
        }
        let ctx = crate::sinks::SinkContext {
            state_dir: state.to_path_buf(),
        };
        for (id, sink) in &config.sinks {
            if let Err(e) = sink.build(id, &ctx) {
                panic!("sink {id} does not build: {e}");
            }
        }
    }
}
