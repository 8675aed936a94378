//! Promotions: a history capped at 50, rollbacks in exactly the reverse order, the same
//! state after any restart, and a promotion that changes the graph rebuilt behind
//! searches that keep succeeding.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_engine::event::VectorItem;
use annal_engine::SnapshotPolicy;
use annal_engine::{Engine, EngineConfig, Error, HnswConfig, Metric, PromoteRequest};
use annal_engine::{IndexPromotions, PROMOTION_HISTORY_MAX as HISTORY_MAX};

fn request(i: u32) -> PromoteRequest {
    PromoteRequest {
        // ef_search only: no rebuild, so a long history is cheap.
        config: HnswConfig { m: 32, ef_construction: 80, ef_search: 10 + i, ..Default::default() },
        trial_id: String::new(), // no trial: tests/trials.rs promotes with one
        promoted_by: "alice".into(),
        note: format!("promotion {i}"),
    }
}

fn with_snapshots() -> EngineConfig {
    EngineConfig::default()
}

fn full_replay() -> EngineConfig {
    EngineConfig {
        snapshots: SnapshotPolicy { restore: false, ..SnapshotPolicy::default() },
        ..EngineConfig::default()
    }
}

fn ef_searches(state: &IndexPromotions) -> (Option<u32>, Vec<u32>) {
    (
        state.current.as_ref().map(|p| p.config.ef_search),
        state.history.iter().map(|p| p.config.ef_search).collect(),
    )
}

#[test]
fn the_history_caps_at_50_rollbacks_run_in_reverse_order_and_both_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let total = HISTORY_MAX as u32 + 5;
    {
        let engine = Engine::open(dir.path(), with_snapshots()).unwrap();
        engine.create_index("ops", "docs", 4, Metric::L2, HnswConfig::default()).unwrap();
        for i in 0..total {
            let promoted = engine.promote("ops", "docs", request(i)).unwrap();
            assert_eq!(promoted.config.ef_search, 10 + i);
            assert_eq!(promoted.note, format!("promotion {i}"));
        }
        let state = engine.promotion("docs").unwrap();
        assert_eq!(state.history.len(), HISTORY_MAX, "the oldest are dropped");
        assert_eq!(ef_searches(&state), (Some(10 + total - 1), (14..10 + total - 1).collect()));
        assert_eq!(engine.get_index("docs").unwrap().params.config.ef_search, 10 + total - 1);
        engine.close().unwrap(); // takes a snapshot
    }
    let expected = {
        let from_snapshot = Engine::open(dir.path(), with_snapshots()).unwrap();
        assert!(from_snapshot.restored().snapshot.is_some());
        let state = from_snapshot.promotion("docs").unwrap();
        drop(from_snapshot);
        let replayed = Engine::open(dir.path(), full_replay()).unwrap();
        assert_eq!(replayed.promotion("docs").unwrap(), state, "replay and snapshot agree");
        state
    };
    assert_eq!(ef_searches(&expected).1.len(), HISTORY_MAX);

    let engine = Engine::open(dir.path(), with_snapshots()).unwrap();
    let mut order = Vec::new();
    loop {
        match engine.rollback("ops", "docs") {
            Ok(Some(now)) => order.push(now.config.ef_search),
            Ok(None) => break, // the history ran out: the creation config serves
            Err(e) => panic!("rollback failed with a promotion in effect: {e}"),
        }
    }
    let reversed: Vec<u32> = (14..10 + total - 1).rev().collect();
    assert_eq!(order, reversed, "each rollback restores the promotion before it");
    assert_eq!(engine.promotion("docs").unwrap(), IndexPromotions::default());
    assert_eq!(engine.get_index("docs").unwrap().params.config, HnswConfig::default());
    assert!(engine.promotions().list_all().is_empty());
    // Nothing promoted: a rollback is an error and appends nothing.
    let last = engine.log().last_seq();
    assert!(matches!(engine.rollback("ops", "docs"), Err(Error::NothingPromoted { .. })));
    assert_eq!(engine.log().last_seq(), last);
    drop(engine);
    for config in [with_snapshots(), full_replay()] {
        let engine = Engine::open(dir.path(), config).unwrap();
        assert_eq!(engine.promotion("docs").unwrap(), IndexPromotions::default());
        assert!(matches!(engine.rollback("ops", "docs"), Err(Error::NothingPromoted { .. })));
    }
}

#[test]
fn a_bad_promotion_names_its_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), with_snapshots()).unwrap();
    engine.create_index("ops", "docs", 4, Metric::L2, HnswConfig::default()).unwrap();
    let last = engine.log().last_seq();
    let cases = [
        (PromoteRequest { config: HnswConfig { m: 1, ..HnswConfig::default() }, ..request(0) }, "m"),
        (
            PromoteRequest { config: HnswConfig { ef_search: 0, ..HnswConfig::default() }, ..request(0) },
            "ef_search",
        ),
        (PromoteRequest { promoted_by: String::new(), ..request(0) }, "promoted_by"),
        (PromoteRequest { note: "x".repeat(20_000), ..request(0) }, "note"),
        (PromoteRequest { trial_id: "t9".into(), ..request(0) }, "trial_id"),
    ];
    for (bad, field) in cases {
        match engine.promote("ops", "docs", bad) {
            Err(Error::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(engine.promote("ops", "nope", request(0)), Err(Error::IndexNotFound { .. })));
    assert!(matches!(engine.rollback("ops", "nope"), Err(Error::IndexNotFound { .. })));
    assert_eq!(engine.log().last_seq(), last);
    // A dropped and re-created index starts with no promotion.
    engine.promote("ops", "docs", request(1)).unwrap();
    engine.drop_index("ops", "docs").unwrap();
    engine.create_index("ops", "docs", 4, Metric::L2, HnswConfig::default()).unwrap();
    assert_eq!(engine.promotion("docs").unwrap(), IndexPromotions::default());
}

fn recall_at_10(engine: &Engine, base: &[Vec<f32>], live: usize, queries: &[Vec<f32>]) -> f64 {
    let mut hits = 0;
    for q in queries {
        // Brute force over the live vectors (ids v0..v{live}), cosine distance.
        let mut exact: Vec<(f32, usize)> = (0..live)
            .map(|i| {
                let v = &base[i];
                let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
                let norms =
                    v.iter().map(|a| a * a).sum::<f32>().sqrt() * q.iter().map(|a| a * a).sum::<f32>().sqrt();
                (1.0 - dot / norms, i)
            })
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<String> = exact[..10].iter().map(|(_, i)| format!("v{i}")).collect();
        let got = engine.search("docs", q.clone(), 10).unwrap();
        hits += got.iter().filter(|h| truth.contains(&h.id.to_string())).count();
    }
    hits as f64 / (10 * queries.len()) as f64
}

#[test]
fn a_promotion_that_changes_the_graph_rebuilds_it_while_searches_and_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let queries: Vec<Vec<f32>> = common::fvecs("query.fvecs").into_iter().take(50).collect();
    let n = 6_000.min(base.len() - 500);
    let items = |range: std::ops::Range<usize>| -> Vec<VectorItem> {
        range
            .map(|i| VectorItem {
                id: format!("v{i}"),
                vector: base[i].clone(),
                metadata: None,
                partition: None,
            })
            .collect()
    };
    let engine = Arc::new(Engine::open(dir.path(), with_snapshots()).unwrap());
    engine.create_index("ops", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.upsert("ops", "docs", items(0..n)).unwrap();
    let before = recall_at_10(&engine, &base, n, &queries);

    let new = HnswConfig { m: 12, ef_construction: 40, ef_search: 48, ..Default::default() };
    // The evidence: a trial of the new config on the same queries.
    let quiet = |_: annal_engine::Progress| {};
    let eval = annal_engine::EvalRequest {
        eval_id: None,
        queries: annal_engine::EvalQueries::Supplied(queries.clone()),
        k: 10,
    };
    engine.create_eval_set("ops", "docs", eval, &quiet).unwrap();
    let trial_request = annal_engine::TrialRequest { eval_id: "e1".into(), trial_id: None, config: new };
    let trial = engine.run_trial("ops", "docs", trial_request, &quiet).unwrap();
    let promoted = PromoteRequest { config: new, trial_id: trial.record.trial_id.clone(), ..request(0) };
    // Searches from another thread all through the rebuild.
    let stop = Arc::new(AtomicBool::new(false));
    let searched = Arc::new(AtomicU64::new(0));
    let searcher = {
        let (engine, stop, searched, q) =
            (Arc::clone(&engine), Arc::clone(&stop), Arc::clone(&searched), queries.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                for query in &q {
                    let hits = engine.search("docs", query.clone(), 10).expect("a search during the rebuild");
                    assert_eq!(hits.len(), 10);
                    searched.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    engine.promote("ops", "docs", promoted).unwrap();
    // ef_search applies at once; m and ef_construction once the rebuilt graph swaps in.
    let graph = engine.graph("docs").unwrap();
    assert_eq!(graph.in_effect, new);
    // Writes during the rebuild are applied and searchable at once.
    engine.upsert("ops", "docs", items(n..n + 200)).unwrap();
    let during = engine.search("docs", base[n + 7].clone(), 1).unwrap();
    assert_eq!(&*during[0].id, format!("v{}", n + 7).as_str());

    let deadline = Instant::now() + Duration::from_secs(300);
    while engine.graph("docs").unwrap().built != new {
        assert!(Instant::now() < deadline, "the rebuild never swapped in");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Release);
    searcher.join().unwrap();
    assert!(searched.load(Ordering::Relaxed) > 0);
    let graph = engine.graph("docs").unwrap();
    assert_eq!((graph.built, graph.in_effect), (new, new));
    assert_eq!(engine.get_index("docs").unwrap().length, (n + 200) as u64);
    let after = recall_at_10(&engine, &base, n + 200, &queries);
    assert!(before > 0.9, "recall before {before:.3}");
    // The swapped-in graph performs as its trial said, within noise (the trial's graph
    // was built from the same vectors, before the 200 added during the rebuild).
    assert!(
        (after - trial.record.recall).abs() <= 0.05,
        "recall after the swap {after:.3}, its trial measured {:.3}",
        trial.record.recall
    );
    let again = engine.search("docs", base[n + 7].clone(), 1).unwrap();
    assert_eq!(
        &*again[0].id,
        format!("v{}", n + 7).as_str(),
        "a write from during the rebuild is in the new graph"
    );
}

#[test]
fn a_rollback_during_a_rebuild_leaves_the_graph_built_with_the_config_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let n = 3_000.min(base.len());
    let items: Vec<VectorItem> = (0..n)
        .map(|i| VectorItem { id: format!("v{i}"), vector: base[i].clone(), metadata: None, partition: None })
        .collect();
    let engine = Engine::open(dir.path(), with_snapshots()).unwrap();
    let created = HnswConfig::default();
    engine.create_index("ops", "docs", 384, Metric::Cosine, created).unwrap();
    engine.upsert("ops", "docs", items).unwrap();
    let changed = HnswConfig { m: 8, ef_construction: 20, ef_search: 32, ..Default::default() };
    engine.promote("ops", "docs", PromoteRequest { config: changed, ..request(0) }).unwrap();
    assert_eq!(engine.rollback("ops", "docs").unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let graph = engine.graph("docs").unwrap();
        // Whether the first rebuild was abandoned or finished first (then rebuilt back),
        // it ends with the graph of the config in effect, and nothing pending.
        if !graph.rebuild_pending && graph.built == created {
            assert_eq!(graph.in_effect, created);
            break;
        }
        assert!(Instant::now() < deadline, "still {graph:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hit = engine.search("docs", base[42].clone(), 1).unwrap();
    assert_eq!(&*hit[0].id, "v42");
}

fn small_items(range: std::ops::Range<usize>, offset: f32) -> Vec<VectorItem> {
    range
        .map(|i| VectorItem {
            id: format!("v{i}"),
            // Distinct per record: the first component is its number.
            vector: (0..8)
                .map(|j| offset + if j == 0 { i as f32 } else { ((i * 31 + j * 7) % 101) as f32 / 10.0 })
                .collect(),
            metadata: None,
            partition: None,
        })
        .collect()
}

#[test]
fn a_backfill_that_read_a_record_then_replaced_does_not_resurrect_the_old_vector() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    // Hold the rebuild right after its first backfill chunk is in the new graph.
    let (reached_tx, reached_rx) = mpsc::sync_channel::<()>(1);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let first = AtomicBool::new(true);
    let hooks = annal_engine::Hooks {
        backfill_chunk: Some(Arc::new(move |name: &str, _at: usize| {
            if name == "docs" && first.swap(false, Ordering::AcqRel) {
                let _ = reached_tx.send(());
                let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(60));
            }
        })),
        ..annal_engine::Hooks::default()
    };
    let engine = Engine::open(dir.path(), EngineConfig { hooks, ..with_snapshots() }).unwrap();
    engine.create_index("ops", "docs", 8, Metric::L2, HnswConfig::default()).unwrap();
    let old = small_items(0..2_000, 0.0);
    engine.upsert("ops", "docs", old.clone()).unwrap();
    let new = HnswConfig { m: 8, ef_construction: 40, ef_search: 64, ..Default::default() };
    engine.promote("ops", "docs", PromoteRequest { config: new, ..request(0) }).unwrap();
    reached_rx.recv_timeout(Duration::from_secs(60)).expect("the rebuild copied its first chunk");
    // The backfill has read v0..v99; they are replaced far away before the swap.
    let applied = engine.stats().indexes[0].length;
    engine.upsert("ops", "docs", small_items(0..100, 1_000.0)).unwrap();
    assert_eq!(engine.get_index("docs").unwrap().length, applied, "replaced, not added");
    go_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while engine.graph("docs").unwrap().built != new {
        assert!(Instant::now() < deadline, "never swapped: {:?}", engine.graph("docs").unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let graph = engine.graph("docs").unwrap();
    assert!(graph.work.stale >= 100, "the copied, then replaced records are counted: {:?}", graph.work);
    assert_eq!(graph.work.rebuilt, 1);
    assert!(graph.work.incremental >= 2_100, "{:?}", graph.work);
    for item in &old[..100] {
        let hits = engine.search("docs", item.vector.clone(), 5).unwrap();
        assert!(
            hits.iter().all(|h| h
                .id
                .strip_prefix('v')
                .and_then(|n| n.parse::<usize>().ok())
                .is_none_or(|n| n >= 100)),
            "the old vector of {} answered a search after the swap: {hits:?}",
            item.id
        );
    }
    let records = engine.records("docs").unwrap();
    let v5 = records.iter().find(|r| r.id == "v5").unwrap();
    assert!(v5.vector[0] >= 1_000.0, "v5 is its new vector");
}

#[test]
fn a_failed_rebuild_leaves_the_old_graph_serving_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = annal_engine::Hooks {
        fail_rebuild: Some(Arc::new(|name: &str| name == "docs")),
        ..annal_engine::Hooks::default()
    };
    let engine = Engine::open(dir.path(), EngineConfig { hooks, ..with_snapshots() }).unwrap();
    let created = HnswConfig::default();
    engine.create_index("ops", "docs", 8, Metric::L2, created).unwrap();
    engine.upsert("ops", "docs", small_items(0..500, 0.0)).unwrap();
    let new = HnswConfig { m: 8, ef_construction: 40, ef_search: 50, ..Default::default() };
    engine.promote("ops", "docs", PromoteRequest { config: new, ..request(0) }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let graph = loop {
        let graph = engine.graph("docs").unwrap();
        if graph.work.failed >= 1 {
            break graph;
        }
        assert!(Instant::now() < deadline, "the rebuild never failed: {graph:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Not yet active: the old graph (with the new ef_search) serves, with the error.
    assert_eq!((graph.built.m, graph.built.ef_construction), (created.m, created.ef_construction));
    assert_eq!(graph.in_effect, new);
    assert!(graph.rebuild_pending, "retried with backoff");
    assert!(graph.work.last_error.as_deref().is_some_and(|e| e.contains("injected")), "{graph:?}");
    let hit = engine.search("docs", small_items(7..8, 0.0)[0].vector.clone(), 1).unwrap();
    assert_eq!(&*hit[0].id, "v7");
}
