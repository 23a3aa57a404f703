//! Veeam Data Cloud (VDC) backup jobs, job sessions and session log entries → [`Event`].
//!
//! Owns: the wire types of the VDC public API records (lenient: only ids are required, and a
//! timestamp or number that doesn't parse becomes an absent field rather than a dropped
//! record), the grammar of log titles (`"[Success] Processing mailbox: adams@contoso.com"`,
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

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::{MapContext, nanos_between, non_empty, push_unique};
use crate::event::{
    Ecs, Event, EventMeta, Job, JobSession, Labels, Log, MODULE, Observer, Related, VENDOR, Veeam,
    dataset, outcome,
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

/// `GET /v1/reports/backup-jobs` item. Only `id` is required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawJob {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default, deserialize_with = "de_text")]
    pub name: Option<String>,
    /// Seen: `SelectedItems`.
    #[serde(default, deserialize_with = "de_text")]
    pub backup_type: Option<String>,
    /// Seen: `Backup`.
    #[serde(default, deserialize_with = "de_text")]
    pub job_type: Option<String>,
}

/// `GET /v1/Reports/backup-jobs/{id}/job-sessions` item (newest first). Only `id` is required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawJobSession {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default, deserialize_with = "de_time")]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_int")]
    pub progress: Option<i64>,
    /// Seen: `Success`; modelled on VB365's `Success | Warning | Failed | Running | Stopped`.
    #[serde(default, deserialize_with = "de_text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de_int")]
    pub processed_objects: Option<i64>,
    #[serde(default, deserialize_with = "de_text")]
    pub job_type: Option<String>,
}

impl RawJobSession {
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
/// `/logs/download` (which has no id; see [`LOG_ID_NAMESPACE`]).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLogEntry {
    #[serde(default, deserialize_with = "de_opt_id")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "de_text")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "de_time")]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub end_time: Option<DateTime<Utc>>,
}

/// A VDC timestamp: RFC 3339 (Veeam writes 6–7 fraction digits and `Z`), or the same
/// without an offset, read as UTC. Anything else is `None`.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => parse_time(&s),
        _ => None,
    })
}

/// A string, or a number/bool written as text; `null` and blanks are `None`.
fn de_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => non_empty(Some(&s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// An integer, also from a float (rounded) or a numeric string; anything else is `None`.
fn de_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let from_f64 = |f: f64| (f.is_finite() && f.abs() < 9.0e18).then(|| f.round() as i64);
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(from_f64)),
        serde_json::Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    })
}

/// A required id: a non-blank string or a number.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_opt_id(d)?.ok_or_else(|| serde::de::Error::custom("`id` is missing, empty or not a string"))
}

fn de_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
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
    let mut p = Scanner::new(rest);
    p.eat(":");
    let mut out = Transfer {
        bytes: p.size(),
        ..Transfer::default()
    };
    if let Some(n) = p.counted("items") {
        out.items = Some(n);
    }
    if p.eat_word("at") {
        let rate = p.size();
        if rate.is_some() && (p.eat("/s") || p.eat("/sec") || p.eat("ps")) {
            out.rate_bytes_per_sec = rate;
        }
    }
    if let Some(n) = p.counted("items/s") {
        out.items_per_sec = Some(n);
    }
    out
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

/// `event.id` of a log entry: its own id, else the UUIDv5 of (session id, index, title).
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
/// kept in `event.original` when the source has `keep_original = true`.
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
                && name.contains('@')
                && !name.contains(char::is_whitespace)
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
    let session_duration = match (session.creation_time, session.end_time) {
        (Some(s), Some(e)) if !session.is_running() => nanos_between(s, e),
        _ => None,
    };

    Event {
        timestamp,
        ecs: Ecs::default(),
        message,
        event: EventMeta {
            kind: "event".to_string(),
            category: vec![CATEGORY.to_string()],
            kind_type: vec![kind_type.to_string()],
            action: action.to_string(),
            outcome: outcome_for(parsed.status.as_deref()).to_string(),
            id: log_event_id(&session.id, index, entry),
            sequence: Some(i64::try_from(index).unwrap_or(i64::MAX)),
            created: ctx.fetched_at,
            start,
            end,
            duration: start.zip(end).and_then(|(s, e)| nanos_between(s, e)),
            dataset: dataset::VDC_JOB_LOG.to_string(),
            module: MODULE.to_string(),
            provider: PROVIDER.to_string(),
            original: original.map(str::to_string),
        },
        observer: Observer {
            vendor: VENDOR.to_string(),
            product: PRODUCT.to_string(),
            hostname: ctx.observer_hostname.to_string(),
        },
        labels: Labels {
            source_id: ctx.source_id.to_string(),
        },
        related,
        organization: None,
        user: None,
        client: None,
        source: None,
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
            ..Veeam::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const JOBS: &str = include_str!("../../tests/fixtures/vdc/backup-jobs.json");
    const SESSIONS: &str = include_str!("../../tests/fixtures/vdc/job-sessions.json");
    const LOGS: &str = include_str!("../../tests/fixtures/vdc/job-session-logs.json");

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
            ("Transferred: 168.8 XB (2472 items)", None, None, None, None),
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
                None,
                None,
                None,
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
    fn example_log_entry_maps_every_field() {
        let logs: Vec<serde_json::Value> = serde_json::from_str(LOGS).unwrap();
        let raw = logs[1].to_string();
        let entry: RawLogEntry = serde_json::from_str(&raw).unwrap();
        let e = map_log_entry(&ctx(), &job(), &session(), &entry, 1, Some(&raw));

        assert_eq!(e.timestamp, utc("2025-03-03T02:01:10.2Z"));
        assert_eq!(
            e.message,
            "[Success] Processing mailbox: user1@contoso.onmicrosoft.com"
        );
        assert_eq!(e.event.category, ["process"]);
        assert_eq!(e.event.kind_type, ["info"]);
        assert_eq!(e.event.action, "object-processed");
        assert_eq!(e.event.outcome, "success");
        assert_eq!(e.event.id, "11111111-2222-4333-8444-555555555502");
        assert_eq!(e.event.sequence, Some(1));
        assert_eq!(e.event.created, ctx().fetched_at);
        assert_eq!(e.event.start, Some(utc("2025-03-03T02:01:10.2Z")));
        assert_eq!(e.event.end, Some(utc("2025-03-03T02:03:55.9Z")));
        assert_eq!(e.event.duration, Some(165_700_000_000));
        assert_eq!(e.event.dataset, "veeam.vdc_job_log");
        assert_eq!(e.event.provider, "vdc");
        assert_eq!(e.event.original.as_deref(), Some(raw.as_str()));
        assert_eq!(e.observer.product, "Veeam Data Cloud");
        assert_eq!(e.observer.hostname, "vdc-api.example.net");
        assert_eq!(e.labels.source_id, "vdc_emea");
        assert_eq!(e.related.user, ["user1@contoso.onmicrosoft.com"]);
        assert_eq!(
            e.veeam.job,
            Some(Job {
                id: "0c9f3b62-7a1d-4e8b-9f4a-1d2e3f4a5b60".into(),
                name: Some("Mailboxes - all users".into()),
                backup_type: Some("SelectedItems".into()),
                job_type: Some("Backup".into()),
            })
        );
        assert_eq!(
            e.veeam.job_session,
            Some(JobSession {
                id: "7e1a2b3c-4d5e-4f60-8a71-b2c3d4e5f607".into(),
                status: Some("Success".into()),
                progress: Some(40),
                processed_objects: Some(3),
                creation_time: Some(utc("2025-03-03T02:00:00.1203341Z")),
                end_time: Some(utc("2025-03-03T02:10:44.512233Z")),
                duration: Some(644_391_898_900),
            })
        );
        assert_eq!(
            e.veeam.log,
            Some(Log {
                status: Some("Success".into()),
                object_type: Some("mailbox".into()),
                object_name: Some("user1@contoso.onmicrosoft.com".into()),
                ..Log::default()
            })
        );
        assert_eq!(e.veeam.restore_session, None);
        assert_eq!(e.organization, None);
        assert_eq!(e.user, None);
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
    fn running_session_and_lenient_fields() {
        let s: RawJobSession = serde_json::from_str(
            r#"{"id": 42, "creationTime": "2025-03-03T02:00:00.1234567", "endTime": null,
                "progress": "40", "status": "InProgress", "processedObjects": 3.0, "extra": [1]}"#,
        )
        .unwrap();
        assert_eq!(s.id, "42");
        assert!(s.is_running());
        assert_eq!(s.creation_time, Some(utc("2025-03-03T02:00:00.1234567Z")));
        assert_eq!((s.progress, s.processed_objects), (Some(40), Some(3)));
        let e = map_log_entry(&ctx(), &job(), &s, &RawLogEntry::default(), 0, None);
        let js = e.veeam.job_session.unwrap();
        assert_eq!(js.duration, None, "no duration while running");
        assert_eq!(e.message, "log-entry");
        assert_eq!(e.timestamp, utc("2025-03-03T02:00:00.1234567Z"));

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
}
