//! The HEC sink itself: packing, posting, splitting on 413, dead letters, indexer-ack
//! polling and the health probe (the algorithm is described in `sinks::splunk_hec`).
//!
//! Speed without giving up durability (issue 17):
//! - up to `in_flight_requests` requests are in flight at a time, each compressed on the
//!   blocking pool (`spawn_blocking`), so gzip never stalls the runtime's threads and one
//!   request compresses while others travel;
//! - with `in_flight_batches` above 1 each batch is sent by a task of its own
//!   ([`Sink::submit`]): the next batch's requests go out while earlier ones are still
//!   answered (the request permits, a [`Semaphore`] of `in_flight_requests`, are shared
//!   by the sink's batches, and `submit` returns only once a batch has its first
//!   permits, so what is held stays bounded) or wait for their indexer acknowledgement;
//!   one ack poller per sink ([`AckPoller`]) asks about every outstanding ackId in one
//!   query per `ack_poll_interval`, so batches don't wait behind each other's polls;
//! - answers' `Set-Cookie` are sent back on every request of the channel
//!   ([`CookieJar`]): behind a load balancer the ack query reaches the indexer that
//!   issued the ackId.
//!
//! Never confirming a request by another one's acknowledgement: HEC hands ackIds out again
//! (from 0 after a restart or an idle-channel cleanup, per indexer behind a balancer
//! without affinity), so the [`AckBook`] tracks requests by registration, not by ackId. A
//! `true` counts only for a request answered before the query was sent, and only once
//! every POST in flight during the query is answered; an ackId handed out again
//! supersedes the unconfirmed holder, and when the two requests were in flight together
//! (answers may arrive in another order than HEC gave the ids) both; a `true` for an
//! ackId handed out again since its query supersedes the new holder (HEC reports a `true`
//! once, and it may have been that one's); a lost answer supersedes every waiting request. Superseded requests are sent again: duplicates, never
//! a loss.
//!
//! Never trusting an answer that is not HEC's: an HTTP 200 without a HEC reply is retried
//! (or fatal when the endpoint never answered like HEC: not its port), and per-event
//! rejections are quarantined only among acceptances ([`FormatEvidence`]), so a receiver
//! rejecting everything costs no evidence.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, COOKIE, HeaderValue};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::config::common::ConfigError;
use crate::http::{self, HttpError, RetryPolicy};
use crate::sinks::{Batch, Confirmation, Sink, SinkContext, SinkError};

use super::config::*;
use super::cookies::CookieJar;
use super::wire::{CHANNEL_HEADER, Chunk, ErrCtx, FormatEvidence, SizeEvidence, Verdict};
use super::{files, wire};

/// At most this many ackIds per query to the ack endpoint.
const ACK_QUERY_MAX: usize = 1000;

/// Largest HEC answer body read (event POSTs, ack queries, health, probes): real answers
/// are a few hundred bytes (an ack answer for [`ACK_QUERY_MAX`] ids about 20 kB); an
/// endless body from a broken server or proxy stops here instead of growing memory. Error
/// answers are read for an excerpt only ([`http::ERROR_EXCERPT_BYTES`]).
pub const HEC_REPLY_LIMIT: usize = 1024 * 1024;

/// About what a HEC envelope adds to an event's JSON (time, host, source, sourcetype,
/// index, indexed fields), for [`Sender::requests_for`].
const ENVELOPE_GUESS: usize = 300;

/// Whether event `i` goes in the next pass: pending, and not rejected and waiting to be
/// judged (`held`).
fn is_pending(progress: &Progress, held: &[Held], i: usize) -> bool {
    progress.state.get(i) == Some(&State::Pending) && !held.iter().any(|h| h.index == i)
}

/// Where one event of the batch in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not sent, or to be sent again.
    Pending,
    /// Accepted (code 0), its ackId not yet reported `true`.
    Sent,
    /// Delivered (and, with ack, confirmed), or quarantined.
    Done,
}

/// Where each event of a batch stands. Kept across the pipeline's retries of the same
/// batch, so a retry re-sends only what is not done.
struct Progress {
    key: (usize, u64),
    state: Vec<State>,
    /// Events to send in a request of their own (to find a bad event HEC didn't name).
    alone: HashSet<usize>,
}

impl Progress {
    fn new(batch: &Batch) -> Progress {
        Progress {
            key: (batch.source_index, batch.seq),
            state: vec![State::Pending; batch.events.len()],
            alone: HashSet::new(),
        }
    }

    fn set(&mut self, events: &[usize], to: State) {
        for &i in events {
            if let Some(s) = self.state.get_mut(i) {
                *s = to;
            }
        }
    }
}

/// An event HEC rejected as malformed, waiting to be judged (see `FormatEvidence`).
struct Held {
    index: usize,
    status: u16,
    code: Option<i64>,
    text: String,
}

/// What HEC did with one request.
enum Posted {
    /// Code 0; with indexer ack, the request's entry in the [`AckBook`].
    Accepted {
        ack: Option<AckWait>,
    },
    Rejected {
        status: u16,
        verdict: Verdict,
    },
}

/// An ack-endpoint failure that polling may outlive, or one that stops the sink.
enum AckError {
    Transient(String),
    Fatal(String),
}

struct AckSettings {
    timeout: Duration,
    poll_interval: Duration,
}

/// What every request of the sink needs: shared by the requests in flight and the ack
/// poller (no `&mut`, so they run concurrently).
struct Conn {
    id: String,
    /// Base URL for messages (no credentials: they are refused by validation).
    endpoint: String,
    event_url: String,
    ack_url: String,
    health_url: String,
    client: reqwest::Client,
    /// `Splunk <token>`, marked sensitive (its `Debug` prints "Sensitive").
    auth: HeaderValue,
    channel: String,
    channel_file: PathBuf,
    index: Option<String>,
    /// gzip level when `compression = "gzip"`.
    gzip: Option<u32>,
    /// Whether `indexer_ack` is on (an answer without ackId is then an error).
    ack: bool,
    policy: RetryPolicy,
    /// One attempt only (probes and ack polls: their callers decide about retrying).
    once: RetryPolicy,
    cookies: CookieJar,
    /// The requests waiting for their ackIds and the POSTs whose ackIds are unknown.
    book: Arc<AckBook>,
    /// Whether this endpoint has answered like HEC (a HEC JSON reply) since startup: a
    /// later answer without one is a passing proxy or balancer page, retried; before
    /// that, most likely the wrong port (see [`Conn::not_hec`]).
    hec_seen: AtomicBool,
}

impl Conn {
    /// An HTTP 200 whose body is not a HEC reply (`what`: which endpoint). Once this
    /// endpoint has answered like HEC, a load balancer, WAF or proxy page passing by:
    /// retried like a 5xx, nothing acknowledged. Never answered like HEC since startup:
    /// most likely Splunk Web or another port, which retrying won't fix: stop.
    fn not_hec(&self, what: &str, status: u16, text: &str) -> Result<String, String> {
        let excerpt = http::excerpt(text, 120);
        if self.hec_seen.load(Ordering::Relaxed) {
            tracing::warn!(sink_id = %self.id, endpoint = %self.endpoint, http_status = status, body = %excerpt, "HEC answered {what} with HTTP {status} but no HEC reply (a load balancer, WAF or proxy page?); nothing of it counts as delivered, retrying");
            Err(format!(
                "HEC at {} answered {what} with HTTP {status} without a HEC reply ({excerpt}), after answering like HEC before: a load balancer, WAF or proxy in front of it answered instead; retrying (nothing of it counts as delivered)",
                self.endpoint
            ))
        } else {
            Ok(format!(
                "HEC at {} answered {what} with HTTP {status} without a HEC reply ({excerpt}) and has not answered like HEC since startup; check sinks.{}.endpoint points at the HEC port (8088 by default), not Splunk Web",
                self.endpoint, self.id
            ))
        }
    }

    fn seen_hec(&self) {
        self.hec_seen.store(true, Ordering::Relaxed);
    }

    fn err_ctx(&self) -> ErrCtx<'_> {
        ErrCtx {
            sink_id: &self.id,
            endpoint: &self.endpoint,
            index: self.index.as_deref(),
            channel: &self.channel,
            channel_file: &self.channel_file,
            hec_seen: self.hec_seen.load(Ordering::Relaxed),
        }
    }

    /// A POST to HEC with the token, the channel and the balancer's cookies.
    fn request(&self, url: &str, body: Bytes, gzip: bool) -> reqwest::RequestBuilder {
        self.request_on(&self.channel, url, body, gzip)
    }

    /// [`Conn::request`] on another data channel than the sink's.
    fn request_on(
        &self,
        channel: &str,
        url: &str,
        body: Bytes,
        gzip: bool,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL_HEADER, channel)
            .header(CONTENT_TYPE, "application/json");
        if gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(cookies) = self.cookies.header() {
            req = req.header(COOKIE, cookies);
        }
        req.body(body)
    }

    /// An [`HttpError`] that is not a status answer (transport, TLS...) as a sink error.
    fn transport_failure(&self, what: &str, e: HttpError) -> SinkError {
        if e.is_retryable() {
            SinkError::Retryable(format!("{what}: {e}"))
        } else {
            SinkError::Fatal(format!(
                "{what}: {e}; check sinks.{}.endpoint and sinks.{}.tls",
                self.id, self.id
            ))
        }
    }

    /// Read a HEC answer body, at most [`HEC_REPLY_LIMIT`] bytes, keeping its cookies.
    async fn read_reply(&self, url: &str, resp: reqwest::Response) -> Result<String, HttpError> {
        self.cookies.store(resp.headers());
        let body = http::read_body_capped(url, resp, HEC_REPLY_LIMIT).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// POST one request (retrying what may pass) and say what HEC did with it, with the
    /// size of the body as sent (after gzip). Compression runs on the blocking pool. An
    /// error leaves the request's events pending: nothing of it counts as delivered.
    async fn post(self: Arc<Self>, chunk: Chunk) -> Result<(Chunk, Posted, usize), SinkError> {
        let (chunk, body) = match self.gzip {
            Some(level) => {
                let packed = tokio::task::spawn_blocking(move || {
                    let gz = crate::sinks::gzip::gzip(&chunk.body, level);
                    (chunk, gz)
                })
                .await;
                match packed {
                    Ok((chunk, Ok(gz))) => (chunk, Bytes::from(gz)),
                    Ok((_, Err(e))) => {
                        return Err(SinkError::Retryable(format!(
                            "sink `{}`: gzip failed: {e}",
                            self.id
                        )));
                    }
                    Err(e) => {
                        return Err(SinkError::Retryable(format!(
                            "sink `{}`: compressing a request failed: {e}",
                            self.id
                        )));
                    }
                }
            }
            None => {
                let body = Bytes::copy_from_slice(&chunk.body);
                (chunk, body)
            }
        };
        let gzip = self.gzip.is_some();
        let sent = body.len();
        // With indexer ack, HEC may hand out an ackId from the moment the POST leaves.
        let ticket = self.ack.then(|| self.book.post_started());
        let lost = AtomicBool::new(false);
        let result = http::send_with_retry(&self.policy, &self.event_url, || {
            let sending = self.request(&self.event_url, body.clone(), gzip).send();
            let lost = &lost;
            async move {
                let answer = sending.await;
                // Sent (not refused at connect) but unanswered: HEC may have taken it.
                if answer.as_ref().is_err_and(|e| !e.is_connect()) {
                    lost.store(true, Ordering::Relaxed);
                }
                answer
            }
        })
        .await;
        if lost.load(Ordering::Relaxed)
            && let Some(t) = &ticket
        {
            t.answer_lost(&self.endpoint);
        }
        let ctx = self.err_ctx();
        let posted = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // An unreadable answer drops the ticket unfinished: lost.
                let text = self.read_reply(&self.event_url, resp).await.map_err(|e| {
                    SinkError::Retryable(format!(
                        "reading the answer of HEC at {}: {e}; the request is sent again",
                        self.endpoint
                    ))
                })?;
                match wire::parse_reply(&text) {
                    Some(reply) if reply.code == Some(0) => {
                        self.seen_hec();
                        if self.ack && reply.ack_id.is_none() {
                            if let Some(t) = ticket {
                                t.answered();
                            }
                            // Code 0 without an ackId: the token has acknowledgement off.
                            let off = wire::Reply {
                                code: Some(14),
                                text: "success, but no ackId: ACK is disabled".into(),
                                ..wire::Reply::default()
                            };
                            Posted::Rejected {
                                status,
                                verdict: wire::classify(400, Some(&off), &ctx),
                            }
                        } else {
                            let ack = match (ticket, reply.ack_id) {
                                (Some(t), Some(id)) => {
                                    t.finish(Some(id)).map(|(reg, rx)| AckWait {
                                        id,
                                        reg,
                                        rx,
                                        events: Vec::new(),
                                    })
                                }
                                _ => None,
                            };
                            Posted::Accepted { ack }
                        }
                    }
                    Some(reply) => {
                        self.seen_hec();
                        if let Some(t) = ticket {
                            t.answered();
                        }
                        Posted::Rejected {
                            status,
                            verdict: wire::classify(status, Some(&reply), &ctx),
                        }
                    }
                    // Not HEC's answer: the ticket is dropped unfinished (lost), as
                    // whatever answered may have hidden HEC's.
                    None => {
                        return Err(match self.not_hec("a request", status, &text) {
                            Err(m) => SinkError::Retryable(m),
                            Ok(m) => SinkError::Fatal(m),
                        });
                    }
                }
            }
            Err(HttpError::Status { status, body, .. }) => {
                if let Some(t) = ticket {
                    t.answered();
                }
                let reply = wire::parse_reply(&body);
                if reply.is_some() {
                    self.seen_hec();
                }
                Posted::Rejected {
                    status,
                    verdict: wire::classify(status, reply.as_ref(), &ctx),
                }
            }
            Err(e) => {
                // A lost answer was dealt with above; refused connections took nothing.
                if let Some(t) = ticket {
                    t.answered();
                }
                return Err(self.transport_failure(&format!("HEC at {}", self.endpoint), e));
            }
        };
        Ok((chunk, posted, sent))
    }

    /// Query the ack endpoint once for `ids`; returns those reported `true`.
    async fn query_acks(&self, ids: &[u64]) -> Result<HashSet<u64>, AckError> {
        self.query_acks_on(&self.channel, &self.ack_url, ids).await
    }

    /// [`Conn::query_acks`] on `channel`, whose ack URL is `ack_url`.
    async fn query_acks_on(
        &self,
        channel: &str,
        ack_url: &str,
        ids: &[u64],
    ) -> Result<HashSet<u64>, AckError> {
        let body = Bytes::from(serde_json::json!({ "acks": ids }).to_string());
        let query_bytes = body.len();
        let result = http::send_with_retry(&self.once, ack_url, || {
            self.request_on(channel, ack_url, body.clone(), false)
                .send()
        })
        .await;
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = self.read_reply(ack_url, resp).await.map_err(|e| {
                    AckError::Transient(format!("reading the ack answer of {}: {e}", self.endpoint))
                })?;
                match wire::parse_ack_reply(&text) {
                    Some(acked) => {
                        self.seen_hec();
                        Ok(acked)
                    }
                    None => Err(match self.not_hec("an ack query", status, &text) {
                        Err(m) => AckError::Transient(m),
                        Ok(m) => AckError::Fatal(m),
                    }),
                }
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                match wire::classify(status, reply.as_ref(), &self.err_ctx()) {
                    Verdict::Retry(m) => Err(AckError::Transient(m)),
                    Verdict::Fatal(m) => Err(AckError::Fatal(m)),
                    Verdict::TooLarge => Err(AckError::Fatal(format!(
                        "HEC at {} answered HTTP 413 (request too large) to an ack query of {query_bytes} bytes: a proxy in front of HEC has a body limit below that; raise it (e.g. nginx client_max_body_size)",
                        self.endpoint,
                    ))),
                    Verdict::Poison { code, text, .. } => Err(AckError::Fatal(format!(
                        "HEC at {} rejected our ack query (HTTP {status}, code {}: {text}); this is a bug in veeam-siem, please report it",
                        self.endpoint,
                        code.unwrap_or(-1)
                    ))),
                }
            }
            Err(e) if e.is_retryable() => Err(AckError::Transient(e.to_string())),
            Err(e) => Err(AckError::Fatal(format!(
                "{e}; check sinks.{}.endpoint and sinks.{}.tls",
                self.id, self.id
            ))),
        }
    }
}

/// What became of a request waiting for its ackId.
#[derive(Debug)]
enum AckOutcome {
    /// HEC reported its ackId `true` to a query sent after the request was answered, and
    /// no other request can have been given that ackId meanwhile.
    Confirmed,
    /// The ackId was handed out again (or an answer that may have carried an ackId was
    /// lost) while this request was unconfirmed: a `true` for that ackId can no longer be
    /// told apart, so the request counts as unconfirmed and is sent again.
    Superseded(String),
    /// Ack polling failed for good.
    Failed(String),
}

/// One request waiting for its ackId in the book; `reg` tells it apart from any other
/// request HEC gave the same ackId (before or after it).
struct Waiter {
    reg: u64,
    tx: oneshot::Sender<AckOutcome>,
}

/// `true`s from an ack query answered while event POSTs were in flight: one of those may
/// come back with the same ackId (HEC restarted its numbering), and then the `true` may
/// be that request's. Applied once every POST sent before the answer arrived is answered.
struct Parked {
    /// (ackId, registration) pairs reported `true`.
    trues: Vec<(u64, u64)>,
    /// Every POST with a serial below this must be answered first.
    after: u64,
}

#[derive(Default)]
struct BookState {
    /// The request waiting for each ackId (the newest one HEC gave it).
    waiting: HashMap<u64, Waiter>,
    next_reg: u64,
    /// Serial of the next event POST.
    next_post: u64,
    /// Event POSTs sent and not yet answered (their ackIds are unknown).
    posts: BTreeSet<u64>,
    /// For each ackId answered while POSTs that may carry it again were in flight: the
    /// serial of the next event POST when the last answer with it arrived. A POST with a
    /// lower serial was sent before that answer, so HEC may have handed the ackId to it
    /// first (see [`PostTicket::finish`]). Forgotten once no such POST is in flight.
    answered: HashMap<u64, u64>,
    parked: Vec<Parked>,
}

impl BookState {
    /// Confirm the requests whose `(ackId, registration)` is still waiting. A `true` for
    /// an ackId another request was given since the query (HEC numbered again) may be
    /// that request's, and HEC reports a `true` once: that request could then never be
    /// confirmed and would wait out `ack_timeout`, holding the sink's window. It is sent
    /// again now instead (a duplicate if the `true` was its own).
    fn apply(&mut self, trues: &[(u64, u64)]) {
        for &(id, reg) in trues {
            let Some(w) = self.waiting.remove(&id) else {
                continue;
            };
            if w.reg == reg {
                let _ = w.tx.send(AckOutcome::Confirmed);
            } else {
                tracing::debug!(
                    ack_id = id,
                    "a true for an ackId handed out again since the query; its new holder is sent again"
                );
                let _ = w.tx.send(AckOutcome::Superseded(format!(
                    "HEC reported ackId {id} true while it handed the id out again; that true may have been this request's, and HEC reports one only once"
                )));
            }
        }
    }

    /// Apply the parked `true`s no POST in flight can contradict any more.
    fn release(&mut self) {
        let oldest = self.posts.first().copied();
        let (ready, wait): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| oldest.is_none_or(|o| o >= p.after));
        self.parked = wait;
        for p in ready {
            self.apply(&p.trues);
        }
    }

    /// Every waiting request is unconfirmed from now on: an ackId we don't know may have
    /// been handed out.
    fn supersede_all(&mut self, why: &str) {
        for (_, w) in self.waiting.drain() {
            let _ = w.tx.send(AckOutcome::Superseded(why.to_string()));
        }
        self.parked.clear();
    }
}

/// The ackIds every batch in flight waits for, the event POSTs whose answers (and so
/// ackIds) are still unknown, and how the poller wakes up.
///
/// HEC numbers ackIds per channel from 0 and starts again at 0 after a restart, an
/// idle-channel cleanup, or on another indexer behind a balancer without affinity: two
/// requests can get the same ackId. So a request is confirmed only by a `true` for its
/// ackId to a query sent after its answer arrived, and only if no other request can
/// have been given that ackId before the query's answer was used: a request whose ackId
/// is handed out again (or when an answer that may have carried an ackId was lost) is
/// [`AckOutcome::Superseded`] and sent again, and a query's `true`s wait until the POSTs
/// in flight during the query are answered. Answers arrive in any order, so "earlier" is
/// decided by sending order: a request that was in flight while another one's answer
/// with the same ackId arrived is superseded as well (HEC may have handed it the id first).
#[derive(Default)]
struct AckBook {
    state: Mutex<BookState>,
    wake: Notify,
}

/// A request waiting for its ackId: what [`confirm`] waits on.
struct AckWait {
    id: u64,
    reg: u64,
    rx: oneshot::Receiver<AckOutcome>,
    events: Vec<usize>,
}

/// Requests accepted with an ackId, waiting for it.
type Waiting = Vec<AckWait>;

/// An event POST in flight with indexer acknowledgement: until it is answered, HEC may
/// have handed out an ackId we don't know yet. Dropped without [`PostTicket::finish`]
/// means its answer was lost (see [`AckBook`]).
struct PostTicket {
    book: Arc<AckBook>,
    serial: u64,
    done: bool,
}

impl AckBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An event POST is about to be sent.
    fn post_started(self: &Arc<Self>) -> PostTicket {
        let mut s = self.lock();
        let serial = s.next_post;
        s.next_post += 1;
        s.posts.insert(serial);
        PostTicket {
            book: self.clone(),
            serial,
            done: false,
        }
    }

    /// Stop waiting for `id` if `reg` still holds it (its request will be sent again).
    fn forget(&self, id: u64, reg: u64) {
        let mut s = self.lock();
        if s.waiting.get(&id).is_some_and(|w| w.reg == reg) {
            s.waiting.remove(&id);
        }
    }

    /// The outstanding `(ackId, registration)` pairs, by ackId; drops requests nobody
    /// waits for any more (their batch was abandoned).
    fn snapshot(&self) -> Vec<(u64, u64)> {
        let mut s = self.lock();
        s.waiting.retain(|_, w| !w.tx.is_closed());
        let mut ids: Vec<(u64, u64)> = s.waiting.iter().map(|(&id, w)| (id, w.reg)).collect();
        ids.sort_unstable();
        ids
    }

    fn is_empty(&self) -> bool {
        self.lock().waiting.is_empty()
    }

    /// A query sent when `trues` were registered reported them `true`.
    fn reported(&self, trues: Vec<(u64, u64)>) {
        if trues.is_empty() {
            return;
        }
        let mut s = self.lock();
        if s.posts.is_empty() {
            s.apply(&trues);
        } else {
            let after = s.next_post;
            s.parked.push(Parked { trues, after });
        }
    }

    /// Ack polling failed for good: every waiting request fails with `m`.
    fn fail_all(&self, m: &str) {
        let mut s = self.lock();
        for (_, w) in s.waiting.drain() {
            let _ = w.tx.send(AckOutcome::Failed(m.to_string()));
        }
        s.parked.clear();
    }
}

impl PostTicket {
    /// An attempt of this POST lost its answer after sending (a timeout, a reset, an
    /// unreadable body): HEC may have handed out an ackId we'll never see, maybe one a
    /// waiting request holds, so none of them can be confirmed any more.
    fn answer_lost(&self, endpoint: &str) {
        self.book.lock().supersede_all(&format!(
            "the answer to a request sent to HEC at {endpoint} was lost, and it may have carried an ackId the unconfirmed requests hold"
        ));
    }

    /// The POST was answered without an ackId (refused, or acknowledgement off).
    fn answered(self) {
        let _ = self.finish(None);
    }

    /// The POST was answered: with `Some(ackId)` when HEC accepted it. Returns the
    /// registration to wait on.
    ///
    /// When a request still waits for the same ackId, HEC handed it out twice, and a
    /// `true` for it can no longer be given to the older holder: that one is superseded.
    /// Which request is the newer holder is known only when this POST was sent after
    /// every earlier answer with that ackId arrived. If it was in flight together with
    /// one of them (waiting, confirmed or given up), answers may arrive in another order
    /// than HEC handed out the ackIds (it may have given the id to this request first,
    /// restarted, then to the other, whose `true` would then confirm this one), so this
    /// request is superseded too and nobody waits for that ackId.
    fn finish(mut self, ack_id: Option<u64>) -> Option<(u64, oneshot::Receiver<AckOutcome>)> {
        self.done = true;
        let book = self.book.clone();
        let mut s = book.lock();
        s.posts.remove(&self.serial);
        let registered = ack_id.map(|id| {
            let reg = s.next_reg;
            s.next_reg += 1;
            let (tx, rx) = oneshot::channel();
            let again = format!(
                "HEC handed out ackId {id} again while an earlier request with it was unconfirmed (HEC restarted, cleaned up an idle channel, or another indexer answered behind a balancer without affinity)"
            );
            let ambiguous = s.answered.get(&id).is_some_and(|&after| self.serial < after);
            let next_post = s.next_post;
            let after = s.answered.entry(id).or_insert(0);
            *after = (*after).max(next_post);
            if let Some(old) = s.waiting.remove(&id) {
                tracing::debug!(ack_id = id, ambiguous, "HEC handed out an ackId a waiting request holds; it is sent again");
                let _ = old.tx.send(AckOutcome::Superseded(again.clone()));
            }
            if ambiguous {
                // Nobody waits for `id` now: no `true` for it confirms anything.
                tracing::debug!(ack_id = id, "HEC handed out an ackId to requests in flight together; both are sent again");
                let _ = tx.send(AckOutcome::Superseded(again));
            } else {
                s.waiting.insert(id, Waiter { reg, tx });
            }
            (reg, rx)
        });
        // No POST still to be answered was sent before these answers: forget them.
        let oldest = s.posts.first().copied().unwrap_or(s.next_post);
        s.answered.retain(|_, after| *after > oldest);
        s.release();
        drop(s);
        if registered.is_some() {
            book.wake.notify_one();
        }
        registered
    }
}

impl Drop for PostTicket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.book.lock();
        s.posts.remove(&self.serial);
        s.supersede_all(
            "the answer to a request sent to HEC was lost, and it may have carried an ackId the unconfirmed requests hold",
        );
        s.release();
    }
}

/// One per sink: asks HEC about every outstanding ackId, one query (per
/// [`ACK_QUERY_MAX`] ids) per `ack_poll_interval` while any is outstanding; idle
/// otherwise. Stops with the sink (its task is aborted on drop).
struct AckPoller {
    book: Arc<AckBook>,
    _task: AbortOnDropHandle<()>,
}

impl AckPoller {
    fn start(conn: Arc<Conn>, interval: Duration) -> AckPoller {
        let book = conn.book.clone();
        let task = tokio::spawn(poll_acks(conn, book.clone(), interval));
        AckPoller {
            book,
            _task: AbortOnDropHandle::new(task),
        }
    }
}

async fn poll_acks(conn: Arc<Conn>, book: Arc<AckBook>, interval: Duration) {
    let mut failing = false;
    loop {
        if book.is_empty() {
            book.wake.notified().await;
            continue;
        }
        tokio::time::sleep(interval).await;
        // Taken before the query is sent: a request registered later (or registered
        // again under the same ackId) is not confirmed by this query's answer.
        let outstanding = book.snapshot();
        for chunk in outstanding.chunks(ACK_QUERY_MAX) {
            let ids: Vec<u64> = chunk.iter().map(|&(id, _)| id).collect();
            match conn.query_acks(&ids).await {
                Ok(acked) => {
                    if failing {
                        failing = false;
                        tracing::info!(sink_id = %conn.id, "ack queries work again");
                    }
                    book.reported(
                        chunk
                            .iter()
                            .filter(|(id, _)| acked.contains(id))
                            .copied()
                            .collect(),
                    );
                }
                Err(AckError::Transient(m)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(sink_id = %conn.id, error = %m, "ack query failed; polling on until ack_timeout");
                    }
                }
                Err(AckError::Fatal(m)) => book.fail_all(&m),
            }
        }
    }
}

/// Wait until every request of `waiting` is confirmed (marking its events done), or
/// `timeout` passes: the unconfirmed events are then pending again and the answer is
/// `Retryable` (they are sent again; a duplicate is possible, `event.id` identifies it).
/// A request whose ackId HEC handed out again meanwhile is unconfirmed too (see
/// [`AckBook`]): its events are pending again once the others are settled.
async fn confirm(
    book: Arc<AckBook>,
    waiting: Waiting,
    progress: &mut Progress,
    timeout: Duration,
    endpoint: &str,
) -> Result<(), SinkError> {
    if waiting.is_empty() {
        return Ok(());
    }
    // By registration, never by ackId: two requests may carry the same ackId.
    let mut open: HashMap<u64, (u64, Vec<usize>)> = HashMap::with_capacity(waiting.len());
    let mut answers = FuturesUnordered::new();
    for w in waiting {
        let (reg, rx) = (w.reg, w.rx);
        open.insert(reg, (w.id, w.events));
        answers.push(async move { (reg, rx.await) });
    }
    let mut superseded: Vec<Vec<usize>> = Vec::new();
    let mut why_superseded = String::new();
    // Checked: an absurd ack_timeout means "no deadline", never an overflow panic.
    let deadline = Instant::now().checked_add(timeout);
    let failure = loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, answers.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let events: usize = open.values().map(|(_, e)| e.len()).sum();
                    break Some(SinkError::Retryable(format!(
                        "HEC at {endpoint}: {} request(s) ({events} events) not acknowledged by the indexers within ack_timeout ({}); sending them again (a duplicate is possible: event.id identifies it)",
                        open.len(),
                        humantime::format_duration(timeout)
                    )));
                }
            },
            None => answers.next().await,
        };
        match next {
            None => break None,
            Some((reg, Ok(AckOutcome::Confirmed))) => {
                if let Some((_, events)) = open.remove(&reg) {
                    progress.set(&events, State::Done);
                }
            }
            Some((reg, Ok(AckOutcome::Superseded(m)))) => {
                if let Some((_, events)) = open.remove(&reg) {
                    progress.set(&events, State::Pending);
                    superseded.push(events);
                }
                if why_superseded.is_empty() {
                    why_superseded = m;
                }
            }
            Some((_, Ok(AckOutcome::Failed(m)))) => break Some(SinkError::Fatal(m)),
            Some((_, Err(_))) => {
                break Some(SinkError::Retryable(format!(
                    "HEC at {endpoint}: ack polling stopped; the unconfirmed requests are sent again"
                )));
            }
        }
    };
    for (reg, (id, events)) in open {
        book.forget(id, reg);
        progress.set(&events, State::Pending);
    }
    if superseded.is_empty() {
        return failure.map_or(Ok(()), Err);
    }
    let events: usize = superseded.iter().map(Vec::len).sum();
    let m = format!(
        "HEC at {endpoint}: {} request(s) ({events} events) cannot be confirmed: {why_superseded}; sending them again (a duplicate is possible: event.id identifies it)",
        superseded.len()
    );
    Err(match failure {
        None => SinkError::Retryable(m),
        Some(SinkError::Retryable(f)) => SinkError::Retryable(format!("{m}; {f}")),
        Some(other) => other,
    })
}

/// What sending a batch needs, shared by the batches whose requests are in flight
/// together: [`HecSink::submit`] sends each batch in a task of its own.
struct Sender {
    conn: Arc<Conn>,
    meta: wire::Meta,
    max_events: usize,
    max_bytes: usize,
    /// `in_flight_requests`: the requests in flight across all the sink's batches.
    requests: Arc<Semaphore>,
    most_requests: usize,
    dead_letters: tokio::sync::Mutex<files::DeadLetters>,
    quarantined: AtomicU64,
    evidence: Mutex<Evidence>,
    /// The first fatal error a submitted batch met: later submissions are refused with it
    /// at once instead of being sent first (the pipeline stops on it once the batches
    /// before that one are confirmed).
    fatal: Mutex<Option<String>>,
}

/// What HEC's answers so far say about the receiver, across the sink's batches.
#[derive(Default)]
struct Evidence {
    /// Sizes of the requests HEC accepted: decides whether a 413 for a single event means
    /// the event is too large (see [`SizeEvidence`]).
    sizes: SizeEvidence,
    /// The order of HEC's acceptances and per-event rejections: decides whether rejected
    /// events are malformed or the receiver rejects everything (see [`FormatEvidence`]).
    format: FormatEvidence,
}

/// The requests of one pass over a batch, packed, and the permits to send them: at most
/// `in_flight_requests` of the sink's requests are in flight at a time, whichever batch
/// they belong to.
struct Pass {
    chunks: Vec<Chunk>,
    permits: OwnedSemaphorePermit,
}

pub struct HecSink {
    sender: Arc<Sender>,
    dead_letter_path: PathBuf,
    in_flight_batches: usize,
    ack: Option<AckSettings>,
    poller: Option<AckPoller>,
    /// Progress of batches that failed (by `(source index, seq)`), for their retry.
    saved: Arc<Mutex<HashMap<(usize, u64), Progress>>>,
}

impl HecSink {
    /// Build the sink: resolve the token, set up the HTTPS client, load (or create) the
    /// data channel. No network I/O.
    pub fn new(id: &str, cfg: &HecSinkConfig, ctx: &SinkContext) -> Result<HecSink, SinkError> {
        let key = format!("sinks.{id}");
        let fatal = |e: ConfigError| SinkError::Fatal(e.to_string());
        cfg.validate(&key).map_err(fatal)?;
        let endpoint = base_url(&key, &cfg.endpoint).map_err(fatal)?;
        let token = crate::config::common::resolve_secret(
            &format!("{key}.token"),
            cfg.token.as_ref(),
            cfg.token_file.as_deref(),
        )
        .map_err(fatal)?;
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", token.expose().trim()))
            .map_err(|_| {
                SinkError::Fatal(format!(
                    "{key}.token contains characters that cannot travel in an HTTP header; check the value (it is not shown)"
                ))
            })?;
        auth.set_sensitive(true);
        let client = http::build_client(&format!("{key}.tls"), &cfg.tls, cfg.request_timeout)
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let channel_file = files::channel_path(&ctx.state_dir, id);
        let channel = files::load_or_create_channel(&channel_file)
            .map_err(|e| SinkError::Fatal(format!("{key}: {e}")))?;
        let dead_letters = files::DeadLetters::new(id, &ctx.state_dir);
        let policy = RetryPolicy {
            max_retries: cfg.max_retries,
            max_delay: cfg.retry_max_delay,
            // A longer configured backoff than the default total is honoured once at least.
            max_total_wait: RetryPolicy::default()
                .max_total_wait
                .max(cfg.retry_max_delay),
            ..RetryPolicy::default()
        };
        let conn = Conn {
            id: id.to_string(),
            event_url: format!("{endpoint}/services/collector/event"),
            ack_url: format!("{endpoint}/services/collector/ack?channel={channel}"),
            health_url: format!("{endpoint}/services/collector/health"),
            endpoint,
            client,
            auth,
            channel,
            channel_file,
            index: cfg.index.clone(),
            gzip: (cfg.compression == Compression::Gzip).then_some(cfg.compression_level),
            ack: cfg.indexer_ack,
            policy,
            once: RetryPolicy {
                max_retries: 0,
                ..RetryPolicy::default()
            },
            cookies: CookieJar::default(),
            book: Arc::default(),
            hec_seen: AtomicBool::new(false),
        };
        let dead_letter_path = dead_letters.path().to_path_buf();
        let most_requests = cfg.in_flight_requests.max(1);
        Ok(HecSink {
            sender: Arc::new(Sender {
                conn: Arc::new(conn),
                meta: wire::Meta {
                    index: cfg.index.clone(),
                    sourcetype: cfg.sourcetype.clone(),
                    source: cfg.source.clone(),
                    host: cfg.host.clone(),
                },
                max_events: cfg.max_events,
                max_bytes: cfg.max_bytes,
                requests: Arc::new(Semaphore::new(most_requests)),
                most_requests,
                dead_letters: tokio::sync::Mutex::new(dead_letters),
                quarantined: AtomicU64::new(0),
                evidence: Mutex::default(),
                fatal: Mutex::default(),
            }),
            dead_letter_path,
            in_flight_batches: cfg.in_flight_batches,
            ack: cfg.indexer_ack.then_some(AckSettings {
                timeout: cfg.ack_timeout,
                poll_interval: cfg.ack_poll_interval,
            }),
            poller: None,
            saved: Arc::default(),
        })
    }

    /// The data channel GUID (stable across restarts).
    pub fn channel(&self) -> &str {
        &self.sender.conn.channel
    }

    /// Events sent to the dead-letter file by this process.
    pub fn dead_letter_count(&self) -> u64 {
        self.sender.quarantined.load(Ordering::Relaxed)
    }

    pub fn dead_letter_path(&self) -> &Path {
        &self.dead_letter_path
    }

    /// The ack book, its poller started on first use (needs the runtime).
    fn ack_book(&mut self) -> Option<(Arc<AckBook>, Duration)> {
        let ack = self.ack.as_ref()?;
        let (timeout, interval) = (ack.timeout, ack.poll_interval);
        let conn = &self.sender.conn;
        let poller = self
            .poller
            .get_or_insert_with(|| AckPoller::start(conn.clone(), interval));
        Some((poller.book.clone(), timeout))
    }

    /// The progress kept from an earlier attempt at `batch`, or a fresh one.
    fn progress_for(&self, batch: &Batch) -> Progress {
        let key = (batch.source_index, batch.seq);
        let kept = self.saved.lock().ok().and_then(|mut s| s.remove(&key));
        match kept {
            Some(p) if p.state.len() == batch.events.len() => p,
            _ => Progress::new(batch),
        }
    }

    fn keep_progress(saved: &Mutex<HashMap<(usize, u64), Progress>>, progress: Progress) {
        if let Ok(mut s) = saved.lock() {
            s.insert(progress.key, progress);
        }
    }
}

impl Sender {
    /// Refuse a submission once a submitted batch met a fatal error (see [`Sender::fatal`]).
    fn check_fatal(&self) -> Result<(), SinkError> {
        match &*self.fatal.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(m) => Err(SinkError::Fatal(m.clone())),
            None => Ok(()),
        }
    }

    fn note_fatal(&self, result: &Result<(), SinkError>) {
        if let Err(SinkError::Fatal(m)) = result {
            self.fatal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| m.clone());
        }
    }

    fn evidence(&self) -> std::sync::MutexGuard<'_, Evidence> {
        self.evidence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn quarantine(
        &self,
        batch: &Batch,
        index: usize,
        status: u16,
        code: Option<i64>,
        text: &str,
    ) -> Result<(), SinkError> {
        let Some(event) = batch.events.get(index) else {
            return Err(SinkError::Fatal(format!(
                "internal error: no event {index} in the batch"
            )));
        };
        let id = self.conn.id.clone();
        let why = files::Rejection {
            http_status: status,
            code,
            text,
        };
        let mut dead_letters = self.dead_letters.lock().await;
        dead_letters.quarantine_for_batch(&why, &event.json).await?;
        self.quarantined.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sink_id = %id,
            event_id = %event.event.event.id,
            http_status = status,
            code = code.unwrap_or(-1),
            text,
            path = %dead_letters.path().display(),
            quarantined_total = dead_letters.count(),
            "HEC refused an event for good (malformed, or too large); it went to the dead-letter file, the rest is sent again"
        );
        Ok(())
    }

    /// The pending events of `batch` in HEC envelopes, packed into requests; `held`
    /// (rejected, waiting to be judged) are left out.
    fn pack_pending(
        &self,
        batch: &Batch,
        progress: &Progress,
        held: &[Held],
    ) -> Result<Vec<Chunk>, SinkError> {
        let mut packer = wire::Packer::new(self.max_events, self.max_bytes, &progress.alone);
        let mut envelopes = wire::Envelopes::new(&self.meta);
        for (i, e) in batch.events.iter().enumerate() {
            if !is_pending(progress, held, i) {
                continue;
            }
            packer
                .add(i, |body| envelopes.encode(e, body))
                .map_err(|err| {
                    SinkError::Fatal(format!(
                        "sink `{}`: cannot encode event {}: {err}",
                        self.conn.id, e.event.event.id
                    ))
                })?;
        }
        Ok(packer.finish())
    }

    /// The next pass over `batch`: once permits to send it are free (as many as its
    /// requests, up to `in_flight_requests`), its pending events packed into requests.
    /// Packed only then, so a batch waiting for its turn holds no request bodies. `None`:
    /// nothing is pending.
    async fn start_pass(
        &self,
        batch: &Batch,
        progress: &Progress,
        held: &[Held],
    ) -> Result<Option<Pass>, SinkError> {
        let requests = self.requests_for(batch, progress, held);
        if requests == 0 {
            return Ok(None);
        }
        // Never more than the semaphore holds (`most_requests` fits in u32: validated).
        let wanted = requests.min(self.most_requests) as u32;
        let mut permits = self
            .requests
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| {
                SinkError::Fatal(format!(
                    "internal error: sink `{}` stopped handing out request permits",
                    self.conn.id
                ))
            })?;
        let chunks = self.pack_pending(batch, progress, held)?;
        if chunks.is_empty() {
            return Ok(None);
        }
        // The estimate was high: give the permits this pass cannot use back at once.
        if let Some(spare) = permits.num_permits().checked_sub(chunks.len()) {
            drop(permits.split(spare));
        }
        Ok(Some(Pass { chunks, permits }))
    }

    /// About how many requests the pending events of `batch` make ([`Self::pack_pending`]
    /// decides; a wrong guess only changes how many of them go out together).
    fn requests_for(&self, batch: &Batch, progress: &Progress, held: &[Held]) -> usize {
        let (mut alone, mut together, mut bytes) = (0usize, 0usize, 0usize);
        for (i, e) in batch.events.iter().enumerate() {
            if !is_pending(progress, held, i) {
                continue;
            }
            if progress.alone.contains(&i) {
                alone += 1;
            } else {
                together += 1;
                bytes += e.json.len() + ENVELOPE_GUESS;
            }
        }
        alone
            + together
                .div_ceil(self.max_events.max(1))
                .max(bytes.div_ceil(self.max_bytes.max(1)))
    }

    /// Send every pending event of the batch (see the module docs of `sinks::splunk_hec`),
    /// as many requests at a time as its pass holds permits; `first` is the first pass when
    /// the caller already started it. Returns the accepted requests whose ackIds are still
    /// to be confirmed, and whether everything was sent (an error leaves the events it
    /// concerns pending).
    async fn send_pending(
        &self,
        batch: &Batch,
        progress: &mut Progress,
        mut first: Option<Pass>,
    ) -> (Waiting, Result<(), SinkError>) {
        let mut waiting: Waiting = Vec::new();
        // Events HEC rejected as malformed, judged once the rest of the batch was sent
        // (their neighbours' answers are the evidence, see `FormatEvidence`).
        let mut held: Vec<Held> = Vec::new();
        loop {
            let pass = match first.take() {
                Some(pass) => Ok(Some(pass)),
                None => self.start_pass(batch, progress, &held).await,
            };
            let Pass { chunks, permits } = match pass {
                Ok(Some(pass)) => pass,
                // Nothing left to send: judge what HEC rejected, if anything.
                Ok(None) if held.is_empty() => return (waiting, Ok(())),
                Ok(None) => {
                    if let Err(e) = self.judge_rejected(batch, progress, &held).await {
                        return (waiting, Err(e));
                    }
                    held.clear();
                    continue;
                }
                Err(e) => return (waiting, Err(e)),
            };
            let mut queue: VecDeque<Chunk> = chunks.into();
            let mut flying = FuturesUnordered::new();
            let mut stop: Option<SinkError> = None;
            // Single events answered 413, judged once this pass is over (what it gets
            // accepted is evidence too): (event, raw bytes, bytes as sent).
            let mut refused: Vec<(usize, usize, usize)> = Vec::new();
            let mut splits = 0usize;
            loop {
                while stop.is_none() && flying.len() < permits.num_permits() {
                    let Some(chunk) = queue.pop_front() else {
                        break;
                    };
                    flying.push(self.conn.clone().post(chunk));
                }
                let Some(result) = flying.next().await else {
                    break;
                };
                let (chunk, posted, sent) = match result {
                    Ok(p) => p,
                    Err(e @ SinkError::Fatal(_)) => return (waiting, Err(e)),
                    Err(e) => {
                        stop.get_or_insert(e);
                        continue;
                    }
                };
                match posted {
                    Posted::Accepted { ack } => {
                        let mut evidence = self.evidence();
                        evidence.sizes.accepted(chunk.body.len(), sent);
                        evidence.format.accepted();
                        match ack {
                            Some(mut wait) => {
                                progress.set(&chunk.events, State::Sent);
                                wait.events = chunk.events;
                                waiting.push(wait);
                            }
                            None => progress.set(&chunk.events, State::Done),
                        }
                    }
                    Posted::Rejected {
                        verdict: Verdict::TooLarge,
                        ..
                    } => {
                        let (events, raw) = (chunk.events.len(), chunk.body.len());
                        let first = chunk.events.first().copied();
                        match (chunk.split(), first) {
                            // Too large for HEC or a proxy: nothing of it was indexed, so
                            // the halves go again (first, keeping the order).
                            (Some((a, b)), _) => {
                                splits += 1;
                                tracing::debug!(sink_id = %self.conn.id, events, bytes = raw, "HEC answered 413; sending the request again in two halves");
                                queue.push_front(b);
                                queue.push_front(a);
                            }
                            (None, Some(only)) => refused.push((only, raw, sent)),
                            (None, None) => {}
                        }
                    }
                    Posted::Rejected {
                        verdict: Verdict::Retry(m),
                        ..
                    } => {
                        stop.get_or_insert(SinkError::Retryable(format!(
                            "{m} (gave up after {} retries; the batch will be retried)",
                            self.conn.policy.max_retries
                        )));
                    }
                    Posted::Rejected {
                        verdict: Verdict::Fatal(m),
                        ..
                    } => return (waiting, Err(SinkError::Fatal(m))),
                    Posted::Rejected {
                        status,
                        verdict: Verdict::Poison { index, code, text },
                    } => {
                        // A number that names no event of the request (negative, past
                        // its end) says nothing: as if HEC had named none.
                        let position = index.filter(|&n| {
                            let inside = usize::try_from(n).is_ok_and(|n| n < chunk.events.len());
                            if !inside {
                                tracing::warn!(sink_id = %self.conn.id, invalid_event_number = n, events = chunk.events.len(), "HEC named an event number outside the request; sending its events one by one");
                            }
                            inside
                        });
                        let named = position
                            .and_then(|n| usize::try_from(n).ok())
                            .and_then(|n| chunk.events.get(n).copied());
                        self.evidence()
                            .format
                            .rejected(position.filter(|_| chunk.events.len() > 1));
                        let bad = match (named, chunk.events.as_slice()) {
                            (_, [only]) => Some(*only),
                            (Some(i), _) => Some(i),
                            (None, events) => {
                                // HEC didn't say which event is bad: send each alone.
                                tracing::warn!(sink_id = %self.conn.id, http_status = status, code = code.unwrap_or(-1), text, events = events.len(), "HEC rejected a request without naming the bad event; sending its events one by one");
                                progress.alone.extend(events.iter().copied());
                                None
                            }
                        };
                        if let Some(index) = bad {
                            held.push(Held {
                                index,
                                status,
                                code,
                                text,
                            });
                        }
                    }
                }
            }
            // The other batches' requests may go while this pass's rejections are judged.
            drop(permits);
            if splits > 0 {
                tracing::warn!(
                    sink_id = %self.conn.id,
                    endpoint = %self.conn.endpoint,
                    requests = splits,
                    largest_accepted_bytes = self.evidence().sizes.raw,
                    "HEC (or a proxy in front of it) refused requests as too large (HTTP 413); they were split and sent again. Lower sinks.{}.max_bytes below the body limit to avoid the extra requests",
                    self.conn.id
                );
            }
            if let Some(e) = stop {
                return (waiting, Err(e));
            }
            if let Err(e) = self.judge_refused(batch, progress, &refused).await {
                return (waiting, Err(e));
            }
            // Loop: anything still pending (neighbours of a poison event) goes again.
        }
    }

    /// Events HEC rejected as malformed, now that the rest of the batch was sent: to the
    /// dead-letter file when HEC's answers make that believable ([`FormatEvidence`]),
    /// else the batch fails (retried, nothing quarantined) with an error saying what is
    /// likely wrong in front of HEC.
    async fn judge_rejected(
        &self,
        batch: &Batch,
        progress: &mut Progress,
        held: &[Held],
    ) -> Result<(), SinkError> {
        let Some(first) = held.first() else {
            return Ok(());
        };
        let format = self.evidence().format;
        if format.believable() {
            for h in held {
                self.quarantine(batch, h.index, h.status, h.code, &h.text)
                    .await?;
                progress.set(&[h.index], State::Done);
            }
            return Ok(());
        }
        let why = if format.accepted_any {
            format!(
                "{} requests in a row were rejected like this with none accepted in between",
                format.streak
            )
        } else {
            "it has accepted no request from this sink since startup".to_string()
        };
        let id = &self.conn.id;
        tracing::error!(sink_id = %id, endpoint = %self.conn.endpoint, events = held.len(), http_status = first.status, code = first.code.unwrap_or(-1), text = %first.text, "HEC rejects events as malformed that cannot all be malformed; nothing quarantined, retrying");
        Err(SinkError::Retryable(format!(
            "sink `{id}`: HEC at {} rejected {} event(s) of this batch as malformed (HTTP {}, code {}: {}), and {why}: the receiver, not the events, is the likely problem. A proxy in front of HEC stripping `Content-Encoding: gzip`, or a HEC-compatible receiver without gzip support, answers this way: fix the proxy, or set sinks.{id}.compression = \"none\". Nothing was quarantined and the checkpoint stays; the batch is retried",
            self.conn.endpoint,
            held.len(),
            first.status,
            first.code.unwrap_or(-1),
            http::excerpt(&first.text, 120),
        )))
    }

    /// Single events answered 413 without a HEC code: quarantined when they are larger
    /// than anything HEC accepted ([`SizeEvidence`]); otherwise the limit is not about
    /// them (a proxy refusing every POST) and the batch fails, to be retried, with an
    /// error that says what to change.
    async fn judge_refused(
        &self,
        batch: &Batch,
        progress: &mut Progress,
        refused: &[(usize, usize, usize)],
    ) -> Result<(), SinkError> {
        let seen = self.evidence().sizes;
        let mut kept: Vec<(usize, usize)> = Vec::new();
        for &(index, raw, sent) in refused {
            if seen.too_large(raw, sent) {
                let reason = format!(
                    "request too large: HTTP 413 without a HEC error code for this event alone ({raw} bytes, {sent} as sent), larger than any request HEC at {} accepted (up to {} bytes, {} as sent); raise the body limit of HEC (max_content_length) or of the proxy in front of it, then re-ingest",
                    self.conn.endpoint, seen.raw, seen.wire
                );
                self.quarantine(batch, index, 413, None, &reason).await?;
                progress.set(&[index], State::Done);
            } else {
                kept.push((raw, sent));
            }
        }
        let Some(&(raw, sent)) = kept.first() else {
            return Ok(());
        };
        let why = if seen.raw == 0 {
            "it has accepted no request from this sink yet".to_string()
        } else {
            format!(
                "it accepted requests at least as large before (up to {} bytes, {} as sent)",
                seen.raw, seen.wire
            )
        };
        Err(SinkError::Retryable(format!(
            "HEC at {} answered HTTP 413 (request too large) without a HEC error code even to a single event ({raw} bytes, {sent} as sent; {} event(s) of this batch refused like this), and {why}: a proxy or load balancer in front of HEC, or HEC's max_content_length, refuses these requests. Nothing was quarantined and the checkpoint stays; the batch is retried. Raise that body limit (e.g. nginx client_max_body_size, Splunk limits.conf [http_input] max_content_length) or lower sinks.{}.max_bytes below it",
            self.conn.endpoint,
            kept.len(),
            self.conn.id
        )))
    }
}

impl HecSink {
    async fn healthcheck_inner(&mut self) -> Result<(), SinkError> {
        let mut retryable: Vec<String> = Vec::new();
        let conn = self.sender.conn.clone();
        let ctx = conn.err_ctx();

        // 1. Health endpoint (no token needed): reachable, TLS trusted, queues not full.
        match http::send_with_retry(&conn.once, &conn.health_url, || {
            conn.client.get(&conn.health_url).send()
        })
        .await
        {
            Ok(resp) => match conn.read_reply(&conn.health_url, resp).await {
                Ok(text) => {
                    if wire::parse_reply(&text).is_some() {
                        conn.seen_hec();
                    }
                }
                Err(e) => retryable.push(format!("HEC health at {}: {e}", conn.endpoint)),
            },
            Err(HttpError::Status { status: 404, .. }) => {
                tracing::warn!(sink_id = %conn.id, url = %conn.health_url, "HEC has no health endpoint (Splunk before 6.6?); skipping that probe");
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                match wire::classify(status, reply.as_ref(), &ctx) {
                    Verdict::Retry(m) => retryable.push(m),
                    Verdict::Fatal(m) => return Err(SinkError::Fatal(m)),
                    Verdict::Poison { .. } | Verdict::TooLarge => retryable.push(format!(
                        "HEC health at {} answered HTTP {status}",
                        conn.endpoint
                    )),
                }
            }
            Err(e) => match conn.transport_failure(
                &format!(
                    "cannot reach HEC at {} (check sinks.{}.endpoint and that HEC is enabled)",
                    conn.endpoint, conn.id
                ),
                e,
            ) {
                SinkError::Retryable(m) => retryable.push(m),
                other => return Err(other),
            },
        }

        // 2. Token and channel: an empty POST is answered "No data" (code 5) only when
        //    the token (and, with ack on, the channel) is accepted.
        match http::send_with_retry(&conn.once, &conn.event_url, || {
            conn.request(&conn.event_url, Bytes::new(), false).send()
        })
        .await
        {
            Ok(resp) => {
                if let Err(e) = conn.read_reply(&conn.event_url, resp).await {
                    retryable.push(format!("HEC at {}: {e}", conn.endpoint));
                }
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                if reply.is_some() {
                    conn.seen_hec();
                }
                // A 4xx without HEC's reply to an empty body (a receiver that only checks
                // that the body parses) says nothing about the token: not a verdict.
                let silent_4xx = reply.is_none()
                    && (400..500).contains(&status)
                    && !matches!(status, 401 | 403 | 413);
                if silent_4xx {
                    tracing::warn!(sink_id = %conn.id, endpoint = %conn.endpoint, status, "HEC answered the token probe (an empty request) without a HEC reply; the token is checked by the first delivery instead");
                } else if reply.as_ref().and_then(|r| r.code) != Some(5) {
                    match wire::classify(status, reply.as_ref(), &ctx) {
                        Verdict::Retry(m) => retryable.push(m),
                        Verdict::Fatal(m) => return Err(SinkError::Fatal(m)),
                        Verdict::TooLarge => retryable.push(format!(
                            "HEC at {} answered HTTP 413 (request too large) to an empty request: a proxy in front of HEC seems to refuse every POST; events will not be delivered (nor quarantined) until its body limit is raised",
                            conn.endpoint
                        )),
                        Verdict::Poison { .. } => {}
                    }
                }
            }
            Err(e) => match conn.transport_failure(&format!("HEC at {}", conn.endpoint), e) {
                SinkError::Retryable(m) => retryable.push(m),
                other => return Err(other),
            },
        }

        // 3. Indexer acknowledgement must really be on (code 14 otherwise): fail loudly
        //    rather than deliver without it. Asked on a fresh channel of its own: HEC
        //    reports a `true` only once, so asking about an ackId of the sink's channel
        //    could take the `true` of a request that a running daemon (`check` beside
        //    `run`) or this sink waits for, which then times out and is sent again.
        if self.ack.is_some() {
            let probe_channel = uuid::Uuid::new_v4().hyphenated().to_string();
            let probe_url = format!(
                "{}/services/collector/ack?channel={probe_channel}",
                conn.endpoint
            );
            match conn.query_acks_on(&probe_channel, &probe_url, &[0]).await {
                Ok(_) => {}
                Err(AckError::Transient(m)) => retryable.push(m),
                Err(AckError::Fatal(m)) => return Err(SinkError::Fatal(m)),
            }
        }

        if retryable.is_empty() {
            tracing::info!(sink_id = %conn.id, endpoint = %conn.endpoint, channel = %conn.channel, indexer_ack = self.ack.is_some(), "Splunk HEC is healthy and accepts the token");
            Ok(())
        } else {
            Err(SinkError::Retryable(retryable.join("; ")))
        }
    }
}

/// Send `batch` (from `first`, its first pass, when the caller started it) and, with
/// indexer ack, wait until HEC confirmed what it accepted; on failure keep its progress
/// for the pipeline's next attempt at it.
async fn send_batch(
    sender: &Sender,
    batch: &Batch,
    mut progress: Progress,
    first: Option<Pass>,
    ack: Option<(Arc<AckBook>, Duration)>,
    saved: &Mutex<HashMap<(usize, u64), Progress>>,
) -> Result<(), SinkError> {
    let (waiting, sent) = sender.send_pending(batch, &mut progress, first).await;
    // Wait for the acknowledgements of what was accepted, even when something must be
    // sent again: confirmed requests are then never re-sent.
    let confirmed = match ack {
        Some((book, timeout)) => {
            confirm(book, waiting, &mut progress, timeout, &sender.conn.endpoint).await
        }
        None => Ok(()),
    };
    let result = sent.and(confirmed);
    if result.is_err() {
        // The pipeline retries this batch: only what is not done goes again.
        HecSink::keep_progress(saved, progress);
    }
    result
}

impl Sink for HecSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.events.is_empty() {
                return Ok(());
            }
            let progress = self.progress_for(batch);
            let ack = self.ack_book();
            send_batch(&self.sender, batch, progress, None, ack, &self.saved).await
        })
    }

    fn window(&self) -> usize {
        self.in_flight_batches
    }

    /// Start sending the batch in a task of its own and hand back its confirmation: it
    /// resolves once HEC accepted every event (with indexer ack: confirmed them). Returns
    /// once the batch's first requests have their permits, so the pipeline's next batch
    /// waits while `in_flight_requests` are in flight: consecutive batches' requests
    /// overlap (a far-away HEC costs one round trip per `in_flight_requests` requests,
    /// not per batch), and what is held stays bounded by the requests in flight.
    fn submit<'a>(
        &'a mut self,
        batch: &'a Arc<Batch>,
    ) -> BoxFuture<'a, Result<Confirmation, SinkError>> {
        Box::pin(async move {
            let done: Confirmation = Box::pin(async { Ok(()) });
            if batch.events.is_empty() {
                return Ok(done);
            }
            self.sender.check_fatal()?;
            let progress = self.progress_for(batch);
            let first = match self.sender.start_pass(batch, &progress, &[]).await {
                Ok(first) => first,
                Err(e) => {
                    Self::keep_progress(&self.saved, progress);
                    return Err(e);
                }
            };
            let ack = self.ack_book();
            let (sender, saved, batch) = (self.sender.clone(), self.saved.clone(), batch.clone());
            let id = sender.conn.id.clone();
            let task = AbortOnDropHandle::new(tokio::spawn(async move {
                let result = send_batch(&sender, &batch, progress, first, ack, &saved).await;
                sender.note_fatal(&result);
                result
            }));
            let confirmation: Confirmation = Box::pin(async move {
                task.await.unwrap_or_else(|e| {
                    Err(SinkError::Retryable(format!(
                        "sink `{id}`: sending a batch ended unexpectedly ({e}); it is sent again"
                    )))
                })
            });
            Ok(confirmation)
        })
    }

    /// Health endpoint, then the token (and channel), then indexer acknowledgement.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.healthcheck_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(sink: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
            [state]
            dir = "/tmp/x"
            [sources.vbo_main]
            type = "vbo"
            url = "https://vbo.example.net:4443"
            username = "svc"
            password = "pw"
            [sinks.splunk]
            type = "splunk_hec"
            inputs = ["vbo_main"]
            {sink}
            "#
        );
        Config::from_toml(&text, Path::new("t.toml"), &|n| {
            (n == "HEC_TOKEN").then(|| "tok-Secret-123".to_string())
        })
    }

    fn hec(config: &Config) -> &HecSinkConfig {
        match config.sinks.get("splunk") {
            Some(crate::config::SinkConfig::SplunkHec(c)) => c,
            _ => panic!("not a hec sink"),
        }
    }

    #[test]
    fn defaults_and_secret() {
        let c = parse(
            r#"endpoint = "https://splunk.example.net:8088/services/collector/event"
            token = "${HEC_TOKEN}""#,
        )
        .unwrap();
        let h = hec(&c);
        assert_eq!(h.compression, Compression::None);
        assert!(!h.indexer_ack);
        assert_eq!(h.ack_timeout, Duration::from_secs(300));
        assert_eq!((h.max_events, h.max_bytes), (500, 1_000_000));
        assert_eq!(h.ack_poll_interval, Duration::from_millis(200));
        assert_eq!(
            (
                h.compression_level,
                h.in_flight_requests,
                h.in_flight_batches
            ),
            (6, 4, 16)
        );
        assert_eq!(
            base_url("sinks.splunk", &h.endpoint).unwrap(),
            "https://splunk.example.net:8088"
        );
        assert!(!format!("{c:?}").contains("tok-Secret-123"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (sink, key) in [
            (r#"endpoint = "ftp://x""#, "sinks.splunk.endpoint"),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                token_file = "/f""#,
                "sinks.splunk.token",
            ),
            (r#"endpoint = "https://x:8088""#, "sinks.splunk.token"),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                compression = "zstd""#,
                "zstd",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                max_events = 0"#,
                "sinks.splunk.max_events",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                ack_timeout = "1s"
                ack_poll_interval = "2s""#,
                "sinks.splunk.ack_poll_interval",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                index = """#,
                "sinks.splunk.index",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                linger = "1s""#,
                "linger",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                compression_level = 10"#,
                "sinks.splunk.compression_level",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                in_flight_batches = 0"#,
                "sinks.splunk.in_flight_batches",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                in_flight_requests = 65"#,
                "sinks.splunk.in_flight_requests",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                ack_timeout = "300000years""#,
                "sinks.splunk.ack_timeout",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                request_timeout = "18446744073709551615s""#,
                "sinks.splunk.request_timeout",
            ),
            (
                r#"endpoint = "https://x:8088"
                token = "t"
                retry_max_delay = "1000000d""#,
                "sinks.splunk.retry_max_delay",
            ),
        ] {
            let e = parse(sink).unwrap_err().to_string();
            assert!(e.contains(key), "{sink}: {e}");
        }
    }

    #[test]
    fn channel_persists_and_token_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(
            r#"endpoint = "http://127.0.0.1:1"
            token = "${HEC_TOKEN}"
            indexer_ack = true"#,
        )
        .unwrap();
        let ctx = SinkContext {
            state_dir: dir.path().to_path_buf(),
        };
        let a = HecSink::new("splunk", hec(&c), &ctx).unwrap();
        let b = HecSink::new("splunk", hec(&c), &ctx).unwrap();
        assert_eq!(a.channel(), b.channel());
        assert!(dir.path().join("splunk.hec-channel").exists());
        assert!(!format!("{:?}", a.sender.conn.auth).contains("tok-Secret-123"));
        assert!(
            a.sender
                .conn
                .ack_url
                .ends_with(&format!("channel={}", a.channel()))
        );
    }

    /// A HEC that accepts everything: code 0 with ackIds, every ackId `true` at once.
    async fn accepting_hec() -> String {
        use axum::routing::post;
        let app = axum::Router::new()
            .route(
                "/services/collector/event",
                post(|| async { r#"{"text":"Success","code":0,"ackId":0}"# }),
            )
            .route(
                "/services/collector/ack",
                post(|| async { r#"{"acks":{"0":true}}"# }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn one_event_batch() -> Batch {
        let json = serde_json::json!({
            "@timestamp": "2025-03-04T08:00:01.234Z",
            "ecs": {"version": "9.4.0"},
            "message": "restored",
            "event": {
                "kind": "event", "category": ["file"], "type": ["access"],
                "action": "item-restored", "outcome": "success", "id": "ev-1",
                "created": "2025-03-04T08:00:02Z", "dataset": "veeam.vbo_restore",
                "module": "veeam", "provider": "vbo"
            },
            "observer": {"vendor": "Veeam", "product": "VB365", "hostname": "vbo.example.net"},
            "labels": {"source_id": "vbo_main"},
            "veeam": {}
        });
        let event: crate::event::Event = serde_json::from_value(json).unwrap();
        let json = serde_json::to_string(&event).unwrap();
        Batch {
            source_id: "vbo_main".into(),
            source_index: 0,
            seq: 1,
            events: vec![crate::sinks::EncodedEvent { event, json }],
        }
    }

    /// Validation bounds the durations, but the arithmetic must not rely on it: an
    /// `ack_timeout` that overflows any deadline means "no deadline", never a panic.
    #[tokio::test]
    async fn an_absurd_ack_timeout_cannot_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = accepting_hec().await;
        let c = parse(&format!(
            "endpoint = {endpoint:?}\ntoken = \"${{HEC_TOKEN}}\"\nindexer_ack = true\nack_poll_interval = \"10ms\""
        ))
        .unwrap();
        let ctx = SinkContext {
            state_dir: dir.path().to_path_buf(),
        };
        let mut sink = HecSink::new("splunk", hec(&c), &ctx).unwrap();
        if let Some(ack) = sink.ack.as_mut() {
            ack.timeout = Duration::MAX;
        }
        let batch = one_event_batch();
        let delivered = tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch))
            .await
            .expect("delivered, not stuck");
        assert!(delivered.is_ok(), "{delivered:?}");
    }

    /// What a waiting request has heard so far: `None` while it still waits.
    fn outcome(rx: &mut oneshot::Receiver<AckOutcome>) -> Option<&'static str> {
        match rx.try_recv() {
            Ok(AckOutcome::Confirmed) => Some("confirmed"),
            Ok(AckOutcome::Superseded(_)) => Some("superseded"),
            Ok(AckOutcome::Failed(_)) => Some("failed"),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some("closed"),
        }
    }

    /// A POST answered with `id`: its registration and receiver.
    fn answered(ticket: PostTicket, id: u64) -> (u64, oneshot::Receiver<AckOutcome>) {
        ticket.finish(Some(id)).expect("registered")
    }

    /// An ackId handed out again to a request sent after the first one was answered:
    /// HEC restarted between the two, the first is unconfirmed (sent again), and a
    /// `true` for the id is the second one's.
    #[test]
    fn an_ack_id_handed_out_again_later_supersedes_the_earlier_request() {
        let book = Arc::new(AckBook::default());
        let (_, mut first) = answered(book.post_started(), 0);
        let (second_reg, mut second) = answered(book.post_started(), 0);
        assert_eq!(outcome(&mut first), Some("superseded"));
        assert_eq!(outcome(&mut second), None);
        assert_eq!(book.snapshot(), vec![(0, second_reg)]);
        book.reported(vec![(0, second_reg)]);
        assert_eq!(outcome(&mut second), Some("confirmed"));
    }

    /// Two requests in flight together get the same ackId (HEC gave it to one, restarted,
    /// then gave it to the other): their answers may arrive in either order, so neither
    /// can be told to be the newer one and neither is confirmed by a `true` for it. The
    /// regression: the one answered last was taken for the newer and confirmed by the
    /// other's `true`, while HEC had lost its data in the restart.
    #[test]
    fn an_ack_id_given_to_two_requests_in_flight_together_confirms_neither() {
        for later_answered_first in [true, false] {
            let book = Arc::new(AckBook::default());
            let sent_first = book.post_started();
            let sent_second = book.post_started();
            let ((reg_a, mut a), (reg_b, mut b)) = if later_answered_first {
                let b = answered(sent_second, 0);
                (answered(sent_first, 0), b)
            } else {
                let a = answered(sent_first, 0);
                (a, answered(sent_second, 0))
            };
            assert_eq!(outcome(&mut a), Some("superseded"));
            assert_eq!(outcome(&mut b), Some("superseded"));
            assert!(book.snapshot().is_empty(), "nobody waits for ackId 0");
            book.reported(vec![(0, reg_a), (0, reg_b)]);
            assert!(book.is_empty());
        }
    }

    /// A query answered while a POST is in flight: its `true`s wait for that POST's
    /// answer, which may carry the same ackId (then the `true` may be that request's, and
    /// HEC reports it only once: the new holder is sent again rather than left to wait out
    /// `ack_timeout`, r8 a `t15_stall_after_reuse.py`).
    #[test]
    fn trues_wait_for_the_posts_in_flight_during_the_query() {
        for other_id in [5, 0] {
            let book = Arc::new(AckBook::default());
            let (reg, mut waiting) = answered(book.post_started(), 0);
            let in_flight = book.post_started();
            book.reported(vec![(0, reg)]);
            assert_eq!(
                outcome(&mut waiting),
                None,
                "parked while a POST is in flight"
            );
            let (_, mut other) = answered(in_flight, other_id);
            if other_id == 0 {
                assert_eq!(outcome(&mut waiting), Some("superseded"));
                assert_eq!(
                    outcome(&mut other),
                    Some("superseded"),
                    "the true may have been the newer holder's"
                );
                assert!(book.is_empty());
            } else {
                assert_eq!(outcome(&mut waiting), Some("confirmed"));
                assert_eq!(outcome(&mut other), None);
            }
        }
    }

    /// A query whose answer arrives after a POST sent meanwhile was answered with the
    /// same ackId (HEC numbered again): the `true` may be the new holder's, which HEC will
    /// not report again, so the new holder is sent again too instead of waiting out
    /// `ack_timeout`; a later holder of that id is confirmed as usual.
    #[test]
    fn a_true_for_an_ack_id_handed_out_again_since_the_query_resends_the_new_holder() {
        let book = Arc::new(AckBook::default());
        let (old_reg, mut old) = answered(book.post_started(), 4);
        let snapshot = book.snapshot();
        assert_eq!(snapshot, vec![(4, old_reg)]);
        let (_, mut new) = answered(book.post_started(), 4);
        assert_eq!(outcome(&mut old), Some("superseded"));
        assert_eq!(outcome(&mut new), None);
        book.reported(snapshot);
        assert_eq!(outcome(&mut new), Some("superseded"));
        assert!(book.is_empty());
        let (reg, mut next) = answered(book.post_started(), 4);
        book.reported(vec![(4, reg)]);
        assert_eq!(outcome(&mut next), Some("confirmed"));
    }

    /// Three requests in flight together all get ackId 0 (two restarts): the third answer
    /// is as ambiguous as the second, though nobody waits for 0 when it arrives; so is an
    /// answer overlapping a request that was given up (timed out) meanwhile.
    #[test]
    fn an_ack_id_shared_with_any_overlapping_request_confirms_nothing() {
        let book = Arc::new(AckBook::default());
        let tickets: Vec<PostTicket> = (0..3).map(|_| book.post_started()).collect();
        let mut outcomes: Vec<_> = tickets.into_iter().map(|t| answered(t, 0).1).collect();
        for o in &mut outcomes {
            assert_eq!(outcome(o), Some("superseded"));
        }
        assert!(book.is_empty());

        let book = Arc::new(AckBook::default());
        let overlapping = book.post_started();
        let (reg, mut given_up) = answered(book.post_started(), 7);
        book.forget(7, reg);
        assert_eq!(outcome(&mut given_up), Some("closed"));
        let (_, mut late) = answered(overlapping, 7);
        assert_eq!(outcome(&mut late), Some("superseded"));
        // Nothing in flight any more: the next holder of 7 is the newer one for sure.
        let (_, mut next) = answered(book.post_started(), 7);
        assert_eq!(outcome(&mut next), None);
        assert!(book.lock().answered.len() <= 1, "answers are forgotten");
    }

    /// An answer lost after sending may have carried any ackId: nothing waiting can be
    /// confirmed any more.
    #[test]
    fn a_lost_answer_supersedes_every_waiting_request() {
        let book = Arc::new(AckBook::default());
        let (reg, mut waiting) = answered(book.post_started(), 3);
        let lost = book.post_started();
        book.reported(vec![(3, reg)]);
        drop(lost);
        assert_eq!(outcome(&mut waiting), Some("superseded"));
    }
}
