use std::sync::Arc;

use crate::event::FrameError;

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// redb failed: the disk, the file, or a transaction.
    #[error("log storage failed")]
    Storage(#[from] redb::Error),
    /// A stored event (or one being appended) could not be framed or unframed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The group commit this append was part of failed; nothing of it was acknowledged.
    #[error("group commit failed; the log refuses further writes")]
    CommitFailed(#[source] Arc<redb::Error>),
    /// An earlier commit failed, so the log is in an unknown state and refuses writes
    /// until it is reopened (which recovers the last durable commit).
    #[error("log is poisoned by an earlier failed commit; reopen to recover")]
    Poisoned(#[source] Arc<redb::Error>),
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// The log writer thread could not be started or died.
    #[error("log writer thread is gone")]
    WriterGone,
    /// Too many events in one append.
    #[error("append of {count} events exceeds the limit of {max}")]
    TooManyEvents {
        /// Events given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The sequence numbers of the log are not dense (a gap or an unexpected key).
    #[error("log is not dense: expected event {expected}, found {found}")]
    Gap {
        /// The sequence number that should come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// An archive registration does not decode.
    #[error("archive registration of the segment starting at event {first} is corrupt: {what}")]
    ArchiveRecord {
        /// The segment's first event (its registry key).
        first: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// An archive was asked for events the log does not hold as its oldest ones (a
    /// second archiver, or a range past the last event).
    #[error("cannot archive events {first}..={last}: the log holds {held_first}..={held_last}")]
    ArchiveRange {
        /// The range asked for.
        first: u64,
        /// Its end.
        last: u64,
        /// The first event stored.
        held_first: u64,
        /// The last event stored.
        held_last: u64,
    },
    /// A truncation that would not cut a stored tail (nothing after it, or it reaches
    /// into events already archived).
    #[error("cannot truncate after event {after}: the log holds {held_first}..={held_last}")]
    TruncateRange {
        /// The last event to keep.
        after: u64,
        /// The first event stored.
        held_first: u64,
        /// The last event stored.
        held_last: u64,
    },
    /// The replicated stream this log copies refused or failed an append.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// An operation that would make this log differ from the replicated stream it
    /// copies (archive, truncate).
    #[error("cannot {op}: this log is a copy of a replicated stream")]
    Clustered {
        /// What was refused.
        op: &'static str,
    },
    /// A log can begin from a snapshot only while it is empty.
    #[error("cannot begin the log from a snapshot at {base}: it holds events up to {last} already")]
    NotEmpty {
        /// The snapshot's sequence number.
        base: u64,
        /// The last event the log holds.
        last: u64,
    },
    /// An I/O error outside redb (creating the data directory).
    #[error("log I/O failed")]
    Io(#[from] std::io::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self {
                LogError::Storage(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
