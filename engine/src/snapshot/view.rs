//! Time travel: a read-only view of the projections as of any sequence number S still
//! in the log or its archive: the newest snapshot at or before S, plus the events after
//! it up to S (read from archive segments where the log no longer holds them),
//! applied to fresh projections that no writer touches. Views are cached (a few, under
//! a memory bound) so that a run of queries as of the same S builds it once.

use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::log::Log;
use crate::projection::bucket_errors::ErrorJournal;
use crate::projection::promotions::PromotionState;
use crate::projection::text::{self, Fusion, Hybrid, KeywordHit, KeywordQuery, TextState};
use crate::projection::trials::TrialState;
use crate::projection::vectors::{
    Catalog, Hit, IndexInfo, IndexParams, Item, Page, PayloadIndexInfo, Plan, Record, Searched, Select,
};
use crate::projection::{catch_up, Hooks, Projections};
use crate::source::EventSource;
use crate::sync::{block_on, lock};

use super::{load, registered, ENGINE_ACTOR};

/// Views kept built at once.
pub const VIEWS_CACHED_MAX: usize = 2;
/// A view whose vectors take more than this many bytes is not kept after its query.
pub const VIEW_CACHED_BYTES_MAX: u64 = 1 << 30;
/// Registered snapshots looked at, newest first, for one at or before S.
const BASE_CANDIDATES: usize = 16;

/// The projections as of one sequence number.
pub struct View {
    seq: u64,
    catalog: Arc<Catalog>,
    journal: Arc<ErrorJournal>,
    promotions: Arc<PromotionState>,
    trials: Arc<TrialState>,
    text: Arc<TextState>,
    bytes: u64,
}

impl View {
    /// The sequence number it shows.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Names of its indexes, sorted.
    pub fn list_indexes(&self) -> Vec<String> {
        self.catalog.names()
    }

    /// An index as it was.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`] if it did not exist at S.
    pub fn get_index(&self, name: &str) -> Result<IndexInfo, Error> {
        let handle = self.catalog.get(name).ok_or_else(|| Error::IndexNotFound { name: name.to_owned() })?;
        let index = handle.read();
        Ok(IndexInfo { params: index.params.clone(), length: index.len() })
    }

    /// Search an index as it was.
    ///
    /// # Errors
    /// As [`crate::Engine::search_batch`].
    pub fn search_batch(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
    ) -> Result<Vec<Vec<Hit>>, Error> {
        self.catalog.search(index, vectors, k, None)
    }

    /// Search within partitions of an index as it was (see [`crate::Engine::search_in`]).
    ///
    /// # Errors
    /// As [`crate::Engine::search_in`].
    pub fn search_in(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        partition: &str,
    ) -> Result<Vec<Vec<Hit>>, Error> {
        self.catalog.search(index, vectors, k, Some(partition))
    }

    /// A filtered search of an index as it was (see [`crate::Engine::query`]).
    ///
    /// # Errors
    /// As [`crate::Engine::query`].
    pub fn query(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        select: &Select,
    ) -> Result<Searched, Error> {
        let (hits, plan) = self.catalog.query(index, vectors, k, select)?;
        Ok(Searched { hits, plan })
    }

    /// A keyword (BM25) search of an index as it was (see [`crate::Engine::keyword`]).
    ///
    /// # Errors
    /// As [`crate::Engine::keyword`].
    pub fn keyword(
        &self,
        index: &str,
        query: &KeywordQuery,
        k: usize,
        select: &Select,
    ) -> Result<Vec<KeywordHit>, Error> {
        self.catalog.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
        self.text.keyword(index, "text", query, k, select)
    }

    /// A hybrid search of an index as it was, for a query text and its embedding (see
    /// [`crate::Engine::hybrid`]).
    ///
    /// # Errors
    /// As [`crate::Engine::hybrid`].
    #[allow(clippy::too_many_arguments)]
    pub fn hybrid(
        &self,
        index: &str,
        query: &KeywordQuery,
        vector: Vec<f32>,
        k: usize,
        select: &Select,
        fusion: Fusion,
        candidates: Option<usize>,
    ) -> Result<Hybrid, Error> {
        self.catalog.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
        text::fusion::hybrid(&self.catalog, &self.text, index, query, vector, k, select, fusion, candidates)
    }

    /// A count of an index as it was (see [`crate::Engine::count`]).
    ///
    /// # Errors
    /// As [`crate::Engine::count`].
    pub fn count(&self, index: &str, select: &Select) -> Result<(u64, Plan), Error> {
        self.catalog.count(index, select)
    }

    /// A page of an index's records as they were (see [`crate::Engine::items`]).
    ///
    /// # Errors
    /// As [`crate::Engine::items`].
    pub fn items(
        &self,
        index: &str,
        select: &Select,
        after: Option<&str>,
        limit: usize,
        vectors: bool,
    ) -> Result<Page, Error> {
        self.catalog.items(index, select, after, limit, vectors)
    }

    /// Records of an index by id as they were (see [`crate::Engine::get_items`]).
    ///
    /// # Errors
    /// As [`crate::Engine::get_items`].
    pub fn get_items(&self, index: &str, ids: &[String], vectors: bool) -> Result<Vec<Option<Item>>, Error> {
        self.catalog.get_items(index, ids, vectors)
    }

    /// The payload indexes of an index as they were.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn payload_indexes(&self, index: &str) -> Result<Vec<PayloadIndexInfo>, Error> {
        self.catalog.payload_indexes(index)
    }

    /// Every live record of an index as it was, sorted by id.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; FAISS failed to read its storage.
    pub fn records(&self, index: &str) -> Result<Vec<Record>, Error> {
        let handle =
            self.catalog.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
        let records = handle.read().records()?;
        Ok(records)
    }

    /// The bucket error journal as it was.
    pub fn journal(&self) -> &ErrorJournal {
        &self.journal
    }

    /// The promotion state as it was.
    pub fn promotions(&self) -> &PromotionState {
        &self.promotions
    }

    /// The evaluation sets and trials as they were.
    pub fn trials(&self) -> &TrialState {
        &self.trials
    }
}

/// Builds and caches views.
#[derive(Default)]
pub(crate) struct Views {
    cached: Mutex<Vec<Arc<View>>>,
}

impl Views {
    /// The view as of `seq`, built if it is not cached. `applied` is the engine's applied
    /// sequence number; a view past it is refused.
    pub(crate) fn at(
        &self,
        source: &EventSource<Log>,
        hooks: &Hooks,
        seq: u64,
        applied: u64,
    ) -> Result<Arc<View>, Error> {
        if seq > applied {
            return Err(Error::AsOfFuture { seq, applied });
        }
        if let Some(view) = lock(&self.cached).iter().find(|v| v.seq == seq) {
            return Ok(Arc::clone(view));
        }
        let view = Arc::new(build(source, hooks, seq)?);
        if view.bytes <= VIEW_CACHED_BYTES_MAX {
            let mut cached = lock(&self.cached);
            if cached.len() >= VIEWS_CACHED_MAX {
                cached.remove(0);
            }
            cached.push(Arc::clone(&view));
        }
        Ok(view)
    }
}

fn build(source: &EventSource<Log>, hooks: &Hooks, seq: u64) -> Result<View, Error> {
    let (log, storage) = (source.log(), source.storage());
    // The newest registered snapshot at or before `seq` that reads back whole.
    let mut base = None;
    for (_, taken) in registered(log, BASE_CANDIDATES)? {
        if taken.seq > seq {
            continue;
        }
        let Ok(Ok(fetched)) =
            block_on(storage.get_bounded(ENGINE_ACTOR, &taken.bucket, &taken.key, taken.bytes))
        else {
            continue;
        };
        let projections = Projections::new(hooks)?;
        if load(&fetched.bytes, &taken, &projections).is_ok() {
            base = Some((taken.seq, projections));
            break;
        }
        projections.shutdown();
    }
    let (mut applied, projections) = match base {
        Some((s, projections)) => (s, projections),
        None => (0, Projections::new(hooks)?),
    };
    let built = (|| {
        let first = log.first_seq()?;
        // Events before the log's first were archived: the segments must hold them.
        if applied + 1 < first && !source.covers(applied + 1)? {
            return Err(Error::AsOfGone { seq, first_retained: first });
        }
        catch_up(source, &projections.list(), &mut applied, seq, &mut |_| {})
    })();
    // No writer will touch it, built or not: stop the rebuilder (a view keeps its
    // tombstones).
    projections.shutdown();
    built?;
    let Projections { catalog, journal, promotions, trials, text, .. } = projections;
    // (partition paths are the records'; the scheme state is not served as of S)
    let bytes = catalog
        .handles()
        .iter()
        .map(|(_, h)| {
            let index = h.read();
            let IndexParams { dimension, .. } = index.params;
            (index.len() + index.dead()) * u64::from(dimension) * 4
        })
        .sum();
    Ok(View { seq, catalog, journal, promotions, trials, text, bytes })
}
