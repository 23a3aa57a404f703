//! Golden output: the demo's data (seed 42, the demo's sizes and source settings) shipped by
//! `run --once` is byte for byte what `tests/fixtures/golden/` holds, apart from
//! `event.created` (the fetch time). The simulator's history is anchored at a fixed moment,
//! so the data is the same on every run; one file sink per source keeps each file's order
//! deterministic.
//!
//! A change that alters events on purpose rewrites the files with `UPDATE_GOLDEN=1 cargo
//! test --test it golden_demo::` (review the diff before committing it).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use veeam_siem_simulator::{SimConfig, SimHandle};

use crate::support::harness;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// Every `"created":"<time>"` (the fetch time in `event.created`) replaced by a placeholder;
/// everything else byte for byte.
fn without_fetch_time(text: &str) -> String {
    const KEY: &str = "\"created\":\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let value = at + KEY.len();
        out.push_str(&rest[..value]);
        let end = rest[value..].find('"').map_or(rest.len(), |e| value + e);
        out.push_str("<fetch time>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_events_match_the_golden_files() {
    let anchor: DateTime<Utc> = "2026-11-02T09:30:00Z".parse().unwrap();
    let sim = SimHandle::start(SimConfig {
        anchor: Some(anchor),
        ..SimConfig::demo()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap_or_default()).unwrap();
    let out = |name: &str| dir.path().join(format!("{name}.ndjson"));
    let config = dir.path().join("golden.toml");
    std::fs::write(
        &config,
        format!(
            r#"[state]
dir = {state:?}

[sources.vbo_demo]
type = "vbo"
url = {url:?}
api_version = "v8"
username = "svc-siem"
password = "sim-password"
page_size = 100
start_time = "2000-01-01T00:00:00Z"
tls = {{ ca_file = {ca:?} }}

[sources.vdc_demo]
type = "vdc"
url = {url:?}
api_key = {key:?}
start_time = "2000-01-01T00:00:00Z"
tls = {{ ca_file = {ca:?} }}

[sinks.vbo_file]
type = "file"
inputs = ["vbo_demo"]
path = {vbo:?}

[sinks.vdc_file]
type = "file"
inputs = ["vdc_demo"]
path = {vdc:?}
"#,
            state = dir.path().join("state").display().to_string(),
            url = sim.base_url(),
            ca = ca.display().to_string(),
            key = sim.vdc_api_key(),
            vbo = out("vbo").display().to_string(),
            vdc = out("vdc").display().to_string(),
        ),
    )
    .unwrap();
    let run = harness::run_bin_async(
        harness::s(&["run", "--once", "--config", &config.display().to_string()]),
        vec![],
    )
    .await;
    assert!(run.status.success(), "{}", harness::text(&run));

    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for name in ["vbo", "vdc"] {
        let got = without_fetch_time(&std::fs::read_to_string(out(name)).unwrap());
        assert!(got.lines().count() > 20, "{name}: too few events");
        let golden = golden_dir().join(format!("demo-{name}.ndjson"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e}; create it with UPDATE_GOLDEN=1", golden.display())
        });
        if got != want {
            let first = got
                .lines()
                .zip(want.lines())
                .position(|(g, w)| g != w)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            panic!(
                "{name}: the events differ from {} (first at line {}; {} lines now, {} in the file)\n got: {}\nwant: {}",
                golden.display(),
                first + 1,
                got.lines().count(),
                want.lines().count(),
                got.lines().nth(first).unwrap_or("<none>"),
                want.lines().nth(first).unwrap_or("<none>"),
            );
        }
    }
    sim.shutdown().await;
}
