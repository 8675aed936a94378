//! One vector index as projected from the log: the FAISS graph, the string-id <-> label
//! map, metadata, and the tombstones FAISS HNSW cannot do itself.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::HnswError;
use super::hnsw::Hnsw;
use crate::event::{HnswConfig, Metric, VectorItem};

/// Share of dead vectors in a graph above which it is rebuilt from the live set.
pub const REBUILD_DEAD_SHARE: f64 = 0.20;
/// Fewest dead vectors that justify a rebuild (tiny graphs are not worth it).
pub const REBUILD_DEAD_MIN: u64 = 32;

/// Parameters of an index, fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexParams {
    /// Index name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Distance metric.
    pub metric: Metric,
    /// HNSW configuration.
    pub config: HnswConfig,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The vector's id.
    pub id: Arc<str>,
    /// Distance to the query; smaller is closer (see [`Metric`]).
    pub distance: f32,
    /// The vector's metadata (JSON text), if any.
    pub metadata: Option<Arc<str>>,
    /// The partition the vector belongs to, if any.
    pub partition: Option<Arc<str>>,
}

struct Entry {
    id: Arc<str>,
    metadata: Option<Arc<str>>,
    partition: Option<Arc<str>>,
}

/// The projected state of one index.
pub(crate) struct VectorIndex {
    pub(crate) params: IndexParams,
    hnsw: Hnsw,
    /// Live id -> label.
    by_id: HashMap<Arc<str>, i64>,
    /// Live label -> id and metadata.
    entries: HashMap<i64, Entry>,
    /// Bit `l` set iff label `l` is live; FAISS reads it as an `IDSelectorBitmap`.
    live_bits: Vec<u8>,
    /// Label the next vector gets. Labels are never reused.
    next_label: i64,
    /// Whether a rebuild is queued or running.
    pub(crate) rebuild_pending: bool,
    /// First label of the upsert between [`VectorIndex::stage`] and
    /// [`VectorIndex::publish`], if one is.
    staging: Option<i64>,
    /// One past the highest label added to the graph. Below `next_label` only while an
    /// upsert is staged and not all its chunks are added yet.
    graph_end: i64,
    /// Set when a FAISS add failed part-way: the graph may then disagree with FAISS's own
    /// id map, so the index refuses searches until the engine is reopened and replays.
    faulted: bool,
}

/// An upsert whose labels are reserved and whose vectors are laid out for FAISS.
pub(crate) struct Staged {
    labels: Vec<i64>,
    vectors: Vec<f32>,
    dim: usize,
}

impl Staged {
    /// Number of vectors.
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }
}

impl VectorIndex {
    pub(crate) fn new(params: IndexParams) -> Result<Self, HnswError> {
        let hnsw = Hnsw::new(params.dimension, params.metric, params.config)?;
        Ok(Self {
            params,
            hnsw,
            by_id: HashMap::new(),
            entries: HashMap::new(),
            live_bits: Vec::new(),
            next_label: 0,
            rebuild_pending: false,
            staging: None,
            graph_end: 0,
            faulted: false,
        })
    }

    /// Live vectors.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Vectors in the graph that are deleted or replaced.
    pub(crate) fn dead(&self) -> u64 {
        self.hnsw.len().saturating_sub(self.len())
    }

    /// Whether enough of the graph is dead that it should be rebuilt.
    pub(crate) fn wants_rebuild(&self) -> bool {
        let dead = self.dead();
        !self.rebuild_pending
            && dead >= REBUILD_DEAD_MIN
            && dead as f64 > REBUILD_DEAD_SHARE * self.hnsw.len() as f64
    }

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
        let labels = &staged.labels[chunk];
        self.hnsw.add(labels, vectors)?;
        if let Some(&last) = labels.last() {
            self.graph_end = last + 1;
        }
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
            self.entries.insert(
                label,
                Entry {
                    id,
                    metadata: item.metadata.as_deref().map(Arc::from),
                    partition: item.partition.as_deref().map(Arc::from),
                },
            );
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

    fn kill(&mut self, label: i64) {
        self.entries.remove(&label);
        if let Some(byte) = self.live_bits.get_mut((label / 8) as usize) {
            *byte &= !(1u8 << (label % 8));
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
        let mut out = Vec::with_capacity(nq);
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            let row = q * want..(q + 1) * want;
            let mut hits: Vec<Hit> = labels[row.clone()]
                .iter()
                .zip(&distances[row])
                .filter_map(|(&label, &raw)| self.hit(label, raw))
                .collect();
            if hits.len() < want {
                // The graph walk ended short among tombstones; an exact scan of the
                // live set still owes the caller `want` results.
                hits = self.exact(query, want)?;
            }
            out.push(hits);
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

    fn exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, HnswError> {
        let mut scored = Vec::with_capacity(self.entries.len());
        for &label in self.entries.keys() {
            let v = self.hnsw.reconstruct(label)?;
            let raw = match self.params.metric {
                Metric::L2 => v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                Metric::Cosine | Metric::Ip => v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(),
            };
            scored.push((self.distance(raw), label));
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(scored.into_iter().take(k).filter_map(|(d, label)| self.hit_at(label, d)).collect())
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

    /// What a background rebuild needs: the live labels and their stored vectors, and
    /// the label watermark they were taken at.
    pub(crate) fn rebuild_input(&self) -> Result<RebuildInput, HnswError> {
        let mut labels: Vec<i64> = self.entries.keys().copied().collect();
        labels.sort_unstable();
        let dim = self.params.dimension as usize;
        let mut vectors = Vec::with_capacity(labels.len() * dim);
        for &label in &labels {
            vectors.extend_from_slice(&self.hnsw.reconstruct(label)?);
        }
        // Labels of a staged upsert are not live yet: they are at or above the watermark,
        // so `install` carries over the chunks already added, and the chunks still to
        // come are added to whichever graph is in place by then.
        let watermark = self.staging.unwrap_or(self.next_label);
        Ok(RebuildInput { params: self.params.clone(), labels, vectors, watermark })
    }

    /// Swap in a graph rebuilt from `input`, first adding what was upserted since the
    /// input was taken (labels at or above its watermark), so nothing is lost.
    pub(crate) fn install(&mut self, mut rebuilt: Hnsw, watermark: i64) -> Result<(), HnswError> {
        let dim = self.params.dimension as usize;
        let labels: Vec<i64> = (watermark..self.graph_end).collect();
        let mut vectors = Vec::with_capacity(labels.len() * dim);
        for &label in &labels {
            vectors.extend_from_slice(&self.hnsw.reconstruct(label)?);
        }
        rebuilt.add(&labels, &vectors)?;
        self.hnsw = rebuilt;
        Ok(())
    }
}

/// A snapshot of an index's live set, built into a new graph off the write lock.
pub(crate) struct RebuildInput {
    pub(crate) params: IndexParams,
    pub(crate) labels: Vec<i64>,
    pub(crate) vectors: Vec<f32>,
    pub(crate) watermark: i64,
}

impl RebuildInput {
    /// Build the new graph (the slow part; runs on the rebuild thread).
    pub(crate) fn build(&self) -> Result<Hnsw, HnswError> {
        let mut hnsw = Hnsw::new(self.params.dimension, self.params.metric, self.params.config)?;
        hnsw.add(&self.labels, &self.vectors)?;
        Ok(hnsw)
    }
}

/// Euclidean norm, summed in f64 so that neither tiny nor large components under- or
/// overflow on the way (an f32 sum of 1e-23 squares is 0, of 1e20 squares infinite).
pub(crate) fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
}

fn normalize(v: &mut [f32]) {
    let n = norm(v);
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / n) as f32);
    }
}
