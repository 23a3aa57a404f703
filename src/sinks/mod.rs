//! Sinks: where events go. Each sink owns its wire format and its durability rule.
//!
//! The contract: [`Sink::deliver`] returns `Ok` only when the batch is durable by the
//! sink's strongest available means (stdout: written and flushed; file: fsynced). The
//! pipeline then acknowledges the batch; nothing else advances checkpoints. A sink reports
//! [`SinkError::Retryable`] for failures that may pass (the pipeline retries the same batch
//! with backoff) and [`SinkError::Fatal`] for ones that need a human (bad credentials,
//! unwritable path): the pipeline stops without acknowledging.
//!
//! Each sink type lives in its own module or directory with its config; the config root
//! reaches it only through [`SinkSettings`], the pipeline only through [`Sink`].

pub mod archive;
pub mod azure_monitor_logs;
pub mod dead_letters;
pub mod file;
pub mod gzip;
pub mod kafka;
pub mod splunk_hec;
pub mod stdout;
pub mod syslog;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::common::{Cleartext, ConfigError};
use crate::event::Event;

/// What the config root, the pipeline, `check` and `backfill` need from a sink's config
/// (each sink type's config implements it next to its sink).
pub trait SinkSettings: std::fmt::Debug + Send + Sync {
    /// The `type` value, e.g. "splunk_hec".
    fn type_name(&self) -> &'static str;
    /// The source ids this sink reads (`inputs`).
    fn inputs(&self) -> &[String];
    /// `inputs`, for backfill to narrow a sink to chosen sources.
    fn inputs_mut(&mut self) -> &mut Vec<String>;
    /// Checks that need no network. `key` is e.g. "sinks.splunk".
    fn validate(&self, key: &str) -> Result<(), ConfigError>;
    /// Read `*_file` secrets into their inline keys (once, at load).
    fn read_secret_files(&mut self, _key: &str) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The connections over which this sink would send secrets or events in clear text
    /// (plain `http://`, SASL PLAIN without TLS).
    fn cleartext(&self, _key: &str) -> Vec<Cleartext> {
        Vec::new()
    }
    /// The local file or directory this sink writes (a `path` key), if any: two sinks of
    /// one config must not share it.
    fn local_path(&self) -> Option<String> {
        None
    }
    /// What the `check` probe contacts (URLs without userinfo, `host:port`s), named when
    /// it gets no answer in time; empty for sinks that only touch local files.
    fn probe_targets(&self) -> Vec<String> {
        Vec::new()
    }
    /// The sink `id`, ready to deliver.
    fn build(&self, id: &str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;
    /// The state dir the `check` probe builds the sink on: the scratch dir, unless the sink
    /// must read what the running daemon keeps there (it only reads it).
    fn probe_state_dir(&self, _id: &str, ctx: &ProbeContext) -> PathBuf {
        ctx.scratch.clone()
    }
    /// `check`: prove the destination would accept events, without sending any. The
    /// default builds the sink on [`SinkSettings::probe_state_dir`] and runs its health
    /// check.
    fn probe<'a>(
        &'a self,
        id: &'a str,
        ctx: &'a ProbeContext,
    ) -> BoxFuture<'a, Result<Probed, String>> {
        Box::pin(async move {
            let state = SinkContext {
                state_dir: self.probe_state_dir(id, ctx),
            };
            let mut sink = self.build(id, &state).map_err(|e| e.to_string())?;
            sink.healthcheck().await.map_err(|e| e.to_string())?;
            Ok(match sink.probe_warning() {
                Some(warning) => Probed::Warn(warning),
                None => Probed::Ok(format!(
                    "{} sink is reachable and accepting",
                    self.type_name()
                )),
            })
        })
    }
}

/// What a `check` probe found at a destination that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// It would accept events; what was checked.
    Ok(String),
    /// It answered, but delivery may fail: what to fix (a `warn` row, not a failure).
    Warn(String),
}

/// Where a `check` probe may keep files: the live state dir (read it, never change what
/// a running daemon relies on) and a scratch dir that is thrown away.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    pub state_dir: PathBuf,
    pub scratch: PathBuf,
}

impl ProbeContext {
    pub fn new(state_dir: &Path, scratch: &Path) -> Self {
        ProbeContext {
            state_dir: state_dir.to_path_buf(),
            scratch: scratch.to_path_buf(),
        }
    }
}

/// An event plus its JSON serialization (done once, shared by every sink).
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    pub event: Event,
    pub json: String,
}

/// What travels from the pipeline to the sinks: the mapped events of one source batch.
#[derive(Debug)]
pub struct Batch {
    pub source_id: Arc<str>,
    /// Index of the source in the pipeline (for acknowledgements).
    pub source_index: usize,
    /// Per-source sequence number.
    pub seq: u64,
    pub events: Vec<EncodedEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Fatal(String),
    /// The consumer went away (stdout closed): stop, without acknowledging.
    #[error("output closed by the reader")]
    Closed,
}

/// Resolves once a batch handed over by [`Sink::submit`] is durable at the receiver
/// (`Ok`), or must be delivered again ([`SinkError::Retryable`]; the pipeline then calls
/// [`Sink::deliver`] for it) or never will be ([`SinkError::Fatal`]).
pub type Confirmation = BoxFuture<'static, Result<(), SinkError>>;

/// A delivery target.
pub trait Sink: Send {
    /// Deliver every event of `batch`; return once they are durable.
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>>;

    /// How many batches this sink may have handed over but not yet confirmed durable
    /// (ARCHITECTURE.md invariant 3). `1` (the default): the pipeline calls
    /// [`Sink::deliver`] and takes the next batch only once the previous one is
    /// acknowledged and checkpointed. More: the pipeline calls [`Sink::submit`] for up to
    /// this many batches and acknowledges each when its [`Confirmation`] resolves; a crash
    /// may then re-send up to this many batches.
    fn window(&self) -> usize {
        1
    }

    /// Send `batch` without waiting until the receiver made it durable; the returned
    /// [`Confirmation`] says when it did. The default delivers (durable on return) and
    /// confirms at once. A sink whose confirmation still sends (HEC) runs that in a task
    /// of its own holding the `Arc`: the pipeline does not poll confirmations while it
    /// delivers a failed batch again.
    fn submit<'a>(
        &'a mut self,
        batch: &'a Arc<Batch>,
    ) -> BoxFuture<'a, Result<Confirmation, SinkError>> {
        Box::pin(async move {
            self.deliver(batch).await?;
            let confirmed: Confirmation = Box::pin(async { Ok(()) });
            Ok(confirmed)
        })
    }

    /// Probe the destination before the first batch. `Fatal` stops the pipeline at
    /// startup (e.g. a rejected token); `Retryable` is logged and delivery retries later.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// After a passing [`Sink::healthcheck`]: something it saw that may still make
    /// deliveries fail (a Kafka topic that does not exist), for `check`'s `warn` row.
    fn probe_warning(&self) -> Option<String> {
        None
    }

    /// A clean stop after the last batch (SIGTERM, the end of `--once`, a reload): finish
    /// what the sink keeps open (the archive seals its segment). Errors are logged.
    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What sinks may need besides their own config.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// `[state] dir`: for sink-owned durable files (channel ids, dead letters).
    pub state_dir: std::path::PathBuf,
}
