//! The kafka sink against a real Kafka-protocol broker: tansu (`cargo install tansu
//! --version 0.6.0 --locked --features dynostore`), started on a free loopback port with in-memory storage.
//! Simulator → `veeam-siem run --once` (the real binary) → tansu → read back by explicit
//! partition assignment.
//!
//! Asserts: every simulator event is on the topic exactly once, keys are `event.id`, the
//! headers are set, every value validates against `schemas/event.schema.json`, and a
//! second run adds nothing. Without tansu the test is skipped with a message, or fails
//! when `VEEAM_SIEM_REQUIRE_PEERS=1` (`scripts/test-all.sh` installs tansu and sets it).

use std::collections::HashSet;
use std::time::Duration;

use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::kafka::{Tansu, require_tansu};

use crate::support::event_schema;
use crate::support::harness;
use crate::support::kafka;
use harness::Env;
use kafka::{check_delivery, consume, run_once_ok, write_config};

/// The topic template in the config and what it expands to for VB365 events.
const TOPIC_TEMPLATE: &str = "audit.{dataset}";
const TOPIC: &str = "audit.veeam.vbo_restore";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_tansu_exactly_once_keys_headers_schema() {
    if !require_tansu() {
        return;
    }
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
        event_schema::assert_valid_event(&r.value);
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

/// `check` against a real broker: a topic that does not exist is a `warn` row naming it
/// (the brokers answer, but deliveries would fail unless topics are auto-created), and an
/// `ok` row once it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_a_topic_that_does_not_exist() {
    if !require_tansu() {
        return;
    }
    let env = Env::start(SimConfig {
        seed: 32,
        sessions: 1,
        events_per_session: 1,
        ..SimConfig::default()
    })
    .await;
    let tansu = Tansu::start(env.dir.path());
    let cfg = write_config(&env, &tansu.brokers, "audit.missing", 100, "");
    let check = || async {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            harness::bin()
                .args(["check", "--config"])
                .arg(&cfg)
                .env("TEST_VBO_PASSWORD", harness::PASSWORD)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let row = stdout
        .lines()
        .find(|l| l.contains("sink bus"))
        .unwrap_or_default();
    assert!(
        row.contains("warn") && row.contains("`audit.missing` does not exist"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "a warning is not a failure");

    tansu.create_topic("audit.missing", 1).await;
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let row = stdout
        .lines()
        .find(|l| l.contains("sink bus"))
        .unwrap_or_default();
    assert!(row.contains(" ok ") && !row.contains("warn"), "{stdout}");
}

/// A broker that restarts without its producer state (tansu with memory storage: a new
/// broker on the same port): librdkafka may keep retrying the old producer session's
/// records until they time out, without declaring it broken. The sink starts a new
/// session after 2 deliveries without one acknowledged record, and what the source
/// polled meanwhile arrives, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_without_producer_state_gets_a_new_session() {
    if !require_tansu() {
        return;
    }
    let env = Env::start(SimConfig {
        seed: 32,
        sessions: 4,
        events_per_session: 10,
        ..SimConfig::default()
    })
    .await;
    let first = Tansu::start(env.dir.path());
    first.create_topic(TOPIC, 1).await;
    let port: u16 = first.brokers.rsplit(':').next().unwrap().parse().unwrap();
    let cfg = env
        .config()
        .table(
            env.vbo_source()
                .set("page_size", 20)
                .set("poll_interval", "1s"),
        )
        .table(
            crate::support::config::Table::kafka(
                "bus",
                &["vbo_test"],
                &first.brokers,
                TOPIC_TEMPLATE,
            )
            .set("message_timeout", "3s"),
        )
        .write(&env.dir.path().join("kafka.toml"));
    let mut daemon = crate::support::faults::Daemon::spawn(&cfg, false, &[], "follow");
    let before: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let got = wait_for(&first.brokers, &before, Duration::from_secs(30)).await;
    assert_eq!(got, before.len(), "the first broker got everything");

    drop(first);
    let second = Tansu::start_on(env.dir.path(), port, "tansu2.log");
    second.create_topic(TOPIC, 1).await;
    env.sim.tick();
    env.sim.tick();
    let after: HashSet<String> = env
        .sim
        .event_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!after.is_empty());
    let got = wait_for(&second.brokers, &after, Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(&daemon.stderr_path).unwrap_or_default();
    daemon.terminate(Duration::from_secs(30));
    assert_eq!(
        got,
        after.len(),
        "the restarted broker got what was polled after the restart\n{log}"
    );
}

/// How many of `want` are on the topic, polling until all are or `limit` passes.
async fn wait_for(brokers: &str, want: &HashSet<String>, limit: Duration) -> usize {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let records = consume(brokers, TOPIC, Some(want)).await;
        let have: HashSet<&str> = records
            .iter()
            .filter_map(|r| r.value["event"]["id"].as_str())
            .filter(|id| want.contains(*id))
            .collect();
        if have.len() == want.len() || std::time::Instant::now() > deadline {
            return have.len();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
