//! Kafka helpers for tests: a private tansu broker (a Kafka-protocol broker, `cargo install
//! tansu --version 0.6.0 --locked --features dynostore`) on a free loopback port with
//! in-memory storage, and a reader that consumes a whole topic by explicit partition
//! assignment (no consumer group: tansu's group join was unreliable, and a test must not
//! depend on it).
//!
//! Nothing here asserts timings; every wait is bounded so a test fails instead of hanging.
//! What the records must contain is the test's business, not this module's.

use std::collections::{BTreeMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::tools::{find_tool, require_tool};

const TANSU_MISSING: &str = "tansu (a Kafka-protocol broker) is not installed: \
     cargo install tansu --version 0.6.0 --locked --features dynostore \
     (scripts/test-all.sh does; or set TANSU_BIN to the binary)";

/// For a test that needs tansu: `true` when it is installed (`$TANSU_BIN`, `PATH` or
/// `~/.cargo/bin`); else the skip of [`crate::tools::require`] and `false`, or its panic
/// when `VEEAM_SIEM_REQUIRE_PEERS=1`.
#[must_use]
pub fn require_tansu() -> bool {
    require_tool("tansu").is_some()
}

/// A running tansu; killed on drop.
pub struct Tansu {
    child: Child,
    /// `host:port` for `bootstrap.servers`.
    pub brokers: String,
    log: PathBuf,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    /// Start tansu (in-memory storage) on a free loopback port, its log in `dir`, and wait
    /// until it listens. Panics when tansu is missing: check [`require_tansu`] first.
    pub fn start(dir: &Path) -> Tansu {
        // A free port: bind :0, note it, release it for tansu.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Tansu::start_on(dir, port, "tansu.log")
    }

    /// [`Tansu::start`] on `port` (e.g. a broker that restarts where the last one was),
    /// logging to `dir/log`.
    pub fn start_on(dir: &Path, port: u16, log: &str) -> Tansu {
        let bin = find_tool("tansu").unwrap_or_else(|| panic!("{TANSU_MISSING}"));
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join(log);
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut tansu = Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = tansu.child.try_wait() {
                panic!("tansu exited ({status}):\n{}", tansu.logs());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {url} within 20 s:\n{}",
                tansu.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tansu
    }

    /// What tansu logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Create `name` with `partitions` partitions (replication 1), or panic.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            admin.create_topics([&topic], &opts),
        )
        .await
        .expect("CreateTopics answered within 20 s")
        .expect("CreateTopics request");
        for r in result {
            if let Err((t, e)) = r {
                panic!("cannot create topic {t}: {e}\n{}", self.logs());
            }
        }
    }
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
