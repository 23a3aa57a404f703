//! Shared pieces of the Kafka tests (`kafka_mock`, `kafka_tansu`): a config with one
//! VB365 source and one kafka sink, the binary run as a child with a hard time limit, and
//! the check of what reached the topic. Reading the topic back (and the tansu broker) is
//! `veeam_siem_test_peers::kafka`.
//!
//! Nothing here asserts timings; every wait is bounded so a test fails instead of hanging.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use veeam_siem_test_peers::kafka::{Record, consume};

use crate::support::config::Table;
use crate::support::harness::{Env, PASSWORD, bin};

/// The source id in [`write_config`]'s configs.
pub use crate::support::harness::SOURCE_ID;

/// A config: the simulator as source `vbo_test`, one kafka sink `bus` (extra sink keys
/// appended to the sink table).
pub fn write_config(
    env: &Env,
    brokers: &str,
    topic: &str,
    page_size: u32,
    sink_extra: &str,
) -> PathBuf {
    env.config()
        .table(env.vbo_source().set("page_size", page_size))
        .table(Table::kafka("bus", &[SOURCE_ID], brokers, topic).raw(sink_extra))
        .write(&env.dir.path().join("kafka.toml"))
}

/// `veeam-siem run --config F --once` as a child; its stderr goes to `log`.
pub fn spawn_once(config: &Path, log: &Path) -> Child {
    let stderr = std::fs::File::create(log).unwrap();
    bin()
        .args(["--log-level", "info", "run", "--config"])
        .arg(config)
        .arg("--once")
        .env("TEST_VBO_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the binary starts")
}

/// Wait for `child` at most `limit` (polling, so the async runtime keeps serving the
/// simulator); kill it and return `None` when the limit passes.
pub async fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run `--once` to completion (at most `limit`) and assert it exited 0.
pub async fn run_once_ok(config: &Path, log: &Path, limit: Duration) {
    let mut child = spawn_once(config, log);
    let status = wait_child(&mut child, limit).await;
    let logs = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("run --once failed ({s}):\n{logs}"),
        None => panic!("run --once did not finish within {limit:?} (killed):\n{logs}"),
    }
    assert!(
        !logs.contains(PASSWORD),
        "the VB365 password leaked into the logs"
    );
}

/// The source's checkpoint file (text), if written yet.
pub fn checkpoint(env: &Env) -> Option<String> {
    std::fs::read_to_string(env.state_dir().join(format!("{SOURCE_ID}.checkpoint.json"))).ok()
}

pub fn event_id(r: &Record) -> String {
    r.value["event"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("record without event.id: {r:?}"))
        .to_string()
}

/// What a delivery check found.
#[derive(Debug)]
pub struct Delivery {
    #[expect(dead_code, reason = "read through Debug, in assertion messages")]
    pub records: usize,
    pub distinct: usize,
    pub duplicates: usize,
}

/// Assert: every expected id is on the topic (nothing lost), nothing else is, keys are the
/// event ids, headers are set, and within each partition the events of one restore session
/// first appear in their `event.sequence` order (no reordering). Duplicates are counted,
/// not judged (the caller decides).
pub fn check_delivery(records: &[Record], expected: &HashSet<String>) -> Delivery {
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (partition, session) -> last first-seen sequence
    let mut order: HashMap<(i32, String), i64> = HashMap::new();
    for r in records {
        let id = event_id(r);
        assert_eq!(
            r.key.as_deref(),
            Some(id.as_str()),
            "key is event.id: {r:?}"
        );
        assert_eq!(
            r.headers.get("source_id").map(String::as_str),
            Some(SOURCE_ID),
            "{r:?}"
        );
        assert_eq!(
            r.headers.get("dataset").map(String::as_str),
            r.value["event"]["dataset"].as_str(),
            "{r:?}"
        );
        assert_eq!(
            r.headers.get("schema_version").map(String::as_str),
            r.value["ecs"]["version"].as_str(),
            "{r:?}"
        );
        let count = seen.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            continue;
        }
        let session = r.value["veeam"]["restore_session"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let seq = r.value["event"]["sequence"].as_i64().unwrap_or_default();
        if let Some(prev) = order.insert((r.partition, session.clone()), seq) {
            assert!(
                seq > prev,
                "partition {}: session {session} event {seq} arrived after event {prev} (reordered)",
                r.partition
            );
        }
    }
    let got: HashSet<String> = seen.keys().cloned().collect();
    let lost: Vec<&String> = expected.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} of {} events never reached the topic, e.g. {:?}",
        lost.len(),
        expected.len(),
        &lost[..lost.len().min(5)]
    );
    let extra: Vec<&String> = got.difference(expected).collect();
    assert!(
        extra.is_empty(),
        "unexpected events on the topic: {extra:?}"
    );
    Delivery {
        records: records.len(),
        distinct: seen.len(),
        duplicates: records.len() - seen.len(),
    }
}
