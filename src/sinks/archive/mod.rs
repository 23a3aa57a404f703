//! `type = "archive"`: the compliance archive. Events go into gzip NDJSON **segments**
//! (one gzip member per delivered batch, fsynced before the batch is acknowledged); each
//! sealed segment gets a signed **digest** that records its SHA-256 (over the uncompressed
//! content), sizes, event count and `@timestamp` range, and names the previous digest by
//! file, hash and signature, so the digests form a chain back to the first one, which says
//! it is the first. `veeam-siem verify` walks that chain ([`verify`]).
//!
//! ```text
//! <path>/2026/12/03/0000000041-20261203T070000Z.ndjson.gz   sealed segment
//! <path>/2026/12/03/0000000041-20261203T070000Z.digest.json its digest, previous → 40
//! <path>/2026/12/03/0000000042-20261203T080000Z.ndjson.gz   the open segment (no digest yet)
//! ```
//!
//! One digest per segment: each seal is one atomic, self-contained step (segment fsynced,
//! then its digest written and fsynced), a crash can leave at most one segment unsealed,
//! and a missing digest or segment is named exactly. Segments are sealed on
//! `rotate_interval`, at `max_segment_bytes`, and at every clean stop (SIGTERM, the end of
//! `--once`, a reload); a segment a crash left open is sealed at the next start with a
//! `recovered` note ([`writer`]).
//!
//! Modules: `config` (keys), [`keys`] (Ed25519 from PEM, fingerprints), [`digest`] (the
//! signed format), [`segment`] (layout, reading members back), [`writer`] (append, seal,
//! recover), [`verify`] (the checker). Must not: acknowledge a batch before its member is
//! fsynced; log key material; let one writer's crash leave an acknowledged event unsigned.

mod config;
pub mod digest;
mod hex;
pub mod keys;
pub mod s3;
pub mod segment;
pub mod verify;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use tokio_util::task::AbortOnDropHandle;

pub use config::ArchiveSinkConfig;

use super::{Batch, ProbeContext, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::ConfigError;
use crate::durable::{self, Writable};
use writer::ArchiveWriter;

/// How often the rotation timer looks at the open segment (at most).
const TICK: Duration = Duration::from_secs(30);

impl SinkSettings for ArchiveSinkConfig {
    fn type_name(&self) -> &'static str {
        "archive"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        ArchiveSinkConfig::validate(self, key)
    }

    fn build(&self, id: &str, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(ArchiveSink::new(id, self)?))
    }

    /// Without touching the archive: the key loads and the directory is writable.
    fn probe<'a>(
        &'a self,
        id: &'a str,
        _ctx: &'a ProbeContext,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let key = self
                .signing_key(&format!("sinks.{id}"))
                .map_err(|e| e.to_string())?;
            match durable::probe_dir(&self.path) {
                Ok(Writable::Exists) => Ok(format!(
                    "{} is writable; signing key {}",
                    self.path.display(),
                    key.public().fingerprint()
                )),
                Ok(Writable::WillBeCreated { existing }) => Ok(format!(
                    "{} will be created ({} is writable); signing key {}",
                    self.path.display(),
                    existing.display(),
                    key.public().fingerprint()
                )),
                Err(e) => Err(format!("sinks.{id}.path: {e}")),
            }
        })
    }
}

/// The archive sink: a thin adapter over [`ArchiveWriter`] on blocking threads, plus the
/// rotation timer.
pub struct ArchiveSink {
    id: Arc<str>,
    writer: Arc<Mutex<ArchiveWriter>>,
    _ticker: AbortOnDropHandle<()>,
}

impl ArchiveSink {
    /// Open the archive (recovering what a crash left open) and start the rotation timer.
    pub fn new(id: &str, config: &ArchiveSinkConfig) -> Result<ArchiveSink, SinkError> {
        let key = config
            .signing_key(&format!("sinks.{id}"))
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let fingerprint = key.public().fingerprint().to_string();
        let (writer, opened) = ArchiveWriter::open(&config.path, key, config.max_segment_bytes)
            .map_err(|e| {
                SinkError::Fatal(format!(
                    "sink `{id}`: cannot open the archive {}: {e}",
                    config.path.display()
                ))
            })?;
        for segment in &opened.recovered {
            tracing::warn!(sink_id = id, segment = %segment, "archive: a segment left open by an unclean stop was recovered and sealed");
        }
        for segment in &opened.removed {
            tracing::info!(sink_id = id, segment = %segment, "archive: removed an empty segment left by an unclean stop");
        }
        tracing::info!(sink_id = id, path = %config.path.display(), key = %fingerprint, "archive open");
        let writer = Arc::new(Mutex::new(writer));
        let ticker = tokio::spawn(rotate(
            Arc::from(id),
            writer.clone(),
            config.rotate_interval,
        ));
        Ok(ArchiveSink {
            id: Arc::from(id),
            writer,
            _ticker: AbortOnDropHandle::new(ticker),
        })
    }
}

/// Seal the open segment once it is `interval` old, even when no batch comes.
async fn rotate(id: Arc<str>, writer: Arc<Mutex<ArchiveWriter>>, interval: Duration) {
    loop {
        tokio::time::sleep(interval.min(TICK)).await;
        let writer = writer.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            if w.due(Utc::now(), interval) {
                w.seal()
            } else {
                Ok(None)
            }
        })
        .await;
        match sealed {
            Ok(Ok(Some(digest))) => {
                tracing::info!(sink_id = %id, digest = %digest, "archive segment sealed")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(sink_id = %id, error = %e, "archive: sealing failed; will retry")
            }
            Err(e) => tracing::error!(sink_id = %id, error = %e, "archive: rotation task failed"),
        }
    }
}

impl Sink for ArchiveSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut lines = Vec::with_capacity(batch.events.iter().map(|e| e.json.len() + 1).sum());
            for e in &batch.events {
                lines.extend_from_slice(e.json.as_bytes());
                lines.push(b'\n');
            }
            let first = batch.events.iter().map(|e| e.event.timestamp).min();
            let last = batch.events.iter().map(|e| e.event.timestamp).max();
            let events = batch.events.len() as u64;
            let writer = self.writer.clone();
            let written = tokio::task::spawn_blocking(move || {
                let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                w.append(&lines, events, first, last)
            })
            .await
            .map_err(|e| SinkError::Retryable(format!("sink `{}`: {e}", self.id)))?;
            written.map_err(|e| {
                SinkError::Retryable(format!(
                    "sink `{}`: cannot write the archive segment: {e}; the batch is retried",
                    self.id
                ))
            })
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let writer = self.writer.clone();
            let sealed = tokio::task::spawn_blocking(move || {
                writer.lock().unwrap_or_else(|p| p.into_inner()).seal()
            })
            .await
            .map_err(|e| SinkError::Retryable(e.to_string()))?;
            match sealed {
                Ok(Some(digest)) => {
                    tracing::info!(sink_id = %self.id, digest = %digest, "archive segment sealed at shutdown");
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(SinkError::Retryable(format!(
                    "sink `{}`: sealing the open segment failed: {e}; it is sealed at the next start",
                    self.id
                ))),
            }
        })
    }
}
