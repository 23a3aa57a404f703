//! Durable per-source state: one JSON file per source under `[state] dir`.
//!
//! Owns the on-disk format and the atomic write: temp file in the same directory → write →
//! fsync → rename over the old file → fsync the directory. A reader therefore sees either
//! the old or the new checkpoint, never a torn one, even after `kill -9` or power loss.
//! A file that exists but does not parse is an error naming the file: we never silently
//! reset progress (that would re-send or skip history). Checkpoint files are 0600 and a
//! state directory created here is 0700 (whatever the umask); being rewritten by rename,
//! a checkpoint written by an older version becomes 0600 on its next save.
//!
//! The state itself is opaque JSON owned by the source (`sources::*`); this module only
//! wraps it with the source id and type so a checkpoint can't be loaded by the wrong source,
//! and with the server it was read from: positions in one server's listings would skip
//! another server's history, so a checkpoint is not used for a source whose `url` now
//! names another server (the error says how to go on).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable::{self, PRIVATE_DIR, PRIVATE_FILE};

/// Format version written in every file.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "cannot use state directory {dir}: {source}; check `[state] dir` exists and is writable by this user"
    )]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is corrupt ({problem}); refusing to start from scratch. Fix or move the file away (the source then starts from its `start_time`)"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "checkpoint {path} was written by a newer veeam-siem ({what}): run that version (or a newer one) again. Do not move the file away: the source would then send its history again"
    )]
    Newer { path: PathBuf, what: String },
    #[error(
        "checkpoint {path} holds the progress of source `{source_id}` on {written_for}, but the source now reads {now}: its positions would skip that server's history. If it is the same server under another name, set `server` in the file to {now:?}; if it is another server, move the file away (the source then starts from its `start_time`)"
    )]
    OtherServer {
        path: PathBuf,
        source_id: String,
        written_for: String,
        now: String,
    },
    #[error(
        "cannot write checkpoint {path}: {source}{}",
        crate::durable::descriptor_hint(source)
            .unwrap_or("; check that `[state] dir` has free space and is writable by this user")
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file's shape; `S` is the state, borrowed when saving (a large state is written per
/// batch, so it is not copied first).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<S> {
    format: u32,
    source_id: String,
    source_type: String,
    /// The source's server (its `url` without credentials); absent in files of earlier
    /// versions, which are then not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    updated: chrono::DateTime<chrono::Utc>,
    /// `@timestamp` of the newest event the checkpoint covers, so the lag metrics are right
    /// from the start of the next run; absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest_event: Option<chrono::DateTime<chrono::Utc>>,
    state: S,
}

/// What a checkpoint file holds for its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub state: serde_json::Value,
    /// `@timestamp` of the newest event covered, when the writer knew it.
    pub newest_event: Option<chrono::DateTime<chrono::Utc>>,
}

/// The checkpoint file of one source.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    path: PathBuf,
    source_id: String,
    source_type: String,
    server: Option<String>,
}

impl CheckpointStore {
    /// Create the store (and the state directory, 0700, if needed).
    pub fn open(dir: &Path, source_id: &str, source_type: &str) -> Result<Self, CheckpointError> {
        durable::create_dirs(dir, PRIVATE_DIR).map_err(|source| CheckpointError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(CheckpointStore::at(dir, source_id, source_type))
    }

    /// The store without touching the disk: for reading only (`check`), where a missing
    /// state directory must stay missing.
    pub fn at(dir: &Path, source_id: &str, source_type: &str) -> Self {
        CheckpointStore {
            dir: dir.to_path_buf(),
            path: dir.join(format!("{source_id}.checkpoint.json")),
            source_id: source_id.to_string(),
            source_type: source_type.to_string(),
            server: None,
        }
    }

    /// The store of a source reading `url`: a checkpoint written for another server is
    /// refused at [`Self::load`], and saves record it.
    pub fn for_server(mut self, url: &str) -> Self {
        self.server = Some(server_of(url));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, `None` when there is no checkpoint yet.
    pub fn load(&self) -> Result<Option<serde_json::Value>, CheckpointError> {
        Ok(self.load_stored()?.map(|s| s.state))
    }

    /// The stored state with what the file says about it, `None` when there is no
    /// checkpoint yet.
    pub fn load_stored(&self) -> Result<Option<Stored>, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |problem: String| CheckpointError::Corrupt {
            path: self.path.clone(),
            problem,
        };
        let env: Envelope<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            if e.is_data() && e.to_string().contains("unknown field") {
                CheckpointError::Newer {
                    path: self.path.clone(),
                    what: format!("it has a field this version does not know: {e}"),
                }
            } else {
                corrupt(format!("not valid JSON: {e}"))
            }
        })?;
        if env.format > FORMAT_VERSION {
            return Err(CheckpointError::Newer {
                path: self.path.clone(),
                what: format!("format {}; this version reads {FORMAT_VERSION}", env.format),
            });
        }
        if env.format != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format {} is not supported by this version (expects {FORMAT_VERSION})",
                env.format
            )));
        }
        if env.source_id != self.source_id || env.source_type != self.source_type {
            return Err(corrupt(format!(
                "it belongs to source `{}` of type `{}`, not `{}` of type `{}`",
                env.source_id, env.source_type, self.source_id, self.source_type
            )));
        }
        if let (Some(written_for), Some(now)) = (&env.server, &self.server)
            && written_for != now
        {
            return Err(CheckpointError::OtherServer {
                path: self.path.clone(),
                source_id: self.source_id.clone(),
                written_for: written_for.clone(),
                now: now.clone(),
            });
        }
        Ok(Some(Stored {
            state: env.state,
            newest_event: env.newest_event,
        }))
    }

    /// Atomically replace the checkpoint with `state`.
    pub fn save(&self, state: &serde_json::Value) -> Result<(), CheckpointError> {
        self.save_covering(state, None)
    }

    /// Atomically replace the checkpoint with `state`, which covers events up to
    /// `newest_event`.
    pub fn save_covering(
        &self,
        state: &serde_json::Value,
        newest_event: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), CheckpointError> {
        let env = Envelope {
            format: FORMAT_VERSION,
            source_id: self.source_id.clone(),
            source_type: self.source_type.clone(),
            server: self.server.clone(),
            updated: chrono::Utc::now(),
            newest_event,
            state,
        };
        let write_err = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&env).map_err(|e| write_err(e.into()))?;
        let tmp = self
            .dir
            .join(format!(".{}.checkpoint.json.tmp", self.source_id));
        {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE);
            let mut f = options.open(&tmp).map_err(write_err)?;
            // Also when a temp file left by a crash had another mode.
            durable::set_mode(&f, PRIVATE_FILE).map_err(write_err)?;
            f.write_all(&bytes).map_err(write_err)?;
            f.sync_all().map_err(write_err)?;
        }
        fs::rename(&tmp, &self.path).map_err(write_err)?;
        // Make the rename itself durable.
        durable::sync_dir(&self.dir).map_err(write_err)?;
        Ok(())
    }
}

/// A server's identity from a source `url`: scheme, host and port (lowercase, default ports
/// left out by the URL parser), no credentials, no trailing `/`.
fn server_of(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => url.trim().trim_end_matches('/').to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// A checkpoint written for one server is not used for another; one without a server
    /// (an earlier version's) is, and the same server with a trailing `/` is the same.
    #[test]
    fn a_checkpoint_of_another_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointStore::open(dir.path(), "vbo_main", "vbo")
            .unwrap()
            .for_server("https://VBO-1.example.net:4443/");
        a.save(&serde_json::json!({"n": 1})).unwrap();
        let same = CheckpointStore::at(dir.path(), "vbo_main", "vbo")
            .for_server("https://vbo-1.example.net:4443");
        assert_eq!(same.load().unwrap(), Some(serde_json::json!({"n": 1})));
        let other = CheckpointStore::at(dir.path(), "vbo_main", "vbo")
            .for_server("https://vbo-2.example.net:4443");
        let e = other.load().unwrap_err().to_string();
        assert!(
            e.contains("https://vbo-1.example.net:4443")
                && e.contains("https://vbo-2.example.net:4443")
                && e.contains("move the file away"),
            "{e}"
        );
        let unchecked = CheckpointStore::at(dir.path(), "vbo_main", "vbo");
        assert!(unchecked.load().is_ok());
        // A file of an earlier version (no `server`): used.
        let old = CheckpointStore::open(dir.path(), "vdc", "vdc").unwrap();
        old.save(&serde_json::json!({})).unwrap();
        assert!(
            CheckpointStore::at(dir.path(), "vdc", "vdc")
                .for_server("https://x.example")
                .load()
                .is_ok()
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn the_newest_event_covered_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "vbo_main", "vbo").unwrap();
        let t = "2026-01-02T03:04:05Z".parse().unwrap();
        store.save_covering(&json!({"a": 1}), Some(t)).unwrap();
        let stored = store.load_stored().unwrap().unwrap();
        assert_eq!(stored.newest_event, Some(t));
        assert_eq!(stored.state, json!({"a": 1}));
        store.save(&json!({})).unwrap();
        assert_eq!(store.load_stored().unwrap().unwrap().newest_event, None);
    }

    /// A checkpoint a newer version wrote (a higher format, or an envelope field this
    /// version does not know) is refused with advice not to move it away; a source state
    /// with a field this version does not know says the same.
    #[test]
    fn a_checkpoint_of_a_newer_version_is_refused_without_advice_to_move_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "vbo_main", "vbo").unwrap();
        store.save(&json!({})).unwrap();
        let path = dir.path().join("vbo_main.checkpoint.json");
        let mut written: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let original = written.clone();
        written["format"] = json!(FORMAT_VERSION + 1);
        fs::write(&path, written.to_string()).unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(
            e.contains("newer veeam-siem") && e.contains("Do not move the file away"),
            "{e}"
        );
        let mut written = original;
        written["shard"] = json!(3);
        fs::write(&path, written.to_string()).unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(
            e.contains("newer veeam-siem") && e.contains("`shard`"),
            "{e}"
        );
        let bad = serde_json::from_value::<crate::sources::vbo::VboState>(
            json!({"horizon": "2025-01-01T00:00:00Z", "sessions": {}, "shard": 3}),
        )
        .unwrap_err();
        let e = crate::sources::unusable_state("vbo_main", "vbo", &bad).to_string();
        assert!(
            e.contains("newer veeam-siem") && e.contains("`shard`"),
            "{e}"
        );
    }

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "vbo_main", "vbo").unwrap();
        assert_eq!(store.load().unwrap(), None);
        store
            .save(&json!({"horizon": "2025-01-01T00:00:00Z"}))
            .unwrap();
        store
            .save(&json!({"horizon": "2025-01-02T00:00:00Z"}))
            .unwrap();
        assert_eq!(
            store.load().unwrap(),
            Some(json!({"horizon": "2025-01-02T00:00:00Z"}))
        );
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "vbo_main", "vbo").unwrap();
        fs::write(store.path(), b"{ not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(
            e.contains("vbo_main.checkpoint.json") && e.contains("corrupt"),
            "{e}"
        );
    }

    #[test]
    fn other_sources_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = CheckpointStore::open(dir.path(), "a", "vbo").unwrap();
        a.save(&json!({})).unwrap();
        fs::copy(a.path(), dir.path().join("b.checkpoint.json")).unwrap();
        let b = CheckpointStore::open(dir.path(), "b", "vbo").unwrap();
        assert!(
            b.load()
                .unwrap_err()
                .to_string()
                .contains("belongs to source `a`")
        );
    }

    #[cfg(unix)]
    #[test]
    fn checkpoint_and_dir_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = CheckpointStore::open(&state, "vbo_main", "vbo").unwrap();
        store.save(&json!({})).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    #[test]
    fn at_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = CheckpointStore::at(&state, "vbo_main", "vbo");
        assert_eq!(store.load().unwrap(), None);
        assert!(!state.exists());
    }
}
