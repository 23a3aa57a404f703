//! What every component's config shares, written once: [`ConfigError`] and key-path
//! errors, durations, URLs, secrets given inline or as a file, and `tls` tables.
//!
//! A leaf: it imports nothing from the components or from the config root, so every
//! component can use it without an import cycle. Components own their config types; the
//! root (`config/mod.rs`) only lists them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::secret::Secret;

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
/// The largest secret file read (`password_file`, `token_file`, `api_key_file`).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

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

/// Each of `(name, value)` under `key` is greater than zero.
pub fn check_nonzero(key: &str, values: &[(&str, Duration)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| v.is_zero()) {
        Some((name, _)) => Err(invalid(
            format!("{key}.{name}"),
            "must be greater than zero",
        )),
        None => Ok(()),
    }
}

/// Each of `(name, value, max)` under `key` is greater than zero and at most `max` (bounds
/// that keep every deadline computed from the value far from overflowing).
pub fn check_bounded(key: &str, values: &[(&str, Duration, Duration)]) -> Result<(), ConfigError> {
    for &(name, value, max) in values {
        check_nonzero(key, &[(name, value)])?;
        if value > max {
            return Err(invalid(
                format!("{key}.{name}"),
                format!(
                    "must be at most {} (got {})",
                    humantime::format_duration(max),
                    humantime::format_duration(value)
                ),
            ));
        }
    }
    Ok(())
}

/// A connection configured without TLS (an `http://` endpoint, SASL PLAIN over a plain
/// Kafka connection): what would travel in clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleartext {
    /// The config key, e.g. `sources.vbo_main.url`.
    pub key: String,
    /// What travels over it, e.g. "the password and access tokens".
    pub carries: &'static str,
    /// How it is configured, e.g. "http://".
    pub over: &'static str,
    /// The fix, e.g. "use https://".
    pub fix: &'static str,
}

impl Cleartext {
    /// `Some` when `url` (the value of config key `key`) is plain `http://`.
    pub fn of(key: String, url: &str, carries: &'static str) -> Option<Cleartext> {
        let plain = Url::parse(url.trim()).is_ok_and(|u| u.scheme() == "http");
        plain.then_some(Cleartext {
            key,
            carries,
            over: "http://",
            fix: "use https://",
        })
    }

    /// What is wrong, without the key (for `check`, whose row names the key).
    pub fn problem(&self) -> String {
        format!(
            "{} sends {} in clear text; {}",
            self.over, self.carries, self.fix
        )
    }

    /// One line for the startup log.
    pub fn message(&self) -> String {
        format!(
            "{} uses {}: {} travel in clear text; {}",
            self.key, self.over, self.carries, self.fix
        )
    }
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
            "must not contain credentials (`user:password@`, they would show wherever the URL is logged); give them in the component's own secret keys instead (VB365 `username`/`password`, VDC `api_key`, HEC `token`, S3 credentials from the environment)",
        ));
    }
    if url.host_str().is_none() {
        return Err(invalid(key, "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        // Not shown: a query may carry a key.
        return Err(invalid(
            key,
            "must not contain a query (`?…`) or a fragment (`#…`); give the base URL only, e.g. \"https://vbo.example.net:4443\" (secrets have their own keys)",
        ));
    }
    Ok(url)
}

/// The host of a configured URL, or "" (for `observer.hostname`); an IPv6 address without
/// the URL's brackets.
pub fn url_host(text: &str) -> String {
    match Url::parse(text.trim()).ok().as_ref().and_then(Url::host) {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => String::new(),
    }
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

/// Checks shared by every `tls` table (`key` is e.g. "sources.vbo_main.tls").
pub fn check_tls(key: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    check_ca_file(key, tls.ca_file.as_deref())
}

/// A configured `ca_file` under `key` exists and holds PEM certificates (checked when the
/// config is loaded, so a wrong file is a config error, exit 2, not a runtime failure).
pub fn check_ca_file(key: &str, ca_file: Option<&Path>) -> Result<(), ConfigError> {
    match ca_file {
        Some(ca) if !ca.is_file() => Err(invalid(
            format!("{key}.ca_file"),
            format!("{} does not exist or is not a file", ca.display()),
        )),
        Some(ca) => read_certs(ca).map(|_| ()).map_err(|problem| {
            invalid(
                format!("{key}.ca_file"),
                format!("{problem}; give the PEM file of the CA (or self-signed certificate)"),
            )
        }),
        None => Ok(()),
    }
}

/// Every certificate of a PEM file; at least one. Errors start with the path.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(certs)
}

/// The one startup warning for `tls.insecure_skip_verify = true` (`key` is the `tls`
/// table, e.g. "sinks.splunk.tls").
pub fn warn_if_insecure(key: &str, insecure: bool) {
    if insecure {
        tracing::warn!(
            "TLS certificate verification is OFF ({key}.insecure_skip_verify = true): the peer's certificate is NOT checked; prefer {key}.ca_file"
        );
    }
}

/// How to set a secret, for the "missing" error: e.g. `("VBO_PASSWORD", "/run/secrets/vbo")`
/// gives "set `password = \"${VBO_PASSWORD}\"` or `password_file = \"/run/secrets/vbo\"`".
#[derive(Debug, Clone, Copy)]
pub struct SecretHint {
    pub env: &'static str,
    pub file: &'static str,
    /// Anything to add, e.g. where the secret is created (may be "").
    pub extra: &'static str,
}

/// The error for a secret given both inline and as a file (`key` is the inline key).
fn both_given(key: &str) -> ConfigError {
    let name = key.rsplit('.').next().unwrap_or(key);
    invalid(
        key,
        format!("set either `{name}` or `{name}_file`, not both"),
    )
}

/// The one rule for a secret given as `<name>` or `<name>_file`: exactly one of the two,
/// and not empty. `key` is the inline key's full path (e.g. "sinks.splunk.token"); errors
/// name it and never show the value.
pub fn check_secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
    hint: SecretHint,
) -> Result<(), ConfigError> {
    let name = key.rsplit('.').next().unwrap_or(key);
    match (inline, file) {
        (Some(_), Some(_)) => Err(both_given(key)),
        (None, None) => Err(invalid(
            key,
            format!(
                "missing; set `{name} = \"${{{}}}\"` or `{name}_file = \"{}\"`{}",
                hint.env, hint.file, hint.extra
            ),
        )),
        (Some(s), None) if s.expose().trim().is_empty() => Err(invalid(key, "is empty")),
        _ => Ok(()),
    }
}

/// Move the secret in `file` (when set) into `inline` and forget the path, so the file is
/// read once, at load, and a missing file is a config error; `key` is the inline key
/// (errors name `<key>_file`).
pub fn take_secret_file(
    key: &str,
    inline: &mut Option<Secret>,
    file: &mut Option<PathBuf>,
) -> Result<(), ConfigError> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    if inline.is_some() {
        return Err(both_given(key));
    }
    *inline = Some(read_secret_file(&format!("{key}_file"), &path)?);
    Ok(())
}

/// The secret at `key`, given inline or as a file (read now when it was not at load).
pub fn resolve_secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Secret, ConfigError> {
    let secret = match (inline, file) {
        (Some(s), None) => s.clone(),
        (None, Some(path)) => read_secret_file(&format!("{key}_file"), path)?,
        (Some(_), Some(_)) => return Err(both_given(key)),
        (None, None) => return Err(invalid(key, "missing")),
    };
    if secret.is_empty() {
        return Err(invalid(key, "is empty"));
    }
    Ok(secret)
}

/// A secret file's content without its trailing newline: at most [`MAX_SECRET_FILE_BYTES`],
/// UTF-8, not empty. Errors name `key` and the path, never the content.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
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
pub fn check_header_secret(key: &str, secret: Option<&Secret>) -> Result<(), ConfigError> {
    if secret.is_some_and(|s| s.expose().chars().any(|c| c.is_control() && c != '\t')) {
        return Err(invalid(
            key,
            "contains control characters (a stray newline?), which cannot travel in an HTTP header; the value is not shown",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_query_are_refused_and_ipv6_hosts_lose_their_brackets() {
        let e = parse_url("sources.v.url", "https://vbo:4443/?api_key=s3cr3t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.v.url") && e.contains("query"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(parse_url("k", "https://vbo:4443/#x").is_err());
        assert!(parse_url("k", "https://vbo:4443/base/").is_ok());
        assert_eq!(url_host("http://[::1]:9000/"), "::1");
        assert_eq!(url_host("https://Vbo.Example.NET:4443"), "vbo.example.net");
        assert_eq!(url_host("https://10.0.0.1"), "10.0.0.1");
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
    fn one_secret_rule_for_every_component() {
        let hint = SecretHint {
            env: "HEC_TOKEN",
            file: "/run/secrets/hec",
            extra: "",
        };
        let s = Secret::new("x");
        let blank = Secret::new("  ");
        let p = Path::new("/x");
        let err = |r: Result<(), ConfigError>| r.unwrap_err().to_string();
        let both = err(check_secret("sinks.s.token", Some(&s), Some(p), hint));
        assert!(
            both.contains("`sinks.s.token`") && both.contains("not both"),
            "{both}"
        );
        let none = err(check_secret("sinks.s.token", None, None, hint));
        assert!(
            none.contains("token = \"${HEC_TOKEN}\"") && none.contains("token_file"),
            "{none}"
        );
        let empty = err(check_secret("sinks.s.token", Some(&blank), None, hint));
        assert!(empty.contains("is empty"), "{empty}");
        assert!(check_secret("sinks.s.token", Some(&s), None, hint).is_ok());
        assert!(check_secret("sinks.s.token", None, Some(p), hint).is_ok());
    }

    #[test]
    fn cleartext_only_for_plain_http() {
        assert!(Cleartext::of("k".into(), "HTTP://h:1", "x").is_some());
        assert!(Cleartext::of("k".into(), "https://h", "x").is_none());
        assert!(Cleartext::of("k".into(), "not a url", "x").is_none());
    }
}
