//! Mapping: pure functions from Veeam's records to the output [`Event`](crate::event::Event).
//!
//! Nothing in here does I/O, reads the clock or logs: every function takes what it needs
//! (including "when was this fetched") through [`MapContext`], so mapping is testable from
//! JSON fixtures alone. Sources deserialize the wire records (the `Raw*` types below each
//! submodule) and hand them here; the pipeline calls the mapping.
//!
//! This file also owns the small helpers every mapping shares: turning Veeam's optional,
//! often-empty strings into absent fields ([`non_empty`]), .NET `TimeSpan` durations
//! ([`parse_dotnet_timespan`]), time arithmetic ([`to_utc`], [`nanos_between`]) and
//! de-duplicated `related.*` lists ([`push_unique`]), and how a record's odd values are
//! reported in its event ([`degraded`]).

pub mod client_host;
#[cfg(test)]
mod fixtures;
mod record;
pub mod vbo;
pub mod vdc;
pub mod wire_checks;

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};

use crate::event::{ErrorField, Event};
pub use record::Record;
use wire_checks::{Problem, TAG_ASSUMED_UTC, TAG_DEGRADED, TAG_TIME_MISSING};

/// Everything a mapping needs besides the record itself.
#[derive(Debug, Clone)]
pub struct MapContext<'a> {
    /// Config id of the source (`labels.source_id`).
    pub source_id: &'a str,
    /// Host of the source URL (`observer.hostname`).
    pub observer_hostname: &'a str,
    /// When the record was fetched (`event.created`).
    pub fetched_at: DateTime<Utc>,
}

/// `Some(owned string)` unless the value is absent, empty or only whitespace.
///
/// The value itself is kept verbatim (not trimmed): it is Veeam's data, and SIEM searches
/// should find exactly what the Veeam console shows.
pub fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|s| has_text(s)).map(str::to_string)
}

/// [`non_empty`] of a string the caller owns (kept, not copied).
pub fn non_empty_owned(value: Option<String>) -> Option<String> {
    value.filter(|s| has_text(s))
}

/// Not only whitespace (`!s.trim().is_empty()`, stopping at the first other character).
fn has_text(s: &str) -> bool {
    s.contains(|c: char| !c.is_whitespace())
}

/// Convert any RFC 3339 offset Veeam sends (old servers used local offsets) to UTC.
pub fn to_utc(t: DateTime<FixedOffset>) -> DateTime<Utc> {
    t.with_timezone(&Utc)
}

/// Nanoseconds from `start` to `end`, or `None` when `end` is before `start` or the span
/// does not fit in an `i64` (about 292 years).
pub fn nanos_between(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<i64> {
    (end - start).num_nanoseconds().filter(|n| *n >= 0)
}

/// Push `value` onto `list` unless it is empty or already there (exact match).
pub fn push_unique(list: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

/// What an event says about its record's odd values: nothing for a clean record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Degraded {
    /// `tags`: [`TAG_DEGRADED`], plus [`TAG_ASSUMED_UTC`] when a time had no offset and
    /// [`TAG_TIME_MISSING`] when the record had no usable time of its own.
    pub tags: Vec<String>,
    /// `error.message`: every problem, `<field>: <what was wrong and done>`, `; `-separated.
    pub error: Option<ErrorField>,
    /// `veeam.degraded_fields`: each odd field once, in the order found.
    pub fields: Vec<String>,
}

/// Turn the problems of an event's records (session first, then the record itself) into
/// what the event reports.
pub fn degraded<'p>(problems: impl Iterator<Item = &'p Problem>) -> Degraded {
    let mut out = Degraded::default();
    let mut details = Vec::new();
    let mut assumed_utc = false;
    let mut time_missing = false;
    for problem in problems {
        push_unique(&mut out.fields, &problem.field);
        details.push(problem.to_string());
        assumed_utc |= problem.assumed_utc;
        time_missing |= problem.time_missing;
    }
    if details.is_empty() {
        return out;
    }
    out.tags.push(TAG_DEGRADED.to_string());
    if assumed_utc {
        out.tags.push(TAG_ASSUMED_UTC.to_string());
    }
    if time_missing {
        out.tags.push(TAG_TIME_MISSING.to_string());
    }
    out.error = Some(ErrorField {
        message: format!(
            "Veeam sent odd values; the record was shipped with them left out or kept as text: {}",
            details.join("; ")
        ),
    });
    out
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Parse a .NET `TimeSpan` in its invariant ("c") format, `[-][d.]hh:mm:ss[.fffffff]`, into
/// nanoseconds. Returns `None` for anything else: no panics, no guessing.
///
/// Tolerated beyond the strict format: surrounding whitespace, a one-digit hour, and up to
/// nine fraction digits (.NET writes seven, i.e. 100 ns ticks). Hours must be below 24 and
/// minutes/seconds below 60, as .NET itself requires when days are present or not.
///
/// ```
/// use veeam_siem::map::parse_dotnet_timespan;
/// assert_eq!(parse_dotnet_timespan("00:00:00.0446928"), Some(44_692_800));
/// assert_eq!(parse_dotnet_timespan("1.02:03:04.5"), Some(93_784_500_000_000));
/// assert_eq!(parse_dotnet_timespan("soon"), None);
/// ```
pub fn parse_dotnet_timespan(s: &str) -> Option<i64> {
    // Read as bytes (every separator is ASCII); this runs twice for every VB365 event.
    // `trim` is Unicode-aware, so it only runs when an end is not plain ASCII.
    let plain = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii() && !b.is_ascii_whitespace());
    let s = if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) {
        s.as_bytes()
    } else {
        s.trim().as_bytes()
    };
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let find = |s: &[u8], c: u8| s.iter().position(|&b| b == c);

    // Split "d.hh:mm:ss.fffffff" into days / clock / fraction. A '.' before the first ':'
    // separates days; a '.' after the last ':' starts the fraction.
    let first_colon = find(s, b':')?;
    let (days, clock_and_fraction) = match find(&s[..first_colon], b'.') {
        Some(dot) => (Some(&s[..dot]), &s[dot + 1..]),
        None => (None, s),
    };
    let last_colon = clock_and_fraction.iter().rposition(|&b| b == b':')?;
    let (clock, fraction) = match find(&clock_and_fraction[last_colon..], b'.') {
        Some(dot) => {
            let dot = last_colon + dot;
            (
                &clock_and_fraction[..dot],
                Some(&clock_and_fraction[dot + 1..]),
            )
        }
        None => (clock_and_fraction, None),
    };

    let mut parts = clock.split(|&b| b == b':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let hours = digits(h, 1, 2)?;
    let minutes = digits(m, 2, 2)?;
    let seconds = digits(sec, 2, 2)?;
    if hours >= 24 || minutes >= 60 || seconds >= 60 {
        return None;
    }
    let days = match days {
        Some(d) => digits(d, 1, 8)?,
        None => 0,
    };
    let fraction_nanos = match fraction {
        Some(f) => {
            let value = digits(f, 1, 9)?;
            // Scale "5" to 500_000_000, "0446928" to 044_692_800, ...
            let scale = 10_i64.checked_pow(9 - u32::try_from(f.len()).ok()?)?;
            value.checked_mul(scale)?
        }
        None => 0,
    };

    let total_secs = days
        .checked_mul(86_400)?
        .checked_add(hours * 3_600 + minutes * 60 + seconds)?;
    let nanos = total_secs
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(fraction_nanos)?;
    Some(if negative { -nanos } else { nanos })
}

/// An unsigned decimal of `min..=max` ASCII digits (no sign, no spaces).
fn digits(s: &[u8], min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max {
        return None;
    }
    s.iter().try_fold(0i64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Maps the records of one batch in order, mapping what the events of one VB365 restore
/// session share once per run of records of that session ([`vbo::SessionParts`]) rather
/// than once per event. The result is exactly [`map_record`]'s.
#[derive(Debug)]
pub struct Mapper<'a> {
    ctx: MapContext<'a>,
    /// The last session seen (kept alive, so pointer equality means the same session).
    vbo_session: Option<(Arc<vbo::RawRestoreSession>, vbo::SessionParts)>,
}

impl<'a> Mapper<'a> {
    pub fn new(ctx: MapContext<'a>) -> Self {
        Mapper {
            ctx,
            vbo_session: None,
        }
    }

    /// Map one record (see [`map_record`]); its strings move into the event.
    pub fn map(&mut self, record: Record) -> Event {
        match record {
            Record::VboEvent {
                session,
                event,
                original,
            } => {
                if self
                    .vbo_session
                    .as_ref()
                    .is_some_and(|(last, _)| !Arc::ptr_eq(last, &session))
                {
                    self.vbo_session = None;
                }
                let ctx = &self.ctx;
                let (_, parts) = self.vbo_session.get_or_insert_with(|| {
                    (session.clone(), vbo::SessionParts::new(ctx, &session))
                });
                vbo::map_restore_event_with(ctx, parts, &session, event, original.map(String::from))
            }
            Record::VdcLog { .. } => map_record(&self.ctx, &record),
        }
    }
}

/// Map any fetched record to its output event (the one dispatch point for every source).
pub fn map_record(ctx: &MapContext<'_>, record: &Record) -> Event {
    match record {
        Record::VboEvent {
            session,
            event,
            original,
        } => vbo::map_restore_event(ctx, session, event, original.as_deref()),
        Record::VdcLog {
            job,
            session,
            entry,
            index,
            original,
        } => vdc::map_log_entry(ctx, job, session, entry, *index, original.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespan_valid_forms() {
        let cases: &[(&str, i64)] = &[
            ("00:00:00", 0),
            ("00:00:00.0446928", 44_692_800),
            ("00:00:00.0450000", 45_000_000),
            (
                "00:09:06.3493680",
                (9 * 60 + 6) * NANOS_PER_SEC + 349_368_000,
            ),
            ("01:00:00", 3_600 * NANOS_PER_SEC),
            ("23:59:59.9999999", 86_399 * NANOS_PER_SEC + 999_999_900),
            (
                "1.02:03:04.5",
                (86_400 + 2 * 3_600 + 3 * 60 + 4) * NANOS_PER_SEC + 500_000_000,
            ),
            ("3.00:00:00", 3 * 86_400 * NANOS_PER_SEC),
            ("0.00:00:01", NANOS_PER_SEC),
            ("1:02:03", (3_600 + 2 * 60 + 3) * NANOS_PER_SEC),
            ("  00:00:01  ", NANOS_PER_SEC),
            ("00:00:00.123456789", 123_456_789),
            ("-00:00:01.5", -1_500_000_000),
            ("-1.00:00:00", -86_400 * NANOS_PER_SEC),
            // The largest day count whose nanoseconds still fit in an i64.
            ("106751.00:00:00", 106_751 * 86_400 * NANOS_PER_SEC),
        ];
        for (input, want) in cases {
            assert_eq!(parse_dotnet_timespan(input), Some(*want), "input {input:?}");
        }
    }

    #[test]
    fn timespan_garbage() {
        for input in [
            "",
            " ",
            "garbage",
            "00:00",
            "00:00:00:00",
            "24:00:00",
            "00:60:00",
            "00:00:60",
            "0:0:0",
            "00:00:00.",
            "00:00:00.1234567890",
            "00:00:00.12a",
            "a.00:00:00",
            ".00:00:00",
            "1..00:00:00",
            "+00:00:01",
            "--00:00:01",
            "00 :00:00",
            "00:-1:00",
            "P1D",
            "1.5",
            "１:00:00",
            "00:00:00Z",
            // TimeSpan.MaxValue: valid .NET, but overflows i64 nanoseconds.
            "10675199.02:48:05.4775807",
            "99999999.23:59:59.9999999",
            ":::",
            "..:",
        ] {
            assert_eq!(parse_dotnet_timespan(input), None, "input {input:?}");
        }
    }

    #[test]
    fn timespan_never_panics_on_odd_unicode() {
        for input in [
            "é:00:00",
            "00:é:00",
            "00:00:é",
            "00:00:00.é",
            "é.00:00:00",
            "🦀",
        ] {
            assert_eq!(parse_dotnet_timespan(input), None, "input {input:?}");
        }
    }

    #[test]
    fn non_empty_drops_blank() {
        assert_eq!(non_empty(None), None);
        assert_eq!(non_empty(Some("")), None);
        assert_eq!(non_empty(Some(" \t\n")), None);
        assert_eq!(non_empty(Some(" x ")), Some(" x ".to_string()));
    }

    #[test]
    fn nanos_between_rejects_negative() {
        let a = DateTime::parse_from_rfc3339("2025-03-04T08:00:00Z").unwrap();
        let b = DateTime::parse_from_rfc3339("2025-03-04T10:00:01+02:00").unwrap();
        assert_eq!(nanos_between(to_utc(a), to_utc(b)), Some(NANOS_PER_SEC));
        assert_eq!(nanos_between(to_utc(b), to_utc(a)), None);
    }

    #[test]
    fn push_unique_dedups_and_skips_empty() {
        let mut v = Vec::new();
        push_unique(&mut v, "a");
        push_unique(&mut v, "");
        push_unique(&mut v, "a");
        push_unique(&mut v, "b");
        assert_eq!(v, ["a", "b"]);
    }
}
