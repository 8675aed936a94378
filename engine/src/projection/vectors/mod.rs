//! The vector projection: every index of the log as a FAISS HNSW graph, with its own
//! background rebuilder.

mod error;
mod full;
mod hnsw;
mod index;
mod rebuild;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

pub use error::HnswError;
pub(crate) use full::set_scratch_dir;
pub(crate) use hnsw::{code_size, make_empty, needs_training, training_bounds, Hnsw};
pub(crate) use index::{metadata_crc, VectorIndex};
pub use index::{
    GraphWorkReport, Hit, IndexParams, PayloadIndexInfo, Plan, Record, Strategy, FILTER_EXACT_MAX,
};
pub(crate) use rebuild::lower_priority;
pub use rebuild::RebuildStats;

use super::documents::DocumentState;
use super::{ApplyError, Hooks, Outcome, Projection, SnapshotError};
use crate::codec::{Dec, Enc};
use crate::event::{Event, EventBody, IndexCreated, IndexCreatedWithEmbedder, VectorItem};
use crate::sync::{read, write};
use rebuild::Rebuilder;

/// A shared handle on one index; readers search under its read lock, the projector
/// applies events under its write lock. parking_lot's lock, for `unlock_fair`: between
/// the chunks of a large upsert the lock is handed to waiting searches instead of being
/// taken straight back by the projector.
pub(crate) type IndexHandle = Arc<parking_lot::RwLock<VectorIndex>>;

/// An index as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Creation parameters.
    pub params: IndexParams,
    /// Live vectors.
    pub length: u64,
}

/// What a read selects: the records in the partitions `partition` names (an exact path,
/// or a prefix ending in `/`), matching `filter`; either may be absent.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// Partition path or prefix.
    pub partition: Option<String>,
    /// Metadata filter.
    pub filter: Option<crate::filter::Filter>,
}

impl Select {
    fn partition_filter(&self) -> Result<Option<crate::partition::Filter>, crate::InvalidInput> {
        self.partition.as_deref().map(crate::partition::Filter::parse).transpose()
    }
}

/// One record as the item routes show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its id.
    pub id: Arc<str>,
    /// Its vector as stored (normalised for cosine indexes), when asked for.
    pub vector: Option<Vec<f32>>,
    /// Its metadata (JSON text).
    pub metadata: Option<Arc<str>>,
    /// Its partition.
    pub partition: Option<Arc<str>>,
}

/// A search's hits and the plan it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    /// One list per query, nearest first.
    pub hits: Vec<Vec<Hit>>,
    /// How the filters were answered and the graph searched.
    pub plan: Plan,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, in id order.
    pub items: Vec<Item>,
    /// Where the next page starts (`None`: this is the last).
    pub next_cursor: Option<String>,
}

/// Vectors added to FAISS per write-lock hold: searches on the index wait at most for
/// one chunk of a large upsert, not for all of it.
pub const ADD_CHUNK_VECTORS: usize = 1024;

/// All indexes by name: the read side of the vector projection.
#[derive(Default)]
pub(crate) struct Catalog {
    indexes: RwLock<BTreeMap<String, IndexHandle>>,
}

impl Catalog {
    pub(crate) fn get(&self, name: &str) -> Option<IndexHandle> {
        read(&self.indexes).get(name).cloned()
    }

    /// Every index with its handle, sorted by name, taken under one lock.
    pub(crate) fn handles(&self) -> Vec<(String, IndexHandle)> {
        read(&self.indexes).iter().map(|(name, handle)| (name.clone(), Arc::clone(handle))).collect()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        read(&self.indexes).keys().cloned().collect()
    }

    /// The `k` nearest records to each of `vectors` in index `name` (validated against
    /// its dimension and metric), within the partitions `partition` selects if given:
    /// what the engine and its time-travel views answer searches with.
    pub(crate) fn search(
        &self,
        name: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        partition: Option<&str>,
    ) -> Result<Vec<Vec<Hit>>, crate::Error> {
        let select = Select { partition: partition.map(str::to_owned), filter: None };
        Ok(self.query(name, vectors, k, &select)?.0)
    }

    /// [`Catalog::search`] among the records `select` selects, with the plan it ran.
    pub(crate) fn query(
        &self,
        name: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        select: &Select,
    ) -> Result<(Vec<Vec<Hit>>, Plan), crate::Error> {
        let partition = select.partition_filter()?;
        let handle = self.handle(name)?;
        let index = handle.read();
        crate::validate::search(&vectors, k, index.params.dimension, index.params.metric)?;
        let selection = index.select(partition.as_ref(), select.filter.as_ref())?;
        let flat = vectors.concat();
        Ok(index.search_selected(&flat, k, selection)?)
    }

    /// How many live records of index `name` `select` selects, with the plan.
    pub(crate) fn count(&self, name: &str, select: &Select) -> Result<(u64, Plan), crate::Error> {
        let partition = select.partition_filter()?;
        let handle = self.handle(name)?;
        let index = handle.read();
        let selection = index.select(partition.as_ref(), select.filter.as_ref())?;
        Ok((selection.plan.estimate, selection.plan))
    }

    /// The live ids of index `name` that `select` selects, unsorted.
    pub(crate) fn selected_ids(&self, name: &str, select: &Select) -> Result<Vec<Arc<str>>, crate::Error> {
        let partition = select.partition_filter()?;
        let handle = self.handle(name)?;
        let index = handle.read();
        let selection = index.select(partition.as_ref(), select.filter.as_ref())?;
        Ok(index.selected_ids(&selection))
    }

    /// One page of the records `select` selects, in id order after `after`; the
    /// cursor of the next page (the last id) when more may follow.
    pub(crate) fn items(
        &self,
        name: &str,
        select: &Select,
        after: Option<&str>,
        limit: usize,
        vectors: bool,
    ) -> Result<Page, crate::Error> {
        let partition = select.partition_filter()?;
        let handle = self.handle(name)?;
        let index = handle.read();
        let selection = index.select(partition.as_ref(), select.filter.as_ref())?;
        let page = index.page(&selection, after, limit.saturating_add(1));
        let more = page.len() > limit;
        let items = page
            .into_iter()
            .take(limit)
            .map(|(_, label)| index.item(label, vectors))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let next_cursor = more.then(|| items.last().map(|item| item.id.to_string())).flatten();
        Ok(Page { items, next_cursor })
    }

    /// The records of index `name` with these ids (`None` where an id is not live).
    pub(crate) fn get_items(
        &self,
        name: &str,
        ids: &[String],
        vectors: bool,
    ) -> Result<Vec<Option<Item>>, crate::Error> {
        let handle = self.handle(name)?;
        let index = handle.read();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(match index.label_of(id) {
                Some(label) => index.item(label, vectors)?,
                None => None,
            });
        }
        Ok(out)
    }

    /// The payload indexes of index `name`.
    pub(crate) fn payload_indexes(&self, name: &str) -> Result<Vec<PayloadIndexInfo>, crate::Error> {
        Ok(self.handle(name)?.read().payload_indexes())
    }

    fn handle(&self, name: &str) -> Result<IndexHandle, crate::Error> {
        self.get(name).ok_or_else(|| crate::Error::IndexNotFound { name: name.to_owned() })
    }

    /// Whether `handle` is still the index called `name` (not dropped or replaced).
    pub(crate) fn is_current(&self, name: &str, handle: &IndexHandle) -> bool {
        read(&self.indexes).get(name).is_some_and(|h| Arc::ptr_eq(h, handle))
    }
}

/// The vector projection: applies index and vector events to the [`Catalog`], and
/// queues graph rebuilds on its own lower-priority thread.
pub(crate) struct VectorProjection {
    catalog: Arc<Catalog>,
    /// The documents projection, applied before this one: it decides which vectors of
    /// a `DocumentsEmbedded` are current.
    documents: Arc<DocumentState>,
    rebuilder: Rebuilder,
    hooks: Hooks,
    /// Set at shutdown: a large upsert stops between its chunks.
    closing: AtomicBool,
}

impl VectorProjection {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        documents: Arc<DocumentState>,
        hooks: Hooks,
    ) -> Result<Self, std::io::Error> {
        let rebuilder = Rebuilder::start(Arc::clone(&catalog), hooks.clone())?;
        Ok(Self { catalog, documents, rebuilder, hooks, closing: AtomicBool::new(false) })
    }

    pub(crate) fn rebuild_stats(&self) -> RebuildStats {
        self.rebuilder.stats()
    }

    /// Train the quantizer of the storage in effect if it is due (enough live vectors,
    /// none trained yet): at this event in every replay. The sample is read under the
    /// read lock and trained outside any lock; only this thread changes what it reads.
    fn train_if_due(&self, handle: &IndexHandle) -> Result<(), ApplyError> {
        let sample = handle.read().training_due()?;
        if let Some(sample) = sample {
            let started = std::time::Instant::now();
            let bytes = index::train(&sample)?;
            tracing::info!(
                index = %handle.read().params.name,
                storage = %sample.config.storage.label(),
                vectors = sample.vectors.len() / (sample.dimension.max(1) as usize),
                ms = started.elapsed().as_millis() as u64,
                "quantizer trained"
            );
            let mut index = handle.write();
            index.set_quantizer(sample.config, bytes);
            // The flat graph that served until now is small (about the training
            // minimum): rebuilt as codes here, at once, rather than by the rebuilder,
            // which would chase an ingest adding every new vector to both graphs.
            index.requantize_small()?;
        }
        Ok(())
    }

    /// Queue a rebuild of `name` if its graph wants one.
    fn check_rebuild(&self, name: &str, handle: &IndexHandle) {
        let mut index = handle.write();
        if index.wants_rebuild() {
            index.rebuild_pending = true;
            drop(index);
            self.rebuilder.queue(name, handle);
        }
    }

    /// Apply one upsert: stage it, add it to the graph chunk by chunk (releasing the write
    /// lock in between so searches interleave), then publish it in one step. Only the
    /// projector thread adds to an index; a rebuild swapping the graph in between is fine,
    /// as `install` carries over the chunks added so far and later chunks go to the new
    /// graph.
    fn add_in_chunks(
        &self,
        name: &str,
        handle: &IndexHandle,
        items: &[VectorItem],
    ) -> Result<(), ApplyError> {
        let staged = handle.write().stage(items);
        let mut result = Ok(());
        for start in (0..staged.len()).step_by(ADD_CHUNK_VECTORS) {
            let end = (start + ADD_CHUNK_VECTORS).min(staged.len());
            if self.closing.load(Ordering::Acquire) {
                result = Err(ApplyError::Cancelled);
                break;
            }
            if self.hooks.fail_add.as_ref().is_some_and(|fail| fail(name)) {
                result = Err(ApplyError::Injected(format!("FAISS add into index {name:?}")));
                break;
            }
            let mut index = handle.write();
            result = index.add_staged(&staged, start..end).map_err(ApplyError::from);
            parking_lot::RwLockWriteGuard::unlock_fair(index);
            if result.is_err() {
                break;
            }
        }
        handle.write().publish(staged, items, result.is_ok());
        result
    }
}

impl Projection for VectorProjection {
    fn name(&self) -> &'static str {
        "vectors"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        match &event.body {
            EventBody::IndexCreated(IndexCreated { name, dimension, metric, config })
            | EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder {
                index: IndexCreated { name, dimension, metric, config },
                ..
            }) => {
                if read(&self.catalog.indexes).contains_key(name) {
                    tracing::warn!(index = %name, "create of an existing index ignored");
                    outcome.rejected = 1;
                } else {
                    let params = IndexParams {
                        name: name.clone(),
                        dimension: *dimension,
                        metric: *metric,
                        config: *config,
                    };
                    let index = Arc::new(parking_lot::RwLock::new(VectorIndex::new(params)?));
                    write(&self.catalog.indexes).insert(name.clone(), index);
                }
            }
            EventBody::IndexDropped(dropped) => {
                outcome.rejected = u64::from(write(&self.catalog.indexes).remove(&dropped.name).is_none());
            }
            EventBody::VectorsUpserted(upsert) => {
                let Some(handle) = self.catalog.get(&upsert.index) else {
                    outcome.rejected = upsert.items.len() as u64;
                    return Ok(outcome);
                };
                let bad = {
                    let index = handle.read();
                    upsert.items.iter().filter(|item| !index.accepts(item)).count()
                };
                outcome.rejected = bad as u64;
                if bad == 0 {
                    self.add_in_chunks(&upsert.index, &handle, &upsert.items)?;
                } else {
                    let index = handle.read();
                    let ok: Vec<_> =
                        upsert.items.iter().filter(|item| index.accepts(item)).cloned().collect();
                    drop(index);
                    self.add_in_chunks(&upsert.index, &handle, &ok)?;
                }
                self.train_if_due(&handle)?;
                self.check_rebuild(&upsert.index, &handle);
            }
            // The vectors of embedded documents that are still current (the documents
            // projection decided, applying this event just before).
            EventBody::DocumentsEmbedded(embedded) => {
                let items = self.documents.take_accepted(seq, &embedded.index);
                let Some(handle) = self.catalog.get(&embedded.index) else {
                    outcome.rejected = items.len() as u64;
                    return Ok(outcome);
                };
                let ok: Vec<VectorItem> = {
                    let index = handle.read();
                    items.into_iter().filter(|item| index.accepts(item)).collect()
                };
                self.add_in_chunks(&embedded.index, &handle, &ok)?;
                self.train_if_due(&handle)?;
                self.check_rebuild(&embedded.index, &handle);
            }
            EventBody::VectorsDeleted(delete) => {
                let Some(handle) = self.catalog.get(&delete.index) else {
                    outcome.rejected = delete.ids.len() as u64;
                    return Ok(outcome);
                };
                handle.write().delete(&delete.ids);
                self.check_rebuild(&delete.index, &handle);
            }
            EventBody::ConfigPromoted(promoted) => {
                let Some(handle) = self.catalog.get(&promoted.index) else {
                    outcome.rejected = 1;
                    return Ok(outcome);
                };
                handle.write().promote(promoted.config)?;
                self.train_if_due(&handle)?;
                self.check_rebuild(&promoted.index, &handle);
            }
            EventBody::PromotionRolledBack(rolled_back) => {
                let Some(handle) = self.catalog.get(&rolled_back.index) else {
                    outcome.rejected = 1;
                    return Ok(outcome);
                };
                let rolled = handle.write().roll_back()?;
                outcome.rejected = u64::from(!rolled);
                self.train_if_due(&handle)?;
                self.check_rebuild(&rolled_back.index, &handle);
            }
            EventBody::MetadataSet(set) => {
                let Some(handle) = self.catalog.get(&set.index) else {
                    outcome.rejected = set.items.len() as u64;
                    return Ok(outcome);
                };
                let mut index = handle.write();
                for item in &set.items {
                    if !index.set_metadata(&item.id, item.metadata.as_deref(), item.partition.as_deref()) {
                        outcome.rejected += 1;
                    }
                }
            }
            // A migration batch's moves change records' paths; a move whose record is
            // gone or was put elsewhere since it was planned is skipped (counted).
            EventBody::MigrationBatch(batch) => {
                let Some(handle) = self.catalog.get(&batch.index) else {
                    outcome.rejected = batch.moves.len() as u64;
                    return Ok(outcome);
                };
                let mut index = handle.write();
                for m in &batch.moves {
                    if !index.move_record(&m.id, &m.from, &m.to, m.metadata_crc32) {
                        outcome.rejected += 1;
                    }
                }
            }
            // Trial, bucket and scheme events belong to other projections.
            _ => {}
        }
        Ok(outcome)
    }

    /// Every index, by name: `count u64`, then each index's state (docs/FORMAT.md).
    /// Runs on the projector thread between events, so every index is as of `seq`; each
    /// is read under its read lock, so searches go on.
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let handles = self.catalog.handles();
        out.write_all(&(handles.len() as u64).to_le_bytes())?;
        for (_, handle) in &handles {
            let index = handle.read();
            let mut e = Enc::default();
            index.write_snapshot(&mut e)?;
            out.write_all(&e.buf)?;
            index.write_faiss(out)?;
            index.write_full(out)?;
        }
        Ok(())
    }

    /// Replace every index with those of a snapshot; a graph that wants a rebuild (many
    /// tombstones, or a promoted `m`) is queued for one.
    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut d = Dec::new(bytes);
        let corrupt = |source| SnapshotError::Corrupt { projection: "vectors", source };
        let n = d.count(4).map_err(corrupt)?;
        let mut indexes = BTreeMap::new();
        for _ in 0..n {
            let index = VectorIndex::read_snapshot(&mut d)?;
            let name = index.params.name.clone();
            if indexes.insert(name.clone(), Arc::new(parking_lot::RwLock::new(index))).is_some() {
                return Err(corrupt(d.error(format!("index {name:?} appears twice"))));
            }
        }
        d.finish().map_err(corrupt)?;
        *write(&self.catalog.indexes) = indexes;
        for (name, handle) in self.catalog.handles() {
            self.check_rebuild(&name, &handle);
        }
        Ok(())
    }

    fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        self.rebuilder.stop();
    }
}
