//! The syslog sink itself: connections per the `confirm` rule, encoding each batch, and
//! when a batch counts as delivered (see the module docs of `sinks::syslog`).

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio::net::UdpSocket;

use super::config::*;
use super::conn::{ConnError, Stream, Target, TlsTarget, peer_closed};
use super::format::{self, Encoder, Fit, Framing, MAX_SEQUENCE_ID};
use crate::http::{ClientCertFiles, rustls_client_config};
use crate::sinks::dead_letters::DeadLetters;
use crate::sinks::{Batch, Sink, SinkError};

/// Close confirmations that timed out in a row, with none ever confirmed, before the sink
/// says that the receiver may be one that keeps connections open (see `confirm_close`).
const NEVER_CLOSED_HINT_AFTER: u32 = 3;

/// The syslog sink. See the module docs for what an acknowledgement means per mode.
pub struct SyslogSink {
    target: Target,
    framing: Framing,
    confirm: Confirm,
    /// A batch was confirmed by the receiver's close since the sink started.
    closed_once: bool,
    /// Close confirmations that failed in a row.
    close_failures: u32,
    max_message_bytes: usize,
    encoder: Encoder,
    /// The long-lived connection (`confirm = "flush"`).
    stream: Option<Box<dyn Stream>>,
    udp: Option<UdpSocket>,
    next_sequence_id: u32,
    /// The framed batch (TCP/TLS) or one datagram (UDP).
    buf: Vec<u8>,
    msg: Vec<u8>,
    /// UDP messages whose free text was cut.
    truncated_total: u64,
    /// Where a UDP event that cannot fit a datagram at all is kept.
    dead_letters: DeadLetters,
}

/// Why a UDP event went to the dead-letter file.
#[derive(serde::Serialize)]
struct TooLarge {
    reason: &'static str,
    bytes: usize,
    max_message_bytes: usize,
}

impl SyslogSink {
    /// Build from a validated config; TLS files are read here (errors are fatal). UDP
    /// events that cannot fit a datagram go to `<state_dir>/<id>.deadletter.ndjson`.
    pub fn new(id: &str, c: &SyslogSinkConfig, state_dir: &Path) -> Result<Self, SinkError> {
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
            closed_once: false,
            close_failures: 0,
            max_message_bytes: c.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            encoder: Encoder {
                format: c.format,
                bom: c.bom,
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
            dead_letters: DeadLetters::new(id, state_dir),
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
            format::frame(&self.msg, self.framing, &mut self.buf);
        }
        match self.confirm {
            Confirm::Close => {
                let mut stream = self.target.connect().await.map_err(sink_error)?;
                self.target
                    .write(&mut *stream, &self.buf)
                    .await
                    .map_err(sink_error)?;
                self.confirm_close(stream).await
            }
            Confirm::Flush => {
                if self.stream.is_some() {
                    // Let the I/O driver take in a close that arrived (see `peer_closed`).
                    tokio::task::yield_now().await;
                }
                let kept = self.stream.take().and_then(|mut s| {
                    if peer_closed(&mut *s) {
                        // What was written on it since the receiver last read is gone, and
                        // flush can't tell how much: say so where an operator looks.
                        tracing::warn!(sink_id = %self.target.sink_id, address = %self.target.address, "the receiver closed the connection; reconnecting. With confirm = \"flush\", batches written on it that the receiver had not read yet are lost; confirm = \"close\" re-sends them");
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

    /// Close confirmation of what was written on `stream`: only the receiver's close
    /// confirms a batch. A receiver that keeps the connection open cannot be told from one
    /// that stopped reading (overloaded, stuck), and counting the batch as delivered then
    /// would lose it when that receiver restarts; so the batch fails and is sent again,
    /// and a receiver that never closed any connection, but held them open, gets a hint
    /// about `flush`.
    async fn confirm_close(&mut self, stream: Box<dyn Stream>) -> Result<(), SinkError> {
        match self.target.confirm_close(stream).await {
            Ok(()) => {
                self.closed_once = true;
                self.close_failures = 0;
                Ok(())
            }
            // Only a receiver that held the connection open counts: one that refused the
            // batch (a TLS alert for a missing client certificate, a reset) is no case
            // for `flush`, which would then lose batches.
            Err(e) => {
                self.close_failures = if e.held_open {
                    self.close_failures.saturating_add(1)
                } else {
                    0
                };
                if !self.closed_once && self.close_failures == NEVER_CLOSED_HINT_AFTER {
                    tracing::error!(
                        sink_id = %self.target.sink_id,
                        address = %self.target.address,
                        "the receiver has not closed any connection after veeam-siem's end of stream, so no batch is confirmed (each is sent again). If it is overloaded or stuck, nothing is lost and delivery resumes when it reads again. If it is a receiver that keeps connections open, set sinks.{}.confirm = \"flush\" (batches it has not read when it restarts are then lost)",
                        self.target.sink_id
                    );
                }
                Err(sink_error(e))
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
            match format::fit(&e.event, &e.json, self.buf.len(), self.max_message_bytes) {
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
                    // Evidence is kept: the event goes to the dead-letter file (fsynced
                    // before the batch counts as delivered), not to the receiver.
                    let why = TooLarge {
                        reason: "does not fit one UDP datagram of max_message_bytes, even with its free text cut",
                        bytes: needed,
                        max_message_bytes: self.max_message_bytes,
                    };
                    self.dead_letters
                        .quarantine_for_batch(&why, &e.json)
                        .await?;
                    tracing::error!(
                        sink_id = %self.target.sink_id,
                        address = %self.target.address,
                        event_id = %e.event.event.id,
                        needed,
                        max_message_bytes = self.max_message_bytes,
                        path = %self.dead_letters.path().display(),
                        quarantined_total = self.dead_letters.count(),
                        "event too large for one UDP datagram even with its free text cut: written to the dead-letter file instead; raise max_message_bytes or use mode = \"tcp\""
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
                        Confirm::Close => self.confirm_close(stream).await?,
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
    use crate::config::ConfigError;
    use crate::sinks::EncodedEvent;
    use crate::sinks::syslog::format::{Facility, Format, MAX_SEQUENCE_ID, SeverityMap};
    use std::path::Path;
    use std::time::Duration;

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
        let sink = SyslogSink::new("siem", s, Path::new("/nonexistent")).unwrap();
        assert!(sink.target.tls.is_some());
    }

    /// One block for every mode: keys of another mode are ignored (with a warning); only
    /// `tls` without mode = "tls" is refused (clear text where TLS was meant).
    #[test]
    fn keys_of_another_mode_are_ignored() {
        for sink in [
            "address = \"h:514\"\nmode = \"udp\"\nframing = \"newline\"\nconfirm = \"close\"",
            "address = \"h:514\"\nmode = \"tcp\"\nmax_message_bytes = 4096",
        ] {
            parse(sink).unwrap_or_else(|e| panic!("{sink}: {e}"));
        }
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
            ("address = \"h:514\"", "sinks.siem.mode", "missing"),
            (
                "address = \"h:514\"\nmode = \"udp\"\nmax_message_bytes = 100",
                "sinks.siem.max_message_bytes",
                "between",
            ),
            (
                "address = \"h:514\"\nmode = \"tcp\"\ntls = { insecure_skip_verify = true }",
                "sinks.siem.tls",
                "mode = \"tls\"",
            ),
            (
                "address = \"h:514\"\nmode = \"udp\"\nformat = \"rfc3164\"\napp_name = \"veeam-siem-backup-audit-shipper-eu1\"",
                "sinks.siem.app_name",
                "RFC 3164",
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
        let mut text = include_str!("../../../examples/syslog-tls.toml").to_string();
        for path in [
            "/etc/ssl/siem/ca.pem",
            "/etc/ssl/siem/veeam-siem-cert.pem",
            "/etc/ssl/siem/veeam-siem-key.pem",
            "/tmp/veeam-sim-ca.pem",
        ] {
            let local = dir.path().join(Path::new(path).file_name().unwrap());
            // A CA file must hold a certificate when the config is loaded.
            std::fs::write(
                &local,
                include_str!("../../../tests/fixtures/keys/test-only-ca.pem"),
            )
            .unwrap();
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
        let mut sink = SyslogSink::new("siem", syslog(&c), Path::new("/nonexistent")).unwrap();
        sink.next_sequence_id = MAX_SEQUENCE_ID;
        assert_eq!(sink.sequence_id(), MAX_SEQUENCE_ID);
        assert_eq!(sink.sequence_id(), 1);
    }

    // Delivery rules against in-process receivers (rsyslog itself: tests/it/syslog_rsyslog.rs).

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
        (
            SyslogSink::new("siem", syslog(&c), Path::new("/nonexistent")).unwrap(),
            listener,
        )
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

    /// An event that cannot fit one datagram even with its free text cut is kept in the
    /// dead-letter file (fsynced before the batch counts), never dropped; when that file
    /// cannot be written, the batch fails and is sent again.
    #[tokio::test]
    async fn udp_events_that_cannot_fit_go_to_the_dead_letter_file() {
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = receiver.local_addr().unwrap().port();
        let state = tempfile::tempdir().unwrap();
        let c = parse(&format!("address = \"127.0.0.1:{port}\"\nmode = \"udp\"")).unwrap();
        let mut sink = SyslogSink::new("siem", syslog(&c), state.path()).unwrap();
        sink.max_message_bytes = 120; // below any event's fields, past what validation allows
        sink.deliver(&batch(3)).await.unwrap();
        let lines = std::fs::read_to_string(state.path().join("siem.deadletter.ndjson")).unwrap();
        let lines: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["sink_id"], "siem");
            assert_eq!(l["max_message_bytes"], 120);
            assert!(l["bytes"].as_u64().unwrap() > 120, "{l}");
            assert_eq!(l["event"]["message"], format!("event {i}"));
        }
        let mut buf = [0u8; 64];
        assert!(
            receiver.try_recv(&mut buf).is_err(),
            "nothing was sent to the receiver"
        );

        let mut sink = SyslogSink::new("siem", syslog(&c), state.path()).unwrap();
        sink.max_message_bytes = 120;
        sink.dead_letters = DeadLetters::at("siem", "/dev/full".into());
        let err = sink.deliver(&batch(1)).await.unwrap_err();
        assert!(
            matches!(&err, SinkError::Retryable(m) if m.contains("dead-letter")),
            "{err:?}"
        );
    }

    /// The default `close` confirms a batch only by the receiver's close. A receiver that
    /// stops reading (overloaded, frozen) and one that reads but keeps the connection open
    /// look the same from here, so neither confirms anything: every batch fails (and is
    /// sent again); nothing counts as delivered that the receiver may not have read.
    #[tokio::test]
    async fn only_a_close_confirms_a_batch_by_default() {
        for reads in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let c = parse(&format!("address = \"127.0.0.1:{port}\"\nmode = \"tcp\"")).unwrap();
            let mut sink = SyslogSink::new("siem", syslog(&c), Path::new("/nonexistent")).unwrap();
            assert_eq!(sink.confirm, Confirm::Close);
            sink.target.timeout = Duration::from_millis(300);
            let receiver = tokio::spawn(async move {
                let mut kept = Vec::new();
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    if reads {
                        let mut all = Vec::new();
                        s.read_to_end(&mut all).await.unwrap();
                    }
                    kept.push(s);
                }
            });
            for attempt in 0..4 {
                assert!(
                    sink.deliver(&batch(3)).await.is_err(),
                    "reads {reads}, attempt {attempt}: not confirmed"
                );
            }
            assert_eq!(sink.confirm, Confirm::Close, "never moves to flush");
            receiver.abort();
        }
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
