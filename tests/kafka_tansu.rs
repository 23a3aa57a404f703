//! The kafka sink against a real Kafka-protocol broker: tansu (`cargo install tansu
//! --locked --features dynostore`), started on a free loopback port with in-memory storage.
//! Simulator → `veeam-siem run --once` (the real binary) → tansu → read back by explicit
//! partition assignment.
//!
//! Asserts: every simulator event is on the topic exactly once, keys are `event.id`, the
//! headers are set, every value validates against `schemas/event.schema.json`, and a
//! second run adds nothing. If tansu is not installed the test FAILS with the install
//! command (`.ci/run` installs it); it never passes silently.

mod common;
mod harness;
mod kafka_support;

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::Env;
use kafka_support::{check_delivery, consume, run_once_ok, write_config};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use veeam_siem_simulator::SimConfig;

/// The topic template in the config and what it expands to for VB365 events.
const TOPIC_TEMPLATE: &str = "audit.{dataset}";
const TOPIC: &str = "audit.veeam.vbo_restore";

/// `$TANSU_BIN`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`; a missing binary
/// fails the test with the install command.
fn tansu_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        candidates.push(PathBuf::from(p));
    } else {
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu (a Kafka-protocol broker) is not installed, and this test needs it.\n\
             Install it with: cargo install tansu --locked --features dynostore\n\
             (.ci/run does this; or set TANSU_BIN to the binary)"
            )
        })
}

/// A running tansu; killed on drop.
struct Tansu {
    child: Child,
    brokers: String,
    log: PathBuf,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    fn start(dir: &std::path::Path) -> Tansu {
        let bin = tansu_bin();
        // A free port: bind :0, note it, release it for tansu.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join("tansu.log");
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

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_tansu_exactly_once_keys_headers_schema() {
    let env = Env::start(SimConfig {
        seed: 31,
        sessions: 30,
        events_per_session: 40,
        ..SimConfig::default()
    })
    .await;
    let tansu = Tansu::start(env.dir.path());
    tansu.create_topic(TOPIC, 3).await;
    let cfg = write_config(
        &env,
        &tansu.brokers,
        TOPIC_TEMPLATE,
        100,
        "compression = \"lz4\"",
    );

    run_once_ok(
        &cfg,
        &env.dir.path().join("run1.log"),
        Duration::from_secs(45),
    )
    .await;
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let records = consume(&tansu.brokers, TOPIC, Some(&expected)).await;
    let d = check_delivery(&records, &expected);
    assert_eq!(
        d.duplicates,
        0,
        "every event exactly once on the topic: {d:?}\n{}",
        tansu.logs()
    );
    assert_eq!(records.len(), expected.len());
    for r in &records {
        common::assert_valid_event(&r.value);
    }
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(
        partitions.len() > 1,
        "keys spread over the partitions: {partitions:?}"
    );

    // A second run finds nothing new and sends nothing.
    run_once_ok(
        &cfg,
        &env.dir.path().join("run2.log"),
        Duration::from_secs(45),
    )
    .await;
    let again = consume(&tansu.brokers, TOPIC, Some(&expected)).await;
    assert_eq!(again.len(), expected.len(), "the second run re-sent events");
}
