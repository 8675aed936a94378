//! Promotion routes: promote an HNSW configuration, roll it back, and read the state.

use std::sync::Arc;

use annal_engine::Promotion;
use annal_engine::{HnswConfig, PromoteRequest};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::json::ApiJson;
use super::routes::blocking;
use super::state::AppState;

/// Body of `POST /vectors/index/{name}/promote`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    m: u32,
    ef_construction: u32,
    ef_search: u32,
    /// `flat`, `fp16`, `sq8`, `sq4` or `pq`: a new storage rebuilds the graph. Absent:
    /// the storage in effect is kept (with `refine`, if given, as its refine factor).
    storage: Option<String>,
    /// Sub-quantizers of `pq` storage.
    pq_m: Option<u32>,
    /// Refine factor, 1 to 16 (quantized storage only).
    refine: Option<u32>,
    #[serde(default)]
    trial_id: String,
    /// Defaults to the request's actor.
    promoted_by: Option<String>,
    #[serde(default)]
    note: String,
}

fn promotion_json(p: &Promotion) -> Value {
    let mut out = super::routes::config_json(&p.config);
    if let Some(map) = out.as_object_mut() {
        map.extend([
            ("trial_id".to_owned(), json!(p.trial_id)),
            ("promoted_by".to_owned(), json!(p.promoted_by)),
            ("note".to_owned(), json!(p.note)),
            ("seq".to_owned(), json!(p.seq)),
            ("time_ms".to_owned(), json!(p.time_ms)),
        ]);
    }
    out
}

/// `POST /vectors/index/{name}/promote`: the promotion now in effect.
pub async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let body: Promote = body.parse()?;
    // Without `storage` the index keeps the storage in effect (a new `refine` alone
    // applies to it): a promotion of `ef_search` must not rebuild an sq8 graph as flat.
    let storage = match (body.storage.as_deref(), body.pq_m) {
        (None, None) => {
            let engine = Arc::clone(&state.engine);
            let index = name.clone();
            let current = blocking(move || Ok(engine.get_index(&index)?.params.config.storage)).await?;
            match body.refine {
                None => current,
                Some(_) if !current.quantized() => super::routes::storage_of(None, None, body.refine)?,
                Some(_) => {
                    let refine = super::routes::storage_of(None, None, body.refine)?.refine;
                    annal_engine::GraphStorage { refine, ..current }
                }
            }
        }
        (storage, pq_m) => super::routes::storage_of(storage, pq_m, body.refine)?,
    };
    let request = PromoteRequest {
        config: HnswConfig {
            m: body.m,
            ef_construction: body.ef_construction,
            ef_search: body.ef_search,
            storage,
        },
        trial_id: body.trial_id,
        promoted_by: body.promoted_by.unwrap_or_else(|| actor.clone()),
        note: body.note,
    };
    let engine = state.engine;
    let promoted = blocking(move || engine.promote(&actor, &name, request)).await?;
    Ok(Json(json!({ "current": promotion_json(&promoted), "seq": promoted.seq })))
}

/// `POST /vectors/index/{name}/rollback`: the promotion in effect afterwards (`null`:
/// the creation config), 409 when nothing is promoted.
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let engine = state.engine;
    let current = blocking(move || engine.rollback(&actor, &name)).await?;
    Ok(Json(json!({ "current": current.as_ref().map(promotion_json) })))
}

/// `GET /vectors/index/{name}/promotion`: the promotion in effect, the history (newest
/// first), and the graph: the config it was built with against the one in effect.
pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let (promotions, graph) = blocking(move || Ok((engine.promotion(&name)?, engine.graph(&name)?))).await?;
    Ok(Json(json!({
        "current": promotions.current.as_ref().map(promotion_json),
        "history": promotions.history.iter().rev().map(promotion_json).collect::<Vec<_>>(),
        "graph": {
            "built_with": super::routes::config_json(&graph.built),
            "in_effect": super::routes::config_json(&graph.in_effect),
            "rebuild_pending": graph.rebuild_pending,
            "rebuild_progress": graph.work.progress.map(|(done, total)| json!({"done": done, "total": total})),
            "incremental_applied": graph.work.incremental,
            "backfill_applied": graph.work.backfill,
            "discarded_stale": graph.work.stale,
            "rebuilds": graph.work.rebuilt,
            "rebuilds_failed": graph.work.failed,
            "last_error": graph.work.last_error,
        },
    })))
}

/// `GET /vectors/promotions`: every index with a promotion in effect.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.engine.promotions().list_all();
    let promotions: serde_json::Map<String, Value> =
        all.iter().map(|(name, p)| (name.clone(), promotion_json(p))).collect();
    Ok(Json(json!({ "count": promotions.len(), "promotions": promotions })))
}
