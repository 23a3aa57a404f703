//! The one builder of test configs: TOML text with a state directory, sources and sinks,
//! instead of a TOML template copied into every test module.
//!
//! ```ignore
//! let cfg = ConfigBuilder::new(env.state_dir())
//!     .table(env.vbo_source().set("page_size", 10))
//!     .table(Table::file("archive", &["vbo_test"], &env.out_file()))
//!     .write(&env.dir.path().join("config.toml"));
//! ```
//!
//! Values are encoded by `toml` (paths and URLs need no escaping by hand). [`Table::raw`]
//! appends lines as written, for keys a test passes as text. The presets ([`Table::vbo`],
//! [`Table::vdc`], the sinks) hold only the keys every test of that kind needs; a test adds
//! what it is about.

use std::path::{Path, PathBuf};

/// A whole config: `[state]`, then the tables in the order they were added.
pub struct ConfigBuilder {
    state_dir: PathBuf,
    tables: Vec<Table>,
}

impl ConfigBuilder {
    pub fn new(state_dir: impl AsRef<Path>) -> ConfigBuilder {
        ConfigBuilder {
            state_dir: state_dir.as_ref().to_path_buf(),
            tables: Vec::new(),
        }
    }

    /// Add a table (a source, a sink, `[ops]`, ...).
    pub fn table(mut self, table: Table) -> ConfigBuilder {
        self.tables.push(table);
        self
    }

    /// Add tables in order.
    pub fn tables(self, tables: impl IntoIterator<Item = Table>) -> ConfigBuilder {
        tables.into_iter().fold(self, ConfigBuilder::table)
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        let mut text = format!("[state]\ndir = {}\n", path_value(&self.state_dir));
        for table in &self.tables {
            text.push('\n');
            text.push_str(&table.text());
        }
        text
    }

    /// Write the text to `path`; returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.text())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// One TOML table: a header and `key = value` lines in the order they were first set.
#[derive(Clone)]
pub struct Table {
    header: String,
    /// (key, line); raw lines have no key.
    lines: Vec<(Option<String>, String)>,
}

impl Table {
    /// `[name]` with no keys (e.g. `ops`).
    pub fn named(name: &str) -> Table {
        Table {
            header: name.to_string(),
            lines: Vec::new(),
        }
    }

    /// `[sources.<id>]` of type `kind`.
    pub fn source(id: &str, kind: &str) -> Table {
        Table::named(&format!("sources.{id}")).set("type", kind)
    }

    /// `[sinks.<id>]` of type `kind` reading `inputs`.
    pub fn sink(id: &str, kind: &str, inputs: &[&str]) -> Table {
        Table::named(&format!("sinks.{id}"))
            .set("type", kind)
            .set("inputs", inputs.to_vec())
    }

    /// A VB365 source as the tests run it against the simulator: user `svc-siem`, the
    /// password from `$TEST_VBO_PASSWORD`, all history (`start_time` in 2000).
    pub fn vbo(id: &str, url: &str) -> Table {
        Table::source(id, "vbo")
            .set("url", url)
            .set("username", "svc-siem")
            .set("password", "${TEST_VBO_PASSWORD}")
            .set("start_time", "2000-01-01T00:00:00Z")
    }

    /// A VDC source with its API key from `$<key_env>`, all history.
    pub fn vdc(id: &str, url: &str, key_env: &str) -> Table {
        Table::source(id, "vdc")
            .set("url", url)
            .set("api_key", format!("${{{key_env}}}"))
            .set("start_time", "2000-01-01T00:00:00Z")
    }

    /// A file sink writing `path`.
    pub fn file(id: &str, inputs: &[&str], path: &Path) -> Table {
        Table::sink(id, "file", inputs).set("path", path_value(path))
    }

    /// A Splunk HEC sink with the token from `$TEST_HEC_TOKEN`.
    pub fn hec(id: &str, inputs: &[&str], endpoint: &str) -> Table {
        Table::sink(id, "splunk_hec", inputs)
            .set("endpoint", endpoint)
            .set("token", "${TEST_HEC_TOKEN}")
    }

    /// A syslog sink (address, mode and format are the test's).
    pub fn syslog(id: &str, inputs: &[&str]) -> Table {
        Table::sink(id, "syslog", inputs)
    }

    /// A kafka sink.
    pub fn kafka(id: &str, inputs: &[&str], brokers: &str, topic: &str) -> Table {
        Table::sink(id, "kafka", inputs)
            .set("brokers", brokers)
            .set("topic", topic)
    }

    /// A stdout sink.
    pub fn stdout(id: &str, inputs: &[&str]) -> Table {
        Table::sink(id, "stdout", inputs)
    }

    /// `key = value`, the value encoded as TOML; replaces the value a preset gave `key`.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Table {
        let line = format!("{key} = {}", value.into());
        match self
            .lines
            .iter_mut()
            .find(|(k, _)| k.as_deref() == Some(key))
        {
            Some((_, old)) => *old = line,
            None => self.lines.push((Some(key.to_string()), line)),
        }
        self
    }

    /// `tls = { ca_file = "<ca>" }`: trust the certificate in `ca` (the simulator's, a
    /// peer's).
    pub fn tls_ca(self, ca: &Path) -> Table {
        let mut tls = toml::Table::new();
        tls.insert("ca_file".to_string(), path_value(ca));
        self.set("tls", tls)
    }

    /// Lines appended as written (keys a test passes as TOML text; may be empty).
    pub fn raw(mut self, lines: &str) -> Table {
        if !lines.trim().is_empty() {
            self.lines.push((None, lines.trim_end().to_string()));
        }
        self
    }

    /// The table's TOML text.
    pub fn text(&self) -> String {
        let mut text = format!("[{}]\n", self.header);
        for (_, line) in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// A path as a TOML string (lossy for non-UTF-8 paths, which tests do not use).
fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.display().to_string())
}

#[test]
fn a_built_config_is_the_toml_it_says() {
    let text = ConfigBuilder::new("/tmp/state \"q\"")
        .table(
            Table::vbo("vbo_test", "https://127.0.0.1:1")
                .tls_ca(Path::new("/tmp/ca.pem"))
                .set("password", "sim-password")
                .raw("page_size = 5\n"),
        )
        .table(Table::file("archive", &["vbo_test"], Path::new("/tmp/out")))
        .text();
    let parsed: toml::Table = text.parse().unwrap();
    assert_eq!(parsed["state"]["dir"].as_str(), Some("/tmp/state \"q\""));
    let source = &parsed["sources"]["vbo_test"];
    assert_eq!(source["type"].as_str(), Some("vbo"));
    assert_eq!(source["password"].as_str(), Some("sim-password"));
    assert_eq!(source["username"].as_str(), Some("svc-siem"));
    assert_eq!(source["tls"]["ca_file"].as_str(), Some("/tmp/ca.pem"));
    assert_eq!(source["page_size"].as_integer(), Some(5));
    let sink = &parsed["sinks"]["archive"];
    assert_eq!(sink["inputs"][0].as_str(), Some("vbo_test"));
    assert!(text.contains("\n[sinks.archive]\n"), "{text}");
}
