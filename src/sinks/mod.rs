//! Sinks: where events go. Each sink owns its wire format and its durability rule.
//!
//! The contract: [`Sink::deliver`] returns `Ok` only when the batch is durable by the
//! sink's strongest available means (stdout: written and flushed; file: fsynced). The
//! pipeline then acknowledges the batch; nothing else advances checkpoints. A sink reports
//! [`SinkError::Retryable`] for failures that may pass (the pipeline retries the same batch
//! with backoff) and [`SinkError::Fatal`] for ones that need a human (bad credentials,
//! unwritable path): the pipeline stops without acknowledging.

pub mod file;
pub mod kafka;
pub mod splunk_hec;
pub mod stdout;
pub mod syslog;
pub mod syslog_conn;
pub mod syslog_format;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::SinkConfig;
use crate::event::Event;

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

/// A delivery target.
pub trait Sink: Send {
    /// Deliver every event of `batch`; return once they are durable.
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Probe the destination before the first batch. `Fatal` stops the pipeline at
    /// startup (e.g. a rejected token); `Retryable` is logged and delivery retries later.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What sinks may need besides their own config.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// `[state] dir`: for sink-owned durable files (channel ids, dead letters).
    pub state_dir: std::path::PathBuf,
}

/// Build a sink from its config. Errors name the sink and the key.
pub fn build(id: &str, config: &SinkConfig, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
    match config {
        SinkConfig::Stdout(c) => Ok(Box::new(stdout::StdoutSink::new(c.pretty))),
        SinkConfig::File(c) => Ok(Box::new(file::FileSink::new(id, c)?)),
        SinkConfig::Syslog(c) => Ok(Box::new(syslog::SyslogSink::new(id, c)?)),
        SinkConfig::SplunkHec(c) => Ok(Box::new(splunk_hec::HecSink::new(id, c, ctx)?)),
        SinkConfig::Kafka(c) => Ok(Box::new(kafka::KafkaSink::new(id, c)?)),
    }
}
