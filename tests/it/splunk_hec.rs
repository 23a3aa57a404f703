//! End to end for the Splunk HEC sink: VB365 simulator → `veeam-siem run` (the real
//! binary) → the HEC test peer (`veeam_siem_test_peers::hec`, written from Splunk's
//! protocol).
//!
//! Covers the acceptance of the HEC sink: indexer acknowledgement with busy answers and a
//! slow ack (everything once, checkpoint never ahead of what HEC acknowledged), `kill -9`
//! mid-run, a 20 s HEC outage (nothing lost, backpressure reaches the source), a poison
//! event (quarantined, the rest delivered), an invalid or disabled token and a token
//! without acknowledgement (clear error, exit 1, nothing lost). Every run is bounded by a
//! timeout; nothing asserts on durations.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::hec as hec_peer;

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::faults::Daemon;
use crate::support::harness;
use harness::{Env, PASSWORD, text};
use hec_peer::{HecPeer, Outage, OutageMode, PeerConfig, TOKEN};

/// Longest a single run of the binary may take before the test kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The sink's default `in_flight_batches`: batches sent but not yet confirmed and
/// checkpointed, so what a crash may send again.
pub const HEC_WINDOW: usize = 16;

struct Setup {
    env: Env,
    peer: HecPeer,
    config: PathBuf,
}

impl Setup {
    async fn start(
        sim: SimConfig,
        peer: PeerConfig,
        source_extra: &str,
        sink_extra: &str,
    ) -> Setup {
        let env = Env::start(sim).await;
        let peer = HecPeer::start(peer).await.expect("HEC peer starts");
        let config = write_config(&env, &peer, source_extra, sink_extra);
        Setup { env, peer, config }
    }

    fn checkpoint(&self) -> PathBuf {
        self.env.state_dir().join("vbo_test.checkpoint.json")
    }

    fn dead_letters(&self) -> Vec<serde_json::Value> {
        harness::read_ndjson(&self.env.state_dir().join("splunk.deadletter.ndjson"))
    }

    fn expected_ids(&self) -> HashSet<String> {
        self.env.sim.event_ids().into_iter().collect()
    }

    /// Run `run --config C --once` with the given HEC token, bounded by [`RUN_TIMEOUT`].
    async fn run_once(&self, token: &str) -> Output {
        run_bounded(&self.config, token, RUN_TIMEOUT).await
    }
}

fn write_config(env: &Env, peer: &HecPeer, source_extra: &str, sink_extra: &str) -> PathBuf {
    let mut sink = Table::hec("splunk", &["vbo_test"], &peer.url())
        .set("index", "veeam")
        .set("retry_max_delay", "500ms");
    if let Some(pem) = peer.ca_pem() {
        let ca = env.dir.path().join("hec-ca.pem");
        std::fs::write(&ca, pem).unwrap();
        sink = sink.tls_ca(&ca);
    }
    env.config()
        .table(env.vbo_source().raw(source_extra))
        .table(sink.raw(sink_extra))
        .write(&env.dir.path().join("config.toml"))
}

fn command(config: &Path, token: &str, out: &Path) -> Command {
    let mut cmd = harness::bin();
    cmd.args(["run", "--config", &config.display().to_string(), "--once"])
        .env("TEST_VBO_PASSWORD", PASSWORD)
        .env("TEST_HEC_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out).unwrap());
    cmd
}

/// Run the binary off the async runtime; kill it (and fail) if it outlives `limit`.
async fn run_bounded(config: &Path, token: &str, limit: Duration) -> Output {
    let config = config.to_path_buf();
    let token = token.to_string();
    tokio::task::spawn_blocking(move || {
        let err = config.with_extension("stderr.txt");
        let mut child = command(&config, &token, &err).spawn().expect("binary runs");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "veeam-siem did not finish within {limit:?}; stderr:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

/// Start a run and `kill -9` it once `ready()` holds (checked every 20 ms, at most
/// `limit`). Returns whether the process was still running when killed.
async fn kill_when(
    config: &Path,
    limit: Duration,
    ready: impl Fn() -> bool + Send + 'static,
) -> bool {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let err = config.with_extension("killed.stderr.txt");
        let mut child = command(&config, TOKEN, &err).spawn().expect("binary runs");
        let deadline = Instant::now() + limit;
        while !ready() && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        running
    })
    .await
    .unwrap()
}

/// (session id, order) of every event the peer has acknowledged, plus those in the
/// dead-letter file (quarantined events count as delivered).
fn acknowledged_positions(s: &Setup) -> HashMap<String, HashSet<i64>> {
    let acked = s.peer.acknowledged();
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut add = |event: &serde_json::Value| {
        let session = event["veeam"]["restore_session"]["id"]
            .as_str()
            .unwrap_or_default();
        let order = event["veeam"]["restore_event"]["order"]
            .as_i64()
            .unwrap_or(-1);
        out.entry(session.to_string()).or_default().insert(order);
    };
    for envelope in s.peer.events() {
        let id = envelope["event"]["event"]["id"]
            .as_str()
            .unwrap_or_default();
        if acked.contains_key(id) {
            add(&envelope["event"]);
        }
    }
    for dl in s.dead_letters() {
        add(&dl["event"]);
    }
    out
}

/// Problems where the checkpoint claims events the peer has not acknowledged.
fn checkpoint_ahead(s: &Setup) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(s.checkpoint()) else {
        return Vec::new(); // no checkpoint yet: nothing claimed
    };
    let cp: serde_json::Value = serde_json::from_str(&text).expect("checkpoint is JSON");
    let positions = acknowledged_positions(s);
    let mut problems = Vec::new();
    let empty = HashSet::new();
    if let Some(sessions) = cp["state"]["sessions"].as_object() {
        for (sid, cursor) in sessions {
            let next = cursor["next_order"].as_i64().unwrap_or(0);
            let have = positions.get(sid).unwrap_or(&empty);
            let missing: Vec<i64> = (0..next).filter(|o| !have.contains(o)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "session {sid}: checkpoint at order {next}, but orders {missing:?} were not acknowledged by HEC"
                ));
            }
        }
    }
    problems
}

/// Watch the checkpoint while a run goes on (every 100 ms until `stop`): what it claims
/// must already be acknowledged by HEC. The task returns (checkpoints seen, problems).
fn watch_checkpoint(
    s: &Setup,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<(u32, Vec<String>)>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let stop = stop.clone();
        let checkpoint = s.checkpoint();
        let peer = s.peer.clone();
        tokio::spawn(async move {
            let mut seen = 0u32;
            let mut problems = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(text) = tokio::fs::read_to_string(&checkpoint).await
                    && let Ok(cp) = serde_json::from_str::<serde_json::Value>(&text)
                {
                    seen += 1;
                    // Read the peer *after* the checkpoint: acknowledgements only grow.
                    let acked = peer.acknowledged();
                    let mut orders: HashMap<String, HashSet<i64>> = HashMap::new();
                    for e in peer.events() {
                        if acked.contains_key(e["event"]["event"]["id"].as_str().unwrap_or("")) {
                            orders
                                .entry(
                                    e["event"]["veeam"]["restore_session"]["id"]
                                        .as_str()
                                        .unwrap_or("")
                                        .to_string(),
                                )
                                .or_default()
                                .insert(
                                    e["event"]["veeam"]["restore_event"]["order"]
                                        .as_i64()
                                        .unwrap_or(-1),
                                );
                        }
                    }
                    for (sid, c) in cp["state"]["sessions"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                    {
                        let next = c["next_order"].as_i64().unwrap_or(0);
                        let have = orders.get(&sid).cloned().unwrap_or_default();
                        let missing: Vec<i64> = (0..next).filter(|o| !have.contains(o)).collect();
                        if !missing.is_empty() {
                            problems.push(format!(
                                "session {sid} checkpointed to {next} before HEC acknowledged orders {missing:?}"
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (seen, problems)
        })
    };
    (stop, monitor)
}

fn duplicates(indexed: &HashMap<String, u32>) -> u32 {
    indexed.values().map(|c| c - 1).sum()
}

/// Everything expected is indexed and acknowledged (poison aside); returns duplicates.
fn assert_complete(s: &Setup, poison: &HashSet<String>) -> u32 {
    let expected = s.expected_ids();
    let indexed = s.peer.indexed();
    let acked = s.peer.acknowledged();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !poison.contains(*id) && !acked.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never acknowledged by HEC, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    let unknown: Vec<&String> = indexed
        .keys()
        .filter(|id| !expected.contains(*id))
        .collect();
    assert!(unknown.is_empty(), "events that don't exist: {unknown:?}");
    let stats = s.peer.stats();
    assert!(
        stats.violations.is_empty(),
        "HEC protocol violations: {:?}",
        stats.violations
    );
    assert!(s.env.sim.stats().violations.is_empty());
    assert!(checkpoint_ahead(s).is_empty(), "{:?}", checkpoint_ahead(s));
    duplicates(&indexed)
}

/// Ack on, 5% "server busy", 2 s until acks report true, gzip, TLS: everything arrives
/// exactly once, and a monitor never sees the checkpoint ahead of acknowledged data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_with_busy_answers_and_slow_acks_delivers_everything_exactly_once() {
    let s = Setup::start(
        SimConfig {
            seed: 17,
            sessions: 5,
            events_per_session: 30,
            ..SimConfig::default()
        },
        PeerConfig {
            tls: true,
            ack_enabled: true,
            ack_delay: Duration::from_secs(2),
            busy_rate: 0.05,
            seed: 4,
            ..PeerConfig::default()
        },
        "page_size = 40",
        r#"indexer_ack = true
ack_poll_interval = "200ms"
compression = "gzip"
max_events = 12
max_retries = 20"#,
    )
    .await;

    let (stop, monitor) = watch_checkpoint(&s);
    let out = s.run_once(TOKEN).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, problems) = monitor.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(problems.is_empty(), "{problems:?}");
    assert!(seen > 0, "the monitor saw checkpoints during the run");

    let dups = assert_complete(&s, &HashSet::new());
    assert_eq!(dups, 0, "zero duplicates");
    let stats = s.peer.stats();
    eprintln!("peer stats: {stats:?}");
    assert!(
        stats.busy_answers > 0,
        "busy answers were injected: {stats:?}"
    );
    assert_eq!(
        stats.acks_reported_true, stats.ack_ids_issued,
        "every accepted request was confirmed, none re-sent"
    );
    assert_eq!(
        stats.gzip_requests, stats.accepted_requests,
        "every request was gzipped"
    );

    // The envelope: metadata, ms time, the event itself, flat indexed fields.
    for env in s.peer.events() {
        let event = &env["event"];
        event_schema::assert_valid_event(event);
        assert_eq!(env["sourcetype"], "veeam:vbo:restore");
        assert_eq!(env["index"], "veeam");
        assert_eq!(env["host"], "127.0.0.1", "default host = observer.hostname");
        assert_eq!(env["source"], "veeam-siem:vbo_test");
        assert_eq!(env["fields"]["event_id"], event["event"]["id"]);
        assert_eq!(env["fields"]["dataset"], "veeam.vbo_restore");
        let ts =
            chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().unwrap()).unwrap();
        let time = env["time"].as_f64().unwrap();
        assert!(
            (time * 1000.0 - ts.timestamp_millis() as f64).abs() < 1.0,
            "{time} vs {ts}"
        );
    }

    // The channel is stable across restarts.
    let channel_file = s.env.state_dir().join("splunk.hec-channel");
    let channel = std::fs::read_to_string(&channel_file).unwrap();
    assert!(uuid::Uuid::parse_str(channel.trim()).is_ok(), "{channel}");
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&channel_file).unwrap(), channel);
    assert_eq!(
        duplicates(&s.peer.indexed()),
        0,
        "second run sent nothing again"
    );
}

/// `kill -9` while batches wait for their acks: the checkpoint never claims what HEC
/// has not acknowledged; the next run delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_never_leaves_the_checkpoint_ahead_of_acks() {
    let page = 25;
    let s = Setup::start(
        SimConfig {
            seed: 23,
            sessions: 8,
            events_per_session: 20,
            ..SimConfig::default()
        },
        PeerConfig {
            ack_enabled: true,
            ack_delay: Duration::from_millis(700),
            ..PeerConfig::default()
        },
        &format!("page_size = {page}"),
        r#"indexer_ack = true
ack_poll_interval = "100ms"
max_events = 10"#,
    )
    .await;
    let mut kills = 0;
    for after in [1u64, 3, 5] {
        let peer = s.peer.clone();
        // Kill while requests are accepted but not yet acknowledged.
        let killed = kill_when(&s.config, Duration::from_secs(30), move || {
            let st = peer.stats();
            st.ack_ids_issued >= after && st.ack_ids_issued > st.acks_reported_true
        })
        .await;
        if killed {
            kills += 1;
        }
        let problems = checkpoint_ahead(&s);
        assert!(problems.is_empty(), "after a kill: {problems:?}");
    }
    assert!(
        kills >= 1,
        "no run was killed in flight; make the data set larger"
    );
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    let dups = assert_complete(&s, &HashSet::new());
    eprintln!("kills: {kills}, duplicates: {dups}");
    assert!(
        dups as usize <= kills * page * HEC_WINDOW,
        "{dups} duplicates after {kills} kills exceeds the in-flight window ({HEC_WINDOW} batches of {page}) per crash"
    );
}

/// HEC goes away for 20 s (connections refused) mid-run: nothing is lost, and while it is
/// down the source stops fetching (the bounded queues fill: backpressure, flat memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_second_outage_loses_nothing_and_backpressure_reaches_the_source() {
    let s = Setup::start(
        SimConfig {
            seed: 31,
            sessions: 40,
            events_per_session: 10,
            ..SimConfig::default()
        },
        PeerConfig {
            ack_enabled: true,
            outage: Some(Outage {
                after_events: 60,
                duration: Duration::from_secs(20),
                mode: OutageMode::Refuse,
            }),
            ..PeerConfig::default()
        },
        "page_size = 20",
        r#"indexer_ack = true
ack_poll_interval = "100ms"
compression = "gzip"
max_retries = 100"#,
    )
    .await;
    let run = {
        let config = s.config.clone();
        tokio::spawn(async move { run_bounded(&config, TOKEN, RUN_TIMEOUT).await })
    };
    // Wait for the outage, then sample the simulator's request count: it must stop
    // growing (three equal samples a second apart) before the outage ends.
    let begin = Instant::now();
    while !s.peer.outage_active() && begin.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.peer.outage_active(), "the outage started");
    let mut samples = Vec::new();
    let mut plateau = None;
    while s.peer.outage_active() && begin.elapsed() < Duration::from_secs(60) {
        samples.push(s.env.sim.stats().data_requests);
        if samples.len() >= 3
            && samples[samples.len() - 3..]
                .windows(2)
                .all(|w| w[0] == w[1])
        {
            plateau = samples.last().copied();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let out = run.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stats = s.peer.stats();
    eprintln!("samples during the outage: {samples:?}; peer: {stats:?}");
    assert_eq!(stats.outages_started, 1);
    let plateau = plateau.expect("the source stopped fetching during the outage");
    let total = s.env.sim.stats().data_requests;
    assert!(
        plateau < total,
        "the source was blocked mid-run ({plateau} requests) and resumed after the outage ({total})"
    );
    let dups = assert_complete(&s, &HashSet::new());
    eprintln!("duplicates after the outage: {dups}");
}

/// One malformed event (HEC code 6 with `invalid-event-number`) goes to the dead-letter
/// file; every other event arrives, the checkpoint completes, a re-run repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_quarantined_and_the_rest_arrive() {
    let sim = SimConfig {
        seed: 41,
        sessions: 4,
        events_per_session: 15,
        ..SimConfig::default()
    };
    // Pick an event in the middle of the data set.
    let probe = veeam_siem_simulator::SimHandle::start(sim.clone())
        .await
        .unwrap();
    let ids = probe.event_ids();
    let poison = ids[ids.len() / 2].clone();
    probe.shutdown().await;
    let s = Setup::start(
        sim,
        PeerConfig {
            ack_enabled: true,
            poison_ids: [poison.clone()].into(),
            ..PeerConfig::default()
        },
        "page_size = 50",
        r#"indexer_ack = true
ack_poll_interval = "100ms"
max_events = 7"#,
    )
    .await;
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    let dead = s.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event"]["event"]["id"], poison.as_str());
    assert_eq!(dead[0]["code"], 6);
    assert_eq!(dead[0]["sink_id"], "splunk");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dead-letter") && err.contains(&poison),
        "{err}"
    );
    let poison_set: HashSet<String> = [poison.clone()].into();
    let dups = assert_complete(&s, &poison_set);
    // Only the poison's request went again (events before it in that request were
    // indexed by HEC before it stopped: those are the only duplicates).
    assert!(
        dups < 7,
        "{dups} duplicates; at most max_events - 1 expected"
    );
    assert!(
        !s.peer.indexed().contains_key(&poison),
        "the poison event was never indexed"
    );

    let requests = s.peer.stats().accepted_requests;
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.dead_letters().len(), 1, "not quarantined twice");
    assert_eq!(
        s.peer.stats().accepted_requests,
        requests,
        "nothing re-sent"
    );
}

/// A wrong token: exit 1 naming the sink, the endpoint and the fix, the token never
/// printed, nothing delivered, no checkpoint. The right token then delivers everything.
/// A token disabled mid-run stops delivery with the checkpoint behind the acknowledged
/// data; re-enabled, the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_disabled_token_fails_clearly_and_loses_nothing() {
    let s = Setup::start(
        SimConfig {
            seed: 53,
            sessions: 6,
            events_per_session: 12,
            ..SimConfig::default()
        },
        PeerConfig {
            disable_token_after_events: Some(30),
            ..PeerConfig::default()
        },
        "page_size = 10",
        "",
    )
    .await;
    let wrong = "0f0f0f0f-dead-beef-0000-wrongtoken42";
    let out = s.run_once(wrong).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("splunk"), "names the sink: {err}");
    assert!(err.contains(&s.peer.url()), "names the endpoint: {err}");
    assert!(
        err.contains("sinks.splunk.token"),
        "says what to fix: {err}"
    );
    assert!(!err.contains(wrong), "token leaked: {err}");
    assert!(!err.contains(TOKEN), "token leaked: {err}");
    assert_eq!(s.peer.stats().events_indexed, 0);
    assert!(!s.checkpoint().exists(), "no checkpoint without delivery");

    // Right token; the peer disables it after 30 events.
    let out = s.run_once(TOKEN).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disabled") && err.contains("sinks.splunk.token"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "token leaked: {err}");
    assert!(
        checkpoint_ahead(&s).is_empty(),
        "{:?}",
        checkpoint_ahead(&s)
    );
    assert!(s.peer.stats().events_indexed >= 30);

    // Re-enabled: the next run delivers the rest, nothing lost.
    s.peer.set_token_disabled(false);
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    let dups = assert_complete(&s, &HashSet::new());
    eprintln!("duplicates after the token was disabled mid-run: {dups}");
}

/// A HEC that refuses the token at start-up stops the run before anything is polled: no
/// other sink (here a file sink) gets an event that is never checkpointed, which every
/// supervisor restart (or a reload falling back to its old config) would send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_run_before_any_sink_gets_an_event() {
    let env = Env::start(SimConfig {
        seed: 54,
        sessions: 6,
        events_per_session: 12,
        ..SimConfig::default()
    })
    .await;
    let peer = HecPeer::start(PeerConfig::default())
        .await
        .expect("HEC peer starts");
    let mut sink = Table::hec("splunk", &["vbo_test"], &peer.url()).set("retry_max_delay", "500ms");
    if let Some(pem) = peer.ca_pem() {
        let ca = env.dir.path().join("hec-ca.pem");
        std::fs::write(&ca, pem).unwrap();
        sink = sink.tls_ca(&ca);
    }
    let config = env
        .config()
        .table(env.vbo_source().raw("page_size = 10"))
        .table(sink)
        .table(env.file_sink())
        .write(&env.dir.path().join("config.toml"));
    for run in 0..2 {
        let out = run_bounded(&config, "0f0f0f0f-dead-beef-0000-wrongtoken42", RUN_TIMEOUT).await;
        assert_eq!(out.status.code(), Some(1), "run {run}: {}", text(&out));
        assert!(
            env.events().is_empty(),
            "run {run}: the file sink got {} events",
            env.events().len()
        );
    }
    assert_eq!(peer.stats().events_indexed, 0);
}

/// `indexer_ack = true` against a token without acknowledgement: fail at startup (code
/// 14), never fall back to unacknowledged delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_disabled_on_the_token_fails_at_startup() {
    let s = Setup::start(
        SimConfig {
            sessions: 2,
            ..SimConfig::default()
        },
        PeerConfig::default(),
        "",
        "indexer_ack = true",
    )
    .await;
    let out = s.run_once(TOKEN).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("indexer acknowledgement is disabled")
            && err.contains("sinks.splunk.indexer_ack"),
        "{err}"
    );
    assert_eq!(
        s.peer.stats().events_indexed,
        0,
        "nothing sent without acknowledgement"
    );
    assert!(!s.checkpoint().exists());
}

fn sample_batch(n: usize) -> veeam_siem::sinks::Batch {
    let events = (0..n)
        .map(|i| {
            let json = serde_json::json!({
                "@timestamp": "2025-03-04T08:00:01.234Z",
                "ecs": {"version": "9.4.0"},
                "message": format!("restore event {i}"),
                "event": {
                    "kind": "event", "category": ["file"], "type": ["access"],
                    "action": "item-restored", "outcome": "success", "id": format!("direct-{i}"),
                    "created": "2025-03-04T08:00:02Z", "dataset": "veeam.vbo_restore",
                    "module": "veeam", "provider": "vbo"
                },
                "observer": {"vendor": "Veeam", "product": "VB365", "hostname": "vbo.example.net"},
                "labels": {"source_id": "vbo_main"},
                "veeam": {}
            });
            let event: veeam_siem::event::Event = serde_json::from_value(json).unwrap();
            let json = serde_json::to_string(&event).unwrap();
            veeam_siem::sinks::EncodedEvent { event, json }
        })
        .collect();
    veeam_siem::sinks::Batch {
        source_id: "vbo_main".into(),
        source_index: 0,
        seq: 1,
        events,
    }
}

/// Driving the sink directly: requests whose ackId doesn't report true within
/// `ack_timeout` fail the attempt (`Retryable`), and the pipeline's retry sends them
/// again; a confirmed request is acknowledged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_requests_are_sent_again_after_the_ack_timeout() {
    use veeam_siem::sinks::splunk_hec::{HecSink, HecSinkConfig};
    use veeam_siem::sinks::{Sink, SinkContext, SinkError};
    let peer = HecPeer::start(PeerConfig {
        ack_enabled: true,
        ack_delay: Duration::from_secs(3600),
        ..PeerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg: HecSinkConfig = toml::from_str(&format!(
        r#"inputs = ["vbo_main"]
endpoint = "{}/services/collector/event"
token = "{TOKEN}"
indexer_ack = true
ack_timeout = "600ms"
ack_poll_interval = "100ms"
max_events = 5"#,
        peer.url()
    ))
    .unwrap();
    let ctx = SinkContext {
        state_dir: dir.path().to_path_buf(),
    };
    let mut sink = HecSink::new("direct", &cfg, &ctx).unwrap();
    let health = tokio::time::timeout(Duration::from_secs(30), sink.healthcheck()).await;
    assert!(matches!(health, Ok(Ok(()))), "{health:?}");
    let batch = sample_batch(12);
    let first = tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch))
        .await
        .expect("bounded by ack_timeout");
    match first {
        Err(SinkError::Retryable(m)) => {
            assert!(m.contains("ack_timeout") && m.contains("12 events"), "{m}")
        }
        other => panic!("expected a retryable ack timeout, got {other:?}"),
    }
    assert!(peer.acknowledged().is_empty());
    peer.set_ack_delay(Duration::ZERO);
    let second = tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch))
        .await
        .expect("bounded");
    assert!(second.is_ok(), "{second:?}");
    let indexed = peer.indexed();
    let acked = peer.acknowledged();
    assert_eq!(indexed.len(), 12);
    assert!(indexed.values().all(|&c| c == 2), "sent twice: {indexed:?}");
    assert!(
        acked.values().all(|&c| c == 1) && acked.len() == 12,
        "{acked:?}"
    );
    assert_eq!(sink.dead_letter_count(), 0);
    assert!(peer.stats().violations.is_empty());
}

/// `examples/vbo-to-splunk.toml` stays a valid config.
#[test]
fn the_example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, include_str!("../fixtures/keys/test-only-ca.pem")).unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/vbo-to-splunk.toml"
    ))
    .unwrap()
    .replace("/tmp/veeam-sim-ca.pem", &ca.display().to_string());
    let env = |name: &str| match name {
        "SIM_PASSWORD" | "HEC_TOKEN" => Some("x".to_string()),
        _ => None,
    };
    let config =
        veeam_siem::config::Config::from_toml(&text, Path::new("vbo-to-splunk.toml"), &env);
    assert!(config.is_ok(), "{:?}", config.err().map(|e| e.to_string()));
}

/// Run once; every event must arrive exactly once. Returns the peer's counters.
async fn run_once_exactly(s: &Setup, label: &str) -> hec_peer::PeerStats {
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{label}: {}", text(&out));
    let dups = assert_complete(s, &HashSet::new());
    assert_eq!(dups, 0, "{label}: zero duplicates");
    let stats = s.peer.stats();
    eprintln!("{label}: {stats:?}");
    stats
}

/// Several batches wait for their indexer acknowledgement side by side (the in-flight
/// window), one poller asks about all of them, and nothing arrives twice; with
/// `in_flight_batches = 1` only one request ever waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_wait_for_their_acks_side_by_side() {
    for window in [4usize, 1] {
        let s = Setup::start(
            SimConfig {
                seed: 41,
                sessions: 4,
                events_per_session: 50,
                ..SimConfig::default()
            },
            PeerConfig {
                ack_enabled: true,
                ack_delay: Duration::from_millis(800),
                ..PeerConfig::default()
            },
            "page_size = 25",
            &format!(
                "indexer_ack = true\nack_poll_interval = \"100ms\"\nmax_events = 25\nin_flight_batches = {window}"
            ),
        )
        .await;
        let stats = run_once_exactly(&s, &format!("window {window}")).await;
        assert_eq!(stats.acks_reported_true, stats.ack_ids_issued);
        if window == 1 {
            assert_eq!(stats.max_pending_acks, 1, "one batch at a time");
        } else {
            assert!(
                stats.max_pending_acks >= 2,
                "batches overlapped while waiting for acks: {stats:?}"
            );
            assert!(stats.max_pending_acks as usize <= window, "{stats:?}");
        }
    }
}

/// Against a HEC far away (every answer takes 400 ms), the requests of consecutive
/// batches are in flight together, up to `in_flight_requests`; with
/// `in_flight_batches = 1` one at a time. Either way everything arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_batches_requests_overlap_against_a_far_hec() {
    for (window, requests) in [(16usize, 3u64), (1, 3)] {
        let s = Setup::start(
            SimConfig {
                seed: 44,
                sessions: 10,
                events_per_session: 6,
                ..SimConfig::default()
            },
            PeerConfig {
                answer_delay: Duration::from_millis(400),
                ..PeerConfig::default()
            },
            "page_size = 6",
            &format!("in_flight_requests = {requests}\nin_flight_batches = {window}"),
        )
        .await;
        let stats = run_once_exactly(&s, &format!("window {window}")).await;
        if window == 1 {
            assert_eq!(
                stats.max_concurrent_event_requests, 1,
                "one batch at a time"
            );
        } else {
            assert!(
                stats.max_concurrent_event_requests >= 2,
                "batches of one request each overlapped: {stats:?}"
            );
        }
        assert!(stats.max_concurrent_event_requests <= requests, "{stats:?}");
    }
}

/// Behind a load balancer with sticky sessions, the ack query must reach the indexer
/// that issued the ackIds: the sink sends the balancer's cookie back on every request of
/// its channel, so every ack query lands there and everything is confirmed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_keep_ack_queries_on_the_issuing_indexer() {
    let s = Setup::start(
        SimConfig {
            seed: 43,
            sessions: 3,
            events_per_session: 40,
            ..SimConfig::default()
        },
        PeerConfig {
            ack_enabled: true,
            ack_delay: Duration::from_millis(100),
            sticky_cookie: true,
            ..PeerConfig::default()
        },
        "page_size = 30",
        "indexer_ack = true\nack_poll_interval = \"100ms\"\nack_timeout = \"20s\"\nmax_events = 10",
    )
    .await;
    let out = s.run_once(TOKEN).await;
    assert!(out.status.success(), "{}", text(&out));
    let dups = assert_complete(&s, &HashSet::new());
    let stats = s.peer.stats();
    eprintln!("{stats:?}");
    assert_eq!(dups, 0);
    assert_eq!(
        stats.ack_queries_elsewhere, 0,
        "every ack query carried the balancer's cookie: {stats:?}"
    );
    assert_eq!(stats.acks_reported_true, stats.ack_ids_issued);
}

/// HEC restarts its ackId numbering (a Splunk restart, an idle-channel cleanup) and loses
/// what it had not acknowledged: ackIds are handed out again while earlier requests with
/// them are unconfirmed. No request may be confirmed by another one's `true`, in one
/// batch or across batches: every event reaches HEC's acknowledged store, and the
/// checkpoint never passes one that didn't.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_ids_handed_out_again_after_hec_restarts_lose_nothing() {
    for window in [1usize, 4] {
        let s = Setup::start(
            SimConfig {
                seed: 59,
                sessions: 3,
                events_per_session: 16,
                ..SimConfig::default()
            },
            PeerConfig {
                ack_enabled: true,
                ack_delay: Duration::from_millis(300),
                ack_restart_every: Some(3),
                ..PeerConfig::default()
            },
            "page_size = 8",
            &format!(
                "indexer_ack = true\nack_poll_interval = \"100ms\"\nack_timeout = \"2s\"\nmax_events = 2\nin_flight_batches = {window}"
            ),
        )
        .await;
        let (stop, monitor) = watch_checkpoint(&s);
        // Every batch is sent several times (restarts lose what HEC had not confirmed, and
        // the pipeline backs off between attempts): the daemon follows (it never gives a
        // batch up, as `--once` does after a few attempts) until HEC has acknowledged every
        // event, or 240 s.
        let mut daemon = tokio::task::block_in_place(|| {
            Daemon::spawn(&s.config, false, &[("TEST_HEC_TOKEN", TOKEN)], "restarts")
        });
        let expected = s.expected_ids();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let acked = s.peer.acknowledged();
            if expected.iter().all(|id| acked.contains_key(id)) {
                break;
            }
            assert!(
                daemon.alive(),
                "window {window}: the daemon died:\n{}",
                daemon.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "window {window}: not every event acknowledged after 240 s:\n{}",
                daemon.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let the last confirmations reach the checkpoint, then stop it as an operator would.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = tokio::task::block_in_place(|| daemon.terminate(Duration::from_secs(60)));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (_, problems) = monitor.await.unwrap();
        let err = daemon.stderr();
        assert!(status.success(), "window {window}: {status:?}\n{err}");
        assert!(problems.is_empty(), "window {window}: {problems:?}");
        let dups = assert_complete(&s, &HashSet::new());
        let stats = s.peer.stats();
        eprintln!("window {window}: {dups} duplicates; {stats:?}");
        assert!(
            stats.ack_restarts > 0 && stats.events_lost_on_restart > 0,
            "{stats:?}"
        );
        assert!(err.contains("handed out ackId"), "window {window}: {err}");
    }
}

/// A sink driven directly against `peer` (gzip, no indexer ack).
fn direct_sink(peer: &HecPeer, dir: &Path, extra: &str) -> veeam_siem::sinks::splunk_hec::HecSink {
    use veeam_siem::sinks::SinkContext;
    use veeam_siem::sinks::splunk_hec::{HecSink, HecSinkConfig};
    let cfg: HecSinkConfig = toml::from_str(&format!(
        "inputs = [\"vbo_main\"]\nendpoint = \"{}\"\ntoken = \"{TOKEN}\"\ncompression = \"gzip\"\nmax_events = 3\nmax_retries = 0\n{extra}",
        peer.url()
    ))
    .unwrap();
    let ctx = SinkContext {
        state_dir: dir.to_path_buf(),
    };
    HecSink::new("direct", &cfg, &ctx).unwrap()
}

fn numbered_batch(seq: u64, first: usize, n: usize) -> veeam_siem::sinks::Batch {
    let mut batch = sample_batch(first + n);
    batch.events.drain(..first);
    batch.seq = seq;
    batch
}

/// Per-event rejections (code 6) are believed only among acceptances: one bad event
/// among good ones goes to the dead-letter file, exactly; a proxy that strips
/// `Content-Encoding: gzip` (HEC then answers code 6 to everything) quarantines nothing,
/// the batch fails with an error naming the sink, the endpoint and the fix, and goes
/// through once the proxy is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_rejecting_everything_as_malformed_quarantines_nothing() {
    use veeam_siem::sinks::{Sink, SinkError};
    let bound = Duration::from_secs(30);

    // From the start: nothing was ever accepted, not even a batch of one event.
    let peer = HecPeer::start(PeerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = direct_sink(&peer, dir.path(), "");
    peer.set_strip_content_encoding(true);
    for batch in [numbered_batch(1, 0, 7), numbered_batch(2, 7, 1)] {
        let got = tokio::time::timeout(bound, sink.deliver(&batch))
            .await
            .unwrap();
        match got {
            Err(SinkError::Retryable(m)) => {
                assert!(
                    m.contains("sink `direct`")
                        && m.contains(&peer.url())
                        && m.contains("Content-Encoding")
                        && m.contains("sinks.direct.compression")
                        && !m.contains(TOKEN),
                    "{m}"
                );
            }
            other => panic!("expected a retryable receiver problem, got {other:?}"),
        }
    }
    assert_eq!(sink.dead_letter_count(), 0);
    assert!(!sink.dead_letter_path().exists());
    peer.set_strip_content_encoding(false);
    for batch in [numbered_batch(1, 0, 7), numbered_batch(2, 7, 1)] {
        let got = tokio::time::timeout(bound, sink.deliver(&batch))
            .await
            .unwrap();
        assert!(got.is_ok(), "{got:?}");
    }
    assert_eq!(peer.acknowledged().len(), 8);
    assert_eq!(sink.dead_letter_count(), 0);

    // One bad event among good ones: quarantined exactly; then the proxy breaks after
    // acceptances: nothing more is quarantined.
    let peer = HecPeer::start(PeerConfig {
        poison_ids: ["direct-4".to_string()].into(),
        ..PeerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = direct_sink(&peer, dir.path(), "");
    let got = tokio::time::timeout(bound, sink.deliver(&numbered_batch(1, 0, 10)))
        .await
        .unwrap();
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(sink.dead_letter_count(), 1);
    let dead = harness::read_ndjson(sink.dead_letter_path());
    assert_eq!(dead[0]["event"]["event"]["id"], "direct-4");
    assert_eq!(peer.acknowledged().len(), 9);
    peer.set_strip_content_encoding(true);
    let batch = numbered_batch(2, 10, 6);
    let got = tokio::time::timeout(bound, sink.deliver(&batch))
        .await
        .unwrap();
    assert!(matches!(got, Err(SinkError::Retryable(_))), "{got:?}");
    assert_eq!(sink.dead_letter_count(), 1, "nothing more quarantined");
    peer.set_strip_content_encoding(false);
    let got = tokio::time::timeout(bound, sink.deliver(&batch))
        .await
        .unwrap();
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(peer.acknowledged().len(), 15);
    assert_eq!(sink.dead_letter_count(), 1);
}

/// An HTTP 200 without a HEC reply (a balancer or WAF page) from an endpoint that has
/// answered like HEC is retried like a 5xx, nothing acknowledged; from one that never
/// did, it stops the sink with the "wrong port" diagnosis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_200_page_is_retried_and_a_wrong_port_stops() {
    use veeam_siem::sinks::{Sink, SinkError};
    let bound = Duration::from_secs(30);
    for ack in [false, true] {
        let peer = HecPeer::start(PeerConfig {
            ack_enabled: ack,
            ..PeerConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("indexer_ack = {ack}\nack_poll_interval = \"50ms\"");
        let mut sink = direct_sink(&peer, dir.path(), &extra);
        peer.set_waf_pages(1);
        let got = tokio::time::timeout(bound, sink.deliver(&numbered_batch(1, 0, 2)))
            .await
            .unwrap();
        match got {
            Err(SinkError::Fatal(m)) => assert!(m.contains("not Splunk Web"), "{m}"),
            other => panic!("never answered like HEC: expected Fatal, got {other:?}"),
        }
        let health = tokio::time::timeout(bound, sink.healthcheck())
            .await
            .unwrap();
        assert!(health.is_ok(), "{health:?}");
        let batch = numbered_batch(2, 2, 7);
        peer.set_waf_pages(2);
        let got = tokio::time::timeout(bound, sink.deliver(&batch))
            .await
            .unwrap();
        match got {
            Err(SinkError::Retryable(m)) => assert!(m.contains("without a HEC reply"), "{m}"),
            other => panic!("a passing page: expected Retryable, got {other:?}"),
        }
        let got = tokio::time::timeout(bound, sink.deliver(&batch))
            .await
            .unwrap();
        assert!(got.is_ok(), "{got:?}");
        let acked = peer.acknowledged();
        assert!(
            (2..9).all(|i| acked.contains_key(&format!("direct-{i}"))),
            "{acked:?}"
        );
        assert_eq!(peer.stats().waf_answers, 3);
    }
}

/// `check` beside a running daemon builds the sink on the daemon's channel: its probe of
/// indexer acknowledgement asks on a fresh channel of its own, so it never takes the
/// `true` (HEC reports one once) of a request the daemon waits for, which would then be
/// sent again after `ack_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_probe_never_takes_a_running_sinks_true() {
    use veeam_siem::sinks::Sink;
    let bound = Duration::from_secs(30);
    let peer = HecPeer::start(PeerConfig {
        ack_enabled: true,
        ack_delay: Duration::from_millis(200),
        ..PeerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The running sink asks late: the probes have the time to ask before it.
    let extra = "indexer_ack = true\nack_poll_interval = \"1s\"\nack_timeout = \"3s\"";
    let mut running = direct_sink(&peer, dir.path(), extra);
    let mut check = direct_sink(&peer, dir.path(), extra);
    assert_eq!(
        running.channel(),
        check.channel(),
        "check uses the daemon's channel"
    );
    let batch = numbered_batch(1, 0, 2);
    let probes = async {
        for _ in 0..12 {
            let health = check.healthcheck().await;
            assert!(health.is_ok(), "{health:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (delivered, ()) = tokio::time::timeout(bound, async {
        tokio::join!(running.deliver(&batch), probes)
    })
    .await
    .unwrap();
    assert!(delivered.is_ok(), "{delivered:?}");
    let stats = peer.stats();
    assert_eq!(stats.ack_ids_issued, 1, "sent once: {stats:?}");
    assert_eq!(stats.acks_reported_true, 1, "{stats:?}");
    assert!(peer.indexed().values().all(|&c| c == 1));
    assert_eq!(peer.acknowledged().len(), 2);
}

/// A minimal HEC receiver that refuses bodies it can't parse with a plain 400 (no HEC
/// reply): the token probe (an empty POST) is no verdict on the token, so the sink starts
/// and delivers; its events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_400_to_the_empty_token_probe_does_not_stop_the_sink() {
    use axum::response::IntoResponse;
    use std::sync::{Arc, Mutex};
    use veeam_siem::sinks::splunk_hec::{HecSink, HecSinkConfig};
    use veeam_siem::sinks::{Sink, SinkContext};
    // Requests with a body.
    let received = Arc::new(Mutex::new(0usize));
    let seen = received.clone();
    let app = axum::Router::new()
        .route(
            "/services/collector/health",
            axum::routing::get(|| async { r#"{"text":"HEC is healthy","code":17}"# }),
        )
        .route(
            "/services/collector/event",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    if body.is_empty() {
                        return (axum::http::StatusCode::BAD_REQUEST, "bad request")
                            .into_response();
                    }
                    *seen.lock().unwrap() += 1;
                    r#"{"text":"Success","code":0}"#.into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let cfg: HecSinkConfig = toml::from_str(&format!(
        "inputs = [\"vbo_main\"]\nendpoint = \"{url}\"\ntoken = \"{TOKEN}\"\nmax_retries = 0\n"
    ))
    .unwrap();
    let ctx = SinkContext {
        state_dir: dir.path().to_path_buf(),
    };
    let mut sink = HecSink::new("plain", &cfg, &ctx).unwrap();
    tokio::time::timeout(Duration::from_secs(30), sink.healthcheck())
        .await
        .expect("bounded")
        .unwrap_or_else(|e| panic!("a plain 400 to an empty POST is no verdict: {e}"));
    let batch = sample_batch(5);
    tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch))
        .await
        .expect("bounded")
        .unwrap_or_else(|e| panic!("delivery: {e}"));
    assert!(*received.lock().unwrap() > 0);
    server.abort();
}

/// `run --once` with HEC down (nothing listens): each attempt runs the sink's own retries,
/// and no new attempt starts 30 s after the first, so the run exits 1 within the bound
/// (it used to take 6 attempts, about 5 minutes), with no checkpoint written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_run_with_hec_down_exits_1_in_bounded_time() {
    let env = Env::start(SimConfig::default()).await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = env
        .config()
        .table(env.vbo_source())
        .table(Table::hec(
            "splunk",
            &["vbo_test"],
            &format!("http://127.0.0.1:{dead_port}"),
        ))
        .write(&env.dir.path().join("config.toml"));
    let out = run_bounded(&config, TOKEN, RUN_TIMEOUT).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gave up after"), "{stderr}");
    assert!(!env.state_dir().join("vbo_test.checkpoint.json").exists());
}
