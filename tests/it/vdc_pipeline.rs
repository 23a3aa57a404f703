//! End to end for Veeam Data Cloud: simulator → `veeam-siem run --once` (the real binary) →
//! file sink.
//!
//! Covers: every log line of every job session delivered exactly once over repeated runs
//! and after live activity (running sessions gain lines and end, new sessions appear), in
//! both `log_mode`s, with the download plain, gzipped with `Content-Encoding` and gzipped
//! with magic bytes only; page envelopes; stable derived ids; a wrong API key failing
//! with exit 1 naming the source and the header but never the key; the demo shipping both
//! sources; and schema validity of everything written.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use veeam_siem_simulator::{SimConfig, VdcGzip, VdcLogKey};

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::harness;
use harness::{Env, run_bin_async, s, text};

const SOURCE: &str = "vdc_test";
const KEY_ENV: &str = "TEST_VDC_KEY";

/// A config with one vdc source (extra keys appended to its table) and a file sink.
fn write_config(env: &Env, source_extra: &str) -> String {
    env.config()
        .table(
            env.vdc_source(SOURCE, KEY_ENV)
                .set("poll_interval", "1s")
                .raw(source_extra),
        )
        .table(Table::file("archive", &[SOURCE], &env.out_file()))
        .write(&env.dir.path().join("vdc.toml"))
        .display()
        .to_string()
}

async fn run_once(cfg: &str, key: &str) -> std::process::Output {
    run_bin_async(
        s(&["run", "--config", cfg, "--once"]),
        vec![(KEY_ENV.to_string(), key.to_string())],
    )
    .await
}

/// (job session id, position in the log) of an output event.
fn key_of(e: &serde_json::Value) -> (String, u64) {
    let session = e["veeam"]["job_session"]["id"]
        .as_str()
        .expect("job_session.id");
    let index = e["event"]["sequence"].as_u64().expect("event.sequence");
    (session.to_string(), index)
}

/// Every simulated line exactly once (by session and position), with its title as the
/// message, unique `event.id`s, and every event valid against the schema.
#[track_caller]
fn assert_exactly_once(events: &[serde_json::Value], lines: &[VdcLogKey], json_ids: bool) {
    let want: BTreeMap<(String, u64), &VdcLogKey> = lines
        .iter()
        .map(|k| ((k.session_id.clone(), k.index), k))
        .collect();
    let mut seen = BTreeSet::new();
    let mut ids = HashSet::new();
    for e in events {
        let key = key_of(e);
        assert!(seen.insert(key.clone()), "delivered twice: {key:?}");
        let line = want
            .get(&key)
            .unwrap_or_else(|| panic!("not a simulated line: {key:?}"));
        assert_eq!(e["message"], line.title.as_str(), "{key:?}");
        assert_eq!(e["veeam"]["job"]["id"], line.job_id.as_str());
        let id = e["event"]["id"].as_str().expect("event.id").to_string();
        if json_ids {
            assert_eq!(id, line.id, "json mode ships the log entry id");
        }
        assert!(ids.insert(id), "event.id repeated: {key:?}");
        event_schema::assert_valid_event(e);
    }
    let missing: Vec<_> = want.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_exactly_once_over_runs_and_live_activity() {
    let env = Env::start(SimConfig {
        seed: 7,
        vdc_api_key: "vdc-Key-Sekr1t-42".to_string(),
        vdc_jobs: 3,
        vdc_sessions_per_job: 4,
        vdc_logs_per_session: 40,
        // About one request in ten gets a 503 (deterministic for the seed), retried by the
        // shared retry layer.
        error_rate: 0.1,
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await;
    let key = env.sim.vdc_api_key();
    let cfg = write_config(&env, "keep_original = true\nmax_retries = 10");

    let out = run_bin_async(
        s(&["run", "--config", &cfg, "--once", "--log-level", "debug"]),
        vec![(KEY_ENV.to_string(), key.clone())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains(&key),
        "the API key appeared in the output"
    );
    let events = env.events();
    assert_exactly_once(&events, &env.sim.vdc_log_keys(), true);
    assert!(
        events.iter().all(|e| e["event"]["original"].is_string()),
        "keep_original keeps the raw record"
    );
    let running: Vec<_> = events
        .iter()
        .filter(|e| e["veeam"]["job_session"]["status"] == "Running")
        .collect();
    assert!(!running.is_empty(), "some sessions were still running");
    assert!(
        running
            .iter()
            .all(|e| e["veeam"]["job_session"]["end_time"].is_null())
    );
    let stats = env.sim.stats();
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(
        stats.injected_errors > 0,
        "503s were injected and retried: {stats:?}"
    );

    // Nothing new: nothing shipped.
    let out = run_once(&cfg, &key).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env.events().len(),
        events.len(),
        "second run re-sent events"
    );

    // Running sessions gain lines and end; new sessions start.
    let sessions_before = env.sim.vdc_session_count();
    for _ in 0..4 {
        env.sim.tick();
    }
    assert!(env.sim.vdc_session_count() > sessions_before);
    let out = run_once(&cfg, &key).await;
    assert!(out.status.success(), "{}", text(&out));
    let after = env.events();
    assert!(after.len() > events.len());
    assert_exactly_once(&after, &env.sim.vdc_log_keys(), true);
    assert!(
        after
            .iter()
            .any(|e| e["event"]["action"] == "job-finished" && e["event"]["type"][0] == "end"),
        "a job-finished event"
    );
    assert!(after.iter().any(|e| {
        e["veeam"]["log"]["transferred_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_mode_plain_gzip_and_magic_only() {
    // (gzip mode, page envelopes, key header)
    let variants = [
        (VdcGzip::Never, None, "x-api-key"),
        (VdcGzip::ContentEncoding, None, "authorization"),
        (VdcGzip::MagicOnly, Some(2), "x-api-key"),
    ];
    for (gzip, page_limit, header) in variants {
        let env = Env::start(SimConfig {
            seed: 5,
            vdc_jobs: 2,
            vdc_sessions_per_job: 3,
            vdc_logs_per_session: 25,
            vdc_gzip: gzip,
            vdc_page_limit: page_limit,
            ..SimConfig::default()
        })
        .await;
        let key = env.sim.vdc_api_key();
        let cfg = write_config(
            &env,
            &format!("log_mode = \"download\"\napi_key_header = \"{header}\""),
        );
        let out = run_once(&cfg, &key).await;
        assert!(out.status.success(), "{gzip:?}: {}", text(&out));
        let first = env.events();
        assert_exactly_once(&first, &env.sim.vdc_log_keys(), false);
        let stats = env.sim.stats();
        assert!(
            stats.violations.is_empty(),
            "{gzip:?}: {:?}",
            stats.violations
        );
        assert!(stats.vdc_downloads > 0);
        if gzip == VdcGzip::Never {
            assert_eq!(stats.vdc_gzipped, 0);
        } else {
            assert_eq!(stats.vdc_gzipped, stats.vdc_downloads, "{gzip:?}");
        }

        for _ in 0..3 {
            env.sim.tick();
        }
        let out = run_once(&cfg, &key).await;
        assert!(out.status.success(), "{gzip:?}: {}", text(&out));
        let after = env.events();
        assert!(after.len() > first.len(), "{gzip:?}: live lines shipped");
        assert_exactly_once(&after, &env.sim.vdc_log_keys(), false);

        if gzip == VdcGzip::MagicOnly {
            // Derived ids are stable: starting from scratch gives the same ids.
            std::fs::remove_dir_all(env.state_dir()).unwrap();
            std::fs::remove_file(env.out_file()).unwrap();
            let out = run_once(&cfg, &key).await;
            assert!(out.status.success(), "{}", text(&out));
            let ids = |events: &[serde_json::Value]| -> BTreeSet<String> {
                events
                    .iter()
                    .map(|e| e["event"]["id"].as_str().unwrap_or_default().to_string())
                    .collect()
            };
            assert_eq!(ids(&env.events()), ids(&after));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_key_fails_clearly_without_leaking_it() {
    let env = Env::start(SimConfig::default()).await;
    for (header, named) in [
        ("x-api-key", "x-api-key"),
        ("authorization", "Authorization: Bearer"),
    ] {
        let cfg = write_config(&env, &format!("api_key_header = \"{header}\""));
        let wrong = "wrong-Key-7731";
        let out = run_bin_async(
            s(&["run", "--config", &cfg, "--once", "--log-level", "debug"]),
            vec![(KEY_ENV.to_string(), wrong.to_string())],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(SOURCE), "names the source: {err}");
        assert!(err.contains(named), "names the header: {err}");
        assert!(err.contains("api_key"), "says what to check: {err}");
        assert!(!err.contains(wrong), "key leaked: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(wrong));
    }
    assert!(env.sim.stats().vdc_unauthorized >= 2);
    assert!(env.events().is_empty());
}

/// Following (no `--once`), a rejected key stops the source and `run` exits 1, instead of
/// asking again with the same key every poll interval.
#[tokio::test]
async fn a_rejected_api_key_stops_a_following_run() {
    let env = Env::start(SimConfig::default()).await;
    let cfg = write_config(&env, "");
    let wrong = "wrong-Key-7731";
    let out = tokio::task::spawn_blocking(move || {
        let mut child = harness::bin()
            .args(["run", "--config", &cfg])
            .env(KEY_ENV, wrong)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the API key"), "{err}");
    assert!(!err.contains(wrong), "key leaked: {err}");
    let asked = env.sim.stats().vdc_unauthorized;
    assert!((1..=2).contains(&asked), "asked {asked} times");
}

#[test]
fn demo_ships_both_sources() {
    let out = harness::bin().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut datasets = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON");
        event_schema::assert_valid_event(&v);
        let dataset = v["event"]["dataset"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *datasets.entry(dataset).or_insert(0) += 1;
    }
    assert!(
        datasets.get("veeam.vbo_restore").is_some_and(|n| *n > 10),
        "{datasets:?}"
    );
    assert!(
        datasets.get("veeam.vdc_job_log").is_some_and(|n| *n > 10),
        "{datasets:?}"
    );
}

/// The mapping of the published examples and of odd titles validates, and the schema's
/// VDC branch rejects what a VDC event must not carry.
#[test]
fn mapped_vdc_events_validate_and_the_vdc_branch_is_strict() {
    use veeam_siem::map::MapContext;
    use veeam_siem::map::vdc::{RawJob, RawJobSession, RawLogEntry, map_log_entry};

    let fixture = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vdc")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let jobs: Vec<RawJob> = serde_json::from_str(&fixture("backup-jobs.json")).unwrap();
    let sessions: Vec<RawJobSession> = serde_json::from_str(&fixture("job-sessions.json")).unwrap();
    let logs: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("job-session-logs.json")).unwrap();
    let ctx = MapContext {
        source_id: SOURCE,
        observer_hostname: "vdc-api.example.net",
        fetched_at: chrono::Utc::now(),
    };
    let map = |session: &RawJobSession, entry: &RawLogEntry, original: Option<&str>| {
        serde_json::to_value(map_log_entry(&ctx, &jobs[0], session, entry, 0, original)).unwrap()
    };
    let mut valid = Vec::new();
    for raw in &logs {
        let entry: RawLogEntry = serde_json::from_value(raw.clone()).unwrap();
        let v = map(&sessions[0], &entry, Some(&raw.to_string()));
        event_schema::assert_valid_event(&v);
        valid.push(v);
    }
    let running: RawJobSession =
        serde_json::from_str(r#"{"id":"s-2","status":"Running","progress":-3}"#).unwrap();
    let odd = [
        "",
        " ",
        "[]",
        "[",
        "🦀",
        "[Success]",
        "[Success] Processing mailbox:",
        "[ Success ]Processing    OneDrive :  x@y.z",
        "[Queued] Transferred: 1.5 TB (3 items) at 0 B/s (0 items/s)",
        "Transferred: lots",
        "\u{0}",
        "Job started",
        "[Failed] Job failed",
    ];
    for title in odd {
        for session in [&sessions[0], &running] {
            let entry = RawLogEntry {
                title: Some(title.to_string()),
                ..RawLogEntry::default()
            };
            let v = map(session, &entry, None);
            if let Err(e) = event_schema::validate_event(&v) {
                panic!("title {title:?}: {e}\n{v:#}");
            }
        }
    }

    let rejected = |v: &serde_json::Value, mentions: &str| match event_schema::validate_event(v) {
        Ok(()) => panic!("accepted:\n{v:#}"),
        Err(e) => assert!(e.contains(mentions), "{mentions:?} not in:\n{e}"),
    };
    let base = &valid[1];
    let mut v = base.clone();
    v["veeam"]["restore_session"] = serde_json::json!({"id": "x"});
    rejected(&v, "restore_session");
    let mut v = base.clone();
    v["veeam"].as_object_mut().unwrap().remove("job_session");
    rejected(&v, "job_session");
    let mut v = base.clone();
    v["event"]["category"] = serde_json::json!(["session"]);
    rejected(&v, "/event/category/0");
    let mut v = base.clone();
    v["event"]["action"] = serde_json::json!("item-restored");
    rejected(&v, "/event/action");
    let mut v = base.clone();
    v["event"]["provider"] = serde_json::json!("vbo");
    rejected(&v, "/event/provider");
    let mut v = base.clone();
    v["observer"]["product"] = serde_json::json!("Veeam Backup for Microsoft 365");
    rejected(&v, "/observer/product");
    let mut v = base.clone();
    v["user"] = serde_json::json!({"name": "alice"});
    rejected(&v, "user");
    let mut v = base.clone();
    v["veeam"]["log"] = serde_json::json!({});
    rejected(&v, "/veeam/log");
    let mut v = base.clone();
    v["veeam"]["log"]["transferred_bytes"] = serde_json::json!(-1);
    rejected(&v, "/veeam/log/transferred_bytes");
}

/// The vdc example in schemas/FIELDS.md is the real mapping of the published example log
/// entry (fetched 2025-03-10T12:00:00Z by source `vdc_emea` from vdc-api.example.net).
#[test]
fn fields_md_vdc_example_is_current() {
    use veeam_siem::map::MapContext;
    use veeam_siem::map::vdc::{RawJob, RawJobSession, RawLogEntry, map_log_entry};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let doc = read("schemas/FIELDS.md");
    let section = doc
        .find("## Example (vdc)")
        .expect("an \"## Example (vdc)\" section in FIELDS.md");
    let start = section + doc[section..].find("```json\n").expect("a ```json block") + 8;
    let len = doc[start..].find("```").expect("closing ```");
    let example: serde_json::Value = serde_json::from_str(&doc[start..start + len]).unwrap();

    let jobs: Vec<RawJob> =
        serde_json::from_str(&read("tests/fixtures/vdc/backup-jobs.json")).unwrap();
    let sessions: Vec<RawJobSession> =
        serde_json::from_str(&read("tests/fixtures/vdc/job-sessions.json")).unwrap();
    let logs: Vec<RawLogEntry> =
        serde_json::from_str(&read("tests/fixtures/vdc/job-session-logs.json")).unwrap();
    let ctx = MapContext {
        source_id: "vdc_emea",
        observer_hostname: "vdc-api.example.net",
        fetched_at: "2025-03-10T12:00:00Z".parse().unwrap(),
    };
    let mapped = serde_json::to_value(map_log_entry(
        &ctx,
        &jobs[0],
        &sessions[0],
        &logs[1],
        1,
        None,
    ))
    .unwrap();
    assert_eq!(
        example,
        mapped,
        "update the vdc example in schemas/FIELDS.md to:\n{}",
        serde_json::to_string_pretty(&mapped).unwrap()
    );
    event_schema::assert_valid_event(&example);
}
