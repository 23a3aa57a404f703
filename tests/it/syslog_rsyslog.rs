//! End to end for the syslog sink: simulator → `veeam-siem run --once` (the real binary) →
//! a private, real rsyslogd (`veeam_siem_test_peers::rsyslog`).
//!
//! Every message rsyslog received is parsed strictly as RFC 5424 (RFC 3164 for the legacy
//! test), compared field by field with the event it carries and with rsyslog's own parse,
//! and its MSG must be a schema-valid event. Covers TCP with octet counting, TLS with a
//! client certificate, UDP with truncation, RFC 3164 with newline framing over a
//! long-lived connection, and a receiver restart in the middle of a run (nothing lost).
//!
//! Needs rsyslogd (`apt-get install -y rsyslog rsyslog-gnutls`; `scripts/test-all.sh`
//! installs it): without it each test is skipped with a message, or fails when
//! `VEEAM_SIEM_REQUIRE_PEERS=1`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::rsyslog;

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::harness;
use harness::{Env, id_counts, text};
use rsyslog::{Listen, Rsyslog, parse_5424};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// `facility` default: local0.
const LOCAL0: u64 = 16;

/// A config: the simulator's VB365 source and one syslog sink (`sink` holds its keys).
fn write_config(env: &Env, page_size: usize, keep_original: bool, sink: &str) -> PathBuf {
    let source = Table::vbo("vbo_test", &env.sim.base_url())
        .set("page_size", page_size as i64)
        .set("keep_original", keep_original)
        .tls_ca(&env.ca_file);
    env.config()
        .table(source)
        .table(Table::syslog("siem", &["vbo_test"]).raw(sink))
        .write(&env.dir.path().join("config.toml"))
}

fn command(config: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(harness::bin());
    cmd.args(["run", "--once", "--config"])
        .arg(config)
        .env("TEST_VBO_PASSWORD", harness::PASSWORD)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

/// `run --once`, killed (and the test failed) if it takes more than a minute.
async fn run_once(config: &Path) -> Output {
    let run = command(config).output();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(out) => out.expect("the binary runs"),
        Err(_) => panic!("veeam-siem run --once did not finish within 60 s"),
    }
}

fn start_rsyslog(dir: &Path, listen: Listen) -> Rsyslog {
    tokio::task::block_in_place(|| Rsyslog::start(&dir.join("rsyslog"), listen))
}

/// Wait for `n` messages, then stop rsyslog (which drains its queue and closes its files).
fn collect(rs: &mut Rsyslog, n: usize) {
    tokio::task::block_in_place(|| {
        rs.wait_for_messages(n, Duration::from_secs(20));
        rs.stop();
    });
}

fn expected_severity(event: &Value) -> u64 {
    let warning = event["veeam"]["restore_event"]["status"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("warning"));
    match event["event"]["outcome"].as_str() {
        Some("failure") => 3,
        Some("success") if warning => 4,
        Some("success") => 6,
        _ => 5,
    }
}

fn timestamp_micros(event: &Value) -> DateTime<Utc> {
    let t = event["@timestamp"].as_str().expect("@timestamp");
    DateTime::parse_from_rfc3339(t)
        .expect("@timestamp is RFC 3339")
        .with_timezone(&Utc)
        .trunc_subsecs(6)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("rsyslog field {key} missing: {v}"))
}

/// Parse and check every RFC 5424 message rsyslog received; returns the events (in order).
fn check_5424(rs: &Rsyslog) -> Vec<Value> {
    let raw = rs.raw_messages();
    let fields = rs.parsed_fields();
    assert_eq!(raw.len(), fields.len(), "raw.log and fields.log disagree");
    let mut events = Vec::new();
    let mut last_sequence = 0u64;
    for (i, (bytes, theirs)) in raw.iter().zip(&fields).enumerate() {
        let shown = String::from_utf8_lossy(bytes);
        let m = parse_5424(bytes)
            .unwrap_or_else(|e| panic!("message {i} is not strict RFC 5424 ({e}): {shown}"));
        // MSG is the JSON itself (MSG-ANY), or with `bom = true` the BOM and the JSON.
        let json = m.msg.strip_prefix(BOM).unwrap_or(&m.msg);
        let event: Value = serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("message {i}: MSG is not JSON ({e}): {shown}"));
        event_schema::assert_valid_event(&event);

        // Our header, field by field, against the event it carries.
        assert_eq!(
            u64::from(m.pri),
            LOCAL0 * 8 + expected_severity(&event),
            "PRI: {shown}"
        );
        let ts = DateTime::parse_from_rfc3339(&m.timestamp).unwrap();
        assert_eq!(ts, timestamp_micros(&event), "TIMESTAMP: {shown}");
        assert_eq!(m.hostname, event["observer"]["hostname"].as_str().unwrap());
        assert_eq!(m.app_name, "veeam-siem");
        assert_eq!(m.procid, "-");
        assert_eq!(m.msgid, "VBO_RESTORE");
        assert_eq!(m.sd.len(), 2, "SD: {}", m.sd_raw);
        let (meta, origin) = (&m.sd[0], &m.sd[1]);
        assert_eq!(meta.0, "meta");
        assert_eq!(meta.1[0].0, "sequenceId");
        let seq: u64 = meta.1[0].1.parse().expect("sequenceId is a number");
        assert!(
            (1..=2_147_483_647).contains(&seq) && seq > last_sequence,
            "sequenceId {seq} after {last_sequence}"
        );
        last_sequence = seq;
        assert_eq!(origin.0, "origin");
        assert_eq!(
            origin.1,
            vec![
                ("software".to_string(), "veeam-siem".to_string()),
                (
                    "swVersion".to_string(),
                    env!("CARGO_PKG_VERSION").to_string()
                ),
            ]
        );

        // rsyslog's own parse agrees with ours.
        assert_eq!(str_of(theirs, "version"), "1");
        assert_eq!(str_of(theirs, "pri"), m.pri.to_string());
        assert_eq!(str_of(theirs, "facility"), LOCAL0.to_string());
        assert_eq!(
            str_of(theirs, "severity"),
            expected_severity(&event).to_string()
        );
        let their_ts = DateTime::parse_from_rfc3339(str_of(theirs, "timestamp")).unwrap();
        assert_eq!(their_ts, ts, "rsyslog's timereported");
        assert_eq!(str_of(theirs, "hostname"), m.hostname);
        assert_eq!(str_of(theirs, "app_name"), m.app_name);
        assert_eq!(str_of(theirs, "procid"), m.procid);
        assert_eq!(str_of(theirs, "msgid"), m.msgid);
        assert_eq!(str_of(theirs, "sd"), m.sd_raw);
        let their_msg = str_of(theirs, "msg").as_bytes();
        assert!(
            their_msg == m.msg.as_slice() || their_msg == json,
            "rsyslog's msg differs from ours: {theirs}"
        );
        events.push(event);
    }
    events
}

fn assert_exactly_once(events: &[Value], expected: &HashSet<String>) {
    let counts = id_counts(events);
    let got: HashSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&got).take(5).collect();
    assert!(missing.is_empty(), "events never received: {missing:?}…");
    let extra: Vec<&String> = got.difference(expected).take(5).collect();
    assert!(extra.is_empty(), "unexpected events: {extra:?}");
    let dups: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
}

fn small_sim(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        sessions: 12,
        events_per_session: 15,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counting_delivers_every_event_once() {
    if !rsyslog::require_rsyslogd(false) {
        return;
    }
    let env = Env::start(small_sim(61)).await;
    let mut rs = start_rsyslog(env.dir.path(), Listen::Tcp);
    // keep_original makes messages of several KB: TCP sends them whole.
    let cfg = write_config(
        &env,
        25,
        true,
        &format!(
            "address = \"127.0.0.1:{}\"\nmode = \"tcp\"\nframing = \"octet-counting\"",
            rs.port
        ),
    );
    let out = run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    collect(&mut rs, expected.len());
    let events = check_5424(&rs);
    assert_exactly_once(&events, &expected);
    assert!(
        events.iter().all(|e| e["event"]["original"].is_string()),
        "TCP never truncates"
    );
    assert!(
        rs.raw_messages().iter().any(|m| m.len() > 2048),
        "some messages exceed UDP's 2048 bytes and still arrive whole"
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let dir = &dir.join("pki");
    std::fs::create_dir_all(dir).unwrap();
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "veeam-siem test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["veeam-siem.test".into()],
        "veeam-siem",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server-cert.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client-cert.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

/// rsyslog over TLS with the test PKI's server certificate, requiring a client
/// certificate signed by the test CA when `client_cert_required`.
fn tls_rsyslog(dir: &Path, pki: &Pki, client_cert_required: bool) -> Rsyslog {
    start_rsyslog(
        dir,
        Listen::Tls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: client_cert_required.then(|| pki.ca.clone()),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate_delivers_every_event_once() {
    if !rsyslog::require_rsyslogd(true) {
        return;
    }
    let env = Env::start(small_sim(62)).await;
    let pki = make_pki(env.dir.path());
    let mut rs = tls_rsyslog(env.dir.path(), &pki, true);
    let cfg = write_config(
        &env,
        25,
        false,
        &format!(
            "address = \"127.0.0.1:{port}\"\nmode = \"tls\"\n\
             tls = {{ ca_file = {ca:?}, client_cert_file = {cert:?}, client_key_file = {key:?} }}",
            port = rs.port,
            ca = pki.ca.display().to_string(),
            cert = pki.client_cert.display().to_string(),
            key = pki.client_key.display().to_string(),
        ),
    );
    let out = run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    collect(&mut rs, expected.len());
    assert_exactly_once(&check_5424(&rs), &expected);
}

/// A receiver that requires a client certificate refuses each batch with a TLS alert: the
/// error points at `tls.client_cert_file`, never at `confirm = "flush"` (the advice for
/// receivers that hold connections open, which would make this one lose batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_requiring_a_client_certificate_is_not_advised_flush() {
    if !rsyslog::require_rsyslogd(true) {
        return;
    }
    let env = Env::start(small_sim(64)).await;
    let pki = make_pki(env.dir.path());
    let rs = tls_rsyslog(env.dir.path(), &pki, true);
    let cfg = write_config(
        &env,
        25,
        false,
        &format!(
            "address = \"127.0.0.1:{}\"\nmode = \"tls\"\ntls = {{ ca_file = {:?} }}",
            rs.port,
            pki.ca.display().to_string()
        ),
    );
    let mut child = command(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Retries at 0, 0.4, 1.2, 2.8 and 6 s: more than the 3 failures the hint waits for.
    tokio::time::sleep(Duration::from_secs(9)).await;
    child.start_kill().ok();
    let out = child.wait_with_output().await.expect("the binary ran");
    let log = String::from_utf8_lossy(&out.stderr);
    let refused = log.matches("client certificate").count();
    assert!(refused >= 3, "each refused batch names the fix: {log}");
    assert!(
        !log.contains("has not closed any connection"),
        "a refusing receiver is not one that holds connections open: {log}"
    );
    assert!(rs.raw_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_an_unknown_certificate_authority() {
    if !rsyslog::require_rsyslogd(true) {
        return;
    }
    let env = Env::start(small_sim(63)).await;
    let pki = make_pki(env.dir.path());
    let rs = tls_rsyslog(env.dir.path(), &pki, false);
    // No ca_file: the test CA is not trusted.
    let cfg = write_config(
        &env,
        25,
        false,
        &format!("address = \"127.0.0.1:{}\"\nmode = \"tls\"", rs.port),
    );
    let out = run_once(&cfg).await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("sink `siem`")
            && all.contains(&format!("127.0.0.1:{}", rs.port))
            && all.contains("tls.ca_file"),
        "the error names the sink, the address and the fix: {all}"
    );
    assert!(rs.raw_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_truncates_oversized_events_and_keeps_json_valid() {
    if !rsyslog::require_rsyslogd(false) {
        return;
    }
    let env = Env::start(small_sim(64)).await;
    let mut rs = start_rsyslog(env.dir.path(), Listen::Udp);
    // The default max_message_bytes (2048); the simulated events are 1.2-2.1 KB before
    // keep_original adds the raw record.
    let max = 2048;
    let cfg = write_config(
        &env,
        20,
        true,
        &format!("address = \"127.0.0.1:{}\"\nmode = \"udp\"", rs.port),
    );
    let out = run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    // UDP is best effort, but loopback with a 4 MB receive buffer loses nothing here.
    collect(&mut rs, expected.len());
    for m in rs.raw_messages() {
        assert!(m.len() <= max, "datagram of {} bytes > {max}", m.len());
    }
    let events = check_5424(&rs);
    assert_exactly_once(&events, &expected);
    let truncated: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event"]["original"]
                .as_str()
                .is_some_and(|o| o.contains("…[truncated "))
        })
        .collect();
    assert!(
        !truncated.is_empty(),
        "keep_original events exceed {max} bytes and must have been truncated"
    );
    for e in truncated {
        let o = e["event"]["original"].as_str().unwrap();
        assert!(o.ends_with(" bytes]"), "marker at the end: {o}");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("free text cut"), "truncation is logged: {log}");
}

/// RFC 3164 with newline framing over one long-lived connection (`confirm = "flush"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_newline_framing_over_a_persistent_connection() {
    if !rsyslog::require_rsyslogd(false) {
        return;
    }
    let env = Env::start(small_sim(65)).await;
    let mut rs = start_rsyslog(env.dir.path(), Listen::Tcp);
    let cfg = write_config(
        &env,
        25,
        false,
        &format!(
            "address = \"127.0.0.1:{}\"\nmode = \"tcp\"\nformat = \"rfc3164\"\n\
             framing = \"newline\"\nconfirm = \"flush\"\nfacility = \"auth\"",
            rs.port
        ),
    );
    let out = run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    collect(&mut rs, expected.len());
    let raw = rs.raw_messages();
    let fields = rs.parsed_fields();
    assert_eq!(raw.len(), fields.len());
    let mut events = Vec::new();
    for (bytes, theirs) in raw.iter().zip(&fields) {
        let line = std::str::from_utf8(bytes).expect("UTF-8");
        // <PRI>Mmm dd hh:mm:ss HOST veeam-siem: {json}
        let (pri, rest) = line[1..].split_once('>').expect("PRI");
        let (ts, rest) = rest.split_at(15);
        let (host, rest) = rest[1..].split_once(' ').expect("HOSTNAME");
        let json = rest.strip_prefix("veeam-siem: ").expect("TAG");
        let event: Value = serde_json::from_str(json).expect("MSG is JSON");
        event_schema::assert_valid_event(&event);
        let pri: u64 = pri.parse().unwrap();
        assert_eq!(pri, 4 * 8 + expected_severity(&event), "{line}");
        let when = timestamp_micros(&event);
        assert_eq!(ts, when.format("%b %e %H:%M:%S").to_string(), "{line}");
        assert_eq!(host, event["observer"]["hostname"].as_str().unwrap());
        assert_eq!(str_of(theirs, "hostname"), host);
        assert_eq!(str_of(theirs, "app_name"), "veeam-siem");
        assert_eq!(str_of(theirs, "facility"), "4");
        assert_eq!(str_of(theirs, "msg").trim_start(), json);
        events.push(event);
    }
    assert_exactly_once(&events, &expected);
}

/// rsyslog is stopped (SIGTERM) and restarted on the same port in the middle of a run:
/// every event still arrives, duplicates stay within the batch in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_receiver_restart_mid_run_loses_nothing() {
    if !rsyslog::require_rsyslogd(false) {
        return;
    }
    let env = Env::start(SimConfig {
        seed: 66,
        sessions: 40,
        events_per_session: 40,
        // Slow pages keep the run going long enough to restart the receiver within it.
        latency: Duration::from_millis(25),
        ..SimConfig::default()
    })
    .await;
    let page = 40;
    let mut rs = start_rsyslog(env.dir.path(), Listen::Tcp);
    let cfg = write_config(
        &env,
        page,
        false,
        &format!("address = \"127.0.0.1:{}\"\nmode = \"tcp\"", rs.port),
    );
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let mut child = command(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");

    // Wait until a quarter has arrived, with the run still going.
    let quarter = expected.len() / 4;
    let mut polls = 0;
    while rs.raw_messages().len() < quarter {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the restart; slow the simulator down"
        );
        polls += 1;
        assert!(polls < 600, "no progress within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "run still going");
    tokio::task::block_in_place(|| {
        rs.stop();
        // Down long enough for the sink to find it gone.
        std::thread::sleep(Duration::from_secs(1));
        rs.restart_after_stop();
    });

    let out = match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(out) => out.expect("the binary runs"),
        Err(_) => panic!("the run did not finish within 60 s of the restart"),
    };
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    collect(&mut rs, expected.len());
    let events = check_5424(&rs);
    let counts: HashMap<String, usize> = id_counts(&events);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "restart: {} events, {} received, {duplicates} duplicates, {} retries logged",
        expected.len(),
        events.len(),
        log.matches("delivery failed; retrying").count()
    );
    assert!(
        duplicates <= page,
        "at most the batch in flight is sent twice ({duplicates} duplicates)"
    );
}
