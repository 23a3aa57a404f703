//! The archive's head record, `<path>/.veeam-siem-head.json`: the newest digest's
//! sequence, file and SHA-256, signed like a digest. The writer replaces it (atomically,
//! fsynced) after every seal and refuses to extend a chain shorter than it; `verify`
//! compares the chain with it. So removing the newest digests and segments together,
//! which leaves a shorter chain that is valid on its own, is found.
//!
//! What it can't show: a head copied back from an earlier time together with the files it
//! matched, or anything done by someone holding the signing key. Keep an external record
//! of the newest digest for that (README, "Compliance archive"). Only the local archive
//! has a head: on S3, Object Lock keeps every version, and `verify` reports objects hidden
//! behind a delete marker.

use std::io::{self, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::digest::canonical;
use super::keys::{PublicKey, SigningKey};
use crate::durable::{self, PRIVATE_FILE};

/// The head record's file name, in the archive root.
pub const HEAD_FILE: &str = ".veeam-siem-head.json";
/// The format name written into the record. Records of format 2 also name the open
/// segment; format 1 (earlier versions) is still read.
pub const FORMAT: &str = "veeam-siem-archive-head/2";
const FORMAT_1: &str = "veeam-siem-archive-head/1";
/// Signed before the canonical JSON, so a digest's signature can't pass for a head's.
const SIGNING_CONTEXT: &[u8] = b"veeam-siem-archive-head/1\n";
/// Largest head file read (a real one is about 400 bytes).
const MAX_BYTES: u64 = 64 * 1024;

/// The newest digest when the record was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub format: String,
    pub sequence: u64,
    /// The digest's path relative to the archive root.
    pub digest: String,
    /// SHA-256 (hex) of the digest file's bytes.
    pub digest_sha256: String,
    pub written: DateTime<Utc>,
    /// The segment the writer has open (path relative to the archive root), if any: the
    /// only one a restart after a crash may seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<String>,
    pub key_fingerprint: String,
    /// Hex Ed25519 signature over [`Head::signed_bytes`]; absent in the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Head {
    /// An unsigned record naming `digest`.
    pub fn new(sequence: u64, digest: &str, digest_sha256: &str) -> Head {
        Head {
            format: FORMAT.to_string(),
            sequence,
            digest: digest.to_string(),
            digest_sha256: digest_sha256.to_string(),
            written: Utc::now(),
            open: None,
            key_fingerprint: String::new(),
            signature: None,
        }
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        canonical(SIGNING_CONTEXT, &unsigned)
    }

    pub fn sign(&mut self, key: &SigningKey) {
        self.key_fingerprint = key.public().fingerprint().to_string();
        self.signature = None;
        self.signature = Some(key.sign_hex(&self.signed_bytes()));
    }

    /// Whether `key` signed this record as it is.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verifies_hex(
            &self.key_fingerprint,
            &self.signed_bytes(),
            self.signature.as_deref(),
        )
    }

    pub fn parse(bytes: &[u8]) -> Result<Head, String> {
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| format!("not a head record ({e})"))?;
        if head.format != FORMAT && head.format != FORMAT_1 {
            return Err(format!(
                "unknown head format `{}` (this version reads {FORMAT})",
                head.format
            ));
        }
        Ok(head)
    }

    /// Whether the record names the open segment (format 2): if not, any segment after
    /// the chain may be one a crash left open.
    pub fn names_open_segment(&self) -> bool {
        self.format == FORMAT
    }
}

/// The head record's bytes, `None` when there is none.
pub fn read(root: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match crate::durable::open_regular(&root.join(HEAD_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_BYTES} bytes, far more than a head record"),
        ));
    }
    Ok(Some(bytes))
}

/// Sign `head` with `key` and replace the record: a temp file, fsynced, renamed over it,
/// the directory fsynced.
pub fn write(root: &Path, mut head: Head, key: &SigningKey) -> io::Result<()> {
    head.sign(key);
    let mut bytes = serde_json::to_vec_pretty(&head).map_err(io::Error::other)?;
    bytes.push(b'\n');
    durable::replace_file(&root.join(HEAD_FILE), &bytes, PRIVATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::super::keys::testing::write_key_pair;
    use super::*;

    #[test]
    fn a_written_head_reads_back_signed_and_a_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = write_key_pair(dir.path(), "k");
        let key = SigningKey::from_pem_file(&private).unwrap();
        let public = PublicKey::from_pem_file(&public).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(
            dir.path(),
            Head::new(7, "2026/12/03/x.digest.json", "ab"),
            &key,
        )
        .unwrap();
        let bytes = read(dir.path()).unwrap().unwrap();
        let head = Head::parse(&bytes).unwrap();
        assert_eq!(
            (head.sequence, head.digest.as_str()),
            (7, "2026/12/03/x.digest.json")
        );
        assert!(head.signed_by(&public));
        let mut changed = head.clone();
        changed.sequence = 6;
        assert!(!changed.signed_by(&public));
        assert!(Head::parse(b"{}").is_err());
    }
}
