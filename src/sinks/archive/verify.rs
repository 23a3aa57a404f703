//! `veeam-siem verify`: checks a whole archive (a directory, or through [`ArchiveSource`] a
//! bucket: `s3::verify`) and reports every problem by file.
//!
//! What it checks: every digest parses, is signed by one of the given public keys and sits
//! where its name says; the digests form one unbroken chain (each names the previous one's
//! file, hash and signature; the earliest says it is the first); every segment a digest
//! lists exists, is the recorded number of bytes long and its decompressed content has the
//! recorded SHA-256 and size; no segment is there that no digest covers, and no other file
//! (only the sink's own lock and upload-progress files may sit beside them); and there is
//! an archive at all (an empty
//! directory or prefix is a problem: a mistyped path must not pass). Segments are streamed,
//! so memory stays constant whatever their size.
//!
//! Strict by default: an unsealed segment is a problem even when it is the next in the
//! chain, because it can't be told apart from a sealed segment whose digest was removed.
//! [`Options::allow_open`] (`--allow-open`) is for a running daemon's archive: it tolerates
//! exactly one uncovered segment, the next in the chain, and reports it as the open one.
//!
//! A deleted *tail* (the newest digests and their segments) leaves a shorter chain that
//! is valid on its own; the head record ([`super::head`], local archives) names the newest
//! digest, so the chain must reach it. What it cannot see alone: an earlier state put back
//! whole, head record included; compare the newest digest with an external record (see
//! the README's "Compliance archive").

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::Serialize;

use super::digest::{Digest, sha256_hex};
use super::keys::PublicKey;
use super::segment::{self, digest_name, path_of, sequence_of};

/// What kind of problem (`kind` in the JSON report), for machines; `problem` says it for
/// people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The path holds no segment and no digest.
    NoArchive,
    /// A file that can't be read.
    Unreadable,
    /// Content, a digest field or a signature changed, or a file cut short.
    Modified,
    /// A digest signed by a key not given with `--public-key`.
    SignedByAnotherKey,
    /// A digest not where its name and content say.
    Renamed,
    /// Sequences that don't follow each other.
    OutOfOrder,
    /// A digest that names no previous one and does not say it is the first.
    ChainBroken,
    /// A file a digest names that is not there.
    Missing,
    /// A segment no digest covers that can't be the open one, or a file that is no part
    /// of an archive.
    Extra,
    /// The next segment in the chain, covered by no digest: open (a running or crashed
    /// daemon) or its digest was removed. Not reported with `--allow-open`.
    Unsealed,
    /// An object's Object Lock retention is missing or too short (`--check-retention`).
    Retention,
}

/// One thing wrong, named by the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub file: String,
    pub kind: Kind,
    pub problem: String,
}

/// How strict [`verify_archive`] is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A running daemon's archive: one uncovered segment, the next in the chain, is the open
    /// one and no problem (`--allow-open`). Off: every segment must be sealed.
    pub allow_open: bool,
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
    /// The segment still being written (covered by no digest yet), if any; only with
    /// `--allow-open` (without it such a segment is an `unsealed` problem).
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
                "note: {} is taken as the open segment (--allow-open): not sealed yet, so no digest covers or checks it\n",
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
/// stdout. Returns the exit code: 0 intact, 1 any problem (nothing at `root` included), 2
/// usage errors (a key file or the directory can't be used), with the reason on stderr.
pub fn run(root: &Path, key_files: &[std::path::PathBuf], json: bool, options: Options) -> u8 {
    let keys = match load_keys(key_files) {
        Ok(k) => k,
        Err(code) => return code,
    };
    if !root.exists() {
        // Nothing there: a daily check with a mistyped path must fail, not pass.
        let report = Report {
            ok: false,
            problems: vec![Problem {
                file: root.display().to_string(),
                kind: Kind::NoArchive,
                problem: "no archive: there is nothing at this path (a wrong path, or an archive sink that has not started yet)".to_string(),
            }],
            ..Report::default()
        };
        return print_report(&report, json);
    }
    if !root.is_dir() {
        eprintln!(
            "error: {} is not a directory; give the archive sink's `path`",
            root.display()
        );
        return 2;
    }
    let report = match verify_dir(root, &keys, options) {
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
    /// Where the archive is, as the user gave it (the file named by a `no_archive` problem).
    fn location(&self) -> String;
    /// Every segment and digest, by relative name.
    fn list(&self) -> io::Result<segment::Listing>;
    /// A whole digest file, at most [`super::digest::MAX_DIGEST_BYTES`].
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// A segment, streamed ([`segment::scan_reader`]).
    fn scan(&self, name: &str) -> io::Result<segment::Scan>;
    /// The head record ([`super::head`]): `None` where the archive keeps none (S3),
    /// `Some(Ok(None))` where it should but there is none.
    fn head_record(&self) -> Option<io::Result<Option<Vec<u8>>>> {
        None
    }
}

/// An archive directory.
pub struct Dir<'a>(pub &'a Path);

impl ArchiveSource for Dir<'_> {
    fn location(&self) -> String {
        self.0.display().to_string()
    }
    fn list(&self) -> io::Result<segment::Listing> {
        segment::list(self.0)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        super::digest::read_digest_file(&path_of(self.0, name))
    }
    fn scan(&self, name: &str) -> io::Result<segment::Scan> {
        segment::scan(&path_of(self.0, name), false)
    }
    fn head_record(&self) -> Option<io::Result<Option<Vec<u8>>>> {
        Some(super::head::read(self.0))
    }
}

/// Verify the archive at `root` against `keys`. `Err` only when `root` can't be read.
pub fn verify_dir(root: &Path, keys: &[PublicKey], options: Options) -> io::Result<Report> {
    verify_archive(&Dir(root), keys, options)
}

/// Why an uncovered next-in-chain segment is a problem without `--allow-open`.
const UNSEALED: &str = "not sealed: no digest covers this segment. Either it is the open segment of a running daemon (or one a crash left open; the next start seals it), or it was sealed and its digest was removed. Stop the daemon cleanly (it seals at every stop) and verify again; to check a running daemon's archive, use --allow-open";

/// Compare the chain (`by_sequence`) with the head record. No record is a problem only
/// when there are digests.
fn check_head(
    record: io::Result<Option<Vec<u8>>>,
    keys: &[PublicKey],
    by_sequence: &BTreeMap<u64, Found>,
    allow_open: bool,
    problem: &mut impl FnMut(&str, Kind, String),
) {
    use super::head::{HEAD_FILE, Head};
    let bytes = match record {
        Err(e) => return problem(HEAD_FILE, Kind::Unreadable, format!("unreadable ({e})")),
        Ok(None) if by_sequence.is_empty() => return,
        Ok(None) => {
            return problem(
                HEAD_FILE,
                Kind::Missing,
                "missing: the head record (the newest digest, signed; rewritten at every seal) is not there, so removed newest digests can't be told from a shorter chain. A running daemon of this version writes it at its start and at every seal".to_string(),
            );
        }
        Ok(Some(b)) => b,
    };
    let head = match Head::parse(&bytes) {
        Ok(h) => h,
        Err(e) => {
            return problem(
                HEAD_FILE,
                Kind::Modified,
                format!("modified or truncated: {e}"),
            );
        }
    };
    match keys
        .iter()
        .find(|k| k.fingerprint() == head.key_fingerprint)
    {
        None => problem(
            HEAD_FILE,
            Kind::SignedByAnotherKey,
            format!(
                "signed by another key ({}), not one given with --public-key",
                head.key_fingerprint
            ),
        ),
        Some(key) if !head.signed_by(key) => problem(
            HEAD_FILE,
            Kind::Modified,
            "modified: its signature does not match its content".to_string(),
        ),
        Some(_) => {}
    }
    let newest = by_sequence.keys().next_back().copied().unwrap_or(0);
    match by_sequence.get(&head.sequence) {
        Some(found) if found.bytes_sha256 != head.digest_sha256 => problem(
            &found.name,
            Kind::Modified,
            format!(
                "modified: not the digest the head record names as sequence {} (sha256 {})",
                head.sequence, head.digest_sha256
            ),
        ),
        Some(_) => {}
        None if head.sequence > newest => problem(
            &head.digest,
            Kind::Missing,
            format!(
                "missing: the head record names it as the newest digest (sequence {}), but the chain ends at sequence {newest}: the newest digests and their segments were removed",
                head.sequence
            ),
        ),
        // Within the chain but not there: reported as missing by the chain walk.
        None => {}
    }
    // A head behind the chain: an older record put back (from an earlier time, or a
    // new archive's sequence-0 record) to hide removed digests, or a crash between a seal
    // and its record (the next start of the sink brings it up to date). A running
    // daemon's record may be one seal behind while it seals.
    let behind = newest.saturating_sub(head.sequence);
    if behind > u64::from(allow_open) {
        let why = if behind == 1 {
            "an older head record was put back (hiding removed digests), or the sink stopped between a seal and its head record (then starting it once brings the record up to date; verify again after a clean stop)"
        } else {
            "an older head record was put back, hiding digests removed after it (the sink refuses to extend this chain)"
        };
        problem(
            HEAD_FILE,
            Kind::Modified,
            format!(
                "stale: the head record names sequence {} as the newest digest, but the chain goes on to {newest}: {why}",
                head.sequence
            ),
        );
    }
}

/// The segment a digest seals, by name (the digest is named after it).
fn segment_of_digest(digest: &str) -> String {
    let stem = digest
        .strip_suffix(super::segment::DIGEST_SUFFIX)
        .unwrap_or(digest);
    format!("{stem}{}", super::segment::SEGMENT_SUFFIX)
}

/// Verify the archive `source` holds against `keys`. `Err` only when it can't be listed.
pub fn verify_archive(
    source: &dyn ArchiveSource,
    keys: &[PublicKey],
    options: Options,
) -> io::Result<Report> {
    // The head record first: a running daemon that seals between the two reads then
    // shows a chain that goes on past its head (allowed with --allow-open), never a head
    // ahead of the chain it lists.
    let head_record = source.head_record();
    // The head record's (format 2) newest sequence and open segment; `None` unknown.
    let head_open: Option<(u64, Option<String>)> = match &head_record {
        Some(Ok(Some(bytes))) => super::head::Head::parse(bytes)
            .ok()
            .filter(super::head::Head::names_open_segment)
            .map(|h| (h.sequence, h.open)),
        _ => None,
    };
    let listing = source.list()?;
    let mut report = Report::default();
    let mut problems = Vec::new();
    let mut problem = |file: &str, kind: Kind, what: String| {
        problems.push(Problem {
            file: file.to_string(),
            kind,
            problem: what,
        })
    };
    if listing.segments.is_empty() && listing.digests.is_empty() {
        problem(
            &source.location(),
            Kind::NoArchive,
            "no archive: no segment and no digest here (a wrong path, or an archive sink that has not archived any event yet)".to_string(),
        );
    }
    // Every digest: parse, name, signature.
    let mut by_sequence: BTreeMap<u64, Found> = BTreeMap::new();
    let mut by_name: BTreeMap<String, (u64, String, Option<String>)> = BTreeMap::new();
    for name in &listing.digests {
        let bytes = match source.read(name) {
            Ok(b) => b,
            Err(e) => {
                problem(name, Kind::Unreadable, format!("unreadable ({e})"));
                continue;
            }
        };
        let digest = match Digest::parse(&bytes) {
            Ok(d) => d,
            Err(e) => {
                problem(name, Kind::Modified, format!("modified or truncated: {e}"));
                continue;
            }
        };
        match keys
            .iter()
            .find(|k| k.fingerprint() == digest.key_fingerprint)
        {
            None => problem(
                name,
                Kind::SignedByAnotherKey,
                format!(
                    "signed by another key ({}), not one given with --public-key",
                    digest.key_fingerprint
                ),
            ),
            Some(key) if !digest.signed_by(key) => problem(
                name,
                Kind::Modified,
                "modified: its signature does not match its content".to_string(),
            ),
            Some(_) => {}
        }
        let expected = digest.segments.first().map(|s| digest_name(&s.file));
        if sequence_of(name) != Some(digest.sequence) || expected.as_deref() != Some(name) {
            problem(
                name,
                Kind::Renamed,
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
                Kind::OutOfOrder,
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
                        Kind::OutOfOrder,
                        "out of order: says it is the first digest, but earlier ones exist"
                            .to_string(),
                    );
                }
            }
            None => problem(
                &found.name,
                Kind::ChainBroken,
                "the chain is broken: no previous digest named and not marked as the first"
                    .to_string(),
            ),
            // Digests swapped or renamed onto each other: the `renamed` problems say it.
            Some(prev) if prev.file == found.name => problem(
                &found.name,
                Kind::OutOfOrder,
                "out of order: it sits at the name of the digest it names as its predecessor (digests were swapped or renamed)".to_string(),
            ),
            Some(prev) => match by_name.get(&prev.file) {
                // There but unreadable or damaged: reported above.
                None if listing.digests.contains(&prev.file) => {}
                None => {
                    problem(
                        &prev.file,
                        Kind::Missing,
                        format!("missing: {} names it as the previous digest", found.name),
                    );
                    // A digest is named after the segment it seals: gone too, say so.
                    let sealed = segment_of_digest(&prev.file);
                    if !listing.segments.contains(&sealed) {
                        problem(
                            &sealed,
                            Kind::Missing,
                            format!(
                                "missing: the segment {} sealed (that digest is missing too)",
                                prev.file
                            ),
                        );
                    }
                }
                Some((sequence, sha256, signature)) => {
                    if *sha256 != prev.sha256 || signature.as_deref() != Some(&prev.signature) {
                        problem(
                            &prev.file,
                            Kind::Modified,
                            format!(
                                "modified: its hash or signature differs from what {} recorded",
                                found.name
                            ),
                        );
                    }
                    if *sequence + 1 != d.sequence {
                        problem(
                            &found.name,
                            Kind::OutOfOrder,
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
                problem(
                    &entry.file,
                    Kind::Missing,
                    format!("missing: listed in {}", found.name),
                );
                continue;
            }
            report.segments += 1;
            let scan = match source.scan(&entry.file) {
                Ok(s) => s,
                Err(e) => {
                    problem(&entry.file, Kind::Unreadable, format!("unreadable ({e})"));
                    continue;
                }
            };
            report.bytes += scan.uncompressed_bytes;
            report.events += scan.events;
            if let Some(why) = scan.problem {
                problem(
                    &entry.file,
                    Kind::Modified,
                    format!("modified or truncated: {why}"),
                );
            } else if scan.sha256 != entry.sha256
                || scan.uncompressed_bytes != entry.uncompressed_bytes
                || scan.events != entry.events
            {
                problem(
                    &entry.file,
                    Kind::Modified,
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
            } else if scan.file_len != entry.compressed_bytes
                || entry
                    .compressed_sha256
                    .as_ref()
                    .is_some_and(|h| *h != scan.file_sha256)
            {
                // Same content, other bytes: recompressed or rewritten, so not the file
                // that was sealed (and stored under Object Lock).
                problem(
                    &entry.file,
                    Kind::Modified,
                    format!(
                        "modified: the content is intact but the file is not the one {} recorded ({} bytes{}; now {} bytes, sha256 {}): recompressed or rewritten",
                        found.name,
                        entry.compressed_bytes,
                        entry
                            .compressed_sha256
                            .as_ref()
                            .map(|h| format!(", sha256 {h}"))
                            .unwrap_or_default(),
                        scan.file_len,
                        scan.file_sha256
                    ),
                );
            }
        }
    }
    // Segments no digest covers: only the next one in the chain may be open, and only
    // with --allow-open is that no problem.
    let next = by_sequence.keys().next_back().map_or(1, |s| s + 1);
    let mut next_seen = false;
    for name in &listing.segments {
        if covered.contains(name) {
            continue;
        }
        // The head record names the segment the sink has open: another one after the chain
        // was not written by it (a running daemon may have opened one since the record was
        // read, which --allow-open lets pass when the record names none).
        // (A segment not after the head's digest is one whose digest is missing: that is
        // reported as such.)
        let ours = match &head_open {
            Some((sealed, _)) if sequence_of(name).is_none_or(|s| s <= *sealed) => true,
            None => true,
            Some((_, Some(open))) => open == name,
            Some((_, None)) => options.allow_open,
        };
        if sequence_of(name) == Some(next) && !next_seen && ours {
            next_seen = true;
            if options.allow_open {
                report.open_segment = Some(name.clone());
            } else {
                problem(name, Kind::Unsealed, UNSEALED.to_string());
            }
        } else if sequence_of(name) == Some(next) && !ours {
            problem(
                name,
                Kind::Extra,
                "extra: a segment the sink did not have open (its head record names another or none), so it was not written by the sink and will not be sealed".to_string(),
            );
        } else {
            problem(
                name,
                Kind::Extra,
                "extra: no digest covers this segment".to_string(),
            );
        }
    }
    // The head record: the chain must reach the digest it names.
    if let Some(record) = head_record {
        check_head(record, keys, &by_sequence, options.allow_open, &mut problem);
    }
    // Nothing the sink writes: a note, a stray copy, an uncompressed "segment".
    if !(listing.segments.is_empty() && listing.digests.is_empty()) {
        for name in &listing.others {
            problem(
                name,
                Kind::Extra,
                "extra: not part of the archive (an archive holds only segments, digests and the sink's own lock and upload-progress files); move it out".to_string(),
            );
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

#[cfg(test)]
mod tests {
    use super::super::keys::{SigningKey, testing::write_key_pair};
    use super::super::writer::ArchiveWriter;
    use super::*;

    /// An archive of `sealed` sealed segments, plus an open one when `open`; the public key.
    fn archive(dir: &Path, sealed: u64, open: bool) -> (std::path::PathBuf, PublicKey) {
        let (private, public) = write_key_pair(dir, "k");
        let root = dir.join("archive");
        let key = SigningKey::from_pem_file(&private).unwrap();
        let (mut w, _) = ArchiveWriter::open(&root, key, 1 << 20).unwrap();
        for n in 0..sealed + u64::from(open) {
            w.append(format!("{{\"n\":{n}}}\n").as_bytes(), 1, None, None)
                .unwrap();
            if n < sealed {
                w.seal().unwrap();
            }
        }
        // Dropped without a seal: the open segment stays as a crash or a live daemon has it.
        drop(w);
        (root, PublicKey::from_pem_file(&public).unwrap())
    }

    const STRICT: Options = Options { allow_open: false };
    const LIVE: Options = Options { allow_open: true };

    fn check(root: &Path, key: &PublicKey, options: Options) -> Report {
        verify_dir(root, std::slice::from_ref(key), options).unwrap()
    }

    fn kinds(report: &Report) -> Vec<(String, Kind)> {
        report
            .problems
            .iter()
            .map(|p| (p.file.clone(), p.kind))
            .collect()
    }

    /// A head record behind the chain: an older one put back (here a new archive's
    /// sequence-0 record, valid for any archive of the key) is found; one seal behind is
    /// what a running daemon shows mid-seal, so only --allow-open lets that pass.
    #[test]
    fn a_head_record_behind_the_chain_is_stale() {
        use super::super::head::{self, HEAD_FILE, Head};
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let signing = SigningKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
        let listing = segment::list(&root).unwrap();
        let sha = |name: &str| {
            super::super::digest::sha256_hex(&std::fs::read(path_of(&root, name)).unwrap())
        };
        let stale = vec![(HEAD_FILE.to_string(), Kind::Modified)];
        head::write(&root, Head::new(0, "", ""), &signing).unwrap();
        assert_eq!(kinds(&check(&root, &key, STRICT)), stale);
        assert_eq!(kinds(&check(&root, &key, LIVE)), stale);
        let second = &listing.digests[1];
        head::write(&root, Head::new(2, second, &sha(second)), &signing).unwrap();
        assert_eq!(kinds(&check(&root, &key, STRICT)), stale);
        assert!(check(&root, &key, LIVE).ok);
    }

    /// The same content in other gzip bytes of the same size (here: another mtime in the
    /// gzip header) is not the sealed file.
    #[test]
    fn a_segment_with_other_gzip_bytes_of_the_same_size_is_modified() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, false);
        let listing = segment::list(&root).unwrap();
        let path = path_of(&root, &listing.segments[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let report = check(&root, &key, STRICT);
        assert_eq!(
            kinds(&report),
            vec![(listing.segments[0].clone(), Kind::Modified)]
        );
        assert!(
            report.problems[0]
                .problem
                .contains("recompressed or rewritten")
        );
    }

    /// A symbolic link (to an identical copy outside the archive) or a FIFO in place of a
    /// segment, a digest or the head record is a problem naming the file; a FIFO never
    /// makes `verify` wait for a writer.
    #[cfg(unix)]
    #[test]
    fn links_and_fifos_in_place_of_archive_files_are_problems() {
        use super::super::head::HEAD_FILE;
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, false);
        let listing = segment::list(&root).unwrap();
        let segment = listing.segments[0].clone();
        let digest = listing.digests[1].clone();
        let outside = dir.path().join("copy.ndjson.gz");
        std::fs::rename(path_of(&root, &segment), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, path_of(&root, &segment)).unwrap();
        let fifo = |path: &Path| {
            std::fs::remove_file(path).unwrap();
            let status = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        };
        fifo(&path_of(&root, &digest));
        fifo(&root.join(HEAD_FILE));
        let report = check(&root, &key, STRICT);
        let named = |file: &str, what: &str| {
            report
                .problems
                .iter()
                .any(|p| p.file == file && p.problem.contains(what))
        };
        assert!(!report.ok);
        assert!(named(&segment, "symbolic link"), "{}", report.render_text());
        assert!(named(&digest, "FIFO"), "{}", report.render_text());
        assert!(named(HEAD_FILE, "FIFO"), "{}", report.render_text());
    }

    #[test]
    fn a_sealed_archive_verifies_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let report = check(&root, &key, STRICT);
        assert!(report.ok, "{}", report.render_text());
        assert_eq!((report.digests, report.segments), (3, 3));
        assert_eq!(report.open_segment, None);
    }

    #[test]
    fn an_open_segment_is_a_problem_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, true);
        let open = segment::list(&root).unwrap().segments[2].clone();
        let strict = check(&root, &key, STRICT);
        assert_eq!(kinds(&strict), vec![(open.clone(), Kind::Unsealed)]);
        let text = strict.render_text();
        assert!(text.starts_with(&format!("{open}: not sealed")), "{text}");
        assert!(text.contains("--allow-open"), "{text}");
        assert!(text.contains("digest was removed"), "{text}");
        assert!(text.contains("FAILED"), "{text}");
        let live = check(&root, &key, LIVE);
        assert!(live.ok, "{}", live.render_text());
        assert_eq!(live.open_segment.as_deref(), Some(open.as_str()));
        assert!(live.render_text().contains("taken as the open segment"));
    }

    #[test]
    fn a_lone_open_segment_without_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 0, true);
        let open = segment::list(&root).unwrap().segments[0].clone();
        assert_eq!(
            kinds(&check(&root, &key, STRICT)),
            vec![(open, Kind::Unsealed)]
        );
        assert!(check(&root, &key, LIVE).ok);
    }

    #[test]
    fn the_newest_digest_deleted_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let listing = segment::list(&root).unwrap();
        std::fs::remove_file(path_of(&root, &listing.digests[2])).unwrap();
        let strict = check(&root, &key, STRICT);
        assert_eq!(
            kinds(&strict),
            vec![
                (listing.digests[2].clone(), Kind::Missing),
                (listing.segments[2].clone(), Kind::Unsealed)
            ]
        );
        // The head record names it: not taken for an open segment either.
        assert_eq!(
            kinds(&check(&root, &key, LIVE)),
            vec![(listing.digests[2].clone(), Kind::Missing)]
        );
    }

    /// The newest segment and its digest removed together leave a shorter chain that is
    /// valid on its own: the head record tells.
    #[test]
    fn the_newest_pair_deleted_is_found_through_the_head_record() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let listing = segment::list(&root).unwrap();
        std::fs::remove_file(path_of(&root, &listing.digests[2])).unwrap();
        std::fs::remove_file(path_of(&root, &listing.segments[2])).unwrap();
        for options in [STRICT, LIVE] {
            let report = check(&root, &key, options);
            assert_eq!(
                kinds(&report),
                vec![(listing.digests[2].clone(), Kind::Missing)],
                "{}",
                report.render_text()
            );
            assert!(report.render_text().contains("were removed"));
        }
        // Removing the record as well is a problem of its own.
        std::fs::remove_file(root.join(super::super::head::HEAD_FILE)).unwrap();
        assert_eq!(
            kinds(&check(&root, &key, STRICT)),
            vec![(super::super::head::HEAD_FILE.to_string(), Kind::Missing)]
        );
    }

    /// A head record edited (to hide a removal) no longer carries a valid signature.
    #[test]
    fn an_edited_head_record_is_modified() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, false);
        let path = root.join(super::super::head::HEAD_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"sequence\": 2", "\"sequence\": 1")).unwrap();
        let kinds = kinds(&check(&root, &key, STRICT));
        assert!(
            kinds.contains(&(super::super::head::HEAD_FILE.to_string(), Kind::Modified)),
            "{kinds:?}"
        );
    }

    #[test]
    fn the_only_digest_deleted_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 1, false);
        let listing = segment::list(&root).unwrap();
        std::fs::remove_file(path_of(&root, &listing.digests[0])).unwrap();
        let strict = check(&root, &key, STRICT);
        assert_eq!(
            kinds(&strict),
            vec![
                (listing.digests[0].clone(), Kind::Missing),
                (listing.segments[0].clone(), Kind::Unsealed)
            ]
        );
        assert_eq!(strict.digests, 0);
    }

    /// A running daemon's head record names its open segment: another segment under the
    /// same (next) sequence is extra even with --allow-open, and the real one passes.
    #[test]
    fn a_segment_planted_beside_the_open_one_is_extra() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, true);
        let open = segment::list(&root).unwrap().segments[2].clone();
        let planted = format!("{}0000000003-20991231T000000Z.ndjson.gz", &open[..11]);
        std::fs::copy(path_of(&root, &open), path_of(&root, &planted)).unwrap();
        let live = check(&root, &key, LIVE);
        assert_eq!(kinds(&live), vec![(planted, Kind::Extra)]);
        assert_eq!(live.open_segment.as_deref(), Some(open.as_str()));
    }

    #[test]
    fn a_copied_segment_named_next_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let first = segment::list(&root).unwrap().segments[0].clone();
        let copy = format!("{}0000000004-20991231T000000Z.ndjson.gz", &first[..11]);
        std::fs::copy(path_of(&root, &first), path_of(&root, &copy)).unwrap();
        // The head record names no open segment: not the sink's, so extra (not unsealed,
        // which a start would seal).
        assert_eq!(
            kinds(&check(&root, &key, STRICT)),
            vec![(copy.clone(), Kind::Extra)]
        );
        // Beside a real open segment, it is extra even with --allow-open.
        let second = copy.replace("0000000004-2099", "0000000005-2099");
        std::fs::copy(path_of(&root, &first), path_of(&root, &second)).unwrap();
        assert_eq!(
            kinds(&check(&root, &key, LIVE)),
            vec![(second, Kind::Extra)]
        );
    }

    /// Anything the sink does not write is reported; its own lock, upload progress and
    /// temp files are not.
    #[test]
    fn files_that_are_no_part_of_the_archive_are_extra() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 2, false);
        let first = segment::list(&root).unwrap().segments[0].clone();
        let day = &first[..10];
        for own in [
            super::super::writer::LOCK_FILE.to_string(),
            super::super::s3::upload::STATE_FILE.to_string(),
            format!("{}.tmp", super::super::s3::upload::STATE_FILE),
            format!("{}.tmp", digest_name(&first)),
        ] {
            std::fs::write(path_of(&root, &own), "x").unwrap();
        }
        assert!(check(&root, &key, STRICT).ok);
        let forged = format!("{day}/0000000003-20991231T000000Z.ndjson");
        for stray in [
            "notes.txt",
            ".hidden",
            "anything.digest.json.tmp",
            forged.as_str(),
        ] {
            std::fs::write(path_of(&root, stray), "{\"n\":1}\n").unwrap();
        }
        let report = check(&root, &key, STRICT);
        let mut expected = vec![
            (".hidden".to_string(), Kind::Extra),
            ("anything.digest.json.tmp".to_string(), Kind::Extra),
            (forged.clone(), Kind::Extra),
            ("notes.txt".to_string(), Kind::Extra),
        ];
        expected.sort();
        assert_eq!(kinds(&report), expected, "{}", report.render_text());
        assert!(report.render_text().contains("not part of the archive"));
    }

    /// The same content compressed again is not the file that was sealed.
    #[test]
    fn a_recompressed_segment_is_modified() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 1, false);
        let name = segment::list(&root).unwrap().segments[0].clone();
        let path = path_of(&root, &name);
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(&text).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let report = check(&root, &key, STRICT);
        assert_eq!(kinds(&report), vec![(name, Kind::Modified)]);
        assert!(
            report.render_text().contains("recompressed or rewritten"),
            "{}",
            report.render_text()
        );
    }

    /// A segment and its digest deleted from the middle: both named.
    #[test]
    fn a_deleted_middle_pair_names_both() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let listing = segment::list(&root).unwrap();
        std::fs::remove_file(path_of(&root, &listing.segments[1])).unwrap();
        std::fs::remove_file(path_of(&root, &listing.digests[1])).unwrap();
        let mut expected = vec![
            (listing.digests[1].clone(), Kind::Missing),
            (listing.segments[1].clone(), Kind::Missing),
        ];
        expected.sort();
        let report = check(&root, &key, STRICT);
        assert_eq!(kinds(&report), expected, "{}", report.render_text());
    }

    /// Two digests swapped: each is renamed, and no digest is called its own predecessor.
    #[test]
    fn swapped_digests_are_renamed_not_their_own_predecessors() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key) = archive(dir.path(), 3, false);
        let listing = segment::list(&root).unwrap();
        let (a, b) = (
            path_of(&root, &listing.digests[1]),
            path_of(&root, &listing.digests[2]),
        );
        let tmp = root.join("swap");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        let report = check(&root, &key, STRICT);
        let text = report.render_text();
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .filter(|p| p.kind == Kind::Renamed)
                .count()
                == 2,
            "{text}"
        );
        for p in &report.problems {
            assert!(
                !(p.problem.contains(" follows ") && p.problem.contains(&p.file)),
                "{text}"
            );
        }
    }

    #[test]
    fn an_empty_archive_is_a_problem_even_live() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = write_key_pair(dir.path(), "k");
        let key = PublicKey::from_pem_file(&public).unwrap();
        let root = dir.path().join("empty");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("notes.txt"), "not an archive").unwrap();
        for options in [STRICT, LIVE] {
            let report = check(&root, &key, options);
            assert_eq!(
                kinds(&report),
                vec![(root.display().to_string(), Kind::NoArchive)]
            );
            assert!(report.render_text().contains("no archive"));
        }
        let json = serde_json::to_value(check(&root, &key, STRICT)).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["problems"][0]["kind"], "no_archive");
    }
}
