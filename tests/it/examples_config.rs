//! Every example config (`examples/*.toml`) loads and validates through the library's own
//! loader, its secrets resolve, it keeps secrets out of the file, and together the examples
//! cover the common setups the README points to.
//!
//! Files an example names (CA bundles, client certificates, `*_file` secrets) live on the
//! machine it is written for, and the loader checks that certificate files exist; each
//! such path is therefore swapped for a file in a temporary directory before loading. The
//! environment variables an example reads without a default get plausible values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use veeam_siem::config::common::resolve_secret;
use veeam_siem::config::{Config, ConfigError, SinkConfig, SourceConfig};
use veeam_siem::sources::vbo::VboSource;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// `${NAME}` references in `text`, with whether every reference has a `:-default`. `$$` is
/// a literal dollar sign, as in the loader.
fn env_refs(text: &str) -> BTreeMap<String, bool> {
    let mut refs = BTreeMap::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
            continue;
        }
        if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, _)) => (name, true),
                None => (inner, false),
            };
            // A variable needs a value when any of its references has no default.
            let entry = refs.entry(name.to_string()).or_insert(true);
            *entry = *entry && default;
            rest = &body[end + 1..];
            continue;
        }
        rest = after;
    }
    refs
}

/// A value that passes validation for the key a variable is likely used in.
fn plausible_value(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.contains("URL") || upper.contains("ENDPOINT") {
        "https://service.example.net:8443".to_string()
    } else {
        format!("example-value-of-{}", name.to_ascii_lowercase())
    }
}

/// Point every `*_file` key at a fresh file in `dir`; returns the dotted key paths.
fn localize_files(value: &mut toml::Value, path: &str, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut swapped = Vec::new();
    if let toml::Value::Table(table) = value {
        for (key, item) in table.iter_mut() {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match item {
                toml::Value::String(s) if key.ends_with("_file") => {
                    let file = dir.join(key_path.replace(['.', '"'], "_"));
                    if key == "signing_key_file" {
                        // The archive sink reads its key at load: a real Ed25519 key.
                        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("tests/fixtures/keys/test-only-archive.pem");
                        std::fs::copy(fixture, &file)?;
                    } else if key == "ca_file" {
                        // Checked at load: a PEM certificate.
                        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("tests/fixtures/keys/test-only-ca.pem");
                        std::fs::copy(fixture, &file)?;
                    } else {
                        std::fs::write(&file, "example-secret-or-pem\n")?;
                    }
                    *s = file.display().to_string();
                    swapped.push(key_path);
                }
                toml::Value::Table(_) => swapped.extend(localize_files(item, &key_path, dir)?),
                _ => {}
            }
        }
    }
    Ok(swapped)
}

struct Loaded {
    name: String,
    raw: toml::Value,
    config: Config,
}

fn load(path: &Path, dir: &Path) -> Result<Loaded, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let raw: toml::Value = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let mut local = raw.clone();
    let scratch = dir.join(name.replace('.', "_"));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{name}: {e}"))?;
    localize_files(&mut local, "", &scratch).map_err(|e| format!("{name}: {e}"))?;
    let local_text = toml::to_string(&local).map_err(|e| format!("{name}: {e}"))?;

    let required: BTreeSet<String> = env_refs(&text)
        .into_iter()
        .filter(|(_, has_default)| !has_default)
        .map(|(name, _)| name)
        .collect();
    let env = |var: &str| required.contains(var).then(|| plausible_value(var));
    let config = Config::from_toml(&local_text, path, &env)
        .map_err(|e| format!("{name} does not load: {e}"))?;

    // Without its variables, an example that reads any must fail, naming one of them.
    if !required.is_empty() {
        match Config::from_toml(&local_text, path, &|_| None) {
            Ok(_) => return Err(format!("{name} loads without {required:?} set")),
            Err(e) => {
                let message = e.to_string();
                if !required.iter().any(|v| message.contains(v.as_str())) {
                    return Err(format!(
                        "{name}: the error for a missing variable names none of {required:?}: {message}"
                    ));
                }
            }
        }
    }
    Ok(Loaded { name, raw, config })
}

/// Resolve every secret of the config the way the components do at startup.
fn resolve_all_secrets(config: &Config) -> Result<usize, ConfigError> {
    let mut resolved = 0;
    for (id, source) in &config.sources {
        match source {
            SourceConfig::Vbo(c) => {
                VboSource::resolve(id, c)?;
            }
            SourceConfig::Vdc(c) => {
                resolve_secret(
                    &format!("sources.{id}.api_key"),
                    c.api_key.as_ref(),
                    c.api_key_file.as_deref(),
                )?;
            }
        }
        resolved += 1;
    }
    for (id, sink) in &config.sinks {
        match sink {
            SinkConfig::SplunkHec(c) => {
                resolve_secret(
                    &format!("sinks.{id}.token"),
                    c.token.as_ref(),
                    c.token_file.as_deref(),
                )?;
                resolved += 1;
            }
            SinkConfig::AzureMonitorLogs(c) => {
                resolve_secret(
                    &format!("sinks.{id}.client_secret"),
                    c.client_secret.as_ref(),
                    c.client_secret_file.as_deref(),
                )?;
                resolved += 1;
            }
            SinkConfig::Kafka(c) => {
                if let Some(sasl) = &c.sasl {
                    resolve_secret(
                        &format!("sinks.{id}.sasl.password"),
                        sasl.password.as_ref(),
                        sasl.password_file.as_deref(),
                    )?;
                    resolved += 1;
                }
            }
            _ => {}
        }
    }
    Ok(resolved)
}

fn load_all() -> Result<(tempfile::TempDir, Vec<Loaded>), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut loaded = Vec::new();
    let mut failures = Vec::new();
    for path in example_files() {
        match load(&path, dir.path()) {
            Ok(l) => loaded.push(l),
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    Ok((dir, loaded))
}

#[test]
fn every_example_loads_validates_and_resolves_its_secrets() -> TestResult {
    let files = example_files();
    assert!(
        files.len() >= 6,
        "expected the example configs under {}, found {files:?}",
        examples_dir().display()
    );
    let (_dir, loaded) = load_all()?;
    for example in &loaded {
        let resolved = resolve_all_secrets(&example.config)
            .map_err(|e| format!("{}: a secret does not resolve: {e}", example.name))?;
        assert!(
            resolved >= example.config.sources.len(),
            "{}: every source has a secret",
            example.name
        );
    }
    Ok(())
}

#[test]
fn examples_explain_themselves_and_keep_secrets_out_of_the_file() -> TestResult {
    for path in example_files() {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path)?;
        assert!(
            text.starts_with('#'),
            "{name}: start with a comment saying what the example is for and how to run it"
        );
        let value: toml::Value = toml::from_str(&text)?;
        let mut inline = Vec::new();
        find_inline_secrets(&value, "", &mut inline);
        assert!(
            inline.is_empty(),
            "{name}: secrets must come from ${{ENV}} or a *_file key, not the file: {inline:?}"
        );
    }
    Ok(())
}

/// Secret keys (`password`, `token`, `api_key`) whose value is not an `${ENV}` reference.
fn find_inline_secrets(value: &toml::Value, path: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (key, item) in table {
            let key_path = format!("{path}.{key}");
            match item {
                toml::Value::String(s)
                    if matches!(key.as_str(), "password" | "token" | "api_key")
                        && !s.trim_start().starts_with("${") =>
                {
                    out.push(key_path);
                }
                toml::Value::Table(_) => find_inline_secrets(item, &key_path, out),
                _ => {}
            }
        }
    }
}

fn str_at<'a>(value: &'a toml::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(toml::Value::as_str)
}

/// The source types a sink reads, from the example's own text.
fn input_types(raw: &toml::Value, sink: &toml::Value) -> BTreeSet<String> {
    let inputs = sink
        .get("inputs")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    inputs
        .iter()
        .filter_map(toml::Value::as_str)
        .filter_map(|id| {
            raw.get("sources")
                .and_then(|s| s.get(id))
                .and_then(|s| str_at(s, "type"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn the_common_setups_have_an_example() -> TestResult {
    let (_dir, loaded) = load_all()?;
    let mut covered: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for example in &loaded {
        let Some(sinks) = example.raw.get("sinks").and_then(toml::Value::as_table) else {
            continue;
        };
        for sink in sinks.values() {
            let kind = str_at(sink, "type").unwrap_or_default();
            let reads = input_types(&example.raw, sink);
            let both = reads.contains("vbo") && reads.contains("vdc");
            let setup = match kind {
                "splunk_hec" if reads.contains("vbo") => Some("VB365 -> Splunk HEC"),
                "kafka" if both => Some("VB365 + VDC -> Kafka"),
                "syslog" if reads.contains("vbo") && str_at(sink, "mode") == Some("tls") => {
                    Some("VB365 -> syslog over TLS")
                }
                _ => None,
            };
            if let Some(setup) = setup {
                covered.entry(setup).or_default().push(example.name.clone());
            }
        }
        // A compliance archive: both sources archived to daily files (by one sink or one per source).
        let file_sinks: Vec<&toml::Value> = sinks
            .values()
            .filter(|s| str_at(s, "type") == Some("file"))
            .filter(|s| str_at(s, "path").is_some_and(|p| p.contains("%Y-%m-%d")))
            .collect();
        let archived: BTreeSet<String> = file_sinks
            .iter()
            .flat_map(|s| input_types(&example.raw, s))
            .collect();
        if archived.contains("vbo") && archived.contains("vdc") {
            covered
                .entry("compliance archive: VB365 + VDC -> daily files")
                .or_default()
                .push(example.name.clone());
        }
    }
    for setup in [
        "VB365 -> Splunk HEC",
        "VB365 + VDC -> Kafka",
        "VB365 -> syslog over TLS",
        "compliance archive: VB365 + VDC -> daily files",
    ] {
        assert!(
            covered.contains_key(setup),
            "no example for {setup}; found {covered:?}"
        );
    }
    Ok(())
}

#[test]
fn examples_keep_the_ops_endpoint_on_loopback() -> TestResult {
    // /metrics, /health and /ready have no authentication: examples bind them to loopback
    // and leave exposing them (a sidecar, a reverse proxy) to the operator.
    let (_dir, loaded) = load_all()?;
    for example in &loaded {
        if let Some(ops) = &example.config.ops {
            assert!(
                ops.listen.ip().is_loopback() && ops.listen.port() != 0,
                "{}: [ops] listen = {} should be a fixed loopback port",
                example.name,
                ops.listen
            );
        }
    }
    Ok(())
}
