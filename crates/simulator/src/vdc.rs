//! The Veeam Data Cloud (VDC) public API endpoints, served under `/v1` next to VB365.
//!
//! Written from the only published description (Ben Young's 2024 preview post, see
//! `reference/veeam-apis.md` §2), with these **assumptions** where it is silent:
//! - The API key is accepted in `x-api-key: <key>` **or** `Authorization: Bearer <key>`;
//!   a missing or wrong key gets 401 with an RFC 7807 problem body
//!   (`{"title":"Unauthorized","status":401,"detail":...}`, also used for 404/400/503).
//! - Paths and query keys match case-insensitively (the published paths mix `reports` and
//!   `Reports`).
//! - Collections are bare JSON arrays, job sessions newest first. With
//!   `SimConfig::vdc_page_limit` set they become pages
//!   `{"offset","limit","totalCount","results"}` honouring `offset`/`limit` instead.
//! - `…/logs/download` is `text/plain; charset=utf-8`, one entry per line,
//!   `creationTime<TAB>endTime<TAB>title` (RFC 3339, 7 fraction digits). When the request
//!   says `Accept-Encoding: gzip` it is gzipped per `SimConfig::vdc_gzip`: with
//!   `Content-Encoding: gzip`, or (`MagicOnly`) as a `.gz` attachment without that header.
//!
//! Shared with VB365: latency, injected 503s (`error_rate`), the per-request fault knobs
//! (429 bursts, 5xx, stalls, cut connections), non-JSON pages
//! (`FaultConfig::vdc_not_json_times`), `ignore_offset`, and the violation log (unknown
//! endpoints, methods other than GET, unknown query keys). With
//! `FaultConfig::vdc_download_json_envelope` the download is one JSON page envelope
//! `{"offset":0,"limit":N,"logs":[…]}` instead of text. Must not: share types with the
//! client code.

use async_compression::tokio::bufread::GzipEncoder;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use url::form_urlencoded;
use uuid::Uuid;

use super::drift::{self, DriftKind};
use super::faults::{self, Faults, Verdict};
use super::state::Shared;
use super::vdc_data::{LogLine, VdcData, VdcJob, VdcSession};
use super::wire::timestamp;

/// How `/logs/download` is compressed when the client accepts gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VdcGzip {
    /// Never compressed.
    Never,
    /// gzip with `Content-Encoding: gzip`.
    #[default]
    ContentEncoding,
    /// gzip bytes without `Content-Encoding` (a `.gz` file): only the magic bytes tell.
    MagicOnly,
}

/// The query keys VDC endpoints understand (others are recorded as violations).
const QUERY_KEYS: [&str; 2] = ["offset", "limit"];

#[derive(Debug)]
enum Route {
    Jobs,
    Sessions(String),
    Logs(String, String),
    Download(String, String),
}

impl Route {
    /// From the lowercased path segments after `v1`.
    fn parse(segments: &[&str]) -> Option<Route> {
        let own = |s: &str| s.to_string();
        Some(match segments {
            ["reports", "backup-jobs"] => Route::Jobs,
            ["reports", "backup-jobs", job, "job-sessions"] => Route::Sessions(own(job)),
            ["reports", "backup-jobs", job, "job-sessions", s, "logs"] => {
                Route::Logs(own(job), own(s))
            }
            [
                "reports",
                "backup-jobs",
                job,
                "job-sessions",
                s,
                "logs",
                "download",
            ] => Route::Download(own(job), own(s)),
            _ => return None,
        })
    }
}

/// Handles a request whose path starts with `/v1` (`segments` are the lowercased path
/// segments after it).
pub(crate) async fn handle(
    sim: &Shared,
    faults: &Faults,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    segments: &[&str],
) -> Response {
    sim.count(|s| s.vdc_requests += 1);
    let what = format!("{method} {uri}");
    let Some(route) = Route::parse(segments) else {
        sim.violation(format!("{what}: no such VDC endpoint"));
        let detail = format!("No resource matches '{}'.", uri.path());
        return problem(StatusCode::NOT_FOUND, &detail);
    };
    if method != Method::GET {
        sim.violation(format!("{what}: VDC endpoints are GET only"));
        return problem(StatusCode::METHOD_NOT_ALLOWED, "Only GET is supported.");
    }
    if !authorized(&sim.cfg.vdc_api_key, headers) {
        sim.count(|s| s.vdc_unauthorized += 1);
        let mut response = problem(StatusCode::UNAUTHORIZED, "Missing or invalid API key.");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer, ApiKey"),
        );
        return response;
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    for (key, _) in &query {
        if !QUERY_KEYS.contains(&key.as_str()) {
            sim.violation(format!("{what}: unknown query parameter '{key}'"));
        }
    }
    if sim.inject_fault() {
        sim.count(|s| s.injected_errors += 1);
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable (simulated fault).",
        );
    }
    match faults.on_data_request() {
        Verdict::Serve | Verdict::Revoked => {}
        Verdict::Throttle(secs) => return faults::throttled(secs),
        Verdict::ServerError(status) => {
            return problem(status, "The server failed to answer (simulated fault).");
        }
    }
    if !matches!(route, Route::Download(..)) && faults.vdc_not_json(uri.path()) {
        return faults::not_json();
    }
    let mut paging = match Paging::parse(&query) {
        Ok(p) => p,
        Err(detail) => {
            sim.violation(format!("{what}: {detail}"));
            return problem(StatusCode::BAD_REQUEST, &detail);
        }
    };
    if faults.config().ignore_offset {
        paging.offset = 0;
    }
    let json_download = faults.config().vdc_download_json_envelope;
    let gzip = accepts_gzip(headers);
    let built = {
        let data = sim.vdc();
        match route {
            Route::Jobs => Ok(Built::Items(
                data.jobs()
                    .iter()
                    .map(|j| {
                        drift::value(&sim.cfg, DriftKind::VdcJob, &j.id.to_string(), job_json(j))
                    })
                    .collect(),
            )),
            Route::Sessions(job) => find(&data, &job, None).map(|(job, _)| {
                // Newest first.
                Built::Items(
                    job.sessions
                        .iter()
                        .rev()
                        .map(|s| {
                            let id = s.id.to_string();
                            drift::value(&sim.cfg, DriftKind::VdcSession, &id, session_json(s))
                        })
                        .collect(),
                )
            }),
            Route::Logs(job, session) => find(&data, &job, Some(&session)).map(|(job, s)| {
                Built::Items(data.lines(job, s).map(|l| drifted_line(sim, &l)).collect())
            }),
            Route::Download(job, session) => find(&data, &job, Some(&session)).map(|(job, s)| {
                let mut text = String::new();
                if json_download {
                    let logs: Vec<Value> =
                        data.lines(job, s).map(|l| drifted_line(sim, &l)).collect();
                    let page = json!({ "offset": 0, "limit": logs.len(), "logs": logs });
                    text = page.to_string();
                }
                for l in data.lines(job, s).filter(|_| !json_download) {
                    let created =
                        drift::line_time(&sim.cfg, &l.id.to_string(), timestamp(l.created));
                    text.push_str(&format!(
                        "{}\t{}\t{}\n",
                        created,
                        timestamp(l.ended),
                        l.title
                    ));
                }
                Built::Download {
                    name: job.sessions[s].id.to_string(),
                    text,
                }
            }),
        }
    };
    match built {
        Err(response) => *response,
        Ok(Built::Items(items)) => {
            let cfg = faults.config();
            let cap = (cfg.cap_limit > 0).then_some(cfg.cap_limit);
            collection(
                sim.cfg.vdc_page_limit,
                cap,
                cfg.cap_reports_asked,
                &paging,
                items,
            )
        }
        Ok(Built::Download { name, text }) => download(sim, gzip, &name, text).await,
    }
}

enum Built {
    Items(Vec<Value>),
    Download { name: String, text: String },
}

/// `offset`/`limit` as sent (validated even when paging is off).
#[derive(Debug, Default)]
struct Paging {
    offset: usize,
    limit: Option<usize>,
}

impl Paging {
    fn parse(query: &[(String, String)]) -> Result<Paging, String> {
        let mut paging = Paging::default();
        for (key, value) in query {
            let number = || {
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{value}' is not a valid value for '{key}'"))
            };
            match key.as_str() {
                "offset" => paging.offset = number()?,
                "limit" => {
                    let n = number()?;
                    if n == 0 {
                        return Err("'limit' must be at least 1".to_string());
                    }
                    paging.limit = Some(n);
                }
                _ => {}
            }
        }
        Ok(paging)
    }
}

fn authorized(key: &str, headers: &HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let by_key = header(header::HeaderName::from_static("x-api-key")).is_some_and(|v| v == key);
    let by_bearer = header(header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == key
        });
    !key.is_empty() && (by_key || by_bearer)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The job (and the position of the session in it) named by the path, or a 404.
fn find<'d>(
    data: &'d VdcData,
    job: &str,
    session: Option<&str>,
) -> Result<(&'d VdcJob, usize), Box<Response>> {
    let not_found = |what: &str, id: &str| {
        Box::new(problem(
            StatusCode::NOT_FOUND,
            &format!("{what} with the specified ID ({id}) was not found."),
        ))
    };
    let found = Uuid::parse_str(job).ok().and_then(|id| data.find_job(id));
    let job_ref = found.ok_or_else(|| not_found("Backup job", job))?;
    let Some(session) = session else {
        return Ok((job_ref, 0));
    };
    let position = Uuid::parse_str(session)
        .ok()
        .and_then(|id| job_ref.sessions.iter().position(|s| s.id == id));
    position
        .map(|s| (job_ref, s))
        .ok_or_else(|| not_found("Job session", session))
}

fn job_json(job: &VdcJob) -> Value {
    let last = job.sessions.last();
    let last_ended = job.sessions.iter().rev().find(|s| !s.is_running());
    let avg = {
        let ended: Vec<i64> = job
            .sessions
            .iter()
            .filter_map(|s| s.ended.map(|e| (e - s.created).num_seconds()))
            .collect();
        ended.iter().sum::<i64>() / (ended.len().max(1) as i64)
    };
    json!({
        "id": job.id,
        "name": job.name,
        "backupType": job.backup_type,
        "jobType": "Backup",
        "isEnabled": true,
        "lastRun": last.map(|s| timestamp(s.created)),
        "lastStatus": last_ended.map(|s| s.status.as_str()),
        "nextRun": last.map(|s| timestamp(s.created + chrono::TimeDelta::days(1))),
        "avgJobProcessTimeInSeconds": avg,
        "organizationVboInstanceId": 1 + job.index % 2,
    })
}

fn session_json(s: &VdcSession) -> Value {
    json!({
        "id": s.id,
        "creationTime": timestamp(s.created),
        "endTime": s.ended.map(timestamp),
        "progress": s.progress(),
        "status": if s.is_running() { "Running" } else { s.status.as_str() },
        "processedObjects": s.items,
        "jobId": null,
        "copyJobId": null,
        "jobType": "Backup",
    })
}

/// One log line as the `/logs` collection shows it.
fn line_json(l: &LogLine) -> Value {
    json!({
        "id": l.id,
        "title": l.title,
        "creationTime": timestamp(l.created),
        "endTime": timestamp(l.ended),
    })
}

/// A `/logs` entry as served, drifted when the drift knobs pick it.
fn drifted_line(sim: &Shared, l: &LogLine) -> Value {
    drift::value(&sim.cfg, DriftKind::VdcLog, &l.id.to_string(), line_json(l))
}

/// A bare array, or a page when the simulator is configured to page.
/// `cap` (a fault knob) serves at most that many records a page, reporting the capped
/// limit, or the asked one with `reports_asked` (then without `totalCount`).
fn collection(
    page_limit: Option<usize>,
    cap: Option<usize>,
    reports_asked: bool,
    paging: &Paging,
    items: Vec<Value>,
) -> Response {
    let Some(default_limit) = page_limit else {
        return json_response(StatusCode::OK, &Value::Array(items));
    };
    let limit = paging.limit.unwrap_or(default_limit.max(1));
    let take = cap.map_or(limit, |c| c.min(limit));
    let total = items.len();
    let results: Vec<Value> = items.into_iter().skip(paging.offset).take(take).collect();
    let mut page = json!({
        "offset": paging.offset,
        "limit": if reports_asked { limit } else { take },
        "totalCount": total,
        "results": results,
    });
    if reports_asked && let Some(map) = page.as_object_mut() {
        map.remove("totalCount");
    }
    json_response(StatusCode::OK, &page)
}

async fn download(sim: &Shared, accepts_gzip: bool, name: &str, text: String) -> Response {
    sim.count(|s| s.vdc_downloads += 1);
    let mode = if accepts_gzip {
        sim.cfg.vdc_gzip
    } else {
        VdcGzip::Never
    };
    let plain = || {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.log\""),
                ),
            ],
            text.clone(),
        )
            .into_response()
    };
    if mode == VdcGzip::Never {
        return plain();
    }
    let mut compressed = Vec::new();
    if GzipEncoder::new(text.as_bytes())
        .read_to_end(&mut compressed)
        .await
        .is_err()
    {
        return plain();
    }
    sim.count(|s| s.vdc_gzipped += 1);
    let mut response = match mode {
        VdcGzip::MagicOnly => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/gzip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.log.gz\""),
                ),
            ],
            compressed,
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.log\""),
                ),
            ],
            compressed,
        )
            .into_response(),
    };
    if mode == VdcGzip::ContentEncoding {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// An RFC 7807 problem.
fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = json_response(status, &body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_in_either_header() {
        let mut h = HeaderMap::new();
        assert!(!authorized("k", &h));
        h.insert("x-api-key", HeaderValue::from_static("k"));
        assert!(authorized("k", &h));
        assert!(!authorized("other", &h));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k"));
        assert!(authorized("k", &h));
        assert!(!authorized("", &HeaderMap::new()));
    }

    #[test]
    fn gzip_negotiation() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip"));
        assert!(with("br, GZIP;q=0.5"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn routes() {
        assert!(matches!(
            Route::parse(&["reports", "backup-jobs"]),
            Some(Route::Jobs)
        ));
        assert!(matches!(
            Route::parse(&[
                "reports",
                "backup-jobs",
                "j",
                "job-sessions",
                "s",
                "logs",
                "download"
            ]),
            Some(Route::Download(..))
        ));
        assert!(Route::parse(&["reports"]).is_none());
    }
}
