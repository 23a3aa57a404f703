//! `type = "syslog"`: RFC 5424 (or RFC 3164) messages over UDP, TCP or TLS (RFC 5425),
//! one message per event with the JSON event as MSG.
//!
//! Owns: the sink's config and its validation, and the delivery rule, i.e. *when a batch
//! counts as delivered*:
//! - TCP/TLS with `confirm = "close"` (default): each batch goes on its own connection;
//!   after writing it we close our sending side and wait for the receiver to close its
//!   side. A receiver sees our end of stream only after reading every byte before it, so
//!   the batch is acknowledged once the receiver has provably read all of it. A receiver
//!   that dies with unread data resets the connection instead: the batch is sent again.
//! - TCP/TLS with `confirm = "flush"`: one long-lived connection; a batch is acknowledged
//!   once it is written and flushed on a connection the receiver had not closed. Bytes the
//!   receiver had not read yet when it restarts are lost.
//! - UDP: best effort. Each message is one datagram of at most `max_message_bytes`
//!   (oversized events have free text cut, see [`syslog_format::fit`]); a batch is
//!   acknowledged once every datagram was handed to the OS. Nothing tells us whether it
//!   arrived.
//!
//! Any failure drops the connection and returns [`SinkError::Retryable`] (except a receiver
//! certificate the configured CA rejects: [`SinkError::Fatal`]): the pipeline retries the
//! same batch with exponential backoff and we reconnect, so with `close` a receiver outage
//! or restart costs duplicates (same `event.id`), never loss.
//!
//! Must not: format messages (that is [`syslog_format`]), open connections or sockets
//! (that is [`syslog_conn`]), or acknowledge anything before the rule above holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::UdpSocket;

use super::syslog_conn::{ConnError, Stream, Target, TlsTarget, peer_closed};
use super::syslog_format::{
    self, Encoder, Facility, Fit, Format, Framing, MAX_APP_NAME, MAX_HOSTNAME, MAX_SEQUENCE_ID,
    SeverityMap,
};
use super::{Batch, Sink, SinkError};
use crate::config::{ConfigError, TlsConfig, check_tls, de_duration, invalid};
use crate::http::{ClientCertFiles, rustls_client_config};

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
    /// TCP/TLS only; default octet counting (the only framing TLS allows).
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

fn default_facility() -> Facility {
    Facility::LOCAL0
}
fn default_app_name() -> String {
    syslog_format::SOFTWARE.to_string()
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
        if !stream {
            if self.framing.is_some() {
                return Err(invalid(
                    format!("{key}.framing"),
                    "applies to mode = \"tcp\" and \"tls\" only (UDP sends one message per datagram); remove it",
                ));
            }
            if self.confirm.is_some() {
                return Err(invalid(
                    format!("{key}.confirm"),
                    "applies to mode = \"tcp\" and \"tls\" only (UDP has no acknowledgement); remove it",
                ));
            }
        }
        if self.mode == Mode::Tls && self.framing == Some(Framing::Newline) {
            return Err(invalid(
                format!("{key}.framing"),
                "syslog over TLS requires octet counting (RFC 5425); use framing = \"octet-counting\" or remove the key",
            ));
        }
        if let Some(max) = self.max_message_bytes {
            if stream {
                return Err(invalid(
                    format!("{key}.max_message_bytes"),
                    "applies to mode = \"udp\" only (TCP and TLS send whole messages); remove it",
                ));
            }
            if !UDP_MESSAGE_RANGE.contains(&max) {
                return Err(invalid(
                    format!("{key}.max_message_bytes"),
                    format!(
                        "must be between {} and {} (got {max}); 2048 is safe for any receiver",
                        UDP_MESSAGE_RANGE.start(),
                        UDP_MESSAGE_RANGE.end()
                    ),
                ));
            }
        }
        if !syslog_format::is_header_value(&self.app_name, MAX_APP_NAME) {
            return Err(invalid(
                format!("{key}.app_name"),
                format!(
                    "must be 1 to {MAX_APP_NAME} printable ASCII characters without spaces (RFC 5424)"
                ),
            ));
        }
        if let Some(h) = &self.hostname
            && !syslog_format::is_header_value(h, MAX_HOSTNAME)
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

fn base_tls(tls: &SyslogTlsConfig) -> TlsConfig {
    TlsConfig {
        ca_file: tls.ca_file.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
    }
}

/// The syslog sink. See the module docs for what an acknowledgement means per mode.
pub struct SyslogSink {
    target: Target,
    framing: Framing,
    confirm: Confirm,
    max_message_bytes: usize,
    encoder: Encoder,
    /// The long-lived connection (`confirm = "flush"`).
    stream: Option<Box<dyn Stream>>,
    udp: Option<UdpSocket>,
    next_sequence_id: u32,
    /// The framed batch (TCP/TLS) or one datagram (UDP).
    buf: Vec<u8>,
    msg: Vec<u8>,
    /// UDP messages whose free text was cut / that could not fit at all.
    truncated_total: u64,
    dropped_total: u64,
}

impl SyslogSink {
    /// Build from a validated config; TLS files are read here (errors are fatal).
    pub fn new(id: &str, c: &SyslogSinkConfig) -> Result<Self, SinkError> {
        let address = c.address.trim().to_string();
        let fatal = |m: String| SinkError::Fatal(format!("sink `{id}`: {m}"));
        let (host, _) = split_address(&address).map_err(|e| fatal(format!("address: {e}")))?;
        let tls = if c.mode == Mode::Tls {
            let t = c.tls.clone().unwrap_or_default();
            let key = format!("sinks.{id}.tls");
            let client = match (&t.client_cert_file, &t.client_key_file) {
                (Some(cert_file), Some(key_file)) => Some(ClientCertFiles {
                    cert_file,
                    key_file,
                }),
                _ => None,
            };
            let config = rustls_client_config(&key, &base_tls(&t), client)
                .map_err(|e| fatal(e.to_string()))?;
            if t.insecure_skip_verify {
                tracing::warn!(sink_id = id, address = %address, "tls.insecure_skip_verify is set: the receiver's certificate is NOT verified");
            }
            let name = t.server_name.clone().unwrap_or_else(|| host.to_string());
            let server_name = ServerName::try_from(name.clone()).map_err(|e| {
                fatal(format!(
                    "`{name}` is not a valid TLS server name ({e}); set `tls.server_name` to the name in the receiver's certificate"
                ))
            })?;
            Some(TlsTarget {
                config: Arc::new(config),
                server_name,
            })
        } else {
            None
        };
        Ok(SyslogSink {
            target: Target {
                sink_id: id.to_string(),
                address,
                mode: c.mode,
                timeout: c.timeout,
                tls,
            },
            framing: c.framing.unwrap_or_default(),
            confirm: c.confirm.unwrap_or_default(),
            max_message_bytes: c.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            encoder: Encoder {
                format: c.format,
                facility: c.facility,
                severity: c.severity,
                app_name: c.app_name.clone(),
                hostname: c.hostname.clone(),
                sw_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            stream: None,
            udp: None,
            next_sequence_id: 1,
            buf: Vec::new(),
            msg: Vec::new(),
            truncated_total: 0,
            dropped_total: 0,
        })
    }

    fn sequence_id(&mut self) -> u32 {
        let id = self.next_sequence_id;
        self.next_sequence_id = if id >= MAX_SEQUENCE_ID { 1 } else { id + 1 };
        id
    }

    async fn deliver_stream(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.buf.clear();
        for e in &batch.events {
            let seq = self.sequence_id();
            self.msg.clear();
            self.encoder.encode(&e.event, &e.json, seq, &mut self.msg);
            syslog_format::frame(&self.msg, self.framing, &mut self.buf);
        }
        match self.confirm {
            Confirm::Close => {
                let mut stream = self.target.connect().await.map_err(sink_error)?;
                self.target
                    .write(&mut *stream, &self.buf)
                    .await
                    .map_err(sink_error)?;
                self.target.confirm_close(stream).await.map_err(sink_error)
            }
            Confirm::Flush => {
                let kept = self.stream.take().and_then(|mut s| {
                    if peer_closed(&mut *s) {
                        tracing::info!(sink_id = %self.target.sink_id, address = %self.target.address, "the receiver closed the connection; reconnecting");
                        None
                    } else {
                        Some(s)
                    }
                });
                let mut stream = match kept {
                    Some(s) => s,
                    None => self.target.connect().await.map_err(sink_error)?,
                };
                // On error the stream is dropped: the retry reconnects.
                self.target
                    .write(&mut *stream, &self.buf)
                    .await
                    .map_err(sink_error)?;
                self.stream = Some(stream);
                Ok(())
            }
        }
    }

    async fn deliver_udp(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let socket = match self.udp.take() {
            Some(s) => s,
            None => self.target.connect_udp().await.map_err(sink_error)?,
        };
        for e in &batch.events {
            let seq = self.sequence_id();
            self.buf.clear();
            self.encoder.header(&e.event, seq, &mut self.buf);
            match syslog_format::fit(&e.event, &e.json, self.buf.len(), self.max_message_bytes) {
                Fit::Whole => self.buf.extend_from_slice(e.json.as_bytes()),
                Fit::Truncated { json, fields } => {
                    self.truncated_total += 1;
                    tracing::warn!(
                        sink_id = %self.target.sink_id,
                        event_id = %e.event.event.id,
                        fields = %fields.join(","),
                        max_message_bytes = self.max_message_bytes,
                        truncated_total = self.truncated_total,
                        "event too large for one UDP datagram; free text cut (marked \"…[truncated N bytes]\")"
                    );
                    self.buf.extend_from_slice(json.as_bytes());
                }
                Fit::TooLarge { needed } => {
                    self.dropped_total += 1;
                    crate::metrics::global().dropped(&self.target.sink_id, 1);
                    tracing::error!(
                        sink_id = %self.target.sink_id,
                        address = %self.target.address,
                        event_id = %e.event.event.id,
                        needed,
                        max_message_bytes = self.max_message_bytes,
                        dropped_total = self.dropped_total,
                        "event dropped: it does not fit max_message_bytes even with its free text cut; raise max_message_bytes or use mode = \"tcp\""
                    );
                    continue;
                }
            }
            let send = tokio::time::timeout(self.target.timeout, socket.send(&self.buf));
            let failure = match send.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("sending a datagram failed: {e}")),
                Err(_) => Some(format!(
                    "sending a datagram timed out after {:?}",
                    self.target.timeout
                )),
            };
            if let Some(f) = failure {
                // The socket is dropped; the retry opens a new one (and resolves again).
                return Err(SinkError::Retryable(format!(
                    "sink `{}`: {} (udp): {f}; is the receiver up? The batch will be sent again",
                    self.target.sink_id, self.target.address
                )));
            }
        }
        self.udp = Some(socket);
        Ok(())
    }
}

fn sink_error(e: ConnError) -> SinkError {
    if e.fatal {
        SinkError::Fatal(e.message)
    } else {
        SinkError::Retryable(e.message)
    }
}

impl Sink for SyslogSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.events.is_empty() {
                return Ok(());
            }
            match self.target.mode {
                Mode::Udp => self.deliver_udp(batch).await,
                Mode::Tcp | Mode::Tls => self.deliver_stream(batch).await,
            }
        })
    }

    /// Resolve and connect (with the TLS handshake; `close` also checks that the receiver
    /// closes when we do). A receiver certificate the configured CA does not accept is
    /// fatal, here as on delivery (it needs a human); an unreachable receiver is not.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match self.target.mode {
                Mode::Udp => {
                    self.udp = Some(self.target.connect_udp().await.map_err(sink_error)?);
                }
                Mode::Tcp | Mode::Tls => {
                    let stream = self.target.connect().await.map_err(sink_error)?;
                    match self.confirm {
                        Confirm::Flush => self.stream = Some(stream),
                        Confirm::Close => self
                            .target
                            .confirm_close(stream)
                            .await
                            .map_err(sink_error)?,
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(sink: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
            [sources.vbo_main]
            type = "vbo"
            url = "https://vbo.example.net:4443"
            username = "svc"
            password = "pw"
            [sinks.siem]
            type = "syslog"
            inputs = ["vbo_main"]
            {sink}
            "#
        );
        Config::from_toml(&text, Path::new("test.toml"), &|_| None)
    }

    fn syslog(c: &Config) -> &SyslogSinkConfig {
        match &c.sinks["siem"] {
            crate::config::SinkConfig::Syslog(s) => s,
            _ => panic!("not syslog"),
        }
    }

    fn err(sink: &str) -> String {
        parse(sink).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = parse("address = \"siem.example.net:514\"\nmode = \"tcp\"").unwrap();
        let s = syslog(&c);
        assert_eq!(s.format, Format::Rfc5424);
        assert_eq!(s.framing.unwrap_or_default(), Framing::OctetCounting);
        assert_eq!(s.confirm.unwrap_or_default(), Confirm::Close);
        assert_eq!(s.facility, Facility::LOCAL0);
        assert_eq!(s.severity, SeverityMap::default());
        assert_eq!(s.app_name, "veeam-siem");
        assert_eq!(s.timeout, Duration::from_secs(30));
    }

    #[test]
    fn full_table_parses() {
        let c = parse(
            r#"address = "[2001:db8::1]:6514"
            mode = "tls"
            format = "rfc3164"
            facility = "auth"
            severity = { success = "notice", failure = "crit" }
            app_name = "veeam"
            hostname = "collector-1"
            confirm = "flush"
            timeout = "5s"
            tls = { insecure_skip_verify = true, server_name = "siem.example.net" }"#,
        )
        .unwrap();
        let s = syslog(&c);
        assert_eq!(s.facility.code(), 4);
        assert_eq!(s.severity.failure.code(), 2);
        assert_eq!(s.severity.unknown, SeverityMap::default().unknown);
        let sink = SyslogSink::new("siem", s).unwrap();
        assert!(sink.target.tls.is_some());
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        for (sink, key, words) in [
            (
                "address = \"siem\"\nmode = \"tcp\"",
                "sinks.siem.address",
                "no port",
            ),
            (
                "address = \"::1:514\"\nmode = \"tcp\"",
                "sinks.siem.address",
                "brackets",
            ),
            (
                "address = \"h:0\"\nmode = \"tcp\"",
                "sinks.siem.address",
                "not a port",
            ),
            ("address = \"h:514\"", "sinks.siem", "mode"),
            (
                "address = \"h:514\"\nmode = \"udp\"\nframing = \"newline\"",
                "sinks.siem.framing",
                "remove it",
            ),
            (
                "address = \"h:6514\"\nmode = \"tls\"\nframing = \"newline\"",
                "sinks.siem.framing",
                "RFC 5425",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\nmax_message_bytes = 4096",
                "sinks.siem.max_message_bytes",
                "udp",
            ),
            (
                "address = \"h:514\"\nmode = \"udp\"\nmax_message_bytes = 100",
                "sinks.siem.max_message_bytes",
                "between",
            ),
            (
                "address = \"h:514\"\nmode = \"udp\"\nconfirm = \"close\"",
                "sinks.siem.confirm",
                "remove it",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\ntls = { insecure_skip_verify = true }",
                "sinks.siem.tls",
                "mode = \"tls\"",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\napp_name = \"veeam siem\"",
                "sinks.siem.app_name",
                "printable",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\nfacility = \"local9\"",
                "sinks.siem",
                "local0",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\nseverity = { succes = \"info\" }",
                "sinks.siem",
                "succes",
            ),
            (
                "address = \"h:6514\"\nmode = \"tls\"\ntls = { client_cert_file = \"/etc/hostname\" }",
                "sinks.siem.tls.client_key_file",
                "missing",
            ),
            (
                "address = \"h:6514\"\nmode = \"tls\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }",
                "sinks.siem.tls.ca_file",
                "does not exist",
            ),
        ] {
            let e = err(sink);
            assert!(e.contains(key), "{sink}: {e}");
            assert!(e.contains(words), "{sink}: {e}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = include_str!("../../examples/syslog-tls.toml").to_string();
        for path in [
            "/etc/ssl/siem/ca.pem",
            "/etc/ssl/siem/veeam-siem-cert.pem",
            "/etc/ssl/siem/veeam-siem-key.pem",
            "/tmp/veeam-sim-ca.pem",
        ] {
            let local = dir.path().join(Path::new(path).file_name().unwrap());
            std::fs::write(&local, "").unwrap();
            text = text.replace(path, &local.display().to_string());
        }
        let c = Config::from_toml(&text, Path::new("syslog-tls.toml"), &|n| {
            (n == "SIM_PASSWORD").then(|| "pw".to_string())
        })
        .unwrap();
        let s = syslog(&c);
        assert_eq!(s.mode, Mode::Tls);
        assert!(s.tls.as_ref().unwrap().client_key_file.is_some());
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("h.example:514").unwrap(), ("h.example", 514));
        assert_eq!(split_address("[::1]:6514").unwrap(), ("::1", 6514));
        assert!(split_address("[::1]").is_err());
        assert!(split_address(":514").is_err());
        assert!(split_address("h:99999").is_err());
    }

    #[test]
    fn sequence_ids_wrap_to_one() {
        let c = parse("address = \"h:514\"\nmode = \"udp\"").unwrap();
        let mut sink = SyslogSink::new("siem", syslog(&c)).unwrap();
        sink.next_sequence_id = MAX_SEQUENCE_ID;
        assert_eq!(sink.sequence_id(), MAX_SEQUENCE_ID);
        assert_eq!(sink.sequence_id(), 1);
    }

    // Delivery rules against in-process receivers (rsyslog itself: tests/syslog_rsyslog.rs).

    use super::super::EncodedEvent;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn batch(n: usize) -> Batch {
        let events = (0..n)
            .map(|i| {
                let event: crate::event::Event = serde_json::from_value(serde_json::json!({
                    "@timestamp": "2025-03-04T08:00:00Z",
                    "ecs": {"version": "9.4.0"},
                    "message": format!("event {i}"),
                    "event": {
                        "kind": "event", "category": ["file"], "type": ["access"],
                        "action": "item-restored", "outcome": "success", "id": format!("id-{i}"),
                        "created": "2025-03-04T08:00:01Z", "dataset": "veeam.vbo_restore",
                        "module": "veeam", "provider": "vbo", "original": "r".repeat(2000)
                    },
                    "observer": {"vendor": "Veeam", "product": "VB365", "hostname": "vbo"},
                    "labels": {"source_id": "vbo_main"},
                    "veeam": {}
                }))
                .unwrap();
                let json = serde_json::to_string(&event).unwrap();
                EncodedEvent { event, json }
            })
            .collect();
        Batch {
            source_id: Arc::from("vbo_main"),
            source_index: 0,
            seq: 1,
            events,
        }
    }

    async fn tcp_sink(confirm: &str) -> (SyslogSink, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = parse(&format!(
            "address = \"127.0.0.1:{port}\"\nmode = \"tcp\"\nconfirm = \"{confirm}\"\ntimeout = \"10s\""
        ))
        .unwrap();
        (SyslogSink::new("siem", syslog(&c)).unwrap(), listener)
    }

    /// Split an octet-counted stream into messages.
    fn frames(mut bytes: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let sp = bytes.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&bytes[..sp]).unwrap().parse().unwrap();
            out.push(&bytes[sp + 1..sp + 1 + len]);
            bytes = &bytes[sp + 1 + len..];
        }
        out
    }

    #[tokio::test]
    async fn close_confirm_acknowledges_once_the_receiver_read_everything() {
        let (mut sink, listener) = tcp_sink("close").await;
        let receiver = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all
        });
        sink.deliver(&batch(40)).await.unwrap();
        let received = receiver.await.unwrap();
        let messages = frames(&received);
        assert_eq!(messages.len(), 40);
        assert!(messages[0].starts_with(b"<134>1 2025-03-04T08:00:00.000000Z vbo veeam-siem - VBO_RESTORE [meta sequenceId=\"1\"]"));
    }

    #[tokio::test]
    async fn close_confirm_fails_when_the_receiver_dies_with_unread_data() {
        let (mut sink, listener) = tcp_sink("close").await;
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut some = [0u8; 100];
            s.read_exact(&mut some).await.unwrap();
            // Dropped with ~80 KB unread: the kernel answers with a reset.
        });
        let err = sink.deliver(&batch(40)).await.unwrap_err();
        let SinkError::Retryable(message) = err else {
            panic!("expected a retryable error, got {err:?}");
        };
        assert!(
            message.contains("sink `siem`") && message.contains(&format!("127.0.0.1:{port}")),
            "{message}"
        );
    }

    /// Read `n` octet-counted messages off a stream.
    async fn read_frames(s: &mut tokio::net::TcpStream, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut len = 0usize;
            loop {
                let b = s.read_u8().await.unwrap();
                if b == b' ' {
                    break;
                }
                len = len * 10 + usize::from(b - b'0');
            }
            let mut msg = vec![0u8; len];
            s.read_exact(&mut msg).await.unwrap();
            out.push(msg);
        }
        out
    }

    #[tokio::test]
    async fn flush_confirm_keeps_one_connection_and_replaces_a_closed_one() {
        let (mut sink, listener) = tcp_sink("flush").await;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let receiver = tokio::spawn(async move {
            // First connection: two batches, then the receiver closes it.
            let (mut s, _) = listener.accept().await.unwrap();
            let first = read_frames(&mut s, 6).await;
            s.shutdown().await.unwrap();
            drop(s);
            let _ = closed_tx.send(());
            // Second connection: the third batch.
            let (mut s, _) = listener.accept().await.unwrap();
            (first, read_frames(&mut s, 3).await)
        });
        sink.deliver(&batch(3)).await.unwrap();
        sink.deliver(&batch(3)).await.unwrap();
        closed_rx.await.unwrap();
        // Let the runtime see the close (in the daemon, batches are a poll interval apart).
        tokio::time::sleep(Duration::from_millis(200)).await;
        sink.deliver(&batch(3)).await.unwrap();
        let (first, second) = tokio::time::timeout(Duration::from_secs(10), receiver)
            .await
            .expect("the third batch arrives on a new connection")
            .unwrap();
        assert_eq!(first.len() + second.len(), 9);
        assert!(
            String::from_utf8_lossy(&second[0]).contains("sequenceId=\"7\""),
            "sequence ids continue across connections"
        );
    }
}
