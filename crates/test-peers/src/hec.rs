//! A Splunk HTTP Event Collector (HEC) test peer, written from Splunk's published protocol
//! (not from our client code), used by the integration tests (`tests/it`) and
//! `examples/hec_peer.rs`.
//!
//! What it implements, strictly:
//! - `POST /services/collector[/event[/1.0]]`: `Authorization: Splunk <token>` (missing →
//!   401 code 2, another scheme → 401 code 3, unknown token → 403 code 4, disabled token →
//!   403 code 1, token only in the query string → 400 code 16); the data channel from the
//!   `X-Splunk-Request-Channel` header or the `channel` query parameter, required when the
//!   token has indexer acknowledgement (missing → 400 code 10, not a GUID → 400 code 11);
//!   `Content-Encoding: gzip` bodies; a body of concatenated JSON objects (none → 400
//!   code 5), each with an `event` (missing → code 12, null or "" → code 13), a sane
//!   `time` (epoch seconds), flat `fields` (string or array-of-string values, else code
//!   15) and an allowed `index` (else code 7); errors carry `invalid-event-number`.
//!   Events before the invalid one in a rejected request are indexed anyway (the
//!   pessimistic reading of Splunk's docs): a client that re-sends them makes duplicates,
//!   which the tests can see.
//! - Indexer acknowledgement: `{"text":"Success","code":0,"ackId":N}` with ackIds counted
//!   per channel from 0; `POST /services/collector/ack` with `{"acks":[...]}` answers
//!   `{"acks":{"N":true|false}}`; an ackId reports `true` once (after `ack_delay`), then
//!   is forgotten (`false` again); a token without acknowledgement answers 400 code 14.
//!   A restart of HEC (`ack_restart_every`) loses what is not yet acknowledged and starts
//!   every channel's numbering at 0 again, as Splunk does after a restart or an idle-
//!   channel cleanup: ackIds are then handed out a second time.
//! - `GET /services/collector/health[/1.0]`: 200 code 17, or 503 code 18 while unhealthy.
//!
//! Fault injection: `busy_rate` (503 code 9 on event and ack requests), `ack_delay`,
//! `poison_ids` (an event with that `event.id` is answered 400 code 6 with its
//! `invalid-event-number`), an outage after N indexed events (`Refuse`: the listener is
//! closed and reopened on the same port; `Unhealthy`: 503 code 18), a disabled token.
//! In front of HEC, a proxy: `proxy_max_body` (a POST whose body, as received, is larger
//! gets the proxy's own 413 HTML page, no HEC reply) and `proxy_refuse_all` (every POST
//! gets it, even an empty one); and `endless` answers (the first N requests to the event
//! or ack endpoint get a status with a chunked body that goes on far beyond any sane cap).
//! `strip_content_encoding` (a proxy dropping `Content-Encoding`, so HEC reads gzip bytes
//! as JSON and answers code 6) and `waf_pages` (the next N event POSTs are answered HTTP
//! 200 with an HTML page by a balancer or WAF, never reaching HEC) are switched at
//! runtime ([`HecPeer::set_strip_content_encoding`], [`HecPeer::set_waf_pages`]).
//!
//! It records what it indexed and what it acknowledged (per `event.id`, with counts) and
//! every protocol violation by the client (a malformed envelope is a bug in the client,
//! answered with the proper code *and* recorded). It must not share code with the sink.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// The peer's accepted token unless configured otherwise.
pub const TOKEN: &str = "4c1f7a2e-9b0d-4e21-8f6a-1d2c3b4a5e6f";

/// Largest decompressed body accepted (Splunk's `max_content_length` default is 800 MB;
/// a test peer keeps it small).
const MAX_DECODED: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// Close the listening socket (connections are refused), reopen it on the same port.
    Refuse,
    /// Keep serving, but answer 503 code 18 ("HEC is unhealthy, queues are full").
    Unhealthy,
}

#[derive(Debug, Clone)]
pub struct Outage {
    /// Start once this many events have been indexed.
    pub after_events: u64,
    pub duration: Duration,
    pub mode: OutageMode,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub listen: SocketAddr,
    /// HTTPS with a fresh self-signed certificate (see [`HecPeer::ca_pem`]).
    pub tls: bool,
    pub token: String,
    /// Indexer acknowledgement enabled on the token.
    pub ack_enabled: bool,
    /// Time from indexing until the ackId reports true.
    pub ack_delay: Duration,
    /// Probability (0..1) of answering an event or ack request 503 code 9.
    pub busy_rate: f64,
    pub seed: u64,
    pub poison_ids: HashSet<String>,
    /// Indexes the token may write to (an envelope without `index` is always fine).
    pub indexes: Vec<String>,
    pub outage: Option<Outage>,
    /// Bodies (decompressed) above this many bytes get 413.
    pub max_content_length: usize,
    /// Keep every indexed envelope (turn off for benchmarks: counts are kept anyway).
    pub record_events: bool,
    /// Disable the token (code 1 from then on) once this many events are indexed (once:
    /// [`HecPeer::set_token_disabled`] re-enables it for good).
    pub disable_token_after_events: Option<u64>,
    /// A proxy in front of HEC answering 413 (an HTML page, no HEC reply) to every POST
    /// whose body, as received (compressed when gzip), is larger than this.
    pub proxy_max_body: Option<usize>,
    /// The proxy answers 413 to every POST, whatever its size (a misconfigured limit).
    pub proxy_refuse_all: bool,
    /// Answers with a body that does not end (see [`Endless`]).
    pub endless: Option<Endless>,
    /// A load balancer with sticky sessions in front of two indexers: an event request
    /// without the balancer's cookie is pinned to an indexer and answered with
    /// `Set-Cookie: HECLB=<indexer>`; an ack query reaches the indexer its cookie names
    /// (the other one without a cookie), and an indexer reports `false` for ackIds it
    /// did not issue, like Splunk behind a balancer without affinity.
    pub sticky_cookie: bool,
    /// HEC "restarts" after every this many accepted event requests with an ackId: every
    /// channel's data not yet acknowledged is lost (never indexed, never reported `true`)
    /// and its ackId numbering starts at 0 again.
    pub ack_restart_every: Option<u64>,
    /// Time before an event request is answered (or read further): a HEC far away.
    pub answer_delay: Duration,
}

/// Which endpoint an [`Endless`] fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Event,
    Ack,
}

/// The first `requests` requests to `endpoint` are answered `status` with a chunked body
/// of `bytes` bytes, streamed as fast as the client reads (stopped when it hangs up):
/// "endless" for any client that caps what it reads.
#[derive(Debug, Clone, Copy)]
pub struct Endless {
    pub endpoint: EndpointKind,
    pub status: u16,
    pub requests: u64,
    pub bytes: u64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            token: TOKEN.to_string(),
            ack_enabled: false,
            ack_delay: Duration::ZERO,
            busy_rate: 0.0,
            seed: 1,
            poison_ids: HashSet::new(),
            indexes: vec!["main".to_string(), "veeam".to_string()],
            outage: None,
            max_content_length: 1_000_000,
            record_events: true,
            disable_token_after_events: None,
            proxy_max_body: None,
            proxy_refuse_all: false,
            endless: None,
            sticky_cookie: false,
            ack_restart_every: None,
            answer_delay: Duration::ZERO,
        }
    }
}

/// Counters; see the field docs.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub event_requests: u64,
    pub ack_requests: u64,
    pub health_requests: u64,
    /// Requests answered 503 code 9 by fault injection.
    pub busy_answers: u64,
    /// Error answers by HEC code (or HTTP status for codeless ones).
    pub errors_by_code: BTreeMap<i64, u64>,
    /// Events indexed (duplicates included).
    pub events_indexed: u64,
    /// Request body bytes as received (compressed when gzip).
    pub wire_bytes: u64,
    /// Request body bytes after decompression.
    pub decoded_bytes: u64,
    pub gzip_requests: u64,
    /// Successful event requests.
    pub accepted_requests: u64,
    pub ack_ids_issued: u64,
    pub acks_reported_true: u64,
    pub outages_started: u64,
    /// POSTs the proxy answered 413 (they never reached HEC).
    pub proxy_413: u64,
    /// Requests answered with an endless body.
    pub endless_answers: u64,
    /// Event POSTs answered 200 with an HTML page by the balancer or WAF.
    pub waf_answers: u64,
    /// Ack queries that reached another indexer than the one that issued their ackIds
    /// (no or another balancer cookie; with `sticky_cookie`).
    pub ack_queries_elsewhere: u64,
    /// Most ackIds of one channel outstanding (issued, not yet reported `true`) at once.
    pub max_pending_acks: u64,
    /// Restarts of HEC (`ack_restart_every`), and the events they lost.
    pub ack_restarts: u64,
    pub events_lost_on_restart: u64,
    /// Most event requests being answered at once (each takes at least `answer_delay`).
    pub max_concurrent_event_requests: u64,
    pub violations: Vec<String>,
}

struct Pending {
    ready_at: Instant,
    ids: Vec<String>,
    /// The indexer (behind the sticky balancer) that issued the ackId.
    indexer: String,
}

/// The balancer's cookie.
const LB_COOKIE: &str = "HECLB";

/// The indexer a request's `HECLB` cookie pins it to, if any.
fn pinned_indexer(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LB_COOKIE)
        .map(|(_, value)| value.to_string())
}

#[derive(Default)]
struct Channel {
    next_ack: u64,
    pending: HashMap<u64, Pending>,
}

struct Inner {
    stats: PeerStats,
    /// Event requests being answered now.
    answering: u64,
    strip_content_encoding: bool,
    waf_pages: u64,
    rng: u64,
    busy_rate: f64,
    ack_delay: Duration,
    token_disabled: bool,
    token_disable_fired: bool,
    channels: HashMap<String, Channel>,
    indexed: HashMap<String, u32>,
    acknowledged: HashMap<String, u32>,
    events: Vec<Value>,
    outage_until: Option<Instant>,
    outage_done: bool,
}

struct Shared {
    cfg: PeerConfig,
    inner: Mutex<Inner>,
    /// Wakes the server supervisor when a `Refuse` outage starts or the peer stops.
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An event request being answered: counted while it lives (see
/// [`PeerStats::max_concurrent_event_requests`]).
struct Answering<'a>(&'a Shared);

impl<'a> Answering<'a> {
    fn start(shared: &'a Shared) -> Self {
        let mut inner = shared.lock();
        inner.answering += 1;
        inner.stats.max_concurrent_event_requests = inner
            .stats
            .max_concurrent_event_requests
            .max(inner.answering);
        Answering(shared)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.lock().answering -= 1;
    }
}

/// A running peer. Clones share it.
#[derive(Clone)]
pub struct HecPeer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn reply(status: StatusCode, text: &str, code: i64) -> Response {
    (status, axum::Json(json!({ "text": text, "code": code }))).into_response()
}

/// A refusal with its HEC code; `event` is the `invalid-event-number` when known.
struct Hec {
    status: StatusCode,
    text: &'static str,
    code: i64,
    event: Option<usize>,
}

impl Hec {
    const fn new(status: StatusCode, code: i64, text: &'static str) -> Hec {
        Hec {
            status,
            text,
            code,
            event: None,
        }
    }
    fn at(mut self, i: usize) -> Hec {
        self.event = Some(i);
        self
    }
    fn into_response(self) -> Response {
        let mut body = json!({ "text": self.text, "code": self.code });
        if let Some(i) = self.event {
            body["invalid-event-number"] = json!(i);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

const TOKEN_DISABLED: Hec = Hec::new(StatusCode::FORBIDDEN, 1, "Token disabled");
const TOKEN_REQUIRED: Hec = Hec::new(StatusCode::UNAUTHORIZED, 2, "Token is required");
const INVALID_AUTH: Hec = Hec::new(StatusCode::UNAUTHORIZED, 3, "Invalid authorization");
const INVALID_TOKEN: Hec = Hec::new(StatusCode::FORBIDDEN, 4, "Invalid token");
const NO_DATA: Hec = Hec::new(StatusCode::BAD_REQUEST, 5, "No data");
const INVALID_FORMAT: Hec = Hec::new(StatusCode::BAD_REQUEST, 6, "Invalid data format");
const INCORRECT_INDEX: Hec = Hec::new(StatusCode::BAD_REQUEST, 7, "Incorrect index");
const BUSY: Hec = Hec::new(StatusCode::SERVICE_UNAVAILABLE, 9, "Server is busy");
const CHANNEL_MISSING: Hec = Hec::new(StatusCode::BAD_REQUEST, 10, "Data channel is missing");
const CHANNEL_INVALID: Hec = Hec::new(StatusCode::BAD_REQUEST, 11, "Invalid data channel");
const EVENT_REQUIRED: Hec = Hec::new(StatusCode::BAD_REQUEST, 12, "Event field is required");
const EVENT_BLANK: Hec = Hec::new(StatusCode::BAD_REQUEST, 13, "Event field cannot be blank");
const ACK_DISABLED: Hec = Hec::new(StatusCode::BAD_REQUEST, 14, "ACK is disabled");
const BAD_FIELDS: Hec = Hec::new(
    StatusCode::BAD_REQUEST,
    15,
    "Error in handling indexed fields",
);
const QUERY_AUTH: Hec = Hec::new(
    StatusCode::BAD_REQUEST,
    16,
    "Query string authorization is not enabled",
);
const UNHEALTHY: Hec = Hec::new(
    StatusCode::SERVICE_UNAVAILABLE,
    18,
    "HEC is unhealthy, queues are full",
);

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    let q = query.as_deref()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Inner {
    /// splitmix64: deterministic fault injection from the seed.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn unhealthy(&mut self, cfg: &PeerConfig) -> bool {
        match (self.outage_until, &cfg.outage) {
            (Some(until), Some(o)) if o.mode == OutageMode::Unhealthy => {
                if Instant::now() < until {
                    true
                } else {
                    self.outage_until = None;
                    self.outage_done = true;
                    false
                }
            }
            _ => false,
        }
    }

    fn refuse(&mut self, hec: Hec) -> Response {
        *self.stats.errors_by_code.entry(hec.code).or_insert(0) += 1;
        hec.into_response()
    }

    fn violation(&mut self, what: String) {
        if self.stats.violations.len() < 100 {
            self.stats.violations.push(what);
        }
    }
}

/// Authorization and channel checks shared by the event and ack endpoints.
fn check_auth(
    cfg: &PeerConfig,
    inner: &Inner,
    headers: &HeaderMap,
    query: &Option<String>,
) -> Result<(), Hec> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(if query_param(query, "token").is_some() {
            QUERY_AUTH
        } else {
            TOKEN_REQUIRED
        });
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Splunk ")) else {
        return Err(INVALID_AUTH);
    };
    if token.trim() != cfg.token {
        return Err(INVALID_TOKEN);
    }
    if inner.token_disabled {
        return Err(TOKEN_DISABLED);
    }
    Ok(())
}

/// The channel of a request (`None` when absent); errors 10/11 per Splunk's rules.
fn channel_of(
    cfg: &PeerConfig,
    headers: &HeaderMap,
    query: &Option<String>,
) -> Result<Option<String>, Hec> {
    let from_header = headers
        .get("x-splunk-request-channel")
        .map(|v| v.to_str().map(str::to_string).map_err(|_| CHANNEL_INVALID))
        .transpose()?;
    let from_query = query_param(query, "channel");
    let channel = match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => return Err(CHANNEL_INVALID),
        (Some(h), _) => Some(h),
        (None, q) => q,
    };
    match channel {
        Some(c) => match uuid::Uuid::parse_str(c.trim()) {
            Ok(u) => Ok(Some(u.hyphenated().to_string())),
            Err(_) => Err(CHANNEL_INVALID),
        },
        None if cfg.ack_enabled => Err(CHANNEL_MISSING),
        None => Ok(None),
    }
}

async fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(body);
    let mut out = Vec::new();
    (&mut decoder)
        .take(MAX_DECODED as u64 + 1)
        .read_to_end(&mut out)
        .await?;
    Ok(out)
}

/// One envelope as HEC reads it: metadata checked, `event` kept raw (only its
/// `event.id` is read, unless the peer records events). Unknown keys are refused.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(default)]
    time: Option<Value>,
    #[serde(default)]
    host: Option<Value>,
    #[serde(default)]
    source: Option<Value>,
    #[serde(default)]
    sourcetype: Option<Value>,
    #[serde(default)]
    index: Option<Value>,
    #[serde(default)]
    fields: Option<Value>,
    /// `None` when absent; a present `null` is `Some("null")`.
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a serde_json::value::RawValue>,
}

fn present<'de, D>(d: D) -> Result<Option<&'de serde_json::value::RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&serde_json::value::RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// `event.event.id` of a raw event (other members are skipped, not built).
fn raw_event_id(event: Option<&serde_json::value::RawValue>) -> String {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        event: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        id: Option<String>,
    }
    event
        .and_then(|raw| serde_json::from_str::<Doc>(raw.get()).ok())
        .and_then(|d| d.event)
        .and_then(|m| m.id)
        .unwrap_or_else(|| "<no event.id>".to_string())
}

/// Validate one envelope (its event id already read); `Err((hec, is_violation))`.
fn check_envelope(
    cfg: &PeerConfig,
    v: &Envelope<'_>,
    id: &str,
) -> Result<(), (Hec, Option<String>)> {
    if cfg.poison_ids.contains(id) {
        return Err((INVALID_FORMAT, None));
    }
    match v.event.map(|raw| raw.get().trim()) {
        None => return Err((EVENT_REQUIRED, Some("envelope without `event`".into()))),
        Some("null") => return Err((EVENT_BLANK, Some("`event` is null".into()))),
        Some("\"\"") => {
            return Err((EVENT_BLANK, Some("`event` is an empty string".into())));
        }
        Some(_) => {}
    }
    if let Some(t) = &v.time {
        let secs = match t {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        let now = chrono::Utc::now().timestamp() as f64;
        match secs {
            Some(s) if s.is_finite() && s > 946_684_800.0 && s < now + 2.0 * 86_400.0 => {
                // Epoch seconds with at most millisecond precision.
                if let Value::Number(n) = t {
                    let text = n.to_string();
                    if text.split_once('.').is_some_and(|(_, frac)| frac.len() > 3) {
                        return Err((
                            INVALID_FORMAT,
                            Some(format!("`time` {text} has more than ms precision")),
                        ));
                    }
                }
            }
            _ => {
                return Err((
                    INVALID_FORMAT,
                    Some(format!("`time` {t} is not sane epoch seconds")),
                ));
            }
        }
    }
    for (key, value) in [
        ("host", &v.host),
        ("source", &v.source),
        ("sourcetype", &v.sourcetype),
    ] {
        if let Some(value) = value
            && value.as_str().is_none_or(str::is_empty)
        {
            return Err((
                INVALID_FORMAT,
                Some(format!("`{key}` is not a non-empty string")),
            ));
        }
    }
    if let Some(index) = &v.index {
        let Some(index) = index.as_str() else {
            return Err((INVALID_FORMAT, Some("`index` is not a string".into())));
        };
        if !cfg.indexes.iter().any(|i| i == index) {
            return Err((INCORRECT_INDEX, None));
        }
    }
    if let Some(fields) = &v.fields {
        let flat = fields.as_object().is_some_and(|f| {
            f.values().all(|v| match v {
                Value::String(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => false,
            })
        });
        if !flat {
            return Err((BAD_FIELDS, Some(format!("`fields` is not flat: {fields}"))));
        }
    }
    Ok(())
}

/// What the proxy in front of HEC does with a POST of `len` bytes: `Some` 413 page.
fn proxy_refusal(shared: &Shared, len: usize) -> Option<Response> {
    let cfg = &shared.cfg;
    if !cfg.proxy_refuse_all && cfg.proxy_max_body.is_none_or(|max| len <= max) {
        return None;
    }
    shared.lock().stats.proxy_413 += 1;
    let page = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    Some(
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response(),
    )
}

/// An endless answer, when the fault applies to this request of `endpoint`.
fn endless_answer(shared: &Shared, endpoint: EndpointKind) -> Option<Response> {
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let e = shared.cfg.endless.filter(|e| e.endpoint == endpoint)?;
    {
        let mut inner = shared.lock();
        if inner.stats.endless_answers >= e.requests {
            return None;
        }
        inner.stats.endless_answers += 1;
    }
    let head = Bytes::from_static(b"<html><body>upstream error ");
    let stream = futures::stream::unfold(e.bytes, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK.len() as u64);
        let chunk = Bytes::from_static(&CHUNK[..n as usize]);
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), left - n))
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(head) }),
        stream,
    );
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Some((status, axum::body::Body::from_stream(body)).into_response())
}

async fn handle_event(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _answering = Answering::start(&shared);
    if !shared.cfg.answer_delay.is_zero() {
        tokio::time::sleep(shared.cfg.answer_delay).await;
    }
    if let Some(refused) = proxy_refusal(&shared, body.len()) {
        return refused;
    }
    if let Some(answer) = endless_answer(&shared, EndpointKind::Event) {
        return answer;
    }
    let cfg = &shared.cfg;
    let strip = {
        let mut inner = shared.lock();
        if inner.waf_pages > 0 {
            inner.waf_pages -= 1;
            inner.stats.waf_answers += 1;
            let page =
                "<html><head><title>Request queued</title></head><body>Please wait</body></html>";
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], page).into_response();
        }
        inner.strip_content_encoding
    };
    let channel = {
        let mut inner = shared.lock();
        inner.stats.event_requests += 1;
        inner.stats.wire_bytes += body.len() as u64;
        if inner.unhealthy(cfg) {
            return inner.refuse(UNHEALTHY);
        }
        if let Err(hec) = check_auth(cfg, &inner, &headers, &query) {
            return inner.refuse(hec);
        }
        let channel = match channel_of(cfg, &headers, &query) {
            Ok(c) => c,
            Err(hec) => return inner.refuse(hec),
        };
        let busy = inner.busy_rate;
        if inner.chance(busy) {
            inner.stats.busy_answers += 1;
            return inner.refuse(BUSY);
        }
        channel
    };

    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .filter(|_| !strip)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let data = match encoding.as_deref() {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => match gunzip(&body).await {
            Ok(d) => d,
            Err(e) => {
                let mut inner = shared.lock();
                inner.violation(format!(
                    "Content-Encoding: gzip but the body does not gunzip: {e}"
                ));
                return inner.refuse(INVALID_FORMAT);
            }
        },
        Some(other) => {
            let mut inner = shared.lock();
            inner.violation(format!("unsupported Content-Encoding `{other}`"));
            return inner.refuse(INVALID_FORMAT);
        }
    };

    // Read the body before taking the lock: concurrent requests are parsed in parallel.
    let too_large = data.len() > cfg.max_content_length;
    let blank = data.iter().all(u8::is_ascii_whitespace);
    let mut ids: Vec<String> = Vec::new();
    let mut recorded: Vec<Value> = Vec::new();
    let mut failure: Option<(Hec, usize, Option<String>)> = None;
    if !too_large && !blank {
        let mut stream = serde_json::Deserializer::from_slice(&data).into_iter::<Envelope>();
        for i in 0.. {
            let start = stream.byte_offset();
            let checked = match stream.next() {
                None => break,
                Some(Ok(v)) => {
                    let id = raw_event_id(v.event);
                    check_envelope(cfg, &v, &id).map(|()| id)
                }
                Some(Err(e)) => Err((
                    INVALID_FORMAT,
                    Some(format!(
                        "body is not concatenated HEC envelopes (JSON objects with known keys): {e}"
                    )),
                )),
            };
            match checked {
                Ok(id) => {
                    ids.push(id);
                    if cfg.record_events
                        && let Some(item) = data.get(start..stream.byte_offset())
                        && let Ok(v) = serde_json::from_slice::<Value>(item)
                    {
                        recorded.push(v);
                    }
                }
                Err((hec, violation)) => {
                    failure = Some((hec, i, violation));
                    break;
                }
            }
        }
    }

    let mut inner = shared.lock();
    if encoding.as_deref() == Some("gzip") {
        inner.stats.gzip_requests += 1;
    }
    inner.stats.decoded_bytes += data.len() as u64;
    if too_large {
        *inner.stats.errors_by_code.entry(413).or_insert(0) += 1;
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(
                json!({ "text": "Content-Length of the request exceeds max_content_length" }),
            ),
        )
            .into_response();
    }
    if blank {
        return inner.refuse(NO_DATA);
    }
    let failure = failure.map(|(hec, i, violation)| {
        if let Some(v) = violation {
            inner.violation(format!("event {i}: {v}"));
        }
        hec.at(i)
    });
    // Index what came before any failure (Splunk processes the body in order).
    inner.stats.events_indexed += ids.len() as u64;
    for id in &ids {
        *inner.indexed.entry(id.clone()).or_insert(0) += 1;
    }
    if cfg.record_events {
        inner.events.extend(recorded);
    }
    maybe_start_outage(&shared, &mut inner);
    if !inner.token_disable_fired
        && cfg
            .disable_token_after_events
            .is_some_and(|n| inner.stats.events_indexed >= n)
    {
        inner.token_disable_fired = true;
        inner.token_disabled = true;
    }
    if let Some(hec) = failure {
        return inner.refuse(hec);
    }
    inner.stats.accepted_requests += 1;
    let ack_delay = inner.ack_delay;
    let pinned = pinned_indexer(&headers);
    let indexer = pinned.clone().unwrap_or_else(|| "idx-1".to_string());
    match channel.filter(|_| cfg.ack_enabled) {
        Some(channel) => {
            let ch = inner.channels.entry(channel).or_default();
            let ack_id = ch.next_ack;
            ch.next_ack += 1;
            ch.pending.insert(
                ack_id,
                Pending {
                    ready_at: Instant::now() + ack_delay,
                    ids,
                    indexer: indexer.clone(),
                },
            );
            let outstanding = ch.pending.len() as u64;
            inner.stats.max_pending_acks = inner.stats.max_pending_acks.max(outstanding);
            inner.stats.ack_ids_issued += 1;
            if cfg
                .ack_restart_every
                .is_some_and(|n| n > 0 && inner.stats.ack_ids_issued % n == 0)
            {
                restart(&mut inner);
            }
            let mut answer = (
                StatusCode::OK,
                axum::Json(json!({ "text": "Success", "code": 0, "ackId": ack_id })),
            )
                .into_response();
            if cfg.sticky_cookie && pinned.is_none() {
                let cookie = format!("{LB_COOKIE}={indexer}; Path=/; HttpOnly");
                if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                    answer.headers_mut().insert(header::SET_COOKIE, v);
                }
            }
            answer
        }
        None => {
            for id in ids {
                *inner.acknowledged.entry(id).or_insert(0) += 1;
            }
            reply(StatusCode::OK, "Success", 0)
        }
    }
}

/// HEC restarts: data not yet acknowledged is lost, ackIds are counted from 0 again.
fn restart(inner: &mut Inner) {
    inner.stats.ack_restarts += 1;
    let lost: Vec<String> = inner
        .channels
        .values_mut()
        .flat_map(|ch| {
            ch.next_ack = 0;
            std::mem::take(&mut ch.pending)
                .into_values()
                .flat_map(|p| p.ids)
        })
        .collect();
    inner.stats.events_lost_on_restart += lost.len() as u64;
    inner.stats.events_indexed = inner.stats.events_indexed.saturating_sub(lost.len() as u64);
    for id in lost {
        if let Some(n) = inner.indexed.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.indexed.remove(&id);
            }
        }
    }
}

fn maybe_start_outage(shared: &Shared, inner: &mut Inner) {
    let Some(outage) = &shared.cfg.outage else {
        return;
    };
    if inner.outage_until.is_some()
        || inner.outage_done
        || inner.stats.events_indexed < outage.after_events
    {
        return;
    }
    inner.outage_until = Some(Instant::now() + outage.duration);
    inner.stats.outages_started += 1;
    if outage.mode == OutageMode::Refuse {
        shared.wake.notify_one();
    }
}

async fn handle_ack(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = proxy_refusal(&shared, body.len()) {
        return refused;
    }
    if let Some(answer) = endless_answer(&shared, EndpointKind::Ack) {
        return answer;
    }
    let cfg = &shared.cfg;
    let data = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        Some(e) if e.eq_ignore_ascii_case("gzip") => gunzip(&body).await.unwrap_or_default(),
        _ => body.to_vec(),
    };
    let mut inner = shared.lock();
    inner.stats.ack_requests += 1;
    if inner.unhealthy(cfg) {
        return inner.refuse(Hec::new(
            StatusCode::SERVICE_UNAVAILABLE,
            19,
            "HEC is unhealthy, ack service unavailable",
        ));
    }
    if let Err(hec) = check_auth(cfg, &inner, &headers, &query) {
        return inner.refuse(hec);
    }
    if !cfg.ack_enabled {
        return inner.refuse(ACK_DISABLED);
    }
    let channel = match channel_of(cfg, &headers, &query) {
        Ok(Some(c)) => c,
        Ok(None) => return inner.refuse(CHANNEL_MISSING),
        Err(hec) => return inner.refuse(hec),
    };
    let busy = inner.busy_rate;
    if inner.chance(busy) {
        inner.stats.busy_answers += 1;
        return inner.refuse(BUSY);
    }
    let ids: Vec<u64> = match serde_json::from_slice::<Value>(&data)
        .ok()
        .and_then(|v| v.get("acks").cloned())
        .and_then(|a| serde_json::from_value::<Vec<u64>>(a).ok())
    {
        Some(ids) => ids,
        None => {
            inner.violation(format!(
                "ack query body is not {{\"acks\":[ids]}}: {}",
                String::from_utf8_lossy(&data)
            ));
            return inner.refuse(INVALID_FORMAT);
        }
    };
    let now = Instant::now();
    let mut answer = serde_json::Map::new();
    let mut newly_acked = Vec::new();
    // Behind the sticky balancer: the indexer this query reaches.
    let reached = cfg
        .sticky_cookie
        .then(|| pinned_indexer(&headers).unwrap_or_else(|| "idx-2".to_string()));
    let mut elsewhere = false;
    {
        let ch = inner.channels.entry(channel).or_default();
        for id in ids {
            let here = match (&reached, ch.pending.get(&id)) {
                (Some(at), Some(p)) if p.indexer != *at => {
                    elsewhere = true;
                    false
                }
                _ => true,
            };
            let ready = here && ch.pending.get(&id).is_some_and(|p| p.ready_at <= now);
            if ready && let Some(p) = ch.pending.remove(&id) {
                newly_acked.extend(p.ids);
            }
            answer.insert(id.to_string(), Value::Bool(ready));
        }
    }
    if elsewhere {
        inner.stats.ack_queries_elsewhere += 1;
    }
    inner.stats.acks_reported_true +=
        answer.values().filter(|v| **v == Value::Bool(true)).count() as u64;
    for id in newly_acked {
        *inner.acknowledged.entry(id).or_insert(0) += 1;
    }
    (StatusCode::OK, axum::Json(json!({ "acks": answer }))).into_response()
}

async fn handle_health(State(shared): State<Arc<Shared>>) -> Response {
    let mut inner = shared.lock();
    inner.stats.health_requests += 1;
    if inner.unhealthy(&shared.cfg) {
        return inner.refuse(UNHEALTHY);
    }
    reply(StatusCode::OK, "HEC is healthy", 17)
}

async fn not_found(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    shared
        .lock()
        .violation(format!("request to unknown path {}", uri.path()));
    reply(
        StatusCode::NOT_FOUND,
        "The requested URL was not found on this server.",
        404,
    )
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/collector", post(handle_event))
        .route("/services/collector/event", post(handle_event))
        .route("/services/collector/event/1.0", post(handle_event))
        .route("/services/collector/ack", post(handle_ack))
        .route("/services/collector/health", get(handle_health))
        .route("/services/collector/health/1.0", get(handle_health))
        .fallback(not_found)
        .with_state(shared)
}

fn tls_config() -> std::io::Result<(Arc<rustls::ServerConfig>, String)> {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), certified.cert.pem()))
}

/// Serve until the peer stops; a `Refuse` outage closes the listener and reopens it.
async fn supervise(
    shared: Arc<Shared>,
    first: tokio::net::TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    use std::sync::atomic::Ordering;
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                // Reopen the same port (SO_REUSEADDR is set by tokio on Unix).
                let mut bound = None;
                for _ in 0..100 {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => {
                            bound = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                match bound {
                    Some(l) => l,
                    None => {
                        eprintln!("hec peer: cannot re-bind {addr} after the outage");
                        return;
                    }
                }
            }
        };
        let app = router(shared.clone());
        let stop = {
            let shared = shared.clone();
            async move { shared.wake.notified().await }
        };
        match &tls {
            // TCP_NODELAY on every connection, as real servers send.
            None => {
                let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let _ = axum::serve(l, app).with_graceful_shutdown(stop).await;
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
                    axum_server::tls_rustls::RustlsConfig::from_config(config.clone()),
                )
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
                let server = match l
                    .into_std()
                    .and_then(axum_server::from_tcp)
                    .map(|server| server.acceptor(acceptor))
                {
                    Ok(s) => s.handle(handle.clone()),
                    Err(e) => {
                        eprintln!("hec peer: TLS listener: {e}");
                        return;
                    }
                };
                let h = handle.clone();
                let waiter = tokio::spawn(async move {
                    stop.await;
                    h.graceful_shutdown(Some(Duration::from_secs(1)));
                });
                let _ = server.serve(app.into_make_service()).await;
                waiter.abort();
            }
        }
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Outage: stay closed until it ends.
        let until = shared.lock().outage_until;
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
        let mut inner = shared.lock();
        inner.outage_until = None;
        inner.outage_done = true;
    }
}

impl HecPeer {
    pub async fn start(cfg: PeerConfig) -> std::io::Result<HecPeer> {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (tls, ca_pem) = if cfg.tls {
            let (config, pem) = tls_config()?;
            (Some(config), Some(pem))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                stats: PeerStats::default(),
                answering: 0,
                strip_content_encoding: false,
                waf_pages: 0,
                rng: cfg.seed,
                busy_rate: cfg.busy_rate,
                ack_delay: cfg.ack_delay,
                token_disabled: false,
                token_disable_fired: false,
                channels: HashMap::new(),
                indexed: HashMap::new(),
                acknowledged: HashMap::new(),
                events: Vec::new(),
                outage_until: None,
                outage_done: false,
            }),
            cfg,
            wake: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(supervise(shared.clone(), listener, addr, tls));
        Ok(HecPeer {
            shared,
            addr,
            ca_pem,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        let scheme = if self.shared.cfg.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    pub fn stats(&self) -> PeerStats {
        self.shared.lock().stats.clone()
    }

    /// `event.id` → how many times it was indexed (duplicates > 1).
    pub fn indexed(&self) -> HashMap<String, u32> {
        self.shared.lock().indexed.clone()
    }

    /// `event.id` → how many times it was acknowledged to the client (code 0 without
    /// indexer ack; an ackId reported `true` with it).
    pub fn acknowledged(&self) -> HashMap<String, u32> {
        self.shared.lock().acknowledged.clone()
    }

    /// Every indexed envelope (when `record_events`).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    pub fn set_token_disabled(&self, disabled: bool) {
        self.shared.lock().token_disabled = disabled;
    }

    /// Applies to requests indexed from now on.
    pub fn set_ack_delay(&self, delay: Duration) {
        self.shared.lock().ack_delay = delay;
    }

    /// A proxy in front of HEC drops (or stops dropping) `Content-Encoding`.
    pub fn set_strip_content_encoding(&self, strip: bool) {
        self.shared.lock().strip_content_encoding = strip;
    }

    /// The next `n` event POSTs get a balancer's or WAF's HTTP 200 HTML page.
    pub fn set_waf_pages(&self, n: u64) {
        self.shared.lock().waf_pages = n;
    }

    pub fn set_busy_rate(&self, rate: f64) {
        self.shared.lock().busy_rate = rate;
    }

    pub fn outage_active(&self) -> bool {
        self.shared.lock().outage_until.is_some()
    }

    pub fn outage_done(&self) -> bool {
        self.shared.lock().outage_done
    }

    pub async fn shutdown(self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.wake.notify_one();
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
