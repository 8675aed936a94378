//! The projections of an offline replay, and the logical state they hold: compared,
//! and digested (docs/FORMAT.md, "State digest").

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::codec::Enc;
use crate::error::Error;
use crate::event::{Event, SnapshotTaken};
use crate::projection::vectors::{IndexInfo, IndexParams, Record};
use crate::projection::{apply, Hooks, Projection, Projections};
use crate::snapshot::load;

use super::ReplayError;

/// The engine's projections, fed events by the caller; nothing else touches them.
pub struct Replay {
    projections: Projections,
    pub(super) list: Vec<Arc<dyn Projection>>,
    pub(super) applied: u64,
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
        apply(&self.list, seq, event, |_, _| {})?;
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
            let quantizer = match self.projections.catalog.get(&name) {
                Some(handle) => handle.read().quantizer_bytes(),
                None => Vec::new(),
            };
            indexes.push(IndexState { name, params: info.params, records, quantizer });
        }
        let mut sections = Vec::new();
        for p in &self.list {
            if p.name() == "vectors" {
                continue;
            }
            let mut bytes = Vec::new();
            p.write_state(self.applied, &mut bytes)?;
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
    /// Its trained quantizer (an empty trained FAISS graph, as FAISS serializes it;
    /// empty when its storage needs none or has too few vectors yet).
    pub quantizer: Vec<u8>,
}

/// Everything a user can observe of the state as of one sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalState {
    /// The last event it includes.
    pub seq: u64,
    /// The indexes, sorted by name.
    pub indexes: Vec<IndexState>,
    /// Every other projection's state as [`Projection::write_state`] encodes it (its
    /// snapshot section but for `payload`; sorted and deterministic), in apply order.
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
pub const DIGEST_VERSION: &str = "annal-state-digest-v4";

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
    crate::codec::write_config(&mut e, &p.config);
    e.bytes(&index.quantizer);
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
