//! The librdkafka client context: logs with the sink id and remembers authentication and
//! TLS failures (which need a human) for the sink to report. librdkafka repeats a broken
//! connection's complaint many times a second (through its log and its error callback
//! alike): a message said within the last [`REPEAT_QUIET`] is not logged again, and the
//! next time it is, the count of repeats not logged goes with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long the same librdkafka message stays quiet after it was logged.
const REPEAT_QUIET: Duration = Duration::from_secs(30);
/// Messages remembered for [`REPEAT_QUIET`] at most (the oldest are forgotten).
const REMEMBERED: usize = 64;

#[derive(Default)]
pub(super) struct ClientState {
    /// An authentication or TLS handshake failure was reported (needs a human).
    pub(super) auth_failed: AtomicBool,
    pub(super) last_error: Mutex<Option<String>>,
    /// When each recent message was last logged, and how often it came since.
    said: Mutex<HashMap<String, (Instant, u64)>>,
}

impl ClientState {
    /// What librdkafka last reported through the error callback.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }

    /// Whether to log `message` now: `Some(repeats not logged since last time)`, or
    /// `None` while it is quiet.
    fn should_log(&self, message: &str, now: Instant) -> Option<u64> {
        let Ok(mut said) = self.said.lock() else {
            return Some(0);
        };
        match said.get_mut(message) {
            Some((at, repeats)) if now.duration_since(*at) < REPEAT_QUIET => {
                *repeats += 1;
                None
            }
            Some((at, repeats)) => {
                let skipped = *repeats;
                *at = now;
                *repeats = 0;
                Some(skipped)
            }
            None => {
                if said.len() >= REMEMBERED {
                    said.retain(|_, (at, _)| now.duration_since(*at) < REPEAT_QUIET);
                    if said.len() >= REMEMBERED {
                        said.clear();
                    }
                }
                said.insert(message.to_string(), (now, 0));
                Some(0)
            }
        }
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
                if let Some(repeats) = self.state.should_log(message, Instant::now()) {
                    tracing::warn!(sink_id, facility = fac, repeats, "librdkafka: {message}")
                }
            }
            RDKafkaLogLevel::Notice => {
                if let Some(repeats) = self.state.should_log(message, Instant::now()) {
                    tracing::info!(sink_id, facility = fac, repeats, "librdkafka: {message}")
                }
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
        if let Some(repeats) = self.state.should_log(reason, Instant::now()) {
            tracing::warn!(sink_id = &*self.sink_id, error = %error, repeats, "kafka client: {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_message_is_logged_once_per_quiet_period_with_its_count() {
        let state = ClientState::default();
        let t0 = Instant::now();
        assert_eq!(state.should_log("1/1 brokers are down", t0), Some(0));
        for s in 1..=5 {
            assert_eq!(
                state.should_log("1/1 brokers are down", t0 + Duration::from_secs(s)),
                None
            );
        }
        assert_eq!(state.should_log("other", t0), Some(0));
        assert_eq!(
            state.should_log(
                "1/1 brokers are down",
                t0 + REPEAT_QUIET + Duration::from_secs(1)
            ),
            Some(5)
        );
        for n in 0..REMEMBERED * 2 {
            state.should_log(&format!("m{n}"), t0);
        }
        assert!(state.said.lock().unwrap().len() <= REMEMBERED);
    }
}
