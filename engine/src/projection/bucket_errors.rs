//! The bucket error journal: the second projection of the log.
//!
//! Every failed bucket operation is a [`BucketErrorRecorded`] event in the log; this
//! projection keeps the newest of them in a bounded ring
//! ([`limits::JOURNAL_ENTRIES_MAX`]) and answers "what failed lately, and is any bucket
//! unhealthy?". It is rebuilt from the log on open like every projection, so nothing is
//! lost across restarts. Older entries stay in the log (the audit trail); the ring only
//! bounds what is held in memory.

use std::collections::{BTreeMap, VecDeque};

use parking_lot::RwLock;

use crate::codec::{Dec, Enc};
use crate::event::{BucketErrorRecorded, BucketOp, Event, EventBody};
use crate::limits;
use crate::projection::{ApplyError, Outcome, Projection, SnapshotError};

/// A bucket has this many errors or more within a health period: it is unhealthy.
pub const UNHEALTHY_ERRORS: u64 = 3;

/// One journaled bucket error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Sequence number of its event.
    pub seq: u64,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Who asked for the operation.
    pub actor: String,
    /// The bucket whose operation failed.
    pub bucket: String,
    /// The operation.
    pub op: BucketOp,
    /// The object key (or list prefix).
    pub key: String,
    /// The error as the bucket reported it.
    pub error: String,
    /// The read was served by the bucket's rescue bucket after this failure.
    pub rescued: bool,
}

/// Which entries [`ErrorJournal::filter`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only this bucket's.
    pub bucket: Option<String>,
    /// Only this operation's.
    pub op: Option<BucketOp>,
    /// Only those recorded at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
}

/// Errors within a period, per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The period: entries recorded at or after this time (ms since the Unix epoch).
    pub since_ms: u64,
    /// Errors in the period (rescued reads included: the primary failed).
    pub total: u64,
    /// Errors in the period per bucket, for buckets that had any.
    pub per_bucket: BTreeMap<String, u64>,
    /// Buckets with [`UNHEALTHY_ERRORS`] or more errors in the period.
    pub unhealthy: Vec<String>,
    /// The ring is full and its oldest entry is inside the period, so older errors of
    /// the period were evicted and the counts are lower bounds.
    pub truncated: bool,
}

/// The bounded ring of the newest bucket errors.
pub struct ErrorJournal {
    capacity: usize,
    ring: RwLock<VecDeque<JournalEntry>>,
}

impl Default for ErrorJournal {
    fn default() -> Self {
        Self::with_capacity(limits::JOURNAL_ENTRIES_MAX)
    }
}

impl ErrorJournal {
    /// A journal that keeps the newest `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, ring: RwLock::new(VecDeque::with_capacity(capacity.min(4096))) }
    }

    /// How many entries it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.ring.read().len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.ring.read().is_empty()
    }

    /// The newest `limit` entries, newest first.
    pub fn recent(&self, limit: usize) -> Vec<JournalEntry> {
        self.filter(&JournalFilter::default(), limit)
    }

    /// The newest `limit` entries that match `filter`, newest first.
    pub fn filter(&self, filter: &JournalFilter, limit: usize) -> Vec<JournalEntry> {
        let ring = self.ring.read();
        ring.iter()
            .rev()
            // Filter, not take-while: wall-clock stamps need not grow with the sequence.
            .filter(|e| filter.since_ms.is_none_or(|since| e.time_ms >= since))
            .filter(|e| filter.bucket.as_ref().is_none_or(|b| *b == e.bucket))
            .filter(|e| filter.op.is_none_or(|op| op == e.op))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Errors recorded at or after `since_ms`, per bucket, and the unhealthy buckets.
    pub fn health(&self, since_ms: u64) -> Health {
        let ring = self.ring.read();
        let mut per_bucket: BTreeMap<String, u64> = BTreeMap::new();
        for entry in ring.iter().filter(|e| e.time_ms >= since_ms) {
            *per_bucket.entry(entry.bucket.clone()).or_default() += 1;
        }
        let truncated = ring.len() == self.capacity
            && ring.iter().map(|e| e.time_ms).min().is_some_and(|t| t >= since_ms);
        Health {
            since_ms,
            total: per_bucket.values().sum(),
            unhealthy: per_bucket
                .iter()
                .filter(|(_, n)| **n >= UNHEALTHY_ERRORS)
                .map(|(b, _)| b.clone())
                .collect(),
            per_bucket,
            truncated,
        }
    }

    fn push(&self, entry: JournalEntry) {
        let mut ring = self.ring.write();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(entry);
    }
}

impl Projection for ErrorJournal {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        if let EventBody::BucketErrorRecorded(BucketErrorRecorded { bucket, op, key, error, rescued }) =
            &event.body
        {
            self.push(JournalEntry {
                seq,
                time_ms: event.stamp.time_ms,
                actor: event.stamp.actor.clone(),
                bucket: bucket.clone(),
                op: *op,
                key: key.clone(),
                error: error.clone(),
                rescued: *rescued,
            });
        }
        Ok(Outcome::default())
    }

    /// `count u64`, then per entry, oldest first: `seq u64, time_ms u64, actor, bucket,
    /// op u8, key, error` (strings as `u64` length + UTF-8) and `rescued u8`.
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let ring = self.ring.read();
        let mut e = Enc::default();
        e.u64(ring.len() as u64);
        for entry in ring.iter() {
            e.u64(entry.seq);
            e.u64(entry.time_ms);
            e.str(&entry.actor);
            e.str(&entry.bucket);
            e.u8(entry.op as u8);
            e.str(&entry.key);
            e.str(&entry.error);
            e.u8(u8::from(entry.rescued));
        }
        drop(ring);
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "journal", source };
        let mut d = Dec::new(bytes);
        // The smallest entry: seq, time, four empty strings (a u64 length each), op, rescued.
        let n = d.count(8 + 8 + 8 * 4 + 2).map_err(corrupt)?;
        let mut ring = VecDeque::with_capacity(n.min(self.capacity));
        for _ in 0..n {
            let seq = d.u64().map_err(corrupt)?;
            let time_ms = d.u64().map_err(corrupt)?;
            let actor = d.str().map_err(corrupt)?.to_owned();
            let bucket = d.str().map_err(corrupt)?.to_owned();
            let op = match d.u8().map_err(corrupt)? {
                0 => BucketOp::Read,
                1 => BucketOp::Write,
                2 => BucketOp::Delete,
                3 => BucketOp::List,
                tag => return Err(corrupt(d.error(format!("bucket op tag {tag}")))),
            };
            let key = d.str().map_err(corrupt)?.to_owned();
            let error = d.str().map_err(corrupt)?.to_owned();
            let rescued = d.u8().map_err(corrupt)? != 0;
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(JournalEntry { seq, time_ms, actor, bucket, op, key, error, rescued });
        }
        d.finish().map_err(corrupt)?;
        *self.ring.write() = ring;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stamp;

    fn error_at(time_ms: u64, bucket: &str, op: BucketOp) -> Event {
        Event {
            stamp: Stamp { time_ms, actor: "t".into() },
            body: EventBody::BucketErrorRecorded(BucketErrorRecorded {
                bucket: bucket.into(),
                op,
                key: "k".into(),
                error: "boom".into(),
                rescued: false,
            }),
        }
    }

    #[test]
    fn the_ring_keeps_only_the_newest_entries_newest_first() {
        let journal = ErrorJournal::with_capacity(3);
        for seq in 1..=5 {
            journal.apply(seq, &error_at(seq * 10, "a", BucketOp::Read)).unwrap();
        }
        let seqs: Vec<u64> = journal.recent(10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [5, 4, 3]);
        assert_eq!(journal.recent(2).len(), 2);
    }

    #[test]
    fn filter_matches_bucket_op_and_since_together() {
        let journal = ErrorJournal::default();
        journal.apply(1, &error_at(100, "a", BucketOp::Read)).unwrap();
        journal.apply(2, &error_at(200, "b", BucketOp::Read)).unwrap();
        journal.apply(3, &error_at(300, "a", BucketOp::Write)).unwrap();
        journal.apply(4, &error_at(400, "a", BucketOp::Read)).unwrap();
        let only = |bucket: Option<&str>, op, since_ms| {
            let f = JournalFilter { bucket: bucket.map(str::to_owned), op, since_ms };
            journal.filter(&f, 10).iter().map(|e| e.seq).collect::<Vec<_>>()
        };
        assert_eq!(only(Some("a"), None, None), [4, 3, 1]);
        assert_eq!(only(Some("a"), Some(BucketOp::Read), None), [4, 1]);
        assert_eq!(only(None, Some(BucketOp::Read), Some(200)), [4, 2]);
        assert_eq!(only(Some("c"), None, None), Vec::<u64>::new());
    }

    #[test]
    fn a_bucket_is_unhealthy_at_its_third_error_in_the_period_and_not_before() {
        let journal = ErrorJournal::default();
        journal.apply(1, &error_at(50, "a", BucketOp::Read)).unwrap(); // before the period
        journal.apply(2, &error_at(100, "a", BucketOp::Read)).unwrap();
        journal.apply(3, &error_at(110, "a", BucketOp::List)).unwrap();
        journal.apply(4, &error_at(120, "b", BucketOp::Read)).unwrap();
        let health = journal.health(100);
        assert_eq!((health.total, health.unhealthy.len()), (3, 0));
        journal.apply(5, &error_at(130, "a", BucketOp::Delete)).unwrap();
        let health = journal.health(100);
        assert_eq!(health.total, 4);
        assert_eq!(health.per_bucket["a"], 3);
        assert_eq!(health.unhealthy, ["a"]);
        assert!(!health.truncated);
    }

    #[test]
    fn health_says_when_the_ring_evicted_errors_of_the_period() {
        let journal = ErrorJournal::with_capacity(2);
        for seq in 1..=3 {
            journal.apply(seq, &error_at(100 + seq, "a", BucketOp::Read)).unwrap();
        }
        assert!(journal.health(100).truncated);
        assert!(!journal.health(103).truncated);
    }
}
