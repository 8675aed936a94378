//! Reading a snapshot back: the registrations in the log, and an object checked against
//! its registration and restored into fresh projections.

use crate::error::Error;
use crate::event::{EventBody, EventKind, SnapshotTaken};
use crate::log::Log;
use crate::projection::Projections;

use super::{format, Unusable};

/// Check `object` against its registration `taken` and restore every projection of
/// `projections` from its sections.
///
/// # Errors
/// [`Unusable`] saying why: it does not decode, its CRC or sequence number is not the
/// registered one, a section is missing or does not restore.
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
