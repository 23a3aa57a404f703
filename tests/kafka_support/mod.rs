//! Shared pieces of the Kafka tests (`kafka_mock.rs`, `kafka_tansu.rs`): a config with one
//! VB365 source and one kafka sink, the binary run as a child with a hard time limit, and
//! a reader that consumes a whole topic by explicit partition assignment (no consumer
//! group: tansu's group join was unreliable, and a test must not depend on it).
//!
//! Nothing here asserts timings; every wait is bounded so a test fails instead of hanging.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{Env, PASSWORD, bin};

/// The source id in [`write_config`]'s configs.
pub const SOURCE_ID: &str = "vbo_test";

/// A config: the simulator as source `vbo_test`, one kafka sink `bus` (extra sink keys
/// appended to the sink table).
pub fn write_config(
    env: &Env,
    brokers: &str,
    topic: &str,
    page_size: u32,
    sink_extra: &str,
) -> PathBuf {
    let text = format!(
        r#"[state]
dir = {state:?}

[sources.{SOURCE_ID}]
type = "vbo"
url = {url:?}
username = "svc-siem"
password = "${{TEST_VBO_PASSWORD}}"
start_time = "2000-01-01T00:00:00Z"
poll_interval = "1s"
page_size = {page_size}
tls = {{ ca_file = {ca:?} }}

[sinks.bus]
type = "kafka"
inputs = ["{SOURCE_ID}"]
brokers = {brokers:?}
topic = {topic:?}
{sink_extra}
"#,
        state = env.state_dir().display().to_string(),
        url = env.sim.base_url(),
        ca = env.ca_file.display().to_string(),
    );
    let path = env.dir.path().join("kafka.toml");
    std::fs::write(&path, text).unwrap();
    path
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

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub headers: BTreeMap<String, String>,
}

/// How long the topic must stay silent before a read is considered complete.
const QUIET: Duration = Duration::from_millis(1500);

/// Every record of `topic`, all partitions from the beginning (explicit assignment),
/// sorted by partition and offset. Reads until every id in `want` (if given) was seen and
/// then no record arrived for [`QUIET`] (which catches duplicates), or until `limit`,
/// returning what it has (the caller's check then names what is missing). High watermarks
/// are not used as the end: tansu 0.6 reported ones below the records it served.
/// Blocking; run it off the async runtime.
pub fn consume_all(
    brokers: &str,
    topic: &str,
    want: Option<&HashSet<String>>,
    limit: Duration,
) -> Result<Vec<Record>, String> {
    let deadline = Instant::now() + limit;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Needed by librdkafka for assign(); no group is joined (no subscribe) and
        // nothing is committed.
        .set("group.id", "veeam-siem-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assign: {e}"))?;
    let mut out = Vec::new();
    let mut missing: HashSet<String> = want.cloned().unwrap_or_default();
    let mut last_record = Instant::now();
    loop {
        let now = Instant::now();
        if now > deadline || (missing.is_empty() && now - last_record > QUIET) {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.map_err(|e| format!("consume {topic}: {e}"))?;
        last_record = Instant::now();
        let mut headers = BTreeMap::new();
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                headers.insert(
                    header.key.to_string(),
                    String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        let payload = msg.payload().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
            format!(
                "{topic}/{} offset {}: value is not JSON ({e})",
                msg.partition(),
                msg.offset()
            )
        })?;
        if let Some(id) = value["event"]["id"].as_str() {
            missing.remove(id);
        }
        out.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            headers,
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// [`consume_all`] off the runtime (at most 30 s).
pub async fn consume(brokers: &str, topic: &str, want: Option<&HashSet<String>>) -> Vec<Record> {
    let (b, t, w) = (brokers.to_string(), topic.to_string(), want.cloned());
    tokio::task::spawn_blocking(move || consume_all(&b, &t, w.as_ref(), Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot read the topic back: {e}"))
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
