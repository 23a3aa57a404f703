//! Durable local files: what every file this program writes on local disk relies on.
//!
//! Owns:
//! - directories created level by level with an exact mode, each new level fsynced into
//!   its parent (a power loss cannot drop a directory holding acknowledged data);
//! - files created with an exact mode (whatever the process umask), the directory fsynced
//!   after the creation;
//! - [`Appender`], the append-only file of the file sink and the dead-letter writers: one
//!   writer per file (an exclusive `flock` while it is open, so a second process appending
//!   to it, e.g. a backfill given the daemon's `path`, is refused rather than interleaved
//!   and cut back); blocking `write_all` + `sync_data` on one std `File`, so every write error (ENOSPC,
//!   quota, EIO) reaches the batch that wrote it; a failed write is cut back to the length
//!   the file had before it, so no torn line or partial duplicate stays behind; a file that
//!   is no longer at its path (renamed by logrotate, deleted, replaced) is noticed before
//!   the next write and a new one is opened;
//! - exclusive process locks ([`lock_exclusive`]): an `flock` on a file that names its
//!   holder's PID, released by the kernel when the holder dies;
//! - the writability probe `check` uses: create and delete a temp file in the nearest
//!   existing directory, creating nothing that stays.
//!
//! Must not: decide what is written or when a batch counts as delivered (the sinks do), or
//! change the mode of a file or directory it did not create (existing ones keep theirs).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Mode of the state files (checkpoints, HEC channel, dead letters, lock) and of the
/// file sink's output unless `file_mode` says otherwise.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of the directories created for private files.
pub const PRIVATE_DIR: u32 = 0o700;

/// Modes for what an [`Appender`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub file: u32,
    pub dir: u32,
}

impl Modes {
    pub const PRIVATE: Modes = Modes {
        file: PRIVATE_FILE,
        dir: PRIVATE_DIR,
    };

    /// Files with `file`; directories traversable by whoever may read the files
    /// (0640 → 0750, 0644 → 0755, 0600 → 0700).
    pub fn for_file(file: u32) -> Modes {
        let read = file & 0o044;
        Modes {
            file,
            dir: 0o700 | read | (read >> 2),
        }
    }
}

/// What to do with an unterminated last line found when a file is opened (left by a crash
/// in the middle of a write, so never acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// Cut it back to the last newline (the file sink: the batch is sent again).
    Trim,
    /// End it with a newline (the dead-letter file keeps every byte).
    Close,
}

/// A failed file operation, naming the file and, for the failures a user can fix, what to
/// do: "cannot write /x/y.ndjson: No space left… (free space on …)".
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}{}", path.display(), hint(source, path))]
pub struct AppendError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// What to do when `error` is the process running out of file descriptors (which no
/// amount of free space fixes); `None` for any other error.
pub fn descriptor_hint(error: &io::Error) -> Option<&'static str> {
    match error.raw_os_error() {
        #[cfg(unix)]
        Some(libc::EMFILE) | Some(libc::ENFILE) => Some(
            "; too many open files: raise the limit of this process (`ulimit -n`, systemd `LimitNOFILE=`)",
        ),
        _ => None,
    }
}

/// What to do about `error` on `path`, for the errors a user can act on.
fn hint(error: &io::Error, path: &Path) -> String {
    dir_hint(error, parent_or_dot(path))
}

/// What to do about `error` writing in `dir` ("; free space on the file system of …"),
/// for the errors a user can act on; empty for any other error.
pub fn dir_hint(error: &io::Error, dir: &Path) -> String {
    if let Some(hint) = descriptor_hint(error) {
        return hint.to_string();
    }
    let dir = dir.display();
    match error.raw_os_error() {
        #[cfg(unix)]
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!(
            "; free space on the file system of {dir} (or raise the quota); nothing is acknowledged meanwhile, and the batch is written again once there is room"
        ),
        #[cfg(unix)]
        Some(libc::EROFS) => format!(
            "; {dir} is on a read-only file system: mount it read-write or choose another path"
        ),
        _ if error.kind() == io::ErrorKind::PermissionDenied => {
            format!("; check that this user may write in {dir}")
        }
        _ => String::new(),
    }
}

impl AppendError {
    fn new(action: &'static str, path: &Path, source: io::Error) -> AppendError {
        AppendError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The underlying I/O error (for callers that name the file themselves).
    pub fn into_source(self) -> io::Error {
        self.source
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_or_dot(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A path that does not exist, or has a file where a directory should be.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The next level up from `level`; `None` at the root and at `.`.
fn up(level: &Path) -> Option<&Path> {
    if level == Path::new(".") {
        return None;
    }
    level.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
}

/// fsync a directory, making the creation, rename or removal of its entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Give `file` exactly `mode` (independent of the umask). Only for files we created.
pub fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// Create `dir` and every missing parent with exactly `mode`, fsyncing each new level into
/// its parent. Existing levels are left as they are.
/// Replace `path` with `bytes` atomically: `<path>.tmp` (mode `mode`) written and fsynced,
/// renamed over `path`, the directory fsynced. A crash leaves the old file or the new one
/// (and maybe the temp file, removed by the next replace).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let (mut file, _) = open_or_create(&tmp, mode, false)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(parent_or_dot(path))
}

/// How [`lock_exclusive`] ended.
#[derive(Debug)]
pub enum Locked {
    /// Ours until the `File` is dropped (or the process ends, even by `kill -9`).
    Held(File),
    /// Another open file holds it (another process, or another part of this one); the
    /// PID its holder wrote, or "unknown".
    Busy { pid: String },
    /// The file system has no `flock` (some NFS set-ups): the file, unlocked, and why.
    Unsupported { file: File, error: io::Error },
}

/// Whether a lock error means "this file system can't lock", not "something is wrong".
pub fn lock_unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    let errno = matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
    );
    #[cfg(not(unix))]
    let errno = false;
    e.kind() == io::ErrorKind::Unsupported || errno
}

/// Take the exclusive `flock` on `path` (created 0600 if missing) without waiting, and
/// write our PID into it so a refused process can say who holds it. The file is never
/// removed: a stale one is simply locked again.
pub fn lock_exclusive(path: &Path) -> io::Result<Locked> {
    use std::io::{Read, Write};
    let (mut file, _created) = open_or_create(path, PRIVATE_FILE, false)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = match file.read_to_string(&mut text) {
                Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
                _ => "unknown".to_string(),
            };
            return Ok(Locked::Busy { pid });
        }
        Err(std::fs::TryLockError::Error(e)) if lock_unsupported(&e) => {
            return Ok(Locked::Unsupported { file, error: e });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    file.sync_data()?;
    Ok(Locked::Held(file))
}

pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    #[cfg(not(unix))]
    let _ = mode;
    let mut missing = Vec::new();
    let mut level = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    loop {
        match fs::metadata(level) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} exists and is not a directory", level.display()),
                ));
            }
            // NotADirectory: a file further up; found on the way up.
            Err(e) if is_missing(&e) => {
                missing.push(level);
                match up(level) {
                    Some(p) => level = p,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    for level in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
        match builder.create(level) {
            Ok(()) => {
                #[cfg(unix)]
                fs::set_permissions(level, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                sync_dir(parent_or_dot(level))?;
            }
            // Created meanwhile by someone else: theirs, mode and all.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && level.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Open `path` for reading and writing (appending when `append`), creating it with exactly
/// `mode` when it does not exist. Returns whether it was created (its directory then needs
/// an fsync, done here).
/// Open `path` for reading only if it is a regular file itself: a symbolic link, a FIFO
/// (whose open would wait forever for a writer), a directory or a device is refused with
/// an error saying so. For the compliance archive, which holds only regular files.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is {what}, not a regular file"),
        ));
    }
    File::open(path)
}

pub fn open_or_create(path: &Path, mode: u32, append: bool) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true);
    if append {
        options.append(true);
    } else {
        options.write(true);
    }
    let mut create = options.clone();
    create.create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, mode);
    match create.open(path) {
        Ok(file) => {
            set_mode(&file, mode)?;
            sync_dir(parent_or_dot(path))?;
            Ok((file, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// Device and inode: what the path pointed to when the file was opened.
fn identity(meta: &fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// An append-only file whose every write is durable or reported, never half there.
#[derive(Debug)]
pub struct Appender {
    path: PathBuf,
    file: File,
    identity: Option<(u64, u64)>,
    /// A write failed after the file had this length: cut back to it before anything else.
    cut_to: Option<u64>,
}

impl Appender {
    /// Open (or create, with the directories) `path` for appending and repair a torn tail.
    pub fn open(path: &Path, modes: Modes, tail: TornTail) -> Result<Appender, AppendError> {
        create_dirs(parent_or_dot(path), modes.dir)
            .map_err(|e| AppendError::new("create the directory of", path, e))?;
        let (mut file, created) = open_or_create(path, modes.file, true)
            .map_err(|e| AppendError::new("open", path, e))?;
        if !created {
            // Someone else may have created it (logrotate's `create`, or our own earlier
            // try that failed before its directory fsync): make its entry durable before
            // anything in it is acknowledged.
            sync_dir(parent_or_dot(path))
                .map_err(|e| AppendError::new("sync the directory of", path, e))?;
        }
        // Before the tail repair: that cuts a line another writer may be in the middle of.
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(AppendError::new(
                    "lock",
                    path,
                    io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        "another process is appending to it (a backfill, or a second daemon, given the same `path`?); give each writer its own path. Retried until it is free",
                    ),
                ));
            }
            // A file system without `flock` (some NFS set-ups): writing matters more than
            // the guard against a second writer.
            Err(fs::TryLockError::Error(e)) if lock_unsupported(&e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot lock the output file (the file system does not support flock); writing without the guard against a second writer");
            }
            Err(fs::TryLockError::Error(e)) => return Err(AppendError::new("lock", path, e)),
        }
        match tail {
            TornTail::Trim => trim_partial_tail(&mut file),
            TornTail::Close => close_partial_tail(&mut file),
        }
        .map_err(|e| AppendError::new("repair the partial last line of", path, e))?;
        let identity = file
            .metadata()
            .map_err(|e| AppendError::new("inspect", path, e))
            .map(|m| identity(&m))?;
        Ok(Appender {
            path: path.to_path_buf(),
            file,
            identity,
            cut_to: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the file we have open (false after a rename, a
    /// delete, or a new file created in its place).
    pub fn is_at_path(&self) -> io::Result<bool> {
        match fs::metadata(&self.path) {
            Ok(m) => Ok(identity(&m) == self.identity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Append `bytes` and fsync. On any error the file is cut back to the length it had
    /// before (now, or before the next write if that fails too) and the error returned.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), AppendError> {
        self.cut_back()
            .map_err(|e| AppendError::new("remove a failed write from", &self.path, e))?;
        let start = self
            .file
            .metadata()
            .map_err(|e| AppendError::new("inspect", &self.path, e))?
            .len();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.cut_to = Some(start);
            if let Err(cut) = self.cut_back() {
                tracing::warn!(path = %self.path.display(), error = %cut, "cannot remove the failed write yet; trying again before the next one");
            }
            return Err(AppendError::new("write", &self.path, e));
        }
        Ok(())
    }

    /// Cut a failed write back off. Only shortens: a file truncated meanwhile by someone
    /// else (copytruncate) is left alone.
    fn cut_back(&mut self) -> io::Result<()> {
        if let Some(len) = self.cut_to {
            if self.file.metadata()?.len() > len {
                self.file.set_len(len)?;
                self.file.sync_data()?;
            }
            self.cut_to = None;
        }
        Ok(())
    }

    /// Stop using this file (rotated away, or the path moved on): a failed write still in
    /// it is removed first, as far as possible.
    pub fn retire(mut self) {
        if let Err(e) = self.cut_back() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a failed write from a file no longer written to; its last lines may be torn or repeated");
        }
    }
}

/// Append `bytes` to `path` through `slot` (the file kept open between calls), blocking:
/// reopen when the slot holds another path or its file is no longer at the path, then
/// write and fsync.
pub fn append_to(
    slot: &mut Option<Appender>,
    path: &Path,
    modes: Modes,
    tail: TornTail,
    bytes: &[u8],
) -> Result<(), AppendError> {
    let reuse = match slot.as_ref() {
        Some(current) if current.path == path => current
            .is_at_path()
            .map_err(|e| AppendError::new("look up", path, e))?,
        _ => false,
    };
    if !reuse {
        if let Some(old) = slot.take() {
            if old.path == path {
                tracing::info!(path = %path.display(), "the file was moved away or replaced (rotation); writing to a new one at the path");
            }
            old.retire();
        }
        *slot = Some(Appender::open(path, modes, tail)?);
    }
    match slot.as_mut() {
        Some(appender) => appender.append(bytes),
        None => Err(AppendError::new(
            "open",
            path,
            io::Error::other("file not open"),
        )),
    }
}

/// [`append_to`] on the blocking pool: the open file and the buffer go there and come
/// back (the file is `None` after a panic there; the next call reopens).
pub async fn append_blocking(
    mut slot: Option<Appender>,
    path: PathBuf,
    modes: Modes,
    tail: TornTail,
    bytes: Vec<u8>,
) -> (Option<Appender>, Vec<u8>, Result<(), AppendError>) {
    let shown = path.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let result = append_to(&mut slot, &path, modes, tail, &bytes);
        (slot, bytes, result)
    })
    .await;
    match joined {
        Ok(out) => out,
        Err(e) => (
            None,
            Vec::new(),
            Err(AppendError::new("write", &shown, io::Error::other(e))),
        ),
    }
}

/// Cut an unterminated last line back to the last `\n`.
pub fn trim_partial_tail(f: &mut File) -> io::Result<()> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan backwards in chunks for the last newline.
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).map_err(io::Error::other)?;
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
}

/// End an unterminated last line with a newline, so the next line starts clean.
pub fn close_partial_tail(f: &mut File) -> io::Result<()> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    if last[0] != b'\n' {
        f.write_all(b"\n")?;
        f.sync_data()?;
    }
    Ok(())
}

/// Where a directory stands for writing, as far as a probe can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writable {
    /// It exists and a file could be created in it.
    Exists,
    /// It does not exist; `existing`, its nearest existing ancestor, is writable, so it
    /// will be created on first use.
    WillBeCreated { existing: PathBuf },
}

/// Why a directory cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{} cannot be created: {} is not a directory", dir.display(), blocker.display())]
    Blocked { dir: PathBuf, blocker: PathBuf },
    #[error("{}", not_writable(dir, source))]
    NotWritable { dir: PathBuf, source: io::Error },
    #[error("cannot inspect {}: {source}", dir.display())]
    Inspect { dir: PathBuf, source: io::Error },
}

/// Why files cannot be written in `dir`: no space (the file system or a quota is full),
/// or no permission.
fn not_writable(dir: &Path, source: &io::Error) -> String {
    if is_out_of_space(source) {
        format!(
            "{} has no free space ({source}): free space on its file system (or raise the quota)",
            dir.display()
        )
    } else {
        format!("{} is not writable by this user: {source}", dir.display())
    }
}

/// The file system (or a quota) is full.
pub fn is_out_of_space(error: &io::Error) -> bool {
    match error.raw_os_error() {
        #[cfg(unix)]
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => true,
        _ => error.kind() == io::ErrorKind::StorageFull,
    }
}

impl ProbeError {
    /// Whether a human has to act (permissions, a read-only mount, a file in the way),
    /// as opposed to a condition that may pass (e.g. no free inodes).
    pub fn needs_a_human(&self) -> bool {
        match self {
            ProbeError::Blocked { .. } => true,
            ProbeError::NotWritable { source, .. } | ProbeError::Inspect { source, .. } => {
                matches!(
                    source.kind(),
                    io::ErrorKind::PermissionDenied
                        | io::ErrorKind::ReadOnlyFilesystem
                        | io::ErrorKind::NotADirectory
                )
            }
        }
    }
}

/// Whether files can be created in `dir`, without creating `dir` or leaving anything
/// behind: a temp file is created, written (4 KiB, synced: creating an empty file needs no
/// free space) and deleted in `dir` or, when `dir` is missing, in its nearest existing
/// ancestor.
pub fn probe_dir(dir: &Path) -> Result<Writable, ProbeError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut existing = dir;
    loop {
        match fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(ProbeError::Blocked {
                    dir: dir.to_path_buf(),
                    blocker: existing.to_path_buf(),
                });
            }
            Err(e) if is_missing(&e) => match up(existing) {
                Some(p) => existing = p,
                None => {
                    return Err(ProbeError::Inspect {
                        dir: dir.to_path_buf(),
                        source: e,
                    });
                }
            },
            Err(source) => {
                return Err(ProbeError::Inspect {
                    dir: existing.to_path_buf(),
                    source,
                });
            }
        }
    }
    let not_writable = |source| ProbeError::NotWritable {
        dir: existing.to_path_buf(),
        source,
    };
    let mut probe = tempfile::Builder::new()
        .prefix(".veeam-siem-probe-")
        .tempfile_in(existing)
        .map_err(not_writable)?;
    {
        use std::io::Write;
        let file = probe.as_file_mut();
        file.write_all(&[0u8; 4096])
            .and_then(|()| file.sync_data())
            .map_err(not_writable)?;
    }
    probe.close().map_err(not_writable)?;
    if existing == dir {
        Ok(Writable::Exists)
    } else {
        Ok(Writable::WillBeCreated {
            existing: existing.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn partial_tail_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        for (before, after) in [
            ("", ""),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"b\":", ""),
        ] {
            fs::write(&p, before).unwrap();
            let mut f = OpenOptions::new().append(true).read(true).open(&p).unwrap();
            trim_partial_tail(&mut f).unwrap();
            assert_eq!(fs::read_to_string(&p).unwrap(), after, "{before:?}");
        }
    }

    /// A second writer is refused before it touches the file: its torn-tail repair would
    /// cut a line the first is writing. The lock goes with the first writer.
    #[test]
    fn one_appender_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        let mut first = Appender::open(&p, Modes::PRIVATE, TornTail::Trim).unwrap();
        first.append(b"{\"a\":1}\n{\"b\":").unwrap();
        let e = Appender::open(&p, Modes::PRIVATE, TornTail::Trim).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        let text = e.to_string();
        assert!(
            text.contains("x.ndjson") && text.contains("another process"),
            "{text}"
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"b\":");
        drop(first);
        Appender::open(&p, Modes::PRIVATE, TornTail::Trim).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n");
    }

    /// A file system that can't lock is told from one that refuses.
    #[cfg(unix)]
    #[test]
    fn lock_errors_that_mean_no_flock() {
        assert!(lock_unsupported(&io::Error::from_raw_os_error(
            libc::ENOLCK
        )));
        assert!(lock_unsupported(&io::Error::from_raw_os_error(
            libc::EOPNOTSUPP
        )));
        assert!(!lock_unsupported(&io::Error::from_raw_os_error(
            libc::EACCES
        )));
        assert!(!lock_unsupported(&io::Error::from_raw_os_error(libc::EIO)));
    }

    /// A full disk says what to do, naming the directory.
    #[cfg(unix)]
    #[test]
    fn a_full_disk_error_names_the_fix() {
        let path = Path::new("/var/log/veeam-siem/out.ndjson");
        let e = AppendError::new("write", path, io::Error::from_raw_os_error(libc::ENOSPC));
        let text = e.to_string();
        assert!(
            text.starts_with("cannot write /var/log/veeam-siem/out.ndjson: ")
                && text.contains("free space on the file system of /var/log/veeam-siem"),
            "{text}"
        );
        let e = AppendError::new("write", path, io::Error::from_raw_os_error(libc::EIO));
        assert!(!e.to_string().contains(';'), "{e}");
        // Out of file descriptors: the limit is the fix, not the disk.
        let emfile = || io::Error::from_raw_os_error(libc::EMFILE);
        let e = AppendError::new("open", path, emfile()).to_string();
        assert!(e.contains("ulimit -n") && !e.contains("free space"), "{e}");
        let e = crate::checkpoint::CheckpointError::Write {
            path: path.into(),
            source: emfile(),
        }
        .to_string();
        assert!(
            e.contains("LimitNOFILE") && !e.contains("free space"),
            "{e}"
        );
    }

    #[test]
    fn dir_modes_follow_the_file_mode() {
        assert_eq!(Modes::for_file(0o600).dir, 0o700);
        assert_eq!(Modes::for_file(0o640).dir, 0o750);
        assert_eq!(Modes::for_file(0o644).dir, 0o755);
    }

    #[cfg(unix)]
    #[test]
    fn created_files_and_every_directory_level_get_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("x.ndjson");
        let mut slot = None;
        append_to(
            &mut slot,
            &path,
            Modes::for_file(0o640),
            TornTail::Trim,
            b"{}\n",
        )
        .unwrap();
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(mode_of(&dir.path().join("a")), 0o750);
        assert_eq!(mode_of(&dir.path().join("a").join("b")), 0o750);
        // An existing file keeps its mode.
        let other = dir.path().join("a").join("old.ndjson");
        fs::write(&other, "").unwrap();
        fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let mut slot = None;
        append_to(&mut slot, &other, Modes::PRIVATE, TornTail::Trim, b"{}\n").unwrap();
        assert_eq!(mode_of(&other), 0o644);
    }

    /// `/dev/full` fails every write with ENOSPC: the error must reach the caller.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failing_write_is_reported() {
        let mut slot = None;
        let e = append_to(
            &mut slot,
            Path::new("/dev/full"),
            Modes::PRIVATE,
            TornTail::Trim,
            b"{\"a\":1}\n",
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
        assert!(e.to_string().contains("/dev/full"), "{e}");
    }

    #[test]
    fn a_moved_file_is_noticed_and_a_new_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let mut slot = None;
        append_to(&mut slot, &path, Modes::PRIVATE, TornTail::Trim, b"1\n").unwrap();
        fs::rename(&path, dir.path().join("x.ndjson.1")).unwrap();
        append_to(&mut slot, &path, Modes::PRIVATE, TornTail::Trim, b"2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "2\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("x.ndjson.1")).unwrap(),
            "1\n"
        );
    }

    /// copytruncate: the file is truncated under the writer; O_APPEND writes at the new
    /// end (no hole), and nothing is "repaired" away.
    #[test]
    fn a_truncated_file_is_appended_at_its_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let mut slot = None;
        append_to(&mut slot, &path, Modes::PRIVATE, TornTail::Trim, b"first\n").unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append_to(
            &mut slot,
            &path,
            Modes::PRIVATE,
            TornTail::Trim,
            b"second\n",
        )
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
    }

    /// A full file system is told apart from a permission problem, with its own fix.
    #[cfg(unix)]
    #[test]
    fn a_full_file_system_says_so() {
        let full = ProbeError::NotWritable {
            dir: PathBuf::from("/var/lib/veeam-siem"),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let text = full.to_string();
        assert!(
            text.contains("/var/lib/veeam-siem has no free space")
                && text.contains("free space on its file system")
                && !full.needs_a_human(),
            "{text}"
        );
        let denied = ProbeError::NotWritable {
            dir: PathBuf::from("/x"),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(denied.to_string().contains("not writable by this user"));
        let hint = dir_hint(&io::Error::from_raw_os_error(libc::EDQUOT), Path::new("/a"));
        assert!(
            hint.contains("free space on the file system of /a"),
            "{hint}"
        );
    }

    #[test]
    fn probe_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe_dir(dir.path()).unwrap(), Writable::Exists);
        let deep = dir.path().join("a").join("b");
        assert_eq!(
            probe_dir(&deep).unwrap(),
            Writable::WillBeCreated {
                existing: dir.path().to_path_buf()
            }
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let file = dir.path().join("f");
        fs::write(&file, "").unwrap();
        let e = probe_dir(&file.join("sub")).unwrap_err();
        assert!(
            e.needs_a_human() && e.to_string().contains("not a directory"),
            "{e}"
        );
    }
}
