//! Handlers. Each one parses its body, runs the engine call on the blocking pool (the
//! engine waits on fsync and on the projector), and shapes the answer. Every write
//! answers with the sequence number of its event, so a caller can find it in the log.

use std::sync::Arc;

use annal_engine::event::VectorItem;
use annal_engine::limits::METADATA_BYTES_MAX;
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
use super::json::ApiJson;
use super::limits::SEARCH_K_DEFAULT;
use super::{ApiError, AppState};

/// Run an engine call on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, annal_engine::Error> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Body of `POST /vectors/index`.
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

/// An index's creation parameters as the API shows them.
#[derive(Serialize)]
pub struct Params {
    name: String,
    dimension: u32,
    distance: &'static str,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
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
    };
    let engine = state.engine;
    let created =
        blocking(move || engine.create_index(&actor, &body.name, body.dimension, metric, config)).await?;
    Ok((StatusCode::CREATED, Json(CreatedView { index: created.info.into(), seq: created.seq })))
}

/// `GET /vectors/index`: `{count, names}`.
pub async fn list_indexes(
    State(state): State<AppState>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let as_of = as_of(q)?;
    let engine = state.engine;
    let names = blocking(move || match as_of {
        Some(seq) => Ok(engine.view_at(seq)?.list_indexes()),
        None => Ok(engine.list_indexes()),
    })
    .await?;
    Ok(Json(json!({ "count": names.len(), "names": names })))
}

/// `?as_of=S` on the read routes: answer from the state as of event S.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOf {
    as_of: Option<u64>,
}

fn as_of(q: Result<Query<AsOf>, QueryRejection>) -> Result<Option<u64>, ApiError> {
    q.map(|Query(q)| q.as_of).map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
}

/// `GET /vectors/index/{name}`: `{params, length}`.
pub async fn get_index(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<IndexView>, ApiError> {
    let as_of = as_of(q)?;
    let engine = state.engine;
    // Reading an index waits on its lock, which a large add holds: keep it off the
    // async workers.
    let info = blocking(move || match as_of {
        Some(seq) => engine.view_at(seq)?.get_index(&name),
        None => engine.get_index(&name),
    })
    .await?;
    Ok(Json(info.into()))
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

/// Item metadata as the caller's JSON text, borrowed from the request body. Its size is
/// checked as it is parsed, so an oversized document is refused before it is copied.
struct Metadata<'a>(&'a RawValue);

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddItem<'a> {
    id: String,
    vector: Vec<f32>,
    /// JSON `null` is the same as no metadata.
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    partition: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add<'a> {
    #[serde(borrow)]
    items: Vec<AddItem<'a>>,
}

/// `POST /vectors/index/{name}/add`: `{added, length, seq}`.
pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let items = body
        .parse::<Add<'_>>()?
        .items
        .into_iter()
        .map(|item| VectorItem {
            id: item.id,
            vector: item.vector,
            metadata: item.metadata.map(|m| m.0.get().to_owned()),
            partition: item.partition,
        })
        .collect();
    // The body is not needed past this point: give its memory back before the engine
    // call, which may wait long for fsync and the projector.
    drop(body);
    let engine = state.engine;
    let out = blocking(move || engine.upsert(&actor, &name, items)).await?;
    Ok(Json(json!({ "added": out.added, "length": out.length, "seq": out.seq })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delete {
    ids: Vec<String>,
}

/// `POST /vectors/index/{name}/delete`: `{deleted, length, seq}`.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let Delete { ids } = body.parse()?;
    let engine = state.engine;
    let out = blocking(move || engine.delete(&actor, &name, ids)).await?;
    Ok(Json(json!({ "deleted": out.deleted, "length": out.length, "seq": out.seq })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    vector: Vec<f32>,
    k: Option<usize>,
    /// Only records in these partitions: an exact path, or a prefix ending in `/`.
    partition: Option<String>,
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
}

#[derive(Serialize)]
struct SearchResults<'a> {
    results: Vec<SearchHit<'a>>,
}

/// `POST /vectors/index/{name}/search`: `{results: [{id, distance, metadata?, partition?}]}`.
pub async fn search(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
    body: ApiJson,
) -> Result<Response, ApiError> {
    let as_of = as_of(q)?;
    let Search { vector, k, partition } = body.parse()?;
    let engine = state.engine;
    let k = k.unwrap_or(SEARCH_K_DEFAULT);
    let hits = blocking(move || {
        let mut results = match (as_of, partition) {
            (Some(seq), Some(p)) => engine.view_at(seq)?.search_in(&name, vec![vector], k, &p)?,
            (Some(seq), None) => engine.view_at(seq)?.search_batch(&name, vec![vector], k)?,
            (None, Some(p)) => engine.search_in(&name, vec![vector], k, &p)?,
            (None, None) => engine.search_batch(&name, vec![vector], k)?,
        };
        Ok(results.pop().unwrap_or_default())
    })
    .await?;
    let results = hits
        .iter()
        .map(|hit| SearchHit {
            id: &hit.id,
            distance: hit.distance,
            metadata: hit.metadata.as_deref().and_then(|text| raw_metadata(&hit.id, text)),
            partition: hit.partition.as_deref(),
        })
        .collect();
    Ok(Json(SearchResults { results }).into_response())
}

/// Stored metadata as raw JSON. The engine validated it on the way in; a log written
/// under other rules could still hold text that is not JSON, which is left out (and
/// logged) rather than sent as a broken document.
fn raw_metadata<'a>(id: &str, text: &'a str) -> Option<&'a RawValue> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => Some(raw),
        Err(error) => {
            tracing::warn!(id, %error, "stored metadata is not JSON; left out of the hit");
            None
        }
    }
}

/// `GET /healthz`: `{status, last_seq, applied_seq}`; 503 once a fault stops writes.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(fault) = state.engine.projection_fault() {
        return Err(annal_engine::Error::Projection(ProjectionError::Stopped(fault)).into());
    }
    if state.engine.log().is_poisoned() {
        return Err(ApiError::unavailable("log is poisoned by a failed commit; restart to recover", None));
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
/// `starting` before, 503 `unavailable` after a fault.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(fault) = state.engine.projection_fault() {
        return Err(annal_engine::Error::Projection(ProjectionError::Stopped(fault)).into());
    }
    if state.engine.log().is_poisoned() {
        return Err(ApiError::unavailable("log is poisoned by a failed commit; restart to recover", None));
    }
    let startup = state.engine.startup();
    if !startup.ready {
        return Err(starting(&startup));
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
/// `/readyz` and `/metrics` answer at once.
pub async fn while_starting(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let open = matches!(path, "/healthz" | "/readyz" | "/metrics");
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
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
