//! The sink's dead-letter file, `<sink_id>.deadletter.ndjson` in `[state] dir` (mode
//! 0600): one JSON line per event the Logs Ingestion API can never take (`time`,
//! `sink_id`, `http_status` (none when the event was never sent: it alone exceeds the
//! request limit), `code` (the API's `error.code`), `reason`, `event`), appended and
//! fsynced through [`durable::append_blocking`] before the batch is acknowledged; a write
//! error fails the batch, and a torn last line left by a crash is closed first.
//!
//! Must not: decide what is poison (that is `sink.rs`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::durable::{self, Appender, Modes, TornTail};

#[derive(Serialize)]
struct Line<'a> {
    time: DateTime<Utc>,
    sink_id: &'a str,
    http_status: Option<u16>,
    code: Option<&'a str>,
    reason: &'a str,
    event: &'a serde_json::value::RawValue,
}

/// The dead-letter file of one sink, opened on first use.
pub struct DeadLetters {
    sink_id: String,
    path: PathBuf,
    file: Option<Appender>,
    count: u64,
}

impl DeadLetters {
    pub fn new(sink_id: &str, state_dir: &Path) -> Self {
        DeadLetters {
            sink_id: sink_id.to_string(),
            path: state_dir.join(format!("{sink_id}.deadletter.ndjson")),
            file: None,
            count: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events quarantined by this process.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Append one event (its serialized JSON) and fsync. An error means the line is not
    /// on disk (and not half there either).
    pub async fn quarantine(
        &mut self,
        http_status: Option<u16>,
        code: Option<&str>,
        reason: &str,
        event_json: &str,
    ) -> std::io::Result<()> {
        let event: &serde_json::value::RawValue =
            serde_json::from_str(event_json).map_err(std::io::Error::other)?;
        let mut line = serde_json::to_vec(&Line {
            time: Utc::now(),
            sink_id: &self.sink_id,
            http_status,
            code,
            reason,
            event,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let (file, _line, result) = durable::append_blocking(
            self.file.take(),
            self.path.clone(),
            Modes::PRIVATE,
            TornTail::Close,
            line,
        )
        .await;
        self.file = file;
        result.map_err(durable::AppendError::into_source)?;
        self.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dead_letters_are_private_lines_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut dl = DeadLetters::new("sentinel", &state);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(dl.path(), "{\"torn\":").unwrap();
        dl.quarantine(None, None, "too large", r#"{"event":{"id":"a"}}"#)
            .await
            .unwrap();
        dl.quarantine(
            Some(400),
            Some("InvalidPayload"),
            "bad",
            r#"{"event":{"id":"b"}}"#,
        )
        .await
        .unwrap();
        assert_eq!(dl.count(), 2);
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["sink_id"], "sentinel");
        assert!(v["http_status"].is_null());
        assert_eq!(v["reason"], "too large");
        assert_eq!(v["event"]["event"]["id"], "a");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["code"], "InvalidPayload");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A file we create is private (an existing file keeps its mode).
            let mut fresh = DeadLetters::new("fresh", &dir.path().join("new"));
            fresh
                .quarantine(None, None, "x", r#"{"a":1}"#)
                .await
                .unwrap();
            let mode = std::fs::metadata(fresh.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
