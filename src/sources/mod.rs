//! Sources: API pollers that turn a Veeam server's history into batches of records.
//!
//! Owns the contract between a source and the pipeline: a source emits [`SourceBatch`]es,
//! each carrying a batch of records (a page of VB365 events, a slice of a VDC session
//! log) and a *snapshot of the source's state after that batch* (`checkpoint`). The pipeline persists a snapshot only once every sink has
//! acknowledged that batch and all batches before it, so a restart resumes exactly after
//! the last fully delivered page. Sources never write checkpoints themselves and never
//! map records (that is `map/`, pure).

//!
//! Each source type lives in its own directory (`vbo/`, `vdc/`) with its config; the
//! config root reaches it only through [`SourceSettings`], the pipeline only through
//! [`Source`].

pub mod page;
pub mod paging;
pub mod typed_page;
pub mod vbo;
pub mod vdc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::config::common::ConfigError;
use crate::http::HttpError;
use crate::map::Record;

/// How far ahead of this host's clock a session's creation time may be before it is logged.
/// Whatever the distance, a source's horizon (VB365) or job floor (VDC) never passes the
/// clock: one session stamped in the future would otherwise hide every later one.
pub const CLOCK_AHEAD_WARNING: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What the config root, the pipeline, `check` and `backfill` need from a source's config
/// (each source type's config implements it in its own directory).
pub trait SourceSettings: std::fmt::Debug + Send + Sync {
    /// The `type` value, e.g. "vbo" (also the checkpoint's kind).
    fn type_name(&self) -> &'static str;
    /// The configured base URL (for `observer.hostname` and the clear-text warning).
    fn url(&self) -> &str;
    /// What travels in clear text when `url` is `http://`.
    fn carries(&self) -> &'static str;
    /// Checks that need no network. `key` is e.g. "sources.vbo_main".
    fn validate(&self, key: &str) -> Result<(), ConfigError>;
    /// Read `*_file` secrets into their inline keys (once, at load).
    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError>;
    /// Where a first run starts reading (backfill sets it).
    fn set_start_time(&mut self, at: DateTime<Utc>);
    /// Ship records still in progress as they are read instead of holding them back for
    /// their final state (backfill: its state does not outlive the run).
    fn ship_in_progress(&mut self) {}
    /// The runnable source `id`, resuming from `stored` state (`None`: first run).
    fn build(
        &self,
        id: &str,
        stored: Option<serde_json::Value>,
    ) -> Result<Box<dyn Source>, SourceError>;
}

/// A built source: polls until done (`--once`) or shutdown, or probes its server.
pub trait Source: Send {
    /// Poll cycles per `mode`, emitting batches through `emitter`.
    fn run(
        self: Box<Self>,
        mode: RunMode,
        emitter: Emitter,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
    /// One cheap round trip for `check`: a description of what answered, and a sample
    /// record when the server has one.
    fn probe(&self) -> BoxFuture<'_, Result<(String, Option<Record>), SourceError>>;
}

/// A page of records plus the source state to persist once it is delivered.
#[derive(Debug)]
pub struct SourceBatch {
    pub records: Vec<Record>,
    /// State after this batch; `None` = nothing new to persist.
    pub checkpoint: Option<serde_json::Value>,
    pub fetched_at: DateTime<Utc>,
}

/// Run a source to completion once (`--once`) or poll until shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Once,
    Follow,
}

/// The sending half a source uses; bounded, so a slow pipeline slows the source.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<SourceBatch>,
}

impl Emitter {
    pub fn new(tx: mpsc::Sender<SourceBatch>) -> Self {
        Emitter { tx }
    }

    pub async fn emit(&self, batch: SourceBatch) -> Result<(), SourceError> {
        self.tx.send(batch).await.map_err(|_| SourceError::Closed)
    }
}

/// The end of one poll cycle, shared by every source's run loop: record it in the metrics
/// and decide whether the run is over (`Some`: `--once`, the pipeline closed, or a rejected
/// API key) or the source polls again after its interval (`None`; a failure is logged and
/// retried then).
///
/// A rejected VDC API key ([`SourceError::ApiKey`], 401/403) stops the source in every
/// mode (README: "A rejected key (401/403) stops the source … `run` exits 1"): asking again
/// with the same key can't succeed, and a fixed key comes with a reload or restart. A
/// VB365 login failure ([`SourceError::Auth`]) is retried as before: its token endpoint
/// also fails that way while the identity service is unwell.
pub fn after_cycle(
    source_id: &str,
    mode: RunMode,
    result: Result<(), SourceError>,
) -> Option<Result<(), SourceError>> {
    let metrics = crate::metrics::global();
    match result {
        Err(SourceError::Closed) => Some(Ok(())),
        Ok(()) => {
            metrics.poll_succeeded(source_id, Utc::now());
            (mode == RunMode::Once).then_some(Ok(()))
        }
        Err(e) => {
            let refused = matches!(
                e,
                SourceError::Auth { .. }
                    | SourceError::ApiKey { .. }
                    | SourceError::Endpoint { .. }
            );
            metrics.poll_failed(source_id, refused);
            if mode == RunMode::Once || matches!(e, SourceError::ApiKey { .. }) {
                return Some(Err(e));
            }
            tracing::error!(source_id, error = %e, "poll cycle failed; retrying after the poll interval (longer after refused logins)");
            None
        }
    }
}

/// `t - d`, or the earliest representable time when that would overflow (a `lookback` or
/// `start_time` at the edge of the calendar must not panic).
pub fn minus(t: DateTime<Utc>, d: chrono::Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A configured duration as a `chrono::Duration`, saturating instead of failing (chrono's
/// range is about 292 million years).
pub fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Why a source stopped or a poll cycle failed.
/// A stored state that does not parse as this source's (`kind`: "vbo", "vdc"). A field
/// this version does not know is most likely one a newer version wrote (a downgrade):
/// the error says to run that version rather than move the file away, which would send
/// the source's history again.
pub fn unusable_state(source_id: &str, kind: &str, error: &serde_json::Error) -> SourceError {
    let newer = if error.to_string().contains("unknown field") {
        "; it was probably written by a newer veeam-siem: run that version (or a newer one) again, as moving the file away would send the source's history again"
    } else {
        ""
    };
    SourceError::State {
        source_id: source_id.to_string(),
        problem: format!("not a {kind} checkpoint: {error}{newer}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source `{source_id}`: login to {url} as `{username}` failed: {reason}. Check sources.{source_id}.username and password/password_file"
    )]
    Auth {
        source_id: String,
        url: String,
        username: String,
        reason: String,
    },
    #[error(
        "source `{source_id}`: {url} refused the API key (HTTP {status}) sent in the `{header}` header. Check sources.{source_id}.api_key (or api_key_file) and sources.{source_id}.api_key_header (\"x-api-key\", or \"authorization\" to send `Bearer <key>`)"
    )]
    ApiKey {
        source_id: String,
        url: String,
        /// The header name as configured (never its value).
        header: String,
        status: u16,
    },
    #[error("source `{source_id}`: {error}")]
    Http {
        source_id: String,
        #[source]
        error: HttpError,
    },
    /// An endpoint the configuration points at does not exist on the server.
    #[error("source `{source_id}`: {url} answered HTTP {status}: {fix}")]
    Endpoint {
        source_id: String,
        url: String,
        status: u16,
        fix: String,
    },
    #[error("source `{source_id}`: stored checkpoint is unusable: {problem}")]
    State { source_id: String, problem: String },
    #[error(
        "source `{source_id}`: {problems} request(s) failed in the last poll cycle (see the log above); their data will be fetched again on the next run"
    )]
    Incomplete { source_id: String, problems: usize },
    #[error("pipeline closed")]
    Closed,
    /// A config problem found only when the source was built (a secret file, say).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates_at_the_edges() {
        let huge = std::time::Duration::from_secs(u64::MAX);
        assert_eq!(to_chrono(huge), chrono::Duration::MAX);
        assert_eq!(minus(Utc::now(), to_chrono(huge)), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            minus(DateTime::<Utc>::MIN_UTC, chrono::Duration::seconds(1)),
            DateTime::<Utc>::MIN_UTC
        );
        let t = Utc::now();
        assert_eq!(minus(t, chrono::Duration::zero()), t);
    }

    #[test]
    fn a_rejected_api_key_stops_a_following_source_other_failures_do_not() {
        let key = || SourceError::ApiKey {
            source_id: "v".into(),
            url: "https://h".into(),
            header: "x-api-key".into(),
            status: 401,
        };
        let incomplete = || SourceError::Incomplete {
            source_id: "v".into(),
            problems: 1,
        };
        let auth = || SourceError::Auth {
            source_id: "b".into(),
            url: "https://h".into(),
            username: "u".into(),
            reason: "invalid_grant".into(),
        };
        assert!(matches!(
            after_cycle("v", RunMode::Follow, Err(key())),
            Some(Err(SourceError::ApiKey { status: 401, .. }))
        ));
        assert!(matches!(
            after_cycle("v", RunMode::Once, Err(key())),
            Some(Err(SourceError::ApiKey { .. }))
        ));
        assert!(after_cycle("v", RunMode::Follow, Err(incomplete())).is_none());
        assert!(after_cycle("b", RunMode::Follow, Err(auth())).is_none());
        assert!(matches!(
            after_cycle("b", RunMode::Once, Err(auth())),
            Some(Err(SourceError::Auth { .. }))
        ));
        assert!(matches!(
            after_cycle("v", RunMode::Follow, Err(SourceError::Closed)),
            Some(Ok(()))
        ));
    }
}
