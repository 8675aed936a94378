//! annal-engine: an event-sourced storage engine for vector search.
//!
//! Every mutation is an [`Event`] appended to a checksummed log in redb ([`Log`]);
//! everything else is a projection of that log, rebuilt by replay. [`Engine`] is the
//! facade: it validates, appends, waits for the projector, and serves searches.
//!
//! ```no_run
//! use annal_engine::{Engine, EngineConfig, HnswConfig, Metric, VectorItem};
//! # fn main() -> Result<(), annal_engine::Error> {
//! let engine = Engine::open("./data", EngineConfig::default())?;
//! engine.create_index("me", "docs", 3, Metric::Cosine, HnswConfig::default())?;
//! let item = VectorItem { id: "a".into(), vector: vec![1.0, 0.0, 0.0], metadata: None, partition: None };
//! engine.upsert("me", "docs", vec![item])?;
//! let hits = engine.search("docs", vec![1.0, 0.1, 0.0], 10)?;
//! assert_eq!(&*hits[0].id, "a");
//! # Ok(()) }
//! ```
//!
//! This file is the whole public surface. Two modules are public because they are
//! namespaces of declarations, not layers: [`event`] (the log's schema: every event
//! body, the frame that stores it) and [`limits`] (the bounds every input is checked
//! against). Every other module is private and re-exported item by item below, so the
//! layers under the facade can move without breaking a caller.
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod archive;
mod chain;
mod cluster;
mod codec;
mod embed;
mod engine;
mod error;
pub mod event;
mod filter;
pub mod limits;
mod log;
mod partition;
mod progress;
mod projection;
mod recovery;
mod replay;
mod schema;
mod secret;
mod snapshot;
mod source;
mod storage;
mod sync;
mod trials;
mod validate;
mod vecmath;

// The engine facade and what its calls take and return.
pub use engine::{
    Autotuned, Created, Deleted, EmbeddingInfo, Engine, EngineConfig, EngineStats, EvalQueries, EvalRequest,
    GraphInfo, IndexStats, MemoryBudget, MetadataChange, MetadataUpdated, MigrateOptions, MigrationReport,
    PlannedMove, PromoteRequest, Startup, TextSpec, TrialRequest, Upserted, Wait, AUTOTUNE_BUILDS,
    AUTOTUNE_EF_SEARCH, AUTOTUNE_STORAGES, BATCH_SIZE_DEFAULT, EMBEDDER_ACTOR,
};
pub use event::{
    Event, EventBody, EventKind, FrameError, HnswConfig, Metric, Storage as GraphStorage, StorageKind,
    TextIndexCreated, TextTokenizer, VectorItem,
};
pub use partition::Template;
pub use progress::Progress;
pub use secret::Secret;
pub use validate::{config as validate_hnsw_config, recall_floor as validate_recall_floor, InvalidInput};

// Errors: the crate error, its kinds, and the layer errors it folds.
pub use archive::ArchiveError;
pub use chain::chain;
pub use cluster::{
    commit as cluster_commit, BootstrapFn, ClusterConfig, ClusterError, ClusterLink, ClusterStatus,
    SnapshotPointer, CONTACT_STALE, SNAPSHOT_LEASE,
};
pub use embed::EmbedError;
pub use error::{Error, ErrorKind, Unavailable};
pub use log::LogError;
pub use projection::vectors::HnswError;
pub use projection::{ApplyError, ProjectionError, SnapshotError};
pub use replay::ReplayError;
pub use storage::StorageError;

// The log.
pub use log::{
    BadEvent, Bootstrap, Log, LogConfig, LogReader, LogStats, MemoryBackend, ReadOnlyLog, Segment, SyncMode,
    VerifyReport, LOG_FILE,
};

// Projections: what readers get back from them.
pub use filter::Filter;
pub use projection::bucket_errors::{Health, JournalEntry, JournalFilter};
pub use projection::partitions::{IndexPartitions, Migration, Scheme};
pub use projection::promotions::{IndexPromotions, Promotion, HISTORY_MAX as PROMOTION_HISTORY_MAX};
pub use projection::text::{
    FusedHit, Fusion, Hybrid, KeywordHit, KeywordQuery, TextError, ALPHA_DEFAULT,
    LANGUAGES as TEXT_LANGUAGES, RRF_K_DEFAULT,
};
pub use projection::trials::{IndexTrials, Objective, Trial};
pub use projection::vectors::{
    Hit, IndexInfo, IndexParams, Item, Page, PayloadIndexInfo, Plan, RebuildStats, Record, Searched, Select,
    Strategy, FILTER_EXACT_MAX,
};
pub use projection::{Hooks, Outcome, Projection, ProjectionStats, ProjectorStats};

// Snapshots, time travel and log retention.
pub use archive::{encode_cut, split_cut, verify as verify_archive, ArchiveReport, PREFIX as ARCHIVE_PREFIX};
pub use recovery::Restored;
pub use snapshot::format::{
    decode as decode_snapshot, encode as encode_snapshot, Decoded as DecodedSnapshot,
    FormatError as SnapshotFormatError,
};
pub use snapshot::{
    check as check_snapshot, key as snapshot_key, registered_snapshots, SnapshotInfo, SnapshotPolicy, View,
    PREFIX as SNAPSHOT_PREFIX,
};
pub use sync::block_on;

// Offline replay, for tooling.
pub use replay::{
    IndexState, LogicalState, OfflineLog, Replay, Skipped, SnapshotReplay, StateDigest, TOOL_ACTOR,
};

// Storage buckets.
pub use storage::{
    BucketInfo, BucketsConfig, FaultyStore, Fetched, Listing, ObjectInfo, ObjectReader, ProbeReport, Storage,
    StorageStats, DEFAULT_PRIMARY_ROOT, PRIMARY,
};

// Embedders.
pub use embed::{
    Embedder, Embedders, LazyLocalEmbedder, LocalEmbedder, RemoteEmbedder, RemoteEmbedderConfig,
    LOCAL_MODEL_DIMENSION, LOCAL_MODEL_ID,
};
