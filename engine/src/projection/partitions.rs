//! The partition map's bookkeeping: per index, the scheme in force (template and
//! version) and the migration to a new one, running or finished, with its cursor and
//! counts. Records' own paths live with the records in the vector projection, which
//! applies the same migration batches' moves.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::codec::{Dec, Enc};
use crate::event::{Event, EventBody, MigrationError};
use crate::projection::{ApplyError, Outcome, Projection, SnapshotError};

/// Unresolvable records a migration keeps by id and reason (all are counted).
pub const MIGRATION_ERRORS_KEPT: usize = 32;

/// The scheme in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    /// Its template.
    pub template: String,
    /// 1 for the first, one more per finished migration.
    pub version: u64,
}

/// A migration, running or finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its id.
    pub migration_id: String,
    /// The template records move to.
    pub template: String,
    /// The snapshot taken before it (0: none).
    pub snapshot_seq: u64,
    /// The sequence number of its `MigrationBegun` event.
    pub begun_seq: u64,
    /// The last id handled (empty: none yet).
    pub cursor: String,
    /// Records moved so far.
    pub moved: u64,
    /// Records whose path did not change.
    pub skipped: u64,
    /// Records that could not be resolved (left where they are).
    pub error_count: u64,
    /// The first [`MIGRATION_ERRORS_KEPT`] of them.
    pub errors: Vec<MigrationError>,
    /// Batches recorded.
    pub batches: u64,
    /// The sequence number of its `MigrationEnded` event (0 while it runs).
    pub ended_seq: u64,
}

/// The partition state of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPartitions {
    /// The scheme in force, if any.
    pub scheme: Option<Scheme>,
    /// The migration running now.
    pub running: Option<Migration>,
    /// The last finished migration, until cleared.
    pub finished: Option<Migration>,
}

/// The partitions projection.
#[derive(Default)]
pub struct PartitionState {
    indexes: RwLock<BTreeMap<String, IndexPartitions>>,
}

impl PartitionState {
    /// The state of `index` (empty for an unknown one).
    pub fn get(&self, index: &str) -> IndexPartitions {
        self.indexes.read().get(index).cloned().unwrap_or_default()
    }

    /// The template a new upsert into `index` resolves under: the running migration's
    /// (the one in force once it ends), else the scheme's; `None` without a scheme.
    pub fn template_for_writes(&self, index: &str) -> Option<String> {
        let indexes = self.indexes.read();
        let state = indexes.get(index)?;
        state
            .running
            .as_ref()
            .map(|m| m.template.clone())
            .or_else(|| state.scheme.as_ref().map(|s| s.template.clone()))
    }
}

impl Projection for PartitionState {
    fn name(&self) -> &'static str {
        "partitions"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        let mut indexes = self.indexes.write();
        let mut reject = || outcome.rejected = 1;
        match &event.body {
            EventBody::IndexCreated(created)
            | EventBody::IndexCreatedWithEmbedder(crate::event::IndexCreatedWithEmbedder {
                index: created,
                ..
            }) => {
                indexes.entry(created.name.clone()).or_default();
            }
            EventBody::IndexDropped(dropped) => {
                indexes.remove(&dropped.name);
            }
            EventBody::SchemeSet(set) => match indexes.get_mut(&set.index) {
                Some(state) if state.scheme.is_none() && state.running.is_none() => {
                    state.scheme = Some(Scheme { template: set.template.clone(), version: 1 });
                }
                _ => reject(),
            },
            EventBody::MigrationBegun(begun) => match indexes.get_mut(&begun.index) {
                Some(state) if state.running.is_none() && state.finished.is_none() => {
                    state.running = Some(Migration {
                        migration_id: begun.migration_id.clone(),
                        template: begun.template.clone(),
                        snapshot_seq: begun.snapshot_seq,
                        begun_seq: seq,
                        cursor: String::new(),
                        moved: 0,
                        skipped: 0,
                        error_count: 0,
                        errors: Vec::new(),
                        batches: 0,
                        ended_seq: 0,
                    });
                }
                _ => reject(),
            },
            EventBody::MigrationBatch(batch) => {
                let running = indexes.get_mut(&batch.index).and_then(|s| s.running.as_mut());
                match running {
                    Some(m) if m.migration_id == batch.migration_id => {
                        m.cursor.clone_from(&batch.cursor);
                        m.moved += batch.moves.len() as u64;
                        m.skipped += batch.skipped;
                        m.error_count += batch.errors.len() as u64;
                        let room = MIGRATION_ERRORS_KEPT.saturating_sub(m.errors.len());
                        m.errors.extend(batch.errors.iter().take(room).cloned());
                        m.batches += 1;
                    }
                    _ => reject(),
                }
            }
            EventBody::MigrationEnded(ended) => match indexes.get_mut(&ended.index) {
                Some(state)
                    if state.running.as_ref().is_some_and(|m| m.migration_id == ended.migration_id) =>
                {
                    if let Some(mut m) = state.running.take() {
                        let version = state.scheme.as_ref().map_or(1, |s| s.version + 1);
                        state.scheme = Some(Scheme { template: m.template.clone(), version });
                        m.ended_seq = seq;
                        state.finished = Some(m);
                    }
                }
                _ => reject(),
            },
            EventBody::MigrationCleared(cleared) => match indexes.get_mut(&cleared.index) {
                Some(state)
                    if state.finished.as_ref().is_some_and(|m| m.migration_id == cleared.migration_id) =>
                {
                    state.finished = None;
                }
                _ => reject(),
            },
            _ => {}
        }
        Ok(outcome)
    }

    /// `u64` index count, then per index (by name): `str` name, `u8` 0/1 scheme then
    /// `str` template and `u64` version, `u8` 0/1 running migration then it, `u8` 0/1
    /// finished migration then it. A migration: `str` id, `str` template, `u64`
    /// snapshot_seq, begun_seq, `str` cursor, `u64` moved, skipped, error_count, `u64`
    /// kept error count then each `str` id, `str` reason, `u64` batches, ended_seq.
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let mut e = Enc::default();
        let indexes = self.indexes.read();
        e.u64(indexes.len() as u64);
        for (name, state) in indexes.iter() {
            e.str(name);
            match &state.scheme {
                Some(s) => {
                    e.u8(1);
                    e.str(&s.template);
                    e.u64(s.version);
                }
                None => e.u8(0),
            }
            for m in [&state.running, &state.finished] {
                match m {
                    Some(m) => {
                        e.u8(1);
                        write_migration(&mut e, m);
                    }
                    None => e.u8(0),
                }
            }
        }
        drop(indexes);
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "partitions", source };
        let mut d = Dec::new(bytes);
        let n = d.count(8 + 3).map_err(corrupt)?;
        let mut indexes = BTreeMap::new();
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let scheme = match d.u8().map_err(corrupt)? {
                0 => None,
                1 => Some(Scheme {
                    template: d.str().map_err(corrupt)?.to_owned(),
                    version: d.u64().map_err(corrupt)?,
                }),
                tag => return Err(corrupt(d.error(format!("scheme tag {tag}")))),
            };
            let mut migrations = [None, None];
            for slot in &mut migrations {
                *slot = match d.u8().map_err(corrupt)? {
                    0 => None,
                    1 => Some(read_migration(&mut d).map_err(corrupt)?),
                    tag => return Err(corrupt(d.error(format!("migration tag {tag}")))),
                };
            }
            let [running, finished] = migrations;
            if indexes.insert(name.clone(), IndexPartitions { scheme, running, finished }).is_some() {
                return Err(corrupt(d.error(format!("index {name:?} appears twice"))));
            }
        }
        d.finish().map_err(corrupt)?;
        *self.indexes.write() = indexes;
        Ok(())
    }
}

fn write_migration(e: &mut Enc, m: &Migration) {
    e.str(&m.migration_id);
    e.str(&m.template);
    e.u64(m.snapshot_seq);
    e.u64(m.begun_seq);
    e.str(&m.cursor);
    e.u64(m.moved);
    e.u64(m.skipped);
    e.u64(m.error_count);
    e.u64(m.errors.len() as u64);
    for err in &m.errors {
        e.str(&err.id);
        e.str(&err.reason);
    }
    e.u64(m.batches);
    e.u64(m.ended_seq);
}

fn read_migration(d: &mut Dec<'_>) -> Result<Migration, crate::codec::DecodeError> {
    let migration_id = d.str()?.to_owned();
    let template = d.str()?.to_owned();
    let snapshot_seq = d.u64()?;
    let begun_seq = d.u64()?;
    let cursor = d.str()?.to_owned();
    let moved = d.u64()?;
    let skipped = d.u64()?;
    let error_count = d.u64()?;
    let n = d.count(16)?;
    if n > MIGRATION_ERRORS_KEPT {
        return Err(d.error(format!("{n} kept migration errors")));
    }
    let mut errors = Vec::with_capacity(n);
    for _ in 0..n {
        errors.push(MigrationError { id: d.str()?.to_owned(), reason: d.str()?.to_owned() });
    }
    Ok(Migration {
        migration_id,
        template,
        snapshot_seq,
        begun_seq,
        cursor,
        moved,
        skipped,
        error_count,
        errors,
        batches: d.u64()?,
        ended_seq: d.u64()?,
    })
}
