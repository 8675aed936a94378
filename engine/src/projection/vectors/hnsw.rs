//! A FAISS `IDMap2,HNSW<M>` index (flat storage) or `IDMap,HNSW<M>_<codes>` index
//! (quantized storage, its full vectors in a [`FullVectors`] scratch file beside it)
//! behind a safe, minimal surface.
//!
//! Searches go through the C API on a `const` index pointer so that any number of them
//! can run at once under a read lock (the `faiss` crate's `search` takes `&mut self`);
//! adds take `&mut self` and so need the write lock. FAISS allows exactly that.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::sync::{Mutex, PoisonError};

use faiss::index::autotune::ParameterSpace;
use faiss::index::{FromInnerPtr, Index, IndexImpl, TryClone};
use faiss::{index_factory, MetricType};
use faiss_sys::{idx_t, FaissIDSelector, FaissIDSelectorBitmap, FaissSearchParameters};

use super::error::HnswError;
use super::full::FullVectors;
use crate::event::{HnswConfig, Metric, Storage, StorageKind};

/// Live vectors an index needs before a storage kind that is trained (sq8, sq4) is
/// trained and its graph built: below it the index serves from a flat graph.
pub const TRAIN_MIN_SQ: usize = 1_000;
/// The same for `pq`: 39 points per centroid of its 256, as FAISS asks.
pub const TRAIN_MIN_PQ: usize = 9_984;
/// Vectors a scalar quantizer is trained on at most (its ranges are a min/max pass).
pub const TRAIN_MAX_SQ: usize = 100_000;
/// Vectors a product quantizer is trained on at most (50 per centroid: k-means is the
/// cost, a few seconds at 384 dimensions on the projector thread).
pub const TRAIN_MAX_PQ: usize = 12_800;
/// Bytes of training sample at most, whatever the dimension (the sample is a copy of
/// live vectors held while training): the maximum count shrinks for wide vectors, never
/// below the storage's minimum.
pub const TRAIN_SAMPLE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Whether `storage` must be trained on vectors before its graph can hold any.
pub(crate) fn needs_training(storage: Storage) -> bool {
    matches!(storage.kind, StorageKind::Sq8 | StorageKind::Sq4 | StorageKind::Pq)
}

/// The fewest vectors `storage` is trained on, and the most for `dim`-dimensional
/// vectors (see [`TRAIN_SAMPLE_BYTES_MAX`]).
pub(crate) fn training_bounds(storage: Storage, dim: u32) -> (usize, usize) {
    let (min, max) = match storage.kind {
        StorageKind::Pq => (TRAIN_MIN_PQ, TRAIN_MAX_PQ),
        _ => (TRAIN_MIN_SQ, TRAIN_MAX_SQ),
    };
    let by_bytes = TRAIN_SAMPLE_BYTES_MAX / (4 * (dim as usize).max(1));
    (min, max.min(by_bytes).max(min))
}

/// The FAISS factory string of a graph: flat graphs keep `IDMap2` (what every graph was
/// before storage kinds); quantized ones use `IDMap`, which has no reverse map (about
/// 40 bytes per vector fewer), as nothing looks vectors up by label in FAISS.
pub(crate) fn factory(m: u32, storage: Storage) -> String {
    match storage.kind {
        StorageKind::Flat => format!("IDMap2,HNSW{m}"),
        StorageKind::Fp16 => format!("IDMap,HNSW{m}_SQfp16"),
        StorageKind::Sq8 => format!("IDMap,HNSW{m}_SQ8"),
        StorageKind::Sq4 => format!("IDMap,HNSW{m}_SQ4"),
        StorageKind::Pq => format!("IDMap,HNSW{m}_PQ{}", storage.pq_m),
    }
}

fn metric_type(metric: Metric) -> MetricType {
    match metric {
        Metric::L2 => MetricType::L2,
        // Cosine vectors are normalised before they reach FAISS.
        Metric::Cosine | Metric::Ip => MetricType::InnerProduct,
    }
}

/// One FAISS HNSW graph with caller-chosen 63-bit labels.
///
/// Vectors sit in FAISS's own flat storage at *positions* 0, 1, 2, ... in the order they
/// were added; `IDMap2` maps each position to its label. Labels are added in increasing
/// order, so the position of a label is a binary search in [`Hnsw::labels`].
pub(crate) struct Hnsw {
    index: IndexImpl,
    dim: usize,
    /// Squared L2 (smaller is closer), else inner product (larger is closer).
    l2: bool,
    /// The configuration this graph was built with (`ef_search` and the refine factor
    /// may change later).
    config: HnswConfig,
    /// The full vectors, at the graph's positions, when the graph holds codes.
    full: Option<FullVectors>,
}

/// Empty graphs by (dimension, metric, M), of which each new graph is a clone: FAISS's
/// `index_factory` compiles a dozen C++ regexes per call, most of the cost of creating
/// a small index (and of each rebuild), where a clone of an empty graph copies a few
/// fields. At most [`EMPTY_GRAPHS_KEPT`] kept.
#[allow(clippy::type_complexity)]
static EMPTY_GRAPHS: Mutex<BTreeMap<(u32, bool, u32, String), IndexImpl>> = Mutex::new(BTreeMap::new());
const EMPTY_GRAPHS_KEPT: usize = 64;

/// A new empty graph of `factory`, as `index_factory` makes it.
fn empty_graph(dim: u32, metric: MetricType, m: u32, factory: String) -> Result<IndexImpl, HnswError> {
    let clone = |index: &IndexImpl| {
        index.try_clone().map_err(|source| HnswError::Faiss { op: "clone_index", source })
    };
    let key = (dim, metric == MetricType::InnerProduct, m, factory);
    let mut kept = EMPTY_GRAPHS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(empty) = kept.get(&key) {
        return clone(empty);
    }
    let empty = index_factory(dim, key.3.as_str(), metric)
        .map_err(|source| HnswError::Faiss { op: "index_factory", source })?;
    // SAFETY: the pointer is a valid index owned by `empty`.
    if unsafe { faiss_sys::faiss_Index_metric_type(empty.inner_ptr()) }
        != metric as faiss_sys::FaissMetricType
    {
        return Err(HnswError::Native {
            op: "index_factory",
            code: -1,
            message: format!("{:?} was made with another metric than asked", key.3),
        });
    }
    let graph = clone(&empty)?;
    if kept.len() >= EMPTY_GRAPHS_KEPT {
        kept.clear();
    }
    kept.insert(key, empty);
    Ok(graph)
}

impl Hnsw {
    /// An empty graph for `dim`-dimensional vectors. A storage that needs training is
    /// made with [`Hnsw::from_quantizer`] instead.
    pub(crate) fn new(dim: u32, metric: Metric, config: HnswConfig) -> Result<Self, HnswError> {
        if needs_training(config.storage) {
            return Err(HnswError::Native {
                op: "index_factory",
                code: -1,
                message: format!("storage {} needs training first", config.storage.label()),
            });
        }
        let index = empty_graph(dim, metric_type(metric), config.m, factory(config.m, config.storage))?;
        Self::wrap(index, dim, metric, config)
    }

    fn wrap(index: IndexImpl, dim: u32, metric: Metric, config: HnswConfig) -> Result<Self, HnswError> {
        let full = config.storage.quantized().then(|| FullVectors::new(dim as usize)).transpose()?;
        let mut hnsw = Self { index, dim: dim as usize, l2: metric == Metric::L2, config, full };
        hnsw.set_parameter("efConstruction", config.ef_construction)?;
        hnsw.set_parameter("efSearch", config.ef_search)?;
        Ok(hnsw)
    }

    /// Train the quantizer of `config`'s storage on `sample` (n*d floats, in a
    /// deterministic order: the same sample gives the same quantizer) and return it as
    /// the bytes of the trained, empty graph: what [`Hnsw::from_quantizer`] builds
    /// graphs from, and what a snapshot keeps.
    pub(crate) fn train(
        dim: u32,
        metric: Metric,
        config: HnswConfig,
        sample: &[f32],
    ) -> Result<Vec<u8>, HnswError> {
        let faiss = |op| move |source| HnswError::Faiss { op, source };
        let mut index = make_empty(dim, metric, config.m, config.storage)?;
        index.train(sample).map_err(faiss("train"))?;
        let graph = Self { index, dim: dim as usize, l2: metric == Metric::L2, config, full: None };
        graph.to_bytes()
    }

    /// An empty graph from a trained quantizer ([`Hnsw::train`]), with `config`'s
    /// search settings.
    pub(crate) fn from_quantizer(
        quantizer: &[u8],
        dim: u32,
        metric: Metric,
        config: HnswConfig,
    ) -> Result<Self, HnswError> {
        let index = read_quantizer(quantizer, dim, metric, config.storage)?;
        Self::wrap(index, dim, metric, config)
    }

    /// The index as FAISS serializes it (`faiss::write_index`), written to memory
    /// through FAISS's custom writer: no file, no guessed path. The writer callback gets
    /// no user pointer, so it appends to a thread-local buffer, taken back afterwards.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, HnswError> {
        thread_local! {
            static SINK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        unsafe extern "C" fn append(ptr: *const std::ffi::c_void, size: usize, nitems: usize) -> usize {
            let Some(len) = size.checked_mul(nitems) else { return 0 };
            if len > 0 {
                // SAFETY: FAISS passes `nitems` items of `size` bytes at `ptr`.
                let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
                SINK.with(|sink| sink.borrow_mut().extend_from_slice(bytes));
            }
            nitems
        }
        // Vectors plus about 2M neighbour ids per vector: most of the size, reserved once.
        let estimate = self.len() as usize * (self.dim * 4 + self.config.m as usize * 2 * 4 + 16);
        SINK.with(|sink| *sink.borrow_mut() = Vec::with_capacity(estimate));
        let mut writer: *mut faiss_sys::FaissCustomIOWriter = std::ptr::null_mut();
        // SAFETY: the writer is freed below whatever happens; the index is only read.
        let rc = unsafe {
            let rc = faiss_sys::faiss_CustomIOWriter_new(&raw mut writer, Some(append));
            if rc == 0 {
                let written = faiss_sys::faiss_write_index_custom(self.index.inner_ptr(), writer.cast(), 0);
                faiss_sys::faiss_CustomIOWriter_free(writer);
                written
            } else {
                rc
            }
        };
        let out = SINK.with(|sink| std::mem::take(&mut *sink.borrow_mut()));
        check(rc, "write_index")?;
        Ok(out)
    }

    /// A graph read back from [`Hnsw::to_bytes`] (through `fmemopen`), with `config`
    /// in effect; `full` holds the full vectors of a quantized graph (little-endian
    /// floats, one per graph position), and must be empty for a flat one.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        dim: u32,
        metric: Metric,
        config: HnswConfig,
        full: &[u8],
    ) -> Result<Self, HnswError> {
        let index = read_faiss(bytes)?;
        // The bytes passed their CRCs, but CRCs are not authentication: check the shape
        // every later unsafe call relies on before trusting it.
        let sub = check_shape(&index, dim, metric, config.storage)?;
        let invalid = |message: String| HnswError::Native { op: "read_index", code: -1, message };
        let full = match config.storage.quantized() {
            false if full.is_empty() => None,
            false => return Err(invalid("full vectors given for a flat graph".into())),
            true => {
                let mut store = FullVectors::new(dim as usize)?;
                store.push_le_bytes(full)?;
                Some(store)
            }
        };
        let mut hnsw = Self { index, dim: dim as usize, l2: metric == Metric::L2, config, full };
        // SAFETY: `sub` is the sub-index owned by the IDMap2 just checked.
        let sub_len = unsafe { faiss_sys::faiss_Index_ntotal(sub) };
        let len = hnsw.len();
        let labels = hnsw.labels();
        let full_len = hnsw.full.as_ref().map_or(len, |f| f.len() as u64);
        if u64::try_from(sub_len).ok() != Some(len) || labels.len() as u64 != len || full_len != len {
            return Err(invalid(format!(
                "stored index holds {len} vectors, its graph {sub_len}, its id map {}, its full vectors {full_len}",
                labels.len()
            )));
        }
        if labels.windows(2).any(|w| w[0] >= w[1]) || labels.first().is_some_and(|l| *l < 0) {
            return Err(invalid("stored id map is not strictly ascending from 0".into()));
        }
        hnsw.set_parameter("efConstruction", config.ef_construction)?;
        hnsw.set_parameter("efSearch", config.ef_search)?;
        Ok(hnsw)
    }

    /// Set an HNSW parameter (`efConstruction`, `efSearch`). A field of the index, so it
    /// takes `&mut self`: changing it during a search would race.
    pub(crate) fn set_parameter(&mut self, name: &'static str, value: u32) -> Result<(), HnswError> {
        let space = ParameterSpace::new().map_err(|source| HnswError::Faiss { op: name, source })?;
        space
            .set_index_parameter(&self.index, name, f64::from(value))
            .map_err(|source| HnswError::Faiss { op: name, source })
    }

    /// The configuration the graph was built with, with the current `ef_search`.
    pub(crate) fn config(&self) -> HnswConfig {
        self.config
    }

    /// Change `ef_search` of a built graph (takes effect for the next search).
    pub(crate) fn set_ef_search(&mut self, ef_search: u32) -> Result<(), HnswError> {
        self.set_parameter("efSearch", ef_search)?;
        self.config.ef_search = ef_search;
        Ok(())
    }

    /// Change the refine factor (a search setting: the graph stays as it is). A flat
    /// graph's distances are exact already, so it never refines.
    pub(crate) fn set_refine(&mut self, refine: u32) {
        if self.full.is_some() {
            self.config.storage.refine = refine;
        }
    }

    /// The full vectors of a quantized graph, as little-endian floats in position order
    /// (nothing for a flat graph: its vectors are in [`Hnsw::to_bytes`]).
    pub(crate) fn write_full(&self, out: &mut dyn std::io::Write) -> Result<(), HnswError> {
        match &self.full {
            Some(full) => full.write_le(out),
            None => Ok(()),
        }
    }

    /// Bytes of full vectors [`Hnsw::write_full`] writes.
    pub(crate) fn full_bytes(&self) -> u64 {
        self.full.as_ref().map_or(0, |f| (f.len() * self.dim * 4) as u64)
    }

    /// The label of every position, in position order (ascending labels).
    pub(crate) fn labels(&self) -> &[i64] {
        let mut ptr: *mut idx_t = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: the index is an IDMap or IDMap2 (built from an "IDMap," or "IDMap2,"
        // factory string, or checked by `from_bytes`); the returned pointer and length
        // describe its id map, which lives as long as the index and changes only on add,
        // which takes `&mut self`, so not while the slice is borrowed.
        unsafe {
            faiss_sys::faiss_IndexIDMap_id_map(self.index.inner_ptr(), &mut ptr, &mut len);
            if ptr.is_null() || len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(ptr, len)
        }
    }

    /// Copy the stored vectors at positions `start..start + n` into `out` (n*d floats):
    /// one FFI call for the whole range, no allocation.
    pub(crate) fn copy_vectors(&self, start: usize, out: &mut [f32]) -> Result<(), HnswError> {
        let n = out.len() / self.dim;
        if n * self.dim != out.len() || start + n > self.len() as usize {
            return Err(HnswError::Shape { expected: n * self.dim, actual: out.len() });
        }
        if n == 0 {
            return Ok(());
        }
        if let Some(full) = &self.full {
            return full.read(start, out);
        }
        // SAFETY: the IDMap2's sub-index is the HNSW index it owns; reconstruct_n on it
        // addresses positions (not labels), which are in range (checked above); `out` holds
        // n*d floats; reconstruction only reads the index.
        let rc = unsafe {
            let sub = faiss_sys::faiss_IndexIDMap_sub_index(self.index.inner_ptr());
            faiss_sys::faiss_Index_reconstruct_n(sub, start as idx_t, n as idx_t, out.as_mut_ptr())
        };
        check(rc, "reconstruct_n")
    }

    /// Vectors stored in the graph (live or not).
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: the pointer is a valid index owned by `self.index`.
        let n = unsafe { faiss_sys::faiss_Index_ntotal(self.index.inner_ptr()) };
        u64::try_from(n).unwrap_or(0)
    }

    /// Add `labels.len()` vectors laid out contiguously in `vectors`.
    pub(crate) fn add(&mut self, labels: &[i64], vectors: &[f32]) -> Result<(), HnswError> {
        if vectors.len() != labels.len() * self.dim {
            return Err(HnswError::Shape { expected: labels.len() * self.dim, actual: vectors.len() });
        }
        if labels.is_empty() {
            return Ok(());
        }
        // The full vectors first: if FAISS then fails, the index is faulted anyway.
        if let Some(full) = &mut self.full {
            full.push(vectors)?;
        }
        let n = labels.len() as idx_t;
        // SAFETY: `vectors` holds n*d floats and `labels` n ids, both alive for the call;
        // `&mut self` gives the exclusive access FAISS needs for an add.
        let rc = unsafe {
            faiss_sys::faiss_Index_add_with_ids(self.index.inner_ptr(), n, vectors.as_ptr(), labels.as_ptr())
        };
        check(rc, "add_with_ids")
    }

    /// Search `queries` (nq*d floats) for `k` neighbours each, keeping only labels set
    /// in `live` (a bitmap, bit `l` of byte `l/8`) when given. Returns distances and
    /// labels, nq*k each, -1 where fewer than k were found.
    pub(crate) fn search(
        &self,
        queries: &[f32],
        k: usize,
        live: Option<&[u8]>,
    ) -> Result<(Vec<f32>, Vec<idx_t>), HnswError> {
        self.search_with(queries, k, live, None)
    }

    /// [`Hnsw::search`] with this search's own `efSearch` (`None`: the index's), for a
    /// filtered search whose beam must widen as the filter narrows.
    pub(crate) fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        live: Option<&[u8]>,
        ef_search: Option<u32>,
    ) -> Result<(Vec<f32>, Vec<idx_t>), HnswError> {
        let nq = queries.len() / self.dim;
        if nq * self.dim != queries.len() {
            return Err(HnswError::Shape { expected: nq * self.dim, actual: queries.len() });
        }
        let refine = self.config.storage.refine as usize;
        if refine > 0 && self.full.is_some() {
            let wide = k.saturating_mul(refine);
            let ef = ef_search.unwrap_or(self.config.ef_search).max(u32::try_from(wide).unwrap_or(u32::MAX));
            let (_, candidates) = self.graph_search(queries, nq, wide, live, Some(ef))?;
            return self.rescore(queries, &candidates, wide, k);
        }
        self.graph_search(queries, nq, k, live, ef_search)
    }

    /// The graph's own answer: codes' distances for a quantized graph.
    fn graph_search(
        &self,
        queries: &[f32],
        nq: usize,
        k: usize,
        live: Option<&[u8]>,
        ef_search: Option<u32>,
    ) -> Result<(Vec<f32>, Vec<idx_t>), HnswError> {
        omp_threads_for_queries(nq);
        let mut distances = vec![0f32; nq * k];
        let mut labels = vec![-1 as idx_t; nq * k];
        // FAISS keeps a pointer to `live` (no copy) and SearchParameters does not own its
        // selector, so both are created here and freed by guards before returning; the
        // `faiss` crate's wrapper would leak the selector on every search.
        let params = match (live, ef_search) {
            (Some(bitmap), _) => Some(BitmapParams::new(Some(bitmap), ef_search)?),
            (None, Some(_)) => Some(BitmapParams::new(None, ef_search)?),
            (None, None) => None,
        };
        let params_ptr: *const FaissSearchParameters = params.as_ref().map_or(std::ptr::null(), |p| p.params);
        // SAFETY: the index is only read (FAISS search is const and thread-safe);
        // output buffers hold nq*k entries; the query holds nq*d floats; the parameters
        // and the bitmap they point to outlive the call.
        let rc = unsafe {
            faiss_sys::faiss_Index_search_with_params(
                self.index.inner_ptr(),
                nq as idx_t,
                queries.as_ptr(),
                k as idx_t,
                params_ptr,
                distances.as_mut_ptr(),
                labels.as_mut_ptr(),
            )
        };
        check(rc, "search")?;
        Ok((distances, labels))
    }

    /// Re-score each query's `wide` candidates (rows of `candidates`, -1 for none) with
    /// their full vectors and keep the best `k`: exact distances, read from the scratch
    /// file one vector per candidate.
    fn rescore(
        &self,
        queries: &[f32],
        candidates: &[idx_t],
        wide: usize,
        k: usize,
    ) -> Result<(Vec<f32>, Vec<idx_t>), HnswError> {
        let nq = queries.len() / self.dim;
        let mut distances = vec![0f32; nq * k];
        let mut labels = vec![-1 as idx_t; nq * k];
        let all = self.labels();
        let mut vectors = vec![0f32; wide * self.dim];
        let mut scores = vec![0f32; wide];
        let mut found: Vec<(f32, idx_t)> = Vec::with_capacity(wide);
        for (q, query) in queries.chunks_exact(self.dim).enumerate() {
            found.clear();
            let mut n = 0;
            let mut kept = Vec::with_capacity(wide);
            for &label in &candidates[q * wide..(q + 1) * wide] {
                let Ok(position) = all.binary_search(&label) else { continue };
                self.copy_vectors(position, &mut vectors[n * self.dim..(n + 1) * self.dim])?;
                kept.push(label);
                n += 1;
            }
            raw_scores(self.l2, query, &vectors[..n * self.dim], &mut scores[..n]);
            found.extend(scores[..n].iter().copied().zip(kept));
            // Best first: smallest squared distance, or largest inner product.
            if self.l2 {
                found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            } else {
                found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            }
            for (slot, (score, label)) in found.iter().take(k).enumerate() {
                distances[q * k + slot] = *score;
                labels[q * k + slot] = *label;
            }
        }
        Ok((distances, labels))
    }
}

/// A new, empty (untrained) graph of `storage` for `metric`, its shape and metric
/// checked: the factory makes the flat and scalar kinds; `pq` is made by the shim,
/// because FAISS's factory gives `HNSW..._PQ` the L2 metric whatever is asked, and
/// trains PQ codes for polysemous search (half a million iterations per sub-quantizer)
/// that HNSW never uses.
pub(crate) fn make_empty(dim: u32, metric: Metric, m: u32, storage: Storage) -> Result<IndexImpl, HnswError> {
    let metric_type = metric_type(metric);
    let index = match storage.kind {
        StorageKind::Pq => {
            let mut out: *mut std::ffi::c_void = std::ptr::null_mut();
            let int = |v: u32| std::os::raw::c_int::try_from(v).unwrap_or(-1);
            // SAFETY: the shim writes an owned index to `out` or returns non-zero.
            let rc = unsafe {
                annal_IndexIDMap_HNSWPQ_new(&mut out, int(dim), int(storage.pq_m), int(m), metric_type as i32)
            };
            if rc != 0 || out.is_null() {
                return Err(HnswError::Native {
                    op: "IndexHNSWPQ",
                    code: rc,
                    message: format!("FAISS cannot make HNSW{m}_PQ{} of dimension {dim}", storage.pq_m),
                });
            }
            // SAFETY: `out` is a new index the shim hands over.
            unsafe { IndexImpl::from_inner_ptr(out.cast()) }
        }
        _ => index_factory(dim, factory(m, storage), metric_type)
            .map_err(|source| HnswError::Faiss { op: "index_factory", source })?,
    };
    check_shape(&index, dim, metric, storage)?;
    Ok(index)
}

/// Check that `index` is what a graph of `storage` for `metric` must be, before any
/// unsafe call relies on it: an ID map (`IDMap2` for flat storage) over an HNSW graph
/// of `dim` dimensions whose codes have the storage's size, with the FAISS metric of
/// `metric`. Returns the sub-index.
fn check_shape(
    index: &IndexImpl,
    dim: u32,
    metric: Metric,
    storage: Storage,
) -> Result<*mut faiss_sys::FaissIndex, HnswError> {
    let invalid = |message: String| HnswError::Native { op: "read_index", code: -1, message };
    if index.d() != dim {
        return Err(invalid(format!("stored index has dimension {}, expected {dim}", index.d())));
    }
    // SAFETY: the pointer is a valid index owned by `index`; each cast returns null
    // unless it is an IDMap2 (for flat storage) or an IDMap (IDMap2 is one too).
    let (map, sub) = unsafe {
        let map = if storage.quantized() {
            faiss_sys::faiss_IndexIDMap_cast(index.inner_ptr())
        } else {
            faiss_sys::faiss_IndexIDMap2_cast(index.inner_ptr()).cast()
        };
        let sub =
            if map.is_null() { std::ptr::null_mut() } else { faiss_sys::faiss_IndexIDMap_sub_index(map) };
        (map, sub)
    };
    if map.is_null() || sub.is_null() {
        return Err(invalid("stored index is not an ID map over a sub-index".into()));
    }
    // The codes must be the ones the config names: a quantized graph read as flat
    // would hand out decoded codes as vectors.
    let mut stored = 0usize;
    // SAFETY: `sub` is the sub-index owned by the ID map just checked; the shim only
    // reads it.
    let rc = unsafe { annal_hnsw_code_size(sub.cast_const().cast(), &mut stored) };
    if rc != 0 {
        return Err(invalid("stored sub-index is not an HNSW graph over codes".into()));
    }
    let expected = code_size(dim as usize, storage);
    if stored != expected {
        return Err(invalid(format!(
            "stored graph has codes of {stored} bytes per vector, storage {} has {expected}",
            storage.label()
        )));
    }
    // SAFETY: both pointers are valid indexes owned by `index`.
    let metrics = unsafe {
        [faiss_sys::faiss_Index_metric_type(index.inner_ptr()), faiss_sys::faiss_Index_metric_type(sub)]
    };
    let want = metric_type(metric) as faiss_sys::FaissMetricType;
    if metrics != [want, want] {
        return Err(invalid(format!("stored graph has FAISS metrics {metrics:?}, expected {want}")));
    }
    Ok(sub)
}
/// A trained quantizer read back and checked: the shape of `storage` for `metric`,
/// trained, and holding no vectors. What [`Hnsw::from_quantizer`] builds from, and what
/// a snapshot's quantizer is checked with at restore.
pub(crate) fn read_quantizer(
    quantizer: &[u8],
    dim: u32,
    metric: Metric,
    storage: Storage,
) -> Result<IndexImpl, HnswError> {
    let index = read_faiss(quantizer)?;
    check_shape(&index, dim, metric, storage)?;
    // SAFETY: the pointer is a valid index owned by `index`.
    let trained = unsafe { faiss_sys::faiss_Index_is_trained(index.inner_ptr()) } != 0;
    if faiss_len(&index) != 0 || !trained {
        return Err(HnswError::Native {
            op: "read_index",
            code: -1,
            message: "a quantizer must be trained and hold no vectors".into(),
        });
    }
    Ok(index)
}

/// A FAISS index read from `bytes` (through `fmemopen`).
fn read_faiss(bytes: &[u8]) -> Result<IndexImpl, HnswError> {
    if bytes.is_empty() {
        return Err(HnswError::Native { op: "read_index", code: -1, message: "empty index bytes".into() });
    }
    // SAFETY: fmemopen reads `bytes` (alive for the call) without writing to it
    // (mode "r"); FAISS hands back an owned index or an error code.
    unsafe {
        let stream = libc::fmemopen(bytes.as_ptr().cast_mut().cast(), bytes.len(), c"r".as_ptr());
        if stream.is_null() {
            return Err(HnswError::Native {
                op: "fmemopen",
                code: -1,
                message: std::io::Error::last_os_error().to_string(),
            });
        }
        let mut out: *mut faiss_sys::FaissIndex = std::ptr::null_mut();
        let rc = faiss_sys::faiss_read_index(stream.cast(), 0, &raw mut out);
        libc::fclose(stream);
        check(rc, "read_index")?;
        Ok(IndexImpl::from_inner_ptr(out))
    }
}

fn faiss_len(index: &IndexImpl) -> u64 {
    // SAFETY: the pointer is a valid index owned by `index`.
    let n = unsafe { faiss_sys::faiss_Index_ntotal(index.inner_ptr()) };
    u64::try_from(n).unwrap_or(0)
}

/// Bytes per vector of `storage`'s codes in FAISS (4 per dimension for flat floats):
/// what a graph read back must have, and the floor autotune's budget compares.
pub(crate) fn code_size(dim: usize, storage: Storage) -> usize {
    match storage.kind {
        StorageKind::Flat => dim * 4,
        StorageKind::Fp16 => dim * 2,
        StorageKind::Sq8 => dim,
        StorageKind::Sq4 => dim.div_ceil(2),
        StorageKind::Pq => storage.pq_m as usize,
    }
}

extern "C" {
    // libgomp, which faiss-sys links.
    fn omp_get_max_threads() -> std::os::raw::c_int;
    fn omp_set_num_threads(n: std::os::raw::c_int);
}

/// OpenMP threads the process started with (`OMP_NUM_THREADS`, else the cores).
static OMP_DEFAULT_THREADS: std::sync::OnceLock<std::os::raw::c_int> = std::sync::OnceLock::new();

thread_local! {
    static OMP_THREADS: std::cell::Cell<std::os::raw::c_int> = const { std::cell::Cell::new(0) };
}

/// A single query cannot use more than one thread, but FAISS still opens a parallel
/// region for it: on 2 cores that cost about a quarter of the query rate. So a thread
/// searching one query runs FAISS with one OpenMP thread, and a batch with the default.
/// The setting is per calling thread; the projector's adds keep the default.
fn omp_threads_for_queries(nq: usize) {
    // SAFETY: plain getters/setters of libgomp's per-thread control variables.
    let default = *OMP_DEFAULT_THREADS.get_or_init(|| unsafe { omp_get_max_threads() });
    let want = if nq <= 1 { 1 } else { default };
    OMP_THREADS.with(|current| {
        if current.get() != want {
            // SAFETY: as above.
            unsafe { omp_set_num_threads(want) };
            current.set(want);
        }
    });
}

/// Search parameters restricting results to the labels set in a bitmap. Owns both the
/// selector and the parameters; borrows the bitmap.
struct BitmapParams<'a> {
    selector: *mut FaissIDSelector,
    params: *mut FaissSearchParameters,
    _bitmap: std::marker::PhantomData<&'a [u8]>,
}

extern "C" {
    // engine/src/projection/vectors/hnsw_params.cpp, built by engine/build.rs.
    fn annal_hnsw_code_size(index: *const std::ffi::c_void, out: *mut usize) -> std::os::raw::c_int;
    fn annal_IndexIDMap_HNSWPQ_new(
        out: *mut *mut std::ffi::c_void,
        d: std::os::raw::c_int,
        pq_m: std::os::raw::c_int,
        hnsw_m: std::os::raw::c_int,
        metric: std::os::raw::c_int,
    ) -> std::os::raw::c_int;
    fn annal_SearchParametersHNSW_new(
        out: *mut *mut FaissSearchParameters,
        sel: *mut FaissIDSelector,
        ef_search: std::os::raw::c_int,
    ) -> std::os::raw::c_int;
}

impl<'a> BitmapParams<'a> {
    /// Parameters selecting the labels set in `bitmap`, with `ef_search` as this
    /// search's `efSearch` when given (HNSW parameters; else generic ones).
    fn new(bitmap: Option<&'a [u8]>, ef_search: Option<u32>) -> Result<Self, HnswError> {
        let mut selector: *mut FaissIDSelectorBitmap = std::ptr::null_mut();
        if let Some(bitmap) = bitmap {
            // SAFETY: FAISS stores the pointer and length; `bitmap` outlives `Self` ('a).
            let rc = unsafe {
                faiss_sys::faiss_IDSelectorBitmap_new(&mut selector, bitmap.len(), bitmap.as_ptr())
            };
            check(rc, "IDSelectorBitmap")?;
        }
        let mut this = Self {
            selector: selector.cast::<FaissIDSelector>(),
            params: std::ptr::null_mut(),
            _bitmap: std::marker::PhantomData,
        };
        match ef_search {
            Some(ef) => {
                let ef = std::os::raw::c_int::try_from(ef).unwrap_or(std::os::raw::c_int::MAX);
                // SAFETY: as below; the shim makes a `faiss::SearchParametersHNSW`, a
                // subclass of `SearchParameters` freed by the same virtual destructor.
                let rc = unsafe { annal_SearchParametersHNSW_new(&mut this.params, this.selector, ef) };
                if rc != 0 || this.params.is_null() {
                    return Err(HnswError::Native {
                        op: "SearchParametersHNSW",
                        code: rc,
                        message: "could not allocate search parameters".into(),
                    });
                }
            }
            None => {
                // SAFETY: `this.selector` is a valid selector; on failure `Drop` frees it.
                let rc = unsafe { faiss_sys::faiss_SearchParameters_new(&mut this.params, this.selector) };
                check(rc, "SearchParameters")?;
            }
        }
        Ok(this)
    }
}

impl Drop for BitmapParams<'_> {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was created above and is freed exactly once;
        // the parameters go first, as they refer to the selector.
        unsafe {
            if !self.params.is_null() {
                faiss_sys::faiss_SearchParameters_free(self.params);
            }
            if !self.selector.is_null() {
                faiss_sys::faiss_IDSelector_free(self.selector);
            }
        }
    }
}

fn check(rc: std::os::raw::c_int, op: &'static str) -> Result<(), HnswError> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: FAISS returns a thread-local, NUL-terminated message or null.
    let message = unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            String::from("unknown FAISS error")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(HnswError::Native { op, code: rc, message })
}

/// FAISS's raw scores of `query` against `vectors` (ny*d floats) into `out` (ny):
/// squared L2 distances, or inner products; the same SIMD kernels FAISS searches with.
pub(crate) fn raw_scores(l2: bool, query: &[f32], vectors: &[f32], out: &mut [f32]) {
    let d = query.len();
    let ny = out.len();
    if d == 0 || vectors.len() != ny * d {
        return;
    }
    // SAFETY: `query` holds d floats, `vectors` ny*d and `out` ny (checked above).
    unsafe {
        if l2 {
            faiss_sys::faiss_fvec_L2sqr_ny(out.as_mut_ptr(), query.as_ptr(), vectors.as_ptr(), d, ny);
        } else {
            faiss_sys::faiss_fvec_inner_products_ny(
                out.as_mut_ptr(),
                query.as_ptr(),
                vectors.as_ptr(),
                d,
                ny,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HnswConfig {
        HnswConfig { m: 8, ef_construction: 40, ef_search: 16, ..Default::default() }
    }

    #[test]
    fn a_graph_round_trips_through_bytes_with_its_labels_and_vectors() {
        let mut hnsw = Hnsw::new(4, Metric::L2, config()).unwrap();
        let vectors: Vec<f32> = (0..40).map(|i| i as f32).collect();
        hnsw.add(&[3, 5, 8, 13, 21, 34, 55, 89, 144, 233], &vectors).unwrap();
        let back = Hnsw::from_bytes(&hnsw.to_bytes().unwrap(), 4, Metric::L2, config(), &[]).unwrap();
        assert_eq!(back.labels(), hnsw.labels());
        let mut out = vec![0f32; 40];
        back.copy_vectors(0, &mut out).unwrap();
        assert_eq!(out, vectors);
    }

    #[test]
    fn a_new_graph_is_the_graph_index_factory_makes_and_shares_nothing_with_the_next() {
        for metric in [Metric::L2, Metric::Ip] {
            let metric_type = if metric == Metric::L2 { MetricType::L2 } else { MetricType::InnerProduct };
            let mut made = Hnsw {
                index: index_factory(4, "IDMap2,HNSW8", metric_type).unwrap(),
                dim: 4,
                l2: metric == Metric::L2,
                config: config(),
                full: None,
            };
            made.set_parameter("efConstruction", 40).unwrap();
            made.set_parameter("efSearch", 16).unwrap();
            let mut first = Hnsw::new(4, metric, config()).unwrap();
            assert_eq!(first.to_bytes().unwrap(), made.to_bytes().unwrap(), "{metric:?}");
            // One vector at a time: FAISS adds a batch in parallel, one by one it is
            // deterministic, so the same adds give the same bytes.
            for (label, v) in
                [(1, [1.0, 0.0, 0.0, 0.0]), (2, [0.0, 2.0, 0.0, 0.0]), (3, [0.5, 0.5, 1.0, 0.0])]
            {
                first.add(&[label], &v).unwrap();
                made.add(&[label], &v).unwrap();
            }
            assert_eq!(first.to_bytes().unwrap(), made.to_bytes().unwrap(), "{metric:?}");
            let second = Hnsw::new(4, metric, config()).unwrap();
            assert_eq!((first.len(), second.len()), (3, 0), "{metric:?}: the next graph starts empty");
        }
        // Another dimension or M is another graph, not the kept one.
        let other = Hnsw::new(8, Metric::L2, HnswConfig { m: 16, ..config() }).unwrap();
        assert_eq!(
            other.to_bytes().unwrap(),
            Hnsw {
                index: index_factory(8, "IDMap2,HNSW16", MetricType::L2).unwrap(),
                dim: 8,
                l2: true,
                config: config(),
                full: None,
            }
            .to_bytes()
            .unwrap()
        );
    }

    #[test]
    fn a_quantized_graph_keeps_full_vectors_beside_its_codes_and_is_read_back_only_as_what_it_is() {
        let sq8 = HnswConfig { storage: Storage { kind: StorageKind::Sq8, pq_m: 0, refine: 2 }, ..config() };
        let vectors: Vec<f32> = (0..400).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let quantizer = Hnsw::train(4, Metric::L2, sq8, &vectors).unwrap();
        let mut graph = Hnsw::from_quantizer(&quantizer, 4, Metric::L2, sq8).unwrap();
        let labels: Vec<i64> = (0..100).collect();
        graph.add(&labels, &vectors).unwrap();
        let mut out = vec![0f32; 8];
        graph.copy_vectors(10, &mut out).unwrap();
        assert_eq!(out, &vectors[40..48], "the full vectors, not decoded codes");
        // Re-scored: the exact nearest at its exact distance.
        let (distances, found) = graph.search(&vectors[20..24], 3, None).unwrap();
        assert_eq!((found[0], distances[0]), (5, 0.0));
        let codes = graph.to_bytes().unwrap();
        let mut full = Vec::new();
        graph.write_full(&mut full).unwrap();
        assert_eq!(full.len(), 400 * 4);
        let back = Hnsw::from_bytes(&codes, 4, Metric::L2, sq8, &full).unwrap();
        back.copy_vectors(10, &mut out).unwrap();
        assert_eq!(out, &vectors[40..48]);
        // Codes read as flat floats, or without their full vectors, are refused.
        assert!(Hnsw::from_bytes(&codes, 4, Metric::L2, config(), &[]).is_err(), "codes as floats");
        assert!(Hnsw::from_bytes(&codes, 4, Metric::L2, sq8, &full[..800]).is_err(), "half the vectors");
        let sq4 = HnswConfig { storage: Storage { kind: StorageKind::Sq4, ..sq8.storage }, ..sq8 };
        assert!(Hnsw::from_bytes(&codes, 4, Metric::L2, sq4, &full).is_err(), "other codes");
        // A trained storage is never made untrained.
        assert!(Hnsw::new(4, Metric::L2, sq8).is_err());
        // A quantizer is read only as what it is: trained, empty, its codes and metric.
        assert!(Hnsw::from_quantizer(&codes, 4, Metric::L2, sq8).is_err(), "holds vectors");
        assert!(Hnsw::from_quantizer(&quantizer, 4, Metric::L2, sq4).is_err(), "other codes");
        assert!(Hnsw::from_quantizer(&quantizer, 4, Metric::Ip, sq8).is_err(), "other metric");
        let untrained = Hnsw {
            index: make_empty(4, Metric::L2, 8, sq8.storage).unwrap(),
            ..Hnsw::new(4, Metric::L2, config()).unwrap()
        };
        assert!(
            Hnsw::from_quantizer(&untrained.to_bytes().unwrap(), 4, Metric::L2, sq8).is_err(),
            "untrained"
        );
    }

    #[test]
    fn every_kind_is_made_with_the_metric_asked_pq_included() {
        // FAISS's factory makes HNSW over PQ with L2 whatever the metric: the shim does not.
        for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
            for kind in
                [StorageKind::Flat, StorageKind::Fp16, StorageKind::Sq8, StorageKind::Sq4, StorageKind::Pq]
            {
                let storage = Storage { kind, pq_m: if kind == StorageKind::Pq { 4 } else { 0 }, refine: 0 };
                let index = make_empty(8, metric, 8, storage).unwrap();
                // SAFETY: a valid index owned by `index`.
                let got = unsafe { faiss_sys::faiss_Index_metric_type(index.inner_ptr()) };
                assert_eq!(got, metric_type(metric) as faiss_sys::FaissMetricType, "{metric:?} {kind:?}");
            }
        }
        let odd = Storage { kind: StorageKind::Pq, pq_m: 3, refine: 0 };
        assert!(make_empty(8, Metric::L2, 8, odd).is_err(), "sub-quantizers must divide the dimension");
    }

    #[test]
    fn bytes_of_an_index_without_an_id_map_are_refused_not_trusted() {
        // A FAISS index of another shape (no IDMap2 on top) that passed every CRC:
        // reading its id map would read unrelated memory.
        let index = index_factory(4, "HNSW8", MetricType::L2).unwrap();
        let other = Hnsw { index, dim: 4, l2: true, config: config(), full: None };
        let bytes = other.to_bytes().unwrap();
        let refused = Hnsw::from_bytes(&bytes, 4, Metric::L2, config(), &[]);
        assert!(matches!(refused, Err(HnswError::Native { op: "read_index", .. })), "{:?}", refused.err());
        // And a truncated graph is an error, not a crash.
        let mut hnsw = Hnsw::new(4, Metric::L2, config()).unwrap();
        hnsw.add(&[1, 2], &[0.0; 8]).unwrap();
        let bytes = hnsw.to_bytes().unwrap();
        assert!(Hnsw::from_bytes(&bytes[..bytes.len() / 2], 4, Metric::L2, config(), &[]).is_err());
    }
}
