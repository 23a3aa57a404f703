//! VB365 poller: restore sessions and their events, paged, with resumable state.
//!
//! Owns the polling algorithm and the source's checkpoint state ([`VboState`]). Must not
//! map records (that is `map::vbo`) or write checkpoints (the pipeline does, after delivery).
//!
//! ## Algorithm (one poll cycle)
//! 1. List `GET /vN/RestoreSessions?startTimeFrom=<horizon - lookback>` page by page
//!    (`limit`/`offset`; where a listing ends is [`paging`](super::paging)'s rule: a short
//!    page is not the last one). On v8 ask for `orderBy=CreationTime&orderAsc=true`
//!    so sessions created while we page are appended, not inserted; v6/v7 have no ordering
//!    parameters and we don't rely on any order.
//! 2. For each session not yet finished, page through `/RestoreSessions/{id}/Events`
//!    from the session's `next_offset` (the records of the listing read so far) and emit
//!    every event read (one batch per page, sorted by `order`, each with a state snapshot).
//!    Offsets, not `order` values, track progress: a server whose `order` starts at 1,
//!    has gaps or repeats a value still has each event read once; the listing is assumed
//!    to grow at its end (VB365 numbers events 0, 1, 2… in the order they happen). The session's state was read
//!    *before* its events, so when it said `Stopped`, the events we got are complete and
//!    the session is marked done; one we saw working, or that stopped less than
//!    [`SETTLE`] ago, is read once more in the next cycle first (a server may show the
//!    state change before the last event). A well-formed events page is decoded as it is
//!    read, in one pass ([`crate::sources::typed_page`]); one that needs the careful path is
//!    decoded on the blocking pool. Either way the next page, or after a session's last page
//!    the next listed session's first one, is asked for before the current page's events
//!    are shipped: the server's answer time and our work overlap. Where paging goes next
//!    depends on the page alone (count, fingerprint, `totalCount`/`_links`), never on its
//!    decoded events; a page fetched ahead is used only for the session and offset it was
//!    asked for, and batches still go out strictly in order.
//! 3. Sessions still open in our state but not in this listing (they started before the
//!    listing window) are re-read by id and shipped the same way; a 404 means the server
//!    dropped the session and we forget it (logged).
//! 4. The horizon moves to the newest `creationTime` seen (never past this host's clock: a
//!    session stamped in the future must not hide the ones after it), after every session: v8 lists
//!    oldest first; a v6/v7 listing (no order) is read whole first, keeping its oldest
//!    `max_held_sessions` sessions not yet shipped ([`Oldest`]), which are shipped oldest
//!    first; when it had more, it is listed again from the new horizon for the rest (a
//!    failed listing ships what it kept without moving the horizon). Finished sessions
//!    older than `horizon - lookback` are pruned (the next listing can't return them), which
//!    keeps the state, written with every batch, to the lookback window.
//!
//! With `hold_in_progress` (off by default: then every event ships as read), an event
//! read while its status is `Running` (its item is still being restored) is not shipped
//! then: VB365 completes an event in place, with its final status, `endTime` and
//! `duration`, so shipping it at once would leave the SIEM with "outcome unknown" for
//! good. It is held in the cursor ([`HeldEvent`], raw JSON) and read again by id
//! (`…/Events/{id}`) at every later read of its session; it ships once, when it has a
//! final status, when the server no longer has it (as last read), or once the session
//! has stopped (as it is then: only events of working sessions are held). At most [`MAX_HELD_PER_SESSION`] per session and [`MAX_HELD`]
//! per source are held (they travel with every checkpoint); more ship as read.
//!
//! Duplicates are avoided by the per-session cursor, not by time bounds, so it doesn't
//! matter whether the server's `startTimeFrom` is inclusive or not. A bad record is logged
//! with its session id and skipped; the rest of its page still flows. A page that is not a
//! page at all (HTML, a cut body) is requested again with the retry policy's backoff before
//! it fails its session (or, for the listing, the cycle); bodies are capped at
//! [`MAX_PAGE_BYTES`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::config::{ApiVersion, VboSource};
use super::oldest::Oldest;
use super::token::{Credentials, TokenManager};
use crate::http::{self, HttpError, RetryPolicy};
use crate::map::Record;
use crate::map::vbo::{RawRestoreEvent, RawRestoreSession, WireEvent};
use crate::sources::page::EMPTY_PAGE;
use crate::sources::paging::{PageFacts, Pager, PagingError, Step, fingerprint_texts};
use crate::sources::{Emitter, RunMode, SourceBatch, SourceError, minus, to_chrono};

/// Default horizon of the first run.
const DEFAULT_HISTORY: chrono::Duration = chrono::Duration::days(7);

/// Largest page body read (a page of 10000 events of 2 KB is 20 MB). A larger page is asked
/// for again with half the `limit`; a single record larger than this can't be read.
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// One page as read: its records (readable ones), how many it held, its paging facts.
struct ReadPage {
    url: String,
    /// Each record's text as sent (or as repaired: `replaced`).
    records: Vec<Box<str>>,
    /// An events page read in one pass ([`crate::sources::typed_page`]): its records
    /// decoded already, one for each of `records`.
    decoded: Option<Vec<Decoded>>,
    /// Which records had invalid UTF-8 replaced ([`crate::sources::page::SplitPage::replaced`]).
    replaced: Vec<usize>,
    /// Records on the page, readable or not (for paging).
    count: usize,
    facts: PageFacts,
}

/// The events listing of restore session `session_id`, from `offset` on.
#[derive(Debug, Clone, PartialEq)]
struct PageAt {
    session_id: String,
    path: String,
    offset: u64,
}

/// A page asked for ahead of its turn (with the `limit` it was read with).
struct Prefetched {
    at: PageAt,
    limit: u32,
    page: Result<ReadPage, SourceError>,
}

/// `RestoreSessions/{id}/Events`, the id percent-encoded ([`http::path_segment`]).
fn events_path(session_id: &str) -> String {
    format!("RestoreSessions/{}/Events", http::path_segment(session_id))
}

/// One event record decoded.
type Decoded = Result<RawRestoreEvent, crate::map::wire_checks::Unusable>;

/// Decode a page's event records (CPU work, run on the blocking pool), each with its raw
/// text (kept as the original of a degraded record, or to name a skipped one).
fn decode_events(records: Vec<Box<str>>) -> Vec<(Decoded, Box<str>)> {
    records
        .into_iter()
        .map(|raw| (crate::map::vbo::decode_event(&raw), raw))
        .collect()
}

/// Listing passes of one cycle at most (v6/v7: each ships up to `max_held_sessions` new
/// sessions, so this only stops a server that never stops listing new ones).
const MAX_LISTING_PASSES: usize = 10_000;

/// Events held back while `Running`, per session and per source (see the module docs).
const MAX_HELD_PER_SESSION: usize = 64;
const MAX_HELD: usize = 256;
/// Longest event JSON held back (the checkpoint carries it, rewritten with every batch);
/// a longer event in progress ships as read.
const MAX_HELD_BYTES: usize = 64 * 1024;

/// An event read while still `Running`, waiting for its final status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldEvent {
    pub id: String,
    /// The event's JSON as last read.
    pub raw: String,
    /// Its place in the listing, for an event without a usable `order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// The listing offset it was read at: where to look for it again when the server
    /// can't give it by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// The checkpointed state of a VB365 source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VboState {
    /// Newest session `creationTime` listed: after a complete listing, or on v8 (oldest
    /// first) after each shipped session.
    pub horizon: DateTime<Utc>,
    /// Sessions inside the listing window, and every session still open.
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionCursor>,
}

/// Progress inside one restore session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCursor {
    pub creation_time: DateTime<Utc>,
    /// One past the highest event `order` emitted (informational since `next_offset`; a
    /// checkpoint written before it resumes here, as `offset` equalled `order` then).
    pub next_order: i64,
    /// Records of the session's events listing read so far: where the next page starts.
    /// Offsets, not `order` values, say what was read: a server whose `order` starts at 1,
    /// skips numbers or repeats them still has every event read once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// The id of the last event of the last page read: a server whose pages start one
    /// record early sends it again first when the session is read on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// The session is `Stopped` and all its events were emitted.
    #[serde(default)]
    pub done: bool,
    /// Times its events were read after the session said `Stopped`: a session that
    /// stopped recently is read once more in the next cycle before it is done, for an
    /// event the server shows only after the state change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stopped_reads: u8,
    /// When its events were first read after it said `Stopped` (see [`STOPPED_GRACE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_since: Option<DateTime<Utc>>,
    /// Its `creationTime` was unusable, so `creation_time` is where the source placed it:
    /// kept in the state past the lookback window, or the next listing would ship it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placed: bool,
    /// The session was read while it was still working: its stop is a change we saw
    /// happen, so it is read once more after it (whatever its `endTime` says).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_working: bool,
    /// The server lists this session's events newest first (their `order`s fall): new
    /// events appear at the front, so offsets say nothing. Its listing is read whole
    /// every cycle and events below `next_order` are the ones shipped already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub newest_first: bool,
    /// Events read while `Running`, not shipped yet (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldEvent>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// A session whose `endTime` is at most this old when it is first read as stopped is read
/// once more in the next cycle (clocks of server and daemon may differ by minutes).
const SETTLE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// ... and in every cycle until this long after that first read, so that the time a
/// server takes to list the last event is covered whatever `poll_interval` is (one cycle
/// of the default 30 s).
const STOPPED_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

impl SessionCursor {
    /// The offset of the session's events listing to read from.
    fn start_offset(&self) -> u64 {
        if self.newest_first {
            return 0;
        }
        self.next_offset
            .unwrap_or_else(|| u64::try_from(self.next_order).unwrap_or(0))
    }
}

/// Only the id of a record, to name it in a log line when the rest doesn't parse.
#[derive(Deserialize)]
struct IdOnly {
    id: serde_json::Value,
}

fn record_id(raw: &str) -> String {
    serde_json::from_str::<IdOnly>(raw)
        .map(|r| r.id.to_string().trim_matches('"').to_string())
        .unwrap_or_else(|_| "<unknown>".to_string())
}

pub struct VboPoller {
    id: String,
    /// `https://host:4443/v8` (no trailing slash).
    api_base: String,
    version: ApiVersion,
    client: reqwest::Client,
    tokens: Arc<TokenManager>,
    policy: RetryPolicy,
    page_size: u32,
    lookback: chrono::Duration,
    poll_interval: Duration,
    keep_original: bool,
    /// Hold events in progress back for their final status (not in a backfill).
    hold_in_progress: bool,
    /// The server answered a held event's by-id read with 404 while its listing still had
    /// it: it has no `…/Events/{id}`, so held events are looked up in the listing.
    no_events_by_id: bool,
    /// Events in progress shipped as read this cycle because the hold limits were reached.
    over_hold_limit: usize,
    /// v6/v7: sessions one listing pass holds to ship oldest first.
    max_held: usize,
    state: VboState,
    /// Failed requests in the current cycle.
    problems: usize,
}

impl VboPoller {
    /// Build the poller from its config and the stored checkpoint (if any).
    pub fn new(src: &VboSource, stored: Option<serde_json::Value>) -> Result<Self, SourceError> {
        let s = &src.settings;
        let key = format!("sources.{}.tls", src.id);
        let client = http::build_api_client(&key, &s.tls, s.request_timeout).map_err(|error| {
            SourceError::Http {
                source_id: src.id.clone(),
                error,
            }
        })?;
        let root = src.url.as_str().trim_end_matches('/').to_string();
        let api_base = format!("{root}/{}", s.api_version.as_str());
        let policy = RetryPolicy {
            max_retries: s.max_retries,
            ..RetryPolicy::default()
        };
        let tokens = TokenManager::new(
            &src.id,
            client.clone(),
            format!("{api_base}/token"),
            s.api_version,
            Credentials {
                username: s.username.clone(),
                password: src.password.clone(),
            },
            policy.clone(),
        );
        let state = match stored {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| crate::sources::unusable_state(&src.id, "vbo", &e))?,
            None => VboState {
                horizon: s.start_time.unwrap_or_else(|| Utc::now() - DEFAULT_HISTORY),
                sessions: BTreeMap::new(),
            },
        };
        Ok(VboPoller {
            id: src.id.clone(),
            api_base,
            version: s.api_version,
            client,
            tokens: Arc::new(tokens),
            policy,
            page_size: s.page_size,
            lookback: to_chrono(s.lookback),
            poll_interval: s.poll_interval,
            keep_original: s.keep_original,
            hold_in_progress: s.hold_in_progress && !s.ship_in_progress,
            no_events_by_id: false,
            over_hold_limit: 0,
            max_held: s.max_held_sessions,
            state,
            problems: 0,
        })
    }

    pub fn state(&self) -> &VboState {
        &self.state
    }

    /// (password logins, token refreshes) so far.
    pub fn token_counters(&self) -> (u64, u64) {
        self.tokens.counters()
    }

    /// Poll once (`RunMode::Once`) or forever. Cancellation is by dropping the future:
    /// every emitted batch carries a consistent snapshot, so stopping anywhere is safe.
    pub async fn run(mut self, mode: RunMode, emitter: Emitter) -> Result<(), SourceError> {
        // Logins refused in a row: each retry is a failed logon of the service account
        // (lockout policies, VB365's own throttling), so the pause doubles up to
        // MAX_LOGIN_BACKOFF.
        let mut refused = 0u32;
        loop {
            let result = self.cycle(&emitter).await;
            refused = match &result {
                Err(SourceError::Auth { .. }) => refused.saturating_add(1),
                _ => 0,
            };
            if let Some(done) = crate::sources::after_cycle(&self.id, mode, result) {
                return done;
            }
            let pause = login_backoff(self.poll_interval, refused);
            if refused > 1 {
                tracing::warn!(source_id = %self.id, refused, next_login_in_s = pause.as_secs(), "login refused again; waiting longer before the next try (a wrong password retried every poll can lock the account)");
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One complete poll cycle.
    pub async fn cycle(&mut self, emitter: &Emitter) -> Result<(), SourceError> {
        self.problems = 0;
        self.over_hold_limit = 0;
        let fetched_at = Utc::now();
        let mut newest = self.state.horizon;
        let mut listed = HashSet::new();
        let mut passes = 0;
        while self
            .list_pass(&mut listed, &mut newest, emitter, fetched_at)
            .await?
        {
            passes += 1;
            if passes >= MAX_LISTING_PASSES {
                return Err(SourceError::Http {
                    source_id: self.id.clone(),
                    error: HttpError::Decode {
                        url: format!("{}/RestoreSessions", self.api_base),
                        message: format!(
                            "the listing still had new sessions after {MAX_LISTING_PASSES} passes of {} (sources.{}.max_held_sessions); will retry next cycle",
                            self.max_held, self.id
                        ),
                    },
                });
            }
            tracing::info!(source_id = %self.id, shipped = listed.len(), max_held_sessions = self.max_held, "restore session listing longer than max_held_sessions: listing again from the new horizon for the rest");
        }

        // Sessions still open that started before the listing window.
        let open: Vec<String> = self
            .state
            .sessions
            .iter()
            .filter(|(id, c)| !c.done && !listed.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for session_id in open {
            // Where a session whose creationTime is unusable stays: its cursor's time.
            let placement = self
                .state
                .sessions
                .get(&session_id)
                .map_or(self.state.horizon, |c| c.creation_time);
            match self
                .get(
                    &format!("RestoreSessions/{}", http::path_segment(&session_id)),
                    &[],
                )
                .await
            {
                Ok((_, body)) => match std::str::from_utf8(&body)
                    .map_err(|e| format!("restoreSession: not UTF-8: {e}"))
                    .and_then(|text| {
                        crate::map::vbo::decode_session(text, placement).map_err(|e| e.to_string())
                    }) {
                    Ok(session) => {
                        self.ship_session(Arc::new(session), emitter, fetched_at, None, None)
                            .await?;
                    }
                    Err(e) => {
                        self.problems += 1;
                        tracing::warn!(source_id = %self.id, session_id, error = %e, "malformed restore session; will retry next cycle");
                    }
                },
                Err(SourceError::Http { error, .. }) if error.status() == Some(404) => {
                    tracing::warn!(source_id = %self.id, session_id, "open restore session no longer exists on the server; forgetting it");
                    self.forget_session(&session_id, None, emitter, fetched_at)
                        .await?;
                }
                Err(SourceError::Http { error, .. }) => {
                    self.problems += 1;
                    tracing::warn!(source_id = %self.id, session_id, error = %error, "cannot re-read open restore session; will retry next cycle");
                }
                Err(other) => return Err(other),
            }
        }

        self.advance_horizon(newest);
        self.emit(emitter, Vec::new(), fetched_at).await?;
        let held: usize = self.state.sessions.values().map(|c| c.held.len()).sum();
        if held > 0 {
            tracing::info!(source_id = %self.id, held, shipped_in_progress = self.over_hold_limit, "restore events still in progress are held back; each ships with its final status in a later cycle");
        }
        if self.problems > 0 {
            return Err(SourceError::Incomplete {
                source_id: self.id.clone(),
                problems: self.problems,
            });
        }
        Ok(())
    }

    /// The records of a page with its paging facts; when the page isn't valid JSON as a
    /// whole, the records that can be read (see [`page`](super::page)), the others logged
    /// and skipped (they still count for paging). `Err` when no record can be delimited.
    fn read_page(
        &self,
        body: &[u8],
        url: &str,
        session_id: Option<&str>,
        offset: u64,
    ) -> Result<ReadPage, String> {
        let body = crate::sources::page::without_bom(body);
        // An events page that is well-formed (nearly all): read and decoded in one pass. A
        // panic while decoding (a bug) leaves the page to the careful path, which decodes on
        // the blocking pool, where a panic costs this cycle's read of the session, not the
        // source.
        let one_pass = || {
            let page = crate::sources::typed_page::read::<WireEvent>(body)?;
            let (decoded, records): (Vec<Decoded>, Vec<Box<str>>) = page
                .records
                .into_iter()
                .map(|(wire, text)| (RawRestoreEvent::try_from(wire), text))
                .unzip();
            let facts = page
                .envelope
                .map(|e| PageFacts::from_envelope(&e))
                .unwrap_or_default();
            Some((decoded, records, facts))
        };
        if session_id.is_some()
            && let Ok(Some((decoded, records, facts))) = std::panic::catch_unwind(one_pass)
        {
            return Ok(ReadPage {
                url: url.to_string(),
                count: records.len(),
                records,
                decoded: Some(decoded),
                replaced: Vec::new(),
                facts,
            });
        }
        let strict = match parse_page_with_facts(body) {
            Ok((records, facts)) => {
                return Ok(ReadPage {
                    url: url.to_string(),
                    count: records.len(),
                    records: records.into_iter().map(Box::from).collect(),
                    decoded: None,
                    replaced: Vec::new(),
                    facts,
                });
            }
            Err(message) => message,
        };
        let Some(page) = crate::sources::page::split(body) else {
            return Err(strict);
        };
        let what = if session_id.is_some() {
            "restore event"
        } else {
            "restore session"
        };
        if page.repaired > 0 {
            tracing::warn!(source_id = %self.id, session_id = session_id.unwrap_or("-"), url, repaired = page.repaired, "{what} records read after repairing them: invalid UTF-8 replaced with U+FFFD, raw control characters in strings escaped, NaN/Infinity kept as strings");
        }
        for bad in &page.unreadable {
            tracing::warn!(
                source_id = %self.id,
                session_id = session_id.unwrap_or("-"),
                record_id = %bad.id,
                offset = offset.saturating_add(bad.position as u64),
                error = %bad.error,
                "skipping unreadable {what}; the rest of its page is read"
            );
            crate::metrics::global().record_skipped(&self.id);
        }
        Ok(ReadPage {
            url: url.to_string(),
            count: page.len(),
            records: page.records.into_iter().map(Box::from).collect(),
            decoded: None,
            replaced: page.replaced,
            facts: PageFacts::default(),
        })
    }

    /// List the sessions created since `horizon - lookback` and ship them, oldest first.
    /// Returns whether sessions were left for another pass.
    ///
    /// v8 lists oldest first (`orderAsc`), so each page is shipped as read and the horizon
    /// follows it. v6/v7 list in no order: the pass keeps the oldest `max_held_sessions`
    /// sessions not yet shipped this cycle and not finished ([`Oldest`]), ships them when
    /// the listing is read, and the horizon follows them; the state then keeps only the
    /// sessions of the lookback window (else it would hold every session of the cycle,
    /// written whole after every batch: quadratic in a backfill). When some were left out,
    /// they are all at least as new as the horizon, and the next pass lists them.
    async fn list_pass(
        &mut self,
        listed: &mut HashSet<String>,
        newest: &mut DateTime<Utc>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<bool, SourceError> {
        let from = minus(self.state.horizon, self.lookback);
        let mut pager = Pager::new(0, u64::from(self.page_size));
        let mut limit = self.page_size;
        let ordered = self.version == ApiVersion::V8;
        // v8 is asked for oldest first; a server that lists otherwise anyway is read like
        // v6/v7 from the first session out of order on (the horizon must not follow it).
        let mut unordered = !ordered;
        let mut last_listed: Option<DateTime<Utc>> = None;
        let mut held = Oldest::new(self.max_held);
        // The overlap asked of the page being read (0: none), and how often the listing
        // was read back because sessions before the boundary disappeared.
        let mut overlap_asked = 0u64;
        let mut rewinds = 0u32;
        let listing = loop {
            let mut query = vec![(
                "startTimeFrom",
                from.to_rfc3339_opts(SecondsFormat::Micros, true),
            )];
            if ordered {
                query.push(("orderBy", "CreationTime".to_string()));
                query.push(("orderAsc", "true".to_string()));
            }
            let offset = pager.offset();
            let page = match self
                .fetch_page("RestoreSessions", &query, offset, &mut limit, None)
                .await
            {
                Ok(page) => page,
                Err(e) => break Err(e),
            };
            let sessions: Vec<RawRestoreSession> = page
                .records
                .iter()
                .enumerate()
                .filter_map(|(at, raw)| match crate::map::vbo::decode_session(raw, self.state.horizon) {
                    Ok(mut s) => {
                        if page.replaced.contains(&at) {
                            s.problems.push(crate::map::wire_checks::replaced_utf8(
                                crate::map::vbo::SESSION_RECORD,
                            ));
                        }
                        Some(s)
                    }
                    Err(e) => {
                        tracing::warn!(source_id = %self.id, session_id = %record_id(raw), error = %e, "skipping malformed restore session");
                        crate::metrics::global().record_skipped(&self.id);
                        None
                    }
                })
                .collect();
            // Older than the listing window and not in the state: finished and pruned
            // before (a server that ignores `startTimeFrom` lists them every cycle).
            let sessions: Vec<RawRestoreSession> = sessions
                .into_iter()
                .filter(|s| {
                    s.creation_time.with_timezone(&Utc) >= from
                        || self.state.sessions.contains_key(&s.id)
                })
                .collect();
            // An ordered page read with an overlap starts with sessions listed already.
            // None of them there: more sessions before the boundary disappeared while we
            // paged than the overlap covers, and the sessions that moved down past the
            // boundary were never listed. Read back (further each time, at most to the start)
            // until the page reaches what was listed; what is listed twice is skipped.
            if !unordered
                && overlap_asked > 0
                && offset > 0
                && rewinds < MAX_LISTING_REWINDS
                && !sessions.is_empty()
                && !sessions.iter().any(|s| listed.contains(&s.id))
            {
                let back = (page.count as u64).max(1) << rewinds.min(16);
                rewinds += 1;
                tracing::warn!(source_id = %self.id, url = %page.url, offset, back, "the restore session listing shifted while it was paged (sessions before this page were deleted); reading back so none is missed");
                pager.rewind(back + overlap_asked);
                continue;
            }
            if !unordered && !listed_in_order(&sessions, listed, &mut last_listed) {
                tracing::warn!(source_id = %self.id, "the server lists restore sessions out of order although asked for `orderAsc=true`; reading this listing whole before shipping it, oldest first");
                unordered = true;
            }
            if !unordered {
                self.ship_listed(sessions, true, listed, newest, emitter, fetched_at)
                    .await?;
            } else {
                for session in sessions {
                    let finished = self.state.sessions.get(&session.id).is_some_and(|c| c.done);
                    if !finished && !listed.contains(&session.id) {
                        held.offer(session);
                    }
                }
            }
            // Step back a little: when a session listed earlier disappears, later ones
            // move down an offset, and without the overlap the one at the page boundary
            // would never be listed (and the horizon would move past it).
            let overlap = listing_overlap(page.count) as u64;
            overlap_asked = overlap;
            let print = fingerprint_texts(&page.records);
            match pager.after_page(page.count, print, page.facts, overlap) {
                Ok(Step::Next(_)) => {}
                Ok(Step::Done) => break Ok(()),
                Err(e) => break Err(self.paging_error(&page.url, e)),
            }
        };
        // What was listed is shipped even when the listing failed part way (then without
        // moving the horizon: the unread pages may hold older sessions).
        let more = held.left_out();
        let mut sessions = held.into_sessions();
        let follow = listing.is_ok();
        if more && follow {
            // Sessions left out may be exactly as new as the newest kept: those kept at
            // that time are shipped without the horizon reaching it, so the next pass
            // lists their twins even if the server's `startTimeFrom` is exclusive (and
            // `lookback` is 0). They are in `listed` then, so every pass ships new ones.
            let newest_kept = sessions.last().map(|s| s.creation_time);
            let split = sessions.partition_point(|s| Some(s.creation_time) < newest_kept);
            let at_newest = sessions.split_off(split);
            self.ship_listed(sessions, true, listed, newest, emitter, fetched_at)
                .await?;
            self.ship_listed(at_newest, false, listed, newest, emitter, fetched_at)
                .await?;
        } else {
            self.ship_listed(sessions, follow, listed, newest, emitter, fetched_at)
                .await?;
        }
        listing?;
        Ok(more)
    }

    /// Ship `sessions` (one listing page on v8, a whole v6/v7 listing) oldest first,
    /// skipping those shipped already this cycle. With `follow`, everything listed before
    /// each session is known, so the horizon follows it (and finished sessions older than
    /// the lookback window leave the state).
    async fn ship_listed(
        &mut self,
        mut sessions: Vec<RawRestoreSession>,
        follow: bool,
        listed: &mut HashSet<String>,
        newest: &mut DateTime<Utc>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        sessions.sort_by_key(|s| s.creation_time);
        // The next session's first page, asked for while the last page of the one before
        // it is decoded.
        let mut ahead: Option<Prefetched> = None;
        let mut sessions = sessions.into_iter().peekable();
        while let Some(session) = sessions.next() {
            if listed.contains(&session.id) {
                // Listed again by the overlap between listing pages.
                continue;
            }
            let created = session.creation_time.with_timezone(&Utc);
            // The horizon never passes this host's clock: one session stamped in the future
            // (a server clock set ahead, then corrected) would otherwise hide every session
            // created after it, for good. A future session stays in the state (so it is
            // not shipped twice) until the clock reaches it.
            let now = Utc::now();
            if created > now + crate::sources::CLOCK_AHEAD_WARNING
                && !self.state.sessions.contains_key(&session.id)
            {
                tracing::warn!(source_id = %self.id, session_id = %session.id, creation_time = %created, "restore session created in the future by this host's clock; shipped, but the listing horizon stays at the current time so that later sessions are still listed. Check the clocks of this host and the VB365 server");
            }
            listed.insert(session.id.clone());
            *newest = (*newest).max(created.min(now));
            let then = sessions.peek().and_then(|next| self.first_page_at(next));
            ahead = self
                .ship_session(Arc::new(session), emitter, fetched_at, ahead.take(), then)
                .await?;
            if follow {
                self.advance_horizon(*newest);
            }
        }
        Ok(())
    }

    /// Where [`Self::ship_session`] will start reading `session`'s events (`None`: it
    /// won't, the session is done).
    fn first_page_at(&self, session: &RawRestoreSession) -> Option<PageAt> {
        let offset = match self.state.sessions.get(&session.id) {
            Some(cursor) if cursor.done => return None,
            Some(cursor) => cursor.start_offset(),
            None => 0,
        };
        Some(PageAt {
            session_id: session.id.clone(),
            path: events_path(&session.id),
            offset,
        })
    }

    /// GET one page of `path` at `offset`, `limit` records (`limit` and `offset` are added
    /// to `query`), and read it. A body that isn't a page at all (a proxy's HTML error page
    /// with status 200, a body cut short) is requested again with the same backoff and
    /// `max_retries` as a 5xx before the page counts as failed. A body over
    /// [`MAX_PAGE_BYTES`] is asked for again with half the `limit` (kept for the rest of
    /// the listing).
    async fn fetch_page(
        &self,
        path: &str,
        query: &[(&'static str, String)],
        offset: u64,
        limit: &mut u32,
        session_id: Option<&str>,
    ) -> Result<ReadPage, SourceError> {
        let read = |url: &str, body: &[u8]| self.read_page(body, url, session_id, offset);
        let failed = |error| SourceError::Http {
            source_id: self.id.clone(),
            error,
        };
        loop {
            let mut full = query.to_vec();
            full.push(("limit", limit.to_string()));
            full.push(("offset", offset.to_string()));
            match http::fetch_parsed(&self.policy, || self.get(path, &full), read, failed).await {
                Ok((_, page)) => return Ok(page),
                Err(SourceError::Http {
                    error: HttpError::TooLarge { url, limit: cap },
                    ..
                }) if *limit > 1 => {
                    *limit /= 2;
                    tracing::warn!(source_id = %self.id, session_id = session_id.unwrap_or("-"), url, cap, limit = *limit, "page larger than the body limit; asking for fewer records per page");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn paging_error(&self, url: &str, error: PagingError) -> SourceError {
        SourceError::Http {
            source_id: self.id.clone(),
            error: HttpError::Decode {
                url: url.to_string(),
                message: error.to_string(),
            },
        }
    }

    /// Move the horizon up to `to` and forget finished sessions below `to - lookback` (the
    /// next listing starts there, so it can't return them). On an ascending listing (v8) this
    /// runs after every session, which keeps the state, and so every batch's checkpoint
    /// snapshot, as small as the lookback window instead of growing with the backlog.
    fn advance_horizon(&mut self, to: DateTime<Utc>) {
        if to < self.state.horizon {
            return;
        }
        self.state.horizon = to;
        let keep_from = minus(to, self.lookback);
        self.state
            .sessions
            .retain(|_, c| !c.done || c.placed || c.creation_time >= keep_from);
    }

    /// Emit the events of one session that we haven't emitted yet.
    ///
    /// `first` is this session's first page when the previous session already asked for
    /// it; `then` is where the session shipped after this one starts: its first page is
    /// asked for while this session's last page is decoded, and returned.
    async fn ship_session(
        &mut self,
        session: Arc<RawRestoreSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
        first: Option<Prefetched>,
        then: Option<PageAt>,
    ) -> Result<Option<Prefetched>, SourceError> {
        let sid = session.id.clone();
        let cursor = self
            .state
            .sessions
            .entry(sid.clone())
            .or_insert_with(|| SessionCursor {
                creation_time: session.creation_time.with_timezone(&Utc),
                next_order: 0,
                next_offset: Some(0),
                last_event_id: None,
                done: false,
                stopped_reads: 0,
                stopped_since: None,
                placed: !session.creation_time_known,
                seen_working: false,
                newest_first: false,
                held: Vec::new(),
            });
        if cursor.done {
            return Ok(None);
        }
        // Whether this is the session's last read (it is done after it): then nothing is
        // held back any longer.
        let last_read = !session.is_working() && {
            let recent = cursor.seen_working
                || session
                    .end_time
                    .is_some_and(|end| fetched_at.signed_duration_since(end) < SETTLE);
            let since = cursor.stopped_since.unwrap_or(fetched_at);
            !recent
                || (cursor.stopped_reads.saturating_add(1) >= 2
                    && fetched_at.signed_duration_since(since) >= STOPPED_GRACE)
        };
        // Events are held back only while their session works: once it has stopped, what
        // its events say is what they end with (a server that leaves one `Running` would
        // otherwise have it wait out the stopped grace).
        let hold = self.hold_in_progress && session.is_working();
        let released = if cursor.held.is_empty() {
            HashSet::new()
        } else {
            self.recheck_held(&session, emitter, fetched_at, hold)
                .await?
        };
        let Some(cursor) = self.state.sessions.get(&sid) else {
            return Ok(None);
        };
        let mut next_order = cursor.next_order;
        // A checkpoint from before `next_offset` resumes at `offset = next_order` (what it
        // assumed) and skips events below that order once, as it did. A newest-first
        // listing, read whole, skips those below it every time.
        let mut floor = (cursor.next_offset.is_none() || cursor.newest_first).then_some(next_order);
        let cycle_floor = next_order;
        // The last `order` of the page before, to see a listing fall across pages.
        let mut last_order: Option<i64> = None;
        let mut turned = false;
        let start = cursor.start_offset();
        let mut previous_ids: HashSet<String> = cursor.last_event_id.iter().cloned().collect();
        let mut pager = Pager::new(start, u64::from(self.page_size));
        let mut limit = self.page_size;
        let path = events_path(&sid);
        // The next page, asked for before the current one is shipped (and while it is decoded
        // on the blocking pool, if it needed the careful path): a server's answer time and
        // our work overlap instead of adding up.
        let mut prefetched: Option<(u64, Result<ReadPage, SourceError>)> = None;
        if let Some(first) = first.filter(|p| p.at.path == path && p.at.offset == start) {
            limit = first.limit;
            prefetched = Some((start, first.page));
        }
        let mut handoff;
        loop {
            let offset = pager.offset();
            let fetched = match prefetched.take() {
                Some((at, fetched)) if at == offset => fetched,
                _ => {
                    self.fetch_page(&path, &[], offset, &mut limit, Some(&sid))
                        .await
                }
            };
            let page = match fetched {
                Ok(page) => page,
                Err(SourceError::Http { error, .. }) if error.status() == Some(404) => {
                    tracing::warn!(source_id = %self.id, session_id = %sid, "restore session disappeared while reading its events; forgetting it");
                    self.forget_session(&sid, Some(session.clone()), emitter, fetched_at)
                        .await?;
                    return Ok(None);
                }
                Err(SourceError::Http { error, .. }) => {
                    self.problems += 1;
                    tracing::warn!(source_id = %self.id, session_id = %sid, error = %error, "cannot read restore session events; will retry next cycle");
                    return Ok(None);
                }
                Err(other) => return Err(other),
            };
            // Where paging goes next depends on the page alone, not on its decoded events;
            // a paging error is acted on once this page's events are shipped.
            let step =
                pager.after_page(page.count, fingerprint_texts(&page.records), page.facts, 0);
            let page_end = offset.saturating_add(page.count as u64);
            let ReadPage {
                url,
                records,
                decoded,
                replaced,
                ..
            } = page;
            let decoding = async move {
                match decoded {
                    Some(decoded) => Ok(decoded.into_iter().zip(records).collect()),
                    None => tokio::task::spawn_blocking(move || decode_events(records)).await,
                }
            };
            let next_page = async {
                match (&step, &then) {
                    (Ok(Step::Next(at)), _) => {
                        let page = self
                            .fetch_page(&path, &[], *at, &mut limit, Some(&sid))
                            .await;
                        (Some((*at, page)), None)
                    }
                    // The last page of this session: the next session's first one.
                    (Ok(Step::Done), Some(next)) => {
                        let mut limit = self.page_size;
                        let page = self
                            .fetch_page(
                                &next.path,
                                &[],
                                next.offset,
                                &mut limit,
                                Some(&next.session_id),
                            )
                            .await;
                        let at = next.clone();
                        (None, Some(Prefetched { at, limit, page }))
                    }
                    _ => (None, None),
                }
            };
            let (decoded, (next_page, next_session)) = tokio::join!(decoding, next_page);
            prefetched = next_page;
            handoff = next_session;
            let decoded = match decoded {
                Ok(decoded) => decoded,
                // A panic while decoding (a bug) or a runtime shutting down: nothing of this
                // page was shipped, so the next cycle reads it again.
                Err(e) => {
                    self.problems += 1;
                    tracing::warn!(source_id = %self.id, session_id = %sid, url = %url, error = %e, "cannot decode restore session events; will retry next cycle");
                    return Ok(None);
                }
            };
            // Listing offsets of the events in progress (where to look for them again).
            let mut progress_at: HashMap<String, u64> = HashMap::new();
            let mut events: Vec<(RawRestoreEvent, Box<str>)> = decoded
                .into_iter()
                .enumerate()
                .filter_map(|(at, (decoded, raw))| match decoded {
                    Ok(mut e) => {
                        if hold && crate::map::vbo::in_progress(&e.status) {
                            progress_at.insert(e.id.clone(), offset.saturating_add(at as u64));
                        }
                        if replaced.contains(&at) {
                            e.problems.push(crate::map::wire_checks::replaced_utf8(
                                crate::map::vbo::EVENT_RECORD,
                            ));
                        }
                        // No usable `order`: its place in the listing stands in for it.
                        if e.order.is_none() {
                            e.position = i64::try_from(offset.saturating_add(at as u64)).ok();
                        }
                        Some((e, raw))
                    }
                    Err(e) => {
                        tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %record_id(&raw), error = %e, "skipping malformed restore event");
                        crate::metrics::global().record_skipped(&self.id);
                        None
                    }
                })
                .collect();
            if floor.is_none() && falls(last_order, &events) {
                // Newest first: what this and later pages hold below the cycle's floor
                // was shipped before (or moved down past the offset we read from: the
                // next cycle reads the listing whole).
                tracing::warn!(source_id = %self.id, session_id = %sid, "the server lists this restore session's events newest first (their order falls); reading its listing whole from now on and shipping the events above the highest order shipped");
                floor = Some(cycle_floor);
                turned = true;
            }
            if let Some(o) = events.iter().rev().find_map(|(e, _)| e.order) {
                last_order = Some(o);
            }
            if let Some(floor) = floor {
                events.retain(|(e, _)| e.order.is_none_or(|o| o >= floor));
            }
            let last_id = events.last().map(|(e, _)| e.id.clone());
            // Only records the page before had: an answer past the end of the listing (a
            // server serving its last page, or the last record, again). The next cycle
            // must not start beyond it.
            let only_repeated =
                !events.is_empty() && events.iter().all(|(e, _)| previous_ids.contains(&e.id));
            // A record served again (a page starting early, repeating the end of the one
            // before; the same id twice on a page) is the same event: shipped once. Every id
            // of this page is remembered for the next one, shipped now or before.
            let mut page_ids = HashSet::with_capacity(events.len());
            events.retain(|(e, _)| page_ids.insert(e.id.clone()) && !previous_ids.contains(&e.id));
            previous_ids = page_ids;
            // Within a page, oldest first; events sharing an `order` are all kept. A page
            // with an event without one stays in the server's order.
            if events.iter().all(|(e, _)| e.order.is_some()) {
                events.sort_by_key(|(e, _)| e.order);
            }
            // Shipped this cycle from the held ones, or held already (read again by id).
            let mut newly_held = Vec::new();
            // Held events this page lists again: still in progress (their text as read
            // now), or done (shipped with this page, no longer held).
            let mut still_held: Vec<(String, String)> = Vec::new();
            let mut done_held: Vec<String> = Vec::new();
            let mut over_limit = 0usize;
            if let Some(c) = self.state.sessions.get(&sid) {
                // (Counted over all sessions only for a page with an event in progress.)
                let mut room = if hold
                    && events
                        .iter()
                        .any(|(e, _)| crate::map::vbo::in_progress(&e.status))
                {
                    let held_here = c.held.len();
                    let held_all: usize = self.state.sessions.values().map(|c| c.held.len()).sum();
                    MAX_HELD_PER_SESSION
                        .saturating_sub(held_here)
                        .min(MAX_HELD.saturating_sub(held_all))
                } else {
                    0
                };
                events.retain(|(e, raw)| {
                    if released.contains(&e.id) {
                        return false;
                    }
                    if c.held.iter().any(|h| h.id == e.id) {
                        if hold && crate::map::vbo::in_progress(&e.status) {
                            still_held.push((e.id.clone(), raw.to_string()));
                            return false;
                        }
                        done_held.push(e.id.clone());
                        return true;
                    }
                    if !hold || !crate::map::vbo::in_progress(&e.status) {
                        return true;
                    }
                    if raw.len() > MAX_HELD_BYTES {
                        return true;
                    }
                    if room == 0 {
                        over_limit += 1;
                        return true;
                    }
                    room -= 1;
                    newly_held.push(HeldEvent {
                        id: e.id.clone(),
                        raw: raw.to_string(),
                        position: e.position,
                        offset: progress_at.get(&e.id).copied(),
                    });
                    false
                });
            }
            if !newly_held.is_empty() {
                tracing::debug!(source_id = %self.id, session_id = %sid, held = newly_held.len(), "events in progress held back until they have their final status");
            }
            if over_limit > 0 && self.over_hold_limit == 0 {
                tracing::warn!(source_id = %self.id, session_id = %sid, per_session = MAX_HELD_PER_SESSION, per_source = MAX_HELD, "more restore events are in progress than are held back at most; the others ship as they are now (outcome unknown), once");
            }
            self.over_hold_limit += over_limit;
            if let Some(max) = events.iter().filter_map(|(e, _)| e.order).max() {
                next_order = next_order.max(max.saturating_add(1));
            }
            if let Some(c) = self.state.sessions.get_mut(&sid) {
                c.next_order = next_order;
                c.held.retain(|h| !done_held.contains(&h.id));
                for (id, raw) in still_held {
                    if let Some(h) = c.held.iter_mut().find(|h| h.id == id) {
                        h.raw = raw;
                    }
                }
                c.held.extend(newly_held);
                if !only_repeated {
                    c.next_offset = Some(page_end);
                }
                if last_id.is_some() {
                    c.last_event_id = last_id;
                }
            }
            if !events.is_empty() {
                let records = events
                    .into_iter()
                    .map(|(event, raw)| self.event_record(&session, event, &raw))
                    .collect();
                self.emit(emitter, records, fetched_at).await?;
            }
            match step {
                Ok(Step::Next(_)) => {}
                Ok(Step::Done) => break,
                Err(e) => {
                    self.problems += 1;
                    tracing::warn!(source_id = %self.id, session_id = %sid, url = %url, error = %e, "cannot page through restore session events; will retry next cycle");
                    return Ok(None);
                }
            }
        }
        if let Some(c) = self.state.sessions.get_mut(&sid) {
            if turned {
                // Read whole next cycle: events above the offset this cycle read from
                // are there, whatever the session's state.
                c.newest_first = true;
            } else if session.is_working() {
                c.seen_working = true;
            } else {
                // Stopped long ago (a backfill): done now. Seen working before, or
                // stopped recently: the server may show the last event ("session
                // stopped") only after the state change, so it is read once more in the
                // next cycle.
                // (`last_read`, worked out before the read, says which.)
                c.stopped_reads = c.stopped_reads.saturating_add(1);
                c.stopped_since.get_or_insert(fetched_at);
                // Not done while an event is still held (its read failed): the next cycle
                // reads it again.
                c.done = last_read && c.held.is_empty();
            }
        }
        Ok(handoff)
    }

    /// Emit `records` with a snapshot of the state after them.
    async fn emit(
        &self,
        emitter: &Emitter,
        records: Vec<Record>,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        emitter
            .emit(SourceBatch {
                records,
                checkpoint: Some(self.snapshot()),
                fetched_at,
            })
            .await
    }

    /// The record of one event; odd values keep the raw record as evidence, and count.
    fn event_record(
        &self,
        session: &Arc<RawRestoreSession>,
        event: RawRestoreEvent,
        raw: &str,
    ) -> Record {
        let degraded = crate::map::vbo::is_degraded(session, &event);
        if degraded {
            crate::metrics::global().record_degraded(&self.id);
        }
        Record::VboEvent {
            session: session.clone(),
            event,
            original: (self.keep_original || degraded).then(|| raw.into()),
        }
    }

    /// Forget a session the server no longer has. Its events held while in progress ship
    /// first, as last read: with `session` when we have it, else with what the cursor
    /// knows (its id and creation time; the rest went with it, and the events say so).
    async fn forget_session(
        &mut self,
        sid: &str,
        session: Option<Arc<RawRestoreSession>>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        let Some(cursor) = self.state.sessions.remove(sid) else {
            return Ok(());
        };
        if cursor.held.is_empty() {
            return Ok(());
        }
        let session = session.unwrap_or_else(|| {
            Arc::new(RawRestoreSession::gone(
                sid,
                cursor.creation_time.fixed_offset(),
                !cursor.placed,
            ))
        });
        let records: Vec<Record> = cursor
            .held
            .iter()
            .filter_map(|h| match crate::map::vbo::decode_event(&h.raw) {
                Ok(mut event) => {
                    if event.order.is_none() {
                        event.position = h.position;
                    }
                    Some(self.event_record(&session, event, &h.raw))
                }
                Err(error) => {
                    tracing::warn!(source_id = %self.id, session_id = sid, event_id = %h.id, %error, "skipping a held restore event that no longer decodes");
                    crate::metrics::global().record_skipped(&self.id);
                    None
                }
            })
            .collect();
        tracing::warn!(source_id = %self.id, session_id = sid, events = records.len(), "shipping the forgotten session's events that were still in progress, as last read");
        self.emit(emitter, records, fetched_at).await
    }

    /// A held event looked up where its session's listing had it (`offset`, one page):
    /// its JSON as listed now, or `None` when it is not there; an error when the page
    /// can't be read.
    async fn find_listed(
        &self,
        sid: &str,
        held: &HeldEvent,
    ) -> Result<Option<String>, SourceError> {
        let Some(offset) = held.offset else {
            return Ok(None);
        };
        let mut limit = self.page_size.min(10);
        let page = self
            .fetch_page(&events_path(sid), &[], offset, &mut limit, Some(sid))
            .await?;
        Ok(page.records.into_iter().find_map(|raw| {
            crate::map::vbo::decode_event(&raw)
                .ok()
                .filter(|e| e.id == held.id)
                .map(|_| raw.into())
        }))
    }

    /// Read every held event of `session` again by id and ship those that have their
    /// final status (all of them unless `hold`: the session stopped) and those the server no
    /// longer has (as last read), in one batch. Returns their ids.
    async fn recheck_held(
        &mut self,
        session: &Arc<RawRestoreSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
        hold: bool,
    ) -> Result<HashSet<String>, SourceError> {
        let sid = session.id.clone();
        let held = match self.state.sessions.get(&sid) {
            Some(c) => c.held.clone(),
            None => return Ok(HashSet::new()),
        };
        let mut keep = Vec::new();
        let mut ship = Vec::new();
        for h in held {
            let path = format!("{}/{}", events_path(&sid), http::path_segment(&h.id));
            let by_id = if self.no_events_by_id {
                None
            } else {
                Some(self.get(&path, &[]).await)
            };
            let refused = |error: &HttpError| {
                error
                    .status()
                    .is_some_and(|s| matches!(s, 404 | 410) || refused_for_good(s))
            };
            let fresh = match by_id {
                Some(Ok((_, body))) => Some(
                    String::from_utf8_lossy(crate::sources::page::without_bom(&body))
                        .trim()
                        .to_string(),
                ),
                // A 5xx or a broken connection while the session works: next cycle.
                Some(Err(SourceError::Http { error, .. })) if hold && !refused(&error) => {
                    self.problems += 1;
                    tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, error = %error, "cannot read a restore event in progress again; will retry next cycle");
                    keep.push(h);
                    continue;
                }
                // Not readable by id (gone, or a server without `…/Events/{id}`), or the
                // session stopped: where its listing had it, else as last read.
                Some(Err(SourceError::Http { error, .. })) => {
                    let listed = match self.find_listed(&sid, &h).await {
                        Ok(listed) => listed,
                        Err(SourceError::Http { .. }) if hold => {
                            self.problems += 1;
                            keep.push(h);
                            continue;
                        }
                        Err(SourceError::Http { .. }) => None,
                        Err(other) => return Err(other),
                    };
                    if listed.is_some() && refused(&error) {
                        tracing::info!(source_id = %self.id, error = %error, "the server does not give restore events by id; events in progress are looked for in their session's listing instead");
                        self.no_events_by_id = true;
                    } else if listed.is_none() {
                        tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, error = %error, "a restore event in progress can't be read again (no longer on the server?); shipping it as last read");
                    }
                    listed
                }
                None => {
                    let listed = match self.find_listed(&sid, &h).await {
                        Ok(listed) => listed,
                        Err(SourceError::Http { error, .. }) if hold => {
                            self.problems += 1;
                            tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, error = %error, "cannot read a restore event in progress again; will retry next cycle");
                            keep.push(h);
                            continue;
                        }
                        Err(SourceError::Http { .. }) => None,
                        Err(other) => return Err(other),
                    };
                    if listed.is_none() {
                        tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, "a restore event in progress is no longer where its session's listing had it; shipping it as last read");
                    }
                    listed
                }
                Some(Err(other)) => return Err(other),
            };
            let gone = fresh.is_none();
            let read = fresh
                .and_then(|raw| {
                    match crate::map::vbo::decode_event(&raw) {
                        Ok(e) if e.id == h.id => Some((e, raw)),
                        Ok(e) => {
                            tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, answered = %e.id, "reading a restore event by id answered another event; keeping it as last read");
                            None
                        }
                        Err(error) => {
                            tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, %error, "a restore event in progress read again is unusable; keeping it as last read");
                            None
                        }
                    }
                });
            let fresh = read.is_some();
            let (mut event, raw) = match read {
                Some(read) => read,
                None => match crate::map::vbo::decode_event(&h.raw) {
                    Ok(e) => (e, h.raw.clone()),
                    Err(error) => {
                        // Read and decoded before; only a change of our own decoding
                        // could get here.
                        tracing::warn!(source_id = %self.id, session_id = %sid, event_id = %h.id, %error, "skipping a held restore event that no longer decodes");
                        crate::metrics::global().record_skipped(&self.id);
                        continue;
                    }
                },
            };
            if event.order.is_none() {
                event.position = h.position;
            }
            if hold && !gone && (!fresh || crate::map::vbo::in_progress(&event.status)) {
                keep.push(HeldEvent { raw, ..h });
                continue;
            }
            ship.push((event, raw));
        }
        let released: HashSet<String> = ship.iter().map(|(e, _)| e.id.clone()).collect();
        if let Some(c) = self.state.sessions.get_mut(&sid) {
            c.held = keep;
            if let Some(max) = ship.iter().filter_map(|(e, _)| e.order).max() {
                c.next_order = c.next_order.max(max.saturating_add(1));
            }
        }
        if ship.is_empty() {
            return Ok(released);
        }
        tracing::debug!(source_id = %self.id, session_id = %sid, shipped = ship.len(), "held restore events shipped with their final status");
        let records = ship
            .into_iter()
            .map(|(event, raw)| self.event_record(session, event, &raw))
            .collect();
        self.emit(emitter, records, fetched_at).await?;
        Ok(released)
    }

    /// `check`: log in, read the newest restore session and a few of its events.
    /// Returns a one-line summary and, when the server has any, one sample record.
    pub async fn probe(&self) -> Result<(String, Option<Record>), SourceError> {
        self.tokens.bearer().await?;
        let mut query = vec![("limit", "1".to_string()), ("offset", "0".to_string())];
        if self.version == ApiVersion::V8 {
            query.push(("orderBy", "CreationTime".to_string()));
            query.push(("orderAsc", "false".to_string()));
        }
        let (url, body) = self.get("RestoreSessions", &query).await?;
        let raws = parse_page(&body).map_err(|message| SourceError::Http {
            source_id: self.id.clone(),
            error: HttpError::Decode {
                url: url.clone(),
                message,
            },
        })?;
        let Some(raw) = raws.first() else {
            return Ok((
                format!(
                    "logged in to {}; no restore sessions visible",
                    self.api_base
                ),
                None,
            ));
        };
        // Decoded as the poller does: leniently, an odd creation time placed at the horizon.
        let session =
            crate::map::vbo::decode_session(raw.get(), self.state.horizon).map_err(|e| {
                SourceError::Http {
                    source_id: self.id.clone(),
                    error: HttpError::Decode {
                        url,
                        message: format!("restore session is unusable: {e}"),
                    },
                }
            })?;
        let (_, body) = self
            .get(
                &events_path(&session.id),
                &[("limit", "5".to_string()), ("offset", "0".to_string())],
            )
            .await?;
        let sample = parse_page(&body)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(at, r)| {
                let mut event = crate::map::vbo::decode_event(r.get()).ok()?;
                if event.order.is_none() {
                    event.position = Some(at as i64);
                }
                Some(event)
            })
            .max_by_key(|e| e.order.or(e.position))
            .map(|event| Record::VboEvent {
                session: Arc::new(session.clone()),
                event,
                original: None,
            });
        Ok((
            format!(
                "logged in to {}; newest restore session {} ({})",
                self.api_base, session.id, session.creation_time
            ),
            sample,
        ))
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or(serde_json::Value::Null)
    }

    /// GET `{api_base}/{path}` with the source's token; returns (url, body).
    ///
    /// 401: the first time the token is refreshed, the second time we log in with the
    /// password, then the request is repeated (same page, so nothing is skipped).
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(String, bytes::Bytes), SourceError> {
        let url = reqwest::Url::parse_with_params(&format!("{}/{path}", self.api_base), query)
            .map_err(|e| SourceError::Http {
                source_id: self.id.clone(),
                error: HttpError::Decode {
                    url: self.api_base.clone(),
                    message: format!("cannot build request URL: {e}"),
                },
            })?;
        let shown = url.to_string();
        let http_error = |error| SourceError::Http {
            source_id: self.id.clone(),
            error,
        };
        // Shared by every send of this request (the body may be asked for again).
        let rejected = AtomicU32::new(0);
        let send = || async {
            loop {
                let bearer = self.tokens.bearer().await?;
                let result = http::send_with_retry(&self.policy, &shown, || {
                    self.client
                        .get(url.clone())
                        .bearer_auth(bearer.token.expose())
                        .header(reqwest::header::ACCEPT, "application/json")
                        .send()
                })
                .await;
                match result {
                    Ok(resp) => return Ok((shown.clone(), resp)),
                    Err(e) if http::is_unauthorized(&e) && rejected.load(Relaxed) < 2 => {
                        let rejected = rejected.fetch_add(1, Relaxed) + 1;
                        tracing::debug!(source_id = %self.id, url = %shown, rejected, "401 from data endpoint; renewing token");
                        self.tokens
                            .invalidate(bearer.generation, rejected >= 2)
                            .await;
                    }
                    Err(error) => return Err(http_error(error)),
                }
            }
        };
        // "No Content" (outside the spec, which answers an empty page): nothing is listed
        // there, read as that empty page rather than as a broken one.
        http::fetch_body(&self.policy, MAX_PAGE_BYTES, EMPTY_PAGE, send, http_error).await
    }
}

/// Whether `sessions` (one listing page, as listed) continue an oldest-first listing whose
/// newest session so far is `last`; sessions listed already (the overlap between pages)
/// don't count. Moves `last` on.
fn listed_in_order(
    sessions: &[RawRestoreSession],
    listed: &HashSet<String>,
    last: &mut Option<DateTime<Utc>>,
) -> bool {
    // A session without a usable `creationTime` sits where the server puts such records
    // and says nothing about the listing's order (its placement is ours).
    for s in sessions
        .iter()
        .filter(|s| s.creation_time_known && !listed.contains(&s.id))
    {
        let created = s.creation_time.with_timezone(&Utc);
        if last.is_some_and(|l| created < l) {
            return false;
        }
        *last = Some(created);
    }
    true
}

/// A status a repeated request gets again (the server has no such endpoint, or refuses
/// it): a client error other than a timeout or throttling, or "not implemented".
fn refused_for_good(status: u16) -> bool {
    ((400..500).contains(&status) && status != 408 && status != 429) || matches!(status, 501 | 505)
}

/// Longest pause between two logins after refusals.
const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The pause after a cycle: `poll_interval`, doubled for each login refused in a row after
/// the first, up to [`MAX_LOGIN_BACKOFF`] (never below `poll_interval`).
fn login_backoff(poll_interval: Duration, refused: u32) -> Duration {
    let doubled = poll_interval.saturating_mul(1u32 << refused.saturating_sub(1).min(16));
    doubled.min(MAX_LOGIN_BACKOFF).max(poll_interval)
}

/// Whether a page of events shows a newest-first listing: its `order`s fall strictly from
/// one event to the next (at least two of them), or its first is below the last `order`
/// of the page before. Pages that repeat a value or rise are oldest first (or odd).
fn falls(before: Option<i64>, events: &[(RawRestoreEvent, Box<str>)]) -> bool {
    let orders: Vec<i64> = events.iter().filter_map(|(e, _)| e.order).collect();
    let within = orders.len() >= 2 && orders.windows(2).all(|w| w[0] > w[1]);
    let across = matches!((before, orders.first()), (Some(b), Some(&first)) if first < b);
    within || across
}

/// How often one listing pass reads back after sessions disappeared under it.
const MAX_LISTING_REWINDS: u32 = 8;

/// Listing records fetched again at the start of the next page (see `cycle`).
fn listing_overlap(page_len: usize) -> usize {
    (page_len / 20).clamp(1, 25).min(page_len.saturating_sub(1))
}

/// The records of a page envelope `{"results": [...]}`, or of a bare array (some
/// collections answer that way). Records stay raw so one bad record can be skipped alone.
pub fn parse_page(body: &[u8]) -> Result<Vec<Box<RawValue>>, String> {
    parse_page_with_facts(body).map(|(records, _)| records)
}

/// [`parse_page`], plus what the envelope says about the pages after it. An object
/// without a `results` array is not a page (a proxy's or server's JSON error answered with
/// status 200): taking it as an empty page would end the listing early.
pub fn parse_page_with_facts(body: &[u8]) -> Result<(Vec<Box<RawValue>>, PageFacts), String> {
    #[derive(Deserialize)]
    struct Envelope {
        results: Option<Vec<Box<RawValue>>>,
        #[serde(flatten)]
        rest: serde_json::Map<String, serde_json::Value>,
    }
    let body = crate::sources::page::without_bom(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => serde_json::from_slice(body)
            .map(|records| (records, PageFacts::default()))
            .map_err(|e| format!("invalid JSON array: {e}")),
        Some(b'{') => {
            let page: Envelope =
                serde_json::from_slice(body).map_err(|e| format!("invalid page JSON: {e}"))?;
            let Some(results) = page.results else {
                return Err(format!(
                    "a JSON object without a `results` array is not a page: {}",
                    http::excerpt(&String::from_utf8_lossy(body), 120)
                ));
            };
            Ok((results, PageFacts::from_envelope(&page.rest)))
        }
        _ => Err(format!(
            "expected a JSON page, got: {}",
            http::excerpt(&String::from_utf8_lossy(body), 120)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_envelope_and_bare_array() {
        let p = parse_page(br#"{"offset":0,"limit":2,"results":[{"id":1},{"id":2}],"_links":{}}"#)
            .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(parse_page(b" [ {\"id\":1} ]").unwrap().len(), 1);
        assert!(parse_page(b"<html>").unwrap_err().contains("<html>"));
        assert!(parse_page(b"{\"results\": [1,").is_err());
        // A UTF-8 byte order mark before the JSON is skipped.
        assert_eq!(
            parse_page(b"\xEF\xBB\xBF{\"results\":[{\"id\":1}]}")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn record_id_survives_garbage() {
        assert_eq!(record_id(r#"{"id":"abc","order":"x"}"#), "abc");
        assert_eq!(record_id("nope"), "<unknown>");
    }

    #[test]
    fn state_round_trips() {
        let mut st = VboState {
            horizon: Utc::now(),
            sessions: BTreeMap::new(),
        };
        st.sessions.insert(
            "s1".into(),
            SessionCursor {
                creation_time: Utc::now(),
                next_order: 4,
                next_offset: Some(4),
                last_event_id: Some("e3".into()),
                done: false,
                stopped_reads: 1,
                stopped_since: Some(Utc::now()),
                placed: true,
                seen_working: true,
                newest_first: true,
                held: vec![HeldEvent {
                    id: "e2".into(),
                    raw: r#"{"id":"e2","status":"Running"}"#.into(),
                    position: Some(2),
                    offset: Some(2),
                }],
            },
        );
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(serde_json::from_value::<VboState>(v).unwrap(), st);
    }

    #[test]
    fn refused_logins_back_off_up_to_a_limit() {
        let p = Duration::from_secs(30);
        assert_eq!(login_backoff(p, 0), p);
        assert_eq!(login_backoff(p, 1), p);
        assert_eq!(login_backoff(p, 2), Duration::from_secs(60));
        assert_eq!(login_backoff(p, 4), Duration::from_secs(240));
        assert_eq!(login_backoff(p, 40), MAX_LOGIN_BACKOFF);
        let long = Duration::from_secs(3600);
        assert_eq!(login_backoff(long, 9), long, "never below poll_interval");
    }
}
