//! Whole-log verification: every checksum, every payload, and density of sequence numbers.

use redb::{ReadableDatabase, ReadableTable};

use super::{events_table, LogError, LogReader};
use crate::event::decode;

/// The first problem `verify` found.
#[derive(Debug)]
pub struct BadEvent {
    /// Sequence number of the first bad event (or of the first missing one).
    pub seq: u64,
    /// What is wrong with it.
    pub error: LogError,
}

/// Result of [`LogReader::verify`].
#[derive(Debug)]
pub struct VerifyReport {
    /// The first event of the log (events before it were removed by retention, or the
    /// log is empty and this is 1; S + 1 for a log that began from a snapshot at S):
    /// the walk checks density from here.
    pub first_seq: u64,
    /// Events that passed before the walk stopped.
    pub events_ok: u64,
    /// The first bad event, if any; the walk stops there.
    pub first_bad: Option<BadEvent>,
}

impl VerifyReport {
    /// Whether the whole log is sound.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

impl LogReader {
    /// Walk the whole log: every frame's checksum and payload are validated and sequence
    /// numbers must run from the first stored one without a gap (the log need not start
    /// at 1: retention removes old events). Runs on a read snapshot, so it does
    /// not block appends (events appended meanwhile are not part of the walk).
    ///
    /// # Errors
    /// Only for storage failures; corruption is reported in [`VerifyReport::first_bad`].
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        verify(&self.shared.db)
    }
}

/// [`LogReader::verify`] over any redb database holding the events table.
pub(crate) fn verify(db: &impl ReadableDatabase) -> Result<VerifyReport, LogError> {
    let txn = db.begin_read()?;
    // A log that began from a snapshot at S must hold S + 1 first.
    let base = super::cursor_value(&txn, super::BASE_SEQ_KEY)?;
    let Some(table) = events_table(&txn)? else {
        return Ok(VerifyReport { first_seq: base + 1, events_ok: 0, first_bad: None });
    };
    let first_seq = match base {
        0 => table.first()?.map_or(1, |(k, _)| k.value()),
        base => base + 1,
    };
    let mut expected = first_seq;
    for entry in table.iter()? {
        let (key, value) = entry?;
        let seq = key.value();
        if seq != expected {
            let error = LogError::Gap { expected, found: seq };
            return Ok(VerifyReport {
                first_seq,
                events_ok: expected - first_seq,
                first_bad: Some(BadEvent { seq: expected, error }),
            });
        }
        if let Err(e) = decode(seq, value.value()) {
            let error = LogError::Frame(e);
            return Ok(VerifyReport {
                first_seq,
                events_ok: expected - first_seq,
                first_bad: Some(BadEvent { seq, error }),
            });
        }
        expected += 1;
    }
    Ok(VerifyReport { first_seq, events_ok: expected - first_seq, first_bad: None })
}
