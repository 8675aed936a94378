//! Jobs: long-running engine calls (evaluation sets, trials, autotune) answer at once
//! with a job id; `GET /jobs/{id}` shows the job's progress and, once done, its result
//! or error. Jobs live in this process's memory (their results are events in the log,
//! so nothing is lost with them); the newest finished ones are kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use annal_engine::{Engine, Progress};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Mutex;

use super::error::ApiError;

/// Finished jobs kept for `GET /jobs/{id}`; older finished ones are forgotten.
pub const FINISHED_JOBS_KEPT: usize = 256;
/// Jobs running at once: each copies an index's vectors and builds graphs on the
/// machine's cores, so more would only share them (and the memory) worse.
pub const RUNNING_JOBS_MAX: usize = 2;
/// `Retry-After` when every job slot is taken.
const BUSY_RETRY_AFTER_S: u32 = 5;

#[derive(Clone)]
struct Job {
    id: u64,
    kind: &'static str,
    index: String,
    status: &'static str,
    progress: Option<Progress>,
    /// When the current stage began, and its `done` then: the stage's rate, for its ETA.
    stage_since: Option<(u64, u64)>,
    result: Option<Value>,
    error: Option<Value>,
    started_ms: u64,
    finished_ms: Option<u64>,
}

/// The jobs of this process.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Job>>,
}

/// A poisoned lock (a job thread panicked while holding it) still holds sound data:
/// every update is one field assignment.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Jobs {
    /// Run `work` on a thread of its own as a job; returns its id at once.
    ///
    /// # Errors
    /// 503 with `Retry-After` when [`RUNNING_JOBS_MAX`] jobs are running.
    pub fn start(
        self: &Arc<Self>,
        kind: &'static str,
        index: &str,
        work: impl FnOnce(&(dyn Fn(Progress) + Sync)) -> Result<Value, ApiError> + Send + 'static,
    ) -> Result<u64, ApiError> {
        let mut all = lock(&self.jobs);
        let running = all.values().filter(|j| j.finished_ms.is_none()).count();
        if running >= RUNNING_JOBS_MAX {
            return Err(ApiError::unavailable(
                format!("{running} jobs are running, at most {RUNNING_JOBS_MAX}: retry when one ends"),
                Some(BUSY_RETRY_AFTER_S),
            ));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Job {
            id,
            kind,
            index: index.to_owned(),
            status: "running",
            progress: None,
            stage_since: None,
            result: None,
            error: None,
            started_ms: now_ms(),
            finished_ms: None,
        };
        all.insert(id, job);
        drop(all);
        let jobs = Arc::clone(self);
        // A thread of its own, not the blocking pool the request routes share.
        let spawned = std::thread::Builder::new().name(format!("annal-job-{id}")).spawn(move || {
            let report = |p: Progress| {
                if let Some(job) = lock(&jobs.jobs).get_mut(&id) {
                    if job.progress.is_none_or(|old| old.stage != p.stage) {
                        job.stage_since = Some((now_ms(), p.done));
                    }
                    job.progress = Some(p);
                }
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&report)))
                .unwrap_or_else(|_panic| {
                    let error =
                        std::io::Error::other(format!("{kind} job panicked (a bug; see the server log)"));
                    Err(ApiError::internal(&error))
                });
            let mut all = lock(&jobs.jobs);
            if let Some(job) = all.get_mut(&id) {
                job.finished_ms = Some(now_ms());
                match outcome {
                    Ok(result) => {
                        job.status = "succeeded";
                        // Its last stage is done, whatever it last reported.
                        if let Some(progress) = job.progress.as_mut() {
                            progress.done = progress.total;
                        }
                        job.result = Some(result);
                    }
                    Err(error) => {
                        tracing::warn!(job = id, kind, detail = error.detail(), "job failed");
                        job.status = "failed";
                        job.error =
                            Some(json!({"status": error.status().as_u16(), "detail": error.detail()}));
                    }
                }
            }
            // Forget the oldest finished jobs beyond the bound.
            let finished: Vec<u64> = all.values().filter(|j| j.finished_ms.is_some()).map(|j| j.id).collect();
            for old in finished.iter().take(finished.len().saturating_sub(FINISHED_JOBS_KEPT)) {
                all.remove(old);
            }
        });
        if let Err(error) = spawned {
            lock(&self.jobs).remove(&id);
            return Err(ApiError::internal(&error));
        }
        Ok(id)
    }

    fn get(&self, id: u64) -> Option<Job> {
        lock(&self.jobs).get(&id).cloned()
    }
}

/// 202 `{job_id, status}` for a job just started.
pub fn accepted(id: u64) -> impl IntoResponse {
    (StatusCode::ACCEPTED, Json(json!({"job_id": id, "status": format!("/jobs/{id}")})))
}

/// Start a job of `kind` on index `index` (404 at once if it does not exist) and
/// answer 202: `work` gets the engine, the index name and the progress callback.
pub fn start_on_index(
    engine: Arc<Engine>,
    jobs: &Arc<Jobs>,
    kind: &'static str,
    index: String,
    work: impl FnOnce(&Engine, &str, &(dyn Fn(Progress) + Sync)) -> Result<Value, ApiError> + Send + 'static,
) -> Result<impl IntoResponse, ApiError> {
    engine.get_index(&index)?;
    let name = index.clone();
    let id = jobs.start(kind, &name, move |progress| work(&engine, &index, progress))?;
    Ok(accepted(id))
}

/// Where a job's current stage stands: `done` of `total`, the percent, and the time left
/// at the stage's rate so far (`eta_ms`: null until a unit is done).
fn progress_json(progress: Progress, since: Option<(u64, u64)>, now: u64, running: bool) -> Value {
    let Progress { stage, done, total } = progress;
    let percent = (total > 0).then(|| (done.min(total) as f64 * 1000.0 / total as f64).round() / 10.0);
    let eta_ms = since.filter(|_| running).and_then(|(started, done_then)| {
        let units = done.checked_sub(done_then).filter(|&u| u > 0)?;
        let elapsed = now.saturating_sub(started);
        Some(
            u64::try_from(u128::from(elapsed) * u128::from(total.saturating_sub(done)) / u128::from(units))
                .unwrap_or(u64::MAX),
        )
    });
    json!({"stage": stage, "done": done, "total": total, "percent": percent, "eta_ms": eta_ms})
}

/// `GET /jobs/{id}`.
pub async fn get(State(jobs): State<Arc<Jobs>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = id.parse::<u64>().ok().and_then(|id| jobs.get(id)).ok_or_else(|| {
        ApiError::not_found(format!("no job {id:?} (jobs are kept in memory until a restart)"))
    })?;
    Ok(Json(json!({
        "id": job.id,
        "kind": job.kind,
        "index": job.index,
        "status": job.status,
        "progress": job.progress.map(|p| {
            let running = job.finished_ms.is_none();
            let mut at = progress_json(p, job.stage_since, now_ms(), running);
            if job.status == "succeeded" {
                at["eta_ms"] = json!(0);
            }
            at
        }),
        "result": job.result,
        "error": job.error,
        "started_ms": job.started_ms,
        "finished_ms": job.finished_ms,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_the_time_left_at_the_stages_rate_and_null_before_a_unit_is_done() {
        let p = |done, total| Progress { stage: "building", done, total };
        // 250 of 1,000 done in 5 s since the stage began at 0 done: 15 s left.
        let at = progress_json(p(250, 1_000), Some((10_000, 0)), 15_000, true);
        assert_eq!(at["percent"], 25.0);
        assert_eq!(at["eta_ms"], 15_000);
        // The rate counts only this stage's units.
        assert_eq!(progress_json(p(600, 1_000), Some((0, 500)), 1_000, true)["eta_ms"], 4_000);
        assert_eq!(progress_json(p(0, 1_000), Some((0, 0)), 9_000, true)["eta_ms"], Value::Null);
        assert_eq!(progress_json(p(0, 0), None, 0, true)["percent"], Value::Null);
        assert_eq!(progress_json(p(1_000, 1_000), Some((0, 0)), 3_000, true)["eta_ms"], 0);
        // A job that ended (failed) has no time left to tell.
        assert_eq!(progress_json(p(250, 1_000), Some((0, 0)), 9_000, false)["eta_ms"], Value::Null);
    }
}
