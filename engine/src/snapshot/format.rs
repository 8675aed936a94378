//! The snapshot object: a header, a section table and the sections, each section
//! checksummed on its own (byte table in docs/FORMAT.md).
//!
//! ```text
//! 0   8  magic "ANNALSNP"
//! 8   4  format version (2; version 1, configs without storage, is read too)
//! 12  8  seq: the last event the snapshot covers
//! 20  4  section count N
//! 24  4  CRC-32 of bytes 0..24 and of the section table
//! 28     section table, N entries: name_len u16, name (UTF-8), offset u64 (from the
//!        start of the object), length u64, CRC-32 u32 of the section's bytes
//!        sections, back to back, in table order
//! ```

use std::ops::Range;

use bytes::Bytes;

/// The first bytes of every snapshot object.
pub const MAGIC: &[u8; 8] = b"ANNALSNP";
/// The format version this build writes (it reads [`VERSION_V1`] too).
pub const VERSION: u32 = 2;
/// The version before storage kinds: its `vectors`, `promotions` and `trials` sections
/// are re-encoded on reading (`snapshot/upgrade.rs`).
pub const VERSION_V1: u32 = 1;
/// Bytes before the section table.
pub const HEADER_BYTES: usize = 28;
/// Most sections a snapshot may have (one per projection).
pub const SECTIONS_MAX: u32 = 64;

/// Why bytes are not a usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than its header, its table or a section says.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Not a snapshot.
    #[error("bad magic")]
    Magic,
    /// A format version this build does not read.
    #[error("format version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
    /// The header or section table fails its CRC.
    #[error("header CRC mismatch")]
    HeaderCrc,
    /// A section fails its CRC.
    #[error("section {0:?}: CRC mismatch")]
    SectionCrc(String),
    /// The table is malformed (overlapping or out-of-range sections, bad names).
    #[error("section table: {0}")]
    Table(String),
}

/// A decoded snapshot: its sequence number and where each section is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The format version.
    pub version: u32,
    /// The last event covered.
    pub seq: u64,
    /// Section name and byte range in the object, in table order.
    pub sections: Vec<(String, Range<usize>)>,
    /// CRC-32 of the whole object (what its registration records), computed in the
    /// same pass as the section CRCs.
    pub crc32: u32,
}

/// Lay out a snapshot of `sections` at `seq`: the header and table as one chunk, then
/// each section as it is (no copy). Returns the chunks and the object's size.
pub fn encode(seq: u64, sections: Vec<(String, Vec<u8>)>) -> (Vec<Bytes>, u64) {
    let table_bytes: usize = sections.iter().map(|(name, _)| 2 + name.len() + 8 + 8 + 4).sum();
    let mut offset = (HEADER_BYTES + table_bytes) as u64;
    let mut table = Vec::with_capacity(table_bytes);
    for (name, body) in &sections {
        table.extend_from_slice(&(name.len() as u16).to_le_bytes());
        table.extend_from_slice(name.as_bytes());
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&(body.len() as u64).to_le_bytes());
        table.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        offset += body.len() as u64;
    }
    let mut head = Vec::with_capacity(HEADER_BYTES + table.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&seq.to_le_bytes());
    head.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&table);
    head.extend_from_slice(&crc.finalize().to_le_bytes());
    head.extend_from_slice(&table);
    let mut chunks = vec![Bytes::from(head)];
    chunks.extend(sections.into_iter().map(|(_, body)| Bytes::from(body)));
    (chunks, offset)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Check a whole snapshot object: header, table, and every section's CRC.
///
/// # Errors
/// [`FormatError`] for the first problem found.
pub fn decode(object: &[u8]) -> Result<Decoded, FormatError> {
    if object.len() < HEADER_BYTES {
        return Err(FormatError::Truncated(format!(
            "{} bytes, the header alone is {HEADER_BYTES}",
            object.len()
        )));
    }
    if &object[..8] != MAGIC {
        return Err(FormatError::Magic);
    }
    let version = le_u32(object, 8);
    if version != VERSION && version != VERSION_V1 {
        return Err(FormatError::Version(version));
    }
    let seq = le_u64(object, 12);
    let count = le_u32(object, 20);
    if count > SECTIONS_MAX {
        return Err(FormatError::Table(format!("{count} sections, at most {SECTIONS_MAX}")));
    }
    let stored_crc = le_u32(object, 24);
    let mut at = HEADER_BYTES;
    let mut sections = Vec::with_capacity(count as usize);
    let mut crcs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let short = || FormatError::Truncated(format!("the section table ends past byte {}", object.len()));
        if at + 2 > object.len() {
            return Err(short());
        }
        let name_len = usize::from(le_u16(object, at));
        if at + 2 + name_len + 20 > object.len() {
            return Err(short());
        }
        let name = std::str::from_utf8(&object[at + 2..at + 2 + name_len])
            .map_err(|e| FormatError::Table(format!("a section name is not UTF-8: {e}")))?
            .to_owned();
        let base = at + 2 + name_len;
        let (offset, len, crc) = (le_u64(object, base), le_u64(object, base + 8), le_u32(object, base + 16));
        at = base + 20;
        sections.push((name, offset, len));
        crcs.push(crc);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&object[..24]);
    hasher.update(&object[HEADER_BYTES..at]);
    if hasher.finalize() != stored_crc {
        return Err(FormatError::HeaderCrc);
    }
    // The CRC of the whole object, from the same one pass that checks the sections:
    // the header and table here, each section's CRC combined onto it below.
    let mut whole = crc32fast::Hasher::new();
    whole.update(&object[..at]);
    let mut out = Vec::with_capacity(sections.len());
    let mut expected = at as u64;
    for ((name, offset, len), crc) in sections.into_iter().zip(crcs) {
        if offset != expected {
            return Err(FormatError::Table(format!(
                "section {name:?} starts at {offset}, expected {expected}"
            )));
        }
        let end = offset.checked_add(len).filter(|end| *end <= object.len() as u64);
        let Some(end) = end else {
            return Err(FormatError::Truncated(format!("section {name:?} ends past byte {}", object.len())));
        };
        let range = offset as usize..end as usize;
        let mut section = crc32fast::Hasher::new();
        section.update(&object[range.clone()]);
        if section.clone().finalize() != crc {
            return Err(FormatError::SectionCrc(name));
        }
        whole.combine(&section);
        expected = end;
        out.push((name, range));
    }
    if expected != object.len() as u64 {
        return Err(FormatError::Table(format!(
            "{} bytes after the last section",
            object.len() as u64 - expected
        )));
    }
    Ok(Decoded { version, seq, sections: out, crc32: whole.finalize() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Vec<u8> {
        let (chunks, len) =
            encode(42, vec![("vectors".into(), vec![1, 2, 3]), ("journal".into(), vec![9; 10])]);
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(bytes.len() as u64, len);
        bytes
    }

    #[test]
    fn a_snapshot_round_trips_its_sections() {
        let bytes = object();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.seq, 42);
        assert_eq!(decoded.crc32, crc32fast::hash(&bytes), "the combined CRC is the whole object's");
        let names: Vec<&str> = decoded.sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["vectors", "journal"]);
        assert_eq!(&bytes[decoded.sections[0].1.clone()], &[1, 2, 3]);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let bytes = object();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncation to {len} went unnoticed");
        }
    }
}
