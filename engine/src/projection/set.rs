//! The engine's projections as one set, built in one place ([`Projections::new`]), and
//! the one apply loop that feeds them events: every event, in order, to every
//! projection. The projector, time-travel views and offline replay all apply through
//! [`apply`]; views and offline replay read their events through [`catch_up`].

use std::sync::Arc;

use crate::error::Error;
use crate::event::Event;
use crate::source::{EventSource, LogFrames};

use super::bucket_errors::ErrorJournal;
use super::documents::DocumentState;
use super::partitions::PartitionState;
use super::payload::PayloadProjection;
use super::promotions::PromotionState;
use super::text::TextState;
use super::trials::TrialState;
use super::vectors::{Catalog, VectorProjection};
use super::{Hooks, Outcome, Projection, ProjectionError};

/// Events read per batch while catching up (views, offline replay).
const CATCH_UP_BATCH_EVENTS: usize = 1024;
/// Frame bytes read per batch while catching up (at least one event is read).
const CATCH_UP_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Every projection of an engine (or of a view, or of an offline replay), each also by
/// its concrete type for the readers that serve from it.
pub(crate) struct Projections {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) vectors: Arc<VectorProjection>,
    pub(crate) journal: Arc<ErrorJournal>,
    pub(crate) promotions: Arc<PromotionState>,
    pub(crate) trials: Arc<TrialState>,
    pub(crate) partitions: Arc<PartitionState>,
    pub(crate) documents: Arc<DocumentState>,
    pub(crate) payload: Arc<PayloadProjection>,
    pub(crate) text: Arc<TextState>,
}

impl Projections {
    /// Fresh, empty projections (the state before event 1).
    pub(crate) fn new(hooks: &Hooks) -> Result<Self, Error> {
        let catalog = Arc::new(Catalog::default());
        let documents = Arc::new(DocumentState::default());
        let vectors =
            Arc::new(VectorProjection::new(Arc::clone(&catalog), Arc::clone(&documents), hooks.clone())?);
        let payload = Arc::new(PayloadProjection::new(Arc::clone(&catalog)));
        let text = Arc::new(TextState::new(Arc::clone(&documents)));
        Ok(Self {
            catalog,
            vectors,
            journal: Arc::new(ErrorJournal::default()),
            promotions: Arc::new(PromotionState::default()),
            trials: Arc::new(TrialState::default()),
            partitions: Arc::new(PartitionState::default()),
            documents,
            payload,
            text,
        })
    }

    /// Every projection, in the order events are applied to them.
    pub(crate) fn list(&self) -> Vec<Arc<dyn Projection>> {
        vec![
            // Before `vectors`: it decides which embedded vectors `vectors` applies.
            Arc::clone(&self.documents) as Arc<dyn Projection>,
            Arc::clone(&self.vectors) as Arc<dyn Projection>,
            // After `vectors`: its snapshot restores payload indexes over the indexes
            // `vectors` restored.
            Arc::clone(&self.payload) as Arc<dyn Projection>,
            // After `documents`: it reads their texts on a metadata change.
            Arc::clone(&self.text) as Arc<dyn Projection>,
            Arc::clone(&self.journal) as Arc<dyn Projection>,
            Arc::clone(&self.promotions) as Arc<dyn Projection>,
            Arc::clone(&self.trials) as Arc<dyn Projection>,
            Arc::clone(&self.partitions) as Arc<dyn Projection>,
        ]
    }

    /// Stop every projection's background work (a set given up, or one no writer will
    /// touch again).
    pub(crate) fn shutdown(&self) {
        for p in self.list() {
            p.shutdown();
        }
    }
}

/// Apply event `seq` to every projection of `list`, in order; `applied(i, outcome)` is
/// told after projection `i` applied it.
///
/// # Errors
/// [`ProjectionError::Apply`] naming the first projection that failed (its source is
/// [`super::ApplyError::Cancelled`] when the engine is closing).
pub(crate) fn apply(
    list: &[Arc<dyn Projection>],
    seq: u64,
    event: &Event,
    mut applied: impl FnMut(usize, Outcome),
) -> Result<(), ProjectionError> {
    for (i, projection) in list.iter().enumerate() {
        let outcome = projection.apply(seq, event).map_err(|source| ProjectionError::Apply {
            seq,
            projection: projection.name(),
            source,
        })?;
        applied(i, outcome);
    }
    Ok(())
}

/// Apply every event after `*applied` up to `upto` (or the log's end, if sooner) to
/// `list`, reading them from `source`; `*applied` follows each event applied, so after
/// a failure it still says exactly what the projections hold. `progress` is told the
/// last applied sequence number after each batch.
///
/// # Errors
/// An event is neither in the log nor in a readable segment (a gap is an error, never
/// skipped); a projection failed to apply one.
pub(crate) fn catch_up<L: LogFrames>(
    source: &EventSource<L>,
    list: &[Arc<dyn Projection>],
    applied: &mut u64,
    upto: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    let upto = upto.min(source.log().last_seq().map_err(Error::Log)?);
    while *applied < upto {
        let next = *applied + 1;
        let events = source.events(next, upto, CATCH_UP_BATCH_EVENTS, CATCH_UP_BATCH_BYTES)?;
        if events.is_empty() {
            return Err(Error::Missing { seq: next });
        }
        for (seq, event) in events {
            // The source returns dense batches; this is the assertion that they are.
            if seq != *applied + 1 {
                return Err(crate::log::LogError::Gap { expected: *applied + 1, found: seq }.into());
            }
            apply(list, seq, &event, |_, _| {})?;
            *applied = seq;
        }
        progress(*applied);
    }
    Ok(())
}
