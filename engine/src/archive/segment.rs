//! The segment object and the cut object: their constants and their codec
//! (docs/FORMAT.md, "Archive segment" and "Cut object").

use crate::codec::{self, Dec, DecodeError, Enc};
use crate::log::Segment;

use super::ArchiveError;

/// Where segments live in their bucket.
pub const PREFIX: &str = "archive";
/// First bytes of every segment object.
pub const MAGIC: &[u8; 8] = b"ANNALSEG";
/// The segment format version written.
pub const VERSION: u16 = 1;
/// Header bytes before the first record.
pub const HEADER_LEN: usize = 32;
/// Most events in one segment.
pub const SEGMENT_EVENTS_MAX: usize = 100_000;
/// Frame bytes after which a segment is closed (a segment holds at least one event, so
/// one may reach this plus one event).
pub const SEGMENT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The actor of the engine's own archive runs.
pub const ENGINE_ACTOR: &str = "annal-engine";

/// The object key of the segment `first..=last`: zero-padded, so keys sort by sequence.
pub fn key(first: u64, last: u64) -> String {
    format!("{PREFIX}/{first:020}-{last:020}.seg")
}

/// Encode `frames` (dense, in order) as one segment object; returns it and its CRC
/// (also the format of what `annal recover` cuts from a log).
///
/// # Errors
/// [`ArchiveError::Format`] for no frames, over `u32::MAX` of them, or one over 4 GiB.
pub fn encode(frames: &[(u64, Vec<u8>)]) -> Result<(Vec<u8>, u32), ArchiveError> {
    let format = |what: &str| ArchiveError::Format { key: String::new(), what: what.to_owned() };
    let (Some((first, _)), Some((last, _))) = (frames.first(), frames.last()) else {
        return Err(format("a segment holds at least one event"));
    };
    if frames.windows(2).any(|w| w[1].0 != w[0].0 + 1) {
        return Err(format("a segment holds a dense run of events"));
    }
    let count = u32::try_from(frames.len()).map_err(|_too_many| format("too many events"))?;
    let body: usize = frames.iter().map(|(_, f)| 4 + f.len()).sum();
    let mut out = Enc::with_capacity(HEADER_LEN + body + 4);
    out.raw(MAGIC);
    out.u16(VERSION);
    out.u16(0);
    out.u32(count);
    out.u64(*first);
    out.u64(*last);
    for (_, frame) in frames {
        let len = u32::try_from(frame.len()).map_err(|_too_long| format("frame longer than 4 GiB"))?;
        out.u32(len);
        out.raw(frame);
    }
    Ok(out.seal())
}

/// Split a segment object into its frames, checking magic, version, trailer CRC,
/// lengths and that the header's range matches the count. Frames are not decoded.
pub fn split<'a>(key: &str, object: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, ArchiveError> {
    let bad = |what: String| ArchiveError::Format { key: key.to_owned(), what };
    let body = codec::unseal(object, HEADER_LEN).map_err(|e| bad(e.to_string()))?;
    let mut d = Dec::new(body);
    let header = |e: DecodeError| bad(format!("header: {e}"));
    if d.take(MAGIC.len()).map_err(header)? != MAGIC {
        return Err(bad("bad magic".into()));
    }
    let version = d.u16().map_err(header)?;
    if version != VERSION {
        return Err(bad(format!("unknown version {version}")));
    }
    d.u16().map_err(header)?;
    let count = u64::from(d.u32().map_err(header)?);
    let (first, last) = (d.u64().map_err(header)?, d.u64().map_err(header)?);
    if count == 0 || first == 0 || first.checked_add(count - 1) != Some(last) {
        return Err(bad(format!("header range {first}..={last} does not hold {count} events")));
    }
    // Each record is at least its 4-byte length: no more than that many are reserved.
    let mut frames = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(d.left() / 4));
    let mut seq = first;
    while d.left() > 0 {
        if frames.len() as u64 == count {
            return Err(bad(format!("{} bytes after the {count} records", d.left())));
        }
        let record = |e: DecodeError| bad(format!("record of event {seq}: {e}"));
        let len = d.u32().map_err(record)?;
        frames.push((seq, d.take(len as usize).map_err(record)?));
        seq += 1;
    }
    if frames.len() as u64 != count {
        return Err(bad(format!("{} records, header says {count}", frames.len())));
    }
    Ok(frames)
}

/// First bytes of what `annal recover` cuts from a log.
pub const CUT_MAGIC: &[u8; 8] = b"ANNALCUT";

/// Encode frames cut from a log (`annal recover`), which need not be dense (a gap may
/// be why they are cut): `ANNALCUT`, `u16` version 1, `u16` 0, `u32` count, then per
/// frame `u64` sequence number, `u32` length and the frame as stored, then the CRC-32
/// of every byte before it (docs/FORMAT.md). Returns the object and its whole CRC.
///
/// # Errors
/// [`ArchiveError::Format`] for over `u32::MAX` frames or one over 4 GiB.
pub fn encode_cut(frames: &[(u64, Vec<u8>)]) -> Result<(Vec<u8>, u32), ArchiveError> {
    let format = |what: &str| ArchiveError::Format { key: String::new(), what: what.to_owned() };
    let count = u32::try_from(frames.len()).map_err(|_too_many| format("too many events"))?;
    let mut out =
        Enc::with_capacity(CUT_HEADER_LEN + frames.iter().map(|(_, f)| 12 + f.len()).sum::<usize>() + 4);
    out.raw(CUT_MAGIC);
    out.u16(VERSION);
    out.u16(0);
    out.u32(count);
    for (seq, frame) in frames {
        let len = u32::try_from(frame.len()).map_err(|_too_long| format("frame longer than 4 GiB"))?;
        out.u64(*seq);
        out.u32(len);
        out.raw(frame);
    }
    Ok(out.seal())
}

/// Header bytes of a cut object before its first record.
const CUT_HEADER_LEN: usize = 16;

/// Split an object written by [`encode_cut`] into its sequence numbers and frames
/// (not decoded), checking magic, version, trailer CRC, lengths and count.
///
/// # Errors
/// [`ArchiveError::Format`] naming `key` and what is wrong.
pub fn split_cut<'a>(key: &str, object: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, ArchiveError> {
    let bad = |what: String| ArchiveError::Format { key: key.to_owned(), what };
    let body = codec::unseal(object, CUT_HEADER_LEN).map_err(|e| bad(e.to_string()))?;
    let mut d = Dec::new(body);
    let header = |e: DecodeError| bad(format!("header: {e}"));
    if d.take(CUT_MAGIC.len()).map_err(header)? != CUT_MAGIC || d.u16().map_err(header)? != VERSION {
        return Err(bad("not a cut object of a known version".into()));
    }
    d.u16().map_err(header)?;
    let count = d.u32().map_err(header)? as usize;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    while d.left() > 0 {
        let record = |e: DecodeError| bad(format!("record {}: {e}", out.len()));
        let seq = d.u64().map_err(record)?;
        let len = d.u32().map_err(record)?;
        let frame = d.take(len as usize).map_err(record)?;
        out.push((seq, frame));
    }
    if out.len() != count {
        return Err(bad(format!("holds {} frames, its header says {count}", out.len())));
    }
    Ok(out)
}

/// Whether `frames` are exactly the range `segment` is registered with.
pub(crate) fn check_range(segment: &Segment, frames: &[(u64, &[u8])]) -> Result<(), ArchiveError> {
    let first = frames.first().map(|(s, _)| *s);
    let last = frames.last().map(|(s, _)| *s);
    if first != Some(segment.first) || last != Some(segment.last) {
        return Err(ArchiveError::Format {
            key: segment.key.clone(),
            what: format!("holds {first:?}..={last:?}, registered as {}..={}", segment.first, segment.last),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode as encode_event, Event, EventBody, IndexDropped};

    fn frames(first: u64, n: u64) -> Vec<(u64, Vec<u8>)> {
        (first..first + n)
            .map(|seq| {
                let body = EventBody::IndexDropped(IndexDropped { name: format!("i{seq}") });
                (seq, encode_event(&Event::new("t", body)).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_segment_round_trips_its_frames() {
        let input = frames(7, 5);
        let (object, crc) = encode(&input).unwrap();
        assert_eq!(crc, crc32fast::hash(&object));
        let out = split("k", &object).unwrap();
        assert_eq!(out.len(), 5);
        for ((s1, f1), (s2, f2)) in input.iter().zip(&out) {
            assert_eq!((s1, f1.as_slice()), (s2, *f2));
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_of_a_segment_is_refused_without_a_panic() {
        let (object, _) = encode(&frames(1, 3)).unwrap();
        for len in 0..object.len() {
            assert!(split("k", &object[..len]).is_err(), "length {len}");
        }
        for at in 0..object.len() {
            let mut bad = object.clone();
            bad[at] ^= 0x40;
            assert!(split("k", &bad).is_err(), "byte {at}");
        }
    }

    #[test]
    fn a_header_whose_range_disagrees_with_its_count_is_refused() {
        let (mut object, _) = encode(&frames(1, 3)).unwrap();
        object[24..32].copy_from_slice(&9u64.to_le_bytes());
        let end = object.len() - 4;
        let crc = crc32fast::hash(&object[..end]);
        object[end..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(split("k", &object), Err(ArchiveError::Format { .. })));
    }

    #[test]
    fn a_segment_refuses_a_gap_and_a_cut_object_keeps_one_and_refuses_any_damage() {
        let mut gappy = frames(5, 2);
        gappy.extend(frames(9, 2));
        assert!(matches!(encode(&gappy), Err(ArchiveError::Format { .. })));
        let (object, whole) = encode_cut(&gappy).unwrap();
        assert_eq!(whole, crc32fast::hash(&object));
        let out = split_cut("cut", &object).unwrap();
        let seqs: Vec<u64> = out.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [5, 6, 9, 10]);
        for ((_, f1), (_, f2)) in gappy.iter().zip(&out) {
            assert_eq!(f1.as_slice(), *f2);
        }
        for len in 0..object.len() {
            assert!(split_cut("cut", &object[..len]).is_err(), "length {len}");
        }
        for at in 0..object.len() {
            let mut bad = object.clone();
            bad[at] ^= 0x08;
            assert!(split_cut("cut", &bad).is_err(), "byte {at}");
        }
    }
}
