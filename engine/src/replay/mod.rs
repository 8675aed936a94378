//! Offline replay, for tooling (`annal replay`, `annal export`): a data directory's log
//! read without a writer ([`OfflineLog`]: the log opened read-only, archived events read
//! back from their segments), applied to fresh projections ([`Replay`]) that no engine
//! owns, and the logical state they hold ([`LogicalState`]) compared and digested.
//!
//! The logical state is what a user can observe: every index's parameters and live
//! records (ids, vectors bit for bit, metadata, partitions), and the state of every
//! other projection (promotions, bucket error journal, trials, partition schemes and
//! migrations, documents). The HNSW graphs are not part of it: FAISS builds them
//! with several threads, so two replays of one log give equivalent graphs, not equal
//! ones. The digest is SHA-256 over a canonical encoding (docs/FORMAT.md, "State
//! digest"); replaying one log always gives one digest.

mod error;
mod offline;
mod state;

pub use error::ReplayError;
pub use offline::OfflineLog;
pub use state::{IndexState, LogicalState, Replay, StateDigest};

/// The actor tooling reads buckets as (journaled on a bucket error).
pub const TOOL_ACTOR: &str = "annal-cli";

/// A replay that starts at a registered snapshot, and that registration.
pub type SnapshotReplay = (Replay, crate::event::SnapshotTaken);

/// A registered snapshot that could not be used.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Its registration.
    pub snapshot: crate::event::SnapshotTaken,
    /// Why (the error chain).
    pub why: String,
}
