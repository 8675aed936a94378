//! Handlers. Each one parses its body, runs the engine call on the blocking pool (the
//! engine waits on fsync and on the projector), and shapes the answer.

use annal_engine::event::VectorItem;
use annal_engine::{HnswConfig, IndexInfo, Metric};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::ApiJson;
use super::{ApiError, AppState};

/// Header naming who makes a change; recorded in the log as the event's actor.
pub const ACTOR_HEADER: &str = "x-annal-actor";
const DEFAULT_ACTOR: &str = "http";
const DEFAULT_K: usize = 10;

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, annal_engine::Error> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn actor(headers: &HeaderMap) -> String {
    headers.get(ACTOR_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(DEFAULT_ACTOR).to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    name: String,
    dimension: u32,
    distance: Option<String>,
    m: Option<u32>,
    ef_construction: Option<u32>,
    ef_search: Option<u32>,
}

#[derive(Serialize)]
pub struct Params {
    name: String,
    dimension: u32,
    distance: &'static str,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
}

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
            },
            length: info.length,
        }
    }
}

pub async fn create_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateIndex>,
) -> Result<impl IntoResponse, ApiError> {
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
    };
    let actor = actor(&headers);
    let engine = state.engine;
    let created =
        blocking(move || engine.create_index(&actor, &body.name, body.dimension, metric, config)).await?;
    Ok((StatusCode::CREATED, Json(IndexView::from(created.info))))
}

pub async fn list_indexes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let names = blocking(move || Ok(engine.list_indexes())).await?;
    Ok(Json(serde_json::json!({ "count": names.len(), "names": names })))
}

pub async fn get_index(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<IndexView>, ApiError> {
    let engine = state.engine;
    // Reading an index waits on its lock, which a large add holds: keep it off the
    // async workers.
    Ok(Json(blocking(move || engine.get_index(&name)).await?.into()))
}

pub async fn drop_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = actor(&headers);
    let engine = state.engine;
    blocking(move || engine.drop_index(&actor, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    id: String,
    vector: Vec<f32>,
    metadata: Option<Value>,
    partition: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    items: Vec<AddItem>,
}

pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Add>,
) -> Result<Json<Value>, ApiError> {
    let items = body
        .items
        .into_iter()
        .map(|item| VectorItem {
            id: item.id,
            vector: item.vector,
            // JSON `null` metadata is the same as none.
            metadata: item.metadata.filter(|m| !m.is_null()).map(|m| m.to_string()),
            partition: item.partition,
        })
        .collect();
    let actor = actor(&headers);
    let engine = state.engine;
    let out = blocking(move || engine.upsert(&actor, &name, items)).await?;
    Ok(Json(serde_json::json!({ "added": out.added, "length": out.length })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    ids: Vec<String>,
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Delete>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers);
    let engine = state.engine;
    let out = blocking(move || engine.delete(&actor, &name, body.ids)).await?;
    Ok(Json(serde_json::json!({ "deleted": out.deleted, "length": out.length })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    vector: Vec<f32>,
    k: Option<usize>,
}

#[derive(Serialize)]
pub struct SearchHit {
    id: String,
    distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
}

pub async fn search(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Search>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let k = body.k.unwrap_or(DEFAULT_K);
    let hits = blocking(move || engine.search(&name, body.vector, k)).await?;
    let results: Vec<SearchHit> = hits
        .into_iter()
        .map(|hit| SearchHit {
            id: hit.id.to_string(),
            distance: hit.distance,
            // Stored metadata was validated as JSON on the way in.
            metadata: hit.metadata.and_then(|m| serde_json::from_str(&m).ok()),
        })
        .collect();
    Ok(Json(serde_json::json!({ "results": results })))
}

pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(fault) = state.engine.projection_fault() {
        return Err(ApiError::internal(&*fault));
    }
    if state.engine.log().is_poisoned() {
        return Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal",
            detail: "log is poisoned by a failed commit; restart to recover".into(),
        });
    }
    let engine = state.engine;
    let stats = blocking(move || Ok(engine.stats())).await?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "last_seq": stats.log.last_seq,
        "applied_seq": stats.projector.applied_seq,
    })))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: "method_not_allowed",
        detail: "this route does not take that method".into(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, error: "not_found", detail: "no such route".into() }
}
