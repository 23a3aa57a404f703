//! The digest file (`*.digest.json`): what one sealed segment contained, the link to the
//! previous digest, and the Ed25519 signature over a canonical form of all of it.
//!
//! The canonical form is the compact JSON of [`Digest`] without `signature`, fields in
//! declaration order, prefixed by [`SIGNING_CONTEXT`]; the signature covers every field,
//! including the previous digest's file name, hash and signature, so the digests form a
//! chain (as CloudTrail's digest files do). `previous.sha256` is over the previous digest
//! file's exact bytes. The first digest of an archive has `first = true` and no
//! `previous`; any other digest without a `previous` is a broken chain.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::hex;
use super::keys::{PublicKey, SigningKey};

/// Largest digest file read (a real one is about 1 KiB): a planted or corrupted huge
/// `*.digest.json` is reported as not a digest, never loaded whole into memory (by `verify`,
/// locally or from S3, nor by the writer reopening the archive).
pub const MAX_DIGEST_BYTES: u64 = 1 << 20;

/// Read a digest file, refusing one larger than [`MAX_DIGEST_BYTES`].
pub fn read_digest_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    crate::durable::open_regular(path)?
        .take(MAX_DIGEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DIGEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_DIGEST_BYTES} bytes, far more than any digest"),
        ));
    }
    Ok(bytes)
}

/// The format name written into every digest.
pub const FORMAT: &str = "veeam-siem-archive-digest/1";
/// Signed before the canonical JSON, so a signature can't be replayed for another use.
pub const SIGNING_CONTEXT: &[u8] = b"veeam-siem-archive-digest/1\n";

/// One digest: one sealed segment and its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub format: String,
    /// Position in the chain: 1 for the first digest, then +1 per digest.
    pub sequence: u64,
    /// The first digest of this archive (nothing came before it).
    pub first: bool,
    /// When the segment was opened and sealed (the digest's time range).
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// The segments this digest covers (one per digest, see the module docs of `archive`).
    pub segments: Vec<SegmentEntry>,
    pub previous: Option<PreviousDigest>,
    /// Set when the segment was left open by a crash and sealed at the next start.
    pub recovered: Option<Recovery>,
    /// `sha256:<hex>` of the signing key's SPKI DER.
    pub key_fingerprint: String,
    /// Hex Ed25519 signature over [`Digest::signed_bytes`]; absent in the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A segment as sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// Path relative to the archive root, `/`-separated.
    pub file: String,
    /// SHA-256 (hex) of the uncompressed content: the NDJSON lines as delivered.
    pub sha256: String,
    pub uncompressed_bytes: u64,
    pub compressed_bytes: u64,
    /// SHA-256 (hex) of the segment file's bytes as sealed (the gzip members): the same
    /// content compressed again is another file. Absent in digests of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_sha256: Option<String>,
    pub events: u64,
    pub first_timestamp: Option<DateTime<Utc>>,
    pub last_timestamp: Option<DateTime<Utc>>,
}

/// The link to the digest before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousDigest {
    pub file: String,
    /// SHA-256 (hex) of the previous digest file's bytes.
    pub sha256: String,
    /// The previous digest's signature (hex).
    pub signature: String,
}

/// What crash recovery did to the segment before sealing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Bytes of an incomplete last batch cut off (never acknowledged, so re-sent).
    pub truncated_bytes: u64,
    pub note: String,
}

impl Digest {
    /// What the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        canonical(SIGNING_CONTEXT, &unsigned)
    }

    /// Sign with `key` (sets `key_fingerprint` and `signature`).
    pub fn sign(&mut self, key: &SigningKey) {
        self.key_fingerprint = key.public().fingerprint().to_string();
        self.signature = None;
        self.signature = Some(key.sign_hex(&self.signed_bytes()));
    }

    /// Whether `key` signed this digest as it is.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verifies_hex(
            &self.key_fingerprint,
            &self.signed_bytes(),
            self.signature.as_deref(),
        )
    }

    /// The file's bytes (pretty JSON, newline-terminated).
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a digest serializes");
        out.push(b'\n');
        out
    }

    /// Parse a digest file.
    pub fn parse(bytes: &[u8]) -> Result<Digest, String> {
        let digest: Digest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a digest ({e})"))?;
        if digest.format != FORMAT {
            return Err(format!(
                "unknown digest format `{}` (this verifier reads {FORMAT})",
                digest.format
            ));
        }
        Ok(digest)
    }
}

/// The signed form of an archive record: `context`, then the record's compact JSON
/// (fields in declaration order, its signature left out by the caller).
pub(super) fn canonical<T: Serialize>(context: &[u8], unsigned: &T) -> Vec<u8> {
    let mut out = context.to_vec();
    // Structs of strings, numbers and times always serialize.
    out.extend(serde_json::to_vec(unsigned).expect("an archive record serializes"));
    out
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::super::keys::testing::write_key_pair;
    use super::*;

    #[test]
    fn a_huge_digest_file_is_refused_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.digest.json");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(read_digest_file(&small).unwrap(), b"{}");
        let huge = dir.path().join("huge.digest.json");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_DIGEST_BYTES * 64).unwrap();
        let err = read_digest_file(&huge).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    fn sample() -> Digest {
        let t = "2026-12-03T10:00:00Z".parse().unwrap();
        Digest {
            format: FORMAT.into(),
            sequence: 2,
            first: false,
            start_time: t,
            end_time: t,
            segments: vec![SegmentEntry {
                file: "2026/12/03/0000000002-20261203T100000Z.ndjson.gz".into(),
                sha256: sha256_hex(b"x\n"),
                uncompressed_bytes: 2,
                compressed_bytes: 22,
                compressed_sha256: None,
                events: 1,
                first_timestamp: Some(t),
                last_timestamp: Some(t),
            }],
            previous: Some(PreviousDigest {
                file: "a.digest.json".into(),
                sha256: sha256_hex(b"a"),
                signature: "00".into(),
            }),
            recovered: None,
            key_fingerprint: String::new(),
            signature: None,
        }
    }

    #[test]
    fn every_field_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = write_key_pair(dir.path(), "k");
        let key = SigningKey::from_pem_file(&private).unwrap();
        let public = PublicKey::from_pem_file(&public).unwrap();
        let mut d = sample();
        d.sign(&key);
        let parsed = Digest::parse(&d.to_file_bytes()).unwrap();
        assert_eq!(parsed, d);
        assert!(parsed.signed_by(&public));
        let tampered: [fn(&mut Digest); 6] = [
            |d| d.sequence += 1,
            |d| d.first = true,
            |d| d.segments[0].events += 1,
            |d| d.segments[0].sha256 = sha256_hex(b"y\n"),
            |d| d.previous.as_mut().unwrap().file = "b.digest.json".into(),
            |d| {
                d.recovered = Some(Recovery {
                    truncated_bytes: 1,
                    note: String::new(),
                })
            },
        ];
        for change in tampered {
            let mut t = parsed.clone();
            change(&mut t);
            assert!(!t.signed_by(&public), "{t:?}");
        }
    }

    #[test]
    fn another_key_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = write_key_pair(dir.path(), "a");
        let (_, b_pub) = write_key_pair(dir.path(), "b");
        let mut d = sample();
        d.sign(&SigningKey::from_pem_file(&a).unwrap());
        assert!(!d.signed_by(&PublicKey::from_pem_file(&b_pub).unwrap()));
    }

    #[test]
    fn foreign_files_are_refused() {
        assert!(Digest::parse(b"{}").is_err());
        let mut d = sample();
        d.format = "other/9".into();
        let e = Digest::parse(&d.to_file_bytes()).unwrap_err();
        assert!(e.contains("other/9"), "{e}");
    }
}
