//! Every bound on what a caller can send and on what the log stores, named once.
//!
//! Inputs are checked against these before anything is allocated for them, and the
//! frame decoder checks a stored length against [`EVENT_BYTES_MAX`] before it copies.
//! Bounds that are not about input (batch sizes of internal loops, caches, retention
//! of in-memory history) live beside the code they pace; docs/ARCHITECTURE.md,
//! "Bounds", lists every one with its owner.

/// Largest encoded event payload (the rkyv bytes inside one frame).
pub const EVENT_BYTES_MAX: usize = 96 * 1024 * 1024;
/// Most items (vectors or ids) in one upsert, delete or move batch.
pub const BATCH_ITEMS_MAX: usize = 10_000;
/// Longest vector id, in bytes of UTF-8.
pub const ID_BYTES_MAX: usize = 512;
/// Longest index name; names use only `[A-Za-z0-9_-]`.
pub const NAME_BYTES_MAX: usize = 128;
/// Largest vector dimension.
pub const DIMENSION_MAX: u32 = 4096;
/// Longest metadata document, in bytes of JSON text.
pub const METADATA_BYTES_MAX: usize = 64 * 1024;
/// Longest free text carried by an event (actor, note, error text, keys, partitions).
pub const TEXT_BYTES_MAX: usize = 16 * 1024;
/// Most events in one `append` call.
pub const APPEND_EVENTS_MAX: usize = 4096;
/// Largest `k` a search may ask for.
pub const SEARCH_K_MAX: usize = 1000;
/// Most queries in one batched search.
pub const SEARCH_BATCH_MAX: usize = 1024;
/// HNSW `M` (neighbours per node) bounds.
pub const HNSW_M_MAX: u32 = 256;
/// HNSW `efConstruction` / `efSearch` upper bound.
pub const HNSW_EF_MAX: u32 = 4096;
/// Upper bound on the bytes one group commit puts into a single write transaction.
pub const GROUP_COMMIT_BYTES_MAX: usize = 256 * 1024 * 1024;
/// redb's page cache for the log (its default is 1 GiB). The log is written once and
/// read mostly once, at replay, so a small cache costs little and keeps resident memory
/// for the projections.
pub const LOG_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Default bound on frame bytes queued for the log writer (backpressure beyond it).
pub const LOG_QUEUE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Bucket errors the error journal keeps in memory (the newest; the log keeps all).
pub const JOURNAL_ENTRIES_MAX: usize = 2_000;
/// Longest object key, in bytes of UTF-8.
pub const OBJECT_KEY_BYTES_MAX: usize = 1024;
/// Most objects one listing returns; a longer listing says it was truncated.
pub const LIST_OBJECTS_MAX: usize = 10_000;
/// Largest object a whole-object read returns (larger ones are refused before their
/// body is read).
pub const OBJECT_GET_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Longest error text a bucket error event keeps; longer texts are cut at a character
/// boundary.
pub const BUCKET_ERROR_TEXT_MAX: usize = 4 * 1024;
/// Bytes of the object a reachability probe writes, reads back and deletes.
pub const PROBE_OBJECT_BYTES: usize = 64;
/// Longest partition template, in bytes.
pub const TEMPLATE_BYTES_MAX: usize = 1024;
/// Longest keyword query text, in bytes.
pub const KEYWORD_QUERY_BYTES_MAX: usize = 4 * 1024;
/// Most whitespace-separated words of a keyword query (each becomes clauses).
pub const KEYWORD_QUERY_TERMS_MAX: usize = 256;
/// Deepest nesting of parentheses in a keyword query in the query syntax (the parser
/// recurses per level).
pub const KEYWORD_QUERY_DEPTH_MAX: usize = 16;
/// Metadata fields a text index indexes beside the text.
pub const TEXT_FIELDS_MAX: usize = 16;
/// Candidates each side of a hybrid search contributes to the fusion, at most.
pub const HYBRID_CANDIDATES_MAX: usize = 1_000;
/// Longest document text, in bytes.
pub const DOCUMENT_TEXT_BYTES_MAX: usize = 64 * 1024;
/// Longest bucket name; names use only `[A-Za-z0-9_-]`.
pub const BUCKET_NAME_BYTES_MAX: usize = 64;
/// Most queries in an evaluation set.
pub const EVAL_QUERIES_MAX: u32 = 1_000;
/// Most records per migration batch (one event each).
pub const MIGRATION_BATCH_MAX: usize = 4096;
/// Deepest nesting of a metadata filter (`$and`/`$or`/`$not` and field objects).
pub const FILTER_DEPTH_MAX: usize = 16;
/// Most clauses (field conditions and logical operators) in one metadata filter.
pub const FILTER_CLAUSES_MAX: usize = 256;
/// Most values in one `$in`/`$nin` list.
pub const FILTER_IN_MAX: usize = 1024;
/// Longest field path in a filter or a payload index (`a.b.c`), in bytes.
pub const FILTER_KEY_BYTES_MAX: usize = 256;
/// Most payload indexes on one index.
pub const PAYLOAD_INDEXES_MAX: usize = 64;
/// Most records one `items` page returns.
pub const ITEMS_LIMIT_MAX: usize = 1000;

/// The largest refine factor: a search re-scores at most `refine x k` candidates
/// (with `k` up to `SEARCH_K_MAX`), one full-vector read each.
pub const REFINE_MAX: u32 = 16;
