//! Integration tests for `schemas/event.schema.json`: the schema is a valid draft 2020-12
//! schema, it describes exactly what `veeam_siem::event::Event` serializes to, every VB365
//! fixture in `tests/fixtures/vbo/` maps to an event that validates, and broken events are
//! rejected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use veeam_siem::event::*;
use veeam_siem::map::MapContext;
use veeam_siem::map::vbo::{RawRestoreEvent, RawRestoreSession, map_restore_event};

use crate::support::event_schema;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vbo")
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn ctx() -> MapContext<'static> {
    MapContext {
        source_id: "vbo_main",
        observer_hostname: "vbo.example.com",
        fetched_at: Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap(),
    }
}

/// Map every (session, event) pair a fixture file holds. Two layouts exist:
/// `{ "session": {...}, "events": [...] }` (our own), and the spec's example pages
/// (`spec-*-restoresession-events-page.json` paired with `spec-*-restoresessions-page.json`).
fn map_fixture(path: &Path) -> Vec<(String, Value)> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let doc = read_json(path);
    let mut out = Vec::new();
    let mut map_one = |session: &RawRestoreSession, raw_event: &Value| {
        let event: RawRestoreEvent = serde_json::from_value(raw_event.clone())
            .unwrap_or_else(|e| panic!("{name}: event {raw_event}: {e}"));
        let original = raw_event.to_string();
        let mapped = map_restore_event(&ctx(), session, &event, Some(&original));
        let value = serde_json::to_value(&mapped).expect("Event serializes");
        out.push((format!("{name} / event {}", event.id), value));
    };
    if let Some(session) = doc.get("session") {
        let session: RawRestoreSession = serde_json::from_value(session.clone())
            .unwrap_or_else(|e| panic!("{name}: session: {e}"));
        for raw_event in doc["events"].as_array().expect("events array") {
            map_one(&session, raw_event);
        }
    } else if name.ends_with("-restoresession-events-page.json") {
        let sessions_path = path.with_file_name(name.replace(
            "-restoresession-events-page.json",
            "-restoresessions-page.json",
        ));
        let sessions: Vec<RawRestoreSession> =
            serde_json::from_value(read_json(&sessions_path)["results"].clone())
                .expect("sessions page results");
        for raw_event in doc["results"].as_array().expect("results array") {
            let link = raw_event["_links"]["restoreSession"]["href"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            let session = sessions
                .iter()
                .find(|s| link.ends_with(&s.id.to_lowercase()))
                .unwrap_or_else(|| panic!("{name}: no session for {link}"));
            map_one(session, raw_event);
        }
    }
    out
}

fn all_mapped_fixtures() -> Vec<(String, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/vbo exists")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths.iter().flat_map(|p| map_fixture(p)).collect()
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let schema = veeam_siem::schema::event_schema();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!(
            "schema violates the 2020-12 meta-schema at {}: {e}",
            e.instance_path()
        );
    }
    // And it compiles, with format validation on.
    let _ = event_schema::event_validator();
}

#[test]
fn every_fixture_maps_to_a_valid_event() {
    let mapped = all_mapped_fixtures();
    assert!(
        mapped.len() >= 20,
        "expected the fixtures to yield many events, got {}",
        mapped.len()
    );
    let mut failures = Vec::new();
    for (what, value) in &mapped {
        if let Err(e) = event_schema::validate_event(value) {
            failures.push(format!("{what}:\n{e}\n{value:#}"));
        }
        // The JSON is also exactly what `Event` reads back (deny_unknown_fields).
        let back: Event = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{what}: does not deserialize back: {e}"));
        assert_eq!(&serde_json::to_value(&back).unwrap(), value, "{what}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fixtures_cover_every_action_and_category() {
    let mapped = all_mapped_fixtures();
    let actions: BTreeSet<&str> = mapped
        .iter()
        .filter_map(|(_, v)| v["event"]["action"].as_str())
        .collect();
    for want in [
        "restore-session-started",
        "restore-session-stopped",
        "restore-session-event",
        "item-viewed",
        "item-restored",
        "item-exported",
        "item-saved",
        "item-sent",
    ] {
        assert!(
            actions.contains(want),
            "no fixture yields {want}: {actions:?}"
        );
    }
    let outcomes: BTreeSet<&str> = mapped
        .iter()
        .filter_map(|(_, v)| v["event"]["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, BTreeSet::from(["failure", "success", "unknown"]));
    for category in ["session", "email", "file"] {
        assert!(
            mapped
                .iter()
                .any(|(_, v)| v["event"]["category"][0] == category),
            "no fixture yields category {category}"
        );
    }
}

/// An `Event` with every optional field set, so its JSON holds every path the contract has.
fn maximal_event() -> Event {
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    Event {
        timestamp: t("2025-03-04T08:05:40.1Z"),
        ecs: Ecs::default(),
        message: "Item Quarterly report.msg was saved successfully".into(),
        event: EventMeta {
            kind: "event".into(),
            category: vec!["file".into()],
            kind_type: vec!["creation".into()],
            action: "item-saved".into(),
            outcome: "success".into(),
            id: "a1b2c3d4-0000-4000-8000-000000000002".into(),
            sequence: Some(1),
            created: t("2025-03-04T08:06:00Z"),
            start: Some(t("2025-03-04T08:05:40.1Z")),
            end: Some(t("2025-03-04T08:05:40.145Z")),
            duration: Some(45_000_000),
            dataset: dataset::VBO_RESTORE.into(),
            module: MODULE.into(),
            provider: "vbo".into(),
            original: Some("{}".into()),
        },
        observer: Observer {
            vendor: VENDOR.into(),
            product: "Veeam Backup for Microsoft 365".into(),
            hostname: "vbo.example.com".into(),
        },
        labels: Labels {
            source_id: "vbo_main".into(),
        },
        related: Related {
            user: vec!["alice".into(), "LAB\\alice".into()],
            hosts: vec!["WS-ALICE01".into()],
            ip: vec!["192.0.2.1".into(), "2001:db8::10".into()],
        }
        .into(),
        organization: Some(Organization {
            name: Some("contoso.onmicrosoft.com".into()),
            id: Some("5e0d6c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6".into()),
        }),
        user: Some(
            User {
                name: Some("alice".into()),
                domain: Some("LAB".into()),
                id: Some("S-1-5-21-1".into()),
                email: Some("alice@contoso.com".into()),
            }
            .into(),
        ),
        client: Some(
            Client {
                address: Some("WS-ALICE01".into()),
                domain: Some("WS-ALICE01".into()),
                ip: Some("192.0.2.1".into()),
            }
            .into(),
        ),
        source: Some(
            SourceEndpoint {
                ip: Some("2001:db8::10".into()),
            }
            .into(),
        ),
        tags: vec![
            "veeam_field_degraded".into(),
            "veeam_time_assumed_utc".into(),
        ],
        error: Some(ErrorField {
            message: "restoreEvent.itemSizeBytes: \"12 KB\" is not a whole number".into(),
        }),
        veeam: Veeam {
            restore_session: Some(
                RestoreSession {
                    id: "3f2c8a10-6d4e-4b1a-9c55-0e7a2b9d1f01".into(),
                    name: Some("Exchange restore (manual)".into()),
                    session_type: Some("Vex".into()),
                    state: Some("Stopped".into()),
                    result: Some("Success".into()),
                    reason: Some("audit".into()),
                    scope_name: Some("scope".into()),
                    details: Some("details".into()),
                    client_host: Some("WS-ALICE01 (via: 2001:db8::10)".into()),
                    initiated_by: Some("LAB\\alice".into()),
                    initiated_by_is_organization: true,
                    creation_time: Some(t("2025-03-04T08:01:12Z")),
                    end_time: Some(t("2025-03-04T08:20:47Z")),
                    etag: Some(7),
                }
                .into(),
            ),
            restore_event: Some(RestoreEvent {
                event_type: Some("Save".into()),
                status: Some("Success".into()),
                title: Some("Item is successfully restored.".into()),
                order: Some(1),
                item_name: Some("Quarterly report.msg".into()),
                item_type: Some("Item".into()),
                item_size_bytes: Some(48213),
                source: Some("alice@contoso.onmicrosoft.com/Inbox".into()),
                target: Some("C:\\Users\\alice\\Desktop".into()),
                user_id: Some("u".into()),
                backed_up_organization_id: Some("o".into()),
                group_id: Some("g".into()),
                site_id: Some("s".into()),
                team_id: Some("t".into()),
            }),
            gateway: Some(Gateway {
                ip: "2001:db8::10".into(),
            }),
            job: Some(Job {
                id: "job-1".into(),
                name: Some("M365 backup".into()),
                backup_type: Some("Mailbox".into()),
                job_type: Some("Backup".into()),
            }),
            job_session: Some(JobSession {
                id: "session-1".into(),
                status: Some("Success".into()),
                progress: Some(100),
                processed_objects: Some(42),
                creation_time: Some(t("2025-03-03T02:00:00Z")),
                end_time: Some(t("2025-03-03T02:10:44Z")),
                duration: Some(644_000_000_000),
            }),
            log: Some(Log {
                status: Some("Success".into()),
                object_type: Some("mailbox".into()),
                object_name: Some("adams@contoso.com".into()),
                transferred_bytes: Some(176_999_219),
                items: Some(2472),
                rate_bytes_per_sec: Some(1_887_437),
            }),
            degraded_fields: vec!["restoreEvent.itemSizeBytes".into()],
        },
    }
}

/// Dotted paths of every property the schema declares (objects and leaves).
fn schema_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.insert(path.clone());
            schema_paths(sub, &path, out);
        }
    }
}

/// Dotted paths of every object key in an instance (arrays are leaves).
fn instance_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(obj) = v.as_object() {
        for (key, sub) in obj {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.insert(path.clone());
            instance_paths(sub, &path, out);
        }
    }
}

#[test]
fn schema_describes_exactly_the_event_struct() {
    let value = serde_json::to_value(maximal_event()).unwrap();
    event_schema::assert_valid_event(&value);

    let mut declared = BTreeSet::new();
    schema_paths(&veeam_siem::schema::event_schema(), "", &mut declared);
    let mut produced = BTreeSet::new();
    instance_paths(&value, "", &mut produced);
    let only_in_schema: Vec<_> = declared.difference(&produced).collect();
    let only_in_struct: Vec<_> = produced.difference(&declared).collect();
    assert!(
        only_in_schema.is_empty() && only_in_struct.is_empty(),
        "schema and src/event.rs disagree.\nonly in schema: {only_in_schema:?}\nonly in Event: {only_in_struct:?}"
    );
}

/// A valid mapped event to break in different ways.
fn valid_event() -> Value {
    let (_, v) = all_mapped_fixtures()
        .into_iter()
        .find(|(what, _)| what.starts_with("spec-"))
        .expect("spec fixture maps");
    event_schema::assert_valid_event(&v);
    v
}

fn assert_rejected(v: &Value, mentions: &str) {
    match event_schema::validate_event(v) {
        Ok(()) => panic!("broken event was accepted:\n{v:#}"),
        Err(e) => assert!(
            e.contains(mentions),
            "expected an error mentioning {mentions:?}, got:\n{e}"
        ),
    }
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let mut v = valid_event();
    v["surprise"] = json!(1);
    assert_rejected(&v, "surprise");

    let mut v = valid_event();
    v["event"]["severity"] = json!(3);
    assert_rejected(&v, "severity");

    let mut v = valid_event();
    v["veeam"]["restore_session"]["owner"] = json!("x");
    assert_rejected(&v, "owner");

    let mut v = valid_event();
    v["client"]["port"] = json!(443);
    assert_rejected(&v, "port");
}

#[test]
fn bad_values_are_rejected() {
    let mut v = valid_event();
    v["event"]["outcome"] = json!("partial");
    assert_rejected(&v, "/event/outcome");

    let mut v = valid_event();
    v.as_object_mut().unwrap().remove("@timestamp");
    assert_rejected(&v, "@timestamp");

    let mut v = valid_event();
    v["@timestamp"] = json!("yesterday");
    assert_rejected(&v, "/@timestamp");

    // Ends in "Z" but is no date: the `date-time` format is asserted, not just annotated.
    let mut v = valid_event();
    v["event"]["created"] = json!("2025-13-45T25:00:00Z");
    assert_rejected(&v, "/event/created");

    let mut v = valid_event();
    v["@timestamp"] = json!("2025-03-04T10:01:12+02:00");
    assert_rejected(&v, "/@timestamp");

    let mut v = valid_event();
    v["client"]["ip"] = json!("BXYDEV01");
    assert_rejected(&v, "/client/ip");

    let mut v = valid_event();
    v["related"]["ip"] = json!(["10.0.0.300"]);
    assert_rejected(&v, "/related/ip/0");

    let mut v = valid_event();
    v["event"]["kind"] = json!("alert");
    assert_rejected(&v, "/event/kind");

    let mut v = valid_event();
    v["event"]["dataset"] = json!("veeam.other");
    assert_rejected(&v, "/event/dataset");

    let mut v = valid_event();
    v["event"]["provider"] = json!("vdc");
    assert_rejected(&v, "/event/provider");

    let mut v = valid_event();
    v["ecs"]["version"] = json!("1.0.0");
    assert_rejected(&v, "/ecs/version");

    let mut v = valid_event();
    v["event"]["category"] = json!(["backup"]);
    assert_rejected(&v, "/event/category/0");

    // ECS: a session event cannot be a "creation".
    let mut v = valid_event();
    v["event"]["category"] = json!(["session"]);
    v["event"]["type"] = json!(["creation"]);
    assert_rejected(&v, "/event/type/0");

    let mut v = valid_event();
    v["event"]["duration"] = json!(-1);
    assert_rejected(&v, "/event/duration");

    // Optional fields are left out, never null.
    let mut v = valid_event();
    v["event"]["end"] = Value::Null;
    assert_rejected(&v, "/event/end");

    let mut v = valid_event();
    v["veeam"].as_object_mut().unwrap().remove("restore_event");
    assert_rejected(&v, "restore_event");
}

/// Whatever strings Veeam sends (besides the ids), the mapped event still validates.
#[test]
fn odd_inputs_still_map_to_valid_events() {
    let odd = [
        "",
        " ",
        "(",
        ")",
        "\\",
        "@",
        "(via:",
        "(via: 300.1.1.1)",
        "🦀",
        "é\\é",
        "a@b@c",
        "\u{0}",
        "None",
        "none",
        "STOPPED",
        "started",
        "x (via: [::1]:99999)",
        "ＨＯＳＴ",
        "İ",
        "-",
        "00:00:00.",
        "-00:00:01",
        "99999999.00:00:00",
        "Copy To",
        "!!!",
        "Vex",
        "2001:db8::1",
        "fe80::1%eth0",
        "10.0.0.1 (via: 2001:db8::1)",
    ];
    let base_session: RawRestoreSession = serde_json::from_value(json!({
        "id": "00000000-0000-4000-8000-000000000001",
        "type": "Vex",
        "creationTime": "2025-03-04T08:00:00Z",
        "state": "Working",
        "result": "Success"
    }))
    .unwrap();
    let base_event: RawRestoreEvent = serde_json::from_value(json!({
        "id": "00000000-0000-4000-8000-00000000e001",
        "status": "Success",
        "message": "m",
        "startTime": "2025-03-04T08:00:01+05:30",
        "endTime": "2025-03-04T08:00:00Z",
        "order": 0
    }))
    .unwrap();
    let mut failures = Vec::new();
    for a in odd {
        for b in odd {
            let mut session = base_session.clone();
            session.session_type = a.into();
            session.organization = Some(b.into());
            session.initiated_by = Some(a.into());
            session.client_host = Some(format!("{a} (via: {b}"));
            session.name = Some(b.into());
            session.state = b.into();
            let mut event = base_event.clone();
            event.event_type = Some(a.into());
            event.status = b.into();
            event.title = Some(a.into());
            event.message = Some(b.into());
            event.duration = Some(a.into());
            event.item_name = Some(b.into());
            event.item_size_bytes = Some(-5);
            event.order = Some(-1);
            let mapped = map_restore_event(&ctx(), &session, &event, Some(a));
            let value = serde_json::to_value(&mapped).unwrap();
            if let Err(e) = event_schema::validate_event(&value) {
                failures.push(format!("a={a:?} b={b:?}:\n{e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The example in schemas/FIELDS.md is the real mapping of the spec's example Save event.
#[test]
fn fields_md_example_is_current() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/FIELDS.md"))
            .expect("schemas/FIELDS.md");
    let start = doc.find("```json\n").expect("a ```json block in FIELDS.md") + "```json\n".len();
    let len = doc[start..].find("```").expect("closing ```");
    let example: Value = serde_json::from_str(&doc[start..start + len]).expect("example parses");
    event_schema::assert_valid_event(&example);
    let (_, mapped) = all_mapped_fixtures()
        .into_iter()
        .find(|(what, _)| what.ends_with("a1b2c3d4-0000-4000-8000-000000000002"))
        .expect("spec Save event");
    let mut mapped = mapped;
    mapped["event"].as_object_mut().unwrap().remove("original");
    assert_eq!(example, mapped, "update the example in schemas/FIELDS.md");
}
