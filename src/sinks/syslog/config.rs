//! The syslog sink's config (`type = "syslog"`): address, mode, format, framing, TLS, and
//! the checks that need no network.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::format::{
    self, Facility, Format, Framing, MAX_APP_NAME, MAX_HOSTNAME, MAX_TAG_3164, SeverityMap,
};
use crate::config::common::{ConfigError, TlsConfig, check_tls, de_duration, invalid};
/// Transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Udp,
    Tcp,
    Tls,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Tcp => "tcp",
            Mode::Tls => "tls",
        }
    }
}

/// What a TCP/TLS batch must achieve before it is acknowledged (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    /// One connection per batch; the receiver's close proves it read everything.
    #[default]
    Close,
    /// One long-lived connection; written and flushed is enough.
    Flush,
}

/// `tls` table of a syslog sink: the usual `ca_file`/`insecure_skip_verify` plus a client
/// certificate for receivers that require one, and the name to verify.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM certificate (chain) presented to the receiver.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Name expected in the receiver's certificate; default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    pub inputs: Vec<String>,
    /// `host:port` of the receiver (`[v6addr]:port` for IPv6).
    pub address: String,
    pub mode: Mode,
    #[serde(default)]
    pub format: Format,
    /// RFC 5424 only: start MSG with the UTF-8 BOM (RFC 5424's MSG-UTF8). Off by default:
    /// MSG is then MSG-ANY, which every receiver takes and a JSON parser reads as is (a
    /// BOM in front of the JSON makes many of them fail).
    #[serde(default)]
    pub bom: bool,
    /// TCP/TLS only; default octet counting (RFC 5425's framing for TLS). Newline framing
    /// over TLS is allowed for receivers that only split on LF (the contract lists it).
    #[serde(default)]
    pub framing: Option<Framing>,
    #[serde(default = "default_facility")]
    pub facility: Facility,
    #[serde(default)]
    pub severity: SeverityMap,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME of every message; default: the event's `observer.hostname` (the Veeam
    /// server the event is about).
    #[serde(default)]
    pub hostname: Option<String>,
    /// UDP only: the largest datagram (default 2048, RFC 5426's safe size).
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// TCP/TLS only.
    #[serde(default)]
    pub confirm: Option<Confirm>,
    /// Limit for connecting (with the TLS handshake), writing a batch, and its confirmation.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// TLS only.
    #[serde(default)]
    pub tls: Option<SyslogTlsConfig>,
}

/// RFC 5426 §3.2: senders SHOULD NOT exceed 2048 bytes unless they know the receiver.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 2048;
/// RFC 5426 §3.2: every receiver accepts 480 bytes; 65507 is the largest UDP/IPv4 payload.
const UDP_MESSAGE_RANGE: std::ops::RangeInclusive<usize> = 480..=65_507;
/// Below this, many events do not fit one datagram even with their free text cut.
const SMALL_UDP_MESSAGE: usize = 2048;

fn default_facility() -> Facility {
    Facility::LOCAL0
}
fn default_app_name() -> String {
    format::SOFTWARE.to_string()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Split `host:port` (`[::1]:514` for IPv6) without resolving anything.
pub fn split_address(address: &str) -> Result<(&str, u16), String> {
    let example = "write it as host:port, e.g. \"siem.example.net:6514\" or \"[2001:db8::1]:514\"";
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{address}` has an unclosed `[`; {example}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("`{address}` has no port; {example}"))?;
        (host, port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("`{address}` has no port; {example}"))?;
        if host.contains(':') {
            return Err(format!(
                "`{address}`: IPv6 addresses need brackets; {example}"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("`{address}` has no host; {example}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(format!(
            "`{address}`: `{port}` is not a port (1-65535); {example}"
        )),
    }
}

impl SyslogSinkConfig {
    /// Every check that needs no network. `key` is e.g. "sinks.siem".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        split_address(self.address.trim()).map_err(|e| invalid(format!("{key}.address"), e))?;
        let stream = matches!(self.mode, Mode::Tcp | Mode::Tls);
        // Keys of another mode change nothing: ignored with a warning, so one block can
        // serve every mode. (`tls` without mode = "tls" stays an error: it would mean
        // clear text where TLS was meant.)
        if !stream {
            if self.framing.is_some() {
                tracing::warn!(key = %format!("{key}.framing"), "applies to mode = \"tcp\" and \"tls\" only (UDP sends one message per datagram); ignored");
            }
            if self.confirm.is_some() {
                tracing::warn!(key = %format!("{key}.confirm"), "applies to mode = \"tcp\" and \"tls\" only (UDP has no acknowledgement); ignored");
            }
        }
        if let Some(max) = self.max_message_bytes {
            if stream {
                tracing::warn!(key = %format!("{key}.max_message_bytes"), "applies to mode = \"udp\" only (TCP and TLS send whole messages); ignored");
            } else if !UDP_MESSAGE_RANGE.contains(&max) {
                return Err(invalid(
                    format!("{key}.max_message_bytes"),
                    format!(
                        "must be between {} and {} (got {max}); 2048 is safe for any receiver",
                        UDP_MESSAGE_RANGE.start(),
                        UDP_MESSAGE_RANGE.end()
                    ),
                ));
            } else if max < SMALL_UDP_MESSAGE {
                tracing::warn!(key = %format!("{key}.max_message_bytes"), max, "below {SMALL_UDP_MESSAGE} bytes many events do not fit one datagram even with their free text cut (their other fields alone take 1.2-1.9 kB); those go to the dead-letter file in the state directory, not to the receiver. A receiver limited to 1024 bytes should be sent to over mode = \"tcp\"");
            }
        }
        // RFC 3164 §4.1.3: the TAG is at most 32 characters; RFC 5424's APP-NAME 48.
        let (max_app_name, rfc) = match self.format {
            Format::Rfc3164 => (MAX_TAG_3164, "RFC 3164"),
            _ => (MAX_APP_NAME, "RFC 5424"),
        };
        if !format::is_header_value(&self.app_name, max_app_name) {
            return Err(invalid(
                format!("{key}.app_name"),
                format!(
                    "must be 1 to {max_app_name} printable ASCII characters without spaces ({rfc})"
                ),
            ));
        }
        if let Some(h) = &self.hostname
            && !format::is_header_value(h, MAX_HOSTNAME)
        {
            return Err(invalid(
                format!("{key}.hostname"),
                format!(
                    "must be 1 to {MAX_HOSTNAME} printable ASCII characters without spaces (RFC 5424); remove it to use each event's observer.hostname"
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                format!("{key}.timeout"),
                "must be greater than zero",
            ));
        }
        match (&self.tls, self.mode) {
            (Some(_), Mode::Udp | Mode::Tcp) => {
                return Err(invalid(
                    format!("{key}.tls"),
                    "applies to mode = \"tls\" only; remove it or set mode = \"tls\"",
                ));
            }
            (Some(tls), Mode::Tls) => {
                check_tls(&format!("{key}.tls"), &base_tls(tls))?;
                match (&tls.client_cert_file, &tls.client_key_file) {
                    (Some(_), None) => {
                        return Err(invalid(
                            format!("{key}.tls.client_key_file"),
                            "missing: a client certificate needs its private key",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(invalid(
                            format!("{key}.tls.client_cert_file"),
                            "missing: a client key needs its certificate",
                        ));
                    }
                    _ => {}
                }
                for (name, file) in [
                    ("client_cert_file", &tls.client_cert_file),
                    ("client_key_file", &tls.client_key_file),
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
            }
            (None, _) => {}
        }
        Ok(())
    }
}

pub(super) fn base_tls(tls: &SyslogTlsConfig) -> TlsConfig {
    TlsConfig {
        ca_file: tls.ca_file.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
    }
}
