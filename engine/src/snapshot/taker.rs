//! Taking snapshots: on request, by the policy thread every N events, and at close;
//! pruning the ones beyond `keep` and, by policy, archiving the log they cover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, EventBody, SnapshotTaken};
use crate::log::Log;
use crate::projection::{CaptureError, Projector};
use crate::storage::Storage;
use crate::sync::{block_on, lock};

use super::{format, key, registered, Sharing, SnapshotInfo, SnapshotPolicy, BUCKET, ENGINE_ACTOR};

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
    /// In a cluster: the schedule follows its snapshot lease, and registrations are
    /// shared.
    sharing: Option<Arc<dyn Sharing>>,
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
        sharing: Option<Arc<dyn Sharing>>,
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
            sharing,
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
                if taker.sharing.as_ref().is_some_and(|sharing| !sharing.schedules()) {
                    continue; // another node of the cluster takes them
                }
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
        // In a cluster every node registers its snapshots in the shared log, each
        // under its own prefix.
        let key = match self.log.snapshot_owner() {
            Some(owner) => super::key_under(&owner, seq),
            None => key(seq),
        };
        self.storage.put_chunks(actor, BUCKET, &key, chunks).await?;
        // Registered only now that the object is durable in its bucket.
        let taken = SnapshotTaken { seq, bucket: BUCKET.to_owned(), key: key.clone(), bytes, crc32 };
        let event = Event::new(actor, EventBody::SnapshotTaken(taken.clone()));
        let log = Arc::clone(&self.log);
        let appended =
            tokio::task::spawn_blocking(move || log.append(&[event])).await.map_err(Error::Background)??;
        let event_seq = appended.map_or(0, |range| *range.end());
        self.covered.fetch_max(event_seq, Ordering::AcqRel);
        if let Some(sharing) = &self.sharing {
            sharing.registered(&taken);
        }
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
        let from_log = tokio::task::spawn_blocking(move || registered(log.as_ref(), keep + 1))
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
            // The cluster's pointer names it: kept, and tried again after the next
            // snapshot (by which time the pointer has moved on).
            if self.sharing.as_ref().is_some_and(|sharing| sharing.protects(&old.key)) {
                failed.push(entry);
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
