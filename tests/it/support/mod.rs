//! Helpers shared by the integration-test modules. They use veeam-siem's binary, types or
//! simulator, which is why they live here and not in `crates/test-peers` (which must not
//! depend on veeam-siem).
//!
//! - [`config`]: the test config builder (TOML text), used by all of them.
//! - [`harness`]: the simulator with a config pointing at it, the binary under test, NDJSON
//!   readers.
//! - [`faults`]: the daemon as a supervised child process, bounded `--once` runs,
//!   exactly-once counting.
//! - [`kafka`]: Kafka sink configs and the check of what reached a topic.
//! - [`event_schema`]: validation against `schemas/event.schema.json`.

pub mod config;
pub mod event_schema;
pub mod faults;
pub mod harness;
pub mod kafka;
