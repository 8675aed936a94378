//! The vector projection: every index of the log as a FAISS HNSW graph.

mod error;
mod hnsw;
mod index;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use error::HnswError;
pub(crate) use index::{norm, VectorIndex};
pub use index::{Hit, IndexParams, REBUILD_DEAD_MIN, REBUILD_DEAD_SHARE};

use crate::event::{EventBody, IndexCreated};
use crate::sync::{read, write};

/// A shared handle on one index; readers search under its read lock, the projector
/// applies events under its write lock. parking_lot's lock, for `unlock_fair`: between
/// the chunks of a large upsert the lock is handed to waiting searches instead of being
/// taken straight back by the projector.
pub(crate) type IndexHandle = Arc<parking_lot::RwLock<VectorIndex>>;

/// What applying one event did.
#[derive(Default)]
pub(crate) struct Applied {
    /// Vectors (or ids) the event carried that could not be applied.
    pub(crate) rejected: u64,
    /// An index whose graph should now be rebuilt.
    pub(crate) rebuild: Option<(String, IndexHandle)>,
}

/// Vectors added to FAISS per write-lock hold: searches on the index wait at most for
/// one chunk of a large upsert, not for all of it.
pub const ADD_CHUNK_VECTORS: usize = 1024;

/// Apply one upsert: stage it, add it to the graph chunk by chunk (releasing the write
/// lock in between so searches interleave), then publish it in one step. Only the
/// projector thread adds to an index; a rebuild swapping the graph in between is fine,
/// as `install` carries over the chunks added so far and later chunks go to the new
/// graph.
fn add_in_chunks(handle: &IndexHandle, items: &[crate::event::VectorItem]) -> Result<(), HnswError> {
    let staged = handle.write().stage(items);
    let mut result = Ok(());
    for start in (0..staged.len()).step_by(ADD_CHUNK_VECTORS) {
        let end = (start + ADD_CHUNK_VECTORS).min(staged.len());
        let mut index = handle.write();
        result = index.add_staged(&staged, start..end);
        parking_lot::RwLockWriteGuard::unlock_fair(index);
        if result.is_err() {
            break;
        }
    }
    handle.write().publish(staged, items, result.is_ok());
    result
}

/// All indexes by name.
#[derive(Default)]
pub(crate) struct Catalog {
    indexes: RwLock<BTreeMap<String, IndexHandle>>,
}

impl Catalog {
    pub(crate) fn get(&self, name: &str) -> Option<IndexHandle> {
        read(&self.indexes).get(name).cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        read(&self.indexes).keys().cloned().collect()
    }

    /// Whether `handle` is still the index called `name` (not dropped or replaced).
    pub(crate) fn is_current(&self, name: &str, handle: &IndexHandle) -> bool {
        read(&self.indexes).get(name).is_some_and(|h| Arc::ptr_eq(h, handle))
    }

    /// Apply one event. Events about other projections are ignored here.
    pub(crate) fn apply(&self, body: &EventBody) -> Result<Applied, HnswError> {
        let mut applied = Applied::default();
        match body {
            EventBody::IndexCreated(IndexCreated { name, dimension, metric, config }) => {
                if read(&self.indexes).contains_key(name) {
                    tracing::warn!(index = %name, "create of an existing index ignored");
                    applied.rejected = 1;
                } else {
                    let params = IndexParams {
                        name: name.clone(),
                        dimension: *dimension,
                        metric: *metric,
                        config: *config,
                    };
                    let index = Arc::new(parking_lot::RwLock::new(VectorIndex::new(params)?));
                    write(&self.indexes).insert(name.clone(), index);
                }
            }
            EventBody::IndexDropped(dropped) => {
                applied.rejected = u64::from(write(&self.indexes).remove(&dropped.name).is_none());
            }
            EventBody::VectorsUpserted(upsert) => {
                let Some(handle) = self.get(&upsert.index) else {
                    applied.rejected = upsert.items.len() as u64;
                    return Ok(applied);
                };
                let (ok, bad): (Vec<_>, Vec<_>) = {
                    let index = handle.read();
                    upsert.items.iter().partition(|item| index.accepts(item))
                };
                applied.rejected = bad.len() as u64;
                if bad.is_empty() {
                    add_in_chunks(&handle, &upsert.items)?;
                } else {
                    let ok: Vec<_> = ok.into_iter().cloned().collect();
                    add_in_chunks(&handle, &ok)?;
                }
                let mut index = handle.write();
                applied.rebuild = self.check_rebuild(&upsert.index, &handle, &mut index);
            }
            EventBody::VectorsDeleted(delete) => {
                let Some(handle) = self.get(&delete.index) else {
                    applied.rejected = delete.ids.len() as u64;
                    return Ok(applied);
                };
                let mut index = handle.write();
                index.delete(&delete.ids);
                applied.rebuild = self.check_rebuild(&delete.index, &handle, &mut index);
            }
            // Promotion, trial, bucket and partition events belong to other projections.
            _ => {}
        }
        Ok(applied)
    }

    fn check_rebuild(
        &self,
        name: &str,
        handle: &IndexHandle,
        index: &mut VectorIndex,
    ) -> Option<(String, IndexHandle)> {
        if !index.wants_rebuild() {
            return None;
        }
        index.rebuild_pending = true;
        Some((name.to_owned(), Arc::clone(handle)))
    }
}
