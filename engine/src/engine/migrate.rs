//! Partition schemes on the engine: setting the first one, resolving upserts, filtered
//! search, and resumable migrations to a new scheme.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::error::Error;
use crate::event::{
    EventBody, MigrationBatch, MigrationBegun, MigrationCleared, MigrationEnded, MigrationError,
    MigrationMove, SchemeSet,
};
use crate::limits::MIGRATION_BATCH_MAX;
use crate::partition::{Placement, Template};
use crate::progress::{OnProgress, Progress};
use crate::projection::partitions::IndexPartitions;
use crate::projection::vectors::Hit;
use crate::sync::{lock, read, write};
use crate::validate::{self, InvalidInput};

/// Records per migration batch unless the caller says otherwise.
pub const BATCH_SIZE_DEFAULT: usize = 64;

/// How [`Engine::migrate_scheme`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Plan only: list the moves, append nothing.
    pub dry_run: bool,
    /// Records per batch event (1 to [`MIGRATION_BATCH_MAX`]).
    pub batch_size: usize,
    /// Take a snapshot before the first batch (its sequence number is reported).
    pub take_snapshot_first: bool,
}

impl MigrateOptions {
    /// Refuse options no migration can run with.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `batch_size` outside 1 to [`MIGRATION_BATCH_MAX`].
    pub fn check(&self) -> Result<(), InvalidInput> {
        if !(1..=MIGRATION_BATCH_MAX).contains(&self.batch_size) {
            let reason = format!("must be 1 to {MIGRATION_BATCH_MAX}, got {}", self.batch_size);
            return Err(InvalidInput { field: "batch_size".into(), reason });
        }
        Ok(())
    }
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self { dry_run: false, batch_size: BATCH_SIZE_DEFAULT, take_snapshot_first: true }
    }
}

/// One move of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// Record id.
    pub id: String,
    /// Its path now (`None`: no partition).
    pub from: Option<String>,
    /// Its path under the new template.
    pub to: String,
}

/// What a migration did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The migration's id (empty for a dry run).
    pub migration_id: String,
    /// The template records moved to.
    pub template: String,
    /// Nothing was appended.
    pub dry_run: bool,
    /// This call continued an unfinished migration.
    pub resumed: bool,
    /// Records moved (over the whole migration, resumed runs included).
    pub moved: u64,
    /// Records whose path did not change.
    pub skipped: u64,
    /// Records that could not be resolved, left where they are.
    pub error_count: u64,
    /// The first 32 of them.
    pub errors: Vec<MigrationError>,
    /// The snapshot taken first (0: none).
    pub snapshot_seq: u64,
    /// The scheme version in force afterwards.
    pub version: u64,
    /// How long this call took.
    pub duration: Duration,
    /// For a dry run: every move, by id.
    pub plan: Vec<PlannedMove>,
}

fn conflict(index: &str, reason: String) -> Error {
    Error::SchemeConflict { index: index.to_owned(), reason }
}

/// Frame bytes after which a migration batch is cut short of its record count (an
/// event must stay well under the event size limit).
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The claim of one index's scheme changes, released on drop.
struct Slot<'a> {
    engine: &'a Engine,
    index: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.engine.migrating).remove(&self.index);
    }
}

impl Engine {
    /// Claim `index` for a scheme change, and wait until every event appended so far is
    /// applied, so the partition state read next is the log's (an earlier call may have
    /// given up waiting for its own event).
    fn claim(&self, index: &str) -> Result<Slot<'_>, Error> {
        if !lock(&self.migrating).insert(index.to_owned()) {
            return Err(conflict(index, "another scheme change of this index is running".into()));
        }
        let slot = Slot { engine: self, index: index.to_owned() };
        self.wait_applied(self.log.last_seq())?;
        Ok(slot)
    }

    /// The schema generation of `index` now.
    fn generation(&self, index: &str) -> Result<u64, Error> {
        let schema = read(self.writable_schema()?);
        schema.get(index).map(|e| e.generation).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })
    }
}

/// Whether `index` is still the incarnation `generation` (not dropped and re-created).
fn same_index(schema: &crate::schema::Schema, index: &str, generation: u64) -> Result<(), Error> {
    match schema.get(index) {
        Some(entry) if entry.generation == generation => Ok(()),
        Some(_) => Err(conflict(index, "was dropped and created again during the migration".into())),
        None => Err(Error::IndexNotFound { name: index.to_owned() }),
    }
}

impl Engine {
    /// Give `index` its first partition scheme (version 1). Records already in it keep
    /// their paths (migrate to move them); new ones resolve under it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad template; [`Error::IndexNotFound`];
    /// [`Error::SchemeConflict`] if it has a scheme or a migration already.
    pub fn set_scheme(&self, actor: &str, index: &str, template: &str) -> Result<u64, Error> {
        validate::actor(actor)?;
        let parsed = Arc::new(Template::parse(template)?);
        self.index(index)?;
        let _slot = self.claim(index)?;
        let seq = {
            let mut schema = write(self.writable_schema()?);
            match schema.get(index) {
                None => return Err(Error::IndexNotFound { name: index.to_owned() }),
                // A document's record is rewritten from the document at each embedding,
                // which a migration's moves would not follow.
                Some(entry) if entry.embedder.is_some() => {
                    return Err(conflict(index, "document indexes take no partition scheme".into()))
                }
                Some(_) => {}
            }
            let state = self.partitions.get(index);
            if let Some(scheme) = &state.scheme {
                let (t, v) = (&scheme.template, scheme.version);
                return Err(conflict(
                    index,
                    format!("has the scheme {t:?} (version {v}); migrate to change it"),
                ));
            }
            if state.running.is_some() || state.finished.is_some() {
                return Err(conflict(index, "has a migration; migrate or clear it".into()));
            }
            let body =
                EventBody::SchemeSet(SchemeSet { index: index.to_owned(), template: template.to_owned() });
            let seq = self.append(actor, body)?;
            schema.set_template(index, Some(parsed));
            seq
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// The partition state of `index` (scheme, running and finished migration) and its
    /// live records per partition path.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn partitions(&self, index: &str) -> Result<(IndexPartitions, Vec<(String, u64)>), Error> {
        let handle = self.index(index)?;
        let counts = handle.read().partition_counts();
        Ok((self.partitions.get(index), counts))
    }

    /// [`Engine::search_batch`] within the partitions `partition` selects: an exact
    /// path, or a prefix ending in `/`. Only records in it are returned, `k` of them
    /// when it holds `k`.
    ///
    /// # Errors
    /// As [`Engine::search_batch`]; [`Error::Invalid`] for an empty filter.
    pub fn search_in(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        partition: &str,
    ) -> Result<Vec<Vec<Hit>>, Error> {
        self.catalog.search(index, vectors, k, Some(partition))
    }

    /// Clear the record of the finished migration of `index` (logged), so another may
    /// start.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::SchemeConflict`] if none is finished.
    pub fn clear_migration(&self, actor: &str, index: &str) -> Result<u64, Error> {
        validate::actor(actor)?;
        self.index(index)?;
        let _slot = self.claim(index)?;
        let seq = {
            let schema = read(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            let Some(finished) = self.partitions.get(index).finished else {
                return Err(conflict(index, "has no finished migration to clear".into()));
            };
            let body = EventBody::MigrationCleared(MigrationCleared {
                index: index.to_owned(),
                migration_id: finished.migration_id,
            });
            self.append(actor, body)?
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// Move every live record of `index` to the partition `template` gives it: walked by
    /// id, in batch events that carry their moves and the cursor, so a migration that
    /// stops (a crash) resumes after its last batch when called again with the same
    /// template. Records upserted meanwhile resolve under `template` already. A finished
    /// migration makes `template` the scheme (version + 1).
    ///
    /// # Errors
    /// [`Error::Invalid`] (template, batch size); [`Error::IndexNotFound`];
    /// [`Error::SchemeConflict`]: another template's migration is unfinished, a finished
    /// one is not cleared, or `template` is the scheme already.
    pub fn migrate_scheme(
        &self,
        actor: &str,
        index: &str,
        template: &str,
        options: MigrateOptions,
        progress: OnProgress<'_>,
    ) -> Result<MigrationReport, Error> {
        validate::actor(actor)?;
        let parsed = Arc::new(Template::parse(template)?);
        options.check()?;
        let started = Instant::now();
        if options.dry_run {
            return self.plan_migration(index, &parsed, started);
        }
        self.index(index)?;
        let _slot = self.claim(index)?;
        let generation = self.generation(index)?;
        let state = self.partitions.get(index);
        let (migration_id, resumed) = match (&state.running, &state.finished) {
            (Some(running), _) if running.template == template => (running.migration_id.clone(), true),
            (Some(running), _) => {
                let (id, t) = (&running.migration_id, &running.template);
                return Err(conflict(
                    index,
                    format!("migration {id} to {t:?} is unfinished; resume it first"),
                ));
            }
            (None, Some(finished)) => {
                let id = &finished.migration_id;
                return Err(conflict(
                    index,
                    format!("migration {id} finished; clear it (DELETE .../migration) first"),
                ));
            }
            (None, None) if state.scheme.as_ref().is_some_and(|s| s.template == template) => {
                return Err(conflict(index, format!("{template:?} is the scheme already")));
            }
            (None, None) => {
                (self.begin_migration(actor, index, template, &parsed, options, generation)?, false)
            }
        };
        let cursor = self.partitions.get(index).running.map(|m| m.cursor).unwrap_or_default();
        // Copied under the lock, sorted outside it.
        let mut ids = self.index(index)?.read().ids_after(&cursor);
        ids.sort_unstable();
        let total = ids.len() as u64;
        let mut done = 0usize;
        while done < ids.len() {
            let end = (done + options.batch_size).min(ids.len());
            done += self.migrate_batch(actor, index, &migration_id, &parsed, &ids[done..end], generation)?;
            progress(Progress { stage: "moving", done: done as u64, total });
        }
        let seq = {
            let mut schema = write(self.writable_schema()?);
            same_index(&schema, index, generation)?;
            let body = EventBody::MigrationEnded(MigrationEnded { index: index.to_owned(), migration_id });
            let seq = self.append(actor, body)?;
            schema.set_template(index, Some(parsed));
            seq
        };
        self.wait_applied(seq)?;
        let after = self.partitions.get(index);
        let finished = after.finished.ok_or_else(|| conflict(index, "the migration did not end".into()))?;
        Ok(MigrationReport {
            migration_id: finished.migration_id,
            template: finished.template,
            dry_run: false,
            resumed,
            moved: finished.moved,
            skipped: finished.skipped,
            error_count: finished.error_count,
            errors: finished.errors,
            snapshot_seq: finished.snapshot_seq,
            version: after.scheme.map_or(0, |s| s.version),
            duration: started.elapsed(),
            plan: Vec::new(),
        })
    }

    /// Take the snapshot (if asked) and append `MigrationBegun`; from then on upserts
    /// resolve under the new template. Returns the migration's id.
    fn begin_migration(
        &self,
        actor: &str,
        index: &str,
        template: &str,
        parsed: &Arc<Template>,
        options: MigrateOptions,
        generation: u64,
    ) -> Result<String, Error> {
        let snapshot_seq =
            if options.take_snapshot_first { crate::sync::block_on(self.snapshot(actor))??.seq } else { 0 };
        let migration_id = format!("m{}", self.log.last_seq() + 1);
        let seq = {
            let mut schema = write(self.writable_schema()?);
            same_index(&schema, index, generation)?;
            let body = EventBody::MigrationBegun(MigrationBegun {
                index: index.to_owned(),
                migration_id: migration_id.clone(),
                template: template.to_owned(),
                snapshot_seq,
            });
            let seq = self.append(actor, body)?;
            schema.set_template(index, Some(Arc::clone(parsed)));
            seq
        };
        self.wait_applied(seq)?;
        match self.partitions.get(index).running {
            Some(m) if m.migration_id == migration_id => Ok(migration_id),
            _ => Err(conflict(index, format!("migration {migration_id} did not begin"))),
        }
    }

    /// Plan and append one batch over a prefix of `ids` (sorted), read as they are now:
    /// all of them, or fewer if their moves reach [`BATCH_BYTES_MAX`]. Returns how
    /// many it handled.
    fn migrate_batch(
        &self,
        actor: &str,
        index: &str,
        migration_id: &str,
        template: &Template,
        ids: &[Arc<str>],
        generation: u64,
    ) -> Result<usize, Error> {
        let now = self.index(index)?.read().lookup(ids);
        let (mut moves, mut errors, mut skipped, mut bytes, mut handled) =
            (Vec::new(), Vec::new(), 0u64, 0usize, 0usize);
        for (id, record) in ids.iter().zip(now) {
            if bytes >= BATCH_BYTES_MAX {
                break;
            }
            handled += 1;
            // Deleted since the walk began: nothing to move.
            let Some((metadata, partition)) = record else {
                skipped += 1;
                continue;
            };
            match template.place(metadata.as_deref(), partition.as_deref()) {
                Placement::Stays => skipped += 1,
                Placement::Moves { to } => {
                    let from = partition.as_deref().unwrap_or_default().to_owned();
                    bytes += id.len() + from.len() + to.len() + 32;
                    let metadata_crc32 = crate::projection::vectors::metadata_crc(metadata.as_deref());
                    moves.push(MigrationMove { id: id.to_string(), from, to, metadata_crc32 });
                }
                Placement::Unplaceable { reason } => {
                    bytes += id.len() + reason.len() + 16;
                    errors.push(MigrationError { id: id.to_string(), reason });
                }
            }
        }
        let Some(cursor) = ids.get(handled.saturating_sub(1)).map(|id| id.to_string()) else { return Ok(0) };
        if let Some(hook) = &self.config.hooks.before_migration_batch {
            let planned: Vec<String> = moves.iter().map(|m| m.id.clone()).collect();
            hook(index, &planned);
        }
        let seq = {
            let schema = read(self.writable_schema()?);
            same_index(&schema, index, generation)?;
            let body = EventBody::MigrationBatch(MigrationBatch {
                index: index.to_owned(),
                migration_id: migration_id.to_owned(),
                moves,
                skipped,
                errors,
                cursor,
            });
            self.append(actor, body)?
        };
        self.wait_applied(seq)?;
        Ok(handled)
    }

    fn plan_migration(
        &self,
        index: &str,
        template: &Template,
        started: Instant,
    ) -> Result<MigrationReport, Error> {
        let handle = self.index(index)?;
        let (mut plan, mut errors, mut skipped, mut error_count) = (Vec::new(), Vec::new(), 0, 0);
        // Shared copies under the lock; sorting and resolving outside it.
        let (mut ids, records) = {
            let index = handle.read();
            let ids = index.ids_after("");
            let records = index.lookup(&ids);
            (ids, records)
        };
        let mut rows: Vec<(Arc<str>, _)> = ids.drain(..).zip(records).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (id, record) in rows {
            let Some((metadata, partition)) = record else { continue };
            match template.place(metadata.as_deref(), partition.as_deref()) {
                Placement::Stays => skipped += 1,
                Placement::Moves { to } => {
                    plan.push(PlannedMove { id: id.to_string(), from: partition.map(|p| p.to_string()), to })
                }
                Placement::Unplaceable { reason } => {
                    error_count += 1;
                    if errors.len() < crate::projection::partitions::MIGRATION_ERRORS_KEPT {
                        errors.push(MigrationError { id: id.to_string(), reason });
                    }
                }
            }
        }
        let state = self.partitions.get(index);
        Ok(MigrationReport {
            migration_id: String::new(),
            template: template.as_str().to_owned(),
            dry_run: true,
            resumed: false,
            moved: plan.len() as u64,
            skipped,
            error_count,
            errors,
            snapshot_seq: 0,
            version: state.scheme.map_or(0, |s| s.version),
            duration: started.elapsed(),
            plan,
        })
    }
}
