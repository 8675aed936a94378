//! Reading events from the log or its archive failed.

use crate::archive::ArchiveError;
use crate::log::LogError;

/// Reading events failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The log failed (a corrupt frame among them).
    #[error("could not read the log at event {seq}")]
    Log {
        /// The first event asked for.
        seq: u64,
        /// What failed.
        #[source]
        source: LogError,
    },
    /// The log holds later events but not this one, and no segment holds it: a gap.
    #[error("event {seq} is missing: the log has a gap there (annal log verify says more)")]
    Missing {
        /// The first event missing.
        seq: u64,
        /// The event the log holds next.
        found: u64,
    },
    /// The event was archived and its segment cannot be read (or no segment holds it).
    #[error("could not read archived event {seq}")]
    Archive {
        /// The first event asked for.
        seq: u64,
        /// What failed.
        #[source]
        source: Box<ArchiveError>,
    },
}
