//! Handlers. Each one parses its body, runs the engine call on the blocking pool (the
//! engine waits on fsync and on the projector), and shapes the answer. Every write
//! answers with the sequence number of its event, so a caller can find it in the log.

use std::sync::Arc;

use annal_engine::event::VectorItem;
use annal_engine::limits::{METADATA_BYTES_MAX, SEARCH_BATCH_MAX};
use annal_engine::{HnswConfig, IndexInfo, Metric, ProjectionError};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::json::ApiJson;
use super::limits::SEARCH_K_DEFAULT;
use super::state::AppState;
use super::text_search::{Mode, TextFields};

pub(super) use super::exec::{blocking, raw_metadata};

/// The storage of a config from a request body's `storage` (`flat`, `fp16`, `sq8`,
/// `sq4`, `pq`; default flat), `pq_m` (sub-quantizers of `pq`) and `refine` (1 to 16:
/// re-score `refine x k` candidates exactly; absent: none). The engine checks the
/// combination against the index (docs/OPERATIONS.md, "Quantized storage").
pub(super) fn storage_of(
    storage: Option<&str>,
    pq_m: Option<u32>,
    refine: Option<u32>,
) -> Result<annal_engine::GraphStorage, ApiError> {
    let kind = match storage {
        None => annal_engine::StorageKind::Flat,
        Some(name) => annal_engine::StorageKind::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "storage: unknown storage {name:?} (use flat, fp16, sq8, sq4 or pq)"
            ))
        })?,
    };
    if refine == Some(0) {
        return Err(ApiError::bad_request(format!(
            "refine: must be 1 to {} (leave it out for none), got 0",
            annal_engine::limits::REFINE_MAX
        )));
    }
    if kind == annal_engine::StorageKind::Pq && pq_m.is_none() {
        return Err(ApiError::bad_request(
            "pq_m: required with storage pq (sub-quantizers dividing the dimension)",
        ));
    }
    Ok(annal_engine::GraphStorage { kind, pq_m: pq_m.unwrap_or(0), refine: refine.unwrap_or(0) })
}

/// A config's storage as the API shows it: `storage`, `pq_m`, `refine`.
pub(super) fn storage_json(config: &HnswConfig) -> serde_json::Value {
    json!({
        "storage": config.storage.kind.name(),
        "pq_m": config.storage.pq_m,
        "refine": config.storage.refine,
    })
}

/// `{m, ef_construction, ef_search, storage, pq_m, refine}` of a config.
pub(super) fn config_json(config: &HnswConfig) -> serde_json::Value {
    let mut out = json!({
        "m": config.m,
        "ef_construction": config.ef_construction,
        "ef_search": config.ef_search,
    });
    if let (Some(out), serde_json::Value::Object(storage)) = (out.as_object_mut(), storage_json(config)) {
        out.extend(storage);
    }
    out
}

/// Body of `POST /vectors/index`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    name: String,
    /// Required without `embedder`; with one, optional and then checked against the
    /// model's.
    dimension: Option<u32>,
    /// A configured embedder's model id (`all-MiniLM-L6-v2`): the index then takes
    /// documents (text) and its vectors are their embeddings.
    embedder: Option<String>,
    distance: Option<String>,
    m: Option<u32>,
    ef_construction: Option<u32>,
    ef_search: Option<u32>,
    /// How the graph stores vectors: `flat` (default), `fp16`, `sq8`, `sq4` or `pq`.
    storage: Option<String>,
    /// Sub-quantizers of `pq` storage (must divide the dimension).
    pq_m: Option<u32>,
    /// Re-score `refine x k` graph candidates with the full vectors (1 to 16; quantized
    /// storage only).
    refine: Option<u32>,
    /// A document index's full-text (BM25) index for keyword and hybrid search; on by
    /// default (simple tokenizer, English stemmer), `{"enabled": false}` for none.
    text: Option<TextConfig>,
}

/// The full-text index of a document index, as `POST /vectors/index` takes it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// `false`: no full-text index (keyword and hybrid search answer 400).
    enabled: Option<bool>,
    /// `simple` (default: runs of letters and digits, so `CAP_SYS_NICE` is three
    /// terms) or `whitespace` (split at whitespace only: identifiers stay whole).
    tokenizer: Option<String>,
    /// The stemmer's language (default `english`), or `null` for no stemming.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    stemmer: Option<Option<String>>,
    /// Top-level metadata fields whose strings (or arrays of strings) are indexed and
    /// searched too (at most 16).
    fields: Option<Vec<String>>,
}

/// A field that is present, even as `null` (`Some(None)`), against one that is absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl TextConfig {
    /// The engine's configuration (`None`: no full-text index).
    fn spec(self) -> Result<Option<annal_engine::TextSpec>, ApiError> {
        if self.enabled == Some(false) {
            if self.tokenizer.is_some() || self.stemmer.is_some() || self.fields.is_some() {
                return Err(ApiError::bad_request("text.enabled: false takes no other text settings"));
            }
            return Ok(None);
        }
        let defaults = annal_engine::TextSpec::default();
        let tokenizer = match self.tokenizer.as_deref() {
            None => defaults.tokenizer,
            Some(name) => annal_engine::TextTokenizer::parse(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "text.tokenizer: unknown tokenizer {name:?} (use simple or whitespace)"
                ))
            })?,
        };
        Ok(Some(annal_engine::TextSpec {
            tokenizer,
            stemmer: self.stemmer.unwrap_or(defaults.stemmer),
            fields: self.fields.unwrap_or_default(),
        }))
    }
}

/// An index's creation parameters as the API shows them.
#[derive(Serialize)]
pub struct Params {
    name: String,
    dimension: u32,
    distance: &'static str,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
    storage: &'static str,
    pq_m: u32,
    refine: u32,
}

/// `{params, length}`.
#[derive(Serialize)]
pub struct IndexView {
    params: Params,
    length: u64,
}

impl From<IndexInfo> for IndexView {
    fn from(info: IndexInfo) -> Self {
        let p = info.params;
        Self {
            params: Params {
                name: p.name,
                dimension: p.dimension,
                distance: p.metric.name(),
                m: p.config.m,
                ef_construction: p.config.ef_construction,
                ef_search: p.config.ef_search,
                storage: p.config.storage.kind.name(),
                pq_m: p.config.storage.pq_m,
                refine: p.config.storage.refine,
            },
            length: info.length,
        }
    }
}

/// `{params, length, seq}`: a created index and the event that created it.
#[derive(Serialize)]
struct CreatedView {
    #[serde(flatten)]
    index: IndexView,
    seq: u64,
}

/// `POST /vectors/index`: 201 `{params, length, seq}`.
pub async fn create_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let body: CreateIndex = body.parse()?;
    let metric = match body.distance.as_deref() {
        None => Metric::Cosine,
        Some(name) => Metric::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!("distance: unknown distance {name:?} (use l2, cosine or ip)"))
        })?,
    };
    let defaults = HnswConfig::default();
    let config = HnswConfig {
        m: body.m.unwrap_or(defaults.m),
        ef_construction: body.ef_construction.unwrap_or(defaults.ef_construction),
        ef_search: body.ef_search.unwrap_or(defaults.ef_search),
        storage: storage_of(body.storage.as_deref(), body.pq_m, body.refine)?,
    };
    let engine = state.engine;
    let text = match (&body.embedder, body.text) {
        (_, None) => Some(annal_engine::TextSpec::default()),
        (Some(_), Some(text)) => text.spec()?,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "text: only a document index (one with an embedder) has a full-text index",
            ))
        }
    };
    let created = match (body.embedder, body.dimension) {
        (Some(model), dimension) => {
            blocking(move || {
                engine.create_document_index_with(&actor, &body.name, &model, dimension, metric, config, text)
            })
            .await?
        }
        (None, Some(dimension)) => {
            blocking(move || engine.create_index(&actor, &body.name, dimension, metric, config)).await?
        }
        (None, None) => return Err(ApiError::bad_request("dimension: required (or give an embedder)")),
    };
    Ok((StatusCode::CREATED, Json(CreatedView { index: created.info.into(), seq: created.seq })))
}

/// `GET /vectors/index`: `{count, names}`.
pub async fn list_indexes(
    State(state): State<AppState>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let as_of = as_of(&state, q).await?;
    let engine = state.engine;
    let names = blocking(move || match as_of {
        Some(seq) => Ok(engine.view_at(seq)?.list_indexes()),
        None => Ok(engine.list_indexes()),
    })
    .await?;
    Ok(Json(json!({ "count": names.len(), "names": names })))
}

/// `?as_of=S` on the read routes: answer from the state as of event S.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsOf {
    as_of: Option<u64>,
    min_seq: Option<u64>,
}

/// How long a read waits for its `min_seq` before answering 503.
pub const MIN_SEQ_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn read_query(q: Result<Query<AsOf>, QueryRejection>) -> Result<AsOf, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
}

/// The read's `as_of`, after waiting (on the blocking pool) for its `min_seq`.
pub(crate) async fn as_of(
    state: &AppState,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Option<u64>, ApiError> {
    let q = read_query(q)?;
    if let Some(seq) = q.min_seq {
        // Applied already: no thread, no wait.
        if state.engine.startup().applied_seq < seq {
            use std::sync::atomic::Ordering;
            struct Waiter;
            impl Drop for Waiter {
                fn drop(&mut self) {
                    MIN_SEQ_WAITERS.fetch_sub(1, Ordering::AcqRel);
                }
            }
            if MIN_SEQ_WAITERS.fetch_add(1, Ordering::AcqRel) >= MIN_SEQ_WAITERS_MAX {
                MIN_SEQ_WAITERS.fetch_sub(1, Ordering::AcqRel);
                return Err(ApiError::not_applied_yet(format!(
                    "{MIN_SEQ_WAITERS_MAX} reads are waiting for their min_seq already; retry"
                )));
            }
            let waiter = Waiter;
            let engine = Arc::clone(&state.engine);
            blocking(move || {
                let _waiter = waiter;
                engine.wait_for_seq(seq, MIN_SEQ_WAIT)
            })
            .await?;
        }
    }
    Ok(q.as_of)
}

/// `GET /vectors/index/{name}`: `{params, length, applied_seq, last_seq}`.
pub async fn get_index(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let as_of = as_of(&state, q).await?;
    // Read before the index: the length answered includes at least this much.
    let applied_seq = state.engine.startup().applied_seq;
    let engine = Arc::clone(&state.engine);
    // Reading an index waits on its lock, which a large add holds: keep it off the
    // async workers.
    let (info, text) = blocking(move || match as_of {
        Some(seq) => Ok((engine.view_at(seq)?.get_index(&name)?, None)),
        None => Ok((engine.get_index(&name)?, engine.text_index(&name)?)),
    })
    .await?;
    // Whether everything written is searchable yet: applied against appended.
    let mut view = serde_json::to_value(IndexView::from(info)).map_err(|e| ApiError::internal(&e))?;
    if let Some((spec, documents)) = text {
        view["text"] = json!({
            "tokenizer": spec.tokenizer.name(),
            "stemmer": spec.stemmer,
            "fields": spec.fields,
            "documents": documents,
        });
    }
    view["applied_seq"] = applied_seq.into();
    view["last_seq"] = state.engine.log().last_seq().into();
    Ok(Json(view))
}

/// `DELETE /vectors/index/{name}`: `{dropped, seq}`.
pub async fn drop_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let engine = state.engine;
    let dropped = name.clone();
    let seq = blocking(move || engine.drop_index(&actor, &dropped)).await?;
    Ok(Json(json!({ "dropped": name, "seq": seq })))
}

impl schemars::JsonSchema for VectorField {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Vector".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A vector: an array of numbers, or base64 (standard, padded) of its little-endian float32 values.",
            "oneOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "string", "contentEncoding": "base64"}
            ]
        })
    }
}

impl schemars::JsonSchema for Queries {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Queries".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = generator.subschema_for::<VectorField>();
        schemars::json_schema!({"type": "array", "items": item, "maxItems": SEARCH_BATCH_MAX})
    }
}

impl schemars::JsonSchema for Metadata<'_> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Metadata".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"description": "Any JSON document of at most 64 KiB, stored and returned as sent."})
    }
}

/// Item metadata as the caller's JSON text, borrowed from the request body. Its size is
/// checked as it is parsed, so an oversized document is refused before it is copied.
pub(crate) struct Metadata<'a>(pub(crate) &'a RawValue);

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'a RawValue>::deserialize(deserializer)?;
        let len = raw.get().len();
        if len > METADATA_BYTES_MAX {
            return Err(D::Error::custom(format!("is {len} bytes, over the limit of {METADATA_BYTES_MAX}")));
        }
        Ok(Metadata(raw))
    }
}

/// A vector as the API takes it: a JSON array of numbers, or a string holding the
/// base64 (standard alphabet, padded) of its little-endian `float32`s, decoded straight
/// into the buffer (no intermediate tree, no decimal parsing).
pub(crate) struct VectorField(pub(crate) Vec<f32>);

impl<'de> Deserialize<'de> for VectorField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = VectorField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of numbers or base64 of little-endian float32")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<VectorField, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(x) = seq.next_element::<f32>()? {
                    out.push(x);
                }
                Ok(VectorField(out))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<VectorField, E> {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| E::custom(format!("is not base64: {e}")))?;
                if bytes.len() % 4 != 0 {
                    return Err(E::custom(format!(
                        "base64 decodes to {} bytes, not a whole number of float32s",
                        bytes.len()
                    )));
                }
                Ok(VectorField(
                    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                ))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// The queries of a batched search (or an evaluation set), refused as soon as there
/// are more than `SEARCH_BATCH_MAX`: a body of millions of tiny rows is not built first.
pub(crate) struct Queries(pub(crate) Vec<Vec<f32>>);

impl<'de> Deserialize<'de> for Queries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> serde::de::Visitor<'de> for Rows {
            type Value = Queries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of at most {SEARCH_BATCH_MAX} vectors")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Queries, A::Error> {
                let mut rows = Vec::new();
                while let Some(VectorField(row)) = seq.next_element::<VectorField>()? {
                    if rows.len() == SEARCH_BATCH_MAX {
                        return Err(serde::de::Error::custom(format!(
                            "more than {SEARCH_BATCH_MAX} vectors"
                        )));
                    }
                    rows.push(row);
                }
                Ok(Queries(rows))
            }
        }
        deserializer.deserialize_seq(Rows)
    }
}

/// Reads waiting for their `min_seq` at once; more are refused with 503 rather than
/// tying up the blocking pool the other routes share.
pub const MIN_SEQ_WAITERS_MAX: usize = 64;
static MIN_SEQ_WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `wait` of a write: `"applied"` (default) or `"durable"`.
pub(crate) fn wait_of(wait: Option<&str>) -> Result<annal_engine::Wait, ApiError> {
    match wait {
        None | Some("applied") => Ok(annal_engine::Wait::Applied),
        Some("durable") => Ok(annal_engine::Wait::Durable),
        Some(other) => {
            Err(ApiError::bad_request(format!("wait: {other:?} is not \"applied\" or \"durable\"")))
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddItem<'a> {
    id: String,
    vector: VectorField,
    /// JSON `null` is the same as no metadata.
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    partition: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Add<'a> {
    #[serde(borrow)]
    items: Vec<AddItem<'a>>,
    wait: Option<String>,
}

/// `POST /vectors/index/{name}/add`: `{added, length, seq, applied}`.
pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let add = body.parse::<Add<'_>>()?;
    let wait = wait_of(add.wait.as_deref())?;
    let items = add
        .items
        .into_iter()
        .map(|item| VectorItem {
            id: item.id,
            vector: item.vector.0,
            metadata: item.metadata.map(|m| m.0.get().to_owned()),
            partition: item.partition,
        })
        .collect();
    // The body is not needed past this point: give its memory back before the engine
    // call, which may wait long for fsync and the projector.
    drop(body);
    let engine = state.engine;
    let out = blocking(move || engine.upsert_with(&actor, &name, items, wait)).await?;
    Ok(upserted(&out, wait))
}

/// `{added, length, seq, applied}`: the answer of an upsert of vectors or documents.
pub(crate) fn upserted(out: &annal_engine::Upserted, wait: annal_engine::Wait) -> Json<Value> {
    Json(json!({
        "added": out.added,
        "length": out.length,
        "seq": out.seq,
        "applied": wait == annal_engine::Wait::Applied,
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Delete {
    /// The ids to delete (unknown ids are ignored). Give `ids`, or `filter` and/or
    /// `partition`.
    ids: Option<Vec<String>>,
    /// Delete every record matching this metadata filter (docs/OPERATIONS.md, "Metadata
    /// filters"); the event records the ids it resolved to.
    #[schemars(with = "Option<super::filter_body::FilterSchema>")]
    filter: Option<Value>,
    /// Delete every record in these partitions (with `filter`: both must hold).
    partition: Option<String>,
    wait: Option<String>,
}

/// `POST /vectors/index/{name}/delete`: `{deleted, length, seq, applied}`.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let Delete { ids, filter, partition, wait } = body.parse()?;
    let wait = wait_of(wait.as_deref())?;
    let engine = state.engine;
    let out = match (ids, filter, partition) {
        (Some(ids), None, None) => blocking(move || engine.delete_with(&actor, &name, ids, wait)).await?,
        (None, filter, partition) if filter.is_some() || partition.is_some() => {
            let select = super::filter_body::select(filter.as_ref(), partition)?;
            blocking(move || engine.delete_where(&actor, &name, &select, wait)).await?
        }
        _ => return Err(ApiError::bad_request("ids: give ids, or a filter and/or a partition (not both)")),
    };
    Ok(Json(json!({
        "deleted": out.deleted,
        "length": out.length,
        "seq": out.seq,
        "applied": wait == annal_engine::Wait::Applied,
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    /// One query (array or base64).
    vector: Option<VectorField>,
    /// Many queries at once (each an array or base64): one result list per query.
    vectors: Option<Queries>,
    /// One query as text, embedded with the index's embedder (document indexes).
    text: Option<String>,
    /// Many text queries at once (at most 1,024).
    texts: Option<Vec<String>>,
    k: Option<usize>,
    /// Only records in these partitions: an exact path, or a prefix ending in `/`.
    partition: Option<String>,
    /// Only records whose metadata matches (docs/OPERATIONS.md, "Metadata filters").
    #[schemars(with = "Option<super::filter_body::FilterSchema>")]
    filter: Option<Value>,
    /// Answer the plan the filters ran with beside the results.
    explain: Option<bool>,
    /// `semantic` (default: by the embedding of `text`, or the vector given),
    /// `keyword` (BM25 over the documents' text; needs no embedder) or `hybrid` (both,
    /// fused). Keyword and hybrid take one `text` (docs/OPERATIONS.md, "Keyword and
    /// hybrid search").
    mode: Option<String>,
    /// Hybrid: `adaptive` (the default: reciprocal rank fusion with each side weighted
    /// by how much of the query the keyword hits hold), `rrf` (plain reciprocal rank
    /// fusion) or `weighted` (normalized scores, weighted by `alpha`).
    fusion: Option<String>,
    /// The rank constant k of `adaptive` and `rrf` (> 0, default 60): larger flattens
    /// the difference between ranks.
    rrf_k: Option<f32>,
    /// Weighted fusion: the dense side's weight, 0 to 1 (default 0.5).
    alpha: Option<f32>,
    /// Hybrid: candidates taken from each side (k to 1,000; default 4k, at least 40).
    candidates: Option<usize>,
    /// Hybrid: each hit's dense rank and distance and keyword rank and BM25 score.
    scores: Option<bool>,
    /// Keyword and hybrid: `text` in tantivy's query syntax (`+must -not "a phrase"
    /// field:word`) rather than plain terms, any of which may match.
    syntax: Option<bool>,
}

/// One hit; metadata goes out as the stored JSON text, not re-parsed.
#[derive(Serialize)]
struct SearchHit<'a> {
    id: &'a str,
    distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<&'a str>,
    /// The document's current text (document indexes).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct SearchResults<'a> {
    results: Vec<SearchHit<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Value>,
}

/// One result list per query of a batched search.
#[derive(Serialize)]
struct BatchResults<'a> {
    results: Vec<Vec<SearchHit<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Value>,
}

/// `POST /vectors/index/{name}/search`: `{results: [{id, distance, metadata?, partition?}]}`,
/// or with `vectors` one list per query.
pub async fn search(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
    body: ApiJson,
) -> Result<Response, ApiError> {
    // The body first: a bad one is refused at once, and its memory is not held while
    // the read waits for its min_seq.
    let Search {
        vector,
        vectors,
        text,
        texts,
        k,
        partition,
        filter,
        explain,
        mode,
        fusion,
        rrf_k,
        alpha,
        candidates,
        scores,
        syntax,
    } = body.parse()?;
    drop(body);
    let mode = Mode::parse(mode.as_deref())?;
    let fields = TextFields { fusion, rrf_k, alpha, candidates, scores, syntax };
    fields.check_for(mode)?;
    let select = super::filter_body::select(filter.as_ref(), partition)?;
    if mode != Mode::Semantic {
        let text = match (vector, vectors, text, texts) {
            (None, None, Some(text), None) => text,
            _ => {
                return Err(ApiError::bad_request(
                    "mode: keyword and hybrid search take one `text` (not vector, vectors or texts)",
                ))
            }
        };
        let as_of = as_of(&state, q).await?;
        let k = k.unwrap_or(SEARCH_K_DEFAULT);
        let explain = explain.unwrap_or(false);
        return super::text_search::run(state.engine, name, mode, text, k, select, fields, as_of, explain)
            .await;
    }
    let as_of = as_of(&state, q).await?;
    enum Query {
        Vectors(Vec<Vec<f32>>),
        Texts(Vec<String>),
    }
    let (query, batched) = match (vector, vectors, text, texts) {
        (Some(VectorField(v)), None, None, None) => (Query::Vectors(vec![v]), false),
        (None, Some(Queries(vs)), None, None) => (Query::Vectors(vs), true),
        (None, None, Some(t), None) => (Query::Texts(vec![t]), false),
        (None, None, None, Some(ts)) if ts.len() > SEARCH_BATCH_MAX => {
            return Err(ApiError::bad_request(format!(
                "texts: must hold 1 to {SEARCH_BATCH_MAX} queries, got {}",
                ts.len()
            )))
        }
        (None, None, None, Some(ts)) => (Query::Texts(ts), true),
        _ => return Err(ApiError::bad_request("vector: give one of vector, vectors, text or texts")),
    };
    let engine = state.engine;
    let k = k.unwrap_or(SEARCH_K_DEFAULT);
    let (lists, texts, plan) = blocking(move || {
        let queries = match query {
            Query::Vectors(vs) => vs,
            Query::Texts(ts) => {
                if ts.is_empty() {
                    return Err(annal_engine::InvalidInput {
                        field: "texts".into(),
                        reason: format!("must hold 1 to {SEARCH_BATCH_MAX} queries, got 0"),
                    }
                    .into());
                }
                let refs: Vec<&str> = ts.iter().map(String::as_str).collect();
                engine.embed_queries(&name, &refs)?
            }
        };
        let annal_engine::Searched { hits: lists, plan } = match as_of {
            Some(seq) => engine.view_at(seq)?.query(&name, queries, k, &select)?,
            None => engine.query(&name, queries, k, &select)?,
        };
        // A document's current text beside its hit (not for a past state).
        let texts: Vec<Vec<Option<Arc<str>>>> = if as_of.is_none() && engine.is_document_index(&name) {
            lists
                .iter()
                .map(|hits| hits.iter().map(|h| engine.document_text(&name, &h.id)).collect())
                .collect()
        } else {
            Vec::new()
        };
        Ok((lists, texts, plan))
    })
    .await?;
    let explain = explain.unwrap_or(false).then(|| super::filter_body::plan_json(&plan));
    let row_texts = |row: usize| texts.get(row).map(Vec::as_slice).unwrap_or_default();
    if batched {
        let results: Vec<Vec<SearchHit<'_>>> =
            lists.iter().enumerate().map(|(row, hits)| shape(hits, row_texts(row))).collect();
        return Ok(Json(BatchResults { results, explain }).into_response());
    }
    let results = lists.first().map(|hits| shape(hits, row_texts(0))).unwrap_or_default();
    Ok(Json(SearchResults { results, explain }).into_response())
}

/// Hits as the API answers them.
fn shape<'a>(hits: &'a [annal_engine::Hit], texts: &'a [Option<Arc<str>>]) -> Vec<SearchHit<'a>> {
    hits.iter()
        .enumerate()
        .map(|(i, hit)| SearchHit {
            text: texts.get(i).and_then(|t| t.as_deref()),
            id: &hit.id,
            distance: hit.distance,
            metadata: hit.metadata.as_deref().and_then(|text| raw_metadata(&hit.id, text)),
            partition: hit.partition.as_deref(),
        })
        .collect()
}

/// `GET /healthz`: `{status, last_seq, applied_seq}`; 503 once a fault stops writes.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(fault) = state.engine.projection_fault() {
        return Err(annal_engine::Error::Projection(ProjectionError::Stopped(fault)).into());
    }
    if let Some(cause) = state.engine.log().poison() {
        return Err(ApiError::poisoned(cause.as_ref()));
    }
    let engine = Arc::clone(&state.engine);
    let stats = blocking(move || Ok(engine.stats())).await?;
    let startup = state.engine.startup();
    Ok(Json(json!({
        "status": if startup.ready { "ok" } else { "starting" },
        "last_seq": stats.log.last_seq,
        "applied_seq": stats.projector.applied_seq,
        "replay": {
            "applied_seq": startup.applied_seq,
            "target_seq": startup.target_seq,
            "ready": startup.ready,
            "elapsed_ms": u64::try_from(startup.elapsed.as_millis()).unwrap_or(u64::MAX),
        },
    })))
}

/// `GET /readyz`: 200 once the log is replayed and the engine takes writes; 503
/// `starting` before, 503 `unavailable` after a fault; in a cluster, 503
/// `not_applied_yet` while the node is more than `--max-lag` behind the stream or out
/// of touch with every server.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(fault) = state.engine.projection_fault() {
        return Err(annal_engine::Error::Projection(ProjectionError::Stopped(fault)).into());
    }
    if let Some(cause) = state.engine.log().poison() {
        return Err(ApiError::poisoned(cause.as_ref()));
    }
    let startup = state.engine.startup();
    if !startup.ready {
        return Err(starting(&startup));
    }
    if !startup.in_sync {
        let lag = state.engine.cluster_status().map_or(0, |s| s.lag_messages);
        return Err(ApiError::not_applied_yet(format!(
            "behind the cluster's stream ({lag} messages to copy, or no server heard from lately); see GET /admin/cluster"
        )));
    }
    Ok(Json(json!({ "status": "ready", "applied_seq": startup.applied_seq })))
}

/// The 503 every data route answers while the log replays.
pub fn starting(startup: &annal_engine::Startup) -> ApiError {
    ApiError::starting(format!(
        "replaying the log: {} of {} events applied",
        startup.applied_seq, startup.target_seq
    ))
}

/// Middleware: data routes answer 503 `starting` until replay is done; `/healthz`,
/// `/readyz`, `/metrics` and `/admin/cluster` answer at once.
pub async fn while_starting(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let open = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/admin/cluster");
    let startup = state.engine.startup();
    if !open && !startup.ready {
        return starting(&startup).into_response();
    }
    next.run(req).await
}

/// Answer for a known route asked with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Answer for an unknown route.
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(256).collect();
    ApiError::not_found(format!("no such route: {method} {path}"))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = Arc::clone(&state.engine);
    let stats = blocking(move || Ok(engine.stats())).await?;
    let body = state
        .metrics
        .render(
            &stats,
            &state.engine.storage().stats(),
            state.engine.log().is_poisoned(),
            state.budget.in_use_bytes(),
        )
        .map_err(|e| ApiError::internal(&e))?;
    Ok(([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response())
}
