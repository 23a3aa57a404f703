//! The one HTTP layer shared by sources and sinks: client construction and retry policy.
//!
//! Owns: TLS setup (system roots + an optional CA file, or an explicit, warned-about
//! "insecure" mode; [`rustls_client_config`] also serves the syslog sink's TLS mode, with
//! an optional client certificate), timeouts, and [`send_with_retry`]: exponential backoff
//! with jitter (backon), `Retry-After` honoured, a cap on attempts, and the classification of what is
//! worth retrying (5xx, 408, 429, timeouts, connection errors) and what is not (other 4xx,
//! which the caller turns into an actionable error). 401 is returned to the caller, which
//! knows how to re-authenticate.
//!
//! Redirects are never followed: a 3xx answer is [`HttpError::Redirect`], permanent,
//! naming where it pointed (without userinfo or query). Following one would re-send the
//! `x-api-key` header, a re-POSTed password or a batch of events to whatever host the
//! server names (reqwest strips only `Authorization` and cookies on a host change).
//!
//! Must not: log request bodies or headers (they carry secrets).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use reqwest::{Response, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::common::{TlsConfig, read_certs, redact_userinfo, warn_if_insecure};

/// An HTTP failure, with the URL (never credentials) and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url} answered HTTP {status}{}", fmt_body(body))]
    Status {
        url: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    /// The server's certificate was rejected: retrying can't help, configuration can.
    #[error(
        "the TLS certificate of {url} is not accepted ({message}); {}",
        certificate_fix(message)
    )]
    Certificate { url: String, message: String },
    /// The connection was refused in a way retrying can't change: a proxy that wants
    /// credentials (407 to CONNECT), a server that speaks no TLS version we accept.
    #[error("request to {url} failed: {message}")]
    Refused { url: String, message: String },
    #[error("unexpected response from {url}: {message}")]
    Decode { url: String, message: String },
    #[error("TLS setup for {key} failed: {message}")]
    Tls { key: String, message: String },
    /// The body grew past the cap set for it: a hostile or broken server (or a proxy's
    /// endless error page). The request is not retried as is; the caller may ask for less.
    #[error(
        "the response from {url} is larger than {limit} bytes; refusing to read more (a broken server or proxy?)"
    )]
    TooLarge { url: String, limit: usize },
    /// A 3xx answer: redirects are not followed (they could carry credentials or events to
    /// another host). `location` is shown without userinfo and query.
    #[error(
        "{url} answered HTTP {status}, a redirect to {location}; redirects are not followed (they would carry credentials or events to wherever the server points): configure the final URL instead"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
}

/// What to do about a rejected certificate, by what was wrong with it.
fn certificate_fix(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("not valid for name") || m.contains("notvalidforname") {
        "the certificate was issued for other host names: use one of them in the URL (or have the certificate reissued with this name)"
    } else if m.contains("expired") {
        "the certificate has expired (or this machine's clock is wrong): have it renewed"
    } else if m.contains("not valid yet") || m.contains("notvalidyet") {
        "the certificate is not valid yet: check this machine's clock and the server's"
    } else {
        "set tls.ca_file to the server's CA or self-signed certificate (or, for testing only, tls.insecure_skip_verify = true)"
    }
}

fn fmt_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => is_retryable_status(*status),
            HttpError::Transport { .. } => true,
            HttpError::Decode { .. }
            | HttpError::Tls { .. }
            | HttpError::Certificate { .. }
            | HttpError::Refused { .. }
            | HttpError::TooLarge { .. }
            | HttpError::Redirect { .. } => false,
        }
    }
}

pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// How a component retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is capped (a server asking for an hour should not
    /// freeze a poller that long; the next attempt will just be told again).
    pub max_retry_after: Duration,
    /// The waits of one request's retries add up to at most this: past it the request
    /// fails with its last error (its caller retries on its own terms: a sink's batch is
    /// delivered again, a source polls again). Without it eight `Retry-After`s of two
    /// minutes kept a `--once` run 16 minutes on one request.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            max_total_wait: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// The waits between attempts: exponential with jitter, `max_retries` of them, none
    /// longer than `max_delay` (backon adds its jitter after its own cap, up to twice it).
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let cap = self.max_delay;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
            .build()
            .map(move |delay| delay.min(cap))
    }
}

/// Build a reqwest client with our TLS rules; it never follows redirects (see the module
/// docs). `key` names the config table for errors.
pub fn build_client(
    key: &str,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<reqwest::Client, HttpError> {
    build(key, tls, timeout, false)
}

/// [`build_client`] for reading the Veeam APIs: it also asks for compressed answers
/// (`Accept-Encoding: gzip`; JSON pages shrink about tenfold) and reads them decompressed,
/// as it does an answer a proxy compressed unasked. Body caps ([`read_body_capped`]) count
/// the decompressed bytes. Sinks and the S3 client don't: what they read back (an archive
/// segment, for one) must stay the bytes that were stored.
pub fn build_api_client(
    key: &str,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<reqwest::Client, HttpError> {
    build(key, tls, timeout, true)
}

fn build(
    key: &str,
    tls: &TlsConfig,
    timeout: Duration,
    gzip: bool,
) -> Result<reqwest::Client, HttpError> {
    let config = rustls_client_config(key, tls, None)?;
    let mut builder = reqwest::Client::builder();
    if no_proxy_for_any_host() {
        builder = builder.no_proxy();
    }
    builder
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .gzip(gzip)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("veeam-siem/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpError::Tls {
            key: key.to_string(),
            message: e.to_string(),
        })
}

/// A client certificate chain and its private key, both PEM files (mutual TLS).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertFiles<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// The rustls client configuration every TLS client of ours uses (HTTPS and syslog/TLS):
/// ring provider, safe protocol versions, system roots plus `tls.ca_file`, or any
/// certificate when `tls.insecure_skip_verify`; optionally a client certificate.
/// `key` names the config table (e.g. "sinks.siem.tls") in errors.
pub fn rustls_client_config(
    key: &str,
    tls: &TlsConfig,
    client_cert: Option<ClientCertFiles<'_>>,
) -> Result<rustls::ClientConfig, HttpError> {
    let tls_err = |message: String| HttpError::Tls {
        key: key.to_string(),
        message,
    };
    warn_if_insecure(key, tls.insecure_skip_verify);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Individual broken system certs are not our problem; skip them.
            let _ = roots.add(cert);
        }
        let mut pinned = Vec::new();
        if let Some(ca) = &tls.ca_file {
            for cert in read_certs(ca).map_err(|m| tls_err(format!("ca_file {m}")))? {
                roots
                    .add(cert.clone())
                    .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?;
                pinned.push(cert);
            }
        }
        if roots.is_empty() {
            // No system roots and no `ca_file`: every certificate is refused at the handshake,
            // with an error that says to set `ca_file`.
            builder.with_root_certificates(roots)
        } else {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| tls_err(e.to_string()))?;
            // webpki, plus trust in `ca_file`'s own certificates even when marked as a CA.
            let verifier = crate::pinned_cert::CaFileVerifier::new(webpki, pinned);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(files) => {
            let chain = read_certs(files.cert_file)
                .map_err(|m| tls_err(format!("client_cert_file {m}")))?;
            let private_key = PrivateKeyDer::from_pem_file(files.key_file).map_err(|e| {
                tls_err(format!(
                    "client_key_file {}: no usable PEM private key ({e}); expected \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"",
                    files.key_file.display()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|e| {
                    tls_err(format!(
                        "client_cert_file {} / client_key_file {}: {e}; check that the key belongs to the certificate",
                        files.cert_file.display(),
                        files.key_file.display()
                    ))
                })
        }
    }
}

/// `insecure_skip_verify`: trust any certificate, but still check handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Parse `Retry-After` (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date (the wait until
/// then; none for a date already past). Anything else counts as "1 s".
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    Some(parse_retry_after(value, chrono::Utc::now()))
}

fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 syntax.
    match chrono::DateTime::parse_from_rfc2822(value) {
        Ok(at) => (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
        Err(_) => Duration::from_secs(1),
    }
}

/// Bytes of an error body read for its excerpt; the rest is never read (an endless error
/// page must not grow memory).
pub const ERROR_EXCERPT_BYTES: usize = 4 * 1024;

/// After a failed body read: how long to pause before sending the request again, or `None`
/// when it must not be. A transport error (the connection broke, or stalled past the
/// timeout, after the status line) is answered by sending again, up to
/// `policy.max_retries` times per request (`failures` counts them), 200 ms longer each
/// time; any other error (a body over its cap) is final. Only for requests that are safe
/// to repeat (GETs, token grants).
fn resend_pause(error: &HttpError, failures: &mut u32, policy: &RetryPolicy) -> Option<Duration> {
    if !matches!(error, HttpError::Transport { .. }) || *failures >= policy.max_retries {
        return None;
    }
    *failures += 1;
    Some(Duration::from_millis(200 * u64::from(*failures)))
}

/// A request safe to repeat (a GET, a token grant) whose whole body is wanted, at most
/// `limit` bytes of it. `send` sends the request, with whatever its caller needs around
/// [`send_with_retry`] (a token renewed after a 401, another path after a 404), and
/// returns the URL to name in messages (without secrets) with the answer. A body that
/// breaks off after the status line is asked for again (see [`resend_pause`]); a body over
/// its cap is final (`fail` turns it into the caller's error), as is every error of
/// `send`. A `204 No Content` answer reads as `no_content`.
pub async fn fetch_body<E, F, Fut>(
    policy: &RetryPolicy,
    limit: usize,
    no_content: &'static [u8],
    mut send: F,
    fail: impl Fn(HttpError) -> E,
) -> Result<(String, bytes::Bytes), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(String, Response), E>>,
{
    let mut failures = 0u32;
    loop {
        let (url, resp) = send().await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok((url, bytes::Bytes::from_static(no_content)));
        }
        let error = match read_body_capped(&url, resp, limit).await {
            Ok(body) => return Ok((url, body)),
            Err(error) => error,
        };
        let Some(pause) = resend_pause(&error, &mut failures, policy) else {
            return Err(fail(error));
        };
        tracing::warn!(url, error = %error, "response body interrupted; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// Fetch a body with `fetch` until `parse` can read it. A body that is not what was asked
/// for at all (a proxy's HTML page with status 200, a page cut short without the transport
/// noticing) is asked for again with the policy's backoff and `max_retries`, as a 5xx is,
/// before it counts as failed: then `fail` gets an [`HttpError::Decode`] naming the URL,
/// what `parse` said and how many attempts were made. Errors of `fetch` are final.
pub async fn fetch_parsed<T, E, F, Fut>(
    policy: &RetryPolicy,
    mut fetch: F,
    mut parse: impl FnMut(&str, &[u8]) -> Result<T, String>,
    fail: impl Fn(HttpError) -> E,
) -> Result<(String, T), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(String, bytes::Bytes), E>>,
{
    let mut delays = policy.delays();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (url, body) = fetch().await?;
        let message = match parse(&url, &body) {
            Ok(parsed) => return Ok((url, parsed)),
            Err(message) => message,
        };
        let Some(delay) = delays.next() else {
            return Err(fail(HttpError::Decode {
                url,
                message: format!("{message} (still after {attempt} attempts)"),
            }));
        };
        tracing::warn!(url, attempt, delay_ms = delay.as_millis() as u64, error = %message, "unreadable page; requesting it again");
        tokio::time::sleep(delay).await;
    }
}

/// Most a body buffer is sized to up front from the answer's `Content-Length` (the rest
/// grows as it arrives, so a length that lies costs at most this).
const PRESIZE_MAX: u64 = 16 * 1024 * 1024;

/// Read a response body, failing with [`HttpError::TooLarge`] as soon as it passes
/// `limit` bytes, so a hostile or broken server can't grow memory without bound.
/// A body cut short is a [`HttpError::Transport`] error (safe to request again).
pub async fn read_body_capped(
    url: &str,
    mut resp: Response,
    limit: usize,
) -> Result<bytes::Bytes, HttpError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(HttpError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    // Sized from the declared length (up to 16 MiB): a 2 MB page is then copied once
    // instead of into buffers doubling from 8 KB (~1 % of a VB365 run's instructions).
    let declared = resp.content_length().unwrap_or(0);
    let mut body = bytes::BytesMut::with_capacity(declared.min(PRESIZE_MAX) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(url, e))? {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    undeclared_gzip(url, body.freeze(), limit)
}

/// A body that starts with gzip's magic bytes although its answer declared no encoding (a
/// proxy that dropped `Content-Encoding`, or compressed without saying so): no JSON or text
/// answer starts with those bytes, so it is decompressed, within the same `limit`. One that
/// doesn't decompress is returned as it came (the caller reports what it got).
fn undeclared_gzip(url: &str, body: bytes::Bytes, limit: usize) -> Result<bytes::Bytes, HttpError> {
    use std::io::Read;
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(body);
    }
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Ok(_) if out.len() > limit => Err(HttpError::TooLarge {
            url: url.to_string(),
            limit,
        }),
        Ok(_) => {
            tracing::debug!(
                url,
                "the answer was gzip-compressed without saying so; read decompressed"
            );
            Ok(out.into())
        }
        Err(_) => Ok(body),
    }
}

/// At most `limit` bytes of a body, then stop reading (no error: used for excerpts).
pub async fn read_body_prefix(mut resp: Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// Turn a non-success response into an [`HttpError::Status`], reading a short body excerpt
/// (at most [`ERROR_EXCERPT_BYTES`] are read), or into [`HttpError::Redirect`] for a 3xx
/// (whose body is not read).
pub async fn status_error(url: &str, resp: Response) -> HttpError {
    if resp.status().is_redirection() {
        return redirect_error(url, &resp);
    }
    let status = resp.status().as_u16();
    let retry_after = retry_after(&resp);
    let body = read_body_prefix(resp, ERROR_EXCERPT_BYTES).await;
    let mut body = error_excerpt(&body);
    if status == 407 {
        // Proxy Authentication Required: the proxy's page says little; say which proxy.
        body = proxy_hint(url, Some(407)).unwrap_or_else(|| {
            "proxy authentication required (a proxy on the way wants credentials)".to_string()
        });
    }
    HttpError::Status {
        url: url.to_string(),
        status,
        body,
        retry_after,
    }
}

/// A 3xx answer as [`HttpError::Redirect`], its `Location` resolved against `url` and shown
/// without userinfo, query or fragment.
pub fn redirect_error(url: &str, resp: &Response) -> HttpError {
    let location = match resp.headers().get(reqwest::header::LOCATION) {
        None => "(no Location header)".to_string(),
        Some(value) => match value.to_str() {
            Err(_) => "(an unreadable Location header)".to_string(),
            Ok(text) => shown_location(resp.url(), text),
        },
    };
    HttpError::Redirect {
        url: url.to_string(),
        status: resp.status().as_u16(),
        location,
    }
}

/// Where a `Location` points, safe to print: no userinfo, no query, no fragment (they
/// may hold credentials or signed tokens).
fn shown_location(base: &reqwest::Url, location: &str) -> String {
    match base.join(location.trim()) {
        Ok(mut target) => {
            let had_query = target.query().is_some();
            let _ = target.set_username("");
            let _ = target.set_password(None);
            target.set_query(None);
            target.set_fragment(None);
            let mut shown = target.to_string();
            if had_query {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => {
            let text = redact_userinfo(location.trim());
            let text = text.split(['?', '#']).next().unwrap_or_default();
            format!("`{}` (not a valid URL)", excerpt(text, 200))
        }
    }
}

/// `text` as one URL path segment: every byte but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, so an id from the network with `/ ? # % \\`
/// in it stays one segment of the path it was meant for. (`.` and `..` alone still read
/// as dot segments to any URL parser: no encoding can address them, so the mapping
/// refuses such ids, `map::wire_checks::Fields::path_id`.)
pub fn path_segment(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if text.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The excerpt of an error answer: [`excerpt`] of its first 300 chars, except that a JSON
/// answer longer than that stays JSON, its long strings shortened, so that callers can still
/// read its fields (`error_description`, `code`, ...) instead of a cut-off document.
/// Secrets are redacted before anything is cut, so no part of one survives a cut.
pub fn error_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = crate::secret::redact(&String::from_utf8_lossy(body)).into_owned();
    if text.chars().count() > MAX
        && let Ok(mut value @ serde_json::Value::Object(_)) = serde_json::from_str(&text)
    {
        for longest in [200, 100, 50, 20] {
            shorten_strings(&mut value, longest);
            let compact = value.to_string();
            if compact.chars().count() <= MAX {
                return excerpt(&compact, MAX);
            }
        }
    }
    excerpt(&text, MAX)
}

/// Cut every string in `value` to at most `longest` chars (with `…`).
fn shorten_strings(value: &mut serde_json::Value, longest: usize) {
    match value {
        serde_json::Value::String(s) if s.chars().count() > longest => {
            let mut cut: String = s.chars().take(longest.saturating_sub(1)).collect();
            cut.push('…');
            *s = cut;
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| shorten_strings(v, longest))
        }
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(|v| shorten_strings(v, longest))
        }
        _ => {}
    }
}

/// First `max` chars of a body, on one line, with any secret of ours the server echoed
/// replaced by `***` ([`crate::secret::redact`]).
pub fn excerpt(body: &str, max: usize) -> String {
    let body = crate::secret::redact(body);
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if body.chars().count() > max {
        format!("{}…", one_line.trim_end())
    } else {
        one_line.trim().to_string()
    }
}

/// The proxy a request to `url` goes through, shown without userinfo, and the variable that
/// set it: reqwest reads `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` (as curl
/// does), and this asks the same matcher.
pub fn proxy_for(url: &str) -> Option<String> {
    if no_proxy_for_any_host() {
        return None;
    }
    let uri: http::Uri = url.parse().ok()?;
    let proxy = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)?;
    let shown = redact_userinfo(&proxy.uri().to_string());
    let shown = shown.trim_end_matches('/');
    let var = match uri.scheme_str() {
        Some("https") => "HTTPS_PROXY",
        _ => "HTTP_PROXY",
    };
    Some(format!(
        "the proxy {shown} (from {var} or ALL_PROXY; NO_PROXY lists the hosts that bypass it)"
    ))
}

/// `NO_PROXY=*` (or `no_proxy`): no proxy for any host, as curl reads it (the matcher
/// behind reqwest applies `*` to host names but not to IP addresses).
fn no_proxy_for_any_host() -> bool {
    ["NO_PROXY", "no_proxy"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| v.trim() == "*"))
}

/// The proxy variables that are set but can't be used (reqwest then ignores them and
/// connects directly, which a user behind a mandatory proxy would never guess): one line
/// each, naming the variable, never its value (it may hold credentials).
pub fn unusable_proxy_variables() -> Vec<String> {
    let mut out = Vec::new();
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let problem = if value.trim() != value {
            Some("it has spaces around it")
        } else {
            match reqwest::Url::parse(&value) {
                Err(_) => Some("it is not a URL (write http://host:port)"),
                Ok(u) if !matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {
                    Some("its scheme is not http, https, socks5 or socks5h")
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it names no host"),
                Ok(_) => None,
            }
        };
        if let Some(problem) = problem {
            out.push(format!(
                "{var} is set but can't be used ({problem}): requests do not go through it; fix or unset it"
            ));
        }
    }
    out
}

/// What to add to an error when a proxy was on the way: which one, and what to check.
fn proxy_hint(url: &str, status: Option<u16>) -> Option<String> {
    let proxy = proxy_for(url)?;
    Some(match status {
        Some(407) => format!(
            "{proxy} wants credentials: put them in the proxy URL (http://user:password@host:port)"
        ),
        _ => format!(
            "sent through {proxy}: check that it is reachable and lets this connection through, or add the host to NO_PROXY"
        ),
    })
}

pub fn transport_error(url: &str, err: reqwest::Error) -> HttpError {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    // The root cause (e.g. TLS "invalid peer certificate") is deep in the source chain.
    let mut chain = String::new();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if chain.to_ascii_lowercase().contains("certificate") {
        return HttpError::Certificate {
            url: url.to_string(),
            message: chain.trim_start_matches(": ").to_string(),
        };
    }
    let mut message = format!("{kind}: {}{chain}", err.without_url());
    // A CONNECT refused with 407 (an https URL through a proxy) surfaces as a tunnel error.
    let refused_407 = chain
        .contains("proxy authorization required")
        .then_some(407);
    if let Some(hint) = proxy_hint(url, refused_407) {
        message.push_str("; ");
        message.push_str(&hint);
    }
    let old_tls = chain.contains("ProtocolVersion") || chain.contains("protocol version");
    if old_tls {
        message.push_str(
            "; the server offers no TLS version accepted here (TLS 1.2 or 1.3): enable TLS 1.2+ on it",
        );
    }
    if refused_407.is_some() || old_tls {
        return HttpError::Refused {
            url: url.to_string(),
            message,
        };
    }
    HttpError::Transport {
        url: url.to_string(),
        message,
    }
}

/// Send a request built by `make` until it succeeds, fails for good, or retries run out.
///
/// `make` is called once per attempt (a request can't be re-sent). Successful (2xx)
/// responses are returned; every other outcome is an [`HttpError`]. Retryable failures
/// are retried with backoff, waiting at least `Retry-After` when the server sends one.
pub async fn send_with_retry<F, Fut>(
    policy: &RetryPolicy,
    url: &str,
    mut make: F,
) -> Result<Response, HttpError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, reqwest::Error>>,
{
    let mut delays = policy.delays();
    let mut attempt = 0u32;
    let mut waited = Duration::ZERO;
    loop {
        attempt += 1;
        let sent = make().await;
        crate::metrics::global()
            .http_response(url, sent.as_ref().ok().map(|r| r.status().as_u16()));
        let err = match sent {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => status_error(url, resp).await,
            Err(e) => transport_error(url, e),
        };
        if !err.is_retryable() {
            return Err(err);
        }
        let Some(mut delay) = delays.next() else {
            return Err(err);
        };
        if let HttpError::Status {
            retry_after: Some(ra),
            ..
        } = &err
        {
            delay = delay.max((*ra).min(policy.max_retry_after));
        }
        waited = waited.saturating_add(delay);
        if waited > policy.max_total_wait {
            tracing::warn!(url, attempt, error = %err, max_total_wait_s = policy.max_total_wait.as_secs(), "request failed; not retrying it any longer (its retries would wait past the cap)");
            return Err(err);
        }
        tracing::warn!(
            url,
            attempt,
            delay_ms = delay.as_millis() as u64,
            error = %err,
            "request failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// True for 401 Unauthorized.
pub fn is_unauthorized(err: &HttpError) -> bool {
    err.status() == Some(StatusCode::UNAUTHORIZED.as_u16())
}

#[cfg(test)]
mod tests {
    /// `retry_max_delay` caps every wait, jitter included.
    #[test]
    fn no_delay_passes_the_cap() {
        let policy = super::RetryPolicy {
            max_retries: 40,
            min_delay: std::time::Duration::from_millis(100),
            max_delay: std::time::Duration::from_secs(2),
            ..super::RetryPolicy::default()
        };
        let delays: Vec<_> = policy.delays().collect();
        assert_eq!(delays.len(), 40);
        assert!(delays.iter().all(|d| *d <= policy.max_delay), "{delays:?}");
    }

    /// A long JSON error stays JSON, so its reason can still be read; a short one and a
    /// non-JSON one are cut as before.
    #[test]
    fn a_long_json_error_answer_keeps_its_fields() {
        use super::error_excerpt;
        let long = format!(
            "{{\"error\":\"invalid_grant\",\"error_description\":\"{}\"}}",
            "D".repeat(1000)
        );
        let shown = error_excerpt(long.as_bytes());
        assert!(shown.chars().count() <= 300, "{shown}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(parsed["error"], "invalid_grant");
        assert!(
            parsed["error_description"]
                .as_str()
                .unwrap()
                .starts_with("DDDD")
        );
        assert_eq!(error_excerpt(b"{\"code\":9}"), "{\"code\":9}");
        let html = format!("<html>{}</html>", "x".repeat(1000));
        assert_eq!(error_excerpt(html.as_bytes()).chars().count(), 301);
    }

    #[test]
    fn ids_stay_one_path_segment() {
        use super::path_segment;
        assert_eq!(path_segment("6f1c-AB_9.x~"), "6f1c-AB_9.x~");
        assert_eq!(path_segment("sess?x=1"), "sess%3Fx%3D1");
        assert_eq!(path_segment("a/b#c%2F\\d"), "a%2Fb%23c%252F%5Cd");
        assert_eq!(path_segment("é space"), "%C3%A9%20space");
        let url = reqwest::Url::parse(&format!(
            "https://vbo.example.net/v8/RestoreSessions/{}/Events",
            path_segment("x/../y?z#w")
        ))
        .unwrap();
        assert_eq!(url.path(), "/v8/RestoreSessions/x%2F..%2Fy%3Fz%23w/Events");
        assert_eq!(url.query(), None);
    }

    use super::*;

    #[test]
    fn a_rejected_certificate_gets_the_fix_for_what_is_wrong() {
        assert!(certificate_fix("invalid peer certificate: NotValidForName").contains("host name"));
        assert!(certificate_fix("invalid peer certificate: Expired").contains("renewed"));
        assert!(certificate_fix("certificate not valid yet").contains("clock"));
        assert!(certificate_fix("invalid peer certificate: UnknownIssuer").contains("tls.ca_file"));
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Duration::from_secs(7));
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 10:00:20 GMT", now),
            Duration::from_secs(20)
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now),
            Duration::ZERO
        );
        assert_eq!(parse_retry_after("soon", now), Duration::from_secs(1));
    }

    #[test]
    fn excerpt_is_bounded_and_single_line() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt(&"x".repeat(500), 5), "xxxxx…");
    }

    #[test]
    fn client_certificates_are_loaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ours = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert = write("cert.pem", ours.cert.pem());
        let key = write("key.pem", ours.signing_key.serialize_pem());
        let wrong_key = write("other.pem", other.serialize_pem());
        let tls = TlsConfig::default();
        let files = |key_file| ClientCertFiles {
            cert_file: &cert,
            key_file,
        };
        let config = rustls_client_config("sinks.s.tls", &tls, Some(files(&key))).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        let e = rustls_client_config("sinks.s.tls", &tls, Some(files(&wrong_key)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sinks.s.tls") && e.contains("belongs"), "{e}");
        let e = rustls_client_config("sinks.s.tls", &tls, Some(files(&cert)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("client_key_file"), "{e}");
    }

    #[test]
    fn shown_locations_hide_userinfo_and_query() {
        let base = reqwest::Url::parse("https://vbo.example.net:4443/v8/token").unwrap();
        for (location, want) in [
            (
                "http://u:Pw-1@other.example:81/x?sig=Q-1#f",
                "http://other.example:81/x?…",
            ),
            ("/v8/elsewhere", "https://vbo.example.net:4443/v8/elsewhere"),
            ("//thief:Pw-1@evil.example/p", "https://evil.example/p"),
            (
                "http://u:Pw-1@bad host/?q=Q-1",
                "`http://***@bad host/` (not a valid URL)",
            ),
        ] {
            let shown = shown_location(&base, location);
            assert_eq!(shown, want, "{location}");
            assert!(!shown.contains("Pw-1") && !shown.contains("Q-1"), "{shown}");
        }
    }

    /// Every 3xx is an error at once, naming the target; the target gets nothing.
    #[tokio::test]
    async fn redirects_are_errors_never_followed() {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let other = axum::Router::new().fallback(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { "stolen" }
        });
        let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other_listener.local_addr().unwrap();
        let other_task = tokio::spawn(async move {
            let _ = axum::serve(other_listener, other).await;
        });
        let target = format!("http://k:Pw-2@{other_addr}/steal?key=Q-2");
        let app =
            axum::Router::new().fallback(move || {
                let target = target.clone();
                async move {
                    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, target)]).into_response()
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = build_client("test", &TlsConfig::default(), Duration::from_secs(5)).unwrap();
        let url = format!("http://{addr}/v8/token");
        let policy = RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::default()
        };
        let err = send_with_retry(&policy, &url, || {
            client.post(&url).body("password=Pw-3").send()
        })
        .await
        .unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("308") && text.contains(&format!("http://{other_addr}/steal?…")),
            "{text}"
        );
        assert!(text.contains("final URL"), "{text}");
        for secret in ["Pw-2", "Q-2", "Pw-3"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "the other host got a request"
        );
        task.abort();
        other_task.abort();
    }

    #[test]
    fn only_a_broken_connection_is_answered_by_sending_again() {
        let policy = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        let broken = HttpError::Transport {
            url: "u".into(),
            message: "reset".into(),
        };
        let mut failures = 0;
        assert_eq!(
            resend_pause(&broken, &mut failures, &policy),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            resend_pause(&broken, &mut failures, &policy),
            Some(Duration::from_millis(400))
        );
        assert_eq!(resend_pause(&broken, &mut failures, &policy), None);
        let too_large = HttpError::TooLarge {
            url: "u".into(),
            limit: 1,
        };
        assert_eq!(resend_pause(&too_large, &mut 0, &policy), None);
    }

    /// Answers compressed with `Content-Encoding: gzip` (asked for with `Accept-Encoding`,
    /// and sent by some proxies anyway) are read decompressed, and the body cap counts the
    /// decompressed bytes: a small compressed bomb is refused, not inflated in memory. The
    /// same for a compressed body whose answer doesn't say so.
    #[tokio::test]
    async fn gzip_answers_are_read_and_capped_after_decompression() {
        use axum::http::{HeaderMap, header};
        use axum::response::IntoResponse;
        use std::io::Write;
        let gz = |raw: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        };
        let page = gz(br#"{"results":[{"id":"a"}]}"#);
        let bomb = gz(&vec![b' '; 8 * 1024 * 1024]);
        let (undeclared, undeclared_bomb) = (page.clone(), bomb.clone());
        let app = axum::Router::new()
            // Compressed without `Content-Encoding` (a proxy that dropped the header).
            .route(
                "/undeclared",
                axum::routing::get(move || {
                    let body = undeclared.clone();
                    async move { body }
                }),
            )
            .route(
                "/undeclared-bomb",
                axum::routing::get(move || {
                    let body = undeclared_bomb.clone();
                    async move { body }
                }),
            )
            .route(
                "/page",
                axum::routing::get(move |headers: HeaderMap| {
                    let page = page.clone();
                    async move {
                        let asked = headers
                            .get(header::ACCEPT_ENCODING)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.contains("gzip"));
                        assert!(asked, "no Accept-Encoding: gzip");
                        ([(header::CONTENT_ENCODING, "gzip")], page).into_response()
                    }
                }),
            )
            .route(
                "/bomb",
                axum::routing::get(move || {
                    let bomb = bomb.clone();
                    async move { ([(header::CONTENT_ENCODING, "gzip")], bomb).into_response() }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client =
            build_api_client("test", &TlsConfig::default(), Duration::from_secs(5)).unwrap();
        let url = format!("http://{addr}/page");
        let resp = client.get(&url).send().await.unwrap();
        let body = read_body_capped(&url, resp, 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"results":[{"id":"a"}]}"#);
        let url = format!("http://{addr}/bomb");
        let resp = client.get(&url).send().await.unwrap();
        let e = read_body_capped(&url, resp, 1024 * 1024).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");
        let url = format!("http://{addr}/undeclared");
        let resp = client.get(&url).send().await.unwrap();
        let body = read_body_capped(&url, resp, 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"results":[{"id":"a"}]}"#);
        let url = format!("http://{addr}/undeclared-bomb");
        let resp = client.get(&url).send().await.unwrap();
        let e = read_body_capped(&url, resp, 1024 * 1024).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");
        task.abort();
    }

    /// A server that keeps asking to come back later: one request's waits stop at
    /// `max_total_wait`, whatever `max_retries` allows.
    #[tokio::test]
    async fn retries_stop_at_the_total_wait_cap() {
        use axum::http::{StatusCode, header};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "busy",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = build_client("test", &TlsConfig::default(), Duration::from_secs(5)).unwrap();
        let url = format!("http://{addr}/services/collector/event");
        let policy = RetryPolicy {
            max_retries: 50,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_total_wait: Duration::from_millis(2500),
            ..RetryPolicy::default()
        };
        let started = std::time::Instant::now();
        let err = send_with_retry(&policy, &url, || client.post(&url).send())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "two waits of 1 s, then the cap"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        task.abort();
    }

    #[test]
    fn delays_are_capped() {
        let p = RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delays().count(), 3);
    }
}
