//! The engine's [`ErrorSink`]: bucket errors appended to the log as events.

use std::sync::Arc;
use std::time::Duration;

use crate::event::Event;
use crate::log::Log;
use crate::projection::Projector;
use crate::storage::ErrorSink;

/// Appends bucket error events to the log, bypassing the command path (the event is
/// the engine's own observation, not a caller's request) but not its bounds.
pub(crate) struct Recorder {
    pub(crate) log: Arc<Log>,
    /// Set once the projector runs (errors met while opening are recorded before).
    /// Weak: the projector reaches the storage (reading archive segments), so a strong
    /// reference here would be a cycle that keeps the log open after the engine.
    pub(crate) projector: std::sync::OnceLock<std::sync::Weak<Projector>>,
}

/// How long recording an error waits for the journal to show it before returning
/// anyway (the event is durable; it will be applied in order).
const RECORD_APPLY_WAIT: Duration = Duration::from_secs(5);

impl ErrorSink for Recorder {
    fn record(&self, event: &Event) -> Result<u64, crate::Error> {
        let seq = self.log.append(std::slice::from_ref(event))?.map_or(0, |range| *range.end());
        let Some(projector) = self.projector.get().and_then(std::sync::Weak::upgrade) else { return Ok(seq) };
        // The apply thread is itself reading archive segments (this error is one of
        // them): it cannot apply the event until the read returns.
        if projector.reading_archive() {
            return Ok(seq);
        }
        // The event is durable: however the wait ends, it is journaled.
        if let Err(error) = projector.wait_applied(seq, RECORD_APPLY_WAIT) {
            tracing::debug!(seq, %error, "bucket error recorded, not yet applied");
        }
        Ok(seq)
    }
}
