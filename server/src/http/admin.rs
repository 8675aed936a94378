//! Admin routes: snapshots and the log.

use annal_engine::event::SnapshotTaken;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::routes::blocking;
use super::state::AppState;

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
    // Events before `first_seq` live in archive segments in a bucket (or, on a cluster
    // node that began from a snapshot, nowhere here: the snapshot covers them).
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

/// `GET /admin/cluster`: where this node stands: its copy of the stream, what it
/// applied, its lag; `{"clustered": false}` for a single node. Answers while the node
/// catches up (that is when it matters).
pub async fn cluster(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = &state.engine;
    let startup = engine.startup();
    let last_seq = engine.log().last_seq();
    let Some(status) = engine.cluster_status() else {
        return Ok(Json(json!({
            "clustered": false,
            "last_seq": last_seq,
            "applied_seq": startup.applied_seq,
            "ready": startup.ready,
        })));
    };
    Ok(Json(json!({
        "clustered": true,
        "node": status.node,
        "stream": status.stream,
        "stream_last": status.stream_last,
        "copied": status.copied,
        "lag_messages": status.lag_messages,
        "last_seq": last_seq,
        "applied_seq": startup.applied_seq,
        "lag_events": last_seq.saturating_sub(startup.applied_seq),
        "ready": startup.ready && startup.in_sync,
        "published": status.published,
        "republished": status.republished,
        "conflicts": status.conflicts,
        "fault": status.fault,
        "embedder_lease": status.embedder_lease,
        "snapshot_lease": status.snapshot_lease,
        "stream_first": status.stream_first,
        "first_seq": engine.log().first_seq().map_err(annal_engine::Error::from)?,
        "snapshot_pointer": status.pointer.map(|p| json!({
            "node": p.node,
            "key": p.key,
            "seq": p.seq,
            "stream_seq": p.stream_seq,
            "first_needed": p.first_needed(),
        })),
        "since_contact_ms": status.since_contact.map(millis),
    })))
}

/// Most events one `GET /admin/events` answers.
pub const EVENTS_LIMIT_MAX: usize = 1000;
/// Longest wait of one `GET /admin/events` for its first event (short, so a shutdown
/// is not held up by a long poll).
pub const EVENTS_WAIT_MS_MAX: u64 = 10_000;
/// `GET /admin/events` long polls waiting at once; more are refused with 503
/// `overloaded` rather than tying up the blocking pool the other routes share.
pub const EVENTS_WAITERS_MAX: usize = 16;
static EVENTS_WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Frame bytes one `GET /admin/events` reads at most (after its first event); its
/// JSON is a few times larger.
const EVENTS_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Query of `GET /admin/events`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// First sequence number (default 1).
    from: Option<u64>,
    /// Most events (1 to 1000, default 100).
    limit: Option<usize>,
    /// Wait up to this long for event `from` to be committed (0 to 30000, default 0).
    wait_ms: Option<u64>,
    /// Include vectors (default: each replaced by its dimension).
    vectors: Option<bool>,
}

/// `GET /admin/events`: `{events, last_seq}`, events from `from` on as `annal log dump
/// --json` writes them; with `wait_ms`, a long poll for the next one (`annal log tail`).
pub async fn events(
    State(state): State<AppState>,
    q: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=EVENTS_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: must be 1 to {EVENTS_LIMIT_MAX}, got {limit}")));
    }
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > EVENTS_WAIT_MS_MAX {
        return Err(ApiError::bad_request(format!(
            "wait_ms: must be 0 to {EVENTS_WAIT_MS_MAX}, got {wait_ms}"
        )));
    }
    let from = q.from.unwrap_or(1).max(1);
    let vectors = q.vectors.unwrap_or(false);
    // Held until the answer: a waiting poll counts against the bound.
    struct Waiter;
    impl Drop for Waiter {
        fn drop(&mut self) {
            EVENTS_WAITERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
    let _waiter = if wait_ms > 0 {
        if EVENTS_WAITERS.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= EVENTS_WAITERS_MAX {
            EVENTS_WAITERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return Err(ApiError::overloaded_with(format!(
                "wait_ms: {EVENTS_WAITERS_MAX} long polls wait already; retry"
            )));
        }
        Some(Waiter)
    } else {
        None
    };
    let engine = std::sync::Arc::clone(&state.engine);
    let (events, last_seq) = blocking(move || {
        let log = engine.log();
        let from = from.max(log.first_seq()?);
        let wait = std::time::Duration::from_millis(wait_ms);
        let events = log.tail_budget(from, wait, limit, EVENTS_BYTES_MAX)?;
        let events: Vec<Value> =
            events.iter().map(|(seq, event)| crate::render::event_json(*seq, event, vectors)).collect();
        Ok((events, log.last_seq()))
    })
    .await?;
    Ok(Json(json!({ "events": events, "last_seq": last_seq })))
}
