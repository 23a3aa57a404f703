//! A sink's dead-letter file, `<sink_id>.deadletter.ndjson` in `[state] dir` (mode 0600):
//! one JSON line per event the receiver can never take, `time`, `sink_id`, the sink's own
//! fields saying why (HEC: `http_status`, `code`, `text`; Kafka: `reason`, `bytes`,
//! `message_max_bytes`; Sentinel: `http_status`, `code`,
//! `reason`; syslog over UDP: `reason`, `bytes`, `max_message_bytes`), then the whole `event`. Each line is appended and fsynced through
//! [`durable::append_blocking`] before the batch it belongs to is acknowledged: a write
//! error fails that batch (a failed write is cut back off the file), and an unterminated
//! last line left by a crash is closed with a newline before anything is appended.
//!
//! Shared by the sinks that quarantine (`splunk_hec`, `azure_monitor_logs`, `kafka`,
//! `syslog`).
//! Must not: decide what is poison (each sink does), or lose or tear a line.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::durable::{self, Appender, Modes, TornTail};

#[derive(Serialize)]
struct Line<'a, W: Serialize> {
    time: DateTime<Utc>,
    sink_id: &'a str,
    #[serde(flatten)]
    why: &'a W,
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
    /// `<state_dir>/<sink_id>.deadletter.ndjson`.
    pub fn new(sink_id: &str, state_dir: &Path) -> Self {
        Self::at(
            sink_id,
            state_dir.join(format!("{sink_id}.deadletter.ndjson")),
        )
    }

    /// A dead-letter file at `path` (tests use `/dev/full`).
    pub fn at(sink_id: &str, path: PathBuf) -> Self {
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

    /// Events quarantined by this process.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Append one event (its serialized JSON) with the fields of `why` (a struct) and
    /// fsync. An error means the line is not on disk (and not half there either).
    pub async fn quarantine<W: Serialize>(
        &mut self,
        why: &W,
        event_json: &str,
    ) -> std::io::Result<()> {
        let event: &serde_json::value::RawValue =
            serde_json::from_str(event_json).map_err(std::io::Error::other)?;
        let mut line = serde_json::to_vec(&Line {
            time: Utc::now(),
            sink_id: &self.sink_id,
            why,
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

    /// [`DeadLetters::quarantine`] as a sink needs it: a write error fails the batch
    /// (retryable, naming the sink and the file), a written line is counted in
    /// `sink_events_quarantined_total`.
    pub async fn quarantine_for_batch<W: Serialize>(
        &mut self,
        why: &W,
        event_json: &str,
    ) -> Result<(), crate::sinks::SinkError> {
        if let Err(e) = self.quarantine(why, event_json).await {
            return Err(crate::sinks::SinkError::Retryable(format!(
                "sink `{}`: cannot write the dead-letter file {}: {e}",
                self.sink_id,
                self.path.display()
            )));
        }
        crate::metrics::global().quarantined(&self.sink_id, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Why<'a> {
        http_status: Option<u16>,
        code: Option<&'a str>,
        reason: &'a str,
    }

    #[tokio::test]
    async fn dead_letters_are_private_lines_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut dl = DeadLetters::new("sentinel", &state);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(dl.path(), "{\"torn\":").unwrap();
        let why = Why {
            http_status: None,
            code: None,
            reason: "too large",
        };
        dl.quarantine(&why, r#"{"event":{"id":"a"}}"#)
            .await
            .unwrap();
        let why = Why {
            http_status: Some(400),
            code: Some("InvalidPayload"),
            reason: "bad",
        };
        dl.quarantine(&why, r#"{"event":{"id":"b"}}"#)
            .await
            .unwrap();
        assert_eq!(dl.count(), 2);
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "the torn line was closed, then two lines");
        // Field order: time, sink_id, the reason's fields, event.
        assert!(
            lines[1].contains(r#""sink_id":"sentinel","http_status":null,"code":null,"reason":"too large","event":{"#),
            "{}",
            lines[1]
        );
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["code"], "InvalidPayload");
        assert_eq!(v["event"]["event"]["id"], "b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A file we create is private (an existing file keeps its mode).
            let mut fresh = DeadLetters::new("fresh", &dir.path().join("new"));
            fresh.quarantine(&why, r#"{"a":1}"#).await.unwrap();
            let mode = std::fs::metadata(fresh.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
