//! Reading segments back whole: for tooling and for `annal verify`.

use bytes::Bytes;

use crate::event::decode;
use crate::log::Segment;
use crate::storage::Storage;
use crate::sync::block_on;

use super::segment::{check_range, split, ENGINE_ACTOR};
use super::ArchiveError;

/// The frames of a registered segment, exactly as the log held them (not decoded),
/// after checking the object's CRC against its registration and its range: what
/// tooling reads to replay or copy archived events.
///
/// # Errors
/// A bucket, CRC or format failure of the segment.
pub fn read_segment(storage: &Storage, segment: &Segment) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError> {
    let object = fetch(storage, segment)?;
    let frames = split(&segment.key, &object)?;
    check_range(segment, &frames)?;
    Ok(frames.into_iter().map(|(seq, frame)| (seq, frame.to_vec())).collect())
}

/// A segment's object, read whole (bounded by its registered size) and checked
/// against its registered CRC.
pub(crate) fn fetch(storage: &Storage, segment: &Segment) -> Result<Bytes, ArchiveError> {
    let storage_err = |source| ArchiveError::Storage { key: segment.key.clone(), source: Box::new(source) };
    let fetched = block_on(storage.get_bounded(ENGINE_ACTOR, &segment.bucket, &segment.key, segment.bytes))?
        .map_err(storage_err)?;
    let object = fetched.bytes;
    let actual = crc32fast::hash(&object);
    if actual != segment.crc32 {
        return Err(ArchiveError::Crc { key: segment.key.clone(), actual, expected: segment.crc32 });
    }
    Ok(object)
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct ArchiveReport {
    /// Segments registered.
    pub segments: u64,
    /// Archived events whose frames passed (CRC and payload).
    pub events_ok: u64,
    /// The first problem, if any; the walk stops there.
    pub first_bad: Option<ArchiveError>,
}

/// Check every registered segment: read back whole, CRC as registered, every frame
/// decodes, the segments run from event 1 without a gap or overlap, and the last one
/// ends right before `first_stored` (the log's first event). Every problem is in the
/// report.
pub fn verify(storage: &Storage, segments: &[Segment], first_stored: u64) -> ArchiveReport {
    let mut report = ArchiveReport { segments: segments.len() as u64, ..ArchiveReport::default() };
    let mut next = if segments.is_empty() { first_stored } else { 1 };
    for segment in segments {
        if segment.first != next {
            report.first_bad = Some(ArchiveError::Missing { seq: next });
            return report;
        }
        let checked = fetch(storage, segment).and_then(|object| {
            let frames = split(&segment.key, &object)?;
            check_range(segment, &frames)?;
            for (seq, frame) in frames {
                decode(seq, frame)
                    .map_err(|source| ArchiveError::Frame { key: segment.key.clone(), source })?;
            }
            Ok(())
        });
        if let Err(error) = checked {
            report.first_bad = Some(error);
            return report;
        }
        report.events_ok += segment.events();
        next = segment.last + 1;
    }
    if next != first_stored {
        report.first_bad = Some(ArchiveError::Missing { seq: next.min(first_stored) });
    }
    report
}
