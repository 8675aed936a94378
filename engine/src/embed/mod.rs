//! Embedders: text in, vectors out. The local one runs all-MiniLM-L6-v2 in process
//! (candle's BERT and the tokenizers crate); the remote one calls an HTTP service with
//! the OpenAI `/v1/embeddings` request shape. Both are reached through [`Embedder`], by
//! the model id an index records in its creation event.

mod error;
mod local;
mod remote;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::EmbedError;
pub use local::{LazyLocalEmbedder, LocalEmbedder, LOCAL_MODEL_DIMENSION, LOCAL_MODEL_ID};
pub use remote::{RemoteEmbedder, RemoteEmbedderConfig};

/// Turns texts into vectors of one fixed dimension.
pub trait Embedder: Send + Sync {
    /// The model id recorded in the log (`all-MiniLM-L6-v2`).
    fn model(&self) -> &str;

    /// The dimension of every vector it returns.
    fn dimension(&self) -> usize;

    /// One vector per text, in order.
    ///
    /// # Errors
    /// [`EmbedError`]: the model could not run, or the service failed or timed out.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Whether it is known not to work (a model that failed to load), and why.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The embedders a server offers, by model id.
#[derive(Clone, Default)]
pub struct Embedders {
    by_model: BTreeMap<String, Arc<dyn Embedder>>,
    /// Configured embedders that could not be loaded (a missing model directory), with
    /// their dimension and why: indexes that name them wait, and say why.
    unavailable: BTreeMap<String, (usize, String)>,
}

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedders")
            .field("models", &self.by_model.keys().collect::<Vec<_>>())
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

impl Embedders {
    /// Offer `embedder` under its model id (replacing one of the same id).
    pub fn add(&mut self, embedder: Arc<dyn Embedder>) {
        self.unavailable.remove(embedder.model());
        self.by_model.insert(embedder.model().to_owned(), embedder);
    }

    /// Record that `model` (of `dimension`) is configured but could not be loaded,
    /// and why.
    pub fn add_unavailable(&mut self, model: impl Into<String>, dimension: usize, reason: impl Into<String>) {
        let model = model.into();
        self.by_model.remove(&model);
        self.unavailable.insert(model, (dimension, reason.into()));
    }

    /// The dimension of `model`, loaded or not; `None` if it is not configured.
    pub fn dimension(&self, model: &str) -> Option<usize> {
        self.by_model.get(model).map(|e| e.dimension()).or_else(|| self.unavailable.get(model).map(|u| u.0))
    }

    /// Every configured model id, loaded or not.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_model.keys().chain(self.unavailable.keys()).cloned().collect();
        names.sort();
        names
    }

    /// The embedder of `model`.
    ///
    /// # Errors
    /// [`EmbedError::Unavailable`] if none is configured (or it failed to load).
    pub fn get(&self, model: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        self.by_model.get(model).cloned().ok_or_else(|| EmbedError::Unavailable { model: model.to_owned() })
    }

    /// Whether `model` is known here, loaded or not (an index may name it).
    pub fn knows(&self, model: &str) -> bool {
        self.by_model.contains_key(model) || self.unavailable.contains_key(model)
    }

    /// Why `model` is configured but unavailable, if it is.
    pub fn unavailable_reason(&self, model: &str) -> Option<&str> {
        self.unavailable.get(model).map(|u| u.1.as_str())
    }

    /// Model ids and dimensions of the loaded embedders.
    pub fn models(&self) -> Vec<(String, usize)> {
        self.by_model.iter().map(|(id, e)| (id.clone(), e.dimension())).collect()
    }
}
