//! The index's side of a rebuild: what to build, copying vectors out in chunks, and
//! installing the new graph.
use std::sync::atomic::Ordering;

use super::super::error::HnswError;
use super::super::hnsw::Hnsw;
use super::*;

impl VectorIndex {
    /// Vectors in the graph (positions), live or not.
    pub(crate) fn graph_len(&self) -> usize {
        self.hnsw.labels().len()
    }

    /// Where a rebuild starts: the configuration to build with, and the position below
    /// which only live vectors are copied. Above it lie the vectors of an upsert still
    /// staged (in the graph, not yet live) and everything added later: the rebuild copies
    /// those whatever their state, so a staged upsert published after the swap is whole.
    /// Also returns the label below which the copied positions lie.
    pub(crate) fn rebuild_plan(&self) -> (IndexParams, usize, i64) {
        let watermark = self.staging.unwrap_or(self.next_label);
        let live_until = self.hnsw.labels().partition_point(|&label| label < watermark);
        let params = IndexParams { config: self.build_config(), ..self.params.clone() };
        (params, live_until, watermark)
    }

    /// Copy the vectors at positions `from..until` into `labels` and `vectors` (cleared
    /// first), at most [`COPY_CHUNK_BYTES`] of them, skipping dead ones if `live_only`.
    /// Returns the position after the last one looked at.
    pub(crate) fn copy_chunk(
        &self,
        from: usize,
        until: usize,
        live_only: bool,
        labels: &mut Vec<i64>,
        vectors: &mut Vec<f32>,
    ) -> Result<usize, HnswError> {
        let dim = self.params.dimension as usize;
        let all = self.hnsw.labels();
        let until = until.min(all.len());
        let end = until.min(from + (COPY_CHUNK_BYTES / (4 * dim)).max(1));
        labels.clear();
        vectors.clear();
        if from >= end {
            return Ok(from.max(until));
        }
        vectors.resize((end - from) * dim, 0.0);
        self.hnsw.copy_vectors(from, vectors)?;
        labels.extend_from_slice(&all[from..end]);
        if live_only {
            let mut kept = 0;
            for i in 0..labels.len() {
                if self.is_live(labels[i]) {
                    labels[kept] = labels[i];
                    vectors.copy_within(i * dim..(i + 1) * dim, kept * dim);
                    kept += 1;
                }
            }
            labels.truncate(kept);
            vectors.truncate(kept * dim);
        }
        Ok(end)
    }

    /// Swap in `rebuilt`, which holds this graph's vectors up to position `done`: first
    /// the rest are added to it (whatever their state: tombstones stay tombstones), so
    /// nothing is lost. Runs under the write lock; the caller keeps `len - done` small.
    pub(crate) fn install(
        &mut self,
        mut rebuilt: Hnsw,
        done: usize,
        copied_live_below: i64,
    ) -> Result<(), HnswError> {
        let mut labels = Vec::new();
        let mut vectors = Vec::new();
        let mut at = done;
        while at < self.graph_len() {
            at = self.copy_chunk(at, usize::MAX, false, &mut labels, &mut vectors)?;
            rebuilt.add(&labels, &vectors)?;
            self.work.backfill.fetch_add(labels.len() as u64, Ordering::Relaxed);
        }
        if rebuilt.config().ef_search != self.params.config.ef_search {
            rebuilt.set_ef_search(self.params.config.ef_search)?;
        }
        rebuilt.set_refine(self.params.config.storage.refine);
        // Below `copied_live_below` the rebuild copied only vectors live at the time:
        // those dead now were replaced or deleted after it read them. They stay in the
        // new graph as tombstones (HNSW cannot remove them), never served.
        let stale = rebuilt.labels().iter().filter(|&&l| l < copied_live_below && !self.is_live(l)).count();
        self.work.stale.fetch_add(stale as u64, Ordering::Relaxed);
        self.work.rebuilt.fetch_add(1, Ordering::Relaxed);
        self.hnsw = rebuilt;
        Ok(())
    }

    /// Rebuild a small graph for [`VectorIndex::build_config`] in place, under the
    /// write lock the caller holds: every position is copied as it is (tombstones stay
    /// tombstones). Does nothing for a graph over [`REQUANTIZE_INLINE_MAX`] positions, or
    /// one already built so (the rebuilder then does it, off to the side).
    pub(crate) fn requantize_small(&mut self) -> Result<(), HnswError> {
        let wanted = self.build_config();
        let built = self.hnsw.config();
        let same = (built.m, built.ef_construction, built.storage.codes())
            == (wanted.m, wanted.ef_construction, wanted.storage.codes());
        if same || self.faulted || self.staging.is_some() || self.graph_len() > REQUANTIZE_INLINE_MAX {
            return Ok(());
        }
        let graph = self.empty_graph(wanted)?;
        self.install(graph, 0, 0)
    }
}

/// The most graph positions rebuilt inline when a quantizer is trained (the flat graph
/// an index served from while it had too few vectors to train).
pub const REQUANTIZE_INLINE_MAX: usize = 32_768;
