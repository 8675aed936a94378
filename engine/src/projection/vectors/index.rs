//! One vector index as projected from the log: the FAISS graph, the string-id <-> label
//! map, metadata, and the tombstones FAISS HNSW cannot do itself.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::error::HnswError;
use super::hnsw::{raw_scores, Hnsw};
use crate::codec::{Dec, DecodeError, Enc};
use crate::event::{HnswConfig, Metric, VectorItem};
use crate::projection::SnapshotError;
use crate::vecmath::{norm, normalize};

/// Share of dead vectors in a graph above which it is rebuilt from the live set.
pub const REBUILD_DEAD_SHARE: f64 = 0.20;
/// Fewest dead vectors that justify a rebuild (tiny graphs are not worth it).
pub const REBUILD_DEAD_MIN: u64 = 32;
/// Promotions kept per index: the current one and up to 50 earlier ones to roll back to.
pub const PROMOTIONS_MAX: usize = 51;
/// Bytes of stored vectors copied out of FAISS per step of a rebuild or an exact scan:
/// one FFI call per step, and a read-lock hold short enough for a waiting writer.
pub const COPY_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A partition filter selecting at most this many records is searched by an exact scan
/// of their vectors instead of the graph (see docs/PERFORMANCE.md for the measurement).
pub const FILTER_EXACT_MAX: usize = 4096;

/// Parameters of an index: fixed at creation, but for `config`, which is the one in
/// effect (the creation config, or the last promotion not rolled back).
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

/// The graph work of one index since the engine opened: what the projector added to
/// the serving graph (incremental), what rebuilds copied into new graphs (backfill),
/// what they copied that was dead by the swap (stale: kept as tombstones, never
/// served), failed rebuilds and the last error, and the running rebuild's progress.
/// Atomics, so the rebuild thread updates them under a read lock.
#[derive(Debug, Default)]
pub struct GraphWork {
    pub(crate) incremental: AtomicU64,
    pub(crate) backfill: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rebuilt: AtomicU64,
    pub(crate) progress_done: AtomicU64,
    pub(crate) progress_total: AtomicU64,
    pub(crate) last_error: parking_lot::Mutex<Option<String>>,
}

/// A copy of [`GraphWork`], as [`crate::Engine::graph`] reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphWorkReport {
    /// Vectors the projector added to the serving graph (new upserts).
    pub incremental: u64,
    /// Vectors rebuilds copied into new graphs.
    pub backfill: u64,
    /// Copied vectors that were replaced or deleted before the swap: kept in the new
    /// graph as tombstones, never served.
    pub stale: u64,
    /// Rebuilds swapped in.
    pub rebuilt: u64,
    /// Rebuilds that failed (the old graph stayed in service; retried with backoff).
    pub failed: u64,
    /// The running rebuild's progress: positions copied of the graph's positions.
    pub progress: Option<(u64, u64)>,
    /// The last rebuild failure, cleared by the next swap.
    pub last_error: Option<String>,
}

impl GraphWork {
    pub(crate) fn report(&self) -> GraphWorkReport {
        let total = self.progress_total.load(Ordering::Relaxed);
        GraphWorkReport {
            incremental: self.incremental.load(Ordering::Relaxed),
            backfill: self.backfill.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            rebuilt: self.rebuilt.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            progress: (total > 0).then(|| (self.progress_done.load(Ordering::Relaxed), total)),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// The projected state of one index.
pub(crate) struct VectorIndex {
    /// Graph work counters (see [`GraphWork`]).
    pub(crate) work: Arc<GraphWork>,
    pub(crate) params: IndexParams,
    hnsw: Hnsw,
    /// Live id -> label.
    by_id: HashMap<Arc<str>, i64>,
    /// Live label -> id and metadata.
    entries: HashMap<i64, Entry>,
    /// Partition path -> its live labels (records without a partition are in none),
    /// ordered, so a prefix filter is a range.
    members: BTreeMap<Arc<str>, HashSet<i64>>,
    /// Bit `l` set iff label `l` is live; FAISS reads it as an `IDSelectorBitmap`.
    live_bits: Vec<u8>,
    /// Label the next vector gets. Labels are never reused.
    next_label: i64,
    /// Whether a rebuild is queued or running.
    pub(crate) rebuild_pending: bool,
    /// First label of the upsert between [`VectorIndex::stage`] and
    /// [`VectorIndex::publish`], if one is.
    staging: Option<i64>,
    /// The configuration the index was created with.
    created: HnswConfig,
    /// Promoted configurations, oldest first; the last one is in effect.
    promotions: Vec<HnswConfig>,
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
            work: Arc::default(),
            created: params.config,
            promotions: Vec::new(),
            params,
            hnsw,
            by_id: HashMap::new(),
            entries: HashMap::new(),
            members: BTreeMap::new(),
            live_bits: Vec::new(),
            next_label: 0,
            rebuild_pending: false,
            staging: None,
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

    /// Whether the graph should be rebuilt: enough of it is dead, or it was built with
    /// an `m` or `ef_construction` other than the configuration now in effect.
    pub(crate) fn wants_rebuild(&self) -> bool {
        if self.rebuild_pending || self.faulted {
            return false;
        }
        let dead = self.dead();
        let built = self.hnsw.config();
        let stale =
            (built.m, built.ef_construction) != (self.params.config.m, self.params.config.ef_construction);
        stale || (dead >= REBUILD_DEAD_MIN && dead as f64 > REBUILD_DEAD_SHARE * self.hnsw.len() as f64)
    }

    /// The configuration the serving graph was built with (its `ef_search` is the one
    /// in effect).
    pub(crate) fn built_config(&self) -> HnswConfig {
        self.hnsw.config()
    }

    /// Put `config` in effect (a promotion). `ef_search` applies to the next search;
    /// a new `m` or `ef_construction` makes [`VectorIndex::wants_rebuild`] true, and the
    /// rebuilt graph uses it.
    pub(crate) fn promote(&mut self, config: HnswConfig) -> Result<(), HnswError> {
        self.promotions.push(config);
        if self.promotions.len() > PROMOTIONS_MAX {
            self.promotions.remove(0);
        }
        self.set_config(config)
    }

    /// Undo the last promotion: the one before it is in effect again, or the creation
    /// config when there is none. Returns false (and changes nothing) when nothing is
    /// promoted.
    pub(crate) fn roll_back(&mut self) -> Result<bool, HnswError> {
        if self.promotions.pop().is_none() {
            return Ok(false);
        }
        let config = self.promotions.last().copied().unwrap_or(self.created);
        self.set_config(config)?;
        Ok(true)
    }

    fn set_config(&mut self, config: HnswConfig) -> Result<(), HnswError> {
        self.params.config = config;
        if self.hnsw.config().ef_search != config.ef_search {
            self.hnsw.set_ef_search(config.ef_search)?;
        }
        Ok(())
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

    fn is_live(&self, label: i64) -> bool {
        let byte = usize::try_from(label / 8).unwrap_or(usize::MAX);
        self.live_bits.get(byte).is_some_and(|b| b & (1u8 << (label % 8)) != 0)
    }

    fn kill(&mut self, label: i64) {
        if let Some(entry) = self.entries.remove(&label) {
            self.leave(entry.partition.as_ref(), label);
        }
        if let Some(byte) = self.live_bits.get_mut((label / 8) as usize) {
            *byte &= !(1u8 << (label % 8));
        }
    }

    fn join(&mut self, partition: Option<&Arc<str>>, label: i64) {
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

    /// Live records per partition path, sorted by path.
    pub(crate) fn partition_counts(&self) -> Vec<(String, u64)> {
        self.members.iter().map(|(p, set)| (p.to_string(), set.len() as u64)).collect()
    }

    /// The ids of the live records after `after`, unsorted (shared, no copy: the
    /// caller sorts them outside the lock).
    pub(crate) fn ids_after(&self, after: &str) -> Vec<Arc<str>> {
        self.by_id.keys().filter(|id| id.as_ref() > after).cloned().collect()
    }

    /// The metadata and partition of each of `ids` now (`None`: not live).
    /// Metadata comes back as shared text (no copy under the lock).
    #[allow(clippy::type_complexity)]
    pub(crate) fn lookup(&self, ids: &[Arc<str>]) -> Vec<Option<(Option<Arc<str>>, Option<Arc<str>>)>> {
        ids.iter()
            .map(|id| {
                let entry = self.entries.get(self.by_id.get(id.as_ref())?)?;
                Some((entry.metadata.clone(), entry.partition.clone()))
            })
            .collect()
    }

    /// The live labels in the partitions `filter` selects.
    fn members_of(&self, filter: &crate::partition::Filter) -> Vec<i64> {
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
    /// A small selection is scanned exactly (its members' vectors only); a large one is
    /// searched in the graph through a bitmap selector, asking for more neighbours the
    /// smaller the selection (FAISS's HNSW widens its beam to the number asked), and
    /// scanned exactly if the graph still comes up short.
    pub(crate) fn search_filtered(
        &self,
        queries: &[f32],
        k: usize,
        filter: &crate::partition::Filter,
    ) -> Result<Vec<Vec<Hit>>, HnswError> {
        if self.faulted {
            return Err(HnswError::Faulted { index: self.params.name.clone() });
        }
        let dim = self.params.dimension as usize;
        let mut queries = queries.to_vec();
        if self.params.metric == Metric::Cosine {
            queries.chunks_exact_mut(dim).for_each(normalize);
        }
        let nq = queries.len() / dim;
        let mut members = self.members_of(filter);
        let want = k.min(members.len());
        if want == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        if members.len() <= FILTER_EXACT_MAX {
            members.sort_unstable();
            let query_refs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
            return self.exact_among(&query_refs, want, &members);
        }
        let mut bits = vec![0u8; self.live_bits.len()];
        for &label in &members {
            if let Some(b) = bits.get_mut((label / 8) as usize) {
                *b |= 1u8 << (label % 8);
            }
        }
        let share = members.len() as f64 / self.entries.len().max(1) as f64;
        let wide = ((want as f64 / share).ceil() as usize).clamp(want, crate::limits::HNSW_EF_MAX as usize);
        let (distances, labels) = self.hnsw.search(&queries, wide, Some(&bits))?;
        self.graph_hits(&queries, &distances, &labels, wide, want, |short| {
            members.sort_unstable();
            self.exact_among(short, want, &members)
        })
    }

    /// The `k` nearest of the live `labels` (ascending) for each query, by an exact scan
    /// of just their vectors: consecutive positions are copied in one FFI call.
    fn exact_among(&self, queries: &[&[f32]], k: usize, labels: &[i64]) -> Result<Vec<Vec<Hit>>, HnswError> {
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
        // The graph walk may end short among tombstones; an exact scan of the live set
        // still owes the caller `want` results.
        self.graph_hits(&queries, &distances, &labels, want, want, |short| self.exact(short.to_vec(), want))
    }

    /// The graph's answer rows (`width` labels per query) as hits, at most `want` per
    /// query; the queries left short of `want` are answered by `exact` instead, in one
    /// call for all of them.
    fn graph_hits(
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
        (self.params.clone(), live_until, watermark)
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
        // Below `copied_live_below` the rebuild copied only vectors live at the time:
        // those dead now were replaced or deleted after it read them. They stay in the
        // new graph as tombstones (HNSW cannot remove them), never served.
        let stale = rebuilt.labels().iter().filter(|&&l| l < copied_live_below && !self.is_live(l)).count();
        self.work.stale.fetch_add(stale as u64, Ordering::Relaxed);
        self.work.rebuilt.fetch_add(1, Ordering::Relaxed);
        self.hnsw = rebuilt;
        Ok(())
    }
}

/// CRC-32 of a record's metadata text, 0 for none: how a migration batch names the
/// version of a record it planned a move for.
pub(crate) fn metadata_crc(metadata: Option<&str>) -> u32 {
    metadata.map_or(0, |m| crc32fast::hash(m.as_bytes()))
}

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

fn metric_tag(metric: Metric) -> u8 {
    match metric {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::Ip => 2,
    }
}

fn write_config(e: &mut Enc, c: HnswConfig) {
    e.u32(c.m);
    e.u32(c.ef_construction);
    e.u32(c.ef_search);
}

fn read_config(d: &mut Dec<'_>) -> Result<HnswConfig, DecodeError> {
    Ok(HnswConfig { m: d.u32()?, ef_construction: d.u32()?, ef_search: d.u32()? })
}

impl VectorIndex {
    /// Write this index's state to a snapshot section (layout in docs/FORMAT.md): its
    /// parameters and configurations, the label map with metadata and partitions, the
    /// live bitmap (tombstones are the graph's labels not in it), and the FAISS index as
    /// FAISS serializes it.
    pub(crate) fn write_snapshot(&self, e: &mut Enc) -> Result<(), SnapshotError> {
        if self.faulted {
            return Err(SnapshotError::Faulted { index: self.params.name.clone() });
        }
        e.str(&self.params.name);
        e.u32(self.params.dimension);
        e.u8(metric_tag(self.params.metric));
        write_config(e, self.created);
        e.u64(self.promotions.len() as u64);
        for c in &self.promotions {
            write_config(e, *c);
        }
        write_config(e, self.hnsw.config());
        e.i64(self.next_label);
        let mut labels: Vec<i64> = self.entries.keys().copied().collect();
        labels.sort_unstable();
        e.u64(labels.len() as u64);
        for label in labels {
            let entry = &self.entries[&label];
            e.i64(label);
            e.str(&entry.id);
            e.opt_str(entry.metadata.as_deref());
            e.opt_str(entry.partition.as_deref());
        }
        e.bytes(&self.live_bits);
        Ok(())
    }

    /// The FAISS part of [`VectorIndex::write_snapshot`], written straight to `out` after
    /// the rest (the graph is most of the bytes: no copy through the encoder).
    pub(crate) fn write_faiss(&self, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let faiss = self.hnsw.to_bytes()?;
        out.write_all(&(faiss.len() as u64).to_le_bytes())?;
        out.write_all(&faiss)?;
        Ok(())
    }

    /// The entries and live bitmap of a snapshot section, `d` at the entry count.
    #[allow(clippy::type_complexity)]
    fn read_entries(
        d: &mut Dec<'_>,
        next_label: i64,
    ) -> Result<(HashMap<i64, Entry>, HashMap<Arc<str>, i64>, Vec<u8>), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "vectors", source };
        let n = d.count(8 + 8 + 1 + 1).map_err(corrupt)?;
        let mut entries = HashMap::with_capacity(n);
        let mut by_id = HashMap::with_capacity(n);
        for _ in 0..n {
            let label = d.i64().map_err(corrupt)?;
            let id: Arc<str> = Arc::from(d.str().map_err(corrupt)?);
            let metadata = d.opt_str().map_err(corrupt)?.map(Arc::from);
            let partition = d.opt_str().map_err(corrupt)?.map(Arc::from);
            if label < 0 || label >= next_label || by_id.insert(Arc::clone(&id), label).is_some() {
                return Err(corrupt(
                    d.error(format!("entry {id:?} with label {label} is out of range or repeated")),
                ));
            }
            entries.insert(label, Entry { id, metadata, partition });
        }
        let live_bits = d.bytes().map_err(corrupt)?.to_vec();
        Ok((entries, by_id, live_bits))
    }

    /// Read an index written by [`VectorIndex::write_snapshot`].
    pub(crate) fn read_snapshot(d: &mut Dec<'_>) -> Result<Self, SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "vectors", source };
        let name = d.str().map_err(corrupt)?.to_owned();
        let dimension = d.u32().map_err(corrupt)?;
        let metric = match d.u8().map_err(corrupt)? {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::Ip,
            tag => return Err(corrupt(d.error(format!("metric tag {tag}")))),
        };
        let created = read_config(d).map_err(corrupt)?;
        let n = d.count(12).map_err(corrupt)?;
        let promotions = (0..n).map(|_| read_config(d)).collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
        let built = read_config(d).map_err(corrupt)?;
        let next_label = d.i64().map_err(corrupt)?;
        // A section that passed its CRC may still come from another writer: what the
        // engine would refuse from a caller it refuses here too.
        let checked = crate::validate::dimension(dimension)
            .and_then(|()| crate::validate::config(&created))
            .and_then(|()| crate::validate::config(&built))
            .and_then(|()| promotions.iter().try_for_each(crate::validate::config));
        if let Err(invalid) = checked {
            return Err(corrupt(d.error(format!("index {name:?}: {invalid}"))));
        }
        if promotions.len() > PROMOTIONS_MAX {
            return Err(corrupt(d.error(format!("index {name:?}: {} promotions", promotions.len()))));
        }
        // The graph comes after the entries: find it with a walk over their lengths,
        // and let FAISS read it on a second thread while this one builds the id maps
        // (the two largest costs of a restore, overlapped).
        let faiss = {
            let mut skip = d.clone();
            let n = skip.count(8 + 8 + 1 + 1).map_err(corrupt)?;
            for _ in 0..n {
                skip.i64().map_err(corrupt)?;
                skip.str().map_err(corrupt)?;
                skip.opt_str().map_err(corrupt)?;
                skip.opt_str().map_err(corrupt)?;
            }
            skip.bytes().map_err(corrupt)?; // live bitmap
            skip.bytes().map_err(corrupt)?
        };
        let (hnsw, entries, by_id, live_bits) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| Hnsw::from_bytes(faiss, dimension, built));
            let maps = Self::read_entries(d, next_label);
            let hnsw = match reading.join() {
                Ok(read) => read,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            maps.map(|(entries, by_id, live_bits)| (hnsw, entries, by_id, live_bits))
        })?;
        let hnsw = hnsw?;
        d.bytes().map_err(corrupt)?; // the graph, read above
        let labels = hnsw.labels();
        if labels.last().is_some_and(|l| *l >= next_label) {
            return Err(corrupt(
                d.error(format!("index {name:?}: a graph label is at or past {next_label}")),
            ));
        }
        let is_live = |label: i64| {
            let (byte, bit) = ((label / 8) as usize, label % 8);
            live_bits.get(byte).is_some_and(|b| b & (1 << bit) != 0)
        };
        if let Some(label) = entries.keys().find(|l| labels.binary_search(l).is_err() || !is_live(**l)) {
            return Err(corrupt(
                d.error(format!("index {name:?}: entry label {label} is not a live graph label")),
            ));
        }
        let config = promotions.last().copied().unwrap_or(created);
        let mut members: BTreeMap<Arc<str>, HashSet<i64>> = BTreeMap::new();
        for (&label, entry) in &entries {
            if let Some(p) = &entry.partition {
                members.entry(Arc::clone(p)).or_default().insert(label);
            }
        }
        let mut index = Self {
            work: Arc::default(),
            members,
            params: IndexParams { name, dimension, metric, config },
            hnsw,
            by_id,
            entries,
            live_bits,
            next_label,
            rebuild_pending: false,
            staging: None,
            created,
            promotions,
            faulted: false,
        };
        if index.hnsw.config().ef_search != config.ef_search {
            index.hnsw.set_ef_search(config.ef_search)?;
        }
        Ok(index)
    }
}

/// One live record of an index, as [`VectorIndex::records`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// Its vector as stored (normalised for cosine indexes).
    pub vector: Vec<f32>,
    /// Its metadata as sent.
    pub metadata: Option<String>,
    /// Its partition.
    pub partition: Option<String>,
}

impl VectorIndex {
    /// Every live vector in graph order, as ids and one flat array (no per-record
    /// allocation, no sort): what a trial copies.
    pub(crate) fn live_vectors(&self) -> Result<(Vec<String>, Vec<f32>), HnswError> {
        let dim = self.params.dimension as usize;
        let labels = self.hnsw.labels();
        let chunk = (COPY_CHUNK_BYTES / (4 * dim.max(1))).max(1);
        let mut ids = Vec::with_capacity(self.entries.len());
        let mut flat = Vec::with_capacity(self.entries.len() * dim);
        let mut buf = vec![0f32; chunk.min(labels.len()) * dim];
        for start in (0..labels.len()).step_by(chunk) {
            let n = chunk.min(labels.len() - start);
            self.hnsw.copy_vectors(start, &mut buf[..n * dim])?;
            for (i, label) in labels[start..start + n].iter().enumerate() {
                if let Some(entry) = self.entries.get(label) {
                    ids.push(entry.id.to_string());
                    flat.extend_from_slice(&buf[i * dim..(i + 1) * dim]);
                }
            }
        }
        Ok((ids, flat))
    }

    /// Every live record, sorted by id, vectors read from FAISS's storage in chunks.
    pub(crate) fn records(&self) -> Result<Vec<Record>, HnswError> {
        let dim = self.params.dimension as usize;
        let labels = self.hnsw.labels();
        let chunk = (COPY_CHUNK_BYTES / (4 * dim.max(1))).max(1);
        let mut out = Vec::with_capacity(self.entries.len());
        // A chunk, or the whole graph if smaller: not 4 MiB zeroed for a few vectors.
        let mut buf = vec![0f32; chunk.min(labels.len()) * dim];
        for start in (0..labels.len()).step_by(chunk) {
            let n = chunk.min(labels.len() - start);
            self.hnsw.copy_vectors(start, &mut buf[..n * dim])?;
            for (i, label) in labels[start..start + n].iter().enumerate() {
                if let Some(entry) = self.entries.get(label) {
                    out.push(Record {
                        id: entry.id.to_string(),
                        vector: buf[i * dim..(i + 1) * dim].to_vec(),
                        metadata: entry.metadata.as_deref().map(str::to_owned),
                        partition: entry.partition.as_deref().map(str::to_owned),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Filter;

    /// An L2 index of `n` 8-d records, `v{i}` in partition `p{i % parts}/x`.
    fn index(n: usize, parts: usize) -> VectorIndex {
        let params = IndexParams {
            name: "t".into(),
            dimension: 8,
            metric: Metric::L2,
            config: HnswConfig { m: 16, ef_construction: 40, ef_search: 16 },
        };
        let mut index = VectorIndex::new(params).unwrap();
        let items: Vec<VectorItem> = (0..n)
            .map(|i| VectorItem {
                id: format!("v{i}"),
                vector: (0..8).map(|j| ((i * 7919 + j * 104_729) % 1000) as f32 / 100.0).collect(),
                metadata: None,
                partition: Some(format!("p{}/x", i % parts)),
            })
            .collect();
        let staged = index.stage(&items);
        index.add_staged(&staged, 0..staged.len()).unwrap();
        index.publish(staged, &items, true);
        index
    }

    #[test]
    fn a_filter_over_many_records_searches_the_graph_and_never_leaves_the_filter() {
        let index = index(3 * (FILTER_EXACT_MAX + 500), 3);
        let filter = Filter::parse("p1/x").unwrap();
        assert!(index.members_of(&filter).len() > FILTER_EXACT_MAX, "the graph path");
        let queries: Vec<f32> = (0..20 * 8).map(|i| ((i * 31) % 1000) as f32 / 100.0).collect();
        for hits in index.search_filtered(&queries, 10, &filter).unwrap() {
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| h.partition.as_deref() == Some("p1/x")), "{hits:?}");
        }
        let prefix = Filter::parse("p2/").unwrap();
        for hits in index.search_filtered(&queries, 10, &prefix).unwrap() {
            assert!(hits.len() == 10 && hits.iter().all(|h| h.partition.as_deref() == Some("p2/x")));
        }
    }

    #[test]
    fn a_move_applies_only_from_the_partition_it_was_planned_from() {
        let mut index = index(10, 2);
        assert!(!index.move_record("v1", "p0/x", "q", 0), "v1 is in p1/x");
        assert!(!index.move_record("v1", "p1/x", "q", 7), "other metadata than planned");
        assert!(index.move_record("v1", "p1/x", "q", 0));
        assert!(!index.move_record("gone", "", "q", 0));
        assert_eq!(index.partition_counts(), [("p0/x".into(), 5), ("p1/x".into(), 4), ("q".into(), 1)]);
        let hits = index.search_filtered(&[0.0; 8], 10, &Filter::parse("q").unwrap()).unwrap();
        assert_eq!(hits[0].len(), 1);
    }
}
