//! Veeam Data Cloud (VDC) backup jobs, job sessions and session log entries → [`Event`].
//!
//! Owns: the wire types of the VDC public API records, decoded leniently (only a job's and a
//! session's `id` are essential; a log entry is placed by its position; a value that
//! doesn't fit is left out or kept as text and reported, see
//! [`wire_checks`](super::wire_checks)), the grammar of log titles (`"[Success] Processing mailbox: adams@contoso.com"`,
//! `"[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)"`) and the pure
//! mapping to the output schema. Must not: do I/O, read the clock, log.
//!
//! Title grammar (case-insensitive, any spacing around the tokens):
//! ```text
//! title       = [ "[" status "]" ] text
//! text        = "Job" ("started" | "finished" | "completed" | "stopped" | "ended" | "failed" ...) ...
//!             | "Processing" object-type ":" object-name     (object-type: 1–3 words of letters)
//!             | "Transferred" [":"] size [ "(" N "items" ")" ] [ "at" size "/s" ] [ "(" N "items/s" ")" ]
//!             | anything else                                (shipped as is, action "log-entry")
//! size        = number unit        number: 168.8 | 1,234.5 ; unit: B KB MB GB TB PB (KiB… too)
//! ```
//! Sizes are **1024-based** (1 KB = 1024 B), as Veeam's consoles compute them; results are
//! rounded to whole bytes. Whatever doesn't parse is left out; the title is always kept in
//! `message`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::wire_checks::{
    Fields, Problem, Unusable, WireTime, excerpt, read_record, read_time_text,
};
use super::{MapContext, degraded, nanos_between, non_empty, push_unique};
use crate::event::{
    Ecs, Event, EventMeta, Job, JobSession, Labels, Log, MODULE, Observer, Related, Text, VENDOR,
    Veeam, dataset, outcome,
};

/// `observer.product` for every VDC event.
pub const PRODUCT: &str = "Veeam Data Cloud";
/// `event.provider` for every VDC event.
pub const PROVIDER: &str = "vdc";
/// `event.category` of every VDC log event: a backup job run is a (server-side) process.
pub const CATEGORY: &str = "process";

/// Namespace of the UUIDv5 `event.id` of log entries that carry no id of their own (lines of
/// `/logs/download`): `uuid_v5(NAMESPACE, "<job session id>\n<line index>\n<title>")`.
pub const LOG_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f0a_3c1e_9b47_5d2a_8e61_0c7d_4b3a_9f15);

/// `event.action` values this mapping emits.
pub mod action {
    pub const JOB_STARTED: &str = "job-started";
    pub const JOB_FINISHED: &str = "job-finished";
    pub const OBJECT_PROCESSED: &str = "object-processed";
    pub const DATA_TRANSFERRED: &str = "data-transferred";
    pub const LOG_ENTRY: &str = "log-entry";
    /// Every value above, for schema checks.
    pub const ALL: [&str; 5] = [
        JOB_STARTED,
        JOB_FINISHED,
        OBJECT_PROCESSED,
        DATA_TRANSFERRED,
        LOG_ENTRY,
    ];
}

// ---------------------------------------------------------------------------------------
// Wire types

/// Problem prefixes of the VDC records.
pub const JOB_RECORD: &str = "job";
pub const SESSION_RECORD: &str = "jobSession";
pub const LOG_RECORD: &str = "logEntry";

/// `GET /v1/reports/backup-jobs` item. Only `id` is essential.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireJob")]
pub struct RawJob {
    pub id: String,
    pub name: Option<String>,
    /// Seen: `SelectedItems`.
    pub backup_type: Option<String>,
    /// Seen: `Backup`.
    pub job_type: Option<String>,
    /// Odd values found while decoding (empty for a clean record).
    pub problems: Vec<Problem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireJob {
    id: Option<Value>,
    name: Option<Value>,
    backup_type: Option<Value>,
    job_type: Option<Value>,
}

impl TryFrom<WireJob> for RawJob {
    type Error = Unusable;

    fn try_from(w: WireJob) -> Result<Self, Unusable> {
        RawJob::from_wire(w, Fields::new(JOB_RECORD))
    }
}

impl RawJob {
    fn from_wire(w: WireJob, mut f: Fields) -> Result<Self, Unusable> {
        Ok(RawJob {
            id: essential_id(&mut f, w.id)?,
            name: text(&mut f, "name", w.name),
            backup_type: text(&mut f, "backupType", w.backup_type),
            job_type: text(&mut f, "jobType", w.job_type),
            problems: f.into_problems(),
        })
    }
}

/// `GET /v1/Reports/backup-jobs/{id}/job-sessions` item (newest first). Only `id` is
/// essential.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireJobSession")]
pub struct RawJobSession {
    pub id: String,
    pub creation_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub progress: Option<i64>,
    /// Seen: `Success`; modelled on VB365's `Success | Warning | Failed | Running | Stopped`.
    pub status: Option<String>,
    pub processed_objects: Option<i64>,
    pub job_type: Option<String>,
    /// Odd values found while decoding (empty for a clean record).
    pub problems: Vec<Problem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireJobSession {
    id: Option<Value>,
    creation_time: Option<Value>,
    end_time: Option<Value>,
    progress: Option<Value>,
    status: Option<Value>,
    processed_objects: Option<Value>,
    job_type: Option<Value>,
}

impl TryFrom<WireJobSession> for RawJobSession {
    type Error = Unusable;

    fn try_from(w: WireJobSession) -> Result<Self, Unusable> {
        RawJobSession::from_wire(w, Fields::new(SESSION_RECORD))
    }
}

impl RawJobSession {
    fn from_wire(w: WireJobSession, mut f: Fields) -> Result<Self, Unusable> {
        Ok(RawJobSession {
            id: essential_id(&mut f, w.id)?,
            creation_time: time(&mut f, "creationTime", w.creation_time),
            end_time: time(&mut f, "endTime", w.end_time),
            progress: f.rounded("progress", w.progress),
            status: text(&mut f, "status", w.status),
            processed_objects: f.rounded("processedObjects", w.processed_objects),
            job_type: text(&mut f, "jobType", w.job_type),
            problems: f.into_problems(),
        })
    }

    /// True while more log entries may come: no `endTime` yet, or a status saying so.
    pub fn is_running(&self) -> bool {
        const RUNNING: [&str; 8] = [
            "running",
            "working",
            "inprogress",
            "queued",
            "pending",
            "starting",
            "stopping",
            "notstarted",
        ];
        let status = self.status.as_deref().unwrap_or("");
        let squashed: String = status
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        self.end_time.is_none() || RUNNING.contains(&squashed.as_str())
    }
}

/// One log entry: an item of `/logs` (`{id, title, creationTime, endTime}`) or one entry of
/// `/logs/download` (which has no id; see [`LOG_ID_NAMESPACE`]). Nothing in it is
/// essential: its position in the log places it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(try_from = "WireLogEntry")]
pub struct RawLogEntry {
    pub id: Option<String>,
    pub title: Option<String>,
    pub creation_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Odd values found while decoding (empty for a clean record).
    pub problems: Vec<Problem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireLogEntry {
    id: Option<Value>,
    title: Option<Value>,
    creation_time: Option<Value>,
    end_time: Option<Value>,
}

impl TryFrom<WireLogEntry> for RawLogEntry {
    type Error = Unusable;

    fn try_from(w: WireLogEntry) -> Result<Self, Unusable> {
        Ok(RawLogEntry::from_wire(w, Fields::new(LOG_RECORD)))
    }
}

impl RawLogEntry {
    fn from_wire(w: WireLogEntry, mut f: Fields) -> Self {
        const DERIVED: &str =
            "the event id is derived from the job session, the entry's position and its title";
        let id = match w.id {
            Some(Value::String(s)) => {
                let id = non_empty(Some(s.trim()));
                if id.is_none() {
                    f.report("id", format!("empty ({DERIVED})"));
                }
                id
            }
            Some(Value::Number(n)) => {
                f.report(
                    "id",
                    "a number where a text id was expected (used as its text)",
                );
                Some(n.to_string())
            }
            None => {
                f.report("id", format!("missing or null ({DERIVED})"));
                None
            }
            Some(other) => {
                f.report(
                    "id",
                    format!(
                        "{} is not an id (left out; the event id is derived)",
                        excerpt(&other.to_string())
                    ),
                );
                None
            }
        };
        let title = text(&mut f, "title", w.title);
        report_odd_transfer(&mut f, title.as_deref());
        let creation_time = time(&mut f, "creationTime", w.creation_time);
        let end_time = time(&mut f, "endTime", w.end_time);
        if creation_time.is_none() && end_time.is_none() {
            report_no_time(&mut f);
        }
        RawLogEntry {
            id,
            title,
            creation_time,
            end_time,
            problems: f.into_problems(),
        }
    }

    /// The entry had odd values.
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Decode one backup job record (JSON) leniently; `Err` only when its `id` is unusable.
pub fn decode_job(raw: impl AsRef<str>) -> Result<RawJob, Unusable> {
    let mut f = Fields::new(JOB_RECORD);
    let wire = read_record(raw.as_ref(), &mut f)?;
    RawJob::from_wire(wire, f)
}

/// Decode one job session record (JSON) leniently; `Err` only when its `id` is unusable.
pub fn decode_job_session(raw: impl AsRef<str>) -> Result<RawJobSession, Unusable> {
    let mut f = Fields::new(SESSION_RECORD);
    let wire = read_record(raw.as_ref(), &mut f)?;
    RawJobSession::from_wire(wire, f)
}

/// Decode one log entry record (JSON) leniently; `Err` only when it is not a JSON object.
pub fn decode_log_entry(raw: impl AsRef<str>) -> Result<RawLogEntry, Unusable> {
    let mut f = Fields::new(LOG_RECORD);
    let wire = read_record(raw.as_ref(), &mut f)?;
    Ok(RawLogEntry::from_wire(wire, f))
}

/// [`decode_log_entry`] of an already parsed JSON value (download bodies).
pub fn log_entry_from_value(value: Value) -> Result<RawLogEntry, Unusable> {
    if !value.is_object() {
        return Err(Unusable(format!(
            "{LOG_RECORD}: a log entry must be a JSON object"
        )));
    }
    let wire = serde_json::from_value(value).map_err(|e| Unusable(format!("{LOG_RECORD}: {e}")))?;
    Ok(RawLogEntry::from_wire(wire, Fields::new(LOG_RECORD)))
}

/// One line of a text download, `creationTime<TAB>endTime<TAB>title` (or
/// `creationTime<TAB>title`); a line of any other shape is all title. Times are read as
/// in JSON records (RFC 3339; without an offset: UTC, reported; `DateTime.MinValue`: none).
pub fn decode_text_line(line: &str) -> RawLogEntry {
    let whole = || {
        let mut f = Fields::new(LOG_RECORD);
        report_no_time(&mut f);
        RawLogEntry {
            title: Some(line.trim().to_string()),
            problems: f.into_problems(),
            ..RawLogEntry::default()
        }
    };
    let mut f = Fields::new(LOG_RECORD);
    let mut fields = line.splitn(3, '\t');
    let (Some(created), Some(second)) = (fields.next(), fields.next()) else {
        return whole();
    };
    // `Some(None)`: empty or MinValue; `None`: not a time (the line is then all title).
    let mut time = |name: &str, text: &str| -> Option<Option<DateTime<Utc>>> {
        if text.trim().is_empty() {
            return Some(None);
        }
        match read_time_text(text).ok()? {
            WireTime::NoValue => Some(None),
            WireTime::At { .. } => Some(
                f.time(name, Some(Value::String(text.to_string())), false)
                    .map(|t| t.with_timezone(&Utc)),
            ),
        }
    };
    let Some(creation_time) = time("creationTime", created) else {
        return whole();
    };
    let (end_time, title) = match fields.next() {
        Some(title) => match time("endTime", second) {
            Some(end_time) => (end_time, title),
            None => return whole(),
        },
        // Two fields: creationTime<TAB>title.
        None => (None, second),
    };
    if creation_time.is_none() && end_time.is_none() {
        report_no_time(&mut f);
    }
    report_odd_transfer(&mut f, Some(title));
    RawLogEntry {
        id: None,
        title: Some(title.trim().to_string()),
        creation_time,
        end_time,
        problems: f.into_problems(),
    }
}

/// Report something about a log entry as a whole (`logEntry.record`), found outside its
/// decoding (a download line cut at the cap, or where the body ended).
pub fn report_record(entry: &mut RawLogEntry, detail: impl Into<String>) {
    let mut f = Fields::new(LOG_RECORD);
    f.report("record", detail);
    entry.problems.extend(f.into_problems());
}

/// A log entry with neither a usable `creationTime` nor `endTime`: it still ships (its
/// session places it), with `@timestamp` taken from the session, and says so.
fn report_no_time(f: &mut Fields) {
    f.report_time_missing(
        "creationTime",
        "no usable creationTime or endTime: @timestamp is the job session's creationTime (or, without one, when the entry was fetched)",
    );
}

/// Whether a log entry's title says its step is still in progress (`[Running] …`; also
/// `InProgress`): Veeam completes such an entry in place later.
pub fn in_progress(entry: &RawLogEntry) -> bool {
    entry.title.as_deref().is_some_and(|t| {
        parse_title(t).status.is_some_and(|s| {
            s.eq_ignore_ascii_case("Running") || s.eq_ignore_ascii_case("InProgress")
        })
    })
}

/// Whether the event shipped for this log entry reports odd values (of the job, the
/// session or the entry): the source then keeps the raw record and counts it.
pub fn is_degraded(job: &RawJob, session: &RawJobSession, entry: &RawLogEntry) -> bool {
    !(job.problems.is_empty() && session.problems.is_empty() && entry.problems.is_empty())
}

/// A VDC timestamp: RFC 3339 (Veeam writes 6–7 fraction digits and `Z`), or the same
/// without an offset, read as UTC. `DateTime.MinValue` and anything else are `None`.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    match read_time_text(text).ok()? {
        WireTime::At { time, .. } => Some(time.with_timezone(&Utc)),
        WireTime::NoValue => None,
    }
}

/// A VDC job's or job session's id (a URL path segment): kept trimmed (VDC is a preview
/// without a schema; ids were always trimmed).
fn essential_id(f: &mut Fields, value: Option<Value>) -> Result<String, Unusable> {
    f.path_id("id", value).map(|id| id.trim().to_string())
}

/// Free text; blank is absent.
fn text(f: &mut Fields, name: &str, value: Option<Value>) -> Option<String> {
    f.text(name, value, false).and_then(|t| non_empty(Some(&t)))
}

fn time(f: &mut Fields, name: &str, value: Option<Value>) -> Option<DateTime<Utc>> {
    f.time(name, value, false).map(|t| t.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------
// Title grammar

/// What a log title says, as far as the grammar understands it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedTitle {
    /// The bracketed prefix, trimmed, verbatim (`"Success"`, `"Warning"`, `"Whatever"`).
    pub status: Option<String>,
    pub kind: TitleKind,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum TitleKind {
    JobStarted,
    JobFinished,
    /// `Processing <type>: <name>`; `object_type` lower-cased with single spaces.
    Processing {
        object_type: String,
        object_name: Option<String>,
    },
    Transferred(Transfer),
    #[default]
    Other,
}

/// The numbers of a `Transferred:` line; each is `None` when absent or unparsable.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Transfer {
    pub bytes: Option<u64>,
    pub items: Option<u64>,
    pub rate_bytes_per_sec: Option<u64>,
    pub items_per_sec: Option<u64>,
}

/// Parse a log title. Never fails and never panics: what isn't understood is `Other`.
pub fn parse_title(title: &str) -> ParsedTitle {
    let (status, text) = split_status(title);
    let kind = if let Some(rest) = strip_word(text, "job") {
        job_kind(rest.split_whitespace().next())
    } else if let Some(rest) = strip_word(text, "processing") {
        processing(rest)
    } else if let Some(rest) = strip_word(text, "transferred") {
        TitleKind::Transferred(transfer(rest))
    } else {
        TitleKind::Other
    };
    ParsedTitle { status, kind }
}

/// `text` after a leading `word` (ASCII, case-insensitive) that is not followed by a letter.
fn strip_word<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && !rest.starts_with(char::is_alphabetic)).then_some(rest)
}

/// `[Status] rest` → (Some("Status"), "rest"); no prefix → (None, whole text trimmed).
fn split_status(title: &str) -> (Option<String>, &str) {
    let trimmed = title.trim();
    if let Some(inner) = trimmed.strip_prefix('[')
        && let Some(close) = inner.find(']')
    {
        let status = &inner[..close];
        if !status.contains('[') && status.chars().count() <= 64 {
            return (non_empty(Some(status.trim())), inner[close + 1..].trim());
        }
    }
    (None, trimmed)
}

fn job_kind(verb: Option<&str>) -> TitleKind {
    const START: [&str; 2] = ["started", "starting"];
    const END: [&str; 8] = [
        "finished",
        "completed",
        "stopped",
        "ended",
        "failed",
        "canceled",
        "cancelled",
        "aborted",
    ];
    let verb = verb
        .map(|v| {
            v.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .unwrap_or_default();
    if START.contains(&verb.as_str()) {
        TitleKind::JobStarted
    } else if END.contains(&verb.as_str()) {
        TitleKind::JobFinished
    } else {
        TitleKind::Other
    }
}

/// `<type>: <name>` (after "Processing") where the type is one to three words of letters.
fn processing(rest: &str) -> TitleKind {
    let Some((kind, name)) = rest.split_once(':') else {
        return TitleKind::Other;
    };
    let words: Vec<&str> = kind.split_whitespace().collect();
    let wordy = |w: &&str| w.chars().all(|c| c.is_alphabetic() || c == '-' || c == '_');
    if words.is_empty() || words.len() > 3 || !words.iter().all(wordy) {
        return TitleKind::Other;
    }
    TitleKind::Processing {
        object_type: words.join(" ").to_lowercase(),
        object_name: non_empty(Some(name.trim())),
    }
}

/// `[:] 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)`, each part optional after the size.
fn transfer(rest: &str) -> Transfer {
    transfer_and_rest(rest).0
}

/// [`transfer`], and whether the grammar read all of it (a size, and a rate when `at`
/// says there is one, and nothing else). The parts are read independently: one that
/// doesn't read (`168,8 MB`, `(many items)`) is passed over up to the next `(` or `at`,
/// and the rest of the line still counts.
fn transfer_and_rest(rest: &str) -> (Transfer, bool) {
    let mut p = Scanner::new(rest);
    p.eat(":");
    let mut out = Transfer {
        bytes: p.size(),
        ..Transfer::default()
    };
    let mut whole = out.bytes.is_some();
    if out.bytes.is_none() {
        p.skip_part();
    }
    loop {
        p.skip_ws();
        if p.rest.is_empty() {
            break;
        }
        if p.rest.starts_with('(') {
            if let Some(n) = p.counted("items/s") {
                out.items_per_sec = out.items_per_sec.or(Some(n));
            } else if let Some(n) = p.counted("items") {
                out.items = out.items.or(Some(n));
            } else {
                whole = false;
                p.skip_group();
            }
        } else if p.eat_word("at") {
            let rate = p.attempt(|p| {
                let rate = p.size()?;
                (p.eat("/s") || p.eat("/sec") || p.eat("ps")).then_some(rate)
            });
            match rate {
                Some(rate) => out.rate_bytes_per_sec = out.rate_bytes_per_sec.or(Some(rate)),
                None => {
                    whole = false;
                    p.skip_part();
                }
            }
        } else {
            whole = false;
            p.skip_part();
        }
    }
    (out, whole)
}

/// A `Transferred:` title the grammar doesn't read whole (`168,8 MB`, `n/a`): what it
/// couldn't read is left out of `veeam.log.*`, and the entry reports it.
fn report_odd_transfer(f: &mut Fields, title: Option<&str>) {
    let Some(title) = title else { return };
    let (_, text) = split_status(title);
    let Some(rest) = strip_word(text, "transferred") else {
        return;
    };
    if !transfer_and_rest(rest).1 {
        f.report(
            "title",
            format!(
                "a \"Transferred:\" title that doesn't read as `<size> [(<n> items)] [at <rate>/s] [(<n> items/s)]`: {} (what didn't read is left out of veeam.log)",
                excerpt(&Value::String(title.trim().to_string()).to_string())
            ),
        );
    }
}

/// A tiny case-insensitive scanner over a title's remainder.
struct Scanner<'a> {
    rest: &'a str,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { rest: text }
    }

    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consume `token` (ASCII, case-insensitive) after optional whitespace.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        match self.rest.get(..token.len()) {
            Some(head) if head.eq_ignore_ascii_case(token) => {
                self.rest = &self.rest[token.len()..];
                true
            }
            _ => false,
        }
    }

    /// Like [`Self::eat`], but only when a non-letter follows (so "at" doesn't match "atom").
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        match strip_word(self.rest, word) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `168.8`, `2472`, `1,234.5` (comma only as a thousands separator).
    fn number(&mut self) -> Option<f64> {
        self.skip_ws();
        let len = self
            .rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .unwrap_or(self.rest.len());
        let raw = &self.rest[..len];
        let raw = raw.trim_end_matches([',', '.']);
        if raw.is_empty() || !raw.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let (int, frac) = match raw.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (raw, None),
        };
        if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        let mut groups = int.split(',');
        let head = groups.next().unwrap_or("");
        let grouped_ok = !int.contains(',')
            || (head.len() <= 3 && groups.clone().all(|g| g.len() == 3 && !g.is_empty()));
        if head.is_empty() || !grouped_ok {
            return None;
        }
        let plain: String = raw.chars().filter(|c| *c != ',').collect();
        let value: f64 = plain.parse().ok()?;
        self.rest = &self.rest[raw.len()..];
        value.is_finite().then_some(value)
    }

    /// Run `part`; when it yields nothing, put the scanner back where it was.
    fn attempt<T>(&mut self, part: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let saved = self.rest;
        let result = part(self);
        if result.is_none() {
            self.rest = saved;
        }
        result
    }

    /// `number unit` in bytes (1024-based), rounded.
    fn size(&mut self) -> Option<u64> {
        self.attempt(|p| {
            let n = p.number()?;
            p.skip_ws();
            let len = p
                .rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(p.rest.len());
            let factor = unit_factor(&p.rest[..len])?;
            p.rest = &p.rest[len..];
            to_u64(n * factor)
        })
    }

    /// Pass over a part that didn't read: up to the next `(` or word `at` (at least one
    /// char, so a caller's loop always moves on).
    fn skip_part(&mut self) {
        self.skip_ws();
        let mut chars = self.rest.char_indices().skip(1);
        let end = loop {
            match chars.next() {
                None => break self.rest.len(),
                Some((i, '(')) => break i,
                Some((i, c))
                    if c.is_whitespace()
                        && strip_word(self.rest[i..].trim_start(), "at").is_some() =>
                {
                    break i;
                }
                Some(_) => {}
            }
        };
        self.rest = &self.rest[end..];
    }

    /// Pass over a parenthesised group that didn't read (to its `)`, or the end).
    fn skip_group(&mut self) {
        self.rest = match self.rest.find(')') {
            Some(close) => &self.rest[close + 1..],
            None => "",
        };
    }

    /// `( N <noun> )`, where the noun may also be singular (`item`, `item/s`).
    fn counted(&mut self, noun: &str) -> Option<u64> {
        self.attempt(|p| {
            if !p.eat("(") {
                return None;
            }
            let n = p.number()?;
            let singular = noun.replacen("items", "item", 1);
            if !(p.eat(noun) || p.eat(&singular)) || !p.eat(")") {
                return None;
            }
            to_u64(n)
        })
    }
}

/// Bytes per unit (1024-based); `None` for anything that is not a byte unit.
fn unit_factor(unit: &str) -> Option<f64> {
    let power = match unit.to_ascii_lowercase().as_str() {
        "b" | "byte" | "bytes" => 0,
        "kb" | "kib" => 1,
        "mb" | "mib" => 2,
        "gb" | "gib" => 3,
        "tb" | "tib" => 4,
        "pb" | "pib" => 5,
        _ => return None,
    };
    Some(1024f64.powi(power))
}

fn to_u64(value: f64) -> Option<u64> {
    let rounded = value.round();
    (rounded.is_finite() && rounded >= 0.0 && rounded < u64::MAX as f64).then_some(rounded as u64)
}

/// `event.outcome` for a bracketed status (case-insensitive): Success/Warning → success,
/// Failed/Error → failure, anything else (Running, unknown, none) → unknown.
pub fn outcome_for(status: Option<&str>) -> &'static str {
    let status = status.unwrap_or("").trim().to_ascii_lowercase();
    match status.as_str() {
        "success" | "succeeded" | "warning" => outcome::SUCCESS,
        "failed" | "failure" | "error" => outcome::FAILURE,
        _ => outcome::UNKNOWN,
    }
}

// ---------------------------------------------------------------------------------------
// Mapping

/// `event.id` of a log entry: Veeam's id as it is (the contract: `event.id` is Veeam's
/// id, whatever its form); with no id, the UUIDv5 of (session id, index, title).
pub fn log_event_id(session_id: &str, index: u64, entry: &RawLogEntry) -> String {
    if let Some(id) = &entry.id {
        return id.clone();
    }
    let title = entry.title.as_deref().unwrap_or("");
    let name = format!("{session_id}\n{index}\n{title}");
    Uuid::new_v5(&LOG_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Map one job-session log entry (with its job and session) to the output event.
///
/// `index` is the entry's 0-based position in the session log (oldest first), shipped as
/// `event.sequence`; `original` is the raw record (JSON text, or the raw download line),
/// kept in `event.original` when the source has `keep_original = true` or the event is
/// degraded. Odd values of the job, the session and the entry are reported in `tags`,
/// `error.message` and `veeam.degraded_fields`.
pub fn map_log_entry(
    ctx: &MapContext<'_>,
    job: &RawJob,
    session: &RawJobSession,
    entry: &RawLogEntry,
    index: u64,
    original: Option<&str>,
) -> Event {
    let title = entry.title.as_deref().unwrap_or("");
    let parsed = parse_title(title);
    let (action, kind_type) = match &parsed.kind {
        TitleKind::JobStarted => (action::JOB_STARTED, "start"),
        TitleKind::JobFinished => (action::JOB_FINISHED, "end"),
        TitleKind::Processing { .. } => (action::OBJECT_PROCESSED, "info"),
        TitleKind::Transferred(_) => (action::DATA_TRANSFERRED, "info"),
        TitleKind::Other => (action::LOG_ENTRY, "info"),
    };
    let mut log = Log {
        status: parsed.status.clone(),
        ..Log::default()
    };
    let mut related = Related::default();
    match &parsed.kind {
        TitleKind::Processing {
            object_type,
            object_name,
        } => {
            log.object_type = Some(object_type.clone());
            log.object_name = object_name.clone();
            // Mailboxes and OneDrives are named by the owner's UPN: pivot on it.
            if let Some(name) = object_name
                && is_upn(name)
            {
                push_unique(&mut related.user, name);
            }
        }
        TitleKind::Transferred(t) => {
            log.transferred_bytes = t.bytes;
            log.items = t.items;
            log.rate_bytes_per_sec = t.rate_bytes_per_sec;
        }
        _ => {}
    }
    let has_log = log != Log::default();

    let start = entry.creation_time;
    let end = entry.end_time;
    let timestamp = start
        .or(end)
        .or(session.creation_time)
        .unwrap_or(ctx.fetched_at);
    let message = non_empty(Some(title.trim())).unwrap_or_else(|| action.to_string());
    let report = degraded(
        job.problems
            .iter()
            .chain(&session.problems)
            .chain(&entry.problems),
    );
    let session_duration = match (session.creation_time, session.end_time) {
        (Some(s), Some(e)) if !session.is_running() => nanos_between(s, e),
        _ => None,
    };

    Event {
        timestamp,
        ecs: Ecs::default(),
        message,
        event: EventMeta {
            kind: Text::Borrowed("event"),
            category: vec![Text::Borrowed(CATEGORY)],
            kind_type: vec![Text::Borrowed(kind_type)],
            action: action.to_string(),
            outcome: Text::Borrowed(outcome_for(parsed.status.as_deref())),
            id: log_event_id(&session.id, index, entry),
            sequence: Some(i64::try_from(index).unwrap_or(i64::MAX)),
            created: ctx.fetched_at,
            start,
            end,
            duration: start.zip(end).and_then(|(s, e)| nanos_between(s, e)),
            dataset: Text::Borrowed(dataset::VDC_JOB_LOG),
            module: Text::Borrowed(MODULE),
            provider: Text::Borrowed(PROVIDER),
            original: original.map(str::to_string),
        },
        observer: Observer {
            vendor: Text::Borrowed(VENDOR),
            product: Text::Borrowed(PRODUCT),
            hostname: ctx.observer_hostname.into(),
        },
        labels: Labels {
            source_id: ctx.source_id.into(),
        },
        related: related.into(),
        organization: None,
        user: None,
        client: None,
        source: None,
        tags: report.tags,
        error: report.error,
        veeam: Veeam {
            job: Some(Job {
                id: job.id.clone(),
                name: job.name.clone(),
                backup_type: job.backup_type.clone(),
                job_type: job.job_type.clone(),
            }),
            job_session: Some(JobSession {
                id: session.id.clone(),
                status: session.status.clone(),
                progress: session.progress,
                processed_objects: session.processed_objects,
                creation_time: session.creation_time,
                end_time: session.end_time,
                duration: session_duration,
            }),
            log: has_log.then_some(log),
            degraded_fields: report.fields,
            ..Veeam::default()
        },
    }
}

/// Whether `name` reads as a UPN: `local@domain`, both parts non-empty, no whitespace.
fn is_upn(name: &str) -> bool {
    name.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !name.contains(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    //! Whole records mapped field by field are the fixtures in `tests/fixtures/mapping/vdc/`
    //! (run by `map::fixtures`). Here: the title grammar and transfer tables, loops over
    //! garbage, the derived-id formula, and what decoding decides that no event shows.
    use super::*;

    #[test]
    fn only_a_whole_upn_is_a_related_user() {
        for upn in ["adams@contoso.com", "a@b", "first.last@sub.contoso.com"] {
            assert!(is_upn(upn), "{upn}");
        }
        for not in [
            "@",
            "a@",
            "@contoso.com",
            "Team site",
            "a b@contoso.com",
            "plain",
        ] {
            assert!(!is_upn(not), "{not}");
        }
    }
    use chrono::TimeZone;

    const JOBS: &str = include_str!("../../tests/fixtures/vdc/backup-jobs.json");
    const SESSIONS: &str = include_str!("../../tests/fixtures/vdc/job-sessions.json");

    fn ctx() -> MapContext<'static> {
        MapContext {
            source_id: "vdc_emea",
            observer_hostname: "vdc-api.example.net",
            fetched_at: Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const MB: f64 = 1024.0 * 1024.0;

    /// (title, status, action, object type, object name)
    type GrammarCase = (
        &'static str,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn title_grammar_table() {
        use action::*;
        let cases: &[GrammarCase] = &[
            (
                "[Success] Processing mailbox: adams@contoso.com",
                Some("Success"),
                OBJECT_PROCESSED,
                Some("mailbox"),
                Some("adams@contoso.com"),
            ),
            (
                "[Success] Processing site: https://contoso.sharepoint.com/sites/Sales Team",
                Some("Success"),
                OBJECT_PROCESSED,
                Some("site"),
                Some("https://contoso.sharepoint.com/sites/Sales Team"),
            ),
            (
                "[Warning] Processing OneDrive: bob@contoso.com",
                Some("Warning"),
                OBJECT_PROCESSED,
                Some("onedrive"),
                Some("bob@contoso.com"),
            ),
            (
                "[Failed] Processing team: Sales & Marketing",
                Some("Failed"),
                OBJECT_PROCESSED,
                Some("team"),
                Some("Sales & Marketing"),
            ),
            (
                "[Success] Processing archive mailbox: carol@contoso.com",
                Some("Success"),
                OBJECT_PROCESSED,
                Some("archive mailbox"),
                Some("carol@contoso.com"),
            ),
            // Odd spacing and case everywhere.
            (
                "   [ Success ]Processing    MAILBOX :   dave@contoso.com   ",
                Some("Success"),
                OBJECT_PROCESSED,
                Some("mailbox"),
                Some("dave@contoso.com"),
            ),
            (
                "[success]processing mailbox:erin@contoso.com",
                Some("success"),
                OBJECT_PROCESSED,
                Some("mailbox"),
                Some("erin@contoso.com"),
            ),
            (
                "[Success] Processing mailbox:",
                Some("Success"),
                OBJECT_PROCESSED,
                Some("mailbox"),
                None,
            ),
            (
                "[Success] Job started at 9/23/2024 2:49:03 AM",
                Some("Success"),
                JOB_STARTED,
                None,
                None,
            ),
            (
                "[Success] Job finished at 3/3/2025 2:10:44 AM",
                Some("Success"),
                JOB_FINISHED,
                None,
                None,
            ),
            (
                "[Failed] job   FAILED: 2 of 5 objects failed",
                Some("Failed"),
                JOB_FINISHED,
                None,
                None,
            ),
            ("Job completed.", None, JOB_FINISHED, None, None),
            // Unknown statuses are kept verbatim.
            (
                "[Skipped] Processing mailbox: x@y.z",
                Some("Skipped"),
                OBJECT_PROCESSED,
                Some("mailbox"),
                Some("x@y.z"),
            ),
            (
                "[Queued-For-Retry] Something new",
                Some("Queued-For-Retry"),
                LOG_ENTRY,
                None,
                None,
            ),
            // Not the grammar: shipped as a plain log entry.
            (
                "[Warning] Processing mailbox x finished with warning: quota",
                Some("Warning"),
                LOG_ENTRY,
                None,
                None,
            ),
            ("Processing 5 of 10 objects", None, LOG_ENTRY, None, None),
            (
                "[Success] Found 12 objects",
                Some("Success"),
                LOG_ENTRY,
                None,
                None,
            ),
            (
                "[] Processing team: A",
                None,
                OBJECT_PROCESSED,
                Some("team"),
                Some("A"),
            ),
            ("[Success Processing team: A", None, LOG_ENTRY, None, None),
            ("Jobless", None, LOG_ENTRY, None, None),
            ("[Error] Job", Some("Error"), LOG_ENTRY, None, None),
        ];
        for (title, status, want_action, object_type, object_name) in cases {
            let parsed = parse_title(title);
            assert_eq!(parsed.status.as_deref(), *status, "status of {title:?}");
            let entry = RawLogEntry {
                title: Some(title.to_string()),
                ..RawLogEntry::default()
            };
            let e = map_log_entry(&ctx(), &job(), &session(), &entry, 0, None);
            assert_eq!(e.event.action, *want_action, "action of {title:?}");
            let log = e.veeam.log.clone().unwrap_or_default();
            assert_eq!(
                log.object_type.as_deref(),
                *object_type,
                "type of {title:?}"
            );
            assert_eq!(
                log.object_name.as_deref(),
                *object_name,
                "name of {title:?}"
            );
            assert_eq!(e.message, title.trim(), "message keeps the title");
        }
    }

    /// (title, bytes, items, rate, items/s)
    type TransferCase = (
        &'static str,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    );

    #[test]
    fn transfer_table() {
        let r = |x: f64| x.round() as u64;
        let cases: &[TransferCase] = &[
            (
                "[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)",
                Some(176_999_629),
                Some(2472),
                Some(1_887_437),
                Some(26),
            ),
            (
                "Transferred: 0 B (0 items) at 0 B/s (0 items/s)",
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ),
            (
                "Transferred: 1 KB (1 item) at 512 B/s (1 item/s)",
                Some(1024),
                Some(1),
                Some(512),
                Some(1),
            ),
            (
                "Transferred:2.5GB(10 items)at 3 KB/s(1 items/s)",
                Some(r(2.5 * 1024.0 * MB)),
                Some(10),
                Some(3072),
                Some(1),
            ),
            (
                "  [Success]   transferred :   1.25   tb   ( 1,234 items )  AT  10.5 mb/s ( 7 items/s ) ",
                Some(r(1.25 * MB * MB)),
                Some(1234),
                Some(r(10.5 * MB)),
                Some(7),
            ),
            (
                "Transferred: 1,234.5 KB",
                Some(r(1234.5 * 1024.0)),
                None,
                None,
                None,
            ),
            (
                "Transferred: 3 MiB",
                Some(3 * 1024 * 1024),
                None,
                None,
                None,
            ),
            ("Transferred: 7 bytes", Some(7), None, None, None),
            // Units we don't know, broken numbers, missing parts: fields stay absent.
            (
                "Transferred: 168.8 XB (2472 items)",
                None,
                Some(2472),
                None,
                None,
            ),
            ("Transferred: lots", None, None, None, None),
            ("Transferred: 1.2.3 MB", None, None, None, None),
            ("Transferred: 12,34 MB", None, None, None, None),
            ("Transferred: -5 MB", None, None, None, None),
            (
                "Transferred: 5 MB at 2 MB",
                Some(5 * 1024 * 1024),
                None,
                None,
                None,
            ),
            (
                "Transferred: 99999999999999999999999999 TB (1 items)",
                None,
                Some(1),
                None,
                None,
            ),
            // A part that doesn't read costs only itself.
            (
                "Transferred: 168,8 MB (2472 items) at 1,8 MB/s (26 items/s)",
                None,
                Some(2472),
                None,
                Some(26),
            ),
            (
                "Transferred: ? MB (2472 items) at 1.8 MB/s (26 items/s)",
                None,
                Some(2472),
                Some(r(1.8 * MB)),
                Some(26),
            ),
            (
                "Transferred: 5 MB (many items) at 2 MB/s (3 items/s)",
                Some(5 * 1024 * 1024),
                None,
                Some(2 * 1024 * 1024),
                Some(3),
            ),
        ];
        for (title, bytes, items, rate, per_sec) in cases {
            let parsed = parse_title(title);
            let TitleKind::Transferred(t) = parsed.kind else {
                panic!("{title:?} is a transfer line, got {:?}", parsed.kind);
            };
            assert_eq!(t.bytes, *bytes, "bytes of {title:?}");
            assert_eq!(t.items, *items, "items of {title:?}");
            assert_eq!(t.rate_bytes_per_sec, *rate, "rate of {title:?}");
            assert_eq!(t.items_per_sec, *per_sec, "items/s of {title:?}");
        }
    }

    #[test]
    fn outcomes() {
        for (status, want) in [
            (Some("Success"), "success"),
            (Some("WARNING"), "success"),
            (Some("Failed"), "failure"),
            (Some("error"), "failure"),
            (Some("Running"), "unknown"),
            (Some("Whatever"), "unknown"),
            (None, "unknown"),
        ] {
            assert_eq!(outcome_for(status), want, "{status:?}");
        }
    }

    #[test]
    fn garbage_never_panics_and_keeps_the_message() {
        let garbage = [
            "",
            " ",
            "[",
            "]",
            "[]",
            "[[Success]] x",
            "[Success]",
            "🦀 [Success] 🦀",
            "[✓] Processing 📬: 🦀@🦀",
            "Processing",
            "Processing:",
            "Processing :",
            "Transferred",
            "Transferred:",
            "Transferred: (",
            "Transferred: 1 (",
            "Transferred: 1 MB (",
            "Transferred: 1 MB (x items)",
            "Transferred: 1 MB at",
            "Transferred: 1 MB at 1",
            "Transferred: 1 MB at 1 MB/",
            "Transferred: ,,, MB",
            "Transferred: . MB",
            "Transferred: 1. MB",
            "Transferred: é MB",
            "Job",
            "job é",
            "\u{0}\u{1}\t\r\n",
            "İ[İ]İ",
            &"x".repeat(10_000),
            &format!("[{}] x", "s".repeat(500)),
        ];
        for title in garbage {
            let entry = RawLogEntry {
                title: Some(title.to_string()),
                ..RawLogEntry::default()
            };
            let e = map_log_entry(&ctx(), &job(), &session(), &entry, 3, None);
            assert!(!e.message.is_empty());
            if !title.trim().is_empty() {
                assert_eq!(e.message, title.trim());
            }
        }
    }

    fn job() -> RawJob {
        serde_json::from_str::<Vec<RawJob>>(JOBS).unwrap().remove(0)
    }

    fn session() -> RawJobSession {
        serde_json::from_str::<Vec<RawJobSession>>(SESSIONS)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn download_lines_get_stable_derived_ids() {
        let entry = RawLogEntry {
            title: Some("[Success] Job started".into()),
            ..RawLogEntry::default()
        };
        let a = log_event_id("s1", 0, &entry);
        assert_eq!(a, log_event_id("s1", 0, &entry));
        assert_ne!(a, log_event_id("s1", 1, &entry));
        assert_ne!(a, log_event_id("s2", 0, &entry));
        let parsed = Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        // The documented formula.
        assert_eq!(
            a,
            Uuid::new_v5(&LOG_ID_NAMESPACE, b"s1\n0\n[Success] Job started").to_string()
        );
    }

    #[test]
    fn log_ids_are_shipped_as_veeam_sent_them() {
        for (raw, problems) in [
            (
                r#"{"id":"11111111-2222-4333-8444-555555555501","title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
                0,
            ),
            (
                r#"{"id":"log-1","title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
                0,
            ),
            (
                r#"{"id":1,"title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
                1,
            ),
        ] {
            let e = decode_log_entry(raw).unwrap();
            assert_eq!(e.problems.len(), problems, "{raw}: {:?}", e.problems);
            let id = e.id.clone().unwrap();
            assert_eq!(log_event_id("s1", 0, &e), id);
            assert_eq!(
                log_event_id("s2", 5, &e),
                id,
                "neither session nor position"
            );
        }
        for raw in [
            r#"{"title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
            r#"{"id":null,"title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
            r#"{"id":" ","title":"t","creationTime":"2025-03-03T02:00:00Z"}"#,
        ] {
            let e = decode_log_entry(raw).unwrap();
            assert_eq!(e.id, None);
            assert_eq!(e.problems.len(), 1, "{raw}: {:?}", e.problems);
            assert!(e.problems[0].detail.contains("derived"), "{:?}", e.problems);
        }
    }

    // How sessions and entries with odd values map (kept as text, rounded, left out,
    // reported) is in the fixtures `vdc-running-session-empty-entry` and
    // `vdc-odd-values-in-job-session-and-entry`. Below: what decoding decides that no event
    // shows.

    #[test]
    fn running_sessions_and_refused_ids() {
        let s: RawJobSession = serde_json::from_str(
            r#"{"id": 42, "creationTime": "2025-03-03T02:00:00.1234567", "endTime": null,
                "progress": "40", "status": "InProgress", "processedObjects": 3.0, "extra": [1]}"#,
        )
        .unwrap();
        assert!(s.is_running());
        let ended: RawJobSession = serde_json::from_str(
            r#"{"id":"a","creationTime":"2025-03-03T02:00:00Z","endTime":"2025-03-03T02:00:01Z","status":"Running"}"#,
        )
        .unwrap();
        assert!(ended.is_running(), "a running status wins over endTime");
        let done: RawJobSession = serde_json::from_str(
            r#"{"id":"a","creationTime":"bogus","endTime":"2025-03-03T02:00:01Z","status":"Warning"}"#,
        )
        .unwrap();
        assert!(!done.is_running());
        assert_eq!(done.creation_time, None);
        assert!(serde_json::from_str::<RawJobSession>(r#"{"id":""}"#).is_err());
        assert!(serde_json::from_str::<RawJob>(r#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn odd_vdc_values_make_the_entry_degraded_and_missing_ids_are_refused() {
        let job =
            decode_job(r#"{"id": " j1 ", "name": 123, "backupType": {"k": 1}, "x": []}"#).unwrap();
        let session = decode_job_session(
            r#"{"id": "s1", "creationTime": "2025-03-03T02:00:00", "progress": "40%",
                "processedObjects": 3.5, "endTime": "0001-01-01T00:00:00Z", "status": 2}"#,
        )
        .unwrap();
        assert!(session.is_running(), "no usable endTime");
        let entry = decode_log_entry(
            r#"{"id": {"x": 1}, "title": 42, "creationTime": "2025-03-03T02:00:01Z",
                "endTime": "soon"}"#,
        )
        .unwrap();
        assert!(is_degraded(&job, &session, &entry));
        assert!(decode_job(r#"{"name": "no id"}"#).is_err());
        assert!(decode_job_session(r#"{"id": " "}"#).is_err());
        assert!(log_entry_from_value(serde_json::json!("a string")).is_err());
    }

    #[test]
    fn text_lines_report_zoneless_times_and_keep_odd_lines_whole() {
        let e = decode_text_line("2025-03-03T02:00:01.0100000\t\t[Success] Job started");
        assert_eq!(e.creation_time, Some(utc("2025-03-03T02:00:01.01Z")));
        assert_eq!(e.title.as_deref(), Some("[Success] Job started"));
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].assumed_utc);
        let e = decode_text_line("2025-03-03T02:00:01Z\t2025-03-03T02:00:02Z\tok");
        assert!(e.problems.is_empty());
        // No time at all: shipped, and reported as placed by its session.
        let e = decode_text_line("0001-01-01T00:00:00\t\tno time");
        assert_eq!(e.creation_time, None);
        assert!(e.problems.len() == 1 && e.problems[0].time_missing, "{e:?}");
        let e = decode_text_line("not a time\tx\ty");
        assert_eq!(e.title.as_deref(), Some("not a time\tx\ty"));
        assert!(e.problems.len() == 1 && e.problems[0].time_missing, "{e:?}");
    }

    #[test]
    fn transferred_titles_that_dont_read_whole_are_reported() {
        let odd = [
            "[Success] Transferred: 168,8 MB (2472 items) at 1,8 MB/s",
            "[Error] Transferred: n/a",
            "Transferred: 5 MB at 2 MB",
            "Transferred: 168.8 XB (2472 items)",
            "Transferred:",
        ];
        let fine = [
            "[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)",
            "[Success] Transferred: 2 TB at 3.5 KB/s",
            "Transferred: 1,234.5 KB",
            "[Warning] Transferred: 10 KB",
            "[Success] Processing mailbox: x@y",
        ];
        for (titles, reported) in [(&odd, true), (&fine, false)] {
            for title in titles {
                let raw = serde_json::json!({"id": "t", "title": title, "creationTime": "2025-03-03T02:00:00Z"});
                let entry = decode_log_entry(raw.to_string()).unwrap();
                let line = decode_text_line(&format!("2025-03-03T02:00:00Z\t\t{title}"));
                for e in [&entry, &line] {
                    let found = e.problems.iter().any(|p| p.field == "logEntry.title");
                    assert_eq!(found, reported, "{title}: {:?}", e.problems);
                }
            }
        }
    }

    #[test]
    fn an_entry_without_a_usable_time_is_placed_by_its_session_and_says_so() {
        let session = session();
        for raw in [
            r#"{"id":"n1","title":"[Success] x","creationTime":null,"endTime":null}"#,
            r#"{"id":"n1","title":"[Success] x","creationTime":"3/3/2025 2:00:07 AM"}"#,
            r#"{"id":"n1","title":"[Success] x","creationTime":"0001-01-01T00:00:00"}"#,
        ] {
            let entry = decode_log_entry(raw).unwrap();
            assert!(is_degraded(&job(), &session, &entry), "{raw}");
            let event = map_log_entry(&ctx(), &job(), &session, &entry, 0, Some(raw));
            assert_eq!(Some(event.timestamp), session.creation_time, "{raw}");
            assert!(
                event.tags.iter().any(|t| t == "veeam_time_missing")
                    && event.tags.iter().any(|t| t == "veeam_field_degraded"),
                "{raw}: {:?}",
                event.tags
            );
            let message = event.error.map(|e| e.message).unwrap_or_default();
            assert!(message.contains("no usable creationTime"), "{message}");
        }
        // Either time is enough.
        let entry = decode_log_entry(r#"{"id":"n1","endTime":"2025-03-03T02:00:00Z"}"#).unwrap();
        assert!(!entry.problems.iter().any(|p| p.time_missing));
    }
}
