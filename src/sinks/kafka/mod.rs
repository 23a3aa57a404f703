//! `type = "kafka"`: one Kafka record per event, through librdkafka's idempotent producer.
//!
//! Owns the sink's config (`KafkaSinkConfig`, validated without the network), the
//! translation into librdkafka properties (safety defaults first, then the user's
//! `options`), and delivery. It must not acknowledge anything librdkafka has not confirmed:
//! [`KafkaSink::deliver`] returns `Ok` only once **every** event of the batch has a
//! successful delivery report (`acks=all`, so every in-sync replica has it). Enqueueing is
//! never taken as delivery.
//!
//! Failure handling, from the inside out:
//! - librdkafka retries produce requests itself; the idempotent producer
//!   (`enable.idempotence=true`) makes those internal retries duplicate-free and keeps
//!   per-partition order for one producer session.
//! - A delivery report with an error (broker down longer than `message_timeout`, topic
//!   missing, ...) makes the batch [`SinkError::Retryable`]; the pipeline calls `deliver`
//!   again with the same batch, and this sink re-sends only the events that had no
//!   successful report (so a retry adds duplicates only for events whose report was lost
//!   in flight, never loses one). Authorization errors and a broker refusing records as
//!   too large are [`SinkError::Fatal`]: they need a human. An event larger than the
//!   producer's own `message.max.bytes` (librdkafka refuses it before sending) goes to
//!   the dead-letter file (`sinks::dead_letters`) and the rest of the batch is sent.
//! - A full producer queue is backpressure: we wait for the oldest outstanding delivery
//!   report and enqueue again, bounded by `message_timeout`.
//! - A fatal idempotence error (librdkafka's `_FATAL`), a broker that no longer knows the
//!   producer session, or 2 deliveries in a row without one acknowledged record (a broker
//!   that lost the session can make librdkafka retry until timeout without saying so) end
//!   the producer session; the sink builds a fresh producer and the batch is retried.
//!
//! Record layout: value = the event's JSON; key = `event.id` (default; `key = "none"` for
//! none); headers `source_id`, `dataset`, `schema_version` (the event's `ecs.version`); the
//! timestamp is the produce time (not `@timestamp`: backfilled history would otherwise be
//! deleted at once by the topic's retention). The topic may be a template:
//! `{dataset}` (`event.dataset`) and `{source_id}` (`labels.source_id`).
//!
//! Secrets: the SASL password is a [`Secret`]; it goes into librdkafka's config and nowhere
//! else. Errors name the sink id and the brokers, never credentials.

mod config;
mod context;
mod sink;
mod topic;

pub use config::{
    Compression, KafkaSaslConfig, KafkaSinkConfig, KafkaTlsConfig, KeyField, OptionValue,
    SaslMechanism,
};
pub use sink::KafkaSink;
pub use topic::TopicTemplate;

use super::{Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::{Cleartext, ConfigError, take_secret_file};

impl SinkSettings for KafkaSinkConfig {
    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        KafkaSinkConfig::validate(self, key)
    }

    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError> {
        match &mut self.sasl {
            Some(sasl) => take_secret_file(
                &format!("{key}.sasl.password"),
                &mut sasl.password,
                &mut sasl.password_file,
            ),
            None => Ok(()),
        }
    }

    fn cleartext(&self, key: &str) -> Vec<Cleartext> {
        if !self.plain_password_in_clear() {
            return Vec::new();
        }
        vec![Cleartext {
            key: format!("{key}.sasl"),
            carries: "the SASL password and the events",
            over: "SASL PLAIN without TLS",
            fix: "add `tls = {}` (or use SCRAM)",
        }]
    }

    fn probe_targets(&self) -> Vec<String> {
        vec![format!("the brokers {}", self.brokers)]
    }

    fn build(&self, id: &str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(KafkaSink::new(id, self, &ctx.state_dir)?))
    }
}
