//! Process-wide operational metrics and readiness state, exposed by [`crate::ops`].
//!
//! Owns the metric families (a `prometheus-client` registry, so the exposition format is
//! the library's, not ours) and the readiness map (`/ready`: every source authenticated
//! once, every sink healthy). The registry is process-wide, like Prometheus' default
//! registry: sources, sinks and the pipeline record into [`global()`] without threading a
//! handle through every constructor, and counters survive a configuration reload.
//!
//! Must not: block, allocate per event (counters are bumped per batch), or carry secrets in
//! labels (labels are component ids, hosts and status codes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkSourceLabels {
    pub sink: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub source: String,
    /// `password` or `refresh_token`.
    pub grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `host:port` of the request (never the path or query).
    pub host: String,
    /// The HTTP status code, or `error` when no response arrived.
    pub status: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports. Names get the `veeam_siem_` prefix (and counters the
/// `_total` suffix) from the registry.
/// Failed poll cycles in a row after which a source is reported not ready.
pub const FAILED_CYCLES_NOT_READY: u32 = 3;

pub struct Metrics {
    registry: Registry,
    pub records_read: Family<SourceLabel, Counter>,
    pub records_skipped: Family<SourceLabel, Counter>,
    pub records_degraded: Family<SourceLabel, Counter>,
    pub events_mapped: Family<SourceLabel, Counter>,
    pub events_filtered: Family<SourceLabel, Counter>,
    pub events_delivered: Family<SinkSourceLabels, Counter>,
    pub events_failed: Family<SinkLabel, Counter>,
    pub events_quarantined: Family<SinkLabel, Counter>,
    pub events_acknowledged: Family<SourceLabel, Counter>,
    pub checkpoints_written: Family<SourceLabel, Counter>,
    pub checkpoint_event_time: Family<SourceLabel, FloatGauge>,
    pub checkpoint_lag: Family<SourceLabel, FloatGauge>,
    pub last_successful_poll: Family<SourceLabel, FloatGauge>,
    pub poll_failures: Family<SourceLabel, Counter>,
    pub token_requests: Family<TokenLabels, Counter>,
    pub http_responses: Family<HttpLabels, Counter>,
    pub batch_latency: HistogramFamily<SinkLabel>,
    pub queue_depth: Family<SinkLabel, Gauge>,
    pub archive_upload_backlog: Family<SinkLabel, Gauge>,
    pub archive_upload_oldest: Family<SinkLabel, FloatGauge>,
    pub archive_uploads: Family<SinkLabel, Counter>,
    pub component_ready: Family<ComponentLabels, Gauge>,
    ready: Mutex<BTreeMap<(String, String), bool>>,
    /// Lines `/ready` adds to its answer without changing its status (the archive's
    /// upload backlog), by sink id.
    notes: Mutex<BTreeMap<String, String>>,
    /// Sources whose last checkpoint write failed: not ready, whatever their polls do.
    checkpoint_failing: Mutex<BTreeSet<String>>,
    /// Poll cycles in a row that failed, per source.
    failed_cycles: Mutex<std::collections::BTreeMap<String, u32>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    /// `source` or `sink`.
    pub kind: String,
    pub id: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~82 s: a fsync, a HEC round trip, an indexer ack that takes a minute.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("veeam_siem");
        let m = Metrics {
            records_read: Family::default(),
            records_skipped: Family::default(),
            records_degraded: Family::default(),
            events_mapped: Family::default(),
            events_filtered: Family::default(),
            events_delivered: Family::default(),
            events_failed: Family::default(),
            events_quarantined: Family::default(),
            events_acknowledged: Family::default(),
            checkpoints_written: Family::default(),
            checkpoint_event_time: Family::default(),
            checkpoint_lag: Family::default(),
            last_successful_poll: Family::default(),
            poll_failures: Family::default(),
            token_requests: Family::default(),
            http_responses: Family::default(),
            batch_latency: Family::new_with_constructor(latency_histogram),
            queue_depth: Family::default(),
            archive_upload_backlog: Family::default(),
            archive_upload_oldest: Family::default(),
            archive_uploads: Family::default(),
            component_ready: Family::default(),
            ready: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(BTreeMap::new()),
            checkpoint_failing: Mutex::new(BTreeSet::new()),
            failed_cycles: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "source_records_read",
            "Records fetched from a source's API (before mapping)",
            m.records_read.clone(),
        );
        registry.register(
            "source_records_skipped",
            "Records a source could not decode and skipped (each is logged with its session id)",
            m.records_skipped.clone(),
        );
        registry.register(
            "source_records_degraded",
            "Records shipped with odd values left out or kept as text (their events carry the tag veeam_field_degraded and error.message)",
            m.records_degraded.clone(),
        );
        registry.register(
            "events_mapped",
            "Events mapped and handed to the source's sinks",
            m.events_mapped.clone(),
        );
        registry.register(
            "events_filtered",
            "Events outside a backfill's --since/--until window, not sent",
            m.events_filtered.clone(),
        );
        registry.register(
            "sink_events_delivered",
            "Events a sink delivered durably (acknowledged to the pipeline)",
            m.events_delivered.clone(),
        );
        registry.register(
            "sink_events_failed",
            "Events in delivery attempts that failed (they are retried)",
            m.events_failed.clone(),
        );
        registry.register(
            "sink_events_quarantined",
            "Events a sink's receiver can never take (refused as malformed, or too large to send), written to the dead-letter file",
            m.events_quarantined.clone(),
        );
        registry.register(
            "source_events_acknowledged",
            "Events acknowledged by every sink of the source (covered by a checkpoint)",
            m.events_acknowledged.clone(),
        );
        registry.register(
            "checkpoints_written",
            "Checkpoint files written",
            m.checkpoints_written.clone(),
        );
        registry.register(
            "checkpoint_event_timestamp_seconds",
            "@timestamp of the newest event covered by the source's checkpoint (Unix seconds)",
            m.checkpoint_event_time.clone(),
        );
        registry.register(
            "checkpoint_lag_seconds",
            "Now minus checkpoint_event_timestamp_seconds; also grows while the source is idle",
            m.checkpoint_lag.clone(),
        );
        registry.register(
            "source_last_successful_poll_timestamp_seconds",
            "End of the source's last poll cycle that completed without errors (Unix seconds)",
            m.last_successful_poll.clone(),
        );
        registry.register(
            "source_poll_failures",
            "Poll cycles that failed or were incomplete",
            m.poll_failures.clone(),
        );
        registry.register(
            "source_token_requests",
            "Successful OAuth token requests by grant (password = login, refresh_token = refresh)",
            m.token_requests.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses received through the shared retry layer, by host and status",
            m.http_responses.clone(),
        );
        registry.register(
            "sink_batch_delivery_seconds",
            "Time from a batch's first delivery attempt to its acknowledgement",
            m.batch_latency.clone(),
        );
        registry.register(
            "sink_queue_depth",
            "Batches waiting in front of the sink",
            m.queue_depth.clone(),
        );
        registry.register(
            "archive_upload_backlog",
            "Sealed archive files (segments and digests) not yet confirmed by the S3 store",
            m.archive_upload_backlog.clone(),
        );
        registry.register(
            "archive_upload_oldest_pending_seconds",
            "Age of the oldest sealed archive digest not yet confirmed by the S3 store (0 when none)",
            m.archive_upload_oldest.clone(),
        );
        registry.register(
            "archive_uploads",
            "Archive files uploaded to S3 and confirmed (size, checksum, retention)",
            m.archive_uploads.clone(),
        );
        registry.register(
            "component_ready",
            "1 once a source has authenticated / a sink is healthy; /ready needs all at 1",
            m.component_ready.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric, with lags computed as of `now`.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let now_s = unix_seconds(now);
        let sources: Vec<String> = self
            .ready
            .lock()
            .map(|r| {
                r.keys()
                    .filter(|(kind, _)| kind == "source")
                    .map(|(_, id)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for source in sources {
            let label = SourceLabel { source };
            let newest = self.checkpoint_event_time.get_or_create(&label).get();
            if newest > 0.0 {
                self.checkpoint_lag
                    .get_or_create(&label)
                    .set((now_s - newest).max(0.0));
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Declare the components of a (new) pipeline: each starts not ready. Components of a
    /// previous configuration that are gone are forgotten.
    pub fn expect_components(&self, sources: &[String], sinks: &[String]) {
        let Ok(mut ready) = self.ready.lock() else {
            return;
        };
        let mut next = BTreeMap::new();
        for (kind, ids) in [("source", sources), ("sink", sinks)] {
            for id in ids {
                let key = (kind.to_string(), id.clone());
                let was = ready.get(&key).copied().unwrap_or(false);
                next.insert(key, was);
            }
        }
        for (kind, id) in ready.keys() {
            if !next.contains_key(&(kind.clone(), id.clone())) {
                self.component_ready.remove(&ComponentLabels {
                    kind: kind.clone(),
                    id: id.clone(),
                });
                if kind == "sink" {
                    // A gauge of a sink that is gone would show its last depth forever.
                    self.queue_depth.remove(&sink_label(id));
                }
            }
        }
        for ((kind, id), up) in &next {
            self.component_ready
                .get_or_create(&ComponentLabels {
                    kind: kind.clone(),
                    id: id.clone(),
                })
                .set(i64::from(*up));
        }
        *ready = next;
        // Every counter of a component is there from the start, at 0: an alert on
        // `rate(...) > 0` or `increase(...)` needs the series before the first failure.
        for source in sources {
            let label = SourceLabel {
                source: source.clone(),
            };
            for family in [
                &self.records_read,
                &self.records_skipped,
                &self.records_degraded,
                &self.events_mapped,
                &self.events_filtered,
                &self.events_acknowledged,
                &self.checkpoints_written,
                &self.poll_failures,
            ] {
                drop(family.get_or_create(&label));
            }
        }
        for sink in sinks {
            let label = SinkLabel { sink: sink.clone() };
            for family in [&self.events_failed, &self.events_quarantined] {
                drop(family.get_or_create(&label));
            }
            drop(self.queue_depth.get_or_create(&label));
        }
    }

    fn set_ready(&self, kind: &str, id: &str, up: bool) {
        let up = up
            && !(kind == "source"
                && (self.checkpoint_failing.lock().is_ok_and(|f| f.contains(id))
                    || self
                        .failed_cycles
                        .lock()
                        .is_ok_and(|f| f.get(id).is_some_and(|n| *n >= FAILED_CYCLES_NOT_READY))));
        if let Ok(mut ready) = self.ready.lock()
            && let Some(v) = ready.get_mut(&(kind.to_string(), id.to_string()))
        {
            *v = up;
            self.component_ready
                .get_or_create(&ComponentLabels {
                    kind: kind.to_string(),
                    id: id.to_string(),
                })
                .set(i64::from(up));
        }
    }

    /// The components that are not ready (empty = ready). `None` before any pipeline started.
    pub fn not_ready(&self) -> Option<Vec<String>> {
        let ready = self.ready.lock().ok()?;
        if ready.is_empty() {
            return None;
        }
        let failing = self.checkpoint_failing.lock().ok()?;
        Some(
            ready
                .iter()
                .filter(|(_, up)| !**up)
                .map(|((kind, id), _)| {
                    if kind == "source" && failing.contains(id) {
                        format!("source `{id}` (its checkpoint cannot be written, see the log)")
                    } else {
                        format!("{kind} `{id}`")
                    }
                })
                .collect(),
        )
    }

    /// A source completed a poll cycle: it authenticated and read its API.
    pub fn poll_succeeded(&self, source: &str, at: DateTime<Utc>) {
        self.last_successful_poll
            .get_or_create(&source_label(source))
            .set(unix_seconds(at));
        if let Ok(mut failed) = self.failed_cycles.lock() {
            failed.remove(source);
        }
        self.set_ready("source", source, true);
    }

    /// A source's poll cycle failed or was incomplete. The source is not ready when its
    /// credentials were refused (`refused`), or after [`FAILED_CYCLES_NOT_READY`] failed
    /// cycles in a row; one or two failures (a server restarting) leave it ready. The next
    /// completed cycle makes it ready again.
    pub fn poll_failed(&self, source: &str, refused: bool) {
        self.poll_failures
            .get_or_create(&source_label(source))
            .inc();
        let in_a_row = self.failed_cycles.lock().map_or(0, |mut failed| {
            let n = failed.entry(source.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            if refused {
                *n = (*n).max(FAILED_CYCLES_NOT_READY);
            }
            *n
        });
        if in_a_row >= FAILED_CYCLES_NOT_READY {
            self.set_ready("source", source, false);
        }
    }

    /// A source fetched and decoded records (including ones it skipped).
    pub fn records_read(&self, source: &str, read: u64) {
        self.records_read
            .get_or_create(&source_label(source))
            .inc_by(read);
    }

    pub fn events_mapped(&self, source: &str, events: u64) {
        self.events_mapped
            .get_or_create(&source_label(source))
            .inc_by(events);
    }

    pub fn events_filtered(&self, source: &str, events: u64) {
        self.events_filtered
            .get_or_create(&source_label(source))
            .inc_by(events);
    }

    pub fn events_acknowledged(&self, source: &str, events: u64) {
        self.events_acknowledged
            .get_or_create(&source_label(source))
            .inc_by(events);
    }

    /// A record the source read but could not ship (an essential field unusable): it
    /// counts as read too, so `read = mapped + skipped`.
    pub fn record_skipped(&self, source: &str) {
        let label = source_label(source);
        self.records_skipped.get_or_create(&label).inc();
        self.records_read.get_or_create(&label).inc();
    }

    /// A record (one event) shipped with odd values of its own or of its session or job.
    pub fn record_degraded(&self, source: &str) {
        self.records_degraded
            .get_or_create(&source_label(source))
            .inc();
    }

    pub fn token_issued(&self, source: &str, grant: &str) {
        self.token_requests
            .get_or_create(&TokenLabels {
                source: source.to_string(),
                grant: grant.to_string(),
            })
            .inc();
    }

    /// One HTTP exchange of the shared retry layer; `status` is `None` when no response came.
    pub fn http_response(&self, url: &str, status: Option<u16>) {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_else(|| "unknown".to_string());
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.http_responses
            .get_or_create(&HttpLabels { host, status })
            .inc();
    }

    /// A sink passed its health check or delivered a batch (`true`), or failed one (`false`).
    pub fn sink_health(&self, sink: &str, healthy: bool) {
        self.set_ready("sink", sink, healthy);
    }

    pub fn batch_delivered(&self, sink: &str, source: &str, events: u64, took: Duration) {
        self.events_delivered
            .get_or_create(&SinkSourceLabels {
                sink: sink.to_string(),
                source: source.to_string(),
            })
            .inc_by(events);
        self.batch_latency
            .get_or_create(&sink_label(sink))
            .observe(took.as_secs_f64());
    }

    pub fn batch_failed(&self, sink: &str, events: u64) {
        self.events_failed
            .get_or_create(&sink_label(sink))
            .inc_by(events);
    }

    pub fn quarantined(&self, sink: &str, events: u64) {
        self.events_quarantined
            .get_or_create(&sink_label(sink))
            .inc_by(events);
    }

    /// The archive sink's upload backlog: files pending and the age of the oldest (s).
    pub fn archive_upload_backlog(&self, sink: &str, files: u64, oldest_seconds: f64) {
        let label = SinkLabel {
            sink: sink.to_string(),
        };
        self.archive_upload_backlog
            .get_or_create(&label)
            .set(i64::try_from(files).unwrap_or(i64::MAX));
        self.archive_upload_oldest
            .get_or_create(&label)
            .set(oldest_seconds);
        if let Ok(mut notes) = self.notes.lock() {
            if files == 0 {
                notes.remove(sink);
            } else {
                notes.insert(
                    sink.to_string(),
                    format!(
                        "sink `{sink}`: {files} archive files waiting for the S3 upload, the oldest sealed {oldest_seconds:.0}s ago"
                    ),
                );
            }
        }
    }

    /// Lines for `/ready` that do not change its status (e.g. an upload backlog).
    pub fn ready_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One archive file uploaded and confirmed.
    pub fn archive_uploaded(&self, sink: &str) {
        self.archive_uploads
            .get_or_create(&SinkLabel {
                sink: sink.to_string(),
            })
            .inc();
    }

    pub fn queue_depth(&self, sink: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&sink_label(sink))
            .set(depth as i64);
    }

    /// A run starts from a checkpoint covering events up to `newest` (if it says): the lag
    /// is right before the first new checkpoint.
    pub fn checkpoint_loaded(&self, source: &str, newest: Option<DateTime<Utc>>) {
        self.raise_checkpoint_event_time(&source_label(source), newest);
    }

    /// Writing the source's checkpoint failed (`true`: the source is not ready until a
    /// write succeeds) or succeeded.
    pub fn checkpoint_failing(&self, source: &str, failing: bool) {
        let changed = self.checkpoint_failing.lock().is_ok_and(|mut f| {
            if failing {
                f.insert(source.to_string())
            } else {
                f.remove(source)
            }
        });
        if changed {
            self.set_ready("source", source, !failing);
        }
    }

    /// The tracker persisted a checkpoint covering events up to `newest` (if known).
    pub fn checkpoint_written(&self, source: &str, newest: Option<DateTime<Utc>>) {
        let label = source_label(source);
        self.checkpoints_written.get_or_create(&label).inc();
        self.raise_checkpoint_event_time(&label, newest);
    }

    /// `checkpoint_event_timestamp_seconds` moves forward only.
    fn raise_checkpoint_event_time(&self, label: &SourceLabel, newest: Option<DateTime<Utc>>) {
        if let Some(t) = newest {
            let gauge = self.checkpoint_event_time.get_or_create(label);
            let t = unix_seconds(t);
            if t > gauge.get() {
                gauge.set(t);
            }
        }
    }
}

fn source_label(source: &str) -> SourceLabel {
    SourceLabel {
        source: source.to_string(),
    }
}

fn sink_label(sink: &str) -> SinkLabel {
    SinkLabel {
        sink: sink.to_string(),
    }
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_counters_and_readiness() {
        let m = Metrics::new();
        m.expect_components(&["src_a".into()], &["sink_a".into()]);
        assert_eq!(
            m.not_ready().unwrap(),
            vec!["sink `sink_a`".to_string(), "source `src_a`".to_string()]
        );
        m.poll_succeeded("src_a", Utc::now());
        m.sink_health("sink_a", true);
        assert!(m.not_ready().unwrap().is_empty());
        m.batch_delivered("sink_a", "src_a", 7, Duration::from_millis(20));
        m.checkpoint_written("src_a", Some(Utc::now() - chrono::Duration::seconds(90)));
        let text = m.render(Utc::now());
        assert!(
            text.contains(
                r#"veeam_siem_sink_events_delivered_total{sink="sink_a",source="src_a"} 7"#
            ),
            "{text}"
        );
        assert!(text.contains("veeam_siem_sink_batch_delivery_seconds_bucket"));
        let lag_line = text
            .lines()
            .find(|l| l.starts_with("veeam_siem_checkpoint_lag_seconds{"))
            .expect("lag gauge");
        let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((89.0..200.0).contains(&lag), "{lag_line}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_source_failing_its_polls_or_refused_is_not_ready_until_a_cycle_completes() {
        let m = Metrics::new();
        m.expect_components(&["a".into(), "b".into()], &[]);
        m.poll_succeeded("a", Utc::now());
        m.poll_succeeded("b", Utc::now());
        // Two failed cycles (a server restarting) leave it ready; the third does not.
        m.poll_failed("a", false);
        m.poll_failed("a", false);
        assert!(m.not_ready().unwrap().is_empty());
        m.poll_failed("a", false);
        assert_eq!(m.not_ready().unwrap(), vec!["source `a`".to_string()]);
        // Refused credentials: at once. A checkpoint write recovering does not hide it.
        m.poll_failed("b", true);
        m.checkpoint_failing("b", true);
        m.checkpoint_failing("b", false);
        assert_eq!(
            m.not_ready().unwrap(),
            vec!["source `a`".to_string(), "source `b`".to_string()]
        );
        m.poll_succeeded("a", Utc::now());
        m.poll_succeeded("b", Utc::now());
        assert!(m.not_ready().unwrap().is_empty());
    }

    #[test]
    fn degraded_records_are_counted_next_to_skipped_ones() {
        let m = Metrics::new();
        m.record_skipped("vbo_main");
        m.record_degraded("vbo_main");
        m.record_degraded("vbo_main");
        let text = m.render(Utc::now());
        assert!(
            text.contains(r#"veeam_siem_source_records_skipped_total{source="vbo_main"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"veeam_siem_source_records_degraded_total{source="vbo_main"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn reload_forgets_removed_components() {
        let m = Metrics::new();
        m.expect_components(&["a".into()], &["s1".into()]);
        m.poll_succeeded("a", Utc::now());
        m.expect_components(&["a".into()], &["s2".into()]);
        assert_eq!(m.not_ready().unwrap(), vec!["sink `s2`".to_string()]);
        assert!(!m.render(Utc::now()).contains("id=\"s1\""));
    }

    #[test]
    fn http_labels_carry_host_and_port_only() {
        let m = Metrics::new();
        m.http_response(
            "https://vbo.example.net/v8/RestoreSessions?offset=5",
            Some(200),
        );
        m.http_response("http://127.0.0.1:8080/x", None);
        let text = m.render(Utc::now());
        assert!(
            text.contains(r#"host="vbo.example.net:443",status="200""#),
            "{text}"
        );
        assert!(
            text.contains(r#"host="127.0.0.1:8080",status="error""#),
            "{text}"
        );
        assert!(!text.contains("RestoreSessions"));
    }
}
