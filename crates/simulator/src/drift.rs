//! Vendor-drift knobs: serve a seeded fraction of records with one value that differs from
//! Veeam's spec the way real servers, other versions, patches and proxies differ (a size
//! sent as `"12 KB"`, a session `reason` as an object, an enum as an integer, a time
//! without a zone, `0001-01-01T00:00:00`, an unknown extra field, ...).
//!
//! Off by default ([`DriftConfig::rate`] = 0): the simulator then conforms to Veeam's
//! OpenAPI (`tests/it/simulator_conformance.rs`). Which record drifts, and how, is a pure
//! function of the seed, the record kind and the record's id ([`drift_of`]), so tests know
//! exactly what to expect ([`super::SimHandle::drift_of`]). Only ids, `order` values and
//! VDC positions (what places a record) never drift.
//!
//! The knobs live here; `vb365.rs` and `vdc.rs` call [`serve`], [`value`] and
//! [`line_time`] where a record is written.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SimConfig;
use super::rng::{Rng, Tag};

/// Sub-stream of `Tag::Faults` (the faults use 0xC0..); see `faults.rs`.
const KEY_DRIFT: u64 = 0xD1;

/// Vendor-drift knobs. All off by default.
#[derive(Debug, Clone, Default)]
pub struct DriftConfig {
    /// Probability (0..1) that a record (keyed by its kind and id) is served with one
    /// drifted value: VB365 restore sessions and events, VDC jobs, job sessions, `/logs`
    /// entries and `/logs/download` lines.
    pub rate: f64,
}

/// Which kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// `RESTRestoreSession`, keyed by session id.
    VboSession = 1,
    /// `RESTRestoreSessionEvent`, keyed by event id.
    VboEvent = 2,
    /// VDC backup job, keyed by job id.
    VdcJob = 3,
    /// VDC job session, keyed by session id.
    VdcSession = 4,
    /// VDC `/logs` entry, keyed by its id.
    VdcLog = 5,
    /// VDC `/logs/download` line, keyed by the id the same line has in `/logs`.
    VdcLine = 6,
}

/// What a client should make of a drifted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An odd value: the record is shipped and the event names `field`.
    Reported,
    /// A time without a zone: read as UTC, reported, tagged `veeam_time_assumed_utc`.
    AssumedUtc,
    /// Not odd at all (another offset, an extra field, an optional field left out):
    /// shipped and not reported.
    Clean,
}

/// One drifted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    /// The wire field (camelCase, as Veeam names it).
    pub field: &'static str,
    pub expect: Expect,
    /// What is served instead, for humans.
    pub what: &'static str,
}

struct Mutation {
    drift: Drift,
    apply: fn(&mut Map<String, Value>),
}

const fn m(
    field: &'static str,
    expect: Expect,
    what: &'static str,
    apply: fn(&mut Map<String, Value>),
) -> Mutation {
    Mutation {
        drift: Drift {
            field,
            expect,
            what,
        },
        apply,
    }
}

use Expect::{AssumedUtc, Clean, Reported};

const VBO_SESSION: &[Mutation] = &[
    m("reason", Reported, "an object", |r| {
        r.insert(
            "reason".into(),
            json!({"code": 3, "text": "Legal hold review"}),
        );
    }),
    m("type", Reported, "an integer enum", |r| {
        r.insert("type".into(), json!(1));
    }),
    m("creationTime", AssumedUtc, "no zone", |r| {
        strip_zone(r, "creationTime")
    }),
    m("creationTime", Reported, "DateTime.MinValue", |r| {
        r.insert("creationTime".into(), json!("0001-01-01T00:00:00Z"));
    }),
    m("eTag", Reported, "a number as a string", |r| {
        r.insert("eTag".into(), json!("7"));
    }),
    m("result", Reported, "an unknown enum value", |r| {
        r.insert("result".into(), json!("PartiallySucceeded"));
    }),
    m("state", Reported, "an integer enum", |r| {
        r.insert("state".into(), json!(2));
    }),
    m("clientHost", Reported, "a number", |r| {
        r.insert("clientHost".into(), json!(12345));
    }),
    m("initiatedBy", Reported, "an object", |r| {
        let name = r.get("initiatedBy").cloned().unwrap_or(Value::Null);
        r.insert("initiatedBy".into(), json!({ "name": name }));
    }),
    // FIELDS.md: blank strings are no value, not odd.
    m("endTime", Clean, "an empty string", |r| {
        r.insert("endTime".into(), json!(""));
    }),
    m("name", Clean, "left out", |r| {
        r.remove("name");
    }),
    m("proxyTrace", Clean, "an unknown extra field", add_extra),
];

const VBO_EVENT: &[Mutation] = &[
    m("itemSizeBytes", Reported, "\"12 KB\"", |r| {
        r.insert("itemSizeBytes".into(), json!("12 KB"));
    }),
    m("itemSizeBytes", Reported, "a fraction", |r| {
        r.insert("itemSizeBytes".into(), json!(780058.5));
    }),
    m("itemSizeBytes", Reported, "negative", |r| {
        r.insert("itemSizeBytes".into(), json!(-1));
    }),
    m("startTime", AssumedUtc, "no zone", |r| {
        strip_zone(r, "startTime")
    }),
    m("startTime", Reported, "DateTime.MinValue", |r| {
        r.insert("startTime".into(), json!("0001-01-01T00:00:00"));
    }),
    m("startTime", Clean, "the same instant at +05:30", |r| {
        shift_offset(r, "startTime")
    }),
    m("duration", Reported, "a number", |r| {
        r.insert("duration".into(), json!(1234));
    }),
    m("type", Reported, "an integer enum", |r| {
        r.insert("type".into(), json!(3));
    }),
    m("type", Reported, "an unknown enum value", |r| {
        r.insert("type".into(), json!("Copy"));
    }),
    m("status", Reported, "an object", |r| {
        let status = r.get("status").cloned().unwrap_or(Value::Null);
        r.insert("status".into(), json!({ "value": status }));
    }),
    m("title", Reported, "a number", |r| {
        r.insert("title".into(), json!(42));
    }),
    m("endTime", Reported, "not a time", |r| {
        r.insert("endTime".into(), json!("not a time"));
    }),
    m("message", Reported, "left out (required)", |r| {
        r.remove("message");
    }),
    m("order", Reported, "a number as a string", |r| {
        let order = r.get("order").map(Value::to_string).unwrap_or_default();
        r.insert("order".into(), Value::String(order));
    }),
    m("proxyTrace", Clean, "an unknown extra field", add_extra),
];

const VDC_JOB: &[Mutation] = &[
    m("name", Reported, "a number", |r| {
        r.insert("name".into(), json!(123));
    }),
    m("backupType", Reported, "an object", |r| {
        r.insert("backupType".into(), json!({"kind": "SelectedItems"}));
    }),
    m("jobType", Clean, "null", |r| {
        r.insert("jobType".into(), Value::Null);
    }),
    m("proxyTrace", Clean, "an unknown extra field", add_extra),
];

const VDC_SESSION: &[Mutation] = &[
    m("creationTime", AssumedUtc, "no zone", |r| {
        strip_zone(r, "creationTime")
    }),
    m("progress", Reported, "\"40%\"", |r| {
        r.insert("progress".into(), json!("40%"));
    }),
    m("processedObjects", Reported, "a fraction", |r| {
        r.insert("processedObjects".into(), json!(3.5));
    }),
    m("status", Reported, "an integer enum", |r| {
        r.insert("status".into(), json!(2));
    }),
    m("proxyTrace", Clean, "an unknown extra field", add_extra),
];

const VDC_LOG: &[Mutation] = &[
    m("title", Reported, "a number", |r| {
        r.insert("title".into(), json!(42));
    }),
    m("title", Reported, "an object", |r| {
        let title = r.get("title").cloned().unwrap_or(Value::Null);
        r.insert("title".into(), json!({ "text": title }));
    }),
    m("creationTime", AssumedUtc, "no zone", |r| {
        strip_zone(r, "creationTime")
    }),
    m("endTime", Reported, "not a time", |r| {
        r.insert("endTime".into(), json!("soon"));
    }),
    m("proxyTrace", Clean, "an unknown extra field", add_extra),
];

/// Download lines are text: only their creation time drifts (to no zone).
const VDC_LINE: &[Mutation] = &[m("creationTime", AssumedUtc, "no zone", |r| {
    strip_zone(r, "creationTime")
})];

fn mutations(kind: DriftKind) -> &'static [Mutation] {
    match kind {
        DriftKind::VboSession => VBO_SESSION,
        DriftKind::VboEvent => VBO_EVENT,
        DriftKind::VdcJob => VDC_JOB,
        DriftKind::VdcSession => VDC_SESSION,
        DriftKind::VdcLog => VDC_LOG,
        DriftKind::VdcLine => VDC_LINE,
    }
}

fn add_extra(r: &mut Map<String, Value>) {
    r.insert(
        "proxyTrace".into(),
        json!({"hop": 1, "via": "reverse-proxy/2.4"}),
    );
}

/// `2025-03-04T08:05:40.1000000Z` → `2025-03-04T08:05:40.1000000`.
fn strip_zone(r: &mut Map<String, Value>, key: &str) {
    if let Some(Value::String(t)) = r.get_mut(key) {
        while t.ends_with(['Z', 'z']) {
            t.pop();
        }
    }
}

/// The same instant written with a `+05:30` offset (7 fraction digits, like Veeam).
fn shift_offset(r: &mut Map<String, Value>, key: &str) {
    let Some(Value::String(t)) = r.get_mut(key) else {
        return;
    };
    let (Ok(at), Some(offset)) = (
        DateTime::parse_from_rfc3339(t),
        FixedOffset::east_opt(5 * 3600 + 30 * 60),
    ) else {
        return;
    };
    let local = at.with_timezone(&offset);
    let fraction = local.timestamp_subsec_nanos().min(999_999_999) / 100;
    *t = format!(
        "{}.{fraction:07}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        local.format("%:z")
    );
}

/// FNV-1a of the id, to key the stream.
fn id_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pick(cfg: &SimConfig, kind: DriftKind, id: &str) -> Option<&'static Mutation> {
    if cfg.drift.rate <= 0.0 {
        return None;
    }
    let mut rng = Rng::keyed(cfg.seed, Tag::Faults, &[KEY_DRIFT, kind as u64, id_key(id)]);
    if !rng.chance(cfg.drift.rate) {
        return None;
    }
    let all = mutations(kind);
    all.get(rng.below(all.len() as u64) as usize)
}

/// How the record of `kind` with this id is served (`None`: as the spec says).
pub(crate) fn drift_of(cfg: &SimConfig, kind: DriftKind, id: &str) -> Option<Drift> {
    pick(cfg, kind, id).map(|m| m.drift)
}

/// A record as served: the typed payload, or its drifted JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Served<T> {
    Clean(T),
    Drifted(Value),
}

/// Serve a typed record, drifted when its (kind, id) is picked.
pub(crate) fn serve<T: Serialize>(
    cfg: &SimConfig,
    kind: DriftKind,
    id: &str,
    record: T,
) -> Served<T> {
    let Some(mutation) = pick(cfg, kind, id) else {
        return Served::Clean(record);
    };
    match serde_json::to_value(&record) {
        Ok(Value::Object(mut map)) => {
            (mutation.apply)(&mut map);
            Served::Drifted(Value::Object(map))
        }
        _ => Served::Clean(record),
    }
}

/// Serve a JSON record, drifted when its (kind, id) is picked.
pub(crate) fn value(cfg: &SimConfig, kind: DriftKind, id: &str, record: Value) -> Value {
    match (pick(cfg, kind, id), record) {
        (Some(mutation), Value::Object(mut map)) => {
            (mutation.apply)(&mut map);
            Value::Object(map)
        }
        (_, record) => record,
    }
}

/// The creation time of a download line (`id`: the line's `/logs` id), drifted when picked.
pub(crate) fn line_time(cfg: &SimConfig, id: &str, created: String) -> String {
    let mut map = Map::new();
    map.insert("creationTime".into(), Value::String(created));
    let Value::Object(map) = value(cfg, DriftKind::VdcLine, id, Value::Object(map)) else {
        return String::new();
    };
    match map.get("creationTime") {
        Some(Value::String(t)) => t.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64) -> SimConfig {
        SimConfig {
            drift: DriftConfig { rate },
            ..SimConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_keyed_by_seed_kind_and_id() {
        let off = SimConfig::default();
        assert!((0..200).all(|i| drift_of(&off, DriftKind::VboEvent, &i.to_string()).is_none()));
        let on = cfg(0.5);
        let picked: Vec<_> = (0..200)
            .map(|i| drift_of(&on, DriftKind::VboEvent, &i.to_string()))
            .collect();
        let again: Vec<_> = (0..200)
            .map(|i| drift_of(&on, DriftKind::VboEvent, &i.to_string()))
            .collect();
        assert_eq!(picked, again);
        let n = picked.iter().flatten().count();
        assert!((60..140).contains(&n), "about half drift: {n}");
        let all = cfg(1.0);
        assert!((0..50).all(|i| drift_of(&all, DriftKind::VdcJob, &i.to_string()).is_some()));
    }

    #[test]
    fn mutations_change_only_their_field() {
        let record = json!({
            "id": "e", "order": 4, "startTime": "2025-03-04T08:05:40.1000000Z",
            "endTime": "2025-03-04T08:05:41.0000000Z", "status": "Success", "type": "Save",
            "title": "t", "message": "m", "itemSizeBytes": 1, "duration": "00:00:01",
            "reason": "r", "creationTime": "2025-03-04T08:00:00.0000000Z", "name": "n",
            "initiatedBy": "LAB\\alice", "clientHost": "h", "state": "Stopped",
            "result": "Success", "eTag": 7, "progress": 1, "processedObjects": 1,
            "backupType": "b", "jobType": "Backup",
        });
        for kind in [
            DriftKind::VboSession,
            DriftKind::VboEvent,
            DriftKind::VdcJob,
            DriftKind::VdcSession,
            DriftKind::VdcLog,
            DriftKind::VdcLine,
        ] {
            for mutation in mutations(kind) {
                let Value::Object(mut map) = record.clone() else {
                    unreachable!()
                };
                (mutation.apply)(&mut map);
                let field = mutation.drift.field;
                for (key, before) in record.as_object().into_iter().flatten() {
                    if key != field {
                        assert_eq!(map.get(key), Some(before), "{kind:?} {field}: {key}");
                    }
                }
                assert_ne!(
                    map.get(field),
                    record.get(field),
                    "{kind:?} {field} unchanged"
                );
            }
        }
    }

    #[test]
    fn time_mutations() {
        let mut r = Map::new();
        r.insert("t".into(), json!("2025-03-04T08:05:40.1000000Z"));
        shift_offset(&mut r, "t");
        assert_eq!(r["t"], "2025-03-04T13:35:40.1000000+05:30");
        strip_zone(&mut r, "t");
        assert_eq!(r["t"], "2025-03-04T13:35:40.1000000+05:30");
        r.insert("t".into(), json!("2025-03-04T08:05:40.1000000Z"));
        strip_zone(&mut r, "t");
        assert_eq!(r["t"], "2025-03-04T08:05:40.1000000");
    }
}
