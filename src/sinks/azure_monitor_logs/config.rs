//! The Logs Ingestion sink's config (`type = "azure_monitor_logs"`): keys, defaults,
//! bounds and the checks that need no network (URLs, DCR id and stream shape, the client
//! secret rule).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::common::{
    ConfigError, SecretHint, TlsConfig, check_bounded, check_secret, check_tls, de_duration,
    invalid, parse_url,
};
use crate::secret::Secret;

/// The Logs Ingestion API's documented limit per call: 1 MB, compressed or not. We count
/// the uncompressed JSON array, which bounds the compressed body too.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Entra ID for the public cloud; sovereign clouds (and tests) override `authority`.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_RETRY_MAX_DELAY: Duration = Duration::from_secs(3600);

/// `type = "azure_monitor_logs"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureMonitorLogsConfig {
    pub inputs: Vec<String>,
    /// The data collection endpoint (DCE) or the DCR's own logs ingestion endpoint, e.g.
    /// `https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com`.
    pub endpoint: String,
    /// The DCR's immutable id, `dcr-` and 32 hex digits.
    pub dcr_immutable_id: String,
    /// The DCR's input stream, e.g. `Custom-VeeamRestore_CL`.
    pub stream: String,
    pub tenant_id: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The Entra ID authority (token endpoint: `{authority}/{tenant_id}/oauth2/v2.0/token`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Uncompressed bytes per request (the API takes at most 1 MB per call).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    #[serde(default = "default_request_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Retries per request for 429, 5xx, timeouts and connection errors, before the batch
    /// goes back to the pipeline (which retries it again).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Upper bound of the exponential backoff between retries (a longer `Retry-After` is
    /// honoured up to 2 minutes).
    #[serde(default = "default_retry_max_delay", deserialize_with = "de_duration")]
    pub retry_max_delay: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.to_string()
}
fn default_max_bytes() -> usize {
    MAX_REQUEST_BYTES
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

const SECRET_HINT: SecretHint = SecretHint {
    env: "AZURE_CLIENT_SECRET",
    file: "/run/secrets/azure-client-secret",
    extra: " (a client secret of the app registration, Certificates & secrets)",
};

impl AzureMonitorLogsConfig {
    /// Checks that need no network. `key` is e.g. "sinks.sentinel".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        base_url(&format!("{key}.endpoint"), &self.endpoint)?;
        base_url(&format!("{key}.authority"), &self.authority)?;
        check_dcr_id(&format!("{key}.dcr_immutable_id"), &self.dcr_immutable_id)?;
        check_path_segment(
            &format!("{key}.stream"),
            &self.stream,
            "the DCR's input stream, e.g. \"Custom-VeeamRestore_CL\"",
        )?;
        check_path_segment(
            &format!("{key}.tenant_id"),
            &self.tenant_id,
            "the directory (tenant) id: a GUID, or a domain like contoso.onmicrosoft.com",
        )?;
        if self.client_id.trim().is_empty() {
            return Err(invalid(
                format!("{key}.client_id"),
                "must not be empty: the application (client) id of the app registration",
            ));
        }
        check_secret(
            &format!("{key}.client_secret"),
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            SECRET_HINT,
        )?;
        if !(1_024..=MAX_REQUEST_BYTES).contains(&self.max_bytes) {
            return Err(invalid(
                format!("{key}.max_bytes"),
                format!(
                    "must be between 1024 and {MAX_REQUEST_BYTES} (got {}); the Logs Ingestion API accepts at most 1 MB per call",
                    self.max_bytes
                ),
            ));
        }
        check_bounded(
            key,
            &[
                ("request_timeout", self.request_timeout, MAX_REQUEST_TIMEOUT),
                ("retry_max_delay", self.retry_max_delay, MAX_RETRY_MAX_DELAY),
            ],
        )?;
        check_tls(&format!("{key}.tls"), &self.tls)
    }
}

/// A base URL: http(s), no credentials, no query or fragment, no trailing slash.
pub(super) fn base_url(key: &str, text: &str) -> Result<String, ConfigError> {
    let url = parse_url(key, text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            key,
            "must not have a query or fragment; write the base URL only",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The DCR's `immutableId` property: exactly `dcr-` and 32 hex digits (either case), the
/// form Azure gives it. Anything else (a resource id, a name, a truncated copy) is refused.
fn check_dcr_id(key: &str, id: &str) -> Result<(), ConfigError> {
    let rest = id.strip_prefix("dcr-").unwrap_or_default();
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            key,
            "must be the DCR's immutable id, \"dcr-\" and 32 hex digits (az monitor data-collection rule show --query immutableId), not its resource id or name",
        ));
    }
    Ok(())
}

/// A value that goes into a URL path as is: letters, digits, `-`, `_`, `.`.
fn check_path_segment(key: &str, value: &str, what: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be {what} (letters, digits, '-', '_' and '.' only)"),
        ))
    }
}
