//! Applying writes to an index: staging and adding an upsert's vectors, publishing it,
//! deletes, tombstones, partition membership and migration moves.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::error::HnswError;
use super::*;
use crate::event::{Metric, VectorItem};
use crate::vecmath::{norm, normalize};

impl VectorIndex {
    /// Whether `item` can be applied; the engine validates before appending, so this
    /// only rejects events from a log written under different rules.
    pub(crate) fn accepts(&self, item: &VectorItem) -> bool {
        if item.vector.len() != self.params.dimension as usize || !item.vector.iter().all(|x| x.is_finite()) {
            return false;
        }
        let norm = norm(&item.vector);
        (self.params.metric != Metric::Cosine || norm > 0.0) && ((norm * norm) as f32).is_finite()
    }

    /// Reserve labels for `items` (all accepted) and lay out their vectors for FAISS:
    /// the first step of an upsert. Nothing is visible to searches until
    /// [`VectorIndex::publish`].
    pub(crate) fn stage(&mut self, items: &[VectorItem]) -> Staged {
        let dim = self.params.dimension as usize;
        let labels: Vec<i64> = (self.next_label..).take(items.len()).collect();
        let mut vectors = Vec::with_capacity(items.len() * dim);
        for item in items {
            let start = vectors.len();
            vectors.extend_from_slice(&item.vector);
            if self.params.metric == Metric::Cosine {
                normalize(&mut vectors[start..]);
            }
        }
        self.staging = Some(self.next_label);
        self.next_label += items.len() as i64;
        Staged { labels, vectors, dim }
    }

    /// Add one chunk of a staged upsert to the graph. Its labels are not live yet, so
    /// searches (which pass the live bitmap whenever the graph holds non-live labels)
    /// do not see them.
    pub(crate) fn add_staged(
        &mut self,
        staged: &Staged,
        chunk: std::ops::Range<usize>,
    ) -> Result<(), HnswError> {
        let vectors = &staged.vectors[chunk.start * staged.dim..chunk.end * staged.dim];
        let n = chunk.len() as u64;
        self.hnsw.add(&staged.labels[chunk], vectors)?;
        self.work.incremental.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Make a staged upsert visible, all at once: map the ids, replace older vectors,
    /// set the live bits. If an add failed part-way, `published` is false: the labels
    /// already in the graph simply stay dead.
    pub(crate) fn publish(&mut self, staged: Staged, items: &[VectorItem], published: bool) {
        self.staging = None;
        if !published {
            self.faulted = true;
            return;
        }
        for (label, item) in staged.labels.into_iter().zip(items) {
            let id: Arc<str> = Arc::from(item.id.as_str());
            if let Some(old) = self.by_id.insert(Arc::clone(&id), label) {
                self.kill(old);
            }
            let partition: Option<Arc<str>> = item.partition.as_deref().map(Arc::from);
            self.join(partition.as_ref(), label);
            self.payload.insert(label, item.metadata.as_deref());
            self.entries
                .insert(label, Entry { id, metadata: item.metadata.as_deref().map(Arc::from), partition });
            self.set_live(label);
        }
    }

    /// Delete the ids that are live; returns how many were.
    pub(crate) fn delete(&mut self, ids: &[String]) -> u64 {
        let mut deleted = 0;
        for id in ids {
            if let Some(label) = self.by_id.remove(id.as_str()) {
                self.kill(label);
                deleted += 1;
            }
        }
        deleted
    }

    /// How many of `ids` are live now.
    pub(crate) fn count_live(&self, ids: &[String]) -> u64 {
        ids.iter().filter(|id| self.by_id.contains_key(id.as_str())).count() as u64
    }

    pub(super) fn is_live(&self, label: i64) -> bool {
        let byte = usize::try_from(label / 8).unwrap_or(usize::MAX);
        self.live_bits.get(byte).is_some_and(|b| b & (1u8 << (label % 8)) != 0)
    }

    fn kill(&mut self, label: i64) {
        if let Some(entry) = self.entries.remove(&label) {
            self.leave(entry.partition.as_ref(), label);
            self.payload.remove(label, entry.metadata.as_deref());
        }
        if let Some(byte) = self.live_bits.get_mut((label / 8) as usize) {
            *byte &= !(1u8 << (label % 8));
        }
    }

    pub(super) fn join(&mut self, partition: Option<&Arc<str>>, label: i64) {
        if let Some(p) = partition {
            self.members.entry(Arc::clone(p)).or_default().insert(label);
        }
    }

    fn leave(&mut self, partition: Option<&Arc<str>>, label: i64) {
        if let Some(p) = partition {
            if let Some(set) = self.members.get_mut(p.as_ref()) {
                set.remove(&label);
                if set.is_empty() {
                    self.members.remove(p.as_ref());
                }
            }
        }
    }

    fn set_live(&mut self, label: i64) {
        let byte = (label / 8) as usize;
        if byte >= self.live_bits.len() {
            self.live_bits.resize(byte + 1, 0);
        }
        if let Some(b) = self.live_bits.get_mut(byte) {
            *b |= 1u8 << (label % 8);
        }
    }

    /// Replace the metadata of record `id` (its vector kept), and its partition when
    /// `partition` is given (empty: none). Returns false, changing nothing, when the
    /// record is not live.
    pub(crate) fn set_metadata(&mut self, id: &str, metadata: Option<&str>, partition: Option<&str>) -> bool {
        let Some(&label) = self.by_id.get(id) else { return false };
        let Some(entry) = self.entries.get_mut(&label) else { return false };
        let old = std::mem::replace(&mut entry.metadata, metadata.map(Arc::from));
        let moved =
            partition.map(|to| (entry.partition.clone(), (!to.is_empty()).then(|| Arc::<str>::from(to))));
        if let Some((_, to)) = &moved {
            entry.partition.clone_from(to);
        }
        self.payload.replace(label, old.as_deref(), metadata);
        if let Some((from, to)) = moved {
            self.leave(from.as_ref(), label);
            self.join(to.as_ref(), label);
        }
        true
    }

    /// Payload indexes of each metadata field of `defs` as its kind, built from the
    /// records live now (under a read lock), to install with
    /// [`VectorIndex::install_payload_indexes`].
    pub(crate) fn build_payload_indexes(
        &self,
        defs: &[(String, crate::event::PayloadKind)],
    ) -> super::payload::BuiltIndexes {
        let records = self.entries.iter().map(|(label, entry)| (*label, entry.metadata.as_deref()));
        super::payload::Payload::build(defs, records)
    }

    /// Put payload indexes built by [`VectorIndex::build_payload_indexes`] in place.
    pub(crate) fn install_payload_indexes(&mut self, built: super::payload::BuiltIndexes) {
        self.payload.install(built);
    }

    /// Drop the payload index on `field`; false if there was none.
    pub(crate) fn drop_payload_index(&mut self, field: &str) -> bool {
        self.payload.drop_index(field)
    }

    /// The payload indexes, by field.
    pub(crate) fn payload_indexes(&self) -> Vec<PayloadIndexInfo> {
        self.payload.infos()
    }

    /// Write the payload indexes and their postings to a snapshot section.
    pub(crate) fn write_payload(&self, e: &mut crate::codec::Enc) {
        self.payload.write(e);
    }

    /// Replace the payload indexes with a snapshot's.
    pub(crate) fn read_payload(
        &mut self,
        d: &mut crate::codec::Dec<'_>,
    ) -> Result<(), crate::codec::DecodeError> {
        self.payload.read(d)
    }

    /// The payload index definitions, by field.
    pub(crate) fn payload_definitions(&self) -> Vec<(String, crate::event::PayloadKind)> {
        self.payload.definitions()
    }

    /// The type of the payload index on `field`, if there is one.
    pub(crate) fn payload_kind(&self, field: &str) -> Option<crate::event::PayloadKind> {
        self.payload.get(field).map(|index| index.kind())
    }

    /// Move record `id` from partition `from` to `to` (empty: none). Returns false, and
    /// changes nothing, when the record is gone, no longer in `from`, or has other
    /// metadata than the plan saw (an upsert changed it after the move was planned).
    pub(crate) fn move_record(&mut self, id: &str, from: &str, to: &str, metadata_crc32: u32) -> bool {
        let Some(&label) = self.by_id.get(id) else { return false };
        let Some(entry) = self.entries.get(&label) else { return false };
        let current = entry.partition.clone();
        // The record as planned: same path and same metadata. An upsert since may have
        // put it back on the same path with other metadata (it resolved it under the
        // new template already): then it wins.
        if current.as_deref().unwrap_or("") != from
            || metadata_crc(entry.metadata.as_deref()) != metadata_crc32
        {
            return false;
        }
        self.leave(current.as_ref(), label);
        let to: Option<Arc<str>> = (!to.is_empty()).then(|| Arc::from(to));
        self.join(to.as_ref(), label);
        if let Some(entry) = self.entries.get_mut(&label) {
            entry.partition = to;
        }
        true
    }
}

/// CRC-32 of a record's metadata text, 0 for none: how a migration batch names the
/// version of a record it planned a move for.
pub(crate) fn metadata_crc(metadata: Option<&str>) -> u32 {
    metadata.map_or(0, |m| crc32fast::hash(m.as_bytes()))
}
