//! Snapshots: the state of every projection at one sequence number, written to the
//! primary bucket as one framed object ([`format`]), so that an open restores it and
//! replays only the events after it.

pub mod format;
mod view;

pub use view::View;
pub(crate) use view::Views;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, EventBody, EventKind, SnapshotTaken};
use crate::log::Log;
use crate::projection::documents::DocumentState;
use crate::projection::journal::ErrorJournal;
use crate::projection::partitions::PartitionState;
use crate::projection::promotions::PromotionState;
use crate::projection::trials::TrialState;
use crate::projection::vectors::{Catalog, VectorProjection};
use crate::projection::{CaptureError, Projector};
use crate::projection::{Hooks, Projection};
use crate::storage::{Storage, PRIMARY};
use crate::sync::lock;

/// Where snapshots live in their bucket.
pub const PREFIX: &str = "snapshots";
/// The actor of snapshots the engine takes on its own (at close).
pub const ENGINE_ACTOR: &str = "annal-engine";

/// The object key of the snapshot at `seq`: zero-padded, so keys sort by sequence.
pub fn key(seq: u64) -> String {
    format!("{PREFIX}/{seq:020}.snap")
}

/// A snapshot taken by [`crate::Engine::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last event it covers.
    pub seq: u64,
    /// The bucket holding it.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
    /// The sequence number of its `SnapshotTaken` event.
    pub event_seq: u64,
    /// How long applying was paused while the projections wrote their state.
    pub paused: Duration,
    /// How long the whole snapshot took (capture, upload, registration).
    pub elapsed: Duration,
}

/// How an open found its starting point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The snapshot used, if any.
    pub snapshot: Option<SnapshotTaken>,
    /// Registered snapshots that could not be used (each is a bucket error event).
    pub skipped: u64,
    /// How long finding, reading and restoring took.
    pub elapsed: Duration,
}

/// The engine's projections, built fresh for one open attempt.
pub(crate) struct Projections {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) vectors: Arc<VectorProjection>,
    pub(crate) journal: Arc<ErrorJournal>,
    pub(crate) promotions: Arc<PromotionState>,
    pub(crate) trials: Arc<TrialState>,
    pub(crate) partitions: Arc<PartitionState>,
    pub(crate) documents: Arc<DocumentState>,
}

impl Projections {
    pub(crate) fn new(hooks: &Hooks) -> Result<Self, Error> {
        let catalog = Arc::new(Catalog::default());
        let documents = Arc::new(DocumentState::default());
        let vectors =
            Arc::new(VectorProjection::new(Arc::clone(&catalog), Arc::clone(&documents), hooks.clone())?);
        Ok(Self {
            catalog,
            vectors,
            journal: Arc::new(ErrorJournal::default()),
            promotions: Arc::new(PromotionState::default()),
            trials: Arc::new(TrialState::default()),
            partitions: Arc::new(PartitionState::default()),
            documents,
        })
    }

    /// Every projection of the engine, in the order each event is applied to them.
    /// Adding a projection is one line here (and its snapshot section follows).
    pub(crate) fn list(&self) -> Vec<Arc<dyn Projection>> {
        vec![
            // Before `vectors`: it decides which embedded vectors `vectors` applies.
            Arc::clone(&self.documents) as Arc<dyn Projection>,
            Arc::clone(&self.vectors) as Arc<dyn Projection>,
            Arc::clone(&self.journal) as Arc<dyn Projection>,
            Arc::clone(&self.promotions) as Arc<dyn Projection>,
            Arc::clone(&self.trials) as Arc<dyn Projection>,
            Arc::clone(&self.partitions) as Arc<dyn Projection>,
        ]
    }
}

/// Run `future` to completion on a fresh single-thread runtime, so a synchronous caller
/// can do storage I/O whether or not it is inside a runtime itself. Outside a runtime
/// the runtime runs on the caller's thread; inside one (where blocking in place would
/// panic or stall its worker) it runs on a thread of its own.
pub fn block_on<F>(future: F) -> Result<F::Output, std::io::Error>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let run =
        || tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(future));
    if tokio::runtime::Handle::try_current().is_err() {
        // A thread per call was a third of the threads the engine started (the
        // engine_ops fuzzer calls it a dozen times per input).
        return run();
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(run);
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Why a registered snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The object does not decode as a snapshot.
    #[error("snapshot {key}: {source}")]
    Format {
        /// Its key.
        key: String,
        /// What is wrong.
        #[source]
        source: format::FormatError,
    },
    /// The object's CRC differs from the one registered.
    #[error("snapshot {key}: CRC-32 {actual:08x} of the object, {expected:08x} registered")]
    Crc {
        /// Its key.
        key: String,
        /// Computed.
        actual: u32,
        /// Registered.
        expected: u32,
    },
    /// The object holds another sequence number than registered.
    #[error("snapshot {key}: covers event {actual}, registered as {expected}")]
    Seq {
        /// Its key.
        key: String,
        /// In the object.
        actual: u64,
        /// Registered.
        expected: u64,
    },
    /// A projection's section is missing.
    #[error("snapshot {key}: has no section for projection {projection:?}")]
    Missing {
        /// Its key.
        key: String,
        /// The projection.
        projection: &'static str,
    },
    /// A projection refused its section.
    #[error("snapshot {key}: restoring {projection:?} failed")]
    Restore {
        /// Its key.
        key: String,
        /// The projection.
        projection: &'static str,
        /// Why.
        #[source]
        source: crate::projection::SnapshotError,
    },
}

/// Find the newest registered snapshot that reads back whole and restores; each one
/// that does not is journaled as a bucket read error and skipped. Returns fresh
/// projections holding the snapshot's state (or empty ones) and what was used.
pub(crate) fn restore(
    log: &Log,
    storage: &Storage,
    hooks: &Hooks,
    candidates: usize,
) -> Result<(Projections, Restored), Error> {
    let started = Instant::now();
    let mut skipped = 0;
    // One registration at a time, newest first: the walk back reads only the log after
    // the snapshot that restores (the common case is the first one).
    for tried in 1..=candidates {
        let mut found = registered(log, tried)?;
        if found.len() < tried {
            break; // every registered snapshot was tried
        }
        let Some((_, taken)) = found.pop() else { break };
        // Bounded by the registered size: an object replaced by a larger one is not
        // buffered whole before its CRC could refuse it.
        let fetched = block_on(storage.get_bounded(ENGINE_ACTOR, &taken.bucket, &taken.key, taken.bytes))?;
        let object = match fetched {
            Ok(fetched) => fetched.bytes,
            // The read failure is journaled by the storage layer (a missing object too:
            // it is registered, so its absence is an error here).
            Err(error) => {
                if let crate::storage::StorageError::NotFound { .. }
                | crate::storage::StorageError::TooLarge { .. } = error
                {
                    record(storage, &taken, &error);
                }
                tracing::warn!(key = taken.key, error = %crate::chain::chain(&error), "snapshot skipped");
                skipped += 1;
                continue;
            }
        };
        let projections = Projections::new(hooks)?;
        match load(&object, &taken, &projections) {
            Ok(()) => {
                tracing::info!(key = taken.key, seq = taken.seq, skipped, "restored a snapshot");
                let restored = Restored { snapshot: Some(taken), skipped, elapsed: started.elapsed() };
                return Ok((projections, restored));
            }
            Err(error) => {
                for p in projections.list() {
                    p.shutdown();
                }
                tracing::warn!(key = taken.key, error = %crate::chain::chain(&error), "snapshot skipped");
                record(storage, &taken, &error);
                skipped += 1;
            }
        }
    }
    let restored = Restored { snapshot: None, skipped, elapsed: started.elapsed() };
    Ok((Projections::new(hooks)?, restored))
}

fn record(storage: &Storage, taken: &SnapshotTaken, error: &(dyn std::error::Error + 'static)) {
    let error = object_store::Error::Generic { store: "snapshot", source: crate::chain::chain(error).into() };
    let recorded = block_on(storage.record_failure(
        ENGINE_ACTOR,
        &taken.bucket,
        crate::event::BucketOp::Read,
        &taken.key,
        &error,
    ));
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not journal a skipped snapshot");
    }
}

pub(crate) fn load(object: &[u8], taken: &SnapshotTaken, projections: &Projections) -> Result<(), Unusable> {
    let key = || taken.key.clone();
    // One pass over the object checks the header, every section and the whole
    // object's CRC against the registration.
    let decoded = format::decode(object).map_err(|source| Unusable::Format { key: key(), source })?;
    if decoded.crc32 != taken.crc32 {
        return Err(Unusable::Crc { key: key(), actual: decoded.crc32, expected: taken.crc32 });
    }
    if decoded.seq != taken.seq {
        return Err(Unusable::Seq { key: key(), actual: decoded.seq, expected: taken.seq });
    }
    for projection in projections.list() {
        let name = projection.name();
        let Some((_, range)) = decoded.sections.iter().find(|(n, _)| n == name) else {
            // Projections added after the first snapshot format: no event of theirs
            // was written before them, so a snapshot without their section holds
            // their (empty) state. The others' state would be lost.
            if SECTIONS_ADDED_LATER.contains(&name) {
                continue;
            }
            return Err(Unusable::Missing { key: key(), projection: name });
        };
        let section = &object[range.clone()];
        projection.restore_snapshot(decoded.seq, section).map_err(|source| Unusable::Restore {
            key: key(),
            projection: name,
            source,
        })?;
    }
    Ok(())
}

/// Sections a snapshot written before their projection existed lacks; restoring such
/// a snapshot leaves those projections empty, which is their state at any point of a
/// log written before them.
const SECTIONS_ADDED_LATER: [&str; 4] = ["promotions", "trials", "partitions", "documents"];

/// The bucket snapshots are written to.
pub(crate) const BUCKET: &str = PRIMARY;

/// The snapshots registered in `log`, newest first, at most `max`, each with the
/// sequence number of its `SnapshotTaken` event.
pub(crate) fn registered(log: &Log, max: usize) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
    Ok(log
        .newest_of_kind(EventKind::SnapshotTaken, max)?
        .into_iter()
        .filter_map(|(seq, event)| match event.body {
            EventBody::SnapshotTaken(taken) => Some((seq, taken)),
            _ => None,
        })
        .collect())
}

/// When snapshots are taken, how many are kept, and whether an open uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Open from the newest usable snapshot (`false`: always replay the whole log).
    pub restore: bool,
    /// Take one at a clean close when events were applied since the last.
    pub on_close: bool,
    /// Take one once this many events were applied since the last (`None`: never on
    /// its own).
    pub every_events: Option<u64>,
    /// Snapshots kept in the bucket; older ones are deleted after a new one is
    /// registered. An open tries at most this many, newest first.
    pub keep: usize,
    /// Log retention: after each snapshot, move the events the oldest kept snapshot
    /// covers out of the log into archive segments in the primary bucket (see
    /// [`crate::archive`]). Off by default.
    pub archive: bool,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self { restore: true, on_close: true, every_events: Some(100_000), keep: 3, archive: false }
    }
}

/// Takes snapshots: on request, when the policy says so (its own thread), at close.
pub(crate) struct Taker {
    projector: Arc<Projector>,
    storage: Arc<Storage>,
    log: Arc<Log>,
    policy: SnapshotPolicy,
    /// The `SnapshotTaken` event of the newest snapshot: events after it are uncovered.
    covered: AtomicU64,
    /// Snapshots this process knows, newest first: the newest registered at open and
    /// those taken since. Pruning works from this list, so it never walks the log.
    known: Mutex<Vec<(u64, SnapshotTaken)>>,
    /// Whether `known` was completed from the log (the registrations of earlier runs,
    /// up to `keep` of them), which the first prune does once.
    known_complete: AtomicBool,
    /// One snapshot at a time (the policy thread and a request may race).
    taking: tokio::sync::Mutex<()>,
    /// Set by [`Taker::stop`]; the policy thread waits on it, so a close does not wait
    /// out a poll interval.
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How often the policy thread looks at the log.
const POLICY_POLL: Duration = Duration::from_millis(500);

impl Taker {
    pub(crate) fn start(
        projector: Arc<Projector>,
        storage: Arc<Storage>,
        log: Arc<Log>,
        policy: SnapshotPolicy,
        newest: Option<(u64, SnapshotTaken)>,
    ) -> Result<Arc<Self>, Error> {
        let covered = newest.as_ref().map_or(0, |(event_seq, _)| *event_seq);
        let every = policy.every_events;
        let taker = Arc::new(Self {
            projector,
            storage,
            log,
            policy,
            covered: AtomicU64::new(covered),
            known: Mutex::new(newest.into_iter().collect()),
            known_complete: AtomicBool::new(false),
            taking: tokio::sync::Mutex::new(()),
            stop: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            thread: Mutex::new(None),
        });
        if let Some(every) = every {
            let weak = Arc::downgrade(&taker);
            let stop = Arc::clone(&taker.stop);
            let thread = std::thread::Builder::new().name("annal-snapshots".into()).spawn(move || loop {
                let (stopped, cv) = &*stop;
                let (stopped, _) = cv
                    .wait_timeout_while(lock(stopped), POLICY_POLL, |stopped| !*stopped)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *stopped {
                    return;
                }
                drop(stopped);
                let Some(taker) = weak.upgrade() else { return };
                let behind =
                    taker.projector.applied_seq().saturating_sub(taker.covered.load(Ordering::Acquire));
                if behind < every.max(1) {
                    continue;
                }
                if let Ok(Err(error)) = block_on(taker.take_if_behind(ENGINE_ACTOR, every)) {
                    tracing::warn!(error = %crate::chain::chain(&error), "scheduled snapshot failed");
                    // Back off: the next try comes after as many events again.
                    taker.covered.store(taker.projector.applied_seq(), Ordering::Release);
                }
            })?;
            *lock(&taker.thread) = Some(thread);
        }
        Ok(taker)
    }

    /// Stop the policy thread.
    pub(crate) fn stop(&self) {
        let (stopped, cv) = &*self.stop;
        *lock(stopped) = true;
        cv.notify_all();
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                tracing::error!("snapshot thread panicked");
            }
        }
    }

    /// Take a snapshot if at least `events` were applied since the newest one.
    pub(crate) async fn take_if_behind(
        &self,
        actor: &str,
        events: u64,
    ) -> Result<Option<SnapshotInfo>, Error> {
        let _one = self.taking.lock().await;
        // Checked under the lock: a snapshot in flight when this was called may have
        // covered the events already.
        let behind = self.projector.applied_seq().saturating_sub(self.covered.load(Ordering::Acquire));
        if behind < events.max(1) {
            return Ok(None);
        }
        self.take_locked(actor).await.map(Some)
    }

    pub(crate) async fn take(&self, actor: &str) -> Result<SnapshotInfo, Error> {
        let _one = self.taking.lock().await;
        self.take_locked(actor).await
    }

    async fn take_locked(&self, actor: &str) -> Result<SnapshotInfo, Error> {
        let started = Instant::now();
        let projector = Arc::clone(&self.projector);
        let captured = tokio::task::spawn_blocking(move || projector.capture())
            .await
            .map_err(Error::Background)?
            .map_err(|e| match e {
                CaptureError::Snapshot(e) => Error::Snapshot(e),
                CaptureError::Projector(e) => Error::Projection(e),
            })?;
        let (seq, paused) = (captured.seq, captured.paused);
        let (chunks, bytes) = format::encode(seq, captured.sections);
        let mut crc = crc32fast::Hasher::new();
        for chunk in &chunks {
            crc.update(chunk);
        }
        let crc32 = crc.finalize();
        let key = key(seq);
        self.storage.put_chunks(actor, BUCKET, &key, chunks).await?;
        // Registered only now that the object is durable in its bucket.
        let taken = SnapshotTaken { seq, bucket: BUCKET.to_owned(), key: key.clone(), bytes, crc32 };
        let event = Event::new(actor, EventBody::SnapshotTaken(taken.clone()));
        let log = Arc::clone(&self.log);
        let appended =
            tokio::task::spawn_blocking(move || log.append(&[event])).await.map_err(Error::Background)??;
        let event_seq = appended.map_or(0, |range| *range.end());
        self.covered.fetch_max(event_seq, Ordering::AcqRel);
        lock(&self.known).insert(0, (event_seq, taken));
        tracing::info!(seq, key, bytes, paused_ms = paused.as_millis() as u64, "snapshot taken");
        self.prune(actor).await;
        if self.policy.archive {
            // A failed archive run costs nothing but log space: the next one retries.
            if let Err(error) = self.archive_locked(actor).await {
                tracing::warn!(error = %crate::chain::chain(&error), "archiving the log failed");
            }
        }
        Ok(SnapshotInfo {
            seq,
            bucket: BUCKET.to_owned(),
            key,
            bytes,
            crc32,
            event_seq,
            paused,
            elapsed: started.elapsed(),
        })
    }

    /// Archive the events the oldest kept snapshot covers (see [`crate::archive`]).
    pub(crate) async fn archive(&self, actor: &str) -> Result<Vec<crate::log::Segment>, Error> {
        let _one = self.taking.lock().await;
        self.complete_known().await?;
        self.archive_locked(actor).await
    }

    async fn archive_locked(&self, actor: &str) -> Result<Vec<crate::log::Segment>, Error> {
        // What the oldest kept snapshot covers (the lowest S: `known` is ordered by
        // registration, and a snapshot taken during a replay may cover less than an
        // older registration), and never past what the projector has applied.
        let Some(covered) = lock(&self.known).iter().map(|(_, taken)| taken.seq).min() else {
            return Ok(Vec::new());
        };
        let upto = covered.min(self.projector.applied_seq());
        let written = crate::archive::archive_through(&self.log, &self.storage, actor, upto).await?;
        // An audit event changes no projection's state: it does not make the newest
        // snapshot stale (else every close would snapshot again after an archive run),
        // unless other events came between.
        let mut covered = self.covered.load(Ordering::Acquire);
        for (_, audit_seq) in &written {
            if *audit_seq == covered + 1 {
                covered = *audit_seq;
            }
        }
        self.covered.fetch_max(covered, Ordering::AcqRel);
        Ok(written.into_iter().map(|(segment, _)| segment).collect())
    }

    /// Complete `known` from the log once: the snapshots earlier runs registered, up to
    /// `keep` of them, so that pruning and archiving see every kept snapshot.
    async fn complete_known(&self) -> Result<(), Error> {
        if self.known_complete.load(Ordering::Acquire) {
            return Ok(());
        }
        let log = Arc::clone(&self.log);
        let keep = self.policy.keep.max(1);
        let from_log = tokio::task::spawn_blocking(move || registered(&log, keep + 1))
            .await
            .map_err(Error::Background)??;
        let mut known = lock(&self.known);
        for entry in from_log {
            if !known.iter().any(|(event_seq, _)| *event_seq == entry.0) {
                known.push(entry);
            }
        }
        known.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        self.known_complete.store(true, Ordering::Release);
        Ok(())
    }

    /// Delete the objects of known snapshots older than the newest `keep`. A failure is
    /// journaled by the storage layer and otherwise ignored.
    async fn prune(&self, actor: &str) {
        if let Err(error) = self.complete_known().await {
            tracing::warn!(error = %crate::chain::chain(&error), "could not list earlier snapshots");
        }
        let keep = self.policy.keep.max(1);
        let old: Vec<(u64, SnapshotTaken)> = {
            let mut known = lock(&self.known);
            if known.len() <= keep {
                return;
            }
            known.split_off(keep)
        };
        let mut failed = Vec::new();
        for entry in old {
            let (_, old) = &entry;
            // Two registrations of one key (a second snapshot at the same S): the kept
            // one's object is the same object.
            if lock(&self.known).iter().any(|(_, kept)| kept.key == old.key && kept.bucket == old.bucket) {
                continue;
            }
            if self.storage.delete(actor, &old.bucket, &old.key).await.is_err() {
                failed.push(entry); // journaled; tried again after the next snapshot
            }
        }
        lock(&self.known).extend(failed);
    }

    /// The snapshots this process knows, newest first.
    pub(crate) fn known(&self) -> Vec<(u64, SnapshotTaken)> {
        lock(&self.known).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{IndexCreated, Metric, VectorItem, VectorsUpserted};

    #[test]
    fn block_on_runs_on_the_callers_thread_outside_a_runtime_and_on_its_own_inside_one() {
        let caller = std::thread::current().id();
        let outside =
            block_on(async { (std::thread::current().id(), tokio::task::yield_now().await) }).unwrap();
        assert_eq!(outside.0, caller, "no thread is started for a caller outside a runtime");

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let inside = runtime.block_on(async {
            // Blocking in place here would panic ("cannot start a runtime from within a
            // runtime"); block_on moves to a thread of its own.
            block_on(async { std::thread::current().id() }).unwrap()
        });
        assert_ne!(inside, caller, "inside a runtime the future runs on another thread");
    }

    /// A snapshot written before the `promotions`, `trials` and `partitions` sections
    /// existed: only `vectors` and `journal`.
    fn old_snapshot() -> (Vec<u8>, SnapshotTaken) {
        let hooks = Hooks::default();
        let old = Projections::new(&hooks).unwrap();
        let created = EventBody::IndexCreated(IndexCreated {
            name: "docs".into(),
            dimension: 2,
            metric: Metric::L2,
            config: crate::event::HnswConfig::default(),
        });
        let item = VectorItem { id: "a".into(), vector: vec![1.0, 2.0], metadata: None, partition: None };
        let upserted =
            EventBody::VectorsUpserted(VectorsUpserted { index: "docs".into(), items: vec![item] });
        for (seq, body) in [created, upserted].into_iter().enumerate() {
            old.vectors.apply(seq as u64 + 1, &Event::new("t", body)).unwrap();
        }
        let mut sections = Vec::new();
        for p in
            [Arc::clone(&old.vectors) as Arc<dyn Projection>, Arc::clone(&old.journal) as Arc<dyn Projection>]
        {
            let mut bytes = Vec::new();
            p.write_snapshot(2, &mut bytes).unwrap();
            sections.push((p.name().to_owned(), bytes));
        }
        for p in old.list() {
            p.shutdown();
        }
        let (chunks, bytes) = format::encode(2, sections);
        let object: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let taken = SnapshotTaken {
            seq: 2,
            bucket: BUCKET.into(),
            key: key(2),
            bytes,
            crc32: crc32fast::hash(&object),
        };
        (object, taken)
    }

    #[test]
    fn a_snapshot_without_the_newer_sections_restores_them_empty() {
        let (object, taken) = old_snapshot();
        let fresh = Projections::new(&Hooks::default()).unwrap();
        load(&object, &taken, &fresh).unwrap();
        assert_eq!(fresh.catalog.names(), ["docs"]);
        assert!(fresh.promotions.list_all().is_empty());
        assert_eq!(fresh.trials.get("docs"), Default::default());
        assert_eq!(fresh.partitions.get("docs"), Default::default());
        assert!(fresh.documents.is_empty());
        for p in fresh.list() {
            p.shutdown();
        }
    }

    #[test]
    fn a_snapshot_without_the_vectors_section_is_refused_naming_it() {
        let (object, mut taken) = old_snapshot();
        let decoded = format::decode(&object).unwrap();
        let journal = decoded.sections.iter().find(|(n, _)| n == "journal").unwrap().1.clone();
        let (chunks, bytes) = format::encode(2, vec![("journal".into(), object[journal].to_vec())]);
        let only_journal: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        taken.bytes = bytes;
        taken.crc32 = crc32fast::hash(&only_journal);
        let fresh = Projections::new(&Hooks::default()).unwrap();
        let refused = load(&only_journal, &taken, &fresh);
        assert!(matches!(refused, Err(Unusable::Missing { projection: "vectors", .. })), "{refused:?}");
        for p in fresh.list() {
            p.shutdown();
        }
    }
}
