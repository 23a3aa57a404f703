//! Sources: API pollers that turn a Veeam server's history into batches of records.
//!
//! Owns the contract between a source and the pipeline: a source emits [`SourceBatch`]es,
//! each carrying the records of one page and a *snapshot of the source's state after that
//! page* (`checkpoint`). The pipeline persists a snapshot only once every sink has
//! acknowledged that batch and all batches before it, so a restart resumes exactly after
//! the last fully delivered page. Sources never write checkpoints themselves and never
//! map records (that is `map/`, pure).

pub mod vbo;
pub mod vbo_token;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::http::HttpError;
use crate::map::vbo::{RawRestoreEvent, RawRestoreSession};

/// One record as fetched, before mapping.
#[derive(Debug, Clone)]
pub enum Record {
    /// A VB365 restore-session event with its session.
    VboEvent {
        session: Arc<RawRestoreSession>,
        event: RawRestoreEvent,
        /// Raw JSON text of the event, when the source keeps originals.
        original: Option<Box<str>>,
    },
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

/// Why a source stopped or a poll cycle failed.
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
    #[error("source `{source_id}`: {error}")]
    Http {
        source_id: String,
        #[source]
        error: HttpError,
    },
    #[error("source `{source_id}`: stored checkpoint is unusable: {problem}")]
    State { source_id: String, problem: String },
    #[error(
        "source `{source_id}`: {problems} request(s) failed in the last poll cycle (see the log above); their data will be fetched again on the next run"
    )]
    Incomplete { source_id: String, problems: usize },
    #[error("pipeline closed")]
    Closed,
}
