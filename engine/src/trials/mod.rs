//! Evaluation sets and trials: the measuring side of promotions.
//!
//! An evaluation set is a set of query vectors with their exact nearest neighbours,
//! computed by brute force (a FAISS flat index) over the index's live vectors: sampled
//! from those vectors (each query's own record held out of its truth) or supplied by
//! the caller. It is stored as an object in the primary bucket ([`evalset`]) and
//! registered by an `EvalSetCreated` event: the vectors are too many for an event.
//!
//! A trial builds an HNSW graph with a given configuration from a copy of the index's
//! live vectors, off to the side on the calling thread at lower CPU priority (the
//! serving graph is only read, in chunks, under its read lock), then measures recall@k
//! against the truth, single-query latency p50/p99, build time and size, and records a
//! `TrialRecorded` event. When the index changed since the set's truth was computed,
//! the truth is computed again over the vectors the trial built from, so a recall is
//! always exact for what was measured.

pub mod evalset;

use std::time::Instant;

use faiss::{index_factory, Index, MetricType};

use crate::event::{HnswConfig, Metric};
use crate::progress::{OnProgress, Progress};
use crate::projection::vectors::{needs_training, training_bounds, Hnsw, HnswError, IndexHandle};
use crate::vecmath::norm;

/// Vectors added to a trial graph per call (progress is reported between them).
const BUILD_CHUNK: usize = 4096;

/// The live vectors of an index, copied out: ids and vectors in the same order.
pub(crate) struct Live {
    pub(crate) dimension: u32,
    pub(crate) metric: Metric,
    pub(crate) ids: Vec<String>,
    /// `ids.len() * dimension` floats, as stored (normalised for cosine).
    pub(crate) flat: Vec<f32>,
}

impl Live {
    /// Copy the live vectors of `handle` (under its read lock, which searches share).
    pub(crate) fn read(handle: &IndexHandle) -> Result<Self, HnswError> {
        let index = handle.read();
        let (dimension, metric) = (index.params.dimension, index.params.metric);
        let (ids, flat) = index.live_vectors()?;
        Ok(Self { dimension, metric, ids, flat })
    }

    fn faiss_metric(&self) -> MetricType {
        match self.metric {
            Metric::L2 => MetricType::L2,
            Metric::Cosine | Metric::Ip => MetricType::InnerProduct,
        }
    }

    /// A query as the index sees it: normalised for cosine, as upserts are.
    pub(crate) fn prepare(&self, query: &[f32]) -> Vec<f32> {
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            let n = norm(&q);
            if n > 0.0 && n.is_finite() {
                for x in &mut q {
                    *x = (f64::from(*x) / n) as f32;
                }
            }
        }
        q
    }

    /// `n` distinct records chosen by `seed` (deterministic), as queries held out of
    /// their own truth.
    pub(crate) fn sample(&self, n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Option<String>>) {
        let d = self.dimension as usize;
        let mut chosen = std::collections::BTreeSet::new();
        let mut order = Vec::with_capacity(n);
        let mut state = seed;
        let mut next = || {
            // splitmix64: every seed (0 included) gives a full-period sequence.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let wanted = n.min(self.ids.len());
        if wanted * 2 > self.ids.len() {
            // Most of them: a seeded shuffle, not rejection sampling.
            let mut all: Vec<usize> = (0..self.ids.len()).collect();
            for i in (1..all.len()).rev() {
                all.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            order.extend_from_slice(&all[..wanted]);
        } else {
            while order.len() < wanted {
                let pick = (next() % self.ids.len() as u64) as usize;
                if chosen.insert(pick) {
                    order.push(pick);
                }
            }
        }
        let queries = order.iter().map(|&i| self.flat[i * d..(i + 1) * d].to_vec()).collect();
        let held_out = order.iter().map(|&i| Some(self.ids[i].clone())).collect();
        (queries, held_out)
    }

    /// The exact `k` nearest ids of each query (already prepared), nearest first, by
    /// brute force; a query's held-out id is never in its own truth.
    pub(crate) fn exact(
        &self,
        queries: &[Vec<f32>],
        held_out: &[Option<String>],
        k: usize,
    ) -> Result<Vec<Vec<String>>, HnswError> {
        let faiss = |op| move |source| HnswError::Faiss { op, source };
        let mut flat =
            index_factory(self.dimension, "Flat", self.faiss_metric()).map_err(faiss("index_factory"))?;
        flat.add(&self.flat).map_err(faiss("add"))?;
        let wanted = (k + 1).min(self.ids.len());
        if wanted == 0 {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let result = flat.search(&queries.concat(), wanted).map_err(faiss("search"))?;
        Ok(result
            .labels
            .chunks(wanted)
            .zip(held_out)
            .map(|(labels, held)| {
                labels
                    .iter()
                    .filter_map(|l| l.get().and_then(|p| self.ids.get(p as usize)))
                    .filter(|id| Some(*id) != held.as_ref())
                    .take(k)
                    .cloned()
                    .collect()
            })
            .collect())
    }

    /// Build a graph with `config` from these vectors (labels are positions), at lower
    /// CPU priority; returns it and how long it took.
    pub(crate) fn build(
        &self,
        config: HnswConfig,
        progress: OnProgress<'_>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(Hnsw, u64), HnswError> {
        // A thread of its own, so the lowered priority does not stay with a caller's
        // (pooled) thread.
        std::thread::scope(|scope| {
            let building = scope.spawn(|| {
                crate::projection::vectors::lower_priority();
                self.build_here(config, progress, stop)
            });
            match building.join() {
                Ok(built) => built,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    fn build_here(
        &self,
        config: HnswConfig,
        progress: OnProgress<'_>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(Hnsw, u64), HnswError> {
        let started = Instant::now();
        let d = self.dimension as usize;
        let n = self.ids.len();
        let mut graph = match needs_training(config.storage) {
            // Trained as the index would train it: its vectors in order, thinned evenly.
            true => {
                let step = n.div_ceil(training_bounds(config.storage, self.dimension).1).max(1);
                let sample: Vec<f32> = self.flat.chunks_exact(d).step_by(step).flatten().copied().collect();
                let quantizer = Hnsw::train(self.dimension, self.metric, config, &sample)?;
                Hnsw::from_quantizer(&quantizer, self.dimension, self.metric, config)?
            }
            false => Hnsw::new(self.dimension, self.metric, config)?,
        };
        let labels: Vec<i64> = (0..n as i64).collect();
        for start in (0..n).step_by(BUILD_CHUNK) {
            if stop() {
                return Err(HnswError::Native {
                    op: "add",
                    code: -1,
                    message: "the engine is closing".into(),
                });
            }
            let end = (start + BUILD_CHUNK).min(n);
            graph.add(&labels[start..end], &self.flat[start * d..end * d])?;
            progress(Progress { stage: "building", done: end as u64, total: n as u64 });
        }
        Ok((graph, started.elapsed().as_millis() as u64))
    }
}

/// What one `ef_search` measured on a trial graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    pub(crate) recall: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
}

/// Search every query alone (as a user's request would), `k` nearest, and score the
/// answers against `truth`. A held-out query's own record is in the graph (it is a live
/// vector) but not in its truth: it is searched with one more neighbour and its own id
/// dropped, as the truth was computed. Latency: one unmeasured pass to warm caches, then
/// each query's median of three runs.
pub(crate) fn measure(
    graph: &Hnsw,
    live: &Live,
    queries: &[Vec<f32>],
    held_out: &[Option<String>],
    truth: &[Vec<String>],
    k: usize,
) -> Result<Measured, HnswError> {
    let wanted_of = |held: &Option<String>| if held.is_some() { k + 1 } else { k };
    for (query, held) in queries.iter().zip(held_out) {
        graph.search(query, wanted_of(held), None)?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let (mut found, mut wanted) = (0usize, 0usize);
    for ((query, held), truth) in queries.iter().zip(held_out).zip(truth) {
        let mut runs = [0u64; 3];
        let mut labels = Vec::new();
        for run in &mut runs {
            let started = Instant::now();
            let (_, got) = graph.search(query, wanted_of(held), None)?;
            *run = started.elapsed().as_micros() as u64;
            labels = got;
        }
        runs.sort_unstable();
        latencies.push(runs[1]);
        let ids: std::collections::HashSet<&str> = labels
            .iter()
            .filter_map(|&l| usize::try_from(l).ok().and_then(|p| live.ids.get(p)))
            .map(String::as_str)
            .filter(|id| Some(*id) != held.as_deref())
            .take(k)
            .collect();
        found += truth.iter().filter(|id| ids.contains(id.as_str())).count();
        wanted += truth.len();
    }
    latencies.sort_unstable();
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    // No truth at all (every neighbour deleted): nothing was found, so no recall is
    // claimed; such a trial never meets a floor.
    let recall = if wanted == 0 { 0.0 } else { found as f64 / wanted as f64 };
    Ok(Measured { recall, p50_us: at(0.50), p99_us: at(0.99) })
}
