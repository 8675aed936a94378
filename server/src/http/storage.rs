//! Storage routes: the buckets, their probes, object I/O, the error journal and bucket
//! health. Object keys are checked by the engine before any I/O; a read served by a
//! rescue bucket says so in [`RESCUE_HEADER`].

use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::{BucketOp, Stamp};
use annal_engine::ProbeReport;
use annal_engine::{limits, Error};
use annal_engine::{JournalEntry, JournalFilter};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::json::RawBody;
use super::state::AppState;

/// Header on a read that the bucket's rescue bucket served, naming it.
pub const RESCUE_HEADER: &str = "x-annal-rescue-used";
/// Entries `GET /storage/errors` returns when `limit` is not given.
pub const ERRORS_LIMIT_DEFAULT: usize = 100;
/// The period `GET /storage/bucket-health` covers when `minutes` is not given.
pub const HEALTH_MINUTES_DEFAULT: u64 = 60;
/// The longest period `minutes` may ask for (a week).
pub const HEALTH_MINUTES_MAX: u64 = 7 * 24 * 60;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
}

fn storage_error(e: annal_engine::StorageError) -> ApiError {
    Error::from(e).into()
}

fn probe_json(report: &ProbeReport) -> Value {
    json!({
        "reachable": report.reachable,
        "failed": report.failed.map(BucketOp::as_str),
        "error": report.error,
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "at_ms": report.at_ms,
    })
}

/// `GET /storage/buckets`.
pub async fn list_buckets(State(state): State<AppState>) -> Json<Value> {
    let buckets: Vec<Value> = state
        .engine
        .storage()
        .buckets()
        .into_iter()
        .map(|b| {
            let place = if b.backend == "local" { "root" } else { "endpoint" };
            json!({
                "name": b.name,
                "backend": b.backend,
                place: b.location,
                "rescue": b.rescue,
                "reachable": b.last_probe.as_ref().map(|p| p.reachable),
                "last_probe": b.last_probe.as_ref().map(probe_json),
            })
        })
        .collect();
    Json(json!({ "buckets": buckets }))
}

/// `POST /storage/buckets/{bucket}/probe`: 200 with the report, reachable or not.
pub async fn probe(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(bucket): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let report = state.engine.storage().probe(&actor, &bucket).await.map_err(storage_error)?;
    let mut body = probe_json(&report);
    body["bucket"] = json!(bucket);
    Ok(Json(body))
}

/// `GET /storage/buckets/{bucket}/objects/{*key}`: streamed, so memory stays bounded
/// whatever the object's size. A failure part-way aborts the response (the client sees
/// a body shorter than its `content-length`) and is journaled.
pub async fn get_object(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = actor(&headers)?;
    let reader = state.engine.storage().open_read(&actor, &bucket, &key).await.map_err(storage_error)?;
    let engine = Arc::clone(&state.engine);
    let served_by = reader.served_by.clone();
    let stream = reader.stream.map(move |chunk| {
        if let Err(error) = &chunk {
            let message = crate::report(error);
            tracing::warn!(bucket = served_by, key, error = %message, "object read failed part-way");
            let (engine, actor, bucket, key) =
                (Arc::clone(&engine), actor.clone(), served_by.clone(), key.clone());
            let error = object_store::Error::Generic { store: "stream", source: message.into() };
            tokio::spawn(async move {
                engine.storage().record_failure(&actor, &bucket, BucketOp::Read, &key, &error).await;
            });
        }
        chunk
    });
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(reader.size));
    if let Some(rescue) = reader.rescued_by {
        // Bucket names are [A-Za-z0-9_-]: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&rescue) {
            h.insert(RESCUE_HEADER, value);
        }
    }
    Ok(response)
}

/// `PUT /storage/buckets/{bucket}/objects/{*key}`: the body is the object.
pub async fn put_object(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let size = body.len();
    state.engine.storage().put(&actor, &bucket, &key, Bytes::from(body)).await.map_err(storage_error)?;
    Ok(Json(json!({ "bucket": bucket, "key": key, "size": size })))
}

/// `DELETE /storage/buckets/{bucket}/objects/{*key}`: deleting a missing key succeeds.
pub async fn delete_object(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    state.engine.storage().delete(&actor, &bucket, &key).await.map_err(storage_error)?;
    Ok(Json(json!({ "bucket": bucket, "deleted": key })))
}

/// `.../objects/` with nothing after it: the key is empty.
pub async fn empty_key() -> ApiError {
    ApiError::bad_request("key \"\" is empty")
}

/// Query of `GET /storage/buckets/{bucket}/objects`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    prefix: Option<String>,
}

/// `GET /storage/buckets/{bucket}/objects?prefix=`.
pub async fn list_objects(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let q = query(q)?;
    let prefix = q.prefix.filter(|p| !p.is_empty());
    let listing =
        state.engine.storage().list(&actor, &bucket, prefix.as_deref()).await.map_err(storage_error)?;
    let objects: Vec<Value> = listing
        .objects
        .iter()
        .map(|o| json!({ "key": o.key, "size": o.size, "last_modified_ms": o.last_modified_ms }))
        .collect();
    Ok(Json(json!({ "bucket": bucket, "objects": objects, "truncated": listing.truncated })))
}

/// Query of `GET /storage/errors`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorsQuery {
    bucket: Option<String>,
    op: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
}

fn entry_json(e: &JournalEntry) -> Value {
    json!({
        "seq": e.seq,
        "time_ms": e.time_ms,
        "actor": e.actor,
        "bucket": e.bucket,
        "op": e.op.as_str(),
        "key": e.key,
        "error": e.error,
        "rescued": e.rescued,
    })
}

/// `GET /storage/errors?bucket=&op=&since=&limit=`: newest first; `since` is ms since
/// the Unix epoch; `limit` 1 to the journal's capacity, default 100.
pub async fn errors(
    State(state): State<AppState>,
    q: Result<Query<ErrorsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let op = match q.op.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(BucketOp::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("op: {s:?} is not one of read, write, delete, list"))
        })?),
    };
    let limit = q.limit.unwrap_or(ERRORS_LIMIT_DEFAULT);
    if limit == 0 || limit > limits::JOURNAL_ENTRIES_MAX {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is outside 1..={}",
            limits::JOURNAL_ENTRIES_MAX
        )));
    }
    let filter = JournalFilter { bucket: q.bucket.filter(|b| !b.is_empty()), op, since_ms: q.since };
    let entries: Vec<Value> = state.engine.journal().filter(&filter, limit).iter().map(entry_json).collect();
    Ok(Json(json!({ "count": entries.len(), "errors": entries })))
}

/// Query of `GET /storage/bucket-health`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthQuery {
    minutes: Option<u64>,
}

/// `GET /storage/bucket-health?minutes=`: errors in the last `minutes` (default 60),
/// per bucket; buckets with 3 or more are unhealthy.
pub async fn bucket_health(
    State(state): State<AppState>,
    q: Result<Query<HealthQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let minutes = query(q)?.minutes.unwrap_or(HEALTH_MINUTES_DEFAULT);
    if minutes == 0 || minutes > HEALTH_MINUTES_MAX {
        return Err(ApiError::bad_request(format!("minutes: {minutes} is outside 1..={HEALTH_MINUTES_MAX}")));
    }
    let period = Duration::from_secs(minutes * 60);
    let now = Stamp::now("").time_ms;
    let since_ms = now.saturating_sub(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
    let health = state.engine.journal().health(since_ms);
    Ok(Json(json!({
        "minutes": minutes,
        "since_ms": health.since_ms,
        "total": health.total,
        "per_bucket": health.per_bucket,
        "unhealthy": health.unhealthy,
        "healthy": health.unhealthy.is_empty(),
        "truncated": health.truncated,
    })))
}
