//! The projection framework as a user of the engine meets it: writes that do not wait
//! on unrelated work, faults, concurrent DDL, close, start-up and promotions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal_engine::event::*;
use annal_engine::SnapshotPolicy;
use annal_engine::{Engine, EngineConfig, Error, HnswError, Hooks, Log, LogConfig, LogError, LOG_FILE};

fn item(id: &str, vector: Vec<f32>) -> VectorItem {
    VectorItem { id: id.into(), vector, metadata: None, partition: None }
}

/// Distinct pseudo-random vectors, so a vector's nearest neighbour is itself.
fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim as u64)
        .map(|j| {
            let h = (i as u64 * dim as u64 + j).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
            (h % 10_000) as f32 / 100.0
        })
        .collect()
}

fn batch(tag: &str, range: std::ops::Range<usize>, dim: usize) -> Vec<VectorItem> {
    range.map(|i| item(&format!("{tag}{i}"), vector(i, dim))).collect()
}

/// Poll `condition` for up to 30 s; a liveness check, not a timing assertion.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_create_during_a_long_apply_does_not_block_a_write_to_another_index() {
    let dir = tempfile::tempdir().unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let hooks = Hooks {
        before_apply: Some({
            let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
            Arc::new(move |_seq, event: &Event| {
                if matches!(&event.body, EventBody::VectorsUpserted(u) if u.index == "slow") {
                    entered.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        }),
        ..Hooks::default()
    };
    let engine =
        Arc::new(Engine::open(dir.path(), EngineConfig { hooks, ..EngineConfig::default() }).unwrap());
    engine.create_index("t", "slow", 4, Metric::L2, HnswConfig::default()).unwrap();
    engine.create_index("t", "other", 4, Metric::L2, HnswConfig::default()).unwrap();
    let before = engine.log().last_seq();
    std::thread::scope(|s| {
        let slow = s.spawn(|| engine.upsert("t", "slow", batch("s", 0..10, 4)).unwrap());
        eventually("the slow apply started", || entered.load(Ordering::SeqCst));
        let create =
            s.spawn(|| engine.create_index("t", "new", 4, Metric::L2, HnswConfig::default()).unwrap());
        eventually("the create is appended", || engine.log().last_seq() >= before + 2);
        let write = s.spawn(|| engine.upsert("t", "other", batch("o", 0..10, 4)).unwrap());
        // The write to another index is validated and appended while the projector is
        // still inside the slow apply and the create waits to be applied.
        eventually("the write to another index is appended", || engine.log().last_seq() >= before + 3);
        assert!(!release.load(Ordering::SeqCst));
        assert!(engine.stats().projector.applied_seq < before + 1, "the slow apply is still running");
        release.store(true, Ordering::SeqCst);
        assert_eq!(slow.join().unwrap().seq, before + 1);
        assert_eq!(create.join().unwrap().seq, before + 2);
        assert_eq!(write.join().unwrap().seq, before + 3);
    });
    assert_eq!(engine.get_index("other").unwrap().length, 10);
    assert_eq!(engine.get_index("new").unwrap().length, 0);
}

#[test]
fn a_faulted_index_refuses_searches_writes_fail_and_a_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let hooks = Hooks {
        fail_add: Some({
            let fail = Arc::clone(&fail);
            Arc::new(move |index: &str| index == "bad" && fail.load(Ordering::SeqCst))
        }),
        ..Hooks::default()
    };
    {
        let engine = Engine::open(dir.path(), EngineConfig { hooks, ..EngineConfig::default() }).unwrap();
        engine.create_index("t", "bad", 8, Metric::L2, HnswConfig::default()).unwrap();
        engine.create_index("t", "good", 8, Metric::L2, HnswConfig::default()).unwrap();
        engine.upsert("t", "bad", batch("b", 0..100, 8)).unwrap();
        engine.upsert("t", "good", batch("g", 0..100, 8)).unwrap();
        fail.store(true, Ordering::SeqCst);
        let err = engine.upsert("t", "bad", batch("b", 100..200, 8)).unwrap_err();
        let Error::NotApplied { seq, .. } = err else { panic!("expected NotApplied, got {err:?}") };
        assert_eq!(seq, engine.log().last_seq(), "the failed write's event is durable");
        assert!(engine.projection_fault().is_some(), "the fault is reported");
        assert!(matches!(engine.search("bad", vector(1, 8), 5), Err(Error::Hnsw(HnswError::Faulted { .. }))));
        assert_eq!(
            engine.search("good", vector(1, 8), 1).unwrap()[0].id.as_ref(),
            "g1",
            "other indexes serve"
        );
        let refused = engine.upsert("t", "good", batch("g", 100..110, 8)).unwrap_err();
        assert!(matches!(refused, Error::Projection(_)), "writes are refused: {refused:?}");
        assert_eq!(engine.log().last_seq(), seq, "a refused write appends nothing");
    }
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert!(engine.projection_fault().is_none());
    assert_eq!(engine.get_index("bad").unwrap().length, 200, "the reopen applies the durable event");
    assert_eq!(engine.search("bad", vector(150, 8), 1).unwrap()[0].id.as_ref(), "b150");
}

#[test]
fn drop_and_recreate_while_others_upsert_to_it_and_to_another_index_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "churn", 4, Metric::L2, HnswConfig::default()).unwrap();
    engine.create_index("t", "steady", 4, Metric::L2, HnswConfig::default()).unwrap();
    let stop = AtomicBool::new(false);
    let last_create = AtomicU64::new(0);
    let churn_acks = Mutex::new(Vec::new());
    let mut steady_acked = 0;
    std::thread::scope(|s| {
        let churn_writer = s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                match engine.upsert("t", "churn", batch("c", i..i + 5, 4)) {
                    Ok(out) => churn_acks.lock().unwrap().push((out.seq, i)),
                    Err(Error::IndexNotFound { .. }) => {}
                    Err(e) => panic!("unexpected error {e:?}"),
                }
                i += 5;
            }
        });
        let steady_writer = s.spawn(|| {
            let mut n = 0;
            for round in 0..40 {
                engine.upsert("t", "steady", batch("s", round * 5..round * 5 + 5, 4)).unwrap();
                n += 5;
            }
            n
        });
        for _ in 0..15 {
            engine.drop_index("t", "churn").unwrap();
            let created = engine.create_index("t", "churn", 4, Metric::L2, HnswConfig::default()).unwrap();
            last_create.store(created.seq, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(3));
        }
        steady_acked = steady_writer.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        churn_writer.join().unwrap();
    });
    let after: Vec<usize> = churn_acks
        .lock()
        .unwrap()
        .iter()
        .filter(|(seq, _)| *seq > last_create.load(Ordering::SeqCst))
        .map(|(_, i)| *i)
        .collect();
    let check = |engine: &Engine| {
        assert_eq!(engine.get_index("steady").unwrap().length, steady_acked as u64);
        assert_eq!(engine.get_index("churn").unwrap().length, 5 * after.len() as u64);
        for &i in &after {
            assert_eq!(engine.search("churn", vector(i, 4), 1).unwrap()[0].id.as_ref(), format!("c{i}"));
        }
    };
    check(&engine);
    drop(engine);
    check(&Engine::open(dir.path(), EngineConfig::default()).unwrap());
}

#[test]
fn closing_while_writes_are_in_flight_acknowledges_each_durably_or_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "x", 4, Metric::L2, HnswConfig::default()).unwrap();
    let durable = Mutex::new(Vec::new());
    let refused = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..4 {
            let (engine, durable, refused) = (&engine, &durable, &refused);
            s.spawn(move || {
                for n in 0..10_000 {
                    let i = w * 100_000 + n;
                    match engine.upsert("t", "x", vec![item(&format!("v{i}"), vector(i, 4))]) {
                        Ok(_) | Err(Error::NotApplied { .. }) => durable.lock().unwrap().push(i),
                        Err(Error::Log(LogError::Closed)) => {
                            refused.lock().unwrap().push(i);
                            return;
                        }
                        Err(e) => panic!("neither durable nor refused: {e:?}"),
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        engine.close().unwrap();
    });
    drop(engine);
    let durable = durable.into_inner().unwrap();
    assert!(!durable.is_empty(), "some writes were acknowledged before the close");
    assert_eq!(refused.lock().unwrap().len(), 4, "every writer was refused once the engine closed");
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.get_index("x").unwrap().length, durable.len() as u64);
    for &i in durable.iter().step_by(97) {
        assert_eq!(engine.search("x", vector(i, 4), 1).unwrap()[0].id.as_ref(), format!("v{i}"));
    }
    for &i in refused.lock().unwrap().iter() {
        assert_ne!(engine.search("x", vector(i, 4), 1).unwrap()[0].id.as_ref(), format!("v{i}"));
    }
}

#[test]
fn a_started_engine_serves_reads_refuses_writes_until_replay_is_done_then_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        // No snapshot at close: this start must replay.
        let policy = SnapshotPolicy { on_close: false, ..SnapshotPolicy::default() };
        let engine =
            Engine::open(dir.path(), EngineConfig { snapshots: policy, ..EngineConfig::default() }).unwrap();
        engine.create_index("t", "x", 4, Metric::L2, HnswConfig::default()).unwrap();
        for i in 0..20 {
            engine.upsert("t", "x", batch("v", i * 10..i * 10 + 10, 4)).unwrap();
        }
    }
    let hooks = Hooks {
        before_apply: Some(Arc::new(|_, _: &Event| std::thread::sleep(Duration::from_millis(30)))),
        ..Hooks::default()
    };
    let engine = Engine::start(dir.path(), EngineConfig { hooks, ..EngineConfig::default() }).unwrap();
    let startup = engine.startup();
    assert!(!startup.ready);
    assert_eq!(startup.target_seq, 21);
    assert!(startup.applied_seq < 21);
    assert!(matches!(engine.upsert("t", "x", batch("w", 0..1, 4)), Err(Error::Starting)));
    assert!(matches!(engine.drop_index("t", "x"), Err(Error::Starting)));
    engine.wait_ready(Duration::MAX).unwrap();
    assert!(engine.startup().ready);
    assert_eq!(engine.get_index("x").unwrap().length, 200);
    assert_eq!(engine.upsert("t", "x", batch("w", 0..1, 4)).unwrap().seq, 22);
}

#[test]
fn promotions_change_the_serving_config_and_roll_back_to_the_creation_config() {
    let dir = tempfile::tempdir().unwrap();
    let created = HnswConfig { m: 16, ef_construction: 40, ef_search: 16, ..Default::default() };
    let promoted = HnswConfig { m: 8, ef_construction: 64, ef_search: 100, ..Default::default() };
    {
        let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
        let upsert =
            EventBody::VectorsUpserted(VectorsUpserted { index: "x".into(), items: batch("v", 0..500, 8) });
        let promote = |config| {
            EventBody::ConfigPromoted(ConfigPromoted {
                index: "x".into(),
                config,
                trial_id: "t1".into(),
                promoted_by: "ops".into(),
                note: "test".into(),
            })
        };
        let bodies = vec![
            EventBody::IndexCreated(IndexCreated {
                name: "x".into(),
                dimension: 8,
                metric: Metric::L2,
                config: created,
            }),
            upsert,
            promote(promoted),
        ];
        log.append(&bodies.into_iter().map(|b| Event::new("t", b)).collect::<Vec<_>>()).unwrap();
    }
    {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        assert_eq!(engine.get_index("x").unwrap().params.config, promoted);
        // A new m needs a new graph: it is rebuilt in the background, losing nothing.
        eventually("the graph is rebuilt with the promoted m", || engine.stats().rebuilds.rebuilds >= 1);
        assert_eq!(engine.get_index("x").unwrap().length, 500);
        for i in (0..500).step_by(37) {
            assert_eq!(engine.search("x", vector(i, 8), 1).unwrap()[0].id.as_ref(), format!("v{i}"));
        }
    }
    {
        let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
        let rollback = EventBody::PromotionRolledBack(PromotionRolledBack { index: "x".into() });
        log.append(&[Event::new("t", rollback.clone()), Event::new("t", rollback)]).unwrap();
    }
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.get_index("x").unwrap().params.config, created, "back to the creation config");
    assert_eq!(
        engine.stats().projector.projections.iter().find(|p| p.name == "vectors").unwrap().rejected,
        1,
        "the second rollback had nothing to undo"
    );
}

#[test]
fn closing_during_a_rebuild_of_a_large_index_cancels_it_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 128;
    {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        let config = HnswConfig { m: 32, ef_construction: 200, ef_search: 64, ..Default::default() };
        engine.create_index("t", "big", dim as u32, Metric::L2, config).unwrap();
        for start in (0..30_000).step_by(10_000) {
            engine.upsert("t", "big", batch("v", start..start + 10_000, dim)).unwrap();
        }
        engine.delete("t", "big", (0..10_000).map(|i| format!("v{i}")).collect()).unwrap();
        eventually("the rebuild runs", || engine.stats().rebuilds.running);
        engine.close().unwrap();
        let stats = engine.stats().rebuilds;
        assert_eq!(
            (stats.cancelled, stats.rebuilds),
            (1, 0),
            "the running rebuild was stopped, not finished"
        );
    }
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.get_index("big").unwrap().length, 20_000);
}
