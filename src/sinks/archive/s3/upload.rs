//! The uploader: copies every sealed segment and its digest to the bucket, in chain order
//! (a digest only after the segments it covers), confirms each object with `HeadObject`
//! (size, checksum and, with Object Lock, the retention mode and date), records progress
//! durably, and prunes local copies of confirmed segments after `keep_local`.
//!
//! Progress is one small file, `<archive>/.s3-upload.json`, rewritten atomically (temp
//! file, fsync, rename, directory fsync) after every confirmed object: the sequence of the
//! last digest confirmed, and the digest sequence whose segment is confirmed but whose
//! digest is not yet. It names the endpoint, bucket and prefix it is about; pointed at
//! another destination, uploading starts again from the first digest still on disk. After
//! a crash or an outage the next pass resumes from there; an object that the store already
//! holds identically (same size and a stored SHA-256 checksum that matches, retention at
//! least as asked) is not uploaded again.
//!
//! Asynchronous: events are acknowledged when their segment is fsynced locally (the
//! writer's rule); the uploader runs on its own task. Must not: prune a segment whose
//! upload is not confirmed; upload a digest before its segments.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::super::digest::Digest;
use super::super::segment::{self, SEGMENT_SUFFIX, path_of, sequence_of};
use super::client::{S3Client, S3Error, base64};
use super::config::S3Config;
use crate::durable::{self, PRIVATE_FILE};
use crate::metrics;

/// The progress file, in the archive root (its name matches no archive file pattern).
pub const STATE_FILE: &str = ".s3-upload.json";

/// What is durably known to be in the bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadState {
    /// `endpoint|bucket|prefix` this progress is about.
    pub target: String,
    /// Every digest up to this sequence, and its segments, are confirmed.
    pub confirmed_through: u64,
    /// The digest sequence whose segments are confirmed but the digest itself is not.
    pub segments_of: Option<u64>,
}

/// One sealed digest waiting (with its segments).
#[derive(Debug, Clone)]
struct Pending {
    sequence: u64,
    digest: String,
    segments: Vec<String>,
    sealed: DateTime<Utc>,
}

/// Uploads one archive's sealed files.
pub struct Uploader {
    sink: String,
    root: PathBuf,
    config: S3Config,
    client: S3Client,
    state: UploadState,
}

impl Uploader {
    /// Load the progress file (a damaged one is an error naming it, never a silent reset).
    pub fn new(
        sink: &str,
        root: &Path,
        config: S3Config,
        client: S3Client,
    ) -> Result<Uploader, String> {
        let target = format!(
            "{}|{}|{}",
            config.endpoint.as_deref().unwrap_or("aws"),
            config.bucket,
            config.prefix
        );
        let path = root.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let state: UploadState = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the S3 upload progress file {} is damaged ({e}); move it aside to upload every digest still on disk again",
                        path.display()
                    )
                })?;
                if state.target == target {
                    state
                } else {
                    tracing::warn!(sink_id = sink, was = %state.target, now = %target, "archive: the S3 destination changed; uploading every sealed file still on disk to the new one");
                    UploadState {
                        target,
                        ..UploadState::default()
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UploadState {
                target,
                ..UploadState::default()
            },
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Uploader {
            sink: sink.to_string(),
            root: root.to_path_buf(),
            config,
            client,
            state,
        })
    }

    pub fn state(&self) -> &UploadState {
        &self.state
    }

    /// Record the progress durably (on a blocking thread).
    async fn save(&self) -> Result<(), String> {
        let (root, state) = (self.root.clone(), self.state.clone());
        blocking(move || save_state(&root, &state).map_err(|e| progress_error(&root, e))).await
    }

    fn report_backlog(&self, pending: &[Pending], now: DateTime<Utc>) {
        let files: usize = pending
            .iter()
            .map(|p| {
                1 + if self.state.segments_of == Some(p.sequence) {
                    0
                } else {
                    p.segments.len()
                }
            })
            .sum();
        let oldest = pending.first().map_or(0.0, |p| {
            (now - p.sealed).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::global().archive_upload_backlog(&self.sink, files as u64, oldest);
    }

    /// One pass: upload everything pending, then prune. Returns how many files it
    /// confirmed; stops at the first failure (order matters), leaving the rest pending.
    pub async fn pass(&mut self) -> Result<usize, String> {
        let (root, through) = (self.root.clone(), self.state.confirmed_through);
        let pending = blocking(move || pending(&root, through)).await?;
        self.report_backlog(&pending, Utc::now());
        let mut confirmed = 0;
        for (i, item) in pending.iter().enumerate() {
            if self.state.segments_of != Some(item.sequence) {
                for s in &item.segments {
                    self.upload(s).await?;
                    confirmed += 1;
                }
                self.state.segments_of = Some(item.sequence);
                self.save().await?;
            }
            self.upload(&item.digest).await?;
            confirmed += 1;
            self.state.confirmed_through = item.sequence;
            self.state.segments_of = None;
            self.save().await?;
            self.report_backlog(&pending[i + 1..], Utc::now());
        }
        self.prune().await?;
        Ok(confirmed)
    }

    /// Remove local copies of confirmed segments older than `keep_local`, each only after
    /// the store is asked for it again (size and checksum): the progress file is not taken
    /// on trust (edited, or restored from an older backup, it would prune segments that
    /// were never uploaded). A segment the store does not hold moves the progress back
    /// before it, so the next pass uploads it.
    async fn prune(&mut self) -> Result<(), String> {
        let root = self.root.clone();
        let (through, keep) = (self.state.confirmed_through, self.config.keep_local);
        let candidates =
            blocking(move || prune_candidates(&root, through, keep, Utc::now())).await?;
        for name in candidates {
            if let Err(problem) = self.held_by_store(&name).await {
                let sequence = sequence_of(&name).unwrap_or(0);
                tracing::warn!(sink_id = %self.sink, segment = %name, problem = %problem, "archive: not pruning a segment the upload progress says is in the bucket: the bucket does not hold it as sealed; uploading again from it");
                self.state.confirmed_through =
                    self.state.confirmed_through.min(sequence.saturating_sub(1));
                self.state.segments_of = None;
                self.save().await?;
                return Ok(());
            }
            let (sink, path) = (self.sink.clone(), path_of(&self.root, &name));
            blocking(move || {
                std::fs::remove_file(&path)
                    .and_then(|()| durable::sync_dir(durable::parent_or_dot(&path)))
                    .map_err(|e| format!("cannot prune {name}: {e}"))?;
                tracing::info!(sink_id = %sink, segment = %name, "archive: local copy of an uploaded segment pruned (keep_local)");
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Whether the store holds `name` as it is on disk (size, and checksum when it keeps
    /// one).
    async fn held_by_store(&self, name: &str) -> Result<(), String> {
        let path = path_of(&self.root, name);
        let (len, sha256) = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read it: {e}"))?;
        let head = self
            .client
            .head(&self.config.object_key(name))
            .await
            .map_err(|e| e.to_string())?;
        self.confirms(&head, len, &sha256, None)
    }

    /// Upload one archive file and confirm it; skipped when the store already holds it.
    async fn upload(&self, name: &str) -> Result<(), String> {
        let path = path_of(&self.root, name);
        let hashed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|e| e.to_string())?
        };
        let (len, sha256) = hashed.map_err(|e| format!("cannot read {name}: {e}"))?;
        let object = self.config.object_key(name);
        let lock = self.config.object_lock.map(|l| {
            (
                l.mode,
                Utc::now() + TimeDelta::days(i64::from(l.retain_days)),
            )
        });
        let fail = |e: S3Error| {
            if e.is_auth() {
                // Temporary credentials may have been revoked or rotated: fetch them anew.
                self.client.forget_credentials();
            }
            format!("uploading {name}: {e}")
        };
        // Already there: only when the store vouches for the content (its checksum), not
        // on size alone.
        if let Ok(head) = self.client.head(&object).await
            && head.checksum_sha256.is_some()
            && self
                .confirms(
                    &head,
                    len,
                    &sha256,
                    lock.map(|(m, t)| (m, t - TimeDelta::days(1))),
                )
                .is_ok()
        {
            tracing::info!(sink_id = %self.sink, object = %object, "archive: already in the bucket, not uploaded again");
            metrics::global().archive_uploaded(&self.sink);
            return Ok(());
        }
        let content_type = if name.ends_with(SEGMENT_SUFFIX) {
            "application/gzip"
        } else {
            "application/json"
        };
        self.client
            .put_file(&object, &path, len, &sha256, content_type, lock)
            .await
            .map_err(fail)?;
        let head = self.client.head(&object).await.map_err(fail)?;
        self.confirms(&head, len, &sha256, lock)
            .map_err(|problem| {
                format!(
                    "uploading {name} to s3://{}/{object}: the store accepted it but {problem}",
                    self.config.bucket
                )
            })?;
        tracing::info!(sink_id = %self.sink, object = %object, bytes = len, "archive: uploaded and confirmed");
        metrics::global().archive_uploaded(&self.sink);
        Ok(())
    }

    /// Whether `head` shows the object as uploaded: size, checksum (when the store keeps
    /// it), and the retention asked for (mode, and a date no earlier than `lock`'s).
    fn confirms(
        &self,
        head: &super::client::ObjectHead,
        len: u64,
        sha256: &[u8; 32],
        lock: Option<(super::config::LockMode, DateTime<Utc>)>,
    ) -> Result<(), String> {
        if head.len != len {
            return Err(format!("it reports {} bytes instead of {len}", head.len));
        }
        if let Some(sum) = &head.checksum_sha256
            && *sum != base64(sha256)
        {
            return Err(format!(
                "its SHA-256 checksum is {sum}, not {}",
                base64(sha256)
            ));
        }
        if let Some((mode, until)) = lock {
            if head.lock_mode.as_deref() != Some(mode.as_str()) {
                return Err(format!(
                    "it reports Object Lock mode {:?} instead of {}; is Object Lock enabled on bucket {}?",
                    head.lock_mode.as_deref().unwrap_or("none"),
                    mode.as_str(),
                    self.client.bucket()
                ));
            }
            // The header has whole seconds.
            match head.retain_until {
                Some(t) if t >= until - TimeDelta::seconds(1) => {}
                other => {
                    return Err(format!(
                        "it reports retention until {other:?}, earlier than {until}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a blocking task failed: {e}"))?
}

/// Write `state` atomically: temp file, fsync, rename, directory fsync.
fn save_state(root: &Path, state: &UploadState) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    durable::replace_file(&root.join(STATE_FILE), &bytes, PRIVATE_FILE)
}

/// Sealed digests after `through`, in chain order, with the segments each covers.
fn pending(root: &Path, through: u64) -> Result<Vec<Pending>, String> {
    let listing =
        segment::list(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    // Digests are never pruned: progress past the newest one was not made here, and
    // trusting it would prune segments that were never uploaded.
    let newest = listing
        .digests
        .iter()
        .filter_map(|d| sequence_of(d))
        .max()
        .unwrap_or(0);
    if through > newest {
        return Err(format!(
            "the S3 upload progress file {} says every digest up to sequence {through} is confirmed, but the newest digest here is {newest}: it was edited or belongs to another archive. Nothing is uploaded or pruned until it is moved aside (then every digest still on disk is uploaded again; what the bucket holds already is skipped)",
            root.join(STATE_FILE).display()
        ));
    }
    let mut digests: Vec<(u64, String)> = listing
        .digests
        .into_iter()
        .filter_map(|d| sequence_of(&d).map(|s| (s, d)))
        .filter(|(s, _)| *s > through)
        .collect();
    digests.sort();
    let mut out = Vec::with_capacity(digests.len());
    for (sequence, name) in digests {
        let bytes = std::fs::read(path_of(root, &name))
            .map_err(|e| format!("cannot read digest {name}: {e}"))?;
        let digest =
            Digest::parse(&bytes).map_err(|e| format!("digest {name} is unreadable: {e}"))?;
        out.push(Pending {
            sequence,
            digest: name,
            segments: digest.segments.into_iter().map(|s| s.file).collect(),
            sealed: digest.end_time,
        });
    }
    Ok(out)
}

/// Local segments confirmed (sequence up to `through`) and sealed (last written) at least
/// `keep` before `now`: what may be pruned, in chain order.
fn prune_candidates(
    root: &Path,
    through: u64,
    keep: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let keep = TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
    let listing =
        segment::list(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    let mut out = Vec::new();
    let mut segments = listing.segments;
    segments.sort_by_key(|s| sequence_of(s));
    for name in segments {
        if sequence_of(&name).is_none_or(|s| s > through) {
            continue;
        }
        let path = path_of(root, &name);
        let sealed: Option<DateTime<Utc>> = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::from);
        if sealed.is_some_and(|t| now - t >= keep) {
            out.push(name);
        }
    }
    Ok(out)
}

fn progress_error(root: &Path, e: std::io::Error) -> String {
    format!(
        "cannot record upload progress in {}: {e}",
        root.join(STATE_FILE).display()
    )
}

/// Length and SHA-256 of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((len, out))
}

/// How long the task waits between passes when all is well (a seal also wakes it).
pub const POLL: Duration = Duration::from_secs(60);
/// The longest wait after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The uploader's task: a pass on every wake-up (a seal) or every [`POLL`], backing off
/// exponentially while the store fails.
pub async fn run(uploader: Arc<tokio::sync::Mutex<Uploader>>, wake: Arc<tokio::sync::Notify>) {
    let sink = uploader.lock().await.sink.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = uploader.lock().await.pass().await;
        match result {
            Ok(_) => {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(sink_id = %sink, error = %e, retry_in = ?backoff, "archive: S3 upload failed; the files stay pending on local disk");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::keys::{SigningKey, testing::write_key_pair};
    use super::super::super::writer::ArchiveWriter;
    use super::*;

    /// An archive with `n` sealed segments and one open.
    fn archive(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let key = SigningKey::from_pem_file(&private).unwrap();
        let (mut w, _) = ArchiveWriter::open(&dir.path().join("a"), key, 1 << 20).unwrap();
        for i in 0..=n {
            w.append(format!("{{\"n\":{i}}}\n").as_bytes(), 1, None, None)
                .unwrap();
            if i < n {
                w.seal().unwrap();
            }
        }
        dir
    }

    #[test]
    fn pending_is_in_chain_order_after_the_confirmed() {
        let dir = archive(3);
        let root = dir.path().join("a");
        let all = pending(&root, 0).unwrap();
        assert_eq!(
            all.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(
            all.iter()
                .all(|p| p.segments.len() == 1 && sequence_of(&p.segments[0]) == Some(p.sequence))
        );
        assert_eq!(pending(&root, 2).unwrap().len(), 1);
        assert!(pending(&root, 3).unwrap().is_empty());
        // Progress past the newest digest was not made here (an edited file): refused,
        // so `pass` prunes nothing.
        let past = pending(&root, 999).unwrap_err();
        assert!(past.contains("the newest digest here is 3"), "{past}");
    }

    #[test]
    fn only_confirmed_segments_older_than_keep_local_are_pruned() {
        let dir = archive(3);
        let root = dir.path().join("a");
        let count = || segment::list(&root).unwrap().segments.len();
        assert_eq!(count(), 4, "3 sealed + 1 open");
        let candidates = prune_candidates(&root, 3, Duration::from_secs(3600), Utc::now()).unwrap();
        assert!(candidates.is_empty(), "younger than keep_local");
        let candidates = prune_candidates(&root, 1, Duration::ZERO, Utc::now()).unwrap();
        let sequences: Vec<u64> = candidates.iter().filter_map(|s| sequence_of(s)).collect();
        assert_eq!(sequences, vec![1], "only the confirmed one");
        let candidates = prune_candidates(&root, 3, Duration::ZERO, Utc::now()).unwrap();
        let sequences: Vec<u64> = candidates.iter().filter_map(|s| sequence_of(s)).collect();
        assert_eq!(
            sequences,
            vec![1, 2, 3],
            "in chain order, never the open one"
        );
    }

    #[test]
    fn progress_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = UploadState {
            target: "aws|b|p/".into(),
            confirmed_through: 7,
            segments_of: Some(8),
        };
        save_state(dir.path(), &state).unwrap();
        let back: UploadState =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn hashing_streams_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 600_000]).unwrap();
        let (len, sum) = hash_file(&p).unwrap();
        assert_eq!(len, 600_000);
        assert_eq!(
            sum.as_slice(),
            ring::digest::digest(&ring::digest::SHA256, &[7u8; 600_000]).as_ref()
        );
    }
}
