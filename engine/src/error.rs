//! The crate error: each layer's error folded in, with caller mistakes kept apart from
//! faults of the disk, FAISS or the engine itself.

use std::sync::Arc;

use crate::log::LogError;
use crate::projection::vectors::HnswError;
use crate::projection::ApplyError;
use crate::validate::InvalidInput;

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is invalid; nothing was appended.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No index has that name.
    #[error("index {name:?} does not exist")]
    IndexNotFound {
        /// The name asked for.
        name: String,
    },
    /// An index with that name exists already.
    #[error("index {name:?} already exists")]
    IndexExists {
        /// The name asked for.
        name: String,
    },
    /// No evaluation set of that id for the index.
    #[error("index {index:?} has no evaluation set {eval_id:?}")]
    EvalNotFound {
        /// The index.
        index: String,
        /// The id asked for.
        eval_id: String,
    },
    /// An evaluation set's object could not be written or read back whole.
    #[error("evaluation set {key}")]
    EvalSet {
        /// Its object key.
        key: String,
        /// What is wrong.
        #[source]
        source: crate::trials::evalset::EvalFormatError,
    },
    /// A scheme change conflicts with the index's partition state (a migration to
    /// another template is unfinished, a finished one was not cleared, ...).
    #[error("index {index:?}: {reason}")]
    SchemeConflict {
        /// The index.
        index: String,
        /// What conflicts.
        reason: String,
    },
    /// A document operation on an index without an embedder.
    #[error("index {name:?} has no embedder: it takes vectors, not documents")]
    NotDocumentIndex {
        /// The index.
        name: String,
    },
    /// A vector write to an index with an embedder, whose vectors come from its
    /// documents.
    #[error("index {name:?} has an embedder: it takes documents, not vectors")]
    DocumentIndex {
        /// The index.
        name: String,
    },
    /// An embedder was unavailable or failed (a text search).
    #[error("embedding failed")]
    Embed(#[from] crate::embed::EmbedError),
    /// The embedding queue of an index did not drain in time.
    #[error("index {index:?}: {pending} documents still wait to be embedded")]
    EmbeddingPending {
        /// The index.
        index: String,
        /// Documents still queued.
        pending: u64,
    },
    /// A rollback of an index with no promotion in effect.
    #[error("index {name:?} has no promotion to roll back")]
    NothingPromoted {
        /// The index.
        name: String,
    },
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// FAISS failed while searching.
    #[error(transparent)]
    Faiss(#[from] HnswError),
    /// The projection failed or stopped.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// Filesystem error outside the log.
    #[error("engine I/O failed")]
    Io(#[from] std::io::Error),
    /// The write's event is durable in the log (it will be applied, at the latest on the
    /// next open) but was not applied before the call returned: the wait timed out, the
    /// engine is closing, or the projector stopped on a fault.
    #[error("event {seq} is durable but not applied")]
    NotApplied {
        /// The event's sequence number.
        seq: u64,
        /// Why it was not applied in time.
        #[source]
        source: ProjectionError,
    },
    /// The engine is still replaying its log at start and accepts no writes yet.
    #[error("the engine is starting: replaying the log")]
    Starting,
    /// A storage bucket operation failed (see [`crate::storage`]).
    #[error(transparent)]
    Storage(Box<crate::storage::StorageError>),
    /// A projection could not write or restore its snapshot state.
    #[error(transparent)]
    Snapshot(#[from] crate::projection::SnapshotError),
    /// A background task of the engine failed (panicked or was cancelled).
    #[error("engine background task failed")]
    Background(#[source] tokio::task::JoinError),
    /// An archive segment could not be written or read back.
    #[error(transparent)]
    Archive(Box<crate::archive::ArchiveError>),
    /// Offline replay (tooling) failed.
    #[error(transparent)]
    Replay(Box<crate::replay::ReplayError>),
    /// A read asked to wait for an event that was never appended.
    #[error("min_seq {seq} is after the last event {last}")]
    SeqNotAppended {
        /// The sequence number asked for.
        seq: u64,
        /// The last appended.
        last: u64,
    },
    /// A read waited for an event that was not applied in time.
    #[error("event {seq} is not applied yet (applied: {applied}); retry")]
    NotYetApplied {
        /// The sequence number waited for.
        seq: u64,
        /// The applied sequence number when the wait ended.
        applied: u64,
    },
    /// A view was asked of a moment after the last applied event.
    #[error("as_of {seq} is after the last applied event {applied}")]
    AsOfFuture {
        /// The sequence number asked for.
        seq: u64,
        /// The last applied.
        applied: u64,
    },
    /// A view was asked of a moment before the log's first retained event that no
    /// snapshot covers.
    #[error("as_of {seq} is before the first retained event {first_retained} and no snapshot covers it")]
    AsOfGone {
        /// The sequence number asked for.
        seq: u64,
        /// The first event the log still holds.
        first_retained: u64,
    },
    /// The log starts after event 1 (older events were removed by retention) and no
    /// snapshot covers the events before it, so the projections cannot be rebuilt.
    #[error("the log starts at event {first_seq} and no snapshot covers the events before it")]
    LogTruncated {
        /// The first event the log holds.
        first_seq: u64,
    },
}

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::Storage(Box::new(e))
    }
}

/// An error with its chain of causes, on one line: `a: b: c`.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Error {
    /// Whether the caller caused this error (bad input, unknown or existing index), as
    /// opposed to a fault of the engine or the machine.
    pub fn is_caller_error(&self) -> bool {
        use crate::storage::StorageError;
        matches!(
            self,
            Error::Invalid(_)
                | Error::IndexNotFound { .. }
                | Error::IndexExists { .. }
                | Error::NothingPromoted { .. }
                | Error::EvalNotFound { .. }
                | Error::SchemeConflict { .. }
                | Error::SeqNotAppended { .. }
        ) || matches!(
            self,
            Error::Storage(e) if matches!(
                **e,
                StorageError::UnknownBucket(_)
                    | StorageError::Key { .. }
                    | StorageError::NotFound { .. }
                    | StorageError::TooLarge { .. }
            )
        )
    }
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
