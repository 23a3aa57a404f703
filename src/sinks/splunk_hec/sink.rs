//! The HEC sink itself: packing, posting, splitting on 413, dead letters, indexer-ack
//! polling and the health probe (the algorithm is described in `sinks::splunk_hec`).

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

use crate::config::common::ConfigError;
use crate::http::{self, HttpError, RetryPolicy};
use crate::sinks::{Batch, Sink, SinkContext, SinkError};

use super::config::*;
use super::wire::{CHANNEL_HEADER, Chunk, ErrCtx, SizeEvidence, Verdict};
use super::{files, wire};

/// At most this many ackIds per query to the ack endpoint.
const ACK_QUERY_MAX: usize = 1000;

/// Largest HEC answer body read (event POSTs, ack queries, health, probes): real answers
/// are a few hundred bytes (an ack answer for [`ACK_QUERY_MAX`] ids about 20 kB); an
/// endless body from a broken server or proxy stops here instead of growing memory. Error
/// answers are read for an excerpt only ([`http::ERROR_EXCERPT_BYTES`]).
pub const HEC_REPLY_LIMIT: usize = 1024 * 1024;

/// Which events of the batch in progress are done (delivered and, with ack, confirmed;
/// or quarantined). Kept across the pipeline's retries of the same batch.
struct Progress {
    key: (usize, u64),
    done: Vec<bool>,
    /// Events to send in a request of their own (to find a bad event HEC didn't name).
    alone: HashSet<usize>,
}

/// What HEC did with one request.
enum Posted {
    Accepted { ack_id: Option<u64> },
    Rejected { status: u16, verdict: Verdict },
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

pub struct HecSink {
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
    meta: wire::Meta,
    compression: Compression,
    max_events: usize,
    max_bytes: usize,
    ack: Option<AckSettings>,
    policy: RetryPolicy,
    /// One attempt only (probes and ack polls: their callers decide about retrying).
    once: RetryPolicy,
    dead_letters: files::DeadLetters,
    progress: Option<Progress>,
    ack_failing: bool,
    /// Sizes of the requests HEC accepted: decides whether a 413 for a single event means
    /// the event is too large (see [`SizeEvidence`]).
    sizes: SizeEvidence,
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
        let dead_letters =
            files::DeadLetters::new(id, ctx.state_dir.join(format!("{id}.deadletter.ndjson")));
        let policy = RetryPolicy {
            max_retries: cfg.max_retries,
            max_delay: cfg.retry_max_delay,
            ..RetryPolicy::default()
        };
        Ok(HecSink {
            id: id.to_string(),
            event_url: format!("{endpoint}/services/collector/event"),
            ack_url: format!("{endpoint}/services/collector/ack?channel={channel}"),
            health_url: format!("{endpoint}/services/collector/health"),
            endpoint,
            client,
            auth,
            channel,
            channel_file,
            meta: wire::Meta {
                index: cfg.index.clone(),
                sourcetype: cfg.sourcetype.clone(),
                source: cfg.source.clone(),
                host: cfg.host.clone(),
            },
            compression: cfg.compression,
            max_events: cfg.max_events,
            max_bytes: cfg.max_bytes,
            ack: cfg.indexer_ack.then_some(AckSettings {
                timeout: cfg.ack_timeout,
                poll_interval: cfg.ack_poll_interval,
            }),
            policy,
            once: RetryPolicy {
                max_retries: 0,
                ..RetryPolicy::default()
            },
            dead_letters,
            progress: None,
            ack_failing: false,
            sizes: SizeEvidence::default(),
        })
    }

    /// The data channel GUID (stable across restarts).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Events sent to the dead-letter file by this process.
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.count()
    }

    pub fn dead_letter_path(&self) -> &Path {
        self.dead_letters.path()
    }

    fn err_ctx(&self) -> ErrCtx<'_> {
        ErrCtx {
            sink_id: &self.id,
            endpoint: &self.endpoint,
            index: self.meta.index.as_deref(),
            channel: &self.channel,
            channel_file: &self.channel_file,
        }
    }

    fn post_event_request(&self, body: Bytes, gzip: bool) -> reqwest::RequestBuilder {
        let req = self
            .client
            .post(&self.event_url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL_HEADER, &self.channel)
            .header(CONTENT_TYPE, "application/json");
        let req = if gzip {
            req.header(CONTENT_ENCODING, "gzip")
        } else {
            req
        };
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

    /// Read a HEC answer body, at most [`HEC_REPLY_LIMIT`] bytes.
    async fn read_reply(&self, url: &str, resp: reqwest::Response) -> Result<String, HttpError> {
        let body = http::read_body_capped(url, resp, HEC_REPLY_LIMIT).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// POST one request (retrying what may pass) and say what HEC did with it, with the
    /// size of the body as sent (after gzip).
    async fn post(&self, raw: &[u8]) -> Result<(Posted, usize), SinkError> {
        let gzip = self.compression == Compression::Gzip;
        let body = if gzip {
            Bytes::from(wire::gzip(raw).await.map_err(|e| {
                SinkError::Retryable(format!("sink `{}`: gzip failed: {e}", self.id))
            })?)
        } else {
            Bytes::copy_from_slice(raw)
        };
        let sent = body.len();
        let result = http::send_with_retry(&self.policy, &self.event_url, || {
            self.post_event_request(body.clone(), gzip).send()
        })
        .await;
        let ctx = self.err_ctx();
        let posted = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = self.read_reply(&self.event_url, resp).await.map_err(|e| {
                    SinkError::Retryable(format!(
                        "reading the answer of HEC at {}: {e}; the request is sent again",
                        self.endpoint
                    ))
                })?;
                match wire::parse_reply(&text) {
                    Some(reply) if reply.code == Some(0) => {
                        if self.ack.is_some() && reply.ack_id.is_none() {
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
                            Posted::Accepted {
                                ack_id: if self.ack.is_some() {
                                    reply.ack_id
                                } else {
                                    None
                                },
                            }
                        }
                    }
                    Some(reply) => Posted::Rejected {
                        status,
                        verdict: wire::classify(status, Some(&reply), &ctx),
                    },
                    None => {
                        return Err(SinkError::Fatal(format!(
                            "HEC at {} answered HTTP {status} without a HEC reply ({}); check sinks.{}.endpoint points at the HEC port (8088 by default), not Splunk Web",
                            self.endpoint,
                            http::excerpt(&text, 120),
                            self.id
                        )));
                    }
                }
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                Posted::Rejected {
                    status,
                    verdict: wire::classify(status, reply.as_ref(), &ctx),
                }
            }
            Err(e) => return Err(self.transport_failure(&format!("HEC at {}", self.endpoint), e)),
        };
        Ok((posted, sent))
    }

    /// Query the ack endpoint once for `ids`; returns those reported `true`.
    async fn query_acks(&self, ids: &[u64]) -> Result<HashSet<u64>, AckError> {
        let body = Bytes::from(serde_json::json!({ "acks": ids }).to_string());
        let query_bytes = body.len();
        let result = http::send_with_retry(&self.once, &self.ack_url, || {
            self.client
                .post(&self.ack_url)
                .header(AUTHORIZATION, self.auth.clone())
                .header(CHANNEL_HEADER, &self.channel)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
        })
        .await;
        match result {
            Ok(resp) => {
                let text = self.read_reply(&self.ack_url, resp).await.map_err(|e| {
                    AckError::Transient(format!("reading the ack answer of {}: {e}", self.endpoint))
                })?;
                wire::parse_ack_reply(&text).ok_or_else(|| {
                    AckError::Fatal(format!(
                        "HEC at {} answered the ack query with something else than {{\"acks\":{{...}}}} ({}); check sinks.{}.endpoint",
                        self.endpoint,
                        http::excerpt(&text, 120),
                        self.id
                    ))
                })
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

    /// Poll until every ackId of `waiting` reports true (marking its events done), or the
    /// ack timeout passes (→ `Retryable`: the pipeline retries and the rest is re-sent).
    async fn await_acks(
        &mut self,
        mut waiting: Vec<(u64, Vec<usize>)>,
        progress: &mut Progress,
    ) -> Result<(), SinkError> {
        let Some(ack) = &self.ack else {
            return Ok(());
        };
        let (timeout, poll) = (ack.timeout, ack.poll_interval);
        // Checked: an absurd ack_timeout means "no deadline", never an overflow panic.
        let deadline = Instant::now().checked_add(timeout);
        while !waiting.is_empty() {
            let left = deadline.map_or(poll, |d| d.saturating_duration_since(Instant::now()));
            tokio::time::sleep(poll.min(left)).await;
            let ids: Vec<u64> = waiting.iter().map(|(id, _)| *id).collect();
            for chunk in ids.chunks(ACK_QUERY_MAX) {
                match self.query_acks(chunk).await {
                    Ok(acked) => {
                        if self.ack_failing {
                            self.ack_failing = false;
                            tracing::info!(sink_id = %self.id, "ack queries work again");
                        }
                        waiting.retain(|(id, events)| {
                            if acked.contains(id) {
                                for &i in events {
                                    progress.done[i] = true;
                                }
                                false
                            } else {
                                true
                            }
                        });
                    }
                    Err(AckError::Fatal(m)) => return Err(SinkError::Fatal(m)),
                    Err(AckError::Transient(m)) => {
                        if !self.ack_failing {
                            self.ack_failing = true;
                            tracing::warn!(sink_id = %self.id, error = %m, "ack query failed; polling on until ack_timeout");
                        }
                    }
                }
            }
            if !waiting.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
                let events: usize = waiting.iter().map(|(_, e)| e.len()).sum();
                return Err(SinkError::Retryable(format!(
                    "HEC at {}: {} request(s) ({events} events) not acknowledged by the indexers within ack_timeout ({}); sending them again (a duplicate is possible: event.id identifies it)",
                    self.endpoint,
                    waiting.len(),
                    humantime::format_duration(timeout)
                )));
            }
        }
        Ok(())
    }

    async fn quarantine(
        &mut self,
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
        self.dead_letters
            .quarantine(status, code, text, &event.json)
            .await
            .map_err(|e| {
                SinkError::Retryable(format!(
                    "sink `{}`: cannot write the dead-letter file {}: {e}",
                    self.id,
                    self.dead_letters.path().display()
                ))
            })?;
        crate::metrics::global().quarantined(&self.id, 1);
        tracing::warn!(
            sink_id = %self.id,
            event_id = %event.event.event.id,
            http_status = status,
            code = code.unwrap_or(-1),
            text,
            path = %self.dead_letters.path().display(),
            quarantined_total = self.dead_letters.count(),
            "HEC refused an event for good (malformed, or too large); it went to the dead-letter file, the rest is sent again"
        );
        Ok(())
    }

    /// Deliver what `progress` says is not done yet; see the module docs.
    async fn deliver_pending(
        &mut self,
        batch: &Batch,
        progress: &mut Progress,
    ) -> Result<(), SinkError> {
        let mut scratch = Vec::new();
        loop {
            let mut envelopes = Vec::new();
            for (i, e) in batch.events.iter().enumerate() {
                if progress.done[i] {
                    continue;
                }
                let mut env = Vec::with_capacity(e.json.len() + 256);
                wire::encode_envelope(&self.meta, e, &mut env, &mut scratch).map_err(|err| {
                    SinkError::Fatal(format!(
                        "sink `{}`: cannot encode event {}: {err}",
                        self.id, e.event.event.id
                    ))
                })?;
                envelopes.push((i, env));
            }
            if envelopes.is_empty() {
                return Ok(());
            }
            let chunks = wire::pack(envelopes, self.max_events, self.max_bytes, &progress.alone);
            let mut queue: VecDeque<Chunk> = chunks.into();
            let mut waiting: Vec<(u64, Vec<usize>)> = Vec::new();
            let mut stop: Option<SinkError> = None;
            // Single events answered 413, judged once this pass is over (what it gets
            // accepted is evidence too): (event, raw bytes, bytes as sent).
            let mut refused: Vec<(usize, usize, usize)> = Vec::new();
            let mut splits = 0usize;
            while let Some(chunk) = queue.pop_front() {
                let (posted, sent) = match self.post(&chunk.body).await {
                    Ok(p) => p,
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                };
                match posted {
                    Posted::Accepted { ack_id } => {
                        self.sizes.accepted(chunk.body.len(), sent);
                        match ack_id {
                            Some(id) => waiting.push((id, chunk.events)),
                            None => {
                                for &i in &chunk.events {
                                    progress.done[i] = true;
                                }
                            }
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
                                tracing::debug!(sink_id = %self.id, events, bytes = raw, "HEC answered 413; sending the request again in two halves");
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
                        stop = Some(SinkError::Retryable(format!(
                            "{m} (gave up after {} retries; the batch will be retried)",
                            self.policy.max_retries
                        )));
                        break;
                    }
                    Posted::Rejected {
                        verdict: Verdict::Fatal(m),
                        ..
                    } => return Err(SinkError::Fatal(m)),
                    Posted::Rejected {
                        status,
                        verdict: Verdict::Poison { index, code, text },
                    } => match (index, chunk.events.as_slice()) {
                        (_, [only]) => {
                            self.quarantine(batch, *only, status, code, &text).await?;
                            progress.done[*only] = true;
                        }
                        (Some(n), events) => {
                            let Some(&i) = usize::try_from(n).ok().and_then(|n| events.get(n))
                            else {
                                return Err(SinkError::Fatal(format!(
                                    "HEC at {} named invalid event number {n} in a request of {} events; cannot tell which event is bad",
                                    self.endpoint,
                                    events.len()
                                )));
                            };
                            self.quarantine(batch, i, status, code, &text).await?;
                            progress.done[i] = true;
                        }
                        (None, events) => {
                            // HEC didn't say which event is bad: send each alone.
                            tracing::warn!(sink_id = %self.id, http_status = status, code = code.unwrap_or(-1), text, events = events.len(), "HEC rejected a request without naming the bad event; sending its events one by one");
                            progress.alone.extend(events.iter().copied());
                        }
                    },
                }
            }
            if splits > 0 {
                tracing::warn!(
                    sink_id = %self.id,
                    endpoint = %self.endpoint,
                    requests = splits,
                    largest_accepted_bytes = self.sizes.raw,
                    "HEC (or a proxy in front of it) refused requests as too large (HTTP 413); they were split and sent again. Lower sinks.{}.max_bytes below the body limit to avoid the extra requests",
                    self.id
                );
            }
            // Wait for the acknowledgements of what was accepted, even when something
            // must be sent again: confirmed requests are then never re-sent.
            self.await_acks(waiting, progress).await?;
            if let Some(e) = stop {
                return Err(e);
            }
            self.judge_refused(batch, progress, &refused).await?;
            // Loop: anything still not done (neighbours of a poison event) goes again.
        }
    }

    /// Single events answered 413 without a HEC code: quarantined when they are larger
    /// than anything HEC accepted ([`SizeEvidence`]); otherwise the limit is not about
    /// them (a proxy refusing every POST) and the batch fails, to be retried, with an
    /// error that says what to change.
    async fn judge_refused(
        &mut self,
        batch: &Batch,
        progress: &mut Progress,
        refused: &[(usize, usize, usize)],
    ) -> Result<(), SinkError> {
        let seen = self.sizes;
        let mut kept: Vec<(usize, usize)> = Vec::new();
        for &(index, raw, sent) in refused {
            if seen.too_large(raw, sent) {
                let reason = format!(
                    "request too large: HTTP 413 without a HEC error code for this event alone ({raw} bytes, {sent} as sent), larger than any request HEC at {} accepted (up to {} bytes, {} as sent); raise the body limit of HEC (max_content_length) or of the proxy in front of it, then re-ingest",
                    self.endpoint, seen.raw, seen.wire
                );
                self.quarantine(batch, index, 413, None, &reason).await?;
                progress.done[index] = true;
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
            self.endpoint,
            kept.len(),
            self.id
        )))
    }

    async fn healthcheck_inner(&mut self) -> Result<(), SinkError> {
        let mut retryable: Vec<String> = Vec::new();
        let ctx = self.err_ctx();

        // 1. Health endpoint (no token needed): reachable, TLS trusted, queues not full.
        match http::send_with_retry(&self.once, &self.health_url, || {
            self.client.get(&self.health_url).send()
        })
        .await
        {
            Ok(resp) => {
                if let Err(e) = self.read_reply(&self.health_url, resp).await {
                    retryable.push(format!("HEC health at {}: {e}", self.endpoint));
                }
            }
            Err(HttpError::Status { status: 404, .. }) => {
                tracing::warn!(sink_id = %self.id, url = %self.health_url, "HEC has no health endpoint (Splunk before 6.6?); skipping that probe");
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                match wire::classify(status, reply.as_ref(), &ctx) {
                    Verdict::Retry(m) => retryable.push(m),
                    Verdict::Fatal(m) => return Err(SinkError::Fatal(m)),
                    Verdict::Poison { .. } | Verdict::TooLarge => retryable.push(format!(
                        "HEC health at {} answered HTTP {status}",
                        self.endpoint
                    )),
                }
            }
            Err(e) => match self.transport_failure(
                &format!(
                    "cannot reach HEC at {} (check sinks.{}.endpoint and that HEC is enabled)",
                    self.endpoint, self.id
                ),
                e,
            ) {
                SinkError::Retryable(m) => retryable.push(m),
                other => return Err(other),
            },
        }

        // 2. Token and channel: an empty POST is answered "No data" (code 5) only when
        //    the token (and, with ack on, the channel) is accepted.
        match http::send_with_retry(&self.once, &self.event_url, || {
            self.post_event_request(Bytes::new(), false).send()
        })
        .await
        {
            Ok(resp) => {
                if let Err(e) = self.read_reply(&self.event_url, resp).await {
                    retryable.push(format!("HEC at {}: {e}", self.endpoint));
                }
            }
            Err(HttpError::Status { status, body, .. }) => {
                let reply = wire::parse_reply(&body);
                if reply.as_ref().and_then(|r| r.code) != Some(5) {
                    match wire::classify(status, reply.as_ref(), &ctx) {
                        Verdict::Retry(m) => retryable.push(m),
                        Verdict::Fatal(m) => return Err(SinkError::Fatal(m)),
                        Verdict::TooLarge => retryable.push(format!(
                            "HEC at {} answered HTTP 413 (request too large) to an empty request: a proxy in front of HEC seems to refuse every POST; events will not be delivered (nor quarantined) until its body limit is raised",
                            self.endpoint
                        )),
                        Verdict::Poison { .. } => {}
                    }
                }
            }
            Err(e) => match self.transport_failure(&format!("HEC at {}", self.endpoint), e) {
                SinkError::Retryable(m) => retryable.push(m),
                other => return Err(other),
            },
        }

        // 3. Indexer acknowledgement must really be on (code 14 otherwise): fail loudly
        //    rather than deliver without it. Asking about ackId 0 changes nothing we rely
        //    on: nothing of this process is waiting for it.
        if self.ack.is_some() {
            match self.query_acks(&[0]).await {
                Ok(_) => {}
                Err(AckError::Transient(m)) => retryable.push(m),
                Err(AckError::Fatal(m)) => return Err(SinkError::Fatal(m)),
            }
        }

        if retryable.is_empty() {
            tracing::info!(sink_id = %self.id, endpoint = %self.endpoint, channel = %self.channel, indexer_ack = self.ack.is_some(), "Splunk HEC is healthy and accepts the token");
            Ok(())
        } else {
            Err(SinkError::Retryable(retryable.join("; ")))
        }
    }
}

impl Sink for HecSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.events.is_empty() {
                return Ok(());
            }
            let key = (batch.source_index, batch.seq);
            let mut progress = match self.progress.take() {
                Some(p) if p.key == key && p.done.len() == batch.events.len() => p,
                _ => Progress {
                    key,
                    done: vec![false; batch.events.len()],
                    alone: HashSet::new(),
                },
            };
            let result = self.deliver_pending(batch, &mut progress).await;
            if result.is_err() {
                // The pipeline retries this batch: only what is not done goes again.
                self.progress = Some(progress);
            }
            result
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
        assert!(!format!("{:?}", a.auth).contains("tok-Secret-123"));
        assert!(a.ack_url.ends_with(&format!("channel={}", a.channel())));
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
}
