//! Snapshots: the state of every projection at one sequence number, written to the
//! primary bucket as one framed object ([`format`]), so that an open restores it and
//! replays only the events after it.

mod error;
pub mod format;
mod load;
mod taker;
mod upgrade;
mod view;

pub use error::Unusable;
pub use load::{check, registered_snapshots};
pub(crate) use load::{load, registered};
pub(crate) use taker::Taker;

pub use view::View;
pub(crate) use view::Views;

use std::time::Duration;

use crate::event::SnapshotTaken;
use crate::storage::PRIMARY;

/// Where snapshots live in their bucket.
pub const PREFIX: &str = "snapshots";
/// The actor of snapshots the engine takes on its own (at close).
pub const ENGINE_ACTOR: &str = "annal-engine";

/// The object key of the snapshot at `seq`: zero-padded, so keys sort by sequence.
pub fn key(seq: u64) -> String {
    key_under(&format!("{PREFIX}/"), seq)
}

/// The object key of the snapshot at `seq` under `prefix` (a cluster node's own,
/// `snapshots/<node>/`).
pub(crate) fn key_under(prefix: &str, seq: u64) -> String {
    format!("{prefix}{seq:020}.snap")
}

/// A snapshot taken by [`crate::Engine::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last event it covers.
    pub seq: u64,
    /// The bucket holding it.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
    /// The sequence number of its `SnapshotTaken` event.
    pub event_seq: u64,
    /// How long applying was paused while the projections wrote their state.
    pub paused: Duration,
    /// How long the whole snapshot took (capture, upload, registration).
    pub elapsed: Duration,
}

/// When snapshots are taken, how many are kept, and whether an open uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Open from the newest usable snapshot (`false`: always replay the whole log).
    pub restore: bool,
    /// Take one at a clean close when events were applied since the last.
    pub on_close: bool,
    /// Take one once this many events were applied since the last (`None`: never on
    /// its own).
    pub every_events: Option<u64>,
    /// Snapshots kept in the bucket; older ones are deleted after a new one is
    /// registered. An open tries at most this many, newest first.
    pub keep: usize,
    /// Log retention: after each snapshot, move the events the oldest kept snapshot
    /// covers out of the log into archive segments in the primary bucket (see
    /// [`crate::archive`]). Off by default.
    pub archive: bool,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self { restore: true, on_close: true, every_events: Some(100_000), keep: 3, archive: false }
    }
}

/// How a cluster shares this node's snapshots (`crate::cluster` implements it): who
/// takes them on the policy's schedule, and what follows a registration.
pub trait Sharing: Send + Sync {
    /// Whether this node takes scheduled snapshots now (one node of a cluster at a
    /// time: the holder of its snapshot lease).
    fn schedules(&self) -> bool;
    /// A snapshot of this node was registered.
    fn registered(&self, taken: &SnapshotTaken);
    /// Whether the object under `key` must not be pruned (the cluster's pointer names
    /// it: a new node begins from it).
    fn protects(&self, key: &str) -> bool;
}

/// The bucket snapshots are written to.
pub(crate) const BUCKET: &str = PRIMARY;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::event::{Event, EventBody, IndexCreated, Metric, SnapshotTaken, VectorItem, VectorsUpserted};
    use crate::projection::Projections;
    use crate::projection::{Hooks, Projection};

    /// A snapshot written before the `promotions`, `trials` and `partitions` sections
    /// existed: only `vectors` and `journal`.
    fn old_snapshot() -> (Vec<u8>, SnapshotTaken) {
        let hooks = Hooks::default();
        let old = Projections::new(&hooks).unwrap();
        let created = EventBody::IndexCreated(IndexCreated {
            name: "docs".into(),
            dimension: 2,
            metric: Metric::L2,
            config: crate::event::HnswConfig::default(),
        });
        let item = VectorItem { id: "a".into(), vector: vec![1.0, 2.0], metadata: None, partition: None };
        let upserted =
            EventBody::VectorsUpserted(VectorsUpserted { index: "docs".into(), items: vec![item] });
        for (seq, body) in [created, upserted].into_iter().enumerate() {
            old.vectors.apply(seq as u64 + 1, &Event::new("t", body)).unwrap();
        }
        let mut sections = Vec::new();
        for p in
            [Arc::clone(&old.vectors) as Arc<dyn Projection>, Arc::clone(&old.journal) as Arc<dyn Projection>]
        {
            let mut bytes = Vec::new();
            p.write_snapshot(2, &mut bytes).unwrap();
            sections.push((p.name().to_owned(), bytes));
        }
        for p in old.list() {
            p.shutdown();
        }
        let (chunks, bytes) = format::encode(2, sections);
        let object: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let taken = SnapshotTaken {
            seq: 2,
            bucket: BUCKET.into(),
            key: key(2),
            bytes,
            crc32: crc32fast::hash(&object),
        };
        (object, taken)
    }

    #[test]
    fn a_snapshot_without_the_newer_sections_restores_them_empty() {
        let (object, taken) = old_snapshot();
        let fresh = Projections::new(&Hooks::default()).unwrap();
        load(&object, &taken, &fresh).unwrap();
        assert_eq!(fresh.catalog.names(), ["docs"]);
        assert!(fresh.promotions.list_all().is_empty());
        assert_eq!(fresh.trials.get("docs"), Default::default());
        assert_eq!(fresh.partitions.get("docs"), Default::default());
        assert!(fresh.documents.is_empty());
        for p in fresh.list() {
            p.shutdown();
        }
    }

    #[test]
    fn a_snapshot_without_the_vectors_section_is_refused_naming_it() {
        let (object, mut taken) = old_snapshot();
        let decoded = format::decode(&object).unwrap();
        let journal = decoded.sections.iter().find(|(n, _)| n == "journal").unwrap().1.clone();
        let (chunks, bytes) = format::encode(2, vec![("journal".into(), object[journal].to_vec())]);
        let only_journal: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        taken.bytes = bytes;
        taken.crc32 = crc32fast::hash(&only_journal);
        let fresh = Projections::new(&Hooks::default()).unwrap();
        let refused = load(&only_journal, &taken, &fresh);
        assert!(matches!(refused, Err(Unusable::Missing { projection: "vectors", .. })), "{refused:?}");
        for p in fresh.list() {
            p.shutdown();
        }
    }
}
