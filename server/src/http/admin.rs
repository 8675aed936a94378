//! Admin routes: snapshots and the log.

use annal_engine::event::SnapshotTaken;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::actor::actor;
use super::routes::blocking;
use super::{ApiError, AppState};

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn taken_json(event_seq: u64, t: &SnapshotTaken) -> Value {
    json!({
        "seq": t.seq,
        "event_seq": event_seq,
        "bucket": t.bucket,
        "key": t.key,
        "bytes": t.bytes,
        "crc32": t.crc32,
    })
}

/// `POST /admin/snapshots`: take one now.
pub async fn take_snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let info = state.engine.snapshot(&actor).await?;
    Ok(Json(json!({
        "seq": info.seq,
        "event_seq": info.event_seq,
        "bucket": info.bucket,
        "key": info.key,
        "bytes": info.bytes,
        "crc32": info.crc32,
        "paused_ms": millis(info.paused),
        "duration_ms": millis(info.elapsed),
    })))
}

/// `GET /admin/snapshots`: the snapshots this process knows (the newest registered when
/// it started, and those taken since), newest first, and the one it opened from.
pub async fn list_snapshots(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registered = state.engine.snapshots();
    let restored = state.engine.restored();
    Ok(Json(json!({
        "snapshots": registered.iter().map(|(seq, t)| taken_json(*seq, t)).collect::<Vec<_>>(),
        "opened_from": restored.snapshot.as_ref().map(|t| json!({"seq": t.seq, "key": t.key})),
        "skipped_at_open": restored.skipped,
        "restore_ms": millis(restored.elapsed),
    })))
}

/// `GET /admin/log`: the log's extent and size on disk.
pub async fn log(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = std::sync::Arc::clone(&state.engine);
    let (first_seq, last_seq, bytes, segments) = blocking(move || {
        let log = engine.log();
        let bytes = std::fs::metadata(engine.dir().join(annal_engine::LOG_FILE)).map(|m| m.len())?;
        Ok((log.first_seq()?, log.last_seq(), bytes, log.segments()?))
    })
    .await?;
    // Events before `first_seq` live in archive segments in a bucket.
    let archived = match (segments.first(), segments.last()) {
        (Some(first), Some(last)) => json!({
            "first_seq": first.first,
            "last_seq": last.last,
            "segments": segments.len(),
            "bytes": segments.iter().map(|s| s.bytes).sum::<u64>(),
        }),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "first_seq": first_seq,
        "last_seq": last_seq,
        "archived": archived,
        "bytes_on_disk": bytes,
    })))
}
