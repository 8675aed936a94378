//! The offline log: a data directory's log opened read-only, with its archive.

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::event::SnapshotTaken;
use crate::log::{ReadOnlyLog, Segment, LOG_FILE};
use crate::projection::catch_up;
use crate::snapshot::registered;
use crate::source::EventSource;
use crate::storage::{BucketsConfig, Storage};
use crate::sync::block_on;

use super::{Replay, ReplayError, Skipped, SnapshotReplay, TOOL_ACTOR};

/// Events read per batch from the log.
const READ_BATCH: usize = 1024;
/// Frame bytes read per batch (at least one event is read).
const READ_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// A data directory's log, opened read-only, with its archive segments readable through
/// the buckets.
pub struct OfflineLog {
    source: EventSource<ReadOnlyLog>,
    segments: Vec<Segment>,
}

impl OfflineLog {
    /// Open `data`'s log read-only and its buckets as `buckets` configures them.
    ///
    /// # Errors
    /// The log cannot be opened (missing, held by a running server, needs repair) or a
    /// bucket cannot be opened.
    pub fn open(data: &Path, buckets: &BucketsConfig) -> Result<Self, Error> {
        let log = ReadOnlyLog::open(data.join(LOG_FILE))?;
        let storage = Storage::open_detached(data, buckets)?;
        Self::new(log, storage)
    }

    /// Wrap an already opened log and storage.
    ///
    /// # Errors
    /// The log's segment registry cannot be read.
    pub fn new(log: ReadOnlyLog, storage: Storage) -> Result<Self, Error> {
        let segments = log.segments()?;
        Ok(Self { source: EventSource::new(Arc::new(log), Arc::new(storage)), segments })
    }

    /// The read-only log.
    pub fn log(&self) -> &ReadOnlyLog {
        self.source.log()
    }

    /// The buckets.
    pub fn storage(&self) -> &Storage {
        self.source.storage()
    }

    /// The archive segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first event still readable: the first archived one, else the log's first.
    ///
    /// # Errors
    /// redb failed.
    pub fn first_seq(&self) -> Result<u64, Error> {
        match self.segments.first() {
            Some(s) => Ok(s.first),
            None => Ok(self.log().first_seq()?),
        }
    }

    /// The last event of the log (0 when empty).
    ///
    /// # Errors
    /// redb failed.
    pub fn last_seq(&self) -> Result<u64, Error> {
        Ok(self.log().last_seq()?)
    }

    /// Raw frames from `next` up to `upto` (a batch: call again after the last one
    /// returned), from the log, or from the segment holding `next` when the log no
    /// longer has it. Empty once `next > upto` or past the end of the log.
    ///
    /// # Errors
    /// [`Error::Archive`] when `next` was archived and no readable segment holds it;
    /// the log failed.
    pub fn frames(&self, next: u64, upto: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        Ok(self.source.frames(next, upto, READ_BATCH, READ_BATCH_BYTES)?)
    }

    /// Every snapshot the log registers (`SnapshotTaken` events) up to event `upto`,
    /// oldest first, with the sequence number of its event. Only frames whose kind byte
    /// says `SnapshotTaken` are decoded; one that does not decode is skipped with a
    /// warning (the tools that call this must work on a log whose tail is corrupt).
    ///
    /// # Errors
    /// redb failed.
    pub fn snapshots(&self, upto: u64) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
        let mut out = registered(self.log(), usize::MAX)?;
        out.retain(|(seq, _)| *seq <= upto);
        out.reverse();
        Ok(out)
    }

    /// A registered snapshot's object, read whole (bounded by its registered size).
    ///
    /// # Errors
    /// [`ReplayError::SnapshotRead`].
    pub fn fetch_snapshot(&self, taken: &SnapshotTaken) -> Result<bytes::Bytes, Error> {
        let fetched =
            block_on(self.storage().get_bounded(TOOL_ACTOR, &taken.bucket, &taken.key, taken.bytes))?;
        fetched.map(|f| f.bytes).map_err(|source| {
            ReplayError::SnapshotRead { key: taken.key.clone(), source: Box::new(source) }.into()
        })
    }

    /// The newest registered snapshot at or before `upto` that reads back and restores,
    /// as a [`Replay`] starting there (`None` when there is none), and the newer ones
    /// that could not be used, each with why.
    ///
    /// # Errors
    /// redb failed. Unusable snapshots are reported, not errors.
    pub fn newest_snapshot(&self, upto: u64) -> Result<(Option<SnapshotReplay>, Vec<Skipped>), Error> {
        let candidates = self.snapshots(u64::MAX)?.into_iter().rev().filter(|(_, t)| t.seq <= upto);
        Ok(self.first_usable(candidates.map(|(_, taken)| taken)))
    }

    /// The oldest registered snapshot as of `from` or later that reads back and
    /// restores (where the replay of a log that began from a snapshot at `from` starts),
    /// and the older ones that could not be used, each with why.
    ///
    /// # Errors
    /// redb failed. Unusable snapshots are reported, not errors.
    pub fn oldest_snapshot_from(&self, from: u64) -> Result<(Option<SnapshotReplay>, Vec<Skipped>), Error> {
        let mut candidates: Vec<SnapshotTaken> =
            self.snapshots(u64::MAX)?.into_iter().map(|(_, taken)| taken).filter(|t| t.seq >= from).collect();
        candidates.sort_by_key(|t| t.seq);
        Ok(self.first_usable(candidates.into_iter()))
    }

    /// The first of `candidates` that reads back and restores, and those before it
    /// that could not be used, each with why.
    fn first_usable(
        &self,
        candidates: impl Iterator<Item = SnapshotTaken>,
    ) -> (Option<SnapshotReplay>, Vec<Skipped>) {
        let mut skipped = Vec::new();
        for taken in candidates {
            let attempt =
                self.fetch_snapshot(&taken).and_then(|object| Replay::from_snapshot(&object, &taken));
            match attempt {
                Ok(replay) => return (Some((replay, taken)), skipped),
                Err(error) => {
                    let why = crate::chain::chain(&error);
                    tracing::warn!(key = %taken.key, error = %why, "snapshot skipped");
                    skipped.push(Skipped { snapshot: taken, why });
                }
            }
        }
        (None, skipped)
    }

    /// Apply every event after `replay`'s position up to `upto` (or the log's end),
    /// calling `progress` with the last applied sequence number after each batch.
    ///
    /// # Errors
    /// As [`OfflineLog::frames`] and [`Replay::apply`].
    pub fn replay_into(
        &self,
        replay: &mut Replay,
        upto: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), Error> {
        catch_up(&self.source, &replay.list, &mut replay.applied, upto, progress)
    }
}
