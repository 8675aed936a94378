//! Readers: MVCC read transactions, so they never block the writer.

use std::ops::RangeInclusive;
use std::time::Duration;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use std::sync::Arc;

use super::shared::Shared;
use super::{events_table, first_stored_seq, LogError};
use crate::event::{decode, Event, EventKind};

/// A read-only handle on a [`super::Log`]: every read, no way to append. Cheap to clone;
/// this is what the engine hands out, so nothing outside the engine can append a frame
/// that skipped validation.
#[derive(Clone)]
pub struct LogReader {
    pub(crate) shared: Arc<Shared>,
}

impl LogReader {
    /// End every tailing wait ([`LogReader::tail_budget`] and friends) now: they return
    /// what is committed, possibly nothing. For a tailer with something else to do
    /// (a snapshot capture, a stop) that would otherwise wait out its poll interval.
    pub fn wake_tails(&self) {
        self.shared.wake_tails();
    }

    /// Whether the log was closed (no event will be appended any more).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Wait until `done()` holds, checked now and at each [`LogReader::wake_tails`], or
    /// `timeout` passes, even on a closed log (where tails return at once).
    pub(crate) fn wait_woken(&self, timeout: std::time::Duration, done: impl Fn() -> bool) {
        self.shared.wait_woken(timeout, done);
    }

    /// Highest committed sequence number (0 for an empty log; S for an empty log that
    /// began from a snapshot at S).
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq()
    }

    /// For a log copying a replicated stream: the stream sequence number of the last
    /// message copied (0 for none, or for a log of its own).
    pub fn stream_seq(&self) -> u64 {
        self.shared.stream_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// For a log copying a replicated stream: the stream message local event `seq`
    /// came from, how many of its frames are at or before `seq`, and how many it holds
    /// (`None` for an event not copied from a stream, or older than the log).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn stream_position(&self, seq: u64) -> Result<Option<(u64, u64, u64)>, LogError> {
        super::stream_position(&self.shared.db.begin_read()?, seq)
    }

    /// For a log that began from a snapshot: that snapshot's sequence number S, the
    /// event before its first (0 for any other log).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn base_seq(&self) -> Result<u64, LogError> {
        super::cursor_value(&self.shared.db.begin_read()?, super::BASE_SEQ_KEY)
    }

    /// For a log that began from a snapshot: that snapshot's registration, an event
    /// frame of a `SnapshotTaken`.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn bootstrap_record(&self) -> Result<Option<Vec<u8>>, LogError> {
        super::bootstrap_record(&self.shared.db.begin_read()?)
    }

    /// For a log copying a replicated stream: the last event another node published
    /// that changes the command-side schema (0: none since open).
    pub fn foreign_guard_seq(&self) -> u64 {
        self.shared.foreign_guard.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wait until the copy reaches stream sequence `stream_seq` (or `timeout` passes,
    /// or the log closes); returns the stream position then.
    pub fn wait_stream_seq(&self, stream_seq: u64, timeout: Duration) -> u64 {
        self.shared.wait_woken(timeout, || self.stream_seq() >= stream_seq || self.shared.is_closed());
        self.stream_seq()
    }

    /// Wait until event `seq` is committed (or `timeout` passes, or the log closes);
    /// returns the last sequence number then.
    pub fn wait_seq(&self, seq: u64, timeout: Duration) -> u64 {
        self.shared.wait_woken(timeout, || self.shared.last_seq() >= seq || self.shared.is_closed());
        self.shared.last_seq()
    }

    /// Lowest stored sequence number: 1, unless retention removed older events (then
    /// only a snapshot covers them), or the log began from a snapshot at S (then S + 1).
    /// 1 for an empty log of its own.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn first_seq(&self) -> Result<u64, LogError> {
        first_stored_seq(&self.shared.db.begin_read()?)
    }

    /// Number of events stored.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn count(&self) -> Result<u64, LogError> {
        let txn = self.shared.db.begin_read()?;
        let Some(table) = events_table(&txn)? else { return Ok(0) };
        Ok(table.len()?)
    }

    /// Read one event.
    ///
    /// # Errors
    /// [`LogError::Frame`] naming `seq` if the stored event is corrupt;
    /// `Ok(None)` if there is no such event.
    pub fn read(&self, seq: u64) -> Result<Option<Event>, LogError> {
        let txn = self.shared.db.begin_read()?;
        let Some(table) = events_table(&txn)? else { return Ok(None) };
        let Some(frame) = table.get(seq)? else { return Ok(None) };
        Ok(Some(decode(seq, frame.value())?))
    }

    /// Read the events in `range` (clamped to what exists), in order, at most `max`.
    ///
    /// # Errors
    /// [`LogError::Frame`] naming the first corrupt event in the range.
    pub fn read_range(&self, range: RangeInclusive<u64>, max: usize) -> Result<Vec<(u64, Event)>, LogError> {
        self.scan(range, max, usize::MAX, |seq, frame| Ok((seq, decode(seq, frame)?)))
    }

    /// Read the raw frames in `range`, at most `max`, without decoding them.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn read_frames(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.read_frames_budget(range, max, usize::MAX)
    }

    /// [`LogReader::read_frames`] that also stops once `max_bytes` of frames are read
    /// (after at least one).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn read_frames_budget(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.scan(range, max, max_bytes, |seq, frame| Ok((seq, frame.to_vec())))
    }

    /// The archive segments registered, oldest first: the events before
    /// [`LogReader::first_seq`] live in them.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails; [`LogError::ArchiveRecord`] if a
    /// registration is corrupt.
    pub fn segments(&self) -> Result<Vec<super::Segment>, LogError> {
        super::archive::segments(&self.shared.db.begin_read()?)
    }

    /// Wait until event `from` exists (or `timeout` passes), then read from it onwards,
    /// at most `max` events. Returns an empty vector on timeout.
    ///
    /// # Errors
    /// As [`Log::read_range`].
    pub fn tail(&self, from: u64, timeout: Duration, max: usize) -> Result<Vec<(u64, Event)>, LogError> {
        self.tail_budget(from, timeout, max, usize::MAX)
    }

    /// [`Log::tail`] that also stops once `max_bytes` of frames are read (after at
    /// least one event), to bound the memory of a batch of large events.
    ///
    /// # Errors
    /// As [`Log::read_range`].
    pub fn tail_budget(
        &self,
        from: u64,
        timeout: Duration,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, LogError> {
        let last = self.shared.wait_for(from, timeout);
        if last < from {
            return Ok(Vec::new());
        }
        self.scan(from..=last, max, max_bytes, |seq, frame| Ok((seq, decode(seq, frame)?)))
    }

    /// The newest frames of `kind`, newest first, at most `max` (see
    /// [`newest_frames_of_kind`]).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub(crate) fn newest_frames_of_kind(
        &self,
        kind: EventKind,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        newest_frames_of_kind(&self.shared.db.begin_read()?, kind, max)
    }

    fn scan<T>(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
        each: impl FnMut(u64, &[u8]) -> Result<T, LogError>,
    ) -> Result<Vec<T>, LogError> {
        scan(&self.shared.db, range, max, max_bytes, each)
    }
}

/// Read the frames in `range`, at most `max` of them and, after the first, at most
/// `max_bytes` in all, passing each to `each`.
pub(crate) fn scan<T>(
    db: &impl ReadableDatabase,
    range: RangeInclusive<u64>,
    max: usize,
    max_bytes: usize,
    mut each: impl FnMut(u64, &[u8]) -> Result<T, LogError>,
) -> Result<Vec<T>, LogError> {
    let txn = db.begin_read()?;
    let Some(table) = events_table(&txn)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for entry in table.range(range)?.take(max) {
        let (key, value) = entry?;
        let frame = value.value();
        if !out.is_empty() && bytes.saturating_add(frame.len()) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(frame.len());
        out.push(each(key.value(), frame)?);
    }
    Ok(out)
}

/// The newest frames of `kind`, newest first, at most `max`: a backward walk that reads
/// only each frame's kind byte, so finding the latest snapshot costs a key walk, not a
/// decode of the log. Frames are not decoded (a caller decides what a corrupt one
/// means).
pub(super) fn newest_frames_of_kind(
    txn: &ReadTransaction,
    kind: EventKind,
    max: usize,
) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let Some(table) = events_table(txn)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in table.iter()?.rev() {
        if out.len() >= max {
            break;
        }
        let (key, value) = entry?;
        let frame = value.value();
        if frame.get(1) == Some(&(kind as u8)) {
            out.push((key.value(), frame.to_vec()));
        }
    }
    Ok(out)
}
