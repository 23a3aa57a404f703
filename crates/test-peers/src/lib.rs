//! Test peers of veeam-siem: the other ends of its connections, for the integration tests
//! (`tests/it`), `examples/hec_peer.rs` and the benches. Dev-only (`publish = false`).
//!
//! - [`azure_monitor`]: an Entra ID token endpoint and Azure Monitor Logs Ingestion API
//!   peer (axum), strict about the API, with fault injection.
//! - [`hec`]: a Splunk HTTP Event Collector peer (axum), strict about the protocol, with
//!   fault injection.
//! - [`rsyslog`]: a private rsyslogd on a free loopback port (UDP, TCP, TLS) and a strict
//!   RFC 5424 parser for what it received.
//! - [`kafka`]: a private tansu broker and a topic reader.
//! - [`tools`]: finding external programs, and the one rule for a missing one (skip with a
//!   message, or fail when `VEEAM_SIEM_REQUIRE_PEERS=1`).
//!
//! Each peer is written from the protocol's own documentation, not from the client: this
//! crate must not depend on veeam-siem (the compiler would also refuse the dev-dependency
//! cycle). Helpers that need veeam-siem's types or binary stay in the test binary.

pub mod azure_monitor;
pub mod hec;
pub mod kafka;
pub mod rsyslog;
pub mod tools;
