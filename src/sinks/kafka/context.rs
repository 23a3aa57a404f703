//! The librdkafka client context: logs with the sink id and remembers authentication and
//! TLS failures (which need a human) for the sink to report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Default)]
pub(super) struct ClientState {
    /// An authentication or TLS handshake failure was reported (needs a human).
    pub(super) auth_failed: AtomicBool,
    pub(super) last_error: Mutex<Option<String>>,
}

impl ClientState {
    /// What librdkafka last reported through the error callback.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}

pub(super) struct KafkaContext {
    pub(super) sink_id: Arc<str>,
    pub(super) state: Arc<ClientState>,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let sink_id = &*self.sink_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(sink_id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice => {
                tracing::info!(sink_id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::debug!(sink_id, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            )
        ) {
            self.state.auth_failed.store(true, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.state.last_error.lock() {
            *last = Some(reason.to_string());
        }
        tracing::warn!(sink_id = &*self.sink_id, error = %error, "kafka client: {reason}");
    }
}
