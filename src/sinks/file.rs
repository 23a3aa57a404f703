//! `type = "file"`: NDJSON appended to a file, for compliance archives.
//!
//! The path may contain `strftime` patterns (`%Y-%m-%d`), expanded with the UTC time of
//! the write, so files roll over by day (or hour...). A batch is acknowledged only after
//! `fsync` (data), so an acknowledged event survives a crash or power loss. Parent
//! directories are created as needed. Rotation by other tools is fine: the file is reopened
//! whenever the expanded path changes, and by `O_APPEND` writes never clobber.
//!
//! Crash safety: a `kill -9` in the middle of a write can leave a partial last line. That
//! line was never acknowledged (acknowledgement follows the fsync of complete lines), so
//! the batch will be sent again; when the sink first opens a file it trims such a tail
//! back to the last newline instead of leaving a broken record in the archive.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::{Batch, Sink, SinkError};

/// Expand `strftime` patterns in `pattern` for time `t`; an invalid pattern is an error.
pub fn expand_path(pattern: &str, t: DateTime<Utc>) -> Result<PathBuf, String> {
    let mut out = String::new();
    write!(out, "{}", t.format(pattern))
        .map_err(|_| format!("`{pattern}` has an invalid strftime pattern; use e.g. %Y-%m-%d"))?;
    Ok(PathBuf::from(out))
}

/// Cut an unterminated last line (left by a crash mid-write) back to the last `\n`.
async fn trim_partial_tail(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let std_file = file.try_clone().await?.into_std().await;
    tokio::task::spawn_blocking(move || {
        let mut f = std_file;
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(());
        }
        // Scan backwards in chunks for the last newline.
        let mut end = len;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let start = end.saturating_sub(chunk.len() as u64);
            let n = (end - start) as usize;
            f.seek(SeekFrom::Start(start))?;
            f.read_exact(&mut chunk[..n])?;
            if end == len && chunk[n - 1] == b'\n' {
                return Ok(()); // ends cleanly: the common case
            }
            if let Some(pos) = chunk[..n].iter().rposition(|&b| b == b'\n') {
                let keep = start + pos as u64 + 1;
                tracing::warn!(
                    bytes = len - keep,
                    "trimming a partial last line left by an interrupted write (it will be re-sent)"
                );
                f.set_len(keep)?;
                return f.sync_data();
            }
            if start == 0 {
                tracing::warn!(
                    bytes = len,
                    "file holds only a partial line; trimming it (it will be re-sent)"
                );
                f.set_len(0)?;
                return f.sync_data();
            }
            end = start;
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

pub struct FileSink {
    id: String,
    pattern: String,
    current: Option<(PathBuf, File)>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn new(id: &str, pattern: &str) -> Result<Self, SinkError> {
        expand_path(pattern, Utc::now())
            .map_err(|e| SinkError::Fatal(format!("sinks.{id}.path: {e}")))?;
        Ok(FileSink {
            id: id.to_string(),
            pattern: pattern.to_string(),
            current: None,
            buf: Vec::new(),
        })
    }

    async fn file_for(&mut self, path: PathBuf) -> Result<&mut File, SinkError> {
        let reopen = !matches!(&self.current, Some((p, _)) if *p == path);
        if reopen {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    SinkError::Retryable(format!(
                        "sink `{}`: cannot create directory {}: {e}",
                        self.id,
                        parent.display()
                    ))
                })?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .await
                .map_err(|e| {
                    SinkError::Retryable(format!(
                        "sink `{}`: cannot open {}: {e}",
                        self.id,
                        path.display()
                    ))
                })?;
            trim_partial_tail(&file).await.map_err(|e| {
                SinkError::Retryable(format!(
                    "sink `{}`: cannot repair the partial last line of {}: {e}",
                    self.id,
                    path.display()
                ))
            })?;
            self.current = Some((path, file));
        }
        match &mut self.current {
            Some((_, f)) => Ok(f),
            None => Err(SinkError::Retryable("file not open".into())),
        }
    }
}

impl Sink for FileSink {
    /// The file for now can be created/opened for appending (directories are created).
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let path = expand_path(&self.pattern, Utc::now()).map_err(SinkError::Fatal)?;
            self.file_for(path).await.map(|_| ()).map_err(|e| match e {
                SinkError::Retryable(m) => SinkError::Fatal(format!(
                    "{m}; check the directory exists or can be created and is writable by this user"
                )),
                other => other,
            })
        })
    }

    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.events.is_empty() {
                return Ok(());
            }
            self.buf.clear();
            for e in &batch.events {
                self.buf.extend_from_slice(e.json.as_bytes());
                self.buf.push(b'\n');
            }
            let path = expand_path(&self.pattern, Utc::now()).map_err(SinkError::Fatal)?;
            let shown = path.display().to_string();
            let id = self.id.clone();
            let buf = std::mem::take(&mut self.buf);
            let file = self.file_for(path).await?;
            let result = async {
                file.write_all(&buf).await?;
                file.sync_data().await
            }
            .await;
            self.buf = buf;
            if let Err(e) = result {
                // Drop the handle: the next attempt reopens (the disk may have been remounted).
                self.current = None;
                return Err(SinkError::Retryable(format!(
                    "sink `{id}`: cannot write {shown}: {e}"
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn partial_tail_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        for (before, after) in [
            ("", ""),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"b\":", ""),
        ] {
            std::fs::write(&p, before).unwrap();
            let f = OpenOptions::new()
                .append(true)
                .read(true)
                .open(&p)
                .await
                .unwrap();
            trim_partial_tail(&f).await.unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), after, "{before:?}");
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
}
