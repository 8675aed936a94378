//! Why a registered snapshot cannot be used.

use crate::projection::SnapshotError;

use super::format::FormatError;

/// Why a registered snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The object does not decode as a snapshot.
    #[error("snapshot {key}: {source}")]
    Format {
        /// Its key.
        key: String,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The object's CRC differs from the one registered.
    #[error("snapshot {key}: CRC-32 {actual:08x} of the object, {expected:08x} registered")]
    Crc {
        /// Its key.
        key: String,
        /// Computed.
        actual: u32,
        /// Registered.
        expected: u32,
    },
    /// The object holds another sequence number than registered.
    #[error("snapshot {key}: covers event {actual}, registered as {expected}")]
    Seq {
        /// Its key.
        key: String,
        /// In the object.
        actual: u64,
        /// Registered.
        expected: u64,
    },
    /// A projection's section is missing.
    #[error("snapshot {key}: has no section for projection {projection:?}")]
    Missing {
        /// Its key.
        key: String,
        /// The projection.
        projection: &'static str,
    },
    /// A projection refused its section.
    #[error("snapshot {key}: restoring {projection:?} failed")]
    Restore {
        /// Its key.
        key: String,
        /// The projection.
        projection: &'static str,
        /// Why.
        #[source]
        source: SnapshotError,
    },
}
