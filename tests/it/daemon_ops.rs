//! The daemon around the pipeline, end to end with the binary and the simulator:
//! `/metrics` (parsed with a Prometheus text-format parser, counters equal to what was
//! delivered), `/health`, `/ready`; hot reload on SIGHUP (a bad config keeps the old
//! pipeline, a good one takes over without loss or repeats); `backfill` (window, its own
//! state, live checkpoints untouched, SIGTERM mid-way then resume).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use veeam_siem_simulator::SimConfig;

use crate::support::config::Table;
use crate::support::harness;
use harness::{Env, Reaped, id_counts, read_ndjson, run_bin_async, s, text};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_daemon(config: &Path, log: &Path) -> Reaped {
    Reaped::spawn(
        harness::bin()
            .args(["run", "--config", &config.display().to_string()])
            .env("TEST_VBO_PASSWORD", harness::PASSWORD)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    )
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// SIGTERM and wait (bounded) for a clean exit.
async fn stop(mut child: Reaped) -> std::process::ExitStatus {
    signal(&child, "-TERM");
    tokio::task::spawn_blocking(move || {
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("the daemon did not exit within 60 s of SIGTERM");
    })
    .await
    .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client = veeam_siem::http::build_client(
        "test",
        &veeam_siem::config::common::TlsConfig::default(),
        Duration::from_secs(5),
    )
    .unwrap();
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// The usual config (VB365 source with `source_extra`, file sink) with the ops endpoint
/// on `127.0.0.1:<port>`.
fn config_with_ops(env: &Env, source_extra: &str, port: u16) -> PathBuf {
    env.config()
        .table(Table::named("ops").set("listen", format!("127.0.0.1:{port}")))
        .table(env.vbo_source().set("api_version", "v8").raw(source_extra))
        .table(env.file_sink())
        .write(&env.dir.path().join("config.toml"))
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of the sample `name` with exactly these labels.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn parse_metrics(body: &str) -> prometheus_parse::Scrape {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_ready_report_what_was_delivered() {
    let env = Env::start(SimConfig {
        seed: 21,
        sessions: 12,
        events_per_session: 25,
        ..SimConfig::default()
    })
    .await;
    let port = free_port();
    let cfg = config_with_ops(&env, "page_size = 40", port);
    let log = env.dir.path().join("daemon.log");
    let child = spawn_daemon(&cfg, &log);
    let base = format!("http://127.0.0.1:{port}");
    let expected = env.sim.event_count();

    wait_for("/health", Duration::from_secs(30), async || {
        get(&format!("{base}/health")).await.map(|r| r.0) == Some(200)
    })
    .await;
    wait_for(
        "every event in the file",
        Duration::from_secs(60),
        async || env.events().len() >= expected,
    )
    .await;
    wait_for("/ready", Duration::from_secs(30), async || {
        get(&format!("{base}/ready")).await.map(|r| r.0) == Some(200)
    })
    .await;
    // The checkpoint follows the file by one tracker round; wait until the counters settle.
    let mut body = String::new();
    wait_for(
        "acknowledged counter",
        Duration::from_secs(30),
        async || {
            body = get(&format!("{base}/metrics")).await.unwrap_or_default().1;
            let scrape = parse_metrics(&body);
            sample(
                &scrape,
                "veeam_siem_source_events_acknowledged_total",
                &[("source", "vbo_test")],
            ) == Some(expected as f64)
        },
    )
    .await;

    let delivered_in_file = env.events().len() as f64;
    assert_eq!(delivered_in_file, expected as f64);
    let scrape = parse_metrics(&body);
    let src = [("source", "vbo_test")];
    assert_eq!(
        sample(
            &scrape,
            "veeam_siem_sink_events_delivered_total",
            &[("sink", "archive"), ("source", "vbo_test")]
        ),
        Some(delivered_in_file),
        "{body}"
    );
    assert_eq!(
        sample(&scrape, "veeam_siem_events_mapped_total", &src),
        Some(delivered_in_file)
    );
    assert_eq!(
        sample(&scrape, "veeam_siem_source_records_read_total", &src),
        Some(delivered_in_file)
    );
    // There from the start, at 0 (an alert on its rate needs the series).
    assert_eq!(
        sample(&scrape, "veeam_siem_sink_events_failed_total", &[]),
        Some(0.0),
        "no failures"
    );
    assert!(
        sample(
            &scrape,
            "veeam_siem_source_token_requests_total",
            &[("source", "vbo_test"), ("grant", "password")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        sample(
            &scrape,
            "veeam_siem_http_responses_total",
            &[("status", "200")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        sample(&scrape, "veeam_siem_checkpoints_written_total", &src).is_some_and(|v| v >= 1.0)
    );
    assert!(
        sample(
            &scrape,
            "veeam_siem_source_last_successful_poll_timestamp_seconds",
            &src
        )
        .is_some_and(|v| v > 1.7e9)
    );
    assert_eq!(
        sample(
            &scrape,
            "veeam_siem_component_ready",
            &[("kind", "sink"), ("id", "archive")]
        ),
        Some(1.0)
    );
    assert!(body.contains("veeam_siem_sink_batch_delivery_seconds_bucket"));
    assert!(!body.contains(harness::PASSWORD));

    let status = stop(child).await;
    assert_eq!(status.code(), Some(0), "{}", log_text(&log));
    let log = log_text(&log);
    assert!(
        log.contains("vbo_test (vbo) -> archive (file)"),
        "startup line lists the pipeline: {log}"
    );
    assert!(!log.contains(harness::PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_and_names_the_source_while_login_fails() {
    let env = Env::start(SimConfig {
        seed: 22,
        sessions: 2,
        events_per_session: 2,
        ..SimConfig::default()
    })
    .await;
    let port = free_port();
    let cfg = config_with_ops(&env, "", port);
    let log = env.dir.path().join("daemon.log");
    let child = Reaped::spawn(
        harness::bin()
            .args(["run", "--config", &cfg.display().to_string()])
            .env("TEST_VBO_PASSWORD", "wrong-password")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    wait_for("/ready answers", Duration::from_secs(30), async || {
        ready = get(&format!("{base}/ready")).await;
        ready.is_some()
    })
    .await;
    // Give the first (failing) poll cycle time to happen, then ask again.
    wait_for("a failed poll", Duration::from_secs(30), async || {
        log_text(&log).contains("login to")
    })
    .await;
    let (status, body) = get(&format!("{base}/ready")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("source `vbo_test`"), "{body}");
    assert_eq!(
        get(&format!("{base}/health")).await.map(|r| r.0),
        Some(200),
        "alive though not ready"
    );
    let scrape = parse_metrics(&get(&format!("{base}/metrics")).await.unwrap().1);
    assert!(
        sample(
            &scrape,
            "veeam_siem_source_poll_failures_total",
            &[("source", "vbo_test")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    let status = stop(child).await;
    assert_eq!(status.code(), Some(0));
}

/// A checkpoint that cannot be written (here: its temp file's name is taken by a
/// directory, as good as a full or read-only state directory) stops nothing: the daemon
/// keeps running, says so in the log and on `/ready`, delivers no further than its window
/// and writes the checkpoint once it can. The checkpoint carries the newest event time, so after a restart the lag metrics
/// are there before any new event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_is_retried_and_the_lag_survives_a_restart() {
    let env = Env::start(SimConfig {
        seed: 23,
        sessions: 3,
        events_per_session: 4,
        ..SimConfig::default()
    })
    .await;
    let state = env.state_dir();
    let blocker = state.join(".vbo_test.checkpoint.json.tmp");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let port = free_port();
    let cfg = config_with_ops(&env, "", port);
    let log = env.dir.path().join("daemon.log");
    let child = spawn_daemon(&cfg, &log);
    let base = format!("http://127.0.0.1:{port}");
    let expected = env.sim.event_count();

    let start = Instant::now();
    while !log_text(&log).contains("cannot write checkpoint; retrying")
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        log_text(&log).contains("cannot write checkpoint; retrying"),
        "the failed write in the log: {}",
        log_text(&log)
    );
    // Delivered, not checkpointed: the sink's window waits for the checkpoint.
    assert!(!env.events().is_empty());
    let (status, body) = get(&format!("{base}/ready")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("checkpoint cannot be written"), "{body}");
    let checkpoint = state.join("vbo_test.checkpoint.json");
    assert!(!checkpoint.exists());

    std::fs::remove_dir_all(&blocker).unwrap();
    wait_for(
        "every event in the file",
        Duration::from_secs(60),
        async || env.events().len() >= expected && checkpoint.exists(),
    )
    .await;
    wait_for("/ready", Duration::from_secs(30), async || {
        get(&format!("{base}/ready")).await.map(|r| r.0) == Some(200)
    })
    .await;
    let status = stop(child).await;
    assert_eq!(status.code(), Some(0), "{}", log_text(&log));
    assert!(log_text(&log).contains("checkpoints are written again"));
    let events = env.events();
    assert_eq!(events.len(), expected, "each event once");

    // The newest event time is in the file and back in the metrics after a restart.
    let newest = events
        .iter()
        .filter_map(|e| e["@timestamp"].as_str())
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis()
        })
        .max()
        .unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert!(stored["newest_event"].is_string(), "{stored}");
    let log2 = env.dir.path().join("daemon2.log");
    let child = spawn_daemon(&cfg, &log2);
    let mut value = None;
    wait_for("the restored lag", Duration::from_secs(30), async || {
        let Some((_, body)) = get(&format!("{base}/metrics")).await else {
            return false;
        };
        let scrape = parse_metrics(&body);
        value = sample(
            &scrape,
            "veeam_siem_checkpoint_event_timestamp_seconds",
            &[("source", "vbo_test")],
        );
        value.is_some_and(|v| v > 0.0)
            && sample(
                &scrape,
                "veeam_siem_checkpoint_lag_seconds",
                &[("source", "vbo_test")],
            )
            .is_some()
    })
    .await;
    let value = value.unwrap();
    assert!(
        (value - newest as f64 / 1000.0).abs() < 0.002,
        "{value} vs {newest} ms"
    );
    let status = stop(child).await;
    assert_eq!(status.code(), Some(0), "{}", log_text(&log2));
    assert_eq!(env.events().len(), expected, "nothing sent again");
}

fn write_sink_config(env: &Env, sink_id: &str, out: &Path) -> PathBuf {
    env.config()
        .table(
            env.vbo_source()
                .set("api_version", "v8")
                .set("page_size", 10),
        )
        .table(Table::file(sink_id, &["vbo_test"], out))
        .write(&env.dir.path().join("config.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_old_config_on_error_and_switches_without_loss() {
    let env = Env::start(SimConfig {
        seed: 23,
        sessions: 5,
        events_per_session: 10,
        live_interval: Some(Duration::from_millis(200)),
        ..SimConfig::default()
    })
    .await;
    let out1 = env.dir.path().join("out1.ndjson");
    let out2 = env.dir.path().join("out2.ndjson");
    let cfg = write_sink_config(&env, "first", &out1);
    let log = env.dir.path().join("daemon.log");
    let child = spawn_daemon(&cfg, &log);

    wait_for("first sink receives", Duration::from_secs(30), async || {
        read_ndjson(&out1).len() >= 50
    })
    .await;

    // A broken config: logged, the running pipeline keeps going.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[sinks.first]\nbogus = 1\n")).unwrap();
    signal(&child, "-HUP");
    wait_for("reload error logged", Duration::from_secs(30), async || {
        log_text(&log).contains("reload failed")
    })
    .await;
    let before = read_ndjson(&out1).len();
    wait_for(
        "old pipeline still delivering",
        Duration::from_secs(30),
        async || read_ndjson(&out1).len() > before,
    )
    .await;

    // A config that is valid but can't start (a new source whose checkpoint is corrupt):
    // the daemon goes back to the configuration that ran before, instead of exiting.
    std::fs::write(env.state_dir().join("vbo_new.checkpoint.json"), "{not json").unwrap();
    env.config()
        .table(
            env.vbo_source()
                .set("api_version", "v8")
                .set("page_size", 10),
        )
        .table(env.vbo_source_as("vbo_new"))
        .table(Table::file("first", &["vbo_test", "vbo_new"], &out1))
        .write(&cfg);
    signal(&child, "-HUP");
    wait_for("going back logged", Duration::from_secs(40), async || {
        log_text(&log).contains("going back to the one that ran before it")
    })
    .await;
    let before = read_ndjson(&out1).len();
    wait_for(
        "the previous configuration delivering again",
        Duration::from_secs(30),
        async || read_ndjson(&out1).len() > before,
    )
    .await;
    std::fs::remove_file(env.state_dir().join("vbo_new.checkpoint.json")).unwrap();

    // A good new config: the first sink drains, the second takes over from the checkpoint.
    let new = write_sink_config(&env, "second", &out2);
    assert_eq!(new, cfg);
    signal(&child, "-HUP");
    wait_for(
        "second sink receives",
        Duration::from_secs(30),
        async || {
            !read_ndjson(&out2).is_empty() && log_text(&log).contains("configuration reloaded")
        },
    )
    .await;
    let status = stop(child).await;
    assert_eq!(status.code(), Some(0), "{}", log_text(&log));

    // Catch up with what the live simulator added since, then compare with everything.
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let mut all = read_ndjson(&out1);
    let first = all.len();
    all.extend(read_ndjson(&out2));
    let counts = id_counts(&all);
    let dups: usize = counts.values().map(|c| c - 1).sum();
    assert_eq!(dups, 0, "a reload drains and resumes: no repeats");
    let delivered: HashSet<String> = counts.into_keys().collect();
    let known: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let missing = known.difference(&delivered).count();
    // The simulator may add events after the catch-up run listed its sessions.
    assert!(
        delivered.is_subset(&known) && missing <= 20,
        "{missing} events missing of {} (first sink got {first})",
        known.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resends_a_window_and_never_touches_live_checkpoints() {
    let env = Env::start(SimConfig {
        seed: 24,
        sessions: 30,
        events_per_session: 20,
        latency: Duration::from_millis(25),
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "page_size = 20");
    let cfg_s = cfg.display().to_string();
    let out = run_bin_async(s(&["run", "--config", &cfg_s, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let live = env.events();
    let expected = env.sim.event_count();
    assert_eq!(live.len(), expected);
    let checkpoint = env.state_dir().join("vbo_test.checkpoint.json");
    let live_state = std::fs::read(&checkpoint).unwrap();

    // SIGTERM mid-backfill: exit 1 (not complete), says how to resume, live checkpoint
    // byte-identical.
    let log = env.dir.path().join("backfill.log");
    let child = Reaped::spawn(
        harness::bin()
            .args(["backfill", "--config", &cfg_s, "--since", "2000-01-01"])
            .env("TEST_VBO_PASSWORD", harness::PASSWORD)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    wait_for("backfill delivering", Duration::from_secs(30), async || {
        env.events().len() > expected + 40
    })
    .await;
    let status = stop(child).await;
    assert_eq!(status.code(), Some(1), "{}", log_text(&log));
    let after_stop = env.events().len();
    assert!(
        after_stop < 2 * expected,
        "the backfill was interrupted before the end ({after_stop})"
    );
    assert!(
        log_text(&log).contains(&format!(
            "to resume where it stopped, run: veeam-siem backfill --config {cfg_s} --since 2000-01-01T00:00:00Z"
        )),
        "{}",
        log_text(&log)
    );
    assert_eq!(std::fs::read(&checkpoint).unwrap(), live_state);
    let backfill_root = env.state_dir().join("backfill");
    assert_eq!(std::fs::read_dir(&backfill_root).unwrap().count(), 1);

    // Resume: completes, removes its state, re-sent every event once more (at most one
    // batch twice, from the interruption).
    let out = run_bin_async(
        s(&["backfill", "--config", &cfg_s, "--since", "2000-01-01"]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed=true"));
    assert_eq!(std::fs::read(&checkpoint).unwrap(), live_state);
    assert_eq!(std::fs::read_dir(&backfill_root).unwrap().count(), 0);
    let events = env.events();
    let counts = id_counts(&events);
    assert_eq!(counts.len(), expected);
    let extra = events.len() - 2 * expected;
    assert!(extra <= 20, "{extra} repeats beyond one batch");
    assert!(counts.values().all(|&c| c >= 2), "every event backfilled");

    // A bounded window sends exactly the events inside it.
    let ts = |e: &serde_json::Value| -> chrono::DateTime<chrono::Utc> {
        e["@timestamp"].as_str().unwrap().parse().unwrap()
    };
    let mut times: Vec<_> = live.iter().map(ts).collect();
    times.sort();
    let (since, until) = (times[times.len() / 4], times[times.len() / 2]);
    let in_window = times
        .iter()
        .filter(|t| **t >= since && **t <= until)
        .count();
    let (since_s, until_s) = (since.to_rfc3339(), until.to_rfc3339());
    let out_file = env.out_file();
    std::fs::remove_file(&out_file).unwrap();
    let out = run_bin_async(
        s(&[
            "backfill", "--config", &cfg_s, "--since", &since_s, "--until", &until_s,
        ]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let windowed = env.events();
    assert_eq!(windowed.len(), in_window);
    assert!(windowed.iter().all(|e| (since..=until).contains(&ts(e))));
    assert_eq!(std::fs::read(&checkpoint).unwrap(), live_state);

    // Bad flags are usage errors naming the flag.
    let out = run_bin_async(
        s(&[
            "backfill",
            "--config",
            &cfg_s,
            "--since",
            "2000-01-01",
            "--sources",
            "nope",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sources"));
}

/// A stdout sink whose reader stopped reading (the pipe is full, a write blocks for
/// good): SIGTERM still ends the daemon at its drain timeout with exit 0, instead of the
/// blocked write keeping the process alive; the abandoned batches are sent by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_stdout_does_not_keep_the_daemon_from_exiting() {
    let env = Env::start(SimConfig {
        seed: 29,
        sessions: 6,
        events_per_session: 40,
        ..SimConfig::default()
    })
    .await;
    let cfg = env
        .config()
        .table(env.vbo_source().set("api_version", "v8"))
        .table(Table::stdout("con", &[harness::SOURCE_ID]))
        .write(&env.dir.path().join("config.toml"));
    let log = env.dir.path().join("daemon.log");
    // stdout is a pipe this test never reads: 240 events of ~1.5 kB fill its 64 KiB.
    let mut child = Reaped::spawn(
        harness::bin()
            .args(["run", "--config", &cfg.display().to_string()])
            .env("TEST_VBO_PASSWORD", harness::PASSWORD)
            .env("VEEAM_SIEM_DRAIN_TIMEOUT", "2s")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let _unread = child.stdout.take();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running: {}",
        log_text(&log)
    );
    let start = Instant::now();
    let status = stop(child).await;
    assert_eq!(status.code(), Some(0), "{}", log_text(&log));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "exited {:?} after SIGTERM (drain timeout 2 s)",
        start.elapsed()
    );
    assert!(
        log_text(&log).contains("drain timeout reached"),
        "the write was still blocked at the drain timeout: {}",
        log_text(&log)
    );
}
