//! The syslog wire format: RFC 5424 (and RFC 3164 for legacy receivers) messages, their
//! framing (RFC 6587 octet counting or newline) and the fitting of a message into a UDP
//! datagram size. Pure functions of their inputs: no I/O, no clock, no logging, so every
//! rule here is unit- and property-tested (`cargo test --lib syslog::format`).
//!
//! Must not: know about connections or acknowledgement (that is `sinks::syslog`), or ever
//! produce a MSG that is not one complete, valid JSON event.
//!
//! An RFC 5424 message as produced here:
//!
//! ```text
//! <134>1 2025-03-04T08:00:00.123456Z vbo.example.net veeam-siem - VBO_RESTORE [meta sequenceId="7"][origin software="veeam-siem" swVersion="0.1.0"] {"@timestamp":...}
//! PRI  V TIMESTAMP (UTC, µs)          HOSTNAME        APP-NAME   PROCID MSGID  STRUCTURED-DATA                                                        MSG (JSON; BOM first with `bom`)
//! ```
//! Header fields are printable US-ASCII within the RFC's lengths (NILVALUE `-` when
//! empty); SD-PARAM values escape `"`, `\` and `]`. The MSG is the JSON event.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Deserialize;

use crate::event::{Event, Shared, outcome};

/// RFC 5424 NILVALUE.
pub const NILVALUE: &str = "-";
/// The UTF-8 byte order mark that RFC 5424 puts before a UTF-8 MSG.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";
/// RFC 5424 field length limits (§6).
pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
/// RFC 3164 §4.1.3: the TAG (our `app_name` there) is at most 32 characters.
pub const MAX_TAG_3164: usize = 32;
pub const MAX_MSGID: usize = 32;
pub const MAX_SD_NAME: usize = 32;
/// RFC 5424 §7.3.1: `sequenceId` runs 1..=2147483647, then wraps to 1.
pub const MAX_SEQUENCE_ID: u32 = 2_147_483_647;
/// The software name in `[origin software="…"]` and the default APP-NAME.
pub const SOFTWARE: &str = "veeam-siem";

/// Message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// How messages are delimited on a stream (RFC 6587). UDP carries one message per
/// datagram and needs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG`: the only framing RFC 5425 allows over TLS.
    #[default]
    OctetCounting,
    /// `SYSLOG-MSG LF`, with any LF inside the message written as `\n`.
    Newline,
}

macro_rules! named_codes {
    ($(#[$doc:meta])* $name:ident, $what:literal, [$($label:literal => $code:expr),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(u8);

        impl $name {
            /// Every accepted name with its code (aliases included).
            pub const NAMES: &'static [(&'static str, u8)] = &[$(($label, $code)),+];

            pub fn code(self) -> u8 {
                self.0
            }

            /// Look a name up (case-insensitively).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::NAMES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
                    .map(|&(_, c)| $name(c))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(name: String) -> Result<Self, String> {
                Self::from_name(&name).ok_or_else(|| {
                    let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "`{name}` is not a syslog {}; use one of: {}",
                        $what,
                        names.join(", ")
                    )
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = Self::NAMES
                    .iter()
                    .find(|(_, c)| *c == self.0)
                    .map_or("?", |(n, _)| *n);
                write!(f, "{name} ({})", self.0)
            }
        }
    };
}

named_codes!(
    /// Syslog facility (RFC 5424 §6.2.1), by its usual name.
    Facility,
    "facility",
    [
        "kern" => 0, "user" => 1, "mail" => 2, "daemon" => 3, "auth" => 4, "syslog" => 5,
        "lpr" => 6, "news" => 7, "uucp" => 8, "cron" => 9, "authpriv" => 10, "ftp" => 11,
        "ntp" => 12, "audit" => 13, "alert" => 14, "clock" => 15,
        "local0" => 16, "local1" => 17, "local2" => 18, "local3" => 19,
        "local4" => 20, "local5" => 21, "local6" => 22, "local7" => 23,
        "security" => 4,
    ]
);

named_codes!(
    /// Syslog severity (RFC 5424 §6.2.1), by its usual name.
    Severity,
    "severity",
    [
        "emerg" => 0, "alert" => 1, "crit" => 2, "err" => 3, "warning" => 4,
        "notice" => 5, "info" => 6, "debug" => 7,
        "emergency" => 0, "panic" => 0, "critical" => 2, "error" => 3, "warn" => 4,
        "informational" => 6,
    ]
);

impl Facility {
    pub const LOCAL0: Facility = Facility(16);
}

impl Severity {
    pub const ERR: Severity = Severity(3);
    pub const WARNING: Severity = Severity(4);
    pub const NOTICE: Severity = Severity(5);
    pub const INFO: Severity = Severity(6);
}

/// Severity per event outcome (`severity = { success = "info", ... }` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityMap {
    /// `event.outcome = "success"` (and no Veeam warning).
    pub success: Severity,
    /// `event.outcome = "failure"`.
    pub failure: Severity,
    /// `event.outcome = "unknown"` (e.g. still running).
    pub unknown: Severity,
    /// Veeam's own status is `Warning` (its outcome is `success`).
    pub warning: Severity,
}

impl Default for SeverityMap {
    fn default() -> Self {
        SeverityMap {
            success: Severity::INFO,
            failure: Severity::ERR,
            unknown: Severity::NOTICE,
            warning: Severity::WARNING,
        }
    }
}

impl SeverityMap {
    pub fn of(&self, event: &Event) -> Severity {
        let veeam_warning = [
            event
                .veeam
                .restore_event
                .as_ref()
                .and_then(|e| e.status.as_deref()),
            event.veeam.log.as_ref().and_then(|l| l.status.as_deref()),
        ]
        .into_iter()
        .flatten()
        .any(|s| s.trim().eq_ignore_ascii_case("warning"));
        match &*event.event.outcome {
            outcome::FAILURE => self.failure,
            outcome::SUCCESS if veeam_warning => self.warning,
            outcome::SUCCESS => self.success,
            _ => self.unknown,
        }
    }
}

/// Printable US-ASCII (`%d33-126`), at most `max` bytes; anything else becomes `_`; an
/// empty result is NILVALUE. For header fields whose value comes from data.
pub fn header_field(value: &str, max: usize) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic();
    if value.is_empty() {
        return Cow::Borrowed(NILVALUE);
    }
    if value.len() <= max && value.chars().all(ok) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .chars()
            .map(|c| if ok(c) { c } else { '_' })
            .take(max)
            .collect(),
    )
}

/// Whether `value` may be used as-is in a header field of at most `max` bytes (for
/// validating configured values: these are refused rather than rewritten).
pub fn is_header_value(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.chars().all(|c| c.is_ascii_graphic())
}

/// SD-NAME (`SD-ID`, `PARAM-NAME`): 1..=32 printable US-ASCII except `=`, SP, `]`, `"`.
pub fn is_sd_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SD_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` are preceded by `\`.
pub fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// MSGID for a dataset: `veeam.vbo_restore` → `VBO_RESTORE`, `veeam.vdc_job_log` →
/// `VDC_JOB_LOG`; any other dataset likewise (upper case, `[A-Z0-9_]`, ≤ 32 bytes).
pub fn msgid_for(dataset: &str) -> String {
    let name = dataset.strip_prefix("veeam.").unwrap_or(dataset);
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .take(MAX_MSGID)
        .collect();
    if id.is_empty() {
        NILVALUE.to_string()
    } else {
        id
    }
}

/// RFC 3339 in UTC with at most six fractional digits and `Z`; leap seconds (which RFC
/// 5424 forbids) are shown as `:59.999999`. A time outside years 0000–9999 (which RFC 5424
/// cannot write; an offset can push a valid Veeam time there) is NILVALUE.
pub fn timestamp_5424(t: DateTime<Utc>) -> String {
    if !(0..=9999).contains(&t.year()) {
        return NILVALUE.to_string();
    }
    let t = if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_999_000).unwrap_or(t)
    } else {
        t
    };
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3164 `Mmm dd hh:mm:ss` (day space-padded), in UTC (3164 has no zone).
pub fn timestamp_3164(t: DateTime<Utc>) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[t.month0() as usize % 12];
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        t.day(),
        t.hour(),
        t.minute(),
        t.second().min(59)
    )
}

/// Encodes events into syslog messages. Built once per sink from its config.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub format: Format,
    /// RFC 5424: the BOM before the JSON (MSG-UTF8); without it MSG is MSG-ANY.
    pub bom: bool,
    pub facility: Facility,
    pub severity: SeverityMap,
    /// Already validated (printable ASCII, ≤ 48).
    pub app_name: String,
    /// Overrides `observer.hostname` (already validated).
    pub hostname: Option<String>,
    /// `[origin swVersion]`.
    pub sw_version: String,
}

impl Encoder {
    pub fn pri(&self, event: &Event) -> u8 {
        self.facility.code() * 8 + self.severity.of(event).code()
    }

    /// Everything before the JSON: `<PRI>1 TS HOST APP - MSGID [SD] ` and, with `bom`, the
    /// BOM (RFC 5424), or
    /// `<PRI>Mmm dd hh:mm:ss HOST TAG: ` (RFC 3164).
    pub fn header(&self, event: &Event, sequence_id: u32, out: &mut Vec<u8>) {
        let host = match &self.hostname {
            Some(h) => Cow::Borrowed(h.as_str()),
            None => {
                // url's host_str writes IPv6 in brackets; syslog wants the bare address.
                let h = &*event.observer.hostname;
                let h = h
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(h);
                header_field(h, MAX_HOSTNAME)
            }
        };
        let pri = self.pri(event);
        let text = match self.format {
            Format::Rfc5424 => {
                let mut sd = String::with_capacity(96);
                sd.push_str("[meta sequenceId=\"");
                sd.push_str(&sequence_id.to_string());
                sd.push_str("\"][origin software=\"");
                escape_param_value(SOFTWARE, &mut sd);
                sd.push_str("\" swVersion=\"");
                escape_param_value(&self.sw_version, &mut sd);
                sd.push_str("\"]");
                format!(
                    "<{pri}>1 {ts} {host} {app} {procid} {msgid} {sd} ",
                    ts = timestamp_5424(event.timestamp),
                    app = self.app_name,
                    procid = NILVALUE,
                    msgid = msgid_for(&event.event.dataset),
                )
            }
            Format::Rfc3164 => format!(
                "<{pri}>{ts} {host} {app}: ",
                ts = timestamp_3164(event.timestamp),
                app = self.app_name,
            ),
        };
        out.extend_from_slice(text.as_bytes());
        if self.format == Format::Rfc5424 && self.bom {
            out.extend_from_slice(BOM);
        }
    }

    /// One whole message (no framing): header, then `json`.
    pub fn encode(&self, event: &Event, json: &str, sequence_id: u32, out: &mut Vec<u8>) {
        self.header(event, sequence_id, out);
        out.extend_from_slice(json.as_bytes());
    }
}

/// Append `msg` framed for a stream.
pub fn frame(msg: &[u8], framing: Framing, out: &mut Vec<u8>) {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
        }
        Framing::Newline => {
            // The JSON MSG never holds a raw LF (serde escapes control characters) and
            // header fields are printable ASCII; this keeps the framing sound regardless.
            for &b in msg {
                if b == b'\n' {
                    out.extend_from_slice(b"\\n");
                } else {
                    out.push(b);
                }
            }
            out.push(b'\n');
        }
    }
}

/// What [`fit`] did to make a message fit a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The message fits as it is.
    Whole,
    /// Free-text fields were cut (each ends with `…[truncated N bytes]`); `json` is the
    /// re-serialized, still schema-valid event.
    Truncated {
        json: String,
        fields: Vec<&'static str>,
    },
    /// Even with every cuttable field emptied the message needs `needed` bytes.
    TooLarge { needed: usize },
}

/// The fields [`fit`] may shorten, in order: the raw record, then free text that repeats
/// other fields (`message`), then descriptive text, and last the long item paths (cut at
/// the end, so their beginning still says what and where).
pub const CUTTABLE: [&str; 7] = [
    "event.original",
    "message",
    "veeam.restore_session.details",
    "veeam.restore_event.title",
    "veeam.restore_event.target",
    "veeam.restore_event.source",
    "veeam.restore_event.item_name",
];

fn cuttable_field<'a>(event: &'a mut Event, name: &str) -> Option<&'a mut String> {
    match name {
        "event.original" => event.event.original.as_mut(),
        "message" => Some(&mut event.message),
        "veeam.restore_session.details" => event
            .veeam
            .restore_session
            .as_mut()
            .and_then(|s| Shared::make_mut(s).details.as_mut()),
        "veeam.restore_event.title" => event
            .veeam
            .restore_event
            .as_mut()
            .and_then(|e| e.title.as_mut()),
        "veeam.restore_event.target" => event
            .veeam
            .restore_event
            .as_mut()
            .and_then(|e| e.target.as_mut()),
        "veeam.restore_event.source" => event
            .veeam
            .restore_event
            .as_mut()
            .and_then(|e| e.source.as_mut()),
        "veeam.restore_event.item_name" => event
            .veeam
            .restore_event
            .as_mut()
            .and_then(|e| e.item_name.as_mut()),
        _ => None,
    }
}

/// The truncation marker appended to a cut field.
pub fn truncation_marker(cut_bytes: usize) -> String {
    format!("…[truncated {cut_bytes} bytes]")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Make `event` fit in `max_bytes` once `header_len` bytes of header precede its JSON:
/// cut the [`CUTTABLE`] fields in order (`event.original` first, then `message`, ...),
/// each to the longest prefix that fits (on a character boundary) followed by
/// [`truncation_marker`]. The JSON stays one complete, valid event.
pub fn fit(event: &Event, json: &str, header_len: usize, max_bytes: usize) -> Fit {
    let budget = max_bytes.saturating_sub(header_len);
    if json.len() <= budget {
        return Fit::Whole;
    }
    let mut work = event.clone();
    let mut fields = Vec::new();
    let mut smallest = json.len();
    for name in CUTTABLE {
        if !fields.is_empty() {
            // An earlier field is cut down to its marker: maybe that is enough now.
            let Ok(j) = serde_json::to_string(&work) else {
                break;
            };
            if j.len() <= budget {
                return Fit::Truncated { json: j, fields };
            }
            smallest = smallest.min(j.len());
        }
        let full = match cuttable_field(&mut work, name) {
            Some(value) if !value.is_empty() => std::mem::take(value),
            _ => continue,
        };
        fields.push(name);
        // The event's JSON with `name` cut to its first `keep` bytes plus the marker.
        let mut candidate = |keep: usize| -> Option<String> {
            let keep = floor_char_boundary(&full, keep);
            let mut cut = full[..keep].to_string();
            cut.push_str(&truncation_marker(full.len() - keep));
            *cuttable_field(&mut work, name)? = cut;
            serde_json::to_string(&work).ok()
        };
        // Largest `keep` < full length whose JSON fits. The length grows with `keep`
        // (give or take a digit of the marker), so a binary search finds it or shows
        // that even `keep = 0` is too long.
        let (mut lo, mut hi) = (0usize, full.len());
        let mut best: Option<String> = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match candidate(mid) {
                Some(j) if j.len() <= budget => {
                    best = Some(j);
                    lo = mid + 1;
                }
                Some(j) => {
                    smallest = smallest.min(j.len());
                    hi = mid;
                }
                None => break,
            }
        }
        if let Some(json) = best {
            return Fit::Truncated { json, fields };
        }
        // Leave this field as the bare marker and cut the next one.
        if let Some(value) = cuttable_field(&mut work, name) {
            *value = truncation_marker(full.len());
        }
    }
    Fit::TooLarge {
        needed: header_len + smallest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(outcome: &str) -> Event {
        let json = serde_json::json!({
            "@timestamp": "2025-03-04T08:00:00.123456789Z",
            "ecs": {"version": "9.4.0"},
            "message": "Item restored",
            "event": {
                "kind": "event", "category": ["email"], "type": ["access"],
                "action": "item-restored", "outcome": outcome, "id": "e-1",
                "created": "2025-03-04T08:00:01Z", "dataset": "veeam.vbo_restore",
                "module": "veeam", "provider": "vbo",
                "original": "{\"raw\":\"record with ünïcödé and \\\"quotes\\\"\"}"
            },
            "observer": {"vendor": "Veeam", "product": "VB365", "hostname": "vbo.example.net"},
            "labels": {"source_id": "vbo_main"},
            "veeam": {"restore_event": {"order": 1, "status": "Success"}}
        });
        serde_json::from_value(json).unwrap()
    }

    fn encoder(format: Format) -> Encoder {
        Encoder {
            format,
            bom: false,
            facility: Facility::LOCAL0,
            severity: SeverityMap::default(),
            app_name: SOFTWARE.into(),
            hostname: None,
            sw_version: "0.1.0".into(),
        }
    }

    fn encode(enc: &Encoder, e: &Event, seq: u32) -> Vec<u8> {
        let json = serde_json::to_string(e).unwrap();
        let mut out = Vec::new();
        enc.encode(e, &json, seq, &mut out);
        out
    }

    #[test]
    fn rfc5424_message_is_exact() {
        let e = event("success");
        let msg = encode(&encoder(Format::Rfc5424), &e, 7);
        let json = serde_json::to_string(&e).unwrap();
        let head = b"<134>1 2025-03-04T08:00:00.123456Z vbo.example.net veeam-siem - VBO_RESTORE [meta sequenceId=\"7\"][origin software=\"veeam-siem\" swVersion=\"0.1.0\"] ".to_vec();
        let mut want = head.clone();
        want.extend_from_slice(json.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&msg),
            String::from_utf8_lossy(&want)
        );
        // `bom = true`: MSG-UTF8, the BOM first.
        let mut with_bom = encoder(Format::Rfc5424);
        with_bom.bom = true;
        let mut want = head;
        want.extend_from_slice(BOM);
        want.extend_from_slice(json.as_bytes());
        assert_eq!(encode(&with_bom, &e, 7), want);
    }

    #[test]
    fn rfc3164_message_is_exact() {
        let mut e = event("failure");
        e.timestamp = "2025-03-04T08:00:09Z".parse().unwrap();
        let msg = encode(&encoder(Format::Rfc3164), &e, 1);
        let text = String::from_utf8(msg).unwrap();
        assert!(
            text.starts_with("<131>Mar  4 08:00:09 vbo.example.net veeam-siem: {\"@timestamp\""),
            "{text}"
        );
    }

    #[test]
    fn severity_follows_outcome_and_veeam_warning() {
        let m = SeverityMap::default();
        assert_eq!(m.of(&event("success")), Severity::INFO);
        assert_eq!(m.of(&event("failure")), Severity::ERR);
        assert_eq!(m.of(&event("unknown")), Severity::NOTICE);
        let mut w = event("success");
        w.veeam.restore_event.as_mut().unwrap().status = Some("Warning".into());
        assert_eq!(m.of(&w), Severity::WARNING);
        assert_eq!(encoder(Format::Rfc5424).pri(&w), 16 * 8 + 4);
    }

    #[test]
    fn names_parse_with_helpful_errors() {
        assert_eq!(Facility::from_name("LOCAL7").unwrap().code(), 23);
        assert_eq!(Facility::from_name("auth").unwrap().code(), 4);
        assert_eq!(Severity::from_name("error").unwrap(), Severity::ERR);
        let e = Facility::try_from("local9".to_string()).unwrap_err();
        assert!(e.contains("local9") && e.contains("local0"), "{e}");
        let e = Severity::try_from("loud".to_string()).unwrap_err();
        assert!(e.contains("notice"), "{e}");
    }

    #[test]
    fn msgids_per_dataset() {
        assert_eq!(msgid_for("veeam.vbo_restore"), "VBO_RESTORE");
        assert_eq!(msgid_for("veeam.vdc_job_log"), "VDC_JOB_LOG");
        assert_eq!(msgid_for(""), "-");
        assert_eq!(msgid_for(&"x".repeat(40)).len(), 32);
    }

    #[test]
    fn timestamps() {
        let t: DateTime<Utc> = "2025-01-05T23:59:59.1Z".parse().unwrap();
        assert_eq!(timestamp_5424(t), "2025-01-05T23:59:59.100000Z");
        assert_eq!(timestamp_3164(t), "Jan  5 23:59:59");
        let t: DateTime<Utc> = "2025-12-25T01:02:03Z".parse().unwrap();
        assert_eq!(timestamp_3164(t), "Dec 25 01:02:03");
    }

    #[test]
    fn hostname_from_observer_is_sanitized() {
        let enc = encoder(Format::Rfc5424);
        for (observer, want) in [
            ("", " - veeam-siem"),
            ("[2001:db8::1]", " 2001:db8::1 veeam-siem"),
            ("host name", " host_name veeam-siem"),
        ] {
            let mut e = event("success");
            e.observer.hostname = observer.into();
            let text = String::from_utf8_lossy(&encode(&enc, &e, 1)).into_owned();
            assert!(text.contains(want), "{observer:?}: {text}");
        }
    }

    #[test]
    fn framing() {
        let mut out = Vec::new();
        frame(b"<14>1 - - - - - - a", Framing::OctetCounting, &mut out);
        assert_eq!(out, b"19 <14>1 - - - - - - a");
        out.clear();
        frame(b"a\nb", Framing::Newline, &mut out);
        assert_eq!(out, b"a\\nb\n");
    }

    #[test]
    fn fit_truncates_original_then_message() {
        let mut e = event("success");
        e.event.original = Some("x".repeat(3000));
        let json = serde_json::to_string(&e).unwrap();
        let Fit::Truncated { json: cut, fields } = fit(&e, &json, 150, 2048) else {
            panic!("expected truncation");
        };
        assert_eq!(fields, ["event.original"]);
        assert!(
            cut.len() + 150 <= 2048 && cut.len() + 150 > 2000,
            "{}",
            cut.len()
        );
        let back: Event = serde_json::from_str(&cut).unwrap();
        let original = back.event.original.unwrap();
        assert!(original.ends_with(" bytes]"), "{original}");
        assert_eq!(back.message, e.message);

        // Too little room for the whole original: message is cut too.
        e.message = "m".repeat(1500);
        let json = serde_json::to_string(&e).unwrap();
        let Fit::Truncated { json: cut, fields } = fit(&e, &json, 150, 1200) else {
            panic!("expected truncation");
        };
        assert_eq!(fields, ["event.original", "message"]);
        let back: Event = serde_json::from_str(&cut).unwrap();
        assert_eq!(
            back.event.original.as_deref(),
            Some("…[truncated 3000 bytes]")
        );
        assert!(back.message.starts_with("mmm") && back.message.contains("truncated"));

        // Nothing can make it fit.
        assert!(matches!(fit(&e, &json, 150, 300), Fit::TooLarge { .. }));
        assert_eq!(fit(&e, &json, 0, 100_000), Fit::Whole);
    }

    /// Unescape a PARAM-VALUE as a strict receiver would; `None` for a lone `"`/`]`.
    fn unescape(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n @ ('"' | '\\' | ']')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                },
                '"' | ']' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn param_values_round_trip(value in any::<String>()) {
            let mut escaped = String::new();
            escape_param_value(&value, &mut escaped);
            prop_assert_eq!(unescape(&escaped), Some(value));
        }

        #[test]
        fn header_fields_are_printable_and_bounded(value in any::<String>(), max in 1usize..300) {
            let f = header_field(&value, max);
            prop_assert!(!f.is_empty() && f.len() <= max.max(1));
            prop_assert!(f.chars().all(|c| c.is_ascii_graphic()));
        }

        #[test]
        fn msgids_are_valid(dataset in any::<String>()) {
            let id = msgid_for(&dataset);
            prop_assert!(is_header_value(&id, MAX_MSGID));
        }

        #[test]
        fn fitted_messages_fit_and_stay_valid_json(
            original in proptest::option::of(any::<String>()),
            message in "[^\u{0}]{1,3000}",
            max in 400usize..4000,
        ) {
            let mut e = event("success");
            e.event.original = original;
            e.message = message;
            let enc = encoder(Format::Rfc5424);
            let mut header = Vec::new();
            enc.header(&e, 1, &mut header);
            let json = serde_json::to_string(&e).unwrap();
            match fit(&e, &json, header.len(), max) {
                Fit::Whole => prop_assert!(header.len() + json.len() <= max),
                Fit::Truncated { json: cut, fields } => {
                    prop_assert!(header.len() + cut.len() <= max);
                    prop_assert!(!fields.is_empty());
                    let back: Event = serde_json::from_str(&cut).unwrap();
                    prop_assert!(!back.message.is_empty());
                    prop_assert_eq!(back.event.id, e.event.id);
                }
                Fit::TooLarge { needed } => prop_assert!(needed > max),
            }
        }
    }
}
