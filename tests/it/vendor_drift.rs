//! Vendor drift: records whose values differ from Veeam's spec are delivered, never dropped,
//! and each odd value is reported in its event (issue 13).
//!
//! Covers: the issue's examples decode and map (library level); the simulator's drift knobs
//! end to end (`run --once`, file sink): every VB365 event and every VDC log line is
//! delivered, including those of sessions and jobs with odd fields, each event naming
//! exactly the odd fields of its record, its session and its job (`veeam.degraded_fields`,
//! `error.message`, `tags`) and carrying its raw record in `event.original` (with
//! `keep_original` off), in both VDC log modes; and Veeam's strings (RTL override, NUL,
//! CR/LF, tabs, combining marks, 100 kB names) reaching the file sink, the Splunk HEC peer
//! and the syslog encoder exactly as the event holds them. Nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use veeam_siem::map::Record;
use veeam_siem::map::vbo::{RawRestoreEvent, RawRestoreSession, map_restore_event};
use veeam_siem::map::{MapContext, map_record};
use veeam_siem::sinks::{Batch, EncodedEvent, Sink};
use veeam_siem_simulator::{DriftConfig, DriftKind, Expect, SimConfig, SimHandle};
use veeam_siem_test_peers::hec as hec_peer;

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::harness;
use harness::{Env, run_bin_async, s, text};

const KEY_ENV: &str = "TEST_VDC_KEY";
const DEGRADED: &str = "veeam_field_degraded";
const ASSUMED_UTC: &str = "veeam_time_assumed_utc";

fn ctx() -> MapContext<'static> {
    MapContext {
        source_id: "vbo_main",
        observer_hostname: "vbo.example.com",
        fetched_at: Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap(),
    }
}

fn spec_session() -> Value {
    json!({
        "id": "3f2c8a10-6d4e-4b1a-9c55-0e7a2b9d1f01", "name": "Exchange restore (manual)",
        "organization": "contoso.onmicrosoft.com", "type": "Vex",
        "creationTime": "2025-03-04T08:01:12.4410021Z", "endTime": "2025-03-04T08:20:47.1180375Z",
        "state": "Stopped", "result": "Success", "initiatedBy": "LAB\\alice",
        "clientHost": "WS-ALICE01 (via: 10.20.30.40)", "reason": "", "eTag": 7
    })
}

fn spec_event() -> Value {
    json!({
        "id": "a1b2c3d4-0000-4000-8000-000000000002", "type": "Save", "status": "Success",
        "startTime": "2025-03-04T08:05:40.1000000Z", "endTime": "2025-03-04T08:05:40.1450000Z",
        "duration": "00:00:00.0450000", "title": "Item is successfully restored.",
        "message": "Item Quarterly report.msg was saved", "order": 1,
        "itemName": "Quarterly report.msg", "itemType": "Item", "itemSizeBytes": 48213,
        "source": "alice@contoso.onmicrosoft.com/Inbox/Finance", "target": "C:\\Users\\alice"
    })
}

/// The values issue 13 saw a real server send, each of which used to cost the record
/// (and, for session fields, every event of the session). Each one now decodes with the
/// `Deserialize` the sources used, maps to a schema-valid event, and that event names the
/// field.
#[test]
fn the_issue_13_examples_ship_with_the_odd_field_reported() {
    let cases: &[(&str, &str, Value, &str)] = &[
        (
            "event",
            "itemSizeBytes",
            json!("12 KB"),
            "restoreEvent.itemSizeBytes",
        ),
        (
            "event",
            "itemSizeBytes",
            json!(780058.5),
            "restoreEvent.itemSizeBytes",
        ),
        (
            "session",
            "reason",
            json!({"code": 3, "text": "Legal hold"}),
            "restoreSession.reason",
        ),
        ("session", "type", json!(1), "restoreSession.type"),
        (
            "event",
            "startTime",
            json!("2025-03-04T08:05:40.1000000"),
            "restoreEvent.startTime",
        ),
        (
            "event",
            "startTime",
            json!("0001-01-01T00:00:00"),
            "restoreEvent.startTime",
        ),
    ];
    for (record, field, value, reported) in cases {
        let (mut session, mut event) = (spec_session(), spec_event());
        let target = if *record == "event" {
            &mut event
        } else {
            &mut session
        };
        target[*field] = value.clone();
        let what = format!("{record}.{field} = {value}");
        let session: RawRestoreSession = serde_json::from_value(session)
            .unwrap_or_else(|e| panic!("{what}: the session no longer decodes: {e}"));
        let raw_event = event.to_string();
        let event: RawRestoreEvent = serde_json::from_value(event)
            .unwrap_or_else(|e| panic!("{what}: the event no longer decodes: {e}"));
        let mapped = map_restore_event(&ctx(), &session, &event, Some(&raw_event));
        let v = serde_json::to_value(&mapped).unwrap();
        event_schema::assert_valid_event(&v);
        assert_eq!(v["event"]["id"], "a1b2c3d4-0000-4000-8000-000000000002");
        assert_eq!(v["veeam"]["degraded_fields"], json!([reported]), "{what}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("{reported}: "))),
            "{what}: {v:#}"
        );
        assert_eq!(v["tags"][0], DEGRADED, "{what}");
    }
}

// ---------------------------------------------------------------------------------------
// End to end with the simulator's drift knobs

/// One VB365 (v8) and one VDC source on the simulator, into one file sink.
fn write_config(env: &Env, vdc_extra: &str) -> String {
    let vbo = Table::vbo("vbo_test", &env.sim.base_url())
        .set("api_version", "v8")
        .set("page_size", 7)
        .tls_ca(&env.ca_file);
    env.config()
        .table(vbo)
        .table(env.vdc_source("vdc_test", KEY_ENV).raw(vdc_extra))
        .table(Table::file(
            "archive",
            &["vbo_test", "vdc_test"],
            &env.out_file(),
        ))
        .write(&env.dir.path().join("drift.toml"))
        .display()
        .to_string()
}

async fn run_once(env: &Env, cfg: &str) -> std::process::Output {
    run_bin_async(
        s(&["run", "--config", cfg, "--once"]),
        vec![(KEY_ENV.to_string(), env.sim.vdc_api_key())],
    )
    .await
}

fn drifted_sim(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        sessions: 40,
        events_per_session: 8,
        vdc_jobs: 4,
        vdc_sessions_per_job: 3,
        vdc_logs_per_session: 6,
        drift: DriftConfig { rate: 0.35 },
        ..SimConfig::default()
    }
}

/// What an event must report: the fields (`<record>.<wire field>`) and whether a time was
/// read as UTC.
#[derive(Debug, Default, Clone)]
struct Expected {
    fields: BTreeSet<String>,
    assumed_utc: bool,
}

impl Expected {
    fn add(&mut self, sim: &SimHandle, kind: DriftKind, id: &str, record: &str) {
        if let Some(drift) = sim.drift_of(kind, id) {
            match drift.expect {
                Expect::Clean => {}
                Expect::Reported => {
                    self.fields.insert(format!("{record}.{}", drift.field));
                }
                Expect::AssumedUtc => {
                    self.fields.insert(format!("{record}.{}", drift.field));
                    self.assumed_utc = true;
                }
            }
        }
    }
}

/// The event reports exactly `want`, keeps its raw record when (and only when) it reports
/// anything (`keep_original` is off), and matches the schema.
#[track_caller]
fn assert_reports(e: &Value, want: &Expected, what: &str) {
    event_schema::assert_valid_event(e);
    let got: BTreeSet<String> = e["veeam"]["degraded_fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(got, want.fields, "{what}: degraded fields\n{e:#}");
    let tags: Vec<&str> = e["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        tags.contains(&DEGRADED),
        !want.fields.is_empty(),
        "{what}: {tags:?}"
    );
    assert_eq!(
        tags.contains(&ASSUMED_UTC),
        want.assumed_utc,
        "{what}: {tags:?}"
    );
    let message = e["error"]["message"].as_str().unwrap_or("");
    for field in &want.fields {
        assert!(
            message.contains(&format!("{field}: ")),
            "{what}: {field} not in {message:?}"
        );
    }
    assert_eq!(
        e["event"]["original"].is_string(),
        !want.fields.is_empty(),
        "{what}: event.original"
    );
}

/// The simulator serves about a third of all records (VB365 sessions and events, VDC jobs,
/// job sessions and log entries) with one drifted value. Asserts: `--once` exits 0; every
/// event and every log line is delivered exactly once, including every event of a session
/// (or job) with odd fields; each event reports exactly the odd fields of its record and of
/// the records above it, and carries the raw record; drifted values that are not odd (an
/// offset other than Z, an unknown extra field, an optional field left out) report
/// nothing. A second run delivers nothing new except, possibly, the events of sessions
/// whose `creationTime` was unusable (they are placed at the horizon: duplicates, never
/// losses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drifted_record_is_delivered_and_names_its_odd_fields() {
    let env = Env::start(drifted_sim(1313)).await;
    let cfg = write_config(&env, "");
    let out = run_once(&env, &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    let sim = &env.sim;

    // VB365: expected reports per event id.
    let mut vbo_want: HashMap<String, Expected> = HashMap::new();
    let mut event_session: HashMap<String, String> = HashMap::new();
    let mut placed_sessions = BTreeSet::new();
    let mut drifted = (0, 0);
    let mut covered = BTreeSet::new();
    for session_id in sim.session_ids() {
        let mut session = Expected::default();
        session.add(sim, DriftKind::VboSession, &session_id, "restoreSession");
        if let Some(d) = sim.drift_of(DriftKind::VboSession, &session_id)
            && d.field == "creationTime"
            && d.expect == Expect::Reported
        {
            placed_sessions.insert(session_id.clone());
        }
        drifted.0 += usize::from(!session.fields.is_empty());
        for event_id in sim.session_event_ids(&session_id) {
            if let Some(d) = sim.drift_of(DriftKind::VboEvent, &event_id) {
                covered.insert((d.field, d.what));
            }
            let mut want = session.clone();
            want.add(sim, DriftKind::VboEvent, &event_id, "restoreEvent");
            drifted.1 += usize::from(!want.fields.is_empty());
            event_session.insert(event_id.clone(), session_id.clone());
            vbo_want.insert(event_id, want);
        }
    }
    assert!(
        drifted.0 >= 5 && drifted.1 >= 40,
        "too little drift to test: {drifted:?}"
    );
    assert_eq!(
        covered.len(),
        15,
        "every kind of event drift is served: {covered:?}"
    );
    assert!(
        !placed_sessions.is_empty(),
        "a session with DateTime.MinValue as creationTime is served"
    );

    // VDC: expected reports per (job session id, position).
    let mut vdc_want: BTreeMap<(String, u64), Expected> = BTreeMap::new();
    for key in sim.vdc_log_keys() {
        let mut want = Expected::default();
        want.add(sim, DriftKind::VdcJob, &key.job_id, "job");
        want.add(sim, DriftKind::VdcSession, &key.session_id, "jobSession");
        want.add(sim, DriftKind::VdcLog, &key.id, "logEntry");
        vdc_want.insert((key.session_id.clone(), key.index), want);
    }
    assert!(
        vdc_want.values().filter(|w| !w.fields.is_empty()).count() >= 10,
        "too little VDC drift to test"
    );

    let mut seen_vbo: HashMap<String, usize> = HashMap::new();
    let mut seen_vdc: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for e in &events {
        match e["event"]["provider"].as_str() {
            Some("vbo") => {
                let id = harness::event_id(e);
                let want = vbo_want
                    .get(&id)
                    .unwrap_or_else(|| panic!("not a simulated event: {id}"));
                assert_reports(e, want, &format!("VB365 event {id}"));
                let session = e["veeam"]["restore_session"]["id"].as_str().unwrap_or("");
                assert_eq!(
                    e["veeam"]["restore_session"]["creation_time"].is_null(),
                    placed_sessions.contains(session),
                    "{id}: an unusable creationTime is left out, a usable one kept"
                );
                *seen_vbo.entry(id).or_default() += 1;
            }
            Some("vdc") => {
                let key = (
                    e["veeam"]["job_session"]["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    e["event"]["sequence"].as_u64().unwrap(),
                );
                let want = vdc_want
                    .get(&key)
                    .unwrap_or_else(|| panic!("not a simulated line: {key:?}"));
                assert_reports(e, want, &format!("VDC line {key:?}"));
                *seen_vdc.entry(key).or_default() += 1;
            }
            other => panic!("unexpected provider {other:?}"),
        }
    }
    let missing: Vec<_> = vbo_want
        .keys()
        .filter(|id| !seen_vbo.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "VB365 events never delivered: {missing:?}"
    );
    let twice: Vec<_> = seen_vbo.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "VB365 events delivered twice: {twice:?}");
    let missing: Vec<_> = vdc_want
        .keys()
        .filter(|k| !seen_vdc.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "VDC lines never delivered: {missing:?}");
    assert!(
        seen_vdc.values().all(|n| *n == 1),
        "VDC lines delivered twice"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("skipping"), "a record was skipped:\n{log}");

    // A second run: nothing lost, nothing new except the re-placed sessions' events.
    let out = run_once(&env, &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let events = env.events();
    let again = harness::id_counts(&events);
    for (event_id, session_id) in &event_session {
        let n = again.get(event_id).copied().unwrap_or(0);
        assert!(n >= 1, "{event_id} lost");
        assert!(
            n == 1 || placed_sessions.contains(session_id),
            "{event_id} of session {session_id} delivered {n} times"
        );
    }
    let vdc_events = events.iter().filter(|e| e["event"]["provider"] == "vdc");
    assert_eq!(vdc_events.count(), vdc_want.len(), "VDC lines repeated");
}

/// `log_mode = "download"`: lines whose creation time comes without a zone are read as
/// UTC and tagged; every line is delivered once, with its job's and session's odd fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_lines_without_a_zone_are_read_as_utc_and_tagged() {
    let env = Env::start(SimConfig {
        sessions: 1,
        events_per_session: 1,
        ..drifted_sim(2024)
    })
    .await;
    let cfg = write_config(&env, "log_mode = \"download\"");
    let out = run_once(&env, &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let sim = &env.sim;
    let mut want: BTreeMap<(String, u64), Expected> = BTreeMap::new();
    for key in sim.vdc_log_keys() {
        let mut w = Expected::default();
        w.add(sim, DriftKind::VdcJob, &key.job_id, "job");
        w.add(sim, DriftKind::VdcSession, &key.session_id, "jobSession");
        w.add(sim, DriftKind::VdcLine, &key.id, "logEntry");
        want.insert((key.session_id.clone(), key.index), w);
    }
    assert!(
        want.values()
            .filter(|w| w.fields.contains("logEntry.creationTime"))
            .count()
            >= 3,
        "too few drifted lines"
    );
    let mut seen = BTreeSet::new();
    for e in env
        .events()
        .iter()
        .filter(|e| e["event"]["provider"] == "vdc")
    {
        let key = (
            e["veeam"]["job_session"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            e["event"]["sequence"].as_u64().unwrap(),
        );
        let w = want
            .get(&key)
            .unwrap_or_else(|| panic!("not simulated: {key:?}"));
        assert_reports(e, w, &format!("download line {key:?}"));
        assert!(seen.insert(key), "delivered twice");
    }
    assert_eq!(seen.len(), want.len(), "every line delivered");
}

// ---------------------------------------------------------------------------------------
// Strings are evidence

/// Strings a real server may hold in item names, paths, users and hosts.
fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("rtl", "invoice\u{202E}fdp.exe".to_string()),
        ("nul", "a\u{0}b".to_string()),
        ("crlf", "line1\r\nline2\n".to_string()),
        ("tabs", "\tcol1\tcol2\t".to_string()),
        (
            "combining",
            "e\u{301}\u{302}\u{303} Zalgo\u{336}\u{337}".to_string(),
        ),
        ("controls", "\u{1b}[31mred\u{7f}\u{85}\u{2028}".to_string()),
        ("quotes", "\"quoted\" \\back\\slash\\ </script>".to_string()),
        // About 100 kB: in the item name only (see `hostile_record`).
        ("huge", format!("{}.msg", "Ünïcödé-ñame ".repeat(6_000))),
    ]
}

/// A VB365 event whose item name holds `item` and every other string field `text`
/// (variants per field), decoded like the source does.
fn hostile_record(item: &str, text: &str) -> (Record, Value) {
    let session = json!({
        "id": "3f2c8a10-6d4e-4b1a-9c55-0e7a2b9d1f01", "type": "Vex", "state": "Stopped",
        "result": "Success", "creationTime": "2025-03-04T08:01:12.4410021Z",
        "name": format!("name {text}"), "organization": format!("org {text}"),
        "initiatedBy": format!("LAB\\{text}"), "clientHost": format!("{text} (via: 203.0.113.10)"),
        "reason": format!("reason {text}"), "details": format!("details {text}"),
        "scopeName": format!("scope {text}")
    });
    let event = json!({
        "id": "a1b2c3d4-0000-4000-8000-000000000002", "type": "Restore", "status": "Success",
        "startTime": "2025-03-04T08:05:40.1000000Z", "order": 1,
        "title": format!("title {text}"), "message": format!("message {text}"),
        "itemName": item, "itemType": format!("type {text}"),
        "source": format!("source {text}"), "target": format!("target {text}")
    });
    let raw_event = event.to_string();
    let session = veeam_siem::map::vbo::decode_session(session.to_string(), Utc::now())
        .expect("session decodes");
    let decoded = veeam_siem::map::vbo::decode_event(&raw_event).expect("event decodes");
    // A client part that is no host name (controls, spaces) is reported, kept whole.
    assert!(decoded.problems.is_empty());
    assert!(
        session
            .problems
            .iter()
            .all(|p| p.field.ends_with("clientHost") && p.detail.contains("client")),
        "{:?}",
        session.problems
    );
    let record = Record::VboEvent {
        session: Arc::new(session),
        event: decoded,
        original: Some(raw_event.into()),
    };
    (record, event)
}

/// Every string reaches the event exactly as Veeam sent it.
#[track_caller]
fn assert_strings_exact(v: &Value, item: &str, text: &str) {
    let rs = &v["veeam"]["restore_session"];
    let re = &v["veeam"]["restore_event"];
    let pairs = [
        (&re["item_name"], item.to_string()),
        (&re["item_type"], format!("type {text}")),
        (&re["source"], format!("source {text}")),
        (&re["target"], format!("target {text}")),
        (&re["title"], format!("title {text}")),
        (&v["message"], format!("message {text}")),
        (&rs["name"], format!("name {text}")),
        (&rs["initiated_by"], format!("LAB\\{text}")),
        (&rs["client_host"], format!("{text} (via: 203.0.113.10)")),
        (&rs["reason"], format!("reason {text}")),
        (&rs["details"], format!("details {text}")),
        (&rs["scope_name"], format!("scope {text}")),
        (&v["organization"]["name"], format!("org {text}")),
    ];
    for (got, want) in pairs {
        assert_eq!(
            got.as_str(),
            Some(want.as_str()),
            "{}",
            &want[..want.len().min(60)]
        );
    }
}

/// Item names, sources, targets, user and host strings are shipped exactly as Veeam sent
/// them: the mapped event holds them verbatim, and the file sink (byte for byte), the
/// Splunk HEC peer (the JSON payload, parsed) and the syslog encoder (RFC 5424 and 3164
/// MSG, byte for byte) carry that event's JSON unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_reach_every_sink_unchanged() {
    use veeam_siem::sinks::syslog::format::{BOM, Encoder, Facility, Format, SeverityMap};

    let mut encoded = Vec::new();
    for (name, text) in hostile_strings() {
        // A 100 kB name is shipped whole; the rest of the record stays ordinary (HEC and
        // the test peer cap a request at a few MB).
        let other = if name == "huge" { "x" } else { text.as_str() };
        let (record, _) = hostile_record(&text, other);
        let event = map_record(&ctx(), &record);
        let json = serde_json::to_string(&event).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        event_schema::assert_valid_event(&v);
        assert_strings_exact(&v, &text, other);
        // Odd only as a host: a client part that is no host name is reported (and kept
        // whole in `veeam.restore_session.client_host`); every other string is not odd.
        let degraded = v["veeam"]["degraded_fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            degraded
                .iter()
                .all(|f| f.as_str().is_some_and(|f| f.ends_with("clientHost"))),
            "{name}: clean strings are not odd: {degraded:?}"
        );
        encoded.push((name, EncodedEvent { event, json }));
    }

    // Syslog, unit level: MSG is the event's JSON, byte for byte, after the header.
    for format in [Format::Rfc5424, Format::Rfc3164] {
        let encoder = Encoder {
            format,
            bom: true,
            facility: Facility::LOCAL0,
            severity: SeverityMap::default(),
            app_name: "veeam-siem".into(),
            hostname: None,
            sw_version: "0".into(),
        };
        for (name, e) in &encoded {
            let mut msg = Vec::new();
            encoder.encode(&e.event, &e.json, 1, &mut msg);
            assert!(msg.ends_with(e.json.as_bytes()), "{format:?} {name}");
            if format == Format::Rfc5424 {
                let at = msg.len() - e.json.len();
                assert_eq!(&msg[at - BOM.len()..at], BOM, "{name}: BOM before MSG");
            }
        }
    }

    // File sink: each line is the event's JSON, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let batch = |seq: u64| Batch {
        source_id: "vbo_main".into(),
        source_index: 0,
        seq,
        events: encoded.iter().map(|(_, e)| e.clone()).collect(),
    };
    let file_cfg = veeam_siem::sinks::file::FileSinkConfig {
        inputs: vec!["vbo_main".into()],
        path: path.display().to_string(),
        file_mode: None,
    };
    let mut file = veeam_siem::sinks::file::FileSink::new("archive", &file_cfg).expect("file sink");
    file.deliver(&batch(1)).await.expect("file delivery");
    let written = std::fs::read(&path).unwrap();
    let want: Vec<u8> = encoded
        .iter()
        .flat_map(|(_, e)| [e.json.as_bytes(), b"\n"].concat())
        .collect();
    assert!(
        written == want,
        "the file holds other bytes than the events' JSON"
    );

    // Splunk HEC: the peer indexes exactly the event (its JSON, parsed).
    use hec_peer::{HecPeer, PeerConfig, TOKEN};
    use veeam_siem::sinks::SinkContext;
    use veeam_siem::sinks::splunk_hec::{HecSink, HecSinkConfig};
    let peer = HecPeer::start(PeerConfig::default())
        .await
        .expect("HEC peer");
    let cfg: HecSinkConfig = toml::from_str(&format!(
        "inputs = [\"vbo_main\"]\nendpoint = \"{}/services/collector/event\"\ntoken = \"{TOKEN}\"\nindexer_ack = false",
        peer.url()
    ))
    .unwrap();
    let mut hec = HecSink::new(
        "splunk",
        &cfg,
        &SinkContext {
            state_dir: dir.path().to_path_buf(),
        },
    )
    .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(60), hec.deliver(&batch(2))).await;
    assert!(matches!(delivered, Ok(Ok(()))), "{delivered:?}");
    let indexed = peer.events();
    assert_eq!(indexed.len(), encoded.len(), "{:?}", peer.stats());
    assert_eq!(hec.dead_letter_count(), 0);
    for ((name, e), envelope) in encoded.iter().zip(&indexed) {
        let want: Value = serde_json::from_str(&e.json).unwrap();
        assert!(envelope["event"] == want, "{name}: HEC got another event");
    }
    assert!(
        peer.stats().violations.is_empty(),
        "{:?}",
        peer.stats().violations
    );
}
