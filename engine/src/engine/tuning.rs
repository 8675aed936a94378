//! Evaluation sets, trials and autotune on the engine (see [`crate::trials`]).

use bytes::Bytes;

use super::{Engine, PromoteRequest};
use crate::error::Error;
use crate::event::{EvalSetCreated, EventBody, HnswConfig, TrialRecorded};
use crate::limits::EVAL_QUERIES_MAX;
use crate::limits::SEARCH_K_MAX;
use crate::progress::{OnProgress, Progress};
use crate::projection::promotions::Promotion;
use crate::projection::trials::{IndexTrials, Objective, Trial};
use crate::projection::vectors::{code_size, needs_training, training_bounds};
use crate::storage::PRIMARY;
use crate::sync::block_on;
use crate::trials::evalset::EvalSet;
use crate::trials::{measure, Live};
use crate::validate;

/// Where an evaluation set's queries come from.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalQueries {
    /// `count` of the index's own live vectors, chosen by `seed`; each is held out of
    /// its own ground truth.
    Sample {
        /// How many.
        count: u32,
        /// Which (the same seed over the same vectors picks the same ones).
        seed: u64,
    },
    /// Query vectors given by the caller.
    Supplied(Vec<Vec<f32>>),
}

/// What [`Engine::create_eval_set`] creates.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// Its id (default: `e1`, `e2`, ... per index).
    pub eval_id: Option<String>,
    /// Its queries.
    pub queries: EvalQueries,
    /// Neighbours in each query's ground truth (recall@k), 1 to 1000.
    pub k: u32,
}

/// What [`Engine::run_trial`] measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialRequest {
    /// The evaluation set to measure against.
    pub eval_id: String,
    /// Its id (default: `t1`, `t2`, ... per index).
    pub trial_id: Option<String>,
    /// The configuration to build and measure.
    pub config: HnswConfig,
}

/// What [`Engine::autotune`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Autotuned {
    /// Every trial it ran, in order.
    pub trials: Vec<Trial>,
    /// The fastest (p99) meeting the recall floor, if any.
    pub chosen: Option<Trial>,
    /// The promotion of the chosen trial's config (none when no trial met the floor).
    pub promoted: Option<Promotion>,
}

/// The grid autotune builds: (`m`, `ef_construction`); each graph is measured at every
/// `ef_search` of [`AUTOTUNE_EF_SEARCH`], each measurement a trial.
pub const AUTOTUNE_BUILDS: [(u32, u32); 4] = [(8, 40), (16, 64), (32, 80), (48, 120)];
/// The `ef_search` values autotune measures on each graph.
pub const AUTOTUNE_EF_SEARCH: [u32; 4] = [16, 32, 64, 128];
/// The storage kinds autotune tries when given a memory budget, each with the refine
/// factors it measures (a search setting: one graph per storage and build).
pub const AUTOTUNE_STORAGES: [(crate::event::StorageKind, &[u32]); 4] = [
    (crate::event::StorageKind::Flat, &[0]),
    (crate::event::StorageKind::Fp16, &[0]),
    (crate::event::StorageKind::Sq8, &[0, 2]),
    (crate::event::StorageKind::Sq4, &[0, 4]),
];

/// A memory budget for [`Engine::autotune_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBudget {
    /// Resident graph bytes per live vector, at most.
    BytesPerVector(u64),
    /// Resident graph bytes of the whole index, at most, in MiB.
    ResidentMb(u64),
}

fn ident(field: &str, value: &str) -> Result<(), Error> {
    validate::name(value)
        .map_err(|e| validate::InvalidInput { field: field.to_owned(), reason: e.reason })?;
    Ok(())
}

impl Engine {
    /// Create an evaluation set for `index`: queries with their exact `k` nearest live
    /// vectors (brute force), stored in the primary bucket and registered by an
    /// `EvalSetCreated` event. Reads every live vector of the index.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field (k, counts, ids, query vectors);
    /// [`Error::IndexNotFound`]; the bucket write failed (journaled).
    pub fn create_eval_set(
        &self,
        actor: &str,
        index: &str,
        request: EvalRequest,
        progress: OnProgress<'_>,
    ) -> Result<EvalSetCreated, Error> {
        validate::actor(actor)?;
        if !(1..=SEARCH_K_MAX as u32).contains(&request.k) {
            return Err(invalid("k", format!("must be 1 to {SEARCH_K_MAX}, got {}", request.k)));
        }
        if let Some(id) = &request.eval_id {
            ident("eval_id", id)?;
        }
        let handle = self.index(index)?;
        progress(Progress { stage: "reading", done: 0, total: 1 });
        let truth_seq = self.projector.applied_seq();
        let live = Live::read(&handle)?;
        if live.ids.is_empty() {
            return Err(invalid(
                "queries",
                format!("index {index:?} has no live vectors to compute a truth over"),
            ));
        }
        let (queries, held_out, sampled) = match request.queries {
            EvalQueries::Sample { count, seed } => {
                if !(1..=EVAL_QUERIES_MAX).contains(&count) {
                    return Err(invalid("queries", format!("must be 1 to {EVAL_QUERIES_MAX}, got {count}")));
                }
                if live.ids.len() <= count as usize {
                    let n = live.ids.len();
                    return Err(invalid(
                        "queries",
                        format!("{count} sampled queries need more than the {n} live vectors"),
                    ));
                }
                let (queries, held_out) = live.sample(count as usize, seed);
                (queries, held_out, true)
            }
            EvalQueries::Supplied(vectors) => {
                if vectors.is_empty() || vectors.len() > EVAL_QUERIES_MAX as usize {
                    let n = vectors.len();
                    return Err(invalid(
                        "vectors",
                        format!("must hold 1 to {EVAL_QUERIES_MAX} queries, got {n}"),
                    ));
                }
                validate::search(&vectors, 1, live.dimension, live.metric)?;
                let held_out = vec![None; vectors.len()];
                (vectors.iter().map(|q| live.prepare(q)).collect(), held_out, false)
            }
        };
        progress(Progress { stage: "truth", done: 0, total: queries.len() as u64 });
        let truth = live.exact(&queries, &held_out, request.k as usize)?;
        let set = EvalSet { dimension: live.dimension, k: request.k, truth_seq, queries, held_out, truth };
        let object = set.encode().map_err(|source| Error::EvalSet { key: String::new(), source })?;
        let crc32 = crc32fast::hash(&object);
        let bytes = object.len() as u64;
        // A key of its own (not the id, which is assigned below under the lock): the
        // object is written before the lock is taken, and never over another set's.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = format!("evals/{index}/{nanos:032}-{crc32:08x}.eval");
        block_on(self.storage.put(actor, PRIMARY, &key, Bytes::from(object)))??;
        let _one = crate::sync::lock(&self.trialing);
        let existing = self.trials.get(index);
        let eval_id = match request.eval_id {
            Some(id) if existing.evals.contains_key(&id) => {
                return Err(invalid(
                    "eval_id",
                    format!("index {index:?} has an evaluation set {id:?} already"),
                ));
            }
            Some(id) => id,
            None => (existing.evals.len() + 1..)
                .map(|n| format!("e{n}"))
                .find(|id| !existing.evals.contains_key(id))
                .unwrap_or_default(),
        };
        let created = EvalSetCreated {
            index: index.to_owned(),
            eval_id,
            sampled,
            queries: set.queries.len() as u32,
            k: request.k,
            truth_seq,
            bucket: PRIMARY.to_owned(),
            key,
            bytes,
            crc32,
        };
        let seq = {
            let schema = crate::sync::read(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            self.append(actor, EventBody::EvalSetCreated(created.clone()))?
        };
        self.wait_applied(seq)?;
        Ok(created)
    }

    /// An evaluation set of `index`, read back from its bucket and checked.
    ///
    /// # Errors
    /// [`Error::EvalNotFound`]; the object is missing or corrupt.
    pub fn eval_set(&self, index: &str, eval_id: &str) -> Result<(EvalSetCreated, EvalSet), Error> {
        let (_, created) = self
            .trials
            .eval(index, eval_id)
            .ok_or_else(|| Error::EvalNotFound { index: index.to_owned(), eval_id: eval_id.to_owned() })?;
        let fetched = block_on(self.storage.get_bounded(
            crate::snapshot::ENGINE_ACTOR,
            &created.bucket,
            &created.key,
            created.bytes,
        ))??;
        let actual = crc32fast::hash(&fetched.bytes);
        if actual != created.crc32 {
            let source = crate::trials::evalset::EvalFormatError(format!(
                "CRC-32 {actual:08x} of the object, {:08x} registered",
                created.crc32
            ));
            return Err(Error::EvalSet { key: created.key.clone(), source });
        }
        let set = EvalSet::decode(&fetched.bytes)
            .map_err(|source| Error::EvalSet { key: created.key.clone(), source })?;
        Ok((created, set))
    }

    /// Build `request.config` off to the side from the index's live vectors and measure
    /// it against the evaluation set; records a `TrialRecorded` event.
    ///
    /// # Errors
    /// [`Error::Invalid`] (config, trial id); [`Error::IndexNotFound`];
    /// [`Error::EvalNotFound`]; FAISS or the bucket failed.
    pub fn run_trial(
        &self,
        actor: &str,
        index: &str,
        request: TrialRequest,
        progress: OnProgress<'_>,
    ) -> Result<Trial, Error> {
        validate::actor(actor)?;
        validate::config(&request.config)?;
        if let Some(id) = &request.trial_id {
            ident("trial_id", id)?;
        }
        self.check_trial(index, &request.config)?;
        let base = request.config;
        let mut trials = self.trials_of(
            actor,
            index,
            &request.eval_id,
            base,
            &[(request.config.ef_search, request.config.storage.refine)],
            request.trial_id,
            progress,
        )?;
        trials.pop().ok_or_else(|| Error::EvalNotFound { index: index.to_owned(), eval_id: request.eval_id })
    }

    /// Whether a trial of `config` can run on `index` now: a valid config, a storage the
    /// index's dimension and metric allow, and enough live vectors to train a storage
    /// that needs training. What `POST .../trials` checks before it starts a job.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field; [`Error::IndexNotFound`].
    pub fn check_trial(&self, index: &str, config: &HnswConfig) -> Result<(), Error> {
        validate::config(config)?;
        let handle = self.index(index)?;
        let guard = handle.read();
        validate::storage(config, guard.params.dimension, guard.params.metric)?;
        let live = guard.len();
        let (min, _) = training_bounds(config.storage, guard.params.dimension);
        if needs_training(config.storage) && live < min as u64 {
            return Err(invalid(
                "storage",
                format!(
                    "{} needs {min} live vectors to train its quantizer; index {index:?} has {live}",
                    config.storage.label()
                ),
            ));
        }
        Ok(())
    }

    /// Build one graph with `base` (its `m`, `ef_construction` and storage) and record a
    /// trial per (`ef_search`, refine) of `settings`.
    #[allow(clippy::too_many_arguments)]
    fn trials_of(
        &self,
        actor: &str,
        index: &str,
        eval_id: &str,
        base: HnswConfig,
        efs: &[(u32, u32)],
        trial_id: Option<String>,
        progress: OnProgress<'_>,
    ) -> Result<Vec<Trial>, Error> {
        let handle = self.index(index)?;
        let (created, set) = self.eval_set(index, eval_id)?;
        progress(Progress { stage: "reading", done: 0, total: 1 });
        let live = Live::read(&handle)?;
        if live.dimension != set.dimension {
            let source = crate::trials::evalset::EvalFormatError(format!(
                "dimension {} for an index of {}",
                set.dimension, live.dimension
            ));
            return Err(Error::EvalSet { key: created.key, source });
        }
        // The stored truth holds while no write touched the index since it was
        // computed; otherwise it is computed again over exactly what the trial builds.
        let truth = if self.trials.get(index).last_write_seq <= set.truth_seq {
            set.truth.clone()
        } else {
            progress(Progress { stage: "truth", done: 0, total: set.queries.len() as u64 });
            live.exact(&set.queries, &set.held_out, set.k as usize)?
        };
        if needs_training(base.storage) && live.ids.len() < training_bounds(base.storage, live.dimension).0 {
            return Err(invalid(
                "storage",
                format!(
                    "{} needs {} live vectors to train its quantizer; index {index:?} has {}",
                    base.storage.label(),
                    training_bounds(base.storage, live.dimension).0,
                    live.ids.len()
                ),
            ));
        }
        let (mut graph, build_ms) = live.build(base, progress, &|| self.projector.stopped())?;
        // Resident bytes: the graph as FAISS serializes it (codes and links); a quantized
        // graph's full vectors are in its scratch file, not resident.
        let memory_bytes = graph.to_bytes()?.len() as u64;
        let mut out = Vec::with_capacity(efs.len());
        for (i, &(ef_search, refine)) in efs.iter().enumerate() {
            progress(Progress { stage: "measuring", done: i as u64, total: efs.len() as u64 });
            graph.set_ef_search(ef_search)?;
            graph.set_refine(refine);
            let measured = measure(&graph, &live, &set.queries, &set.held_out, &truth, set.k as usize)?;
            let _one = crate::sync::lock(&self.trialing);
            let existing = self.trials.get(index);
            let taken = |id: &str| existing.trials.iter().any(|t| t.record.trial_id == id);
            let id = match (&trial_id, efs.len()) {
                (Some(id), 1) if taken(id) => {
                    return Err(invalid("trial_id", format!("index {index:?} has a trial {id:?} already")));
                }
                (Some(id), 1) => id.clone(),
                _ => (existing.trials.len() + 1..)
                    .map(|n| format!("t{n}"))
                    .find(|id| !taken(id))
                    .unwrap_or_default(),
            };
            let record = TrialRecorded {
                index: index.to_owned(),
                trial_id: id,
                eval_id: eval_id.to_owned(),
                config: HnswConfig {
                    ef_search,
                    storage: crate::event::Storage { refine, ..base.storage },
                    ..base
                },
                k: set.k,
                queries: set.queries.len() as u32,
                vectors: live.ids.len() as u64,
                recall: measured.recall,
                latency_p50_us: measured.p50_us,
                latency_p99_us: measured.p99_us,
                build_ms,
                memory_bytes,
            };
            let seq = {
                let schema = crate::sync::read(self.writable_schema()?);
                if schema.get(index).is_none() {
                    return Err(Error::IndexNotFound { name: index.to_owned() });
                }
                self.append(actor, EventBody::TrialRecorded(record.clone()))?
            };
            self.wait_applied(seq)?;
            let trial = self.trials.get(index).trials.into_iter().find(|t| t.seq == seq);
            out.extend(trial);
        }
        Ok(out)
    }

    /// The evaluation sets and trials of `index`.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn trials(&self, index: &str) -> Result<IndexTrials, Error> {
        self.index(index)?;
        Ok(self.trials.get(index))
    }

    /// The best trial of `index` for `objective` (among those of `eval_id` if given).
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn best_trial(
        &self,
        index: &str,
        objective: Objective,
        eval_id: Option<&str>,
    ) -> Result<Option<Trial>, Error> {
        self.index(index)?;
        Ok(self.trials.best(index, objective, eval_id))
    }

    /// Run the autotune grid ([`AUTOTUNE_BUILDS`] x [`AUTOTUNE_EF_SEARCH`]) as trials
    /// against `eval_id`, and promote the fastest (p99) that meets `recall_floor`, with
    /// a note naming the trials compared. Promotes nothing when none meets it.
    ///
    /// # Errors
    /// As [`Engine::run_trial`] and [`Engine::promote`]; [`Error::Invalid`] for a
    /// floor outside 0..=1.
    pub fn autotune(
        &self,
        actor: &str,
        index: &str,
        eval_id: &str,
        recall_floor: f64,
        progress: OnProgress<'_>,
    ) -> Result<Autotuned, Error> {
        self.autotune_within(actor, index, eval_id, recall_floor, None, progress)
    }

    /// [`Engine::autotune`] within a memory budget: the grid then adds the storage
    /// kinds of [`AUTOTUNE_STORAGES`] (each with its refine factors, measured on the
    /// same graph), skips the builds whose codes and links alone would exceed the
    /// budget, and promotes the fastest trial meeting both the recall floor and the
    /// budget (resident bytes: the graph as FAISS serializes it).
    ///
    /// # Errors
    /// As [`Engine::autotune`]; [`Error::Invalid`] for a zero budget.
    pub fn autotune_within(
        &self,
        actor: &str,
        index: &str,
        eval_id: &str,
        recall_floor: f64,
        budget: Option<MemoryBudget>,
        progress: OnProgress<'_>,
    ) -> Result<Autotuned, Error> {
        validate::actor(actor)?;
        validate::recall_floor(recall_floor)?;
        let (dimension, live) = {
            let handle = self.index(index)?;
            let guard = handle.read();
            (guard.params.dimension, guard.len())
        };
        let per_vector = match budget {
            None => None,
            Some(MemoryBudget::BytesPerVector(0)) => {
                return Err(invalid("max_bytes_per_vector", "must be at least 1".into()));
            }
            Some(MemoryBudget::ResidentMb(0)) => {
                return Err(invalid("max_resident_mb", "must be at least 1".into()));
            }
            Some(MemoryBudget::BytesPerVector(bytes)) => Some(bytes as f64),
            Some(MemoryBudget::ResidentMb(mb)) => Some(mb as f64 * 1024.0 * 1024.0 / live.max(1) as f64),
        };
        let storages: Vec<(crate::event::Storage, &[u32])> = match per_vector {
            None => vec![(crate::event::Storage::FLAT, &[0][..])],
            Some(_) => AUTOTUNE_STORAGES
                .iter()
                .map(|(kind, refines)| (crate::event::Storage { kind: *kind, pq_m: 0, refine: 0 }, *refines))
                .filter(|(storage, _)| {
                    !needs_training(*storage) || live >= training_bounds(*storage, dimension).0 as u64
                })
                .collect(),
        };
        let mut builds = Vec::new();
        for (storage, refines) in &storages {
            for (m, ef_construction) in AUTOTUNE_BUILDS {
                // Codes plus level-0 links (2m neighbour ids of 4 bytes): a floor no
                // graph of this build goes under.
                let floor = code_size(dimension as usize, *storage) as u64 + 8 * u64::from(m);
                if per_vector.is_some_and(|budget| floor as f64 > budget) {
                    continue;
                }
                let base =
                    HnswConfig { m, ef_construction, ef_search: AUTOTUNE_EF_SEARCH[0], storage: *storage };
                let settings: Vec<(u32, u32)> =
                    AUTOTUNE_EF_SEARCH.iter().flat_map(|&ef| refines.iter().map(move |&r| (ef, r))).collect();
                builds.push((base, settings));
            }
        }
        let mut trials = Vec::new();
        let total = builds.len() as u64;
        for (i, (base, settings)) in builds.into_iter().enumerate() {
            // One stage over the whole grid, builds done of all: monotonic, so its
            // rate gives the job's time left.
            let step = |_: Progress| progress(Progress { stage: "builds", done: i as u64, total });
            trials.extend(self.trials_of(actor, index, eval_id, base, &settings, None, &step)?);
        }
        progress(Progress { stage: "builds", done: total, total });
        let fits = |t: &Trial| {
            per_vector
                .is_none_or(|budget| t.record.memory_bytes as f64 / t.record.vectors.max(1) as f64 <= budget)
        };
        let chosen = trials
            .iter()
            .filter(|t| t.record.recall >= recall_floor && fits(t))
            .min_by(|a, b| crate::projection::trials::faster(a, b))
            .cloned();
        let promoted = match &chosen {
            None => None,
            Some(best) => {
                let ids: Vec<&str> = trials.iter().map(|t| t.record.trial_id.as_str()).collect();
                let meeting = trials.iter().filter(|t| t.record.recall >= recall_floor && fits(t)).count();
                let r = &best.record;
                let note = format!(
                    "autotune against evaluation set {eval_id}: trial {} is the fastest (p99 {} us, recall {:.4}) of {meeting} trials meeting recall {recall_floor}, of {} compared: {}",
                    r.trial_id,
                    r.latency_p99_us,
                    r.recall,
                    trials.len(),
                    ids.join(", ")
                );
                let request = PromoteRequest {
                    config: r.config,
                    trial_id: r.trial_id.clone(),
                    promoted_by: actor.to_owned(),
                    note,
                };
                Some(self.promote(actor, index, request)?)
            }
        };
        Ok(Autotuned { trials, chosen, promoted })
    }
}

fn invalid(field: &str, reason: String) -> Error {
    Error::Invalid(validate::InvalidInput { field: field.to_owned(), reason })
}
