//! veeam-siem: ships Veeam Backup for Microsoft 365 restore activity (and Veeam Data Cloud
//! job logs) into SIEMs, with durable checkpoints and at-least-once delivery.
//!
//! Module map (see ARCHITECTURE.md for invariants):
//! - [`config`]: the composition root of the TOML config (`config::common`: the shared
//!   rules every component's config uses).
//! - [`event`]: the output event contract.
//! - [`map`]: pure mapping from Veeam records to events.
//! - [`sources`]: API pollers (`vbo/`, `vdc/`, each with its config) producing batches of
//!   records with checkpoint snapshots.
//! - [`sinks`]: delivery targets (each with its config), each acknowledging durable batches.
//! - [`pipeline`]: wiring, fan-out, ack tracking, shutdown.
//! - [`daemon`]: `run` around the pipeline (ops endpoint, SIGHUP reload); [`backfill`]: history re-reads.
//! - [`checkpoint`]: durable per-source state; [`state_dir`]: the state dir's lock;
//!   [`durable`]: file modes, directory fsync, append-only files, writability probes.
//! - [`http`]: the shared HTTP client builder and retry policy.
//! - [`escape`]: escaping server text for terminals and logs.
//! - [`metrics`], [`ops`]: operational metrics and the `/metrics` `/health` `/ready` endpoint.
//!
//! The VB365/VDC API simulator is its own crate (`crates/simulator`), used by the binary's
//! `demo` and `simulate` commands (`src/cli/`) and the tests; this library never sees it.

pub mod backfill;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod daemon;
pub mod durable;
pub mod escape;
pub mod event;
pub mod http;
pub mod json;
pub mod map;
pub mod metrics;
pub mod ops;
pub mod pinned_cert;
pub mod pipeline;
pub mod schema;
pub mod secret;
pub mod sinks;
pub mod sources;
pub mod state_dir;
