//! Projections: state derived from the log by applying its events in order.
//!
//! A [`Projection`] is handed every event of the log, in sequence order, by the
//! [`Projector`]; it keeps whatever part of the state it owns (the vector indexes now;
//! the bucket error journal, promotion state, partitions and migrations later). The
//! projector keeps a watermark and counters per projection, and the snapshot hooks let a
//! checkpoint write every projection's state as of one sequence number and restore it.

pub(crate) mod bucket_errors;
pub(crate) mod documents;
mod error;
mod hooks;
pub(crate) mod partitions;
mod payload;
mod projector;
pub(crate) mod promotions;
mod set;
pub(crate) mod text;
pub(crate) mod trials;
pub(crate) mod vectors;

use crate::event::Event;

pub use error::{ApplyError, ProjectionError, SnapshotError};
pub use hooks::Hooks;
pub(crate) use projector::{CaptureError, Projector};
pub use projector::{ProjectionStats, ProjectorStats};
pub(crate) use set::{apply, catch_up, Projections};

/// What applying one event did to a projection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Parts of the event (vectors, ids, the event itself) the projection could not
    /// apply: an unknown index, or a log written under other validation rules. Counted,
    /// logged, and otherwise skipped: the log stays the truth.
    pub rejected: u64,
}

/// State derived from the log.
///
/// `apply` is called by the projector thread only, for every event in sequence order
/// (also those the projection does not care about); readers use the projection
/// concurrently through their own handles, so implementations use interior mutability.
pub trait Projection: Send + Sync {
    /// A short stable name (`vectors`), used in stats, logs and snapshot sections.
    fn name(&self) -> &'static str;

    /// Apply event `seq`. An error is a fault of the engine or the machine (never of the
    /// caller's input, which was validated before it was appended): the projector stops.
    ///
    /// # Errors
    /// [`ApplyError`] for a fault.
    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError>;

    /// Write this projection's state as of `seq` (the last event applied to it) to `out`.
    /// The snapshot format frames and checksums what is written here.
    ///
    /// # Errors
    /// [`SnapshotError::Unsupported`] until the projection implements snapshots;
    /// I/O or encoding failures otherwise.
    fn write_snapshot(&self, seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let _ = (seq, out);
        Err(SnapshotError::Unsupported { projection: self.name() })
    }

    /// This projection's part of the logical state digest (docs/FORMAT.md, "State
    /// digest"): what a user can observe of it, nothing that depends on how it got
    /// there. Its snapshot section, unless that holds internal detail.
    ///
    /// # Errors
    /// As [`Projection::write_snapshot`].
    fn write_state(&self, seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        self.write_snapshot(seq, out)
    }

    /// Replace this projection's state with one written by [`Projection::write_snapshot`]
    /// at `seq` (its section, borrowed from the snapshot object, checksum already
    /// verified); the projector then applies the events after `seq`.
    ///
    /// # Errors
    /// As [`Projection::write_snapshot`].
    fn restore_snapshot(&self, seq: u64, input: &[u8]) -> Result<(), SnapshotError> {
        let _ = (seq, input);
        Err(SnapshotError::Unsupported { projection: self.name() })
    }

    /// Stop background work (rebuilds, queues) promptly: the engine is closing.
    fn shutdown(&self) {}
}
