//! An archive run: events the oldest kept snapshot covers move out of the log into
//! segments, each made durable before one log transaction removes its events.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::{Event, EventBody, LogArchived};
use crate::log::{Log, LogError, Segment};
use crate::storage::{Storage, PRIMARY};

use super::segment::{encode, key, SEGMENT_BYTES_MAX, SEGMENT_EVENTS_MAX};
use super::ArchiveError;

/// Move every event up to `upto` (inclusive) still in the log into segments in the
/// primary bucket, oldest first; returns the segments written, each with the sequence
/// number of its `LogArchived` audit event. Stops at `upto` even if later events were
/// appended meanwhile.
///
/// # Errors
/// The bucket write failed (journaled; nothing was removed from the log), or the log
/// refused the removal.
pub(crate) async fn archive_through(
    log: &Arc<Log>,
    storage: &Storage,
    actor: &str,
    upto: u64,
) -> Result<Vec<(Segment, u64)>, ArchiveError> {
    let mut written = Vec::new();
    loop {
        let reader = log.reader();
        let frames = tokio::task::spawn_blocking(move || -> Result<_, LogError> {
            let first = reader.first_seq()?;
            if first > upto {
                return Ok(Vec::new());
            }
            reader.read_frames_budget(first..=upto, SEGMENT_EVENTS_MAX, SEGMENT_BYTES_MAX)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (Some(&(first, _)), Some(&(last, _))) = (frames.first(), frames.last()) else {
            return Ok(written);
        };
        if last - first + 1 != frames.len() as u64 {
            return Err(LogError::Gap { expected: first + frames.len() as u64 - 1, found: last }.into());
        }
        let (object, crc32) = encode(&frames)?;
        drop(frames);
        let key = key(first, last);
        let bytes = object.len() as u64;
        storage
            .put(actor, PRIMARY, &key, Bytes::from(object))
            .await
            .map_err(|source| ArchiveError::Storage { key: key.clone(), source: Box::new(source) })?;
        let segment = Segment { first, last, bucket: PRIMARY.to_owned(), key: key.clone(), bytes, crc32 };
        let audit = Event::new(
            actor,
            EventBody::LogArchived(LogArchived {
                first,
                last,
                bucket: PRIMARY.to_owned(),
                key,
                bytes,
                crc32,
            }),
        );
        let log = Arc::clone(log);
        let registered = segment.clone();
        let seq = tokio::task::spawn_blocking(move || log.archive(registered, &audit))
            .await
            .map_err(std::io::Error::other)??;
        tracing::info!(first, last, bytes, audit_seq = seq, "archived log events");
        written.push((segment, seq));
    }
}
