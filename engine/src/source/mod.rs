//! The one event source: the events from sequence number S on, read from the log while
//! it holds them and from its archive segments once retention moved them out.
//!
//! Every reader of the log's events goes through here: the projector (catching up at
//! open and tailing), time-travel views, offline replay and the tools
//! ([`crate::OfflineLog`]). What it guarantees to all of them: a batch starts exactly at
//! the event asked for and is dense, or the call fails naming the first event it could
//! not read; it never skips an event and never returns one twice.
//!
//! An archive run may move events out of the log between two reads (archived events
//! never come back), so a log read that comes back starting after the event asked for
//! is answered from the segment that now holds it.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::archive::{self, ArchiveError};
use crate::event::{decode, Event, EventKind};
use crate::log::{Log, LogError, LogReader, ReadOnlyLog, Segment};
use crate::storage::Storage;

mod error;

pub use error::SourceError;

/// What the source needs of a log: the live one ([`Log`]) or one opened read-only
/// ([`ReadOnlyLog`]) by tooling.
pub(crate) trait LogFrames: Send + Sync {
    /// The first event the log holds (the one after the last archived).
    fn first_seq(&self) -> Result<u64, LogError>;
    /// The last event appended (0 when empty).
    fn last_seq(&self) -> Result<u64, LogError>;
    /// The archive segments, oldest first.
    fn segments(&self) -> Result<Vec<Segment>, LogError>;
    /// In a cluster, the key prefix of the snapshots this node took: the only
    /// registrations (of every node's, in the shared log) it restores from or prunes.
    fn snapshot_owner(&self) -> Option<String> {
        None
    }
    /// For a log that began from a snapshot (a replica bootstrapped from its cluster's
    /// newest one): that snapshot's registration, an event frame.
    fn bootstrap_record(&self) -> Result<Option<Vec<u8>>, LogError> {
        Ok(None)
    }
    /// The newest frames of `kind`, newest first, at most `max`.
    fn newest_frames_of_kind(&self, kind: EventKind, max: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError>;
    /// Frames in `range`, at most `max` of them and about `max_bytes` (at least one).
    fn frames(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError>;
}

impl LogFrames for Log {
    fn snapshot_owner(&self) -> Option<String> {
        Log::snapshot_owner(self)
    }

    fn bootstrap_record(&self) -> Result<Option<Vec<u8>>, LogError> {
        LogReader::bootstrap_record(self)
    }

    fn newest_frames_of_kind(&self, kind: EventKind, max: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        LogReader::newest_frames_of_kind(self, kind, max)
    }
    fn first_seq(&self) -> Result<u64, LogError> {
        LogReader::first_seq(self)
    }
    fn last_seq(&self) -> Result<u64, LogError> {
        Ok(LogReader::last_seq(self))
    }
    fn segments(&self) -> Result<Vec<Segment>, LogError> {
        LogReader::segments(self)
    }
    fn frames(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.read_frames_budget(range, max, max_bytes)
    }
}

impl LogFrames for ReadOnlyLog {
    fn snapshot_owner(&self) -> Option<String> {
        // A log whose file cannot say is treated as a log of its own.
        ReadOnlyLog::snapshot_owner(self).ok().flatten()
    }
    fn bootstrap_record(&self) -> Result<Option<Vec<u8>>, LogError> {
        ReadOnlyLog::bootstrap_record(self)
    }
    fn newest_frames_of_kind(&self, kind: EventKind, max: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        ReadOnlyLog::newest_frames_of_kind(self, kind, max)
    }
    fn first_seq(&self) -> Result<u64, LogError> {
        ReadOnlyLog::first_seq(self)
    }
    fn last_seq(&self) -> Result<u64, LogError> {
        ReadOnlyLog::last_seq(self)
    }
    fn segments(&self) -> Result<Vec<Segment>, LogError> {
        ReadOnlyLog::segments(self)
    }
    fn frames(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.read_frames_budget(range, max, max_bytes)
    }
}

/// A log and the bucket its archive segments are in.
pub(crate) struct EventSource<L> {
    log: Arc<L>,
    storage: Arc<Storage>,
    /// Set while [`EventSource::tail`] (the projector's one thread) reads a segment: a
    /// bucket error met there is journaled by an event the projector cannot apply
    /// until the read ends, so the journal must not wait for it. Views and offline
    /// reads do not set it: the projector is free to apply their errors.
    reading_archive: AtomicBool,
}

impl<L: LogFrames> EventSource<L> {
    pub(crate) fn new(log: Arc<L>, storage: Arc<Storage>) -> Self {
        Self { log, storage, reading_archive: AtomicBool::new(false) }
    }

    pub(crate) fn log(&self) -> &L {
        &self.log
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Whether the projector is reading a segment right now.
    pub(crate) fn reading_archive(&self) -> bool {
        self.reading_archive.load(Ordering::Acquire)
    }

    /// The frames from `next` (the first one returned is `next`) up to `upto`: at most
    /// `max` events and about `max_bytes` from the log while it holds `next`, else the
    /// rest of the segment that holds it. Empty once `next > upto` or `next` is past the
    /// log's last event.
    ///
    /// # Errors
    /// [`SourceError::Archive`] when `next` was archived and no readable segment holds
    /// it; [`SourceError::Log`] when the log fails.
    pub(crate) fn frames(
        &self,
        next: u64,
        upto: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        Ok(self.read(next, upto, max, max_bytes)?.frames)
    }

    /// As [`EventSource::frames`], decoded.
    ///
    /// # Errors
    /// As [`EventSource::frames`]; a frame that does not decode.
    pub(crate) fn events(
        &self,
        next: u64,
        upto: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SourceError> {
        self.read(next, upto, max, max_bytes)?.decode(next)
    }

    fn read(&self, next: u64, upto: u64, max: usize, max_bytes: usize) -> Result<Batch, SourceError> {
        if next > upto {
            return Ok(Batch::default());
        }
        let log = |source| SourceError::Log { seq: next, source };
        if next >= self.log.first_seq().map_err(log)? {
            let mut frames = self.log.frames(next..=upto, max, max_bytes).map_err(log)?;
            // Dense, or cut at the first gap: the next read starts there and names it.
            if let Some(gap) = frames.windows(2).position(|w| w[1].0 != w[0].0 + 1) {
                frames.truncate(gap + 1);
            }
            let batch = Batch { frames, segment: None };
            match batch.frames.first() {
                Some((first, _)) if *first == next => return Ok(batch),
                // The log holds later events but not `next`: an archive run moved it
                // meanwhile (a segment holds it), or the log has a gap there.
                Some((found, _)) if !self.is_archived(next)? => {
                    return Err(SourceError::Missing { seq: next, found: *found });
                }
                Some(_) => {}
                // Past the end, unless `next` was archived meanwhile.
                None if next >= self.log.first_seq().map_err(log)? => return Ok(batch),
                None => {}
            }
        }
        self.archived(next, upto, false)
    }

    /// Whether archive segments hold every event from `from` up to the log's first.
    ///
    /// # Errors
    /// The log (or its segment registry) failed.
    pub(crate) fn covers(&self, from: u64) -> Result<bool, SourceError> {
        let log = |source| SourceError::Log { seq: from, source };
        let first_stored = self.log.first_seq().map_err(log)?;
        let mut next = from;
        for segment in self.log.segments().map_err(log)? {
            if next >= first_stored {
                break;
            }
            if segment.last < next {
                continue;
            }
            if segment.first > next {
                return Ok(false);
            }
            next = segment.last + 1;
        }
        Ok(next >= first_stored)
    }

    /// Whether a registered segment holds `seq`.
    fn is_archived(&self, seq: u64) -> Result<bool, SourceError> {
        let segments = self.log.segments().map_err(|source| SourceError::Log { seq, source })?;
        Ok(segments.iter().any(|s| s.first <= seq && seq <= s.last))
    }

    /// The frames of the segment holding `next`, from it up to `upto`.
    fn archived(&self, next: u64, upto: u64, projector: bool) -> Result<Batch, SourceError> {
        let archive = |source| SourceError::Archive { seq: next, source: Box::new(source) };
        let segments = self.log.segments().map_err(|e| archive(ArchiveError::Log(e)))?;
        let segment = segments
            .into_iter()
            .find(|s| s.first <= next && next <= s.last)
            .ok_or_else(|| archive(ArchiveError::Missing { seq: next }))?;
        if projector {
            self.reading_archive.store(true, Ordering::Release);
        }
        let read = archive::read_segment(&self.storage, &segment);
        if projector {
            self.reading_archive.store(false, Ordering::Release);
        }
        let mut frames = read.map_err(archive)?;
        frames.retain(|(seq, _)| *seq >= next && *seq <= upto);
        Ok(Batch { frames, segment: Some(segment.key) })
    }
}

impl EventSource<Log> {
    /// The events from `next` on, waiting up to `timeout` for `next` to be appended
    /// (the projector's tail): at most `max` events and about `max_bytes`. Empty when
    /// nothing came in time.
    ///
    /// # Errors
    /// As [`EventSource::events`].
    pub(crate) fn tail(
        &self,
        next: u64,
        timeout: Duration,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SourceError> {
        let log = |source| SourceError::Log { seq: next, source };
        let events = self.log.tail_budget(next, timeout, max, max_bytes).map_err(log)?;
        match events.first() {
            // The log starts after `next`: it was archived (before this open, or by a
            // run that overtook this thread), so its segment holds it; else a gap.
            Some((seq, _)) if *seq > next && self.is_archived(next)? => {
                self.archived(next, seq - 1, true)?.decode(next)
            }
            Some((seq, _)) if *seq > next => Err(SourceError::Missing { seq: next, found: *seq }),
            _ => Ok(events),
        }
    }
}

/// Frames read in one go, and the segment they came from (`None`: the log).
#[derive(Default)]
struct Batch {
    frames: Vec<(u64, Vec<u8>)>,
    segment: Option<String>,
}

impl Batch {
    /// Decode every frame; one that does not decode is reported as the place it came
    /// from (the log, or the segment's key).
    fn decode(self, next: u64) -> Result<Vec<(u64, Event)>, SourceError> {
        let Batch { frames, segment } = self;
        frames
            .into_iter()
            .map(|(seq, frame)| match (decode(seq, &frame), &segment) {
                (Ok(event), _) => Ok((seq, event)),
                (Err(source), Some(key)) => Err(SourceError::Archive {
                    seq: next,
                    source: Box::new(ArchiveError::Frame { key: key.clone(), source }),
                }),
                (Err(source), None) => Err(SourceError::Log { seq: next, source: LogError::Frame(source) }),
            })
            .collect()
    }
}
