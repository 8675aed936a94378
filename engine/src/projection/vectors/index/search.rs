//! Searching an index: the graph (with the live bitmap when it holds tombstones),
//! partition filters (an exact scan of few members, else the graph with a selector),
//! and the exact scan that fills a short answer.

use std::collections::BinaryHeap;
use std::sync::Arc;

use super::super::error::HnswError;
use super::super::hnsw::raw_scores;
use super::*;
use crate::event::Metric;
use crate::vecmath::normalize;

/// A candidate of an exact scan; the heap's top is the worst kept so far.
#[derive(PartialEq)]
struct Scored {
    distance: f32,
    label: i64,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.distance.total_cmp(&other.distance).then(self.label.cmp(&other.label))
    }
}

impl VectorIndex {
    /// The live labels in the partitions `filter` selects.
    pub(super) fn members_of(&self, filter: &crate::partition::Filter) -> Vec<i64> {
        use crate::partition::Filter;
        match filter {
            Filter::Exact(path) => {
                self.members.get(path.as_str()).map(|set| set.iter().copied().collect()).unwrap_or_default()
            }
            Filter::Prefix(prefix) => self
                .members
                .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
                .take_while(|(p, _)| p.starts_with(prefix.as_str()))
                .flat_map(|(_, set)| set.iter().copied())
                .collect(),
        }
    }

    /// The `k` nearest live vectors in the partitions `filter` selects, for each query.
    #[cfg(test)]
    pub(crate) fn search_filtered(
        &self,
        queries: &[f32],
        k: usize,
        filter: &crate::partition::Filter,
    ) -> Result<Vec<Vec<Hit>>, crate::Error> {
        let selection = self.select(Some(filter), None)?;
        Ok(self.search_selected(queries, k, selection)?.0)
    }

    /// The `k` nearest of the live `labels` (ascending) for each query, by an exact scan
    /// of just their vectors: consecutive positions are copied in one FFI call.
    pub(super) fn exact_among(
        &self,
        queries: &[&[f32]],
        k: usize,
        labels: &[i64],
    ) -> Result<Vec<Vec<Hit>>, HnswError> {
        let dim = self.params.dimension as usize;
        let all = self.hnsw.labels();
        let mut best: Vec<BinaryHeap<Scored>> =
            queries.iter().map(|_| BinaryHeap::with_capacity(k + 1)).collect();
        let positions: Vec<usize> = labels.iter().filter_map(|l| all.binary_search(l).ok()).collect();
        let per_chunk = (COPY_CHUNK_BYTES / (4 * dim)).max(1);
        let mut buffer = Vec::with_capacity(per_chunk.min(positions.len()) * dim);
        let mut chunk_labels = Vec::with_capacity(per_chunk.min(positions.len()));
        let mut scores = vec![0f32; per_chunk.min(positions.len())];
        let mut at = 0;
        while at < positions.len() {
            buffer.clear();
            chunk_labels.clear();
            // Gather up to a chunk of members, a run of consecutive positions per call.
            while at < positions.len() && chunk_labels.len() < per_chunk {
                let start = positions[at];
                let mut run = 1;
                while at + run < positions.len()
                    && positions[at + run] == start + run
                    && chunk_labels.len() + run < per_chunk
                {
                    run += 1;
                }
                let from = buffer.len();
                buffer.resize(from + run * dim, 0.0);
                self.hnsw.copy_vectors(start, &mut buffer[from..])?;
                chunk_labels.extend_from_slice(&all[start..start + run]);
                at += run;
            }
            let n = chunk_labels.len();
            self.keep_best(queries, &buffer[..n * dim], &chunk_labels, &mut scores[..n], &mut best, k);
        }
        Ok(self.hits_of(best))
    }

    /// The `k` nearest live vectors to each of `queries` (validated, nq*d floats).
    pub(crate) fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, HnswError> {
        if self.faulted {
            return Err(HnswError::Faulted { index: self.params.name.clone() });
        }
        let dim = self.params.dimension as usize;
        let mut queries = queries.to_vec();
        if self.params.metric == Metric::Cosine {
            queries.chunks_exact_mut(dim).for_each(normalize);
        }
        let nq = queries.len() / dim;
        let want = k.min(self.entries.len());
        if want == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        // Without tombstones no selector is needed, and FAISS's fast path runs.
        let selector = (self.dead() > 0).then_some(self.live_bits.as_slice());
        let (distances, labels) = self.hnsw.search(&queries, want, selector)?;
        // The graph walk may end short among tombstones; an exact scan of the live set
        // still owes the caller `want` results.
        self.graph_hits(&queries, &distances, &labels, want, want, |short| self.exact(short.to_vec(), want))
    }

    /// The graph's answer rows (`width` labels per query) as hits, at most `want` per
    /// query; the queries left short of `want` are answered by `exact` instead, in one
    /// call for all of them.
    pub(super) fn graph_hits(
        &self,
        queries: &[f32],
        distances: &[f32],
        labels: &[faiss_sys::idx_t],
        width: usize,
        want: usize,
        exact: impl FnOnce(&[&[f32]]) -> Result<Vec<Vec<Hit>>, HnswError>,
    ) -> Result<Vec<Vec<Hit>>, HnswError> {
        let dim = self.params.dimension as usize;
        let mut out = Vec::with_capacity(queries.len() / dim);
        let mut short = Vec::new();
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            let row = q * width..(q + 1) * width;
            let hits: Vec<Hit> = labels[row.clone()]
                .iter()
                .zip(&distances[row])
                .filter_map(|(&label, &raw)| self.hit(label, raw))
                .take(want)
                .collect();
            if hits.len() < want {
                short.push((q, query));
            }
            out.push(hits);
        }
        if !short.is_empty() {
            let refs: Vec<&[f32]> = short.iter().map(|(_, query)| *query).collect();
            for ((q, _), hits) in short.iter().zip(exact(&refs)?) {
                if let Some(slot) = out.get_mut(*q) {
                    *slot = hits;
                }
            }
        }
        Ok(out)
    }

    /// The hit for a raw FAISS score; `None` if the label is not live.
    fn hit(&self, label: i64, raw: f32) -> Option<Hit> {
        self.hit_at(label, self.distance(raw))
    }

    /// FAISS's raw score as a distance where smaller is closer.
    fn distance(&self, raw: f32) -> f32 {
        match self.params.metric {
            Metric::L2 => raw,
            Metric::Cosine => 1.0 - raw,
            Metric::Ip => -raw,
        }
    }

    /// The `k` nearest live vectors to each query by an exact scan of FAISS's stored
    /// vectors: copied out [`COPY_CHUNK_BYTES`] at a time (one FFI call per chunk) and
    /// scored with FAISS's own distance kernels; a bounded heap per query keeps the best
    /// `k`. Cost: one pass over the graph's vectors, O(n*d) per query, no allocation per
    /// vector.
    fn exact(&self, queries: Vec<&[f32]>, k: usize) -> Result<Vec<Vec<Hit>>, HnswError> {
        let dim = self.params.dimension as usize;
        let labels = self.hnsw.labels();
        let per_chunk = (COPY_CHUNK_BYTES / (4 * dim)).max(1);
        let mut buffer = vec![0f32; per_chunk.min(labels.len()) * dim];
        let mut scores = vec![0f32; per_chunk.min(labels.len())];
        let mut best: Vec<BinaryHeap<Scored>> =
            queries.iter().map(|_| BinaryHeap::with_capacity(k + 1)).collect();
        for start in (0..labels.len()).step_by(per_chunk) {
            let n = per_chunk.min(labels.len() - start);
            let vectors = &mut buffer[..n * dim];
            self.hnsw.copy_vectors(start, vectors)?;
            self.keep_best(&queries, vectors, &labels[start..start + n], &mut scores[..n], &mut best, k);
        }
        Ok(self.hits_of(best))
    }

    /// Score `vectors` (their `labels`, in order) against every query and keep each
    /// query's `k` nearest live ones in its heap (the exact scans' inner step).
    fn keep_best(
        &self,
        queries: &[&[f32]],
        vectors: &[f32],
        labels: &[i64],
        scores: &mut [f32],
        best: &mut [BinaryHeap<Scored>],
        k: usize,
    ) {
        let l2 = self.params.metric == Metric::L2;
        for (query, heap) in queries.iter().zip(best) {
            raw_scores(l2, query, vectors, scores);
            for (&label, &raw) in labels.iter().zip(scores.iter()) {
                if !self.is_live(label) {
                    continue;
                }
                heap.push(Scored { distance: self.distance(raw), label });
                if heap.len() > k {
                    heap.pop();
                }
            }
        }
    }

    /// Each query's heap as hits, nearest first.
    fn hits_of(&self, best: Vec<BinaryHeap<Scored>>) -> Vec<Vec<Hit>> {
        best.into_iter()
            .map(|heap| {
                heap.into_sorted_vec().into_iter().filter_map(|s| self.hit_at(s.label, s.distance)).collect()
            })
            .collect()
    }

    fn hit_at(&self, label: i64, distance: f32) -> Option<Hit> {
        let entry = self.entries.get(&label)?;
        Some(Hit {
            id: Arc::clone(&entry.id),
            distance,
            metadata: entry.metadata.clone(),
            partition: entry.partition.clone(),
        })
    }
}
