//! An embedding service over HTTP, spoken to in the OpenAI `/v1/embeddings` shape:
//! `POST {url}` with `{"model": M, "input": [texts]}`, answered by
//! `{"data": [{"index": i, "embedding": [floats]}, ...]}`. Each call has a total
//! timeout, and at most `concurrency` calls are in flight at once (the embedding queue
//! and text searches share them).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{EmbedError, Embedder};
use crate::secret::Secret;
use crate::sync::lock;

/// How to reach a remote embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEmbedderConfig {
    /// The model id, sent in each request and recorded by indexes that use it.
    pub model: String,
    /// The vectors' dimension; an answer of another dimension is refused.
    pub dimension: usize,
    /// The full URL of the embeddings endpoint (`http://host:port/v1/embeddings`).
    pub url: String,
    /// Sent as `Authorization: Bearer ...` when set (never logged or recorded).
    pub api_key: Option<Secret>,
    /// Total time a call may take.
    pub timeout: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
}

/// A remote embedder.
pub struct RemoteEmbedder {
    config: RemoteEmbedderConfig,
    agent: ureq::Agent,
    in_flight: Mutex<usize>,
    slot_freed: Condvar,
}

impl RemoteEmbedder {
    /// A client of the service `config` names (nothing is called yet).
    pub fn new(config: RemoteEmbedderConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(true)
            .build()
            .into();
        Self { config, agent, in_flight: Mutex::new(0), slot_freed: Condvar::new() }
    }

    fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let url = &self.config.url;
        let remote = |source: ureq::Error| EmbedError::Remote { url: url.clone(), source: Box::new(source) };
        let body = serde_json::json!({"model": self.config.model, "input": texts});
        let mut request = self.agent.post(url);
        if let Some(key) = &self.config.api_key {
            request = request.header("authorization", &format!("Bearer {}", key.expose()));
        }
        let answer: EmbeddingsAnswer =
            request.send_json(&body).map_err(remote)?.body_mut().read_json().map_err(remote)?;
        let bad = |reason: String| EmbedError::BadAnswer { url: url.clone(), reason };
        if answer.data.len() != texts.len() {
            return Err(bad(format!("{} embeddings for {} inputs", answer.data.len(), texts.len())));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for item in answer.data {
            let index = item.index;
            if index >= texts.len() || !out[index].is_empty() {
                return Err(bad(format!("embedding index {index} out of range or repeated")));
            }
            if item.embedding.len() != self.config.dimension {
                return Err(bad(format!(
                    "data[{index}] has {} dimensions, the model {} has {}",
                    item.embedding.len(),
                    self.config.model,
                    self.config.dimension
                )));
            }
            if item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("data[{index}] holds a NaN or infinite value")));
            }
            out[index] = item.embedding;
        }
        Ok(out)
    }
}

#[derive(serde::Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingItem>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn dimension(&self) -> usize {
        self.config.dimension
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        {
            let mut in_flight = lock(&self.in_flight);
            while *in_flight >= self.config.concurrency.max(1) {
                in_flight =
                    self.slot_freed.wait(in_flight).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *in_flight += 1;
        }
        let result = self.call(texts);
        *lock(&self.in_flight) -= 1;
        self.slot_freed.notify_one();
        result
    }
}
