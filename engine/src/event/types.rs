//! The event vocabulary. Each body is its own rkyv archive type so that a stored kind
//! never changes layout: a new mutation is a new kind, never an edited one.

use rkyv::{Archive, Deserialize, Serialize};

/// Who caused an event and when: carried by every event, so the log is an audit trail.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct Stamp {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The actor (user, service, tool) that caused the event.
    pub actor: String,
}

impl Stamp {
    /// A stamp for `actor` at the current wall-clock time.
    pub fn now(actor: impl Into<String>) -> Self {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { time_ms, actor: actor.into() }
    }
}

/// One event: a stamp and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When and by whom.
    pub stamp: Stamp,
    /// What happened.
    pub body: EventBody,
}

impl Event {
    /// An event caused by `actor` now.
    pub fn new(actor: impl Into<String>, body: EventBody) -> Self {
        Self { stamp: Stamp::now(actor), body }
    }
}

/// Every mutation the engine knows. As JSON (`annal log dump --json`): `{"kind":
/// "<variant>", "body": {<the body's fields>}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "body")]
pub enum EventBody {
    /// An index was created.
    IndexCreated(IndexCreated),
    /// An index and all its vectors were dropped.
    IndexDropped(IndexDropped),
    /// Vectors were inserted or replaced.
    VectorsUpserted(VectorsUpserted),
    /// Vectors were deleted.
    VectorsDeleted(VectorsDeleted),
    /// An HNSW configuration was promoted to serve an index.
    ConfigPromoted(ConfigPromoted),
    /// The last promotion of an index was rolled back.
    PromotionRolledBack(PromotionRolledBack),
    /// A trial of an HNSW configuration was measured.
    HnswTrialRecorded(HnswTrialRecorded),
    /// A storage bucket operation failed.
    BucketErrorRecorded(BucketErrorRecorded),
    /// A partition-scheme migration started.
    MigrationStarted(MigrationStarted),
    /// A batch of records moved to the new partition scheme.
    RecordsMoved(RecordsMoved),
    /// A partition-scheme migration finished.
    MigrationFinished(MigrationFinished),
    /// A snapshot of every projection was durably written to a bucket.
    SnapshotTaken(SnapshotTaken),
    /// A range of old events was moved out of the log into an archive segment object.
    LogArchived(LogArchived),
    /// An evaluation set (queries with exact ground truth) was stored for an index.
    EvalSetCreated(EvalSetCreated),
    /// A trial of an HNSW configuration against an evaluation set was measured.
    TrialRecorded(TrialRecorded),
    /// An index got its first partition scheme.
    SchemeSet(SchemeSet),
    /// A migration of an index to a new partition scheme began.
    MigrationBegun(MigrationBegun),
    /// A batch of a scheme migration: records moved, skipped and refused, and the cursor.
    MigrationBatch(MigrationBatch),
    /// A scheme migration ended: its scheme is in force.
    MigrationEnded(MigrationEnded),
    /// The record of a finished migration was cleared, so another may start.
    MigrationCleared(MigrationCleared),
    /// An index was created with an embedder: its vectors are its documents' embeddings.
    IndexCreatedWithEmbedder(IndexCreatedWithEmbedder),
    /// Documents (text) were inserted or replaced.
    DocumentsUpserted(DocumentsUpserted),
    /// Documents were embedded: their vectors.
    DocumentsEmbedded(DocumentsEmbedded),
    /// An index's embedder was changed: its documents are to be embedded again.
    EmbedderChanged(EmbedderChanged),
    /// `annal recover` cut the log's tail after a sequence number (copying it to a
    /// bucket first).
    LogTruncated(LogTruncated),
    /// A payload index on a metadata field was created.
    PayloadIndexCreated(PayloadIndexCreated),
    /// A payload index was dropped.
    PayloadIndexDropped(PayloadIndexDropped),
    /// Records' metadata was replaced, their vectors kept.
    MetadataSet(MetadataSet),
    /// A document index gains a full-text (BM25) index of its documents' text.
    TextIndexCreated(TextIndexCreated),
}

/// Distance metric of an index. A smaller reported distance is always closer.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - cosine similarity`; vectors are normalised on the way in.
    Cosine,
    /// Negated inner product.
    Ip,
}

impl Metric {
    /// The lowercase name used in the API and the docs.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
        }
    }

    /// Parse an API name (`l2`, `cosine`, `ip`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "l2" => Some(Metric::L2),
            "cosine" => Some(Metric::Cosine),
            "ip" => Some(Metric::Ip),
            _ => None,
        }
    }
}

/// HNSW build and search parameters.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub struct HnswConfig {
    /// Neighbours per node (FAISS `M`).
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Candidate list size while searching.
    pub ef_search: u32,
    /// How the graph stores its vectors (flat floats or quantized codes) and whether
    /// its answers are re-scored exactly. Events written before storage kinds existed
    /// (frame kinds 1, 5, 15 and 21) carry none: they are [`Storage::FLAT`].
    #[serde(default)]
    pub storage: Storage,
}

impl Default for HnswConfig {
    /// Defaults that reach recall@10 of at least 0.95 on the shared 384-d sentence data.
    fn default() -> Self {
        Self { m: 32, ef_construction: 80, ef_search: 64, storage: Storage::FLAT }
    }
}

/// The layout of [`HnswConfig`] before storage kinds: what events of frame kinds 1, 5,
/// 7, 15 and 21 hold (docs/FORMAT.md).
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub struct HnswConfigV1 {
    /// Neighbours per node (FAISS `M`).
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Candidate list size while searching.
    pub ef_search: u32,
}

impl From<HnswConfigV1> for HnswConfig {
    fn from(v1: HnswConfigV1) -> Self {
        Self { m: v1.m, ef_construction: v1.ef_construction, ef_search: v1.ef_search, storage: Storage::FLAT }
    }
}

impl HnswConfig {
    /// The version-1 layout of this config: `None` unless its storage is flat (the only
    /// storage version 1 could say).
    pub fn v1(self) -> Option<HnswConfigV1> {
        (self.storage == Storage::FLAT).then_some(HnswConfigV1 {
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
        })
    }
}

/// How an HNSW graph stores its vectors (docs/OPERATIONS.md, "Quantized storage").
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// 32-bit floats in the graph (FAISS `HNSW<M>`): exact distances.
    Flat,
    /// 16-bit floats (`HNSW<M>_SQfp16`): half the bytes, no training.
    Fp16,
    /// 8 bits per dimension (`HNSW<M>_SQ8`), ranges trained from the index's vectors.
    Sq8,
    /// 4 bits per dimension (`HNSW<M>_SQ4`), ranges trained from the index's vectors.
    Sq4,
    /// Product quantization (`HNSW<M>_PQ<pq_m>`): `pq_m` sub-quantizers of 8 bits,
    /// codebooks trained from the index's vectors.
    Pq,
}

impl StorageKind {
    /// The lowercase name used in the API and the docs.
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Flat => "flat",
            StorageKind::Fp16 => "fp16",
            StorageKind::Sq8 => "sq8",
            StorageKind::Sq4 => "sq4",
            StorageKind::Pq => "pq",
        }
    }

    /// Parse an API name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "flat" => StorageKind::Flat,
            "fp16" => StorageKind::Fp16,
            "sq8" => StorageKind::Sq8,
            "sq4" => StorageKind::Sq4,
            "pq" => StorageKind::Pq,
            _ => return None,
        })
    }
}

/// A graph's storage: its kind, with the product quantizer's sub-quantizer count, and
/// the refine factor (0: none; else each search takes `refine x k` candidates from the
/// graph and re-scores them with the full vectors, kept outside the graph).
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub struct Storage {
    /// The kind.
    pub kind: StorageKind,
    /// Sub-quantizers of a `pq` storage (0 for the other kinds).
    #[serde(default)]
    pub pq_m: u32,
    /// Refine factor (0: none).
    #[serde(default)]
    pub refine: u32,
}

impl Storage {
    /// Full floats in the graph, no refinement: every index before storage kinds.
    pub const FLAT: Storage = Storage { kind: StorageKind::Flat, pq_m: 0, refine: 0 };

    /// Whether the graph holds codes rather than the vectors themselves: the full
    /// vectors are then kept outside it.
    pub fn quantized(self) -> bool {
        self.kind != StorageKind::Flat
    }

    /// The storage of the graph, without the refine step (which is a search setting).
    pub fn codes(self) -> Storage {
        Storage { refine: 0, ..self }
    }

    /// The name of the kind with its sub-quantizers (`flat`, `sq8`, `pq48`).
    pub fn label(self) -> String {
        match self.kind {
            StorageKind::Pq => format!("pq{}", self.pq_m),
            kind => kind.name().to_owned(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self::FLAT
    }
}

/// Body of [`EventBody::IndexCreated`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IndexCreated {
    /// Index name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Distance metric.
    pub metric: Metric,
    /// Initial HNSW configuration.
    pub config: HnswConfig,
}

/// Body of [`EventBody::IndexDropped`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IndexDropped {
    /// Index name.
    pub name: String,
}

/// One vector of an upsert.
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct VectorItem {
    /// Caller-chosen id, unique within the index.
    pub id: String,
    /// The vector, as given (normalisation for cosine happens in the projection).
    pub vector: Vec<f32>,
    /// Optional metadata, as JSON text.
    pub metadata: Option<String>,
    /// Optional partition the record belongs to.
    pub partition: Option<String>,
}

/// Body of [`EventBody::VectorsUpserted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct VectorsUpserted {
    /// Index name.
    pub index: String,
    /// The vectors; an existing id is replaced.
    pub items: Vec<VectorItem>,
}

/// Body of [`EventBody::VectorsDeleted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct VectorsDeleted {
    /// Index name.
    pub index: String,
    /// Ids to delete.
    pub ids: Vec<String>,
}

/// Body of [`EventBody::ConfigPromoted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ConfigPromoted {
    /// Index name.
    pub index: String,
    /// The configuration now serving.
    pub config: HnswConfig,
    /// The trial whose measurements justified it.
    pub trial_id: String,
    /// Who promoted it.
    pub promoted_by: String,
    /// Why.
    pub note: String,
}

/// Body of [`EventBody::PromotionRolledBack`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PromotionRolledBack {
    /// Index name.
    pub index: String,
}

/// Body of [`EventBody::HnswTrialRecorded`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HnswTrialRecorded {
    /// Index name.
    pub index: String,
    /// Trial id, referenced by a later promotion.
    pub trial_id: String,
    /// The configuration tried.
    pub config: HnswConfigV1,
    /// Measured recall@10.
    pub recall: f64,
    /// Median search latency, microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile search latency, microseconds.
    pub latency_p99_us: u64,
    /// Build time, milliseconds.
    pub build_ms: u64,
    /// Index memory, bytes.
    pub memory_bytes: u64,
}

/// A storage bucket operation.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum BucketOp {
    /// Reading an object.
    Read,
    /// Writing an object.
    Write,
    /// Deleting an object.
    Delete,
    /// Listing objects.
    List,
}

/// Body of [`EventBody::BucketErrorRecorded`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BucketErrorRecorded {
    /// Bucket name.
    pub bucket: String,
    /// Operation that failed.
    pub op: BucketOp,
    /// Object key.
    pub key: String,
    /// Error text as reported by the bucket.
    pub error: String,
    /// Whether a retry or fallback rescued the operation.
    pub rescued: bool,
}

/// A partition scheme: how records of an index are spread over partitions.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct PartitionScheme {
    /// Scheme name, e.g. `by-tenant-v2`.
    pub name: String,
    /// The partitions of the scheme.
    pub partitions: Vec<String>,
}

/// Body of [`EventBody::MigrationStarted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MigrationStarted {
    /// Migration id.
    pub migration_id: String,
    /// Index being migrated.
    pub index: String,
    /// The scheme records move to.
    pub scheme: PartitionScheme,
}

/// One record moved between partitions.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct RecordMove {
    /// Record (vector) id.
    pub id: String,
    /// Partition it was in.
    pub from: String,
    /// Partition it is in now.
    pub to: String,
}

/// Body of [`EventBody::RecordsMoved`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RecordsMoved {
    /// Migration id.
    pub migration_id: String,
    /// The moves of this batch.
    pub moves: Vec<RecordMove>,
    /// Resume point: the migration continues after this cursor.
    pub cursor: String,
}

/// Body of [`EventBody::MigrationFinished`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MigrationFinished {
    /// Migration id.
    pub migration_id: String,
    /// Records moved in all.
    pub records_moved: u64,
}

/// Body of [`EventBody::SnapshotTaken`]: appended only after the snapshot object is
/// durably in its bucket, so every such event names a whole object.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct SnapshotTaken {
    /// The last event the snapshot covers.
    pub seq: u64,
    /// The bucket holding it.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
}

/// Body of [`EventBody::LogArchived`]: events `first..=last` were written to one
/// archive segment object (durably, before this event) and removed from the log, in
/// the same write transaction that appended this event and registered the segment.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct LogArchived {
    /// The first archived event.
    pub first: u64,
    /// The last archived event.
    pub last: u64,
    /// The bucket holding the segment.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
}

/// Body of [`EventBody::LogTruncated`]: `annal recover --truncate-after` removed
/// events `first_cut..=last_cut` (a tail it could not trust) from the log, after
/// durably copying their frames, as the log held them, to an object in the archive
/// segment format; this event takes sequence number `first_cut` in the same write
/// transaction.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct LogTruncated {
    /// The first event removed.
    pub first_cut: u64,
    /// The last event removed.
    pub last_cut: u64,
    /// The bucket holding the copy.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
    /// Why, as the operator said it.
    pub reason: String,
}

/// Body of [`EventBody::EvalSetCreated`]: appended only after the evaluation set's
/// object (queries and exact ground truth) is durably in its bucket.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct EvalSetCreated {
    /// Index name.
    pub index: String,
    /// The set's id, unique within the index.
    pub eval_id: String,
    /// Queries sampled from the index's own vectors (each held out of its own truth),
    /// rather than supplied.
    pub sampled: bool,
    /// Number of queries.
    pub queries: u32,
    /// Neighbours in each query's ground truth.
    pub k: u32,
    /// The last event applied when the ground truth was computed.
    pub truth_seq: u64,
    /// The bucket holding the object.
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
}

/// Body of [`EventBody::TrialRecorded`]: a configuration built off to the side from the
/// index's live vectors and measured against an evaluation set.
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TrialRecorded {
    /// Index name.
    pub index: String,
    /// Trial id, unique within the index, referenced by a later promotion.
    pub trial_id: String,
    /// The evaluation set it was measured against.
    pub eval_id: String,
    /// The configuration tried.
    pub config: HnswConfig,
    /// Neighbours asked per query (recall@k).
    pub k: u32,
    /// Queries measured.
    pub queries: u32,
    /// Live vectors the trial graph was built from.
    pub vectors: u64,
    /// Measured recall@k against exact ground truth.
    pub recall: f64,
    /// Median single-query search latency, microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile single-query search latency, microseconds.
    pub latency_p99_us: u64,
    /// Time to build the graph, milliseconds.
    pub build_ms: u64,
    /// Size of the built graph as FAISS serializes it (vectors and links), bytes.
    pub memory_bytes: u64,
}

/// Body of [`EventBody::SchemeSet`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct SchemeSet {
    /// Index name.
    pub index: String,
    /// The partition template, e.g. `tenant={tenant}/year={year}` (version 1).
    pub template: String,
}

/// Body of [`EventBody::MigrationBegun`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationBegun {
    /// Index name.
    pub index: String,
    /// Migration id.
    pub migration_id: String,
    /// The template records move to.
    pub template: String,
    /// The snapshot taken first (0: none was asked for).
    pub snapshot_seq: u64,
}

/// A record a migration could not resolve under its template (left where it was).
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationError {
    /// Record id.
    pub id: String,
    /// Why (the metadata field missing or unusable).
    pub reason: String,
}

/// One record a migration batch moves, as planned: it applies only if the record is
/// still in `from` with the metadata the plan resolved (else a later upsert put it
/// elsewhere, and the upsert wins).
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationMove {
    /// Record id.
    pub id: String,
    /// Its partition when planned (empty: none).
    pub from: String,
    /// Its partition under the new template.
    pub to: String,
    /// CRC-32 of the metadata text the plan resolved (0 for none).
    pub metadata_crc32: u32,
}

/// Body of [`EventBody::MigrationBatch`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationBatch {
    /// Index name.
    pub index: String,
    /// Migration id.
    pub migration_id: String,
    /// Records moved (a record without a partition has `from` empty).
    pub moves: Vec<MigrationMove>,
    /// Records whose path does not change.
    pub skipped: u64,
    /// Records that could not be resolved.
    pub errors: Vec<MigrationError>,
    /// The last id handled: the migration resumes after it.
    pub cursor: String,
}

/// Body of [`EventBody::MigrationEnded`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationEnded {
    /// Index name.
    pub index: String,
    /// Migration id.
    pub migration_id: String,
}

/// Body of [`EventBody::MigrationCleared`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MigrationCleared {
    /// Index name.
    pub index: String,
    /// The finished migration whose record was cleared.
    pub migration_id: String,
}

/// The embedder an index's documents are embedded with.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct EmbedderRef {
    /// The model id (`all-MiniLM-L6-v2`, or a configured remote model).
    pub model: String,
    /// The dimension of its vectors (the index's dimension).
    pub dimension: u32,
}

/// Body of [`EventBody::IndexCreatedWithEmbedder`]: an index whose vectors are the
/// embeddings of its documents.
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IndexCreatedWithEmbedder {
    /// The index, as [`IndexCreated`] records one.
    pub index: IndexCreated,
    /// The embedder its documents are embedded with.
    pub embedder: EmbedderRef,
}

/// One document of a [`DocumentsUpserted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DocumentItem {
    /// Caller-chosen id, unique within the index.
    pub id: String,
    /// The text: the source of truth its vector is computed from.
    pub text: String,
    /// Optional metadata, as JSON text.
    pub metadata: Option<String>,
    /// Optional partition the record belongs to.
    pub partition: Option<String>,
}

/// Body of [`EventBody::DocumentsUpserted`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DocumentsUpserted {
    /// Index name.
    pub index: String,
    /// The documents; an existing id is replaced.
    pub items: Vec<DocumentItem>,
}

/// One embedded document of a [`DocumentsEmbedded`].
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EmbeddedItem {
    /// The document's id.
    pub id: String,
    /// The sequence number of the document version that was embedded: applied only if
    /// it is still the document's current version.
    pub doc_seq: u64,
    /// The embedding (unit length).
    pub vector: Vec<f32>,
}

/// Body of [`EventBody::DocumentsEmbedded`]: the embedder projection's output, a batch
/// of document vectors, written to the log so that replay never embeds again.
#[derive(serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DocumentsEmbedded {
    /// Index name.
    pub index: String,
    /// The model that computed the vectors.
    pub model: String,
    /// The embedder generation they belong to: the sequence number of the event that
    /// set the index's embedder (its creation or its last [`EmbedderChanged`]).
    pub generation: u64,
    /// The vectors.
    pub items: Vec<EmbeddedItem>,
}

/// Body of [`EventBody::EmbedderChanged`]: the index's documents are re-embedded with
/// another embedder (backfill work), each keeping its old vector until then.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct EmbedderChanged {
    /// Index name.
    pub index: String,
    /// The new embedder (same dimension as the index).
    pub embedder: EmbedderRef,
}

/// The value type a payload index holds (docs/OPERATIONS.md, "Metadata filters").
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub enum PayloadKind {
    /// Strings, matched exactly (`$eq`, `$in`, `$contains`): an inverted index.
    Keyword,
    /// Integers (`$eq`, `$in`, ranges): an ordered map.
    Integer,
    /// Numbers (`$eq`, `$in`, ranges): an ordered map.
    Float,
    /// Booleans (`$eq`).
    Bool,
    /// RFC 3339 timestamps (ranges): an ordered map of instants.
    Datetime,
}

impl PayloadKind {
    /// The lowercase name used in the API and the docs.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Keyword => "keyword",
            PayloadKind::Integer => "integer",
            PayloadKind::Float => "float",
            PayloadKind::Bool => "bool",
            PayloadKind::Datetime => "datetime",
        }
    }

    /// Parse an API name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "keyword" => Some(PayloadKind::Keyword),
            "integer" => Some(PayloadKind::Integer),
            "float" => Some(PayloadKind::Float),
            "bool" => Some(PayloadKind::Bool),
            "datetime" => Some(PayloadKind::Datetime),
            _ => None,
        }
    }
}

/// Body of [`EventBody::PayloadIndexCreated`]: a metadata field of an index is indexed
/// for filters from now on (its projection is built from the records live at this
/// event).
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct PayloadIndexCreated {
    /// Index name.
    pub index: String,
    /// The metadata field, a dotted path (`meta.author`).
    pub field: String,
    /// The value type indexed.
    pub kind: PayloadKind,
}

/// Body of [`EventBody::PayloadIndexDropped`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct PayloadIndexDropped {
    /// Index name.
    pub index: String,
    /// The metadata field whose payload index is dropped.
    pub field: String,
}

/// One record's new metadata in a [`MetadataSet`].
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MetadataItem {
    /// The record's id.
    pub id: String,
    /// Its whole new metadata (a merge was resolved before the event was written), as
    /// JSON text; `None` clears it.
    pub metadata: Option<String>,
    /// Its partition path as the index's template resolves the new metadata (`None`:
    /// the record keeps its partition).
    pub partition: Option<String>,
}

/// Body of [`EventBody::MetadataSet`]: records' metadata replaced, their vectors kept.
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct MetadataSet {
    /// Index name.
    pub index: String,
    /// The records and their new metadata.
    pub items: Vec<MetadataItem>,
}

/// How a text index splits text into terms (docs/OPERATIONS.md, "Keyword and hybrid
/// search").
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq,
)]
pub enum TextTokenizer {
    /// Runs of letters and digits (`CAP_SYS_NICE` is `cap`, `sys`, `nice`).
    Simple,
    /// Runs of non-whitespace (`os.path.join` is one term, punctuation kept).
    Whitespace,
}

impl TextTokenizer {
    /// The lowercase name used in the API and the docs.
    pub fn name(self) -> &'static str {
        match self {
            TextTokenizer::Simple => "simple",
            TextTokenizer::Whitespace => "whitespace",
        }
    }

    /// Parse an API name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "simple" => Some(TextTokenizer::Simple),
            "whitespace" => Some(TextTokenizer::Whitespace),
            _ => None,
        }
    }
}

/// Body of [`EventBody::TextIndexCreated`]: the analyzer and the fields of an index's
/// full-text projection, fixed at creation (a change of analyzer is a new index).
#[derive(
    serde::Serialize, serde::Deserialize, Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq,
)]
pub struct TextIndexCreated {
    /// Index name.
    pub index: String,
    /// How text is split into terms.
    pub tokenizer: TextTokenizer,
    /// The stemmer's language (`english`; `None`: no stemming). Terms are lowercased
    /// either way.
    pub stemmer: Option<String>,
    /// Top-level metadata fields whose string values are indexed beside the text, each
    /// as a field of its own name in the query syntax.
    pub fields: Vec<String>,
}
