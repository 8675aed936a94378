//! One vector index as projected from the log: the FAISS graph, the string-id <-> label
//! map, metadata, and the tombstones FAISS HNSW cannot do itself.

mod payload;
mod reads;
mod search;
mod select;
mod snapshot;
mod swap;
mod write;

pub use payload::PayloadIndexInfo;
pub use reads::Record;
pub use select::{Plan, Strategy};
pub(crate) use write::metadata_crc;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::error::HnswError;
use super::hnsw::Hnsw;
use crate::event::{HnswConfig, Metric};

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
/// Measured cost of an exact scan per selected record, and of a graph search per unit
/// of `efSearch`, in microseconds (384-d, 200,000 vectors, one thread; both grow with
/// the dimension alike, so their ratio is what the planner uses). docs/PERFORMANCE.md,
/// "Metadata filters", has the measurement.
pub const EXACT_US_PER_RECORD: f64 = 1.0;
/// See [`EXACT_US_PER_RECORD`].
pub const GRAPH_US_PER_EF: f64 = 3.4;

/// The graph's beam for a filtered search among a selection holding `share` of the live
/// records: the index's `ef_search` divided by the share, so that about as many
/// selected records stay in the beam as an unfiltered search keeps; at least `want`,
/// at most [`crate::limits::HNSW_EF_MAX`]. FAISS's HNSW with a selector walks every
/// node but stops on how many candidates, selected or not, are closer than the next
/// one: without this its recall falls with the share (0.61 at 5% with the index's
/// beam, on the shared data at 200,000 vectors).
pub(crate) fn filtered_ef(ef_search: u32, share: f64, want: usize) -> u32 {
    let ef = (f64::from(ef_search) / share.max(f64::MIN_POSITIVE)).ceil();
    let max = crate::limits::HNSW_EF_MAX;
    (ef.min(f64::from(max)) as u32).max(u32::try_from(want).unwrap_or(max)).min(max)
}

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
    /// The payload indexes, and the live labels as a bitmap for filters.
    payload: payload::Payload,
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
    /// The trained quantizer of the storage in effect, when it needs one and enough
    /// vectors were live to train it (see [`VectorIndex::training_due`]).
    quantizer: Option<Quantizer>,
}

/// A trained quantizer: the bytes of an empty, trained graph of `m` and `storage` (its
/// codes, no refine), trained deterministically at event `seq` from the live vectors.
#[derive(Clone)]
pub(crate) struct Quantizer {
    pub(crate) m: u32,
    pub(crate) storage: crate::event::Storage,
    pub(crate) bytes: Arc<[u8]>,
}

/// What a quantizer is trained from: the live vectors in label order (evenly thinned to
/// the storage's maximum), so the same log trains the same quantizer.
pub(crate) struct TrainingSample {
    pub(crate) dimension: u32,
    pub(crate) metric: Metric,
    pub(crate) config: HnswConfig,
    pub(crate) vectors: Vec<f32>,
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
        // A storage that needs training starts flat, until enough vectors are live.
        let initial = match super::hnsw::needs_training(params.config.storage) {
            true => HnswConfig { storage: crate::event::Storage::FLAT, ..params.config },
            false => params.config,
        };
        let mut hnsw = Hnsw::new(params.dimension, params.metric, initial)?;
        hnsw.set_refine(params.config.storage.refine);
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
            payload: payload::Payload::default(),
            next_label: 0,
            rebuild_pending: false,
            staging: None,
            faulted: false,
            quantizer: None,
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
    /// an `m`, `ef_construction` or storage other than the one a rebuild would build now
    /// ([`VectorIndex::build_config`]).
    pub(crate) fn wants_rebuild(&self) -> bool {
        if self.rebuild_pending || self.faulted {
            return false;
        }
        let dead = self.dead();
        let stale = build_key(&self.hnsw.config()) != build_key(&self.build_config());
        stale || (dead >= REBUILD_DEAD_MIN && dead as f64 > REBUILD_DEAD_SHARE * self.hnsw.len() as f64)
    }

    /// What a rebuild builds now: the config in effect, but flat while its storage
    /// waits for a quantizer (too few live vectors to train one yet).
    pub(crate) fn build_config(&self) -> HnswConfig {
        let config = self.params.config;
        let waiting = super::hnsw::needs_training(config.storage) && self.quantizer_for(&config).is_none();
        match waiting {
            true => HnswConfig { storage: crate::event::Storage::FLAT, ..config },
            false => config,
        }
    }

    /// The trained quantizer for `config`'s `m` and storage, if there is one.
    fn quantizer_for(&self, config: &HnswConfig) -> Option<&Quantizer> {
        self.quantizer.as_ref().filter(|q| q.m == config.m && q.storage == config.storage.codes())
    }

    /// An empty graph for `config` (from [`VectorIndex::build_config`]): from the
    /// trained quantizer when its storage needs one.
    pub(crate) fn empty_graph(&self, config: HnswConfig) -> Result<Hnsw, HnswError> {
        let (dim, metric) = (self.params.dimension, self.params.metric);
        let mut graph = match self.quantizer_for(&config) {
            Some(q) if super::hnsw::needs_training(config.storage) => {
                Hnsw::from_quantizer(&q.bytes, dim, metric, config)?
            }
            _ => Hnsw::new(dim, metric, config)?,
        };
        graph.set_refine(self.params.config.storage.refine);
        Ok(graph)
    }

    /// The training sample, when the storage in effect needs a quantizer it does not
    /// have yet and enough vectors are live: every live vector in label order, thinned
    /// evenly to the storage's maximum. The projector calls this after each event that
    /// can change it, trains outside the lock, and installs the result with
    /// [`VectorIndex::set_quantizer`]: so training happens at the same event in every
    /// replay, on the same vectors.
    pub(crate) fn training_due(&self) -> Result<Option<TrainingSample>, HnswError> {
        let config = self.params.config;
        if self.faulted
            || !super::hnsw::needs_training(config.storage)
            || self.quantizer_for(&config).is_some()
        {
            return Ok(None);
        }
        let (min, max) = super::hnsw::training_bounds(config.storage, self.params.dimension);
        let live = self.entries.len();
        if live < min {
            return Ok(None);
        }
        let dim = self.params.dimension as usize;
        let mut labels: Vec<i64> = self.entries.keys().copied().collect();
        labels.sort_unstable();
        let step = live.div_ceil(max);
        let all = self.hnsw.labels();
        let mut vectors = vec![0f32; labels.len().div_ceil(step) * dim];
        let mut n = 0;
        for label in labels.iter().step_by(step) {
            if let Ok(position) = all.binary_search(label) {
                self.hnsw.copy_vectors(position, &mut vectors[n * dim..(n + 1) * dim])?;
                n += 1;
            }
        }
        vectors.truncate(n * dim);
        Ok(Some(TrainingSample {
            dimension: self.params.dimension,
            metric: self.params.metric,
            config,
            vectors,
        }))
    }

    /// Install a quantizer trained from [`VectorIndex::training_due`]'s sample: the
    /// graph is then rebuilt with it ([`VectorIndex::wants_rebuild`]).
    pub(crate) fn set_quantizer(&mut self, config: HnswConfig, bytes: Vec<u8>) {
        self.quantizer =
            Some(Quantizer { m: config.m, storage: config.storage.codes(), bytes: bytes.into() });
    }

    /// The trained quantizer's bytes (empty when none): part of the logical state.
    pub(crate) fn quantizer_bytes(&self) -> Vec<u8> {
        self.quantizer.as_ref().map(|q| q.bytes.to_vec()).unwrap_or_default()
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
        self.hnsw.set_refine(config.storage.refine);
        Ok(())
    }
}

/// What makes two graphs the same build: `m`, `ef_construction` and the codes.
fn build_key(config: &HnswConfig) -> (u32, u32, crate::event::Storage) {
    (config.m, config.ef_construction, config.storage.codes())
}

/// Train the quantizer of `sample` (outside any lock): the bytes for
/// [`VectorIndex::set_quantizer`].
pub(crate) fn train(sample: &TrainingSample) -> Result<Vec<u8>, HnswError> {
    Hnsw::train(sample.dimension, sample.metric, sample.config, &sample.vectors)
}

impl VectorIndex {
    /// Whether a rebuild for `config` would still build what [`VectorIndex::build_config`]
    /// asks now (else a promotion, rollback or training changed it meanwhile).
    pub(crate) fn still_wants(&self, config: &HnswConfig) -> bool {
        build_key(config) == build_key(&self.build_config())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::VectorItem;
    use crate::partition::Filter;

    /// An L2 index of `n` 8-d records, `v{i}` in partition `p{i % parts}/x`.
    fn index(n: usize, parts: usize) -> VectorIndex {
        let params = IndexParams {
            name: "t".into(),
            dimension: 8,
            metric: Metric::L2,
            config: HnswConfig { m: 16, ef_construction: 40, ef_search: 16, ..Default::default() },
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
    fn the_filtered_beam_grows_as_the_share_falls_within_its_bounds() {
        assert_eq!(filtered_ef(64, 0.5, 10), 128);
        assert_eq!(filtered_ef(64, 0.05, 10), 1280);
        assert_eq!(filtered_ef(64, 0.0001, 10), crate::limits::HNSW_EF_MAX, "capped");
        assert_eq!(filtered_ef(64, 1.0, 100), 100, "at least the k asked");
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
