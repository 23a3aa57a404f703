//! The Kafka sink itself: producer set-up from the config, per-batch delivery tracking,
//! retries of only the events without a successful delivery report, shutdown flush.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::time::Instant;

use crate::config::common::{resolve_secret, warn_if_insecure};
use crate::sinks::dead_letters::DeadLetters;
use crate::sinks::{Batch, Sink, SinkError};

use super::config::*;
use super::context::*;
use super::topic::*;

type Kproducer = FutureProducer<KafkaContext>;

/// Retry bookkeeping: which events of the batch being retried already have a successful
/// delivery report (they are not sent again).
struct RetryState {
    source_index: usize,
    seq: u64,
    delivered: Vec<bool>,
}

pub struct KafkaSink {
    id: Arc<str>,
    /// For messages: the bootstrap list as configured (no credentials in it).
    brokers: String,
    /// Holds the SASL password: never printed (no `Debug` on this struct).
    client_config: ClientConfig,
    producer: Kproducer,
    state: Arc<ClientState>,
    topic: TopicTemplate,
    /// `(source_id, dataset)` → expanded topic.
    topics: HashMap<(Arc<str>, String), Arc<str>>,
    key: KeyField,
    headers: bool,
    /// Longest a delivery report may take (message timeout + a margin); `None` when the
    /// user set an infinite `message.timeout.ms`.
    report_bound: Option<Duration>,
    healthcheck_timeout: Duration,
    flush_timeout: Duration,
    retry: Option<RetryState>,
    /// Deliveries in a row in which not one record was acknowledged (see
    /// [`STALLED_SESSION_AFTER`]).
    stalled: u32,
    /// Events larger than the producer's `message.max.bytes`: no retry can send them.
    dead_letters: DeadLetters,
    /// The producer's `message.max.bytes` as configured (for the dead-letter line).
    max_message_bytes: String,
    /// What the last health check saw that may make deliveries fail (for `check`).
    probe_warning: Option<String>,
}

/// Why an event went to the Kafka sink's dead-letter file.
#[derive(serde::Serialize)]
struct TooLarge<'a> {
    reason: &'static str,
    bytes: usize,
    message_max_bytes: &'a str,
}

impl KafkaSink {
    /// Build the producer. Errors are `Fatal` (configuration problems librdkafka found).
    /// Dead letters go to `<state_dir>/<id>.deadletter.ndjson`.
    pub fn new(
        id: &str,
        config: &KafkaSinkConfig,
        state_dir: &std::path::Path,
    ) -> Result<KafkaSink, SinkError> {
        let key = format!("sinks.{id}");
        config
            .validate(&key)
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let brokers = parse_brokers(&config.brokers)
            .map_err(|p| SinkError::Fatal(format!("{key}.brokers: {p}")))?
            .join(",");
        let topic = TopicTemplate::parse(&config.topic)
            .map_err(|p| SinkError::Fatal(format!("{key}.topic: {p}")))?;

        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &brokers)
            .set("client.id", format!("veeam-siem-{id}"))
            // Safety: no acknowledgement before every in-sync replica has the record;
            // librdkafka's retries can't duplicate or reorder.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            )
            .set("compression.type", config.compression.as_str())
            // The Java client's partitioner: the same key lands on the same partition as
            // records written by Java/Kafka Streams producers.
            .set("partitioner", "murmur2_random")
            .set("log.connection.close", "false")
            .set("security.protocol", config.security_protocol())
            .set_log_level(RDKafkaLogLevel::Info);
        if let Some(tls) = config.tls.as_ref().filter(|t| t.enabled) {
            if let Some(ca) = &tls.ca_file {
                cc.set("ssl.ca.location", ca.display().to_string());
            }
            if let (Some(cert), Some(k)) = (&tls.cert_file, &tls.key_file) {
                cc.set("ssl.certificate.location", cert.display().to_string())
                    .set("ssl.key.location", k.display().to_string());
            }
            if tls.insecure_skip_verify {
                warn_if_insecure(&format!("sinks.{id}.tls"), true);
                cc.set("enable.ssl.certificate.verification", "false")
                    .set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(sasl) = &config.sasl {
            let password = resolve_secret(
                &format!("{key}.sasl.password"),
                sasl.password.as_ref(),
                sasl.password_file.as_deref(),
            )
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
            cc.set("sasl.mechanisms", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", password.expose());
        }
        for (name, value) in &config.options {
            let value = value.to_property();
            if let Some((_, ours, risk)) = SAFETY.iter().find(|(k, _, _)| k == name) {
                let ours = if ours.is_empty() {
                    cc.get(name).unwrap_or("librdkafka's default")
                } else {
                    ours
                };
                if *ours != value {
                    tracing::warn!(
                        sink_id = id,
                        option = %name,
                        value = %value,
                        default = %ours,
                        "options overrides a delivery-safety setting: {risk}"
                    );
                }
            }
            cc.set(name.as_str(), value);
        }

        // Aliases in librdkafka: the one set last wins, and options are set in key order.
        let effective_timeout_ms = ["message.timeout.ms", "delivery.timeout.ms"]
            .iter()
            .find_map(|k| config.options.get(*k))
            .map(|v| v.to_property().parse::<u64>().ok())
            .unwrap_or(Some(config.message_timeout.as_millis() as u64));
        let report_bound = match effective_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms) + Duration::from_secs(10)),
            None => Some(config.message_timeout + Duration::from_secs(10)),
        };

        let sink_id: Arc<str> = Arc::from(id);
        let state = Arc::new(ClientState::default());
        let producer = create_producer(&cc, &sink_id, &brokers, &state)?;
        tracing::info!(
            sink_id = id,
            brokers = %brokers,
            topic = %config.topic,
            security_protocol = config.security_protocol(),
            // What librdkafka will use: `options` may override the typed key.
            compression = cc.get("compression.type").unwrap_or(config.compression.as_str()),
            "kafka producer ready (acks=all, idempotent)"
        );
        let max_message_bytes = cc
            .get("message.max.bytes")
            .unwrap_or("1000000 (librdkafka's default)")
            .to_string();
        Ok(KafkaSink {
            id: sink_id,
            brokers,
            client_config: cc,
            producer,
            state,
            topic,
            topics: HashMap::new(),
            key: config.key,
            headers: config.headers,
            report_bound,
            healthcheck_timeout: config.healthcheck_timeout,
            flush_timeout: config.flush_timeout,
            retry: None,
            stalled: 0,
            dead_letters: DeadLetters::new(id, state_dir),
            max_message_bytes,
            probe_warning: None,
        })
    }

    fn describe(&self) -> String {
        format!("sink `{}` (brokers {})", self.id, self.brokers)
    }

    fn topic_for(&mut self, source_id: &Arc<str>, dataset: &str) -> Result<Arc<str>, SinkError> {
        if let Some(t) = self.topics.get(&(source_id.clone(), dataset.to_string())) {
            return Ok(t.clone());
        }
        let name = self.topic.render(source_id, dataset).map_err(|p| {
            SinkError::Fatal(format!(
                "sinks.{}.topic: {p} (expanded for source `{source_id}`, dataset `{dataset}`); change the template",
                self.id
            ))
        })?;
        let name: Arc<str> = Arc::from(name.as_str());
        self.topics
            .insert((source_id.clone(), dataset.to_string()), name.clone());
        Ok(name)
    }

    /// A new producer session (after librdkafka declared the old one fatally broken).
    fn rebuild(&mut self, why: &str) -> Result<(), SinkError> {
        tracing::warn!(
            sink_id = &*self.id,
            reason = why,
            "starting a new kafka producer session"
        );
        self.state = Arc::new(ClientState::default());
        self.producer = create_producer(&self.client_config, &self.id, &self.brokers, &self.state)?;
        Ok(())
    }

    async fn deliver_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.events.is_empty() {
            return Ok(());
        }
        if let Some((_, reason)) = self.producer.client().fatal_error() {
            self.rebuild(&reason)?;
        }
        let n = batch.events.len();
        // A retry of the batch that failed last time sends only what is still missing.
        let mut delivered = match self.retry.take() {
            Some(r)
                if r.source_index == batch.source_index
                    && r.seq == batch.seq
                    && r.delivered.len() == n =>
            {
                r.delivered
            }
            _ => vec![false; n],
        };
        let topics = batch
            .events
            .iter()
            .map(|e| self.topic_for(&batch.source_id, &e.event.event.dataset))
            .collect::<Result<Vec<_>, _>>()?;

        let mut failures = Failures::default();
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        let mut enqueue_error: Option<KafkaError> = None;
        'events: for (i, e) in batch.events.iter().enumerate() {
            if delivered[i] {
                continue;
            }
            let mut queue_full_since: Option<Instant> = None;
            loop {
                let mut record: FutureRecord<'_, str, str> =
                    FutureRecord::to(&topics[i]).payload(e.json.as_str());
                if self.key == KeyField::EventId {
                    record = record.key(e.event.event.id.as_str());
                }
                if self.headers {
                    record = record.headers(
                        OwnedHeaders::new_with_capacity(3)
                            .insert(Header {
                                key: "source_id",
                                value: Some(&*batch.source_id),
                            })
                            .insert(Header {
                                key: "dataset",
                                value: Some(&*e.event.event.dataset),
                            })
                            .insert(Header {
                                key: "schema_version",
                                value: Some(&*e.event.ecs.version),
                            }),
                    );
                }
                match self.producer.send_result(record) {
                    Ok(future) => {
                        pending.push_back((i, future));
                        break;
                    }
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _,
                    )) => {
                        // librdkafka's own check against the producer's message.max.bytes:
                        // this event can never be sent, the rest of the batch can.
                        self.quarantine_too_large(e).await?;
                        delivered[i] = true;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Backpressure: librdkafka's queue is full. Wait for the oldest
                        // outstanding report (which frees room), or briefly if none is ours.
                        let since = *queue_full_since.get_or_insert_with(Instant::now);
                        if self.report_bound.is_some_and(|b| since.elapsed() > b) {
                            enqueue_error =
                                Some(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
                            break 'events;
                        }
                        match pending.pop_front() {
                            Some((j, future)) => {
                                let outcome = await_report(future, self.report_bound).await;
                                failures.record(j, outcome, &mut delivered);
                            }
                            None => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                    Err((error, _)) => {
                        enqueue_error = Some(error);
                        break 'events;
                    }
                }
            }
        }
        // Every enqueued record gets its report (bounded by message.timeout.ms), also
        // when enqueueing stopped early: what was delivered is remembered for the retry.
        while let Some((j, future)) = pending.pop_front() {
            let outcome = await_report(future, self.report_bound).await;
            failures.record(j, outcome, &mut delivered);
        }

        let missing = delivered.iter().filter(|d| !**d).count();
        if missing == 0 {
            self.stalled = 0;
            return Ok(());
        }
        let progressed = failures.delivered > 0;
        self.stalled = if progressed { 0 } else { self.stalled + 1 };
        self.retry = Some(RetryState {
            source_index: batch.source_index,
            seq: batch.seq,
            delivered,
        });
        let fatal_session = self
            .producer
            .client()
            .fatal_error()
            .or_else(|| {
                failures.session_broken.then(|| {
                    (
                        RDKafkaErrorCode::Fatal,
                        "the broker no longer knows this producer session (restarted, lost its producer state, or fenced it)".to_string(),
                    )
                })
            })
            .or_else(|| {
                // A broker that restarted without its producer state may answer every
                // produce with an error librdkafka keeps retrying until the records time
                // out, never declaring the session broken: only a new session sends again.
                (self.stalled >= STALLED_SESSION_AFTER).then(|| {
                    self.stalled = 0;
                    (
                        RDKafkaErrorCode::Fatal,
                        format!("no record was acknowledged in {STALLED_SESSION_AFTER} deliveries in a row, in case a restarted broker lost the old session; an unreachable broker or a missing topic looks the same"),
                    )
                })
            });
        let reported_fatal = failures.first.as_ref().is_some_and(|(_, f)| *f);
        let (first, fatal) = match (enqueue_error, failures.first) {
            (Some(e), _) => (
                format!("cannot enqueue: {e}"),
                is_fatal(&e) || reported_fatal,
            ),
            (None, Some((e, fatal))) => (e, fatal),
            (None, None) => ("no delivery report".to_string(), false),
        };
        let what = format!(
            "{}: {missing} of {n} events of the batch were not acknowledged by Kafka (first error: {first})",
            self.describe()
        );
        if fatal {
            return Err(SinkError::Fatal(format!(
                "{what}; this needs a change on the broker or in the config (ACLs, credentials, message.max.bytes, topic name)"
            )));
        }
        let mut restarted = String::new();
        if let Some((_, reason)) = fatal_session {
            self.rebuild(&reason)?;
            restarted = format!(
                " (the producer session was ended and a new session was started: {reason})"
            );
        }
        // Records queued while the brokers refuse our credentials or TLS time out like an
        // outage; librdkafka told the context why.
        if self.state.auth_failed.swap(false, Ordering::Relaxed) {
            let reason = self
                .state
                .last_error()
                .unwrap_or_else(|| "authentication or TLS handshake failed".to_string());
            return Err(SinkError::Retryable(format!(
                "{what}{restarted}; they will be sent again. The brokers refused the connection's credentials or TLS handshake ({reason}): check sinks.{}.sasl and sinks.{}.tls against the broker's listener",
                self.id, self.id
            )));
        }
        Err(SinkError::Retryable(format!(
            "{what}{restarted}; they will be sent again. Check that the brokers are reachable and the topic exists and accepts writes, or raise `message_timeout`"
        )))
    }

    /// Write an event librdkafka refuses as too large to the dead-letter file (fsynced),
    /// so the batch can be acknowledged without it; an I/O error fails the batch.
    async fn quarantine_too_large(
        &mut self,
        event: &crate::sinks::EncodedEvent,
    ) -> Result<(), SinkError> {
        let why = TooLarge {
            reason: "larger than the producer's message.max.bytes",
            bytes: event.json.len(),
            message_max_bytes: &self.max_message_bytes,
        };
        self.dead_letters
            .quarantine_for_batch(&why, &event.json)
            .await?;
        tracing::warn!(
            sink_id = &*self.id,
            event_id = %event.event.event.id,
            bytes = event.json.len(),
            message_max_bytes = %self.max_message_bytes,
            path = %self.dead_letters.path().display(),
            quarantined_total = self.dead_letters.count(),
            "event larger than the producer's message.max.bytes: it went to the dead-letter file (raise message.max.bytes in `options`, with the topic's max.message.bytes, to send such events)"
        );
        Ok(())
    }

    async fn check_health(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let topic = self.topic.fixed();
        let timeout = self.healthcheck_timeout;
        let result = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(topic.as_deref(), Timeout::After(timeout))
                .map(|m| {
                    // A template's topics are only known per event: then the brokers
                    // alone are checked (the cluster-wide listing names other topics).
                    let topic_error = topic
                        .as_deref()
                        .and_then(|name| m.topics().iter().find(|t| t.name() == name))
                        .and_then(|t| t.error())
                        .map(RDKafkaErrorCode::from);
                    (m.brokers().len(), topic_error)
                })
        })
        .await
        .map_err(|e| {
            SinkError::Retryable(format!("{}: health check task: {e}", self.describe()))
        })?;
        let auth_failed = self.state.auth_failed.load(Ordering::Relaxed);
        let last = self.state.last_error().unwrap_or_default();
        match result {
            Ok((brokers, None)) => {
                self.probe_warning = None;
                tracing::info!(sink_id = &*self.id, brokers, "kafka cluster reachable");
                Ok(())
            }
            Ok((_, Some(code))) => {
                let topic = self.topic.fixed().unwrap_or_default();
                match code {
                    RDKafkaErrorCode::TopicAuthorizationFailed => Err(SinkError::Fatal(format!(
                        "{}: not authorized to write topic `{topic}`; grant WRITE (and DESCRIBE) on it to this client's principal",
                        self.describe()
                    ))),
                    RDKafkaErrorCode::UnknownTopicOrPartition => {
                        let warning = format!(
                            "the brokers answer, but topic `{topic}` does not exist: deliveries fail unless the brokers create topics on first use; create it (see the README for a recommended topic config)"
                        );
                        tracing::warn!(sink_id = &*self.id, topic = %topic, "{warning}");
                        self.probe_warning = Some(warning);
                        Ok(())
                    }
                    other => Err(SinkError::Retryable(format!(
                        "{}: metadata for topic `{topic}` reports {other}",
                        self.describe()
                    ))),
                }
            }
            Err(e) if auth_failed => Err(SinkError::Fatal(format!(
                "{}: authentication or TLS handshake failed ({e}: {last}); check `sasl` (mechanism, username, password) and `tls` (ca_file, certificates)",
                self.describe()
            ))),
            Err(e) => Err(SinkError::Retryable(format!(
                "{}: no metadata within {} ({e}{}{last}); check that the brokers are reachable from here and `brokers` lists them as host:port",
                self.describe(),
                humantime::format_duration(self.healthcheck_timeout),
                if last.is_empty() { "" } else { ": " },
            ))),
        }
    }
}

fn create_producer(
    cc: &ClientConfig,
    id: &Arc<str>,
    brokers: &str,
    state: &Arc<ClientState>,
) -> Result<Kproducer, SinkError> {
    cc.create_with_context(KafkaContext {
        sink_id: id.clone(),
        state: state.clone(),
    })
    .map_err(|e| {
        SinkError::Fatal(format!(
            "sink `{id}` (brokers {brokers}): librdkafka refused the configuration: {e}; fix the named property (typed keys or `sinks.{id}.options`)"
        ))
    })
}

/// Deliveries in a row without one acknowledged record after which the producer session
/// is replaced. Records of a replaced session that the broker did store are sent again:
/// duplicates within the batches not yet checkpointed, never loss.
const STALLED_SESSION_AFTER: u32 = 2;

/// Errors that retrying will not fix.
fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}

/// Errors that mean the broker no longer knows this producer session (a broker that
/// restarted or lost its producer state, or fenced us): the idempotent producer can't send
/// again on it, even though librdkafka does not always declare it fatal. Only a new
/// session sends again.
fn breaks_session(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
        )
    )
}

/// The result of waiting for one delivery report.
enum Report {
    Delivered,
    /// The error, whether it is fatal, whether it broke the producer session.
    Failed(String, bool, bool),
}

async fn await_report(future: DeliveryFuture, bound: Option<Duration>) -> Report {
    let outcome = match bound {
        Some(b) => match tokio::time::timeout(b, future).await {
            Ok(r) => r,
            Err(_) => {
                return Report::Failed(
                    format!(
                        "no delivery report within {}",
                        humantime::format_duration(b)
                    ),
                    false,
                    false,
                );
            }
        },
        None => future.await,
    };
    match outcome {
        Ok(Ok(_)) => Report::Delivered,
        Ok(Err((e, _message))) => Report::Failed(e.to_string(), is_fatal(&e), breaks_session(&e)),
        Err(_) => Report::Failed("the producer was closed".into(), false, false),
    }
}

#[derive(Default)]
struct Failures {
    /// First error text and whether it is fatal.
    first: Option<(String, bool)>,
    /// An error said the broker no longer knows the producer session.
    session_broken: bool,
    /// Records acknowledged in this delivery.
    delivered: usize,
}

impl Failures {
    fn record(&mut self, index: usize, report: Report, delivered: &mut [bool]) {
        match report {
            Report::Delivered => {
                delivered[index] = true;
                self.delivered += 1;
            }
            Report::Failed(text, fatal, breaks) => {
                self.session_broken |= breaks;
                match &mut self.first {
                    None => self.first = Some((text, fatal)),
                    // A fatal error anywhere makes the batch fatal.
                    Some((_, f)) => *f |= fatal,
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.deliver_batch(batch))
    }

    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.check_health())
    }

    fn probe_warning(&self) -> Option<String> {
        self.probe_warning.clone()
    }
}

impl Drop for KafkaSink {
    /// Shutdown: give records still queued (only possible if a batch was abandoned
    /// mid-delivery) `flush_timeout` to reach the brokers. They were never acknowledged,
    /// so they are re-sent after a restart either way.
    fn drop(&mut self) {
        if self.producer.in_flight_count() > 0 {
            tracing::info!(
                sink_id = &*self.id,
                in_flight = self.producer.in_flight_count(),
                "flushing the kafka producer"
            );
            if let Err(e) = self.producer.flush(Timeout::After(self.flush_timeout)) {
                tracing::warn!(sink_id = &*self.id, error = %e, "kafka producer did not flush in time; unacknowledged records are re-sent after restart");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<KafkaSinkConfig, String> {
        let text = format!(
            "inputs = [\"a\"]\nbrokers = \"k1:9092, k2:9092\"\ntopic = \"veeam.audit\"\n{extra}"
        );
        let c: KafkaSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.validate("sinks.bus").map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_safe() {
        let c = config("").unwrap();
        assert_eq!(c.key, KeyField::EventId);
        assert!(c.headers);
        assert_eq!(c.message_timeout, Duration::from_secs(30));
        assert_eq!(c.security_protocol(), "plaintext");
    }

    #[test]
    fn options_accept_scalars_and_refuse_secrets() {
        let c = config("options = { \"linger.ms\" = 5, \"compression.type\" = \"zstd\", \"socket.keepalive.enable\" = true }").unwrap();
        assert_eq!(c.options["linger.ms"].to_property(), "5");
        assert_eq!(c.options["socket.keepalive.enable"].to_property(), "true");
        for bad in [
            "bootstrap.servers",
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.pem",
            "delivery.report.only.error",
            "transactional.id",
        ] {
            let e = config(&format!("options = {{ \"{bad}\" = \"x\" }}")).unwrap_err();
            assert!(e.contains(bad) && !e.contains("\"x\""), "{e}");
        }
        // A key's path is no secret.
        config("options = { \"ssl.key.location\" = \"/etc/k.pem\" }").unwrap();
        // What librdkafka refuses is a config error naming the option.
        for (bad, value) in [("bogus.prop", "1"), ("compression.type", "\"bogus\"")] {
            let e = config(&format!("options = {{ \"{bad}\" = {value} }}")).unwrap_err();
            assert!(
                e.contains(&format!("options.\"{bad}\"")) && e.contains("librdkafka"),
                "{e}"
            );
        }
    }

    #[test]
    fn brokers_must_be_host_port() {
        for bad in ["", " , ", "k1", "kafka://k1:9092", "k1:port", ":9092"] {
            let text = format!("inputs = [\"a\"]\nbrokers = \"{bad}\"\ntopic = \"t\"\n");
            let c: KafkaSinkConfig = toml::from_str(&text).unwrap();
            let e = c.validate("sinks.bus").unwrap_err().to_string();
            assert!(e.contains("sinks.bus.brokers"), "{bad}: {e}");
        }
        assert_eq!(
            parse_brokers("[::1]:9092,k:1").unwrap(),
            vec!["[::1]:9092", "k:1"]
        );
    }

    #[test]
    fn topic_templates() {
        let t = TopicTemplate::parse("veeam.{dataset}").unwrap();
        assert_eq!(t.fixed(), None);
        assert_eq!(
            t.render("vbo_main", "veeam.vbo_restore").unwrap(),
            "veeam.veeam.vbo_restore"
        );
        let t = TopicTemplate::parse("{source_id}-audit").unwrap();
        assert_eq!(t.render("vbo-1", "x").unwrap(), "vbo-1-audit");
        assert_eq!(
            TopicTemplate::parse("plain").unwrap().fixed().as_deref(),
            Some("plain")
        );
        assert!(TopicTemplate::parse("a/{dataset}").is_err());
        assert!(TopicTemplate::parse("{nope}").is_err());
        assert!(TopicTemplate::parse("{dataset").is_err());
        assert!(TopicTemplate::parse("..").is_err());
        assert!(TopicTemplate::parse("").is_err());
    }

    #[test]
    fn sasl_needs_one_password_and_never_prints_it() {
        let e = config("sasl = { mechanism = \"PLAIN\", username = \"u\" }").unwrap_err();
        assert!(e.contains("sinks.bus.sasl.password"), "{e}");
        let c = config(
            "sasl = { mechanism = \"SCRAM-SHA-512\", username = \"u\", password = \"hunter2\" }\ntls = {}",
        )
        .unwrap();
        assert_eq!(c.security_protocol(), "sasl_ssl");
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = config("sasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }")
            .unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
    }

    #[test]
    fn tls_files_must_exist_and_pair() {
        let e = config("tls = { ca_file = \"/nonexistent/ca.pem\" }").unwrap_err();
        assert!(e.contains("sinks.bus.tls.ca_file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.pem");
        std::fs::write(&f, "x").unwrap();
        let e = config(&format!(
            "tls = {{ cert_file = {:?} }}",
            f.display().to_string()
        ))
        .unwrap_err();
        assert!(e.contains("key_file"), "{e}");
    }
}
