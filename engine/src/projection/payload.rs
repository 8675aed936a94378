//! The payload-index projection: which metadata fields of which index are indexed for
//! filters, from `PayloadIndexCreated` and `PayloadIndexDropped`. The postings live in
//! each index (`vectors/index/payload.rs`), kept current by the vector projection as
//! records change; this projection creates and drops them, and snapshots their
//! definitions (the postings are rebuilt from the restored metadata: docs/FORMAT.md,
//! "`payload` section").

use std::sync::Arc;

use super::vectors::Catalog;
use super::{ApplyError, Outcome, Projection, SnapshotError};
use crate::codec::{Dec, Enc};
use crate::event::{Event, EventBody, PayloadKind};

/// The payload-index projection over the indexes of a [`Catalog`].
pub(crate) struct PayloadProjection {
    catalog: Arc<Catalog>,
}

impl PayloadProjection {
    pub(crate) fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

fn kind_tag(kind: PayloadKind) -> u8 {
    match kind {
        PayloadKind::Keyword => 0,
        PayloadKind::Integer => 1,
        PayloadKind::Float => 2,
        PayloadKind::Bool => 3,
        PayloadKind::Datetime => 4,
    }
}

fn kind_of(tag: u8) -> Option<PayloadKind> {
    Some(match tag {
        0 => PayloadKind::Keyword,
        1 => PayloadKind::Integer,
        2 => PayloadKind::Float,
        3 => PayloadKind::Bool,
        4 => PayloadKind::Datetime,
        _ => return None,
    })
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
                    handle.write().create_payload_indexes(&[(created.field.clone(), created.kind)])
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
    /// `count u64` of (field, kind tag u8).
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let defined: Vec<(String, Vec<(String, PayloadKind)>)> = self
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
                e.u8(kind_tag(*kind));
            }
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    /// Recreate the payload indexes of a snapshot over the indexes the vector
    /// projection restored just before (each built from its records' metadata).
    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "payload", source };
        let mut d = Dec::new(bytes);
        let n = d.count(8 + 8).map_err(corrupt)?;
        let mut work = Vec::with_capacity(n);
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let fields = d.count(4 + 1).map_err(corrupt)?;
            let Some(handle) = self.catalog.get(&name) else {
                return Err(corrupt(d.error(format!("payload indexes of {name:?}, which is not an index"))));
            };
            let mut defs = Vec::with_capacity(fields);
            for _ in 0..fields {
                let field = d.str().map_err(corrupt)?.to_owned();
                let tag = d.u8().map_err(corrupt)?;
                let kind = kind_of(tag).ok_or_else(|| corrupt(d.error(format!("payload kind tag {tag}"))))?;
                defs.push((field, kind));
            }
            work.push((handle, defs));
        }
        d.finish().map_err(corrupt)?;
        for (handle, defs) in work {
            handle.write().create_payload_indexes(&defs);
        }
        Ok(())
    }
}
