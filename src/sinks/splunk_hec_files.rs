//! The Splunk HEC sink's durable files in `[state] dir`: the data channel id and the
//! dead-letter file.
//!
//! - `<sink_id>.hec-channel` holds one GUID, created once (written atomically: temp file,
//!   fsync, rename, directory fsync) and reused after every restart, so a daemon restarted
//!   by cron or Kubernetes doesn't leave a trail of abandoned channels on the indexers
//!   (Splunk caps channels per token and expires idle ones).
//! - `<sink_id>.deadletter.ndjson` receives the events HEC rejects as malformed, one JSON
//!   line each (`time`, `sink_id`, `http_status`, `code`, `text`, `event`), appended and
//!   fsynced before the batch they belong to is acknowledged.
//!
//! Must not: decide what is poison (that is the HEC reply, classified in
//! `splunk_hec_wire.rs`), or lose a line: an unterminated last line left by a crash is
//! closed with a newline before anything is appended.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Read the channel GUID from `path`, or create the file with a new random one.
pub fn load_or_create_channel(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim())
            .map(|u| u.hyphenated().to_string())
            .map_err(|e| {
                format!(
                    "{} does not hold a channel GUID ({e}); delete it to create a new channel",
                    path.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let channel = uuid::Uuid::new_v4().hyphenated().to_string();
            write_atomically(path, channel.as_bytes()).map_err(|e| {
                format!(
                    "cannot create {}: {e}; check that `[state] dir` is writable by this user",
                    path.display()
                )
            })?;
            Ok(channel)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(content)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// One dead letter, as written.
#[derive(Serialize)]
struct Line<'a> {
    time: DateTime<Utc>,
    sink_id: &'a str,
    /// HTTP status of the rejection.
    http_status: u16,
    /// HEC code, when the reply had one.
    code: Option<i64>,
    text: &'a str,
    event: &'a serde_json::value::RawValue,
}

/// The dead-letter file of one sink, opened on first use.
pub struct DeadLetters {
    sink_id: String,
    path: PathBuf,
    file: Option<File>,
    count: u64,
}

impl DeadLetters {
    pub fn new(sink_id: &str, path: PathBuf) -> Self {
        DeadLetters {
            sink_id: sink_id.to_string(),
            path,
            file: None,
            count: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events quarantined by this process (metrics will export it).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Append one event and fsync. `event_json` is the event's serialized JSON.
    pub async fn quarantine(
        &mut self,
        http_status: u16,
        code: Option<i64>,
        text: &str,
        event_json: &str,
    ) -> std::io::Result<()> {
        let event: &serde_json::value::RawValue =
            serde_json::from_str(event_json).map_err(std::io::Error::other)?;
        let mut line = serde_json::to_vec(&Line {
            time: Utc::now(),
            sink_id: &self.sink_id,
            http_status,
            code,
            text,
            event,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let result = async {
            let file = self.open().await?;
            file.write_all(&line).await?;
            file.sync_data().await
        }
        .await;
        if result.is_err() {
            // Reopen next time (the disk may have been remounted).
            self.file = None;
        }
        result?;
        self.count += 1;
        Ok(())
    }

    async fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent).await?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)
                .await?;
            // Close a line torn by a crash, so the next one starts clean.
            let len = file.metadata().await?.len();
            if len > 0 {
                file.seek(std::io::SeekFrom::Start(len - 1)).await?;
                let mut last = [0u8; 1];
                file.read_exact(&mut last).await?;
                if last[0] != b'\n' {
                    file.write_all(b"\n").await?;
                }
            }
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("dead-letter file not open")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("splunk.hec-channel");
        let first = load_or_create_channel(&path).unwrap();
        assert!(uuid::Uuid::parse_str(&first).is_ok());
        assert_eq!(load_or_create_channel(&path).unwrap(), first);
        std::fs::write(&path, "not a guid").unwrap();
        let e = load_or_create_channel(&path).unwrap_err();
        assert!(
            e.contains("splunk.hec-channel") && e.contains("delete"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn dead_letters_append_lines_and_close_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("splunk.deadletter.ndjson");
        std::fs::write(&path, "{\"torn\":").unwrap();
        let mut dl = DeadLetters::new("splunk", path.clone());
        dl.quarantine(
            400,
            Some(6),
            "Invalid data format",
            r#"{"event":{"id":"a"}}"#,
        )
        .await
        .unwrap();
        dl.quarantine(413, None, "request too large", r#"{"event":{"id":"b"}}"#)
            .await
            .unwrap();
        assert_eq!(dl.count(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["sink_id"], "splunk");
        assert_eq!(v["code"], 6);
        assert_eq!(v["http_status"], 400);
        assert_eq!(v["event"]["event"]["id"], "a");
        assert!(v["time"].is_string());
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert!(v["code"].is_null());
    }
}
