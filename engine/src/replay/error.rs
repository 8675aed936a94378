//! Offline replay's errors.

use crate::snapshot::Unusable;
use crate::storage::StorageError;

/// Offline replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A registered snapshot cannot be used.
    #[error(transparent)]
    Snapshot(Box<Unusable>),
    /// A snapshot object could not be read from its bucket.
    #[error("snapshot {key} cannot be read")]
    SnapshotRead {
        /// Its key.
        key: String,
        /// What the bucket said.
        #[source]
        source: Box<StorageError>,
    },
    /// Events were offered out of order.
    #[error("event {seq} offered after event {applied}: replay applies each event once, in order")]
    OutOfOrder {
        /// The event offered.
        seq: u64,
        /// The last one applied.
        applied: u64,
    },
}
