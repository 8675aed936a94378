//! Trials are data: per index, the evaluation sets registered for it and every trial
//! measured against them, from `EvalSetCreated` and `TrialRecorded` events, and the
//! last event that changed the index's vectors (so a trial knows whether an evaluation
//! set's stored truth still holds). Identical after any restart.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::codec::{Dec, Enc};
use crate::event::{EvalSetCreated, Event, EventBody, TrialRecorded};
use crate::projection::{ApplyError, Outcome, Projection, SnapshotError};

/// One recorded trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Its event's body.
    pub record: TrialRecorded,
    /// Sequence number of its event.
    pub seq: u64,
    /// When it was recorded, ms since the Unix epoch.
    pub time_ms: u64,
}

/// What "best" means for [`TrialState::best`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// The highest recall among trials whose p99 latency is at most this (µs).
    MaxRecall {
        /// The latency bound.
        p99_max_us: u64,
    },
    /// The lowest p99 latency among trials whose recall is at least this.
    MinLatency {
        /// The recall floor.
        recall_min: f64,
    },
}

/// Which of two trials is faster: lower p99, then lower p50, then higher recall, then
/// the later one. What [`Objective::MinLatency`] and autotune rank by.
pub fn faster(a: &Trial, b: &Trial) -> std::cmp::Ordering {
    let (x, y) = (&a.record, &b.record);
    x.latency_p99_us
        .cmp(&y.latency_p99_us)
        .then(x.latency_p50_us.cmp(&y.latency_p50_us))
        .then(y.recall.total_cmp(&x.recall))
        .then(b.seq.cmp(&a.seq))
}

/// The evaluation sets and trials of one index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexTrials {
    /// Evaluation sets by id.
    pub evals: BTreeMap<String, (u64, EvalSetCreated)>,
    /// Trials, oldest first.
    pub trials: Vec<Trial>,
    /// The last event that upserted or deleted vectors of the index (0: none).
    pub last_write_seq: u64,
}

/// The trials projection.
#[derive(Default)]
pub struct TrialState {
    indexes: RwLock<BTreeMap<String, IndexTrials>>,
}

impl TrialState {
    /// Everything recorded for `index` (empty for an unknown one).
    pub fn get(&self, index: &str) -> IndexTrials {
        self.indexes.read().get(index).cloned().unwrap_or_default()
    }

    /// Whether `index` exists here (it does from its `IndexCreated` on).
    pub fn has_index(&self, index: &str) -> bool {
        self.indexes.read().contains_key(index)
    }

    /// The evaluation set `eval_id` of `index`, with its event's sequence number.
    pub fn eval(&self, index: &str, eval_id: &str) -> Option<(u64, EvalSetCreated)> {
        self.indexes.read().get(index).and_then(|t| t.evals.get(eval_id).cloned())
    }

    /// Whether `index` has a trial `trial_id`.
    pub fn has_trial(&self, index: &str, trial_id: &str) -> bool {
        self.indexes.read().get(index).is_some_and(|t| t.trials.iter().any(|x| x.record.trial_id == trial_id))
    }

    /// The best trial of `index` for `objective`, among those of `eval_id` if given.
    /// Ties go to the later trial.
    pub fn best(&self, index: &str, objective: Objective, eval_id: Option<&str>) -> Option<Trial> {
        let indexes = self.indexes.read();
        let trials =
            indexes.get(index)?.trials.iter().filter(|t| eval_id.is_none_or(|e| t.record.eval_id == e));
        match objective {
            Objective::MaxRecall { p99_max_us } => trials
                .filter(|t| t.record.latency_p99_us <= p99_max_us)
                .max_by(|a, b| a.record.recall.total_cmp(&b.record.recall).then(a.seq.cmp(&b.seq)))
                .cloned(),
            Objective::MinLatency { recall_min } => {
                trials.filter(|t| t.record.recall >= recall_min).min_by(|a, b| faster(a, b)).cloned()
            }
        }
    }
}

impl Projection for TrialState {
    fn name(&self) -> &'static str {
        "trials"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        let mut indexes = self.indexes.write();
        match &event.body {
            EventBody::IndexCreated(created)
            | EventBody::IndexCreatedWithEmbedder(crate::event::IndexCreatedWithEmbedder {
                index: created,
                ..
            }) => {
                indexes.entry(created.name.clone()).or_default();
            }
            EventBody::IndexDropped(dropped) => {
                indexes.remove(&dropped.name);
            }
            EventBody::VectorsUpserted(crate::event::VectorsUpserted { index, .. })
            | EventBody::DocumentsEmbedded(crate::event::DocumentsEmbedded { index, .. }) => {
                if let Some(t) = indexes.get_mut(index) {
                    t.last_write_seq = seq;
                }
            }
            EventBody::VectorsDeleted(delete) => {
                if let Some(t) = indexes.get_mut(&delete.index) {
                    t.last_write_seq = seq;
                }
            }
            // Ids are unique per index: a second registration of one (possible only if a
            // writer gave up waiting for the first to apply) is refused, not a replacement.
            EventBody::EvalSetCreated(created) => match indexes.get_mut(&created.index) {
                Some(t) if !t.evals.contains_key(&created.eval_id) => {
                    t.evals.insert(created.eval_id.clone(), (seq, created.clone()));
                }
                _ => outcome.rejected = 1,
            },
            EventBody::TrialRecorded(record) => match indexes.get_mut(&record.index) {
                Some(t) if !t.trials.iter().any(|x| x.record.trial_id == record.trial_id) => {
                    t.trials.push(Trial { record: record.clone(), seq, time_ms: event.stamp.time_ms });
                }
                _ => outcome.rejected = 1,
            },
            _ => {}
        }
        Ok(outcome)
    }

    /// `u64` index count, then per index (by name): `str` name, `u64` last_write_seq,
    /// `u64` eval count then each (`u64` seq, `str` eval_id, `u8` sampled, `u32`
    /// queries, `u32` k, `u64` truth_seq, `str` bucket, `str` key, `u64` bytes, `u32`
    /// crc32), `u64` trial count then each (`u64` seq, `u64` time_ms, `str` trial_id,
    /// `str` eval_id, `u32` m, ef_construction, ef_search, k, queries, `u64` vectors,
    /// `u64` recall as f64 bits, `u64` p50, p99, build_ms, memory_bytes).
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let mut e = Enc::default();
        let indexes = self.indexes.read();
        e.u64(indexes.len() as u64);
        for (name, t) in indexes.iter() {
            e.str(name);
            e.u64(t.last_write_seq);
            e.u64(t.evals.len() as u64);
            for (seq, x) in t.evals.values() {
                e.u64(*seq);
                e.str(&x.eval_id);
                e.u8(u8::from(x.sampled));
                e.u32(x.queries);
                e.u32(x.k);
                e.u64(x.truth_seq);
                e.str(&x.bucket);
                e.str(&x.key);
                e.u64(x.bytes);
                e.u32(x.crc32);
            }
            e.u64(t.trials.len() as u64);
            for trial in &t.trials {
                let r = &trial.record;
                e.u64(trial.seq);
                e.u64(trial.time_ms);
                e.str(&r.trial_id);
                e.str(&r.eval_id);
                crate::codec::write_config(&mut e, &r.config);
                e.u32(r.k);
                e.u32(r.queries);
                e.u64(r.vectors);
                e.u64(r.recall.to_bits());
                e.u64(r.latency_p50_us);
                e.u64(r.latency_p99_us);
                e.u64(r.build_ms);
                e.u64(r.memory_bytes);
            }
        }
        drop(indexes);
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "trials", source };
        let mut d = Dec::new(bytes);
        let mut indexes = BTreeMap::new();
        let n = d.count(8 + 8 + 8 + 8).map_err(corrupt)?;
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let mut t = IndexTrials { last_write_seq: d.u64().map_err(corrupt)?, ..IndexTrials::default() };
            let evals = d.count(8 + 8 + 1 + 4 + 4 + 8 + 8 + 8 + 8 + 4).map_err(corrupt)?;
            for _ in 0..evals {
                let seq = d.u64().map_err(corrupt)?;
                let eval = read_eval(&mut d, &name).map_err(corrupt)?;
                t.evals.insert(eval.eval_id.clone(), (seq, eval));
            }
            let trials =
                d.count(8 + 8 + 8 + 8 + crate::codec::CONFIG_BYTES + 2 * 4 + 6 * 8).map_err(corrupt)?;
            for _ in 0..trials {
                t.trials.push(read_trial(&mut d, &name).map_err(corrupt)?);
            }
            if indexes.insert(name.clone(), t).is_some() {
                return Err(corrupt(d.error(format!("index {name:?} appears twice"))));
            }
        }
        d.finish().map_err(corrupt)?;
        *self.indexes.write() = indexes;
        Ok(())
    }
}

fn read_eval(d: &mut Dec<'_>, index: &str) -> Result<EvalSetCreated, crate::codec::DecodeError> {
    Ok(EvalSetCreated {
        index: index.to_owned(),
        eval_id: d.str()?.to_owned(),
        sampled: d.u8()? != 0,
        queries: d.u32()?,
        k: d.u32()?,
        truth_seq: d.u64()?,
        bucket: d.str()?.to_owned(),
        key: d.str()?.to_owned(),
        bytes: d.u64()?,
        crc32: d.u32()?,
    })
}

fn read_trial(d: &mut Dec<'_>, index: &str) -> Result<Trial, crate::codec::DecodeError> {
    let seq = d.u64()?;
    let time_ms = d.u64()?;
    let trial_id = d.str()?.to_owned();
    let eval_id = d.str()?.to_owned();
    let config = crate::codec::read_config(d)?;
    let record = TrialRecorded {
        index: index.to_owned(),
        trial_id,
        eval_id,
        config,
        k: d.u32()?,
        queries: d.u32()?,
        vectors: d.u64()?,
        recall: f64::from_bits(d.u64()?),
        latency_p50_us: d.u64()?,
        latency_p99_us: d.u64()?,
        build_ms: d.u64()?,
        memory_bytes: d.u64()?,
    };
    Ok(Trial { record, seq, time_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{IndexCreated, Metric};

    fn trial(id: &str, recall: f64, p99: u64) -> EventBody {
        EventBody::TrialRecorded(TrialRecorded {
            index: "docs".into(),
            trial_id: id.into(),
            eval_id: "e".into(),
            config: crate::event::HnswConfig::default(),
            k: 10,
            queries: 5,
            vectors: 100,
            recall,
            latency_p50_us: p99 / 2,
            latency_p99_us: p99,
            build_ms: 3,
            memory_bytes: 4,
        })
    }

    fn state() -> TrialState {
        let state = TrialState::default();
        let created = EventBody::IndexCreated(IndexCreated {
            name: "docs".into(),
            dimension: 4,
            metric: Metric::L2,
            config: crate::event::HnswConfig::default(),
        });
        for (seq, body) in [created, trial("a", 0.90, 100), trial("b", 0.97, 300), trial("c", 0.95, 150)]
            .into_iter()
            .enumerate()
        {
            state.apply(seq as u64 + 1, &Event::new("t", body)).unwrap();
        }
        state
    }

    #[test]
    fn best_is_the_highest_recall_under_a_latency_bound_or_the_fastest_over_a_recall_floor() {
        let state = state();
        let id = |t: Option<Trial>| t.map(|t| t.record.trial_id);
        assert_eq!(id(state.best("docs", Objective::MaxRecall { p99_max_us: 200 }, None)), Some("c".into()));
        assert_eq!(id(state.best("docs", Objective::MaxRecall { p99_max_us: 1000 }, None)), Some("b".into()));
        assert_eq!(
            id(state.best("docs", Objective::MinLatency { recall_min: 0.94 }, None)),
            Some("c".into())
        );
        assert_eq!(id(state.best("docs", Objective::MinLatency { recall_min: 0.99 }, None)), None);
        assert_eq!(id(state.best("docs", Objective::MaxRecall { p99_max_us: 50 }, None)), None);
    }

    #[test]
    fn the_state_round_trips_through_its_snapshot_section() {
        let state = state();
        let mut bytes = Vec::new();
        state.write_snapshot(4, &mut bytes).unwrap();
        let back = TrialState::default();
        back.restore_snapshot(4, &bytes).unwrap();
        assert_eq!(back.get("docs"), state.get("docs"));
        for len in 0..bytes.len() {
            assert!(TrialState::default().restore_snapshot(4, &bytes[..len]).is_err(), "length {len}");
        }
    }
}
