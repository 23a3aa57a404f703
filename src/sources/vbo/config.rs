//! The VB365 source's config (`type = "vbo"`): keys, defaults, the checks that need no
//! network, and [`VboSource`], the config with its URL parsed and its password resolved.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::config::common::{
    ConfigError, SecretHint, TlsConfig, check_nonzero, check_secret, check_tls, de_duration,
    invalid, parse_url, resolve_secret,
};
use crate::secret::Secret;

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
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
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
    /// v6/v7 only (they list sessions in no order): how many listed sessions one listing
    /// pass holds in memory (~1 KiB each) to ship them oldest first; a longer listing is
    /// read again from the new horizon for the rest.
    #[serde(default = "default_max_held_sessions")]
    pub max_held_sessions: usize,
    /// Hold events read while `Running` back until they have their final status (one
    /// copy, with its result, shipped later) instead of shipping them as read.
    #[serde(default)]
    pub hold_in_progress: bool,
    /// Not a config key: set by `backfill`, whose state is thrown away when it completes,
    /// so events still in progress are shipped as read instead of held back.
    #[serde(skip)]
    pub ship_in_progress: bool,
}

fn default_api_version() -> ApiVersion {
    ApiVersion::V8
}
fn default_poll() -> Duration {
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
fn default_max_held_sessions() -> usize {
    20_000
}

/// How to give the password, for the "missing" error.
const PASSWORD_HINT: SecretHint = SecretHint {
    env: "VBO_PASSWORD",
    file: "/run/secrets/vbo",
    extra: "",
};

impl VboSourceConfig {
    /// Checks that need no network. `key` is e.g. "sources.vbo_main".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        parse_url(&format!("{key}.url"), &self.url)?;
        if !(1..=10_000).contains(&self.page_size) {
            return Err(invalid(
                format!("{key}.page_size"),
                format!("must be between 1 and 10000 (got {})", self.page_size),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_held_sessions) {
            return Err(invalid(
                format!("{key}.max_held_sessions"),
                format!(
                    "must be between 1 and 1000000 (got {})",
                    self.max_held_sessions
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
        if self.username.trim().is_empty() {
            return Err(invalid(format!("{key}.username"), "must not be empty"));
        }
        check_secret(
            &format!("{key}.password"),
            self.password.as_ref(),
            self.password_file.as_deref(),
            PASSWORD_HINT,
        )?;
        check_tls(&format!("{key}.tls"), &self.tls)
    }
}

/// A VB365 source with its secret resolved and URL checked.
#[derive(Debug, Clone)]
pub struct VboSource {
    pub id: String,
    pub url: Url,
    pub password: Secret,
    pub settings: VboSourceConfig,
}

impl VboSource {
    /// The source `id` of `settings`, with its password read (from the file when it was
    /// not read at load) and its URL parsed.
    pub fn resolve(id: &str, settings: &VboSourceConfig) -> Result<VboSource, ConfigError> {
        let url = parse_url(&format!("sources.{id}.url"), &settings.url)?;
        let password = resolve_secret(
            &format!("sources.{id}.password"),
            settings.password.as_ref(),
            settings.password_file.as_deref(),
        )?;
        Ok(VboSource {
            id: id.to_string(),
            url,
            password,
            settings: settings.clone(),
        })
    }
}
