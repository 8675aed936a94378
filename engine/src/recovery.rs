//! Recovery at open: the state of a data directory rebuilt from its newest usable
//! snapshot and the events after it, read from the log or its archive. One function,
//! [`recover`], decides where the projections start; every case it meets is below,
//! each with the test that pins it (docs/ARCHITECTURE.md, "Recovery", points here).
//!
//! | case at open | what happens | test (engine/tests/it) |
//! |---|---|---|
//! | no usable snapshot, or `restore: false` | empty projections, replay from event 1 | `snapshot::open_from_a_snapshot_plus_later_events_is_exactly_the_state_of_a_full_replay` |
//! | newest snapshot reads back and restores | its state, replay from S + 1 | same test |
//! | newest object missing, torn, CRC or sequence wrong, a section does not restore | journaled as a bucket read error, the next older one tried (at most `keep`) | `snapshot::a_broken_newest_snapshot_falls_back_to_the_one_before_records_one_error_and_loses_nothing` |
//! | every registered snapshot unusable | empty projections, replay from event 1 | `snapshot::with_every_snapshot_broken_the_open_replays_the_whole_log` |
//! | a kill while a snapshot was written | the object is not registered; the previous one is used | `snapshot::a_kill_while_a_snapshot_is_written_leaves_the_previous_one_in_use_and_nothing_half_registered` |
//! | events before the log's first were archived, segments cover them | the projector reads them back from their segments first | `archive::archived_events_leave_the_log_and_every_open_and_time_travel_reads_them_back` |
//! | a damaged segment the open needs | the projector stops naming the segment; an open from a newer snapshot does not read it | `archive::a_damaged_archive_segment_fails_verify_and_a_replay_that_needs_it_but_not_an_open_from_a_snapshot` |
//! | events removed and no snapshot or segment covers them | [`Error::LogTruncated`]; nothing starts | `log_durability::an_engine_refuses_a_log_whose_early_events_no_snapshot_covers` |
//! | events removed, a snapshot covers them | open from the snapshot | `log_durability::an_engine_opens_a_log_whose_removed_events_a_snapshot_covers` |
//! | torn tail of the log (a crash mid-commit) | redb's recovery: the last committed transaction ends the log | `log_durability::a_crash_in_deferred_mode_leaves_a_consistent_prefix_of_the_log` |
//! | a corrupt frame in the log | the projector stops naming its sequence number | `vectors::open_refuses_a_log_with_a_corrupt_event_and_names_its_sequence_number` |

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::SnapshotTaken;
use crate::log::Log;
use crate::projection::{Hooks, Projection, Projections, Projector};
use crate::snapshot::{load, registered, ENGINE_ACTOR};
use crate::source::EventSource;
use crate::storage::Storage;
use crate::sync::block_on;

/// Where an open starts: the projections (restored or empty), what was restored, and
/// the projector applying the events after it.
pub(crate) struct Recovered {
    pub(crate) projections: Projections,
    pub(crate) restored: Restored,
    pub(crate) projector: Arc<Projector>,
}

/// Restore the newest usable snapshot (when `restore_snapshots`; else none), check
/// that the log or its archive holds every event after it, and start the projector
/// there. Returns at once: the projector catches up in the background.
///
/// # Errors
/// [`Error::LogTruncated`] when events after the snapshot are neither in the log nor
/// in a segment; the log or FAISS failed.
pub(crate) fn recover(
    source: &Arc<EventSource<Log>>,
    hooks: &Hooks,
    restore_snapshots: bool,
    candidates: usize,
    fetched: Option<Fetched>,
) -> Result<Recovered, Error> {
    let log = source.log();
    let (projections, restored) = if restore_snapshots {
        restore(log, source.storage(), hooks, candidates, fetched)?
    } else {
        (Projections::new(hooks)?, Restored::default())
    };
    let from = restored.snapshot.as_ref().map_or(1, |s| s.seq + 1);
    let started = (|| {
        let first_seq = log.first_seq()?;
        // Events before the log's first were archived: the segments must hold them.
        if first_seq > from && !source.covers(from)? {
            return Err(Error::LogTruncated { first_seq });
        }
        let list: Vec<Arc<dyn Projection>> = projections.list();
        Ok(Projector::start(Arc::clone(source), list, from, hooks.clone())?)
    })();
    match started {
        Ok(projector) => Ok(Recovered { projections, restored, projector: Arc::new(projector) }),
        // Nothing will use them: stop their background work (rebuilds) now.
        Err(error) => {
            projections.shutdown();
            Err(error)
        }
    }
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

/// Find the newest registered snapshot that reads back whole and restores; each one
/// that does not is journaled as a bucket read error and skipped. Returns fresh
/// projections holding the snapshot's state (or empty ones) and what was used.
fn restore(
    log: &Log,
    storage: &Storage,
    hooks: &Hooks,
    candidates: usize,
    mut fetched: Option<Fetched>,
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
        // The object a bootstrap fetched a moment ago is not read again.
        let read_already = fetched.take_if(|f| f.bucket == taken.bucket && f.key == taken.key);
        // Bounded by the registered size: an object replaced by a larger one is not
        // buffered whole before its CRC could refuse it.
        let fetched_now = match read_already {
            Some(read) => Ok(crate::storage::Fetched { bytes: read.bytes, rescued_by: None }),
            None => block_on(storage.get_bounded(ENGINE_ACTOR, &taken.bucket, &taken.key, taken.bytes))?,
        };
        let object = match fetched_now {
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
                projections.shutdown();
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

/// A snapshot object read before the open restores it (by a bootstrap).
pub(crate) struct Fetched {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) bytes: bytes::Bytes,
}

/// For a replica that starts empty: fetch the cluster's newest shared snapshot named by
/// `pointer` from its bucket (configured in `buckets` on this node too), check it
/// against the pointer, and keep a copy under this node's own key prefix `owner` (the
/// node that took it prunes its own); returns the copy's registration, which the open
/// then restores as it restores any snapshot, and the object (so that it is not read
/// again).
///
/// # Errors
/// The bucket is not configured here, the object cannot be read or does not match
/// the pointer, or the copy cannot be written.
pub(crate) fn fetch_for_bootstrap(
    data_dir: &std::path::Path,
    buckets: &crate::storage::BucketsConfig,
    pointer: &crate::cluster::SnapshotPointer,
    owner: &str,
) -> Result<(SnapshotTaken, Fetched), Box<dyn std::error::Error + Send + Sync>> {
    // A local bucket of the same name is this node's own directory, not the one the
    // snapshot was written to.
    if !buckets.is_s3(&pointer.bucket) {
        return Err(format!(
            "bucket {:?} is not an S3 bucket on this node: give every node the shared snapshot bucket in its --buckets-config",
            pointer.bucket
        )
        .into());
    }
    let storage = Storage::open_detached(data_dir, buckets)?;
    let taken = pointer.taken();
    let fetched = block_on(storage.get_bounded(ENGINE_ACTOR, &taken.bucket, &taken.key, taken.bytes))??;
    crate::snapshot::check(&fetched.bytes, &taken)?;
    let key = crate::snapshot::key_under(owner, taken.seq);
    block_on(storage.put(ENGINE_ACTOR, &taken.bucket, &key, fetched.bytes.clone()))??;
    let read = Fetched { bucket: taken.bucket.clone(), key: key.clone(), bytes: fetched.bytes };
    Ok((SnapshotTaken { key, ..taken }, read))
}
