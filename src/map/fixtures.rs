//! Mapping fixtures (test-only): raw Veeam records in, the expected output event out.
//!
//! Owns: running every case under `tests/fixtures/mapping/{vbo,vdc}/`. A case is a pair of
//! files, `<case>.input.json` (the raw records as Veeam sends them, the [`MapContext`] and
//! the source's `keep_original`) and `<case>.expected.json` (the event, as the sinks would
//! ship it). Each input is decoded and mapped exactly as the sources do it (the same
//! `decode_*` functions, `event.original` kept when `keep_original` is set or the record
//! had odd values), then compared with the expected file as JSON values; a failure names
//! the first differing path with both values. Every expected event must validate against
//! `schemas/event.schema.json` and read back into [`Event`] unchanged.
//!
//! `UPDATE_FIXTURES=1 cargo test --lib map::fixtures` rewrites the expected files (only
//! those that changed) after an intended change; `git diff tests/fixtures/mapping` then
//! shows what changed. The layout is described in `tests/fixtures/mapping/README.md`.
//!
//! Must not: hold mapping logic of its own, or rewrite an input file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{MapContext, vbo, vdc};
use crate::event::Event;

/// Set (to anything but `0` or nothing) to rewrite the expected files.
const UPDATE_VAR: &str = "UPDATE_FIXTURES";

/// Where a VB365 session with an unusable `creationTime` is placed (the source passes its
/// horizon). The placement only orders the session in the source; the event never shows it
/// (it carries no creation time then), so one fixed value serves every case.
const PLACEMENT: &str = "2025-01-01T00:00:00Z";

/// The mapping context of a case (see [`MapContext`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    source_id: String,
    observer_hostname: String,
    fetched_at: DateTime<Utc>,
}

impl Context {
    fn map_context(&self) -> MapContext<'_> {
        MapContext {
            source_id: &self.source_id,
            observer_hostname: &self.observer_hostname,
            fetched_at: self.fetched_at,
        }
    }
}

/// `vbo/<case>.input.json`: one restore session and one of its events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VboInput {
    /// What the case covers, in a sentence.
    description: String,
    context: Context,
    keep_original: bool,
    /// The `RESTRestoreSession` record as Veeam sends it (any JSON, kept as written).
    session: Box<RawValue>,
    /// The `RESTRestoreSessionEvent` record as Veeam sends it.
    event: Box<RawValue>,
}

/// `vdc/<case>.input.json`: a job, one of its sessions and one log entry of that session
/// (a `/logs` record in `log_entry`, or a line of `/logs/download` in `log_line`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VdcInput {
    description: String,
    context: Context,
    keep_original: bool,
    job: Box<RawValue>,
    job_session: Box<RawValue>,
    /// The entry's 0-based position in the session log (`event.sequence`).
    index: u64,
    #[serde(default)]
    log_entry: Option<Box<RawValue>>,
    #[serde(default)]
    log_line: Option<String>,
}

/// Decode and map a VB365 case as `sources::vbo` does.
fn map_vbo(input: &VboInput) -> Result<Event, String> {
    let placement: DateTime<Utc> = PLACEMENT.parse().map_err(|e| format!("PLACEMENT: {e}"))?;
    let session_text = compact(input.session.get());
    let event_text = compact(input.event.get());
    let session =
        vbo::decode_session(&session_text, placement).map_err(|e| format!("session: {e}"))?;
    let event = vbo::decode_event(&event_text).map_err(|e| format!("event: {e}"))?;
    let original =
        (input.keep_original || vbo::is_degraded(&session, &event)).then_some(event_text.as_str());
    Ok(vbo::map_restore_event(
        &input.context.map_context(),
        &session,
        &event,
        original,
    ))
}

/// Decode and map a VDC case as `sources::vdc` does (`/logs` records or download lines).
fn map_vdc(input: &VdcInput) -> Result<Event, String> {
    let job = vdc::decode_job(compact(input.job.get())).map_err(|e| format!("job: {e}"))?;
    let session = vdc::decode_job_session(compact(input.job_session.get()))
        .map_err(|e| format!("job_session: {e}"))?;
    let (entry, raw) = match (&input.log_entry, &input.log_line) {
        (Some(record), None) => {
            let raw = compact(record.get());
            let entry = vdc::decode_log_entry(&raw).map_err(|e| format!("log_entry: {e}"))?;
            (entry, raw)
        }
        (None, Some(line)) => (vdc::decode_text_line(line), line.clone()),
        _ => return Err("give exactly one of `log_entry` and `log_line`".to_string()),
    };
    let original =
        (input.keep_original || vdc::is_degraded(&job, &session, &entry)).then_some(raw.as_str());
    Ok(vdc::map_log_entry(
        &input.context.map_context(),
        &job,
        &session,
        &entry,
        input.index,
        original,
    ))
}

/// The JSON text without the whitespace between tokens (as an API sends a record), keys
/// in the order written; strings are copied untouched.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// One difference between the expected and the mapped event.
#[derive(Debug, PartialEq)]
struct Difference {
    /// `veeam.restore_session.initiated_by`, `related.ip[1]`, or `(root)`.
    path: String,
    expected: Option<Value>,
    actual: Option<Value>,
}

/// Every path where `expected` and `actual` differ, in key order (a missing key is `None`).
fn differences(expected: &Value, actual: &Value) -> Vec<Difference> {
    fn walk(
        path: &str,
        expected: Option<&Value>,
        actual: Option<&Value>,
        out: &mut Vec<Difference>,
    ) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match (expected, actual) {
            (Some(Value::Object(e)), Some(Value::Object(a))) => {
                let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    walk(&join(key), e.get(key), a.get(key), out);
                }
            }
            (Some(Value::Array(e)), Some(Value::Array(a))) => {
                for i in 0..e.len().max(a.len()) {
                    walk(&format!("{path}[{i}]"), e.get(i), a.get(i), out);
                }
            }
            (e, a) if e == a => {}
            (e, a) => out.push(Difference {
                path: if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path.to_string()
                },
                expected: e.cloned(),
                actual: a.cloned(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", Some(expected), Some(actual), &mut out);
    out
}

fn show(value: &Option<Value>) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "(absent)".to_string(),
    }
}

/// The report of a case whose mapped event differs from its expected file.
fn describe(diffs: &[Difference]) -> String {
    let mut text = String::new();
    if let Some(first) = diffs.first() {
        let _ = write!(
            text,
            "first difference at `{}`:\n    expected: {}\n    actual:   {}",
            first.path,
            show(&first.expected),
            show(&first.actual)
        );
    }
    if diffs.len() > 1 {
        let rest: Vec<&str> = diffs[1..]
            .iter()
            .take(10)
            .map(|d| d.path.as_str())
            .collect();
        let _ = write!(text, "\n  also differ: {}", rest.join(", "));
        if diffs.len() > 11 {
            let _ = write!(text, " and {} more", diffs.len() - 11);
        }
    }
    text
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&crate::schema::event_schema())
            .unwrap_or_else(|e| panic!("schemas/event.schema.json does not compile: {e}"))
    })
}

/// Schema violations of an event, one per line; empty when it validates.
fn schema_errors(event: &Value) -> Vec<String> {
    validator()
        .iter_errors(event)
        .map(|e| format!("{:?}: {e}", e.instance_path().as_str()))
        .collect()
}

fn update_requested() -> bool {
    std::env::var(UPDATE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn mapping_dir(source: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mapping")
        .join(source)
}

/// The case names of a directory (sorted), or the problems of its layout: a file that is
/// neither an input nor an expected file, an expected file without its input.
fn case_names(dir: &Path) -> Result<Vec<String>, Vec<String>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| vec![format!("cannot list {}: {e}", dir.display())])?;
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let name = match entry {
            Ok(entry) => entry.file_name().to_string_lossy().into_owned(),
            Err(e) => {
                problems.push(format!("cannot list {}: {e}", dir.display()));
                continue;
            }
        };
        if let Some(case) = name.strip_suffix(".input.json") {
            inputs.push(case.to_string());
        } else if let Some(case) = name.strip_suffix(".expected.json") {
            expected.push(case.to_string());
        } else {
            problems.push(format!(
                "{name}: not a `<case>.input.json` or `<case>.expected.json` file"
            ));
        }
    }
    for case in &expected {
        if !inputs.contains(case) {
            problems.push(format!(
                "{case}.expected.json has no {case}.input.json (delete it, or restore the input)"
            ));
        }
    }
    if inputs.is_empty() {
        problems.push(format!("no cases in {}", dir.display()));
    }
    inputs.sort();
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

/// Run every case of `tests/fixtures/mapping/<source>/`; panics with every failing case.
fn run_cases(source: &str, map: impl Fn(&str) -> Result<Event, String>) {
    let dir = mapping_dir(source);
    let cases = case_names(&dir).unwrap_or_else(|problems| {
        panic!("tests/fixtures/mapping/{source}/:\n{}", problems.join("\n"))
    });
    let update = update_requested();
    let mut failures = Vec::new();
    let mut rewritten = Vec::new();
    for case in &cases {
        let what = format!("{source}/{case}");
        let input_path = dir.join(format!("{case}.input.json"));
        let expected_path = dir.join(format!("{case}.expected.json"));
        let event = match std::fs::read_to_string(&input_path)
            .map_err(|e| format!("cannot read the input: {e}"))
            .and_then(|text| map(&text))
        {
            Ok(event) => event,
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        let actual = match serde_json::to_value(&event) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: the event does not serialize: {e}"));
                continue;
            }
        };
        let errors = schema_errors(&actual);
        if !errors.is_empty() {
            failures.push(format!(
                "{what}: the event violates schemas/event.schema.json:\n  {}",
                errors.join("\n  ")
            ));
        }
        match serde_json::from_value::<Event>(actual.clone()) {
            Ok(back) if back == event => {}
            Ok(_) => failures.push(format!("{what}: the event reads back different")),
            Err(e) => failures.push(format!("{what}: the event does not read back: {e}")),
        }
        let old = std::fs::read_to_string(&expected_path).ok();
        if update {
            let text = match serde_json::to_string(&event) {
                Ok(text) => crate::event::pretty::indent(&text) + "\n",
                Err(e) => {
                    failures.push(format!("{what}: the event does not serialize: {e}"));
                    continue;
                }
            };
            if old.as_deref() != Some(text.as_str()) {
                match std::fs::write(&expected_path, text) {
                    Ok(()) => rewritten.push(what),
                    Err(e) => failures.push(format!(
                        "{what}: cannot write {}: {e}",
                        expected_path.display()
                    )),
                }
            }
            continue;
        }
        let Some(old) = old else {
            failures.push(format!(
                "{what}: no {case}.expected.json; create it with {UPDATE_VAR}=1 and review it"
            ));
            continue;
        };
        let expected: Value = match serde_json::from_str(&old) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: {case}.expected.json is not JSON: {e}"));
                continue;
            }
        };
        let diffs = differences(&expected, &actual);
        if !diffs.is_empty() {
            failures.push(format!(
                "{what}: the event differs from {case}.expected.json\n  {}",
                describe(&diffs)
            ));
        }
    }
    for what in &rewritten {
        eprintln!("{UPDATE_VAR}: rewrote {what}.expected.json");
    }
    assert!(
        failures.is_empty(),
        "{} of {} mapping fixtures failed:\n\n{}\n\nIf the change is intended, rewrite the \
         expected files with `{UPDATE_VAR}=1 cargo test --lib map::fixtures` and review \
         `git diff tests/fixtures/mapping`.",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    let input: T = serde_json::from_str(text).map_err(|e| format!("the input: {e}"))?;
    Ok(input)
}

#[test]
fn vbo_fixtures() {
    run_cases("vbo", |text| {
        let input: VboInput = parse(text)?;
        if input.description.trim().is_empty() {
            return Err("the input's `description` is empty".to_string());
        }
        map_vbo(&input)
    });
}

/// The batch mapper, which maps a session's shared parts once per run of its events,
/// gives exactly what [`vbo::map_restore_event`] gives for each record, however the
/// sessions of every VB365 case follow each other in a batch.
#[test]
fn batch_mapper_matches_mapping_each_record_alone() {
    use std::sync::Arc;

    use super::{Mapper, Record, map_record};

    let placement: DateTime<Utc> = PLACEMENT.parse().expect("PLACEMENT");
    let dir = mapping_dir("vbo");
    let mut decoded = Vec::new();
    for case in case_names(&dir).expect("vbo cases") {
        let text = std::fs::read_to_string(dir.join(format!("{case}.input.json"))).expect(&case);
        let input: VboInput = parse(&text).expect(&case);
        // Cases whose essential fields are unusable have no event to compare.
        let (Ok(session), Ok(event)) = (
            vbo::decode_session(compact(input.session.get()), placement),
            vbo::decode_event(compact(input.event.get())),
        ) else {
            continue;
        };
        decoded.push((Arc::new(session), event));
    }
    assert!(decoded.len() > 3, "too few VB365 cases decode");
    // Runs of one session, a session coming back after another, single events.
    let order = (0..decoded.len())
        .flat_map(|i| std::iter::repeat_n(i, 1 + i % 3))
        .chain((0..decoded.len()).rev())
        .chain([0, 1, 0, 1]);
    let records: Vec<Record> = order
        .map(|i| Record::VboEvent {
            session: decoded[i].0.clone(),
            event: decoded[i].1.clone(),
            original: (i % 2 == 1).then(|| format!("record {i}").into()),
        })
        .collect();
    let ctx = MapContext {
        source_id: "vbo_main",
        observer_hostname: "vbo.example.com",
        fetched_at: placement,
    };
    let mut mapper = Mapper::new(ctx.clone());
    for (n, record) in records.into_iter().enumerate() {
        let alone = map_record(&ctx, &record);
        assert_eq!(mapper.map(record), alone, "record {n}");
    }
}

#[test]
fn vdc_fixtures() {
    run_cases("vdc", |text| {
        let input: VdcInput = parse(text)?;
        if input.description.trim().is_empty() {
            return Err("the input's `description` is empty".to_string());
        }
        map_vdc(&input)
    });
}

#[test]
fn compact_drops_whitespace_between_tokens_only() {
    let text = "{\n  \"a b\": [1, 2],\n  \"c\": \" x\\\" \\\\ \",\t\"d\": {}\r\n}";
    assert_eq!(compact(text), r#"{"a b":[1,2],"c":" x\" \\ ","d":{}}"#);
    let parsed: Value = serde_json::from_str(&compact(text)).unwrap();
    assert_eq!(parsed, serde_json::from_str::<Value>(text).unwrap());
}

#[test]
fn differences_name_paths_in_key_order() {
    let expected = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "z": "same", "gone": true});
    let actual = serde_json::json!({"a": {"b": 2, "c": [1]}, "z": "same", "new": null});
    let paths: Vec<(String, String, String)> = differences(&expected, &actual)
        .iter()
        .map(|d| (d.path.clone(), show(&d.expected), show(&d.actual)))
        .collect();
    let want = [
        ("a.b", "1", "2"),
        ("a.c[1]", "2", "(absent)"),
        ("gone", "true", "(absent)"),
        ("new", "(absent)", "null"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(p, e, a)| (p.to_string(), e.to_string(), a.to_string()))
        .collect();
    assert_eq!(paths, want);
    assert!(differences(&expected, &expected).is_empty());
    assert_eq!(
        differences(&Value::Null, &Value::Bool(true))[0].path,
        "(root)"
    );
    let text = describe(&differences(&expected, &actual));
    assert!(
        text.starts_with("first difference at `a.b`:\n    expected: 1\n    actual:   2"),
        "{text}"
    );
    assert!(text.ends_with("also differ: a.c[1], gone, new"), "{text}");
}
