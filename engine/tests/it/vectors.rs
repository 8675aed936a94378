//! Vector indexes as FAISS HNSW projections of the log.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, Error, HnswConfig, Metric};

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(dir, EngineConfig::default()).unwrap()
}

fn item(id: &str, vector: Vec<f32>, metadata: Option<&str>) -> VectorItem {
    VectorItem { id: id.into(), vector, metadata: metadata.map(Into::into), partition: None }
}

fn ids(hits: &[annal_engine::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.to_string()).collect()
}

#[test]
fn default_config_reaches_recall_at_10_of_095_on_the_shared_data() {
    let base = common::fvecs("base.fvecs");
    let queries = common::fvecs("query.fvecs");
    let truth = common::ivecs("groundtruth.ivecs");
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_index("test", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    for (n, chunk) in base.chunks(10_000).enumerate() {
        engine.upsert("test", "docs", common::items(chunk, n * 10_000)).unwrap();
    }
    assert_eq!(engine.get_index("docs").unwrap().length, 50_000);
    let mut found = 0;
    for (query, truth) in queries.iter().zip(&truth) {
        let hits = engine.search("docs", query.clone(), 10).unwrap();
        assert_eq!(hits.len(), 10);
        let want: Vec<String> = truth[..10].iter().map(|i| format!("v{i}")).collect();
        found += ids(&hits).iter().filter(|id| want.contains(id)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    eprintln!("recall@10 = {recall:.4}");
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn each_metric_reports_a_smaller_distance_for_a_closer_vector() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for (name, metric) in [("l2", Metric::L2), ("cos", Metric::Cosine), ("ip", Metric::Ip)] {
        engine.create_index("t", name, 2, metric, HnswConfig::default()).unwrap();
        engine
            .upsert("t", name, vec![item("near", vec![1.0, 0.1], None), item("far", vec![-1.0, 0.5], None)])
            .unwrap();
        let hits = engine.search(name, vec![1.0, 0.0], 2).unwrap();
        assert_eq!(ids(&hits), ["near", "far"], "{name}");
        assert!(hits[0].distance < hits[1].distance, "{name}");
    }
    let l2 = engine.search("l2", vec![1.0, 0.1], 1).unwrap();
    assert_eq!(l2[0].distance, 0.0);
    let cos = engine.search("cos", vec![2.0, 0.2], 1).unwrap();
    assert!(cos[0].distance.abs() < 1e-6, "1 - cosine of a parallel vector is 0");
    let ip = engine.search("ip", vec![1.0, 0.0], 1).unwrap();
    assert_eq!(ip[0].distance, -1.0, "negated inner product");
}

#[test]
fn upsert_delete_and_drop_are_reflected_in_search_before_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let check = |engine: &Engine| {
        let hits = engine.search("docs", vec![0.0, 1.0, 0.0], 3).unwrap();
        assert_eq!(ids(&hits), ["b", "c"], "a deleted, b replaced to point along y");
        assert_eq!(hits[0].metadata.as_deref(), Some(r#"{"v":2}"#));
        assert_eq!(engine.get_index("docs").unwrap().length, 2);
        assert!(matches!(engine.get_index("gone"), Err(Error::IndexNotFound { .. })));
        assert_eq!(engine.list_indexes(), ["docs"]);
    };
    {
        let engine = open(dir.path());
        engine.create_index("t", "docs", 3, Metric::L2, HnswConfig::default()).unwrap();
        engine.create_index("t", "gone", 3, Metric::L2, HnswConfig::default()).unwrap();
        let out = engine
            .upsert(
                "t",
                "docs",
                vec![
                    item("a", vec![0.0, 1.0, 0.0], None),
                    item("b", vec![1.0, 0.0, 0.0], Some(r#"{"v":1}"#)),
                    item("c", vec![0.0, 0.0, 1.0], None),
                ],
            )
            .unwrap();
        assert_eq!((out.added, out.length), (3, Some(3)));
        let out =
            engine.upsert("t", "docs", vec![item("b", vec![0.0, 1.0, 0.1], Some(r#"{"v":2}"#))]).unwrap();
        assert_eq!((out.added, out.length), (1, Some(3)), "replacing keeps the length");
        let out = engine.delete("t", "docs", vec!["a".into(), "nope".into()]).unwrap();
        assert_eq!((out.deleted, out.length), (1, Some(2)));
        engine.drop_index("t", "gone").unwrap();
        check(&engine);
    }
    check(&open(dir.path()));
}

#[test]
fn search_returns_k_live_results_and_never_a_deleted_one_even_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_index("t", "x", 8, Metric::L2, HnswConfig::default()).unwrap();
    let vectors: Vec<Vec<f32>> =
        (0..2000).map(|i| (0..8).map(|j| ((i * 7 + j * 13) % 101) as f32).collect()).collect();
    engine.upsert("t", "x", common::items(&vectors, 0)).unwrap();
    // Delete 60% in steps: tombstones pass the rebuild share more than once.
    let dead: Vec<String> = (0..1200).map(|i| format!("v{i}")).collect();
    for chunk in dead.chunks(300) {
        engine.delete("t", "x", chunk.to_vec()).unwrap();
        for q in vectors.iter().step_by(97) {
            let hits = engine.search("x", q.clone(), 50).unwrap();
            assert_eq!(hits.len(), 50);
            assert!(hits.iter().all(|h| !chunk.contains(&h.id.to_string())), "deleted id returned");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.stats().rebuilds.rebuilds == 0 {
        assert!(Instant::now() < deadline, "no rebuild happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let live: std::collections::HashSet<String> = (1200..2000).map(|i| format!("v{i}")).collect();
    for q in vectors.iter().step_by(31) {
        let hits = engine.search("x", q.clone(), 10).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| live.contains(&h.id.to_string())));
    }
    // Exactly 800 live: asking for more returns all of them, no more.
    assert_eq!(engine.search("x", vectors[0].clone(), 1000).unwrap().len(), 800);
    let stats = engine.stats();
    assert_eq!(stats.indexes[0].length, 800);
    assert!(stats.indexes[0].tombstones < 1200, "a rebuild dropped tombstones");
}

#[test]
fn a_bad_batch_is_rejected_whole_with_the_item_named_and_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_index("t", "docs", 2, Metric::Cosine, HnswConfig::default()).unwrap();
    let before = engine.log().last_seq();
    let good = item("ok", vec![1.0, 0.0], None);
    let cases: Vec<(Vec<VectorItem>, &str)> = vec![
        (vec![good.clone(), item("", vec![1.0, 0.0], None)], "items[1].id"),
        (vec![good.clone(), item(&"x".repeat(600), vec![1.0, 0.0], None)], "items[1].id"),
        (vec![good.clone(), item("ok", vec![1.0, 1.0], None)], "items[1].id"),
        (vec![good.clone(), item("b", vec![1.0, 0.0, 0.0], None)], "items[1].vector"),
        (vec![good.clone(), item("b", vec![f32::NAN, 0.0], None)], "items[1].vector"),
        (vec![good.clone(), item("b", vec![0.0, f32::NEG_INFINITY], None)], "items[1].vector"),
        (vec![good.clone(), item("b", vec![0.0, 0.0], None)], "items[1].vector"),
        (vec![good.clone(), item("b", vec![1.0, 0.0], Some("{oops"))], "items[1].metadata"),
        (
            vec![good.clone(), item("b", vec![1.0, 0.0], Some(&format!("\"{}\"", "m".repeat(70_000))))],
            "items[1].metadata",
        ),
        (vec![], "items"),
    ];
    for (items, field) in cases {
        match engine.upsert("t", "docs", items) {
            Err(Error::Invalid(e)) => assert_eq!(e.field, field, "{e}"),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert!(matches!(engine.upsert("t", "nope", vec![good]), Err(Error::IndexNotFound { .. })));
    assert!(matches!(engine.delete("t", "docs", vec!["a".into(), "a".into()]), Err(Error::Invalid(_))));
    assert!(matches!(engine.search("docs", vec![1.0], 10), Err(Error::Invalid(_))));
    assert!(matches!(
        engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()),
        Err(Error::IndexExists { .. })
    ));
    assert!(matches!(
        engine.create_index("t", "bad name", 2, Metric::L2, HnswConfig::default()),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        engine.create_index("t", "big", 5000, Metric::L2, HnswConfig::default()),
        Err(Error::Invalid(_))
    ));
    assert_eq!(engine.log().last_seq(), before, "nothing may be appended for bad input");
    assert_eq!(engine.get_index("docs").unwrap().length, 0);
}

#[test]
fn concurrent_searches_see_each_batch_whole_and_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    engine.create_index("t", "x", 4, Metric::L2, HnswConfig::default()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searchers: Vec<_> = (0..3)
        .map(|_| {
            let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = engine.get_index("x").unwrap().length as usize;
                    // Batches are 10 vectors: a half-applied batch would show up here.
                    let hits = engine.search("x", vec![0.0; 4], 1000).unwrap();
                    assert_eq!(hits.len() % 10, 0, "saw a partial batch");
                    assert!(hits.len() >= n.min(1000));
                }
            })
        })
        .collect();
    for b in 0..50 {
        let batch: Vec<VectorItem> =
            (0..10).map(|i| item(&format!("{b}-{i}"), vec![b as f32, i as f32, 1.0, 2.0], None)).collect();
        engine.upsert("t", "x", batch).unwrap();
        let hits = engine.search("x", vec![b as f32, 0.0, 1.0, 2.0], 1).unwrap();
        assert_eq!(&*hits[0].id, format!("{b}-0"), "read your own write");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in searchers {
        s.join().unwrap();
    }
}

#[test]
fn open_refuses_a_log_with_a_corrupt_event_and_names_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path());
        engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
        for i in 0..5 {
            engine.upsert("t", "docs", vec![item(&format!("v{i}"), vec![i as f32, 1.0], None)]).unwrap();
        }
    }
    common::corrupt_event(&dir.path().join(annal_engine::LOG_FILE), 4, |frame| frame[20] ^= 0xff);
    // The snapshot taken at close covers event 4: an open from it never reads it.
    {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        assert_eq!(engine.get_index("docs").unwrap().length, 5);
    }
    // A full replay does, and refuses it by number.
    let replay = annal_engine::SnapshotPolicy { restore: false, ..Default::default() };
    let config = EngineConfig { snapshots: replay, ..EngineConfig::default() };
    let err = Engine::open(dir.path(), config).err().expect("open must fail");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(chain.contains("event 4: checksum mismatch"), "{chain}");
}

#[test]
fn searches_run_between_the_chunks_of_a_large_upsert_and_see_none_of_it_until_it_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    engine.create_index("t", "x", 128, Metric::L2, HnswConfig::default()).unwrap();
    let vector = |i: usize| (0..128).map(|j| ((i * 31 + j * 7) % 113) as f32).collect::<Vec<f32>>();
    let first: Vec<VectorItem> = (0..200).map(|i| item(&format!("a{i}"), vector(i), None)).collect();
    engine.upsert("t", "x", first).unwrap();
    let big: Vec<VectorItem> = (0..6000).map(|i| item(&format!("b{i}"), vector(i + 200), None)).collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut during = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Staged vectors are in the graph but not live: they show as tombstones.
                let staging_before = engine.stats().indexes[0].tombstones > 0;
                let n = engine.search("x", vector(7), 1000).unwrap().len();
                let staging_after = engine.stats().indexes[0].tombstones > 0;
                assert!(n == 200 || n == 1000, "saw part of a batch: {n} results");
                if staging_before && staging_after {
                    assert_eq!(n, 200, "a staged vector was visible");
                    during += 1;
                }
            }
            during
        })
    };
    engine.upsert("t", "x", big).unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = searcher.join().unwrap();
    assert!(during >= 1, "no search completed while the upsert was being added");
    assert_eq!(engine.get_index("x").unwrap().length, 6200);
    let hits = engine.search("x", vector(6199), 1000).unwrap();
    assert!(
        hits.iter().any(|h| h.id.as_ref() == "b5999" && h.distance == 0.0),
        "the last vector is searchable"
    );
}

#[test]
fn rebuilds_racing_with_large_upserts_keep_every_live_vector_and_no_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_index("t", "x", 64, Metric::L2, HnswConfig::default()).unwrap();
    // Distinct pseudo-random vectors, so a vector's nearest neighbour is itself.
    let vector = |i: usize| -> Vec<f32> {
        (0..64u64)
            .map(|j| {
                let h = (i as u64 * 64 + j).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
                (h % 10_000) as f32 / 100.0
            })
            .collect()
    };
    let mut live = std::collections::BTreeSet::new();
    let mut next = 0;
    for round in 0..4 {
        let batch: Vec<VectorItem> =
            (next..next + 6000).map(|i| item(&format!("v{i}"), vector(i), None)).collect();
        engine.upsert("t", "x", batch).unwrap();
        live.extend(next..next + 6000);
        next += 3000;
        // Kill a third of what is live: past the rebuild share, so a rebuild starts
        // and runs while the next round's upsert is added chunk by chunk.
        let dead: Vec<usize> = live.iter().copied().step_by(3).collect();
        engine.delete("t", "x", dead.iter().map(|i| format!("v{i}")).collect()).unwrap();
        for i in &dead {
            live.remove(i);
        }
        assert_eq!(engine.get_index("x").unwrap().length, live.len() as u64, "round {round}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.stats().rebuilds.rebuilds < 2 {
        assert!(Instant::now() < deadline, "rebuilds did not happen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(engine.stats().rebuilds.failures, 0);
    for i in (0..next).step_by(7) {
        let hits = engine.search("x", vector(i), 1).unwrap();
        if live.contains(&i) {
            assert_eq!(hits[0].id.as_ref(), format!("v{i}"), "live vector {i} lost");
            assert_eq!(hits[0].distance, 0.0);
        } else {
            assert_ne!(hits[0].id.as_ref(), format!("v{i}"), "dead vector {i} returned");
        }
    }
}

#[test]
fn a_batch_that_fits_alone_but_not_with_its_actor_is_bad_input_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let dim = annal_engine::limits::DIMENSION_MAX as usize;
    engine.create_index("t", "big", dim as u32, Metric::L2, HnswConfig::default()).unwrap();
    let before = engine.log().last_seq();
    // Items whose estimate stays just under the event limit, so item validation passes;
    // a long actor then pushes the whole event over it.
    let per_item = annal_engine::event::estimated_item_bytes(&item("000000", vec![1.0; dim], None));
    let n = annal_engine::limits::EVENT_BYTES_MAX / per_item;
    let items: Vec<VectorItem> = (0..n).map(|i| item(&format!("{i:06}"), vec![1.0; dim], None)).collect();
    let actor = "a".repeat(12_000);
    match engine.upsert(&actor, "big", items) {
        Err(Error::Invalid(e)) => assert_eq!(e.field, "items", "{e}"),
        other => panic!("expected invalid items, got {:?}", other.map(|o| o.seq)),
    }
    assert_eq!(engine.log().last_seq(), before);
}
