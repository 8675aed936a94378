//! Reading, writing or checking an archive segment failed.

use crate::event::FrameError;
use crate::log::LogError;
use crate::storage::StorageError;

/// Reading, writing or checking an archive segment failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bucket failed (journaled by the storage layer).
    #[error("archive segment {key}")]
    Storage {
        /// The segment's key.
        key: String,
        /// What the bucket said.
        #[source]
        source: Box<StorageError>,
    },
    /// The log (or the registry beside it) failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The object's CRC does not match its registration.
    #[error("archive segment {key}: CRC-32 {actual:08x} of the object, {expected:08x} registered")]
    Crc {
        /// The segment's key.
        key: String,
        /// Computed over what was read.
        actual: u32,
        /// Registered.
        expected: u32,
    },
    /// The object does not decode as a segment.
    #[error("archive segment {key}: {what}")]
    Format {
        /// The segment's key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A frame inside a segment is corrupt.
    #[error("archive segment {key}")]
    Frame {
        /// The segment's key.
        key: String,
        /// The frame's error, naming its sequence number.
        #[source]
        source: FrameError,
    },
    /// No segment holds an event the log no longer has.
    #[error("event {seq} is neither in the log nor in any archive segment")]
    Missing {
        /// The event.
        seq: u64,
    },
    /// Running the bucket I/O failed.
    #[error("archive I/O failed")]
    Io(#[from] std::io::Error),
}
