//! The HEC sink's config (`type = "splunk_hec"`): keys, defaults, bounds and the checks
//! that need no network (endpoint normalisation, token rule, ack settings).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::common::{
    ConfigError, SecretHint, TlsConfig, check_bounded, check_secret, check_tls, de_duration,
    invalid, parse_url,
};
use crate::secret::Secret;

/// Upper bounds of the duration settings: far above any sensible value, low enough that
/// no deadline computed from them can overflow.
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_RETRY_MAX_DELAY: Duration = Duration::from_secs(3600);

/// `compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// `type = "splunk_hec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecSinkConfig {
    pub inputs: Vec<String>,
    /// Base URL of HEC, e.g. `https://splunk.example.net:8088` (a trailing
    /// `/services/collector[/event]` is accepted and ignored).
    pub endpoint: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Index to write to; default: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Default: per dataset (`veeam:vbo:restore`, `veeam:vdc:joblog`).
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// Default: `veeam-siem:<source id>`.
    #[serde(default)]
    pub source: Option<String>,
    /// Default: the Veeam server's host name (`observer.hostname`).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    /// gzip level, 1 (fastest) to 9 (smallest), with `compression = "gzip"`.
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    /// HEC requests in flight at the same time (across batches with `in_flight_batches`
    /// above 1).
    #[serde(default = "default_in_flight_requests")]
    pub in_flight_requests: usize,
    /// Batches sent and not yet confirmed (indexer ack) or checkpointed at the same time:
    /// also the most a crash may send twice.
    #[serde(default = "default_in_flight_batches")]
    pub in_flight_batches: usize,
    /// Events per HEC request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Uncompressed bytes per HEC request (Splunk Cloud refuses bodies over ~1 MB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Wait for indexer acknowledgement (the token must have it enabled).
    #[serde(default)]
    pub indexer_ack: bool,
    /// Requests not acknowledged within this time are sent again.
    #[serde(default = "default_ack_timeout", deserialize_with = "de_duration")]
    pub ack_timeout: Duration,
    /// Time between queries of the ack endpoint.
    #[serde(
        default = "default_ack_poll_interval",
        deserialize_with = "de_duration"
    )]
    pub ack_poll_interval: Duration,
    #[serde(default = "default_request_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Retries per request for busy/unhealthy answers, 5xx, timeouts and connection
    /// errors, before the batch goes back to the pipeline (which retries it again).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Upper bound of the exponential backoff between retries.
    #[serde(default = "default_retry_max_delay", deserialize_with = "de_duration")]
    pub retry_max_delay: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_max_events() -> usize {
    500
}
/// zlib's own default: on VB365 events it is both smaller than level 5 (115 against
/// 120 B/event) and cheaper (−6 % of gzip's instructions: with `nice_length` 128 the long
/// repeats between events are found in fewer, longer matches; BENCHMARKS.md).
fn default_compression_level() -> u32 {
    6
}
fn default_in_flight_requests() -> usize {
    4
}
fn default_in_flight_batches() -> usize {
    16
}
fn default_max_bytes() -> usize {
    1_000_000
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_ack_poll_interval() -> Duration {
    Duration::from_millis(200)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retries() -> u32 {
    8
}
fn default_retry_max_delay() -> Duration {
    Duration::from_secs(10)
}

/// How to give the token, for the "missing" error.
const TOKEN_HINT: SecretHint = SecretHint {
    env: "HEC_TOKEN",
    file: "/run/secrets/hec",
    extra: "",
};

impl HecSinkConfig {
    /// Checks that need no network. `key` is e.g. "sinks.splunk".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        base_url(key, &self.endpoint)?;
        check_secret(
            &format!("{key}.token"),
            self.token.as_ref(),
            self.token_file.as_deref(),
            TOKEN_HINT,
        )?;
        for (name, value) in [
            ("index", &self.index),
            ("sourcetype", &self.sourcetype),
            ("source", &self.source),
            ("host", &self.host),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(invalid(
                    format!("{key}.{name}"),
                    "must not be empty; remove the key to use the default",
                ));
            }
        }
        if !(1..=100_000).contains(&self.max_events) {
            return Err(invalid(
                format!("{key}.max_events"),
                format!("must be between 1 and 100000 (got {})", self.max_events),
            ));
        }
        if !(1_024..=100_000_000).contains(&self.max_bytes) {
            return Err(invalid(
                format!("{key}.max_bytes"),
                format!(
                    "must be between 1024 and 100000000 (got {}); Splunk Cloud accepts about 1 MB per request",
                    self.max_bytes
                ),
            ));
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(invalid(
                format!("{key}.compression_level"),
                format!(
                    "must be between 1 (fastest) and 9 (smallest) (got {})",
                    self.compression_level
                ),
            ));
        }
        for (name, value) in [
            ("in_flight_requests", self.in_flight_requests),
            ("in_flight_batches", self.in_flight_batches),
        ] {
            if !(1..=64).contains(&value) {
                return Err(invalid(
                    format!("{key}.{name}"),
                    format!("must be between 1 and 64 (got {value})"),
                ));
            }
        }
        check_bounded(
            key,
            &[
                ("ack_timeout", self.ack_timeout, MAX_ACK_TIMEOUT),
                ("ack_poll_interval", self.ack_poll_interval, MAX_ACK_TIMEOUT),
                ("request_timeout", self.request_timeout, MAX_REQUEST_TIMEOUT),
                ("retry_max_delay", self.retry_max_delay, MAX_RETRY_MAX_DELAY),
            ],
        )?;
        if self.ack_poll_interval >= self.ack_timeout {
            return Err(invalid(
                format!("{key}.ack_poll_interval"),
                "must be shorter than ack_timeout",
            ));
        }
        check_tls(&format!("{key}.tls"), &self.tls)
    }
}

/// The HEC base URL: http(s), no credentials, no query; a trailing
/// `/services/collector...` (pasted from Splunk's docs) is dropped.
pub(super) fn base_url(key: &str, text: &str) -> Result<String, ConfigError> {
    let key = format!("{key}.endpoint");
    let url = parse_url(&key, text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            key,
            "must not have a query or fragment; write the base URL, e.g. \"https://splunk.example.net:8088\"",
        ));
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    for suffix in [
        "/services/collector/event/1.0",
        "/services/collector/event",
        "/services/collector",
    ] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped.to_string();
            break;
        }
    }
    Ok(base)
}
