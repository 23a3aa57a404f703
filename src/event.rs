//! The output event: the one ECS-aligned shape every source is mapped into.
//!
//! This module owns the *contract* (ARCHITECTURE §6 of the design doc, `schemas/event.schema.json`
//! formally). Field names here are what SIEM content depends on: add fields freely, rename
//! only with a CHANGELOG entry. It holds no logic beyond construction helpers; mapping lives
//! in `map/`, serialization for each wire format in `sinks/`.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod pretty;
mod shared;
pub use shared::Shared;

/// A field whose value is usually one of our constants (`event.dataset`, `observer.vendor`...):
/// borrowed then, so building an event doesn't allocate them (a parsed event owns them).
pub type Text = Cow<'static, str>;

/// ECS version the event shape follows.
pub const ECS_VERSION: &str = "9.4.0";
/// `event.module` for everything we emit.
pub const MODULE: &str = "veeam";
/// `observer.vendor`.
pub const VENDOR: &str = "Veeam";

/// `event.dataset` values.
pub mod dataset {
    pub const VBO_RESTORE: &str = "veeam.vbo_restore";
    pub const VDC_JOB_LOG: &str = "veeam.vdc_job_log";
}

/// `event.outcome` values (ECS allows exactly these three).
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    pub const UNKNOWN: &str = "unknown";
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `@timestamp` and the other times as RFC 3339 UTC, byte for byte what chrono's serde
/// writes (`2025-03-04T08:00:01.234Z`: 0, 3, 6 or 9 fraction digits as the value needs,
/// then `Z`), but without chrono's `fmt` machinery: the router serializes up to eight of
/// them per event, and that path was ~4.5 % of the daemon's CPU (BENCHMARKS.md). Years
/// outside 0000–9999 and leap seconds go through chrono itself.
mod utc_time {
    use chrono::{DateTime, Datelike, Timelike, Utc};
    use serde::{Serialize, Serializer};

    /// `YYYY-MM-DDTHH:MM:SS.fffffffffZ` at most.
    const MAX_LEN: usize = 30;

    fn two(out: &mut [u8; MAX_LEN], at: usize, v: u32) {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    }

    /// The text, or `None` when chrono must write it.
    pub(super) fn format(t: &DateTime<Utc>, out: &mut [u8; MAX_LEN]) -> Option<usize> {
        let t = t.naive_utc();
        let year = t.year();
        let nano = t.nanosecond();
        if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
            return None;
        }
        let year = year as u32;
        two(out, 0, year / 100);
        two(out, 2, year % 100);
        out[4] = b'-';
        two(out, 5, t.month());
        out[7] = b'-';
        two(out, 8, t.day());
        out[10] = b'T';
        two(out, 11, t.hour());
        out[13] = b':';
        two(out, 14, t.minute());
        out[16] = b':';
        two(out, 17, t.second());
        let mut len = 19;
        let (digits, mut frac) = if nano == 0 {
            (0, 0)
        } else if nano.is_multiple_of(1_000_000) {
            (3, nano / 1_000_000)
        } else if nano.is_multiple_of(1_000) {
            (6, nano / 1_000)
        } else {
            (9, nano)
        };
        if digits > 0 {
            out[len] = b'.';
            for i in (0..digits).rev() {
                out[len + 1 + i] = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            len += 1 + digits;
        }
        out[len] = b'Z';
        Some(len + 1)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; MAX_LEN];
        match format(t, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
            Some(text) => s.serialize_str(text),
            None => t.serialize(s),
        }
    }

    /// For `Option` fields (`None` is skipped by `skip_serializing_if`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// One output event. Serializes to the JSON documented in `schemas/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "@timestamp", serialize_with = "utc_time::serialize")]
    pub timestamp: DateTime<Utc>,
    pub ecs: Ecs,
    pub message: String,
    pub event: EventMeta,
    pub observer: Observer,
    pub labels: Labels,
    /// Shared by the events of one restore session (mapped once per session).
    /// Always written, its three arrays too (empty when the event names nobody): the
    /// contract lists `related.*` as common to every event.
    #[serde(default)]
    pub related: Shared<Related>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Shared<User>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Shared<Client>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Shared<SourceEndpoint>>,
    /// ECS `tags`: `veeam_field_degraded` when Veeam sent odd values that were left out or
    /// kept as text (see `error.message`), `veeam_time_assumed_utc` when a time had no
    /// offset and was read as UTC, `veeam_time_missing` when the record had no usable time
    /// and `@timestamp` was taken from elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// ECS `error.*`: set on degraded events, naming each odd field and what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorField>,
    pub veeam: Veeam,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ecs {
    pub version: Text,
}

impl Default for Ecs {
    fn default() -> Self {
        Ecs {
            version: Text::Borrowed(ECS_VERSION),
        }
    }
}

/// The ECS `event.*` field set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMeta {
    /// Always "event".
    pub kind: Text,
    pub category: Vec<Text>,
    #[serde(rename = "type")]
    pub kind_type: Vec<Text>,
    pub action: String,
    /// success | failure | unknown
    pub outcome: Text,
    /// Stable id: Veeam's own id of the record, so SIEMs can de-duplicate.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// When veeam-siem fetched the record.
    #[serde(serialize_with = "utc_time::serialize")]
    pub created: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub start: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub end: Option<DateTime<Utc>>,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    pub dataset: Text,
    pub module: Text,
    /// "vbo" | "vdc"
    pub provider: Text,
    /// The raw record as received, when the source has `keep_original = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observer {
    pub vendor: Text,
    pub product: Text,
    /// Host part of the source URL (one allocation per source, shared by its events).
    pub hostname: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// The config id of the source that produced the event (shared by its events).
    pub source_id: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Related {
    #[serde(default)]
    pub user: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub ip: Vec<String>,
}

impl Related {
    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.hosts.is_empty() && self.ip.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// ECS `client.*`: the machine the restore was driven from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// ECS `source.*` (network source of the connection: the Cloud Connect gateway).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// ECS `error.*` (only `message` is used).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorField {
    pub message: String,
}

/// Vendor-specific fields under `veeam.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Veeam {
    /// Shared by the events of one restore session (mapped once per session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_session: Option<Shared<RestoreSession>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_event: Option<RestoreEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_session: Option<JobSession>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
    /// The Veeam fields (`<record>.<wire field>`, e.g. `restoreEvent.itemSizeBytes`) whose
    /// values were odd, in the order found; with the tag `veeam_field_degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded_fields: Vec<String>,
}

/// `veeam.restore_session.*` (VB365).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSession {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Vex | Veod | Vesp | Vet
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub session_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The raw `clientHost` string, unparsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
    /// The raw `initiatedBy` string, unparsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<String>,
    /// True when `initiatedBy` names the organization (Cloud Connect gateway restores).
    #[serde(default, skip_serializing_if = "is_false")]
    pub initiated_by_is_organization: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub end_time: Option<DateTime<Utc>>,
    /// v8 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<i64>,
}

/// `veeam.restore_event.*` (VB365).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreEvent {
    /// None | Save | Export | Send | Restore | View
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Running | Success | Warning | Failed | Cancelled | Skipped
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// As Veeam sent it; absent when missing or unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// v8 only: the ids Veeam attaches to item events (the *owner* of the restored data,
    /// not the person restoring it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backed_up_organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
}

/// `veeam.gateway.*`: the Cloud Connect gateway a restore came through.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub ip: String,
}

/// `veeam.job.*` (VDC).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
}

/// `veeam.job_session.*` (VDC).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSession {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_objects: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_time::option::serialize"
    )]
    pub end_time: Option<DateTime<Utc>>,
    /// Nanoseconds between creation and end, when ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
}

/// `veeam.log.*` (VDC job-session log lines, parsed from the title).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bytes_per_sec: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast RFC 3339 writer produces chrono's serde text exactly, for every kind of
    /// fraction, the edges of the year range, and the values it hands back to chrono.
    #[test]
    fn times_serialize_exactly_as_chrono_does() {
        use chrono::TimeZone;
        let chrono_text = |t: &DateTime<Utc>| serde_json::to_string(t).unwrap();
        let ours = |t: &DateTime<Utc>| {
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::new(&mut out);
            super::utc_time::serialize(t, &mut ser).unwrap();
            String::from_utf8(out).unwrap()
        };
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 11
        };
        let mut cases: Vec<DateTime<Utc>> = vec![
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
        ];
        for _ in 0..20_000 {
            let secs = (next() % 400_000_000_000) as i64 - 62_000_000_000;
            let nanos = match next() % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1000,
                _ => (next() % 1_000_000_000) as u32,
            };
            if let Some(t) = Utc.timestamp_opt(secs, nanos).single() {
                cases.push(t);
            }
        }
        for t in &cases {
            assert_eq!(ours(t), chrono_text(t), "{t:?}");
        }
    }
}
