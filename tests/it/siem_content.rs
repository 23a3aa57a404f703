//! The SIEM content in `examples/siem/` against the output contract and the simulator.
//!
//! - Sigma rules (`examples/siem/sigma/*.yml`): parse as YAML, carry the keys a Sigma rule
//!   needs, and use only fields of `schemas/event.schema.json` (in `detection`, `fields`
//!   and correlation `group-by`).
//! - Splunk searches (`examples/siem/splunk/veeam_siem/default/savedsearches.conf`, with the
//!   macros of `macros.conf` expanded): every field a search reads is a schema path as
//!   Splunk extracts it from the JSON event (`a.b.c`, arrays as `a.b{}`), one of the indexed
//!   fields the HEC sink sends, a Splunk default field, or one the search created itself
//!   (and still has: fields dropped by `stats` are errors too).
//! - Behaviour: the rules are evaluated, by a small evaluator for the subset of Sigma they
//!   use, against the events `veeam-siem demo` prints (and, for the mass-restore
//!   correlation, against a simulator configured with bigger sessions); each single-event
//!   rule matches some events but not all of its dataset, and agrees with the same logic
//!   written directly in Rust.
//!
//! The checkers themselves (the Sigma loader, linter and evaluator, the Splunk `.conf`
//! parser and SPL analyzer, the schema's field paths) are [`crate::siem`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;

use crate::siem::sigma::{
    Rule, SigmaDoc, lint_rule, mass_recovery, rule_by_title, sigma_docs, single_event_rules,
    str_at, timestamp, values_at,
};
use crate::siem::spl::{
    INDEXED_FIELDS, analyze, expand_macros, macros, parse_conf, saved_searches,
};
use crate::siem::{TestResult, is_schema_field, root, siem_dir, splunk_default_dir};

#[test]
fn sigma_rules_are_well_formed_and_use_schema_fields() {
    let docs = sigma_docs();
    assert!(
        docs.len() >= 5,
        "expected the Sigma rules in examples/siem/sigma, found {}",
        docs.len()
    );
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for doc in docs {
        if let Some(id) = doc.doc["id"].as_str()
            && !ids.insert(id.to_string())
        {
            problems.push(format!("{}: id {id} is used twice", doc.file));
        }
        if let Some(name) = doc.doc["name"].as_str()
            && !names.insert(name.to_string())
        {
            problems.push(format!("{}: name {name} is used twice", doc.file));
        }
    }
    let referable: BTreeSet<String> = ids.union(&names).cloned().collect();
    for doc in docs {
        problems.extend(lint_rule(doc, &referable));
    }
    assert!(
        problems.is_empty(),
        "Sigma problems:\n{}",
        problems.join("\n")
    );
    assert!(
        docs.iter().any(SigmaDoc::is_correlation),
        "the mass-restore detection is a correlation rule"
    );
}

// ---------------------------------------------------------------------------------------
// Events from the simulator

/// Run a command to completion, reading its output while it runs; kill it after `limit`.
fn run_with_timeout(mut command: Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "{command:?} did not finish within {limit:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn parse_ndjson(output: &Output, what: &str) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}")))
        .collect()
}

/// The events `veeam-siem demo` prints (VB365 restores and VDC job logs), once per test run.
fn demo_events() -> &'static Vec<Value> {
    static EVENTS: OnceLock<Vec<Value>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_veeam-siem"));
        command.arg("demo").env("RUST_LOG", "warn");
        let output = run_with_timeout(command, Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("veeam-siem demo: {e}"));
        let events = parse_ndjson(&output, "veeam-siem demo");
        assert!(
            events.len() > 50,
            "the demo printed only {} events",
            events.len()
        );
        events
    })
}

fn dataset(event: &Value) -> &str {
    str_at(event, "event.dataset").unwrap_or_default()
}

fn is_item_action(event: &Value) -> bool {
    dataset(event) == "veeam.vbo_restore"
        && str_at(event, "event.action").is_some_and(|a| a.starts_with("item-"))
}

/// Indexes of the events a rule matches.
fn matched(rule: &Rule, events: &[Value]) -> BTreeSet<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| rule.matches(e))
        .map(|(i, _)| i)
        .collect()
}

fn expected(events: &[Value], predicate: impl Fn(&Value) -> bool) -> BTreeSet<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| predicate(e))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn every_single_event_rule_matches_some_but_not_all_demo_events() {
    let events = demo_events();
    for rule in single_event_rules() {
        let service = rule.doc.doc["logsource"]["service"].as_str().unwrap_or("");
        let own = if service == "vdc" {
            "veeam.vdc_job_log"
        } else {
            "veeam.vbo_restore"
        };
        let of_dataset = events.iter().filter(|e| dataset(e) == own).count();
        let hits = matched(&rule, events);
        assert!(
            !hits.is_empty(),
            "{} matches none of the {} demo events",
            rule.doc.title(),
            events.len()
        );
        assert!(
            hits.len() < of_dataset,
            "{} matches all {of_dataset} {own} demo events",
            rule.doc.title()
        );
        assert!(
            hits.iter().all(|&i| dataset(&events[i]) == own),
            "{} matches events of another dataset",
            rule.doc.title()
        );
    }
}

#[test]
fn unattributed_restore_rule_is_exactly_the_organization_initiated_items() {
    let events = demo_events();
    let rule = rule_by_title("VB365 Restore Not Attributed to a Named User");
    let by_organization = |e: &Value| {
        values_at(e, "veeam.restore_session.initiated_by_is_organization")
            .first()
            .and_then(|v| v.as_bool())
            == Some(true)
    };
    let want = expected(events, |e| {
        is_item_action(e)
            && (by_organization(e)
                || (values_at(e, "user.name").is_empty()
                    && values_at(e, "veeam.restore_session.initiated_by").is_empty()))
    });
    assert_eq!(matched(&rule, events), want);
    // The demo has provider restores, and they carry no user: the schema's rule.
    assert!(
        events
            .iter()
            .any(|e| is_item_action(e) && by_organization(e))
    );
    for e in events.iter().filter(|e| by_organization(e)) {
        assert!(values_at(e, "user.name").is_empty(), "{e}");
        assert!(values_at(e, "related.user").is_empty(), "{e}");
    }
}

/// A numeric macro of macros.conf.
fn macro_number(name: &str) -> i64 {
    let macros = macros();
    let definition = macros
        .get(name)
        .unwrap_or_else(|| panic!("macros.conf has no `{name}`"));
    definition
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("macro `{name}` = `{definition}` is not a number: {e}"))
}

#[test]
fn off_hours_rule_agrees_with_the_hour_of_timestamp_and_the_splunk_macros() {
    let (start, end) = (
        macro_number("veeam_business_hours_start"),
        macro_number("veeam_business_hours_end"),
    );
    assert!((0..24).contains(&start) && (1..=24).contains(&end) && start < end);
    let events = demo_events();
    let rule = rule_by_title("VB365 Restore Outside Business Hours");
    let want = expected(events, |e| {
        let hour = i64::from(timestamp(e).hour());
        is_item_action(e) && (hour < start || hour >= end)
    });
    let hits = matched(&rule, events);
    assert_eq!(
        hits, want,
        "the Sigma hour list and the Splunk business-hours macros ({start}-{end}) disagree"
    );
    assert!(!hits.is_empty());
    assert!(
        events.iter().any(|e| {
            let hour = i64::from(timestamp(e).hour());
            is_item_action(e) && (start..end).contains(&hour)
        }),
        "the demo has restores inside business hours too"
    );
    // The Splunk search also flags weekends; report how many of those the demo has.
    let weekend = events
        .iter()
        .filter(|e| is_item_action(e) && timestamp(e).weekday().number_from_monday() > 5)
        .count();
    eprintln!("demo item events on a weekend (Splunk search only): {weekend}");
}

#[test]
fn vdc_rules_agree_with_the_job_log_fields() {
    let events = demo_events();
    let failed_job = rule_by_title("Veeam Data Cloud Backup Job Session Failed");
    let want = expected(events, |e| {
        dataset(e) == "veeam.vdc_job_log"
            && str_at(e, "event.action") == Some("job-finished")
            && (str_at(e, "event.outcome") == Some("failure")
                || matches!(
                    str_at(e, "veeam.job_session.status"),
                    Some("Failed" | "Error")
                ))
    });
    assert_eq!(matched(&failed_job, events), want);

    let failed_object = rule_by_title("Veeam Data Cloud Object Failed to Back Up");
    let want = expected(events, |e| {
        dataset(e) == "veeam.vdc_job_log"
            && str_at(e, "event.action") == Some("object-processed")
            && str_at(e, "event.outcome") == Some("failure")
    });
    let hits = matched(&failed_object, events);
    assert_eq!(hits, want);
    assert!(
        hits.iter()
            .all(|&i| str_at(&events[i], "veeam.log.object_name").is_some()),
        "failed objects are named"
    );
}

#[test]
fn mass_recovery_threshold_is_the_same_in_sigma_and_splunk() {
    let correlation = mass_recovery();
    assert_eq!(
        correlation.threshold,
        macro_number("veeam_mass_recovery_items"),
        "Sigma `gte` and the Splunk macro veeam_mass_recovery_items differ"
    );
    assert_eq!(
        correlation.timespan,
        15 * 60,
        "the Splunk search bins by 15m"
    );
    assert_eq!(correlation.group_by, ["client.address"]);
}

#[test]
fn mass_recovery_stays_quiet_on_ordinary_demo_activity() {
    let correlation = mass_recovery();
    let peaks = correlation.peaks(demo_events());
    assert!(
        peaks.values().any(|&n| n > 1),
        "the demo has several restores per client host"
    );
    assert!(
        correlation.firing(demo_events()).is_empty(),
        "ordinary demo sessions (a handful of items each) must not look like a mass restore: {peaks:?}"
    );
}

/// Restore events from a simulator with big sessions (60-225 items each), through the
/// ordinary `run --once` of the binary.
async fn bulk_events() -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    use crate::support::config::{ConfigBuilder, Table};
    use veeam_siem_simulator::{SimConfig, SimHandle};
    let sim = SimHandle::start(SimConfig {
        tls: false,
        seed: 7,
        sessions: 6,
        events_per_session: 150,
        ..SimConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let config = ConfigBuilder::new(dir.path().join("state"))
        .table(Table::vbo("vbo_bulk", &sim.base_url()).set("password", "sim-password"))
        .table(Table::stdout("out", &["vbo_bulk"]))
        .write(&dir.path().join("bulk.toml"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_veeam-siem"));
    command
        .args(["run", "--once", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let output =
        tokio::task::spawn_blocking(move || run_with_timeout(command, Duration::from_secs(180)))
            .await??;
    let expected = sim.event_count();
    sim.shutdown().await;
    let events = parse_ndjson(&output, "veeam-siem run --once (bulk simulator)");
    assert_eq!(events.len(), expected, "every simulated event was shipped");
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_recovery_fires_on_a_bulk_restore_and_not_on_every_host() -> TestResult {
    let events = bulk_events().await?;
    let correlation = mass_recovery();
    let peaks = correlation.peaks(&events);
    let firing = correlation.firing(&events);
    assert!(
        !firing.is_empty(),
        "no client host reached {} items in {}s: {peaks:?}",
        correlation.threshold,
        correlation.timespan
    );
    assert!(
        firing.len() < peaks.len(),
        "every client host fires: {peaks:?}"
    );
    // The Splunk search counts in fixed 15-minute buckets: the busiest host fires there too.
    let span = correlation.timespan * 1000;
    let mut buckets: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in events.iter().filter(|e| correlation.base.matches(e)) {
        let host = str_at(e, "client.address").unwrap_or("(no client host)");
        let bucket = timestamp(e).timestamp_millis().div_euclid(span);
        *buckets.entry((host.to_string(), bucket)).or_default() += 1;
    }
    let spl_hosts: BTreeSet<&str> = buckets
        .iter()
        .filter(|(_, n)| **n >= correlation.threshold)
        .map(|((host, _), _)| host.as_str())
        .collect();
    assert!(
        firing.iter().any(|k| spl_hosts.contains(k[0].as_str())),
        "the Splunk bucketing finds none of {firing:?}: {buckets:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// First-seen client hosts (Splunk only: Sigma cannot express a baseline)

#[test]
fn demo_has_new_and_known_client_hosts_for_the_first_seen_search() {
    // The search: over 30 days, hosts whose first restore is within the last 24 hours.
    let now = Utc::now();
    let mut first_seen: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for e in demo_events()
        .iter()
        .filter(|e| dataset(e) == "veeam.vbo_restore")
    {
        if let Some(host) = str_at(e, "client.address") {
            let t = timestamp(e);
            let slot = first_seen.entry(host).or_insert(t);
            *slot = (*slot).min(t);
        }
    }
    let new: Vec<&str> = first_seen
        .iter()
        .filter(|(_, t)| **t >= now - chrono::TimeDelta::hours(24))
        .map(|(h, _)| *h)
        .collect();
    assert!(!new.is_empty(), "no new client host: {first_seen:?}");
    assert!(
        new.len() < first_seen.len(),
        "every client host is new: {first_seen:?}"
    );
}

#[test]
fn splunk_searches_read_only_fields_that_exist() {
    let searches = saved_searches();
    assert!(
        searches.len() >= 6,
        "expected the saved searches, found {}",
        searches.len()
    );
    let mut problems = Vec::new();
    for (name, settings) in &searches {
        for key in [
            "search",
            "description",
            "dispatch.earliest_time",
            "cron_schedule",
        ] {
            if settings.get(key).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("[{name}]: `{key}` is missing"));
            }
        }
        let Some(spl) = settings.get("search") else {
            continue;
        };
        let analysis = analyze(spl);
        problems.extend(analysis.errors.iter().map(|e| format!("[{name}]: {e}")));
        if analysis.reads.is_empty() {
            problems.push(format!("[{name}]: reads no field at all?"));
        }
    }
    // Every macro is used somewhere, and every macro body is itself valid.
    let macros = macros();
    let all_text: String = searches
        .iter()
        .filter_map(|(_, s)| s.get("search").cloned())
        .chain(macros.values().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    for name in macros.keys() {
        if !all_text.contains(&format!("`{name}`")) {
            problems.push(format!("macro `{name}` is not used"));
        }
    }
    assert!(
        problems.is_empty(),
        "Splunk problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn indexed_fields_are_the_ones_the_hec_sink_sends() {
    // The envelope's `fields` are a private struct of the sink; read its definition so a
    // renamed or added indexed field shows up here.
    let path = root()
        .join("src")
        .join("sinks")
        .join("splunk_hec")
        .join("wire.rs");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} (moved?): {e}", path.display()));
    let body = source
        .split_once("struct Fields")
        .and_then(|(_, rest)| rest.split_once('{'))
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("no `struct Fields {{ ... }}` in {}", path.display()));
    let sent: BTreeSet<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("//"))
        .filter_map(|l| {
            l.split_once(':')
                .map(|(name, _)| name.trim_start_matches("pub ").trim())
        })
        .collect();
    let assumed: BTreeSet<&str> = INDEXED_FIELDS.into_iter().collect();
    assert_eq!(sent, assumed, "update INDEXED_FIELDS and the README");
}

#[test]
fn splunk_sourcetypes_match_the_hec_sink_defaults() {
    let macros = macros();
    let expanded = expand_macros("`veeam_vb365` `veeam_vdc`", &macros, 0);
    for sourcetype in ["veeam:vbo:restore", "veeam:vdc:joblog"] {
        assert_eq!(
            veeam_siem::sinks::splunk_hec::default_sourcetype(match sourcetype {
                "veeam:vbo:restore" => "veeam.vbo_restore",
                _ => "veeam.vdc_job_log",
            }),
            sourcetype
        );
        assert!(expanded.contains(&format!("sourcetype=\"{sourcetype}\"")));
    }
    let props = parse_conf(&splunk_default_dir().join("props.conf"));
    for sourcetype in ["veeam:vbo:restore", "veeam:vdc:joblog"] {
        let stanza = props
            .iter()
            .find(|(name, _)| name == sourcetype)
            .unwrap_or_else(|| panic!("props.conf has no [{sourcetype}]"));
        assert_eq!(
            stanza.1.get("KV_MODE").map(String::as_str),
            Some("json"),
            "[{sourcetype}]"
        );
        assert!(
            !stanza.1.contains_key("INDEXED_EXTRACTIONS"),
            "[{sourcetype}]: HEC events must not be extracted twice"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The README documents every detection

#[test]
fn the_readme_names_every_rule_and_search() {
    let text = std::fs::read_to_string(siem_dir().join("README.md")).unwrap_or_default();
    // Inline code only: drop fenced blocks (their backticks would upset the pairing).
    let mut fenced = false;
    let readme: String = text
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n");
    for doc in sigma_docs() {
        assert!(
            readme.contains(doc.title()),
            "examples/siem/README.md does not mention the Sigma rule `{}`",
            doc.title()
        );
    }
    for (name, _) in saved_searches() {
        assert!(
            readme.contains(&name),
            "examples/siem/README.md does not mention the search `{name}`"
        );
    }
    // Field names quoted in the README exist too.
    let mut unknown = Vec::new();
    let datasets = ["veeam.vbo_restore", "veeam.vdc_job_log"]; // values, not fields
    for quoted in readme.split('`').skip(1).step_by(2) {
        let looks_like_field = !datasets.contains(&quoted)
            && (quoted.starts_with("veeam.")
                || quoted.starts_with("event.")
                || quoted.starts_with("client.")
                || quoted.starts_with("user.")
                || quoted.starts_with("source.")
                || quoted.starts_with("organization.")
                || quoted.starts_with("related."))
            && quoted
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._{}".contains(c));
        if looks_like_field && !is_schema_field(quoted.trim_end_matches("{}")) {
            unknown.push(quoted.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "README names unknown fields: {unknown:?}"
    );
}
