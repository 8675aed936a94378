//! The projector: one thread tails the log and hands every event, in order, to every
//! projection. It keeps a watermark and counters per projection and publishes the
//! sequence number applied to all of them, which writers wait on (read-your-writes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Hooks, Outcome, Projection, ProjectionError, SnapshotError};
use crate::event::Event;
use crate::log::Log;
use crate::source::EventSource;
use crate::sync::lock;

/// Most events read from the log per batch.
const APPLY_BATCH_EVENTS: usize = 256;
/// Most frame bytes read per batch (at least one event is always read). Small enough
/// that replay holds little decoded data at once (resident memory after replay is
/// mostly what the projections keep), large enough to amortise the read transaction.
const APPLY_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// How long the projector waits for new events before checking for shutdown.
const TAIL_POLL: Duration = Duration::from_millis(100);

/// Counters of one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStats {
    /// The projection's name.
    pub name: &'static str,
    /// Highest sequence number applied to it.
    pub applied_seq: u64,
    /// Events applied to it since open (replay included).
    pub events_applied: u64,
    /// Parts of events it could not apply (see [`super::Outcome::rejected`]).
    pub rejected: u64,
}

/// Projector counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorStats {
    /// Highest sequence number applied to every projection.
    pub applied_seq: u64,
    /// Per projection, in the order they are applied.
    pub projections: Vec<ProjectionStats>,
}

struct Slot {
    projection: Arc<dyn Projection>,
    applied: AtomicU64,
    events_applied: AtomicU64,
    rejected: AtomicU64,
}

/// The state of every projection at one sequence number, captured between events.
pub(crate) struct Captured {
    /// The last event applied to every projection when captured.
    pub(crate) seq: u64,
    /// Each projection's section: its name and bytes, in projection order.
    pub(crate) sections: Vec<(String, Vec<u8>)>,
    /// How long applying was paused for the capture.
    pub(crate) paused: Duration,
}

enum Capture {
    Idle,
    Requested,
    Done(Result<Captured, SnapshotError>),
}

struct Shared {
    /// The log, and the segments of the events it no longer holds (archived).
    source: Arc<EventSource<Log>>,
    capture_requested: AtomicBool,
    capture: Mutex<Capture>,
    capture_cv: Condvar,
    slots: Vec<Slot>,
    hooks: Hooks,
    applied: Mutex<u64>,
    applied_cv: Condvar,
    fault: Mutex<Option<Arc<ProjectionError>>>,
    stop: AtomicBool,
}

pub(crate) struct Projector {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Projector {
    /// Start applying the log from event `from` to `projections`, whose state is as of
    /// `from - 1`. Events before the log's first stored one are read from their
    /// segments.
    pub(crate) fn start(
        source: Arc<EventSource<Log>>,
        projections: Vec<Arc<dyn Projection>>,
        from: u64,
        hooks: Hooks,
    ) -> Result<Self, ProjectionError> {
        let base = from.saturating_sub(1);
        let slots = projections
            .into_iter()
            .map(|projection| Slot {
                projection,
                applied: AtomicU64::new(base),
                events_applied: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            })
            .collect();
        let shared = Arc::new(Shared {
            source,
            capture_requested: AtomicBool::new(false),
            capture: Mutex::new(Capture::Idle),
            capture_cv: Condvar::new(),
            slots,
            hooks,
            applied: Mutex::new(base),
            applied_cv: Condvar::new(),
            fault: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("annal-projector".into())
                .spawn(move || apply_loop(&shared, from))
                .map_err(ProjectionError::Thread)?
        };
        Ok(Self { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Wait until event `seq` is applied. Fails if the projector stopped on a fault, or
    /// if `timeout` passes.
    pub(crate) fn wait_applied(&self, seq: u64, timeout: Duration) -> Result<(), ProjectionError> {
        // `Duration::MAX` means no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut applied = lock(&self.shared.applied);
        while *applied < seq {
            if let Some(fault) = lock(&self.shared.fault).as_ref() {
                return Err(ProjectionError::Stopped(Arc::clone(fault)));
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(ProjectionError::Closed);
            }
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(ProjectionError::Timeout { seq, applied: *applied });
            }
            // Wake periodically to notice a fault raised without a notification race.
            let wait = left.min(Duration::from_millis(200));
            applied =
                self.shared.applied_cv.wait_timeout(applied, wait).map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        Ok(())
    }

    /// Capture every projection's snapshot section at one event boundary: the apply
    /// thread pauses between two events, asks each projection to write its state, and
    /// goes on. Appends are not paused (the log writer is its own thread); writers
    /// waiting to read their own write wait for the pause.
    ///
    /// # Errors
    /// A projection could not write its state; the projector stopped or faulted.
    pub(crate) fn capture(&self) -> Result<Captured, CaptureError> {
        let shared = &self.shared;
        let mut state = lock(&shared.capture);
        // One capture at a time.
        while !matches!(*state, Capture::Idle) {
            state = shared.capture_cv.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *state = Capture::Requested;
        shared.capture_requested.store(true, Ordering::Release);
        // The apply thread may be waiting for new events: it takes the capture now.
        shared.source.log().wake_tails();
        loop {
            match std::mem::replace(&mut *state, Capture::Idle) {
                Capture::Done(result) => {
                    shared.capture_cv.notify_all();
                    return result.map_err(CaptureError::Snapshot);
                }
                pending => *state = pending,
            }
            let stopped = lock(&shared.fault)
                .clone()
                .map(ProjectionError::Stopped)
                .or_else(|| shared.stop.load(Ordering::Acquire).then_some(ProjectionError::Closed));
            if let Some(error) = stopped {
                *state = Capture::Idle;
                shared.capture_requested.store(false, Ordering::Release);
                shared.capture_cv.notify_all();
                return Err(CaptureError::Projector(error));
            }
            state = shared
                .capture_cv
                .wait_timeout(state, Duration::from_millis(200))
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }

    /// Whether the apply thread is reading archive segments (at open, before it tails
    /// the log): a bucket error met there must not wait to be applied.
    pub(crate) fn reading_archive(&self) -> bool {
        self.shared.source.reading_archive()
    }

    /// Whether the projector was stopped (the engine is closing).
    pub(crate) fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// The highest sequence number applied to every projection.
    pub(crate) fn applied_seq(&self) -> u64 {
        *lock(&self.shared.applied)
    }

    /// The fault that stopped the projector, if any.
    pub(crate) fn fault(&self) -> Option<Arc<ProjectionError>> {
        lock(&self.shared.fault).clone()
    }

    pub(crate) fn stats(&self) -> ProjectorStats {
        let projections = self
            .shared
            .slots
            .iter()
            .map(|slot| ProjectionStats {
                name: slot.projection.name(),
                applied_seq: slot.applied.load(Ordering::Acquire),
                events_applied: slot.events_applied.load(Ordering::Relaxed),
                rejected: slot.rejected.load(Ordering::Relaxed),
            })
            .collect();
        ProjectorStats { applied_seq: self.applied_seq(), projections }
    }

    /// Stop the thread and every projection's background work. The event being applied
    /// finishes first (a large upsert stops between its chunks).
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        // Writers waiting for their event see the stop at once instead of timing out,
        // and so does the apply thread waiting for new events.
        self.shared.applied_cv.notify_all();
        self.shared.source.log().wake_tails();
        for slot in &self.shared.slots {
            slot.projection.shutdown();
        }
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                tracing::error!("projector thread panicked");
            }
        }
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records a fault if the apply thread unwinds, so writers fail fast instead of waiting.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            raise(self.0, ProjectionError::Panicked);
        }
    }
}

/// Answer a pending capture request at this event boundary (`seq` applied to all).
fn serve_capture(shared: &Shared, seq: u64) {
    if !shared.capture_requested.swap(false, Ordering::AcqRel) {
        return;
    }
    let started = Instant::now();
    let mut sections = Vec::with_capacity(shared.slots.len());
    let mut result = Ok(());
    for slot in &shared.slots {
        let mut bytes = Vec::new();
        if let Err(e) = slot.projection.write_snapshot(seq, &mut bytes) {
            result = Err(e);
            break;
        }
        sections.push((slot.projection.name().to_owned(), bytes));
    }
    let paused = started.elapsed();
    let mut state = lock(&shared.capture);
    if matches!(*state, Capture::Requested) {
        *state = Capture::Done(result.map(|()| Captured { seq, sections, paused }));
    }
    shared.capture_cv.notify_all();
}

fn apply_loop(shared: &Shared, from: u64) {
    let _guard = PanicGuard(shared);
    let (source, log) = (&shared.source, shared.source.log());
    let list: Vec<Arc<dyn Projection>> =
        shared.slots.iter().map(|slot| Arc::clone(&slot.projection)).collect();
    let mut next = from;
    while !shared.stop.load(Ordering::Acquire) {
        serve_capture(shared, next.saturating_sub(1));
        // Events the log no longer holds (archived after a snapshot covered them) come
        // from their segments: only when no usable snapshot is newer than the archive
        // point, or when an archive run overtook this thread.
        let events = match source.tail(next, TAIL_POLL, APPLY_BATCH_EVENTS, APPLY_BATCH_BYTES) {
            Ok(events) => events,
            Err(source) => return raise(shared, source.into()),
        };
        if events.is_empty() && log.is_closed() {
            // The engine is closing: the log was closed first and is applied to its end,
            // and a tail of a closed log returns at once. Wait for the stop (which wakes
            // the tails) instead of spinning a core until it comes.
            log.wait_woken(TAIL_POLL, || shared.stop.load(Ordering::Acquire));
            continue;
        }
        for (seq, event) in events {
            match apply_one(shared, &list, next, seq, &event) {
                Some(applied) => next = applied + 1,
                None => return,
            }
        }
    }
}

/// Apply event `seq` (which must be `expected`) to every projection, publish it, and
/// serve a pending capture after it. `None`: the loop must stop (a fault was raised, or
/// the engine is closing).
fn apply_one(
    shared: &Shared,
    list: &[Arc<dyn Projection>],
    expected: u64,
    seq: u64,
    event: &Event,
) -> Option<u64> {
    // A missing event would make the projections silently differ from the log.
    if seq != expected {
        let source = crate::log::LogError::Gap { expected, found: seq };
        raise(shared, ProjectionError::Read { seq: expected, source });
        return None;
    }
    if let Some(hook) = &shared.hooks.before_apply {
        hook(seq, event);
    }
    let counted = |i: usize, outcome: Outcome| {
        let Some(slot) = shared.slots.get(i) else { return };
        if outcome.rejected > 0 {
            tracing::warn!(
                seq,
                projection = slot.projection.name(),
                rejected = outcome.rejected,
                "event partly rejected by a projection"
            );
            slot.rejected.fetch_add(outcome.rejected, Ordering::Relaxed);
        }
        slot.applied.store(seq, Ordering::Release);
        slot.events_applied.fetch_add(1, Ordering::Relaxed);
    };
    match super::set::apply(list, seq, event, counted) {
        Ok(()) => {}
        Err(ProjectionError::Apply { source: super::ApplyError::Cancelled, .. }) => return None,
        Err(error) => {
            raise(shared, error);
            return None;
        }
    }
    // Published per event, so a writer waits for its own event, not its batch.
    *lock(&shared.applied) = seq;
    shared.applied_cv.notify_all();
    serve_capture(shared, seq);
    if shared.stop.load(Ordering::Acquire) {
        return None;
    }
    Some(seq)
}

fn raise(shared: &Shared, error: ProjectionError) {
    tracing::error!(error = %crate::chain::chain(&error), "projector stopped");
    *lock(&shared.fault) = Some(Arc::new(error));
    shared.applied_cv.notify_all();
}

/// Why [`Projector::capture`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A projection could not write its state.
    #[error(transparent)]
    Snapshot(SnapshotError),
    /// The projector is stopped or faulted.
    #[error(transparent)]
    Projector(ProjectionError),
}
