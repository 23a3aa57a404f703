//! Paging against servers that don't page the way the spec says (issue 12 items 2, 3, 10;
//! issue 13 items 4 and 5): the real binary against the embedded simulator's paging knobs
//! and a hostile server written here.
//!
//! - A server that caps `limit` (asked 500, served 100), reporting the capped or the asked
//!   limit, with or without `_links`/`totalCount`: every event arrives, on v6 and v8, and
//!   for the VDC collections.
//! - Pages read ahead by the VB365 source are each asked for once (none thrown away and
//!   fetched again), on v8 and v6.
//! - A v6/v7 (unordered) listing is shipped oldest first with the horizon following it:
//!   the checkpoint keeps only the lookback window's sessions.
//! - A server that ignores `offset` and returns full pages forever: `--once` ends with
//!   exit 1 and an error naming the problem, instead of running forever.
//! - Pages that are not JSON (HTML with status 200), twice in a row: retried inside the
//!   cycle, exit 0, nothing missing; for good: exit 1 naming the session and the URL.
//! - An endless response body: the read stops at the cap, memory stays bounded.
//! - VDC: a JSON download envelope far larger than one entry's cap, unreadable collection
//!   pages, 5xx and cut connections, and `kill -9` while following.
//!
//! Every run is bounded; nothing asserts on timing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use veeam_siem_simulator::{FaultConfig, SimConfig};

use crate::support::config::{ConfigBuilder, Table};
use crate::support::event_schema;
use crate::support::faults;
use crate::support::harness;
use faults::{Daemon, exactly_once_problems, run_once, tail, write_config};
use harness::{Env, id_counts, text};

fn sim(sessions: usize, events: usize, faults: FaultConfig) -> SimConfig {
    SimConfig {
        seed: 77,
        sessions,
        events_per_session: events,
        faults,
        ..SimConfig::default()
    }
}

fn all_ids(env: &Env) -> HashSet<String> {
    env.sim.event_ids().into_iter().collect()
}

#[track_caller]
fn assert_exactly_once(counts: &HashMap<String, usize>, expected: &HashSet<String>) {
    let problems = exactly_once_problems(counts, expected);
    assert!(problems.is_empty(), "{problems:?}");
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server that serves at most 100 records a page, whatever `limit` asked, in the ways it
/// can say so (or not): every event of every session arrives in one `--once` run, and a
/// second run finds nothing missing and repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_capping_the_page_size_loses_nothing() {
    let variants = [
        ("v8", false, false),
        ("v6", false, false),
        ("v8", true, true),
        ("v6", true, true),
        ("v8", false, true),
    ];
    for (version, reports_asked, bare) in variants {
        let env = Env::start(sim(
            4,
            240,
            FaultConfig {
                cap_limit: 100,
                cap_reports_asked: reports_asked,
                bare_pages: bare,
                ..FaultConfig::default()
            },
        ))
        .await;
        let what = format!("{version}, reports asked limit {reports_asked}, bare pages {bare}");
        let cfg = write_config(
            &env,
            &format!("api_version = \"{version}\"\npage_size = 500"),
            env.file_sink(),
        );
        let out = run_once(&cfg, &[], "capped").await;
        assert!(out.status.success(), "{what}: {}", text(&out));
        let expected = all_ids(&env);
        assert!(
            env.sim.event_count() > 4 * 200,
            "sessions span several capped pages"
        );
        let problems = exactly_once_problems(&id_counts(&env.events()), &expected);
        assert!(problems.is_empty(), "{what}: {problems:?}");
        let out = run_once(&cfg, &[], "again").await;
        assert!(out.status.success(), "{what}: {}", text(&out));
        let problems = exactly_once_problems(&id_counts(&env.events()), &expected);
        assert!(problems.is_empty(), "{what}, second run: {problems:?}");
    }
}

/// The VB365 source reads a page ahead (the next page of a session, or the next session's
/// first page, while the current one is decoded): every events page is still asked for
/// exactly once, so nothing fetched ahead is thrown away and fetched again, and every event
/// arrives once. Sessions of several pages, of one, and (with v6's unordered paging rules)
/// both API generations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_ahead_are_each_asked_for_once() {
    for version in ["v8", "v6"] {
        let env = Env::start(sim(7, 60, FaultConfig::default())).await;
        let page = 25usize;
        let cfg = write_config(
            &env,
            &format!("api_version = \"{version}\"\npage_size = {page}"),
            env.file_sink(),
        );
        let out = run_once(&cfg, &[], "ahead").await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        assert_exactly_once(&id_counts(&env.events()), &all_ids(&env));
        let sessions = env.sim.session_ids();
        assert!(sessions.len() <= page, "one listing page");
        let events_pages: usize = sessions
            .iter()
            .map(|id| env.sim.session_event_ids(id).len().div_ceil(page).max(1))
            .sum();
        assert!(events_pages > sessions.len(), "some sessions span pages");
        // Every listing ends on an empty page (totals and links are not believed): one
        // request more per listing. The sessions listing also reads its last record again
        // (the overlap between listing pages) before that empty page.
        let listing = 3;
        let requests = env.sim.stats().data_requests;
        assert_eq!(
            requests,
            (listing + events_pages + sessions.len()) as u64,
            "{version}: {listing} listing requests, {events_pages} events pages and an empty page per session expected"
        );
    }
}

/// VB365 v6/v7 list sessions in no order. The source reads such a listing whole, ships it
/// oldest first and lets the horizon follow, so the checkpoint (written with every batch)
/// keeps only the sessions of the lookback window instead of every session of the cycle
/// (which made a backfill quadratic). Every event arrives once, sessions in creation
/// order, and a second run sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_listing_ships_oldest_first_and_keeps_the_state_small() {
    // The last: a listing of 120 sessions read in passes of 25 (each keeps the oldest 25
    // sessions not shipped yet; the next lists again from the new horizon).
    for (version, extra) in [("v6", ""), ("v7", ""), ("v7", "\nmax_held_sessions = 25")] {
        // A little latency, so the run lasts long enough to watch its checkpoints.
        let env = Env::start(SimConfig {
            latency: Duration::from_millis(10),
            ..sim(120, 3, FaultConfig::default())
        })
        .await;
        let cfg = write_config(
            &env,
            &format!("api_version = \"{version}\"\npage_size = 50{extra}"),
            env.file_sink(),
        );
        let path = env.state_dir().join("vbo_test.checkpoint.json");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The most sessions any checkpoint written during the run held (files are
        // replaced whole, so every read is a complete checkpoint).
        let watcher = tokio::spawn({
            let (path, stop) = (path.clone(), stop.clone());
            async move {
                let mut most = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(text) = tokio::fs::read_to_string(&path).await
                        && let Ok(cp) = serde_json::from_str::<serde_json::Value>(&text)
                    {
                        let held = cp["state"]["sessions"].as_object().map_or(0, |s| s.len());
                        most = most.max(held);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                most
            }
        });
        let out = run_once(&cfg, &[], "backfill").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let most = watcher.await.expect("watcher");
        assert!(out.status.success(), "{version}: {}", text(&out));
        let passes = stderr_of(&out).matches("listing again").count();
        if extra.is_empty() {
            assert_eq!(passes, 0, "{version}: one listing pass");
        } else {
            assert!(
                passes >= 4,
                "{version}: {passes} extra listing passes for 120 / 25"
            );
        }
        assert!(
            most < 120 / 3,
            "{version}: a checkpoint written during the run held {most} of 120 sessions"
        );
        let expected = all_ids(&env);
        let events = env.events();
        assert_exactly_once(&id_counts(&events), &expected);
        let created: Vec<&str> = events
            .iter()
            .filter_map(|e| e["veeam"]["restore_session"]["creation_time"].as_str())
            .collect();
        assert_eq!(
            created.len(),
            events.len(),
            "{version}: every event has its session's time"
        );
        assert!(
            created.windows(2).all(|w| w[0] <= w[1]),
            "{version}: sessions shipped oldest first"
        );
        let checkpoint: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("checkpoint"))
                .expect("checkpoint JSON");
        let kept = checkpoint["state"]["sessions"]
            .as_object()
            .map_or(0, |sessions| sessions.len());
        assert!(
            kept < 120 / 3,
            "{version}: {kept} of 120 sessions still in the checkpoint"
        );
        let out = run_once(&cfg, &[], "again").await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        assert_exactly_once(&id_counts(&env.events()), &expected);
    }
}

/// A server that ignores `offset` and answers every request with the same full page: the
/// run ends (exit 1) with an error that says so, instead of paging forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_offset_fails_the_run_instead_of_paging_forever() {
    let env = Env::start(sim(
        30,
        40,
        FaultConfig {
            ignore_offset: true,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = write_config(&env, "page_size = 10", env.file_sink());
    let out = run_once(&cfg, &[], "ignored").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = stderr_of(&out);
    assert!(log.contains("ignores `offset`"), "{}", tail(&log, 20));
    let requests = env.sim.stats().data_requests;
    assert!(
        requests < 200,
        "{requests} requests: the run should stop at the first repeated page"
    );
}

/// The first session listing and the first events request of about half the sessions are
/// answered with an HTML page (status 200) twice in a row: retried inside the cycle, so one
/// `--once` run exits 0 with everything delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_pages_are_retried_inside_the_cycle() {
    let env = Env::start(sim(
        10,
        12,
        FaultConfig {
            not_json_listing_once: true,
            not_json_once_rate: 0.5,
            not_json_times: 2,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = write_config(&env, "page_size = 10", env.file_sink());
    let out = run_once(&cfg, &[], "retried").await;
    assert!(out.status.success(), "{}", text(&out));
    let broken = env.sim.fault_stats().not_json_pages;
    assert!(broken >= 6, "too few broken pages: {broken}");
    let log = stderr_of(&out);
    assert!(
        log.contains("unreadable page; requesting it again"),
        "{}",
        tail(&log, 20)
    );
    assert_exactly_once(&id_counts(&env.events()), &all_ids(&env));
}

/// A session whose events pages stay unreadable: once the retries run out the run exits 1
/// naming the session and the URL; the other sessions are delivered, and once the server
/// recovers a rerun delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_unreadable_for_good_fail_the_run_naming_session_and_url() {
    let env = Env::start(sim(
        8,
        6,
        FaultConfig {
            not_json_once_rate: 0.5,
            not_json_times: 1000,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = write_config(&env, "max_retries = 2", env.file_sink());
    let out = run_once(&cfg, &[], "broken").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = stderr_of(&out);
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot read restore session events"))
        .collect();
    assert!(!failed.is_empty(), "{}", tail(&log, 30));
    for line in &failed {
        assert!(
            line.contains("session_id=") && line.contains("/Events") && line.contains("<html>"),
            "names the session, the URL and what came back: {line}"
        );
        assert!(!line.contains(harness::PASSWORD), "{line}");
    }
    let delivered = id_counts(&env.events()).len();
    assert!(
        delivered > 0 && delivered < env.sim.event_count(),
        "{delivered}"
    );

    env.sim.set_faults(FaultConfig::default());
    let out = run_once(&cfg, &[], "recovered").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_exactly_once(&id_counts(&env.events()), &all_ids(&env));
}

/// A VB365 look-alike whose session listing never ends (an endless chunked body): the
/// read stops at the body cap, the run fails, and the daemon's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_listing_body_is_cut_at_the_cap() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};

    let app = Router::new()
        .route(
            "/v8/token",
            post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "a", "refresh_token": "r", "token_type": "bearer",
                    "expires_in": 3600, ".issued": "x", ".expires": "y"
                }))
            }),
        )
        .route(
            "/v8/RestoreSessions",
            get(|| async {
                let chunk = bytes::Bytes::from(format!(
                    "{{\"offset\":0,\"limit\":500,\"results\":[{}",
                    " ".repeat(64 * 1024)
                ));
                let filler = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                let stream =
                    futures::stream::iter(std::iter::once(chunk).chain(std::iter::repeat(filler)))
                        .map(Ok::<_, std::io::Error>);
                Body::from_stream(stream)
            }),
        );
    use futures::StreamExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.ndjson");
    let cfg = ConfigBuilder::new(dir.path().join("state"))
        .table(
            Table::vbo("hostile", &format!("http://{addr}"))
                .set("username", "u")
                .set("password", "p")
                .set("max_retries", 1),
        )
        .table(Table::file("archive", &["hostile"], &out_file))
        .write(&dir.path().join("config.toml"));
    let peak = tokio::task::spawn_blocking(move || {
        let mut d = Daemon::spawn(&cfg, true, &[], "endless");
        let mut peak = 0;
        for _ in 0..2400 {
            if !d.alive() {
                break;
            }
            if let Some((hwm, _)) = d.memory_kib() {
                peak = peak.max(hwm);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = d.wait(Duration::from_secs(5));
        (status, peak, d.stderr())
    })
    .await
    .unwrap();
    server.abort();
    let (status, peak_kib, log) = peak;
    assert_eq!(status.code(), Some(1), "{}", tail(&log, 20));
    assert!(log.contains("larger than"), "{}", tail(&log, 20));
    eprintln!("endless body: peak RSS {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < 400 * 1024,
        "peak RSS {} MiB: the body cap did not hold",
        peak_kib / 1024
    );
}

// ---------------------------------------------------------------------------------------
// Veeam Data Cloud

const VDC_KEY_ENV: &str = "TEST_VDC_KEY";

/// A config with one vdc source (extra keys appended) and a file sink.
fn vdc_config(env: &Env, source_extra: &str) -> std::path::PathBuf {
    env.config()
        .table(
            env.vdc_source("vdc_test", VDC_KEY_ENV)
                .set("poll_interval", "1s")
                .raw(source_extra),
        )
        .table(Table::file("archive", &["vdc_test"], &env.out_file()))
        .write(&env.dir.path().join("vdc.toml"))
}

fn vdc_sim(logs_per_session: usize, page_limit: Option<usize>, faults: FaultConfig) -> SimConfig {
    SimConfig {
        seed: 31,
        vdc_jobs: 2,
        vdc_sessions_per_job: 3,
        vdc_logs_per_session: logs_per_session,
        vdc_page_limit: page_limit,
        faults,
        ..SimConfig::default()
    }
}

/// How often each simulated log line (job session id, position) was delivered; lines the
/// simulator doesn't have count under a key with position `u64::MAX`.
fn vdc_counts(env: &Env) -> (HashMap<String, usize>, HashSet<String>) {
    let key = |session: &str, index: u64| format!("{session}#{index}");
    let expected: HashSet<String> = env
        .sim
        .vdc_log_keys()
        .iter()
        .map(|k| key(&k.session_id, k.index))
        .collect();
    let mut counts = HashMap::new();
    for e in env.events() {
        event_schema::assert_valid_event(&e);
        let session = e["veeam"]["job_session"]["id"].as_str().unwrap_or("?");
        let index = e["event"]["sequence"].as_u64().unwrap_or(u64::MAX);
        *counts.entry(key(session, index)).or_insert(0) += 1;
    }
    (counts, expected)
}

async fn vdc_once(env: &Env, cfg: &std::path::Path, tag: &str) -> std::process::Output {
    let key = env.sim.vdc_api_key();
    run_once(cfg, &[(VDC_KEY_ENV, key.as_str())], tag).await
}

/// A download that is one JSON page envelope `{"offset":0,"logs":[…]}` of several hundred
/// kilobytes (far over one entry's cap): every entry arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_download_envelopes_larger_than_the_entry_cap_arrive_whole() {
    let env = Env::start(vdc_sim(
        2500,
        None,
        FaultConfig {
            vdc_download_json_envelope: true,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = vdc_config(&env, "log_mode = \"download\"");
    let out = vdc_once(&env, &cfg, "envelope").await;
    assert!(out.status.success(), "{}", text(&out));
    let (counts, expected) = vdc_counts(&env);
    assert!(expected.len() > 2500, "{}", expected.len());
    assert_exactly_once(&counts, &expected);
}

/// Collection pages capped below the asked `limit`, reporting the capped limit or the
/// asked one: every log line arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_collections_capping_the_page_size_lose_nothing() {
    for reports_asked in [false, true] {
        let env = Env::start(vdc_sim(
            30,
            Some(10),
            FaultConfig {
                cap_limit: 4,
                cap_reports_asked: reports_asked,
                ..FaultConfig::default()
            },
        ))
        .await;
        let cfg = vdc_config(&env, "");
        let out = vdc_once(&env, &cfg, "capped").await;
        assert!(out.status.success(), "{}", text(&out));
        let (counts, expected) = vdc_counts(&env);
        let problems = exactly_once_problems(&counts, &expected);
        assert!(
            problems.is_empty(),
            "reports asked {reports_asked}: {problems:?}"
        );
    }
}

/// A paged VDC collection whose server ignores `offset`: exit 1 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_server_ignoring_offset_fails_the_run() {
    let env = Env::start(vdc_sim(
        30,
        Some(5),
        FaultConfig {
            ignore_offset: true,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = vdc_config(&env, "");
    let out = vdc_once(&env, &cfg, "ignored").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = stderr_of(&out);
    assert!(log.contains("ignores `offset`"), "{}", tail(&log, 20));
}

/// A VDC server that ignores `offset` but whose pages hold the whole collection (30 log
/// lines, pages of up to 100): the repeated short page ends the listing, every line once.
/// (It used to fall out of the paging loop into "did not end after 10000 pages".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_server_ignoring_offset_with_everything_on_one_page_is_read_once() {
    let env = Env::start(vdc_sim(
        30,
        Some(100),
        FaultConfig {
            ignore_offset: true,
            ..FaultConfig::default()
        },
    ))
    .await;
    let cfg = vdc_config(&env, "");
    let out = vdc_once(&env, &cfg, "ignored-whole").await;
    assert!(out.status.success(), "{}", text(&out));
    let (counts, expected) = vdc_counts(&env);
    let problems = exactly_once_problems(&counts, &expected);
    assert!(problems.is_empty(), "{problems:?}");
}

/// Every VDC collection URL answers HTML (status 200) twice before the real page, and
/// some requests get 5xx or a cut connection: one `--once` run delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_unreadable_pages_5xx_and_resets_are_retried() {
    for log_mode in ["json", "download"] {
        let env = Env::start(vdc_sim(
            25,
            Some(7),
            FaultConfig {
                vdc_not_json_times: 2,
                server_error_rate: 0.1,
                reset_rate: 0.1,
                ..FaultConfig::default()
            },
        ))
        .await;
        let cfg = vdc_config(
            &env,
            &format!("log_mode = \"{log_mode}\"\nmax_retries = 10"),
        );
        let out = vdc_once(&env, &cfg, log_mode).await;
        assert!(out.status.success(), "{log_mode}: {}", text(&out));
        let stats = env.sim.fault_stats();
        assert!(stats.not_json_pages > 0 && stats.server_errors + stats.resets > 0);
        let (counts, expected) = vdc_counts(&env);
        let problems = exactly_once_problems(&counts, &expected);
        assert!(problems.is_empty(), "{log_mode}: {problems:?}");
    }
}

/// `kill -9` at several points of a following VDC run with live activity, restarted each
/// time: nothing is lost, and each kill repeats at most one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_kill_minus_nine_while_following_loses_nothing() {
    let mut cfg = vdc_sim(400, None, FaultConfig::default());
    cfg.latency = Duration::from_millis(20);
    let env = Env::start(cfg).await;
    let config = vdc_config(&env, "log_mode = \"json\"");
    let key = env.sim.vdc_api_key();
    let total = env.sim.vdc_log_count() as u64;
    let kills = [total / 4, total / 2, total * 3 / 4];
    // Complete lines in the output so far (the daemon may be writing the next one).
    let lines = |path: &std::path::Path| {
        std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count() as u64)
    };
    let mut killed = 0;
    for (i, at) in kills.iter().enumerate() {
        env.sim.tick();
        let mut d = Daemon::spawn(&config, false, &[(VDC_KEY_ENV, &key)], &format!("k{i}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline && lines(&env.out_file()) < *at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            d.kill9(),
            "the daemon was running: {}",
            tail(&d.stderr(), 20)
        );
        killed += 1;
    }
    // A last run to completion.
    let out = vdc_once(&env, &config, "final").await;
    assert!(out.status.success(), "{}", text(&out));
    let (counts, expected) = vdc_counts(&env);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} lines, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let unexpected: Vec<&String> = counts.keys().filter(|k| !expected.contains(*k)).collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let dups = faults::duplicates(&counts);
    eprintln!("vdc kill -9: {killed} kills, {dups} duplicates");
    assert!(
        dups <= killed * veeam_siem::sources::vdc::BATCH as u64,
        "{dups} duplicates after {killed} kills"
    );
}
