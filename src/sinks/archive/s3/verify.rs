//! `veeam-siem verify s3://bucket/prefix`: the same checks and report as for a directory
//! ([`crate::sinks::archive::verify`]), reading the objects under the prefix: digests
//! whole, segments streamed through the checker (constant memory). With
//! `--check-retention DAYS`, every object must also carry an Object Lock retention that
//! ends at least DAYS after it was stored.
//!
//! The bucket's region comes from `AWS_REGION` (or `AWS_DEFAULT_REGION`, else us-east-1),
//! an S3-compatible endpoint from `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`), a private
//! CA from `AWS_CA_BUNDLE`; credentials from the usual chain ([`super::credentials`]).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::runtime::Handle;

use super::client::S3Client;
use super::config::S3Config;
use super::credentials::CredentialChain;
use crate::config::common::TlsConfig;
use crate::sinks::archive::segment::{self, DIGEST_SUFFIX, Listing, SEGMENT_SUFFIX, Scan};
use crate::sinks::archive::verify::{self, ArchiveSource, Kind, Options, Problem};

/// `s3://bucket/prefix` → (bucket, prefix); the prefix gets a trailing `/` when it has none.
pub fn parse_location(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_string(), prefix))
}

/// The bucket under a prefix, read from a blocking thread through `handle`.
struct Bucket {
    /// `s3://bucket/prefix`, as given.
    location: String,
    handle: Handle,
    client: S3Client,
    prefix: String,
    /// Sizes as listed, by relative name.
    sizes: BTreeMap<String, u64>,
}

impl Bucket {
    fn object(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl ArchiveSource for Bucket {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list(&self) -> io::Result<Listing> {
        let mut out = Listing::default();
        for name in self.sizes.keys() {
            if name.ends_with(SEGMENT_SUFFIX) {
                out.segments.push(name.clone());
            } else if name.ends_with(DIGEST_SUFFIX) {
                out.digests.push(name.clone());
            } else {
                // The sink uploads only segments and digests: anything else is extra.
                out.others.push(name.clone());
            }
        }
        Ok(out)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let len = self.sizes.get(name).copied().unwrap_or(0);
        self.handle.block_on(async {
            let resp = self
                .client
                .get(&self.object(name), len)
                .await
                .map_err(io::Error::other)?;
            crate::http::read_body_capped(
                name,
                resp,
                crate::sinks::archive::digest::MAX_DIGEST_BYTES as usize,
            )
            .await
            .map(|b| b.to_vec())
            .map_err(io::Error::other)
        })
    }

    fn scan(&self, name: &str) -> io::Result<Scan> {
        let len = self.sizes.get(name).copied().unwrap_or(0);
        let resp = self
            .handle
            .block_on(self.client.get(&self.object(name), len))
            .map_err(io::Error::other)?;
        let body = Body {
            handle: self.handle.clone(),
            resp,
            chunk: Bytes::new(),
        };
        segment::scan_reader(body, len, false)
    }
}

/// A response body as a blocking reader.
struct Body {
    handle: Handle,
    resp: reqwest::Response,
    chunk: Bytes,
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.resp.chunk()) {
                Ok(Some(c)) => self.chunk = c,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// The S3 settings `verify` takes from the environment (see the module docs).
fn settings(bucket: String, prefix: String) -> S3Config {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    S3Config {
        bucket,
        prefix,
        region: var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string()),
        endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
        object_lock: None,
        keep_local: std::time::Duration::ZERO,
        tls: TlsConfig {
            ca_file: var("AWS_CA_BUNDLE").map(PathBuf::from),
            insecure_skip_verify: false,
        },
    }
}

/// `verify s3://…`: the exit code (0 intact, 1 any problem, 2 usage or access errors).
/// `options` as for a directory: the uploader sends a segment before its digest, so with
/// `--allow-open` the segment whose digest is not uploaded yet counts as the open one.
pub async fn run(
    location: &str,
    key_files: &[PathBuf],
    json: bool,
    check_retention_days: Option<u32>,
    options: Options,
) -> u8 {
    let keys = match verify::load_keys(key_files) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let Some((bucket, prefix)) = parse_location(location) else {
        eprintln!("error: {location} is not s3://BUCKET[/PREFIX]");
        return 2;
    };
    let config = settings(bucket, prefix);
    if let Err(e) = config.validate("verify") {
        eprintln!("error: {location}: {e}");
        return 2;
    }
    let client = CredentialChain::from_env(&config.region)
        .and_then(|c| S3Client::new("verify", &config, Arc::new(c)));
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let listed = match client.list(&config.prefix).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot list {location}: {e}");
            return 2;
        }
    };
    let sizes: BTreeMap<String, u64> = listed
        .into_iter()
        .filter_map(|(k, n)| k.strip_prefix(&config.prefix).map(|r| (r.to_string(), n)))
        .collect();
    let names: Vec<String> = sizes.keys().cloned().collect();
    let source = Bucket {
        location: location.to_string(),
        handle: Handle::current(),
        client,
        prefix: config.prefix.clone(),
        sizes,
    };
    let checked = tokio::task::spawn_blocking(move || {
        let report = verify::verify_archive(&source, &keys, options);
        (report, source)
    })
    .await;
    let (report, source) = match checked {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read {location}: {e}");
            return 2;
        }
    };
    // Object Lock keeps versions, not keys: a plain delete hides the newest objects behind
    // delete markers, and the chain listed is then shorter but valid on its own.
    match source.client.deleted_keys(&source.prefix).await {
        Ok(deleted) => {
            for name in deleted
                .iter()
                .filter_map(|k| k.strip_prefix(&source.prefix))
                .filter(|n| n.ends_with(SEGMENT_SUFFIX) || n.ends_with(DIGEST_SUFFIX))
            {
                report.problems.push(Problem {
                    file: name.to_string(),
                    kind: Kind::Missing,
                    problem: "missing: deleted (its newest version is a delete marker; locked versions are still in the bucket, see `aws s3api list-object-versions`)".to_string(),
                });
            }
            report.problems.sort();
            report.ok = report.problems.is_empty();
        }
        Err(e) => eprintln!(
            "warning: cannot look for deleted objects in {location} (ListObjectVersions: {e}); objects deleted behind a delete marker would not be found. Grant s3:ListBucketVersions to check for them"
        ),
    }
    if let Some(days) = check_retention_days {
        for name in names
            .iter()
            .filter(|n| n.ends_with(SEGMENT_SUFFIX) || n.ends_with(DIGEST_SUFFIX))
        {
            if let Some(problem) = retention_problem(&source, name, days).await {
                report.problems.push(Problem {
                    file: name.clone(),
                    kind: Kind::Retention,
                    problem,
                });
            }
        }
        report.problems.sort();
        report.ok = report.problems.is_empty();
    }
    verify::print_report(&report, json)
}

/// Why `name`'s retention is shorter than `days` after it was stored, if it is.
async fn retention_problem(source: &Bucket, name: &str, days: u32) -> Option<String> {
    let head = match source.client.head(&source.object(name)).await {
        Ok(h) => h,
        Err(e) => return Some(format!("cannot read its retention: {e}")),
    };
    let stored: DateTime<Utc> = head.last_modified.unwrap_or_else(Utc::now);
    let wanted = stored + TimeDelta::days(i64::from(days));
    // The uploader sets the date before the upload starts, so it falls short of
    // `stored + days` by the upload's duration: an hour of slack, not more (one day would
    // pass a retention a day too short).
    match (head.lock_mode, head.retain_until) {
        (Some(_), Some(until)) if until + TimeDelta::hours(1) >= wanted => None,
        (Some(mode), Some(until)) => Some(format!(
            "retention too short: {mode} until {until}, less than {days} days after it was stored ({stored})"
        )),
        _ => Some(format!(
            "no Object Lock retention (wanted at least {days} days)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("s3://b/prod"),
            Some(("b".into(), "prod/".into()))
        );
        assert_eq!(parse_location("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(
            parse_location("s3://b/a/b/"),
            Some(("b".into(), "a/b/".into()))
        );
        assert_eq!(parse_location("s3:///x"), None);
        assert_eq!(parse_location("/var/lib/x"), None);
    }
}
