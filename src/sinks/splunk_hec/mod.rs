//! `type = "splunk_hec"`: Splunk HTTP Event Collector, with indexer acknowledgement,
//! HEC-code-aware retries, dead letters and a restart-stable data channel.
//!
//! Owns: the sink's config and its validation, the delivery algorithm and the health
//! probe. A pipeline batch (one source page) is delivered like this:
//!
//! 1. the events not yet delivered are wrapped in HEC envelopes and packed into requests
//!    (`max_events`, `max_bytes`), gzipped when `compression = "gzip"`;
//! 2. each request is POSTed to `/services/collector/event`; busy/unhealthy answers (codes
//!    9, 18–20, 5xx), timeouts and connection errors are retried with backoff honouring
//!    `Retry-After` (`http::send_with_retry`). An HTTP 200 without a HEC reply (a balancer
//!    or WAF page) is never a delivery: retried once the endpoint has answered like HEC,
//!    else fatal (most likely not the HEC port);
//! 3. a request rejected for one malformed event (codes 6, 12, 13, 15 with
//!    `invalid-event-number`) sends the others again; the rejected event goes to the
//!    dead-letter file once the rest of the batch was sent, only when HEC accepted
//!    something since startup and at most one rejection followed the last acceptance
//!    (`wire::FormatEvidence`), else the batch fails and is retried (a receiver rejecting
//!    everything, e.g. behind a proxy stripping `Content-Encoding`, must not cost
//!    evidence); a request answered 413 without a HEC code (too large for HEC or a proxy)
//!    is split in halves and sent again; a single event still refused goes to the
//!    dead-letter file only when it is larger than every request HEC accepted
//!    (`wire::SizeEvidence`), else the batch fails and is retried (a proxy refusing every
//!    POST must not cost evidence);
//! 4. with `indexer_ack`, each accepted request waits in the sink's ack book, and its one
//!    ack poller queries `/services/collector/ack` for every outstanding ackId until each
//!    reports `true`; requests still unconfirmed after `ack_timeout` are sent again. HEC
//!    hands ackIds out again after a restart or an idle-channel cleanup, so a `true`
//!    confirms only a request answered before the query was sent, once the POSTs in flight
//!    meanwhile are answered; a request whose ackId was handed out again (or that was in
//!    flight with another request given the same ackId, or when an answer was lost) is
//!    sent again (see `sink.rs`, `AckBook`);
//! 5. only then is the batch acknowledged to the pipeline, which may move the checkpoint.
//!
//! Steps 1–3 run for up to `in_flight_requests` requests of the sink at a time, and with
//! `in_flight_batches` above 1 the pipeline hands over the next batches ([`Sink::submit`])
//! while earlier ones are still in steps 2–4: their requests share those permits (see
//! `sink.rs`).
//!
//! Progress inside a batch is kept across the pipeline's retries of that batch, so a
//! retry re-sends only what was not confirmed. Token, index and channel errors are
//! [`SinkError::Fatal`]: the pipeline stops, the checkpoint stays where it was.
//!
//! There is no buffering across pipeline batches (no `linger`): a source page is the unit
//! of batching, and at most `in_flight_batches` of them are sent but not yet confirmed and
//! checkpointed (invariant 3 of ARCHITECTURE.md): what a crash may send twice.
//!
//! Every answer body is read with a cap ([`HEC_REPLY_LIMIT`]; error excerpts 4 KiB), and
//! deadlines use checked arithmetic (duration settings are also bounded by validation).
//!
//! Must not: acknowledge before HEC accepted every event (code 0) and, with
//! `indexer_ack`, before every request's own ackId reported `true` (never on a `true` that
//! may be another request's HEC gave the same ackId);
//! quarantine events on evidence that the receiver, not the event, is at fault; print the
//! token (it is a [`Secret`] and travels only in the `Authorization` header, marked
//! sensitive); silently downgrade to delivery without indexer acknowledgement when
//! `indexer_ack` is on (code 14, or code 0 without an ackId, stops the sink).

mod config;
mod cookies;
pub mod files;
mod sink;
// `pub` (hidden from docs) only so `benches/encoders.rs` can measure the wire format.
#[doc(hidden)]
pub mod wire;

pub use config::{Compression, HecSinkConfig};
pub use sink::{HEC_REPLY_LIMIT, HecSink};
pub use wire::default_sourcetype;

use std::path::PathBuf;

use super::{ProbeContext, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::{
    Cleartext, ConfigError, check_header_secret, redact_userinfo, take_secret_file,
};

impl SinkSettings for HecSinkConfig {
    fn type_name(&self) -> &'static str {
        "splunk_hec"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        HecSinkConfig::validate(self, key)
    }

    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError> {
        let key = format!("{key}.token");
        take_secret_file(&key, &mut self.token, &mut self.token_file)?;
        check_header_secret(&key, self.token.as_ref())
    }

    fn cleartext(&self, key: &str) -> Vec<Cleartext> {
        Cleartext::of(
            format!("{key}.endpoint"),
            &self.endpoint,
            "the HEC token and the events",
        )
        .into_iter()
        .collect()
    }

    fn probe_targets(&self) -> Vec<String> {
        vec![redact_userinfo(&self.endpoint)]
    }

    fn build(&self, id: &str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(HecSink::new(id, self, ctx)?))
    }

    /// The live state dir when the daemon already has a channel id there, so the probe
    /// checks that HEC accepts the daemon's channel (it only reads the file; its ack
    /// query uses a fresh channel of its own, see `sink.rs`).
    fn probe_state_dir(&self, id: &str, ctx: &ProbeContext) -> PathBuf {
        if files::channel_path(&ctx.state_dir, id).exists() {
            ctx.state_dir.clone()
        } else {
            ctx.scratch.clone()
        }
    }
}
