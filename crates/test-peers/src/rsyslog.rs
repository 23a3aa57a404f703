//! A private rsyslogd for the syslog sink's tests, and a strict RFC 5424 parser for what it
//! received.
//!
//! [`Rsyslog::start`] writes its own config, pid file and work directory into a temp
//! directory, listens on a free loopback port (UDP, TCP, or TLS with the `gtls` driver) and
//! writes every received message twice: `raw.log` holds the message exactly as it came off
//! the wire (`%rawmsg%`, control-character escaping off), `fields.log` holds rsyslog's own
//! parse of it (one JSON object per message). The process is terminated on drop. It never
//! touches the system's rsyslog (no `/etc`, no `/var`, no `/dev/log`).
//!
//! rsyslogd must be installed (`apt-get install -y rsyslog rsyslog-gnutls`;
//! `scripts/test-all.sh` does). A test calls [`require_rsyslogd`] first: without rsyslogd
//! (or, for TLS, its `gtls` driver) the test is skipped with that message, or fails when
//! `VEEAM_SIEM_REQUIRE_PEERS=1` (see [`crate::tools`]).

use std::fmt::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{find_tool, free_port, require, require_tool};

/// What the private rsyslogd listens for.
#[derive(Debug, Clone)]
pub enum Listen {
    Udp,
    Tcp,
    /// TLS (RFC 5425) with the server certificate and key (PEM files); with `client_ca`,
    /// clients must present a certificate signed by it (`x509/certvalid`).
    Tls {
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    },
}

pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    listen: Listen,
    child: Option<Child>,
    /// How many times it was started (each start appends to the same logs).
    pub starts: u32,
}

/// For a test that needs rsyslogd (and, with `tls`, its `gtls` network stream driver from
/// the rsyslog-gnutls package): `true` when they are installed; else the skip of
/// [`crate::tools::require`] and `false` (or its panic when peers are required).
#[must_use]
pub fn require_rsyslogd(tls: bool) -> bool {
    if require_tool("rsyslogd").is_none() {
        return false;
    }
    !tls || require(
        gtls_driver(),
        "rsyslog's gtls driver (package rsyslog-gnutls) not found",
    )
    .is_some()
}

/// The `gtls` driver module (`lmnsd_gtls.so`) in rsyslog's module directory, if installed.
fn gtls_driver() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/rsyslog")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("rsyslog")));
    }
    dirs.into_iter()
        .map(|d| d.join("lmnsd_gtls.so"))
        .find(|p| p.is_file())
}

/// The rsyslogd binary, or a panic that says how to install it.
fn rsyslogd() -> PathBuf {
    find_tool("rsyslogd").unwrap_or_else(|| {
        panic!(
            "rsyslogd is not installed, and the syslog sink is tested against a real rsyslog: \
             install it with `apt-get install -y rsyslog rsyslog-gnutls` (scripts/test-all.sh does)"
        )
    })
}

impl Rsyslog {
    /// Start rsyslogd in `dir` (created if needed) and wait until it accepts messages.
    pub fn start(dir: &Path, listen: Listen) -> Rsyslog {
        std::fs::create_dir_all(dir.join("work")).expect("create rsyslog work dir");
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            port: free_port(),
            listen,
            child: None,
            starts: 0,
        };
        r.write_config();
        r.spawn();
        r
    }

    pub fn raw_log(&self) -> PathBuf {
        self.dir.join("raw.log")
    }

    pub fn fields_log(&self) -> PathBuf {
        self.dir.join("fields.log")
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let mut global = format!(
            "global(workDirectory=\"{d}/work\" maxMessageSize=\"1m\" \
             parser.escapeControlCharactersOnReceive=\"off\""
        );
        let input = match &self.listen {
            Listen::Udp => format!(
                "module(load=\"imudp\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"received\" rcvbufSize=\"4m\")\n",
                self.port
            ),
            Listen::Tcp => format!(
                "module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"received\")\n",
                self.port
            ),
            Listen::Tls {
                cert,
                key,
                client_ca,
            } => {
                let auth = if let Some(ca) = client_ca {
                    write!(global, " defaultNetstreamDriverCAFile=\"{}\"", ca.display()).ok();
                    "x509/certvalid"
                } else {
                    "anon"
                };
                write!(
                    global,
                    " defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                    cert.display(),
                    key.display()
                )
                .ok();
                format!(
                    "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"{auth}\")\n\
                     input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"received\")\n",
                    self.port
                )
            }
        };
        global.push_str(")\n");
        let config = format!(
            r#"{global}
main_queue(queue.timeoutShutdown="20000")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="received") {{
  action(type="omfile" file="{d}/raw.log" template="raw")
  action(type="omfile" file="{d}/fields.log" template="fields")
}}
{input}"#
        );
        std::fs::write(self.dir.join("rsyslog.conf"), config).expect("write rsyslog.conf");
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .expect("open rsyslogd.stderr");
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rsyslogd: {e}"));
        self.child = Some(child);
        self.starts += 1;
        self.wait_ready();
    }

    fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default();
        format!(
            "--- rsyslog.conf\n{}\n--- rsyslogd stderr\n{stderr}\n(TLS needs the rsyslog-gnutls package)",
            std::fs::read_to_string(self.dir.join("rsyslog.conf")).unwrap_or_default()
        )
    }

    /// TCP/TLS: the port accepts connections. UDP: a probe message shows up in raw.log.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = format!("<14>1 - - rsyslog-probe - - - ready {}", self.starts);
        let udp = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "rsyslogd exited at startup ({status})\n{}",
                    self.diagnostics()
                );
            }
            let ready = match self.listen {
                Listen::Udp => {
                    let _ = udp.send_to(probe.as_bytes(), ("127.0.0.1", self.port));
                    std::thread::sleep(Duration::from_millis(50));
                    std::fs::read_to_string(self.raw_log()).is_ok_and(|t| t.contains(&probe))
                }
                Listen::Tcp | Listen::Tls { .. } => TcpStream::connect_timeout(
                    &([127, 0, 0, 1], self.port).into(),
                    Duration::from_secs(1),
                )
                .is_ok(),
            };
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslogd did not become ready on port {} within 20 s\n{}",
                    self.port,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (rsyslog drains its queues and closes its files), then wait for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("rsyslogd did not stop within 30 s of SIGTERM");
                }
            }
        }
    }

    /// Start again on the same port with the same files.
    pub fn restart_after_stop(&mut self) {
        assert!(self.child.is_none(), "stop() first");
        self.spawn();
    }

    /// Lines of raw.log without the readiness probes.
    pub fn raw_messages(&self) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(self.raw_log()).unwrap_or_default();
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| !l.windows(13).any(|w| w == b"rsyslog-probe"))
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// rsyslog's parse of each message, in the same order as [`Self::raw_messages`].
    pub fn parsed_fields(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.fields_log()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.contains("rsyslog-probe"))
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("fields.log: not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Wait (bounded) until raw.log holds at least `n` messages; returns how many it holds.
    pub fn wait_for_messages(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let have = self.raw_messages().len();
            if have >= n || Instant::now() > deadline {
                return have;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One RFC 5424 message, parsed strictly.
#[derive(Debug, Clone)]
pub struct Message5424 {
    pub pri: u8,
    pub version: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// STRUCTURED-DATA as sent (escapes intact).
    pub sd_raw: String,
    /// SD-ID → params (unescaped), in order.
    pub sd: Vec<(String, Vec<(String, String)>)>,
    /// MSG bytes (BOM included when sent).
    pub msg: Vec<u8>,
}

fn header_field<'a>(
    rest: &mut &'a [u8],
    name: &str,
    max: usize,
    last: bool,
) -> Result<&'a str, String> {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let field = &rest[..end];
    if field.is_empty() || field.len() > max {
        return Err(format!("{name}: length {} not in 1..={max}", field.len()));
    }
    if !field.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!("{name}: not printable US-ASCII: {field:?}"));
    }
    if end == rest.len() && !last {
        return Err(format!("{name}: message ends after it"));
    }
    let s = std::str::from_utf8(field).map_err(|e| format!("{name}: {e}"))?;
    *rest = &rest[(end + 1).min(rest.len())..];
    Ok(s)
}

fn is_sd_name_byte(b: u8) -> bool {
    (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"' | b' ')
}

/// Parse per RFC 5424 §6 (ABNF), rejecting anything it does not allow.
pub fn parse_5424(raw: &[u8]) -> Result<Message5424, String> {
    let rest = raw
        .strip_prefix(b"<")
        .ok_or("PRI: does not start with `<`")?;
    let close = rest.iter().position(|&b| b == b'>').ok_or("PRI: no `>`")?;
    let pri_text = std::str::from_utf8(&rest[..close]).map_err(|e| e.to_string())?;
    if pri_text.is_empty()
        || pri_text.len() > 3
        || !pri_text.bytes().all(|b| b.is_ascii_digit())
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!(
            "PRI: `{pri_text}` is not 1-3 digits without leading zeros"
        ));
    }
    let pri: u16 = pri_text.parse().map_err(|e| format!("PRI: {e}"))?;
    if pri > 191 {
        return Err(format!("PRI: {pri} > 191"));
    }
    let mut rest = &rest[close + 1..];
    let version = header_field(&mut rest, "VERSION", 2, false)?;
    if version != "1" {
        return Err(format!("VERSION: `{version}`, expected 1"));
    }
    let timestamp = header_field(&mut rest, "TIMESTAMP", 32, false)?.to_string();
    if timestamp != "-" {
        check_timestamp(&timestamp)?;
    }
    let hostname = header_field(&mut rest, "HOSTNAME", 255, false)?.to_string();
    let app_name = header_field(&mut rest, "APP-NAME", 48, false)?.to_string();
    let procid = header_field(&mut rest, "PROCID", 128, false)?.to_string();
    let msgid = header_field(&mut rest, "MSGID", 32, false)?.to_string();

    // STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
    let mut sd = Vec::new();
    let sd_start = rest;
    if let Some(after) = rest.strip_prefix(b"-") {
        rest = after;
    } else {
        while let Some(after) = rest.strip_prefix(b"[") {
            rest = after;
            let n = rest.iter().take_while(|&&b| is_sd_name_byte(b)).count();
            if n == 0 || n > 32 {
                return Err(format!("SD-ID: length {n} not in 1..=32"));
            }
            let id = String::from_utf8(rest[..n].to_vec()).map_err(|e| e.to_string())?;
            rest = &rest[n..];
            let mut params = Vec::new();
            loop {
                if let Some(after) = rest.strip_prefix(b"]") {
                    rest = after;
                    break;
                }
                rest = rest
                    .strip_prefix(b" ")
                    .ok_or_else(|| format!("SD-ELEMENT {id}: expected SP or `]`"))?;
                let n = rest.iter().take_while(|&&b| is_sd_name_byte(b)).count();
                if n == 0 || n > 32 {
                    return Err(format!("{id}: PARAM-NAME length {n} not in 1..=32"));
                }
                let name = String::from_utf8(rest[..n].to_vec()).map_err(|e| e.to_string())?;
                rest = rest[n..]
                    .strip_prefix(b"=\"")
                    .ok_or_else(|| format!("{id}.{name}: expected `=\"`"))?;
                let mut value = Vec::new();
                loop {
                    match rest.split_first() {
                        None => return Err(format!("{id}.{name}: unterminated value")),
                        Some((b'\\', tail)) => match tail.split_first() {
                            Some((&c @ (b'"' | b'\\' | b']'), t)) => {
                                value.push(c);
                                rest = t;
                            }
                            _ => {
                                value.push(b'\\');
                                rest = tail;
                            }
                        },
                        Some((b'"', tail)) => {
                            rest = tail;
                            break;
                        }
                        Some((b']', _)) => {
                            return Err(format!("{id}.{name}: unescaped `]` in PARAM-VALUE"));
                        }
                        Some((&c, tail)) => {
                            value.push(c);
                            rest = tail;
                        }
                    }
                }
                let value = String::from_utf8(value).map_err(|e| format!("{id}.{name}: {e}"))?;
                params.push((name, value));
            }
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("STRUCTURED-DATA: neither `-` nor `[`".to_string());
        }
    }
    let sd_raw = String::from_utf8(sd_start[..sd_start.len() - rest.len()].to_vec())
        .map_err(|e| e.to_string())?;
    let msg = if rest.is_empty() {
        Vec::new()
    } else {
        rest.strip_prefix(b" ")
            .ok_or("expected SP before MSG")?
            .to_vec()
    };
    Ok(Message5424 {
        pri: pri as u8,
        version: 1,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd_raw,
        sd,
        msg,
    })
}

/// RFC 5424 TIMESTAMP as this project promises it: `YYYY-MM-DDThh:mm:ss[.1-6 digits]Z`.
fn check_timestamp(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b.ends_with(b"Z");
    if !shape {
        return Err(format!("TIMESTAMP `{t}` is not RFC 3339 UTC (…Z)"));
    }
    let frac = &t[19..t.len() - 1];
    if !frac.is_empty() {
        let f = frac
            .strip_prefix('.')
            .ok_or_else(|| format!("TIMESTAMP `{t}`: bad fraction"))?;
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("TIMESTAMP `{t}`: 1 to 6 fractional digits allowed"));
        }
    }
    chrono::DateTime::parse_from_rfc3339(t).map_err(|e| format!("TIMESTAMP `{t}`: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parser_accepts_rfc_examples_and_rejects_errors() {
        let m = parse_5424(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Appl\\]ication\"] \xEF\xBB\xBFAn application event",
        )
        .unwrap();
        assert_eq!(m.pri, 165);
        assert_eq!(m.sd[0].1[1].1, "Appl]ication");
        for bad in [
            &b"<192>1 - - - - - -"[..],
            b"<13>2 - - - - - -",
            b"<013>1 - - - - - -",
            b"<13>1 2003-10-11T22:14:15.0000003Z - - - - -",
            b"<13>1 2003-10-11T22:14:15 - - - - -",
            b"<13>1 - - - - - [a b=\"c]\"]",
            b"<13>1 - - - - - [a b=\"c\"",
            b"<13>1 - host\x01 - - - -",
        ] {
            assert!(parse_5424(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
