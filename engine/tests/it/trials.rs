//! Evaluation sets and trials on the shared data: the truth is exact, a trial's recall
//! is what an independent computation gives, trials are data (they survive restarts),
//! and autotune promotes the fastest trial meeting a recall floor, saying why.

use crate::common;

use std::collections::HashSet;

use annal_engine::event::VectorItem;
use annal_engine::Objective;
use annal_engine::Progress;
use annal_engine::SnapshotPolicy;
use annal_engine::{
    Engine, EngineConfig, Error, EvalQueries, EvalRequest, HnswConfig, Metric, TrialRequest, AUTOTUNE_BUILDS,
    AUTOTUNE_EF_SEARCH,
};

fn quiet(_: Progress) {}

fn items(base: &[Vec<f32>], n: usize) -> Vec<VectorItem> {
    (0..n)
        .map(|i| VectorItem { id: format!("v{i}"), vector: base[i].clone(), metadata: None, partition: None })
        .collect()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    v.iter().map(|x| (f64::from(*x) / n) as f32).collect()
}

/// Exact cosine top-k ids by brute force, in plain Rust (independent of FAISS).
/// `unit` holds the base vectors already normalised.
fn brute_force(unit: &[Vec<f32>], query: &[f32], k: usize) -> Vec<String> {
    let q = normalised(query);
    let mut scored: Vec<(f32, usize)> = unit
        .iter()
        .enumerate()
        .map(|(i, v)| (1.0 - v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored[..k].iter().map(|(_, i)| format!("v{i}")).collect()
}

const QUERIES: usize = 400;

#[test]
fn a_trial_on_the_shared_data_records_the_recall_an_independent_brute_force_gives() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    // Enough queries that two builds of the same small graph (FAISS inserts in parallel,
    // so builds differ) agree on recall within the tolerance below: with 50 queries they
    // were seen 0.05 apart.
    let queries: Vec<Vec<f32>> = common::fvecs("query.fvecs").into_iter().take(QUERIES).collect();
    let n = 5_000.min(base.len());
    let config = HnswConfig { m: 8, ef_construction: 20, ef_search: 16, ..Default::default() };
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.upsert("t", "docs", items(&base, n)).unwrap();
    // The same vectors in an index built with the trial's config: what a user would get.
    engine.create_index("t", "same", 384, Metric::Cosine, config).unwrap();
    engine.upsert("t", "same", items(&base, n)).unwrap();

    let request = EvalRequest { eval_id: None, queries: EvalQueries::Supplied(queries.clone()), k: 10 };
    let created = engine.create_eval_set("t", "docs", request, &quiet).unwrap();
    assert_eq!(
        (created.eval_id.as_str(), created.queries, created.k, created.sampled),
        ("e1", QUERIES as u32, 10, false)
    );
    let (_, set) = engine.eval_set("docs", "e1").unwrap();
    let unit: Vec<Vec<f32>> = base[..n].iter().map(|v| normalised(v)).collect();
    let truth: Vec<Vec<String>> = queries.iter().map(|q| brute_force(&unit, q, 10)).collect();
    let agree = set
        .truth
        .iter()
        .zip(&truth)
        .map(|(a, b)| a.iter().filter(|id| b.contains(id)).count())
        .sum::<usize>();
    assert!(
        agree >= QUERIES * 10 * 99 / 100,
        "the stored truth is exact (ties aside): {agree} of {} ids agree",
        QUERIES * 10
    );

    let trial = engine
        .run_trial("t", "docs", TrialRequest { eval_id: "e1".into(), trial_id: None, config }, &quiet)
        .unwrap();
    let r = &trial.record;
    assert_eq!(
        (r.trial_id.as_str(), r.eval_id.as_str(), r.config, r.vectors),
        ("t1", "e1", config, n as u64)
    );
    assert!(r.build_ms > 0 && r.memory_bytes > (n * 384 * 4) as u64, "{r:?}");
    assert!(r.latency_p50_us <= r.latency_p99_us, "{r:?}");
    let mut found = 0;
    for (q, truth) in queries.iter().zip(&truth) {
        let hits = engine.search("same", q.clone(), 10).unwrap();
        found += hits.iter().filter(|h| truth.contains(&h.id.to_string())).count();
    }
    let independent = found as f64 / (QUERIES * 10) as f64;
    eprintln!("trial recall {:.4}, by hand {independent:.4}", r.recall);
    assert!(
        (r.recall - independent).abs() <= 0.04,
        "trial recall {:.3}, the same config searched by hand {independent:.3}",
        r.recall
    );
    assert!(r.recall < 0.999, "a small config should miss some: {:.3}", r.recall);

    // Sampled queries are held out of their own truth.
    let sampled = EvalRequest {
        eval_id: Some("held".into()),
        queries: EvalQueries::Sample { count: 20, seed: 7 },
        k: 5,
    };
    engine.create_eval_set("t", "docs", sampled, &quiet).unwrap();
    let (_, set) = engine.eval_set("docs", "held").unwrap();
    for (held, truth) in set.held_out.iter().zip(&set.truth) {
        let held = held.as_ref().expect("a sampled query names its record");
        assert_eq!(truth.len(), 5);
        assert!(!truth.contains(held), "{held} is in its own truth");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn autotune_promotes_the_fastest_trial_meeting_the_floor_and_trials_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let n = 2_000.min(base.len());
    let (trials, promoted) = {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
        engine.upsert("t", "docs", items(&base, n)).unwrap();
        let request =
            EvalRequest { eval_id: None, queries: EvalQueries::Sample { count: 40, seed: 1 }, k: 10 };
        engine.create_eval_set("ops", "docs", request, &quiet).unwrap();
        let done = engine.autotune("ops", "docs", "e1", 0.9, &quiet).unwrap();
        assert_eq!(done.trials.len(), AUTOTUNE_BUILDS.len() * AUTOTUNE_EF_SEARCH.len());
        let chosen = done.chosen.clone().expect("a trial meets 0.9 on 2,000 vectors");
        assert!(chosen.record.recall >= 0.9);
        for t in &done.trials {
            if t.record.recall >= 0.9 {
                assert!(t.record.latency_p99_us >= chosen.record.latency_p99_us, "{t:?} is faster");
            }
        }
        let promoted = done.promoted.clone().expect("promoted");
        assert_eq!(
            (promoted.config, promoted.trial_id.as_str()),
            (chosen.record.config, chosen.record.trial_id.as_str())
        );
        for t in &done.trials {
            assert!(
                promoted.note.contains(&t.record.trial_id),
                "the note names {}: {}",
                t.record.trial_id,
                promoted.note
            );
        }
        // best() agrees with the choice.
        let best = engine.best_trial("docs", Objective::MinLatency { recall_min: 0.9 }, Some("e1")).unwrap();
        assert_eq!(best.map(|t| t.record.trial_id), Some(chosen.record.trial_id.clone()));
        // A floor above 1 is refused.
        let none = engine.autotune("ops", "docs", "e1", 1.0 + f64::EPSILON, &quiet);
        assert!(matches!(none, Err(Error::Invalid(_))));
        let trials = engine.trials("docs").unwrap();
        engine.close().unwrap();
        (trials, promoted)
    };
    for config in [
        EngineConfig::default(),
        EngineConfig {
            snapshots: SnapshotPolicy { restore: false, ..SnapshotPolicy::default() },
            ..EngineConfig::default()
        },
    ] {
        let engine = Engine::open(dir.path(), config).unwrap();
        assert_eq!(engine.trials("docs").unwrap(), trials, "trials are data");
        assert_eq!(engine.promotions().current("docs"), Some(promoted.clone()));
    }
}

#[test]
fn a_trial_after_writes_measures_against_the_truth_of_the_vectors_it_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let queries: Vec<Vec<f32>> = common::fvecs("query.fvecs").into_iter().take(20).collect();
    let n = 2_000.min(base.len());
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.upsert("t", "docs", items(&base, n)).unwrap();
    let request = EvalRequest { eval_id: None, queries: EvalQueries::Supplied(queries), k: 10 };
    engine.create_eval_set("t", "docs", request, &quiet).unwrap();
    let (_, set) = engine.eval_set("docs", "e1").unwrap();
    // Delete every record of the stored truth: a trial scored against it could find none.
    let gone: HashSet<String> = set.truth.iter().flatten().cloned().collect();
    engine.delete("t", "docs", gone.into_iter().collect()).unwrap();
    let thorough = HnswConfig { m: 32, ef_construction: 200, ef_search: 400, ..Default::default() };
    let trial = engine
        .run_trial(
            "t",
            "docs",
            TrialRequest { eval_id: "e1".into(), trial_id: Some("after".into()), config: thorough },
            &quiet,
        )
        .unwrap();
    assert!(trial.record.recall > 0.95, "scored against the live vectors' truth: {:.3}", trial.record.recall);
    // Ids are unique per index.
    let again = engine.run_trial(
        "t",
        "docs",
        TrialRequest { eval_id: "e1".into(), trial_id: Some("after".into()), config: thorough },
        &quiet,
    );
    assert!(matches!(again, Err(Error::Invalid(e)) if e.field == "trial_id"));
    let missing = engine.run_trial(
        "t",
        "docs",
        TrialRequest { eval_id: "nope".into(), trial_id: None, config: thorough },
        &quiet,
    );
    assert!(matches!(missing, Err(Error::EvalNotFound { .. })));
}
