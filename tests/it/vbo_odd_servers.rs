//! VB365 servers that are valid by the letter of the spec but don't behave like Veeam's,
//! against the real binary: events whose `order` is not their offset (1-based, gapped,
//! repeated), events listed newest first, a v8 server that ignores `orderAsc=true`, and a
//! v6 server that ignores `startTimeFrom`. Each is run with `--once` several times, the
//! server's data growing in between: every event arrives exactly once.
//!
//! The server is a scriptable fake written here (axum on loopback): pages capped at a few
//! records (a server's own maximum), the page envelope of the spec (`offset`, `limit`,
//! `results`, no `_links`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::config::{ConfigBuilder, Table};
use crate::support::harness::{bin, id_counts, read_ndjson, text};

/// One restore session and its events, as the server lists them.
#[derive(Clone, Default)]
struct Session {
    id: String,
    created: String,
    stopped: bool,
    /// (event id, `order`)
    events: Vec<(String, i64)>,
    /// Raw JSON members added to the session record (text a Rust string can't hold as a
    /// value: lone surrogate escapes, raw control characters).
    extra: Option<&'static str>,
    /// Raw JSON members added to each event record.
    event_extra: Option<&'static str>,
    /// Raw records listed after the events (not objects, say).
    junk_events: Vec<&'static str>,
    /// `endTime` of a stopped session (default: its creation time).
    ended: Option<String>,
    /// The session's `creationTime` as listed, when not `created` (which its events still
    /// use): a value without a usable time, which the server lists whatever the filter.
    listed_created: Option<Value>,
    /// Events listed as `Running` (no `endTime`). The server has no `…/Events/{id}`.
    running: Vec<String>,
}

#[derive(Default)]
struct World {
    sessions: Vec<Session>,
    /// Records per page at most, whatever `limit` asks (0: as asked).
    cap: usize,
    /// Sessions listed newest first whatever `orderAsc` says.
    sessions_newest_first: bool,
    /// Events listed newest first.
    events_newest_first: bool,
    /// `startTimeFrom` ignored.
    ignore_start_time_from: bool,
    /// Sessions deleted (oldest first) right after the first listing page is served.
    delete_after_first_page: usize,
    /// An events page with nothing in it is answered 204 No Content.
    no_content_when_empty: bool,
}

type Shared = Arc<Mutex<World>>;

/// `value` (an object) as text with `extra` raw members appended.
fn with_extra(value: Value, extra: Option<&str>) -> String {
    let text = value.to_string();
    match extra {
        Some(extra) => format!("{},{extra}}}", &text[..text.len() - 1]),
        None => text,
    }
}

fn session_text(s: &Session) -> String {
    with_extra(session_json(s), s.extra)
}

fn session_json(s: &Session) -> Value {
    json!({
        "id": s.id,
        "name": "Restore session",
        "organization": "contoso.onmicrosoft.com",
        "type": "Vex",
        "creationTime": s.listed_created.clone().unwrap_or_else(|| json!(s.created)),
        "endTime": if s.stopped { json!(s.ended.as_ref().unwrap_or(&s.created)) } else { Value::Null },
        "state": if s.stopped { "Stopped" } else { "Working" },
        "result": "Success",
        "initiatedBy": "alice@contoso.com",
        "clientHost": "WS01"
    })
}

fn event_json(s: &Session, id: &str, order: i64) -> Value {
    let running = s.running.iter().any(|r| r == id);
    json!({
        "id": id,
        "type": "Restore",
        "status": if running { "Running" } else { "Success" },
        "startTime": s.created,
        "endTime": if running { Value::Null } else { json!(s.created) },
        "duration": "00:00:01",
        "title": "Item is successfully restored.",
        "message": format!("Item {id} was restored successfully"),
        "order": order,
        "itemName": id,
        "itemType": "Item",
        "itemSizeBytes": 1
    })
}

/// `limit`/`offset` paging over `items` (JSON texts), capped at `cap` records a page.
fn page(items: Vec<String>, q: &HashMap<String, String>, cap: usize) -> Response {
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(30);
    if cap > 0 {
        limit = limit.min(cap);
    }
    let results: Vec<String> = items.into_iter().skip(offset).take(limit).collect();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"offset":{offset},"limit":{limit},"results":[{}]}}"#,
            results.join(",")
        ),
    )
        .into_response()
}

async fn start(world: Shared) -> (String, tokio::task::JoinHandle<()>) {
    let lw = world.clone();
    let ew = world.clone();
    let sw = world.clone();
    let app = Router::new()
        .route(
            "/{version}/token",
            post(|| async {
                axum::Json(json!({
                    "access_token": "AT-odd", "refresh_token": "RT-odd",
                    "token_type": "bearer", "expires_in": 3600
                }))
            }),
        )
        .route(
            "/{version}/RestoreSessions",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let mut w = lw.lock().unwrap();
                let from = q
                    .get("startTimeFrom")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                let mut listed: Vec<&Session> = w
                    .sessions
                    .iter()
                    .filter(|s| {
                        w.ignore_start_time_from
                            || s.listed_created.is_some()
                            || from.is_none_or(|from| {
                                chrono::DateTime::parse_from_rfc3339(&s.created).unwrap() >= from
                            })
                    })
                    .collect();
                listed.sort_by(|a, b| a.created.cmp(&b.created));
                let ascending = q.get("orderAsc").is_some_and(|v| v == "true");
                if w.sessions_newest_first || !ascending {
                    listed.reverse();
                }
                let items = listed.into_iter().map(session_text).collect();
                let answer = page(items, &q, w.cap);
                if q.get("offset").is_none_or(|o| o == "0") && w.delete_after_first_page > 0 {
                    let n = w.delete_after_first_page.min(w.sessions.len());
                    w.sessions.sort_by(|a, b| a.created.cmp(&b.created));
                    w.sessions.drain(..n);
                    w.delete_after_first_page = 0;
                }
                std::future::ready(answer)
            }),
        )
        .route(
            "/{version}/RestoreSessions/{id}",
            get(move |UrlPath((_, id)): UrlPath<(String, String)>| {
                let w = sw.lock().unwrap();
                let answer = match w.sessions.iter().find(|s| s.id == id) {
                    Some(s) => (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        session_text(s),
                    )
                        .into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                };
                std::future::ready(answer)
            }),
        )
        .route(
            "/{version}/RestoreSessions/{id}/Events",
            get(
                move |UrlPath((_, id)): UrlPath<(String, String)>,
                      Query(q): Query<HashMap<String, String>>| {
                    let w = ew.lock().unwrap();
                    let answer = match w.sessions.iter().find(|s| s.id == id) {
                        Some(s) => {
                            let mut items: Vec<String> = s
                                .events
                                .iter()
                                .map(|(id, order)| {
                                    with_extra(event_json(s, id, *order), s.event_extra)
                                })
                                .collect();
                            if w.events_newest_first {
                                items.reverse();
                            }
                            items.extend(s.junk_events.iter().map(|j| j.to_string()));
                            let offset: usize =
                                q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
                            if w.no_content_when_empty && offset >= items.len() {
                                StatusCode::NO_CONTENT.into_response()
                            } else {
                                page(items, &q, w.cap)
                            }
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    };
                    std::future::ready(answer)
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

struct Case {
    dir: tempfile::TempDir,
    world: Shared,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Case {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Case {
    async fn new(world: World) -> Case {
        let world = Arc::new(Mutex::new(world));
        let (url, task) = start(world.clone()).await;
        Case {
            dir: tempfile::tempdir().unwrap(),
            world,
            url,
            task,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.ndjson")
    }

    fn config(&self, api_version: &str, page_size: u32) -> PathBuf {
        self.config_with(api_version, page_size, "")
    }

    /// [`Case::config`] with extra source keys.
    fn config_with(&self, api_version: &str, page_size: u32, extra: &str) -> PathBuf {
        ConfigBuilder::new(self.dir.path().join("state"))
            .table(
                Table::vbo("vbo_odd", &self.url)
                    .set("api_version", api_version)
                    .set("username", "svc")
                    .set("password", "pw")
                    .set("page_size", i64::from(page_size))
                    .set("start_time", "2025-01-01T00:00:00Z")
                    .set("max_retries", 1)
                    .raw(extra),
            )
            .table(Table::file("out", &["vbo_odd"], &self.out()))
            .write(&self.dir.path().join("config.toml"))
    }

    async fn run_once(&self, config: &Path) -> Output {
        let config = config.display().to_string();
        tokio::task::spawn_blocking(move || {
            bin()
                .args(["run", "--config", &config, "--once"])
                .env_remove("RUST_LOG")
                .output()
                .expect("binary runs")
        })
        .await
        .unwrap()
    }

    fn all_event_ids(&self) -> HashSet<String> {
        let w = self.world.lock().unwrap();
        w.sessions
            .iter()
            .flat_map(|s| s.events.iter().map(|(id, _)| id.clone()))
            .collect()
    }

    /// Every event the server has arrived exactly once.
    #[track_caller]
    fn assert_exactly_once(&self, what: &str) {
        let counts = id_counts(&read_ndjson(&self.out()));
        let expected = self.all_event_ids();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
        let extra: Vec<&String> = counts.keys().filter(|id| !expected.contains(*id)).collect();
        assert!(
            missing.is_empty() && repeated.is_empty() && extra.is_empty(),
            "{what}: missing {missing:?}, repeated {repeated:?}, unknown {extra:?}"
        );
    }
    /// A new stopped session created at `created`, one more `--once` run, and every event
    /// exactly once.
    async fn after_a_new_session(&self, config: &Path, created: &str, version: &str) {
        self.world
            .lock()
            .unwrap()
            .sessions
            .push(session("s3", created, true, &[0]));
        let out = self.run_once(config).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        self.assert_exactly_once(&format!("{version}, after a new session"));
    }
}

fn session(id: &str, created: &str, stopped: bool, orders: &[i64]) -> Session {
    Session {
        id: id.into(),
        created: created.into(),
        stopped,
        events: orders
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("{id}-e{i}"), *o))
            .collect(),
        ..Session::default()
    }
}

/// Add events with these orders to session `index` (ids continue its numbering).
fn grow(world: &Shared, index: usize, orders: &[i64], stop: bool) {
    let mut w = world.lock().unwrap();
    let s = &mut w.sessions[index];
    for o in orders {
        let id = format!("{}-e{}", s.id, s.events.len());
        s.events.push((id, *o));
    }
    s.stopped = stop;
}

/// `order` values that are not offsets: starting at 1, with gaps, at 1000, all the same:
/// a running session read, grown and stopped, read again, then once more: each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_orders_that_are_not_offsets_lose_and_repeat_nothing() {
    let cases: [(&str, Vec<i64>, Vec<i64>); 4] = [
        ("one-based", vec![1, 2, 3, 4, 5], vec![6, 7]),
        ("gapped", vec![0, 2, 4, 6, 8], vec![10, 12, 14, 16]),
        (
            "from-1000",
            vec![1000, 1001, 1002, 1003, 1004],
            vec![1005, 1006, 1007, 1008],
        ),
        ("all-zero", vec![0; 5], vec![0; 3]),
    ];
    for (name, first, then) in cases {
        let case = Case::new(World {
            sessions: vec![session("s1", "2025-06-01T10:00:00Z", false, &first)],
            cap: 2,
            ..World::default()
        })
        .await;
        let cfg = case.config("v8", 500);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        case.assert_exactly_once(&format!("{name}, first run"));
        grow(&case.world, 0, &then, true);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        case.assert_exactly_once(&format!("{name}, after the session stopped"));
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        case.assert_exactly_once(&format!("{name}, once more"));
    }
}

/// A server may show a session `Stopped` before its last event ("restore session stopped")
/// is listed: a session that stopped moments ago is read once more in the next cycle, so
/// that event arrives (once), on every API version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_listed_after_its_session_stopped_arrives() {
    for version in ["v6", "v8"] {
        let mut stopped = session("s1", "2025-06-01T10:00:00Z", true, &[0, 1, 2]);
        stopped.ended = Some(chrono::Utc::now().to_rfc3339());
        let case = Case::new(World {
            sessions: vec![stopped],
            cap: 2,
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        case.assert_exactly_once(&format!("{version}, first run"));
        grow(&case.world, 0, &[3], true);
        for run in ["second", "third"] {
            let out = case.run_once(&cfg).await;
            assert!(out.status.success(), "{version} {run}: {}", text(&out));
            case.assert_exactly_once(&format!("{version}, {run} run"));
        }
        // Cycles closer together than the server takes to list that event (a short
        // `poll_interval`): the session is read again until 30 s after it was first read
        // as stopped, not just once.
        grow(&case.world, 0, &[4], true);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        case.assert_exactly_once(&format!("{version}, several quick cycles later"));

        // A session read while working, then read as stopped (its `endTime` long ago, as
        // in a server's test data), and only then given its last event.
        let case = Case::new(World {
            sessions: vec![session("s2", "2025-06-01T10:00:00Z", false, &[0, 1])],
            cap: 2,
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        grow(&case.world, 0, &[], true);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        grow(&case.world, 0, &[2], true);
        for run in ["after the last event", "once more"] {
            let out = case.run_once(&cfg).await;
            assert!(out.status.success(), "{version} {run}: {}", text(&out));
            case.assert_exactly_once(&format!("{version}, seen working, {run}"));
        }
    }
}

/// A session whose `creationTime` is unusable is placed at the horizon of the cycle that
/// first lists it; when newer sessions move the horizon on, it must not be pruned from the
/// checkpoint and shipped again by the next listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_a_usable_creation_time_is_shipped_once() {
    for version in ["v6", "v8"] {
        let mut no_time = session("s-no-time", "2025-05-01T10:00:00Z", true, &[0, 1]);
        no_time.listed_created = Some(Value::Null);
        let case = Case::new(World {
            sessions: vec![
                no_time,
                session("s1", "2025-06-01T10:00:00Z", true, &[0]),
                session("s2", "2025-06-02T10:00:00Z", true, &[0, 1]),
            ],
            cap: 2,
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        for run in ["first", "second", "third"] {
            let out = case.run_once(&cfg).await;
            assert!(out.status.success(), "{version} {run}: {}", text(&out));
            case.assert_exactly_once(&format!("{version}, {run} run"));
            // Where we place it says nothing about the server's order.
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("out of order"),
                "{version} {run}: {}",
                text(&out)
            );
            if run == "first" {
                // A session that shows up late, inside the lookback: listed after the
                // placed one (which the server sorts first), before the horizon.
                case.world.lock().unwrap().sessions.push(session(
                    "s-late",
                    "2025-06-02T09:59:00Z",
                    true,
                    &[0],
                ));
            }
        }
        case.after_a_new_session(&cfg, "2025-06-05T10:00:00Z", version)
            .await;
    }
}

/// A session stamped in the future (a server clock set ahead and corrected, a bogus
/// 9999-12-31) is shipped once and hides none of the sessions created after it with the
/// right time: the horizon stops at this host's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stamped_in_the_future_hides_no_later_session() {
    for version in ["v7", "v8"] {
        let case = Case::new(World {
            sessions: vec![
                session("s1", "2025-06-01T10:00:00Z", true, &[0, 1]),
                session("s-future", "9999-12-31T23:59:59.0000000Z", true, &[0, 1]),
            ],
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("created in the future"),
            "{version}: {}",
            text(&out)
        );
        case.assert_exactly_once(&format!("{version}, first run"));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        case.after_a_new_session(&cfg, &now, version).await;
    }
}

/// Older sessions deleted while the (v8, oldest first) listing is paged move the later ones
/// down by more than the pages' overlap: the listing reads back instead of skipping the
/// sessions that moved past the page boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_deleted_while_the_listing_is_paged_push_none_past_the_boundary() {
    for deleted in [2, 5, 12] {
        let sessions = (0..40)
            .map(|i| {
                let id = format!("s{i:02}");
                let t = chrono::DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z").unwrap()
                    + chrono::TimeDelta::minutes(10 * i);
                session(&id, &t.to_rfc3339(), true, &[0, 1])
            })
            .collect();
        let case = Case::new(World {
            sessions,
            delete_after_first_page: deleted,
            ..World::default()
        })
        .await;
        let cfg = case.config("v8", 10);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{deleted}: {}", text(&out));
        case.assert_exactly_once(&format!("{deleted} deleted"));
    }
}

/// A stopped session whose events are listed newest first, in pages of 2: every page is
/// read and every event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_listed_newest_first_all_arrive() {
    let case = Case::new(World {
        sessions: vec![session(
            "s1",
            "2025-06-01T10:00:00Z",
            true,
            &[0, 1, 2, 3, 4, 5],
        )],
        cap: 2,
        events_newest_first: true,
        ..World::default()
    })
    .await;
    let cfg = case.config("v8", 500);
    for run in ["first", "second"] {
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{run}: {}", text(&out));
        case.assert_exactly_once(run);
    }
}

/// Events listed newest first while the session runs: new events appear at the front, so
/// offsets say nothing. The source sees the `order`s fall, warns, reads the listing whole
/// from then on and ships what is above the highest order shipped: every event once,
/// the last ones (and the stop marker) included, on v6 and v8, in pages of 2 and of 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_session_listed_newest_first_loses_and_repeats_nothing() {
    for (version, page) in [("v8", 2), ("v6", 500), ("v8", 500)] {
        let case = Case::new(World {
            sessions: vec![session("s1", "2025-06-01T10:00:00Z", false, &[0, 1])],
            cap: page,
            events_newest_first: true,
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}: {}", text(&out));
        case.assert_exactly_once(&format!("{version}/{page}, first run"));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("newest first"),
            "{version}/{page}: {}",
            text(&out)
        );
        grow(&case.world, 0, &[2, 3], false);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{version}/{page}: {}", text(&out));
        case.assert_exactly_once(&format!("{version}/{page}, grown"));
        grow(&case.world, 0, &[4, 5, 6], true);
        for run in ["stopped", "once more"] {
            let out = case.run_once(&cfg).await;
            assert!(
                out.status.success(),
                "{version}/{page} {run}: {}",
                text(&out)
            );
            case.assert_exactly_once(&format!("{version}/{page}, {run}"));
        }
    }
}

/// A server answering 204 No Content for an events page with nothing in it (outside the
/// spec, which answers an empty page): read as that empty page, so runs succeed and every
/// event arrives once as a running session grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_for_an_empty_events_page_is_an_empty_page() {
    let case = Case::new(World {
        sessions: vec![session("s1", "2025-06-01T10:00:00Z", false, &[0, 1, 2])],
        cap: 2,
        no_content_when_empty: true,
        ..World::default()
    })
    .await;
    let cfg = case.config("v8", 500);
    for (run, grown) in [
        ("first", &[][..]),
        ("grown", &[3, 4][..]),
        ("quiet", &[][..]),
    ] {
        grow(&case.world, 0, grown, false);
        let out = case.run_once(&cfg).await;
        assert!(out.status.success(), "{run}: {}", text(&out));
        case.assert_exactly_once(run);
    }
}

/// A v8 server that lists sessions newest first although asked for `orderAsc=true`, in
/// pages of 2: no session is lost (the horizon doesn't follow a listing out of order), the
/// warning says what the server does, and a second run repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v8_server_ignoring_order_asc_loses_no_session() {
    let sessions = (0..6)
        .map(|i| {
            let id = format!("s{i}");
            session(&id, &format!("2025-06-01T1{i}:00:00Z"), true, &[0, 1])
        })
        .collect();
    let case = Case::new(World {
        sessions,
        cap: 2,
        sessions_newest_first: true,
        ..World::default()
    })
    .await;
    let cfg = case.config("v8", 500);
    let out = case.run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of order"),
        "{}",
        text(&out)
    );
    case.assert_exactly_once("first run");
    // A new session, newest of all.
    case.world.lock().unwrap().sessions.push(session(
        "s6",
        "2025-06-02T10:00:00Z",
        true,
        &[0, 1, 2],
    ));
    let out = case.run_once(&cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    case.assert_exactly_once("second run");
}

/// A v6 (and a v8) server that ignores `startTimeFrom` lists every session ever, each
/// cycle: sessions finished and pruned from the checkpoint are not shipped again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_start_time_from_repeats_nothing() {
    for version in ["v6", "v8"] {
        let case = Case::new(World {
            sessions: vec![
                session("s0", "2025-06-01T10:00:00Z", true, &[0, 1]),
                session("s1", "2025-06-02T10:00:00Z", true, &[0, 1]),
                session("s2", "2025-06-03T10:00:00Z", true, &[0, 1]),
            ],
            cap: 2,
            ignore_start_time_from: true,
            ..World::default()
        })
        .await;
        let cfg = case.config(version, 500);
        for run in ["first", "second", "third"] {
            let out = case.run_once(&cfg).await;
            assert!(out.status.success(), "{version} {run}: {}", text(&out));
            case.assert_exactly_once(&format!("{version}, {run} run"));
        }
        case.after_a_new_session(&cfg, "2025-06-04T10:00:00Z", version)
            .await;
    }
}

/// Records Veeam's own serializer would not write but a server may send, and session ids
/// that are no GUIDs (the audit of 2026-12-04): a lone UTF-16 surrogate escape or a raw
/// tab in a session or an event, a session id with `? # / % \\` and `..` in it, and a
/// JSON array where an event belongs. Every event arrives once, the odd ones flagged; the
/// array is skipped, never read field by field as an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_json_and_odd_session_ids_lose_nothing() {
    let mut surrogate = session("s-surrogate", "2025-03-04T08:00:00Z", true, &[0, 1]);
    surrogate.extra = Some(r#""details":"cut emoji \ud83d","scopeName":"tab	here""#);
    let mut odd_event = session("s-odd-events", "2025-03-04T08:01:00Z", true, &[0, 1, 2]);
    odd_event.event_extra = Some(r#""source":"\udc00 C:\\share	x","eTag":NaN"#);
    odd_event.junk_events = vec![
        r#"["arr-ev","Restore","Success","2025-03-04T08:00:01Z",null,null,"t","m",9,"ceo-mailbox.pst"]"#,
    ];
    let odd_ids = ["odd?id#1/..%2F\\x", "..x/../y"];
    let mut sessions = vec![surrogate, odd_event];
    for (i, id) in odd_ids.iter().enumerate() {
        sessions.push(session(
            id,
            &format!("2025-03-04T08:0{}:00Z", i + 2),
            true,
            &[0, 1],
        ));
    }
    let c = Case::new(World {
        sessions,
        ..World::default()
    })
    .await;
    let config = c.config("v8", 50);
    let out = c.run_once(&config).await;
    assert!(out.status.success(), "{}", text(&out));
    c.assert_exactly_once("odd JSON and odd ids");
    let events = read_ndjson(&c.out());
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["event"]["id"] == id)
            .unwrap_or_else(|| panic!("{id} shipped"))
    };
    let e = by_id("s-surrogate-e0");
    let session = &e["veeam"]["restore_session"];
    assert_eq!(session["details"], "cut emoji \u{FFFD}");
    assert_eq!(session["scope_name"], "tab\there");
    assert!(
        e["tags"].to_string().contains("veeam_field_degraded"),
        "{e}"
    );
    let e = by_id("s-odd-events-e1");
    assert_eq!(
        e["veeam"]["restore_event"]["source"],
        "\u{FFFD} C:\\share\tx"
    );
    assert!(
        e["tags"].to_string().contains("veeam_field_degraded"),
        "{e}"
    );
    assert!(e["event"]["original"].as_str().is_some(), "{e}");
    assert!(
        !events.iter().any(|e| e["event"]["id"] == "arr-ev"),
        "an array is never an event"
    );
}

/// A server without `GET …/Events/{id}` (404), with events listed `Running` in a working
/// session: held by the first run, each is looked for where the listing had it; one that
/// completed ships with its final status, one still running once the session stopped
/// ships as it is. Nothing is lost, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_progress_on_a_server_without_events_by_id_arrive_final() {
    let mut working = session("s1", "2025-03-04T08:00:00Z", false, &[0, 1, 2, 3]);
    let (e2, e3) = (working.events[2].0.clone(), working.events[3].0.clone());
    working.running = vec![e2.clone(), e3.clone()];
    let case = Case::new(World {
        sessions: vec![working],
        ..World::default()
    })
    .await;
    let config = case.config_with("v8", 10, "hold_in_progress = true");
    let status_of = |id: &str| -> Vec<String> {
        read_ndjson(&case.out())
            .iter()
            .filter(|e| e["event"]["id"] == id)
            .map(|e| {
                e["veeam"]["restore_event"]["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let out = case.run_once(&config).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        read_ndjson(&case.out()).len(),
        2,
        "both in progress are held"
    );
    // e2 completes in place; e3 goes on.
    case.world.lock().unwrap().sessions[0].running = vec![e3.clone()];
    let out = case.run_once(&config).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(status_of(&e2), ["Success"], "{}", text(&out));
    assert!(status_of(&e3).is_empty());
    // The session stops with e3 still listed as running: it ships as it is.
    case.world.lock().unwrap().sessions[0].stopped = true;
    let out = case.run_once(&config).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(status_of(&e3), ["Running"]);
    case.assert_exactly_once("after the session stopped");
}
