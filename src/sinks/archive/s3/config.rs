//! The `[sinks.<id>.s3]` table of the archive sink: where sealed segments and digests are
//! uploaded (bucket, prefix, region, an optional S3-compatible endpoint), the Object Lock
//! retention to request, and how long uploaded segments stay on local disk. Only checks
//! that need no network; `check` probes the bucket.
//!
//! Holds no credentials: they come from the standard AWS chain ([`super::credentials`]),
//! so none can end up in a config file (other than through `${ENV}` in the environment
//! variables the chain reads).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::common::{ConfigError, TlsConfig, check_tls, de_duration, invalid, parse_url};

/// `[sinks.<id>.s3]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (it must exist; with `object_lock`, created with Object Lock enabled).
    pub bucket: String,
    /// Prepended to every object key, e.g. "prod/" (the archive's relative paths follow).
    /// A folder: "prod" is read as "prod/", as `verify s3://bucket/prod` reads it.
    #[serde(default, deserialize_with = "de_prefix")]
    pub prefix: String,
    /// The bucket's region, e.g. "eu-west-1" (part of every request's signature).
    pub region: String,
    /// Any S3-compatible service (path-style requests); default: AWS's regional endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Request this retention on every object (needs a bucket with Object Lock enabled).
    #[serde(default)]
    pub object_lock: Option<ObjectLock>,
    /// Local copies of uploaded (and confirmed) segments are removed this long after they
    /// were sealed; digests always stay (the writer links to the newest).
    #[serde(default = "default_keep_local", deserialize_with = "de_duration")]
    pub keep_local: Duration,
    /// TLS for the endpoint (a private CA for an on-premises S3-compatible store).
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_keep_local() -> Duration {
    Duration::from_secs(7 * 86_400)
}

/// `object_lock = { mode = "COMPLIANCE", retain_days = 400 }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub retain_days: u32,
}

/// The Object Lock retention mode, spelled as S3 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LockMode {
    /// Nobody, not even the account root, can delete the object or shorten its retention.
    #[serde(rename = "COMPLIANCE")]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can; everyone else cannot.
    #[serde(rename = "GOVERNANCE")]
    Governance,
}

impl LockMode {
    /// The header value (`x-amz-object-lock-mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// The longest retention accepted (100 years; S3 itself allows more, no audit rule asks it).
pub const MAX_RETAIN_DAYS: u32 = 36_500;

impl S3Config {
    /// Checks that need no network. `key` is the table, e.g. "sinks.evidence.s3".
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_bucket(&format!("{key}.bucket"), &self.bucket)?;
        if self.prefix.starts_with('/') {
            return Err(invalid(
                format!("{key}.prefix"),
                "must not start with `/` (object keys are relative to the bucket); write e.g. \"prod/\"",
            ));
        }
        if self.prefix.chars().any(char::is_control) || self.prefix.len() > 512 {
            return Err(invalid(
                format!("{key}.prefix"),
                "must be at most 512 bytes without control characters",
            ));
        }
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(invalid(
                format!("{key}.region"),
                "must be a region name such as \"eu-west-1\" (lowercase letters, digits, `-`)",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            let url = parse_url(&format!("{key}.endpoint"), endpoint)?;
            if url.query().is_some() || url.path() != "/" {
                return Err(invalid(
                    format!("{key}.endpoint"),
                    "must be the service's base URL without a path or query, e.g. \"https://s3.example.net\"",
                ));
            }
        }
        if let Some(lock) = &self.object_lock
            && !(1..=MAX_RETAIN_DAYS).contains(&lock.retain_days)
        {
            return Err(invalid(
                format!("{key}.object_lock.retain_days"),
                format!("must be between 1 and {MAX_RETAIN_DAYS}"),
            ));
        }
        check_tls(&format!("{key}.tls"), &self.tls)
    }

    /// The base URL requests go to, and whether the bucket is in the path (custom
    /// endpoints, and bucket names with dots, which a virtual-host TLS name can't carry).
    pub fn base_url(&self) -> Result<(Url, bool), String> {
        match &self.endpoint {
            Some(endpoint) => Url::parse(endpoint.trim())
                .map(|u| (u, true))
                .map_err(|e| e.to_string()),
            None if self.bucket.contains('.') => {
                Url::parse(&format!("https://s3.{}.amazonaws.com/", self.region))
                    .map(|u| (u, true))
                    .map_err(|e| e.to_string())
            }
            None => Url::parse(&format!(
                "https://{}.s3.{}.amazonaws.com/",
                self.bucket, self.region
            ))
            .map(|u| (u, false))
            .map_err(|e| e.to_string()),
        }
    }

    /// The object key of an archive file (its `/`-separated path below the archive root).
    pub fn object_key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// `prefix` as a folder: a `/` added unless it is empty or has one (else the keys would be
/// `prod2026/…`, which no `verify s3://bucket/prod` finds).
fn de_prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let mut prefix = String::deserialize(d)?;
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(prefix)
}

/// S3's bucket naming rules (general purpose buckets).
fn check_bucket(key: &str, bucket: &str) -> Result<(), ConfigError> {
    let chars_ok = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !chars_ok || !ends_ok || bucket.contains("..") {
        return Err(invalid(
            key,
            format!(
                "`{bucket}` is not a bucket name: 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<S3Config, String> {
        toml::from_str::<S3Config>(text).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
bucket = "veeam-audit"
prefix = "prod/"
region = "eu-west-1"
object_lock = { mode = "COMPLIANCE", retain_days = 400 }
keep_local = "7d"
"#;

    #[test]
    fn the_contract_parses() {
        let c = parse(GOOD).unwrap();
        c.validate("sinks.e.s3").unwrap();
        assert_eq!(c.object_lock.unwrap().mode, LockMode::Compliance);
        assert_eq!(c.object_lock.unwrap().retain_days, 400);
        assert_eq!(c.keep_local, Duration::from_secs(7 * 86_400));
        assert_eq!(
            c.object_key("2026/12/03/x.digest.json"),
            "prod/2026/12/03/x.digest.json"
        );
        let (url, path_style) = c.base_url().unwrap();
        assert_eq!(
            url.as_str(),
            "https://veeam-audit.s3.eu-west-1.amazonaws.com/"
        );
        assert!(!path_style);
    }

    /// A prefix is a folder, as `verify s3://bucket/prefix` reads it.
    #[test]
    fn a_prefix_without_its_slash_is_a_folder_all_the_same() {
        let c =
            parse("bucket = \"veeam-audit\"\nregion = \"eu-west-1\"\nprefix = \"prod\"").unwrap();
        assert_eq!(
            c.object_key("2026/x.digest.json"),
            "prod/2026/x.digest.json"
        );
        let c = parse("bucket = \"veeam-audit\"\nregion = \"eu-west-1\"").unwrap();
        assert_eq!(c.object_key("2026/x.digest.json"), "2026/x.digest.json");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "bucket = \"Bad_Bucket\"\nregion = \"eu-west-1\"",
                "sinks.e.s3.bucket",
            ),
            (
                "bucket = \"ok-bucket\"\nregion = \"EU west\"",
                "sinks.e.s3.region",
            ),
            (
                "bucket = \"ok-bucket\"\nregion = \"eu-west-1\"\nprefix = \"/x/\"",
                "sinks.e.s3.prefix",
            ),
            (
                "bucket = \"ok-bucket\"\nregion = \"eu-west-1\"\nendpoint = \"ftp://x\"",
                "sinks.e.s3.endpoint",
            ),
            (
                "bucket = \"ok-bucket\"\nregion = \"eu-west-1\"\nendpoint = \"https://x/y\"",
                "sinks.e.s3.endpoint",
            ),
            (
                "bucket = \"ok-bucket\"\nregion = \"eu-west-1\"\nobject_lock = { mode = \"COMPLIANCE\", retain_days = 0 }",
                "sinks.e.s3.object_lock.retain_days",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text)
                .unwrap()
                .validate("sinks.e.s3")
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_modes_and_keys_are_refused() {
        let e = parse("bucket = \"b-1\"\nregion = \"r\"\nobject_lock = { mode = \"compliance\", retain_days = 1 }")
            .unwrap_err();
        assert!(e.contains("COMPLIANCE"), "{e}");
        // No credential keys: they come from the AWS chain.
        let e = parse("bucket = \"b-1\"\nregion = \"r\"\naccess_key_id = \"x\"").unwrap_err();
        assert!(e.contains("access_key_id"), "{e}");
    }

    #[test]
    fn custom_endpoints_and_dotted_buckets_use_path_style() {
        let mut c = parse(GOOD).unwrap();
        c.endpoint = Some("http://127.0.0.1:9000".into());
        let (url, path_style) = c.base_url().unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/");
        assert!(path_style);
        c.endpoint = None;
        c.bucket = "audit.example.com".into();
        assert!(c.base_url().unwrap().1);
    }
}
