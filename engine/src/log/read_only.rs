//! A read-only view of a log file, for tooling (`annal verify`, `annal events`): it
//! never writes, not even the repair redb does on a normal open after a crash.

use std::ops::RangeInclusive;
use std::path::Path;

use redb::{ReadOnlyDatabase, ReadableDatabase};

use super::reader::scan;
use super::verify::verify;
use super::{first_stored_seq, last_stored_seq, LogError, VerifyReport};
use crate::event::{decode, Event};

/// Frame bytes one read returns at most (after its first event): tools page through a
/// log of large events without holding many of them at once.
const READ_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A log opened read-only. A file that needs repair (left by a crash) is refused
/// rather than repaired: open it once with [`super::Log::open`] (or start the server)
/// to repair it.
pub struct ReadOnlyLog {
    db: ReadOnlyDatabase,
}

impl ReadOnlyLog {
    /// Open the log file at `path` without modifying it.
    ///
    /// # Errors
    /// [`LogError::Storage`] if the file is missing, locked by a writer, or needs repair.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        Ok(Self { db: redb::Builder::new().open_read_only(path)? })
    }

    /// For the copy of a replicated stream: the key prefix of the snapshots this node
    /// took (the only ones its offline tools restore from); `None` for a log of its own.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn snapshot_owner(&self) -> Result<Option<String>, LogError> {
        super::recorded(&self.db.begin_read()?, super::OWNER_KEY)
    }

    /// For a log that began from a snapshot: that snapshot's registration, an event
    /// frame of a `SnapshotTaken`.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn bootstrap_record(&self) -> Result<Option<Vec<u8>>, LogError> {
        super::bootstrap_record(&self.db.begin_read()?)
    }

    /// Highest stored sequence number (0 for an empty log; S for an empty log that began
    /// from a snapshot at S).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn last_seq(&self) -> Result<u64, LogError> {
        last_stored_seq(&self.db.begin_read()?)
    }

    /// Lowest stored sequence number (1 for an empty log; S + 1 for a log that began
    /// from a snapshot at S).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn first_seq(&self) -> Result<u64, LogError> {
        first_stored_seq(&self.db.begin_read()?)
    }

    /// As [`super::LogReader::read_range`].
    ///
    /// # Errors
    /// [`LogError::Frame`] naming the first corrupt event in the range.
    pub fn read_range(&self, range: RangeInclusive<u64>, max: usize) -> Result<Vec<(u64, Event)>, LogError> {
        scan(&self.db, range, max, READ_BYTES_MAX, |seq, frame| Ok((seq, decode(seq, frame)?)))
    }

    /// Raw frames (checked by the caller with [`crate::event::check`]), at most `max`.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn read_frames(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.read_frames_budget(range, max, READ_BYTES_MAX)
    }

    /// Raw frames in `range`: at most `max` of them and about `max_bytes` (at least one,
    /// and never over the read bound of a tool).
    ///
    /// # Errors
    /// redb failed.
    pub fn read_frames_budget(
        &self,
        range: RangeInclusive<u64>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        scan(&self.db, range, max, max_bytes.min(READ_BYTES_MAX), |seq, frame| Ok((seq, frame.to_vec())))
    }

    /// The newest frames of `kind`, newest first, at most `max`.
    ///
    /// # Errors
    /// redb failed.
    pub(crate) fn newest_frames_of_kind(
        &self,
        kind: crate::event::EventKind,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        super::reader::newest_frames_of_kind(&self.db.begin_read()?, kind, max)
    }

    /// As [`super::LogReader::segments`].
    ///
    /// # Errors
    /// As [`super::LogReader::segments`].
    pub fn segments(&self) -> Result<Vec<super::Segment>, LogError> {
        super::archive::segments(&self.db.begin_read()?)
    }

    /// As [`super::LogReader::verify`].
    ///
    /// # Errors
    /// Only for storage failures; corruption is reported in the report.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        verify(&self.db)
    }
}
