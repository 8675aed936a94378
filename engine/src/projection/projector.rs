//! The projector: a work queue over the log. One thread tails the log and applies new
//! events in batches; a second, lower-priority thread rebuilds graphs whose tombstones
//! passed their share and swaps each one in atomically under the index's write lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::vectors::{Catalog, IndexHandle};
use crate::error::ProjectionError;
use crate::log::Log;
use crate::sync::lock;

/// Most events read from the log per batch.
const APPLY_BATCH_EVENTS: usize = 512;
/// Most frame bytes read per batch (at least one event is always read), so replaying a
/// log of large upserts does not decode gigabytes before applying any of it.
const APPLY_BATCH_BYTES: usize = 256 * 1024 * 1024;
/// How long the projector waits for new events before checking for shutdown.
const TAIL_POLL: Duration = Duration::from_millis(100);

/// Projector counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectorStats {
    /// Highest sequence number applied to the projections.
    pub applied_seq: u64,
    /// Events applied since open (replay included).
    pub events_applied: u64,
    /// Vectors or ids in applied events that could not be applied (unknown index,
    /// wrong dimension in a log written under other rules).
    pub vectors_rejected: u64,
    /// Graph rebuilds completed.
    pub rebuilds: u64,
    /// Graph rebuilds that failed (the old graph stays in service).
    pub rebuild_failures: u64,
}

struct Shared {
    log: Arc<Log>,
    catalog: Arc<Catalog>,
    applied: Mutex<u64>,
    applied_cv: Condvar,
    fault: Mutex<Option<Arc<ProjectionError>>>,
    stop: AtomicBool,
    events_applied: AtomicU64,
    vectors_rejected: AtomicU64,
    rebuilds: AtomicU64,
    rebuild_failures: AtomicU64,
}

pub(crate) struct Projector {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Projector {
    /// Start applying the log from its first event.
    pub(crate) fn start(log: Arc<Log>, catalog: Arc<Catalog>) -> Result<Self, ProjectionError> {
        let shared = Arc::new(Shared {
            log,
            catalog,
            applied: Mutex::new(0),
            applied_cv: Condvar::new(),
            fault: Mutex::new(None),
            stop: AtomicBool::new(false),
            events_applied: AtomicU64::new(0),
            vectors_rejected: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            rebuild_failures: AtomicU64::new(0),
        });
        let (rebuild_tx, rebuild_rx) = mpsc::channel();
        let apply = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("annal-projector".into())
                .spawn(move || apply_loop(&shared, &rebuild_tx))
                .map_err(ProjectionError::Thread)?
        };
        let rebuild = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("annal-rebuild".into())
                .spawn(move || rebuild_loop(&shared, &rebuild_rx))
                .map_err(ProjectionError::Thread)?
        };
        Ok(Self { shared, threads: Mutex::new(vec![apply, rebuild]) })
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

    /// The fault that stopped the projector, if any.
    pub(crate) fn fault(&self) -> Option<Arc<ProjectionError>> {
        lock(&self.shared.fault).clone()
    }

    pub(crate) fn stats(&self) -> ProjectorStats {
        let s = &self.shared;
        ProjectorStats {
            applied_seq: *lock(&s.applied),
            events_applied: s.events_applied.load(Ordering::Relaxed),
            vectors_rejected: s.vectors_rejected.load(Ordering::Relaxed),
            rebuilds: s.rebuilds.load(Ordering::Relaxed),
            rebuild_failures: s.rebuild_failures.load(Ordering::Relaxed),
        }
    }

    /// Stop both threads (a running rebuild finishes first).
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        // Writers waiting for their event see the stop at once instead of timing out.
        self.shared.applied_cv.notify_all();
        for handle in lock(&self.threads).drain(..) {
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

fn apply_loop(shared: &Shared, rebuilds: &Sender<(String, IndexHandle)>) {
    let _guard = PanicGuard(shared);
    let mut next = 1u64;
    while !shared.stop.load(Ordering::Acquire) {
        let events = match shared.log.tail_budget(next, TAIL_POLL, APPLY_BATCH_EVENTS, APPLY_BATCH_BYTES) {
            Ok(events) => events,
            Err(source) => return raise(shared, ProjectionError::Read { seq: next, source }),
        };
        let Some(&(last, _)) = events.last() else { continue };
        for (expected, (seq, event)) in (next..).zip(&events) {
            // A missing event would make the projection silently differ from the log.
            if *seq != expected {
                let source = crate::log::LogError::Gap { expected, found: *seq };
                return raise(shared, ProjectionError::Read { seq: expected, source });
            }
            match shared.catalog.apply(&event.body) {
                Ok(applied) => {
                    if applied.rejected > 0 {
                        tracing::warn!(
                            seq,
                            rejected = applied.rejected,
                            "event partly rejected by the projection"
                        );
                        shared.vectors_rejected.fetch_add(applied.rejected, Ordering::Relaxed);
                    }
                    if let Some(job) = applied.rebuild {
                        // A closed queue means shutdown; the rebuild is simply not done.
                        let _ = rebuilds.send(job);
                    }
                }
                Err(source) => return raise(shared, ProjectionError::Apply { seq: *seq, source }),
            }
        }
        shared.events_applied.fetch_add(events.len() as u64, Ordering::Relaxed);
        next = last + 1;
        *lock(&shared.applied) = last;
        shared.applied_cv.notify_all();
    }
}

fn raise(shared: &Shared, error: ProjectionError) {
    tracing::error!(%error, "projector stopped");
    *lock(&shared.fault) = Some(Arc::new(error));
    shared.applied_cv.notify_all();
}

fn rebuild_loop(shared: &Shared, jobs: &Receiver<(String, IndexHandle)>) {
    lower_priority();
    while !shared.stop.load(Ordering::Acquire) {
        let (name, handle) = match jobs.recv_timeout(TAIL_POLL) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // The apply thread is gone (stopped or faulted): no more jobs will come.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let started = Instant::now();
        let result = rebuild(shared, &name, &handle);
        handle.write().rebuild_pending = false;
        match result {
            // Shutdown, or the index was dropped meanwhile.
            Ok(false) => {}
            Ok(true) => {
                shared.rebuilds.fetch_add(1, Ordering::Relaxed);
                tracing::info!(index = %name, ms = started.elapsed().as_millis() as u64, "graph rebuilt");
            }
            Err(error) => {
                shared.rebuild_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(index = %name, %error, "graph rebuild failed; the old graph stays");
            }
        }
    }
}

/// Returns whether a new graph was swapped in.
fn rebuild(shared: &Shared, name: &str, handle: &IndexHandle) -> Result<bool, super::vectors::HnswError> {
    let input = handle.read().rebuild_input()?;
    let graph = input.build()?;
    let mut index = handle.write();
    if !shared.catalog.is_current(name, handle) {
        return Ok(false);
    }
    index.install(graph, input.watermark)?;
    Ok(true)
}

/// Rebuilds yield the CPU to appends, projection and searches.
fn lower_priority() {
    // SAFETY: setpriority on the calling thread (tid from gettid) has no memory effects.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower rebuild thread priority");
    }
}
