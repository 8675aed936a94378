//! The crate error, a sink: each layer's error folded in (every `From` is here), and
//! [`ErrorKind`], which classifies every variant of every layer error exhaustively so
//! that callers (the HTTP layer, the tools) map kinds, never variants.
//!
//! This file imports only the layers' error types; no layer imports it back except to
//! name [`Error`] as its return type.

use crate::archive::ArchiveError;
use crate::embed::EmbedError;
use crate::log::LogError;
use crate::projection::vectors::HnswError;
use crate::projection::{ProjectionError, SnapshotError};
use crate::replay::ReplayError;
use crate::source::SourceError;
use crate::storage::StorageError;
use crate::trials::evalset::EvalFormatError;
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
    /// The index has no payload index on that field.
    #[error("index {index:?} has no payload index on field {field:?}")]
    PayloadIndexNotFound {
        /// The index.
        index: String,
        /// The field asked for.
        field: String,
    },
    /// The index has a payload index on that field already.
    #[error("index {index:?} has a payload index of type {kind} on field {field:?} already")]
    PayloadIndexExists {
        /// The index.
        index: String,
        /// The field.
        field: String,
        /// The existing index's type.
        kind: &'static str,
    },
    /// No live record has that id (a write that needs an existing record).
    #[error("{field}: index {index:?} has no record {id:?}")]
    RecordNotFound {
        /// The index.
        index: String,
        /// The id.
        id: String,
        /// Where in the request (`items[3].id`).
        field: String,
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
        source: EvalFormatError,
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
    Embed(#[from] EmbedError),
    /// The full-text index (tantivy) failed.
    #[error(transparent)]
    Text(#[from] crate::projection::text::TextError),
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
    /// An HNSW index (FAISS) failed while searching or building.
    #[error(transparent)]
    Hnsw(#[from] HnswError),
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
    Storage(Box<StorageError>),
    /// A projection could not write or restore its snapshot state.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A background task of the engine failed (panicked or was cancelled).
    #[error("engine background task failed")]
    Background(#[source] tokio::task::JoinError),
    /// An archive segment could not be written or read back.
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    /// An event is neither in the log nor in an archive segment, while later ones are:
    /// the log has a gap.
    #[error("event {seq} is missing: the log has a gap there (annal log verify says more)")]
    Missing {
        /// The first event missing.
        seq: u64,
    },
    /// Offline replay (tooling) failed.
    #[error(transparent)]
    Replay(Box<ReplayError>),
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
    #[error("as_of: {seq} is after the last applied event {applied}")]
    AsOfFuture {
        /// The sequence number asked for.
        seq: u64,
        /// The last applied.
        applied: u64,
    },
    /// A view was asked of a moment before the log's first retained event that no
    /// snapshot covers.
    #[error("as_of: {seq} is before the first retained event {first_retained} and no snapshot covers it")]
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

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Self::Storage(Box::new(e))
    }
}

impl From<ArchiveError> for Error {
    fn from(e: ArchiveError) -> Self {
        Self::Archive(Box::new(e))
    }
}

/// A read of the log is a log error, a read of its archive an archive error: what the
/// callers of views and replay have always seen.
impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Log { source, .. } => Error::Log(source),
            SourceError::Missing { seq, .. } => Error::Missing { seq },
            SourceError::Archive { source, .. } => Error::Archive(source),
        }
    }
}

impl From<SourceError> for ProjectionError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Log { seq, source } => ProjectionError::Read { seq, source },
            SourceError::Missing { seq, found } => {
                ProjectionError::Read { seq, source: LogError::Gap { expected: seq, found } }
            }
            SourceError::Archive { seq, source } => ProjectionError::Archive { seq, source },
        }
    }
}

impl From<ReplayError> for Error {
    fn from(e: ReplayError) -> Self {
        Self::Replay(Box::new(e))
    }
}

/// What kind of failure an [`Error`] is: what its caller can do about it.
///
/// Every variant of [`Error`] and of the layer errors it folds maps to exactly one kind,
/// by matches with no fallback arm, so a new error variant does not compile until it is
/// classified (and cannot silently become a fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input is invalid (a field, a value out of range, the wrong kind of
    /// index for the call); nothing was appended. Fix the request.
    Invalid,
    /// What the call names (an index, an evaluation set, a bucket, an object) does not
    /// exist.
    NotFound,
    /// The call conflicts with the current state (the index exists, nothing to roll
    /// back, an unfinished migration).
    Conflict,
    /// The moment asked for is no longer held: retention removed it.
    Gone,
    /// The write's event `seq` is durable in the log but was not applied before the call
    /// returned; it is applied, in order, at the latest on the next open.
    NotApplied {
        /// The event's sequence number.
        seq: u64,
    },
    /// A log commit failed, and it is not known whether it became durable: read before
    /// retrying.
    OutcomeUnknown,
    /// The engine cannot serve the call now; the reason says whether retrying helps.
    Unavailable(Unavailable),
    /// A storage bucket's backend (a remote service) failed; the failure is journaled.
    Backend,
    /// A fault of the engine, the disk or FAISS.
    Internal,
}

/// Why the engine cannot serve a call now ([`ErrorKind::Unavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Replaying the log at open; retry shortly.
    Starting,
    /// Closing; retry against the next process.
    Closing,
    /// A read's `min_seq` is durable but not applied yet; retry shortly.
    Lagging,
    /// An embedder is not configured, could not load, or its service failed.
    Embedder,
    /// A failed commit poisoned the log: only a restart (after fixing the cause)
    /// recovers.
    Poisoned,
    /// The projector or an index stopped on a fault, or the log writer is gone: only a
    /// restart recovers.
    Faulted,
}

impl Error {
    /// The kind of this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_)
            | Error::NotDocumentIndex { .. }
            | Error::DocumentIndex { .. }
            | Error::AsOfFuture { .. }
            | Error::SeqNotAppended { .. } => ErrorKind::Invalid,
            Error::IndexNotFound { .. }
            | Error::EvalNotFound { .. }
            | Error::PayloadIndexNotFound { .. }
            | Error::RecordNotFound { .. } => ErrorKind::NotFound,
            Error::IndexExists { .. }
            | Error::PayloadIndexExists { .. }
            | Error::NothingPromoted { .. }
            | Error::SchemeConflict { .. } => ErrorKind::Conflict,
            Error::AsOfGone { .. } => ErrorKind::Gone,
            Error::NotApplied { seq, .. } => ErrorKind::NotApplied { seq: *seq },
            Error::Starting => ErrorKind::Unavailable(Unavailable::Starting),
            Error::NotYetApplied { .. } => ErrorKind::Unavailable(Unavailable::Lagging),
            Error::Embed(_) | Error::EmbeddingPending { .. } => ErrorKind::Unavailable(Unavailable::Embedder),
            Error::Log(e) => e.kind(),
            Error::Hnsw(e) => e.kind(),
            Error::Projection(e) => e.kind(),
            Error::Storage(e) => e.kind(),
            Error::EvalSet { .. }
            | Error::Io(_)
            | Error::Text(_)
            | Error::Snapshot(_)
            | Error::Background(_)
            | Error::Archive(_)
            | Error::Missing { .. }
            | Error::Replay(_)
            | Error::LogTruncated { .. } => ErrorKind::Internal,
        }
    }
}

impl LogError {
    /// The kind of this log error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::CommitFailed(_) => ErrorKind::OutcomeUnknown,
            LogError::Poisoned(_) => ErrorKind::Unavailable(Unavailable::Poisoned),
            LogError::Closed => ErrorKind::Unavailable(Unavailable::Closing),
            LogError::WriterGone => ErrorKind::Unavailable(Unavailable::Faulted),
            LogError::Cluster(e) => e.kind(),
            LogError::Clustered { .. } | LogError::NotEmpty { .. } => ErrorKind::Conflict,
            LogError::Storage(_)
            | LogError::Frame(_)
            | LogError::TooManyEvents { .. }
            | LogError::Gap { .. }
            | LogError::ArchiveRecord { .. }
            | LogError::ArchiveRange { .. }
            | LogError::TruncateRange { .. }
            | LogError::Io(_) => ErrorKind::Internal,
        }
    }
}

impl crate::cluster::ClusterError {
    /// The kind of this cluster error.
    pub fn kind(&self) -> ErrorKind {
        use crate::cluster::ClusterError as C;
        match self {
            C::Conflict { .. } | C::Contended { .. } => ErrorKind::Conflict,
            C::TooLarge { .. } | C::BadConfig { .. } | C::StreamConfig { .. } => ErrorKind::Invalid,
            C::Publish { .. } => ErrorKind::OutcomeUnknown,
            C::NotMirrored { .. } => ErrorKind::Unavailable(Unavailable::Lagging),
            C::Connect { .. } | C::JetStream { .. } => ErrorKind::Backend,
            C::Closed => ErrorKind::Unavailable(Unavailable::Closing),
            C::BadMessage { .. }
            | C::Diverged { .. }
            | C::Copy { .. }
            | C::Bootstrap { .. }
            | C::Uncovered { .. }
            | C::Behind { .. } => ErrorKind::Unavailable(Unavailable::Faulted),
            C::Task(_) => ErrorKind::OutcomeUnknown,
            C::Runtime(_) => ErrorKind::Internal,
        }
    }
}

impl HnswError {
    /// The kind of this index error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HnswError::Faulted { .. } => ErrorKind::Unavailable(Unavailable::Faulted),
            HnswError::Faiss { .. }
            | HnswError::Native { .. }
            | HnswError::Shape { .. }
            | HnswError::Scratch { .. } => ErrorKind::Internal,
        }
    }
}

impl ProjectionError {
    /// The kind of this projector error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProjectionError::Closed => ErrorKind::Unavailable(Unavailable::Closing),
            ProjectionError::Stopped(_) | ProjectionError::Panicked => {
                ErrorKind::Unavailable(Unavailable::Faulted)
            }
            ProjectionError::Read { .. }
            | ProjectionError::Archive { .. }
            | ProjectionError::Apply { .. }
            | ProjectionError::Timeout { .. }
            | ProjectionError::Thread(_) => ErrorKind::Internal,
        }
    }
}

impl StorageError {
    /// The kind of this bucket error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::UnknownBucket(_) | StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::Key { .. } | StorageError::TooLarge { .. } => ErrorKind::Invalid,
            StorageError::Backend { .. } => ErrorKind::Backend,
            StorageError::Open { .. } => ErrorKind::Internal,
        }
    }
}
