//! Fault knobs of the simulated servers, for the fault suite (`tests/it/fault_suite.rs`) and the
//! paging tests (`tests/it/paging.rs`): bad records (broken JSON, a wrong type, a 1 MiB string,
//! invalid UTF-8), pages that are not JSON (once or several times), records repeated across
//! pages, pages capped below the asked `limit`, pages that say nothing about paging, a
//! server ignoring `offset`, sessions that vanish, 401s mid-pagination, 429 bursts, 5xx
//! answers, stalled responses and connections cut mid-body. The per-request faults (429,
//! 5xx, stalls, cuts) and non-JSON pages apply to the VDC endpoints too.
//!
//! Everything is off by default. Which records are spoiled, which sessions get a non-JSON
//! page and which sessions' pages overlap is a pure function of the seed and the record's
//! (session index, order) or the session index, so tests can compute what to expect
//! ([`super::SimHandle::spoiled_events`]). Per-request faults (401, 429, 5xx, stalls,
//! resets) are drawn from one seeded stream in request order, or counted (every N-th
//! request), so a run is reproducible given the client's sequence of requests.
//!
//! The knobs live here and only here; `vb365.rs` calls the hooks.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::rng::{Rng, Tag};

/// Size of the string a [`Corruption::HugeString`] record carries in `message`.
pub const HUGE_STRING_BYTES: usize = 1 << 20;

/// Sub-streams of `Tag::Faults` (the first key part), so knobs draw independently.
const KEY_CORRUPT: u64 = 0xC0;
const KEY_NOT_JSON: u64 = 0xC1;
const KEY_OVERLAP: u64 = 0xC2;
const KEY_REQUESTS: u64 = 0xC3;

/// How a spoiled restore-session event looks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Broken JSON syntax inside the record (`"status":"Success",,"title":NaN}`): id and
    /// order are still readable, but the page holding it is no longer valid JSON.
    Syntax,
    /// Fields of the wrong type where the record can't do without them: `startTime` is a
    /// number and `endTime` a boolean, so it has no usable time (odd types elsewhere are
    /// shipped and reported, not skipped). The page stays valid JSON.
    WrongType,
    /// `message` is a string of [`HUGE_STRING_BYTES`] bytes. Valid JSON and a valid record:
    /// it should be delivered.
    HugeString,
    /// Two bytes that are not UTF-8 (`0xFF 0xFE`) inside `title`.
    InvalidUtf8,
}

/// A 429 burst pattern on data requests: `every` requests are served, then `length` are
/// answered 429 with `Retry-After: retry_after_secs`, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub every: u64,
    pub length: u64,
    pub retry_after_secs: u64,
}

/// Fault knobs of the VB365 endpoints; see the module docs. All off by default.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Probability that a restore-session event (keyed by session index and order) is
    /// spoiled; the kind is picked from `corruptions` (keyed the same way). Empty kinds or
    /// a rate of 0 disable it.
    pub corrupt_rate: f64,
    pub corruptions: Vec<Corruption>,
    /// Events spoiled explicitly, by (session index, order), on top of `corrupt_rate`.
    pub corrupt_events: Vec<(usize, u32, Corruption)>,
    /// Probability (keyed by session index) that the first events request of a session is
    /// answered 200 with an HTML body; every later request of that session is served.
    pub not_json_once_rate: f64,
    /// The first session listing request is answered 200 with an HTML body.
    pub not_json_listing_once: bool,
    /// How many times in a row each page picked by `not_json_once_rate` /
    /// `not_json_listing_once` is answered with HTML before it is served (0 counts as 1).
    pub not_json_times: u32,
    /// VDC: the first `vdc_not_json_times` requests of every collection URL (the job list,
    /// a job's sessions, a session's log) are answered 200 with an HTML body.
    pub vdc_not_json_times: u32,
    /// Listing pages hold at most this many records, whatever `limit` asked (0: off): a
    /// server or proxy that caps the page size. The page reports the capped `limit`
    /// unless `cap_reports_asked`.
    pub cap_limit: usize,
    /// With `cap_limit`: pages report the `limit` that was asked for.
    pub cap_reports_asked: bool,
    /// Listing pages carry neither `_links` nor `totalCount` (nothing but a short page tells
    /// where a listing ends).
    pub bare_pages: bool,
    /// Listings ignore `offset` (VB365 and paged VDC collections): every page starts at the
    /// first record.
    pub ignore_offset: bool,
    /// VDC: `/logs/download` is one JSON page envelope `{"offset":0,"limit":N,"logs":[…]}`
    /// (the entries as `/logs` shows them) instead of text lines.
    pub vdc_download_json_envelope: bool,
    /// Probability (keyed by session index) that the events pages of a session at an
    /// offset above 0 start one record early, repeating the last record of the page before
    /// (such a page holds up to `limit + 1` records).
    pub overlap_rate: f64,
    /// Every `revoke_every`-th data request (counted from 1, every outcome) first revokes
    /// all access tokens, so it is answered 401; 0 disables it.
    pub revoke_every: u64,
    /// With `revoke_every`: revoke the refresh tokens too (the client must log in again).
    pub revoke_refresh: bool,
    /// 429 bursts on data requests.
    pub throttle_burst: Option<Burst>,
    /// Probability of answering a data request 500, 502 or 504 (picked from the same
    /// stream); `SimConfig::error_rate` (503) is independent of it.
    pub server_error_rate: f64,
    /// Probability that a data response is held back by `stall` (set it above the
    /// client's request timeout to make it time out).
    pub stall_rate: f64,
    pub stall: Duration,
    /// Probability that a data response is cut: its status and headers are sent, then
    /// part of its body, then the connection is dropped.
    pub reset_rate: f64,
    /// Once, when a session listing request with `offset >= at_offset` arrives, session
    /// `index` is deleted first (as by [`super::SimHandle::hide_session`] with
    /// [`Vanish::Deleted`]): a deletion in the middle of a client's pagination.
    pub delete_while_listing: Option<DeleteWhileListing>,
}

/// How a listing page is served under the paging knobs ([`Faults::paging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) offset: usize,
    pub(crate) take: usize,
    pub(crate) report_limit: usize,
    pub(crate) bare: bool,
}

/// See [`FaultConfig::delete_while_listing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteWhileListing {
    pub at_offset: usize,
    pub index: usize,
}

/// What the fault knobs did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Spoiled records served (counted each time a page holds one).
    pub spoiled_served: u64,
    /// 200 answers with an HTML body (listing and events pages).
    pub not_json_pages: u64,
    /// Events pages that started one record early.
    pub overlapping_pages: u64,
    /// Data requests that revoked the tokens first (and got 401).
    pub revocations: u64,
    /// Data requests answered 429 by a burst.
    pub throttled: u64,
    /// Data requests answered 500, 502 or 504.
    pub server_errors: u64,
    /// Data responses held back by `stall`.
    pub stalls: u64,
    /// Data responses cut (mid-body, or before the response when the cut fell at 0).
    pub resets: u64,
    /// Requests for a deleted session answered 404.
    pub gone: u64,
}

/// How a session vanishes ([`super::SimHandle::hide_session`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vanish {
    /// Missing from `GET /RestoreSessions`, still readable by id (with its events).
    FromListing,
    /// Deleted: missing from the listing, and 404 by id and for its events.
    Deleted,
}

/// What a data request gets before it is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Serve,
    /// Tokens were revoked: the bearer check answers 401.
    Revoked,
    Throttle(u64),
    ServerError(StatusCode),
}

/// How to deliver a data response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Delivery {
    pub(crate) stall: Option<Duration>,
    /// Cut the body at this fraction of its length (0..1).
    pub(crate) cut_at: Option<f64>,
}

struct Runtime {
    cfg: FaultConfig,
    rng: Rng,
    requests: u64,
    /// Session listing requests answered with HTML so far.
    listing_spoiled: u32,
    deleted_while_listing: bool,
    /// Events requests seen per session (by index), for `not_json_times`.
    not_json_seen: HashMap<usize, u32>,
    /// Requests seen per VDC collection path, for `vdc_not_json_times`.
    vdc_not_json_seen: HashMap<String, u32>,
    hidden: HashMap<Uuid, Vanish>,
    stats: FaultStats,
}

/// The fault state shared by the handlers and the [`super::SimHandle`].
pub(crate) struct Faults {
    seed: u64,
    runtime: Mutex<Runtime>,
}

impl Faults {
    pub(crate) fn new(seed: u64, cfg: FaultConfig) -> Faults {
        Faults {
            seed,
            runtime: Mutex::new(Runtime {
                cfg,
                rng: Rng::keyed(seed, Tag::Faults, &[KEY_REQUESTS]),
                requests: 0,
                listing_spoiled: 0,
                deleted_while_listing: false,
                not_json_seen: HashMap::new(),
                vdc_not_json_seen: HashMap::new(),
                hidden: HashMap::new(),
                stats: FaultStats::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_config(&self, cfg: FaultConfig) {
        self.lock().cfg = cfg;
    }

    pub(crate) fn config(&self) -> FaultConfig {
        self.lock().cfg.clone()
    }

    pub(crate) fn stats(&self) -> FaultStats {
        self.lock().stats.clone()
    }

    pub(crate) fn hide(&self, id: Uuid, how: Option<Vanish>) {
        let mut rt = self.lock();
        match how {
            Some(how) => rt.hidden.insert(id, how),
            None => rt.hidden.remove(&id),
        };
    }

    /// Whether the session is left out of listings.
    pub(crate) fn unlisted(&self, id: Uuid) -> bool {
        self.lock().hidden.contains_key(&id)
    }

    /// Whether the session is deleted (404 by id); counts the 404.
    pub(crate) fn deleted(&self, id: Uuid) -> bool {
        let mut rt = self.lock();
        let gone = rt.hidden.get(&id) == Some(&Vanish::Deleted);
        if gone {
            rt.stats.gone += 1;
        }
        gone
    }

    /// How event `order` of session `index` is spoiled, if at all (a pure function of the
    /// seed and the config).
    pub(crate) fn corruption(&self, index: usize, order: u32) -> Option<Corruption> {
        let rt = self.lock();
        corruption_of(self.seed, &rt.cfg, index, order)
    }

    /// Counts a data request and draws what it gets.
    pub(crate) fn on_data_request(&self) -> Verdict {
        let mut rt = self.lock();
        rt.requests += 1;
        let n = rt.requests;
        let cfg = &rt.cfg;
        if cfg.revoke_every > 0 && n.is_multiple_of(cfg.revoke_every) {
            rt.stats.revocations += 1;
            return Verdict::Revoked;
        }
        if let Some(b) = cfg.throttle_burst
            && b.length > 0
            && (n - 1) % (b.every + b.length) >= b.every
        {
            let secs = b.retry_after_secs;
            rt.stats.throttled += 1;
            return Verdict::Throttle(secs);
        }
        let rate = cfg.server_error_rate;
        if rate > 0.0 && rt.rng.chance(rate) {
            let status = rt.rng.pick(&[
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::GATEWAY_TIMEOUT,
            ]);
            rt.stats.server_errors += 1;
            return Verdict::ServerError(status);
        }
        Verdict::Serve
    }

    /// Whether the revocation of [`Verdict::Revoked`] includes refresh tokens.
    pub(crate) fn revoke_refresh(&self) -> bool {
        self.lock().cfg.revoke_refresh
    }

    /// Draws how a data response is delivered.
    pub(crate) fn delivery(&self) -> Delivery {
        let mut rt = self.lock();
        let (stall_rate, stall, reset_rate) = (rt.cfg.stall_rate, rt.cfg.stall, rt.cfg.reset_rate);
        let stall = (stall_rate > 0.0 && rt.rng.chance(stall_rate)).then_some(stall);
        let cut_at = (reset_rate > 0.0 && rt.rng.chance(reset_rate)).then(|| rt.rng.unit());
        if stall.is_some() {
            rt.stats.stalls += 1;
        }
        if cut_at.is_some() {
            rt.stats.resets += 1;
        }
        Delivery { stall, cut_at }
    }

    /// The session index to delete before answering a listing at `offset`, once.
    pub(crate) fn deletion_due(&self, offset: usize) -> Option<usize> {
        let mut rt = self.lock();
        let due = rt.cfg.delete_while_listing?;
        if rt.deleted_while_listing || offset < due.at_offset {
            return None;
        }
        rt.deleted_while_listing = true;
        Some(due.index)
    }

    /// Whether this session listing request gets a non-JSON body.
    pub(crate) fn listing_not_json(&self) -> bool {
        let mut rt = self.lock();
        let times = rt.cfg.not_json_times.max(1);
        if rt.cfg.not_json_listing_once && rt.listing_spoiled < times {
            rt.listing_spoiled += 1;
            rt.stats.not_json_pages += 1;
            return true;
        }
        false
    }

    /// Whether this events request of session `index` gets a non-JSON body.
    pub(crate) fn events_not_json(&self, index: usize) -> bool {
        let mut rt = self.lock();
        let times = rt.cfg.not_json_times.max(1);
        let rate = rt.cfg.not_json_once_rate;
        let picked = rate > 0.0
            && Rng::keyed(self.seed, Tag::Faults, &[KEY_NOT_JSON, index as u64]).chance(rate);
        let seen = rt.not_json_seen.entry(index).or_insert(0);
        let hit = picked && *seen < times;
        *seen = seen.saturating_add(1);
        if hit {
            rt.stats.not_json_pages += 1;
        }
        hit
    }

    /// Whether this VDC collection request (by path) gets a non-JSON body.
    pub(crate) fn vdc_not_json(&self, path: &str) -> bool {
        let mut rt = self.lock();
        let times = rt.cfg.vdc_not_json_times;
        let seen = rt.vdc_not_json_seen.entry(path.to_string()).or_insert(0);
        let hit = *seen < times;
        *seen = seen.saturating_add(1);
        if hit {
            rt.stats.not_json_pages += 1;
        }
        hit
    }

    /// How a listing request for `offset`/`limit` is served: (offset used, records to
    /// take, `limit` to report, whether to leave out `_links` and `totalCount`).
    pub(crate) fn paging(&self, offset: usize, limit: usize) -> Paging {
        let rt = self.lock();
        let cfg = &rt.cfg;
        let take = if cfg.cap_limit > 0 {
            limit.min(cfg.cap_limit)
        } else {
            limit
        };
        Paging {
            offset: if cfg.ignore_offset { 0 } else { offset },
            take,
            report_limit: if cfg.cap_reports_asked { limit } else { take },
            bare: cfg.bare_pages,
        }
    }

    /// Whether the events pages of session `index` overlap (see `overlap_rate`); counts
    /// the overlapping page when `offset` > 0.
    pub(crate) fn overlap(&self, index: usize, offset: usize) -> bool {
        let mut rt = self.lock();
        let rate = rt.cfg.overlap_rate;
        let hit = offset > 0
            && rate > 0.0
            && Rng::keyed(self.seed, Tag::Faults, &[KEY_OVERLAP, index as u64]).chance(rate);
        if hit {
            rt.stats.overlapping_pages += 1;
        }
        hit
    }

    pub(crate) fn count_spoiled(&self, n: u64) {
        self.lock().stats.spoiled_served += n;
    }
}

/// See [`Faults::corruption`].
pub(crate) fn corruption_of(
    seed: u64,
    cfg: &FaultConfig,
    index: usize,
    order: u32,
) -> Option<Corruption> {
    if let Some(&(_, _, kind)) = cfg
        .corrupt_events
        .iter()
        .find(|(i, o, _)| *i == index && *o == order)
    {
        return Some(kind);
    }
    if cfg.corrupt_rate <= 0.0 || cfg.corruptions.is_empty() {
        return None;
    }
    let mut rng = Rng::keyed(
        seed,
        Tag::Faults,
        &[KEY_CORRUPT, index as u64, u64::from(order)],
    );
    rng.chance(cfg.corrupt_rate)
        .then(|| rng.pick(&cfg.corruptions))
}

/// Marks placed in the serialized page and swapped for raw bytes afterwards.
fn mark(n: usize) -> String {
    format!("@@sim-fault-{n}@@")
}

/// Serializes a page whose `results` hold `records`, spoiling those paired with a
/// corruption. Returns the body bytes (possibly not JSON, possibly not UTF-8).
pub(crate) fn spoiled_page(
    mut page: serde_json::Value,
    records: Vec<(serde_json::Value, Option<Corruption>)>,
) -> Vec<u8> {
    let mut swaps: Vec<(String, Vec<u8>)> = Vec::new();
    let mut results = Vec::with_capacity(records.len());
    for (mut record, corruption) in records {
        match corruption {
            None => {}
            Some(Corruption::Syntax) => {
                let broken = format!(
                    r#"{{"id":{},"order":{},"status":"Success",,"title":NaN}}"#,
                    record["id"], record["order"]
                );
                let m = mark(swaps.len());
                swaps.push((format!("\"{m}\""), broken.into_bytes()));
                record = serde_json::Value::String(m);
            }
            Some(Corruption::WrongType) => {
                record["startTime"] = serde_json::json!(12);
                record["endTime"] = serde_json::json!(true);
            }
            Some(Corruption::HugeString) => {
                let line = "huge message filler ";
                let text: String = line
                    .chars()
                    .cycle()
                    .take(HUGE_STRING_BYTES)
                    .collect::<String>();
                record["message"] = serde_json::Value::String(text);
            }
            Some(Corruption::InvalidUtf8) => {
                let m = mark(swaps.len());
                let title = record["title"].as_str().unwrap_or("").to_string();
                record["title"] = serde_json::Value::String(format!("{m}{title}"));
                swaps.push((m, vec![0xFF, 0xFE]));
            }
        }
        results.push(record);
    }
    page["results"] = serde_json::Value::Array(results);
    let mut body = serde_json::to_vec(&page).unwrap_or_default();
    for (marker, bytes) in swaps {
        body = replace(&body, marker.as_bytes(), &bytes);
    }
    body
}

/// `haystack` with the first occurrence of `needle` replaced.
fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// A 200 answer that is not JSON (what a proxy in front of the server might send).
pub(crate) fn not_json() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><head><title>502 Proxy Error</title></head><body>upstream hiccup (simulated)</body></html>",
    )
        .into_response()
}

/// A 429 with `Retry-After`.
pub(crate) fn throttled(retry_after_secs: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        r#""API calls quota exceeded (simulated burst).""#,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `response` with its body cut at `fraction` of its length, then an I/O error, which
/// makes the server drop the connection. When something is kept, it is flushed (status,
/// headers and those bytes reach the client) before the drop: a cut mid-body. When
/// nothing is kept (a fraction near 0), the connection closes before the response.
pub(crate) async fn cut(response: Response, fraction: f64) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let keep = ((bytes.len() as f64) * fraction.clamp(0.0, 1.0)) as usize;
    let head = bytes.slice(..keep.min(bytes.len().saturating_sub(1)));
    // The full length is announced, so a client knows the body came up short.
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let reset = || io::Error::new(io::ErrorKind::ConnectionReset, "simulated connection reset");
    let body = if head.is_empty() {
        Body::from_stream(futures::stream::iter([Err::<Bytes, _>(reset())]))
    } else {
        let first = futures::stream::iter([Ok::<_, io::Error>(head)]);
        let then = futures::stream::once(async move {
            // Let the server flush the head before the connection drops.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(reset())
        });
        Body::from_stream(futures::StreamExt::chain(first, then))
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoiled_pages_have_the_promised_shape() {
        let rec = |order: u32| serde_json::json!({"id": format!("e{order}"), "order": order, "title": "t", "message": "m"});
        let page = serde_json::json!({"offset": 0, "limit": 5, "results": []});
        let body = spoiled_page(
            page.clone(),
            vec![
                (rec(0), None),
                (rec(1), Some(Corruption::WrongType)),
                (rec(2), Some(Corruption::HugeString)),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["results"][1]["startTime"], 12);
        assert_eq!(v["results"][1]["endTime"], true);
        assert_eq!(
            v["results"][2]["message"].as_str().unwrap().len(),
            HUGE_STRING_BYTES
        );
        let body = spoiled_page(page.clone(), vec![(rec(3), Some(Corruption::Syntax))]);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        assert!(String::from_utf8_lossy(&body).contains(r#""id":"e3","order":3"#));
        let body = spoiled_page(page, vec![(rec(4), Some(Corruption::InvalidUtf8))]);
        assert!(std::str::from_utf8(&body).is_err());
        assert!(body.windows(3).any(|w| w == [0xFF, 0xFE, b't']));
    }

    #[test]
    fn corruption_is_keyed_by_seed_and_position() {
        let cfg = FaultConfig {
            corrupt_rate: 0.2,
            corruptions: vec![Corruption::WrongType, Corruption::Syntax],
            corrupt_events: vec![(9, 9, Corruption::HugeString)],
            ..FaultConfig::default()
        };
        let draw = |seed| {
            (0..200)
                .map(|o| corruption_of(seed, &cfg, 1, o))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let hits = draw(5).iter().filter(|c| c.is_some()).count();
        assert!((15..=70).contains(&hits), "{hits}");
        assert_eq!(corruption_of(5, &cfg, 9, 9), Some(Corruption::HugeString));
    }

    #[test]
    fn bursts_follow_the_pattern() {
        let faults = Faults::new(
            1,
            FaultConfig {
                throttle_burst: Some(Burst {
                    every: 3,
                    length: 2,
                    retry_after_secs: 1,
                }),
                revoke_every: 7,
                ..FaultConfig::default()
            },
        );
        let got: Vec<char> = (0..10)
            .map(|_| match faults.on_data_request() {
                Verdict::Serve => 's',
                Verdict::Throttle(_) => 't',
                Verdict::Revoked => 'r',
                Verdict::ServerError(_) => 'e',
            })
            .collect();
        assert_eq!(got.into_iter().collect::<String>(), "sssttsrstt");
    }
}
