//! The archive writer: appends batches to the open segment (durable before it returns),
//! seals segments into signed digests, and recovers after a crash. Blocking I/O: the sink
//! calls it on a blocking thread.
//!
//! Crash recovery (at open): the chain's head is the digest with the highest sequence; a
//! segment after it is one a crash left open. Its complete gzip members are exactly the
//! batches that were acknowledged (each batch is one member, fsynced before the
//! acknowledgement), so an incomplete tail is cut off (it was never acknowledged and is
//! re-sent), and the segment is sealed at once with a `recovered` note in its digest. An
//! empty one is removed.
//!
//! One writer per archive: [`ArchiveWriter::open`] takes the exclusive lock
//! [`LOCK_FILE`] in the root and holds it while it lives, so a second writer (a `backfill`
//! given the daemon's archive `path`, a second daemon, two sinks sharing a path) is refused
//! instead of forking the digest chain.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use ring::digest::{Context, SHA256};

use super::digest::{Digest, FORMAT, PreviousDigest, Recovery, SegmentEntry, sha256_hex};
use super::head;
use super::hex;
use super::keys::SigningKey;
use super::segment::{self, digest_name, path_of, segment_name, sequence_of};
use crate::durable::{self, PRIVATE_DIR, PRIVATE_FILE};

/// The newest digest: what the next one links to.
#[derive(Debug, Clone)]
struct Head {
    sequence: u64,
    file: String,
    sha256: String,
    signature: String,
}

/// The segment being written.
struct Open {
    sequence: u64,
    name: String,
    file: File,
    opened: DateTime<Utc>,
    hash: Context,
    /// Over the file's bytes (the gzip members as written).
    file_hash: Context,
    uncompressed: u64,
    compressed: u64,
    events: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// What [`ArchiveWriter::open`] did to the archive (for the log).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Segments a crash had left open, now sealed.
    pub recovered: Vec<String>,
    /// Empty segments a crash had left, removed.
    pub removed: Vec<String>,
    /// Non-empty segments this archive's writer did not have open (put there by hand):
    /// left as they are, unsealed; `verify` reports them.
    pub foreign: Vec<String>,
}

/// What became of a segment found after the chain at open.
enum Recovered {
    Sealed,
    Removed,
    NotOurs,
}

/// The archive's lock file, in its root (`verify` knows it and ignores it).
pub const LOCK_FILE: &str = ".veeam-siem-archive.lock";

/// How long [`ArchiveWriter::open`] waits for a lock that is busy: a reload's previous
/// writer may still be finishing a blocking write when the new one opens.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct ArchiveWriter {
    root: PathBuf,
    /// Held while the writer lives.
    _lock: File,
    key: SigningKey,
    max_segment_bytes: u64,
    head: Option<Head>,
    open: Option<Open>,
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

/// What to do when the archive can't be extended: it stays as it is, as evidence.
fn keep_as_evidence(root: &Path) -> String {
    format!(
        "Run `veeam-siem verify {}` and keep this archive as it is (restore the missing files from the S3 copy, if any); to go on archiving, give the sink a new `path`, which starts a new chain",
        root.display()
    )
}

/// Refuse to extend a chain shorter than its head record says (the newest digests were
/// removed), one whose newest digest is not the one the record names, one whose record is
/// more than a seal behind it (an older record put back), or one with digests but no
/// record: the writer writes a record before the first seal (sequence 0), so a missing one
/// means it was removed, with the newest digests it named, perhaps. A record one seal
/// behind the chain (a crash between a digest and its record) is no problem.
fn check_head_record(root: &Path, newest: Option<&Head>) -> io::Result<Option<head::Head>> {
    let path = root.join(head::HEAD_FILE);
    let Some(bytes) = head::read(root)? else {
        return match newest {
            None => Ok(None),
            Some(newest) => Err(other(format!(
                "the archive has digests (the newest is {}, sequence {}) but no head record {}: it was removed, perhaps with newer digests it named, and extending the chain would hide that. {}",
                newest.file,
                newest.sequence,
                path.display(),
                keep_as_evidence(root)
            ))),
        };
    };
    let record = head::Head::parse(&bytes).map_err(|e| {
        other(format!(
            "the archive's head record {} is damaged ({e}). {}",
            path.display(),
            keep_as_evidence(root)
        ))
    })?;
    let newest_sequence = newest.map_or(0, |h| h.sequence);
    let gone = record.sequence > newest_sequence;
    let replaced =
        newest.is_some_and(|h| h.sequence == record.sequence && h.sha256 != record.digest_sha256);
    // More than one seal behind: not a crash between a digest and its record, but an
    // older record put back.
    let stale = record.sequence.saturating_add(1) < newest_sequence;
    if stale {
        return Err(other(format!(
            "the archive's head record {} names digest {}, but the chain goes on to {newest_sequence}: an older head record was put back, perhaps to hide digests removed after it; extending the chain would hide that. {}",
            path.display(),
            record.sequence,
            keep_as_evidence(root)
        )));
    }
    if gone || replaced {
        return Err(other(format!(
            "the archive's head record {} names digest {} ({}), but {}: the chain can't be extended without hiding that. {}",
            path.display(),
            record.sequence,
            record.digest,
            if gone {
                format!("the newest digest here is {newest_sequence}: digests were removed")
            } else {
                "that digest has other content now".to_string()
            },
            keep_as_evidence(root)
        )));
    }
    Ok(Some(record))
}

/// The chain's newest digest in `root`, `None` for an archive without digests.
fn newest_digest(root: &Path, listing: &segment::Listing) -> io::Result<Option<Head>> {
    let Some((sequence, name)) = listing
        .digests
        .iter()
        .filter_map(|d| sequence_of(d).map(|s| (s, d)))
        .max()
    else {
        return Ok(None);
    };
    let unreadable = |e: String| {
        other(format!(
            "the newest digest {name} is unreadable ({e}); the chain can't be extended. {}",
            keep_as_evidence(root)
        ))
    };
    let bytes = super::digest::read_digest_file(&path_of(root, name))
        .map_err(|e| unreadable(e.to_string()))?;
    let digest = Digest::parse(&bytes).map_err(|e| unreadable(e.to_string()))?;
    Ok(Some(Head {
        sequence,
        file: name.clone(),
        sha256: sha256_hex(&bytes),
        signature: digest.signature.unwrap_or_default(),
    }))
}

/// Whether a writer could extend the archive at `root` (`check` asks this without the
/// lock and without changing anything): its newest digest reads, and the head record
/// agrees with the chain. A missing `root` is fine (it will be created).
pub fn check_extendable(root: &Path) -> io::Result<()> {
    if !root.exists() {
        return Ok(());
    }
    let listing = segment::list(root)?;
    check_head_record(root, newest_digest(root, &listing)?.as_ref()).map(drop)
}

/// The archive's lock, waiting up to [`LOCK_WAIT`] for a busy one.
fn lock_archive(root: &Path) -> io::Result<File> {
    let path = root.join(LOCK_FILE);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match durable::lock_exclusive(&path)? {
            // No `flock` on this file system: archive all the same, unguarded, and say so.
            durable::Locked::Unsupported { file, error } => {
                tracing::warn!(lock = %path.display(), %error, "cannot lock the archive (the file system does not support flock); archiving without the guard against a second writer");
                return Ok(file);
            }
            durable::Locked::Held(file) => return Ok(file),
            durable::Locked::Busy { pid } if std::time::Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "the archive is in use by another writer (PID {pid}, holding {}): two writers would fork its digest chain. A `backfill` needs an archive sink with its own `path`; stop the other process, or give each archive sink its own `path`",
                        path.display()
                    ),
                ));
            }
            durable::Locked::Busy { .. } => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
        }
    }
}

impl ArchiveWriter {
    /// Open the archive at `root` (created 0700 if missing) and recover what a crash left.
    pub fn open(
        root: &Path,
        key: SigningKey,
        max_segment_bytes: u64,
    ) -> io::Result<(ArchiveWriter, Opened)> {
        durable::create_dirs(root, PRIVATE_DIR)?;
        let lock = lock_archive(root)?;
        let listing = segment::list(root)?;
        let head = newest_digest(root, &listing)?;
        let record = check_head_record(root, head.as_ref())?;
        let mut writer = ArchiveWriter {
            root: root.to_path_buf(),
            _lock: lock,
            key,
            max_segment_bytes,
            head,
            open: None,
        };
        let mut opened = Opened::default();
        let after = writer.head.as_ref().map_or(0, |h| h.sequence);
        let mut left_open: Vec<(u64, &String)> = listing
            .segments
            .iter()
            .filter_map(|s| sequence_of(s).map(|n| (n, s)))
            .filter(|(n, _)| *n > after)
            .collect();
        left_open.sort();
        for (sequence, name) in left_open {
            // Only the segment the head record names as open was being written here; any
            // other is not sealed (signing it would vouch for a file put there by hand).
            let ours = record
                .as_ref()
                .is_none_or(|r| !r.names_open_segment() || r.open.as_deref() == Some(name));
            match writer.recover(sequence, name, ours)? {
                Recovered::Sealed => opened.recovered.push(name.clone()),
                Recovered::Removed => opened.removed.push(name.clone()),
                Recovered::NotOurs => opened.foreign.push(name.clone()),
            }
        }
        // A record one seal behind (a crash between a digest and its record) is brought up
        // to date; a new archive gets its first one (sequence 0, no digest) before its first
        // seal, so that from now on a missing record always means a removed one.
        writer.write_head_record()?;
        Ok((writer, opened))
    }

    fn next_sequence(&self) -> u64 {
        self.head.as_ref().map_or(1, |h| h.sequence + 1)
    }

    /// Seal (or remove, when empty) segment `name` that a crash left open; a non-empty one
    /// that is not `ours` (not the one the head record names as open) is left alone.
    fn recover(&mut self, sequence: u64, name: &str, ours: bool) -> io::Result<Recovered> {
        let path = path_of(&self.root, name);
        if sequence != self.next_sequence() {
            return Err(other(format!(
                "segment {name} has sequence {sequence}, but the chain's next is {}; the archive was changed by hand. Run `veeam-siem verify {}`",
                self.next_sequence(),
                self.root.display()
            )));
        }
        let scan = segment::scan(&path, true)?;
        // Not ours: left exactly as found (cutting or removing it would alter what someone
        // put there). Only an empty file, what a crash between creating a segment and
        // naming it in the head record leaves, is removed below.
        if !ours && scan.file_len > 0 {
            return Ok(Recovered::NotOurs);
        }
        let truncated = scan.file_len - scan.valid_len;
        if truncated > 0 {
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(scan.valid_len)?;
            file.sync_all()?;
        }
        if scan.events == 0 {
            std::fs::remove_file(&path)?;
            durable::sync_dir(durable::parent_or_dot(&path))?;
            return Ok(Recovered::Removed);
        }
        let opened = name
            .rsplit('/')
            .next()
            .and_then(|f| f.get(11..27))
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
            .map_or_else(Utc::now, |t| t.and_utc());
        // The file as it is now: cut back to its complete members.
        let file_sha256 = if truncated > 0 {
            segment::scan(&path, false)?.file_sha256
        } else {
            scan.file_sha256
        };
        let entry = SegmentEntry {
            file: name.to_string(),
            sha256: scan.sha256,
            uncompressed_bytes: scan.uncompressed_bytes,
            compressed_bytes: scan.valid_len,
            compressed_sha256: Some(file_sha256),
            events: scan.events,
            first_timestamp: scan.first_timestamp,
            last_timestamp: scan.last_timestamp,
        };
        let note = if truncated > 0 {
            format!(
                "left open by an unclean stop; {truncated} bytes of an unacknowledged batch cut off"
            )
        } else {
            "left open by an unclean stop; every batch in it was complete".to_string()
        };
        self.write_digest(
            sequence,
            opened,
            entry,
            Some(Recovery {
                truncated_bytes: truncated,
                note,
            }),
        )?;
        Ok(Recovered::Sealed)
    }

    /// Append one batch (`lines`: NDJSON, `events` lines) as a gzip member; returns once
    /// it is on disk (fsync). On error nothing of the batch stays in the segment.
    pub fn append(
        &mut self,
        lines: &[u8],
        events: u64,
        first: Option<DateTime<Utc>>,
        last: Option<DateTime<Utc>>,
    ) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            let open = self.create_segment()?;
            let path = path_of(&self.root, &open.name);
            self.open = Some(open);
            // The head record names the new segment before anything is written to it: a
            // restart after a crash seals only that one.
            if let Err(e) = self.write_head_record() {
                self.open = None;
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
        let Some(open) = self.open.as_mut() else {
            unreachable!("opened above");
        };
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(lines.len() / 4),
            flate2::Compression::new(6),
        );
        gz.write_all(lines)?;
        let member = gz.finish()?;
        let written = open
            .file
            .write_all(&member)
            .and_then(|()| open.file.sync_data());
        if let Err(e) = written {
            // Cut the failed batch back off, so the segment holds whole batches only.
            let _ = open
                .file
                .set_len(open.compressed)
                .and_then(|()| open.file.sync_data());
            return Err(e);
        }
        open.hash.update(lines);
        open.file_hash.update(&member);
        open.uncompressed += lines.len() as u64;
        open.compressed += member.len() as u64;
        open.events += events;
        open.first = open.first.or(first);
        open.last = last.or(open.last);
        if open.uncompressed >= self.max_segment_bytes
            && let Err(e) = self.seal()
        {
            // The batch is durable; the seal is retried by the next rotation check.
            tracing::warn!(error = %e, "archive: sealing a full segment failed; will retry");
        }
        Ok(())
    }

    fn create_segment(&self) -> io::Result<Open> {
        let sequence = self.next_sequence();
        let opened = Utc::now();
        let name = segment_name(sequence, opened);
        let path = path_of(&self.root, &name);
        durable::create_dirs(durable::parent_or_dot(&path), PRIVATE_DIR)?;
        let (file, created) = durable::open_or_create(&path, PRIVATE_FILE, true)?;
        if !created {
            return Err(other(format!(
                "segment {} exists already; another writer uses this archive",
                path.display()
            )));
        }
        Ok(Open {
            sequence,
            name,
            file,
            opened,
            hash: Context::new(&SHA256),
            file_hash: Context::new(&SHA256),
            uncompressed: 0,
            compressed: 0,
            events: 0,
            first: None,
            last: None,
        })
    }

    /// Whether the open segment is older than `interval`.
    pub fn due(&self, now: DateTime<Utc>, interval: std::time::Duration) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| (now - o.opened).to_std().unwrap_or_default() >= interval)
    }

    /// How long until the open segment is older than `interval` (zero when it is);
    /// `None` when no segment is open.
    pub fn due_in(
        &self,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> Option<std::time::Duration> {
        self.open.as_ref().map(|o| {
            let age = (now - o.opened).to_std().unwrap_or_default();
            interval.saturating_sub(age)
        })
    }

    /// The open segment's name, if one is open.
    pub fn open_segment(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.name.as_str())
    }

    /// Seal the open segment: fsync it, write and fsync its signed digest. Returns the
    /// digest's name, or `None` when nothing was open.
    pub fn seal(&mut self) -> io::Result<Option<String>> {
        let Some(open) = self.open.as_ref() else {
            return Ok(None);
        };
        open.file.sync_all()?;
        let entry = SegmentEntry {
            file: open.name.clone(),
            sha256: hex::encode(open.hash.clone().finish().as_ref()),
            uncompressed_bytes: open.uncompressed,
            compressed_bytes: open.compressed,
            compressed_sha256: Some(hex::encode(open.file_hash.clone().finish().as_ref())),
            events: open.events,
            first_timestamp: open.first,
            last_timestamp: open.last,
        };
        let (sequence, opened) = (open.sequence, open.opened);
        // Closed before the digest's head record is written, which then names no open
        // segment; put back if the digest can't be written.
        let open = self.open.take();
        match self.write_digest(sequence, opened, entry, None) {
            Ok(name) => Ok(Some(name)),
            Err(e) => {
                self.open = open;
                Err(e)
            }
        }
    }

    /// Sign and durably write the digest of `entry`; it becomes the head.
    fn write_digest(
        &mut self,
        sequence: u64,
        start_time: DateTime<Utc>,
        entry: SegmentEntry,
        recovered: Option<Recovery>,
    ) -> io::Result<String> {
        let name = digest_name(&entry.file);
        let mut digest = Digest {
            format: FORMAT.to_string(),
            sequence,
            first: self.head.is_none(),
            start_time,
            end_time: Utc::now(),
            segments: vec![entry],
            previous: self.head.as_ref().map(|h| PreviousDigest {
                file: h.file.clone(),
                sha256: h.sha256.clone(),
                signature: h.signature.clone(),
            }),
            recovered,
            key_fingerprint: String::new(),
            signature: None,
        };
        digest.sign(&self.key);
        let bytes = digest.to_file_bytes();
        durable::replace_file(&path_of(&self.root, &name), &bytes, PRIVATE_FILE)?;
        self.head = Some(Head {
            sequence,
            file: name.clone(),
            sha256: sha256_hex(&bytes),
            signature: digest.signature.unwrap_or_default(),
        });
        // The digest is durable: the seal stands. A head record that can't be written now
        // is one seal behind, which the next seal (or start) repairs.
        if let Err(e) = self.write_head_record() {
            tracing::warn!(archive = %self.root.display(), error = %e, "archive: cannot update the head record; it is written again at the next seal");
        }
        Ok(name)
    }

    /// Replace the head record with the chain's newest digest (sequence 0 and no digest
    /// before the first seal).
    fn write_head_record(&self) -> io::Result<()> {
        let mut record = match &self.head {
            Some(h) => head::Head::new(h.sequence, &h.file, &h.sha256),
            None => head::Head::new(0, "", ""),
        };
        record.open = self.open.as_ref().map(|o| o.name.clone());
        head::write(&self.root, record, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::keys::{PublicKey, testing::write_key_pair};
    use super::super::verify::{Kind, Options, verify_dir};
    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// Append a batch of this many events.
        Append(u8),
        /// Seal (rotation or clean stop).
        Seal,
        /// Crash: drop the writer unsealed, maybe with a torn batch at the segment's end.
        Crash { torn: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (1u8..5).prop_map(Step::Append),
            2 => Just(Step::Seal),
            2 => any::<bool>().prop_map(|torn| Step::Crash { torn }),
        ]
    }

    /// Every line of every segment, in chain order.
    fn archived_lines(root: &Path) -> Vec<String> {
        let mut segments = segment::list(root).unwrap().segments;
        segments.sort_by_key(|s| sequence_of(s));
        let mut out = Vec::new();
        for s in segments {
            let file = File::open(path_of(root, &s)).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(file), &mut text)
                .unwrap();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the order of appends, seals and crashes: the archive verifies, and it
        /// holds exactly the acknowledged events, in order.
        #[test]
        fn appends_rotations_and_crashes_always_verify(steps in proptest::collection::vec(step(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let (private, public) = write_key_pair(dir.path(), "k");
            let public = PublicKey::from_pem_file(&public).unwrap();
            let root = dir.path().join("archive");
            let key = || SigningKey::from_pem_file(&private).unwrap();
            let (mut w, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
            let mut acked = Vec::new();
            let mut n = 0u64;
            for step in steps {
                match step {
                    Step::Append(count) => {
                        let mut lines = String::new();
                        for _ in 0..count {
                            n += 1;
                            lines.push_str(&format!("{{\"@timestamp\":\"2026-12-03T10:00:00Z\",\"n\":{n}}}\n"));
                            acked.push(format!("{{\"@timestamp\":\"2026-12-03T10:00:00Z\",\"n\":{n}}}"));
                        }
                        w.append(lines.as_bytes(), u64::from(count), None, None).unwrap();
                    }
                    Step::Seal => {
                        w.seal().unwrap();
                    }
                    Step::Crash { torn } => {
                        if torn && let Some(open) = w.open_segment() {
                            let path = path_of(&root, open);
                            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                            // The first bytes of a gzip member: a batch cut off mid-write.
                            f.write_all(&[0x1f, 0x8b, 0x08, 0x00, 0x00]).unwrap();
                        }
                        drop(w);
                        w = ArchiveWriter::open(&root, key(), 1 << 20).unwrap().0;
                    }
                }
            }
            w.seal().unwrap();
            // Strict: after the last seal nothing is open.
            let report = verify_dir(&root, std::slice::from_ref(&public), Options::default()).unwrap();
            if acked.is_empty() {
                // Nothing appended, so nothing archived: an empty archive is a problem.
                prop_assert!(!report.ok);
                prop_assert!(report.problems.iter().all(|p| p.kind == Kind::NoArchive), "{}", report.render_text());
            } else {
                prop_assert!(report.ok, "{}", report.render_text());
            }
            prop_assert_eq!(archived_lines(&root), acked);
        }
    }

    /// A second writer on the same archive (a backfill on the daemon's `path`) is refused,
    /// naming the holder, instead of forking the chain; the lock goes with the writer.
    #[test]
    fn a_second_writer_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        let (first, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        let e = ArchiveWriter::open(&root, key(), 1 << 20)
            .err()
            .expect("a second writer must be refused");
        let text = e.to_string();
        assert!(
            text.contains(&format!("PID {}", std::process::id()))
                && text.contains("backfill")
                && text.contains(LOCK_FILE),
            "{text}"
        );
        drop(first);
        ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
    }

    /// The newest pair removed: the writer does not paper over it by extending the shorter
    /// chain, nor when the head record was removed too; a new `path` starts a new chain.
    #[test]
    fn a_chain_shorter_than_its_head_record_is_not_extended() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        let (mut w, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        for n in 0..2 {
            w.append(format!("{{\"n\":{n}}}\n").as_bytes(), 1, None, None)
                .unwrap();
            w.seal().unwrap();
        }
        drop(w);
        let listing = segment::list(&root).unwrap();
        std::fs::remove_file(path_of(&root, &listing.digests[1])).unwrap();
        std::fs::remove_file(path_of(&root, &listing.segments[1])).unwrap();
        let e = ArchiveWriter::open(&root, key(), 1 << 20)
            .err()
            .expect("a shortened chain must not be extended");
        let text = e.to_string();
        assert!(
            text.contains("digests were removed")
                && text.contains(&listing.digests[1])
                && text.contains("new `path`"),
            "{text}"
        );
        assert_eq!(check_extendable(&root).unwrap_err().to_string(), text);
        std::fs::remove_file(root.join(head::HEAD_FILE)).unwrap();
        let e = ArchiveWriter::open(&root, key(), 1 << 20)
            .err()
            .expect("a chain without its head record must not be extended");
        let text = e.to_string();
        assert!(
            text.contains("no head record") && text.contains(&listing.digests[0]),
            "{text}"
        );
        assert!(check_extendable(&root).is_err());
        ArchiveWriter::open(&dir.path().join("b"), key(), 1 << 20).unwrap();
    }

    /// A new archive has a head record before its first seal, so a crash between the first
    /// digest and its record is told from a removed record.
    #[test]
    fn a_new_archive_has_a_head_record_before_its_first_seal() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        assert!(
            check_extendable(&root).is_ok(),
            "a missing root will be created"
        );
        let (mut w, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        let record = head::Head::parse(&head::read(&root).unwrap().unwrap()).unwrap();
        assert_eq!((record.sequence, record.digest.as_str()), (0, ""));
        w.append(b"{\"n\":1}\n", 1, None, None).unwrap();
        w.seal().unwrap();
        drop(w);
        // The crash: the first digest is there, the record still at sequence 0.
        head::write(&root, head::Head::new(0, "", ""), &key()).unwrap();
        assert!(check_extendable(&root).is_ok());
        ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        let record = head::Head::parse(&head::read(&root).unwrap().unwrap()).unwrap();
        assert_eq!(record.sequence, 1);
    }

    /// One sealed segment in an archive at `root`, then a file with the next sequence's
    /// segment name and `bytes` written by hand: its name and path.
    fn plant_after_a_clean_stop(
        root: &Path,
        key: SigningKey,
        bytes: &[u8],
    ) -> (String, std::path::PathBuf) {
        let (mut w, _) = ArchiveWriter::open(root, key, 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n", 1, None, None).unwrap();
        w.seal().unwrap();
        drop(w);
        let planted = segment_name(2, Utc::now() - chrono::TimeDelta::hours(1));
        let path = path_of(root, &planted);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        (planted, path)
    }

    #[test]
    fn a_planted_segment_after_a_clean_stop_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        // A segment with the next sequence, written by hand, after the clean stop.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(b"{\"forged\":true}\n").unwrap();
        let (planted, _) = plant_after_a_clean_stop(&root, key(), &gz.finish().unwrap());
        let (mut w, opened) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        assert_eq!(opened.foreign, vec![planted.clone()]);
        assert!(opened.recovered.is_empty());
        assert!(!path_of(&root, &digest_name(&planted)).exists());
        // Archiving goes on; verify keeps reporting the planted file.
        w.append(b"{\"n\":2}\n", 1, None, None).unwrap();
        w.seal().unwrap();
        drop(w);
        let public = PublicKey::from_pem_file(&public).unwrap();
        let report = verify_dir(&root, &[public], Options::default()).unwrap();
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.file == planted && p.kind == Kind::Extra),
            "{:?}",
            report.problems
        );
    }

    /// A planted file that is no gzip at all is not cut back or removed either: it stays
    /// byte for byte as found, for `verify` to report.
    #[test]
    fn a_planted_file_that_is_not_a_segment_is_left_as_found() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        let (planted, path) = plant_after_a_clean_stop(&root, key(), b"not gzip");
        let (_, opened) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        assert_eq!(opened.foreign, vec![planted]);
        assert_eq!(std::fs::read(&path).unwrap(), b"not gzip");
    }

    #[test]
    fn a_head_record_put_back_from_earlier_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        let (mut w, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        let genesis = std::fs::read(root.join(head::HEAD_FILE)).unwrap();
        for n in 0..3 {
            w.append(format!("{{\"n\":{n}}}\n").as_bytes(), 1, None, None)
                .unwrap();
            w.seal().unwrap();
        }
        drop(w);
        std::fs::write(root.join(head::HEAD_FILE), &genesis).unwrap();
        let e = ArchiveWriter::open(&root, key(), 1 << 20)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("an older head record was put back"), "{e}");
    }

    #[test]
    fn a_crash_is_recorded_in_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_key_pair(dir.path(), "k");
        let root = dir.path().join("a");
        let key = || SigningKey::from_pem_file(&private).unwrap();
        let (mut w, _) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n", 1, None, None).unwrap();
        let open = w.open_segment().unwrap().to_string();
        drop(w);
        let (_, opened) = ArchiveWriter::open(&root, key(), 1 << 20).unwrap();
        assert_eq!(opened.recovered, vec![open.clone()]);
        let digest =
            Digest::parse(&std::fs::read(path_of(&root, &digest_name(&open))).unwrap()).unwrap();
        assert!(digest.first);
        assert_eq!(digest.segments[0].events, 1);
        assert!(digest.recovered.is_some());
    }
}
