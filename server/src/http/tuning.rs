//! Evaluation sets, trials, the best trial and autotune. The long-running ones answer
//! 202 with a job id (see `jobs.rs`).

use std::sync::Arc;

use annal_engine::limits::EVAL_QUERIES_MAX;
use annal_engine::{EvalQueries, EvalRequest, HnswConfig, TrialRequest};
use annal_engine::{Objective, Trial};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
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

/// Queries sampled from the index for `POST .../evals` when none are given.
pub const EVAL_SAMPLE_DEFAULT: u32 = 100;

fn trial_json(t: &Trial) -> Value {
    let r = &t.record;
    json!({
        "trial_id": r.trial_id,
        "eval_id": r.eval_id,
        "m": r.config.m,
        "ef_construction": r.config.ef_construction,
        "ef_search": r.config.ef_search,
        "storage": r.config.storage.kind.name(),
        "pq_m": r.config.storage.pq_m,
        "refine": r.config.storage.refine,
        "bytes_per_vector": r.memory_bytes.checked_div(r.vectors).unwrap_or(0),
        "k": r.k,
        "queries": r.queries,
        "vectors": r.vectors,
        "recall": r.recall,
        "latency_p50_us": r.latency_p50_us,
        "latency_p99_us": r.latency_p99_us,
        "build_ms": r.build_ms,
        "memory_bytes": r.memory_bytes,
        "seq": t.seq,
        "time_ms": t.time_ms,
    })
}

/// Body of `POST /vectors/index/{name}/evals`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEval {
    eval_id: Option<String>,
    k: Option<u32>,
    sample: Option<Sample>,
    vectors: Option<Queries>,
}

/// The supplied queries, refused as soon as there are more than the engine takes (so a
/// body of a million empty rows is not built in memory first).
struct Queries(Vec<Vec<f32>>);

impl schemars::JsonSchema for Queries {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EvalQueries".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = generator.subschema_for::<super::routes::VectorField>();
        schemars::json_schema!({"type": "array", "items": item, "maxItems": EVAL_QUERIES_MAX})
    }
}

impl<'de> Deserialize<'de> for Queries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> serde::de::Visitor<'de> for Rows {
            type Value = Queries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of at most {EVAL_QUERIES_MAX} query vectors")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Queries, A::Error> {
                let mut rows = Vec::new();
                while let Some(super::routes::VectorField(row)) =
                    seq.next_element::<super::routes::VectorField>()?
                {
                    if rows.len() == EVAL_QUERIES_MAX as usize {
                        return Err(serde::de::Error::custom(format!(
                            "more than {EVAL_QUERIES_MAX} queries"
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sample {
    count: u32,
    #[serde(default)]
    seed: u64,
}

/// `POST /vectors/index/{name}/evals`: 202, a job creating an evaluation set.
pub async fn create_eval(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let body: CreateEval = body.parse()?;
    let queries = match (body.sample, body.vectors) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("vectors: give either sample or vectors, not both"))
        }
        (None, Some(Queries(vectors))) => EvalQueries::Supplied(vectors),
        (Some(Sample { count, seed }), None) => EvalQueries::Sample { count, seed },
        (None, None) => EvalQueries::Sample { count: EVAL_SAMPLE_DEFAULT, seed: 0 },
    };
    let request = EvalRequest { eval_id: body.eval_id, queries, k: body.k.unwrap_or(10) };
    jobs::start_on_index(
        Arc::clone(&state.engine),
        &state.jobs,
        "eval",
        name,
        move |engine, index, progress| {
            let created = engine.create_eval_set(&actor, index, request, progress)?;
            Ok(json!({
                "eval_id": created.eval_id,
                "sampled": created.sampled,
                "queries": created.queries,
                "k": created.k,
                "truth_seq": created.truth_seq,
                "key": created.key,
                "bytes": created.bytes,
            }))
        },
    )
}

/// Body of `POST /vectors/index/{name}/trials`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunTrial {
    eval_id: String,
    trial_id: Option<String>,
    m: u32,
    ef_construction: u32,
    ef_search: u32,
    /// `flat` (default), `fp16`, `sq8`, `sq4` or `pq`.
    storage: Option<String>,
    /// Sub-quantizers of `pq` storage.
    pq_m: Option<u32>,
    /// Refine factor, 1 to 16 (quantized storage only).
    refine: Option<u32>,
}

/// An unknown index (404) or evaluation set (404) is the caller's mistake: answered
/// before a trial or autotune job starts, not by a job that fails later.
fn known_eval(state: &AppState, index: &str, eval_id: &str) -> Result<(), ApiError> {
    if !state.engine.trials(index)?.evals.contains_key(eval_id) {
        return Err(annal_engine::Error::EvalNotFound {
            index: index.to_owned(),
            eval_id: eval_id.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// `POST /vectors/index/{name}/trials`: 202, a job building and measuring a config.
pub async fn run_trial(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let body: RunTrial = body.parse()?;
    let config = HnswConfig {
        m: body.m,
        ef_construction: body.ef_construction,
        ef_search: body.ef_search,
        storage: super::routes::storage_of(body.storage.as_deref(), body.pq_m, body.refine)?,
    };
    state.engine.check_trial(&name, &config)?;
    known_eval(&state, &name, &body.eval_id)?;
    let request = TrialRequest { eval_id: body.eval_id, trial_id: body.trial_id, config };
    jobs::start_on_index(
        Arc::clone(&state.engine),
        &state.jobs,
        "trial",
        name,
        move |engine, index, progress| {
            let trial = engine.run_trial(&actor, index, request, progress)?;
            Ok(trial_json(&trial))
        },
    )
}

/// `GET /vectors/index/{name}/trials`: every evaluation set and trial, oldest first.
pub async fn list_trials(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine;
    let all = blocking(move || engine.trials(&name)).await?;
    let evals: Vec<Value> = all
        .evals
        .values()
        .map(|(seq, e)| {
            json!({"eval_id": e.eval_id, "sampled": e.sampled, "queries": e.queries, "k": e.k, "truth_seq": e.truth_seq, "key": e.key, "seq": seq})
        })
        .collect();
    Ok(Json(json!({
        "evals": evals,
        "trials": all.trials.iter().map(trial_json).collect::<Vec<_>>(),
        "last_write_seq": all.last_write_seq,
    })))
}

/// Query of `GET /vectors/index/{name}/trials/best`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BestQuery {
    objective: String,
    p99_max_us: Option<u64>,
    recall_min: Option<f64>,
    eval_id: Option<String>,
}

/// `GET /vectors/index/{name}/trials/best?objective=recall&p99_max_us=N` (the highest
/// recall within a latency bound) or `?objective=latency&recall_min=R` (the fastest
/// meeting a recall floor): `{best}`, `null` when no trial qualifies.
pub async fn best_trial(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<BestQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let objective = match (q.objective.as_str(), q.p99_max_us, q.recall_min) {
        ("recall", Some(p99_max_us), None) => Objective::MaxRecall { p99_max_us },
        ("latency", None, Some(recall_min)) => Objective::MinLatency { recall_min },
        _ => {
            return Err(ApiError::bad_request(
                "objective: use objective=recall&p99_max_us=N or objective=latency&recall_min=R",
            ))
        }
    };
    let engine = state.engine;
    let best = blocking(move || engine.best_trial(&name, objective, q.eval_id.as_deref())).await?;
    Ok(Json(json!({ "best": best.as_ref().map(trial_json) })))
}

/// Body of `POST /vectors/index/{name}/autotune`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autotune {
    eval_id: String,
    recall_floor: f64,
    /// A memory budget: resident graph bytes per vector at most. With a budget the grid
    /// adds the storage kinds (fp16, sq8, sq4, with refine factors).
    max_bytes_per_vector: Option<u64>,
    /// A memory budget: resident graph size of the whole index at most, in MiB.
    max_resident_mb: Option<u64>,
}

/// `POST /vectors/index/{name}/autotune`: 202, a job running the grid as trials and
/// promoting the fastest meeting the floor.
pub async fn autotune(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let body: Autotune = body.parse()?;
    annal_engine::validate_recall_floor(body.recall_floor).map_err(annal_engine::Error::from)?;
    let budget = match (body.max_bytes_per_vector, body.max_resident_mb) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "max_resident_mb: give one budget, max_bytes_per_vector or max_resident_mb",
            ))
        }
        (Some(0), None) => return Err(ApiError::bad_request("max_bytes_per_vector: must be at least 1")),
        (None, Some(0)) => return Err(ApiError::bad_request("max_resident_mb: must be at least 1")),
        (Some(bytes), None) => Some(annal_engine::MemoryBudget::BytesPerVector(bytes)),
        (None, Some(mb)) => Some(annal_engine::MemoryBudget::ResidentMb(mb)),
    };
    known_eval(&state, &name, &body.eval_id)?;
    jobs::start_on_index(
        Arc::clone(&state.engine),
        &state.jobs,
        "autotune",
        name,
        move |engine, index, progress| {
            let done =
                engine.autotune_within(&actor, index, &body.eval_id, body.recall_floor, budget, progress)?;
            Ok(json!({
                "trials": done.trials.iter().map(trial_json).collect::<Vec<_>>(),
                "chosen": done.chosen.as_ref().map(|t| t.record.trial_id.clone()),
                "promoted": done.promoted.as_ref().map(|p| {
                    let mut out = super::routes::config_json(&p.config);
                    if let Some(map) = out.as_object_mut() {
                        map.extend([
                            ("trial_id".to_owned(), json!(p.trial_id)),
                            ("note".to_owned(), json!(p.note)),
                            ("seq".to_owned(), json!(p.seq)),
                        ]);
                    }
                    out
                }),
            }))
        },
    )
}
