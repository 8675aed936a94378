//! Backpressure on the writer queue: appenders reserve the bytes of their frames before
//! queueing them and the reservation is released when the writer is done with them
//! (acknowledged, refused or failed). While the queue holds more than the budget, new
//! appenders wait, so a burst of writers cannot grow the queue without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::LogError;
use crate::sync::lock;

/// How often a waiting appender re-checks whether the log closed.
const CLOSED_POLL: Duration = Duration::from_millis(50);

pub(crate) struct QueueBudget {
    max: usize,
    queued: Mutex<usize>,
    released: Condvar,
}

impl QueueBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, queued: Mutex::new(0), released: Condvar::new() })
    }

    /// Bytes queued now.
    pub(crate) fn queued(&self) -> usize {
        *lock(&self.queued)
    }

    /// Wait until `bytes` fit in the budget (an append larger than the whole budget is
    /// admitted when the queue is empty, so a maximal event always passes).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        bytes: usize,
        closed: &AtomicBool,
    ) -> Result<Reservation, LogError> {
        let mut queued = lock(&self.queued);
        while *queued > 0 && queued.saturating_add(bytes) > self.max {
            if closed.load(Ordering::Acquire) {
                return Err(LogError::Closed);
            }
            queued =
                self.released.wait_timeout(queued, CLOSED_POLL).map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        *queued += bytes;
        Ok(Reservation { budget: Arc::clone(self), bytes })
    }
}

/// Bytes held in the queue; released on drop.
pub(crate) struct Reservation {
    budget: Arc<QueueBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut queued = lock(&self.budget.queued);
        *queued = queued.saturating_sub(self.bytes);
        self.budget.released.notify_all();
    }
}
