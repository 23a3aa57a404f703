//! An Azure Monitor test peer: the Microsoft Entra ID token endpoint and the Logs
//! Ingestion API, written from Microsoft's published descriptions (not from our sink),
//! for the integration tests (`tests/it`) and `examples/azure_monitor_peer.rs`.
//!
//! What it implements, strictly:
//! - `POST /{tenant}/oauth2/v2.0/token` (OAuth2 client credentials, form body):
//!   unknown tenant → 400 `invalid_request` (AADSTS90002); `grant_type` other than
//!   `client_credentials` → 400 `unsupported_grant_type`; unknown `client_id` → 400
//!   `unauthorized_client` (AADSTS700016); wrong `client_secret` → 401 `invalid_client`
//!   (AADSTS7000215); a `scope` other than `https://monitor.azure.com/.default` → 400
//!   `invalid_scope`. Success: `{"token_type":"Bearer","expires_in":N,"ext_expires_in":N,
//!   "access_token":"..."}` with an opaque random token valid `token_lifetime`.
//! - `POST /dataCollectionRules/{dcrImmutableId}/streams/{streamName}?api-version=2023-01-01`:
//!   a bearer token it issued and not expired (else 401), the app authorized on the DCR
//!   (else 403), the `api-version` (else 400), `Content-Type: application/json` (else
//!   415), `Content-Encoding: gzip` or none (else 400), the body at most 1 MiB as
//!   received *and* after decompression (the documented 1 MB limit applies to both; else
//!   413 `ContentLengthLimitExceeded`), a known DCR (else 404) and a stream it declares
//!   (else 400 `InvalidStream`), a JSON array of objects whose columns are exactly the
//!   declared stream's with values of the declared types (`null` allowed; else 400
//!   `InvalidPayload`). All or nothing: a rejected request ingests no row. Success: 204,
//!   no body. Errors carry `{"error":{"code":"...","message":"..."}}`.
//!
//! Anything the client got wrong that a correct client never sends (a wrong header, a
//! row not matching the declaration, a missing `x-ms-client-request-id`) is also
//! recorded as a violation, which the tests assert empty.
//!
//! Faults: a queue of answers for the next ingestion requests ([`Fault`]: a status with
//! an optional `Retry-After`, a connection reset, a slow answer), a random 429/503 rate,
//! a fixed delay, an outage window (503 with `Retry-After`), rows refused by `EventId`
//! (poison), revoking every issued token, and a short token lifetime. It must not share
//! code with the sink.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "5d3c1a9e-0b6f-4e8a-9c2d-7f1e0a4b3c21";
pub const CLIENT_SECRET: &str = "Azr~8Q.peer-secret_5f2Lm0";
pub const DCR: &str = "dcr-3f9a1c7e5b2d4e6f8a0b1c2d3e4f5a6b";
pub const SCOPE: &str = "https://monitor.azure.com/.default";
pub const API_VERSION: &str = "2023-01-01";
/// The documented limit of one call, compressed or not.
pub const MAX_BODY: usize = 1024 * 1024;

/// An answer for one ingestion request, taken from the fault queue.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (with an error body), with `Retry-After: secs` when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Reset the connection (RST) instead of answering; nothing is ingested.
    Reset,
    /// Wait this long, then handle the request normally.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub listen: SocketAddr,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub dcr: String,
    /// Declared streams: name → columns (name, type) as in a DCR's `streamDeclarations`.
    pub streams: BTreeMap<String, Vec<(String, String)>>,
    /// The app holds "Monitoring Metrics Publisher" on the DCR.
    pub authorized: bool,
    pub token_lifetime: Duration,
    /// Probability (0..1) of answering an ingestion request 429 (`Retry-After: 1`) or 503.
    pub busy_rate: f64,
    pub seed: u64,
    /// Rows with these `EventId`s make their request fail with 400 `InvalidPayload`.
    pub poison_ids: HashSet<String>,
    /// Keep every ingested row (off for benchmarks; counts are kept anyway).
    pub record_rows: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant: TENANT.to_string(),
            client_id: CLIENT_ID.to_string(),
            client_secret: CLIENT_SECRET.to_string(),
            dcr: DCR.to_string(),
            streams: BTreeMap::new(),
            authorized: true,
            token_lifetime: Duration::from_secs(3599),
            busy_rate: 0.0,
            seed: 1,
            poison_ids: HashSet::new(),
            record_rows: true,
        }
    }
}

/// Counters; see the field docs.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub ingest_requests: u64,
    /// Requests answered 204.
    pub accepted_requests: u64,
    pub rows_ingested: u64,
    /// Error answers by HTTP status (faults included).
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Connections reset by a [`Fault::Reset`].
    pub resets: u64,
    /// Largest body as received / after decompression, of accepted requests.
    pub max_wire_bytes: usize,
    pub max_decoded_bytes: usize,
    pub wire_bytes: u64,
    pub decoded_bytes: u64,
    /// Requests answered 401 because their token had expired or was revoked.
    pub expired_tokens: u64,
    /// Distinct `x-ms-client-request-id` values seen.
    pub request_ids: u64,
    pub violations: Vec<String>,
}

struct Inner {
    stats: PeerStats,
    rng: u64,
    busy_rate: f64,
    delay: Duration,
    faults: VecDeque<Fault>,
    /// token → expiry
    tokens: HashMap<String, Instant>,
    ingested: HashMap<String, u32>,
    rows: Vec<Value>,
    request_ids: HashSet<String>,
    outage_until: Option<Instant>,
    authorized: bool,
}

struct Shared {
    cfg: PeerConfig,
    inner: Mutex<Inner>,
    /// Kill switches of open connections, by remote address.
    conns: Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>,
    stop: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn violation(&mut self, what: String) {
        if self.stats.violations.len() < 100 {
            self.stats.violations.push(what);
        }
    }

    fn error(&mut self, status: u16, code: &str, message: &str) -> Response {
        *self.stats.errors_by_status.entry(status).or_default() += 1;
        azure_error(status, code, message)
    }
}

fn azure_error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn entra_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({
            "error": error,
            "error_description": format!("{description}\r\nTrace ID: 0b6c2f5e-peer\r\nTimestamp: 2026-12-03 12:00:00Z"),
            "error_codes": [description.get(6..description.find(':').unwrap_or(6)).unwrap_or("").parse::<u64>().unwrap_or(0)],
            "trace_id": "0b6c2f5e-peer",
        })
        .to_string(),
    )
        .into_response()
}

async fn handle_token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = &shared.cfg;
    let mut inner = shared.lock();
    inner.stats.token_requests += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        inner.violation(format!("token request with Content-Type {ct:?}"));
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if tenant != cfg.tenant {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        inner.violation(format!("grant_type {:?}", form.get("grant_type")));
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if form.get("client_id") != Some(&cfg.client_id) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application was not found in the directory.",
        );
    }
    if form.get("client_secret") != Some(&cfg.client_secret) {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    if form.get("scope").map(String::as_str) != Some(SCOPE) {
        inner.violation(format!("scope {:?}", form.get("scope")));
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        );
    }
    let token = format!("eyJ0eXAiOiJKV1Qi.peer.{}", uuid::Uuid::new_v4().simple());
    let lifetime = cfg.token_lifetime;
    inner
        .tokens
        .insert(token.clone(), Instant::now() + lifetime);
    inner.stats.tokens_issued += 1;
    let secs = lifetime.as_secs().max(1);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
            .to_string(),
    )
        .into_response()
}

async fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(body);
    let mut out = Vec::new();
    (&mut decoder)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

/// Whether `value` fits a column of Log Analytics type `ty`.
fn fits(ty: &str, value: &Value) -> bool {
    if value.is_null() {
        return true;
    }
    match ty.to_ascii_lowercase().as_str() {
        "string" => value.is_string(),
        "int" | "long" => value.is_i64() || value.is_u64(),
        "real" => value.is_number(),
        "boolean" => value.is_boolean(),
        "datetime" => value
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "dynamic" => true,
        _ => false,
    }
}

/// What is wrong with a row, for the `InvalidPayload` message.
fn row_problem(columns: &[(String, String)], row: &Value) -> Option<String> {
    let Some(obj) = row.as_object() else {
        return Some("a row is not a JSON object".into());
    };
    for key in obj.keys() {
        if !columns.iter().any(|(name, _)| name == key) {
            return Some(format!("column '{key}' is not declared in the stream"));
        }
    }
    for (name, ty) in columns {
        match obj.get(name) {
            None => return Some(format!("declared column '{name}' is missing")),
            Some(v) if !fits(ty, v) => {
                return Some(format!(
                    "column '{name}' ({ty}) has a value of another type: {v}"
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// What [`admit`] lets through: the stream's columns and the content encoding.
type Admitted = (Vec<(String, String)>, Option<String>);

/// Every check before the body is read: outage, busy, token, headers, DCR, stream, size.
/// `Ok` gives the stream's columns and the content encoding.
// The error is the answer itself; boxing it would only add noise to a test peer.
#[allow(clippy::result_large_err)]
fn admit(
    shared: &Shared,
    dcr: &str,
    stream: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body_len: usize,
) -> Result<Admitted, Response> {
    let cfg = &shared.cfg;
    let mut inner = shared.lock();
    if let Some(until) = inner.outage_until {
        if Instant::now() < until {
            let mut resp = inner.error(503, "ServiceUnavailable", "The service is unavailable");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return Err(resp);
        }
        inner.outage_until = None;
    }
    let busy = inner.busy_rate;
    if inner.chance(busy) {
        return Err(if inner.chance(0.5) {
            let mut resp = inner.error(429, "TooManyRequests", "Rate limit exceeded");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        } else {
            inner.error(503, "ServiceUnavailable", "The service is unavailable")
        });
    }
    // Authentication.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        inner.violation("ingestion request without a bearer token".into());
        return Err(inner.error(401, "InvalidAuthenticationToken", "No bearer token"));
    };
    match inner.tokens.get(token).copied() {
        None => {
            inner.stats.expired_tokens += 1;
            return Err(inner.error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid or was revoked",
            ));
        }
        Some(expiry) if Instant::now() >= expiry => {
            inner.stats.expired_tokens += 1;
            return Err(inner.error(
                401,
                "ExpiredAuthenticationToken",
                "The access token has expired",
            ));
        }
        Some(_) => {}
    }
    match headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if !id.is_empty() => {
            if inner.request_ids.insert(id.to_string()) {
                inner.stats.request_ids += 1;
            }
        }
        _ => inner.violation("ingestion request without x-ms-client-request-id".into()),
    }
    let version = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="));
    if version != Some(API_VERSION) {
        inner.violation(format!("api-version {version:?}"));
        return Err(inner.error(
            400,
            "InvalidApiVersion",
            "The api-version query parameter is missing or not supported",
        ));
    }
    if dcr != cfg.dcr {
        return Err(inner.error(
            404,
            "NotFound",
            &format!("Data collection rule with immutable Id '{dcr}' not found"),
        ));
    }
    if !inner.authorized {
        return Err(inner.error(
            403,
            "OperationFailed",
            &format!(
                "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '{dcr}'."
            ),
        ));
    }
    let Some(columns) = cfg.streams.get(stream) else {
        return Err(inner.error(
            400,
            "InvalidStream",
            &format!("Stream '{stream}' is not declared in the data collection rule"),
        ));
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        inner.violation(format!("Content-Type {ct:?}"));
        return Err(inner.error(
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json",
        ));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if body_len > MAX_BODY {
        return Err(inner.error(
            413,
            "ContentLengthLimitExceeded",
            &format!("The request body is {body_len} bytes; the limit is 1 MB"),
        ));
    }
    Ok((columns.clone(), encoding))
}

/// Check the decoded body against the stream and store its rows (all or nothing).
// The error is the answer itself; boxing it would only add noise to a test peer.
#[allow(clippy::result_large_err)]
fn store(
    shared: &Shared,
    stream: &str,
    columns: &[(String, String)],
    body_len: usize,
    decoded: std::io::Result<Vec<u8>>,
) -> Result<(), Response> {
    let cfg = &shared.cfg;
    let mut inner = shared.lock();
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            inner.violation(format!("gzip body does not decode: {e}"));
            return Err(inner.error(
                400,
                "InvalidPayload",
                "The gzip body could not be decompressed",
            ));
        }
    };
    if decoded.len() > MAX_BODY {
        return Err(inner.error(
            413,
            "ContentLengthLimitExceeded",
            "The decompressed request body is over the 1 MB limit",
        ));
    }
    let rows: Vec<Value> = match serde_json::from_slice(&decoded) {
        Ok(Value::Array(rows)) => rows,
        Ok(_) => {
            inner.violation("the body is not a JSON array".into());
            return Err(inner.error(400, "InvalidPayload", "The body must be a JSON array"));
        }
        Err(e) => {
            inner.violation(format!("the body is not JSON: {e}"));
            return Err(inner.error(400, "InvalidPayload", "The body is not valid JSON"));
        }
    };
    for row in &rows {
        if let Some(problem) = row_problem(columns, row) {
            inner.violation(format!("stream {stream}: {problem}"));
            return Err(inner.error(400, "InvalidPayload", &problem));
        }
        if let Some(id) = row.get("EventId").and_then(Value::as_str)
            && cfg.poison_ids.contains(id)
        {
            return Err(inner.error(
                400,
                "InvalidPayload",
                &format!("The row with EventId '{id}' could not be processed"),
            ));
        }
    }
    let s = &mut inner.stats;
    s.accepted_requests += 1;
    s.rows_ingested += rows.len() as u64;
    s.wire_bytes += body_len as u64;
    s.decoded_bytes += decoded.len() as u64;
    s.max_wire_bytes = s.max_wire_bytes.max(body_len);
    s.max_decoded_bytes = s.max_decoded_bytes.max(decoded.len());
    for row in rows {
        let id = row
            .get("EventId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        *inner.ingested.entry(id).or_default() += 1;
        if cfg.record_rows {
            inner.rows.push(row);
        }
    }
    Ok(())
}

async fn handle_ingest(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(PeerAddr(remote)): ConnectInfo<PeerAddr>,
    Path((dcr, stream)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, delay) = {
        let mut inner = shared.lock();
        inner.stats.ingest_requests += 1;
        (inner.faults.pop_front(), inner.delay)
    };
    match fault {
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Reset) => {
            shared.lock().stats.resets += 1;
            let kill = shared
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&remote)
                .cloned();
            if let Some(kill) = kill {
                kill.store(true, Ordering::SeqCst);
            }
            return StatusCode::NO_CONTENT.into_response();
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let code = match status {
                413 => "ContentLengthLimitExceeded",
                429 => "TooManyRequests",
                400 => "InvalidPayload",
                _ => "ServiceUnavailable",
            };
            let mut resp = shared.lock().error(status, code, "injected fault");
            if let Some(secs) = retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        None => {}
    }
    let (columns, encoding) = match admit(
        &shared,
        &dcr,
        &stream,
        query.as_deref(),
        &headers,
        body.len(),
    ) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let decoded = match encoding.as_deref() {
        None => Ok(body.to_vec()),
        Some("gzip") => gunzip(&body).await,
        Some(other) => {
            let mut inner = shared.lock();
            inner.violation(format!("Content-Encoding {other}"));
            return inner.error(
                400,
                "InvalidContentEncoding",
                "Content-Encoding must be gzip",
            );
        }
    };
    if let Err(resp) = store(&shared, &stream, &columns, body.len(), decoded) {
        return resp;
    }
    // A slow service: the rows are in, the answer takes its time (a client that gives up
    // now re-sends rows already stored).
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn not_found(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let mut inner = shared.lock();
    inner.violation(format!("request to an unknown path {}", uri.path()));
    inner.error(404, "NotFound", "No such resource")
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(handle_token))
        .route(
            "/dataCollectionRules/{dcr}/streams/{stream}",
            post(handle_ingest),
        )
        .fallback(not_found)
        .with_state(shared)
}

/// The remote address of a connection (for [`Fault::Reset`]).
#[derive(Debug, Clone, Copy)]
struct PeerAddr(SocketAddr);

/// A connection whose next write resets it (linger 0, then an error) once its kill
/// switch is set.
struct Conn {
    stream: TcpStream,
    kill: Arc<AtomicBool>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

struct ResettableListener {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for ResettableListener {
    type Io = Conn;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Conn, PeerAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    let mut conns = self
                        .shared
                        .conns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    conns.retain(|_, k| Arc::strong_count(k) > 1);
                    conns.insert(addr, kill.clone());
                    return (Conn { stream, kill }, PeerAddr(addr));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<PeerAddr> {
        self.listener.local_addr().map(PeerAddr)
    }
}

impl Connected<axum::serve::IncomingStream<'_, ResettableListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ResettableListener>) -> Self {
        *stream.remote_addr()
    }
}

#[derive(Clone)]
pub struct AzureMonitorPeer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl AzureMonitorPeer {
    pub async fn start(cfg: PeerConfig) -> std::io::Result<AzureMonitorPeer> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                stats: PeerStats::default(),
                rng: cfg.seed.max(1),
                busy_rate: cfg.busy_rate,
                delay: Duration::ZERO,
                faults: VecDeque::new(),
                tokens: HashMap::new(),
                ingested: HashMap::new(),
                rows: Vec::new(),
                request_ids: HashSet::new(),
                outage_until: None,
                authorized: cfg.authorized,
            }),
            cfg,
            conns: Mutex::new(HashMap::new()),
            stop: Notify::new(),
        });
        let app = router(shared.clone()).into_make_service_with_connect_info::<PeerAddr>();
        let listener = ResettableListener {
            listener,
            shared: shared.clone(),
        };
        let stop = {
            let shared = shared.clone();
            async move { shared.stop.notified().await }
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        });
        Ok(AzureMonitorPeer {
            shared,
            addr,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Base URL of both endpoints (the authority and the ingestion endpoint), e.g.
    /// `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> PeerStats {
        self.shared.lock().stats.clone()
    }

    /// `EventId` → how many times it was ingested (duplicates > 1).
    pub fn ingested(&self) -> HashMap<String, u32> {
        self.shared.lock().ingested.clone()
    }

    /// Every ingested row (when `record_rows`).
    pub fn rows(&self) -> Vec<Value> {
        self.shared.lock().rows.clone()
    }

    /// Answer the next ingestion requests with these faults, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    pub fn set_busy_rate(&self, rate: f64) {
        self.shared.lock().busy_rate = rate;
    }

    /// Delay every 204 by this much (after the rows are stored).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Answer 503 (`Retry-After: 1`) to every ingestion request for `duration` from now.
    pub fn start_outage(&self, duration: Duration) {
        self.shared.lock().outage_until = Some(Instant::now() + duration);
    }

    pub fn outage_active(&self) -> bool {
        self.shared
            .lock()
            .outage_until
            .is_some_and(|u| Instant::now() < u)
    }

    /// Forget every issued token: the next request with one is answered 401.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Grant or remove the app's role on the DCR.
    pub fn set_authorized(&self, authorized: bool) {
        self.shared.lock().authorized = authorized;
    }

    pub async fn shutdown(self) {
        self.shared.stop.notify_one();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_as_declared() {
        assert!(fits("string", &json!("a")) && !fits("string", &json!(1)));
        assert!(fits("long", &json!(5)) && !fits("long", &json!(1.5)));
        assert!(fits("dateTime", &json!("2026-01-01T00:00:00Z")));
        assert!(!fits("datetime", &json!("yesterday")));
        assert!(fits("boolean", &json!(null)));
        assert!(!fits("guid", &json!("x")));
        let cols = vec![("A".to_string(), "string".to_string())];
        assert!(row_problem(&cols, &json!({"A": "x"})).is_none());
        assert!(row_problem(&cols, &json!({"A": "x", "B": 1})).is_some());
        assert!(row_problem(&cols, &json!({})).is_some());
        assert!(row_problem(&cols, &json!([1])).is_some());
    }
}
