//! Segments on disk: the layout and file names, and reading a segment back member by
//! member (gzip, one member per delivered batch) in constant memory, for crash recovery
//! (where does the last complete member end?) and for `verify` (what is the hash?).
//!
//! Layout below the archive root: `YYYY/MM/DD/<sequence:010>-<opened:%Y%m%dT%H%M%SZ>` plus
//! `.ndjson.gz` for the segment and `.digest.json` for its digest, the date being the
//! segment's opening time (UTC).

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ring::digest::{Context, SHA256};

use super::hex;

pub const SEGMENT_SUFFIX: &str = ".ndjson.gz";
pub const DIGEST_SUFFIX: &str = ".digest.json";

/// The segment's path relative to the root (`/`-separated).
pub fn segment_name(sequence: u64, opened: DateTime<Utc>) -> String {
    format!(
        "{}/{sequence:010}-{}{SEGMENT_SUFFIX}",
        opened.format("%Y/%m/%d"),
        opened.format("%Y%m%dT%H%M%SZ")
    )
}

/// The digest's path for a segment's path.
pub fn digest_name(segment: &str) -> String {
    let stem = segment.strip_suffix(SEGMENT_SUFFIX).unwrap_or(segment);
    format!("{stem}{DIGEST_SUFFIX}")
}

/// The sequence number in a segment or digest path (the 10 digits of its file name).
pub fn sequence_of(name: &str) -> Option<u64> {
    let file = name.rsplit('/').next()?;
    let (digits, _) = file.split_once('-')?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A relative name as a path below `root`.
pub fn path_of(root: &Path, name: &str) -> PathBuf {
    name.split('/')
        .fold(root.to_path_buf(), |p, part| p.join(part))
}

/// Every segment and digest below `root` (relative `/`-separated names, sorted), and every
/// other file that is not the archive's own bookkeeping ([`is_bookkeeping`]).
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<String>,
    pub digests: Vec<String>,
    /// Files that are neither: nothing the sink writes, so `verify` reports them.
    pub others: Vec<String>,
}

/// The files the archive sink keeps next to its segments and digests, by relative name:
/// its lock, the S3 upload progress (and its temp file), the temp file of an interrupted
/// digest write.
pub fn is_bookkeeping(name: &str) -> bool {
    use super::head::HEAD_FILE;
    use super::s3::upload::STATE_FILE;
    name == super::writer::LOCK_FILE
        || name == HEAD_FILE
        || name.strip_prefix(HEAD_FILE) == Some(".tmp")
        || name == STATE_FILE
        || name.strip_prefix(STATE_FILE) == Some(".tmp")
        || name
            .strip_suffix(".tmp")
            .is_some_and(|n| n.ends_with(DIGEST_SUFFIX) && sequence_of(n).is_some())
}

/// Walk `root` (symbolic links are listed as files, never followed).
pub fn list(root: &Path) -> io::Result<Listing> {
    let mut out = Listing::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else if name.ends_with(SEGMENT_SUFFIX) {
                out.segments.push(rel);
            } else if name.ends_with(DIGEST_SUFFIX) {
                out.digests.push(rel);
            } else if !is_bookkeeping(&rel) {
                out.others.push(rel);
            }
        }
    }
    out.segments.sort();
    out.digests.sort();
    out.others.sort();
    Ok(out)
}

/// What reading a segment found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Bytes of the file that are complete gzip members.
    pub valid_len: u64,
    /// The whole file's length.
    pub file_len: u64,
    /// SHA-256 (hex) over the uncompressed content of the complete members.
    pub sha256: String,
    /// SHA-256 (hex) over the file's bytes as stored (all of them).
    pub file_sha256: String,
    pub uncompressed_bytes: u64,
    /// Lines (events) in the complete members.
    pub events: u64,
    pub first_timestamp: Option<DateTime<Utc>>,
    pub last_timestamp: Option<DateTime<Utc>>,
    /// Why reading stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Counts the bytes the gzip decoder consumed, so a member's end is known exactly.
struct Counting<R> {
    inner: R,
    pos: u64,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
        self.inner.consume(amt)
    }
}

/// Only the time of an event line.
#[derive(serde::Deserialize)]
struct Stamp {
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
}

/// Read the segment at `path` member by member. With `timestamps`, each line's
/// `@timestamp` is read (recovery needs the range; `verify` doesn't and stays at disk
/// speed). Memory is constant apart from the longest line when `timestamps` is set.
pub fn scan(path: &Path, timestamps: bool) -> io::Result<Scan> {
    let file = crate::durable::open_regular(path)?;
    let file_len = file.metadata()?.len();
    scan_reader(file, file_len, timestamps)
}

/// [`scan`] over any reader of a segment's bytes (`file_len` is its length, as listed),
/// e.g. an object streamed from S3.
pub fn scan_reader<R: Read>(reader: R, file_len: u64, timestamps: bool) -> io::Result<Scan> {
    let mut input = Counting {
        inner: BufReader::with_capacity(
            256 * 1024,
            Hashing {
                inner: reader,
                hash: Context::new(&SHA256),
            },
        ),
        pos: 0,
    };
    let mut hash = Context::new(&SHA256);
    let mut out = Scan {
        valid_len: 0,
        file_len,
        sha256: String::new(),
        file_sha256: String::new(),
        uncompressed_bytes: 0,
        events: 0,
        first_timestamp: None,
        last_timestamp: None,
        problem: None,
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut line = Vec::new();
    loop {
        if input.fill_buf()?.is_empty() {
            break;
        }
        let start = input.pos;
        let mut member_hash = hash.clone();
        let (mut bytes, mut events) = (0u64, 0u64);
        let (mut first, mut last) = (out.first_timestamp, out.last_timestamp);
        let mut decoder = flate2::bufread::GzDecoder::new(&mut input);
        let ended = loop {
            match decoder.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    let chunk = &buf[..n];
                    member_hash.update(chunk);
                    bytes += n as u64;
                    for part in chunk.split_inclusive(|&b| b == b'\n') {
                        if part.ends_with(b"\n") {
                            events += 1;
                            if timestamps {
                                line.extend_from_slice(part);
                                if let Ok(s) = serde_json::from_slice::<Stamp>(&line) {
                                    first = first.or(Some(s.timestamp));
                                    last = Some(s.timestamp);
                                }
                                line.clear();
                            }
                        } else if timestamps {
                            line.extend_from_slice(part);
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        drop(decoder);
        let complete = ended.is_ok() && line.is_empty();
        match ended {
            Ok(()) if complete => {
                hash = member_hash;
                out.uncompressed_bytes += bytes;
                out.events += events;
                out.first_timestamp = first;
                out.last_timestamp = last;
                out.valid_len = input.pos;
            }
            Ok(()) => {
                out.problem = Some(format!(
                    "the gzip member at byte {start} does not end with a complete line"
                ));
                break;
            }
            Err(e) => {
                out.problem = Some(format!(
                    "the gzip data at byte {start} is damaged or cut off ({e})"
                ));
                break;
            }
        }
    }
    out.sha256 = hex::encode(hash.finish().as_ref());
    // The rest of a file whose reading stopped early, for the hash of all its bytes.
    io::copy(&mut input, &mut io::sink())?;
    out.file_sha256 = hex::encode(input.inner.into_inner().hash.finish().as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn member(lines: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn names_round_trip() {
        let t: DateTime<Utc> = "2026-12-03T10:11:12Z".parse().unwrap();
        let s = segment_name(42, t);
        assert_eq!(s, "2026/12/03/0000000042-20261203T101112Z.ndjson.gz");
        assert_eq!(
            digest_name(&s),
            "2026/12/03/0000000042-20261203T101112Z.digest.json"
        );
        assert_eq!(sequence_of(&s), Some(42));
        assert_eq!(sequence_of("2026/x.ndjson.gz"), None);
    }

    #[test]
    fn a_torn_last_member_is_found_and_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ndjson.gz");
        let a = "{\"@timestamp\":\"2026-12-03T10:00:00Z\"}\n";
        let b = "{\"@timestamp\":\"2026-12-03T11:00:00Z\"}\n";
        let mut bytes = member(a);
        let good = bytes.len() as u64;
        let torn = member(b);
        bytes.extend_from_slice(&torn[..torn.len() - 5]);
        std::fs::write(&path, &bytes).unwrap();
        let s = scan(&path, true).unwrap();
        assert_eq!(s.valid_len, good);
        assert_eq!(s.events, 1);
        assert_eq!(s.sha256, super::super::digest::sha256_hex(a.as_bytes()));
        assert_eq!(
            s.last_timestamp,
            Some("2026-12-03T10:00:00Z".parse().unwrap())
        );
        assert!(s.problem.is_some());

        let mut whole = member(a);
        whole.extend(member(b));
        std::fs::write(&path, &whole).unwrap();
        let s = scan(&path, false).unwrap();
        assert_eq!(
            (s.valid_len, s.events, s.problem),
            (whole.len() as u64, 2, None)
        );
        assert_eq!(
            s.sha256,
            super::super::digest::sha256_hex(format!("{a}{b}").as_bytes())
        );
    }
}
