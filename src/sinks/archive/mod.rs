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
//! With `[sinks.<id>.s3]`, every sealed segment and digest is also uploaded to S3 (Object
//! Lock optional) by a task of its own ([`s3`]); acknowledgement stays at the local fsync.
//!
//! Modules: `config` (keys), [`s3`] (the upload), [`keys`] (Ed25519 from PEM, fingerprints), [`digest`] (the
//! signed format), [`head`] (the signed record of the newest digest), [`segment`] (layout, reading members back), [`writer`] (append, seal,
//! recover), [`verify`] (the checker). Must not: acknowledge a batch before its member is
//! fsynced; log key material; let one writer's crash leave an acknowledged event unsigned.

mod config;
pub mod digest;
pub mod head;
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
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;

pub use config::ArchiveSinkConfig;

use super::{Batch, ProbeContext, Probed, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::{Cleartext, ConfigError, redact_userinfo};
use crate::durable::{self, Writable};
use s3::upload::Uploader;
use writer::ArchiveWriter;

/// How often the rotation timer looks at the open segment (at most).
const TICK: Duration = Duration::from_secs(30);
/// How long a clean stop waits for the last uploads (the rest go at the next start):
/// well inside the pipeline's default 30 s drain timeout, so the seal before it is never
/// cut short.
const UPLOAD_GRACE: Duration = Duration::from_secs(20);

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

    fn cleartext(&self, key: &str) -> Vec<Cleartext> {
        let endpoint = self.s3.as_ref().and_then(|s3| s3.endpoint.as_deref());
        endpoint
            .and_then(|endpoint| {
                Cleartext::of(
                    format!("{key}.s3.endpoint"),
                    endpoint,
                    "the archive's segments and any AWS session token",
                )
            })
            .into_iter()
            .collect()
    }

    fn local_path(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }

    fn probe_targets(&self) -> Vec<String> {
        self.s3
            .as_ref()
            .map(|s3| match &s3.endpoint {
                Some(endpoint) => vec![redact_userinfo(endpoint)],
                None => vec![format!("S3 in {} (bucket {})", s3.region, s3.bucket)],
            })
            .unwrap_or_default()
    }

    fn build(&self, id: &str, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(ArchiveSink::new(id, self)?))
    }

    /// Without touching the archive: the key loads, the directory is writable and the
    /// chain in it can be extended.
    fn probe<'a>(
        &'a self,
        id: &'a str,
        _ctx: &'a ProbeContext,
    ) -> BoxFuture<'a, Result<Probed, String>> {
        Box::pin(async move {
            let key = self
                .signing_key(&format!("sinks.{id}"))
                .map_err(|e| e.to_string())?;
            let bucket = match &self.s3 {
                Some(s3) => format!("; {}", probe_bucket(id, s3).await?),
                None => String::new(),
            };
            // What `run` would refuse: a chain cut short, a head record gone or damaged.
            writer::check_extendable(&self.path).map_err(|e| format!("sinks.{id}.path: {e}"))?;
            let dir = match durable::probe_dir(&self.path) {
                Ok(Writable::Exists) => format!(
                    "{} is writable; signing key {}",
                    self.path.display(),
                    key.public().fingerprint()
                ),
                Ok(Writable::WillBeCreated { existing }) => format!(
                    "{} will be created ({} is writable); signing key {}",
                    self.path.display(),
                    existing.display(),
                    key.public().fingerprint()
                ),
                Err(e) => return Err(format!("sinks.{id}.path: {e}")),
            };
            Ok(Probed::Ok(format!("{dir}{bucket}")))
        })
    }
}

/// `check` of the bucket: credentials found and accepted, the bucket reachable, and Object
/// Lock enabled on it when `object_lock` is set.
async fn probe_bucket(id: &str, s3: &s3::S3Config) -> Result<String, String> {
    let key = format!("sinks.{id}.s3");
    let credentials = s3::credentials::CredentialChain::from_env(&s3.region)?;
    let source = credentials.get().await?.source;
    let client = s3::client::S3Client::new(&key, s3, Arc::new(credentials))?;
    let enabled = client
        .object_lock_enabled()
        .await
        .map_err(|e| format!("{key}: bucket {} ({source} credentials): {e}", s3.bucket))?;
    match (&s3.object_lock, enabled) {
        (Some(_), false) => Err(format!(
            "{key}.object_lock: bucket {} does not have Object Lock enabled, so no retention can be set; create a bucket with Object Lock enabled (it can't be switched on for every existing bucket) or remove object_lock",
            s3.bucket
        )),
        (Some(lock), true) => Ok(format!(
            "bucket {} reachable with {source} credentials, Object Lock enabled ({} {} days)",
            s3.bucket,
            lock.mode.as_str(),
            lock.retain_days
        )),
        (None, _) => Ok(format!(
            "bucket {} reachable with {source} credentials",
            s3.bucket
        )),
    }
}

/// The archive sink: a thin adapter over [`ArchiveWriter`] on blocking threads, plus the
/// rotation timer.
pub struct ArchiveSink {
    id: Arc<str>,
    /// The archive directory (named in errors).
    path: std::path::PathBuf,
    writer: Arc<Mutex<ArchiveWriter>>,
    uploads: Option<Uploads>,
    _ticker: AbortOnDropHandle<()>,
}

/// The S3 uploader of an archive sink and its task.
struct Uploads {
    uploader: Arc<tokio::sync::Mutex<Uploader>>,
    wake: Arc<Notify>,
    _task: AbortOnDropHandle<()>,
}

impl Uploads {
    fn start(id: &str, config: &ArchiveSinkConfig) -> Result<Option<Uploads>, SinkError> {
        let Some(s3) = &config.s3 else {
            return Ok(None);
        };
        let fatal = |e: String| SinkError::Fatal(format!("sink `{id}`: S3 upload: {e}"));
        let credentials = s3::credentials::CredentialChain::from_env(&s3.region).map_err(fatal)?;
        let client =
            s3::client::S3Client::new(&format!("sinks.{id}.s3"), s3, Arc::new(credentials))
                .map_err(fatal)?;
        let uploader = Uploader::new(id, &config.path, s3.clone(), client).map_err(fatal)?;
        let uploader = Arc::new(tokio::sync::Mutex::new(uploader));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(s3::upload::run(uploader.clone(), wake.clone()));
        tracing::info!(sink_id = id, bucket = %s3.bucket, prefix = %s3.prefix, "archive: uploading sealed segments and digests to S3");
        Ok(Some(Uploads {
            uploader,
            wake,
            _task: AbortOnDropHandle::new(task),
        }))
    }
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
        for segment in &opened.foreign {
            tracing::error!(sink_id = id, segment = %segment, path = %config.path.display(), "archive: a segment this sink did not have open (the head record names another or none) was found after the chain: not sealed, left as it is (`verify` reports it as extra). Someone put it there; keep it as evidence and move it out of the archive");
        }
        tracing::info!(sink_id = id, path = %config.path.display(), key = %fingerprint, "archive open");
        let writer = Arc::new(Mutex::new(writer));
        let uploads = Uploads::start(id, config)?;
        let ticker = tokio::spawn(rotate(
            Arc::from(id),
            config.path.clone(),
            writer.clone(),
            config.rotate_interval,
            uploads.as_ref().map(|u| u.wake.clone()),
        ));
        Ok(ArchiveSink {
            id: Arc::from(id),
            path: config.path.clone(),
            writer,
            uploads,
            _ticker: AbortOnDropHandle::new(ticker),
        })
    }
}

/// Seal the open segment once it is `interval` old, even when no batch comes.
async fn rotate(
    id: Arc<str>,
    path: std::path::PathBuf,
    writer: Arc<Mutex<ArchiveWriter>>,
    interval: Duration,
    uploads: Option<Arc<Notify>>,
) {
    // Failed seals in a row: the next attempt waits 1 s, 2 s, 4 s… up to 30 s (a full disk
    // would otherwise be retried, and logged, 20 times a second).
    let mut failures = 0u32;
    loop {
        // Until the open segment is due (a segment opened just after a check is sealed on
        // time, not a whole interval late), checking at least every TICK.
        // (A writer busy with a batch is not waited for here, on the runtime: ask again soon.)
        let wait = match writer.try_lock() {
            Ok(w) => w.due_in(Utc::now(), interval).unwrap_or(interval),
            Err(std::sync::TryLockError::Poisoned(p)) => p
                .into_inner()
                .due_in(Utc::now(), interval)
                .unwrap_or(interval),
            Err(std::sync::TryLockError::WouldBlock) => Duration::from_secs(1),
        };
        let backoff = match failures {
            0 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 1).min(5)).min(Duration::from_secs(30)),
        };
        let wait = wait.min(TICK).max(Duration::from_millis(50)).max(backoff);
        tokio::time::sleep(wait).await;
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
                failures = 0;
                tracing::info!(sink_id = %id, digest = %digest, "archive segment sealed");
                if let Some(wake) = &uploads {
                    wake.notify_one();
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                let hint = durable::dir_hint(&e, &path);
                tracing::warn!(sink_id = %id, path = %path.display(), error = %format!("{e}{hint}"), failures, "archive: sealing failed; will retry")
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
                // A full segment is sealed inside append: then nothing is open after it.
                w.append(&lines, events, first, last)
                    .map(|()| w.open_segment().is_none())
            })
            .await
            .map_err(|e| SinkError::Retryable(format!("sink `{}`: {e}", self.id)))?;
            let sealed = written.map_err(|e| {
                let hint = durable::dir_hint(&e, &self.path);
                SinkError::Retryable(format!(
                    "sink `{}`: cannot write the archive segment in {}: {e}{hint}; the batch is retried",
                    self.id,
                    self.path.display(),
                ))
            })?;
            if sealed && let Some(u) = &self.uploads {
                u.wake.notify_one();
            }
            Ok(())
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
            let result = match sealed {
                Ok(Some(digest)) => {
                    tracing::info!(sink_id = %self.id, digest = %digest, "archive segment sealed at shutdown");
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(SinkError::Retryable(format!(
                    "sink `{}`: sealing the open segment failed: {e}; it is sealed at the next start",
                    self.id
                ))),
            };
            if let Some(u) = &self.uploads {
                // One last pass, bounded: what does not make it goes at the next start.
                let last = async { u.uploader.lock().await.pass().await };
                match tokio::time::timeout(UPLOAD_GRACE, last).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(sink_id = %self.id, error = %e, "archive: S3 upload at shutdown failed; pending files are uploaded at the next start")
                    }
                    Err(_) => {
                        tracing::warn!(sink_id = %self.id, "archive: S3 uploads did not finish within {UPLOAD_GRACE:?} of shutdown; pending files are uploaded at the next start")
                    }
                }
            }
            result
        })
    }
}
