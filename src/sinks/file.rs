//! `type = "file"`: NDJSON appended to a file, for compliance archives and sidecar spools.
//!
//! The path may contain `strftime` patterns (`%Y-%m-%d`), expanded with the UTC time of
//! the write, so files roll over by day (or hour...). The writing is [`durable::Appender`]'s:
//! a batch is acknowledged only after its bytes were written and `fsync`ed on one std
//! `File` on the blocking pool, so a full disk, a quota or an I/O error fails the batch
//! (retried with backoff) instead of being acknowledged; a failed write is cut back off the
//! file so neither a torn line nor a partial duplicate stays. New files and directories
//! are fsynced into their parents.
//!
//! Rotation: before each batch the open file is checked against the path (device and
//! inode): a file renamed away (logrotate `create`), deleted or replaced is left and a new
//! one opened at the path. `copytruncate` works too (writes use `O_APPEND`).
//!
//! Modes: files this sink creates get `file_mode` (default 0600), directories the
//! matching traverse bits (0640 → 0750); existing files and directories keep theirs.
//!
//! Crash safety: a `kill -9` in the middle of a write can leave a partial last line. That
//! line was never acknowledged (acknowledgement follows the fsync of complete lines), so
//! the batch will be sent again; when the sink first opens a file it trims such a tail
//! back to the last newline instead of leaving a broken record in the archive. A crash at
//! a rollover leaves the tail in a file the sink will not write again (yesterday's): so
//! before its first batch the sink also repairs the files the pattern gave an hour, a day,
//! a week and a month ago ([`repair_earlier_files`]), unless another process has them.
//!
//! Must not: acknowledge bytes that are not on disk, or change existing files' modes.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use serde::Deserialize;

use super::{Batch, ProbeContext, Probed, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::{ConfigError, invalid};
use crate::durable::{self, Appender, Modes, TornTail, Writable};

/// Expand `strftime` patterns in `pattern` for time `t`; an invalid pattern is an error.
/// `type = "file"`: NDJSON appended to a file; acknowledged after fsync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub inputs: Vec<String>,
    /// Path; `strftime` patterns (`%Y-%m-%d`) are expanded with the UTC write time.
    pub path: String,
    /// Mode of the files the sink creates, an octal string ("0640" for a sidecar reader);
    /// default "0600". Directories it creates get the matching traverse bits.
    #[serde(default)]
    pub file_mode: Option<String>,
}

impl SinkSettings for FileSinkConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.path.trim().is_empty() {
            return Err(invalid(format!("{key}.path"), "must not be empty"));
        }
        if let Err(e) = expand_path(&self.path, Utc::now()) {
            return Err(invalid(format!("{key}.path"), e));
        }
        if let Some(Err(e)) = self.file_mode.as_deref().map(parse_file_mode) {
            return Err(invalid(format!("{key}.file_mode"), e));
        }
        Ok(())
    }

    fn local_path(&self) -> Option<String> {
        Some(self.path.trim().to_string())
    }

    fn build(&self, id: &str, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FileSink::new(id, self)?))
    }

    /// Builds the sink (so a bad mode is reported) and proves the path is writable,
    /// without writing an event.
    fn probe<'a>(
        &'a self,
        id: &'a str,
        ctx: &'a ProbeContext,
    ) -> BoxFuture<'a, Result<Probed, String>> {
        Box::pin(async move {
            let scratch = SinkContext {
                state_dir: ctx.scratch.clone(),
            };
            self.build(id, &scratch).map_err(|e| e.to_string())?;
            probe(id, &self.path)
                .await
                .map(Probed::Ok)
                .map_err(|e| e.to_string())
        })
    }
}

pub fn expand_path(pattern: &str, t: DateTime<Utc>) -> Result<PathBuf, String> {
    let mut out = String::new();
    write!(out, "{}", t.format(pattern))
        .map_err(|_| format!("`{pattern}` has an invalid strftime pattern; use e.g. %Y-%m-%d"))?;
    Ok(PathBuf::from(out))
}

/// `file_mode = "0640"`: octal, owner read and write (the sink appends and repairs), no
/// write or execute for anyone else.
pub fn parse_file_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let mode =
        if (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            u32::from_str_radix(digits, 8).ok()
        } else {
            None
        };
    let Some(mode) = mode.filter(|m| *m <= 0o777) else {
        return Err(format!(
            "`{text}` is not a file mode; write it as an octal string such as \"0640\""
        ));
    };
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "\"{text}\" must let the owner read and write (0600 at least): the sink appends to the file and repairs torn lines"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "\"{text}\" lets group or others write; the file must be writable by its owner only, so that no other account can alter or forge events in it (use e.g. \"0640\")"
        ));
    }
    if mode & 0o111 != 0 {
        return Err(format!("\"{text}\" sets execute bits; use e.g. \"0640\""));
    }
    Ok(mode)
}

/// Probe where `pattern` writes now without creating anything: the directory (or its
/// nearest existing ancestor) must accept a new file, and an existing output file must open
/// for appending. `Ok` says what was found, for `check`.
pub async fn probe(id: &str, pattern: &str) -> Result<String, SinkError> {
    let path = expand_path(pattern, Utc::now())
        .map_err(|e| SinkError::Fatal(format!("sinks.{id}.path: {e}")))?;
    let id = id.to_string();
    tokio::task::spawn_blocking(move || probe_blocking(&id, &path))
        .await
        .map_err(|e| SinkError::Retryable(format!("internal error in the file probe: {e}")))?
}

fn probe_blocking(id: &str, path: &std::path::Path) -> Result<String, SinkError> {
    let dir = durable::parent_or_dot(path);
    let hint = "check that the directory exists or can be created and is writable by this user";
    let found = durable::probe_dir(dir).map_err(|e| {
        if e.needs_a_human() {
            SinkError::Fatal(format!("sink `{id}`: {e}; {hint}"))
        } else {
            SinkError::Retryable(format!("sink `{id}`: {e}"))
        }
    })?;
    match found {
        Writable::Exists => {
            if path.exists() {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        SinkError::Fatal(format!(
                            "sink `{id}`: cannot open {} for appending: {e}; {hint}",
                            path.display()
                        ))
                    })?;
                Ok(format!("appends to {}", path.display()))
            } else {
                Ok(format!(
                    "will create {} (directory writable)",
                    path.display()
                ))
            }
        }
        Writable::WillBeCreated { existing } => Ok(format!(
            "will create {} ({} is writable)",
            path.display(),
            existing.display()
        )),
    }
}

pub struct FileSink {
    id: String,
    pattern: String,
    modes: Modes,
    current: Option<Appender>,
    buf: Vec<u8>,
    /// Whether the earlier files of the pattern were repaired (once, before the first batch).
    repaired_earlier: bool,
}

/// How far back [`repair_earlier_files`] looks: the previous file of an hourly, daily,
/// weekly or monthly pattern.
const EARLIER: [chrono::TimeDelta; 4] = [
    chrono::TimeDelta::hours(1),
    chrono::TimeDelta::days(1),
    chrono::TimeDelta::weeks(1),
    chrono::TimeDelta::days(31),
];

/// Trim a torn last line (a crash mid-write) off the files `pattern` gave before `now`
/// that exist and are not the current one. Blocking. Returns the files repaired; a file
/// another process has open is left to it.
pub fn repair_earlier_files(pattern: &str, now: DateTime<Utc>, modes: Modes) -> Vec<PathBuf> {
    let Ok(current) = expand_path(pattern, now) else {
        return Vec::new();
    };
    let mut seen = vec![current];
    let mut repaired = Vec::new();
    for back in EARLIER {
        let Ok(path) = expand_path(pattern, now - back) else {
            continue;
        };
        if seen.contains(&path) || !path.is_file() {
            continue;
        }
        seen.push(path.clone());
        let before = std::fs::metadata(&path).map(|m| m.len()).ok();
        match Appender::open(&path, modes, TornTail::Trim) {
            Ok(_) => {
                if std::fs::metadata(&path).map(|m| m.len()).ok() != before {
                    repaired.push(path);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot check an earlier output file for a torn last line")
            }
        }
    }
    repaired
}

impl FileSink {
    pub fn new(id: &str, cfg: &FileSinkConfig) -> Result<Self, SinkError> {
        expand_path(&cfg.path, Utc::now())
            .map_err(|e| SinkError::Fatal(format!("sinks.{id}.path: {e}")))?;
        let modes = match &cfg.file_mode {
            None => Modes::PRIVATE,
            Some(text) => Modes::for_file(
                parse_file_mode(text)
                    .map_err(|e| SinkError::Fatal(format!("sinks.{id}.file_mode: {e}")))?,
            ),
        };
        Ok(FileSink {
            id: id.to_string(),
            pattern: cfg.path.clone(),
            modes,
            current: None,
            buf: Vec::new(),
            repaired_earlier: false,
        })
    }
}

impl Sink for FileSink {
    /// The directory of the current file accepts new files (it or its nearest existing
    /// ancestor: missing directories are created on the first write) and an existing file
    /// opens for appending. Creates nothing.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { probe(&self.id, &self.pattern).await.map(|_| ()) })
    }

    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.events.is_empty() {
                return Ok(());
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            for e in &batch.events {
                buf.extend_from_slice(e.json.as_bytes());
                buf.push(b'\n');
            }
            if !self.repaired_earlier {
                self.repaired_earlier = true;
                let (pattern, modes) = (self.pattern.clone(), self.modes);
                let repaired = tokio::task::spawn_blocking(move || {
                    repair_earlier_files(&pattern, Utc::now(), modes)
                })
                .await
                .unwrap_or_default();
                for path in repaired {
                    tracing::warn!(sink_id = %self.id, path = %path.display(), "a torn last line (left by an unclean stop, never acknowledged) was trimmed off an earlier output file");
                }
            }
            let path = expand_path(&self.pattern, Utc::now()).map_err(SinkError::Fatal)?;
            let (current, buf, result) = durable::append_blocking(
                self.current.take(),
                path,
                self.modes,
                TornTail::Trim,
                buf,
            )
            .await;
            self.current = current;
            self.buf = buf;
            result.map_err(|e| SinkError::Retryable(format!("sink `{}`: {e}", self.id)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sinks::EncodedEvent;

    fn sink(path: &str, file_mode: Option<&str>) -> FileSink {
        let cfg = FileSinkConfig {
            inputs: vec!["s".into()],
            path: path.to_string(),
            file_mode: file_mode.map(str::to_string),
        };
        FileSink::new("archive", &cfg).unwrap()
    }

    fn batch(ids: &[&str]) -> Batch {
        let sample: crate::event::Event = serde_json::from_value(serde_json::json!({
            "@timestamp": "2025-03-04T08:00:01.234Z",
            "ecs": {"version": "9.4.0"},
            "message": "restored",
            "event": {
                "kind": "event", "category": ["file"], "type": ["access"],
                "action": "item-restored", "outcome": "success", "id": "ev-1",
                "created": "2025-03-04T08:00:02Z", "dataset": "veeam.vbo_restore",
                "module": "veeam", "provider": "vbo"
            },
            "observer": {"vendor": "Veeam", "product": "VB365", "hostname": "vbo.example.net"},
            "labels": {"source_id": "s"},
            "veeam": {}
        }))
        .unwrap();
        Batch {
            source_id: Arc::from("s"),
            source_index: 0,
            seq: 1,
            events: ids
                .iter()
                .map(|id| EncodedEvent {
                    event: sample.clone(),
                    json: format!(
                        "{{\"event\":{{\"id\":\"{id}\"}},\"pad\":\"{}\"}}",
                        "x".repeat(900)
                    ),
                })
                .collect(),
        }
    }

    #[test]
    fn expands_dates() {
        let t = DateTime::parse_from_rfc3339("2025-03-04T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            expand_path("/var/log/veeam-%Y-%m-%d.ndjson", t).unwrap(),
            PathBuf::from("/var/log/veeam-2025-03-04.ndjson")
        );
        assert!(expand_path("/x/%Q", t).is_err());
    }

    /// A crash at the rollover left yesterday's file with a torn line the sink will not
    /// write again: it is trimmed before the first batch; complete files and the current
    /// one are untouched, and so is a file another writer holds.
    #[test]
    fn torn_tails_of_earlier_files_are_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/veeam-%Y-%m-%d.ndjson", dir.path().display());
        let now: DateTime<Utc> = "2026-12-04T00:00:05Z".parse().unwrap();
        let yesterday = expand_path(&pattern, now - chrono::TimeDelta::days(1)).unwrap();
        let last_week = expand_path(&pattern, now - chrono::TimeDelta::weeks(1)).unwrap();
        std::fs::write(&yesterday, "{\"a\":1}\n{\"b\":").unwrap();
        std::fs::write(&last_week, "{\"c\":1}\n").unwrap();
        assert_eq!(
            repair_earlier_files(&pattern, now, Modes::PRIVATE),
            vec![yesterday.clone()]
        );
        assert_eq!(std::fs::read_to_string(&yesterday).unwrap(), "{\"a\":1}\n");
        assert_eq!(std::fs::read_to_string(&last_week).unwrap(), "{\"c\":1}\n");
        std::fs::write(&yesterday, "{\"a\":1}\n{\"b\":").unwrap();
        // Another writer's file (its lock held) is left alone, torn tail and all.
        let held = std::fs::File::open(&yesterday).unwrap();
        held.try_lock().unwrap();
        assert!(repair_earlier_files(&pattern, now, Modes::PRIVATE).is_empty());
        assert_eq!(
            std::fs::read_to_string(&yesterday).unwrap(),
            "{\"a\":1}\n{\"b\":"
        );
        drop(held);
    }

    #[test]
    fn file_modes_are_validated() {
        assert_eq!(parse_file_mode("0640"), Ok(0o640));
        assert_eq!(parse_file_mode("600"), Ok(0o600));
        assert_eq!(parse_file_mode("0644"), Ok(0o644));
        for bad in [
            "rw-r-----",
            "0o640",
            "640a",
            "0",
            "01640",
            "0400",
            "0660",
            "0666",
            "0700",
            "0840",
        ] {
            assert!(parse_file_mode(bad).is_err(), "{bad} accepted");
        }
    }

    /// The injected write error: `/dev/full` fails every write with ENOSPC (and fsync with
    /// EINVAL). The batch must fail with the write's own error: before the fix tokio's
    /// buffered `write_all` returned Ok and the write error never reached the batch (here
    /// only fsync's EINVAL did; on a real file system `sync_data` succeeded).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_write_error_fails_the_batch() {
        let mut s = sink("/dev/full", None);
        match s.deliver(&batch(&["a", "b"])).await {
            Err(SinkError::Retryable(m)) => {
                assert!(
                    m.contains("/dev/full")
                        && m.contains("archive")
                        && m.contains("No space left on device"),
                    "{m}"
                )
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
        // And again: the sink keeps failing rather than pretending.
        assert!(s.deliver(&batch(&["a", "b"])).await.is_err());
    }

    /// A batch that does not fit on a small tmpfs fails and is cut back off the file: the
    /// file keeps only the complete batches before it.
    #[tokio::test]
    async fn a_partial_write_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mnt)
            .output();
        match mounted {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs ({}); a_write_error_fails_the_batch covers the call site",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                return;
            }
        }
        let path = mnt.join("out.ndjson");
        let mut s = sink(&path.display().to_string(), None);
        s.deliver(&batch(&["a", "b", "c"])).await.unwrap();
        let before = std::fs::read(&path).unwrap();
        let big: Vec<String> = (0..100).map(|i| format!("big{i}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        let result = s.deliver(&batch(&big)).await;
        let after = std::fs::read(&path).unwrap();
        drop(s);
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&mnt)
            .status();
        assert!(matches!(result, Err(SinkError::Retryable(_))), "{result:?}");
        assert_eq!(after, before, "the failed batch must leave nothing behind");
    }
}
