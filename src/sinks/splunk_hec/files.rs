//! The Splunk HEC sink's durable files in `[state] dir`: the data channel id and the
//! dead-letter file.
//!
//! - `<sink_id>.hec-channel` holds one GUID, created once (written atomically: temp file,
//!   fsync, rename, directory fsync; mode 0600) and reused after every restart, so a daemon
//!   restarted by cron or Kubernetes doesn't leave a trail of abandoned channels on the
//!   indexers (Splunk caps channels per token and expires idle ones). `check` only reads it
//!   ([`read_channel`]) and probes with a throwaway channel when there is none yet.
//! - `<sink_id>.deadletter.ndjson` receives the events HEC rejects as malformed (or too
//!   large), through the shared [`DeadLetters`] file; [`Rejection`] is what a HEC line
//!   says about why (`http_status`, `code`, `text`).
//!
//! Must not: decide what is poison (that is the HEC reply, classified in `wire.rs`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::durable::{self, PRIVATE_DIR, PRIVATE_FILE};
pub use crate::sinks::dead_letters::DeadLetters;

/// Where the channel GUID of sink `sink_id` lives.
pub fn channel_path(state_dir: &Path, sink_id: &str) -> PathBuf {
    state_dir.join(format!("{sink_id}.hec-channel"))
}

/// The channel GUID stored at `path`, `None` when there is no file yet. Writes nothing.
pub fn read_channel(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim())
            .map(|u| Some(u.hyphenated().to_string()))
            .map_err(|e| {
                format!(
                    "{} does not hold a channel GUID ({e}); delete it to create a new channel",
                    path.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Read the channel GUID from `path`, or create the file with a new random one.
pub fn load_or_create_channel(path: &Path) -> Result<String, String> {
    if let Some(channel) = read_channel(path)? {
        return Ok(channel);
    }
    let channel = uuid::Uuid::new_v4().hyphenated().to_string();
    write_atomically(path, channel.as_bytes()).map_err(|e| {
        format!(
            "cannot create {}: {e}; check that `[state] dir` is writable by this user",
            path.display()
        )
    })?;
    Ok(channel)
}

fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = durable::parent_or_dot(path);
    durable::create_dirs(dir, PRIVATE_DIR)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    durable::set_mode(tmp.as_file(), PRIVATE_FILE)?;
    tmp.write_all(content)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    durable::sync_dir(dir)
}

/// Why HEC refused an event for good, as written in its line of the dead-letter file
/// ([`DeadLetters`]): `http_status`, `code` (the HEC code, when the reply had one), `text`.
#[derive(Serialize)]
pub struct Rejection<'a> {
    pub http_status: u16,
    pub code: Option<i64>,
    pub text: &'a str,
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
        let mut dl = DeadLetters::at("splunk", path.clone());
        dl.quarantine(
            &Rejection {
                http_status: 400,
                code: Some(6),
                text: "Invalid data format",
            },
            r#"{"event":{"id":"a"}}"#,
        )
        .await
        .unwrap();
        dl.quarantine(
            &Rejection {
                http_status: 413,
                code: None,
                text: "request too large",
            },
            r#"{"event":{"id":"b"}}"#,
        )
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

    #[test]
    fn read_channel_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = channel_path(&dir.path().join("state"), "splunk");
        assert_eq!(read_channel(&path).unwrap(), None);
        assert!(!dir.path().join("state").exists());
        let created = load_or_create_channel(&path).unwrap();
        assert_eq!(read_channel(&path).unwrap(), Some(created));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let channel = channel_path(&state, "splunk");
        load_or_create_channel(&channel).unwrap();
        assert_eq!(mode(&channel), 0o600);
        assert_eq!(mode(&state), 0o700);
        let path = state.join("splunk.deadletter.ndjson");
        let mut dl = DeadLetters::at("splunk", path.clone());
        dl.quarantine(
            &Rejection {
                http_status: 400,
                code: Some(6),
                text: "Invalid data format",
            },
            r#"{"event":{"id":"a"}}"#,
        )
        .await
        .unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    /// The injected write error (`/dev/full`: ENOSPC on every write) reaches the caller,
    /// so the batch holding the poison event is not acknowledged.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_failed_dead_letter_write_is_an_error() {
        let mut dl = DeadLetters::at("splunk", PathBuf::from("/dev/full"));
        let e = dl
            .quarantine(
                &Rejection {
                    http_status: 400,
                    code: Some(6),
                    text: "Invalid data format",
                },
                r#"{"event":{"id":"a"}}"#,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
        assert_eq!(dl.count(), 0);
    }
}
