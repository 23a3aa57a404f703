//! veeam-siem's integration tests: one test binary (`cargo test --test it`), one module per
//! area, so the workspace links rdkafka, axum and the test peers once instead of once per
//! test file. Run one area with a filter: `cargo test --test it kafka_mock::`.
//!
//! Tests that need an external program (rsyslogd, tansu) skip with a message when it is
//! missing, and fail instead with `VEEAM_SIEM_REQUIRE_PEERS=1` (`scripts/test-all.sh`, CI):
//! see `veeam_siem_test_peers::tools`.
//!
//! - [`support`]: what the modules share: the simulator with a config pointing at it
//!   ([`support::harness`]), the daemon as a child process ([`support::faults`]), Kafka
//!   delivery checks ([`support::kafka`]), event schema validation
//!   ([`support::event_schema`]).
//! - The modules below, one per former `tests/*.rs` file; each module's doc says what it
//!   covers. Fixtures are in `tests/fixtures/`, found through `CARGO_MANIFEST_DIR`.

mod support;

mod archive;
mod archive_s3;
mod azure_monitor_logs;
mod check;
mod cli;
mod daemon_ops;
mod deploy;
mod durable_files;
mod examples_config;
mod fault_suite;
mod golden_demo;
mod hostile_http;
mod kafka_mock;
mod kafka_tansu;
mod paging;
mod properties;
mod schema;
mod siem;
mod siem_content;
mod simulator_conformance;
mod sink_faults;
mod splunk_hec;
mod syslog_rsyslog;
mod vbo_odd_servers;
mod vbo_pipeline;
mod vdc_pipeline;
mod vendor_drift;
