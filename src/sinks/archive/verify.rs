//! `veeam-siem verify`: checks a whole archive (a directory, or through [`ArchiveSource`] a
//! bucket: `s3::verify`) and reports every problem by file.
//!
//! What it checks: every digest parses, is signed by one of the given public keys and sits
//! where its name says; the digests form one unbroken chain (each names the previous one's
//! file, hash and signature; the earliest says it is the first); every segment a digest
//! lists exists and its decompressed content has the recorded SHA-256 and size; no
//! segment is there that no digest covers, except the one still open (the next in the
//! chain). Segments are streamed, so memory stays constant whatever their size.
//!
//! What it cannot see alone: a deleted *tail* (the newest digests and their segments)
//! leaves a shorter but valid chain; compare the newest digest with an external record
//! (see the README's "Compliance archive").

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::Serialize;

use super::digest::{Digest, sha256_hex};
use super::keys::PublicKey;
use super::segment::{self, digest_name, path_of, sequence_of};

/// One thing wrong, named by the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub file: String,
    pub problem: String,
}

/// The outcome of a verification.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub problems: Vec<Problem>,
    pub digests: usize,
    pub segments: usize,
    pub events: u64,
    /// Uncompressed bytes whose hash was checked.
    pub bytes: u64,
    /// The segment still being written (covered by no digest yet), if any.
    pub open_segment: Option<String>,
    /// The newest digest: keep a record of it elsewhere to detect a deleted tail.
    pub newest_digest: Option<String>,
    pub newest_digest_sha256: Option<String>,
}

impl Report {
    /// The text report: one line per problem, then a summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out.push_str(&format!(
                "{}: {}\n",
                crate::escape::escape_controls(&p.file),
                p.problem
            ));
        }
        if let Some(open) = &self.open_segment {
            out.push_str(&format!(
                "note: {} is the open segment (not sealed yet, so not covered)\n",
                crate::escape::escape_controls(open)
            ));
        }
        if let (Some(d), Some(h)) = (&self.newest_digest, &self.newest_digest_sha256) {
            out.push_str(&format!(
                "newest digest: {} sha256 {h}\n",
                crate::escape::escape_controls(d)
            ));
        }
        out.push_str(&format!(
            "{}: {} digests, {} segments, {} events, {} bytes checked; {} problem(s)\n",
            if self.ok { "OK" } else { "FAILED" },
            self.digests,
            self.segments,
            self.events,
            self.bytes,
            self.problems.len()
        ));
        out
    }
}

/// The keys of `--public-key`, or the usage error (printed) as `Err(2)`.
pub fn load_keys(key_files: &[std::path::PathBuf]) -> Result<Vec<PublicKey>, u8> {
    let mut keys = Vec::new();
    for file in key_files {
        match PublicKey::from_pem_file(file) {
            Ok(k) => keys.push(k),
            Err(e) => {
                eprintln!("error: --public-key: {e}");
                return Err(2);
            }
        }
    }
    Ok(keys)
}

/// Print `report` (text or JSON) on stdout; the exit code: 0 intact, 1 any problem.
pub fn print_report(report: &Report, json: bool) -> u8 {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", report.render_text());
    }
    if report.ok { 0 } else { 1 }
}

/// The `verify` command: load the keys, verify `root`, print the report (text or JSON) on
/// stdout. Returns the exit code: 0 intact, 1 any problem, 2 usage errors (a key file or
/// the directory can't be used), with the reason on stderr.
pub fn run(root: &Path, key_files: &[std::path::PathBuf], json: bool) -> u8 {
    let keys = match load_keys(key_files) {
        Ok(k) => k,
        Err(code) => return code,
    };
    if !root.is_dir() {
        eprintln!(
            "error: {} is not a directory; give the archive sink's `path`",
            root.display()
        );
        return 2;
    }
    let report = match verify_dir(root, &keys) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the archive {}: {e}", root.display());
            return 2;
        }
    };
    print_report(&report, json)
}

struct Found {
    name: String,
    bytes_sha256: String,
    digest: Digest,
}

/// Where an archive is read from: a directory, or a bucket and prefix (`s3::verify`).
pub trait ArchiveSource {
    /// Every segment and digest, by relative name.
    fn list(&self) -> io::Result<segment::Listing>;
    /// A whole digest file, at most [`super::digest::MAX_DIGEST_BYTES`].
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// A segment, streamed ([`segment::scan_reader`]).
    fn scan(&self, name: &str) -> io::Result<segment::Scan>;
}

/// An archive directory.
pub struct Dir<'a>(pub &'a Path);

impl ArchiveSource for Dir<'_> {
    fn list(&self) -> io::Result<segment::Listing> {
        segment::list(self.0)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        super::digest::read_digest_file(&path_of(self.0, name))
    }
    fn scan(&self, name: &str) -> io::Result<segment::Scan> {
        segment::scan(&path_of(self.0, name), false)
    }
}

/// Verify the archive at `root` against `keys`. `Err` only when `root` can't be read.
pub fn verify_dir(root: &Path, keys: &[PublicKey]) -> io::Result<Report> {
    verify_archive(&Dir(root), keys)
}

/// Verify the archive `source` holds against `keys`. `Err` only when it can't be listed.
pub fn verify_archive(source: &dyn ArchiveSource, keys: &[PublicKey]) -> io::Result<Report> {
    let listing = source.list()?;
    let mut report = Report::default();
    let mut problems = Vec::new();
    let mut problem = |file: &str, what: String| {
        problems.push(Problem {
            file: file.to_string(),
            problem: what,
        })
    };
    // Every digest: parse, name, signature.
    let mut by_sequence: BTreeMap<u64, Found> = BTreeMap::new();
    let mut by_name: BTreeMap<String, (u64, String, Option<String>)> = BTreeMap::new();
    for name in &listing.digests {
        let bytes = match source.read(name) {
            Ok(b) => b,
            Err(e) => {
                problem(name, format!("unreadable ({e})"));
                continue;
            }
        };
        let digest = match Digest::parse(&bytes) {
            Ok(d) => d,
            Err(e) => {
                problem(name, format!("modified or truncated: {e}"));
                continue;
            }
        };
        match keys
            .iter()
            .find(|k| k.fingerprint() == digest.key_fingerprint)
        {
            None => problem(
                name,
                format!(
                    "signed by another key ({}), not one given with --public-key",
                    digest.key_fingerprint
                ),
            ),
            Some(key) if !digest.signed_by(key) => problem(
                name,
                "modified: its signature does not match its content".to_string(),
            ),
            Some(_) => {}
        }
        let expected = digest.segments.first().map(|s| digest_name(&s.file));
        if sequence_of(name) != Some(digest.sequence) || expected.as_deref() != Some(name) {
            problem(
                name,
                format!(
                    "renamed or moved: digest {} belongs at {}",
                    digest.sequence,
                    expected.as_deref().unwrap_or("(no segment listed)")
                ),
            );
        }
        let bytes_sha256 = sha256_hex(&bytes);
        by_name.insert(
            name.clone(),
            (
                digest.sequence,
                bytes_sha256.clone(),
                digest.signature.clone(),
            ),
        );
        if let Some(other) = by_sequence.get(&digest.sequence) {
            problem(
                name,
                format!(
                    "out of order: sequence {} is also claimed by {}",
                    digest.sequence, other.name
                ),
            );
            continue;
        }
        by_sequence.insert(
            digest.sequence,
            Found {
                name: name.clone(),
                bytes_sha256,
                digest,
            },
        );
    }
    report.digests = by_sequence.len();
    // The chain, newest to oldest.
    let earliest = by_sequence.keys().next().copied();
    for found in by_sequence.values().rev() {
        let d = &found.digest;
        match &d.previous {
            None if d.first => {
                if Some(d.sequence) != earliest {
                    problem(
                        &found.name,
                        "out of order: says it is the first digest, but earlier ones exist"
                            .to_string(),
                    );
                }
            }
            None => problem(
                &found.name,
                "the chain is broken: no previous digest named and not marked as the first"
                    .to_string(),
            ),
            Some(prev) => match by_name.get(&prev.file) {
                None => problem(
                    &prev.file,
                    format!("missing: {} names it as the previous digest", found.name),
                ),
                Some((sequence, sha256, signature)) => {
                    if *sha256 != prev.sha256 || signature.as_deref() != Some(&prev.signature) {
                        problem(
                            &prev.file,
                            format!(
                                "modified: its hash or signature differs from what {} recorded",
                                found.name
                            ),
                        );
                    }
                    if *sequence + 1 != d.sequence {
                        problem(
                            &found.name,
                            format!(
                                "out of order: sequence {} follows {} (sequence {sequence})",
                                d.sequence, prev.file
                            ),
                        );
                    }
                }
            },
        }
    }
    // The segments each digest lists.
    let present: BTreeSet<&String> = listing.segments.iter().collect();
    let mut covered = BTreeSet::new();
    for found in by_sequence.values() {
        for entry in &found.digest.segments {
            covered.insert(entry.file.clone());
            if !present.contains(&entry.file) {
                problem(&entry.file, format!("missing: listed in {}", found.name));
                continue;
            }
            report.segments += 1;
            let scan = match source.scan(&entry.file) {
                Ok(s) => s,
                Err(e) => {
                    problem(&entry.file, format!("unreadable ({e})"));
                    continue;
                }
            };
            report.bytes += scan.uncompressed_bytes;
            report.events += scan.events;
            if let Some(why) = scan.problem {
                problem(&entry.file, format!("modified or truncated: {why}"));
            } else if scan.sha256 != entry.sha256
                || scan.uncompressed_bytes != entry.uncompressed_bytes
                || scan.events != entry.events
            {
                problem(
                    &entry.file,
                    format!(
                        "modified: content differs from what {} recorded ({} events, {} bytes, sha256 {}; now {} events, {} bytes, sha256 {})",
                        found.name,
                        entry.events,
                        entry.uncompressed_bytes,
                        entry.sha256,
                        scan.events,
                        scan.uncompressed_bytes,
                        scan.sha256
                    ),
                );
            }
        }
    }
    // Segments no digest covers: only the next one in the chain may be open.
    let next = by_sequence.keys().next_back().map_or(1, |s| s + 1);
    for name in &listing.segments {
        if covered.contains(name) {
            continue;
        }
        if sequence_of(name) == Some(next) && report.open_segment.is_none() {
            report.open_segment = Some(name.clone());
        } else {
            problem(name, "extra: no digest covers this segment".to_string());
        }
    }
    if let Some(newest) = by_sequence.values().next_back() {
        report.newest_digest = Some(newest.name.clone());
        report.newest_digest_sha256 = Some(newest.bytes_sha256.clone());
    }
    report.problems = problems;
    report.problems.sort();
    report.problems.dedup();
    report.ok = report.problems.is_empty();
    Ok(report)
}
