//! Offline replay, for tooling (`annal replay`, `annal export`): a data directory's log
//! read without a writer ([`OfflineLog`]: the log opened read-only, archived events read
//! back from their segments), applied to fresh projections ([`Replay`]) that no engine
//! owns, and the logical state they hold ([`LogicalState`]) compared and digested.
//!
//! The logical state is what a user can observe: every index's parameters and live
//! records (ids, vectors bit for bit, metadata, partitions), and the state of every
//! other projection (promotions, bucket error journal, trials, partition schemes and
//! migrations, documents). The HNSW graphs are not part of it: FAISS builds them
//! with several threads, so two replays of one log give equivalent graphs, not equal
//! ones. The digest is SHA-256 over a canonical encoding (docs/FORMAT.md, "State
//! digest"); replaying one log always gives one digest.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::archive::{self, ArchiveError};
use crate::codec::Enc;
use crate::error::Error;
use crate::event::{decode, Event, EventBody, EventKind, SnapshotTaken};
use crate::log::{ReadOnlyLog, Segment};
use crate::projection::vectors::{IndexParams, Record};
use crate::projection::{Hooks, Projection};
use crate::snapshot::{block_on, load, Projections, Unusable};
use crate::storage::{BucketsConfig, Storage, StorageError};
use crate::{IndexInfo, LOG_FILE};

/// The actor tooling reads buckets as (journaled on a bucket error).
pub const TOOL_ACTOR: &str = "annal-cli";
/// Events read per batch from the log.
const READ_BATCH: usize = 1024;

/// Offline replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Events the replay needs are neither in the log nor in a readable segment.
    #[error("event {seq} is needed but was archived and its segment cannot be read")]
    Archived {
        /// The first event missing.
        seq: u64,
        /// Why the segment could not be read.
        #[source]
        source: Box<ArchiveError>,
    },
    /// A registered snapshot cannot be used.
    #[error(transparent)]
    Snapshot(Box<Unusable>),
    /// A snapshot object could not be read from its bucket.
    #[error("snapshot {key} cannot be read")]
    SnapshotRead {
        /// Its key.
        key: String,
        /// What the bucket said.
        #[source]
        source: Box<StorageError>,
    },
    /// An event is neither in the log nor in an archive segment (a gap).
    #[error("event {seq} is missing: the log has a gap there (annal log verify says more)")]
    Missing {
        /// The first event missing.
        seq: u64,
    },
    /// Events were offered out of order.
    #[error("event {seq} offered after event {applied}: replay applies each event once, in order")]
    OutOfOrder {
        /// The event offered.
        seq: u64,
        /// The last one applied.
        applied: u64,
    },
    /// An event of the log does not decode.
    #[error(transparent)]
    Frame(#[from] crate::event::FrameError),
}

/// A data directory's log, opened read-only, with its archive segments readable through
/// the buckets.
pub struct OfflineLog {
    log: ReadOnlyLog,
    storage: Storage,
    segments: Vec<Segment>,
}

impl OfflineLog {
    /// Open `data`'s log read-only and its buckets as `buckets` configures them.
    ///
    /// # Errors
    /// The log cannot be opened (missing, held by a running server, needs repair) or a
    /// bucket cannot be opened.
    pub fn open(data: &Path, buckets: &BucketsConfig) -> Result<Self, Error> {
        let log = ReadOnlyLog::open(data.join(LOG_FILE))?;
        let storage = Storage::open_detached(data, buckets).map_err(|e| Error::Storage(Box::new(e)))?;
        let segments = log.segments()?;
        Ok(Self { log, storage, segments })
    }

    /// Wrap an already opened log and storage.
    ///
    /// # Errors
    /// The log's segment registry cannot be read.
    pub fn new(log: ReadOnlyLog, storage: Storage) -> Result<Self, Error> {
        let segments = log.segments()?;
        Ok(Self { log, storage, segments })
    }

    /// The read-only log.
    pub fn log(&self) -> &ReadOnlyLog {
        &self.log
    }

    /// The buckets.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The archive segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first event still readable: the first archived one, else the log's first.
    ///
    /// # Errors
    /// redb failed.
    pub fn first_seq(&self) -> Result<u64, Error> {
        match self.segments.first() {
            Some(s) => Ok(s.first),
            None => Ok(self.log.first_seq()?),
        }
    }

    /// The last event of the log (0 when empty).
    ///
    /// # Errors
    /// redb failed.
    pub fn last_seq(&self) -> Result<u64, Error> {
        Ok(self.log.last_seq()?)
    }

    /// Raw frames from `next` up to `upto` (a batch: call again after the last one
    /// returned), from the log, or from the segment holding `next` when the log no
    /// longer has it. Empty once `next > upto` or past the end of the log.
    ///
    /// # Errors
    /// [`ReplayError::Archived`] when `next` was archived and no readable segment holds
    /// it; redb failed.
    pub fn frames(&self, next: u64, upto: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        if next > upto {
            return Ok(Vec::new());
        }
        if next >= self.log.first_seq()? {
            return Ok(self.log.read_frames(next..=upto, READ_BATCH)?);
        }
        let segment = self.segments.iter().find(|s| s.first <= next && next <= s.last).ok_or(
            ReplayError::Archived { seq: next, source: Box::new(ArchiveError::Missing { seq: next }) },
        )?;
        let mut frames = archive::read_segment(&self.storage, segment)
            .map_err(|source| ReplayError::Archived { seq: next, source: Box::new(source) })?;
        frames.retain(|(seq, _)| *seq >= next && *seq <= upto);
        Ok(frames)
    }

    /// Every snapshot the log registers (`SnapshotTaken` events) up to event `upto`,
    /// oldest first, with the sequence number of its event. Only frames whose kind byte
    /// says `SnapshotTaken` are decoded; one that does not decode is skipped with a
    /// warning (the tools that call this must work on a log whose tail is corrupt).
    ///
    /// # Errors
    /// redb failed.
    pub fn snapshots(&self, upto: u64) -> Result<Vec<(u64, SnapshotTaken)>, Error> {
        let (first, last) = (self.log.first_seq()?, self.log.last_seq()?.min(upto));
        let mut out = Vec::new();
        let mut next = first;
        while next <= last {
            let frames = self.log.read_frames(next..=last, READ_BATCH)?;
            let Some((end, _)) = frames.last() else { break };
            next = end + 1;
            for (seq, frame) in &frames {
                if frame.get(1) != Some(&(EventKind::SnapshotTaken as u8)) {
                    continue;
                }
                match decode(*seq, frame) {
                    Ok(Event { body: EventBody::SnapshotTaken(taken), .. }) => out.push((*seq, taken)),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(seq, %error, "a snapshot registration does not decode; skipped")
                    }
                }
            }
        }
        Ok(out)
    }

    /// A registered snapshot's object, read whole (bounded by its registered size).
    ///
    /// # Errors
    /// [`ReplayError::SnapshotRead`].
    pub fn fetch_snapshot(&self, taken: &SnapshotTaken) -> Result<bytes::Bytes, Error> {
        let fetched = block_on(self.storage.get_bounded(TOOL_ACTOR, &taken.bucket, &taken.key, taken.bytes))?;
        fetched.map(|f| f.bytes).map_err(|source| {
            ReplayError::SnapshotRead { key: taken.key.clone(), source: Box::new(source) }.into()
        })
    }

    /// The newest registered snapshot at or before `upto` that reads back and restores,
    /// as a [`Replay`] starting there (`None` when there is none), and the newer ones
    /// that could not be used, each with why.
    ///
    /// # Errors
    /// redb failed. Unusable snapshots are reported, not errors.
    pub fn newest_snapshot(&self, upto: u64) -> Result<(Option<Restored>, Vec<Skipped>), Error> {
        let mut skipped = Vec::new();
        for (_, taken) in self.snapshots(u64::MAX)?.into_iter().rev().filter(|(_, t)| t.seq <= upto) {
            let attempt =
                self.fetch_snapshot(&taken).and_then(|object| Replay::from_snapshot(&object, &taken));
            match attempt {
                Ok(replay) => return Ok((Some((replay, taken)), skipped)),
                Err(error) => {
                    let why = crate::chain::chain(&error);
                    tracing::warn!(key = %taken.key, error = %why, "snapshot skipped");
                    skipped.push(Skipped { snapshot: taken, why });
                }
            }
        }
        Ok((None, skipped))
    }

    /// Apply every event after `replay`'s position up to `upto` (or the log's end),
    /// calling `progress` with the last applied sequence number after each batch.
    ///
    /// # Errors
    /// As [`OfflineLog::frames`] and [`Replay::apply`].
    pub fn replay_into(
        &self,
        replay: &mut Replay,
        upto: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), Error> {
        let upto = upto.min(self.last_seq()?);
        while replay.applied_seq() < upto {
            let next = replay.applied_seq() + 1;
            let frames = self.frames(next, upto)?;
            if frames.first().map(|(s, _)| *s) != Some(next) {
                return Err(ReplayError::Missing { seq: next }.into());
            }
            for (seq, frame) in &frames {
                if *seq != replay.applied_seq() + 1 {
                    return Err(ReplayError::Missing { seq: replay.applied_seq() + 1 }.into());
                }
                replay.apply(*seq, &decode(*seq, frame).map_err(ReplayError::from)?)?;
            }
            progress(replay.applied_seq());
        }
        Ok(())
    }
}

/// A replay starting at a snapshot, and that snapshot's registration.
pub type Restored = (Replay, SnapshotTaken);

/// A registered snapshot that could not be used.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Its registration.
    pub snapshot: SnapshotTaken,
    /// Why (the error chain).
    pub why: String,
}

/// The engine's projections, fed events by the caller; nothing else touches them.
pub struct Replay {
    projections: Projections,
    list: Vec<Arc<dyn Projection>>,
    applied: u64,
}

impl Replay {
    /// Empty projections, before event 1.
    ///
    /// # Errors
    /// FAISS could not be set up.
    pub fn empty() -> Result<Self, Error> {
        let projections = Projections::new(&Hooks::default())?;
        let list = projections.list();
        Ok(Self { projections, list, applied: 0 })
    }

    /// The state a snapshot object holds (checked against its registration `taken`).
    ///
    /// # Errors
    /// [`ReplayError::Snapshot`] when it does not decode, restore or match.
    pub fn from_snapshot(object: &[u8], taken: &SnapshotTaken) -> Result<Self, Error> {
        let mut replay = Self::empty()?;
        load(object, taken, &replay.projections).map_err(|e| ReplayError::Snapshot(Box::new(e)))?;
        replay.applied = taken.seq;
        Ok(replay)
    }

    /// The last event applied (the snapshot's for one restored from a snapshot).
    pub fn applied_seq(&self) -> u64 {
        self.applied
    }

    /// Apply event `seq`, which must be the next one.
    ///
    /// # Errors
    /// [`ReplayError::OutOfOrder`]; a projection failed to apply it.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Result<(), Error> {
        if seq != self.applied + 1 {
            return Err(ReplayError::OutOfOrder { seq, applied: self.applied }.into());
        }
        for p in &self.list {
            p.apply(seq, event).map_err(|source| {
                Error::Projection(crate::ProjectionError::Apply { seq, projection: p.name(), source })
            })?;
        }
        self.applied = seq;
        Ok(())
    }

    /// Names of the indexes, sorted.
    pub fn list_indexes(&self) -> Vec<String> {
        self.projections.catalog.names()
    }

    /// An index's parameters and length.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn get_index(&self, name: &str) -> Result<IndexInfo, Error> {
        let handle = self
            .projections
            .catalog
            .get(name)
            .ok_or_else(|| Error::IndexNotFound { name: name.to_owned() })?;
        let index = handle.read();
        Ok(IndexInfo { params: index.params.clone(), length: index.len() })
    }

    /// Every live record of an index, sorted by id.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; FAISS failed to read its storage.
    pub fn records(&self, name: &str) -> Result<Vec<Record>, Error> {
        let handle = self
            .projections
            .catalog
            .get(name)
            .ok_or_else(|| Error::IndexNotFound { name: name.to_owned() })?;
        let records = handle.read().records()?;
        Ok(records)
    }

    /// The logical state now (see the module documentation).
    ///
    /// # Errors
    /// FAISS failed to read an index; a projection could not write its state.
    pub fn state(&self) -> Result<LogicalState, Error> {
        let mut indexes = Vec::new();
        for name in self.list_indexes() {
            let info = self.get_index(&name)?;
            let records = self.records(&name)?;
            indexes.push(IndexState { name, params: info.params, records });
        }
        let mut sections = Vec::new();
        for p in &self.list {
            if p.name() == "vectors" {
                continue;
            }
            let mut bytes = Vec::new();
            p.write_snapshot(self.applied, &mut bytes)?;
            sections.push((p.name(), bytes));
        }
        Ok(LogicalState { seq: self.applied, indexes, sections })
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        for p in &self.list {
            p.shutdown();
        }
    }
}

/// One index's logical state.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexState {
    /// Its name.
    pub name: String,
    /// Its parameters (the HNSW configuration in effect).
    pub params: IndexParams,
    /// Its live records, sorted by id.
    pub records: Vec<Record>,
}

/// Everything a user can observe of the state as of one sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalState {
    /// The last event it includes.
    pub seq: u64,
    /// The indexes, sorted by name.
    pub indexes: Vec<IndexState>,
    /// Every other projection's state, as its snapshot section encodes it (sorted and
    /// deterministic), in apply order.
    pub sections: Vec<(&'static str, Vec<u8>)>,
}

/// A state's SHA-256 digest, whole and per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDigest {
    /// Of everything, as 64 hex digits.
    pub total: String,
    /// Of each part (`index/NAME` or a projection's name), in digest order.
    pub parts: Vec<(String, String)>,
}

/// The digest format's version, the first thing hashed.
pub const DIGEST_VERSION: &str = "annal-state-digest-v1";

impl LogicalState {
    /// Its digest (docs/FORMAT.md, "State digest").
    pub fn digest(&self) -> StateDigest {
        let mut total = Sha256::new();
        total.update(DIGEST_VERSION.as_bytes());
        let mut parts = Vec::new();
        for index in &self.indexes {
            let bytes = encode_index(index);
            total.update(&bytes);
            parts.push((format!("index/{}", index.name), hex(&Sha256::digest(&bytes))));
        }
        for (name, bytes) in &self.sections {
            let mut e = Enc::default();
            e.str(name);
            e.bytes(bytes);
            total.update(&e.buf);
            parts.push(((*name).to_owned(), hex(&Sha256::digest(&e.buf))));
        }
        StateDigest { total: hex(&total.finalize()), parts }
    }

    /// The first difference between two states, described for an operator (`self` is
    /// called `left`, `other` `right`); `None` when they are equal.
    pub fn first_difference(&self, other: &LogicalState) -> Option<String> {
        let mut left = self.indexes.iter().peekable();
        let mut right = other.indexes.iter().peekable();
        loop {
            match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some(a), None) => return Some(format!("index {:?}: only on the left", a.name)),
                (None, Some(b)) => return Some(format!("index {:?}: only on the right", b.name)),
                (Some(a), Some(b)) if a.name < b.name => {
                    return Some(format!("index {:?}: only on the left", a.name))
                }
                (Some(a), Some(b)) if a.name > b.name => {
                    return Some(format!("index {:?}: only on the right", b.name))
                }
                (Some(a), Some(b)) => {
                    if let Some(d) = index_difference(a, b) {
                        return Some(d);
                    }
                    left.next();
                    right.next();
                }
            }
        }
        for ((name, a), (_, b)) in self.sections.iter().zip(&other.sections) {
            if a != b {
                let at = a.iter().zip(b.iter()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                return Some(format!(
                    "projection {name:?}: states differ from byte {at} of its snapshot section \
                     ({} bytes on the left, {} on the right)",
                    a.len(),
                    b.len()
                ));
            }
        }
        None
    }
}

fn index_difference(a: &IndexState, b: &IndexState) -> Option<String> {
    let name = &a.name;
    if a.params != b.params {
        return Some(format!(
            "index {name:?}: parameters {:?} on the left, {:?} on the right",
            a.params, b.params
        ));
    }
    let mut left = a.records.iter().peekable();
    let mut right = b.records.iter().peekable();
    loop {
        let (x, y) = match (left.peek(), right.peek()) {
            (None, None) => return None,
            (Some(x), None) => return Some(format!("index {name:?}: record {:?} only on the left", x.id)),
            (None, Some(y)) => return Some(format!("index {name:?}: record {:?} only on the right", y.id)),
            (Some(x), Some(y)) => (*x, *y),
        };
        if x.id < y.id {
            return Some(format!("index {name:?}: record {:?} only on the left", x.id));
        }
        if x.id > y.id {
            return Some(format!("index {name:?}: record {:?} only on the right", y.id));
        }
        let id = &x.id;
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        if bits(&x.vector) != bits(&y.vector) {
            let at = x.vector.iter().zip(&y.vector).position(|(p, q)| p.to_bits() != q.to_bits());
            return Some(match at {
                Some(i) => format!(
                    "index {name:?}: record {id:?}: vector differs at component {i} ({} on the left, {} on the right)",
                    x.vector[i], y.vector[i]
                ),
                None => format!("index {name:?}: record {id:?}: vector lengths differ"),
            });
        }
        if x.metadata != y.metadata {
            return Some(format!(
                "index {name:?}: record {id:?}: metadata {:?} on the left, {:?} on the right",
                x.metadata, y.metadata
            ));
        }
        if x.partition != y.partition {
            return Some(format!(
                "index {name:?}: record {id:?}: partition {:?} on the left, {:?} on the right",
                x.partition, y.partition
            ));
        }
        left.next();
        right.next();
    }
}

/// `str name, u32 dimension, str metric, u32 m, ef_construction, ef_search, u64 count`,
/// then per record by id: `str id, u32 length, f32 bits each, opt_str metadata,
/// opt_str partition`.
fn encode_index(index: &IndexState) -> Vec<u8> {
    let mut e = Enc::default();
    let p = &index.params;
    e.str(&index.name);
    e.u32(p.dimension);
    e.str(p.metric.name());
    e.u32(p.config.m);
    e.u32(p.config.ef_construction);
    e.u32(p.config.ef_search);
    e.u64(index.records.len() as u64);
    for r in &index.records {
        e.str(&r.id);
        e.u32(u32::try_from(r.vector.len()).unwrap_or(u32::MAX));
        for v in &r.vector {
            e.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        e.opt_str(r.metadata.as_deref());
        e.opt_str(r.partition.as_deref());
    }
    e.buf
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
