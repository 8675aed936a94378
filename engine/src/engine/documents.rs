//! Documents: indexes created with an embedder take text, and the embedding worker
//! turns it into their vectors (see `projection/documents.rs` for the queue). The worker
//! claims a slice, embeds it outside every lock, drops what went stale meanwhile and
//! appends the rest as one `DocumentsEmbedded` event; a failure gives the slice back to
//! the queue and backs off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Created, Engine, Upserted, Wait};
use crate::embed::{EmbedError, Embedders};
use crate::error::Error;
use crate::event::{
    DocumentItem, DocumentsEmbedded, DocumentsUpserted, EmbeddedItem, EmbedderChanged, EmbedderRef, Event,
    EventBody, HnswConfig, IndexCreated, IndexCreatedWithEmbedder, Metric,
};
use crate::log::Log;
use crate::projection::documents::{Claim, DocumentState, EmbeddingStatus};
use crate::projection::{Hooks, Projector};
use crate::schema::SchemaEntry;
use crate::sync::{lock, read, write};
use crate::validate::{self, InvalidInput};

/// The actor of the events the worker appends.
pub const EMBEDDER_ACTOR: &str = "embedder";
/// First wait after a failure; doubled per consecutive failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a document that fails on its own is set aside.
const PARK: Duration = Duration::from_secs(60);
/// How often an idle worker looks for work it was not woken for (backoffs ending).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// An index's embedding state, with whether its embedder is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingInfo {
    /// Embedder, queue and drain report.
    pub status: EmbeddingStatus,
    /// Whether this server has the embedder loaded (else why not).
    pub available: Result<(), String>,
}

impl Engine {
    /// Create an index whose vectors are the embeddings of its documents by `model`
    /// (one of the configured embedders); its dimension is the model's (`dimension`,
    /// if given, must match). Vectors cannot be written to it directly.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name or config, an unknown model or a dimension that
    /// is not the model's; [`Error::IndexExists`].
    pub fn create_document_index(
        &self,
        actor: &str,
        name: &str,
        model: &str,
        dimension: Option<u32>,
        metric: Metric,
        config: HnswConfig,
    ) -> Result<Created, Error> {
        let text = Some(super::TextSpec::default());
        self.create_document_index_with(actor, name, model, dimension, metric, config, text)
    }

    /// [`Engine::create_document_index`] with the text index of `text` (`None`: no
    /// keyword or hybrid search on this index). Both are recorded in one commit: an
    /// `IndexCreatedWithEmbedder` and a `TextIndexCreated` event.
    ///
    /// # Errors
    /// As [`Engine::create_document_index`]; [`Error::Invalid`] naming `text.*` for a
    /// bad text configuration.
    #[allow(clippy::too_many_arguments)]
    pub fn create_document_index_with(
        &self,
        actor: &str,
        name: &str,
        model: &str,
        dimension: Option<u32>,
        metric: Metric,
        config: HnswConfig,
        text: Option<super::TextSpec>,
    ) -> Result<Created, Error> {
        validate::actor(actor)?;
        if let Some(spec) = &text {
            spec.check()?;
        }
        validate::name(name)?;
        validate::config(&config)?;
        let model_dimension = self.model_dimension("embedder", model)?;
        if let Some(given) = dimension.filter(|d| *d != model_dimension) {
            return Err(InvalidInput {
                field: "dimension".into(),
                reason: format!("is {given}, but the embedder {model:?} gives {model_dimension}"),
            }
            .into());
        }
        validate::storage(&config, model_dimension, metric)?;
        let seq = {
            let mut schema = write(self.writable_schema()?);
            if schema.get(name).is_some() {
                return Err(Error::IndexExists { name: name.to_owned() });
            }
            let embedder = EmbedderRef { model: model.to_owned(), dimension: model_dimension };
            let index = IndexCreated { name: name.to_owned(), dimension: model_dimension, metric, config };
            let body = EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder { index, embedder });
            let mut bodies = vec![body];
            if let Some(spec) = text {
                bodies.push(EventBody::TextIndexCreated(spec.event(name)));
            }
            let seq = self.append_all(actor, bodies)?;
            let generation = self.generations.fetch_add(1, Ordering::Relaxed);
            let entry = SchemaEntry {
                dimension: model_dimension,
                metric,
                template: None,
                generation,
                embedder: Some(model.to_owned()),
            };
            schema.insert(name, entry);
            seq
        };
        self.wait_applied(seq)?;
        Ok(Created { info: self.get_index(name)?, seq })
    }

    /// Insert or replace documents of a document index. Their vectors follow as the
    /// embedding worker gets to them (a replaced document keeps its previous vector
    /// until then); [`Engine::embedding`] shows the queue.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad item; [`Error::IndexNotFound`];
    /// [`Error::NotDocumentIndex`].
    pub fn upsert_documents(
        &self,
        actor: &str,
        index: &str,
        items: Vec<DocumentItem>,
        wait: Wait,
    ) -> Result<Upserted, Error> {
        validate::actor(actor)?;
        let added = items.len() as u64;
        let seq = {
            let schema = read(self.writable_schema()?);
            let entry = schema.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
            if entry.embedder.is_none() {
                return Err(Error::NotDocumentIndex { name: index.to_owned() });
            }
            validate::documents(&items)?;
            let body = EventBody::DocumentsUpserted(DocumentsUpserted { index: index.to_owned(), items });
            self.append(actor, body)?
        };
        self.upserted(index, added, seq, wait)
    }

    /// Re-embed every document of `index` with `model` (same dimension): backfill work,
    /// which goes after new documents; each keeps its old vector until then.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown model or another dimension;
    /// [`Error::IndexNotFound`]; [`Error::NotDocumentIndex`].
    pub fn set_embedder(&self, actor: &str, index: &str, model: &str) -> Result<u64, Error> {
        validate::actor(actor)?;
        let dimension = self.model_dimension("model", model)?;
        let seq = {
            let mut schema = write(self.writable_schema()?);
            let entry = schema.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
            if entry.embedder.is_none() {
                return Err(Error::NotDocumentIndex { name: index.to_owned() });
            }
            if dimension != entry.dimension {
                return Err(InvalidInput {
                    field: "model".into(),
                    reason: format!(
                        "{model:?} gives {dimension} dimensions, the index has {}",
                        entry.dimension
                    ),
                }
                .into());
            }
            let embedder = EmbedderRef { model: model.to_owned(), dimension };
            let body = EventBody::EmbedderChanged(EmbedderChanged { index: index.to_owned(), embedder });
            let seq = self.append(actor, body)?;
            schema.set_embedder(index, Some(model.to_owned()));
            seq
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// The embedder, queue and drain report of a document index.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::NotDocumentIndex`].
    pub fn embedding(&self, index: &str) -> Result<EmbeddingInfo, Error> {
        self.index(index)?;
        let status =
            self.documents.status(index).ok_or_else(|| Error::NotDocumentIndex { name: index.to_owned() })?;
        let available = match self.config.embedders.get(&status.embedder.model) {
            Ok(embedder) => embedder.health(),
            Err(error) => Err(self
                .config
                .embedders
                .unavailable_reason(&status.embedder.model)
                .map_or_else(|| error.to_string(), str::to_owned)),
        };
        Ok(EmbeddingInfo { status, available })
    }

    /// Wait until `index`'s embedding queue is empty and every vector it produced is
    /// applied, or `timeout` passes.
    ///
    /// # Errors
    /// [`Error::EmbeddingPending`] with the status when `timeout` passes; as
    /// [`Engine::embedding`].
    pub fn wait_embedded(&self, index: &str, timeout: Duration) -> Result<EmbeddingInfo, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            // Everything appended so far (documents written with `wait: durable`
            // included) is applied first, so the queue read below holds it.
            let last = self.log.last_seq();
            self.wait_applied(last)?;
            let info = self.embedding(index)?;
            let queue = &info.status.queue;
            if queue.incremental == 0 && queue.backfill == 0 && queue.in_flight == 0 {
                // The worker's own last append (which emptied the queue) is applied too.
                self.wait_applied(self.log.last_seq())?;
                return Ok(info);
            }
            if Instant::now() >= deadline {
                return Err(Error::EmbeddingPending {
                    index: index.to_owned(),
                    pending: queue.incremental + queue.backfill,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The current text of a document (for search answers).
    pub fn document_text(&self, index: &str, id: &str) -> Option<Arc<str>> {
        self.documents.text(index, id)
    }

    /// Whether `index` is a document index.
    pub fn is_document_index(&self, index: &str) -> bool {
        self.documents.embedder(index).is_some()
    }

    /// Embed query texts with `index`'s embedder, for a text search.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or oversized text; [`Error::IndexNotFound`];
    /// [`Error::NotDocumentIndex`]; [`Error::Embed`] when the embedder is unavailable
    /// or fails.
    pub fn embed_queries(&self, index: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        self.index(index)?;
        let embedder = self
            .documents
            .embedder(index)
            .ok_or_else(|| Error::NotDocumentIndex { name: index.to_owned() })?;
        for (i, text) in texts.iter().enumerate() {
            let field = if texts.len() == 1 { "text".to_owned() } else { format!("texts[{i}]") };
            validate::document_text(&field, text)?;
        }
        let model = self.config.embedders.get(&embedder.model)?;
        Ok(model.embed(texts)?)
    }

    /// The dimension of a configured model (loaded or not).
    fn model_dimension(&self, field: &str, model: &str) -> Result<u32, Error> {
        let embedders = &self.config.embedders;
        let dimension = embedders.dimension(model).ok_or_else(|| InvalidInput {
            field: field.into(),
            reason: format!(
                "no embedder for model {model:?} is configured (configured: {})",
                embedders.names().join(", ")
            ),
        })?;
        Ok(u32::try_from(dimension).unwrap_or(u32::MAX))
    }
}

/// The embedding worker: one thread per engine.
pub(crate) struct EmbeddingWorker {
    stop: Arc<AtomicBool>,
    documents: Arc<DocumentState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct WorkerCtx {
    documents: Arc<DocumentState>,
    embedders: Embedders,
    log: Arc<Log>,
    projector: Arc<Projector>,
    /// The last event at open: no claim before it is applied (its embedded vectors
    /// would be embedded again otherwise).
    target_seq: u64,
    stop: Arc<AtomicBool>,
    hooks: Hooks,
    /// In a cluster: whether this node may embed now (it holds the embedder lease).
    may_embed: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl EmbeddingWorker {
    pub(crate) fn start(
        documents: Arc<DocumentState>,
        embedders: Embedders,
        log: Arc<Log>,
        projector: Arc<Projector>,
        target_seq: u64,
        hooks: Hooks,
        may_embed: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ) -> Result<Self, std::io::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = WorkerCtx {
            documents: Arc::clone(&documents),
            embedders,
            log,
            projector,
            target_seq,
            stop: Arc::clone(&stop),
            hooks,
            may_embed,
        };
        let thread = std::thread::Builder::new().name("annal-embedder".into()).spawn(move || ctx.run())?;
        Ok(Self { stop, documents, thread: Mutex::new(Some(thread)) })
    }

    /// Stop the worker and wait for it (an embedding in flight is finished or fails
    /// first; its slice is left unapplied and is claimed again at the next open).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.documents.wake();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl WorkerCtx {
    fn run(&self) {
        // Replay first: a claim needs the state of the whole log.
        while !self.stop.load(Ordering::Acquire) {
            match self.projector.wait_applied(self.target_seq, IDLE_POLL) {
                Ok(()) => break,
                Err(crate::ProjectionError::Timeout { .. }) => {}
                Err(_) => return, // the projector stopped on a fault: nothing can apply
            }
        }
        let mut seen = 0;
        while !self.stop.load(Ordering::Acquire) {
            if self.projector.fault().is_some() || self.log.is_poisoned() {
                return;
            }
            // Another node of the cluster embeds: its events bring the vectors here.
            if self.may_embed.as_ref().is_some_and(|may| !may()) {
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            let Some(claim) = self.documents.claim() else {
                seen = self.documents.wait_for_work(seen, IDLE_POLL);
                continue;
            };
            match self.embed_and_append(&claim) {
                Ok(()) => {}
                // Something in the slice the embedder refuses (a text too long for a
                // remote model, a bad answer): find it, so the rest is not held up.
                Err(failure) if failure.kind == FailureKind::Input => self.one_by_one(&claim),
                Err(failure) => self.give_back(&claim, &failure),
            }
        }
    }

    fn give_back(&self, claim: &Claim, failure: &Failure) {
        let unavailable = failure.kind == FailureKind::Unavailable;
        let backoff =
            self.documents.give_back(claim, &failure.error, unavailable, (BACKOFF_MIN, BACKOFF_MAX));
        tracing::warn!(
            index = %claim.index,
            model = %claim.model,
            documents = claim.docs.len(),
            backoff_ms = backoff.as_millis() as u64,
            error = %failure.error,
            "embedding failed; the documents go back to the queue"
        );
    }

    /// Embed a slice that failed on its input one document at a time: those that fail
    /// on their own are parked (retried after [`PARK`], or at once when replaced); an
    /// outage meanwhile gives the rest back.
    fn one_by_one(&self, claim: &Claim) {
        for position in 0..claim.docs.len() {
            let single = Claim { docs: vec![claim.docs[position].clone()], ..claim.clone() };
            match self.embed_and_append(&single) {
                Ok(()) => {}
                Err(failure) if failure.kind == FailureKind::Input => {
                    tracing::warn!(index = %claim.index, id = %claim.docs[position].0, error = %failure.error, "a document fails to embed; parked");
                    self.documents.park(claim, position, &failure.error, PARK);
                }
                Err(failure) => {
                    let rest = Claim { docs: claim.docs[position..].to_vec(), ..claim.clone() };
                    self.give_back(&rest, &failure);
                    return;
                }
            }
        }
    }

    /// Embed `claim`, drop what went stale meanwhile, append the rest.
    fn embed_and_append(&self, claim: &Claim) -> Result<(), Failure> {
        let embedder = self.embedders.get(&claim.model).map_err(|e| {
            let error =
                self.embedders.unavailable_reason(&claim.model).map_or_else(|| e.to_string(), str::to_owned);
            Failure { error, kind: FailureKind::Unavailable }
        })?;
        if embedder.dimension() != claim.dimension {
            let error = format!(
                "embedder {:?} gives {} dimensions, the index has {}",
                claim.model,
                embedder.dimension(),
                claim.dimension
            );
            return Err(Failure { error, kind: FailureKind::Unavailable });
        }
        let texts: Vec<&str> = claim.docs.iter().map(|(_, _, text)| &**text).collect();
        if let Some(hook) = &self.hooks.before_embed {
            hook(&claim.index, &texts);
        }
        let vectors = embedder
            .embed(&texts)
            .map_err(|e| Failure { error: crate::chain::chain(&e), kind: kind_of(&e) })?;
        if vectors.len() != texts.len() {
            let error = format!("{} vectors for {} texts", vectors.len(), texts.len());
            return Err(Failure { error, kind: FailureKind::Input });
        }
        if let Some(bad) =
            vectors.iter().position(|v| v.len() != claim.dimension || v.iter().any(|x| !x.is_finite()))
        {
            let error = format!(
                "the vector of {:?} has {} values or a NaN/infinity",
                claim.docs[bad].0,
                vectors[bad].len()
            );
            return Err(Failure { error, kind: FailureKind::Input });
        }
        let keep = self.documents.current_part(claim);
        if keep.is_empty() {
            return Ok(());
        }
        let items: Vec<EmbeddedItem> = keep
            .iter()
            .map(|&i| {
                let (id, doc_seq, _) = &claim.docs[i];
                EmbeddedItem { id: id.clone(), doc_seq: *doc_seq, vector: vectors[i].clone() }
            })
            .collect();
        let sent = items.len();
        let body = EventBody::DocumentsEmbedded(DocumentsEmbedded {
            index: claim.index.clone(),
            model: claim.model.clone(),
            generation: claim.generation,
            items,
        });
        // Counted before the append: once appended, applying it may release the claim
        // and a status read must not see the queue shrink without the count.
        self.documents.sent(claim, sent);
        if let Err(e) = self.log.append(&[Event::new(EMBEDDER_ACTOR, body)]) {
            self.documents.unsent(claim, sent);
            let error = format!("appending the vectors failed: {}", crate::chain::chain(&e));
            return Err(Failure { error, kind: FailureKind::Outage });
        }
        Ok(())
    }
}

/// Why a slice could not be embedded.
struct Failure {
    error: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// No such embedder here, its model would not load, or it gives another dimension.
    Unavailable,
    /// The embedder or the service is down, slow or overloaded: retry the whole slice.
    Outage,
    /// Something in the input was refused (a 4xx other than 408/429, a bad answer, a
    /// local model error): find the document.
    Input,
}

fn kind_of(error: &EmbedError) -> FailureKind {
    match error {
        EmbedError::Unavailable { .. } | EmbedError::ModelFile { .. } | EmbedError::Model { .. } => {
            FailureKind::Unavailable
        }
        EmbedError::Remote { source, .. } => match **source {
            ureq::Error::StatusCode(code) if (400..500).contains(&code) && code != 408 && code != 429 => {
                FailureKind::Input
            }
            _ => FailureKind::Outage,
        },
        EmbedError::BadAnswer { .. } | EmbedError::Inference(_) | EmbedError::Tokenizer(_) => {
            FailureKind::Input
        }
    }
}
