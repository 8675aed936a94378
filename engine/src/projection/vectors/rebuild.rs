//! Graph rebuilds, on a thread of their own at lower CPU priority.
//!
//! A rebuild never holds a lock for long: it copies the old graph's vectors out in
//! chunks of [`COPY_CHUNK_BYTES`], each under a short read lock, and adds them to the
//! new graph with no lock held; it catches up with what was added meanwhile the same
//! way, and takes the write lock only to add the last few (at most
//! [`SWAP_CATCHUP_MAX`] vectors) and swap. It stops between chunks when the engine
//! closes, and a failed rebuild is retried with exponential backoff, not on every write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Catalog, HnswError, IndexHandle};
use crate::projection::Hooks;
use crate::sync::lock;

/// Vectors still to copy at which the rebuild takes the write lock to finish and swap.
pub const SWAP_CATCHUP_MAX: usize = 256;
/// First wait before a failed rebuild is retried; doubled per failure up to the max.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How often the thread checks for shutdown while idle.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Rebuild counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildStats {
    /// Graphs rebuilt and swapped in.
    pub rebuilds: u64,
    /// Rebuilds that failed (the old graph stays in service; retried with backoff).
    pub failures: u64,
    /// Rebuilds stopped part-way because the engine closed.
    pub cancelled: u64,
    /// Whether a rebuild is running now.
    pub running: bool,
}

struct Shared {
    catalog: Arc<Catalog>,
    hooks: Hooks,
    stop: AtomicBool,
    rebuilds: AtomicU64,
    failures: AtomicU64,
    cancelled: AtomicU64,
    running: AtomicBool,
}

type Job = (String, IndexHandle);

pub(crate) struct Rebuilder {
    shared: Arc<Shared>,
    queue: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Rebuilder {
    pub(crate) fn start(catalog: Arc<Catalog>, hooks: Hooks) -> Result<Self, std::io::Error> {
        let shared = Arc::new(Shared {
            catalog,
            hooks,
            stop: AtomicBool::new(false),
            rebuilds: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            running: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("annal-rebuild".into()).spawn(move || run(&shared, &rx))?
        };
        Ok(Self { shared, queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Queue a rebuild (the caller set the index's `rebuild_pending`).
    pub(crate) fn queue(&self, name: &str, handle: &IndexHandle) {
        let sent = lock(&self.queue)
            .as_ref()
            .is_some_and(|tx| tx.send((name.to_owned(), Arc::clone(handle))).is_ok());
        if !sent {
            // Shutting down: the rebuild is simply not done.
            handle.write().rebuild_pending = false;
        }
    }

    pub(crate) fn stats(&self) -> RebuildStats {
        RebuildStats {
            rebuilds: self.shared.rebuilds.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
            cancelled: self.shared.cancelled.load(Ordering::Relaxed),
            running: self.shared.running.load(Ordering::Relaxed),
        }
    }

    /// Stop the thread; a running rebuild stops at its next chunk.
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        lock(&self.queue).take();
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                tracing::error!("rebuild thread panicked");
            }
        }
    }
}

impl Drop for Rebuilder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A failed rebuild waiting for its retry.
struct Retry {
    due: Instant,
    job: Job,
    failures: u32,
}

fn run(shared: &Shared, jobs: &Receiver<Job>) {
    lower_priority();
    let mut retries: Vec<Retry> = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let (job, failures) = if let Some(i) = retries.iter().position(|r| r.due <= now) {
            let retry = retries.swap_remove(i);
            (retry.job, retry.failures)
        } else {
            let wait = retries.iter().map(|r| r.due - now).min().unwrap_or(IDLE_POLL).min(IDLE_POLL);
            match jobs.recv_timeout(wait) {
                Ok(job) => (job, 0),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let (name, handle) = &job;
        let started = Instant::now();
        shared.running.store(true, Ordering::Relaxed);
        let result = rebuild(shared, name, handle);
        shared.running.store(false, Ordering::Relaxed);
        let work = Arc::clone(&handle.read().work);
        work.progress_total.store(0, Ordering::Relaxed);
        work.progress_done.store(0, Ordering::Relaxed);
        match &result {
            Ok(Done::Swapped) => *work.last_error.lock() = None,
            Err(error) => {
                work.failed.fetch_add(1, Ordering::Relaxed);
                *work.last_error.lock() = Some(crate::chain::chain(error));
            }
            Ok(_) => {}
        }
        match result {
            Ok(Done::Swapped) => {
                shared.rebuilds.fetch_add(1, Ordering::Relaxed);
                tracing::info!(index = %name, ms = started.elapsed().as_millis() as u64, "graph rebuilt");
                if again(shared, handle) {
                    retries.push(Retry { due: Instant::now(), job, failures: 0 });
                }
            }
            Ok(Done::Gone) => {
                handle.write().rebuild_pending = false;
            }
            Ok(Done::Redirected) => {
                tracing::info!(index = %name, "graph rebuild abandoned: the config in effect changed");
                // Rebuild for the config in effect now, if the serving graph is not
                // already built with it (a rollback to it cancels the rebuild).
                if again(shared, handle) {
                    retries.push(Retry { due: Instant::now(), job, failures: 0 });
                }
            }
            Ok(Done::Cancelled) => {
                shared.cancelled.fetch_add(1, Ordering::Relaxed);
                handle.write().rebuild_pending = false;
                tracing::info!(index = %name, "graph rebuild stopped: the engine is closing");
            }
            Err(error) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                let failures = failures.saturating_add(1);
                let wait = RETRY_FIRST.saturating_mul(1 << failures.min(16)).min(RETRY_MAX);
                tracing::error!(
                    index = %name,
                    error = %crate::chain::chain(&error),
                    retry_in_s = wait.as_secs(),
                    "graph rebuild failed; the old graph stays"
                );
                // `rebuild_pending` stays set, so writes do not queue it again meanwhile.
                retries.push(Retry { due: Instant::now() + wait, job, failures });
            }
        }
    }
}

/// After a swap: whether the index wants another rebuild at once (many deletes, or a
/// promotion, while this one ran); it then stays pending.
fn again(shared: &Shared, handle: &IndexHandle) -> bool {
    let mut index = handle.write();
    index.rebuild_pending = false;
    let again = index.wants_rebuild() && !shared.stop.load(Ordering::Acquire);
    index.rebuild_pending = again;
    again
}

enum Done {
    Swapped,
    /// The index was dropped or replaced meanwhile.
    Gone,
    /// A promotion or rollback changed the build parameters in effect meanwhile: the
    /// graph being built is for a config no longer wanted.
    Redirected,
    Cancelled,
}

fn rebuild(shared: &Shared, name: &str, handle: &IndexHandle) -> Result<Done, HnswError> {
    // The plan and the empty graph under one guard: a promotion between them could
    // change the quantizer the graph is made from.
    let (params, live_until, watermark, work, mut graph) = {
        let index = handle.read();
        let (params, live_until, watermark) = index.rebuild_plan();
        let graph = index.empty_graph(params.config)?;
        (params, live_until, watermark, Arc::clone(&index.work), graph)
    };
    let mut labels = Vec::new();
    let mut vectors = Vec::new();
    let mut done = 0usize;
    // Below `live_until`: the live vectors; above it: everything, caught up until what
    // is left is small enough to finish under the write lock.
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Ok(Done::Cancelled);
        }
        {
            let index = handle.read();
            if !index.still_wants(&params.config) {
                return Ok(Done::Redirected);
            }
            let len = index.graph_len();
            if done >= live_until && len.saturating_sub(done) <= SWAP_CATCHUP_MAX {
                break;
            }
            let live_only = done < live_until;
            let until = if live_only { live_until } else { len };
            done = index.copy_chunk(done, until, live_only, &mut labels, &mut vectors)?;
            work.progress_done.store(done as u64, Ordering::Relaxed);
            work.progress_total.store(len as u64, Ordering::Relaxed);
        }
        if shared.hooks.fail_rebuild.as_ref().is_some_and(|fail| fail(name)) {
            return Err(HnswError::Native {
                op: "add",
                code: -1,
                message: format!("injected rebuild failure of index {name:?}"),
            });
        }
        graph.add(&labels, &vectors)?;
        work.backfill.fetch_add(labels.len() as u64, Ordering::Relaxed);
        if let Some(hook) = &shared.hooks.backfill_chunk {
            hook(name, done);
        }
    }
    let mut index = handle.write();
    if !shared.catalog.is_current(name, handle) {
        return Ok(Done::Gone);
    }
    if !index.still_wants(&params.config) {
        return Ok(Done::Redirected);
    }
    index.install(graph, done, watermark)?;
    Ok(Done::Swapped)
}

/// Rebuilds (and trial builds) yield the CPU to appends, projection and searches.
pub(crate) fn lower_priority() {
    // SAFETY: setpriority on the calling thread (tid from gettid) has no memory effects.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower rebuild thread priority");
    }
}
