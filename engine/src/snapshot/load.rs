//! Reading a snapshot back: the registrations in the log, and an object checked against
//! its registration and restored into fresh projections.

use crate::error::Error;
use crate::event::{decode, Event, EventBody, EventKind, SnapshotTaken};
use crate::projection::Projections;
use crate::source::LogFrames;

use super::{format, Unusable};

/// Every snapshot a log opened read-only registers, oldest first, each with the
/// sequence number of its `SnapshotTaken` event (what `annal snapshot list` shows).
/// Unlike the engine's own listing, a registration that does not decode is an error
/// here: a tool that checks snapshots must say so, not pass over it.
///
/// # Errors
/// The log failed, or a registration does not decode (naming its event).
pub fn registered_snapshots(log: &crate::log::ReadOnlyLog) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
    let mut out = scan(log, usize::MAX, Undecodable::Fail)?;
    out.reverse();
    Ok(out)
}

/// Check `object` against its registration `taken` and restore every projection of
/// `projections` from its sections.
///
/// # Errors
/// [`Unusable`] saying why: it does not decode, its CRC or sequence number is not the
/// registered one, a section is missing or does not restore.
pub(crate) fn load(object: &[u8], taken: &SnapshotTaken, projections: &Projections) -> Result<(), Unusable> {
    let key = || taken.key.clone();
    let decoded = check(object, taken)?;
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
        let restore = |section: &[u8]| {
            projection.restore_snapshot(decoded.seq, section).map_err(|source| Unusable::Restore {
                key: key(),
                projection: name,
                source,
            })
        };
        if decoded.version == format::VERSION_V1 {
            let upgraded = super::upgrade::section_v1(name, section).map_err(|source| Unusable::Restore {
                key: key(),
                projection: name,
                source: crate::projection::SnapshotError::Corrupt { projection: name, source },
            })?;
            restore(&upgraded)?;
        } else {
            restore(section)?;
        }
    }
    Ok(())
}

/// Sections a snapshot written before their projection existed lacks; restoring such
/// a snapshot leaves those projections empty, which is their state at any point of a
/// log written before them.
const SECTIONS_ADDED_LATER: [&str; 6] =
    ["promotions", "trials", "partitions", "documents", "payload", "text"];

/// The snapshots registered in `log` (the live one or a tool's read-only one), newest
/// first, at most `max`, each with the sequence number of its `SnapshotTaken` event: the
/// one listing every caller uses (open, views, pruning, the tools). A registration that
/// does not decode is skipped with a warning: it names a snapshot nobody can use, and
/// the event itself is reported by whatever reads it as an event (replay, verify).
///
/// # Errors
/// The log failed.
pub(crate) fn registered(log: &impl LogFrames, max: usize) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
    scan(log, max, Undecodable::Skip)
}

/// What a listing does with a registration that does not decode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undecodable {
    Skip,
    Fail,
}

fn scan(
    log: &impl LogFrames,
    max: usize,
    undecodable: Undecodable,
) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
    let mut out = Vec::new();
    let mut asked = max;
    let owner = log.snapshot_owner();
    let mine =
        |taken: &SnapshotTaken| owner.as_ref().is_none_or(|prefix| taken.key.starts_with(prefix.as_str()));
    loop {
        let frames = log.newest_frames_of_kind(EventKind::SnapshotTaken, asked)?;
        let found = frames.len();
        out.clear();
        for (seq, frame) in frames {
            match decode(seq, &frame) {
                Ok(Event { body: EventBody::SnapshotTaken(taken), .. }) if mine(&taken) => {
                    out.push((seq, taken))
                }
                Ok(_) => {}
                Err(error) if undecodable == Undecodable::Fail => {
                    return Err(crate::log::LogError::Frame(error).into())
                }
                Err(error) => tracing::warn!(seq, %error, "a snapshot registration does not decode; skipped"),
            }
        }
        // Enough good ones, or no more to find.
        if out.len() >= max || found < asked {
            if out.len() < max {
                out.extend(began_from(log, undecodable)?);
            }
            out.truncate(max);
            return Ok(out);
        }
        asked = asked.saturating_add(found - out.len());
    }
}

/// The snapshot a log began from (a replica bootstrapped from its cluster's newest
/// one), as a registration at its own sequence number: older than any the log holds.
fn began_from(log: &impl LogFrames, undecodable: Undecodable) -> Result<Option<(u64, SnapshotTaken)>, Error> {
    let Some(frame) = log.bootstrap_record()? else { return Ok(None) };
    match decode(0, &frame) {
        Ok(Event { body: EventBody::SnapshotTaken(taken), .. }) => Ok(Some((taken.seq, taken))),
        Ok(_) => Ok(None),
        Err(error) if undecodable == Undecodable::Fail => Err(crate::log::LogError::Frame(error).into()),
        Err(error) => {
            tracing::warn!(%error, "the registration of the snapshot the log began from does not decode");
            Ok(None)
        }
    }
}

/// Check `object` against its registration `taken`: the header, every section's CRC,
/// the whole object's CRC and its sequence number. The one check every reader of a
/// snapshot makes (open, views, offline replay, `annal snapshot verify`).
///
/// # Errors
/// [`Unusable`] saying why.
pub fn check(object: &[u8], taken: &SnapshotTaken) -> Result<format::Decoded, Unusable> {
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
    Ok(decoded)
}
