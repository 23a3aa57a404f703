//! The few S3 calls the archive needs, signed with [`super::sigv4`] on the shared reqwest
//! layer ([`crate::http`]: our rustls setup, no redirects, capped error bodies):
//! `PutObject` streamed from a file with `x-amz-checksum-sha256` and the Object Lock
//! headers, `HeadObject` to read size and retention back, `GetObjectLockConfiguration`
//! for `check`, and `ListObjectsV2` and a streamed `GetObject` for `verify s3://`.
//!
//! Must not: log credentials or signatures; follow a redirect (the shared client refuses).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, Response};
use url::Url;

use super::config::{LockMode, S3Config};
use super::credentials::CredentialChain;
use super::sigv4::{self, EMPTY_SHA256, Request, Signer, uri_encode};
use crate::http::{self, HttpError};

/// Timeout of a request without a body worth mentioning.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Upload time allowed per MiB on top of [`TIMEOUT`] (a 256 MiB segment: about 9 minutes).
const PER_MIB: Duration = Duration::from_secs(2);

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The store answered with an error (its `Code` and `Message` when it sent XML).
    #[error("{op} {target}: HTTP {status}: {message}")]
    Status {
        op: &'static str,
        target: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("{0}")]
    Other(String),
}

impl S3Error {
    /// The credentials were refused (wrong key, expired token): fetch them again.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            S3Error::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// What `HeadObject` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectHead {
    pub len: u64,
    pub lock_mode: Option<String>,
    pub retain_until: Option<DateTime<Utc>>,
    /// Base64 SHA-256, when the store keeps the checksum.
    pub checksum_sha256: Option<String>,
    /// When the object (version) was stored.
    pub last_modified: Option<DateTime<Utc>>,
}

/// A signed S3 client for one bucket.
pub struct S3Client {
    http: reqwest::Client,
    base: Url,
    path_style: bool,
    bucket: String,
    region: String,
    credentials: Arc<CredentialChain>,
}

impl S3Client {
    /// `key` names the config table in TLS errors (e.g. "sinks.evidence.s3.tls").
    pub fn new(
        key: &str,
        config: &S3Config,
        credentials: Arc<CredentialChain>,
    ) -> Result<S3Client, String> {
        let (base, path_style) = config.base_url()?;
        let http = http::build_client(&format!("{key}.tls"), &config.tls, TIMEOUT)
            .map_err(|e| e.to_string())?;
        Ok(S3Client {
            http,
            base,
            path_style,
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            credentials,
        })
    }

    /// Drop cached credentials: the next request resolves the chain again.
    pub fn forget_credentials(&self) {
        let chain = self.credentials.clone();
        tokio::spawn(async move { chain.invalidate().await });
    }

    /// The bucket's name, for messages.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The request path of `object` ("" for the bucket itself), before encoding.
    fn path(&self, object: &str) -> String {
        if self.path_style {
            format!("/{}/{object}", self.bucket)
        } else {
            format!("/{object}")
        }
    }

    /// Sign and send; `headers` are extra headers (all signed); `body` with its length.
    async fn send(
        &self,
        method: Method,
        object: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        payload_sha256: &str,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<Response, S3Error> {
        let timeout = body.as_ref().map(|(_, len)| transfer_timeout(*len));
        self.send_with(
            method,
            object,
            query,
            headers,
            payload_sha256,
            body,
            timeout,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        method: Method,
        object: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        payload_sha256: &str,
        body: Option<(reqwest::Body, u64)>,
        timeout: Option<Duration>,
    ) -> Result<Response, S3Error> {
        let path = self.path(object);
        let mut url = format!(
            "{}{}",
            self.base.as_str().trim_end_matches('/'),
            uri_encode(&path, true)
        );
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        uri_encode(k, false)
                    } else {
                        format!("{}={}", uri_encode(k, false), uri_encode(v, false))
                    }
                })
                .collect();
            url = format!("{url}?{}", q.join("&"));
        }
        let parsed = Url::parse(&url).map_err(|e| S3Error::Other(format!("{url}: {e}")))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(S3Error::Other(format!("{url} has no host"))),
        };
        let creds = self.credentials.get().await.map_err(S3Error::Other)?;
        let now = Utc::now();
        let amz_date = sigv4::amz_date(now);
        let mut signed: Vec<(&str, String)> = vec![
            ("host", host),
            ("x-amz-date", amz_date),
            ("x-amz-content-sha256", payload_sha256.to_string()),
        ];
        if let Some(token) = &creds.session_token {
            signed.push(("x-amz-security-token", token.expose().to_string()));
        }
        signed.extend(headers.iter().cloned());
        let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authorization = Signer {
            access_key_id: &creds.access_key_id,
            secret_access_key: &creds.secret_access_key,
            region: &self.region,
            service: "s3",
        }
        .authorization(
            &Request {
                method: method.as_str(),
                path: &path,
                query,
                headers: &pairs,
                payload_sha256,
            },
            now,
        );
        let mut req = self.http.request(method, parsed);
        for (k, v) in &signed {
            if *k != "host" {
                req = req.header(*k, v);
            }
        }
        req = req.header("authorization", authorization);
        if let Some((body, len)) = body {
            req = req.header("content-length", len).body(body);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req.send()
            .await
            .map_err(|e| S3Error::Http(http::transport_error(&url_for_log(&url), e)))
    }

    /// Upload the file at `file` as `object`. `sha256` is the file's SHA-256 (sent as the
    /// signed payload hash and as `x-amz-checksum-sha256`, so the store verifies it);
    /// `lock` asks for that retention. Ok only on HTTP 200.
    pub async fn put_file(
        &self,
        object: &str,
        file: &Path,
        len: u64,
        sha256: &[u8; 32],
        content_type: &str,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> Result<(), S3Error> {
        let handle = tokio::fs::File::open(file)
            .await
            .map_err(|e| S3Error::Other(format!("cannot open {}: {e}", file.display())))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle));
        let mut headers = vec![
            ("content-type", content_type.to_string()),
            ("x-amz-checksum-sha256", base64(sha256)),
            ("x-amz-sdk-checksum-algorithm", "SHA256".to_string()),
        ];
        if let Some((mode, until)) = lock {
            headers.push(("x-amz-object-lock-mode", mode.as_str().to_string()));
            headers.push((
                "x-amz-object-lock-retain-until-date",
                until.to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        let hex = super::super::hex::encode(sha256);
        let resp = self
            .send(Method::PUT, object, &[], &headers, &hex, Some((body, len)))
            .await?;
        expect_ok("PutObject", &self.target(object), resp)
            .await
            .map(|_| ())
    }

    /// `HeadObject`: size, retention and checksum as the store reports them.
    pub async fn head(&self, object: &str) -> Result<ObjectHead, S3Error> {
        let headers = [("x-amz-checksum-mode", "ENABLED".to_string())];
        let resp = self
            .send(Method::HEAD, object, &[], &headers, EMPTY_SHA256, None)
            .await?;
        let resp = expect_ok("HeadObject", &self.target(object), resp).await?;
        let h = resp.headers();
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(ObjectHead {
            len: text("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            lock_mode: text("x-amz-object-lock-mode"),
            retain_until: text("x-amz-object-lock-retain-until-date")
                .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&Utc)),
            checksum_sha256: text("x-amz-checksum-sha256"),
            last_modified: text("last-modified")
                .and_then(|v| DateTime::parse_from_rfc2822(&v).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }

    /// `ListObjectsV2` of every key under `prefix` with its size (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        use super::credentials::xml_text;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let resp = self
                .send(Method::GET, "", &query, &[], EMPTY_SHA256, None)
                .await?;
            let target = format!("s3://{}/{prefix}", self.bucket);
            let resp = expect_ok("ListObjectsV2", &target, resp).await?;
            // 1000 keys of at most 1 KiB each, plus their metadata.
            let body = http::read_body_capped(&target, resp, 4 << 20).await?;
            let body = String::from_utf8_lossy(&body);
            for item in body.split("<Contents>").skip(1) {
                let key = xml_text(item, "Key");
                let size = xml_text(item, "Size").and_then(|s| s.parse().ok());
                match (key, size) {
                    (Some(k), Some(n)) => out.push((k, n)),
                    _ => {
                        return Err(S3Error::Other(format!(
                            "ListObjectsV2 {target}: an entry without Key or Size"
                        )));
                    }
                }
            }
            let truncated = xml_text(&body, "IsTruncated").is_some_and(|v| v == "true");
            token = xml_text(&body, "NextContinuationToken");
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// `ListObjectVersions` of `prefix`: the keys whose newest version is a delete marker
    /// (a plain `DeleteObject` on a versioned bucket, Object Lock's included: the locked
    /// versions stay, hidden behind the marker). All pages.
    pub async fn deleted_keys(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        use super::credentials::xml_text;
        let mut out = Vec::new();
        let mut markers: Option<(String, Option<String>)> = None;
        let target = format!("s3://{}/{prefix}", self.bucket);
        for _ in 0..100_000 {
            let mut query = vec![("versions", ""), ("prefix", prefix)];
            if let Some((key, version)) = &markers {
                query.push(("key-marker", key.as_str()));
                if let Some(v) = version {
                    query.push(("version-id-marker", v.as_str()));
                }
            }
            let resp = self
                .send(Method::GET, "", &query, &[], EMPTY_SHA256, None)
                .await?;
            let resp = expect_ok("ListObjectVersions", &target, resp).await?;
            let body = http::read_body_capped(&target, resp, 8 << 20).await?;
            let body = String::from_utf8_lossy(&body);
            for item in body.split("<DeleteMarker>").skip(1) {
                let item = item.split("</DeleteMarker>").next().unwrap_or_default();
                if xml_text(item, "IsLatest").is_some_and(|v| v == "true")
                    && let Some(key) = xml_text(item, "Key")
                {
                    out.push(key);
                }
            }
            let truncated = xml_text(&body, "IsTruncated").is_some_and(|v| v == "true");
            let next_key = xml_text(&body, "NextKeyMarker");
            match (truncated, next_key) {
                (true, Some(key)) => {
                    markers = Some((key, xml_text(&body, "NextVersionIdMarker")));
                }
                _ => return Ok(out),
            }
        }
        Err(S3Error::Other(format!(
            "ListObjectVersions {target}: did not end after 100000 pages"
        )))
    }

    /// `GetObject`: the response, its body still to be read (streamed); `len` (as listed)
    /// sets the timeout.
    pub async fn get(&self, object: &str, len: u64) -> Result<Response, S3Error> {
        let resp = self.send_timed(Method::GET, object, len).await?;
        expect_ok("GetObject", &self.target(object), resp).await
    }

    async fn send_timed(
        &self,
        method: Method,
        object: &str,
        len: u64,
    ) -> Result<Response, S3Error> {
        self.send_with(
            method,
            object,
            &[],
            &[],
            EMPTY_SHA256,
            None,
            Some(transfer_timeout(len)),
        )
        .await
    }

    /// `GetObjectLockConfiguration`: whether Object Lock is enabled on the bucket.
    pub async fn object_lock_enabled(&self) -> Result<bool, S3Error> {
        let resp = self
            .send(
                Method::GET,
                "",
                &[("object-lock", "")],
                &[],
                EMPTY_SHA256,
                None,
            )
            .await?;
        if resp.status().as_u16() == 404 {
            let body = http::read_body_prefix(resp, http::ERROR_EXCERPT_BYTES).await;
            let body = String::from_utf8_lossy(&body);
            if body.contains("ObjectLockConfigurationNotFound") {
                return Ok(false);
            }
            return Err(S3Error::Status {
                op: "GetObjectLockConfiguration",
                target: format!("s3://{}", self.bucket),
                status: 404,
                message: xml_error(&body),
            });
        }
        let resp = expect_ok(
            "GetObjectLockConfiguration",
            &format!("s3://{}", self.bucket),
            resp,
        )
        .await?;
        let body = http::read_body_prefix(resp, 64 * 1024).await;
        Ok(
            super::credentials::xml_text(&String::from_utf8_lossy(&body), "ObjectLockEnabled")
                .is_some_and(|v| v == "Enabled"),
        )
    }

    fn target(&self, object: &str) -> String {
        format!("s3://{}/{object}", self.bucket)
    }
}

/// The time allowed for a request moving `len` bytes.
fn transfer_timeout(len: u64) -> Duration {
    TIMEOUT + PER_MIB * u32::try_from(len >> 20).unwrap_or(u32::MAX)
}

/// The URL without its query (which could carry a presigned signature, never ours, but
/// the rule is the same everywhere).
fn url_for_log(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

async fn expect_ok(op: &'static str, target: &str, resp: Response) -> Result<Response, S3Error> {
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(resp);
    }
    if resp.status().is_redirection() {
        // Said like every other client of ours says it: where to, and why not followed
        // (a bucket in another region answers 301 with the endpoint to use, and AWS names
        // the bucket's region in `x-amz-bucket-region`).
        let region = resp
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 40
                    && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .map(|r| format!(" (the store says the bucket is in `{r}`)"))
            .unwrap_or_default();
        return Err(S3Error::Status {
            op,
            target: target.to_string(),
            status,
            message: match http::redirect_error(target, &resp) {
                HttpError::Redirect { location, .. } => format!(
                    "a redirect to {location}; redirects are not followed (they would carry the signed request wherever the store points): for a 301, set the bucket's own `region`{region} (or `endpoint`)"
                ),
                other => format!("{other}{region}"),
            },
        });
    }
    let body = http::read_body_prefix(resp, http::ERROR_EXCERPT_BYTES).await;
    let body = String::from_utf8_lossy(&body);
    Err(S3Error::Status {
        op,
        target: target.to_string(),
        status,
        message: if body.trim().is_empty() {
            "(no body)".to_string()
        } else {
            xml_error(&body)
        },
    })
}

/// `Code: Message` of an S3/STS XML error body, or an excerpt of whatever came.
pub fn xml_error(body: &str) -> String {
    use super::credentials::xml_text;
    match (xml_text(body, "Code"), xml_text(body, "Message")) {
        // Through `excerpt` too: a store or proxy may quote our request (its session
        // token) in its message, and the message has no length limit of its own.
        (Some(code), Some(message)) => http::excerpt(&format!("{code}: {message}"), 300),
        (Some(code), None) => http::excerpt(&code, 300),
        _ => http::excerpt(body, 300),
    }
}

/// Standard base64 with padding (for `x-amz-checksum-sha256`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    /// A bucket in another region: the redirect is refused, and the region the store names
    /// is passed on (a header that is not a region name is not).
    #[tokio::test]
    async fn a_redirect_names_the_region_the_store_gives() {
        let answer = |region: &str| {
            reqwest::Response::from(
                ::http::Response::builder()
                    .status(301)
                    .header("location", "https://b.s3.us-west-2.amazonaws.com/k")
                    .header("x-amz-bucket-region", region)
                    .body("")
                    .unwrap(),
            )
        };
        let shown = |e: S3Error| e.to_string();
        let said = shown(
            expect_ok("PutObject", "s3://b/k", answer("us-west-2"))
                .await
                .unwrap_err(),
        );
        assert!(said.contains("not followed"), "{said}");
        assert!(said.contains("bucket is in `us-west-2`"), "{said}");
        let said = shown(
            expect_ok("PutObject", "s3://b/k", answer("<x> y"))
                .await
                .unwrap_err(),
        );
        assert!(!said.contains("bucket is in"), "{said}");
    }

    #[test]
    fn an_echoed_session_token_is_hidden_and_the_message_cut() {
        let token = crate::secret::Secret::new("SessTokSecret987654ABCDEF");
        let body = format!(
            "<Error><Code>AccessDenied</Code><Message>headers: x-amz-security-token: {} {}</Message></Error>",
            token.expose(),
            "x".repeat(600)
        );
        let shown = xml_error(&body);
        assert!(!shown.contains(token.expose()), "{shown}");
        assert!(shown.contains("x-amz-security-token: ***"), "{shown}");
        assert!(shown.chars().count() <= 301, "{}", shown.len());
    }

    #[test]
    fn xml_errors_are_summarised() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist.</Message></Error>";
        assert_eq!(
            xml_error(body),
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist."
        );
    }
}
