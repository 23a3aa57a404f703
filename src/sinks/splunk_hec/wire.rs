//! The Splunk HEC wire format, as pure functions: the event envelope, how a batch is cut
//! into requests, gzip, and what an answer from HEC means (by its HEC `code`, not only by
//! the HTTP status).
//!
//! Owns: the envelope (`time`, `host`, `source`, `sourcetype`, `index`, `event`, flat
//! `fields`), the request splitting rule (`max_events`, `max_bytes`, halving after a 413),
//! the rule deciding when a single event refused with 413 is too large to ever pass
//! ([`SizeEvidence`]), the rule deciding when per-event rejections (codes 6, 12, 13,
//! 15) mean malformed events rather than a receiver rejecting everything
//! ([`FormatEvidence`]), the parsing of HEC replies and the code table with the fix to print
//! for each failure.
//! Must not: do network or file I/O (that is `sink.rs` and `files.rs`),
//! or ever see the token (messages are built without it).
//!
//! HEC code table (Splunk "Troubleshoot HTTP Event Collector"; see the README for what we
//! assumed where Splunk's documentation is silent):
//!
//! | code | HTTP | meaning | we |
//! |---|---|---|---|
//! | 0 | 200 | Success | accept (then wait for the ack when `indexer_ack`) |
//! | 1 | 403 | Token disabled | stop |
//! | 2, 3 | 401 | Token is required / Invalid authorization | stop |
//! | 4 | 403 | Invalid token | stop |
//! | 5 | 400 | No data | stop (a bug on our side) |
//! | 6 | 400 | Invalid data format | quarantine `invalid-event-number`, re-send the rest; see [`FormatEvidence`] |
//! | 7 | 400 | Incorrect index | stop |
//! | 8 | 500 | Internal server error | retry |
//! | 9 | 503 | Server is busy | retry (backoff, `Retry-After`) |
//! | 10, 11 | 400 | Data channel is missing / Invalid data channel | stop |
//! | 12, 13 | 400 | Event field is required / cannot be blank | quarantine, re-send the rest (idem) |
//! | 14 | 400 | ACK is disabled | stop (never silently downgrade) |
//! | 15 | 400 | Error in handling indexed fields | quarantine, re-send the rest (idem) |
//! | 16 | 400 | Query string authorization is not enabled | stop |
//! | 17 | 200 | HEC is healthy | (health endpoint only) |
//! | 18–20 | 503 | HEC is unhealthy (queues full and/or ack service unavailable) | retry |
//! | 21, 22 | 4xx | token errors in some Splunk versions | stop |
//! | none | 413 | request too large (HEC's `max_content_length` or a proxy's body limit) | split the request in halves; a single event: see [`SizeEvidence`] |

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::event::dataset;
use crate::sinks::EncodedEvent;

/// Header carrying the data channel (a GUID), required by HEC when indexer ack is on.
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// Envelope metadata from the config; `None` means "derive it from the event".
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub index: Option<String>,
    pub sourcetype: Option<String>,
    pub source: Option<String>,
    pub host: Option<String>,
}

/// `sourcetype` when the config doesn't set one: one per dataset.
pub fn default_sourcetype(event_dataset: &str) -> Cow<'static, str> {
    match event_dataset {
        dataset::VBO_RESTORE => Cow::Borrowed("veeam:vbo:restore"),
        dataset::VDC_JOB_LOG => Cow::Borrowed("veeam:vdc:joblog"),
        other => Cow::Owned(format!(
            "veeam:{}",
            other.trim_start_matches("veeam.").replace(['.', '_'], ":")
        )),
    }
}

/// The envelope members every event of one source and dataset shares (written by serde,
/// once per [`Envelopes`] key).
#[derive(Serialize)]
struct Head<'a> {
    host: &'a str,
    source: &'a str,
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
}

/// Writes HEC envelopes: `{"time":<s.ms>,"host":…,"source":…,"sourcetype":…[,"index":…],
/// "fields":{…},"event":<the pre-encoded event>}` and a line end. `fields` are indexed fields, flat and
/// string-valued only (HEC rejects nested values): `event_id`, `dataset`, `action`,
/// `outcome`, `source_id` and, when known, `organization`. What the events of one source
/// and dataset share (`host` … `index`) is encoded once and copied, since a batch's events
/// almost always share it.
pub struct Envelopes<'m> {
    meta: &'m Meta,
    /// (`observer.hostname`, `labels.source_id`, `event.dataset`) and its encoded members,
    /// from `,"host":` to `"fields":{"event_id":`.
    head: Option<(String, String, String, Vec<u8>)>,
}

impl<'m> Envelopes<'m> {
    pub fn new(meta: &'m Meta) -> Self {
        Envelopes { meta, head: None }
    }

    /// Append the HEC envelope of `e` to `out`.
    pub fn encode(&mut self, e: &EncodedEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        use std::io::Write;
        let ev = &e.event;
        let ms = ev.timestamp.timestamp_millis();
        write!(
            out,
            "{{\"time\":{}.{:03}",
            ms.div_euclid(1000),
            ms.rem_euclid(1000)
        )
        .map_err(serde_json::Error::io)?;
        out.extend_from_slice(self.head_of(e)?);
        crate::json::write_str(out, &ev.event.id);
        out.extend_from_slice(b",\"dataset\":");
        crate::json::write_str(out, &ev.event.dataset);
        out.extend_from_slice(b",\"action\":");
        crate::json::write_str(out, &ev.event.action);
        out.extend_from_slice(b",\"outcome\":");
        crate::json::write_str(out, &ev.event.outcome);
        out.extend_from_slice(b",\"source_id\":");
        crate::json::write_str(out, &ev.labels.source_id);
        if let Some(organization) = ev.organization.as_ref().and_then(|o| o.name.as_deref()) {
            out.extend_from_slice(b",\"organization\":");
            crate::json::write_str(out, organization);
        }
        out.extend_from_slice(b"},\"event\":");
        out.extend_from_slice(e.json.as_bytes());
        // One envelope per line: HEC takes whitespace between events, and a receiver
        // that reads a body line by line (as many HEC stand-ins do) reads it too.
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// The shared members for `e`'s host, source and dataset, encoded when they change.
    fn head_of(&mut self, e: &EncodedEvent) -> Result<&[u8], serde_json::Error> {
        let ev = &e.event;
        let (hostname, source_id, dataset) = (
            &*ev.observer.hostname,
            &*ev.labels.source_id,
            &*ev.event.dataset,
        );
        let cached = self
            .head
            .as_ref()
            .is_some_and(|(h, s, d, _)| h == hostname && s == source_id && d == dataset);
        if !cached {
            let meta = self.meta;
            let source = match &meta.source {
                Some(s) => Cow::Borrowed(s.as_str()),
                None => Cow::Owned(format!("veeam-siem:{source_id}")),
            };
            let sourcetype = match &meta.sourcetype {
                Some(s) => Cow::Borrowed(s.as_str()),
                None => default_sourcetype(dataset),
            };
            let mut bytes = serde_json::to_vec(&Head {
                host: meta.host.as_deref().unwrap_or(hostname),
                source: &source,
                sourcetype: &sourcetype,
                index: meta.index.as_deref(),
            })?;
            // `{…}` → `,…,"fields":{"event_id":`
            if bytes.first() != Some(&b'{') || bytes.pop() != Some(b'}') {
                return Err(serde_json::Error::io(std::io::Error::other(
                    "the envelope head is not a JSON object",
                )));
            }
            bytes[0] = b',';
            bytes.extend_from_slice(b",\"fields\":{\"event_id\":");
            self.head = Some((hostname.into(), source_id.into(), dataset.into(), bytes));
        }
        Ok(self.head.as_ref().map_or(&[][..], |(_, _, _, bytes)| bytes))
    }
}

/// Append the HEC envelope of `e` to `out` (see [`Envelopes`]; a writer for one event).
pub fn encode_envelope(
    meta: &Meta,
    e: &EncodedEvent,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    Envelopes::new(meta).encode(e, out)
}

/// One HEC request: which events of the batch it carries, and its (uncompressed) body.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    /// Indexes into the batch, in body order (`invalid-event-number` indexes this).
    pub events: Vec<usize>,
    pub body: Vec<u8>,
    /// Where each event's envelope ends in `body` (same order as `events`).
    pub ends: Vec<usize>,
}

impl Chunk {
    fn push(&mut self, index: usize, envelope: &[u8]) {
        self.events.push(index);
        self.body.extend_from_slice(envelope);
        self.ends.push(self.body.len());
    }

    /// Cut a request of two or more events into two of about half the events each (the
    /// answer to a 413 "too large"); `None` for a single event, which cannot be cut.
    pub fn split(self) -> Option<(Chunk, Chunk)> {
        let half = self.events.len() / 2;
        if half == 0 {
            return None;
        }
        let mut parts = (Chunk::default(), Chunk::default());
        let mut start = 0;
        for (k, (&index, &end)) in self.events.iter().zip(&self.ends).enumerate() {
            let envelope = self.body.get(start..end)?;
            let part = if k < half { &mut parts.0 } else { &mut parts.1 };
            part.push(index, envelope);
            start = end;
        }
        Some(parts)
    }
}

/// The largest request bodies HEC accepted (code 0) so far, uncompressed and as sent.
///
/// The rule for a single event answered 413 without a HEC code (a proxy's or HEC's body
/// limit; HEC's own per-event rejections carry codes 6, 12, 13, 15): the event is
/// quarantined as too large only when this endpoint has accepted a request before and the
/// event's request is larger than every accepted one, uncompressed *or* as sent (a proxy
/// measures what it receives, HEC's `max_content_length` what it decompresses). An
/// endpoint that has accepted nothing yet, or a 413 for an event no larger than requests
/// that passed, means the limit is not about this event (a proxy refusing every POST, a
/// limit lowered at runtime): a delivery failure that is retried, never a dead letter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeEvidence {
    /// Largest accepted uncompressed body (0: nothing accepted yet).
    pub raw: usize,
    /// Largest accepted body as sent (compressed with gzip).
    pub wire: usize,
}

impl SizeEvidence {
    /// HEC accepted a request of these sizes.
    pub fn accepted(&mut self, raw: usize, wire: usize) {
        self.raw = self.raw.max(raw);
        self.wire = self.wire.max(wire);
    }

    /// Whether a single event whose request had these sizes and was answered 413 is
    /// plausibly too large by itself (see the type's docs).
    pub fn too_large(&self, raw: usize, wire: usize) -> bool {
        self.raw > 0 && (raw > self.raw || wire > self.wire)
    }
}

/// Whether HEC's per-event rejections (codes 6, 12, 13, 15) can be believed, from the
/// order of its answers.
///
/// A genuinely malformed event is rejected among events HEC accepts; a receiver that
/// rejects everything (a proxy stripping `Content-Encoding: gzip`, a HEC-compatible
/// receiver without gzip) rejects every request, whatever it carries. So rejected events
/// are quarantined only when HEC has accepted a request since startup (or parsed events
/// before the one it named) and at most one per-event rejection came after the last
/// acceptance: a rejection followed by acceptances of its neighbours is believed; two
/// rejections in a row with no acceptance between (a single event rejected and then the
/// next ones too, every event of a batch) are a receiver or configuration problem, and
/// the batch is retried without quarantining anything. The sink judges a batch's
/// rejected events once everything else of it was sent, so their neighbours' answers
/// count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FormatEvidence {
    /// HEC accepted (parsed) something from this sink since startup.
    pub accepted_any: bool,
    /// Per-event rejections since the last acceptance.
    pub streak: u32,
}

impl FormatEvidence {
    /// HEC accepted a request (code 0).
    pub fn accepted(&mut self) {
        self.accepted_any = true;
        self.streak = 0;
    }

    /// HEC rejected a request with a per-event code; `named` is its
    /// `invalid-event-number` when the request had more than one event (above 0: HEC
    /// parsed the events before it, so it reads our requests).
    pub fn rejected(&mut self, named: Option<i64>) {
        if named.is_some_and(|n| n > 0) {
            self.accepted_any = true;
            self.streak = 1;
        } else {
            self.streak = self.streak.saturating_add(1);
        }
    }

    /// Whether the events rejected so far can be quarantined as malformed (see the
    /// type's docs).
    pub fn believable(&self) -> bool {
        self.accepted_any && self.streak <= 1
    }
}

/// Capacity reserved for a request body up front (so it rarely grows by copying):
/// `max_bytes`, but never more than this for absurdly large settings.
const BODY_RESERVE: usize = 2 * 1024 * 1024;

/// Cuts envelopes into requests of at most `max_events` events and `max_bytes` bytes as
/// they are written, straight into the request body (no per-envelope buffer, no copy).
/// An envelope larger than `max_bytes` travels alone; events in `alone` get a request of
/// their own (used to find a bad event when HEC doesn't say which it is).
pub struct Packer<'a> {
    max_events: usize,
    max_bytes: usize,
    alone: &'a HashSet<usize>,
    chunks: Vec<Chunk>,
    current: Chunk,
}

impl<'a> Packer<'a> {
    pub fn new(max_events: usize, max_bytes: usize, alone: &'a HashSet<usize>) -> Packer<'a> {
        Packer {
            max_events: max_events.max(1),
            max_bytes,
            alone,
            chunks: Vec::new(),
            current: Chunk::default(),
        }
    }

    /// Add event `index`, whose envelope `write` appends to the body it is given.
    pub fn add<E>(
        &mut self,
        index: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.alone.contains(&index) {
            self.flush();
            let mut chunk = Chunk::default();
            write(&mut chunk.body)?;
            chunk.events.push(index);
            chunk.ends.push(chunk.body.len());
            self.chunks.push(chunk);
            return Ok(());
        }
        if self.current.events.len() >= self.max_events {
            self.flush();
        }
        let reserve = self.max_bytes.min(BODY_RESERVE);
        if self.current.body.capacity() < reserve {
            self.current.body.reserve(reserve - self.current.body.len());
        }
        let start = self.current.body.len();
        if let Err(e) = write(&mut self.current.body) {
            self.current.body.truncate(start);
            return Err(e);
        }
        if !self.current.events.is_empty() && self.current.body.len() > self.max_bytes {
            // Over the limit with this envelope: it starts the next request.
            let envelope = self.current.body.split_off(start);
            self.flush();
            self.current.body = envelope;
            let len = self.current.body.len();
            self.current.body.reserve(reserve.saturating_sub(len));
        }
        self.current.events.push(index);
        self.current.ends.push(self.current.body.len());
        Ok(())
    }

    fn flush(&mut self) {
        if !self.current.events.is_empty() {
            self.chunks.push(std::mem::take(&mut self.current));
        }
    }

    /// The requests, in event order.
    pub fn finish(mut self) -> Vec<Chunk> {
        self.flush();
        self.chunks
    }
}

/// [`Packer`] over envelopes encoded beforehand (tests and benchmarks).
pub fn pack(
    envelopes: Vec<(usize, Vec<u8>)>,
    max_events: usize,
    max_bytes: usize,
    alone: &HashSet<usize>,
) -> Vec<Chunk> {
    let mut packer = Packer::new(max_events, max_bytes, alone);
    for (index, envelope) in envelopes {
        let added = packer.add(index, |body| {
            body.extend_from_slice(&envelope);
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = added;
    }
    packer.finish()
}

/// A HEC reply: `{"text":"Success","code":0,"ackId":7}` or an error with
/// `invalid-event-number`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
    /// A number, or a number in a string; anything else counts as not given.
    #[serde(
        default,
        rename = "invalid-event-number",
        deserialize_with = "lenient_number"
    )]
    pub invalid_event_number: Option<i64>,
}

fn lenient_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Parse a HEC reply; `None` when the body is not one (a proxy's HTML page, a truncated
/// excerpt...).
pub fn parse_reply(body: &str) -> Option<Reply> {
    let reply: Reply = serde_json::from_str(body.trim()).ok()?;
    reply.code.is_some().then_some(reply)
}

/// `{"acks":{"0":true,"1":false}}` → the ids reported `true`.
pub fn parse_ack_reply(body: &str) -> Option<HashSet<u64>> {
    #[derive(Deserialize)]
    struct AckReply {
        acks: BTreeMap<String, bool>,
    }
    let reply: AckReply = serde_json::from_str(body.trim()).ok()?;
    Some(
        reply
            .acks
            .into_iter()
            .filter(|(_, done)| *done)
            .filter_map(|(id, _)| id.trim().parse().ok())
            .collect(),
    )
}

/// What the context of a failure is, to write a message that says what to fix.
pub struct ErrCtx<'a> {
    pub sink_id: &'a str,
    /// Base URL, never with credentials (the token travels in a header only).
    pub endpoint: &'a str,
    pub index: Option<&'a str>,
    pub channel: &'a str,
    pub channel_file: &'a std::path::Path,
    /// The endpoint has answered like HEC since startup: an error page without a HEC
    /// reply is then a balancer's or proxy's passing by (a rolling restart), retried,
    /// not a wrong `endpoint`.
    pub hec_seen: bool,
}

/// What to do about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server may accept it later: back off and send the same request again.
    Retry(String),
    /// The data is the problem: quarantine the event at `index` of the request (when HEC
    /// says which) and send the others again.
    Poison {
        index: Option<i64>,
        code: Option<i64>,
        text: String,
    },
    /// HTTP 413 without a HEC code: the request is larger than HEC's `max_content_length`
    /// or a proxy's body limit. Not the events' fault: split the request and send again;
    /// a single event is judged by [`SizeEvidence`].
    TooLarge,
    /// Configuration or credentials: stop delivering and tell the operator.
    Fatal(String),
}

fn describe(status: u16, reply: Option<&Reply>) -> String {
    match reply {
        Some(r) => format!(
            "HTTP {status}, HEC code {} ({})",
            r.code.unwrap_or(-1),
            if r.text.is_empty() {
                "no text"
            } else {
                &r.text
            }
        ),
        None => format!("HTTP {status} without a HEC reply"),
    }
}

/// Classify a non-success answer (any HTTP status with a HEC error code, or a non-2xx
/// status without one) from the event or ack endpoint.
pub fn classify(status: u16, reply: Option<&Reply>, ctx: &ErrCtx<'_>) -> Verdict {
    let what = describe(status, reply);
    let id = ctx.sink_id;
    let at = ctx.endpoint;
    let fatal = |fix: String| Verdict::Fatal(format!("HEC at {at} answered {what}; {fix}"));
    let code = reply.and_then(|r| r.code);
    match code {
        Some(8 | 9 | 18..=20) => Verdict::Retry(format!(
            "HEC at {at} is busy or unhealthy ({what}); retrying with backoff"
        )),
        Some(6 | 12 | 13 | 15) => Verdict::Poison {
            index: reply.and_then(|r| r.invalid_event_number),
            code,
            text: reply.map(|r| r.text.clone()).unwrap_or_default(),
        },
        Some(1) => fatal(format!(
            "the token is disabled in Splunk: enable it (Settings > Data inputs > HTTP Event Collector) or put a valid one in sinks.{id}.token / token_file"
        )),
        Some(2 | 3) => fatal(
            "the `Authorization: Splunk <token>` header did not arrive intact: check that no proxy between veeam-siem and Splunk strips or rewrites it".to_string(),
        ),
        Some(4 | 21 | 22) => fatal(format!(
            "Splunk does not accept this token: check sinks.{id}.token / token_file (the value is never printed) against Settings > Data inputs > HTTP Event Collector"
        )),
        Some(7) => fatal(match ctx.index {
            Some(index) => format!(
                "the token may not write to index `{index}`: add `{index}` to the token's allowed indexes in Splunk, or change sinks.{id}.index"
            ),
            None => format!(
                "the token has no usable default index: give it one in Splunk, or set sinks.{id}.index"
            ),
        }),
        Some(10 | 11) => fatal(format!(
            "Splunk rejected data channel {}: check that no proxy strips the {CHANNEL_HEADER} header; to start a new channel, stop veeam-siem and delete {}",
            ctx.channel,
            ctx.channel_file.display()
        )),
        Some(14) => fatal(format!(
            "indexer acknowledgement is disabled on this token: enable it on the token in Splunk (Edit token > Enable indexer acknowledgement), or set sinks.{id}.indexer_ack = false (Splunk Cloud offers it only for Kinesis Firehose)"
        )),
        Some(16) => fatal(
            "Splunk refused query-string authorization, which veeam-siem never uses: check that no proxy moves the token into the URL".to_string(),
        ),
        Some(5) => fatal(
            "HEC received an empty request: this is a bug in veeam-siem, please report it"
                .to_string(),
        ),
        _ => match status {
            408 | 429 | 500..=599 => Verdict::Retry(format!(
                "HEC at {at} is unavailable ({what}); retrying with backoff"
            )),
            413 => Verdict::TooLarge,
            _ if reply.is_none() && ctx.hec_seen => Verdict::Retry(format!(
                "HEC at {at} answered {what} without a HEC reply, after answering like HEC before: a load balancer, WAF or proxy in front of it answered instead; retrying with backoff"
            )),
            401 | 403 => fatal(format!(
                "the request was not authorized: check sinks.{id}.token / token_file and any proxy in front of Splunk"
            )),
            404 => fatal(format!(
                "there is no HEC at this address: set sinks.{id}.endpoint to the HEC base URL (e.g. https://splunk.example.net:8088), not Splunk Web or the management port"
            )),
            _ => fatal(format!(
                "unexpected answer: check sinks.{id}.endpoint points at Splunk's HTTP Event Collector"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn ctx() -> ErrCtx<'static> {
        ErrCtx {
            sink_id: "splunk",
            endpoint: "https://splunk.example.net:8088",
            index: Some("veeam"),
            channel: "0b0e9ec6-5cc3-4a3c-a0b7-6c6c5f1a2b3c",
            channel_file: std::path::Path::new("/var/lib/veeam-siem/splunk.hec-channel"),
            hec_seen: false,
        }
    }

    fn sample_event() -> EncodedEvent {
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
            "organization": {"name": "contoso.onmicrosoft.com"},
            "veeam": {}
        });
        let event: Event = serde_json::from_value(json).unwrap();
        let json = serde_json::to_string(&event).unwrap();
        EncodedEvent { event, json }
    }

    #[test]
    fn envelope_has_time_metadata_event_and_flat_fields() {
        let e = sample_event();
        let mut out = Vec::new();
        encode_envelope(&Meta::default(), &e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"time\":1741075201.234,"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["host"], "vbo.example.net");
        assert_eq!(v["source"], "veeam-siem:vbo_main");
        assert_eq!(v["sourcetype"], "veeam:vbo:restore");
        assert!(v.get("index").is_none());
        assert_eq!(v["event"]["event"]["id"], "ev-1");
        let fields = v["fields"].as_object().unwrap();
        assert!(fields.values().all(|f| f.is_string()), "{fields:?}");
        assert_eq!(fields["organization"], "contoso.onmicrosoft.com");
        assert_eq!(fields["event_id"], "ev-1");
        assert_eq!(fields["dataset"], "veeam.vbo_restore");

        let meta = Meta {
            index: Some("veeam".into()),
            sourcetype: Some("custom".into()),
            source: Some("src".into()),
            host: Some("h".into()),
        };
        let mut out = Vec::new();
        encode_envelope(&meta, &e, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (&v["index"], &v["sourcetype"], &v["source"], &v["host"]),
            (
                &serde_json::json!("veeam"),
                &serde_json::json!("custom"),
                &serde_json::json!("src"),
                &serde_json::json!("h")
            )
        );
    }

    /// The envelope as the all-serde writer before [`Envelopes`] wrote it.
    fn reference_envelope(meta: &Meta, e: &EncodedEvent) -> Vec<u8> {
        #[derive(Serialize)]
        struct Fields<'a> {
            event_id: &'a str,
            dataset: &'a str,
            action: &'a str,
            outcome: &'a str,
            source_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            organization: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Full<'a> {
            #[serde(flatten)]
            head: Head<'a>,
            fields: Fields<'a>,
        }
        let ev = &e.event;
        let source = meta
            .source
            .clone()
            .unwrap_or_else(|| format!("veeam-siem:{}", ev.labels.source_id));
        let sourcetype = meta
            .sourcetype
            .clone()
            .unwrap_or_else(|| default_sourcetype(&ev.event.dataset).into_owned());
        let head = serde_json::to_string(&Full {
            head: Head {
                host: meta.host.as_deref().unwrap_or(&ev.observer.hostname),
                source: &source,
                sourcetype: &sourcetype,
                index: meta.index.as_deref(),
            },
            fields: Fields {
                event_id: &ev.event.id,
                dataset: &ev.event.dataset,
                action: &ev.event.action,
                outcome: &ev.event.outcome,
                source_id: &ev.labels.source_id,
                organization: ev.organization.as_ref().and_then(|o| o.name.as_deref()),
            },
        })
        .unwrap();
        let ms = ev.timestamp.timestamp_millis();
        format!(
            "{{\"time\":{}.{:03},{},\"event\":{}}}",
            ms.div_euclid(1000),
            ms.rem_euclid(1000),
            &head[1..head.len() - 1],
            e.json
        )
        .into_bytes()
    }

    #[test]
    fn envelopes_are_byte_for_byte_what_serde_writes_across_sources_and_datasets() {
        let base = sample_event();
        let variant = |id: &str, source: &str, dataset: &'static str, org: Option<&str>| {
            let mut event = base.event.clone();
            event.event.id = id.into();
            event.labels.source_id = source.into();
            event.event.dataset = dataset.into();
            event.organization = org.map(|name| crate::event::Organization {
                name: Some(name.into()),
                id: None,
            });
            let json = serde_json::to_string(&event).unwrap();
            EncodedEvent { event, json }
        };
        let events = [
            variant("ev-1", "vbo_main", "veeam.vbo_restore", Some("contoso")),
            variant("ev-\"2\"\n\u{1}", "vbo_main", "veeam.vbo_restore", None),
            variant(
                "ev-3",
                "vdc_emea",
                "veeam.vdc_job_log",
                Some("fab\\rikam é"),
            ),
            variant("ev-4", "vbo_main", "veeam.vbo_restore", Some("contoso")),
            variant("ev-5", "vbo_main", "veeam.vdc_job_log", None),
        ];
        let custom = Meta {
            index: Some("veeam".into()),
            sourcetype: Some("custom".into()),
            source: Some("src \"x\"".into()),
            host: Some("h".into()),
        };
        for meta in [Meta::default(), custom] {
            let mut envelopes = Envelopes::new(&meta);
            for e in &events {
                let mut out = Vec::new();
                envelopes.encode(e, &mut out).unwrap();
                let mut reference = reference_envelope(&meta, e);
                reference.push(b'\n');
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    String::from_utf8(reference).unwrap()
                );
            }
        }
    }

    #[test]
    fn sourcetypes_per_dataset() {
        assert_eq!(default_sourcetype("veeam.vbo_restore"), "veeam:vbo:restore");
        assert_eq!(default_sourcetype("veeam.vdc_job_log"), "veeam:vdc:joblog");
        assert_eq!(default_sourcetype("veeam.new_thing"), "veeam:new:thing");
    }

    #[test]
    fn packing_respects_limits() {
        let envs: Vec<(usize, Vec<u8>)> = (0..10).map(|i| (i, vec![b'x'; 100])).collect();
        let none = HashSet::new();
        let chunks = pack(envs.clone(), 4, 1_000_000, &none);
        assert_eq!(
            chunks.iter().map(|c| c.events.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let chunks = pack(envs.clone(), 100, 250, &none);
        assert!(chunks.iter().all(|c| c.body.len() <= 250));
        assert_eq!(chunks.len(), 5);
        // An envelope bigger than max_bytes travels alone.
        let chunks = pack(
            vec![(0, vec![b'x'; 10]), (1, vec![b'y'; 500])],
            100,
            100,
            &none,
        );
        assert_eq!(chunks.len(), 2);
        let alone: HashSet<usize> = [3].into();
        let chunks = pack(envs, 100, 1_000_000, &alone);
        assert_eq!(
            chunks.iter().map(|c| c.events.clone()).collect::<Vec<_>>(),
            vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7, 8, 9]]
        );
    }

    #[test]
    fn a_request_splits_into_halves_down_to_single_events() {
        let envs: Vec<(usize, Vec<u8>)> = (0..5)
            .map(|i| (i * 10, format!("{{\"e\":{i}}}").into_bytes()))
            .collect();
        let whole: Vec<u8> = envs.iter().flat_map(|(_, e)| e.clone()).collect();
        let mut chunks = pack(envs, 100, 1_000_000, &HashSet::new());
        assert_eq!(chunks.len(), 1);
        let chunk = chunks.remove(0);
        assert_eq!(chunk.body, whole);
        let (a, b) = chunk.split().unwrap();
        assert_eq!(
            (a.events.clone(), b.events.clone()),
            (vec![0, 10], vec![20, 30, 40])
        );
        assert_eq!(a.body, b"{\"e\":0}{\"e\":1}");
        assert_eq!(b.body, b"{\"e\":2}{\"e\":3}{\"e\":4}");
        assert_eq!(b.ends, vec![7, 14, 21]);
        let (c, d) = b.split().unwrap();
        assert_eq!(
            (c.events.clone(), d.events.clone()),
            (vec![20], vec![30, 40])
        );
        assert_eq!(c.body, b"{\"e\":2}");
        assert!(c.split().is_none(), "a single event cannot be split");
    }

    #[test]
    fn only_an_event_larger_than_anything_accepted_counts_as_too_large() {
        let mut seen = SizeEvidence::default();
        // Nothing accepted yet: a proxy refusing every POST looks exactly like this.
        assert!(!seen.too_large(5_000, 5_000));
        assert!(!seen.too_large(usize::MAX, usize::MAX));
        seen.accepted(1_500, 1_500);
        seen.accepted(900, 900);
        assert_eq!(
            seen,
            SizeEvidence {
                raw: 1_500,
                wire: 1_500
            }
        );
        assert!(seen.too_large(1_501, 1_501));
        assert!(
            !seen.too_large(1_500, 1_500),
            "as large as a request that passed"
        );
        assert!(!seen.too_large(800, 800));
        // gzip: larger by either measure is enough (the limit may count either).
        let mut gz = SizeEvidence::default();
        gz.accepted(20_000, 1_200);
        assert!(gz.too_large(5_000, 2_500), "larger on the wire");
        assert!(gz.too_large(30_000, 1_000), "larger decompressed");
        assert!(!gz.too_large(5_000, 1_000));
    }

    #[test]
    fn per_event_rejections_are_believed_only_among_acceptances() {
        // Nothing accepted since startup: a receiver rejecting everything.
        let mut e = FormatEvidence::default();
        e.rejected(None);
        assert!(!e.believable());
        // HEC parsed events before the one it named: it reads our requests.
        let mut e = FormatEvidence::default();
        e.rejected(Some(3));
        assert!(e.believable());
        // One bad event, its neighbours accepted afterwards.
        let mut e = FormatEvidence::default();
        e.accepted();
        e.rejected(Some(0));
        assert!(e.believable());
        e.accepted();
        assert!(e.believable());
        // Two bad events in a row, then acceptances: both believed.
        e.rejected(None);
        e.rejected(None);
        assert!(!e.believable());
        e.accepted();
        assert!(e.believable());
        // A single event rejected, then the next ones too: not the events.
        e.rejected(None);
        assert!(e.believable());
        e.rejected(None);
        assert!(!e.believable());
        // Named above 0 after a streak: one rejection after HEC parsed events.
        e.rejected(Some(2));
        assert!(e.believable());
    }

    #[test]
    fn replies_parse() {
        let r = parse_reply(r#"{"text":"Success","code":0,"ackId":7}"#).unwrap();
        assert_eq!((r.code, r.ack_id), (Some(0), Some(7)));
        let r = parse_reply(r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#)
            .unwrap();
        assert_eq!(r.invalid_event_number, Some(3));
        for (body, n) in [
            (
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":"2"}"#,
                Some(2),
            ),
            (
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":"x"}"#,
                None,
            ),
            (
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":1.5}"#,
                None,
            ),
            (
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":null}"#,
                None,
            ),
        ] {
            let r = parse_reply(body).expect("still a HEC reply");
            assert_eq!((r.code, r.invalid_event_number), (Some(6), n), "{body}");
        }
        assert!(parse_reply("<html>bad gateway</html>").is_none());
        assert!(parse_reply(r#"{"text":"x"}"#).is_none());
        let acks = parse_ack_reply(r#"{"acks":{"1":true,"2":false,"3":true}}"#).unwrap();
        assert_eq!(acks, [1, 3].into());
        assert!(parse_ack_reply("{}").is_none());
    }

    #[test]
    fn codes_are_classified() {
        let c = ctx();
        let r = |code: i64| Reply {
            text: "t".into(),
            code: Some(code),
            ..Reply::default()
        };
        for code in [8, 9, 18, 19, 20] {
            assert!(
                matches!(classify(503, Some(&r(code)), &c), Verdict::Retry(_)),
                "{code}"
            );
        }
        for code in [1, 2, 3, 4, 5, 7, 10, 11, 14, 16, 21, 22] {
            let v = classify(400, Some(&r(code)), &c);
            let Verdict::Fatal(m) = v else {
                panic!("{code}: {v:?}")
            };
            assert!(m.contains("https://splunk.example.net:8088"), "{m}");
        }
        let poison = Reply {
            invalid_event_number: Some(2),
            ..r(6)
        };
        assert_eq!(
            classify(400, Some(&poison), &c),
            Verdict::Poison {
                index: Some(2),
                code: Some(6),
                text: "t".into()
            }
        );
        for code in [12, 13, 15] {
            assert!(matches!(
                classify(400, Some(&r(code)), &c),
                Verdict::Poison { .. }
            ));
        }
        // Without a HEC reply the HTTP status decides.
        assert!(matches!(classify(502, None, &c), Verdict::Retry(_)));
        assert!(matches!(classify(429, None, &c), Verdict::Retry(_)));
        assert!(matches!(classify(404, None, &c), Verdict::Fatal(_)));
        // After HEC answered like HEC: a proxy's page passing by (r8 a, an HTML 404 from
        // the ack endpoint during a rolling restart stopped the daemon), but HEC's own 404
        // (a reply with its code) is still a wrong address.
        let seen = ErrCtx {
            hec_seen: true,
            ..ctx()
        };
        assert!(matches!(classify(404, None, &seen), Verdict::Retry(_)));
        assert!(matches!(classify(403, None, &seen), Verdict::Retry(_)));
        assert!(matches!(
            classify(404, Some(&r(404)), &seen),
            Verdict::Fatal(_)
        ));
        assert_eq!(classify(413, None, &seen), Verdict::TooLarge);
        // A 413 without a HEC code is about size, never a dead letter by itself.
        assert_eq!(classify(413, None, &c), Verdict::TooLarge);
        assert_eq!(classify(413, Some(&r(99)), &c), Verdict::TooLarge);
        // The fixes name the keys to change.
        let Verdict::Fatal(m) = classify(403, Some(&r(4)), &c) else {
            panic!()
        };
        assert!(m.contains("sinks.splunk.token"), "{m}");
        let Verdict::Fatal(m) = classify(400, Some(&r(7)), &c) else {
            panic!()
        };
        assert!(
            m.contains("`veeam`") && m.contains("sinks.splunk.index"),
            "{m}"
        );
        let Verdict::Fatal(m) = classify(400, Some(&r(14)), &c) else {
            panic!()
        };
        assert!(m.contains("sinks.splunk.indexer_ack"), "{m}");
        let Verdict::Fatal(m) = classify(400, Some(&r(11)), &c) else {
            panic!()
        };
        assert!(m.contains("splunk.hec-channel"), "{m}");
    }
}
