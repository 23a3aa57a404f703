//! Hostile and careless servers against the real binary: redirects that would carry
//! credentials or events to another host, oversized and odd token responses, terminal
//! escape sequences in server data, clear-text endpoints, and SIGHUP during startup.
//!
//! Every server here is a real HTTP server on loopback (axum). A "witness" server stands
//! for the other host a redirect points at: it must never receive a request.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::config::{ConfigBuilder, Table};
use crate::support::harness;
use harness::{bin, read_ndjson, text};

/// The VB365 password the fake server accepts; must never reach the witness or any output.
const PASSWORD: &str = "Hostile-Pw-4471";
const VDC_KEY: &str = "vdc-Key-Secret-77";
const HEC_TOKEN: &str = "hec-Token-Secret-55";

/// A session id and an `initiatedBy` full of terminal controls: an OSC title sequence,
/// CSI (7-bit and the 8-bit C1 form), DEL and a right-to-left override.
const SESSION_ID: &str = "s1-\u{1b}]0;owned\u{7}-\u{9b}2J-\u{7f}-\u{202e}x";
const INITIATED_BY: &str = "mallory\u{1b}[2J\u{1b}[31m\u{9b}0m\u{2066}@contoso.com";

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The other host: counts every request it gets (there must be none).
struct Witness {
    server: Server,
    hits: Arc<AtomicUsize>,
}

impl Witness {
    async fn start() -> Witness {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = Router::new().fallback(move |body: Bytes| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let _ = body;
                (StatusCode::OK, "{\"access_token\":\"stolen\",\"code\":0}")
            }
        });
        Witness {
            server: Server::start(app).await,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// A `Location` to the witness, with userinfo and a query that must not be shown.
    fn location(&self, path: &str) -> String {
        format!(
            "http://thief:Loc-Pw-123@{}{path}?sig=Loc-Query-Secret",
            self.server.addr
        )
    }
}

fn redirect(status: StatusCode, location: String) -> Response {
    (status, [(header::LOCATION, location)], "").into_response()
}

/// How the fake VB365 answers `/token`.
#[derive(Clone)]
enum TokenMode {
    /// A normal answer; `expires_in` is raw JSON (`None`: the field is absent).
    Ok { expires_in: Option<String> },
    /// 307 (the client would re-POST the password) to this location.
    Redirect(String),
    /// A valid answer after this many bytes of leading whitespace.
    Padded(usize),
    /// 500 quoting the request body back (a careless proxy or debug page).
    Echo,
}

#[derive(Clone)]
struct VboBehaviour {
    token: TokenMode,
    /// 302 for the restore-session listing.
    listing_redirect: Option<String>,
}

impl Default for VboBehaviour {
    fn default() -> Self {
        VboBehaviour {
            token: TokenMode::Ok {
                expires_in: Some("3600".into()),
            },
            listing_redirect: None,
        }
    }
}

fn session() -> Value {
    json!({
        "id": SESSION_ID,
        "name": "Restore \u{1b}[5mblink",
        "organization": "contoso.onmicrosoft.com",
        "type": "Vex",
        "creationTime": "2024-05-01T10:00:00Z",
        "endTime": "2024-05-01T10:05:00Z",
        "state": "Stopped",
        "result": "Success",
        "initiatedBy": INITIATED_BY,
        "details": "",
        "scopeName": "contoso",
        "clientHost": "WS01 (via: 203.0.113.10)",
        "reason": "ticket \u{1b}]8;;http://evil/\u{7}link"
    })
}

fn events() -> Vec<Value> {
    let event = |id: Option<&str>, order: i64| {
        let mut e = json!({
            "type": "Restore",
            "status": "Success",
            "startTime": "2024-05-01T10:01:00Z",
            "endTime": "2024-05-01T10:01:05Z",
            "duration": "00:00:05",
            "title": "Restore item",
            "message": "ok",
            "order": order,
            "itemName": "Inbox \u{1b}[2J",
            "itemType": "Mailbox",
            "itemSizeBytes": 1024,
            "source": "mailbox",
            "target": "mailbox"
        });
        if let Some(id) = id {
            e["id"] = json!(id);
        }
        e
    };
    // The middle one has no id: it is skipped and logged with its session id.
    vec![event(Some("e1"), 0), event(None, 1), event(Some("e3"), 2)]
}

/// `limit`/`offset` paging over `items`, in the VB365 page envelope.
fn page(items: &[Value], q: &HashMap<String, String>) -> Response {
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    let results: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
    axum::Json(json!({"offset": offset, "limit": limit, "results": results})).into_response()
}

fn token_answer(expires_in: Option<&str>) -> String {
    let mut fields = vec![
        "\"access_token\":\"AT-1\"".to_string(),
        "\"refresh_token\":\"RT-1\"".to_string(),
        "\"token_type\":\"bearer\"".to_string(),
    ];
    if let Some(raw) = expires_in {
        fields.push(format!("\"expires_in\":{raw}"));
    }
    format!("{{{}}}", fields.join(","))
}

/// A fake VB365 v8 REST API with one restore session of three events.
async fn fake_vbo(b: VboBehaviour) -> Server {
    let b = Arc::new(b);
    let tb = b.clone();
    let lb = b.clone();
    let app = Router::new()
        .route(
            "/v8/token",
            post(move |body: String| {
                let tb = tb.clone();
                async move {
                    if matches!(tb.token, TokenMode::Echo) {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("Bad request: {body} (as JSON: {})", json!({ "body": body })),
                        )
                            .into_response();
                    }
                    if !body.contains(PASSWORD) && !body.contains("refresh_token") {
                        return (StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}")
                            .into_response();
                    }
                    match &tb.token {
                        TokenMode::Ok { expires_in } => (
                            [(header::CONTENT_TYPE, "application/json")],
                            token_answer(expires_in.as_deref()),
                        )
                            .into_response(),
                        TokenMode::Redirect(loc) => {
                            redirect(StatusCode::TEMPORARY_REDIRECT, loc.clone())
                        }
                        TokenMode::Echo => unreachable!("answered above"),
                        TokenMode::Padded(n) => (
                            [(header::CONTENT_TYPE, "application/json")],
                            format!("{}{}", " ".repeat(*n), token_answer(Some("3600"))),
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .route(
            "/v8/RestoreSessions",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let lb = lb.clone();
                async move {
                    if let Some(loc) = &lb.listing_redirect {
                        return redirect(StatusCode::FOUND, loc.clone());
                    }
                    page(&[session()], &q)
                }
            }),
        )
        .route(
            "/v8/RestoreSessions/{id}",
            get(|UrlPath(id): UrlPath<String>| async move {
                if id == SESSION_ID {
                    axum::Json(session()).into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/v8/RestoreSessions/{id}/Events",
            get(
                |UrlPath(id): UrlPath<String>, Query(q): Query<HashMap<String, String>>| async move {
                    if id == SESSION_ID {
                        page(&events(), &q)
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                },
            ),
        );
    Server::start(app).await
}

/// A fake VDC API whose job list redirects to `location`.
async fn fake_vdc_redirecting(location: String) -> Server {
    let app = Router::new().fallback(move || {
        let location = location.clone();
        async move { redirect(StatusCode::FOUND, location) }
    });
    Server::start(app).await
}

/// A fake HEC: healthy, accepts the token probe (an empty POST is "No data"), and answers
/// every POST with events by a 307 to `location`.
async fn fake_hec_redirecting(location: String, posts: Arc<AtomicUsize>) -> Server {
    let app = Router::new()
        .route(
            "/services/collector/health",
            get(|| async { axum::Json(json!({"text": "HEC is healthy", "code": 17})) }),
        )
        .route(
            "/services/collector/event",
            post(move |headers: HeaderMap, body: Bytes| {
                let location = location.clone();
                let posts = posts.clone();
                async move {
                    let authorized = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        == Some(&format!("Splunk {HEC_TOKEN}"));
                    if !authorized {
                        return (
                            StatusCode::FORBIDDEN,
                            axum::Json(json!({"text": "Invalid token", "code": 4})),
                        )
                            .into_response();
                    }
                    if body.is_empty() {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"text": "No data", "code": 5})),
                        )
                            .into_response();
                    }
                    posts.fetch_add(1, Ordering::SeqCst);
                    redirect(StatusCode::TEMPORARY_REDIRECT, location)
                }
            }),
        );
    Server::start(app).await
}

// ---------------------------------------------------------------------------------------
// Configs and runs
// ---------------------------------------------------------------------------------------

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.ndjson")
    }

    /// The VB365 source `vbo_h` on a fake server at `url`.
    fn vbo_source(&self, url: &str) -> Table {
        Table::vbo("vbo_h", url)
            .set("username", "svc")
            .set("password", "${HOSTILE_PW}")
            .set("poll_interval", "1s")
            .set("request_timeout", "10s")
            .set("max_retries", 1)
    }

    fn file_sink(&self, input: &str) -> Table {
        Table::file("archive", &[input], &self.out())
    }

    /// Write `[state]` plus `tables` to `config.toml`; returns the path.
    fn config(&self, tables: impl IntoIterator<Item = Table>) -> PathBuf {
        ConfigBuilder::new(self.state())
            .tables(tables)
            .write(&self.dir.path().join("config.toml"))
    }

    async fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            bin()
                .args(&args)
                .env("HOSTILE_PW", PASSWORD)
                .env_remove("RUST_LOG")
                .output()
                .expect("binary runs")
        })
        .await
        .unwrap()
    }

    async fn run_once(&self, config: &Path) -> Output {
        self.run(&["run", "--config", &config.display().to_string(), "--once"])
            .await
    }

    async fn check(&self, config: &Path) -> Output {
        self.run(&["check", "--config", &config.display().to_string()])
            .await
    }
}

#[track_caller]
fn assert_no_secret(out: &Output) {
    let all = text(out);
    for secret in [
        PASSWORD,
        VDC_KEY,
        HEC_TOKEN,
        "Loc-Pw-123",
        "Loc-Query-Secret",
        "AT-1",
        "RT-1",
    ] {
        assert!(!all.contains(secret), "`{secret}` leaked:\n{all}");
    }
}

/// A refused redirect: exit 1, the message names the redirect and where it pointed (host
/// and port, no userinfo, no query) and says to configure the final URL.
#[track_caller]
fn assert_redirect_refused(out: &Output, witness: &Witness) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redirect"), "{stderr}");
    assert!(
        stderr.contains(&witness.server.addr.to_string()),
        "the Location is named: {stderr}"
    );
    assert!(stderr.contains("final URL"), "says what to fix: {stderr}");
    assert_eq!(witness.hits(), 0, "the other host received a request");
    assert_no_secret(out);
}

// ---------------------------------------------------------------------------------------
// Item 7: redirects are not followed
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_redirect_does_not_carry_the_password_away() {
    let witness = Witness::start().await;
    let vbo = fake_vbo(VboBehaviour {
        token: TokenMode::Redirect(witness.location("/v8/token")),
        ..VboBehaviour::default()
    })
    .await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    let out = case.run_once(&cfg).await;
    assert_redirect_refused(&out, &witness);
    assert!(read_ndjson(&case.out()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_page_redirect_does_not_carry_the_token_away() {
    let witness = Witness::start().await;
    let vbo = fake_vbo(VboBehaviour {
        listing_redirect: Some(witness.location("/v8/RestoreSessions")),
        ..VboBehaviour::default()
    })
    .await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    let out = case.run_once(&cfg).await;
    assert_redirect_refused(&out, &witness);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vdc_redirect_does_not_carry_the_api_key_away() {
    let witness = Witness::start().await;
    let vdc = fake_vdc_redirecting(witness.location("/v1/reports/backup-jobs")).await;
    let case = Case::new();
    let cfg = case.config([
        Table::source("vdc_h", "vdc")
            .set("url", vdc.url())
            .set("api_key", VDC_KEY)
            .set("max_retries", 1),
        case.file_sink("vdc_h"),
    ]);
    let out = case.run_once(&cfg).await;
    assert_redirect_refused(&out, &witness);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hec_redirect_delivers_nothing_elsewhere_and_acknowledges_nothing() {
    let witness = Witness::start().await;
    let posts = Arc::new(AtomicUsize::new(0));
    let hec =
        fake_hec_redirecting(witness.location("/services/collector/event"), posts.clone()).await;
    let vbo = fake_vbo(VboBehaviour::default()).await;
    let case = Case::new();
    let cfg = case.config([
        case.vbo_source(&vbo.url()),
        Table::hec("splunk", &["vbo_h"], &hec.url())
            .set("token", HEC_TOKEN)
            .set("max_retries", 1),
    ]);
    let out = case.run_once(&cfg).await;
    assert_redirect_refused(&out, &witness);
    assert!(posts.load(Ordering::SeqCst) >= 1, "events were offered");
    assert!(
        !case.state().join("vbo_h.checkpoint.json").exists(),
        "nothing was acknowledged, so no checkpoint"
    );
}

// ---------------------------------------------------------------------------------------
// Items 8 and 9: token responses
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_token_response_is_refused() {
    let vbo = fake_vbo(VboBehaviour {
        token: TokenMode::Padded(8 * 1024 * 1024),
        ..VboBehaviour::default()
    })
    .await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    let out = case.run_once(&cfg).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("larger than"), "{stderr}");
    assert_no_secret(&out);
}

/// A token endpoint that quotes the request (with the password) in its 500 page: the
/// password is in neither the run's errors and logs nor `check`'s report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_echoing_the_password_does_not_get_it_printed() {
    let vbo = fake_vbo(VboBehaviour {
        token: TokenMode::Echo,
        ..VboBehaviour::default()
    })
    .await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    for out in [case.run_once(&cfg).await, case.check(&cfg).await] {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let all = text(&out);
        assert!(
            all.contains("Bad request"),
            "the server's text is still shown: {all}"
        );
        assert!(all.contains("password=***"), "{all}");
        assert_no_secret(&out);
    }
}

/// Whatever `expires_in` says, `check` and `run` neither panic nor fail: the lifetime is
/// clamped (or the default used) and the events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_expires_in_is_clamped_never_a_panic() {
    let cases: &[Option<&str>] = &[
        Some("0"),
        Some("-5"),
        Some("1"),
        Some("9223372036854775807"),
        Some("18446744073709551615"),
        Some("-9223372036854775808"),
        Some("3600.5"),
        Some("1e300"),
        Some("\"3600\""),
        Some("\"soon\""),
        Some("null"),
        Some("{}"),
        None,
    ];
    for expires_in in cases {
        let vbo = fake_vbo(VboBehaviour {
            token: TokenMode::Ok {
                expires_in: expires_in.map(str::to_string),
            },
            ..VboBehaviour::default()
        })
        .await;
        let case = Case::new();
        let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
        let out = case.check(&cfg).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "check, {expires_in:?}: {}",
            text(&out)
        );
        let out = case.run_once(&cfg).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "run, {expires_in:?}: {}",
            text(&out)
        );
        assert_eq!(read_ndjson(&case.out()).len(), 2, "{expires_in:?}");
        assert_no_secret(&out);
    }
}

// ---------------------------------------------------------------------------------------
// Item 11: terminal control characters from the server
// ---------------------------------------------------------------------------------------

/// Raw C0 (but the line feed), DEL, C1 or a bidi control, as found in `text`.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_text_logs_escape_control_characters_but_events_keep_them() {
    let vbo = fake_vbo(VboBehaviour::default()).await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);

    let out = case.check(&cfg).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sample"), "{stdout}");
    assert_eq!(raw_controls(&stdout), Vec::<char>::new(), "{stdout:?}");
    assert!(stdout.contains("\\u{1b}"), "escaped visibly: {stdout}");
    assert_eq!(
        raw_controls(&String::from_utf8_lossy(&out.stderr)),
        Vec::<char>::new()
    );

    for format in ["text", "json"] {
        let _ = std::fs::remove_dir_all(case.state());
        let _ = std::fs::remove_file(case.out());
        let out = case
            .run(&[
                "--log-format",
                format,
                "run",
                "--config",
                &cfg.display().to_string(),
                "--once",
            ])
            .await;
        assert_eq!(out.status.code(), Some(0), "{format}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("skipping malformed restore event"),
            "{format}: the log names the session of the bad event: {stderr}"
        );
        assert_eq!(
            raw_controls(&stderr),
            Vec::<char>::new(),
            "{format}: {stderr:?}"
        );
        if format == "json" {
            // Still one JSON object per line, with the exact session id inside.
            let line = stderr
                .lines()
                .find(|l| l.contains("skipping malformed restore event"))
                .unwrap();
            let v: Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(v["fields"]["session_id"], SESSION_ID, "{line}");
        }
        // The events keep Veeam's exact strings.
        let events = read_ndjson(&case.out());
        assert_eq!(events.len(), 2, "{format}");
        for e in &events {
            assert_eq!(e["veeam"]["restore_session"]["id"], SESSION_ID);
        }
        let file = std::fs::read_to_string(case.out()).unwrap();
        assert!(file.contains("\\u001b"), "JSON escapes, value intact");
    }
}

// ---------------------------------------------------------------------------------------
// Item 12: clear-text endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_endpoints_are_warned_about_once_and_in_check() {
    let vbo = fake_vbo(VboBehaviour::default()).await;
    let case = Case::new();
    let cfg = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    let out = case.run_once(&cfg).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("clear text"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("sources.vbo_h.url") && warnings[0].contains("WARN"),
        "{stderr}"
    );

    let out = case.check(&cfg).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not a failure: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("warn")
            && l.contains("sources.vbo_h.url")
            && l.contains("clear text")),
        "{stdout}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// Item 17: SIGHUP while starting
// ---------------------------------------------------------------------------------------

/// `O_NONBLOCK` on Linux.
const O_NONBLOCK: i32 = 0o4000;

fn kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

/// Whether `pid` catches SIGHUP (bit 0 of `SigCgt` in /proc/<pid>/status).
fn catches_sighup(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The config is a FIFO, so the process sits in its config load until the test writes it:
/// SIGHUP must already be handled there (and in the first milliseconds of the run), and
/// the daemon must still stop cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_while_starting_is_not_fatal() {
    let vbo = fake_vbo(VboBehaviour::default()).await;
    let case = Case::new();
    let regular = case.config([case.vbo_source(&vbo.url()), case.file_sink("vbo_h")]);
    let config_text = std::fs::read_to_string(&regular).unwrap();
    let fifo = case.dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let log = case.dir.path().join("daemon.log");
    let out = case.out();
    let fifo_s = fifo.display().to_string();
    let log_c = log.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = harness::Reaped::spawn(
            bin()
                .args(["run", "--config", &fifo_s])
                .env("HOSTILE_PW", PASSWORD)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_c).unwrap()),
        );
        let pid = child.id();
        let start = Instant::now();
        while !catches_sighup(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // At once, and a few times more, while the config is still being read.
        for _ in 0..3 {
            kill(pid, "-HUP");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP before the config was read killed the process: {}",
            std::fs::read_to_string(&log_c).unwrap_or_default()
        );
        // Hand over the config, then replace the FIFO by a regular file for reloads.
        // Non-blocking: if the process died, there is no reader and this fails at once.
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
            .unwrap_or_else(|e| {
                panic!(
                    "the process no longer reads its config ({e}): {}",
                    std::fs::read_to_string(&log_c).unwrap_or_default()
                )
            });
        writer.write_all(config_text.as_bytes()).unwrap();
        drop(writer);
        std::fs::rename(&regular, &fifo).unwrap();
        for _ in 0..5 {
            kill(pid, "-HUP");
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = Instant::now();
        while read_ndjson(&out).len() < 2 && start.elapsed() < Duration::from_secs(30) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the daemon died: {}",
                std::fs::read_to_string(&log_c).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(read_ndjson(&out).len(), 2, "the daemon delivers");
        kill(pid, "-TERM");
        let status = wait_exit(&mut child, Duration::from_secs(60));
        if status.is_none() {
            let _ = child.kill();
        }
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            std::fs::read_to_string(&log_c).unwrap_or_default()
        );
    })
    .await
    .unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("panicked"), "{log_text}");
}

/// A fake VDC API with one job and two finished sessions: `s-big`, whose `/logs` is three
/// pages of one ~45 MiB entry each (more than a JSON-mode log may hold), and `s-small`, an
/// ordinary two-entry log.
async fn fake_vdc_with_a_huge_log() -> Server {
    let big = Arc::new("x".repeat(45 * 1024 * 1024));
    let app = Router::new().fallback(
        move |uri: axum::http::Uri, Query(q): Query<HashMap<String, String>>| {
            let big = big.clone();
            async move {
                let entry = |id: &str, title: &str| {
                    json!({"id": id, "creationTime": "2025-03-03T02:00:01Z",
                           "endTime": "2025-03-03T02:00:02Z", "title": title})
                };
                let body = match uri.path().to_ascii_lowercase().as_str() {
                    "/v1/reports/backup-jobs" => json!([{"id": "j1", "name": "Mailboxes"}]),
                    "/v1/reports/backup-jobs/j1/job-sessions" => json!([
                        {"id": "s-big", "creationTime": "2025-03-03T02:00:00Z",
                         "endTime": "2025-03-03T02:10:00Z", "status": "Success"},
                        {"id": "s-small", "creationTime": "2025-03-03T03:00:00Z",
                         "endTime": "2025-03-03T03:10:00Z", "status": "Success"},
                    ]),
                    "/v1/reports/backup-jobs/j1/job-sessions/s-big/logs" => {
                        let offset: usize =
                            q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                        json!({"offset": offset, "limit": 1, "totalCount": 3,
                               "results": [entry(&format!("big-{offset}"), &big)]})
                    }
                    "/v1/reports/backup-jobs/j1/job-sessions/s-small/logs" => json!([
                        entry("small-1", "[Success] Processing mailbox: a@contoso.com"),
                        entry("small-2", "[Success] Processing mailbox: b@contoso.com"),
                    ]),
                    _ => return StatusCode::NOT_FOUND.into_response(),
                };
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        },
    );
    Server::start(app).await
}

/// A session log longer than a JSON-mode log may hold (128 MiB over its pages) is not read
/// into memory page after page: that session fails, naming the fix (`log_mode =
/// "download"`, which streams), and the other session's log still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vdc_log_too_large_to_hold_fails_alone_and_names_the_download_mode() {
    let vdc = fake_vdc_with_a_huge_log().await;
    let case = Case::new();
    let cfg = case.config([
        Table::source("vdc_h", "vdc")
            .set("url", vdc.url())
            .set("api_key", VDC_KEY)
            .set("start_time", "2025-01-01T00:00:00Z")
            .set("max_retries", 1),
        case.file_sink("vdc_h"),
    ]);
    let out = case.run_once(&cfg).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("log_mode = \"download\""), "{log}");
    assert!(log.contains("s-big"), "{log}");
    // `event.id` is Veeam's id, whatever its form.
    let ids: Vec<String> = read_ndjson(&case.out())
        .iter()
        .filter_map(|e| e["event"]["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, ["small-1", "small-2"]);
    assert_no_secret(&out);
}
