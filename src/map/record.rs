//! [`Record`]: one record as a source fetched it, before mapping.
//!
//! It lives next to the wire types it carries (`vbo::Raw*`, `vdc::Raw*`) so that `map`
//! needs nothing from `sources`: sources produce records, the pipeline hands them to
//! [`map_record`](super::map_record). Must not: hold anything but decoded wire data and
//! what the mapping needs to know about where it came from (its position, its original).

use std::sync::Arc;

use super::vbo::{RawRestoreEvent, RawRestoreSession};
use super::vdc::{RawJob, RawJobSession, RawLogEntry};

/// One record as fetched, before mapping.
///
/// The VB365 variant is the large one (its event inline); records only live in a batch's
/// `Vec` until mapped, so the padding of smaller variants is bounded by the batch size and
/// cheaper than an allocation per VB365 event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Record {
    /// A VB365 restore-session event with its session.
    VboEvent {
        session: Arc<RawRestoreSession>,
        event: RawRestoreEvent,
        /// Raw JSON text of the event, when the source keeps originals.
        original: Option<Box<str>>,
    },
    /// A Veeam Data Cloud job-session log entry with its job and job session.
    VdcLog {
        job: Arc<RawJob>,
        session: Arc<RawJobSession>,
        entry: RawLogEntry,
        /// 0-based position of the entry in the session log, oldest first.
        index: u64,
        /// The raw record (JSON text, or the download line), when the source keeps originals.
        original: Option<Box<str>>,
    },
}
