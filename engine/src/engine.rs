//! The engine facade. Data flows one way: validate -> append (the one log writer) ->
//! the projector applies -> readers. A write returns once its event is durable and
//! applied, so the caller reads its own writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::error::Error;
use crate::event::FrameError;
use crate::event::{
    Event, EventBody, HnswConfig, IndexCreated, IndexDropped, Metric, VectorItem, VectorsDeleted,
    VectorsUpserted,
};
use crate::log::{Log, LogConfig, LogError, LogStats, SyncMode};
use crate::projection::vectors::{Catalog, Hit, IndexHandle, IndexParams};
use crate::projection::{Projector, ProjectorStats};
use crate::sync::{read, write};
use crate::validate;

/// File name of the event log inside the data directory.
pub const LOG_FILE: &str = "log.redb";

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Durability of appends (see [`SyncMode`]).
    pub sync: SyncMode,
    /// How long a write waits for the projector to apply its event.
    pub apply_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { sync: SyncMode::Immediate, apply_timeout: Duration::from_secs(120) }
    }
}

/// An index as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Creation parameters.
    pub params: IndexParams,
    /// Live vectors.
    pub length: u64,
}

/// Outcome of a create.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The new index.
    pub info: IndexInfo,
    /// Sequence number of the event.
    pub seq: u64,
}

/// Outcome of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// Vectors written (new or replaced).
    pub added: u64,
    /// Live vectors in the index afterwards.
    pub length: u64,
    /// Sequence number of the event.
    pub seq: u64,
}

/// Outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Ids that were live when the delete was validated.
    pub deleted: u64,
    /// Live vectors in the index afterwards.
    pub length: u64,
    /// Sequence number of the event.
    pub seq: u64,
}

/// Per-index figures for [`EngineStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStats {
    /// Index name.
    pub name: String,
    /// Live vectors.
    pub length: u64,
    /// Deleted or replaced vectors still in the graph.
    pub tombstones: u64,
}

/// Engine counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStats {
    /// The log writer.
    pub log: LogStats,
    /// The projector.
    pub projector: ProjectorStats,
    /// Events appended but not yet applied.
    pub lag_events: u64,
    /// Every index.
    pub indexes: Vec<IndexStats>,
}

/// An open data directory: the log and its projections.
pub struct Engine {
    dir: PathBuf,
    log: Arc<Log>,
    catalog: Arc<Catalog>,
    projector: Projector,
    /// Create and drop hold this exclusively from validation until their event is
    /// applied; upserts and deletes hold it shared from validation until they are
    /// appended. So an index cannot vanish between a write's validation and its append.
    ddl: RwLock<()>,
    config: EngineConfig,
}

impl Engine {
    /// Open (or create) the data directory `dir` and replay its log.
    ///
    /// # Errors
    /// Storage errors, or a projection error naming the first event that could not be
    /// read or applied.
    pub fn open(dir: impl AsRef<Path>, config: EngineConfig) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let started = std::time::Instant::now();
        let log = Arc::new(Log::open(dir.join(LOG_FILE), LogConfig { sync: config.sync })?);
        let catalog = Arc::new(Catalog::default());
        let projector = Projector::start(Arc::clone(&log), Arc::clone(&catalog))?;
        let engine = Self { dir, log, catalog, projector, ddl: RwLock::new(()), config };
        let last = engine.log.last_seq();
        // Replay has no deadline: a long log simply takes its time.
        engine.projector.wait_applied(last, Duration::MAX)?;
        tracing::info!(events = last, ms = started.elapsed().as_millis() as u64, "engine opened");
        Ok(engine)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The event log (for readers and tooling).
    pub fn log(&self) -> &Log {
        &self.log
    }

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
        let _ddl = write(&self.ddl);
        if self.catalog.get(name).is_some() {
            return Err(Error::IndexExists { name: name.to_owned() });
        }
        let body = EventBody::IndexCreated(IndexCreated { name: name.to_owned(), dimension, metric, config });
        let seq = self.append_and_apply(actor, body)?;
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
        let _ddl = write(&self.ddl);
        self.index(name)?;
        self.append_and_apply(actor, EventBody::IndexDropped(IndexDropped { name: name.to_owned() }))
    }

    /// Insert or replace a batch of vectors, all or nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad item; [`Error::IndexNotFound`].
    pub fn upsert(&self, actor: &str, index: &str, items: Vec<VectorItem>) -> Result<Upserted, Error> {
        validate::actor(actor)?;
        let ddl = read(&self.ddl);
        let handle = self.index(index)?;
        let (dimension, metric) = {
            let guard = handle.read();
            (guard.params.dimension, guard.params.metric)
        };
        validate::items(&items, dimension, metric)?;
        let added = items.len() as u64;
        let body = EventBody::VectorsUpserted(VectorsUpserted { index: index.to_owned(), items });
        let seq = self.append(actor, body)?;
        drop(ddl);
        self.projector.wait_applied(seq, self.config.apply_timeout)?;
        let length = handle.read().len();
        Ok(Upserted { added, length, seq })
    }

    /// Delete vectors by id. Ids that do not exist are ignored.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad id; [`Error::IndexNotFound`].
    pub fn delete(&self, actor: &str, index: &str, ids: Vec<String>) -> Result<Deleted, Error> {
        validate::actor(actor)?;
        let ddl = read(&self.ddl);
        let handle = self.index(index)?;
        validate::ids(&ids)?;
        let deleted = handle.read().count_live(&ids);
        let seq =
            self.append(actor, EventBody::VectorsDeleted(VectorsDeleted { index: index.to_owned(), ids }))?;
        drop(ddl);
        self.projector.wait_applied(seq, self.config.apply_timeout)?;
        let length = handle.read().len();
        Ok(Deleted { deleted, length, seq })
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
        let handle = self.index(index)?;
        let index = handle.read();
        validate::search(&vectors, k, index.params.dimension, index.params.metric)?;
        let flat: Vec<f32> = vectors.concat();
        Ok(index.search(&flat, k)?)
    }

    /// The fault that stopped the projector, if any: the engine then refuses writes
    /// and serves the state it had.
    pub fn projection_fault(&self) -> Option<Arc<crate::error::ProjectionError>> {
        self.projector.fault()
    }

    /// Counters of the log, the projector and every index.
    pub fn stats(&self) -> EngineStats {
        let projector = self.projector.stats();
        let log = self.log.stats();
        let indexes = self
            .catalog
            .names()
            .into_iter()
            .filter_map(|name| {
                let handle = self.catalog.get(&name)?;
                let index = handle.read();
                Some(IndexStats { name, length: index.len(), tombstones: index.dead() })
            })
            .collect();
        EngineStats {
            log,
            projector,
            lag_events: log.last_seq.saturating_sub(projector.applied_seq),
            indexes,
        }
    }

    /// Stop the projector and close the log (making every append durable).
    ///
    /// # Errors
    /// The log's final commit failed.
    pub fn close(&self) -> Result<(), Error> {
        self.projector.stop();
        self.log.close()?;
        Ok(())
    }

    fn index(&self, name: &str) -> Result<IndexHandle, Error> {
        self.catalog.get(name).ok_or_else(|| Error::IndexNotFound { name: name.to_owned() })
    }

    fn append(&self, actor: &str, body: EventBody) -> Result<u64, Error> {
        if let Some(fault) = self.projector.fault() {
            return Err(crate::error::ProjectionError::Stopped(fault).into());
        }
        // The encoder refuses an oversized event before serializing it; that is the
        // caller's batch being too big, so it is bad input, not a fault.
        let range = self.log.append(&[Event::new(actor, body)]).map_err(|e| match e {
            LogError::Frame(FrameError::TooLarge { len, .. }) => {
                validate::too_large_for_one_event(len).into()
            }
            other => Error::from(other),
        })?;
        Ok(range.map_or(0, |r| *r.end()))
    }

    /// For create and drop, called under the exclusive DDL lock: the wait has no
    /// deadline, because releasing the lock before the event is applied would let a
    /// write validate against the catalog as it was (only a projector fault ends it).
    fn append_and_apply(&self, actor: &str, body: EventBody) -> Result<u64, Error> {
        let seq = self.append(actor, body)?;
        self.projector.wait_applied(seq, Duration::MAX)?;
        Ok(seq)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the engine on drop failed");
        }
    }
}
