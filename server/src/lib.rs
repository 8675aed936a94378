//! annal-server: the HTTP API over an [`annal_engine::Engine`], and tooling over its log.
//!
//! The `annal` binary is a thin CLI over this library; tests build the router in-process
//! with [`http::router`] and an [`http::AppState`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use annal_engine::{Engine, EngineConfig};
//! use annal_server::http::{router, AppState, INFLIGHT_BODY_BYTES_DEFAULT};
//!
//! let engine = Arc::new(Engine::open("./data", EngineConfig::default())?);
//! let app = router(AppState::new(engine, INFLIGHT_BODY_BYTES_DEFAULT)?);
//! # let _ = app;
//! # Ok(()) }
//! ```
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod args;
pub mod http;
pub mod logtool;
pub mod progress;
pub mod replaytool;
mod report;
pub mod tools;
pub mod transfer;

pub use args::{RemoteSpec, ServeArgs, Sync};

use std::sync::Arc;

use annal_engine::Secret;
use annal_engine::{
    Embedders, LazyLocalEmbedder, LocalEmbedder, RemoteEmbedder, RemoteEmbedderConfig, LOCAL_MODEL_DIMENSION,
    LOCAL_MODEL_ID,
};

/// The embedders `annal serve` offers: the local all-MiniLM-L6-v2 (loaded on first use;
/// unavailable, saying why, when its files are missing) and each `--remote-embedder`.
pub fn embedders(args: &ServeArgs) -> Result<Embedders, String> {
    let mut embedders = Embedders::default();
    let dir = args.model_dir.clone().unwrap_or_else(LocalEmbedder::default_dir);
    let missing: Vec<&str> = ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        embedders.add(Arc::new(LazyLocalEmbedder::new(dir)));
    } else {
        let reason = format!(
            "the local model's {} missing from {} (run scripts/fetch-model.sh, or pass --model-dir)",
            missing.join(", "),
            dir.display()
        );
        tracing::warn!(%reason, "local embedder unavailable");
        embedders.add_unavailable(LOCAL_MODEL_ID, LOCAL_MODEL_DIMENSION, reason);
    }
    let api_key = std::env::var("ANNAL_EMBEDDER_API_KEY").ok().filter(|k| !k.is_empty()).map(Secret::new);
    for spec in &args.remote_embedders {
        if embedders.knows(&spec.model) && spec.model != LOCAL_MODEL_ID {
            return Err(format!("--remote-embedder: model {:?} given twice", spec.model));
        }
        // A remote may serve the local model (same id), never with another dimension:
        // the indexes that record the id expect its vectors.
        if spec.model == LOCAL_MODEL_ID && spec.dimension != LOCAL_MODEL_DIMENSION {
            return Err(format!(
                "--remote-embedder: {LOCAL_MODEL_ID} gives {LOCAL_MODEL_DIMENSION} dimensions, not {}",
                spec.dimension
            ));
        }
        embedders.add(Arc::new(RemoteEmbedder::new(RemoteEmbedderConfig {
            model: spec.model.clone(),
            dimension: spec.dimension,
            url: spec.url.clone(),
            api_key: api_key.clone(),
            timeout: std::time::Duration::from_millis(args.remote_embedder_timeout_ms),
            concurrency: usize::try_from(args.remote_embedder_concurrency).unwrap_or(4),
        })));
    }
    Ok(embedders)
}
pub use report::report;
