//! Partition routes: set the first scheme, migrate to a new one (a job), the migration's
//! state, clearing a finished one, and per-partition counts.

use std::sync::Arc;

use annal_engine::MigrateOptions;
use annal_engine::{IndexPartitions, Migration};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::jobs;
use super::json::ApiJson;
use super::routes::blocking;
use super::state::AppState;

/// Moves a dry run's answer lists at most (the counts are whole).
pub const PLAN_LISTED_MAX: usize = 10_000;

fn migration_json(m: &Migration) -> Value {
    json!({
        "migration_id": m.migration_id,
        "template": m.template,
        "snapshot_seq": m.snapshot_seq,
        "begun_seq": m.begun_seq,
        "cursor": m.cursor,
        "moved": m.moved,
        "skipped": m.skipped,
        "errors": m.error_count,
        "first_errors": m.errors.iter().map(|e| json!({"id": e.id, "reason": e.reason})).collect::<Vec<_>>(),
        "batches": m.batches,
        "ended_seq": (m.ended_seq > 0).then_some(m.ended_seq),
    })
}

fn state_json(p: &IndexPartitions) -> Value {
    json!({
        "scheme": p.scheme.as_ref().map(|s| json!({"template": s.template, "version": s.version})),
        "running": p.running.as_ref().map(migration_json),
        "finished": p.finished.as_ref().map(migration_json),
    })
}

/// Body of `POST /vectors/index/{name}/scheme`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetScheme {
    template: String,
}

/// `POST /vectors/index/{name}/scheme`: the index's first scheme.
pub async fn set_scheme(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let body: SetScheme = body.parse()?;
    let engine = state.engine;
    let (seq, after) = blocking(move || {
        let seq = engine.set_scheme(&actor, &name, &body.template)?;
        Ok((seq, engine.partitions(&name)?.0))
    })
    .await?;
    Ok(Json(json!({ "seq": seq, "scheme": state_json(&after)["scheme"] })))
}

/// Body of `POST /vectors/index/{name}/migrate`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migrate {
    template: String,
    #[serde(default)]
    dry_run: bool,
    batch_size: Option<usize>,
    take_snapshot_first: Option<bool>,
}

/// `POST /vectors/index/{name}/migrate`: 202, a job migrating (or planning, with
/// `dry_run`) the index to `template`.
pub async fn migrate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let body: Migrate = body.parse()?;
    annal_engine::Template::parse(&body.template).map_err(annal_engine::Error::from)?;
    let defaults = MigrateOptions::default();
    let options = MigrateOptions {
        dry_run: body.dry_run,
        batch_size: body.batch_size.unwrap_or(defaults.batch_size),
        take_snapshot_first: body.take_snapshot_first.unwrap_or(defaults.take_snapshot_first),
    };
    // Checked before the job starts, so a bad request is a 400, not a failed job.
    options.check().map_err(annal_engine::Error::from)?;
    jobs::start_on_index(
        Arc::clone(&state.engine),
        &state.jobs,
        "migrate",
        name,
        move |engine, index, progress| {
            let report = engine.migrate_scheme(&actor, index, &body.template, options, progress)?;
            let listed: Vec<Value> = report
                .plan
                .iter()
                .take(PLAN_LISTED_MAX)
                .map(|m| json!({"id": m.id, "from": m.from, "to": m.to}))
                .collect();
            Ok(json!({
                "migration_id": report.migration_id,
                "template": report.template,
                "dry_run": report.dry_run,
                "resumed": report.resumed,
                "moved": report.moved,
                "skipped": report.skipped,
                "errors": report.error_count,
                "first_errors": report.errors.iter().map(|e| json!({"id": e.id, "reason": e.reason})).collect::<Vec<_>>(),
                "snapshot_seq": report.snapshot_seq,
                "version": report.version,
                "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                "plan": report.dry_run.then_some(listed),
                "plan_truncated": report.plan.len() > PLAN_LISTED_MAX,
            }))
        },
    )
}

/// `GET /vectors/index/{name}/migration`: the scheme and the running and finished
/// migration.
pub async fn migration(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let (p, _) = blocking(move || engine.partitions(&name)).await?;
    Ok(Json(state_json(&p)))
}

/// `DELETE /vectors/index/{name}/migration`: clear the finished migration (logged).
pub async fn clear_migration(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let engine = state.engine;
    let seq = blocking(move || engine.clear_migration(&actor, &name)).await?;
    Ok(Json(json!({ "cleared": true, "seq": seq })))
}

/// `GET /vectors/index/{name}/partitions`: live records per partition path.
pub async fn partitions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let (p, counts) = blocking(move || engine.partitions(&name)).await?;
    Ok(Json(json!({
        "scheme": state_json(&p)["scheme"],
        "count": counts.len(),
        "partitions": counts.iter().map(|(path, n)| json!({"path": path, "records": n})).collect::<Vec<_>>(),
    })))
}
