//! The VDC source's config (`type = "vdc"`): keys, defaults, the checks that need no network,
//! and [`VdcSource`], the config with its URL parsed and its API key resolved.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::api::KeyHeader;
use crate::config::common::{
    ConfigError, SecretHint, TlsConfig, check_nonzero, check_secret, check_tls, de_duration,
    invalid, parse_url, resolve_secret,
};
use crate::secret::Secret;

/// How session logs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    /// `GET …/logs`: a JSON array of `{id, title, creationTime, endTime}`.
    #[default]
    Json,
    /// `GET …/logs/download`: a stream, read as it arrives (gzip or not).
    Download,
}

/// `[sources.<id>]` with `type = "vdc"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdcSourceConfig {
    /// The regional base URL shown in the VDC portal under the key (without `/v1`).
    pub url: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Header carrying the key; `authorization` sends `Authorization: Bearer <key>`.
    #[serde(default = "default_header")]
    pub api_key_header: String,
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    #[serde(default)]
    pub log_mode: LogMode,
    /// Horizon of the first run: sessions created before it are not shipped.
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Safety margin below each job's floor for sessions that are listed late.
    #[serde(default = "default_lookback", deserialize_with = "de_duration")]
    pub lookback: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per HTTP request; for `log_mode = "download"` it covers the whole download.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Retries per request for 5xx, 408, 429, timeouts and resets.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Keep the raw record in `event.original`.
    #[serde(default)]
    pub keep_original: bool,
    /// Hold log entries whose title says `[Running]` back while their session runs, until
    /// they have their final status, instead of shipping them as read.
    #[serde(default)]
    pub hold_in_progress: bool,
    /// Not a config key: set by `backfill` (see the VB365 source's).
    #[serde(skip)]
    pub ship_in_progress: bool,
}

fn default_header() -> String {
    "x-api-key".to_string()
}
fn default_poll() -> Duration {
    Duration::from_secs(300)
}
fn default_lookback() -> Duration {
    Duration::from_secs(3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retries() -> u32 {
    8
}

/// How to give the API key, for the "missing" error.
const API_KEY_HINT: SecretHint = SecretHint {
    env: "VDC_API_KEY",
    file: "/run/secrets/vdc",
    extra: " (the key is created in the VDC portal under Settings → System → VDC Public API)",
};

impl VdcSourceConfig {
    /// Checks that need no network and no secret file. `key` is e.g. "sources.vdc_emea".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        parse_url(&format!("{key}.url"), &self.url)?;
        check_secret(
            &format!("{key}.api_key"),
            self.api_key.as_ref(),
            self.api_key_file.as_deref(),
            API_KEY_HINT,
        )?;
        if KeyHeader::parse(&self.api_key_header).is_none() {
            return Err(invalid(
                format!("{key}.api_key_header"),
                format!(
                    "`{}` is not a valid HTTP header name; use e.g. \"x-api-key\" or \"authorization\"",
                    self.api_key_header
                ),
            ));
        }
        check_nonzero(
            key,
            &[
                ("poll_interval", self.poll_interval),
                ("request_timeout", self.request_timeout),
            ],
        )?;
        check_tls(&format!("{key}.tls"), &self.tls)
    }
}

/// A VDC source with its key resolved (inline or from `api_key_file`) and URL checked.
#[derive(Debug, Clone)]
pub struct VdcSource {
    pub id: String,
    pub url: Url,
    pub api_key: Secret,
    pub settings: VdcSourceConfig,
}

impl VdcSource {
    pub fn resolve(id: &str, settings: &VdcSourceConfig) -> Result<VdcSource, ConfigError> {
        settings.validate(&format!("sources.{id}"))?;
        let url = parse_url(&format!("sources.{id}.url"), &settings.url)?;
        let api_key = resolve_secret(
            &format!("sources.{id}.api_key"),
            settings.api_key.as_ref(),
            settings.api_key_file.as_deref(),
        )?;
        Ok(VdcSource {
            id: id.to_string(),
            url,
            api_key,
            settings: settings.clone(),
        })
    }
}
