//! Sinks that misbehave (issue 12, items 4, 5, 8 and 9 for HEC and the pipeline): the real
//! binary against the embedded simulator, the HEC test peer (`veeam_siem_test_peers::hec`,
//! with its proxy and endless-body knobs) and a small syslog TCP receiver written here.
//!
//! - 413 from a proxy: a 4 kB body limit quarantines only the events that cannot pass
//!   (with the reason) and delivers the rest; a proxy refusing every POST costs nothing
//!   (no dead letter, no acknowledgement, the checkpoint unmoved, a clear error).
//! - Endless answer bodies (503 and 200 on the event endpoint, 200 on the ack endpoint):
//!   the daemon's peak RSS stays low and the batch is retried, not lost.
//! - Shutdown and reload that always end: a syslog receiver or HEC that never comes back,
//!   then SIGTERM → exit 0 within the drain timeout (plus a margin), the checkpoint not
//!   past what was delivered, and a restart delivers everything; SIGHUP with a corrected
//!   address replaces the stuck pipeline without a restart.
//! - Absurd duration settings are refused with the key's name, never a panic.
//!
//! Every process run is bounded; nothing asserts on durations.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;
use veeam_siem_simulator::{Corruption, FaultConfig, SimConfig};
use veeam_siem_test_peers::hec as hec_peer;

use crate::support::config::Table;
use crate::support::faults;
use crate::support::harness;
use faults::{Daemon, lines_with, run_once, tail, write_config};
use harness::{Env, text};
use hec_peer::{Endless, EndpointKind, HecPeer, PeerConfig, TOKEN};

/// The drain timeout the daemons of these tests run with (`VEEAM_SIEM_DRAIN_TIMEOUT`).
const DRAIN: &str = "3s";
/// How long after SIGTERM the daemon may take to exit: the drain timeout plus a generous
/// margin for a loaded machine (a bound, not a measurement).
const EXIT_LIMIT: Duration = Duration::from_secs(3 + 30);
/// Bound on the daemon's peak RSS (debug build), as in the fault suite.
const RSS_LIMIT_MIB: u64 = 150;

fn sim(seed: u64, sessions: usize, events: usize, faults: FaultConfig) -> SimConfig {
    SimConfig {
        seed,
        sessions,
        events_per_session: events,
        faults,
        ..SimConfig::default()
    }
}

fn all_ids(env: &Env) -> HashSet<String> {
    env.sim.event_ids().into_iter().collect()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on (bound once, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The HEC sink table (`retry_max_delay = "500ms"` unless `extra` sets it).
fn hec_sink(endpoint: &str, extra: &str) -> Table {
    let sink = Table::hec("splunk", &["vbo_test"], endpoint).set("index", "veeam");
    if extra.contains("retry_max_delay") {
        sink.raw(extra)
    } else {
        sink.set("retry_max_delay", "500ms").raw(extra)
    }
}

fn syslog_sink(port: u16) -> Table {
    Table::syslog("siem", &["vbo_test"])
        .set("address", format!("127.0.0.1:{port}"))
        .set("mode", "tcp")
        .set("timeout", "2s")
}

/// (session id, order) of an output event.
fn position(event: &Value) -> (String, i64) {
    (
        event["veeam"]["restore_session"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        event["veeam"]["restore_event"]["order"]
            .as_i64()
            .unwrap_or(-1),
    )
}

/// Orders the checkpoint's session cursors claim that are not in `delivered`.
fn checkpoint_ahead(state_dir: &Path, delivered: &HashSet<(String, i64)>) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(state_dir.join("vbo_test.checkpoint.json")) else {
        return Vec::new(); // no checkpoint: nothing claimed
    };
    let cp: Value = serde_json::from_str(&text).expect("the checkpoint is JSON");
    let mut ahead = Vec::new();
    for (sid, cursor) in cp["state"]["sessions"].as_object().into_iter().flatten() {
        let next = cursor["next_order"].as_i64().unwrap_or(0);
        let missing = (0..next)
            .filter(|o| !delivered.contains(&(sid.clone(), *o)))
            .count();
        if missing > 0 {
            ahead.push(format!(
                "{sid}: cursor {next}, {missing} orders undelivered"
            ));
        }
    }
    ahead
}

/// Positions of the events HEC acknowledged, plus the quarantined ones.
fn hec_delivered(peer: &HecPeer, state_dir: &Path) -> HashSet<(String, i64)> {
    let acked = peer.acknowledged();
    let mut out: HashSet<(String, i64)> = peer
        .events()
        .iter()
        .filter(|env| acked.contains_key(env["event"]["event"]["id"].as_str().unwrap_or("")))
        .map(|env| position(&env["event"]))
        .collect();
    for dl in harness::read_ndjson(&state_dir.join("splunk.deadletter.ndjson")) {
        out.insert(position(&dl["event"]));
    }
    out
}

fn dead_letters(env: &Env) -> Vec<Value> {
    harness::read_ndjson(&env.state_dir().join("splunk.deadletter.ndjson"))
}

// ---------------------------------------------------------------------------------------
// A syslog TCP receiver for `confirm = "close"`: reads each connection to its end, then
// closes it (which confirms the batch), and records every event it got.

#[derive(Clone, Default)]
struct Received {
    ids: Arc<Mutex<HashMap<String, usize>>>,
    positions: Arc<Mutex<HashSet<(String, i64)>>>,
}

impl Received {
    fn ids(&self) -> HashMap<String, usize> {
        self.ids.lock().unwrap().clone()
    }
    fn positions(&self) -> HashSet<(String, i64)> {
        self.positions.lock().unwrap().clone()
    }
}

struct SyslogReceiver {
    port: u16,
    got: Received,
    task: tokio::task::JoinHandle<()>,
}

impl SyslogReceiver {
    async fn start() -> SyslogReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Received::default();
        let sink = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    if stream.read_to_end(&mut data).await.is_ok() {
                        record_frames(&data, &sink);
                    }
                    // Dropping the stream closes it: the sender's confirmation.
                });
            }
        });
        SyslogReceiver { port, got, task }
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Octet-counted frames (`LEN SP MSG`); the JSON event is the MSG from its first `{`.
fn record_frames(mut data: &[u8], sink: &Received) {
    while let Some(sp) = data.iter().position(|b| *b == b' ') {
        let Some(len) = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            return;
        };
        let Some(msg) = data.get(sp + 1..sp + 1 + len) else {
            return; // a torn frame: never confirmed, so re-sent
        };
        if let Some(start) = msg.iter().position(|b| *b == b'{')
            && let Ok(event) = serde_json::from_slice::<Value>(&msg[start..])
        {
            let id = event["event"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *sink.ids.lock().unwrap().entry(id).or_insert(0) += 1;
            sink.positions.lock().unwrap().insert(position(&event));
        }
        data = &data[sp + 1 + len..];
    }
}

/// Wait (at most `limit`, polling) until `ready()`; returns whether it became true.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ready()
}

fn drain_env() -> [(&'static str, &'static str); 2] {
    [
        ("VEEAM_SIEM_DRAIN_TIMEOUT", DRAIN),
        ("TEST_HEC_TOKEN", TOKEN),
    ]
}

/// Spawn a follow-mode daemon whose only sink never recovers, wait until its sink is
/// retrying and the queues in front of it are full, SIGTERM it and return its exit
/// status and log. Panics when it does not exit within [`EXIT_LIMIT`].
async fn sigterm_while_stuck(cfg: &Path, tag: &str) -> (std::process::ExitStatus, String) {
    let cfg = cfg.to_path_buf();
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || {
        let mut d = Daemon::spawn(&cfg, false, &drain_env(), &tag);
        let stuck = wait_until(Duration::from_secs(60), || {
            lines_with(&d.stderr(), &["delivery failed; retrying"]).len() >= 3
        });
        assert!(stuck, "the sink never failed:\n{}", tail(&d.stderr(), 30));
        assert!(d.alive(), "{}", tail(&d.stderr(), 30));
        let asked = Instant::now();
        let status = d.terminate(EXIT_LIMIT);
        eprintln!("{tag}: exited {:?} after SIGTERM", asked.elapsed());
        (status, d.stderr())
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Item 5: shutdown and reload that always end.

/// Fault: the syslog sink (TCP) points at a closed port; the source has far more batches
/// than the queues hold, so a router waits on the full sink queue. SIGTERM. Asserts: exit
/// 0 within the drain timeout plus a margin, with a warning naming the abandoned batches;
/// no checkpoint past what the receiver got (nothing); a restart against a working
/// receiver delivers every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_to_a_closed_port_then_sigterm_exits_and_a_restart_delivers_everything() {
    let env = Env::start(sim(501, 8, 20, FaultConfig::default())).await;
    let cfg = write_config(&env, "page_size = 10", syslog_sink(closed_port()));
    let (status, log) = sigterm_while_stuck(&cfg, "syslog-stuck").await;
    assert_eq!(status.code(), Some(0), "{}", tail(&log, 40));
    let warned = lines_with(&log, &["drain timeout reached", "source `vbo_test`"]);
    assert!(!warned.is_empty(), "{}", tail(&log, 40));
    let none = HashSet::new();
    let ahead = checkpoint_ahead(&env.state_dir(), &none);
    assert!(
        ahead.is_empty(),
        "checkpoint past undelivered events: {ahead:?}"
    );

    let rx = SyslogReceiver::start().await;
    let cfg = write_config(&env, "page_size = 10", syslog_sink(rx.port));
    let out = run_once(&cfg, &drain_env(), "syslog-restart").await;
    assert!(out.status.success(), "{}", text(&out));
    let got = rx.got.ids();
    let missing: Vec<String> = all_ids(&env)
        .into_iter()
        .filter(|id| !got.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never delivered after the restart, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(4)]
    );
    assert!(checkpoint_ahead(&env.state_dir(), &rx.got.positions()).is_empty());
}

/// Fault: HEC is down (nothing listens at the endpoint) for the whole run. SIGTERM.
/// Asserts: exit 0 within the drain timeout plus a margin; the checkpoint not past
/// anything; a restart with HEC up delivers every event, and the checkpoint never claims
/// what HEC did not acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_down_then_sigterm_exits_and_a_restart_delivers_everything() {
    let env = Env::start(sim(502, 8, 20, FaultConfig::default())).await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let extra = "indexer_ack = true\nack_poll_interval = \"100ms\"\nmax_retries = 2\nrequest_timeout = \"2s\"";
    let cfg = write_config(&env, "page_size = 10", hec_sink(&dead, extra));
    let (status, log) = sigterm_while_stuck(&cfg, "hec-down").await;
    assert_eq!(status.code(), Some(0), "{}", tail(&log, 40));
    assert!(
        !lines_with(&log, &["drain timeout reached"]).is_empty(),
        "{}",
        tail(&log, 40)
    );
    let none = HashSet::new();
    assert!(checkpoint_ahead(&env.state_dir(), &none).is_empty());

    let peer = HecPeer::start(PeerConfig {
        ack_enabled: true,
        ..PeerConfig::default()
    })
    .await
    .expect("the HEC peer starts");
    let cfg = write_config(&env, "page_size = 10", hec_sink(&peer.url(), extra));
    let out = run_once(&cfg, &drain_env(), "hec-restart").await;
    assert!(out.status.success(), "{}", text(&out));
    let acked = peer.acknowledged();
    let missing = all_ids(&env)
        .iter()
        .filter(|id| !acked.contains_key(*id))
        .count();
    assert_eq!(missing, 0, "events lost:\n{}", tail(&stderr_of(&out), 30));
    let ahead = checkpoint_ahead(&env.state_dir(), &hec_delivered(&peer, &env.state_dir()));
    assert!(ahead.is_empty(), "{ahead:?}");
}

/// Fault: the syslog sink points at a closed port while following. The config is fixed
/// (the receiver's address) and the daemon gets SIGHUP. Asserts: the reload replaces the
/// stuck pipeline within the drain timeout, every event arrives without a restart, and
/// SIGTERM then ends the daemon with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_corrected_address_delivers_without_a_restart() {
    let env = Env::start(sim(503, 8, 20, FaultConfig::default())).await;
    let rx = SyslogReceiver::start().await;
    let fixed = write_config(&env, "page_size = 10", syslog_sink(rx.port));
    let fixed = std::fs::read_to_string(fixed).unwrap();
    let cfg_path = write_config(&env, "page_size = 10", syslog_sink(closed_port()));
    let expected = all_ids(&env);
    let got = rx.got.clone();
    let (status, log, arrived) = tokio::task::spawn_blocking(move || {
        let mut d = Daemon::spawn(&cfg_path, false, &drain_env(), "sighup");
        let stuck = wait_until(Duration::from_secs(60), || {
            lines_with(&d.stderr(), &["delivery failed; retrying"]).len() >= 3
        });
        assert!(stuck, "the sink never failed:\n{}", tail(&d.stderr(), 30));
        std::fs::write(&cfg_path, fixed).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &d.pid().to_string()])
            .status();
        let arrived = wait_until(Duration::from_secs(90), || {
            let ids = got.ids();
            expected.iter().all(|id| ids.contains_key(id))
        });
        assert!(d.alive(), "{}", tail(&d.stderr(), 40));
        let status = d.terminate(EXIT_LIMIT);
        (status, d.stderr(), arrived)
    })
    .await
    .unwrap();
    assert!(
        arrived,
        "events did not arrive after SIGHUP ({} of {}):\n{}",
        rx.got.ids().len(),
        all_ids(&env).len(),
        tail(&log, 40)
    );
    assert!(!lines_with(&log, &["configuration reloaded"]).is_empty());
    assert_eq!(status.code(), Some(0), "{}", tail(&log, 40));
    assert!(checkpoint_ahead(&env.state_dir(), &rx.got.positions()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Item 4: 413 from a proxy.

/// Fault: a proxy in front of HEC refuses bodies over 4 kB with its own 413 page (the
/// simulator's events are 1–2.5 kB in their envelopes, so each fits alone, several do
/// not); two events carry a 1 MiB `message`. Asserts: `--once` exits 0; exactly the two big events
/// are in the dead-letter file, with the reason (HTTP 413, too large); every other event
/// is acknowledged exactly once (halving never duplicates: a 413 indexes nothing); the
/// checkpoint is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_with_a_4kb_limit_quarantines_only_the_big_events() {
    let env = Env::start(sim(
        504,
        5,
        12,
        FaultConfig {
            corrupt_events: vec![
                (0, 0, Corruption::HugeString),
                (3, 5, Corruption::HugeString),
            ],
            ..FaultConfig::default()
        },
    ))
    .await;
    let peer = HecPeer::start(PeerConfig {
        ack_enabled: true,
        proxy_max_body: Some(4096),
        ..PeerConfig::default()
    })
    .await
    .expect("the HEC peer starts");
    let extra = "indexer_ack = true\nack_poll_interval = \"100ms\"";
    let cfg = write_config(&env, "page_size = 10", hec_sink(&peer.url(), extra));
    let out = run_once(&cfg, &drain_env(), "proxy-4kb").await;
    assert!(out.status.success(), "{}", text(&out));
    let big: HashSet<String> = env
        .sim
        .spoiled_events()
        .into_iter()
        .map(|s| s.event_id)
        .collect();
    assert_eq!(big.len(), 2);
    let letters = dead_letters(&env);
    let quarantined: HashSet<String> = letters
        .iter()
        .filter_map(|dl| dl["event"]["event"]["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(quarantined, big, "only the big events are dead letters");
    for dl in &letters {
        assert_eq!(dl["http_status"], 413, "{dl}");
        let why = dl["text"].as_str().unwrap_or_default();
        assert!(why.contains("too large") && why.contains("413"), "{why}");
    }
    let indexed = peer.indexed();
    let acked = peer.acknowledged();
    for id in all_ids(&env).difference(&big) {
        assert!(acked.contains_key(id), "{id} never acknowledged");
        assert_eq!(indexed.get(id), Some(&1), "{id} indexed more than once");
    }
    let stats = peer.stats();
    assert!(stats.proxy_413 > 0, "the proxy never refused anything");
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    let ahead = checkpoint_ahead(&env.state_dir(), &hec_delivered(&peer, &env.state_dir()));
    assert!(ahead.is_empty(), "{ahead:?}");
    // A second run finds nothing left to send.
    let again = run_once(&cfg, &drain_env(), "proxy-4kb-again").await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        peer.indexed(),
        indexed,
        "the second run sent something again"
    );
    eprintln!(
        "4 kB proxy: {} proxy 413s, {} events indexed, {} expected, {} quarantined",
        stats.proxy_413,
        stats.events_indexed,
        all_ids(&env).len(),
        quarantined.len()
    );
}

/// Fault: the proxy answers 413 to every POST, however small. Asserts: `--once` fails
/// (exit 1) with an error naming the endpoint, the 413 and the fix; nothing is
/// quarantined, nothing acknowledged, and the checkpoint has not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refusing_every_post_costs_no_evidence_and_fails_clearly() {
    let env = Env::start(sim(505, 3, 10, FaultConfig::default())).await;
    let peer = HecPeer::start(PeerConfig {
        proxy_refuse_all: true,
        ..PeerConfig::default()
    })
    .await
    .expect("the HEC peer starts");
    let cfg = write_config(&env, "page_size = 10", hec_sink(&peer.url(), ""));
    let out = run_once(&cfg, &drain_env(), "proxy-all").await;
    let log = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let errors = lines_with(&log, &["413", &peer.url(), "max_bytes"]);
    assert!(!errors.is_empty(), "no clear error:\n{}", tail(&log, 30));
    assert!(dead_letters(&env).is_empty(), "evidence was quarantined");
    assert!(peer.acknowledged().is_empty());
    let none = HashSet::new();
    assert!(checkpoint_ahead(&env.state_dir(), &none).is_empty());
    assert!(peer.stats().proxy_413 > 0);
}

// ---------------------------------------------------------------------------------------
// Item 8: HEC answer bodies are bounded.

/// Run `--once` against a peer answering the first 3 requests of `endpoint` with an
/// endless `status` body (512 MiB, streamed); sample the daemon's peak RSS while it runs.
async fn endless_answers(endpoint: EndpointKind, status: u16, tag: &str) {
    let env = Env::start(sim(506, 3, 10, FaultConfig::default())).await;
    let peer = HecPeer::start(PeerConfig {
        ack_enabled: true,
        endless: Some(Endless {
            endpoint,
            status,
            requests: 3,
            bytes: 512 << 20,
        }),
        ..PeerConfig::default()
    })
    .await
    .expect("the HEC peer starts");
    let extra = "indexer_ack = true\nack_poll_interval = \"100ms\"";
    let cfg = write_config(&env, "page_size = 10", hec_sink(&peer.url(), extra));
    let tag = tag.to_string();
    let (exit, log, hwm) = tokio::task::spawn_blocking(move || {
        let mut d = Daemon::spawn(&cfg, true, &drain_env(), &tag);
        let mut hwm = 0;
        let deadline = Instant::now() + faults::RUN_LIMIT;
        while d.alive() && Instant::now() < deadline {
            if let Some((peak, _)) = d.memory_kib() {
                hwm = hwm.max(peak);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let exit = d.wait(Duration::from_secs(5));
        (exit, d.stderr(), hwm)
    })
    .await
    .unwrap();
    eprintln!(
        "endless HTTP {status} answers on {endpoint:?}: peak RSS (VmHWM) {:.1} MiB, {} endless answers",
        hwm as f64 / 1024.0,
        peer.stats().endless_answers
    );
    assert_eq!(peer.stats().endless_answers, 3);
    assert!(exit.success(), "{}", tail(&log, 30));
    assert!(
        hwm / 1024 < RSS_LIMIT_MIB,
        "peak RSS {} MiB > {RSS_LIMIT_MIB} MiB",
        hwm / 1024
    );
    let acked = peer.acknowledged();
    let missing = all_ids(&env)
        .iter()
        .filter(|id| !acked.contains_key(*id))
        .count();
    assert_eq!(missing, 0, "events lost:\n{}", tail(&log, 30));
}

/// Fault: the first three event POSTs get a 503 whose chunked body never ends. Asserts:
/// bounded memory, the request is retried, every event acknowledged, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_503_bodies_keep_memory_bounded_and_the_batch_is_retried() {
    endless_answers(EndpointKind::Event, 503, "endless-503").await;
}

/// Fault: the first three event POSTs get a 200 whose body never ends (not a HEC reply).
/// Asserts as above: the answer is read up to the cap only, the batch is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_200_bodies_keep_memory_bounded_and_the_batch_is_retried() {
    endless_answers(EndpointKind::Event, 200, "endless-200").await;
}

/// Fault: the first three ack queries get a 200 whose body never ends. Asserts as above:
/// the ack query is repeated, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_ack_answers_keep_memory_bounded() {
    endless_answers(EndpointKind::Ack, 200, "endless-ack").await;
}

// ---------------------------------------------------------------------------------------
// Item 9: absurd durations.

/// Fault: each HEC duration setting, and the drain timeout, set to absurd values.
/// Asserts: `run --once` exits non-zero with an error naming the key (or variable), never
/// a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_refused_by_name_never_a_panic() {
    let env = Env::start(sim(507, 1, 2, FaultConfig::default())).await;
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for key in [
        "ack_timeout",
        "ack_poll_interval",
        "request_timeout",
        "retry_max_delay",
    ] {
        for value in ["300000years", "18446744073709551615s"] {
            let extra = format!("indexer_ack = true\n{key} = {value:?}");
            let cfg = write_config(&env, "", hec_sink(&endpoint, &extra));
            let out = run_once(&cfg, &drain_env(), "absurd").await;
            let log = stderr_of(&out);
            assert!(!log.contains("panicked"), "{key} = {value}: {log}");
            assert!(!out.status.success(), "{key} = {value} accepted");
            assert!(
                log.contains(&format!("sinks.splunk.{key}")),
                "{key} = {value}: {log}"
            );
        }
    }
    let cfg = write_config(&env, "", hec_sink(&endpoint, ""));
    for value in ["300000years", "18446744073709551615s", "soon"] {
        let out = run_once(
            &cfg,
            &[
                ("VEEAM_SIEM_DRAIN_TIMEOUT", value),
                ("TEST_HEC_TOKEN", TOKEN),
            ],
            "absurd-drain",
        )
        .await;
        let log = stderr_of(&out);
        assert!(!log.contains("panicked"), "{value}: {log}");
        assert_eq!(out.status.code(), Some(2), "{value}: a usage error; {log}");
        assert!(log.contains("VEEAM_SIEM_DRAIN_TIMEOUT"), "{value}: {log}");
    }
}
