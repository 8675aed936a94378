//! Document routes: upsert text into an index with an embedder, see and change its
//! embedder and queue. Text search is `text` in the search body (`routes::search`).

use annal_engine::event::DocumentItem;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::json::ApiJson;
use super::routes::{blocking, upserted, wait_of, Metadata};
use super::state::AppState;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentBody<'a> {
    id: String,
    /// The text (1 byte to 64 KiB); its vector is computed by the index's embedder.
    text: String,
    /// JSON `null` is the same as no metadata.
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    partition: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Documents<'a> {
    #[serde(borrow)]
    items: Vec<DocumentBody<'a>>,
    /// `"applied"` (default: the documents are stored; their vectors follow as the
    /// embedding queue drains) or `"durable"`.
    wait: Option<String>,
}

/// `POST /vectors/index/{name}/documents`: `{added, length, seq, applied}`.
pub async fn upsert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let documents = body.parse::<Documents<'_>>()?;
    let wait = wait_of(documents.wait.as_deref())?;
    let items: Vec<DocumentItem> = documents
        .items
        .into_iter()
        .map(|d| DocumentItem {
            id: d.id,
            text: d.text,
            metadata: d.metadata.map(|m| m.0.get().to_owned()),
            partition: d.partition,
        })
        .collect();
    drop(body);
    let engine = state.engine;
    let out = blocking(move || engine.upsert_documents(&actor, &name, items, wait)).await?;
    Ok(upserted(&out, wait))
}

/// `GET /vectors/index/{name}/embedding`: the embedder, whether this server has it,
/// the queue and the drain report.
pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let info = blocking(move || engine.embedding(&name)).await?;
    let s = &info.status;
    let r = &s.report;
    Ok(Json(json!({
        "model": s.embedder.model,
        "dimension": s.embedder.dimension,
        "generation": s.generation,
        "available": info.available.is_ok(),
        "unavailable_reason": info.available.as_ref().err(),
        "documents": s.documents,
        "queue": {
            "incremental": s.queue.incremental,
            "backfill": s.queue.backfill,
            "in_flight": s.queue.in_flight,
            "parked": s.queue.parked,
        },
        "report": {
            "incremental_processed": r.incremental_processed,
            "backfill_processed": r.backfill_processed,
            "failed": r.failed,
            "discarded_stale": r.discarded_stale,
            "unavailable_ticks": r.unavailable_ticks,
            "last_error": r.last_error,
        },
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetEmbedder {
    /// A configured embedder's model id, of the index's dimension.
    model: String,
}

/// `PUT /vectors/index/{name}/embedding`: change the embedder; every document is
/// embedded again (backfill, after new documents). `{seq, model}`.
pub async fn set(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let SetEmbedder { model } = body.parse()?;
    let engine = state.engine;
    let chosen = model.clone();
    let seq = blocking(move || engine.set_embedder(&actor, &name, &chosen)).await?;
    Ok(Json(json!({ "seq": seq, "model": model })))
}
