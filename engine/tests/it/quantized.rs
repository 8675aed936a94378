//! Quantized storage: a graph of codes with its full vectors outside it, trained at a
//! fixed point of the log, re-scored exactly, promoted and rolled back like any config,
//! and the same after a snapshot restore and a replay.

use std::time::{Duration, Instant};

use annal_engine::event::VectorItem;
use annal_engine::{
    BucketsConfig, Engine, EngineConfig, Error, GraphStorage, HnswConfig, LogicalState, Metric, OfflineLog,
    PromoteRequest, Replay, StorageKind,
};

const DIM: usize = 32;

/// `n` seeded vectors in clusters (so a graph has neighbours to find), ids `v00000`...
fn items(n: usize, seed: u64) -> Vec<VectorItem> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..DIM).map(|_| next() * 4.0).collect()).collect();
    (0..n)
        .map(|i| VectorItem {
            id: format!("v{i:05}"),
            vector: centres[i % centres.len()].iter().map(|c| c + next()).collect(),
            metadata: None,
            partition: None,
        })
        .collect()
}

fn storage(kind: StorageKind, pq_m: u32, refine: u32) -> HnswConfig {
    HnswConfig { m: 16, ef_construction: 40, ef_search: 32, storage: GraphStorage { kind, pq_m, refine } }
}

/// Wait until no rebuild is pending and the serving graph holds `kind`.
fn built_as(engine: &Engine, index: &str, kind: StorageKind) -> HnswConfig {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let graph = engine.graph(index).unwrap();
        if !graph.rebuild_pending && graph.built.storage.kind == kind {
            return graph.built;
        }
        assert!(Instant::now() < deadline, "graph never rebuilt as {kind:?}: {graph:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Recall@10 of the engine's search against an exact scan of `data`, over 50 queries.
fn recall(engine: &Engine, index: &str, data: &[VectorItem]) -> f64 {
    let (mut found, mut asked) = (0, 0);
    for q in data.iter().step_by(data.len() / 50).take(50) {
        let mut exact: Vec<(f32, &str)> = data
            .iter()
            .map(|d| {
                (d.vector.iter().zip(&q.vector).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), d.id.as_str())
            })
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<&str> = exact.iter().take(10).map(|(_, id)| *id).collect();
        let hits = engine.search(index, q.vector.clone(), 10).unwrap();
        found += hits.iter().filter(|h| truth.contains(&h.id.as_ref())).count();
        asked += 10;
    }
    found as f64 / asked as f64
}

fn exact_distance(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    let dot: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
    let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
    match metric {
        Metric::L2 => q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::Ip => -dot,
        Metric::Cosine => 1.0 - dot / (norm(q) * norm(v)),
    }
}

fn state(dir: &std::path::Path) -> LogicalState {
    let source = OfflineLog::open(dir, &BucketsConfig::default()).unwrap();
    let mut replay = Replay::empty().unwrap();
    source.replay_into(&mut replay, u64::MAX, &mut |_| {}).unwrap();
    replay.state().unwrap()
}

#[test]
fn an_sq8_index_serves_flat_until_trained_then_quantized_with_exact_refined_distances() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "q", DIM as u32, Metric::L2, storage(StorageKind::Sq8, 0, 4)).unwrap();
    let data = items(3_000, 7);
    // Under the training minimum: a flat graph serves.
    engine.upsert("t", "q", data[..500].to_vec()).unwrap();
    assert_eq!(engine.graph("q").unwrap().built.storage.kind, StorageKind::Flat);
    // Past it: trained at this upsert, then rebuilt as codes.
    engine.upsert("t", "q", data[500..].to_vec()).unwrap();
    let built = built_as(&engine, "q", StorageKind::Sq8);
    assert_eq!(built.storage.refine, 4, "the refine factor is in effect on the new graph");
    let r = recall(&engine, "q", &data);
    assert!(r >= 0.95, "sq8 + refine 4 recall {r}");
    // Distances are exact (re-scored from the full vectors), and vectors read back whole.
    let q = &data[123];
    let hit = &engine.search("q", q.vector.clone(), 1).unwrap()[0];
    assert_eq!((hit.id.as_ref(), hit.distance), ("v00123", 0.0));
    let item = engine.get_items("q", &["v00123".into()], true).unwrap().pop().flatten().unwrap();
    assert_eq!(item.vector.as_deref(), Some(q.vector.as_slice()), "full vector, not decoded codes");
}

#[test]
fn every_storage_kind_builds_and_answers_under_each_metric() {
    let data = items(12_000, 3);
    for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
        for (kind, pq_m, refine) in [
            (StorageKind::Fp16, 0, 0),
            (StorageKind::Sq4, 0, 4),
            (StorageKind::Pq, 8, 8),
            (StorageKind::Pq, 8, 0),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
            engine.create_index("t", "q", DIM as u32, metric, storage(kind, pq_m, refine)).unwrap();
            for chunk in data.chunks(5_000) {
                engine.upsert("t", "q", chunk.to_vec()).unwrap();
            }
            built_as(&engine, "q", kind);
            let hits = engine.search("q", data[42].vector.clone(), 5).unwrap();
            assert_eq!(hits.len(), 5, "{metric:?} {kind:?}");
            assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{metric:?} {kind:?}");
            if refine > 0 {
                // Re-scored: each distance is the exact one of the full vectors.
                for hit in &hits {
                    let i: usize = hit.id[1..].parse().unwrap();
                    let exact = exact_distance(metric, &data[42].vector, &data[i].vector);
                    assert!((hit.distance - exact).abs() < 1e-3, "{metric:?} {kind:?}: {hit:?} vs {exact}");
                }
            }
        }
    }
}

#[test]
fn a_quantized_promotion_rebuilds_and_a_rollback_returns_to_flat() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let flat = HnswConfig { m: 16, ef_construction: 40, ef_search: 32, ..Default::default() };
    engine.create_index("t", "q", DIM as u32, Metric::L2, flat).unwrap();
    let data = items(2_000, 11);
    engine.upsert("t", "q", data.clone()).unwrap();
    let request = |config| PromoteRequest {
        config,
        trial_id: String::new(),
        promoted_by: "alice".into(),
        note: "smaller".into(),
    };
    engine.promote("t", "q", request(storage(StorageKind::Sq8, 0, 2))).unwrap();
    built_as(&engine, "q", StorageKind::Sq8);
    assert!(recall(&engine, "q", &data) >= 0.9);
    engine.rollback("t", "q").unwrap();
    let back = built_as(&engine, "q", StorageKind::Flat);
    assert_eq!(back.storage, GraphStorage::FLAT);
    assert!(recall(&engine, "q", &data) >= 0.9);
}

#[test]
fn bad_storage_combinations_are_refused_naming_the_field_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let before = engine.log().last_seq();
    for (config, field) in [
        (storage(StorageKind::Pq, 7, 0), "pq_m"),
        (storage(StorageKind::Pq, 0, 0), "pq_m"),
        (storage(StorageKind::Sq8, 4, 0), "pq_m"),
        (storage(StorageKind::Flat, 0, 2), "refine"),
        (storage(StorageKind::Sq8, 0, 17), "refine"),
    ] {
        match engine.create_index("t", "q", DIM as u32, Metric::L2, config) {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, field, "{config:?}: {invalid}"),
            other => panic!("{config:?}: {other:?}"),
        }
    }
    assert_eq!(engine.log().last_seq(), before, "nothing appended");
    // A promotion is checked against the index's dimension too.
    engine.create_index("t", "q", DIM as u32, Metric::L2, HnswConfig::default()).unwrap();
    let seq = engine.log().last_seq();
    let bad = PromoteRequest {
        config: storage(StorageKind::Pq, 5, 0),
        trial_id: String::new(),
        promoted_by: "alice".into(),
        note: String::new(),
    };
    assert!(matches!(engine.promote("t", "q", bad), Err(Error::Invalid(i)) if i.field == "pq_m"));
    assert_eq!(engine.log().last_seq(), seq);
}

#[test]
fn a_quantized_index_restores_from_its_snapshot_and_replays_to_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let data = items(2_500, 5);
    let (hits, digest_before) = {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        engine.create_index("t", "q", DIM as u32, Metric::Cosine, storage(StorageKind::Sq8, 0, 3)).unwrap();
        engine.upsert("t", "q", data[..1_500].to_vec()).unwrap();
        engine.upsert("t", "q", data[1_500..].to_vec()).unwrap();
        built_as(&engine, "q", StorageKind::Sq8);
        let hits = engine.search("q", data[9].vector.clone(), 10).unwrap();
        engine.close().unwrap(); // takes a snapshot
        drop(engine);
        (hits, state(dir.path()).digest())
    };
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let restored = engine.graph("q").unwrap();
    assert_eq!(restored.built.storage.kind, StorageKind::Sq8, "restored as codes, no rebuild: {restored:?}");
    assert!(!restored.rebuild_pending);
    assert_eq!(engine.search("q", data[9].vector.clone(), 10).unwrap(), hits);
    let item = engine.get_items("q", &["v00009".into()], true).unwrap().pop().flatten().unwrap();
    let norm = data[9].vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    let expected: Vec<f32> = data[9].vector.iter().map(|x| x / norm).collect();
    let got = item.vector.unwrap();
    assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "full vector after restore");
    engine.close().unwrap();
    drop(engine);

    // Replay from nothing and from the snapshot: the same state, quantizer included.
    let scratch = state(dir.path());
    assert_eq!(scratch.digest(), digest_before);
    assert!(!scratch.indexes[0].quantizer.is_empty(), "the trained quantizer is part of the state");
    let source = OfflineLog::open(dir.path(), &BucketsConfig::default()).unwrap();
    let (_, newest) = source.snapshots(u64::MAX).unwrap().into_iter().last().unwrap();
    let object = source.fetch_snapshot(&newest).unwrap();
    let mut from_snapshot = Replay::from_snapshot(&object, &newest).unwrap();
    source.replay_into(&mut from_snapshot, u64::MAX, &mut |_| {}).unwrap();
    assert_eq!(from_snapshot.state().unwrap().digest(), scratch.digest());
}
