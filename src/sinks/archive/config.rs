//! The archive sink's config (`type = "archive"`): the directory, the signing key file,
//! how often and at what size a segment is sealed, the optional `s3` upload table
//! (`s3::S3Config`), and the checks that need no network.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::keys::SigningKey;
use super::s3::S3Config;
use crate::config::common::{ConfigError, de_duration, invalid};

/// `type = "archive"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSinkConfig {
    pub inputs: Vec<String>,
    /// The archive directory (segments and digests below it, by date).
    pub path: PathBuf,
    /// Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    pub signing_key_file: PathBuf,
    /// Seal the open segment at least this often.
    #[serde(default = "default_rotate_interval", deserialize_with = "de_duration")]
    pub rotate_interval: Duration,
    /// Seal the open segment once it holds this many uncompressed bytes.
    #[serde(default = "default_max_segment_bytes")]
    pub max_segment_bytes: u64,
    /// `[sinks.<id>.s3]`: upload sealed segments and digests to S3 (see `s3`).
    #[serde(default)]
    pub s3: Option<S3Config>,
}

fn default_rotate_interval() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_segment_bytes() -> u64 {
    256 * 1024 * 1024
}

impl ArchiveSinkConfig {
    /// Checks that need no network; the key file is read and must be an Ed25519 key.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(format!("{key}.path"), "must not be empty"));
        }
        if self.rotate_interval < Duration::from_secs(1) {
            return Err(invalid(
                format!("{key}.rotate_interval"),
                "must be at least 1s",
            ));
        }
        if !(1024..=(64u64 << 30)).contains(&self.max_segment_bytes) {
            return Err(invalid(
                format!("{key}.max_segment_bytes"),
                "must be between 1024 and 68719476736 (64 GiB)",
            ));
        }
        if let Some(s3) = &self.s3 {
            s3.validate(&format!("{key}.s3"))?;
        }
        self.signing_key(key).map(|_| ())
    }

    /// The signing key; errors name `<key>.signing_key_file` and never show the key.
    pub fn signing_key(&self, key: &str) -> Result<SigningKey, ConfigError> {
        SigningKey::from_pem_file(&self.signing_key_file)
            .map_err(|e| invalid(format!("{key}.signing_key_file"), e))
    }
}
