//! The archive registry: which ranges of old events were moved out of the log into
//! segment objects in a bucket (see [`crate::archive`]), kept in a redb table of its own
//! beside the events.
//!
//! A registry, not events: a registration must outlive the events it describes, and an
//! event would itself be archived by a later run. The registration is written in the
//! same write transaction that removes the archived events from the events table and
//! appends the `LogArchived` audit event, so a crash leaves either all three or none.

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use super::LogError;

/// The registry table: first archived sequence number -> encoded [`Segment`].
pub(crate) const ARCHIVED: TableDefinition<u64, &[u8]> = TableDefinition::new("archived");

/// Version byte of an encoded registration.
const RECORD_VERSION: u8 = 1;

/// One archive segment: events `first..=last`, in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The first event it holds.
    pub first: u64,
    /// The last event it holds.
    pub last: u64,
    /// The bucket holding it.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
}

impl Segment {
    /// The registration record: version u8, last u64, bytes u64, crc32 u32, then bucket
    /// and key each as u16 length + UTF-8 (the first sequence number is the table key).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::with_capacity(1 + 8 + 8 + 4 + 4 + self.bucket.len() + self.key.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.last.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.crc32.to_le_bytes());
        for text in [&self.bucket, &self.key] {
            let len = u16::try_from(text.len()).map_err(|_too_long| LogError::ArchiveRecord {
                first: self.first,
                what: "bucket or key longer than 65,535 bytes",
            })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        Ok(out)
    }

    pub(crate) fn decode(first: u64, bytes: &[u8]) -> Result<Self, LogError> {
        let bad = |what| LogError::ArchiveRecord { first, what };
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], LogError> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let version = take(1)?[0];
        if version != RECORD_VERSION {
            return Err(bad("unknown version"));
        }
        let u64_at = |b: &[u8]| b.try_into().map(u64::from_le_bytes).map_err(|_short| bad("truncated"));
        let last = u64_at(take(8)?)?;
        let size = u64_at(take(8)?)?;
        let crc32 = take(4)?.try_into().map(u32::from_le_bytes).map_err(|_short| bad("truncated"))?;
        let mut text = || -> Result<String, LogError> {
            let len = take(2)?.try_into().map(u16::from_le_bytes).map_err(|_short| bad("truncated"))?;
            String::from_utf8(take(usize::from(len))?.to_vec()).map_err(|_not_utf8| bad("not UTF-8"))
        };
        let bucket = text()?;
        let key = text()?;
        if last < first {
            return Err(bad("last before first"));
        }
        Ok(Self { first, last, bucket, key, bytes: size, crc32 })
    }

    /// Events in the segment.
    pub fn events(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Every registered segment, oldest first.
pub(crate) fn segments(txn: &ReadTransaction) -> Result<Vec<Segment>, LogError> {
    let table = match txn.open_table(ARCHIVED) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (first, record) = entry?;
        out.push(Segment::decode(first.value(), record.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Segment {
        Segment {
            first: 11,
            last: 20,
            bucket: "primary".into(),
            key: "archive/x.seg".into(),
            bytes: 999,
            crc32: 0xfeed_f00d,
        }
    }

    #[test]
    fn a_registration_round_trips() {
        let s = segment();
        let bytes = s.encode().unwrap();
        assert_eq!(Segment::decode(11, &bytes).unwrap(), s);
    }

    #[test]
    fn every_truncation_of_a_registration_is_an_error_not_a_panic() {
        let bytes = segment().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(Segment::decode(11, &bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn a_registration_ending_before_it_starts_is_refused() {
        let bytes = segment().encode().unwrap();
        assert!(matches!(Segment::decode(21, &bytes), Err(LogError::ArchiveRecord { .. })));
    }
}
