//! The documents projection: the text of every document of the indexes that have an
//! embedder, which version of each has a vector and from which embedder generation, and
//! from that the embedding work queue. Everything here but the runtime counters is
//! derived from the log (and snapshots), so a restart resumes the queue exactly.
//!
//! The queue has two parts per index, each in write order: *incremental* (documents
//! whose current version has no vector yet) and *backfill* (documents whose vector
//! comes from an older embedder generation, after an [`EmbedderChanged`]). The embedding
//! worker claims slices (incremental first), embeds them outside every lock and appends
//! a [`DocumentsEmbedded`] event; applying it here accepts each vector only if it is of
//! the document's current version and the index's current generation, and hands the
//! accepted ones to the vector projection (applied right after this one) as upserts.
//! A claim is held until its event is applied or the work is given back, so nothing is
//! embedded twice by the worker and nothing is applied twice.
//!
//! [`EmbedderChanged`]: crate::event::EmbedderChanged

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::{ApplyError, Outcome, Projection, SnapshotError};
use crate::codec::{Dec, Enc};
use crate::event::{DocumentsEmbedded, EmbedderRef, Event, EventBody, IndexCreatedWithEmbedder, VectorItem};
use crate::sync::lock;

/// Documents per incremental claim.
pub const INCREMENTAL_SLICE: usize = 64;
/// Documents per backfill claim.
pub const BACKFILL_SLICE: usize = 32;

/// One document's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Doc {
    /// Sequence number of the event that wrote this version.
    seq: u64,
    text: Arc<str>,
    metadata: Option<String>,
    partition: Option<String>,
    /// The embedder generation this version's vector comes from; `None` while it has
    /// none (the index may still serve the previous version's vector).
    embedded: Option<u64>,
}

/// The documents of one index.
#[derive(Debug, Clone, Default)]
struct DocIndex {
    embedder: Option<EmbedderRef>,
    /// Sequence number of the event that set the embedder.
    generation: u64,
    docs: HashMap<String, Doc>,
    /// `(version seq, id)` of documents whose current version has no vector.
    incremental: BTreeSet<(u64, String)>,
    /// `(version seq, id)` of documents whose vector is of an older generation.
    backfill: BTreeSet<(u64, String)>,
}

impl DocIndex {
    fn unqueue(&mut self, id: &str) {
        if let Some(doc) = self.docs.get(id) {
            let key = (doc.seq, id.to_owned());
            self.incremental.remove(&key);
            self.backfill.remove(&key);
        }
    }
}

/// The drain report of one index (counters since the engine opened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Documents embedded from the incremental queue (new or replaced documents).
    pub incremental_processed: u64,
    /// Documents embedded again from the backfill queue (after an embedder change).
    pub backfill_processed: u64,
    /// Documents whose embedding failed (given back to the queue and retried).
    pub failed: u64,
    /// Embedded documents thrown away because they were replaced or deleted meanwhile.
    pub discarded_stale: u64,
    /// Times the worker found the index's embedder unavailable (not configured, or its
    /// model could not be loaded) and waited.
    pub unavailable_ticks: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// What an index's embedding queue holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Documents waiting for a first vector of their current version.
    pub incremental: u64,
    /// Documents waiting to be embedded again with the current embedder.
    pub backfill: u64,
    /// Of those, claimed by the worker right now.
    pub in_flight: u64,
    /// Of those, set aside after failing on their own (retried later, or when replaced).
    pub parked: u64,
}

/// An index's embedder, queue and drain report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingStatus {
    /// The embedder in effect.
    pub embedder: EmbedderRef,
    /// The event that set it.
    pub generation: u64,
    /// Documents held.
    pub documents: u64,
    /// The queue.
    pub queue: QueueDepth,
    /// The counters.
    pub report: DrainReport,
}

/// A slice of work the worker took: embed these texts with `model`.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) index: String,
    pub(crate) model: String,
    /// The index's dimension: a vector of another length is the embedder's fault.
    pub(crate) dimension: usize,
    pub(crate) generation: u64,
    pub(crate) backfill: bool,
    /// `(id, version seq, text)`.
    pub(crate) docs: Vec<(String, u64, Arc<str>)>,
}

/// Runtime state of the worker's side: claims, counters, backoff. Not in snapshots.
#[derive(Default)]
struct Work {
    claimed: HashMap<String, HashSet<String>>,
    reports: HashMap<String, DrainReport>,
    retry_at: HashMap<String, Instant>,
    /// Consecutive failed claims per index (for its backoff).
    failures: HashMap<String, u32>,
    /// Documents that failed alone, by index: id -> (version seq, retry after). A new
    /// version of the document is not parked.
    parked: HashMap<String, HashMap<String, (u64, Instant)>>,
    /// Bumped on every change that may create work; the worker waits on it.
    changes: u64,
}

/// The documents projection (see the module documentation).
#[derive(Default)]
pub struct DocumentState {
    indexes: RwLock<BTreeMap<String, DocIndex>>,
    /// The vectors the last applied [`DocumentsEmbedded`] contributed, for the vector
    /// projection to take when it applies the same event.
    accepted: Mutex<Option<(u64, String, Vec<VectorItem>)>>,
    work: Mutex<Work>,
    work_cv: Condvar,
}

/// A document as `(id, text, metadata, partition)`.
pub(crate) type DocumentRow = (String, Arc<str>, Option<String>, Option<String>);

impl DocumentState {
    /// The embedder of `index`, if it is a document index.
    pub fn embedder(&self, index: &str) -> Option<EmbedderRef> {
        self.indexes.read().get(index).and_then(|i| i.embedder.clone())
    }

    /// The current text and metadata of a document.
    pub fn text(&self, index: &str, id: &str) -> Option<Arc<str>> {
        self.indexes.read().get(index)?.docs.get(id).map(|d| Arc::clone(&d.text))
    }

    /// Every document of `index` as a [`DocumentRow`], in id order (a
    /// text index created over an index that already has documents starts from them).
    pub(crate) fn documents_of(&self, index: &str) -> Vec<DocumentRow> {
        let indexes = self.indexes.read();
        let Some(i) = indexes.get(index) else { return Vec::new() };
        let mut docs: Vec<_> = i
            .docs
            .iter()
            .map(|(id, d)| (id.clone(), Arc::clone(&d.text), d.metadata.clone(), d.partition.clone()))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        docs
    }

    /// Embedder, queue and drain report of `index`.
    pub fn status(&self, index: &str) -> Option<EmbeddingStatus> {
        let indexes = self.indexes.read();
        let i = indexes.get(index)?;
        let embedder = i.embedder.clone()?;
        let work = lock(&self.work);
        let in_flight = work.claimed.get(index).map_or(0, HashSet::len) as u64;
        let parked = work.parked.get(index).map_or(0, |p| {
            p.iter()
                .filter(|(id, (seq, _))| {
                    i.docs.get(*id).is_some_and(|d| d.seq == *seq && d.embedded.is_none())
                })
                .count()
        }) as u64;
        Some(EmbeddingStatus {
            embedder,
            generation: i.generation,
            documents: i.docs.len() as u64,
            queue: QueueDepth {
                incremental: i.incremental.len() as u64,
                backfill: i.backfill.len() as u64,
                in_flight,
                parked,
            },
            report: work.reports.get(index).cloned().unwrap_or_default(),
        })
    }

    /// The vectors the [`DocumentsEmbedded`] event `seq` contributed to `index` (taken:
    /// called once, by the vector projection).
    pub(crate) fn take_accepted(&self, seq: u64, index: &str) -> Vec<VectorItem> {
        match lock(&self.accepted).take() {
            Some((s, i, items)) if s == seq && i == index => items,
            _ => Vec::new(),
        }
    }

    /// Whether no index holds a document.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.indexes.read().values().all(|i| i.docs.is_empty())
    }

    // -- the worker's side -----------------------------------------------------------

    /// Claim the next slice: up to [`INCREMENTAL_SLICE`] unclaimed incremental documents
    /// of one index, else up to [`BACKFILL_SLICE`] backfill ones. Indexes waiting out a
    /// backoff are passed over.
    pub(crate) fn claim(&self) -> Option<Claim> {
        let indexes = self.indexes.read();
        let mut work = lock(&self.work);
        let now = Instant::now();
        for backfill in [false, true] {
            for (name, i) in indexes.iter() {
                let Some(embedder) = &i.embedder else { continue };
                if work.retry_at.get(name).is_some_and(|t| *t > now) {
                    continue;
                }
                let (queue, limit) = if backfill {
                    (&i.backfill, BACKFILL_SLICE)
                } else {
                    (&i.incremental, INCREMENTAL_SLICE)
                };
                let parked = work.parked.get(name).cloned().unwrap_or_default();
                let claimed = work.claimed.entry(name.clone()).or_default();
                let mut docs = Vec::new();
                for (seq, id) in queue {
                    if docs.len() == limit {
                        break;
                    }
                    if claimed.contains(id)
                        || parked.get(id).is_some_and(|(s, until)| s == seq && *until > now)
                    {
                        continue;
                    }
                    if let Some(doc) = i.docs.get(id) {
                        docs.push((id.clone(), *seq, Arc::clone(&doc.text)));
                    }
                }
                if docs.is_empty() {
                    continue;
                }
                for (id, _, _) in &docs {
                    claimed.insert(id.clone());
                }
                return Some(Claim {
                    index: name.clone(),
                    model: embedder.model.clone(),
                    dimension: embedder.dimension as usize,
                    generation: i.generation,
                    backfill,
                    docs,
                });
            }
        }
        None
    }

    /// Drop from `claim` what went stale since it was claimed (the document was
    /// replaced, deleted, or the embedder changed): those are released and counted.
    /// Returns the still-current part's positions in the claim.
    pub(crate) fn current_part(&self, claim: &Claim) -> Vec<usize> {
        let indexes = self.indexes.read();
        let index = indexes.get(&claim.index);
        let mut keep = Vec::with_capacity(claim.docs.len());
        let mut stale = Vec::new();
        for (position, (id, seq, _)) in claim.docs.iter().enumerate() {
            let current = index.is_some_and(|i| {
                i.generation == claim.generation && i.docs.get(id).is_some_and(|d| d.seq == *seq)
            });
            if current {
                keep.push(position);
            } else {
                stale.push(id.as_str());
            }
        }
        drop(indexes);
        if !stale.is_empty() {
            let mut work = lock(&self.work);
            if let Some(claimed) = work.claimed.get_mut(&claim.index) {
                for id in &stale {
                    claimed.remove(*id);
                }
            }
            work.reports.entry(claim.index.clone()).or_default().discarded_stale += stale.len() as u64;
            work.changes += 1;
            drop(work);
            self.work_cv.notify_all();
        }
        keep
    }

    /// Count `n` documents of `claim` as embedded and sent (their claims stay until the
    /// event is applied).
    pub(crate) fn sent(&self, claim: &Claim, n: usize) {
        let mut work = lock(&self.work);
        let report = work.reports.entry(claim.index.clone()).or_default();
        if claim.backfill {
            report.backfill_processed += n as u64;
        } else {
            report.incremental_processed += n as u64;
        }
        work.retry_at.remove(&claim.index);
        work.failures.remove(&claim.index);
    }

    /// Give `claim` back to the queue after a failure; the index is retried after a
    /// backoff that doubles with its consecutive failures (from `min` up to `max`), which
    /// is returned. `unavailable`: the embedder was not there (counted as a tick, not as
    /// failed documents).
    pub(crate) fn give_back(
        &self,
        claim: &Claim,
        error: &str,
        unavailable: bool,
        (min, max): (Duration, Duration),
    ) -> Duration {
        let mut work = lock(&self.work);
        let failures = work.failures.entry(claim.index.clone()).or_default();
        *failures = failures.saturating_add(1);
        let backoff = min.saturating_mul(1u32 << (*failures).min(16).saturating_sub(1)).min(max);
        if let Some(claimed) = work.claimed.get_mut(&claim.index) {
            for (id, _, _) in &claim.docs {
                claimed.remove(id);
            }
        }
        let report = work.reports.entry(claim.index.clone()).or_default();
        if unavailable {
            report.unavailable_ticks += 1;
        } else {
            report.failed += claim.docs.len() as u64;
        }
        report.last_error = Some(error.to_owned());
        work.retry_at.insert(claim.index.clone(), Instant::now() + backoff);
        backoff
    }

    /// Set one document of `claim` aside after it failed on its own: the rest of the
    /// queue goes on, and it is tried again after `for_` (or at once when replaced).
    pub(crate) fn park(&self, claim: &Claim, position: usize, error: &str, for_: Duration) {
        let (id, seq, _) = &claim.docs[position];
        let mut work = lock(&self.work);
        if let Some(claimed) = work.claimed.get_mut(&claim.index) {
            claimed.remove(id);
        }
        work.parked.entry(claim.index.clone()).or_default().insert(id.clone(), (*seq, Instant::now() + for_));
        let report = work.reports.entry(claim.index.clone()).or_default();
        report.failed += 1;
        report.last_error = Some(format!("document {id:?}: {error}"));
    }

    /// Undo [`DocumentState::sent`] when the append failed after all.
    pub(crate) fn unsent(&self, claim: &Claim, n: usize) {
        let mut work = lock(&self.work);
        let report = work.reports.entry(claim.index.clone()).or_default();
        if claim.backfill {
            report.backfill_processed = report.backfill_processed.saturating_sub(n as u64);
        } else {
            report.incremental_processed = report.incremental_processed.saturating_sub(n as u64);
        }
    }

    /// Wait until something may have created work (or `timeout` passes).
    pub(crate) fn wait_for_work(&self, seen: u64, timeout: Duration) -> u64 {
        let work = lock(&self.work);
        if work.changes != seen {
            return work.changes;
        }
        let (work, _) =
            self.work_cv.wait_timeout(work, timeout).unwrap_or_else(std::sync::PoisonError::into_inner);
        work.changes
    }

    /// Wake the worker (shutdown, or work given back).
    pub(crate) fn wake(&self) {
        lock(&self.work).changes += 1;
        self.work_cv.notify_all();
    }

    // -- applying --------------------------------------------------------------------

    fn apply_embedded(&self, seq: u64, embedded: &DocumentsEmbedded) -> Outcome {
        let mut outcome = Outcome::default();
        let mut accepted = Vec::new();
        let mut stale = 0u64;
        {
            let mut indexes = self.indexes.write();
            let Some(i) = indexes.get_mut(&embedded.index) else {
                outcome.rejected = embedded.items.len() as u64;
                return outcome;
            };
            for item in &embedded.items {
                let generation_current = i.generation == embedded.generation;
                let Some(doc) = i.docs.get_mut(&item.id) else {
                    stale += 1;
                    continue;
                };
                if !generation_current || doc.seq != item.doc_seq || doc.embedded == Some(embedded.generation)
                {
                    stale += 1;
                    continue;
                }
                doc.embedded = Some(embedded.generation);
                accepted.push(VectorItem {
                    id: item.id.clone(),
                    vector: item.vector.clone(),
                    metadata: doc.metadata.clone(),
                    partition: doc.partition.clone(),
                });
                let key = (doc.seq, item.id.clone());
                i.incremental.remove(&key);
                i.backfill.remove(&key);
            }
        }
        {
            let mut work = lock(&self.work);
            if let Some(claimed) = work.claimed.get_mut(&embedded.index) {
                for item in &embedded.items {
                    claimed.remove(&item.id);
                }
            }
            if stale > 0 {
                work.reports.entry(embedded.index.clone()).or_default().discarded_stale += stale;
            }
            work.changes += 1;
        }
        self.work_cv.notify_all();
        *lock(&self.accepted) = Some((seq, embedded.index.clone(), accepted));
        outcome
    }

    fn changed(&self) {
        lock(&self.work).changes += 1;
        self.work_cv.notify_all();
    }
}

impl Projection for DocumentState {
    fn name(&self) -> &'static str {
        "documents"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        match &event.body {
            EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder { index, embedder }) => {
                let mut indexes = self.indexes.write();
                if indexes.contains_key(&index.name) {
                    outcome.rejected = 1;
                } else {
                    let i =
                        DocIndex { embedder: Some(embedder.clone()), generation: seq, ..DocIndex::default() };
                    indexes.insert(index.name.clone(), i);
                }
            }
            EventBody::IndexDropped(dropped) => {
                self.indexes.write().remove(&dropped.name);
                let mut work = lock(&self.work);
                work.claimed.remove(&dropped.name);
                work.reports.remove(&dropped.name);
                work.retry_at.remove(&dropped.name);
                work.failures.remove(&dropped.name);
                work.parked.remove(&dropped.name);
            }
            EventBody::DocumentsUpserted(upsert) => {
                {
                    let mut indexes = self.indexes.write();
                    let Some(i) = indexes.get_mut(&upsert.index) else {
                        outcome.rejected = upsert.items.len() as u64;
                        return Ok(outcome);
                    };
                    for item in &upsert.items {
                        i.unqueue(&item.id);
                        let doc = Doc {
                            seq,
                            text: Arc::from(item.text.as_str()),
                            metadata: item.metadata.clone(),
                            partition: item.partition.clone(),
                            embedded: None,
                        };
                        i.docs.insert(item.id.clone(), doc);
                        i.incremental.insert((seq, item.id.clone()));
                    }
                }
                self.changed();
            }
            EventBody::VectorsDeleted(delete) => {
                let mut indexes = self.indexes.write();
                if let Some(i) = indexes.get_mut(&delete.index) {
                    for id in &delete.ids {
                        i.unqueue(id);
                        i.docs.remove(id);
                    }
                }
            }
            EventBody::EmbedderChanged(changed) => {
                {
                    let mut indexes = self.indexes.write();
                    let Some(i) = indexes.get_mut(&changed.index) else {
                        outcome.rejected = 1;
                        return Ok(outcome);
                    };
                    i.embedder = Some(changed.embedder.clone());
                    i.generation = seq;
                    let DocIndex { docs, backfill, .. } = i;
                    for (id, doc) in docs.iter() {
                        if doc.embedded.is_some() {
                            backfill.insert((doc.seq, id.clone()));
                        }
                    }
                }
                let mut work = lock(&self.work);
                work.retry_at.remove(&changed.index);
                drop(work);
                self.changed();
            }
            EventBody::DocumentsEmbedded(embedded) => outcome = self.apply_embedded(seq, embedded),
            _ => {}
        }
        Ok(outcome)
    }

    /// Every document index: `count u64`, then per index its name, embedder, generation
    /// and documents (docs/FORMAT.md, section `documents`).
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let indexes = self.indexes.read();
        let mut e = Enc::default();
        e.u64(indexes.len() as u64);
        for (name, i) in indexes.iter() {
            e.str(name);
            let embedder = i.embedder.clone().unwrap_or(EmbedderRef { model: String::new(), dimension: 0 });
            e.str(&embedder.model);
            e.u32(embedder.dimension);
            e.u64(i.generation);
            e.u64(i.docs.len() as u64);
            let mut ids: Vec<&String> = i.docs.keys().collect();
            ids.sort();
            for id in ids {
                let doc = &i.docs[id];
                e.str(id);
                e.u64(doc.seq);
                e.str(&doc.text);
                e.opt_str(doc.metadata.as_deref());
                e.opt_str(doc.partition.as_deref());
                e.u64(doc.embedded.map_or(0, |g| g + 1));
            }
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "documents", source };
        let mut d = Dec::new(bytes);
        let n = d.count(8).map_err(corrupt)?;
        let mut indexes = BTreeMap::new();
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let model = d.str().map_err(corrupt)?.to_owned();
            let dimension = d.u32().map_err(corrupt)?;
            let generation = d.u64().map_err(corrupt)?;
            let count = d.count(8).map_err(corrupt)?;
            let mut i = DocIndex {
                embedder: Some(EmbedderRef { model, dimension }),
                generation,
                ..DocIndex::default()
            };
            for _ in 0..count {
                let id = d.str().map_err(corrupt)?.to_owned();
                let seq = d.u64().map_err(corrupt)?;
                let text = Arc::from(d.str().map_err(corrupt)?);
                let metadata = d.opt_str().map_err(corrupt)?.map(str::to_owned);
                let partition = d.opt_str().map_err(corrupt)?.map(str::to_owned);
                let embedded = d.u64().map_err(corrupt)?.checked_sub(1);
                match embedded {
                    None => {
                        i.incremental.insert((seq, id.clone()));
                    }
                    Some(g) if g != generation => {
                        i.backfill.insert((seq, id.clone()));
                    }
                    Some(_) => {}
                }
                let doc = Doc { seq, text, metadata, partition, embedded };
                if i.docs.insert(id.clone(), doc).is_some() {
                    return Err(corrupt(d.error(format!("index {name:?}: document {id:?} appears twice"))));
                }
            }
            if indexes.insert(name.clone(), i).is_some() {
                return Err(corrupt(d.error(format!("index {name:?} appears twice"))));
            }
        }
        d.finish().map_err(corrupt)?;
        *self.indexes.write() = indexes;
        self.changed();
        Ok(())
    }

    fn shutdown(&self) {
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        DocumentItem, DocumentsUpserted, EmbeddedItem, EmbedderChanged, HnswConfig, IndexCreated, Metric,
    };

    fn ev(body: EventBody) -> Event {
        Event::new("t", body)
    }

    fn created() -> Event {
        ev(EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder {
            index: IndexCreated {
                name: "d".into(),
                dimension: 2,
                metric: Metric::Cosine,
                config: HnswConfig::default(),
            },
            embedder: EmbedderRef { model: "m".into(), dimension: 2 },
        }))
    }

    fn docs(ids: &[&str], text: &str) -> Event {
        let items = ids
            .iter()
            .map(|id| DocumentItem { id: (*id).into(), text: text.into(), metadata: None, partition: None })
            .collect();
        ev(EventBody::DocumentsUpserted(DocumentsUpserted { index: "d".into(), items }))
    }

    fn embedded(generation: u64, items: &[(&str, u64)]) -> Event {
        let items = items
            .iter()
            .map(|(id, doc_seq)| EmbeddedItem { id: (*id).into(), doc_seq: *doc_seq, vector: vec![1.0, 0.0] })
            .collect();
        ev(EventBody::DocumentsEmbedded(DocumentsEmbedded {
            index: "d".into(),
            model: "m".into(),
            generation,
            items,
        }))
    }

    #[test]
    fn incremental_work_is_claimed_before_backfill_and_in_slices() {
        let state = DocumentState::default();
        state.apply(1, &created()).unwrap();
        let ids: Vec<String> = (0..100).map(|i| format!("a{i:03}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        state.apply(2, &docs(&refs, "x")).unwrap();
        let first = state.claim().unwrap();
        assert_eq!((first.docs.len(), first.backfill), (INCREMENTAL_SLICE, false));
        let second = state.claim().unwrap();
        assert_eq!(second.docs.len(), 100 - INCREMENTAL_SLICE, "claimed documents are not claimed again");
        assert!(state.claim().is_none());
        // Everything embedded, then the embedder changes: all of it is backfill.
        let items: Vec<(&str, u64)> = refs.iter().map(|id| (*id, 2)).collect();
        state.apply(3, &embedded(1, &items)).unwrap();
        assert_eq!(state.take_accepted(3, "d").len(), 100);
        let change =
            EmbedderChanged { index: "d".into(), embedder: EmbedderRef { model: "n".into(), dimension: 2 } };
        state.apply(4, &ev(EventBody::EmbedderChanged(change))).unwrap();
        state.apply(5, &docs(&["new"], "y")).unwrap();
        let claim = state.claim().unwrap();
        assert!(!claim.backfill && claim.docs[0].0 == "new", "new documents go before backfill");
        let claim = state.claim().unwrap();
        assert_eq!((claim.backfill, claim.docs.len(), claim.model.as_str()), (true, BACKFILL_SLICE, "n"));
    }

    #[test]
    fn a_vector_of_a_replaced_version_or_an_old_generation_is_not_applied() {
        let state = DocumentState::default();
        state.apply(1, &created()).unwrap();
        state.apply(2, &docs(&["a", "b"], "old")).unwrap();
        let claim = state.claim().unwrap();
        state.apply(3, &docs(&["a"], "new")).unwrap();
        assert_eq!(state.current_part(&claim), vec![1], "a was replaced while in flight");
        state.apply(4, &embedded(1, &[("a", 2), ("b", 2)])).unwrap();
        let accepted = state.take_accepted(4, "d");
        assert_eq!(accepted.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
        let status = state.status("d").unwrap();
        assert_eq!(status.queue.incremental, 1, "a's new version still waits");
        assert_eq!(status.report.discarded_stale, 2, "once by the worker, once when applied");
        // The same vector again is not applied twice.
        state.apply(5, &embedded(1, &[("b", 2)])).unwrap();
        assert!(state.take_accepted(5, "d").is_empty());
    }

    #[test]
    fn given_back_work_is_claimed_again_after_its_backoff() {
        let state = DocumentState::default();
        state.apply(1, &created()).unwrap();
        state.apply(2, &docs(&["a"], "x")).unwrap();
        let claim = state.claim().unwrap();
        let backoff =
            state.give_back(&claim, "down", false, (Duration::from_millis(30), Duration::from_secs(1)));
        assert_eq!(backoff, Duration::from_millis(30), "the first failure waits the least");
        assert!(state.claim().is_none(), "backing off");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(state.claim().unwrap().docs[0].0, "a");
        let report = state.status("d").unwrap().report;
        assert_eq!((report.failed, report.last_error.as_deref()), (1, Some("down")));
    }

    #[test]
    fn a_snapshot_restores_the_queue_exactly() {
        let state = DocumentState::default();
        state.apply(1, &created()).unwrap();
        state.apply(2, &docs(&["a", "b", "c"], "x")).unwrap();
        state.apply(3, &embedded(1, &[("a", 2)])).unwrap();
        let change =
            EmbedderChanged { index: "d".into(), embedder: EmbedderRef { model: "n".into(), dimension: 2 } };
        state.apply(4, &ev(EventBody::EmbedderChanged(change))).unwrap();
        state.apply(5, &embedded(4, &[("b", 2)])).unwrap();
        let mut bytes = Vec::new();
        state.write_snapshot(5, &mut bytes).unwrap();
        let restored = DocumentState::default();
        restored.restore_snapshot(5, &bytes).unwrap();
        let (a, b) = (state.status("d").unwrap(), restored.status("d").unwrap());
        assert_eq!(
            (&a.embedder, a.generation, a.documents, &a.queue),
            (&b.embedder, b.generation, b.documents, &b.queue)
        );
        assert_eq!(b.queue.incremental, 1, "c");
        assert_eq!(b.queue.backfill, 1, "a, embedded under the old generation");
    }
}
