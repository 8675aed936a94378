//! Checkpoints and time: snapshots, log archiving, and views as of an earlier event.
use std::sync::Arc;

use crate::error::Error;
use crate::event::SnapshotTaken;
use crate::recovery::Restored;
use crate::snapshot::{SnapshotInfo, View};

use super::*;

impl Engine {
    /// A read-only view of every projection as of event `seq`: the newest snapshot at or
    /// before it plus the events after that up to `seq`. Built on first use (it costs
    /// about a replay from that snapshot) and cached.
    ///
    /// # Errors
    /// [`Error::AsOfFuture`] past the last applied event; [`Error::AsOfGone`] before
    /// the log's first retained event with no snapshot covering it; log or FAISS faults.
    pub fn view_at(&self, seq: u64) -> Result<Arc<View>, Error> {
        self.views.at(&self.source, &self.config.hooks, seq, self.projector.applied_seq())
    }

    /// Which snapshot this open started from, if any, and the ones it had to skip.
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// Take a snapshot: every projection's state at one event boundary S (the apply
    /// thread pauses between two events while the projections write their state to
    /// memory; appends go on), written to the primary bucket as one object, then
    /// registered by a `SnapshotTaken` event once the object is durable. Snapshots
    /// beyond the newest `keep` of the policy are deleted from the bucket afterwards.
    ///
    /// # Errors
    /// A projection could not write its state (a faulted index), the bucket write
    /// failed (journaled), or the log refused the registration.
    pub async fn snapshot(&self, actor: &str) -> Result<SnapshotInfo, Error> {
        self.snapshots.take(actor).await
    }

    /// Archive the log now: move every event up to the oldest kept snapshot out of the
    /// log into segment objects in the primary bucket (what the policy's `archive` does
    /// after each snapshot). Returns the segments written (none if no snapshot is kept
    /// or the log holds nothing it covers).
    ///
    /// # Errors
    /// The bucket write failed (journaled; nothing was removed), or the log refused.
    pub async fn archive_log(&self, actor: &str) -> Result<Vec<crate::log::Segment>, Error> {
        if !self.startup().ready {
            return Err(Error::Starting);
        }
        self.snapshots.archive(actor).await
    }

    /// The snapshots this engine knows, newest first, with the sequence number of each
    /// one's `SnapshotTaken` event: the newest registered when it opened and those taken
    /// since (older registrations stay in the log; `annal events` lists them).
    pub fn snapshots(&self) -> Vec<(u64, SnapshotTaken)> {
        self.snapshots.known()
    }
}
