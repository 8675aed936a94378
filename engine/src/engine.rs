//! The engine facade. Data flows one way: validate -> append (the one log writer) ->
//! the projector applies -> readers. A write returns once its event is durable and
//! applied, so the caller reads its own writes.

mod documents;
mod filters;
mod migrate;
mod promotions;
mod recorder;
mod snapshots;
mod text;

pub use text::TextSpec;
mod tuning;
mod vectors;

pub use documents::{EmbeddingInfo, EMBEDDER_ACTOR};
pub use filters::{MetadataChange, MetadataUpdated};
pub use migrate::{MigrateOptions, MigrationReport, PlannedMove, BATCH_SIZE_DEFAULT};
pub use tuning::{
    Autotuned, EvalQueries, EvalRequest, MemoryBudget, TrialRequest, AUTOTUNE_BUILDS, AUTOTUNE_EF_SEARCH,
    AUTOTUNE_STORAGES,
};

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::FrameError;
use crate::event::{Event, EventBody, HnswConfig};
use crate::log::{Log, LogConfig, LogError, LogReader, LogStats, SyncMode, LOG_FILE};
use crate::projection::bucket_errors::ErrorJournal;
use crate::projection::documents::DocumentState;
use crate::projection::partitions::PartitionState;
use crate::projection::promotions::PromotionState;
use crate::projection::trials::TrialState;
use crate::projection::vectors::{Catalog, IndexHandle, IndexInfo, RebuildStats, VectorProjection};
use crate::projection::{Hooks, Projections, Projector, ProjectorStats};
use crate::recovery::{self, Recovered, Restored};
use crate::schema::{Schema, SchemaEntry};
use crate::snapshot::{self, SnapshotPolicy, Taker, Views};
use crate::source::EventSource;
use crate::storage::{BucketsConfig, Storage};
use crate::validate;
use recorder::Recorder;

/// How often replay at start logs its progress.
const REPLAY_PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Durability of appends (see [`SyncMode`]).
    pub sync: SyncMode,
    /// How long a write waits for the projector to apply its event. Past it the write
    /// fails with [`crate::ProjectionError::Timeout`], which carries its sequence
    /// number: the event is durable and will be applied.
    pub apply_timeout: Duration,
    /// Fault and delay injection, for tests; empty by default.
    pub hooks: Hooks,
    /// The storage buckets (default: a local `primary` inside the data directory).
    pub buckets: BucketsConfig,
    /// When snapshots are taken, kept and used at open.
    pub snapshots: SnapshotPolicy,
    /// The embedders document indexes may use, by model id (none by default; the
    /// server offers the local all-MiniLM-L6-v2 and configured remote ones).
    pub embedders: crate::embed::Embedders,
    /// The replicated log (NATS JetStream) this node takes part in; `None` (the
    /// default): the log is the local redb file alone.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            sync: SyncMode::Immediate,
            apply_timeout: Duration::from_secs(120),
            hooks: Hooks::default(),
            buckets: BucketsConfig::default(),
            snapshots: SnapshotPolicy::default(),
            embedders: crate::embed::Embedders::default(),
            cluster: None,
        }
    }
}

/// Where opening stands: replay of the log up to the event that was last when the
/// engine started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startup {
    /// Events applied so far.
    pub applied_seq: u64,
    /// The last event of the log when the engine started; ready once it is applied.
    pub target_seq: u64,
    /// Whether replay is done and writes are accepted.
    pub ready: bool,
    /// Whether to send traffic here (`/readyz`): `ready`, and in a cluster also close
    /// behind the stream (within `max_lag`) and in touch with a server. A replica
    /// that falls behind keeps serving; reads that must see a write ask `min_seq`.
    pub in_sync: bool,
    /// Time since the engine started.
    pub elapsed: Duration,
}

/// Outcome of a create.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The new index.
    pub info: IndexInfo,
    /// Sequence number of the event.
    pub seq: u64,
}

/// When a write returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Wait {
    /// Once its event is durable and applied: the caller's next read sees it.
    #[default]
    Applied,
    /// Once its event is durable (it will be applied in log order): the caller reads
    /// it with [`Engine::wait_for_seq`] (`min_seq` over HTTP) when it needs to.
    Durable,
}

/// Outcome of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// Vectors written (new or replaced).
    pub added: u64,
    /// Live vectors in the index afterwards; `None` for a write that returned at
    /// durability ([`Wait::Durable`]): reading it would wait for the graph's lock.
    pub length: Option<u64>,
    /// Sequence number of the event.
    pub seq: u64,
}

/// Outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Ids that were live when the delete was validated.
    pub deleted: u64,
    /// Live vectors in the index afterwards; `None` for [`Wait::Durable`].
    pub length: Option<u64>,
    /// Sequence number of the event.
    pub seq: u64,
}

/// What [`Engine::promote`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteRequest {
    /// The configuration to serve the index with.
    pub config: HnswConfig,
    /// The trial whose measurements justify it (empty: none).
    pub trial_id: String,
    /// Who promotes it (1 to 16 KiB of text).
    pub promoted_by: String,
    /// Why (at most 16 KiB).
    pub note: String,
}

/// The graph serving an index, from [`Engine::graph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInfo {
    /// The index's graph work since the engine opened: incremental adds, backfill,
    /// stale copies, rebuilds, failures, the running rebuild's progress.
    pub work: crate::projection::vectors::GraphWorkReport,
    /// The config the serving graph was built with.
    pub built: HnswConfig,
    /// The config in effect (creation or promoted).
    pub in_effect: HnswConfig,
    /// A rebuild is queued or running.
    pub rebuild_pending: bool,
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
    /// Live vectors per partition path, sorted by path (empty without partitions).
    pub partitions: Vec<(String, u64)>,
}

/// Engine counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStats {
    /// The log writer.
    pub log: LogStats,
    /// The projector and each projection.
    pub projector: ProjectorStats,
    /// Graph rebuilds.
    pub rebuilds: RebuildStats,
    /// Events appended but not yet applied.
    pub lag_events: u64,
    /// Every index.
    pub indexes: Vec<IndexStats>,
    /// Where this node stands in its cluster (`None` for a single node).
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// Whether `/readyz` sends traffic here (see [`Startup::in_sync`]).
    pub in_sync: bool,
}

/// An open data directory: the log and its projections.
pub struct Engine {
    dir: PathBuf,
    log: Arc<Log>,
    /// The log and its archive, read by the projector and by views.
    source: Arc<EventSource<Log>>,
    catalog: Arc<Catalog>,
    vectors: Arc<VectorProjection>,
    projector: Arc<Projector>,
    journal: Arc<ErrorJournal>,
    promotions: Arc<PromotionState>,
    trials: Arc<TrialState>,
    partitions: Arc<PartitionState>,
    documents: Arc<DocumentState>,
    text: Arc<crate::projection::text::TextState>,
    /// Embeds documents (see `engine/documents.rs`).
    embedding: documents::EmbeddingWorker,
    /// Indexes whose scheme is being changed (set, migrated, cleared) by a call now:
    /// one such call per index at a time.
    migrating: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Next schema generation (see `SchemaEntry::generation`).
    generations: std::sync::atomic::AtomicU64,
    /// Evaluation set and trial ids are assigned and appended one at a time.
    trialing: std::sync::Mutex<()>,
    /// Promotions and rollbacks one at a time, each validated against the state its
    /// predecessor left (held from validation until its event is applied).
    promoting: std::sync::Mutex<()>,
    storage: Arc<Storage>,
    /// Which snapshot the open started from.
    restored: Restored,
    /// Takes snapshots, on request, by policy and at close.
    snapshots: Arc<Taker>,
    /// Time-travel views, cached.
    views: Views,
    /// The command-side schema, set once replay at start has caught up (see
    /// `schema.rs`). Create and drop hold it exclusively from validation until their
    /// event is appended; upserts and deletes hold it shared for the same span. So an
    /// index cannot vanish between a write's validation and its append, and no write
    /// waits for the projector while holding it.
    schema: OnceLock<RwLock<Schema>>,
    /// The event the schema was last built from the projections at (see
    /// `writable_schema`): in a cluster, writes validated against it are refused once
    /// another node's event after it changed the schema.
    schema_through: std::sync::atomic::AtomicU64,
    /// The replicated log this node copies and publishes to, in a cluster.
    cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// In a cluster: a write of this node under the schema's write lock failed with an
    /// unknown outcome (it may be in the stream after all), so the schema is built
    /// again from the projections before the next validation.
    schema_stale: std::sync::atomic::AtomicBool,
    /// The last event when the engine started: ready once it is applied.
    target_seq: u64,
    started: Instant,
    config: EngineConfig,
}

impl Engine {
    /// Open (or create) the data directory `dir` and replay its log; returns once the
    /// projections have caught up. See [`Engine::start`] to serve while replaying.
    ///
    /// # Errors
    /// Storage errors, or a projection error naming the first event that could not be
    /// read or applied.
    pub fn open(dir: impl AsRef<Path>, config: EngineConfig) -> Result<Self, Error> {
        let engine = Self::start(dir, config)?;
        // Replay has no deadline: a long log simply takes its time.
        engine.wait_ready(Duration::MAX)?;
        Ok(engine)
    }

    /// Open (or create) the data directory `dir` and start replaying its log in the
    /// background. Reads answer from what is applied so far; writes fail with
    /// [`Error::Starting`] until [`Engine::startup`] says it is ready.
    ///
    /// # Errors
    /// Storage errors opening the log; [`Error::LogTruncated`] if the log starts after
    /// event 1.
    pub fn start(dir: impl AsRef<Path>, config: EngineConfig) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        // Quantized graphs keep their full vectors in unnamed scratch files: on the data
        // directory's disk, not in a /tmp that may be memory.
        crate::projection::vectors::set_scratch_dir(dir.clone());
        let started = Instant::now();
        let log_config = LogConfig { sync: config.sync, ..LogConfig::default() };
        let log = Arc::new(match &config.hooks.log_in_memory {
            Some(memory) => Log::open_with_backend(memory.clone(), log_config)?,
            None => Log::open(dir.join(LOG_FILE), log_config)?,
        });
        // The snapshot object a bootstrap read, for the restore below.
        let bootstrapped = std::sync::Mutex::new(None);
        let cluster = match &config.cluster {
            Some(cluster) => {
                let owner = format!("{}/{}/", snapshot::PREFIX, cluster.node);
                // A node that starts empty begins from the cluster's newest snapshot,
                // unless snapshots are not restored at all.
                let begin = |pointer: &crate::cluster::SnapshotPointer| {
                    let (taken, read) =
                        crate::recovery::fetch_for_bootstrap(&dir, &config.buckets, pointer, &owner)?;
                    *crate::sync::lock(&bootstrapped) = Some(read);
                    Ok(taken)
                };
                let bootstrap: Option<&crate::cluster::BootstrapFn<'_>> =
                    if config.snapshots.restore { Some(&begin) } else { None };
                let link = crate::cluster::ClusterLink::connect(cluster.clone(), &log, bootstrap)
                    .map_err(LogError::from)?;
                log.set_upstream(
                    Arc::clone(&link) as Arc<dyn crate::log::Upstream>,
                    owner,
                    link.stream_id(),
                )?;
                Some(link)
            }
            // A copy of a stream takes no writes of a process that did not join it:
            // they would number events differently from the stream.
            None if log.is_copy() => return Err(LogError::Clustered { op: "open without --cluster" }.into()),
            None => None,
        };
        let recorder = Arc::new(Recorder { log: Arc::clone(&log), projector: OnceLock::new() });
        let sink: Arc<dyn crate::storage::ErrorSink> = Arc::clone(&recorder) as _;
        let storage = Arc::new(Storage::open(&dir, &config.buckets, sink, &config.hooks)?);
        let source = Arc::new(EventSource::new(Arc::clone(&log), Arc::clone(&storage)));
        // The newest usable snapshot (or none), and the projector applying what follows.
        let Recovered { projections, restored, projector } = recovery::recover(
            &source,
            &config.hooks,
            config.snapshots.restore,
            config.snapshots.keep.max(1),
            bootstrapped.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        )?;
        let from = restored.snapshot.as_ref().map_or(1, |s| s.seq + 1);
        // Errors recorded from now on wait (briefly) for the journal to show them.
        let _ = recorder.projector.set(Arc::downgrade(&projector));
        let Projections {
            catalog, vectors, journal, promotions, trials, partitions, documents, text, ..
        } = projections;
        let newest = snapshot::registered(log.as_ref(), 1)?.pop();
        // In a cluster, snapshots are shared when their bucket is one every node reads.
        let sharing = cluster.as_ref().map(|link| {
            let shared = config.buckets.is_s3(snapshot::BUCKET);
            Arc::new(crate::cluster::SnapshotSharing::new(Arc::clone(link), shared))
                as Arc<dyn snapshot::Sharing>
        });
        let snapshots = Taker::start(
            Arc::clone(&projector),
            Arc::clone(&storage),
            Arc::clone(&log),
            config.snapshots.clone(),
            newest,
            sharing,
        )?;
        let target_seq = log.last_seq();
        let embedding = documents::EmbeddingWorker::start(
            Arc::clone(&documents),
            config.embedders.clone(),
            Arc::clone(&log),
            Arc::clone(&projector),
            target_seq,
            config.hooks.clone(),
            cluster.as_ref().map(|link| {
                let link = Arc::clone(link);
                Arc::new(move || link.holds_embedder_lease()) as Arc<dyn Fn() -> bool + Send + Sync>
            }),
        )?;
        tracing::info!(
            events = target_seq,
            from,
            snapshot = restored.snapshot.as_ref().map(|s| s.key.as_str()),
            restore_ms = restored.elapsed.as_millis() as u64,
            "replaying the log"
        );
        Ok(Self {
            source,
            restored,
            snapshots,
            views: Views::default(),
            dir,
            log,
            catalog,
            vectors,
            projector,
            journal,
            promotions,
            trials,
            partitions,
            documents,
            text,
            embedding,
            migrating: std::sync::Mutex::default(),
            generations: std::sync::atomic::AtomicU64::new(1),
            trialing: std::sync::Mutex::new(()),
            promoting: std::sync::Mutex::new(()),
            storage,
            schema: OnceLock::new(),
            schema_through: std::sync::atomic::AtomicU64::new(0),
            schema_stale: std::sync::atomic::AtomicBool::new(false),
            cluster,
            target_seq,
            started,
            config,
        })
    }

    /// Wait until replay at start is done, logging progress every few seconds.
    ///
    /// # Errors
    /// A projection fault during replay, or [`crate::ProjectionError::Timeout`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            match self.projector.wait_applied(self.target_seq, left.min(REPLAY_PROGRESS_EVERY)) {
                Ok(()) => break,
                Err(crate::ProjectionError::Timeout { applied, .. }) if !left.is_zero() => {
                    tracing::info!(applied, target = self.target_seq, "replaying the log");
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.schema();
        release_free_memory();
        tracing::info!(
            events = self.target_seq,
            ms = self.started.elapsed().as_millis() as u64,
            "engine ready"
        );
        Ok(())
    }

    /// Replay progress at start.
    pub fn startup(&self) -> Startup {
        let applied_seq = self.projector.applied_seq();
        let ready = applied_seq >= self.target_seq && self.projector.fault().is_none();
        let mut in_sync = ready;
        if let Some(cluster) = &self.cluster {
            // A replica is in sync while its copy and its projections are close behind
            // the stream, it has heard from a server lately, and copying has not stopped.
            let status = cluster.status();
            let max_lag = cluster.config().max_lag;
            in_sync &= status.fault.is_none()
                && status.since_contact.is_some_and(|d| d < crate::cluster::CONTACT_STALE)
                && status.lag_messages <= max_lag
                && self.log.last_seq().saturating_sub(applied_seq) <= max_lag;
        }
        Startup { applied_seq, target_seq: self.target_seq, ready, in_sync, elapsed: self.started.elapsed() }
    }

    /// Where this node stands in its cluster (`None` for a single node).
    pub fn cluster_status(&self) -> Option<crate::cluster::ClusterStatus> {
        self.cluster.as_ref().map(|c| c.status())
    }

    /// The schema, once replay at start is done.
    fn schema(&self) -> Option<&RwLock<Schema>> {
        if let Some(schema) = self.schema.get() {
            return Some(schema);
        }
        if !self.startup().ready {
            return None;
        }
        // No write is appended before the schema exists, so the catalog now holds
        // exactly the indexes of the log.
        Some(self.schema.get_or_init(|| {
            self.schema_through.store(self.projector.applied_seq(), std::sync::atomic::Ordering::Release);
            RwLock::new(self.build_schema())
        }))
    }

    /// The schema of the indexes as the projections hold them now.
    fn build_schema(&self) -> Schema {
        self.catalog
            .handles()
            .into_iter()
            .map(|(name, handle)| {
                let index = handle.read();
                // Templates in the log were parsed when they were set.
                let template = self.partitions.template_for_writes(&name).and_then(|t| {
                    match crate::partition::Template::parse(&t) {
                        Ok(parsed) => Some(Arc::new(parsed)),
                        Err(error) => {
                            tracing::error!(index = %name, template = %t, %error, "stored partition template does not parse; upserts are not resolved");
                            None
                        }
                    }
                });
                let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let entry = SchemaEntry {
                    dimension: index.params.dimension,
                    metric: index.params.metric,
                    template,
                    generation,
                    embedder: self.documents.embedder(&name).map(|e| e.model),
                };
                (name, entry)
            })
            .collect()
    }

    /// In a cluster: once another node's event changed the schema (an index created or
    /// dropped, a scheme, a promotion), wait until the projections applied everything
    /// copied so far and build the schema again from them, under its write lock.
    fn refresh_schema(&self, schema: &RwLock<Schema>) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let behind = || {
            self.schema_stale.load(Ordering::Acquire)
                || self.log.foreign_guard_seq() > self.schema_through.load(Ordering::Acquire)
        };
        if !behind() {
            return Ok(());
        }
        let mut guard = crate::sync::write(schema);
        if !behind() {
            return Ok(()); // another writer refreshed it
        }
        // Up to the newest change of another node; after one of this node's writes
        // with an unknown outcome, up to everything copied.
        let stale = self.schema_stale.swap(false, Ordering::AcqRel);
        let target = if stale { self.log.last_seq() } else { self.log.foreign_guard_seq() };
        match self.projector.wait_applied(target, self.config.apply_timeout) {
            Ok(()) => {}
            Err(crate::ProjectionError::Timeout { applied, .. }) => {
                self.schema_stale.fetch_or(stale, Ordering::AcqRel);
                return Err(Error::NotYetApplied { seq: target, applied });
            }
            Err(e) => {
                self.schema_stale.fetch_or(stale, Ordering::AcqRel);
                return Err(e.into());
            }
        }
        *guard = self.build_schema();
        self.schema_through.store(target, Ordering::Release);
        tracing::info!(through = target, "schema rebuilt after another node's change");
        Ok(())
    }

    fn writable_schema(&self) -> Result<&RwLock<Schema>, Error> {
        if let Some(fault) = self.projector.fault() {
            return Err(crate::projection::ProjectionError::Stopped(fault).into());
        }
        let schema = self.schema().ok_or(Error::Starting)?;
        if self.cluster.is_some() {
            self.refresh_schema(schema)?;
        }
        Ok(schema)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The event log, read-only: every append goes through the engine's validation.
    pub fn log(&self) -> &LogReader {
        &self.log
    }

    /// The answer of an upsert (of vectors or documents) whose event is `seq`, once it
    /// is as durable or applied as `wait` asks.
    fn upserted(&self, index: &str, added: u64, seq: u64, wait: Wait) -> Result<Upserted, Error> {
        if wait == Wait::Durable {
            self.make_durable()?;
            return Ok(Upserted { added, length: None, seq });
        }
        self.wait_applied(seq)?;
        Ok(Upserted { added, length: Some(self.length(index)), seq })
    }

    /// In [`SyncMode::Deferred`] an append is not fsynced: a [`Wait::Durable`] answer
    /// syncs first, so "durable" means what it says in either mode.
    fn make_durable(&self) -> Result<(), Error> {
        if self.config.sync == SyncMode::Deferred {
            self.log.sync()?;
        }
        Ok(())
    }

    /// Wait until event `seq` is applied (read-your-writes after a [`Wait::Durable`]
    /// write), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::SeqNotAppended`] if `seq` was never appended;
    /// [`Error::NotYetApplied`] with the applied sequence number when `timeout` passes;
    /// a projector fault.
    pub fn wait_for_seq(&self, seq: u64, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        let mut last = self.log.last_seq();
        if seq > last && self.cluster.is_some() {
            // Another node may have appended it: wait for the copy to bring it.
            last = self.log.wait_seq(seq, timeout);
            if seq > last {
                return Err(Error::NotYetApplied { seq, applied: self.projector.applied_seq() });
            }
        }
        if seq > last {
            return Err(Error::SeqNotAppended { seq, last });
        }
        match self.projector.wait_applied(seq, timeout.saturating_sub(started.elapsed())) {
            Ok(()) => Ok(()),
            Err(crate::ProjectionError::Timeout { applied, .. }) => {
                Err(Error::NotYetApplied { seq, applied })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The fault that stopped the projector, if any: the engine then refuses writes
    /// and serves the state it had.
    pub fn projection_fault(&self) -> Option<Arc<crate::projection::ProjectionError>> {
        self.projector.fault()
    }

    /// The storage buckets: object I/O, probes, and their failure counters.
    pub fn storage(&self) -> &Storage {
        self.storage.as_ref()
    }

    /// The bucket error journal (the newest bucket errors from the log).
    pub fn journal(&self) -> &ErrorJournal {
        &self.journal
    }

    /// Counters of the log, the projector and every index.
    pub fn stats(&self) -> EngineStats {
        let projector = self.projector.stats();
        let log = self.log.stats();
        let rebuilds = self.vectors.rebuild_stats();
        let indexes = self
            .catalog
            .handles()
            .into_iter()
            .map(|(name, handle)| {
                let index = handle.read();
                IndexStats {
                    name,
                    length: index.len(),
                    tombstones: index.dead(),
                    partitions: index.partition_counts(),
                }
            })
            .collect();
        EngineStats {
            lag_events: log.last_seq.saturating_sub(projector.applied_seq),
            log,
            projector,
            rebuilds,
            indexes,
            cluster: self.cluster_status(),
            in_sync: self.startup().in_sync,
        }
    }

    /// Close: first the log (refusing new appends and making every acknowledged one
    /// durable), then the projector, which stops a running rebuild or a large upsert at
    /// its next chunk. Idempotent.
    ///
    /// # Errors
    /// The log's final commit failed.
    pub fn close(&self) -> Result<(), Error> {
        self.embedding.stop();
        self.snapshots.stop();
        if self.config.snapshots.on_close && self.startup().ready && !self.log.is_poisoned() {
            // A failed snapshot does not stop the close: the log is the truth.
            match crate::sync::block_on(self.snapshots.take_if_behind(snapshot::ENGINE_ACTOR, 1)) {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %crate::chain::chain(&error), "no snapshot at close")
                }
                Err(error) => tracing::warn!(%error, "no snapshot at close"),
            }
        }
        let closed = self.log.close();
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
        self.projector.stop();
        closed?;
        Ok(())
    }

    fn index(&self, name: &str) -> Result<IndexHandle, Error> {
        self.catalog.get(name).ok_or_else(|| Error::IndexNotFound { name: name.to_owned() })
    }

    /// Wait for a write's own event, which is durable already: any failure to see it
    /// applied says so, with its sequence number.
    fn wait_applied(&self, seq: u64) -> Result<(), Error> {
        self.projector
            .wait_applied(seq, self.config.apply_timeout)
            .map_err(|source| Error::NotApplied { seq, source })
    }

    /// Live vectors of `index` as applied now (0 if it is gone).
    fn length(&self, index: &str) -> u64 {
        self.catalog.get(index).map_or(0, |handle| handle.read().len())
    }

    fn append(&self, actor: &str, body: EventBody) -> Result<u64, Error> {
        self.append_all(actor, vec![body])
    }

    /// Append events in one commit (all or none); the last one's sequence number.
    fn append_all(&self, actor: &str, bodies: Vec<EventBody>) -> Result<u64, Error> {
        if let Some(fault) = self.projector.fault() {
            return Err(crate::projection::ProjectionError::Stopped(fault).into());
        }
        let events: Vec<Event> = bodies.into_iter().map(|body| Event::new(actor, body)).collect();
        // The encoder refuses an oversized event before serializing it; that is the
        // caller's batch being too big, so it is bad input, not a fault.
        let validated = self.schema_through.load(std::sync::atomic::Ordering::Acquire);
        let range = self.log.append_validated(&events, validated).map_err(|e| match e {
            LogError::Frame(FrameError::TooLarge { len, .. }) => {
                validate::too_large_for_one_event(len).into()
            }
            other => Error::from(other),
        });
        if let Err(error) = &range {
            // A write that may be in the stream after all: the schema this node keeps
            // in step with its own writes may have missed it.
            if self.cluster.is_some()
                && matches!(error.kind(), crate::ErrorKind::OutcomeUnknown | crate::ErrorKind::Unavailable(_))
            {
                self.schema_stale.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let range = range?;
        Ok(range.map_or(0, |r| *r.end()))
    }
}

/// Hand the heap memory freed after replay (decoded batches, staging buffers) back to
/// the system: glibc keeps freed memory in its per-thread arenas otherwise, and replay
/// frees a lot on the projector thread and FAISS's OpenMP threads.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of malloc's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the engine on drop failed");
        }
    }
}
