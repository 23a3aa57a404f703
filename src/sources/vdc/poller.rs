//! `type = "vdc"`: the Veeam Data Cloud (VDC) public API poller (backup jobs → job sessions
//! → session logs), and its resumable state.
//!
//! Owns the polling algorithm and the checkpoint state ([`VdcState`]). Must not: map records
//! (that is `map::vdc`), write checkpoints (the pipeline does, after delivery), build HTTP
//! requests itself (`api`) or parse download bodies (`download`).
//!
//! ## Algorithm (one poll cycle)
//! 1. `GET /v1/reports/backup-jobs`. For each job (by id):
//! 2. `GET /v1/Reports/backup-jobs/{id}/job-sessions` (newest first). Sessions the job's
//!    cursor marks done, or created before `floor - lookback` (or before the first-run
//!    horizon `start`), are skipped; the rest are shipped oldest first.
//! 3. A session's log (`/logs` JSON, or the `/logs/download` stream) is read from entry 0,
//!    and entries from the session's cursor `next` on are emitted, [`BATCH`] per batch, each
//!    batch carrying a snapshot with the cursor after it. The session's state was read
//!    *before* its log, so a session that had ended (an `endTime` and a non-running
//!    status) is complete once its log is read: it is marked done. A running one is read
//!    again next cycle, and only its new entries are shipped.
//! 4. The job's `floor` moves up to the creation time of its oldest open session (or of its
//!    newest done one); done sessions older than `floor - lookback` and sessions the server
//!    no longer lists are forgotten. The state stays a handful of entries per job.
//!
//! With `hold_in_progress` (off by default: then every entry ships as read), an entry
//! whose title says `[Running]` while its session runs is not shipped then: Veeam
//! completes a job log entry in place (`[Running] Processing mailbox: x` becomes
//! `[Warning] Processing mailbox: x`), and shipping it at once would keep the SIEM's copy
//! at "unknown" for good. Its position is held in the cursor ([`SessionCursor::held`]) and,
//! as the log is read whole every cycle, it ships once it has its final status, or as it
//! is once the session has ended (as last read when the log is gone by then). Lists
//! recognised by id (see below) ship as read.
//!
//! Log entries are identified by their position in the session log (oldest first), so
//! de-duplication is by cursor, not by time or id: this assumes a session log only grows at
//! its end, which is how job logs work. A `/logs` list's order is told by its entries'
//! times ([`detect_order`]) and remembered per session; while it can't be told (all times
//! equal), entries are recognised by id ([`SessionCursor::shipped_ids`], bounded). A record that doesn't parse is logged with its
//! session id and skipped alone (it still counts as a position). Failures of one job or
//! session don't stop the others; the cycle then ends with [`SourceError::Incomplete`] and
//! the failed part is read again next time. A rejected API key (401/403) stops the source
//! with one clear [`SourceError::ApiKey`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::api::{Endpoint, KeyHeader, VdcApi};
use super::download::DownloadReader;
use crate::http::{self, HttpError, RetryPolicy};
use crate::map::Record;
use crate::map::vdc::{RawJob, RawJobSession, RawLogEntry};
use crate::sources::{Emitter, RunMode, SourceBatch, SourceError, minus, to_chrono};

use super::config::*;

/// Log entries per emitted batch.
pub const BATCH: usize = 500;
/// Most ids a session cursor holds while its `/logs` order is unknown (see
/// [`SessionCursor::shipped_ids`]); a longer log of that kind falls back to positions.
pub const MAX_SHIPPED_IDS: usize = 1000;
/// Entries a session cursor holds back while in progress (see [`SessionCursor::held`]);
/// more ship as read.
pub const MAX_HELD_ENTRIES: usize = 64;
/// Longest entry text held back (the checkpoint carries it, rewritten with every batch);
/// a longer entry in progress ships as read.
pub const MAX_HELD_BYTES: usize = 64 * 1024;
/// Default horizon of the first run.
const DEFAULT_HISTORY: chrono::Duration = chrono::Duration::days(7);
/// What a download request accepts: our assumed text format first, JSON too.
const ACCEPT_DOWNLOAD: &str =
    "text/plain, application/x-ndjson;q=0.9, application/json;q=0.8, */*;q=0.5";

/// The checkpointed state of a VDC source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdcState {
    /// First-run horizon: the floor of every job seen for the first time.
    pub start: DateTime<Utc>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobCursor>,
    /// A job session log was read from this server once: a log that answers 404 is then
    /// gone, not an endpoint the server lacks (see [`MISSING_CYCLES`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_read: bool,
}

/// Progress inside one backup job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCursor {
    /// Sessions created before `floor - lookback` are complete (or older than the horizon).
    pub floor: DateTime<Utc>,
    /// Open sessions, and done ones not yet below the floor.
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionCursor>,
}

/// Progress inside one job session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCursor {
    #[serde(default)]
    pub creation_time: Option<DateTime<Utc>>,
    /// Log entries at positions below this have been emitted.
    pub next: u64,
    /// The session had ended and its whole log was emitted.
    #[serde(default)]
    pub done: bool,
    /// The order of the session's `/logs` list, once its entries' times told it; kept, so
    /// that a later list whose times can't tell (or disagree by an odd time) is read the same
    /// way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<LogOrder>,
    /// Ids of the entries shipped while the list's order was unknown (every entry at the
    /// same time): until the order is known or the session ends, entries are recognised by
    /// id, so new ones are shipped wherever the server put them. At most [`MAX_SHIPPED_IDS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipped_ids: Vec<String>,
    /// Cycles in a row whose request for this session's log answered 404 or 410.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: u32,
    /// Entries read while in progress (`[Running] …`) as the session ran, not shipped yet
    /// (see the module docs), with their text as last read. At most [`MAX_HELD_ENTRIES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldEntry>,
}

/// A log entry held back while in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldEntry {
    /// Its position in the session log.
    pub position: u64,
    /// As last read: a download line (`text`) or the entry's JSON.
    pub raw: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub text: bool,
}

/// What becomes of one log entry as it is read (see [`VdcPoller::hold_or_ship`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Shipped before.
    Skip,
    Ship,
    /// Held before, and now to ship: it leaves `held` with the batch that ships it.
    ShipHeld,
    /// In progress: held (again).
    Held,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Cycles in a row an ended session's log may answer 404/410 (while this server has
/// served other logs) before the session is passed over: the log is gone (retention),
/// and retrying it forever would fail every `--once` run.
const MISSING_CYCLES: u32 = 3;

/// In which order a `/logs` list comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOrder {
    OldestFirst,
    NewestFirst,
}

/// The order of a log from its entries' times (entries without one are passed over): the
/// direction most steps between neighbours take, so that one odd time (a wrong offset, a
/// clock step) doesn't turn the list round. `None` when it can't tell (no two different
/// times, or as many steps up as down).
pub fn detect_order(times: impl IntoIterator<Item = Option<DateTime<Utc>>>) -> Option<LogOrder> {
    let mut previous: Option<DateTime<Utc>> = None;
    let (mut up, mut down) = (0usize, 0usize);
    for time in times.into_iter().flatten() {
        if let Some(p) = previous {
            match p.cmp(&time) {
                std::cmp::Ordering::Less => up += 1,
                std::cmp::Ordering::Greater => down += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        previous = Some(time);
    }
    match up.cmp(&down) {
        std::cmp::Ordering::Greater => Some(LogOrder::OldestFirst),
        std::cmp::Ordering::Less => Some(LogOrder::NewestFirst),
        std::cmp::Ordering::Equal => None,
    }
}

/// Positions (first, last) of a kind of entry in a list.
#[derive(Debug, Default, Clone, Copy)]
struct Span(Option<(usize, usize)>);

impl Span {
    fn add(&mut self, position: usize) {
        self.0 = Some(match self.0 {
            None => (position, position),
            Some((first, last)) => (first.min(position), last.max(position)),
        });
    }
}

/// Where a re-read list had its new entries and its already shipped ones.
#[derive(Debug, Default, Clone, Copy)]
struct Growth {
    new: Span,
    old: Span,
}

impl Growth {
    /// The list's order as its growth shows it: every new entry before every shipped one
    /// is newest first, after them oldest first; `None` when it can't tell.
    fn order(&self) -> Option<LogOrder> {
        let (Some((new_first, new_last)), Some((old_first, old_last))) = (self.new.0, self.old.0)
        else {
            return None;
        };
        if new_last < old_first {
            Some(LogOrder::NewestFirst)
        } else if new_first > old_last {
            Some(LogOrder::OldestFirst)
        } else {
            None
        }
    }
}

/// Why a download attempt stopped.
enum DownloadFailure {
    /// The request failed (already classified; ApiKey/Closed stop the source).
    Request(SourceError),
    /// The body broke or can't be read; `retry` when repeating may help.
    Body { error: std::io::Error, retry: bool },
}

pub struct VdcPoller {
    id: String,
    api: VdcApi,
    log_mode: LogMode,
    poll_interval: Duration,
    lookback: chrono::Duration,
    keep_original: bool,
    /// Hold entries in progress back for their final status (not in a backfill).
    hold_in_progress: bool,
    max_retries: u32,
    state: VdcState,
    /// Failed requests in the current cycle.
    problems: usize,
}

impl VdcPoller {
    /// Build the poller from its config and the stored checkpoint (if any).
    pub fn new(src: &VdcSource, stored: Option<serde_json::Value>) -> Result<Self, SourceError> {
        let s = &src.settings;
        let http_error = |error| SourceError::Http {
            source_id: src.id.clone(),
            error,
        };
        let key = format!("sources.{}.tls", src.id);
        let client = http::build_api_client(&key, &s.tls, s.request_timeout).map_err(http_error)?;
        let header = KeyHeader::parse(&s.api_key_header).ok_or_else(|| {
            http_error(HttpError::Decode {
                url: src.url.to_string(),
                message: format!(
                    "sources.{}.api_key_header `{}` is not a valid header name",
                    src.id, s.api_key_header
                ),
            })
        })?;
        let policy = RetryPolicy {
            max_retries: s.max_retries,
            ..RetryPolicy::default()
        };
        let api = VdcApi::new(&src.id, &src.url, client, policy, header, &src.api_key).map_err(
            |message| {
                http_error(HttpError::Decode {
                    url: src.url.to_string(),
                    message: format!("sources.{}.api_key: {message}", src.id),
                })
            },
        )?;
        let state = match stored {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| crate::sources::unusable_state(&src.id, "vdc", &e))?,
            None => VdcState {
                start: s.start_time.unwrap_or_else(|| Utc::now() - DEFAULT_HISTORY),
                jobs: BTreeMap::new(),
                logs_read: false,
            },
        };
        Ok(VdcPoller {
            id: src.id.clone(),
            api,
            log_mode: s.log_mode,
            poll_interval: s.poll_interval,
            lookback: to_chrono(s.lookback),
            keep_original: s.keep_original,
            hold_in_progress: s.hold_in_progress && !s.ship_in_progress,
            max_retries: s.max_retries,
            state,
            problems: 0,
        })
    }

    pub fn state(&self) -> &VdcState {
        &self.state
    }

    /// Poll once (`RunMode::Once`) or forever. Cancellation is by dropping the future:
    /// every emitted batch carries a consistent snapshot, so stopping anywhere is safe.
    pub async fn run(mut self, mode: RunMode, emitter: Emitter) -> Result<(), SourceError> {
        loop {
            let result = self.cycle(&emitter).await;
            if let Some(done) = crate::sources::after_cycle(&self.id, mode, result) {
                return done;
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// One complete poll cycle.
    pub async fn cycle(&mut self, emitter: &Emitter) -> Result<(), SourceError> {
        self.problems = 0;
        let fetched_at = Utc::now();
        let (url, raws) = self
            .api
            .collection(Endpoint::Jobs)
            .await
            .map_err(|e| self.explain_404(e))?;
        let mut jobs: Vec<RawJob> = raws
            .iter()
            .filter_map(|raw| match crate::map::vdc::decode_job(raw.get()) {
                Ok(job) => Some(job),
                Err(e) => {
                    tracing::warn!(source_id = %self.id, url, record = %http::excerpt(raw.get(), 200), error = %e, "skipping malformed backup job");
                    crate::metrics::global().record_skipped(&self.id);
                    None
                }
            })
            .collect();
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        jobs.dedup_by(|a, b| a.id == b.id);
        tracing::debug!(source_id = %self.id, jobs = jobs.len(), "listed backup jobs");
        for job in jobs {
            self.ship_job(Arc::new(job), emitter, fetched_at).await?;
        }
        emitter
            .emit(SourceBatch {
                records: Vec::new(),
                checkpoint: Some(self.snapshot()),
                fetched_at,
            })
            .await?;
        if self.problems > 0 {
            return Err(SourceError::Incomplete {
                source_id: self.id.clone(),
                problems: self.problems,
            });
        }
        Ok(())
    }

    /// Ship the not-yet-shipped sessions of one job, then move its floor.
    async fn ship_job(
        &mut self,
        job: Arc<RawJob>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        let endpoint = Endpoint::Sessions { job: &job.id };
        let (url, raws) = match self.api.collection(endpoint).await {
            Ok(ok) => ok,
            Err(SourceError::Http { error, .. }) if error.status() == Some(404) => {
                tracing::warn!(source_id = %self.id, job_id = %job.id, "backup job disappeared while listing its sessions; skipping it");
                return Ok(());
            }
            Err(SourceError::Http { error, .. }) => {
                self.problems += 1;
                tracing::warn!(source_id = %self.id, job_id = %job.id, error = %error, "cannot list job sessions; will retry next cycle");
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        // Ids of every listed session, malformed ones included (their cursors must survive).
        let mut listed: HashSet<String> = HashSet::new();
        let sessions: Vec<RawJobSession> = raws
            .iter()
            .filter_map(|raw| match crate::map::vdc::decode_job_session(raw.get()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(source_id = %self.id, job_id = %job.id, url, record = %http::excerpt(raw.get(), 200), error = %e, "skipping malformed job session");
                    crate::metrics::global().record_skipped(&self.id);
                    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(raw.get())
                        && let Some(id) = map.get("id")
                    {
                        listed.insert(id.as_str().map_or_else(|| id.to_string(), str::to_string));
                    }
                    None
                }
            })
            .collect();
        listed.extend(sessions.iter().map(|s| s.id.clone()));
        let start = self.state.start;
        let first_sight = !self.state.jobs.contains_key(&job.id);
        let cursor = self
            .state
            .jobs
            .entry(job.id.clone())
            .or_insert_with(|| JobCursor {
                floor: start,
                sessions: BTreeMap::new(),
            });
        // New sessions count from `floor - lookback`, but never before the first-run horizon.
        let threshold = minus(cursor.floor, self.lookback).max(start);
        let older = if first_sight {
            sessions
                .iter()
                .filter(|s| s.creation_time.is_some_and(|t| t < start))
                .count()
        } else {
            0
        };
        let mut todo: Vec<RawJobSession> = sessions
            .into_iter()
            .filter(|s| match cursor.sessions.get(&s.id) {
                Some(c) => !c.done,
                None => s.creation_time.is_none_or(|t| t >= threshold),
            })
            .collect();
        if older > 0 {
            tracing::warn!(
                source_id = %self.id,
                job_id = %job.id,
                sessions = older,
                horizon = %start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "sessions of this job created before the first-run horizon are not shipped; to ship them, set sources.{}.start_time earlier before the first run (or remove the source's checkpoint)",
                self.id
            );
        }
        todo.sort_by(|a, b| (a.creation_time, &a.id).cmp(&(b.creation_time, &b.id)));
        todo.dedup_by(|a, b| a.id == b.id);
        let ahead = Utc::now() + crate::sources::CLOCK_AHEAD_WARNING;
        for session in &todo {
            if let Some(created) = session.creation_time
                && created > ahead
                && !cursor.sessions.contains_key(&session.id)
            {
                tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, creation_time = %created, "job session created in the future by this host's clock; shipped, but the job's floor stays at the current time so that later sessions are still read. Check the clocks of this host and the VDC API");
            }
        }
        for session in todo {
            self.ship_session(&job, Arc::new(session), emitter, fetched_at)
                .await?;
        }
        if let Some(cursor) = self.state.jobs.get_mut(&job.id) {
            advance_floor(cursor, &listed, self.lookback, &self.id, &job.id);
        }
        Ok(())
    }

    /// Emit the log entries of one session that haven't been emitted yet.
    async fn ship_session(
        &mut self,
        job: &Arc<RawJob>,
        session: Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        // Read before the log: if it had ended then, the log we read next is complete.
        let running = session.is_running();
        if let Some(cursor) = self.state.jobs.get_mut(&job.id) {
            cursor
                .sessions
                .entry(session.id.clone())
                .or_insert_with(|| SessionCursor {
                    creation_time: session.creation_time,
                    next: 0,
                    done: false,
                    order: None,
                    shipped_ids: Vec::new(),
                    missing: 0,
                    held: Vec::new(),
                });
        }
        let missing_before = self.missing_of(&job.id, &session.id);
        let complete = match self.log_mode {
            LogMode::Json => {
                self.ship_json_log(job, &session, emitter, fetched_at)
                    .await?
            }
            LogMode::Download => {
                self.ship_download(job, &session, emitter, fetched_at)
                    .await?
            }
        };
        let passed_over = self.missing_of(&job.id, &session.id) > missing_before;
        if complete && !passed_over {
            self.state.logs_read = true;
            if let Some(c) = self.session_cursor(&job.id, &session.id) {
                c.missing = 0;
            }
        }
        if complete && !running {
            self.ship_stored_held(job, &session, emitter, fetched_at)
                .await?;
            if let Some(c) = self.session_cursor(&job.id, &session.id) {
                c.done = true;
                c.shipped_ids = Vec::new();
            }
        }
        Ok(())
    }

    /// Whether the entry at `position` is skipped (shipped before), shipped, or held
    /// while in progress; keeps [`SessionCursor::held`] up to date. `hold`: the session
    /// runs and its entries are read by position.
    #[allow(clippy::too_many_arguments)]
    fn hold_or_ship(
        &mut self,
        job: &RawJob,
        session: &RawJobSession,
        position: u64,
        from: u64,
        entry: &Result<RawLogEntry, String>,
        raw: &str,
        text: bool,
        hold: bool,
    ) -> Fate {
        // (The field, not `session_cursor`: `self.id` stays readable for the log line.)
        let cursor = self
            .state
            .jobs
            .get_mut(&job.id)
            .and_then(|j| j.sessions.get_mut(&session.id));
        let Some(c) = cursor else {
            return if position < from {
                Fate::Skip
            } else {
                Fate::Ship
            };
        };
        let running = hold && entry.as_ref().is_ok_and(crate::map::vdc::in_progress);
        match c.held.iter().position(|h| h.position == position) {
            Some(at) if running => {
                c.held[at].raw = raw.to_string();
                c.held[at].text = text;
                Fate::Held
            }
            Some(_) => Fate::ShipHeld,
            None if position < from => Fate::Skip,
            None if running && c.held.len() >= MAX_HELD_ENTRIES => {
                tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, position, limit = MAX_HELD_ENTRIES, "more log entries of this session are in progress than are held back at most; this one ships as it is now");
                Fate::Ship
            }
            None if running && raw.len() > MAX_HELD_BYTES => Fate::Ship,
            None if running => {
                c.held.push(HeldEntry {
                    position,
                    raw: raw.to_string(),
                    text,
                });
                tracing::debug!(source_id = %self.id, job_id = %job.id, session_id = %session.id, position, "log entry in progress held back until it has its final status");
                Fate::Held
            }
            None => Fate::Ship,
        }
    }

    /// Ship, as last read, the entries still held when the session is done (its log was
    /// passed over as gone, or no longer reached their positions).
    async fn ship_stored_held(
        &mut self,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        let held = match self.session_cursor(&job.id, &session.id) {
            Some(c) if !c.held.is_empty() => std::mem::take(&mut c.held),
            _ => return Ok(()),
        };
        tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, entries = held.len(), "the session ended without its log showing these entries again; shipping them as last read");
        let mut out = Progress::new(self.next_of(&job.id, &session.id));
        for h in held {
            let entry = if h.text {
                Ok(crate::map::vdc::decode_text_line(&h.raw))
            } else {
                crate::map::vdc::decode_log_entry(&h.raw).map_err(|e| e.to_string())
            };
            let degraded = entry
                .as_ref()
                .is_ok_and(|e| crate::map::vdc::is_degraded(job, session, e));
            let original = (self.keep_original || degraded).then(|| h.raw.as_str().into());
            self.collect(&mut out, job, session, h.position, entry, original);
        }
        self.flush(&mut out, job, session, emitter, fetched_at)
            .await
    }

    fn missing_of(&self, job_id: &str, session_id: &str) -> u32 {
        self.state
            .jobs
            .get(job_id)
            .and_then(|j| j.sessions.get(session_id))
            .map_or(0, |c| c.missing)
    }

    /// A request for a session's log failed. Returns whether the session is passed over
    /// as having no log any more (an ended session whose log answered 404/410 in
    /// [`MISSING_CYCLES`] cycles in a row, on a server that has served logs); otherwise the
    /// failure counts as a problem of this cycle and the log is read again next cycle.
    fn log_request_failed(
        &mut self,
        job: &RawJob,
        session: &RawJobSession,
        error: &HttpError,
        what: &str,
    ) -> bool {
        let gone = error.status().is_some_and(|s| s == 404 || s == 410);
        let logs_read = self.state.logs_read;
        let source_id = self.id.clone();
        let missing = match self.session_cursor(&job.id, &session.id) {
            Some(c) if gone => {
                c.missing = c.missing.saturating_add(1);
                c.missing
            }
            _ => 0,
        };
        if missing >= MISSING_CYCLES && logs_read && !session.is_running() {
            tracing::warn!(source_id = %source_id, job_id = %job.id, session_id = %session.id, error = %error, cycles = missing, "this ended job session's log is not there any more (other sessions' logs were read from this server); passing the session over");
            return true;
        }
        self.problems += 1;
        tracing::warn!(source_id = %source_id, job_id = %job.id, session_id = %session.id, error = %error, "cannot {what} the job session log; will retry next cycle");
        false
    }

    fn session_cursor(&mut self, job_id: &str, session_id: &str) -> Option<&mut SessionCursor> {
        self.state
            .jobs
            .get_mut(job_id)?
            .sessions
            .get_mut(session_id)
    }

    fn next_of(&self, job_id: &str, session_id: &str) -> u64 {
        self.state
            .jobs
            .get(job_id)
            .and_then(|j| j.sessions.get(session_id))
            .map_or(0, |c| c.next)
    }

    /// `/logs` (JSON). Returns whether the whole log was read.
    async fn ship_json_log(
        &mut self,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<bool, SourceError> {
        let endpoint = Endpoint::Logs {
            job: &job.id,
            session: &session.id,
        };
        let collection = match self.api.collection_with_repairs(endpoint).await {
            Ok(collection) => collection,
            Err(SourceError::Http {
                error: error @ HttpError::TooLarge { .. },
                ..
            }) => {
                // Read again next cycle, it would fail again: say what reads it.
                self.problems += 1;
                tracing::error!(source_id = %self.id, job_id = %job.id, session_id = %session.id, error = %error, "this job session's log is too large to read as JSON; set sources.{}.log_mode = \"download\", which streams it entry by entry", self.id);
                return Ok(false);
            }
            Err(SourceError::Http { error, .. }) => {
                return Ok(self.log_request_failed(job, session, &error, "read"));
            }
            Err(other) => return Err(other),
        };
        let replaced = &collection.replaced;
        let mut entries: Vec<(
            Result<RawLogEntry, String>,
            Box<serde_json::value::RawValue>,
        )> = collection
            .records
            .into_iter()
            .enumerate()
            .map(|(at, raw)| {
                let mut entry =
                    crate::map::vdc::decode_log_entry(raw.get()).map_err(|e| e.to_string());
                if let Ok(entry) = &mut entry
                    && replaced.contains(&at)
                {
                    entry.problems.push(crate::map::wire_checks::replaced_utf8(
                        crate::map::vdc::LOG_RECORD,
                    ));
                }
                (entry, raw)
            })
            .collect();
        // An unreadable entry (logged as the page was read) still holds its position, so
        // the entries after it keep theirs (`event.sequence`, and derived ids).
        for &gap in &collection.gaps {
            let placeholder = serde_json::value::to_raw_value(&()).expect("null serializes");
            let unreadable = Err(
                "not JSON even after repair (see the warning when its page was read)".to_string(),
            );
            entries.insert(gap.min(entries.len()), (unreadable, placeholder));
        }
        // Positions count oldest first. The list's order is the one remembered for the
        // session, else what its times tell (then remembered); newest first is turned round.
        let detected = detect_order(
            entries
                .iter()
                .map(|(e, _)| e.as_ref().ok().and_then(|e| e.creation_time)),
        );
        let Some(cursor) = self
            .state
            .jobs
            .get_mut(&job.id)
            .and_then(|j| j.sessions.get_mut(&session.id))
        else {
            return Ok(false);
        };
        let order = match (cursor.order, detected) {
            (Some(known), Some(now)) if known != now => {
                tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, ?known, ?now, "the job session log's times now suggest the other order; keeping the order found first");
                Some(known)
            }
            (known, now) => known.or(now),
        };
        cursor.order = order;
        if order == Some(LogOrder::NewestFirst) {
            entries.reverse();
        }
        // While the order is unknown (every entry at the same time), entries are recognised
        // by id (when every entry has a distinct one), so a grown list ships exactly its new
        // entries wherever they are; once the order is known, by position.
        let by_id = (order.is_none() || !cursor.shipped_ids.is_empty())
            && distinct_ids(&entries)
            && (entries.len() <= MAX_SHIPPED_IDS || !cursor.shipped_ids.is_empty());
        if !by_id && !cursor.shipped_ids.is_empty() {
            tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, "the job session log's entries no longer all have distinct ids; counting them by position");
            cursor.shipped_ids = Vec::new();
        }
        if order.is_none() && !by_id {
            // Positions in the list's own order (the samples' order, oldest first).
            if entries.len() > 1 {
                tracing::debug!(source_id = %self.id, job_id = %job.id, session_id = %session.id, "the job session log's order can't be told from its times and its entries have no distinct ids; taking it as oldest first");
            }
            if entries.len() > MAX_SHIPPED_IDS {
                cursor.order = Some(LogOrder::OldestFirst);
            }
        }
        let shipped: HashSet<String> = if by_id {
            cursor.shipped_ids.iter().cloned().collect()
        } else {
            HashSet::new()
        };
        let mut out = Progress::new(self.next_of(&job.id, &session.id));
        let running = self.hold_in_progress && session.is_running();
        let hold = running && !by_id;
        // Read by id, an entry in progress is neither shipped nor its id kept: the next read
        // finds it new again, and ships it once final. (Entries held so are not in `held`:
        // the list switches to positions only after a read that held none.)
        let mut held_by_id = 0usize;
        // Where new and already shipped entries sit in a list read by id: where a list grows
        // tells its order when its times can't.
        let mut growth = Growth::default();
        for (position, (entry, raw)) in entries.into_iter().enumerate() {
            let index = if by_id {
                let id = entry.as_ref().ok().and_then(|e| e.id.clone());
                match id {
                    Some(id) if !shipped.contains(&id) => {
                        growth.new.add(position);
                        if running
                            && entry.as_ref().is_ok_and(crate::map::vdc::in_progress)
                            && shipped.len() + out.ids.len() < MAX_SHIPPED_IDS
                        {
                            held_by_id += 1;
                            continue;
                        }
                        out.ids.push(id);
                        out.next
                    }
                    Some(_) => {
                        growth.old.add(position);
                        continue;
                    }
                    None => continue,
                }
            } else {
                let position = position as u64;
                let fate = self.hold_or_ship(
                    job,
                    session,
                    position,
                    out.from,
                    &entry,
                    raw.get(),
                    false,
                    hold,
                );
                match fate {
                    Fate::Ship => {}
                    Fate::ShipHeld => out.released.push(position),
                    Fate::Skip | Fate::Held => continue,
                }
                position
            };
            let degraded = entry
                .as_ref()
                .is_ok_and(|e| crate::map::vdc::is_degraded(job, session, e));
            let original = (self.keep_original || degraded).then(|| raw.get().into());
            self.collect(&mut out, job, session, index, entry, original);
            if out.pending >= BATCH {
                self.flush(&mut out, job, session, emitter, fetched_at)
                    .await?;
            }
        }
        self.flush(&mut out, job, session, emitter, fetched_at)
            .await?;
        let source_id = self.id.clone();
        if let Some(c) = self.session_cursor(&job.id, &session.id)
            && !c.shipped_ids.is_empty()
            && (c.order.is_some() || c.shipped_ids.len() > MAX_SHIPPED_IDS)
            && held_by_id == 0
        {
            // Known now (or too long to hold): every listed entry is shipped, so from here
            // on positions count them. Too long while the times can't tell the order: the
            // order is where this read found the new entries (before every shipped one:
            // newest first), else the samples' order, oldest first.
            if c.order.is_none() {
                let order = growth.order();
                if order.is_none() {
                    tracing::warn!(source_id = %source_id, job_id = %job.id, session_id = %session.id, ids = c.shipped_ids.len(), "the job session log has more entries at one time than the checkpoint keeps ids for, and neither their times nor where new ones appeared tell its order; counting them by position, oldest first");
                }
                c.order = Some(order.unwrap_or(LogOrder::OldestFirst));
            }
            c.shipped_ids = Vec::new();
        }
        Ok(true)
    }

    /// `/logs/download`, streamed; an interrupted body is requested again and resumed
    /// after what was emitted. Returns whether the whole log was read.
    async fn ship_download(
        &mut self,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<bool, SourceError> {
        let mut attempts = 0u32;
        loop {
            match self.download_once(job, session, emitter, fetched_at).await {
                Ok(()) => return Ok(true),
                Err(DownloadFailure::Request(SourceError::Http { error, .. })) => {
                    return Ok(self.log_request_failed(job, session, &error, "download"));
                }
                Err(DownloadFailure::Request(other)) => return Err(other),
                Err(DownloadFailure::Body { error, retry }) => {
                    attempts += 1;
                    if !retry || attempts > self.max_retries {
                        self.problems += 1;
                        tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, error = %error, "cannot read the job session log download; will retry next cycle");
                        return Ok(false);
                    }
                    tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, error = %error, attempts, "log download interrupted; downloading again and resuming after the last emitted entry");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                }
            }
        }
    }

    async fn download_once(
        &mut self,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), DownloadFailure> {
        let endpoint = Endpoint::Download {
            job: &job.id,
            session: &session.id,
        };
        let (url, response) = self
            .api
            .send(endpoint, &[], ACCEPT_DOWNLOAD, true)
            .await
            .map_err(DownloadFailure::Request)?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let encoding = header(reqwest::header::CONTENT_ENCODING);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        // A proxy's or portal's HTML page is not a log: shipping its lines would be wrong.
        if let Some(kind) = header(reqwest::header::CONTENT_TYPE)
            .filter(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
        {
            return Err(DownloadFailure::Body {
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{url} answered `{kind}`, not a log download; check sources.{}.url",
                        self.id
                    ),
                ),
                retry: false,
            });
        }
        // Name the URL: a body error alone ("error decoding response body") says nothing of
        // which download broke.
        let body_error = |error: std::io::Error| DownloadFailure::Body {
            retry: error.kind() != std::io::ErrorKind::InvalidData,
            error: std::io::Error::new(error.kind(), format!("{url}: {error}")),
        };
        let mut reader = DownloadReader::open(
            Box::pin(response.bytes_stream()),
            encoding.as_deref(),
            content_type.as_deref(),
        )
        .await
        .map_err(body_error)?;
        tracing::debug!(source_id = %self.id, url, encoding = ?reader.encoding(), "reading log download");
        let mut out = Progress::new(self.next_of(&job.id, &session.id));
        let mut index = 0u64;
        let running = session.is_running();
        let hold = running && self.hold_in_progress;
        while let Some(item) = reader.next().await.map_err(body_error)? {
            if item.unterminated && running {
                // A running session's log may be caught mid-write: what the body ended
                // inside is neither shipped nor counted; the next cycle reads it whole.
                tracing::debug!(source_id = %self.id, session_id = %session.id, position = index, "the download of a running session ends inside an entry; reading it again next cycle");
                break;
            }
            let position = index;
            index += 1;
            let fate = self.hold_or_ship(
                job,
                session,
                position,
                out.from,
                &item.entry,
                &item.raw,
                reader.is_text(),
                hold,
            );
            match fate {
                Fate::Ship => {}
                Fate::ShipHeld => out.released.push(position),
                Fate::Skip | Fate::Held => continue,
            }
            let degraded = item
                .entry
                .as_ref()
                .is_ok_and(|e| crate::map::vdc::is_degraded(job, session, e));
            let original = (self.keep_original || degraded).then(|| item.raw.as_str().into());
            self.collect(&mut out, job, session, position, item.entry, original);
            if out.pending >= BATCH {
                self.flush(&mut out, job, session, emitter, fetched_at)
                    .await
                    .map_err(DownloadFailure::Request)?;
            }
        }
        self.flush(&mut out, job, session, emitter, fetched_at)
            .await
            .map_err(DownloadFailure::Request)?;
        if reader.truncated_lines > 0 {
            tracing::warn!(source_id = %self.id, session_id = %session.id, lines = reader.truncated_lines, "log lines longer than the limit were cut");
        }
        if index < out.from {
            tracing::warn!(source_id = %self.id, session_id = %session.id, entries = index, shipped = out.from, "the session log is shorter than what was already shipped; nothing new");
        }
        Ok(())
    }

    /// Add one entry (at `index`) to the pending batch; a bad one is logged and skipped.
    fn collect(
        &self,
        out: &mut Progress,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        index: u64,
        entry: Result<RawLogEntry, String>,
        original: Option<Box<str>>,
    ) {
        match entry {
            Ok(entry) => {
                if crate::map::vdc::is_degraded(job, session, &entry) {
                    crate::metrics::global().record_degraded(&self.id);
                }
                out.records.push(Record::VdcLog {
                    job: job.clone(),
                    session: session.clone(),
                    entry,
                    index,
                    original,
                })
            }
            Err(problem) => {
                tracing::warn!(source_id = %self.id, job_id = %job.id, session_id = %session.id, index, error = %problem, "skipping malformed log entry");
                crate::metrics::global().record_skipped(&self.id);
            }
        }
        out.pending += 1;
        out.next = index + 1;
    }

    /// Emit what is pending, with a snapshot whose session cursor is after it.
    async fn flush(
        &mut self,
        out: &mut Progress,
        job: &Arc<RawJob>,
        session: &Arc<RawJobSession>,
        emitter: &Emitter,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        if out.pending == 0 {
            return Ok(());
        }
        let ids = std::mem::take(&mut out.ids);
        let released = std::mem::take(&mut out.released);
        if let Some(c) = self.session_cursor(&job.id, &session.id) {
            c.next = c.next.max(out.next);
            c.shipped_ids.extend(ids);
            // Held entries leave `held` with the snapshot of the batch that ships them: a
            // download that breaks off before then reads them as held again.
            c.held.retain(|h| !released.contains(&h.position));
        }
        out.pending = 0;
        emitter
            .emit(SourceBatch {
                records: std::mem::take(&mut out.records),
                checkpoint: Some(self.snapshot()),
                fetched_at,
            })
            .await
    }

    /// `check`: list the jobs, the newest session of the first one and a few of its log
    /// entries. Returns a one-line summary and, when the server has any, one sample record.
    pub async fn probe(&self) -> Result<(String, Option<Record>), SourceError> {
        let (url, raws) = self.api.collection(Endpoint::Jobs).await?;
        let jobs: Vec<RawJob> = raws
            .iter()
            .filter_map(|r| serde_json::from_str(r.get()).ok())
            .collect();
        let Some(job) = jobs.first() else {
            return Ok((
                format!("API key accepted by {url}; no backup jobs visible"),
                None,
            ));
        };
        let (_, raws) = self
            .api
            .collection(Endpoint::Sessions { job: &job.id })
            .await?;
        let newest = raws
            .iter()
            .filter_map(|r| serde_json::from_str::<RawJobSession>(r.get()).ok())
            .max_by_key(|s| s.creation_time);
        let Some(session) = newest else {
            return Ok((
                format!(
                    "API key accepted by {url}; {} backup job(s), no sessions of job {}",
                    jobs.len(),
                    job.id
                ),
                None,
            ));
        };
        let (_, raws) = self
            .api
            .collection(Endpoint::Logs {
                job: &job.id,
                session: &session.id,
            })
            .await?;
        let sample = raws
            .iter()
            .enumerate()
            .find_map(|(i, r)| Some((i, serde_json::from_str::<RawLogEntry>(r.get()).ok()?)))
            .map(|(index, entry)| Record::VdcLog {
                job: Arc::new(job.clone()),
                session: Arc::new(session.clone()),
                entry,
                index: index as u64,
                original: None,
            });
        Ok((
            format!(
                "API key accepted by {url}; {} backup job(s); newest session {} of job {}",
                jobs.len(),
                session.id,
                job.id
            ),
            sample,
        ))
    }

    /// A 404 on the job list means the base URL is wrong: say so.
    fn explain_404(&self, e: SourceError) -> SourceError {
        match e {
            SourceError::Http { source_id, error } if error.status() == Some(404) => {
                let message = format!(
                    "{error}; check sources.{source_id}.url: it must be the regional base URL of the VDC public API shown in the VDC portal next to the key (without /v1)"
                );
                SourceError::Http {
                    error: HttpError::Decode {
                        url: self.api.base().to_string(),
                        message,
                    },
                    source_id,
                }
            }
            other => other,
        }
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or(serde_json::Value::Null)
    }
}

/// Entries read from one session log and not yet emitted.
struct Progress {
    /// The cursor when reading started: positions below it are skipped.
    from: u64,
    /// The position after the last collected entry.
    next: u64,
    records: Vec<Record>,
    /// Entries collected since the last flush, bad ones included.
    pending: usize,
    /// Ids of the collected entries, when they are recognised by id.
    ids: Vec<String>,
    /// Positions of held entries collected (see [`Fate::ShipHeld`]).
    released: Vec<u64>,
}

impl Progress {
    fn new(from: u64) -> Progress {
        Progress {
            from,
            next: from,
            records: Vec::new(),
            pending: 0,
            ids: Vec::new(),
            released: Vec::new(),
        }
    }
}

/// Every entry of the list decoded and has an id, and no two the same.
fn distinct_ids(
    entries: &[(
        Result<RawLogEntry, String>,
        Box<serde_json::value::RawValue>,
    )],
) -> bool {
    let mut seen = HashSet::new();
    entries.iter().all(|(e, _)| {
        e.as_ref()
            .ok()
            .and_then(|e| e.id.as_deref())
            .is_some_and(|id| seen.insert(id))
    })
}

/// After a complete listing of a job's sessions: raise the floor to the oldest open session
/// (or the newest done one) and forget what can't matter any more.
fn advance_floor(
    cursor: &mut JobCursor,
    listed: &HashSet<String>,
    lookback: chrono::Duration,
    source_id: &str,
    job_id: &str,
) {
    cursor.sessions.retain(|id, c| {
        let keep = listed.contains(id);
        if !keep && !c.done {
            tracing::warn!(source_id, job_id, session_id = %id, "an unfinished job session is no longer listed by the server; forgetting it");
        }
        keep
    });
    let open = cursor
        .sessions
        .values()
        .filter(|c| !c.done)
        .filter_map(|c| c.creation_time)
        .min();
    let done = cursor
        .sessions
        .values()
        .filter(|c| c.done)
        .filter_map(|c| c.creation_time)
        .max();
    // Never past this host's clock: a session stamped in the future must not put the
    // sessions created after it below the floor (it stays in the cursor meanwhile).
    if let Some(candidate) = open.or(done).map(|t| t.min(Utc::now()))
        && candidate > cursor.floor
    {
        cursor.floor = candidate;
    }
    let keep_from = minus(cursor.floor, lookback);
    cursor
        .sessions
        .retain(|_, c| !c.done || c.creation_time.is_none_or(|t| t >= keep_from));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use url::Url;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cursor(created: &str, next: u64, done: bool) -> SessionCursor {
        SessionCursor {
            creation_time: Some(t(created)),
            next,
            done,
            order: None,
            shipped_ids: Vec::new(),
            missing: 0,
            held: Vec::new(),
        }
    }

    #[test]
    fn floor_stays_below_open_sessions_and_prunes_the_rest() {
        let mut job = JobCursor {
            floor: t("2025-03-01T00:00:00Z"),
            sessions: BTreeMap::new(),
        };
        job.sessions
            .insert("old".into(), cursor("2025-03-01T02:00:00Z", 5, true));
        job.sessions
            .insert("mid".into(), cursor("2025-03-02T02:00:00Z", 9, true));
        job.sessions
            .insert("open".into(), cursor("2025-03-03T02:00:00Z", 3, false));
        job.sessions
            .insert("gone".into(), cursor("2025-03-03T03:00:00Z", 1, false));
        let listed: HashSet<String> = ["old", "mid", "open"].map(String::from).into();
        advance_floor(&mut job, &listed, chrono::Duration::hours(1), "s", "j");
        assert_eq!(job.floor, t("2025-03-03T02:00:00Z"));
        assert_eq!(
            job.sessions.keys().collect::<Vec<_>>(),
            ["open"],
            "done sessions below the floor and unlisted ones are forgotten"
        );
        // The open session ends: the floor moves to it, it stays (equal to the floor).
        job.sessions.get_mut("open").unwrap().done = true;
        advance_floor(&mut job, &listed, chrono::Duration::hours(1), "s", "j");
        assert_eq!(job.floor, t("2025-03-03T02:00:00Z"));
        assert!(job.sessions.contains_key("open"));
        // A done session in the future: the floor stops at the clock, the session stays
        // known (not shipped again) and a session created after the clock corrected
        // itself is still above the floor.
        job.sessions
            .insert("f".into(), cursor("9999-12-31T23:59:59Z", 3, true));
        let listed_f: HashSet<String> = job.sessions.keys().cloned().collect();
        let before = Utc::now();
        advance_floor(&mut job, &listed_f, chrono::Duration::hours(1), "s", "j");
        assert!(
            job.floor >= before && job.floor <= Utc::now(),
            "{}",
            job.floor
        );
        assert!(job.sessions.contains_key("f"));
        job.sessions.remove("f");
        job.floor = t("2025-03-03T02:00:00Z");
        // The floor never goes down.
        job.sessions.clear();
        advance_floor(&mut job, &listed, chrono::Duration::hours(1), "s", "j");
        assert_eq!(job.floor, t("2025-03-03T02:00:00Z"));
    }

    #[test]
    fn state_round_trips() {
        let mut st = VdcState {
            start: t("2025-03-01T00:00:00Z"),
            jobs: BTreeMap::new(),
            logs_read: true,
        };
        let mut job = JobCursor {
            floor: st.start,
            sessions: BTreeMap::new(),
        };
        job.sessions
            .insert("s".into(), cursor("2025-03-02T00:00:00Z", 7, false));
        st.jobs.insert("j".into(), job);
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(serde_json::from_value::<VdcState>(v).unwrap(), st);
        assert!(serde_json::from_value::<VdcState>(serde_json::json!({"horizon": 1})).is_err());
    }

    /// A VDC that differs from the samples everywhere it may: only `Reports` paths, a
    /// page envelope, a log listed newest first with a record that doesn't parse.
    #[tokio::test]
    async fn odd_server_shapes_are_tolerated_and_bad_records_skipped_alone() {
        use axum::{Json, Router, routing::get};
        use serde_json::json;
        let app = Router::new()
            .route(
                "/v1/Reports/backup-jobs",
                get(|| async { Json(json!([{"id": "j1", "name": "J"}, {"name": "no id"}])) }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions",
                get(|| async {
                    Json(json!({"totalCount": 2, "items": [
                        {"id": "s2", "creationTime": "2025-03-03T05:00:00Z", "status": "Running"},
                        {"id": "s1", "creationTime": "2025-03-03T02:00:00Z",
                         "endTime": "2025-03-03T03:00:00Z", "status": "Warning"},
                    ]}))
                }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions/s1/logs",
                // A record that is JSON but not an entry, and one that is not JSON at all.
                get(|| async {
                    (
                        [("content-type", "application/json")],
                        r#"[{"id": "l3", "title": "[Success] Job finished", "creationTime": "2025-03-03T02:59:00Z"},
                            42,
                            [Success] not JSON,
                            {"id": "l1", "title": "[Success] Job started", "creationTime": "2025-03-03T02:00:01Z"}]"#,
                    )
                }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions/s2/logs",
                get(|| async { Json(json!({"results": [{"id": "m1", "title": "x"}]})) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let cfg = parse("api_key = \"k\"\nstart_time = \"2025-01-01T00:00:00Z\"\nmax_retries = 0")
            .unwrap();
        let src = VdcSource {
            url: Url::parse(&format!("http://{addr}")).unwrap(),
            ..VdcSource::resolve("vdc_t", &cfg).unwrap()
        };
        let mut poller = VdcPoller::new(&src, None).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let emitter = Emitter::new(tx);
        poller.cycle(&emitter).await.unwrap();
        let mut shipped = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            for r in batch.records {
                if let Record::VdcLog {
                    session,
                    entry,
                    index,
                    ..
                } = r
                {
                    shipped.push((session.id.clone(), index, entry.id.unwrap_or_default()));
                }
            }
        }
        assert_eq!(
            shipped,
            [
                ("s1".to_string(), 0, "l1".to_string()),
                ("s1".to_string(), 3, "l3".to_string()),
                ("s2".to_string(), 0, "m1".to_string()),
            ],
            "oldest first; the bad records are skipped but keep their positions"
        );
        let job = &poller.state().jobs["j1"];
        assert_eq!(
            job.floor,
            t("2025-03-03T05:00:00Z"),
            "floor at the open session"
        );
        assert!(
            !job.sessions.contains_key("s1"),
            "done and more than `lookback` below the floor: forgotten"
        );
        let open = &job.sessions["s2"];
        assert!(!open.done && open.next == 1, "a running session stays open");
        // Next cycle: nothing new.
        poller.cycle(&emitter).await.unwrap();
        while let Ok(batch) = rx.try_recv() {
            assert!(batch.records.is_empty());
        }
        server.abort();
    }

    #[test]
    fn log_order_is_what_most_steps_say() {
        let at = |s: &str| Some(t(s));
        let a = at("2025-03-03T02:00:00Z");
        let b = at("2025-03-03T02:00:01Z");
        let c = at("2025-03-03T02:00:02Z");
        // One entry written with a +02:00 offset is earlier in UTC than all the others.
        let odd = at("2025-03-03T02:00:03+02:00");
        let d = at("2025-03-03T02:00:04Z");
        assert_eq!(detect_order([a, b, c]), Some(LogOrder::OldestFirst));
        assert_eq!(detect_order([c, b, a]), Some(LogOrder::NewestFirst));
        assert_eq!(
            detect_order([a, None, b, c, odd, d]),
            Some(LogOrder::OldestFirst)
        );
        assert_eq!(detect_order([a, b, c, odd]), Some(LogOrder::OldestFirst));
        assert_eq!(detect_order([a, a, a]), None, "all at the same time");
        assert_eq!(detect_order([a, None]), None);
        assert_eq!(detect_order([a, c, b]), None, "as many steps up as down");
    }

    /// `app` served on a loopback port.
    async fn serve(app: axum::Router) -> (Url, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (Url::parse(&format!("http://{addr}")).unwrap(), server)
    }

    /// A VDC source at `url` reading from 2025 on, with `extra` config keys.
    fn source_at(url: Url, extra: &str) -> VdcSource {
        let cfg = parse(&format!(
            "api_key = \"k\"\nstart_time = \"2025-01-01T00:00:00Z\"\n{extra}"
        ))
        .unwrap();
        VdcSource {
            url,
            ..VdcSource::resolve("vdc_t", &cfg).unwrap()
        }
    }

    /// A VDC with one job and one session whose `/logs` answer is `logs(phase)` (and
    /// `/logs/download` the text of it, when it is a JSON string); the session runs in
    /// the first `running` phases and has ended from then on.
    async fn phased_server(
        phase: Arc<std::sync::atomic::AtomicUsize>,
        logs: fn(usize) -> serde_json::Value,
        running: usize,
    ) -> (Url, tokio::task::JoinHandle<()>) {
        use axum::{Json, Router, routing::get};
        use serde_json::json;
        use std::sync::atomic::Ordering::SeqCst;
        let p1 = phase.clone();
        let p2 = phase.clone();
        let app = Router::new()
            .route(
                "/v1/reports/backup-jobs",
                get(|| async { Json(json!([{"id": "j1", "name": "J"}])) }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions",
                get(move || async move {
                    Json(if p1.load(SeqCst) < running {
                        json!([{"id": "s1", "creationTime": "2025-03-03T02:00:00Z", "status": "Running"}])
                    } else {
                        json!([{"id": "s1", "creationTime": "2025-03-03T02:00:00Z",
                                "endTime": "2025-03-03T03:00:00Z", "status": "Success"}])
                    })
                }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions/s1/logs",
                get(move || async move { Json(logs(phase.load(SeqCst))) }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions/s1/logs/download",
                get(move || async move {
                    logs(p2.load(SeqCst)).as_str().unwrap_or_default().to_string()
                }),
            );
        serve(app).await
    }

    /// One `--once` run per phase, each a new poller resuming from the previous one's
    /// state (a restart): the (index, entry id) pairs each run shipped.
    async fn runs_per_phase(
        logs: fn(usize) -> serde_json::Value,
        phases: usize,
    ) -> (Vec<Vec<(u64, String)>>, VdcState) {
        runs_per_phase_with(logs, phases, "").await
    }

    async fn runs_per_phase_with(
        logs: fn(usize) -> serde_json::Value,
        phases: usize,
        extra: &str,
    ) -> (Vec<Vec<(u64, String)>>, VdcState) {
        runs_while_running(logs, phases, 1, extra).await
    }

    async fn runs_while_running(
        logs: fn(usize) -> serde_json::Value,
        phases: usize,
        running: usize,
        extra: &str,
    ) -> (Vec<Vec<(u64, String)>>, VdcState) {
        let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (url, server) = phased_server(phase.clone(), logs, running).await;
        let src = source_at(url, &format!("max_retries = 0\n{extra}"));
        let mut stored = None;
        let mut runs = Vec::new();
        for p in 0..phases {
            phase.store(p, std::sync::atomic::Ordering::SeqCst);
            let mut poller = VdcPoller::new(&src, stored.take()).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            poller.cycle(&Emitter::new(tx)).await.unwrap();
            let mut shipped = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                for r in batch.records {
                    if let Record::VdcLog { entry, index, .. } = r {
                        let id = entry.id.or(entry.title).unwrap_or_default();
                        shipped.push((index, id));
                    }
                }
            }
            runs.push(shipped);
            stored = Some(serde_json::to_value(poller.state()).unwrap());
        }
        server.abort();
        let state = serde_json::from_value(stored.unwrap()).unwrap();
        (runs, state)
    }

    fn shipped_ids(runs: &[Vec<(u64, String)>]) -> Vec<Vec<&str>> {
        runs.iter()
            .map(|r| r.iter().map(|(_, id)| id.as_str()).collect())
            .collect()
    }

    #[tokio::test]
    async fn an_ended_sessions_log_that_stays_404_is_passed_over_after_three_cycles() {
        use axum::{Json, Router, http::StatusCode, routing::get};
        use serde_json::json;
        // s1's log is gone (404); s2's log reads. Also without s2, on a server that never
        // served a log, s1 is never passed over (the endpoint may be what is missing).
        for with_s2 in [true, false] {
            let app = Router::new()
                .route(
                    "/v1/Reports/backup-jobs",
                    get(|| async { Json(json!([{"id": "j1", "name": "J"}])) }),
                )
                .route(
                    "/v1/Reports/backup-jobs/j1/job-sessions",
                    get(move || async move {
                        let mut sessions =
                            vec![json!({"id": "s1", "creationTime": "2025-03-03T02:00:00Z",
                             "endTime": "2025-03-03T03:00:00Z", "status": "Success"})];
                        if with_s2 {
                            sessions
                                .push(json!({"id": "s2", "creationTime": "2025-03-03T04:00:00Z",
                             "endTime": "2025-03-03T05:00:00Z", "status": "Success"}));
                        }
                        Json(json!(sessions))
                    }),
                )
                .route(
                    "/v1/Reports/backup-jobs/j1/job-sessions/s1/logs",
                    get(|| async { (StatusCode::NOT_FOUND, "Session not found") }),
                )
                .route(
                    "/v1/reports/backup-jobs/j1/job-sessions/s1/logs",
                    get(|| async { (StatusCode::NOT_FOUND, "Session not found") }),
                )
                .route(
                    "/v1/Reports/backup-jobs/j1/job-sessions/s2/logs",
                    get(|| async {
                        Json(json!([{"id": "m1", "title": "[Success] Job finished"}]))
                    }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let cfg =
                parse("api_key = \"k\"\nstart_time = \"2025-01-01T00:00:00Z\"\nmax_retries = 0")
                    .unwrap();
            let src = VdcSource {
                url: Url::parse(&format!("http://{addr}")).unwrap(),
                ..VdcSource::resolve("vdc_t", &cfg).unwrap()
            };
            let mut stored = None;
            let mut outcomes = Vec::new();
            for _ in 0..4 {
                // One `--once` run each: a new poller from the stored checkpoint.
                let mut poller = VdcPoller::new(&src, stored.take()).unwrap();
                let (tx, _rx) = tokio::sync::mpsc::channel(64);
                let result = poller.cycle(&Emitter::new(tx)).await;
                outcomes.push(matches!(result, Err(SourceError::Incomplete { .. })));
                stored = Some(serde_json::to_value(poller.state()).unwrap());
            }
            let expected = if with_s2 {
                [true, true, false, false]
            } else {
                [true; 4]
            };
            assert_eq!(
                outcomes, expected,
                "runs that ended incomplete (s2: {with_s2})"
            );
            server.abort();
        }
    }

    #[tokio::test]
    async fn a_newest_first_log_with_equal_times_ships_each_entry_once() {
        // Newest first, every entry in the same second: the order can't be told by time.
        let (runs, state) = runs_per_phase(
            |phase| {
                let n = if phase == 0 { 2 } else { 3 };
                let list: Vec<_> = (0..n)
                    .rev()
                    .map(|i| serde_json::json!({"id": format!("e{i}"), "title": format!("[Success] entry {i}"), "creationTime": "2025-03-03T02:00:00Z"}))
                    .collect();
                serde_json::Value::Array(list)
            },
            3,
        )
        .await;
        assert_eq!(
            shipped_ids(&runs),
            [vec!["e1", "e0"], vec!["e2"], vec![]],
            "nothing repeated, nothing lost"
        );
        assert_eq!(runs[1][0].0, 2, "positions go on counting");
        let c = &state.jobs["j1"].sessions;
        assert!(c.values().all(|c| c.shipped_ids.is_empty()));
    }

    /// More entries at one time than the checkpoint keeps ids for, newest first, in a
    /// session still running: where the new entries appeared tells the order, so the later
    /// ones are counted from the right end (they were lost, the oldest sent again).
    #[tokio::test]
    async fn a_long_newest_first_log_at_one_time_keeps_its_order_past_the_id_limit() {
        let sizes = [5, 600, 1100, 1150];
        let (runs, _) = runs_while_running(
            |phase| {
                let n = [5, 600, 1100, 1150][phase];
                let list: Vec<_> = (0..n)
                    .rev()
                    .map(|i| serde_json::json!({"id": format!("e{i}"), "title": "[Success] x", "creationTime": "2025-03-03T02:00:00Z"}))
                    .collect();
                serde_json::Value::Array(list)
            },
            sizes.len(),
            3,
            "",
        )
        .await;
        let mut seen = HashSet::new();
        for (phase, run) in runs.iter().enumerate() {
            let before = if phase == 0 { 0 } else { sizes[phase - 1] };
            assert_eq!(run.len(), sizes[phase] - before, "phase {phase}");
            for (_, id) in run {
                assert!(seen.insert(id.clone()), "{id} shipped twice");
                let n: usize = id[1..].parse().unwrap();
                assert!((before..sizes[phase]).contains(&n), "phase {phase}: {id}");
            }
        }
        assert_eq!(seen.len(), 1150);
    }

    #[tokio::test]
    async fn the_order_found_once_is_kept_when_the_times_no_longer_tell() {
        // Phase 0: the times say newest first; phase 1: two more entries at the same time as
        // the newest, so the whole list's times alone would say nothing.
        let (runs, state) = runs_per_phase(
            |phase| {
                let mut list = vec![
                    serde_json::json!({"id": "b", "title": "x", "creationTime": "2025-03-03T02:00:05Z"}),
                    serde_json::json!({"id": "a", "title": "x", "creationTime": "2025-03-03T02:00:00Z"}),
                ];
                if phase > 0 {
                    for id in ["c", "d"] {
                        list.insert(0, serde_json::json!({"id": id, "title": "x", "creationTime": "2025-03-03T02:00:05Z"}));
                    }
                    list.insert(0, serde_json::json!({"id": "e", "title": "x", "creationTime": "2025-03-03T01:59:00Z"}));
                }
                serde_json::Value::Array(list)
            },
            2,
        )
        .await;
        assert_eq!(shipped_ids(&runs), [vec!["a", "b"], vec!["c", "d", "e"]]);
        assert!(state.jobs["j1"].sessions.is_empty() || state.jobs["j1"].sessions["s1"].done);
    }

    #[tokio::test]
    async fn a_running_sessions_download_cut_mid_line_ships_the_whole_line_later() {
        const BODY: &str = "2025-03-03T02:00:00Z\t\t[Success] Job started\n\
            2025-03-03T02:00:01Z\t\t[Success] Processing mailbox: u1@contoso.com\n\
            2025-03-03T02:00:02Z\t\t[Success] Processing mailbox: u3@contoso.com\n";
        let (runs, _) = runs_per_phase_with(
            |phase| {
                // While running, the body ends inside the last line ("u3@").
                let body = if phase == 0 {
                    &BODY[..BODY.find("u3@").unwrap() + 3]
                } else {
                    // Ended: a last line without a line end ships.
                    BODY.trim_end()
                };
                serde_json::Value::String(body.to_string())
            },
            2,
            "log_mode = \"download\"",
        )
        .await;
        assert_eq!(
            runs,
            [
                vec![
                    (0, "[Success] Job started".to_string()),
                    (1, "[Success] Processing mailbox: u1@contoso.com".into())
                ],
                vec![(
                    2,
                    "[Success] Processing mailbox: u3@contoso.com".to_string()
                )]
            ]
        );
    }

    /// Veeam completes a log entry in place (`[Running] …` → `[Warning] …`): it ships once,
    /// with its final status, and the entries after it are not held up. Both log modes.
    #[tokio::test]
    async fn an_entry_in_progress_ships_once_with_its_final_status() {
        fn titles(phase: usize) -> Vec<&'static str> {
            let mut t = vec![
                "[Success] Job started",
                if phase < 2 {
                    "[Running] Processing mailbox: a@contoso.com"
                } else {
                    "[Warning] Processing mailbox: a@contoso.com"
                },
                "[Success] Processing mailbox: b@contoso.com",
            ];
            if phase >= 1 {
                t.push(if phase < 2 {
                    "[Running] Processing mailbox: c@contoso.com"
                } else {
                    "[Success] Processing mailbox: c@contoso.com"
                });
            }
            if phase >= 2 {
                t.push("[Success] Job finished");
            }
            t
        }
        fn text(phase: usize) -> serde_json::Value {
            let body: String = titles(phase)
                .iter()
                .enumerate()
                .map(|(i, t)| format!("2025-03-03T02:00:0{i}Z\t\t{t}\n"))
                .collect();
            serde_json::Value::String(body)
        }
        fn json(phase: usize) -> serde_json::Value {
            titles(phase)
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    serde_json::json!({"title": t, "creationTime": format!("2025-03-03T02:00:0{i}Z")})
                })
                .collect()
        }
        let want = [
            vec![
                (0, "[Success] Job started".to_string()),
                (2, "[Success] Processing mailbox: b@contoso.com".into()),
            ],
            vec![],
            vec![
                (1, "[Warning] Processing mailbox: a@contoso.com".to_string()),
                (3, "[Success] Processing mailbox: c@contoso.com".into()),
                (4, "[Success] Job finished".into()),
            ],
        ];
        let (runs, state) = runs_while_running(
            text,
            3,
            2,
            "log_mode = \"download\"\nhold_in_progress = true",
        )
        .await;
        assert_eq!(runs, want, "download");
        let (runs, _) = runs_while_running(json, 3, 2, "hold_in_progress = true").await;
        assert_eq!(runs, want, "json");
        // Nothing stays held once the session is done.
        assert!(nothing_held(&state));
    }

    /// No session cursor of `state` holds an entry back.
    fn nothing_held(state: &VdcState) -> bool {
        state
            .jobs
            .values()
            .flat_map(|j| j.sessions.values())
            .all(|c| c.held.is_empty())
    }

    /// An entry in progress too long to carry in the checkpoint ships as read, at once.
    #[tokio::test]
    async fn an_entry_in_progress_too_long_to_hold_ships_as_read() {
        fn json(_: usize) -> serde_json::Value {
            let long = format!(
                "[Running] Processing mailbox: {}@contoso.com",
                "a".repeat(70_000)
            );
            serde_json::json!([
                {"title": "[Success] Job started", "creationTime": "2025-03-03T02:00:00Z"},
                {"title": long, "creationTime": "2025-03-03T02:00:01Z"},
            ])
        }
        let (runs, state) = runs_while_running(json, 1, 1, "hold_in_progress = true").await;
        assert_eq!(runs[0].len(), 2, "both shipped at once");
        assert!(nothing_held(&state));
    }

    /// The same in a `/logs` list read by id (its first read had one entry, so its order
    /// could not be told): an entry in progress is not shipped until it is final, and the
    /// list turns to positions only after a read that held none.
    #[tokio::test]
    async fn an_entry_in_progress_in_a_list_read_by_id_ships_once_final() {
        fn logs(phase: usize) -> serde_json::Value {
            let mut list = vec![("e0", "[Success] Job started")];
            if phase >= 1 {
                list.push((
                    "e1",
                    if phase < 2 {
                        "[Running] Processing mailbox: a@contoso.com"
                    } else {
                        "[Warning] Processing mailbox: a@contoso.com"
                    },
                ));
                list.push(("e2", "[Success] Processing mailbox: b@contoso.com"));
            }
            if phase >= 2 {
                list.push((
                    "e3",
                    if phase < 3 {
                        "[Running] Processing mailbox: c@contoso.com"
                    } else {
                        "[Success] Processing mailbox: c@contoso.com"
                    },
                ));
            }
            if phase >= 3 {
                list.push(("e4", "[Success] Job finished"));
            }
            list.iter()
                .enumerate()
                .map(|(i, (id, t))| {
                    serde_json::json!({"id": id, "title": t, "creationTime": format!("2025-03-03T02:00:0{i}Z")})
                })
                .collect()
        }
        let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (url, server) = phased_server(phase.clone(), logs, 3).await;
        let src = source_at(url, "max_retries = 0\nhold_in_progress = true");
        let mut stored = None;
        let mut runs = Vec::new();
        for p in 0..5 {
            phase.store(p.min(3), std::sync::atomic::Ordering::SeqCst);
            let mut poller = VdcPoller::new(&src, stored.take()).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            poller.cycle(&Emitter::new(tx)).await.unwrap();
            let mut shipped = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                for r in batch.records {
                    if let Record::VdcLog { entry, .. } = r {
                        shipped.push(entry.title.unwrap_or_default());
                    }
                }
            }
            runs.push(shipped);
            stored = Some(serde_json::to_value(poller.state()).unwrap());
        }
        server.abort();
        assert_eq!(
            runs,
            [
                vec!["[Success] Job started"],
                vec!["[Success] Processing mailbox: b@contoso.com"],
                vec!["[Warning] Processing mailbox: a@contoso.com"],
                vec![
                    "[Success] Processing mailbox: c@contoso.com",
                    "[Success] Job finished"
                ],
                vec![],
            ]
        );
    }

    /// A download that breaks off right after a held entry that is now final (before the
    /// batch with it went out) is downloaded again: the entry still ships, once.
    #[tokio::test]
    async fn a_held_entry_survives_a_download_that_breaks_off() {
        use axum::{Json, Router, body::Body, routing::get};
        use serde_json::json;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        const RUNNING: &str = "2025-03-03T02:00:00Z\t\t[Success] Job started\n\
            2025-03-03T02:00:01Z\t\t[Running] Processing mailbox: a@contoso.com\n\
            2025-03-03T02:00:02Z\t\t[Success] Processing mailbox: b@contoso.com\n";
        const DONE: &str = "2025-03-03T02:00:00Z\t\t[Success] Job started\n\
            2025-03-03T02:00:01Z\t\t[Warning] Processing mailbox: a@contoso.com\n\
            2025-03-03T02:00:02Z\t\t[Success] Processing mailbox: b@contoso.com\n\
            2025-03-03T02:00:03Z\t\t[Success] Job finished\n";
        let downloads = Arc::new(AtomicUsize::new(0));
        let seen = downloads.clone();
        let phase = Arc::new(AtomicUsize::new(0));
        let (p1, p2) = (phase.clone(), phase.clone());
        let app = Router::new()
            .route(
                "/v1/reports/backup-jobs",
                get(|| async { Json(json!([{"id": "j1", "name": "J"}])) }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions",
                get(move || async move {
                    Json(if p1.load(SeqCst) == 0 {
                        json!([{"id": "s1", "creationTime": "2025-03-03T02:00:00Z", "status": "Running"}])
                    } else {
                        json!([{"id": "s1", "creationTime": "2025-03-03T02:00:00Z",
                                "endTime": "2025-03-03T03:00:00Z", "status": "Warning"}])
                    })
                }),
            )
            .route(
                "/v1/Reports/backup-jobs/j1/job-sessions/s1/logs/download",
                get(move || async move {
                    if p2.load(SeqCst) == 0 {
                        return Body::from(RUNNING);
                    }
                    // The first download of the ended log breaks off after entry 1.
                    if seen.fetch_add(1, SeqCst) == 0 {
                        let cut = DONE.find("b@").unwrap();
                        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                            Ok(bytes::Bytes::from(&DONE[..cut])),
                            Err(std::io::Error::other("connection reset")),
                        ];
                        // The error a moment later, once the client has read the first part.
                        let stream = futures::StreamExt::then(futures::stream::iter(chunks), |c| async move {
                            if c.is_err() {
                                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            }
                            c
                        });
                        return Body::from_stream(stream);
                    }
                    Body::from(DONE)
                }),
            );
        let (url, server) = serve(app).await;
        let src = source_at(
            url,
            "max_retries = 2\nlog_mode = \"download\"\nhold_in_progress = true",
        );
        let mut stored = None;
        let mut runs = Vec::new();
        for p in 0..2 {
            phase.store(p, SeqCst);
            let mut poller = VdcPoller::new(&src, stored.take()).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            poller.cycle(&Emitter::new(tx)).await.unwrap();
            let mut shipped = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                for r in batch.records {
                    if let Record::VdcLog { entry, index, .. } = r {
                        shipped.push((index, entry.title.unwrap_or_default()));
                    }
                }
            }
            runs.push(shipped);
            stored = Some(serde_json::to_value(poller.state()).unwrap());
        }
        server.abort();
        assert!(
            downloads.load(SeqCst) >= 2,
            "the broken download was asked for again"
        );
        assert_eq!(
            runs,
            [
                vec![
                    (0, "[Success] Job started".to_string()),
                    (2, "[Success] Processing mailbox: b@contoso.com".into())
                ],
                vec![
                    (1, "[Warning] Processing mailbox: a@contoso.com".to_string()),
                    (3, "[Success] Job finished".into())
                ],
            ]
        );
    }

    #[tokio::test]
    async fn one_entry_with_an_odd_offset_does_not_turn_an_oldest_first_log_round() {
        let (runs, _) = runs_per_phase(
            |phase| {
                let mut list = vec![
                    serde_json::json!({"id": "o1", "title": "x", "creationTime": "2025-03-03T02:00:00Z"}),
                    serde_json::json!({"id": "o2", "title": "x", "creationTime": "2025-03-03T02:00:01Z"}),
                    serde_json::json!({"id": "o3", "title": "x", "creationTime": "2025-03-03T02:00:02Z"}),
                    serde_json::json!({"id": "o4", "title": "x", "creationTime": "2025-03-03T02:00:03+02:00"}),
                ];
                if phase > 0 {
                    list.push(serde_json::json!({"id": "o5", "title": "x", "creationTime": "0001-01-01T00:00:00"}));
                }
                serde_json::Value::Array(list)
            },
            2,
        )
        .await;
        assert_eq!(
            runs,
            [
                vec![
                    (0, "o1".to_string()),
                    (1, "o2".into()),
                    (2, "o3".into()),
                    (3, "o4".into())
                ],
                vec![(4, "o5".to_string())]
            ]
        );
    }

    fn parse(extra: &str) -> Result<VdcSourceConfig, String> {
        let text = format!("url = \"https://vdc.example.net\"\n{extra}");
        let cfg: VdcSourceConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        cfg.validate("sources.vdc_t").map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = parse("api_key = \"k-SECRET\"").unwrap();
        assert_eq!(c.api_key_header, "x-api-key");
        assert_eq!(c.log_mode, LogMode::Json);
        assert_eq!(c.poll_interval, Duration::from_secs(300));
        assert!(!format!("{c:?}").contains("k-SECRET"));
        let c =
            parse("api_key = \"k\"\nlog_mode = \"download\"\napi_key_header = \"Authorization\"")
                .unwrap();
        assert_eq!(c.log_mode, LogMode::Download);
        let cases = [
            ("", "sources.vdc_t.api_key"),
            ("api_key = \"k\"\napi_key_file = \"/x\"", "not both"),
            ("api_key = \"  \"", "is empty"),
            (
                "api_key = \"k\"\napi_key_header = \"x api key\"",
                "api_key_header",
            ),
            ("api_key = \"k\"\npoll_interval = \"0s\"", "poll_interval"),
            ("api_key = \"k\"\nlog_mode = \"csv\"", "csv"),
        ];
        for (extra, want) in cases {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let e = parse("api_key = \"k\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }").unwrap_err();
        assert!(e.contains("sources.vdc_t.tls.ca_file"), "{e}");
    }

    #[test]
    fn key_file_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "from-file\n").unwrap();
        let cfg = parse(&format!("api_key_file = {:?}", f.display().to_string())).unwrap();
        let src = VdcSource::resolve("vdc_t", &cfg).unwrap();
        assert_eq!(src.api_key.expose(), "from-file");
        let missing = VdcSourceConfig {
            api_key_file: Some(Path::new("/nonexistent/key").to_path_buf()),
            ..cfg
        };
        let e = VdcSource::resolve("vdc_t", &missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.vdc_t.api_key_file"), "{e}");
    }
}
