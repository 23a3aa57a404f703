//! The Kafka sink's config (`type = "kafka"`): keys, defaults and the checks that need no
//! network (brokers, topic template, `options` that would break our guarantees).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::common::{ConfigError, SecretHint, check_secret, de_duration, invalid};
use crate::secret::Secret;

use super::topic::TopicTemplate;

/// `type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub inputs: Vec<String>,
    /// Bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// Topic name or template with `{dataset}` / `{source_id}`.
    pub topic: String,
    /// What becomes the record key.
    #[serde(default)]
    pub key: KeyField,
    /// Send the `source_id`, `dataset` and `schema_version` headers.
    #[serde(default = "default_true")]
    pub headers: bool,
    #[serde(default)]
    pub compression: Compression,
    /// librdkafka `message.timeout.ms`: how long a record may wait for its delivery report
    /// (retries included) before the batch fails and is retried by the pipeline.
    #[serde(default = "default_message_timeout", deserialize_with = "de_duration")]
    pub message_timeout: Duration,
    /// Bound of the startup metadata request.
    #[serde(
        default = "default_healthcheck_timeout",
        deserialize_with = "de_duration"
    )]
    pub healthcheck_timeout: Duration,
    /// How long shutdown waits for records still in librdkafka's queue.
    #[serde(default = "default_flush_timeout", deserialize_with = "de_duration")]
    pub flush_timeout: Duration,
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
    #[serde(default)]
    pub sasl: Option<KafkaSaslConfig>,
    /// librdkafka properties passed through (they win over ours; overriding a safety
    /// setting is logged as a warning at startup).
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// The record key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum KeyField {
    /// `event.id`: Veeam's stable id (compaction and consumers can de-duplicate by it).
    #[default]
    #[serde(rename = "event.id")]
    EventId,
    /// No key: librdkafka spreads records over partitions.
    #[serde(rename = "none")]
    None,
}

/// `compression.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `tls = { ... }`: present means the connection uses TLS (unless `enabled = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// PEM CA bundle to trust (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM, unencrypted) for mutual TLS; needs `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any certificate and host name. Insecure; logged as a warning.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `sasl = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A librdkafka property value as written in TOML (`"zstd"`, `5`, `true`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl OptionValue {
    pub(super) fn to_property(&self) -> String {
        match self {
            OptionValue::Text(s) => s.clone(),
            OptionValue::Integer(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Bool(b) => b.to_string(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_healthcheck_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_flush_timeout() -> Duration {
    Duration::from_secs(10)
}

/// librdkafka properties that carry the no-loss guarantee, with our value. A user
/// override in `options` is honoured and logged as a warning.
pub(super) const SAFETY: &[(&str, &str, &str)] = &[
    (
        "acks",
        "all",
        "a record acknowledged by fewer than all in-sync replicas is lost if its leader fails",
    ),
    (
        "request.required.acks",
        "all",
        "a record acknowledged by fewer than all in-sync replicas is lost if its leader fails",
    ),
    (
        "enable.idempotence",
        "true",
        "internal retries may then duplicate or reorder records",
    ),
    (
        "message.timeout.ms",
        "",
        "use the `message_timeout` key instead; 0 means a batch can wait forever",
    ),
    (
        "delivery.timeout.ms",
        "",
        "use the `message_timeout` key instead; 0 means a batch can wait forever",
    ),
    (
        "max.in.flight.requests.per.connection",
        "",
        "the idempotent producer needs at most 5",
    ),
    (
        "max.in.flight",
        "",
        "the idempotent producer needs at most 5",
    ),
    (
        "retries",
        "",
        "fewer retries turn short outages into batch retries (more duplicates)",
    ),
    (
        "message.send.max.retries",
        "",
        "fewer retries turn short outages into batch retries (more duplicates)",
    ),
];

/// `options` keys that are refused, with the reason and the fix.
fn forbidden_option(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower == "bootstrap.servers" || lower == "metadata.broker.list" {
        return Some("set the `brokers` key instead");
    }
    // Everything librdkafka itself treats as sensitive (a private key, OAuth settings).
    let sensitive = lower.contains("password")
        || lower.contains("secret")
        || lower.contains("jaas")
        || lower.contains("passphrase")
        || lower == "ssl.key.pem"
        || lower == "ssl_key"
        || lower.starts_with("sasl.oauthbearer.config")
        || lower.starts_with("sasl.oauthbearer.assertion");
    if sensitive {
        return Some(
            "secrets don't belong in `options` (they would be printed like any option); use `sasl.password` or `sasl.password_file`, and `tls.key_file` for a client key",
        );
    }
    if lower == "delivery.report.only.error" || lower == "dr_msg_cb" || lower == "dr_cb" {
        return Some("acknowledgements are built from every delivery report; it can't be changed");
    }
    if lower == "transactional.id" {
        return Some("transactions are not supported by this sink (the idempotent producer is)");
    }
    None
}

/// How to give the SASL password, for the "missing" error.
const PASSWORD_HINT: SecretHint = SecretHint {
    env: "KAFKA_PASSWORD",
    file: "/run/secrets/kafka",
    extra: "",
};

impl KafkaSinkConfig {
    /// Checks that need no network. `key` is e.g. "sinks.bus".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        parse_brokers(&self.brokers).map_err(|p| invalid(format!("{key}.brokers"), p))?;
        TopicTemplate::parse(&self.topic).map_err(|p| invalid(format!("{key}.topic"), p))?;
        if self.message_timeout < Duration::from_secs(1)
            || self.message_timeout > Duration::from_secs(3600)
        {
            return Err(invalid(
                format!("{key}.message_timeout"),
                "must be between 1s and 1h (librdkafka's message.timeout.ms)",
            ));
        }
        // librdkafka takes these in milliseconds as a C int: keep them well inside it.
        for (name, value) in [
            ("healthcheck_timeout", self.healthcheck_timeout),
            ("flush_timeout", self.flush_timeout),
        ] {
            if value.is_zero() || value > Duration::from_secs(3600) {
                return Err(invalid(
                    format!("{key}.{name}"),
                    "must be greater than zero and at most 1h",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            for (name, file) in [
                ("ca_file", &tls.ca_file),
                ("cert_file", &tls.cert_file),
                ("key_file", &tls.key_file),
            ] {
                if let Some(f) = file
                    && !f.is_file()
                {
                    return Err(invalid(
                        format!("{key}.tls.{name}"),
                        format!("{} does not exist or is not a file", f.display()),
                    ));
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(invalid(
                    format!("{key}.tls"),
                    "set both `cert_file` and `key_file` for mutual TLS, or neither",
                ));
            }
        }
        if let Some(sasl) = &self.sasl {
            if sasl.username.trim().is_empty() {
                return Err(invalid(format!("{key}.sasl.username"), "must not be empty"));
            }
            check_secret(
                &format!("{key}.sasl.password"),
                sasl.password.as_ref(),
                sasl.password_file.as_deref(),
                PASSWORD_HINT,
            )?;
        }
        for (name, value) in &self.options {
            if let Some(why) = forbidden_option(name) {
                return Err(invalid(format!("{key}.options.\"{name}\""), why));
            }
            if matches!(value, OptionValue::Text(s) if s.is_empty()) {
                return Err(invalid(
                    format!("{key}.options.\"{name}\""),
                    "is empty; remove it to keep librdkafka's default",
                ));
            }
            // librdkafka checks the name and the value (no client is created): an unknown
            // property or a bad value is a config error now, not a failure at startup.
            let mut one = rdkafka::ClientConfig::new();
            one.set(name.as_str(), value.to_property());
            if let Err(e) = one.create_native_config() {
                // librdkafka's message may quote the value, and a misspelled secret
                // property (`sasl.pasword`) carries a secret: keep only its reason.
                let why = match &e {
                    rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => {
                        description.clone()
                    }
                    other => other.to_string(),
                };
                let value = value.to_property();
                let why = if value.len() >= 3 {
                    why.replace(value.as_str(), "<value>")
                } else {
                    why
                };
                return Err(invalid(
                    format!("{key}.options.\"{name}\""),
                    format!("librdkafka refuses it: {why}; see librdkafka's CONFIGURATION.md"),
                ));
            }
        }
        Ok(())
    }

    /// SASL PLAIN over a connection without TLS: the password travels in clear text.
    pub(super) fn plain_password_in_clear(&self) -> bool {
        self.sasl
            .as_ref()
            .is_some_and(|s| s.mechanism == SaslMechanism::Plain)
            && self.security_protocol() == "sasl_plaintext"
    }

    pub(super) fn security_protocol(&self) -> &'static str {
        let tls = self.tls.as_ref().is_some_and(|t| t.enabled);
        match (tls, self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }
}

/// `host:port[,host:port...]`.
pub(super) fn parse_brokers(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        if part.contains("://") {
            return Err(format!(
                "`{part}`: write brokers as host:port without a scheme (TLS and SASL have their own keys)"
            ));
        }
        let ok = part
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(format!(
                "`{part}` is not host:port; write e.g. \"kafka-1:9092,kafka-2:9092\""
            ));
        }
        out.push(part.to_string());
    }
    if out.is_empty() {
        return Err(
            "is empty; list the bootstrap brokers, e.g. \"kafka-1:9092,kafka-2:9092\"".into(),
        );
    }
    Ok(out)
}
