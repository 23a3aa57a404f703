//! End to end for VB365: simulator → `veeam-siem run` (the real binary) → file sink.
//!
//! Covers the delivery guarantees of the vertical slice: exactly once over repeated
//! `--once` runs despite short token lifetimes and injected 503s, only new events after
//! live activity, all three API versions, `kill -9` at random points, and schema validity
//! of everything written.

use std::collections::HashSet;
use std::time::Duration;

use veeam_siem_simulator::{SimConfig, Vanish};

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::harness;
use harness::{Env, id_counts, run_bin_async, s, text};

fn assert_all_valid(events: &[serde_json::Value]) {
    for e in events {
        event_schema::assert_valid_event(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_delivers_everything_exactly_once_then_only_new_events() {
    let env = Env::start(SimConfig {
        seed: 7,
        sessions: 25,
        // ~2 event pages per session at page_size 50: with the latency below the run
        // spans several 3-second token lifetimes.
        events_per_session: 80,
        token_ttl: Duration::from_secs(3),
        error_rate: 0.05,
        latency: Duration::from_millis(60),
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "page_size = 50\nmax_retries = 10");
    let cfg = cfg.display().to_string();

    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    let counts = id_counts(&events);
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    assert_eq!(events.len(), expected.len(), "every event exactly once");
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(counts.values().all(|&c| c == 1));
    assert_all_valid(&events);
    let stats = env.sim.stats();
    eprintln!("simulator stats after the first run: {stats:?}");
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(stats.injected_errors > 0, "fault injection was active");
    assert!(stats.refreshes >= 1, "the token was refreshed: {stats:?}");
    assert!(
        stats.password_logins <= 2,
        "one shared token per source, refreshed, not a login storm: {stats:?}"
    );

    // A second run finds nothing new.
    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env.events().len(),
        expected.len(),
        "second run re-sent events"
    );

    // Live activity: working sessions gain events, some stop, new sessions appear.
    for _ in 0..4 {
        env.sim.tick();
    }
    let now: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let new: HashSet<String> = now.difference(&expected).cloned().collect();
    assert!(!new.is_empty());
    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    let counts = id_counts(&events);
    assert_eq!(events.len(), now.len(), "only the new events were added");
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), now);
    assert_all_valid(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v6_and_v7_deliver_everything() {
    for version in ["v6", "v7"] {
        let env = Env::start(SimConfig {
            seed: 11,
            sessions: 8,
            events_per_session: 12,
            ..SimConfig::default()
        })
        .await;
        let cfg = env.write_config(version, "page_size = 5\nkeep_original = true");
        let out = run_bin_async(
            s(&["run", "--config", &cfg.display().to_string(), "--once"]),
            vec![],
        )
        .await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        let events = env.events();
        let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
        assert_eq!(events.len(), expected.len(), "{version}");
        assert_eq!(id_counts(&events).len(), expected.len(), "{version}");
        assert_all_valid(&events);
        assert!(
            events.iter().all(|e| e["event"]["original"].is_string()),
            "keep_original keeps the raw record"
        );
        let stats = env.sim.stats();
        assert!(
            stats.violations.is_empty(),
            "{version}: {:?}",
            stats.violations
        );
    }
}

/// `kill -9` at three points of a run, restart each time: nothing lost, nothing torn,
/// duplicates bounded by one in-flight batch per crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_loses_nothing() {
    let env = Env::start(SimConfig {
        seed: 3,
        sessions: 40,
        events_per_session: 60,
        latency: Duration::from_millis(25),
        ..SimConfig::default()
    })
    .await;
    let page = 50;
    let cfg = env.write_config("v8", &format!("page_size = {page}"));
    let cfg_s = cfg.display().to_string();
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let mut kills = 0;
    for wait_ms in [700u64, 1300, 1900] {
        let cfg_s = cfg_s.clone();
        let killed = tokio::task::spawn_blocking(move || {
            let mut child = harness::bin()
                .args(["run", "--config", &cfg_s, "--once"])
                .env("TEST_VBO_PASSWORD", harness::PASSWORD)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(wait_ms));
            let still_running = child.try_wait().unwrap().is_none();
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            still_running
        })
        .await
        .unwrap();
        if killed {
            kills += 1;
        }
    }
    assert!(
        kills >= 1,
        "the run finished before any kill; make it longer"
    );
    let out = run_bin_async(s(&["run", "--config", &cfg_s, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));

    let events = env.events(); // panics on a torn line
    let counts = id_counts(&events);
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, expected, "no event lost");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("kills: {kills}, duplicates: {duplicates}");
    assert!(
        duplicates <= kills * page,
        "{duplicates} duplicates after {kills} kills exceeds one batch ({page}) per crash"
    );
    assert_all_valid(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_clearly_without_leaking_it() {
    let env = Env::start(SimConfig::default()).await;
    let cfg = env.write_config("v8", "");
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![("TEST_VBO_PASSWORD".into(), "wrong-Pw-991".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vbo_test") && err.contains("svc-siem"),
        "{err}"
    );
    assert!(err.contains("password"), "says what to check: {err}");
    assert!(!err.contains("wrong-Pw-991"), "password leaked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_never_contain_secrets() {
    let env = Env::start(SimConfig {
        sessions: 3,
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "");
    let out = run_bin_async(
        s(&[
            "--log-level",
            "trace",
            "run",
            "--config",
            &cfg.display().to_string(),
            "--once",
        ]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains(harness::PASSWORD), "password in output");
    assert!(!all.to_lowercase().contains("bearer "), "token in output");
    assert!(!all.contains("access_token"), "token response in output");
}

/// Tokens revoked mid-run (server restart): 401 → refresh (or re-login when the refresh
/// token is gone too) → the same page again; nothing skipped, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_mid_run_are_renewed_and_the_page_resumed() {
    for revoke_refresh in [false, true] {
        let env = Env::start(SimConfig {
            seed: 21,
            sessions: 12,
            events_per_session: 20,
            latency: Duration::from_millis(40),
            ..SimConfig::default()
        })
        .await;
        let cfg = env.write_config("v8", "page_size = 10");
        let sim = env.sim.clone();
        let revoker = tokio::spawn(async move {
            // Bounded: at most 40 revocations, 150 ms apart.
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                sim.revoke_tokens(revoke_refresh);
            }
        });
        let out = run_bin_async(
            s(&["run", "--config", &cfg.display().to_string(), "--once"]),
            vec![],
        )
        .await;
        revoker.abort();
        assert!(out.status.success(), "{}", text(&out));
        let events = env.events();
        let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
        assert_eq!(events.len(), expected.len(), "exactly once");
        assert_eq!(id_counts(&events).len(), expected.len());
        let stats = env.sim.stats();
        assert!(stats.unauthorized > 0, "tokens were rejected: {stats:?}");
        if revoke_refresh {
            assert!(
                stats.password_logins >= 2,
                "re-login after refresh failed: {stats:?}"
            );
        } else {
            assert!(stats.refreshes >= 1, "refresh grant used: {stats:?}");
        }
        assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    }
}

/// Two sources on one server log in at the same moment: VB365 throttles `/token`
/// (1/s here), the second login gets 429 + Retry-After, waits, and both sources deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_throttle_429_is_waited_out() {
    use veeam_siem_simulator::Throttle;
    let env = Env::start(SimConfig {
        seed: 5,
        sessions: 4,
        events_per_session: 5,
        throttle: Some(Throttle {
            per_second: 1,
            per_minute: 100,
            per_hour: 1500,
            exempt_loopback: false,
        }),
        ..SimConfig::default()
    })
    .await;
    // Two sources on the same server, read by the same sink.
    let cfg = env
        .config()
        .table(env.vbo_source().set("api_version", "v8"))
        .table(env.vbo_source_as("vbo_second").set("api_version", "v8"))
        .table(Table::file(
            "archive",
            &["vbo_test", "vbo_second"],
            &env.out_file(),
        ))
        .write(&env.dir.path().join("config.toml"));
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stats = env.sim.stats();
    assert!(stats.throttled >= 1, "a login was throttled: {stats:?}");
    let events = env.events();
    let n = env.sim.event_count();
    for source in ["vbo_test", "vbo_second"] {
        let ids: HashSet<String> = events
            .iter()
            .filter(|e| e["labels"]["source_id"] == source)
            .map(harness::event_id)
            .collect();
        assert_eq!(ids.len(), n, "{source} delivered everything");
    }
    assert_eq!(events.len(), 2 * n, "no duplicates");
}

/// The simulator's certificate is self-signed: without `tls.ca_file` the run must fail
/// with a message about the certificate; with `insecure_skip_verify` it works (and warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trust_is_enforced_unless_explicitly_disabled() {
    let env = Env::start(SimConfig {
        sessions: 2,
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "");
    let with_ca = std::fs::read_to_string(&cfg).unwrap();
    let ca_line = with_ca
        .lines()
        .find(|l| l.starts_with("tls = "))
        .unwrap()
        .to_string();

    std::fs::write(&cfg, with_ca.replace(&ca_line, "")).unwrap();
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("vbo_test") && err.contains("certificate"),
        "{err}"
    );

    std::fs::write(
        &cfg,
        with_ca.replace(&ca_line, "tls = { insecure_skip_verify = true }"),
    )
    .unwrap();
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("insecure_skip_verify"));
    assert_eq!(env.events().len(), env.sim.event_count());
}

/// SIGTERM during a live run: exit 0 after draining; the checkpoint covers exactly what was
/// delivered, so a later `--once` delivers the rest without repeating anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_checkpoints_and_exits_zero() {
    let env = Env::start(SimConfig {
        seed: 9,
        sessions: 30,
        events_per_session: 40,
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "page_size = 20");
    let cfg_s = cfg.display().to_string();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = harness::Reaped::spawn(
            harness::bin()
                .args(["run", "--config", &cfg_s])
                .env("TEST_VBO_PASSWORD", harness::PASSWORD)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        std::thread::sleep(Duration::from_millis(1200));
        let pid = child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        // Bounded wait: the drain timeout is 30 s; the run must end well before 60 s.
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    let status = status.expect("the daemon exited after SIGTERM");
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert!(
        env.state_dir().join("vbo_test.checkpoint.json").exists(),
        "checkpoint written"
    );
    let first = env.events().len();
    let expected = env.sim.event_count();
    assert!(first > 0, "something was delivered before SIGTERM");

    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    assert_eq!(events.len(), expected, "rest delivered, nothing repeated");
    assert_eq!(id_counts(&events).len(), expected);
}

/// A corrupt checkpoint stops the run with exit 1 and names the file; it is not reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_is_a_clear_error() {
    let env = Env::start(SimConfig {
        sessions: 2,
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "");
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let cp = env.state_dir().join("vbo_test.checkpoint.json");
    std::fs::write(&cp, "{ this is not json").unwrap();
    let out = run_bin_async(
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vbo_test.checkpoint.json") && err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&cp).unwrap(),
        "{ this is not json",
        "left untouched"
    );
    assert!(
        env.events().is_empty(),
        "nothing shipped from a guessed position"
    );
}

/// By default an event read while `Running` ships as read, at once (outcome unknown):
/// every event the server shows is delivered by one `--once` run, and is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_progress_ship_as_read_by_default() {
    let env = Env::start(SimConfig {
        seed: 33,
        sessions: 9,
        events_per_session: 6,
        running_items: true,
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "page_size = 4");
    let cfg = cfg.display().to_string();
    let running: HashSet<String> = env.sim.running_event_ids().into_iter().collect();
    assert!(!running.is_empty());
    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let counts = id_counts(&events);
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    for e in events
        .iter()
        .filter(|e| running.contains(e["event"]["id"].as_str().unwrap()))
    {
        assert_eq!(e["veeam"]["restore_event"]["status"], "Running");
        assert_eq!(e["event"]["outcome"], "unknown");
    }
    env.sim.tick();
    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        id_counts(&env.events()).values().all(|&c| c == 1),
        "none sent again"
    );
}

/// With `hold_in_progress = true`. VB365 completes an event in place: read while `Running` (its item still being
/// restored), it later has its final status, `endTime` and `duration`. Asserts over
/// `--once` runs with live activity in between: no event ships as `Running` while its
/// session goes on; each ships once, with the status it ended with; what is `Running`
/// now waits in the checkpoint; a backfill ships what is in progress as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_progress_ship_once_with_their_final_status() {
    let env = Env::start(SimConfig {
        seed: 31,
        sessions: 9,
        events_per_session: 6,
        running_items: true,
        ..SimConfig::default()
    })
    .await;
    let cfg = env.write_config("v8", "page_size = 4\nhold_in_progress = true");
    let cfg = cfg.display().to_string();
    for round in 0..6 {
        if round > 0 {
            env.sim.tick();
            env.sim.tick();
        }
        let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
        assert!(out.status.success(), "round {round}: {}", text(&out));
        let events = env.events();
        let running: HashSet<String> = env.sim.running_event_ids().into_iter().collect();
        assert!(
            !running.is_empty() || round > 0,
            "the knob serves running events"
        );
        let expected: HashSet<String> = env
            .sim
            .event_ids()
            .into_iter()
            .filter(|id| !running.contains(id))
            .collect();
        let counts = id_counts(&events);
        assert_eq!(
            counts.keys().cloned().collect::<HashSet<_>>(),
            expected,
            "round {round}: everything but what is running now"
        );
        assert!(counts.values().all(|&c| c == 1), "round {round}: once each");
        let statuses: std::collections::HashMap<String, &str> =
            env.sim.event_statuses().into_iter().collect();
        for e in &events {
            let id = e["event"]["id"].as_str().unwrap();
            let shipped = e["veeam"]["restore_event"]["status"].as_str().unwrap_or("");
            assert_eq!(
                shipped, statuses[id],
                "round {round}: {id} ships its final status"
            );
            assert!(
                e["event"]["end"].is_string(),
                "round {round}: {id} has its end"
            );
        }
    }
    // What is running now is held in the checkpoint, not lost.
    let running = env.sim.running_event_ids();
    let state = std::fs::read_to_string(env.state_dir().join("vbo_test.checkpoint.json"))
        .expect("checkpoint");
    for id in &running {
        assert!(
            state.contains(id.as_str()),
            "{id} is held in the checkpoint"
        );
    }
    // A session deleted while an event of it is in progress: that event ships, as last
    // read, and says its session's fields are unknown.
    let gone = env
        .sim
        .working_session_ids()
        .into_iter()
        .find(|sid| {
            env.sim
                .session_event_ids(sid)
                .last()
                .is_some_and(|e| running.contains(e))
        })
        .expect("a working session with an event in progress");
    let gone_event = env.sim.session_event_ids(&gone).last().cloned().unwrap();
    env.sim.hide_session(&gone, Some(Vanish::Deleted));
    let out = run_bin_async(s(&["run", "--config", &cfg, "--once"]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shipped: Vec<_> = env
        .events()
        .into_iter()
        .filter(|e| e["event"]["id"] == gone_event.as_str())
        .collect();
    assert_eq!(shipped.len(), 1, "{gone_event} ships once");
    assert_eq!(shipped[0]["veeam"]["restore_event"]["status"], "Running");
    assert!(
        shipped[0]["veeam"]["degraded_fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "restoreSession.record")),
        "{}",
        shipped[0]
    );
    // A backfill (its state is thrown away) ships events in progress as they are.
    let since = "2000-01-01T00:00:00Z";
    let out = run_bin_async(s(&["backfill", "--config", &cfg, "--since", since]), vec![]).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    for id in running.iter().filter(|id| **id != gone_event) {
        assert!(
            events.iter().any(|e| e["event"]["id"] == id.as_str()
                && e["veeam"]["restore_event"]["status"] == "Running"),
            "the backfill shipped {id} as Running"
        );
    }
}
