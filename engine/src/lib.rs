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
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod archive;
pub mod embed;
mod engine;
mod error;
pub mod event;
pub mod limits;
pub mod log;
pub mod partition;
pub mod projection;
pub mod replay;
mod schema;
pub mod secret;
pub mod snapshot;
pub mod storage;
mod sync;
pub mod trials;
pub mod validate;

pub use engine::{
    Autotuned, Created, Deleted, EmbeddingInfo, Engine, EngineConfig, EngineStats, EvalQueries, EvalRequest,
    GraphInfo, IndexInfo, IndexStats, MigrateOptions, MigrationReport, PlannedMove, PromoteRequest, Startup,
    TrialRequest, Upserted, Wait, AUTOTUNE_BUILDS, AUTOTUNE_EF_SEARCH, BATCH_SIZE_DEFAULT, EMBEDDER_ACTOR,
    LOG_FILE,
};
pub use error::{chain, Error, ProjectionError};
pub use event::{Event, EventBody, EventKind, FrameError, HnswConfig, Metric, VectorItem};
pub use log::{
    Log, LogConfig, LogError, LogReader, LogStats, MemoryBackend, ReadOnlyLog, Segment, SyncMode,
    VerifyReport,
};
pub use projection::vectors::{Hit, HnswError, IndexParams, RebuildStats, Record};
pub use projection::{
    ApplyError, Hooks, Outcome, Projection, ProjectionStats, ProjectorStats, SnapshotError,
};
pub use storage::{BucketsConfig, Storage, StorageError};
pub use validate::InvalidInput;
