//! `type = "syslog"`: RFC 5424 (or RFC 3164) messages over UDP, TCP or TLS (RFC 5425),
//! one message per event with the JSON event as MSG.
//!
//! Owns: the sink's config and its validation, and the delivery rule, i.e. *when a batch
//! counts as delivered*:
//! - TCP/TLS with `confirm = "close"` (default): each batch goes on its own connection;
//!   after writing it we close our sending side and wait for the receiver to close its
//!   side. A receiver sees our end of stream only after reading every byte before it, so
//!   the batch is acknowledged once the receiver has provably read all of it. A receiver
//!   that dies with unread data resets the connection instead: the batch is sent again.
//! - TCP/TLS with `confirm = "flush"`: one long-lived connection; a batch is acknowledged
//!   once it is written and flushed on a connection the receiver had not closed. Bytes the
//!   receiver had not read yet when it restarts are lost.
//! - UDP: best effort. Each message is one datagram of at most `max_message_bytes`
//!   (oversized events have free text cut, see [`format::fit`]; one that still does not
//!   fit goes to the dead-letter file, `sinks::dead_letters`); a batch is acknowledged
//!   once every datagram was handed to the OS. Nothing tells us whether it arrived.
//!
//! Any failure drops the connection and returns [`SinkError::Retryable`] (except a receiver
//! certificate the configured CA rejects: [`SinkError::Fatal`]): the pipeline retries the
//! same batch with exponential backoff and we reconnect, so with `close` a receiver outage
//! or restart costs duplicates (same `event.id`), never loss.
//!
//! Must not: format messages (that is [`format`]), open connections or sockets
//! (that is [`conn`]), or acknowledge anything before the rule above holds.

mod config;
pub mod conn;
pub mod format;
mod sink;

pub use config::{
    Confirm, DEFAULT_MAX_MESSAGE_BYTES, Mode, SyslogSinkConfig, SyslogTlsConfig, split_address,
};
pub use sink::SyslogSink;

use super::{Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::ConfigError;

impl SinkSettings for SyslogSinkConfig {
    fn type_name(&self) -> &'static str {
        "syslog"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        SyslogSinkConfig::validate(self, key)
    }

    fn probe_targets(&self) -> Vec<String> {
        vec![self.address.clone()]
    }

    fn build(&self, id: &str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(SyslogSink::new(id, self, &ctx.state_dir)?))
    }
}
