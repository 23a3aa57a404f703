//! Reading Veeam's wire records leniently: every field is taken as far as it goes, and what
//! doesn't fit is *reported*, not fatal.
//!
//! Owns: the rules for one wire value of each kind (text, keyword, time, whole number, size,
//! .NET TimeSpan, id, order), the list of [`Problem`]s a record collects while its fields are
//! read ([`Fields`]), and [`Unusable`], the one error a record can have: an *essential*
//! field (an id, the only usable time, a VB365 `order`) that can't be used. Everything
//! else is best-effort: a wrong JSON type, `null` where a value is required, an unknown
//! enum value, a number sent as a string, a negative or fractional size, a time without an
//! offset. Such a value is left out (numbers, times) or kept as the text Veeam sent (strings
//! and keywords), and the record names it in its problems, which the mapping turns into
//! `tags`, `error.message` and `veeam.degraded_fields`. Unknown extra fields are ignored
//! (new Veeam versions add fields; they are not odd values).
//!
//! Must not: log, read the clock, or fail on anything but an essential field.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Timelike, Utc};
use serde_json::Value;

/// `tags` entry of an event whose record had at least one odd (best-effort) value.
pub const TAG_DEGRADED: &str = "veeam_field_degraded";
/// `tags` entry of an event with a time Veeam sent without an offset (read as UTC).
pub const TAG_ASSUMED_UTC: &str = "veeam_time_assumed_utc";
/// `tags` entry of an event whose record had no usable time of its own: `@timestamp` was
/// taken from elsewhere (a VDC log entry: its job session's creation time, or the fetch
/// time).
pub const TAG_TIME_MISSING: &str = "veeam_time_missing";

/// Longest excerpt of an odd value quoted in a problem (the whole record is in
/// `event.original`).
const EXCERPT_CHARS: usize = 120;

/// One odd value in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `<record>.<wire field>`, e.g. `restoreEvent.itemSizeBytes`, `jobSession.progress`
    /// (records: `restoreSession`, `restoreEvent`, `job`, `jobSession`, `logEntry`).
    pub field: String,
    /// What was wrong and what was done about it, quoting the value (cut to 120 chars).
    pub detail: String,
    /// A time without an offset, read as UTC (tagged [`TAG_ASSUMED_UTC`] too).
    pub assumed_utc: bool,
    /// The record had no usable time: `@timestamp` comes from elsewhere (tagged
    /// [`TAG_TIME_MISSING`] too).
    pub time_missing: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// The problem of a `record` (`restoreEvent`, `logEntry`, ...) whose text the reader had to
/// repair: bytes that were not valid UTF-8 replaced with U+FFFD. What it says is not
/// byte for byte what the server sent.
pub fn replaced_utf8(record: &str) -> Problem {
    Problem {
        field: format!("{record}.record"),
        detail: "bytes that were not valid UTF-8 were replaced with U+FFFD when the answer was read (the original bytes are lost)".to_string(),
        assumed_utc: false,
        time_missing: false,
    }
}

/// A record that can't be shipped: one of its essential fields is unusable. The message
/// names the record and field(s), so the source can log it next to the record's ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// Collects the problems of one record while its fields are read.
#[derive(Debug)]
pub struct Fields {
    record: &'static str,
    problems: Vec<Problem>,
}

/// A time as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireTime {
    /// RFC 3339 with an offset, or (`assumed_utc`) without one, read as UTC.
    At {
        time: DateTime<FixedOffset>,
        assumed_utc: bool,
        /// Sent with second 60 (RFC 3339's leap second, which .NET never writes): read as
        /// second 0 of the next minute, so no output time has a second 60 that a strict
        /// parser (the schema's `date-time`, Elasticsearch) refuses.
        leap_second: bool,
    },
    /// .NET's `DateTime.MinValue` (`0001-01-01T00:00:00`, with or without an offset):
    /// Veeam's way of writing "no value".
    NoValue,
}

impl Fields {
    /// `record` is the prefix of every problem's field name (`restoreEvent`, ...).
    pub fn new(record: &'static str) -> Self {
        Fields {
            record,
            problems: Vec::new(),
        }
    }

    /// The problems found so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// `<record>.<name>`.
    pub fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.record)
    }

    /// Record a problem with `name` (a wire field name, or `record` for the whole record).
    pub fn report(&mut self, name: &str, detail: impl Into<String>) {
        self.problems.push(Problem {
            field: self.path(name),
            detail: detail.into(),
            assumed_utc: false,
            time_missing: false,
        });
    }

    /// Record that the record has no usable time of its own (`name`: the time field that
    /// should have given it); `detail` says where `@timestamp` comes from instead.
    pub fn report_time_missing(&mut self, name: &str, detail: impl Into<String>) {
        self.problems.push(Problem {
            field: self.path(name),
            detail: detail.into(),
            assumed_utc: false,
            time_missing: true,
        });
    }

    fn missing(&mut self, name: &str, required: bool) {
        if required {
            self.report(name, "missing or null, though Veeam's API requires it");
        }
    }

    /// Free text (names, paths, hosts, messages): a string verbatim; a number or boolean
    /// as its JSON text and an object or array as its JSON text (both reported).
    pub fn text(&mut self, name: &str, value: Option<Value>, required: bool) -> Option<String> {
        match value {
            None => {
                self.missing(name, required);
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                let text = other.to_string();
                self.report(
                    name,
                    format!(
                        "{} where text was expected: {} (kept as its JSON text)",
                        kind(&other),
                        excerpt(&text)
                    ),
                );
                Some(text)
            }
        }
    }

    /// A keyword with a known set of values (compared trimmed, case-insensitively): read
    /// as [`Self::text`]; a string outside `known` is kept as sent and reported. Blank
    /// strings are Veeam's "no value" and not reported.
    pub fn keyword(
        &mut self,
        name: &str,
        value: Option<Value>,
        known: &[&str],
        required: bool,
    ) -> Option<String> {
        let was_string = matches!(value, Some(Value::String(_)));
        let text = self.text(name, value, required)?;
        let trimmed = text.trim();
        if was_string
            && !trimmed.is_empty()
            && !known.iter().any(|k| k.eq_ignore_ascii_case(trimmed))
        {
            self.report(
                name,
                format!(
                    "unknown value {} (kept as sent; known: {})",
                    excerpt(&Value::String(text.clone()).to_string()),
                    known.join(", ")
                ),
            );
        }
        Some(text)
    }

    /// A time (see [`read_time`]): usable, or left out and reported. A blank string is no
    /// value, as null is, and `MinValue` too (each reported only when `required`); a time
    /// without an offset is read as UTC and reported (with [`TAG_ASSUMED_UTC`]).
    pub fn time(
        &mut self,
        name: &str,
        value: Option<Value>,
        required: bool,
    ) -> Option<DateTime<FixedOffset>> {
        let value = value.filter(|v| !v.as_str().is_some_and(|s| s.trim().is_empty()));
        let Some(value) = value else {
            self.missing(name, required);
            return None;
        };
        match read_time(&value) {
            Ok(WireTime::At {
                time,
                assumed_utc,
                leap_second,
            }) => {
                if leap_second {
                    self.report(
                        name,
                        format!(
                            "{} has second 60 (read as second 0 of the next minute)",
                            excerpt(&value.to_string())
                        ),
                    );
                }
                if assumed_utc {
                    self.problems.push(Problem {
                        field: self.path(name),
                        detail: format!(
                            "{} has no UTC offset (read as UTC)",
                            excerpt(&value.to_string())
                        ),
                        assumed_utc: true,
                        time_missing: false,
                    });
                }
                Some(time)
            }
            Ok(WireTime::NoValue) => {
                if required {
                    self.report(
                        name,
                        format!(
                            "{} is .NET's DateTime.MinValue, i.e. no value",
                            excerpt(&value.to_string())
                        ),
                    );
                }
                None
            }
            Err(why) => {
                self.report(name, format!("{why} (left out)"));
                None
            }
        }
    }

    /// A whole number: an integer as is; an integral float or a string holding an integer
    /// is used and reported; anything else is left out and reported.
    pub fn int(&mut self, name: &str, value: Option<Value>) -> Option<i64> {
        let value = value?;
        match whole_number(&value) {
            Ok((n, exact)) => {
                if !exact {
                    self.report(
                        name,
                        format!(
                            "{} {} where a whole number was expected (used as {n})",
                            kind(&value),
                            excerpt(&value.to_string())
                        ),
                    );
                }
                Some(n)
            }
            Err(why) => {
                self.report(name, format!("{why} (left out)"));
                None
            }
        }
    }

    /// As [`Self::int`], but a fractional number (also in a string) is rounded, used and
    /// reported (VDC counters and percentages).
    pub fn rounded(&mut self, name: &str, value: Option<Value>) -> Option<i64> {
        let value = value?;
        if whole_number(&value).is_ok() {
            return self.int(name, Some(value));
        }
        match fraction(&value) {
            Some(f) => {
                let n = f.round() as i64;
                self.report(
                    name,
                    format!(
                        "{} {} where a whole number was expected (rounded to {n})",
                        kind(&value),
                        excerpt(&value.to_string())
                    ),
                );
                Some(n)
            }
            None => self.int(name, Some(value)),
        }
    }

    /// A size in bytes: as [`Self::int`], and a negative one is left out and reported.
    pub fn size(&mut self, name: &str, value: Option<Value>) -> Option<i64> {
        let shown = value.as_ref().map(Value::to_string);
        let n = self.int(name, value)?;
        if n < 0 {
            let shown = shown.unwrap_or_default();
            self.report(
                name,
                format!("{} is a negative size (left out)", excerpt(&shown)),
            );
            return None;
        }
        Some(n)
    }

    /// A .NET TimeSpan text (`[-][d.]hh:mm:ss[.fffffff]`): kept when it parses to a
    /// non-negative span; anything else is left out and reported (the mapping then
    /// derives the duration from start and end).
    pub fn timespan(&mut self, name: &str, value: Option<Value>) -> Option<String> {
        match value? {
            Value::String(s) => match super::parse_dotnet_timespan(&s) {
                Some(ns) if ns >= 0 => Some(s),
                Some(_) => {
                    self.report(
                        name,
                        format!(
                            "{} is a negative duration (left out)",
                            excerpt(&Value::String(s).to_string())
                        ),
                    );
                    None
                }
                None if s.trim().is_empty() => None,
                None => {
                    // The shape may be right and only the size wrong (TimeSpan.MaxValue is
                    // more nanoseconds than 64 bits hold): say which.
                    let shaped = s
                        .trim()
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b".:-".contains(&b));
                    let why = if shaped {
                        "is out of range, or not a .NET TimeSpan [d.]hh:mm:ss[.fffffff]"
                    } else {
                        "is not a .NET TimeSpan [d.]hh:mm:ss[.fffffff]"
                    };
                    self.report(
                        name,
                        format!(
                            "{} {why} (left out)",
                            excerpt(&Value::String(s).to_string())
                        ),
                    );
                    None
                }
            },
            other => {
                self.report(
                    name,
                    format!(
                        "{} {} where a .NET TimeSpan text was expected (left out)",
                        kind(&other),
                        excerpt(&other.to_string())
                    ),
                );
                None
            }
        }
    }

    /// An essential id: a non-blank string (kept verbatim), or a number (used as its text,
    /// reported). Anything else makes the record [`Unusable`] (`"blank id"` when blank).
    pub fn id(&mut self, name: &str, value: Option<Value>) -> Result<String, Unusable> {
        match value {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(Unusable(format!("{}: blank id", self.path(name)))),
            Some(Value::Number(n)) => {
                let text = n.to_string();
                self.report(
                    name,
                    format!("a number where a text id was expected (used as \"{text}\")"),
                );
                Ok(text)
            }
            None => Err(Unusable(format!("{}: missing or null", self.path(name)))),
            Some(other) => Err(Unusable(format!(
                "{}: {} {} is not an id",
                self.path(name),
                kind(&other),
                excerpt(&other.to_string())
            ))),
        }
    }

    /// An id that becomes a URL path segment (a VB365 restore session's, a VDC job's or
    /// job session's): [`Self::id`], except that `.` and `..` are unusable. Every URL
    /// parser reads them as dot segments, percent-encoded or not, so the request would
    /// reach another endpoint (`/v8/RestoreSessions/../Events` is the change feed).
    pub fn path_id(&mut self, name: &str, value: Option<Value>) -> Result<String, Unusable> {
        let id = self.id(name, value)?;
        if matches!(id.trim(), "." | "..") {
            return Err(Unusable(format!(
                "{}: the id \"{}\" cannot be used in a URL path (it reads as a dot segment), so the record's details can't be requested",
                self.path(name),
                id.trim()
            )));
        }
        Ok(id)
    }

    /// A position (VB365 `order`): a non-negative whole number (an integral float or a
    /// string holding one is used and reported). Anything else, missing included, is
    /// reported and left out: the record is still placed (by its id and its place in the
    /// listing), so an odd position costs no evidence.
    pub fn order(&mut self, name: &str, value: Option<Value>) -> Option<i64> {
        let Some(value) = value else {
            self.report(name, "missing or null");
            return None;
        };
        match whole_number(&value) {
            Ok((n, _)) if n < 0 => {
                self.report(name, format!("{n} is negative; positions count from 0"));
                None
            }
            Ok((n, exact)) => {
                if !exact {
                    self.report(
                        name,
                        format!(
                            "{} {} where a whole number was expected (used as {n})",
                            kind(&value),
                            excerpt(&value.to_string())
                        ),
                    );
                }
                Some(n)
            }
            Err(why) => {
                self.report(name, why);
                None
            }
        }
    }
}

/// Parse one record (a JSON object) into its all-`Option<Value>` wire struct `W`.
///
/// Lenient where the value is still evidence, and reported on `fields` as a problem of
/// `record`: an object that repeats a key (serde refuses that) is read with the last value
/// of each key; a lone UTF-16 surrogate escape (`"\ud83d"`: half an emoji, cut by whatever
/// truncated a file name), which serde refuses in a string, is read as U+FFFD. Not JSON,
/// or not an object (serde's derived structs would read an array field by field, in
/// order, as if it were the record): [`Unusable`].
///
/// Takes text, not bytes: records come out of a page already checked to be UTF-8, and
/// serde_json's `&str` reader does not check every string again (2.4 % of a VB365 run's
/// instructions).
pub fn read_record<W: serde::de::DeserializeOwned>(
    raw: &str,
    fields: &mut Fields,
) -> Result<W, Unusable> {
    let object = raw.trim_start().starts_with('{');
    let strict = if object {
        match serde_json::from_str::<W>(raw) {
            Ok(wire) => return Ok(wire),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    let (value, repaired) = match serde_json::from_str::<Value>(raw) {
        Ok(value) => (value, None),
        Err(e) => {
            // What serde_json refuses in text that is still evidence, each made readable.
            let surrogates = replace_lone_surrogates(raw);
            let tamed = tame_values(surrogates.as_deref().unwrap_or(raw));
            let mut done = Vec::new();
            if surrogates.is_some() {
                done.push("each lone UTF-16 surrogate escape was read as U+FFFD");
            }
            if tamed.is_some() {
                done.push(TAMED);
            }
            let parsed = tamed
                .or(surrogates)
                .and_then(|text| serde_json::from_str::<Value>(&text).ok());
            match parsed {
                Some(value) => (value, Some(format!("{e}: {}", done.join("; ")))),
                None => {
                    return Err(Unusable(format!(
                        "{}: not JSON: {e}",
                        fields.path("record")
                    )));
                }
            }
        }
    };
    let Value::Object(map) = value else {
        return Err(Unusable(format!(
            "{}: {} where a JSON object was expected",
            fields.path("record"),
            kind(&value)
        )));
    };
    let wire = serde_json::from_value::<W>(Value::Object(map))
        .map_err(|e| Unusable(format!("{}: {e}", fields.path("record"))))?;
    match repaired {
        Some(why) => fields.report("record", why),
        None => {
            if let Some(strict) = strict {
                fields.report(
                    "record",
                    format!("{strict} (the last value of each repeated key was used)"),
                );
            }
        }
    }
    Ok(wire)
}

/// Deepest nesting [`tame_values`] leaves as JSON: serde_json refuses more than 128 levels,
/// and the wire structs add a few of their own.
const MAX_DEPTH: usize = 100;

/// What [`read_record`] reports when [`tame_values`] changed a record.
const TAMED: &str = "numbers beyond the range of a 64-bit float, and values nested deeper than 100 levels, were kept as their JSON text";

/// `text` with the two kinds of valid JSON serde_json refuses turned into strings of their
/// own text: a number beyond the range of an `f64` (`1e400`; RFC 8259 lets a parser refuse
/// it, and serde_json does), and a value nested deeper than [`MAX_DEPTH`] (serde_json's
/// recursion limit). A field read as a number then reports the string, and a text field
/// keeps the value's text. `None` when there is neither, or when the text is not JSON that
/// this scan can follow (an unbalanced bracket or quote): the caller's error stands.
pub fn tame_values(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i)?,
            b'{' | b'[' if depth == MAX_DEPTH => {
                let end = value_end(bytes, i)?;
                out.push_str(&text[copied..i]);
                out.push_str(&serde_json::to_string(&text[i..end]).ok()?);
                copied = end;
                changed = true;
                i = end;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |n| i + n);
                let number = &text[i..end];
                if number.parse::<f64>().is_ok_and(f64::is_infinite) {
                    out.push_str(&text[copied..i]);
                    out.push('"');
                    out.push_str(number);
                    out.push('"');
                    copied = end;
                    changed = true;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The index after the string that opens at `bytes[start]` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the object or array that opens at `bytes[start]`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = string_end(bytes, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `text` with every `\uXXXX` escape of a UTF-16 surrogate that is not half of a
/// high-low pair replaced by `\uFFFD`; `None` when there is none. Works on JSON text
/// (escapes only occur inside strings, and `\\` is skipped as a pair).
pub fn replace_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(u) if is_high(u) && unit(i + 6).is_some_and(is_low) => i += 12,
            Some(u) if is_high(u) || is_low(u) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..i]);
                o.push_str("\\uFFFD");
                i += 6;
                copied = i;
            }
            // Any other escape, `\\` included: skip the pair.
            _ => i += 2,
        }
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// Read a wire time. Accepted: RFC 3339 with any offset and 0–9 (or more, cut to
/// nanoseconds) fraction digits; ISO 8601's offset without a colon (`+0200`); the same without an offset (or with a space for `T`),
/// read as UTC (`assumed_utc`). `.NET`'s `DateTime.MinValue` (`0001-01-01T00:00:00`, with or
/// without an offset) is [`WireTime::NoValue`]. Refused, with the reason: anything that is
/// not a string or not a time, and a time whose year in UTC falls outside 0001–9999 (RFC
/// 3339 can't write other years; year 0000 can, but ISO 8601 reads it as 1 BC and most
/// date-time checkers, e.g. Python's, refuse it).
pub fn read_time(value: &Value) -> Result<WireTime, String> {
    match value {
        Value::String(text) => read_time_text(text),
        other => Err(format!(
            "{} {} where a time was expected",
            kind(other),
            excerpt(&other.to_string())
        )),
    }
}

/// [`read_time`] of a string.
pub fn read_time_text(text: &str) -> Result<WireTime, String> {
    let shown = || excerpt(&Value::String(text.to_string()).to_string());
    let trimmed = text.trim();
    let (time, assumed_utc) = if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        (t, false)
    } else if let Some(t) = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
        .iter()
        .find_map(|f| DateTime::parse_from_str(trimmed, f).ok())
    {
        // ISO 8601 with an offset RFC 3339 doesn't allow (`+0200`): exact all the same.
        (t, false)
    } else if let Some(naive) = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(trimmed, f).ok())
    {
        (naive.and_utc().fixed_offset(), true)
    } else {
        return Err(format!("{} is not an RFC 3339 time", shown()));
    };
    // chrono keeps a leap second as second 59 with 1e9 or more nanoseconds, in any minute.
    let leap_second = time.nanosecond() >= 1_000_000_000;
    let time = if leap_second {
        time.with_nanosecond(time.nanosecond() - 1_000_000_000)
            .and_then(|t| t.checked_add_signed(chrono::TimeDelta::seconds(1)))
            .ok_or_else(|| format!("{} is not a usable time", shown()))?
    } else {
        time
    };
    let local = time.naive_local();
    if local.year() == 1
        && local.ordinal() == 1
        && local.num_seconds_from_midnight() == 0
        && local.nanosecond() == 0
    {
        return Ok(WireTime::NoValue);
    }
    let year = time.with_timezone(&Utc).year();
    if !(1..=9999).contains(&year) {
        return Err(format!(
            "time {} is outside years 0001-9999 in UTC",
            shown()
        ));
    }
    Ok(WireTime::At {
        time,
        assumed_utc,
        leap_second,
    })
}

/// `(n, exact)`: an integer (exact), or an integral float or a string holding an integer
/// (not exact). Else why not.
fn whole_number(value: &Value) -> Result<(i64, bool), String> {
    let shown = || excerpt(&value.to_string());
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok((i, true));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok((f as i64, false)),
                Some(f) if f.is_finite() && f.abs() < 9.0e18 => {
                    Err(format!("{} is not a whole number", shown()))
                }
                _ => Err(format!("{} is out of range", shown())),
            }
        }
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok((i, false)),
            Err(_) => Err(format!(
                "the string {} where a whole number was expected",
                shown()
            )),
        },
        other => Err(format!(
            "{} {} where a whole number was expected",
            kind(other),
            shown()
        )),
    }
}

/// A finite, in-range number with a fraction (a JSON number, or a string holding one).
fn fraction(value: &Value) -> Option<f64> {
    let f = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (f.is_finite() && f.abs() < 9.0e18 && f.fract() != 0.0).then_some(f)
}

/// "a number", "an object", ... for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text`, cut to [`EXCERPT_CHARS`] characters (marked with `…`).
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn times_with_offsets_fractions_or_none() {
        let cases: &[(&str, &str, bool)] = &[
            ("2025-03-04T08:00:00Z", "2025-03-04T08:00:00Z", false),
            ("2025-03-04T11:00:00+03:00", "2025-03-04T08:00:00Z", false),
            (
                "2025-03-04T08:00:00.1234567Z",
                "2025-03-04T08:00:00.1234567Z",
                false,
            ),
            (
                "2025-03-04T08:00:00.123456789-01:30",
                "2025-03-04T09:30:00.123456789Z",
                false,
            ),
            ("2025-03-04T08:00:00", "2025-03-04T08:00:00Z", true),
            (
                "2025-03-04T08:00:00.1000000",
                "2025-03-04T08:00:00.1Z",
                true,
            ),
            ("2025-03-04 08:00:00.5", "2025-03-04T08:00:00.5Z", true),
            (" 2025-03-04T08:00:00Z ", "2025-03-04T08:00:00Z", false),
            ("0001-01-01T05:00:00+05:00", "0001-01-01T00:00:00Z", false),
            ("2025-03-04T10:00:00+0200", "2025-03-04T08:00:00Z", false),
            (
                "2025-03-04 10:00:00.25-0130",
                "2025-03-04T11:30:00.25Z",
                false,
            ),
        ];
        for (input, want, assumed) in cases {
            match read_time(&json!(input)) {
                Ok(WireTime::At {
                    time,
                    assumed_utc,
                    leap_second: false,
                }) => {
                    assert_eq!(time, at(want), "{input}");
                    assert_eq!(assumed_utc, *assumed, "{input}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_leap_second_is_read_as_the_next_minute_and_reported() {
        for (input, want) in [
            ("2025-03-04T08:00:60Z", "2025-03-04T08:01:00Z"),
            ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
            ("2025-03-04T08:00:60.5+05:30", "2025-03-04T02:31:00.5Z"),
        ] {
            match read_time(&json!(input)) {
                Ok(WireTime::At {
                    time,
                    leap_second: true,
                    ..
                }) => assert_eq!(time, at(want), "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let mut f = Fields::new("restoreEvent");
        let t = f.time("startTime", Some(json!("2025-03-04T08:00:60Z")), true);
        assert_eq!(t, Some(at("2025-03-04T08:01:00Z")));
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert_eq!(f.problems[0].field, "restoreEvent.startTime");
        assert!(f.problems[0].detail.contains("second 60"));
        // Every output time is written from the normalised value: no second 60.
        let t = t.unwrap().with_timezone(&Utc);
        assert!(t.nanosecond() < 1_000_000_000 && t.second() == 0, "{t:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Wire {
        id: Option<Value>,
        name: Option<Value>,
    }

    #[test]
    fn a_record_must_be_an_object_even_where_serde_would_take_an_array() {
        for raw in [r#"["arr-ev","Restore"]"#, " [1,2,3]", r#""text""#, "42"] {
            let mut f = Fields::new("restoreEvent");
            let err = read_record::<Wire>(raw, &mut f).unwrap_err();
            assert!(err.0.starts_with("restoreEvent.record: "), "{err}");
            assert!(err.0.contains("where a JSON object was expected"), "{err}");
        }
    }

    #[test]
    fn a_lone_surrogate_escape_costs_nothing_but_that_character() {
        let mut f = Fields::new("restoreSession");
        let raw =
            r#"{"id":"s-1","name":"Restore \ud83d","details":"\udc00 tail \ud83d\ude00 \\ud800"}"#;
        let wire: Wire = read_record(raw, &mut f).unwrap();
        assert_eq!(wire.id, Some(json!("s-1")));
        assert_eq!(wire.name, Some(json!("Restore \u{FFFD}")));
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert_eq!(f.problems[0].field, "restoreSession.record");
        assert!(f.problems[0].detail.contains("U+FFFD"), "{:?}", f.problems);
        assert_eq!(
            replace_lone_surrogates(r#""\udc00 tail \ud83d\ude00 \\ud800 \ud800""#).as_deref(),
            Some(r#""\uFFFD tail \ud83d\ude00 \\ud800 \uFFFD""#)
        );
        assert_eq!(replace_lone_surrogates(r#"{"a":"\ud83d\ude00"}"#), None);
        // Still not JSON after the repair: unusable, as before.
        let mut f = Fields::new("restoreSession");
        assert!(read_record::<Wire>(r#"{"id":"\ud83d"#, &mut f).is_err());
    }

    #[test]
    fn numbers_beyond_f64_and_deep_nesting_cost_only_their_own_field() {
        #[derive(serde::Deserialize)]
        struct Wire {
            id: Option<Value>,
            name: Option<Value>,
            details: Option<Value>,
        }
        let deep = format!("{}1{}", "[".repeat(250), "]".repeat(250));
        let raw = format!(
            r#"{{"id":"s-1","name":1e400,"details":{deep},"state":"-1.8e309 \"1e400\"","etag":-1e400,"order":[1e-400,12]}}"#
        );
        let mut f = Fields::new("restoreSession");
        let wire: Wire = read_record(&raw, &mut f).unwrap();
        assert_eq!(wire.id, Some(json!("s-1")));
        assert_eq!(wire.name, Some(json!("1e400")));
        // The deep value is kept: JSON down to the depth limit, its text below it.
        let mut details = wire.details.unwrap();
        let mut levels = 0;
        while let Value::Array(mut inner) = details {
            details = inner.pop().unwrap();
            levels += 1;
        }
        assert_eq!(levels, MAX_DEPTH - 1);
        let rest = format!("{}1{}", "[".repeat(250 - levels), "]".repeat(250 - levels));
        assert_eq!(details, json!(rest));
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert!(f.problems[0].detail.contains("kept as their JSON text"));
        // Strings, tiny numbers and ordinary JSON are left alone.
        assert_eq!(
            tame_values(r#"{"a":"1e400","b":[1e-400,-0,9223372036854775808]}"#),
            None
        );
        assert_eq!(
            tame_values(r#"{"a":"x\"1e400","b":1E+999}"#).as_deref(),
            Some(r#"{"a":"x\"1e400","b":"1E+999"}"#)
        );
        // Unbalanced text is not guessed at.
        assert_eq!(
            tame_values(r#"{"a":1e400"#).as_deref(),
            Some(r#"{"a":"1e400""#)
        );
        assert_eq!(tame_values(&"[".repeat(300)), None);
        // Lone surrogates and a huge number in one record: both repaired, one report.
        let mut f = Fields::new("restoreSession");
        let wire: Wire =
            read_record(r#"{"id":"s-2","name":"\ud83d","etag":1e999}"#, &mut f).unwrap();
        assert_eq!(wire.name, Some(json!("\u{FFFD}")));
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert!(f.problems[0].detail.contains("U+FFFD") && f.problems[0].detail.contains("64-bit"));
    }

    #[test]
    fn min_value_is_no_value_with_or_without_offset() {
        for input in [
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00.0000000",
            "0001-01-01T00:00:00.0000000Z",
            "0001-01-01T00:00:00+00:00",
            "0001-01-01T00:00:00+03:00",
            "0001-01-01T00:00:00-05:00",
        ] {
            assert_eq!(read_time(&json!(input)), Ok(WireTime::NoValue), "{input}");
        }
        assert!(matches!(
            read_time(&json!("0001-01-01T00:00:01Z")),
            Ok(WireTime::At { .. })
        ));
    }

    #[test]
    fn unusable_times_say_why() {
        for (input, says) in [
            (json!("0000-01-01T00:00:00+05:00"), "outside years"),
            // Year 0000 itself: RFC 3339 allows it, most date-time checkers do not.
            (json!("0000-12-31T23:59:59+01:00"), "outside years"),
            (json!("0000-06-01T00:00:00Z"), "outside years"),
            (json!("9999-12-31T23:00:00-05:00"), "outside years"),
            (json!("yesterday"), "not an RFC 3339 time"),
            (json!(""), "not an RFC 3339 time"),
            (json!(1_741_000_000), "a number"),
            (json!({"t": 1}), "an object"),
        ] {
            let err = read_time(&input).unwrap_err();
            assert!(err.contains(says), "{input}: {err}");
        }
    }

    /// A blank time is no value, like null: not odd when optional, missing when required.
    #[test]
    fn blank_times_are_no_value() {
        let mut f = Fields::new("restoreEvent");
        for blank in [json!(""), json!("   "), json!("\t")] {
            assert_eq!(f.time("endTime", Some(blank), false), None);
        }
        assert!(f.problems().is_empty(), "{:?}", f.problems());
        assert_eq!(f.time("startTime", Some(json!(" ")), true), None);
        assert_eq!(f.problems().len(), 1);
        assert!(
            f.problems()[0].detail.contains("missing"),
            "{:?}",
            f.problems()
        );
    }

    #[test]
    fn text_keeps_strings_and_reports_other_types() {
        let mut f = Fields::new("restoreSession");
        assert_eq!(
            f.text("name", Some(json!(" a\u{0}\u{202e}b ")), false),
            Some(" a\u{0}\u{202e}b ".into())
        );
        assert_eq!(f.text("name", None, false), None);
        assert!(f.problems().is_empty());
        assert_eq!(
            f.text("reason", Some(json!({"code": 3})), false),
            Some(r#"{"code":3}"#.into())
        );
        assert_eq!(f.text("type", Some(json!(1)), true), Some("1".into()));
        assert_eq!(f.text("state", None, true), None);
        let fields: Vec<&str> = f.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "restoreSession.reason",
                "restoreSession.type",
                "restoreSession.state"
            ]
        );
        assert!(f.problems()[0].detail.contains("an object"));
    }

    #[test]
    fn keywords_report_unknown_values_only() {
        let mut f = Fields::new("restoreEvent");
        let known = ["Success", "Failed"];
        assert_eq!(
            f.keyword("status", Some(json!(" success ")), &known, true),
            Some(" success ".into())
        );
        assert_eq!(
            f.keyword("status", Some(json!("")), &known, true),
            Some(String::new())
        );
        assert!(f.problems().is_empty());
        assert_eq!(
            f.keyword("status", Some(json!("Partial")), &known, true),
            Some("Partial".into())
        );
        assert_eq!(f.problems().len(), 1);
        assert!(f.problems()[0].detail.contains("unknown value \"Partial\""));
    }

    #[test]
    fn numbers_sizes_and_orders() {
        let mut f = Fields::new("restoreEvent");
        assert_eq!(f.size("itemSizeBytes", Some(json!(48213))), Some(48213));
        assert!(f.problems().is_empty());
        assert_eq!(f.size("itemSizeBytes", Some(json!("12 KB"))), None);
        assert_eq!(f.size("itemSizeBytes", Some(json!(780058.5))), None);
        assert_eq!(f.size("itemSizeBytes", Some(json!(-1))), None);
        assert_eq!(f.size("itemSizeBytes", Some(json!("48213"))), Some(48213));
        assert_eq!(f.size("itemSizeBytes", Some(json!(12.0))), Some(12));
        assert_eq!(f.size("itemSizeBytes", Some(json!(1e300))), None);
        assert_eq!(f.problems().len(), 6);
        assert_eq!(f.rounded("progress", Some(json!(40.5))), Some(41));
        assert_eq!(f.rounded("progress", Some(json!("40.4"))), Some(40));
        assert_eq!(f.rounded("progress", Some(json!("40%"))), None);

        let mut f = Fields::new("restoreEvent");
        assert_eq!(f.order("order", Some(json!(3))), Some(3));
        assert_eq!(f.order("order", Some(json!("3"))), Some(3));
        assert_eq!(f.order("order", Some(json!(3.0))), Some(3));
        assert_eq!(f.problems().len(), 2);
        for (n, bad) in [json!("#12"), json!(3.5), json!(-1), json!(null), json!([])]
            .into_iter()
            .enumerate()
        {
            let value = (!bad.is_null()).then_some(bad.clone());
            assert_eq!(f.order("order", value), None, "{bad}");
            assert_eq!(f.problems().len(), 3 + n, "{bad} is reported");
        }
    }

    #[test]
    fn ids_are_essential() {
        let mut f = Fields::new("restoreEvent");
        assert_eq!(f.id("id", Some(json!("e-1"))), Ok("e-1".into()));
        assert_eq!(f.id("id", Some(json!(42))), Ok("42".into()));
        assert_eq!(f.problems().len(), 1);
        assert!(
            f.id("id", Some(json!(" ")))
                .unwrap_err()
                .0
                .contains("blank id")
        );
        assert!(f.id("id", None).is_err());
        assert_eq!(f.id("id", Some(json!(".."))), Ok("..".into()));
        for dots in [".", "..", " .. "] {
            let err = f.path_id("id", Some(json!(dots))).unwrap_err();
            assert!(err.0.contains("dot segment"), "{err:?}");
        }
        assert_eq!(f.path_id("id", Some(json!("..."))), Ok("...".into()));
        assert!(f.id("id", Some(json!({"a": 1}))).is_err());
    }

    #[test]
    fn timespans() {
        let mut f = Fields::new("restoreEvent");
        assert_eq!(
            f.timespan("duration", Some(json!("1.02:03:04.5000000"))),
            Some("1.02:03:04.5000000".into())
        );
        assert_eq!(f.timespan("duration", None), None);
        assert_eq!(f.timespan("duration", Some(json!(""))), None);
        assert!(f.problems().is_empty());
        assert_eq!(f.timespan("duration", Some(json!("soon"))), None);
        assert_eq!(f.timespan("duration", Some(json!("-00:00:01"))), None);
        assert_eq!(f.timespan("duration", Some(json!(45))), None);
        assert_eq!(f.problems().len(), 3);
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
