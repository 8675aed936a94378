//! The payload-index projection: which metadata fields of which index are indexed for
//! filters, from `PayloadIndexCreated` and `PayloadIndexDropped`. The postings live in
//! each index (`vectors/index/payload.rs`), kept current by the vector projection as
//! records change; this projection creates and drops them, and snapshots them with
//! their postings (docs/FORMAT.md, "`payload` section").

use std::sync::Arc;

use super::vectors::Catalog;
use super::{ApplyError, Outcome, Projection, SnapshotError};
use crate::codec::{Dec, Enc};
use crate::event::{Event, EventBody};

/// The payload-index projection over the indexes of a [`Catalog`].
pub(crate) struct PayloadProjection {
    catalog: Arc<Catalog>,
}

impl PayloadProjection {
    pub(crate) fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl Projection for PayloadProjection {
    fn name(&self) -> &'static str {
        "payload"
    }

    fn apply(&self, _seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        match &event.body {
            EventBody::PayloadIndexCreated(created) => match self.catalog.get(&created.index) {
                Some(handle) => {
                    // Built under the read lock (searches go on), installed under a
                    // short write lock: only this thread changes the records meanwhile.
                    let defs = [(created.field.clone(), created.kind)];
                    let built = handle.read().build_payload_indexes(&defs);
                    handle.write().install_payload_indexes(built);
                }
                None => outcome.rejected = 1,
            },
            EventBody::PayloadIndexDropped(dropped) => {
                let dropped = self
                    .catalog
                    .get(&dropped.index)
                    .is_some_and(|handle| handle.write().drop_payload_index(&dropped.field));
                outcome.rejected = u64::from(!dropped);
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Indexes with payload indexes, by name: `count u64`, then per index its name and
    /// its payload indexes with their postings (docs/FORMAT.md, "`payload` section").
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let handles: Vec<_> = self
            .catalog
            .handles()
            .into_iter()
            .filter(|(_, handle)| !handle.read().payload_definitions().is_empty())
            .collect();
        let mut e = Enc::default();
        e.u64(handles.len() as u64);
        for (name, handle) in &handles {
            e.str(name);
            handle.read().write_payload(&mut e);
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    /// The definitions only, by index and field: the postings follow from them and the
    /// records (which the digest has), but their bitmaps hold internal labels, which
    /// two histories with the same records need not share.
    fn write_state(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let defined: Vec<(String, Vec<(String, crate::event::PayloadKind)>)> = self
            .catalog
            .handles()
            .into_iter()
            .map(|(name, handle)| (name, handle.read().payload_definitions()))
            .filter(|(_, defs)| !defs.is_empty())
            .collect();
        let mut e = Enc::default();
        e.u64(defined.len() as u64);
        for (name, defs) in &defined {
            e.str(name);
            e.u64(defs.len() as u64);
            for (field, kind) in defs {
                e.str(field);
                e.str(kind.name());
            }
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    /// Put the payload indexes of a snapshot back into the indexes the vector
    /// projection restored just before.
    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "payload", source };
        let mut d = Dec::new(bytes);
        let n = d.count(8 + 8).map_err(corrupt)?;
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let Some(handle) = self.catalog.get(&name) else {
                return Err(corrupt(d.error(format!("payload indexes of {name:?}, which is not an index"))));
            };
            handle.write().read_payload(&mut d).map_err(corrupt)?;
        }
        d.finish().map_err(corrupt)?;
        Ok(())
    }
}
