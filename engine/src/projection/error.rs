//! The projection layer's errors: applying an event, writing or restoring a snapshot
//! section, and the projector's own failures.

use std::sync::Arc;

use crate::log::LogError;

use super::vectors::HnswError;

/// A projection failed to apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// FAISS failed.
    #[error(transparent)]
    Vectors(#[from] HnswError),
    /// The full-text index (tantivy) failed.
    #[error(transparent)]
    Text(crate::projection::text::TextError),
    /// The engine is closing; the event was not (wholly) applied, and will be again on
    /// the next open. Not a fault.
    #[error("apply stopped: the engine is closing")]
    Cancelled,
    /// A fault injected through [`Hooks`] (tests only).
    #[error("injected fault: {0}")]
    Injected(String),
}

/// Writing or restoring a projection's snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The projection does not implement snapshots yet.
    #[error("projection {projection:?} cannot be snapshotted yet")]
    Unsupported {
        /// The projection's name.
        projection: &'static str,
    },
    /// Reading or writing the snapshot stream failed.
    #[error("snapshot I/O failed")]
    Io(#[from] std::io::Error),
    /// A section does not decode: the snapshot is corrupt (its CRC passed, so it was
    /// written so, or by another version).
    #[error("projection {projection:?}: snapshot section is corrupt")]
    Corrupt {
        /// The projection's name.
        projection: &'static str,
        /// Where and what.
        #[source]
        source: crate::codec::DecodeError,
    },
    /// FAISS could not serialize or read an index.
    #[error(transparent)]
    Vectors(#[from] HnswError),
    /// A full-text index could not be captured or opened again.
    #[error("text index {index:?}")]
    Text {
        /// The index.
        index: String,
        /// What failed.
        #[source]
        source: crate::projection::text::TextError,
    },
    /// An index is unusable after a failed add and cannot be captured.
    #[error("index {index:?} is faulted and cannot be snapshotted; reopen the engine first")]
    Faulted {
        /// The index.
        index: String,
    },
}

/// Failures of the projector.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading the log failed (for instance a corrupt event).
    #[error("projector could not read the log at event {seq}")]
    Read {
        /// The event it tried to read from.
        seq: u64,
        /// The log error.
        #[source]
        source: LogError,
    },
    /// Reading archived events back from their segment failed.
    #[error("projector could not read archived event {seq}")]
    Archive {
        /// The event it tried to read from.
        seq: u64,
        /// What failed.
        #[source]
        source: Box<crate::archive::ArchiveError>,
    },
    /// A projection failed to apply an event.
    #[error("projection {projection:?} could not apply event {seq}")]
    Apply {
        /// The event.
        seq: u64,
        /// The projection's name.
        projection: &'static str,
        /// What failed.
        #[source]
        source: ApplyError,
    },
    /// The projector stopped earlier on a fault and applies nothing more.
    #[error("projection stopped")]
    Stopped(#[source] Arc<ProjectionError>),
    /// An event was appended but not applied in time.
    #[error("event {seq} not applied in time (projection at {applied})")]
    Timeout {
        /// The event waited for.
        seq: u64,
        /// The projection's position.
        applied: u64,
    },
    /// The engine is closing; the event may still be applied on the next open.
    #[error("projection stopped because the engine is closing")]
    Closed,
    /// The apply thread panicked (a bug); the projection applies nothing more.
    #[error("projector thread panicked")]
    Panicked,
    /// A projector thread could not be started.
    #[error("projector thread could not start")]
    Thread(#[source] std::io::Error),
}
