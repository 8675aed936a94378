//! The state the writer thread shares with every reader: the database, the committed
//! sequence number readers may see, and the wake-ups of tailing readers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use redb::Database;

use crate::sync::lock;

/// State shared by the writer thread and every reader.
pub(crate) struct Shared {
    pub(crate) db: Database,
    /// Highest committed sequence number; readers see everything up to it.
    pub(super) last: AtomicU64,
    /// Signalled after each commit, for tailing readers.
    pub(super) committed: Mutex<u64>,
    pub(super) committed_cv: Condvar,
    pub(super) poison: Mutex<Option<Arc<redb::Error>>>,
    pub(super) closed: AtomicBool,
    /// Bumped (under `committed`) by [`LogReader::wake_tails`]: a tailing reader's wait
    /// ends early when it changes.
    pub(super) nudges: AtomicU64,
    pub(super) commits: AtomicU64,
    /// For a log copying a replicated stream: the stream sequence number of the last
    /// message copied.
    pub(super) stream_seq: AtomicU64,
    /// For a log copying a replicated stream: the last event another node published
    /// that changes the command-side schema (0: none since open).
    pub(super) foreign_guard: AtomicU64,
    pub(super) commit_ns: AtomicU64,
}

impl Shared {
    pub(crate) fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Whether the log was closed (no event will be appended any more).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wait until `seq` is committed or `timeout` passes; returns the last sequence.
    pub(crate) fn wait_for(&self, seq: u64, timeout: std::time::Duration) -> u64 {
        let guard = lock(&self.committed);
        let nudged = self.nudges.load(Ordering::Acquire);
        let (guard, _) = self
            .committed_cv
            .wait_timeout_while(guard, timeout, |last| {
                *last < seq
                    && !self.closed.load(Ordering::Acquire)
                    && self.nudges.load(Ordering::Acquire) == nudged
            })
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Wait until `done()` holds (checked now and at each [`Shared::wake_tails`]) or
    /// `timeout` passes, whether or not the log is closed. [`Shared::wait_for`] returns
    /// at once on a closed log, so a tail that has read a closed log to its end waits
    /// here for its own stop instead of spinning.
    pub(crate) fn wait_woken(&self, timeout: std::time::Duration, done: impl Fn() -> bool) {
        let guard = lock(&self.committed);
        let _ = self
            .committed_cv
            .wait_timeout_while(guard, timeout, |_| !done())
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// End every current [`Shared::wait_for`] now, whatever it waits for.
    pub(crate) fn wake_tails(&self) {
        let _guard = lock(&self.committed);
        self.nudges.fetch_add(1, Ordering::AcqRel);
        self.committed_cv.notify_all();
    }

    pub(super) fn publish(&self, last: u64) {
        self.last.store(last, Ordering::Release);
        *lock(&self.committed) = last;
        self.committed_cv.notify_all();
    }
}
