//! The embedders' error.

use std::path::PathBuf;

/// An embedder failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model's files could not be read.
    #[error("model file {path}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The model's files are there but unusable (bad config, missing tensor, ...).
    #[error("model {model}: {reason}")]
    Model {
        /// The model id or directory.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// Running the model failed.
    #[error("inference failed")]
    Inference(#[from] candle_core::Error),
    /// Tokenizing failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The remote service could not be reached, failed, or timed out.
    #[error("embedding service {url}")]
    Remote {
        /// The service's URL.
        url: String,
        /// Why.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The remote service answered something other than one vector per text of the
    /// model's dimension.
    #[error("embedding service {url}: {reason}")]
    BadAnswer {
        /// The service's URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// No embedder of that model id is configured on this server.
    #[error("no embedder for model {model:?} is configured")]
    Unavailable {
        /// The model id.
        model: String,
    },
}
