//! Fault and delay injection for tests: the engine's real code paths, made to fail or
//! to take long on demand, where FAISS and the disk cannot be made to.

use std::fmt;
use std::sync::Arc;

use crate::event::Event;

/// Called before the projector applies event `seq`; may sleep to make a long apply.
pub type BeforeApply = Arc<dyn Fn(u64, &Event) + Send + Sync>;
/// Called before each FAISS add into index `name`; `true` fails the add as FAISS would.
pub type FailAdd = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Called by a graph rebuild of index `name` after each backfill chunk, with the
/// position copied up to; may block to hold the rebuild there.
pub type BackfillChunk = Arc<dyn Fn(&str, usize) + Send + Sync>;
/// Called before each FAISS add of a graph rebuild of index `name`; `true` fails it.
pub type FailRebuild = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Called by a scheme migration of index `name` after it planned a batch (the ids it
/// will move) and before it appends it.
pub type BeforeMigrationBatch = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

/// Called by the embedding worker with an index and the texts of a slice it claimed,
/// before it embeds them (e.g. to replace a document while its embedding is in flight).
pub type BeforeEmbed = Arc<dyn Fn(&str, &[&str]) + Send + Sync>;

/// Wraps the object store of bucket `name` as it is opened, e.g. in a
/// [`crate::storage::FaultyStore`] that fails chosen operations.
pub type WrapStore =
    Arc<dyn Fn(&str, Arc<dyn object_store::ObjectStore>) -> Arc<dyn object_store::ObjectStore> + Send + Sync>;

/// Test hooks; all empty by default, and then free.
#[derive(Clone, Default)]
pub struct Hooks {
    /// See [`BeforeApply`].
    pub before_apply: Option<BeforeApply>,
    /// See [`FailAdd`].
    pub fail_add: Option<FailAdd>,
    /// See [`WrapStore`].
    pub wrap_store: Option<WrapStore>,
    /// See [`BackfillChunk`].
    pub backfill_chunk: Option<BackfillChunk>,
    /// See [`FailRebuild`].
    pub fail_rebuild: Option<FailRebuild>,
    /// See [`BeforeMigrationBatch`].
    pub before_migration_batch: Option<BeforeMigrationBatch>,
    /// See [`BeforeEmbed`].
    pub before_embed: Option<BeforeEmbed>,
    /// Keeps the log in this memory backend instead of `<data>/log.redb`: no file and no
    /// fsync, so the whole engine can be opened, driven and closed thousands of times a
    /// minute (the `engine_ops` fuzz target). An engine opened again on a clone finds the
    /// events, as it would in the file; nothing survives the process.
    pub log_in_memory: Option<crate::log::MemoryBackend>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_apply", &self.before_apply.is_some())
            .field("fail_add", &self.fail_add.is_some())
            .field("wrap_store", &self.wrap_store.is_some())
            .field("backfill_chunk", &self.backfill_chunk.is_some())
            .field("fail_rebuild", &self.fail_rebuild.is_some())
            .field("before_migration_batch", &self.before_migration_batch.is_some())
            .field("before_embed", &self.before_embed.is_some())
            .field("log_in_memory", &self.log_in_memory.is_some())
            .finish()
    }
}
