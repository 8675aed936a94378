//! Indexes and their vectors: create and drop, upserts and deletes, reads and searches.
use std::sync::Arc;

use crate::error::Error;
use crate::event::{
    EventBody, HnswConfig, IndexCreated, IndexDropped, Metric, VectorItem, VectorsDeleted, VectorsUpserted,
};
use crate::projection::vectors::{Hit, IndexInfo, Record};
use crate::schema::SchemaEntry;
use crate::sync::{read, write};
use crate::validate;

use super::*;

impl Engine {
    /// Create an index. `config` defaults to [`HnswConfig::default`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, dimension or config; [`Error::IndexExists`].
    pub fn create_index(
        &self,
        actor: &str,
        name: &str,
        dimension: u32,
        metric: Metric,
        config: HnswConfig,
    ) -> Result<Created, Error> {
        validate::actor(actor)?;
        validate::name(name)?;
        validate::dimension(dimension)?;
        validate::config(&config)?;
        validate::storage(&config, dimension, metric)?;
        let seq = {
            let mut schema = write(self.writable_schema()?);
            if schema.get(name).is_some() {
                return Err(Error::IndexExists { name: name.to_owned() });
            }
            let body =
                EventBody::IndexCreated(IndexCreated { name: name.to_owned(), dimension, metric, config });
            let seq = self.append(actor, body)?;
            let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            schema
                .insert(name, SchemaEntry { dimension, metric, template: None, generation, embedder: None });
            seq
        };
        self.wait_applied(seq)?;
        Ok(Created { info: self.get_index(name)?, seq })
    }

    /// Parameters and length of an index.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn get_index(&self, name: &str) -> Result<IndexInfo, Error> {
        let handle = self.index(name)?;
        let index = handle.read();
        Ok(IndexInfo { params: index.params.clone(), length: index.len() })
    }

    /// Every live record of `index` (id, stored vector, metadata, partition), sorted by
    /// id. Reads the whole index into memory: for inspection, export and tests.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; FAISS failed to read its storage.
    pub fn records(&self, index: &str) -> Result<Vec<Record>, Error> {
        let handle = self.index(index)?;
        let records = handle.read().records()?;
        Ok(records)
    }

    /// Every live id of an index, unsorted (what a resumable import skips): shared
    /// strings, no vectors copied.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn ids(&self, index: &str) -> Result<Vec<Arc<str>>, Error> {
        Ok(self.index(index)?.read().ids_after(""))
    }

    /// Names of every index, sorted.
    pub fn list_indexes(&self) -> Vec<String> {
        self.catalog.names()
    }

    /// Drop an index and all its vectors; returns the event's sequence number.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn drop_index(&self, actor: &str, name: &str) -> Result<u64, Error> {
        validate::actor(actor)?;
        let seq = {
            let mut schema = write(self.writable_schema()?);
            if schema.get(name).is_none() {
                return Err(Error::IndexNotFound { name: name.to_owned() });
            }
            let seq = self.append(actor, EventBody::IndexDropped(IndexDropped { name: name.to_owned() }))?;
            schema.remove(name);
            seq
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// Insert or replace a batch of vectors, all or nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad item; [`Error::IndexNotFound`].
    pub fn upsert(&self, actor: &str, index: &str, items: Vec<VectorItem>) -> Result<Upserted, Error> {
        self.upsert_with(actor, index, items, Wait::Applied)
    }

    /// [`Engine::upsert`], returning as `wait` says (with [`Wait::Durable`], without
    /// `length`).
    ///
    /// # Errors
    /// As [`Engine::upsert`].
    pub fn upsert_with(
        &self,
        actor: &str,
        index: &str,
        mut items: Vec<VectorItem>,
        wait: Wait,
    ) -> Result<Upserted, Error> {
        validate::actor(actor)?;
        let added = items.len() as u64;
        let seq = {
            let schema = read(self.writable_schema()?);
            let entry = schema.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
            if entry.embedder.is_some() {
                return Err(Error::DocumentIndex { name: index.to_owned() });
            }
            validate::items(&items, entry.dimension, entry.metric)?;
            if let Some(template) = &entry.template {
                template.place_items(&mut items)?;
            }
            let body = EventBody::VectorsUpserted(VectorsUpserted { index: index.to_owned(), items });
            self.append(actor, body)?
        };
        self.upserted(index, added, seq, wait)
    }

    /// Delete vectors by id. Ids that do not exist are ignored.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad id; [`Error::IndexNotFound`].
    pub fn delete(&self, actor: &str, index: &str, ids: Vec<String>) -> Result<Deleted, Error> {
        self.delete_with(actor, index, ids, Wait::Applied)
    }

    /// [`Engine::delete`], returning as `wait` says.
    ///
    /// # Errors
    /// As [`Engine::delete`].
    pub fn delete_with(
        &self,
        actor: &str,
        index: &str,
        ids: Vec<String>,
        wait: Wait,
    ) -> Result<Deleted, Error> {
        validate::actor(actor)?;
        let (deleted, seq) = {
            let schema = read(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            validate::ids(&ids)?;
            // As the projection has it now: it may lag behind the log (documented).
            let deleted = self.catalog.get(index).map_or(0, |handle| handle.read().count_live(&ids));
            let body = EventBody::VectorsDeleted(VectorsDeleted { index: index.to_owned(), ids });
            (deleted, self.append(actor, body)?)
        };
        if wait == Wait::Durable {
            self.make_durable()?;
            return Ok(Deleted { deleted, length: None, seq });
        }
        self.wait_applied(seq)?;
        Ok(Deleted { deleted, length: Some(self.length(index)), seq })
    }

    /// The `k` nearest live vectors to `vector`, nearest first.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad vector or `k`; [`Error::IndexNotFound`].
    pub fn search(&self, index: &str, vector: Vec<f32>, k: usize) -> Result<Vec<Hit>, Error> {
        let mut results = self.search_batch(index, vec![vector], k)?;
        Ok(results.pop().unwrap_or_default())
    }

    /// [`Engine::search`] for several queries at once.
    ///
    /// # Errors
    /// As [`Engine::search`].
    pub fn search_batch(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
    ) -> Result<Vec<Vec<Hit>>, Error> {
        self.catalog.search(index, vectors, k, None)
    }

    /// The graph serving `index`: the config it was built with against the one in
    /// effect (they differ in `m` or `ef_construction` until a promotion's rebuild
    /// swaps in), and whether a rebuild is queued or running.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn graph(&self, index: &str) -> Result<GraphInfo, Error> {
        let handle = self.index(index)?;
        let index = handle.read();
        Ok(GraphInfo {
            built: index.built_config(),
            in_effect: index.params.config,
            rebuild_pending: index.rebuild_pending,
            work: index.work.report(),
        })
    }
}
