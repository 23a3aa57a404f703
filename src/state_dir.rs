//! The `[state] dir` belongs to one process at a time.
//!
//! Owns the exclusive lock `<dir>/veeam-siem.lock`: taken once when a `run` or `backfill`
//! process starts (`backfill` locks its own `<dir>/backfill/<window>/`) and held until the
//! process exits, so two daemons never interleave checkpoint writes, channel files or
//! dead letters. The lock is an `flock` on the file, not the file's existence: the kernel
//! releases it when the process dies (even by `kill -9`), so a stale file never blocks a
//! restart, and the file is left in place. The holder writes its PID into it so the
//! refused instance can say who holds it. The directory itself is locked too (an `flock`
//! on an open descriptor of it): a lock file deleted while the daemon runs (a tmp cleaner,
//! an operator) would otherwise let a second process lock a new file and share the dir.
//! A SIGHUP reload runs inside the same process and never takes it again.
//!
//! Must not: be taken by `check` or `demo` (they must work next to a running daemon), or
//! be released before the process ends.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::durable::{self, PRIVATE_DIR};

/// The lock file's name inside the state dir.
pub const LOCK_FILE: &str = "veeam-siem.lock";

/// Why the state dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state dir {} is in use by another veeam-siem process (PID {pid}, holding {}); stop that process first, or give this one its own `[state] dir`",
        dir.display(),
        lock.display()
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        pid: String,
    },
    #[error(
        "cannot lock state dir {} ({}): {source}; {}",
        dir.display(),
        lock.display(),
        if durable::is_out_of_space(source) {
            "free space on its file system (or raise the quota): checkpoints are written there"
        } else {
            "check that `[state] dir` is writable by this user"
        }
    )]
    Io {
        dir: PathBuf,
        lock: PathBuf,
        source: io::Error,
    },
}

impl LockError {
    /// The process exit code: 2 (like a usage error: starting again cannot help while the
    /// other process runs; systemd's `RestartPreventExitStatus=2` then stops retrying) when
    /// another process holds the lock, 1 for an I/O failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            LockError::Held { .. } => 2,
            LockError::Io { .. } => 1,
        }
    }
}

/// The held lock; dropping it (at process exit) releases it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    /// The directory's own lock, where the file system has `flock` on directories.
    _dir: Option<File>,
    path: PathBuf,
}

impl StateLock {
    /// Create `dir` (0700) if needed and lock it, or say which process holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let lock = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            dir: dir.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        durable::create_dirs(dir, PRIVATE_DIR).map_err(io_err)?;
        let file = match durable::lock_exclusive(&lock).map_err(io_err)? {
            durable::Locked::Held(file) => file,
            // The state dir needs the lock (documented): say why it can't be had.
            durable::Locked::Unsupported { error, .. } => return Err(io_err(error)),
            durable::Locked::Busy { pid } => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    lock,
                    pid,
                });
            }
        };
        let dir_lock = match lock_dir(dir) {
            Ok(held) => held,
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    lock,
                    pid: "unknown: its lock file was removed while it ran".to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io_err(error)),
        };
        tracing::debug!(lock = %lock.display(), "state dir locked");
        Ok(StateLock {
            _file: file,
            _dir: dir_lock,
            path: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An exclusive `flock` on `dir` itself; `Ok(None)` where directories can't be opened or
/// locked (the lock file still stands).
fn lock_dir(dir: &Path) -> Result<Option<File>, std::fs::TryLockError> {
    let Ok(handle) = File::open(dir) else {
        return Ok(None);
    };
    match handle.try_lock() {
        Ok(()) => Ok(Some(handle)),
        Err(std::fs::TryLockError::Error(e)) if durable::lock_unsupported(&e) => Ok(None),
        Err(std::fs::TryLockError::Error(e))
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::IsADirectory
            ) =>
        {
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_full_file_system_is_not_called_a_permission_problem() {
        let error = |errno| LockError::Io {
            dir: PathBuf::from("/s"),
            lock: PathBuf::from("/s/veeam-siem.lock"),
            source: io::Error::from_raw_os_error(errno),
        };
        let full = error(libc::ENOSPC).to_string();
        assert!(
            full.contains("free space on its file system") && !full.contains("writable"),
            "{full}"
        );
        let denied = error(libc::EACCES).to_string();
        assert!(denied.contains("is writable by this user"), "{denied}");
    }

    #[test]
    fn a_second_holder_is_refused_with_the_pid_and_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), pid);
        let e = StateLock::acquire(&state).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains(&format!("PID {pid}")) && text.contains(&state.display().to_string()),
            "{text}"
        );
        drop(first);
        // Released with the holder; the file stays and is simply taken again.
        let again = StateLock::acquire(&state).unwrap();
        assert!(again.path().exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_removed_lock_file_does_not_let_a_second_holder_in() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        std::fs::remove_file(first.path()).unwrap();
        let e = StateLock::acquire(&state).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("lock file was removed"), "{e}");
        drop(first);
        StateLock::acquire(&state).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_dir_and_the_lock_file_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        let lock = StateLock::acquire(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(lock.path()), 0o600);
    }
}
