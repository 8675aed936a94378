//! Version-1 layouts of the bodies that hold an [`HnswConfig`], from before storage
//! kinds: frame kinds 1, 5, 15 and 21 store these. An event whose configs are all flat
//! is still written in them (byte-identical to what earlier builds wrote, and readable
//! by them); one with a quantized config is written as its storage kind (30 to 33),
//! the current layout.

use rkyv::{Archive, Deserialize, Serialize};

use super::types::{
    ConfigPromoted, EmbedderRef, HnswConfig, HnswConfigV1, IndexCreated, IndexCreatedWithEmbedder, Metric,
    TrialRecorded,
};

/// [`IndexCreated`] as kind 1 stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct IndexCreatedV1 {
    name: String,
    dimension: u32,
    metric: Metric,
    config: HnswConfigV1,
}

/// [`ConfigPromoted`] as kind 5 stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct ConfigPromotedV1 {
    index: String,
    config: HnswConfigV1,
    trial_id: String,
    promoted_by: String,
    note: String,
}

/// [`TrialRecorded`] as kind 15 stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct TrialRecordedV1 {
    index: String,
    trial_id: String,
    eval_id: String,
    config: HnswConfigV1,
    k: u32,
    queries: u32,
    vectors: u64,
    recall: f64,
    latency_p50_us: u64,
    latency_p99_us: u64,
    build_ms: u64,
    memory_bytes: u64,
}

/// [`IndexCreatedWithEmbedder`] as kind 21 stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct IndexCreatedWithEmbedderV1 {
    index: IndexCreatedV1,
    embedder: EmbedderRef,
}

impl IndexCreatedV1 {
    /// The version-1 form, when the config is flat.
    pub(super) fn of(b: &IndexCreated) -> Option<Self> {
        Some(Self { name: b.name.clone(), dimension: b.dimension, metric: b.metric, config: b.config.v1()? })
    }
}

impl From<IndexCreatedV1> for IndexCreated {
    fn from(v1: IndexCreatedV1) -> Self {
        Self {
            name: v1.name,
            dimension: v1.dimension,
            metric: v1.metric,
            config: HnswConfig::from(v1.config),
        }
    }
}

impl ConfigPromotedV1 {
    pub(super) fn of(b: &ConfigPromoted) -> Option<Self> {
        Some(Self {
            index: b.index.clone(),
            config: b.config.v1()?,
            trial_id: b.trial_id.clone(),
            promoted_by: b.promoted_by.clone(),
            note: b.note.clone(),
        })
    }
}

impl From<ConfigPromotedV1> for ConfigPromoted {
    fn from(v1: ConfigPromotedV1) -> Self {
        Self {
            index: v1.index,
            config: HnswConfig::from(v1.config),
            trial_id: v1.trial_id,
            promoted_by: v1.promoted_by,
            note: v1.note,
        }
    }
}

impl TrialRecordedV1 {
    pub(super) fn of(b: &TrialRecorded) -> Option<Self> {
        Some(Self {
            index: b.index.clone(),
            trial_id: b.trial_id.clone(),
            eval_id: b.eval_id.clone(),
            config: b.config.v1()?,
            k: b.k,
            queries: b.queries,
            vectors: b.vectors,
            recall: b.recall,
            latency_p50_us: b.latency_p50_us,
            latency_p99_us: b.latency_p99_us,
            build_ms: b.build_ms,
            memory_bytes: b.memory_bytes,
        })
    }
}

impl From<TrialRecordedV1> for TrialRecorded {
    fn from(v1: TrialRecordedV1) -> Self {
        Self {
            index: v1.index,
            trial_id: v1.trial_id,
            eval_id: v1.eval_id,
            config: HnswConfig::from(v1.config),
            k: v1.k,
            queries: v1.queries,
            vectors: v1.vectors,
            recall: v1.recall,
            latency_p50_us: v1.latency_p50_us,
            latency_p99_us: v1.latency_p99_us,
            build_ms: v1.build_ms,
            memory_bytes: v1.memory_bytes,
        }
    }
}

impl IndexCreatedWithEmbedderV1 {
    pub(super) fn of(b: &IndexCreatedWithEmbedder) -> Option<Self> {
        Some(Self { index: IndexCreatedV1::of(&b.index)?, embedder: b.embedder.clone() })
    }
}

impl From<IndexCreatedWithEmbedderV1> for IndexCreatedWithEmbedder {
    fn from(v1: IndexCreatedWithEmbedderV1) -> Self {
        Self { index: IndexCreated::from(v1.index), embedder: v1.embedder }
    }
}
