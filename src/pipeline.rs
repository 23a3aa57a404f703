//! Wiring: sources → mapping → bounded fan-out → sinks → ack tracker → checkpoints.
//!
//! Owns the tasks and channels and the one invariant that matters most: **a source's
//! checkpoint only ever moves to the state snapshot of a batch that every sink reading
//! that source has acknowledged, together with every batch of that source before it.**
//!
//! ```text
//! source task ──SourceBatch──► router task (map + encode, assigns seq) ──Arc<Batch>──► sink task(s)
//!                                   │ Register{seq, sinks, snapshot}                     │ Ack{seq}
//!                                   └──────────────────────► tracker task ◄──────────────┘
//!                                                              │ lowest fully-acked prefix
//!                                                              ▼
//!                                                        checkpoint file
//! ```
//! Every channel between stages is bounded, so a slow sink slows the router, which slows
//! the source: memory stays flat (backpressure). Acknowledgements are unbounded but their
//! number is bounded by the batches in flight.
//!
//! Shutdown (SIGTERM/SIGINT or a reload → the `shutdown` token): sources stop polling and
//! the drain starts; whatever they already emitted drains through the sinks for at most
//! `drain_timeout`, counted from that moment (even while a router waits on a full sink
//! queue in front of a sink that never recovers); then routers and sinks abandon what is
//! still unacknowledged, the tracker writes the last fully acknowledged snapshot, and
//! `run` returns `Ok`, naming the abandoned batches in a warning: they were never
//! acknowledged, so the checkpoint is behind them and they are sent again by the next
//! run. `--once` is the same path, started by the sources finishing their cycle; there an
//! abandoned batch is an error (the run did not deliver what it read).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::config::common::url_host;
use crate::config::{Config, ConfigError};
use crate::map::{self, MapContext, Record};
use crate::metrics;
use crate::sinks::{self, Batch, EncodedEvent, SinkError};
use crate::sources::{Emitter, RunMode, Source, SourceBatch, SourceError};

/// Batches buffered between a source and its router.
const SOURCE_QUEUE: usize = 2;
/// Longest the sources wait for the sinks' start-up checks before they poll (a check that
/// hangs on an unanswering receiver must not hold up the other sinks for long).
const SINK_CHECK_WAIT: Duration = Duration::from_secs(30);

/// Batches buffered in front of each sink. A sink works on at most its window of batches
/// at a time (invariant 3), so two queued keep it busy; more would only hold memory.
const SINK_QUEUE: usize = 2;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: RunMode,
    /// How long sinks may keep delivering once shutdown (or a reload) started, or once a
    /// `--once` run has handed every batch to the sinks, before what is still
    /// unacknowledged is abandoned (re-sent by the next run).
    pub drain_timeout: Duration,
    /// In `--once` mode, how many times a sink retries a batch before the run fails.
    pub once_sink_attempts: u32,
    /// Only events whose `@timestamp` lies in this window are sent (backfill); the others
    /// are counted in `veeam_siem_events_filtered_total` and skipped.
    pub window: Option<TimeWindow>,
}

/// An inclusive `@timestamp` window; `until = None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl TimeWindow {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.since && self.until.is_none_or(|u| t <= u)
    }
}

/// In `--once` mode, no new attempt at a batch starts this long after its first one (an
/// attempt under way is never cut short: the sink's own retries run their course).
const ONCE_RETRY_WINDOW: Duration = Duration::from_secs(30);

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: RunMode::Follow,
            drain_timeout: Duration::from_secs(30),
            once_sink_attempts: 6,
            window: None,
        }
    }
}

/// Counts per source at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    pub id: String,
    /// Events mapped and handed to sinks.
    pub events_sent: u64,
    /// Events acknowledged by every sink of the source.
    pub events_acked: u64,
    pub checkpoints_written: u64,
    /// Batches (by sequence number) handed to the sinks but not acknowledged by all of
    /// them when the run ended (abandoned at shutdown, or stopped by a failure); the
    /// checkpoint is behind the first of them.
    pub unacknowledged: Vec<u64>,
    pub unacknowledged_events: u64,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub sources: Vec<SourceReport>,
    /// Sinks that were still delivering when the drain timeout ran out.
    pub abandoned_sinks: Vec<String>,
}

impl RunReport {
    pub fn events_acked(&self) -> u64 {
        self.sources.iter().map(|s| s.events_acked).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Sink messages name their sink themselves (`sink \`id\`: ...`), so they are shown as is.
    #[error("{message}")]
    Sink { sink_id: String, message: String },
    /// A sink's reader went away (e.g. `demo | head`): not a failure of ours.
    #[error("sink `{sink_id}`: its output was closed by the reader")]
    OutputClosed { sink_id: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The ops endpoint could not start (the message names `ops.listen`).
    #[error("{0}")]
    Ops(String),
    #[error("internal error: {0}")]
    Internal(String),
}

enum TrackerMsg {
    /// A batch entered the fan-out; `sinks` acknowledgements will follow.
    Register {
        source: usize,
        seq: u64,
        sinks: usize,
        events: u64,
        /// Newest `@timestamp` in the batch.
        newest: Option<DateTime<Utc>>,
        checkpoint: Option<serde_json::Value>,
    },
    Ack {
        source: usize,
        seq: u64,
        /// Fired once any checkpoint this ack made possible is on disk.
        persisted: oneshot::Sender<()>,
    },
}

struct Pending {
    remaining: usize,
    events: u64,
    newest: Option<DateTime<Utc>>,
    checkpoint: Option<serde_json::Value>,
}

/// A source ready to run, with its checkpoint store.
struct PreparedSource {
    id: Arc<str>,
    observer_hostname: Arc<str>,
    store: CheckpointStore,
    /// `@timestamp` of the newest event the loaded checkpoint covers.
    newest_event: Option<DateTime<Utc>>,
    poller: Box<dyn Source>,
    sinks: Vec<usize>,
}

/// A poller that can't use its stored state is a corrupt checkpoint (named by its file).
fn state_error(store: &CheckpointStore, e: SourceError) -> PipelineError {
    match e {
        SourceError::State { source_id, problem } => {
            PipelineError::Checkpoint(CheckpointError::Corrupt {
                path: store.path().to_path_buf(),
                problem: format!("source `{source_id}`: {problem}"),
            })
        }
        SourceError::Config(e) => e.into(),
        other => other.into(),
    }
}

/// Run the configured pipeline until the sources finish (`--once`) or `shutdown` fires.
pub async fn run(
    config: &Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunReport, PipelineError> {
    let sink_ids: Vec<String> = config.sinks.keys().cloned().collect();
    let sources = prepare_sources(config, &sink_ids)?;
    log_topology(config);
    let source_ids: Vec<String> = config.sources.keys().cloned().collect();
    metrics::global().expect_components(&source_ids, &sink_ids);

    // Stops the sources: on shutdown, or when a sink or the tracker fails.
    let stop_sources = shutdown.child_token();
    // Fired once the routers have handed everything on (`--once`, or a source that
    // ended); the drain also starts when the sources are stopped.
    let routed = CancellationToken::new();
    // Abandons routers and sinks still busy `drain_timeout` after the drain started.
    let abandon = CancellationToken::new();
    let _drain_timer = AbortOnDropHandle::new(tokio::spawn(drain_timer(
        stop_sources.clone(),
        routed.clone(),
        abandon.clone(),
        opts.drain_timeout,
    )));

    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let stores: Vec<CheckpointStore> = sources.iter().map(|s| s.store.clone()).collect();
    let ids: Vec<Arc<str>> = sources.iter().map(|s| s.id.clone()).collect();
    let covered: Vec<Option<DateTime<Utc>>> = sources.iter().map(|s| s.newest_event).collect();
    for (id, newest) in ids.iter().zip(&covered) {
        metrics::global().checkpoint_loaded(id, *newest);
    }
    let tracker = tokio::spawn(track(
        ack_rx,
        Checkpoints {
            stores,
            ids,
            covered,
            mode: opts.mode,
        },
        stop_sources.clone(),
    ));

    let mut sink_txs = Vec::new();
    let mut sink_tasks = Vec::new();
    // Each sink says when its start-up check is done; the sources poll only after every
    // sink's: a sink that refuses to start (a wrong token, an untrusted certificate) then
    // stops the run before any other sink was given an event that is never checkpointed
    // (sent again, as a duplicate, by every restart or fallback after a reload).
    let mut checks = Vec::new();
    for (id, sink_cfg) in &config.sinks {
        let ctx = sinks::SinkContext {
            state_dir: config.state.dir.clone(),
        };
        let sink = sink_cfg.build(id, &ctx).map_err(|e| PipelineError::Sink {
            sink_id: id.clone(),
            message: e.to_string(),
        })?;
        let (tx, rx) = mpsc::channel::<Arc<Batch>>(SINK_QUEUE);
        sink_txs.push((Arc::<str>::from(id.as_str()), tx));
        let (checked, check) = oneshot::channel();
        checks.push(check);
        sink_tasks.push((
            id.clone(),
            tokio::spawn(
                sink_task(
                    SinkTaskCtx {
                        id: id.clone(),
                        acks: ack_tx.clone(),
                        opts: opts.clone(),
                        stop_sources: stop_sources.clone(),
                        abandon: abandon.clone(),
                    },
                    sink,
                    checked,
                    rx,
                )
                // Every line logged by the sink (the shared HTTP layer's retries too) names it.
                .instrument(tracing::info_span!("sink", sink_id = %id)),
            ),
        ));
    }

    let sinks_checked = CancellationToken::new();
    let _checks = AbortOnDropHandle::new(tokio::spawn({
        let sinks_checked = sinks_checked.clone();
        async move {
            let all = futures::future::join_all(checks);
            if tokio::time::timeout(SINK_CHECK_WAIT, all).await.is_err() {
                tracing::warn!(
                    wait_s = SINK_CHECK_WAIT.as_secs(),
                    "a sink's start-up check is still running; the sources start polling without waiting for it any longer"
                );
            }
            sinks_checked.cancel();
        }
    }));
    let mut routers = Vec::new();
    let mut source_tasks: Vec<JoinHandle<Result<(), SourceError>>> = Vec::new();
    for (index, src) in sources.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
        let outputs: Vec<SinkQueue> = src.sinks.iter().map(|&i| sink_txs[i].clone()).collect();
        routers.push(tokio::spawn(route(
            RouteSource {
                index,
                source_id: src.id.clone(),
                observer: src.observer_hostname.clone(),
                window: opts.window,
            },
            rx,
            outputs,
            ack_tx.clone(),
            abandon.clone(),
        )));
        let stop = stop_sources.clone();
        let mode = opts.mode;
        let poller = src.poller;
        let sinks_checked = sinks_checked.clone();
        let span = tracing::info_span!("source", source_id = %src.id);
        source_tasks.push(tokio::spawn(
            async move {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = sinks_checked.cancelled() => {}
                }
                tokio::select! {
                    r = poller.run(mode, Emitter::new(tx)) => r,
                    _ = stop.cancelled() => Ok(()),
                }
            }
            .instrument(span),
        ));
    }
    // Only tasks hold senders now, so channels close as stages finish.
    drop(sink_txs);
    drop(ack_tx);

    let mut first_error: Option<PipelineError> = None;
    for task in source_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "source failed");
                first_error.get_or_insert(e.into());
            }
            Err(e) => {
                first_error.get_or_insert(PipelineError::Internal(format!("source task: {e}")));
            }
        }
    }
    for r in routers {
        if let Err(e) = r.await {
            first_error.get_or_insert(PipelineError::Internal(format!("router task: {e}")));
        }
    }
    // Every batch is with the sinks (or abandoned): the drain runs, if it did not yet.
    routed.cancel();
    let mut abandoned_sinks = Vec::new();
    for (id, task) in sink_tasks {
        match task.await {
            Ok(Ok(SinkEnd::Drained)) => {}
            Ok(Ok(SinkEnd::Abandoned)) => abandoned_sinks.push(id),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(PipelineError::Internal(format!("sink task: {e}")));
            }
        }
    }
    let mut report = match tracker.await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(first_error.unwrap_or(e)),
        Err(e) => return Err(PipelineError::Internal(format!("tracker task: {e}"))),
    };
    for s in &report.sources {
        tracing::info!(
            source_id = %s.id,
            events_sent = s.events_sent,
            events_acked = s.events_acked,
            checkpoints_written = s.checkpoints_written,
            "source finished"
        );
    }
    let unacknowledged = report.sources.iter().any(|s| !s.unacknowledged.is_empty());
    if abandon.is_cancelled() && (unacknowledged || !abandoned_sinks.is_empty()) {
        let batches: Vec<String> = report
            .sources
            .iter()
            .filter(|s| !s.unacknowledged.is_empty())
            .map(|s| {
                format!(
                    "source `{}`: {} batch(es) {} ({} events)",
                    s.id,
                    s.unacknowledged.len(),
                    seq_ranges(&s.unacknowledged),
                    s.unacknowledged_events
                )
            })
            .collect();
        tracing::warn!(
            sinks = %abandoned_sinks.join(", "),
            abandoned = %if batches.is_empty() { "none".to_string() } else { batches.join("; ") },
            drain_timeout = %humantime::format_duration(opts.drain_timeout),
            "drain timeout reached: abandoned the unacknowledged batches; each checkpoint stays at its last fully acknowledged batch, so they are sent again by the next run"
        );
    }
    report.abandoned_sinks = abandoned_sinks;
    match first_error {
        Some(e) => Err(e),
        // A shutdown (or reload) that had to abandon batches did what was asked and lost
        // nothing: the warning above names them. A `--once` run that could not deliver
        // what it read within the drain timeout has failed.
        None if !report.abandoned_sinks.is_empty() && !shutdown.is_cancelled() => {
            Err(PipelineError::Sink {
                sink_id: report.abandoned_sinks.join(", "),
                message: format!(
                    "sink(s) `{}` did not deliver within the drain timeout ({}) after the sources finished; the unacknowledged batches were abandoned (the checkpoint is behind them; the next run sends them again)",
                    report.abandoned_sinks.join("`, `"),
                    humantime::format_duration(opts.drain_timeout)
                ),
            })
        }
        None => Ok(report),
    }
}

/// Once the drain starts (sources stopped, or everything routed), wait `timeout`, then
/// abandon whatever routers and sinks are still doing.
async fn drain_timer(
    stopped: CancellationToken,
    routed: CancellationToken,
    abandon: CancellationToken,
    timeout: Duration,
) {
    tokio::select! {
        _ = stopped.cancelled() => {
            tracing::info!(
                drain_timeout = %humantime::format_duration(timeout),
                "sources stopped; sinks may deliver what is in flight until the drain timeout"
            );
        }
        _ = routed.cancelled() => {}
    }
    // `sleep` saturates: an absurd timeout waits "forever", it cannot overflow.
    tokio::time::sleep(timeout).await;
    abandon.cancel();
}

/// `[1, 2, 3, 7]` → `"1-3, 7"`.
fn seq_ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = seqs.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&end.saturating_add(1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

fn prepare_sources(
    config: &Config,
    sink_ids: &[String],
) -> Result<Vec<PreparedSource>, PipelineError> {
    let mut out = Vec::new();
    for (id, source) in &config.sources {
        let store = CheckpointStore::open(&config.state.dir, id, source.type_name())?
            .for_server(source.url());
        let (stored, newest_event) = match store.load_stored()? {
            Some(s) => (Some(s.state), s.newest_event),
            None => (None, None),
        };
        let sinks: Vec<usize> = config
            .sinks_of(id)
            .iter()
            .filter_map(|s| sink_ids.iter().position(|x| x == s))
            .collect();
        let observer = url_host(source.url());
        let poller = source
            .build(id, stored)
            .map_err(|e| state_error(&store, e))?;
        out.push(PreparedSource {
            id: Arc::from(id.as_str()),
            observer_hostname: Arc::from(observer.as_str()),
            store,
            newest_event,
            poller,
            sinks,
        });
    }
    Ok(out)
}

/// The startup line: every source and the sinks it feeds (ids and types only, no secrets).
pub fn topology(config: &Config) -> String {
    config
        .sources
        .iter()
        .map(|(id, source)| {
            let sinks: Vec<String> = config
                .sinks_of(id)
                .iter()
                .map(|s| {
                    let kind = config.sinks.get(s).map_or("?", |c| c.type_name());
                    format!("{s} ({kind})")
                })
                .collect();
            format!("{id} ({}) -> {}", source.type_name(), sinks.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn log_topology(config: &Config) {
    tracing::info!(
        pipeline = %topology(config),
        state_dir = %config.state.dir.display(),
        "starting pipeline"
    );
}

/// Map one source batch's records to encoded events (pure apart from logging).
fn map_batch(
    source_id: &str,
    observer: &str,
    records: Vec<Record>,
    fetched_at: DateTime<Utc>,
) -> Vec<EncodedEvent> {
    let ctx = MapContext {
        source_id,
        observer_hostname: observer,
        fetched_at,
    };
    let mut mapper = map::Mapper::new(ctx);
    let mut out = Vec::with_capacity(records.len());
    // Sized from the previous event: one allocation per event, no regrowth copies.
    let mut size_hint = 1024;
    for record in records {
        let event = mapper.map(record);
        let mut buf = Vec::with_capacity(size_hint + size_hint / 4);
        match crate::json::to_writer(&mut buf, &event) {
            Ok(()) => {
                size_hint = buf.len();
                match String::from_utf8(buf) {
                    Ok(json) => out.push(EncodedEvent { event, json }),
                    // serde_json writes valid UTF-8 only; never ship a broken line.
                    Err(e) => {
                        tracing::error!(source_id, event_id = %event.event.id, error = %e, "encoded event is not UTF-8; skipped")
                    }
                }
            }
            Err(e) => {
                tracing::error!(source_id, event_id = %event.event.id, error = %e, "cannot encode event; skipped")
            }
        }
    }
    out
}

/// The source a router serves.
struct RouteSource {
    index: usize,
    source_id: Arc<str>,
    observer: Arc<str>,
    window: Option<TimeWindow>,
}

/// A sink's id and the sender of its queue.
type SinkQueue = (Arc<str>, mpsc::Sender<Arc<Batch>>);

/// Router: maps a source's batches and fans them out to the source's sinks.
async fn route(
    src: RouteSource,
    mut rx: mpsc::Receiver<SourceBatch>,
    outputs: Vec<SinkQueue>,
    acks: mpsc::UnboundedSender<TrackerMsg>,
    abandon: CancellationToken,
) {
    let RouteSource {
        index,
        source_id,
        observer,
        window,
    } = src;
    let m = metrics::global();
    let mut seq = 0u64;
    loop {
        let source_batch = tokio::select! {
            biased;
            _ = abandon.cancelled() => return,
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
        };
        seq += 1;
        let SourceBatch {
            records,
            checkpoint,
            fetched_at,
        } = source_batch;
        m.records_read(&source_id, records.len() as u64);
        let mut events = map_batch(&source_id, &observer, records, fetched_at);
        if let Some(w) = window {
            let before = events.len();
            events.retain(|e| w.contains(e.event.timestamp));
            let filtered = (before - events.len()) as u64;
            if filtered > 0 {
                m.events_filtered(&source_id, filtered);
            }
        }
        m.events_mapped(&source_id, events.len() as u64);
        let newest = events.iter().map(|e| e.event.timestamp).max();
        let sinks = if events.is_empty() { 0 } else { outputs.len() };
        // Register before fanning out, so the tracker knows the batch before any ack.
        let _ = acks.send(TrackerMsg::Register {
            source: index,
            seq,
            sinks,
            events: events.len() as u64,
            newest,
            checkpoint,
        });
        if sinks == 0 {
            continue;
        }
        let batch = Arc::new(Batch {
            source_id: source_id.clone(),
            source_index: index,
            seq,
            events,
        });
        for (sink_id, out) in &outputs {
            // A closed channel means that sink failed; the pipeline is stopping and the
            // missing ack keeps the checkpoint where it is. A full one in front of a sink
            // that never recovers must not outlive the drain timeout.
            tokio::select! {
                biased;
                _ = abandon.cancelled() => return,
                _ = out.send(batch.clone()) => {}
            }
            // Here as well as where the sink takes a batch: a stuck sink takes none.
            m.queue_depth(sink_id, out.max_capacity() - out.capacity());
        }
    }
}

/// How a sink task ended, when not with an error.
enum SinkEnd {
    /// Its queue closed and everything in it was acknowledged.
    Drained,
    /// The drain timeout ran out while it was still delivering (or waiting to).
    Abandoned,
}

/// The sink gives up what it is doing at the drain timeout; `batch` names what it had.
/// A sink holding nothing (idle, its queue empty) has nothing to abandon.
fn abandoned(id: &str, batch: Option<&Batch>, queued: usize, message: Option<&str>) -> SinkEnd {
    if batch.is_none() && queued == 0 {
        return SinkEnd::Drained;
    }
    tracing::warn!(
        sink_id = %id,
        source_id = batch.map_or("-", |b| &*b.source_id),
        seq = batch.map_or(0, |b| b.seq),
        events = batch.map_or(0, |b| b.events.len()),
        queued,
        last_error = message.unwrap_or("none returned yet (the sink was still in its own retries: see its warnings above)"),
        "sink abandoned at the drain timeout; its unacknowledged batches are sent again by the next run"
    );
    SinkEnd::Abandoned
}

/// What a sink task needs besides the sink and its queue.
struct SinkTaskCtx {
    id: String,
    acks: mpsc::UnboundedSender<TrackerMsg>,
    opts: RunOptions,
    stop_sources: CancellationToken,
    abandon: CancellationToken,
}

impl SinkTaskCtx {
    /// Stop the pipeline because this sink failed for good.
    fn fail(&self, message: String) -> PipelineError {
        self.stop_sources.cancel();
        PipelineError::Sink {
            sink_id: self.id.clone(),
            message,
        }
    }
}

/// How [`hand_over`] gives a batch to the sink.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HandOver {
    /// `Sink::deliver`: durable on return.
    Deliver,
    /// `Sink::submit`: sent, durable when the confirmation resolves.
    Submit,
}

/// An attempt at a batch that failed before [`hand_over`] was called: a submitted batch
/// whose confirmation failed. It counts towards a `--once` run's attempts.
struct FailedAttempt {
    since: std::time::Instant,
    message: String,
}

/// Give `batch` to the sink, retrying with backoff what may pass; `failed`: the attempt
/// already made. `Ok(Err(end))`: the drain timeout ran out meanwhile.
async fn hand_over(
    ctx: &SinkTaskCtx,
    sink: &mut Box<dyn sinks::Sink>,
    batch: &Arc<Batch>,
    how: HandOver,
    failed: Option<FailedAttempt>,
    queued: &(dyn Fn() -> usize + Sync),
) -> Result<Result<sinks::Confirmation, SinkEnd>, PipelineError> {
    let (id, m) = (&ctx.id, metrics::global());
    let events = batch.events.len() as u64;
    let (mut attempt, first_attempt) = match &failed {
        Some(f) => (1u32, f.since),
        None => (0, std::time::Instant::now()),
    };
    let mut failed = failed.map(|f| f.message);
    loop {
        if let Some(message) = failed.take() {
            // Counted (metrics, log) where it failed; only the retry budget is left.
            if let Some(e) = once_budget_spent(ctx, attempt, first_attempt, &message) {
                return Err(e);
            }
        } else {
            attempt += 1;
            let message = match try_hand_over(ctx, sink, batch, how, queued).await? {
                Tried::Handed(confirmation) => return Ok(Ok(confirmation)),
                Tried::Abandoned(end) => return Ok(Err(end)),
                Tried::Failed(message) => message,
            };
            m.batch_failed(id, events);
            m.sink_health(id, false);
            if let Some(e) = once_budget_spent(ctx, attempt, first_attempt, &message) {
                return Err(e);
            }
            // Capped at 10 s: a receiver back from an outage is used again soon.
            let delay =
                Duration::from_millis(200u64 << attempt.min(8)).min(Duration::from_secs(10));
            tracing::warn!(sink_id = %id, attempt, delay_ms = delay.as_millis() as u64, error = %message, "delivery failed; retrying");
            tokio::select! {
                biased;
                _ = ctx.abandon.cancelled() => {
                    return Ok(Err(abandoned(id, Some(batch), queued(), Some(&message))));
                }
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// A `--once` run gives up after a few quick tries, or once it has tried for
/// ONCE_RETRY_WINDOW: a sink that retries by itself (HEC, Sentinel, Kafka) has already
/// spent its own `max_retries` (or `message_timeout`) in each attempt.
fn once_budget_spent(
    ctx: &SinkTaskCtx,
    attempt: u32,
    first_attempt: std::time::Instant,
    message: &str,
) -> Option<PipelineError> {
    if ctx.opts.mode == RunMode::Once
        && (attempt >= ctx.opts.once_sink_attempts || first_attempt.elapsed() >= ONCE_RETRY_WINDOW)
    {
        return Some(ctx.fail(format!(
            "{message} (gave up after {attempt} attempts in {} s)",
            first_attempt.elapsed().as_secs()
        )));
    }
    None
}

/// How one attempt at handing a batch over went (a failure that is not retried is the
/// `Err` beside it).
enum Tried {
    Handed(sinks::Confirmation),
    /// The drain timeout ran out meanwhile.
    Abandoned(SinkEnd),
    /// Retryable, with the sink's message.
    Failed(String),
}

async fn try_hand_over(
    ctx: &SinkTaskCtx,
    sink: &mut Box<dyn sinks::Sink>,
    batch: &Arc<Batch>,
    how: HandOver,
    queued: &(dyn Fn() -> usize + Sync),
) -> Result<Tried, PipelineError> {
    let handed = tokio::select! {
        biased;
        _ = ctx.abandon.cancelled() => {
            return Ok(Tried::Abandoned(abandoned(&ctx.id, Some(batch), queued(), None)));
        }
        r = async {
            match how {
                HandOver::Deliver => sink.deliver(batch).await.map(|()| {
                    let done: sinks::Confirmation = Box::pin(async { Ok(()) });
                    done
                }),
                HandOver::Submit => sink.submit(batch).await,
            }
        } => r,
    };
    match handed {
        Ok(confirmation) => Ok(Tried::Handed(confirmation)),
        Err(SinkError::Retryable(message)) => Ok(Tried::Failed(message)),
        Err(e) => Err(stop_on(ctx, e, batch.events.len() as u64)),
    }
}

/// A sink error that is not retried: the pipeline stops (without acknowledging).
fn stop_on(ctx: &SinkTaskCtx, e: SinkError, events: u64) -> PipelineError {
    let (id, m) = (&ctx.id, metrics::global());
    match e {
        SinkError::Closed => {
            tracing::info!(sink_id = %id, "output closed by the reader; stopping");
            ctx.stop_sources.cancel();
            PipelineError::OutputClosed {
                sink_id: id.clone(),
            }
        }
        SinkError::Fatal(message) | SinkError::Retryable(message) => {
            m.batch_failed(id, events);
            m.sink_health(id, false);
            tracing::error!(sink_id = %id, error = %message, "sink failed; stopping without acknowledging");
            ctx.fail(message)
        }
    }
}

/// A batch handed over by `Sink::submit`, its confirmation pending.
type Confirming =
    futures::future::BoxFuture<'static, (Arc<Batch>, std::time::Instant, Result<(), SinkError>)>;

/// Sink task: deliver each batch (retrying), then acknowledge it.
///
/// With `Sink::window` = 1 a batch is delivered, acknowledged, and the next one taken only
/// once the tracker wrote the checkpoint it enabled. With a larger window up to that many
/// batches are handed over (`Sink::submit`) or acknowledged-but-not-checkpointed at once;
/// confirmations are taken in order, and a batch whose confirmation fails is delivered
/// again (`Sink::deliver`, retried) before later ones are acknowledged. Either way at most
/// `window` batches are delivered but not checkpointed: what a crash may send twice.
async fn sink_task(
    ctx: SinkTaskCtx,
    mut sink: Box<dyn sinks::Sink>,
    checked: oneshot::Sender<()>,
    mut rx: mpsc::Receiver<Arc<Batch>>,
) -> Result<SinkEnd, PipelineError> {
    use futures::StreamExt;
    use futures::stream::{FuturesOrdered, FuturesUnordered};

    let id = ctx.id.clone();
    let m = metrics::global();
    let health = tokio::select! {
        biased;
        _ = ctx.abandon.cancelled() => return Ok(abandoned(&id, None, rx.len(), None)),
        h = sink.healthcheck() => h,
    };
    match health {
        Ok(()) => m.sink_health(&id, true),
        Err(SinkError::Retryable(message)) => {
            tracing::warn!(sink_id = %id, error = %message, "sink is not healthy yet; delivery will retry");
        }
        Err(SinkError::Fatal(message)) => {
            tracing::error!(sink_id = %id, error = %message, "sink failed its health check");
            return Err(ctx.fail(message));
        }
        Err(SinkError::Closed) => {
            return Err(PipelineError::OutputClosed { sink_id: id });
        }
    }
    // (A sink that failed its check drops `checked` having stopped the sources first.)
    let _ = checked.send(());
    let window = sink.window().max(1);
    let how = if window > 1 {
        HandOver::Submit
    } else {
        HandOver::Deliver
    };
    // Handed over, confirmation pending, oldest first (`confirming` resolves in this order).
    let mut held: std::collections::VecDeque<Arc<Batch>> = std::collections::VecDeque::new();
    let mut confirming: FuturesOrdered<Confirming> = FuturesOrdered::new();
    // Acknowledged, the checkpoint it enabled not yet written: counts against the window,
    // which bounds the batches a crash may send twice.
    let mut persisting: FuturesUnordered<oneshot::Receiver<()>> = FuturesUnordered::new();
    let mut input_done = false;
    loop {
        if input_done && held.is_empty() && persisting.is_empty() {
            // Everything is acknowledged: closing (the archive seals, uploads) is tidying
            // up, and it too ends at the drain timeout.
            tokio::select! {
                biased;
                _ = ctx.abandon.cancelled() => {
                    tracing::warn!(sink_id = %id, "sink did not finish closing within the drain timeout; everything it was given is acknowledged");
                }
                closed = sink.close() => {
                    if let Err(e) = closed {
                        tracing::warn!(sink_id = %id, error = %e, "sink did not close cleanly");
                    }
                }
            }
            return Ok(SinkEnd::Drained);
        }
        let room = held.len() + persisting.len() < window;
        tokio::select! {
            biased;
            _ = ctx.abandon.cancelled() => {
                let queued = rx.len() + held.len().saturating_sub(1);
                return Ok(abandoned(&id, held.front().map(|b| &**b), queued, None));
            }
            Some(_) = persisting.next(), if !persisting.is_empty() => {}
            Some((batch, started, confirmed)) = confirming.next(), if !confirming.is_empty() => {
                held.pop_front();
                let events = batch.events.len() as u64;
                match confirmed {
                    Ok(()) => {}
                    Err(SinkError::Retryable(message)) => {
                        m.batch_failed(&id, events);
                        tracing::warn!(sink_id = %id, source_id = %batch.source_id, seq = batch.seq, error = %message, "a batch sent earlier was not confirmed; delivering it again");
                        let queued = || rx.len() + held.len();
                        let failed = FailedAttempt { since: started, message };
                        match hand_over(&ctx, &mut sink, &batch, HandOver::Deliver, Some(failed), &queued).await? {
                            Ok(_) => {}
                            Err(end) => return Ok(end),
                        }
                    }
                    Err(e) => return Err(stop_on(&ctx, e, events)),
                }
                m.batch_delivered(&id, &batch.source_id, events, started.elapsed());
                m.sink_health(&id, true);
                let (persisted, on_disk) = oneshot::channel();
                let _ = ctx.acks.send(TrackerMsg::Ack {
                    source: batch.source_index,
                    seq: batch.seq,
                    persisted,
                });
                persisting.push(on_disk);
            }
            b = rx.recv(), if room && !input_done => match b {
                None => input_done = true,
                Some(batch) => {
                    m.queue_depth(&id, rx.len());
                    let started = std::time::Instant::now();
                    let queued = || rx.len() + held.len();
                    let confirmation = match hand_over(&ctx, &mut sink, &batch, how, None, &queued).await? {
                        Ok(c) => c,
                        Err(end) => return Ok(end),
                    };
                    held.push_back(batch.clone());
                    confirming.push_back(Box::pin(async move {
                        let confirmed = confirmation.await;
                        (batch, started, confirmed)
                    }));
                }
            },
        }
    }
}

/// Note batch `seq` as handed out. Event-free batches (a poll cycle's end: only a
/// checkpoint) queue up behind a batch a stuck sink holds, one per cycle for as long as the
/// outage lasts; consecutive ones are merged into the newest, which is the one that would
/// be saved when they are popped together, so memory stays bounded by the batches in
/// flight.
fn register(pending: &mut BTreeMap<u64, Pending>, seq: u64, mut batch: Pending) {
    let idle = |p: &Pending| p.remaining == 0 && p.events == 0;
    if idle(&batch)
        && let Some(last) = pending.last_entry()
        && idle(last.get())
    {
        let merged = last.remove();
        if batch.checkpoint.is_none() {
            batch.checkpoint = merged.checkpoint;
        }
        batch.newest = batch.newest.max(merged.newest);
    }
    pending.insert(seq, batch);
}

/// What the tracker checkpoints: per source, its store, id and the newest event time its
/// loaded checkpoint covers.
struct Checkpoints {
    stores: Vec<CheckpointStore>,
    ids: Vec<Arc<str>>,
    covered: Vec<Option<DateTime<Utc>>>,
    mode: RunMode,
}

/// First and longest wait before writing a checkpoint again after a failed write.
const CHECKPOINT_RETRY_FIRST: Duration = Duration::from_secs(1);
const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(30);
/// A `--once` run stops retrying a failed checkpoint write after this long.
const CHECKPOINT_RETRY_ONCE: Duration = Duration::from_secs(30);

/// Tracker: per source, persist the snapshot of the highest batch below which every batch
/// is fully acknowledged. Writes are coalesced: all queued messages are applied first.
///
/// A failed write (a full or read-only state directory) is retried with a growing pause,
/// keeping the newest snapshot: the sinks' acknowledgements wait for it, so their windows
/// fill and the sources pause (at most a window of batches per sink is delivered but not
/// checkpointed, the duplicates a restart would send). The source is not ready meanwhile.
/// A `--once` run gives up after [`CHECKPOINT_RETRY_ONCE`]; at the end of any run the last
/// write is tried once more and its failure is the run's error.
async fn track(
    mut rx: mpsc::UnboundedReceiver<TrackerMsg>,
    checkpoints: Checkpoints,
    stop_sources: CancellationToken,
) -> Result<RunReport, PipelineError> {
    let Checkpoints {
        stores,
        ids,
        covered,
        mode,
    } = checkpoints;
    let n = stores.len();
    let mut pending: Vec<BTreeMap<u64, Pending>> = (0..n).map(|_| BTreeMap::new()).collect();
    let mut reports: Vec<SourceReport> = ids
        .iter()
        .map(|id| SourceReport {
            id: id.to_string(),
            ..SourceReport::default()
        })
        .collect();
    let mut to_save: Vec<Option<serde_json::Value>> = vec![None; n];
    let mut newest: Vec<Option<DateTime<Utc>>> = covered;
    let metric = metrics::global();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    // Set while a write failed: when to try again, the pause after that, since when.
    let mut retry: Option<(tokio::time::Instant, Duration, tokio::time::Instant)> = None;
    loop {
        let first = match retry {
            Some((at, _, _)) => tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
                () = tokio::time::sleep_until(at) => None,
            },
            None => match rx.recv().await {
                Some(m) => Some(m),
                None => break,
            },
        };
        let mut msg = first;
        while let Some(m) = msg.take() {
            apply(m, &mut pending, &mut reports, &mut waiters);
            msg = rx.try_recv().ok();
        }
        // Pop the fully acknowledged prefix.
        for s in 0..n {
            while let Some(entry) = pending[s].first_entry() {
                if entry.get().remaining > 0 {
                    break;
                }
                let done = entry.remove();
                reports[s].events_acked += done.events;
                metric.events_acknowledged(&ids[s], done.events);
                newest[s] = newest[s].max(done.newest);
                if done.checkpoint.is_some() {
                    to_save[s] = done.checkpoint;
                }
            }
        }
        if retry.is_some_and(|(at, _, _)| tokio::time::Instant::now() < at) {
            continue;
        }
        match save_all(&stores, &ids, &mut to_save, &newest, &mut reports).await? {
            None => {
                if let Some((_, _, since)) = retry.take() {
                    tracing::info!(
                        failing_for_s = since.elapsed().as_secs(),
                        "checkpoints are written again"
                    );
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            Some((s, e)) => {
                let now = tokio::time::Instant::now();
                let (pause, since) = match retry {
                    Some((_, pause, since)) => (pause, since),
                    None => (CHECKPOINT_RETRY_FIRST, now),
                };
                if mode == RunMode::Once && now.duration_since(since) >= CHECKPOINT_RETRY_ONCE {
                    tracing::error!(source_id = %ids[s], error = %e, "cannot write checkpoint; stopping");
                    stop_sources.cancel();
                    return Err(e.into());
                }
                tracing::error!(
                    source_id = %ids[s],
                    error = %e,
                    retry_in_s = pause.as_secs(),
                    "cannot write checkpoint; retrying. Delivery pauses once the sinks' windows are full (nothing is lost; a restart now re-sends what was delivered since the last checkpoint)"
                );
                metric.checkpoint_failing(&ids[s], true);
                retry = Some((now + pause, (pause * 2).min(CHECKPOINT_RETRY_MAX), since));
            }
        }
    }
    // The last snapshot of a run whose writes were failing: one more try.
    if retry.is_some()
        && let Some((s, e)) = save_all(&stores, &ids, &mut to_save, &newest, &mut reports).await?
    {
        tracing::error!(source_id = %ids[s], error = %e, "cannot write checkpoint");
        return Err(e.into());
    }
    // What is left was handed out but is not checkpointed: not acknowledged by every
    // sink, or behind a batch that is not.
    for (report, left) in reports.iter_mut().zip(&pending) {
        report.unacknowledged = left.keys().copied().collect();
        report.unacknowledged_events = left.values().map(|p| p.events).sum();
    }
    Ok(RunReport {
        sources: reports,
        abandoned_sinks: Vec::new(),
    })
}

/// Apply one tracker message.
fn apply(
    m: TrackerMsg,
    pending: &mut [BTreeMap<u64, Pending>],
    reports: &mut [SourceReport],
    waiters: &mut Vec<oneshot::Sender<()>>,
) {
    match m {
        TrackerMsg::Register {
            source,
            seq,
            sinks,
            events,
            newest,
            checkpoint,
        } => {
            reports[source].events_sent += events;
            register(
                &mut pending[source],
                seq,
                Pending {
                    remaining: sinks,
                    events,
                    newest,
                    checkpoint,
                },
            );
        }
        TrackerMsg::Ack {
            source,
            seq,
            persisted,
        } => {
            waiters.push(persisted);
            if let Some(p) = pending[source].get_mut(&seq) {
                p.remaining = p.remaining.saturating_sub(1);
            }
        }
    }
}

/// Write every source's snapshot in `to_save`. On the first failure the snapshot is kept
/// in `to_save` and the source's index and error are returned.
async fn save_all(
    stores: &[CheckpointStore],
    ids: &[Arc<str>],
    to_save: &mut [Option<serde_json::Value>],
    newest: &[Option<DateTime<Utc>>],
    reports: &mut [SourceReport],
) -> Result<Option<(usize, CheckpointError)>, PipelineError> {
    let metric = metrics::global();
    for s in 0..stores.len() {
        let Some(state) = to_save[s].take() else {
            continue;
        };
        let store = stores[s].clone();
        let covering = newest[s];
        let (state, result) = tokio::task::spawn_blocking(move || {
            let result = store.save_covering(&state, covering);
            (state, result)
        })
        .await
        .map_err(|e| {
            // Without a tracker nothing is checkpointed again: stop, don't run on.
            tracing::error!(source_id = %ids[s], error = %e, "checkpoint task failed; stopping");
            PipelineError::Internal(format!("checkpoint task: {e}"))
        })?;
        if let Err(e) = result {
            to_save[s] = Some(state);
            return Ok(Some((s, e)));
        }
        reports[s].checkpoints_written += 1;
        metric.checkpoint_written(&ids[s], newest[s]);
        metric.checkpoint_failing(&ids[s], false);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weekend of poll cycles behind a stuck batch holds two entries, not thousands, and
    /// the newest checkpoint (or the last one given) is what is left to save.
    #[test]
    fn idle_cycles_behind_a_stuck_batch_are_merged() {
        let pending_with = |events, remaining, checkpoint: Option<u64>| Pending {
            remaining,
            events,
            newest: None,
            checkpoint: checkpoint.map(|c| serde_json::json!({ "c": c })),
        };
        let mut pending = BTreeMap::new();
        register(&mut pending, 0, pending_with(5, 1, Some(0)));
        for seq in 1..=10_000 {
            let checkpoint = (seq % 3 != 0 || seq == 9_999).then_some(seq);
            register(&mut pending, seq, pending_with(0, 0, checkpoint));
        }
        assert_eq!(pending.len(), 2);
        assert_eq!(
            pending[&10_000].checkpoint,
            Some(serde_json::json!({ "c": 10_000 }))
        );
        // A checkpoint-less cycle keeps the one before it.
        register(&mut pending, 10_001, pending_with(0, 0, None));
        assert_eq!(
            pending[&10_001].checkpoint,
            Some(serde_json::json!({ "c": 10_000 }))
        );
        // A batch with events is never merged, nor is what follows it.
        register(&mut pending, 10_002, pending_with(3, 1, Some(10_002)));
        register(&mut pending, 10_003, pending_with(0, 0, Some(10_003)));
        assert_eq!(
            pending.keys().copied().collect::<Vec<_>>(),
            vec![0, 10_001, 10_002, 10_003]
        );
    }

    #[test]
    fn abandoned_batches_are_named_as_ranges() {
        assert_eq!(seq_ranges(&[]), "");
        assert_eq!(seq_ranges(&[4]), "4");
        assert_eq!(seq_ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(
            seq_ranges(&[u64::MAX - 1, u64::MAX]),
            format!("{}-{}", u64::MAX - 1, u64::MAX)
        );
    }

    /// The drain timer abandons `timeout` after the sources stop (it does not wait for
    /// the routers: one blocked in front of a dead sink never finishes), and an absurd
    /// timeout cannot overflow.
    #[tokio::test]
    async fn the_drain_timer_starts_when_the_sources_stop() {
        let (stopped, routed, abandon) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let timer = tokio::spawn(drain_timer(
            stopped.clone(),
            routed.clone(),
            abandon.clone(),
            Duration::from_millis(50),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!abandon.is_cancelled(), "no drain before shutdown");
        stopped.cancel();
        tokio::time::timeout(Duration::from_secs(10), abandon.cancelled())
            .await
            .expect("abandoned after the drain timeout");
        timer.await.unwrap();

        let abandon = CancellationToken::new();
        let routed = CancellationToken::new();
        let timer = tokio::spawn(drain_timer(
            CancellationToken::new(),
            routed.clone(),
            abandon.clone(),
            Duration::MAX,
        ));
        routed.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!abandon.is_cancelled());
        assert!(!timer.is_finished(), "the timer panicked or ended");
        timer.abort();
    }
}
