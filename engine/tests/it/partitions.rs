//! Partition schemes: upserts resolved (or refused) by template, filtered search that
//! never leaves its filter and finds k when k exist, and migrations that move every
//! record exactly once, survive SIGKILL and a restore from a mid-migration snapshot,
//! and conflict as documented.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::{EventBody, VectorItem};
use annal_engine::Progress;
use annal_engine::SnapshotPolicy;
use annal_engine::{Engine, EngineConfig, Error, HnswConfig, Metric, MigrateOptions};

fn quiet(_: Progress) {}

fn no_snapshots() -> EngineConfig {
    let snapshots = SnapshotPolicy { on_close: false, every_events: None, ..SnapshotPolicy::default() };
    EngineConfig { snapshots, ..EngineConfig::default() }
}

const OLD: &str = "tenant={tenant}";
const NEW: &str = "tenant={tenant}/year={year}";

/// Tenant `t{i % tenants}`, year `2020 + i % 3`; record `v{i}`.
fn items(base: &[Vec<f32>], range: std::ops::Range<usize>, tenants: usize) -> Vec<VectorItem> {
    range
        .map(|i| VectorItem {
            id: format!("v{i:05}"),
            vector: base[i % base.len()].clone(),
            metadata: Some(format!(r#"{{"tenant": "t{}", "year": {}}}"#, i % tenants, 2020 + i % 3)),
            partition: None,
        })
        .collect()
}

fn setup(dir: &std::path::Path, n: usize, config: EngineConfig) -> Engine {
    let base = common::fvecs("base.fvecs");
    let engine = Engine::open(dir, config).unwrap();
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.set_scheme("t", "docs", OLD).unwrap();
    for start in (0..n).step_by(500) {
        engine.upsert("t", "docs", items(&base, start..(start + 500).min(n), 4)).unwrap();
    }
    engine
}

fn paths(engine: &Engine) -> BTreeMap<String, Option<String>> {
    engine.records("docs").unwrap().into_iter().map(|r| (r.id, r.partition)).collect()
}

#[test]
fn an_upsert_the_scheme_cannot_resolve_is_refused_naming_the_item_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), no_snapshots()).unwrap();
    engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
    engine.set_scheme("t", "docs", OLD).unwrap();
    let item = |id: &str, metadata: Option<&str>, partition: Option<&str>| VectorItem {
        id: id.into(),
        vector: vec![1.0, 2.0],
        metadata: metadata.map(str::to_owned),
        partition: partition.map(str::to_owned),
    };
    let last = engine.log().last_seq();
    let missing =
        vec![item("a", Some(r#"{"tenant": "x"}"#), None), item("b", Some(r#"{"team": "y"}"#), None)];
    match engine.upsert("t", "docs", missing) {
        Err(Error::Invalid(e)) => {
            assert_eq!(e.field, "items[1].metadata");
            assert!(e.reason.contains("`tenant`"), "{}", e.reason);
        }
        other => panic!("{other:?}"),
    }
    let disagrees = vec![item("a", Some(r#"{"tenant": "x"}"#), Some("tenant=y"))];
    assert!(
        matches!(engine.upsert("t", "docs", disagrees), Err(Error::Invalid(e)) if e.field == "items[0].partition")
    );
    assert_eq!(engine.log().last_seq(), last, "nothing appended");
    engine.upsert("t", "docs", vec![item("a", Some(r#"{"tenant": "x"}"#), Some("tenant=x"))]).unwrap();
    engine.upsert("t", "docs", vec![item("b", Some(r#"{"tenant": 7}"#), None)]).unwrap();
    assert_eq!(paths(&engine)["b"].as_deref(), Some("tenant=7"), "resolved from the metadata");
    assert!(matches!(engine.set_scheme("t", "docs", NEW), Err(Error::SchemeConflict { .. })));
    let (_, counts) = engine.partitions("docs").unwrap();
    assert_eq!(counts, [("tenant=7".to_owned(), 1), ("tenant=x".to_owned(), 1)]);
    assert_eq!(engine.stats().indexes[0].partitions, counts, "per-partition counts in stats");
}

/// Every search of `queries` within `filter` stays inside it and returns
/// `min(k, members)` hits; returns recall@k against the members by brute force.
fn check_filter(engine: &Engine, base: &[Vec<f32>], queries: &[Vec<f32>], filter: &str, k: usize) -> f64 {
    let records = engine.records("docs").unwrap();
    let members: Vec<&annal_engine::Record> = records
        .iter()
        .filter(|r| {
            let p = r.partition.as_deref().unwrap_or("");
            if filter.ends_with('/') {
                p.starts_with(filter)
            } else {
                p == filter
            }
        })
        .collect();
    let _ = base;
    let mut found = 0;
    for q in queries {
        let hits = &engine.search_in("docs", vec![q.clone()], k, filter).unwrap()[0];
        assert_eq!(hits.len(), k.min(members.len()), "{filter}: k when k exist");
        for h in hits {
            let p = h.partition.as_deref().unwrap_or("");
            let inside = if filter.ends_with('/') { p.starts_with(filter) } else { p == filter };
            assert!(inside, "{} in {p:?} answered a search within {filter:?}", h.id);
        }
        let qn = norm(q);
        let mut exact: Vec<(f32, &str)> =
            members.iter().map(|r| (1.0 - dot(&norm(&r.vector), &qn), r.id.as_str())).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: HashSet<&str> = exact.iter().take(k).map(|(_, id)| *id).collect();
        found += hits.iter().filter(|h| truth.contains(&*h.id)).count();
    }
    found as f64 / (queries.len() * k.min(members.len())).max(1) as f64
}

fn norm(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn a_filtered_search_stays_in_its_filter_and_finds_k_before_during_and_after_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let queries: Vec<Vec<f32>> = common::fvecs("query.fvecs").into_iter().take(10).collect();
    let n = 6_000;
    let engine = Arc::new(setup(dir.path(), n, no_snapshots()));
    // A small partition (exact scan) and a large one (the graph with a selector).
    engine
        .upsert(
            "t",
            "docs",
            (0..30)
                .map(|i| VectorItem {
                    id: format!("s{i}"),
                    vector: base[i * 7].clone(),
                    metadata: Some(format!(r#"{{"tenant": "tiny", "year": {}}}"#, 2020 + i % 2)),
                    partition: None,
                })
                .collect(),
        )
        .unwrap();
    for filter in ["tenant=t1", "tenant=tiny", "tenant=nobody"] {
        let recall = check_filter(&engine, &base, &queries, filter, 10);
        assert!(recall >= 0.95 || filter == "tenant=nobody", "{filter}: recall {recall:.3}");
    }
    // During: searches from another thread while the migration runs in small batches.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (engine, stop, q) = (Arc::clone(&engine), Arc::clone(&stop), queries.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                for filter in ["tenant=t2", "tenant=t2/", "tenant=tiny/"] {
                    for hits in engine.search_in("docs", q.clone(), 10, filter).unwrap() {
                        for h in hits {
                            let p = h.partition.as_deref().unwrap_or("");
                            assert!(
                                p == "tenant=t2"
                                    || p.starts_with(filter)
                                    || filter == "tenant=t2" && p == filter
                            );
                            if filter == "tenant=t2" {
                                assert_eq!(p, "tenant=t2");
                            } else {
                                assert!(p.starts_with(filter), "{p} outside {filter}");
                            }
                        }
                    }
                }
                rounds += 1;
            }
            rounds
        })
    };
    let options = MigrateOptions { batch_size: 256, take_snapshot_first: false, ..MigrateOptions::default() };
    let report = engine.migrate_scheme("t", "docs", NEW, options, &quiet).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Release);
    assert!(searcher.join().unwrap() > 0);
    assert_eq!((report.moved, report.skipped, report.error_count), (n as u64 + 30, 0, 0));
    assert_eq!(report.version, 2);
    for filter in ["tenant=t1/", "tenant=t1/year=2021", "tenant=tiny/", "tenant=tiny/year=2020"] {
        let recall = check_filter(&engine, &base, &queries, filter, 10);
        assert!(recall >= 0.95, "{filter}: recall {recall:.3}");
    }
    assert_eq!(check_filter(&engine, &base, &queries, "tenant=t1", 10), 0.0, "the old path is empty now");
}

#[test]
fn a_dry_run_lists_exactly_the_moves_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path(), 600, no_snapshots());
    // One record that cannot be resolved under the new template.
    let no_year = VectorItem {
        id: "zz".into(),
        vector: common::fvecs("base.fvecs")[0].clone(),
        metadata: Some(r#"{"tenant": "t0"}"#.into()),
        partition: None,
    };
    engine.upsert("t", "docs", vec![no_year]).unwrap();
    let last = engine.log().last_seq();
    let before = paths(&engine);
    let options = MigrateOptions { dry_run: true, ..MigrateOptions::default() };
    let plan = engine.migrate_scheme("t", "docs", NEW, options, &quiet).unwrap();
    assert_eq!(engine.log().last_seq(), last, "a dry run appends nothing");
    assert_eq!(paths(&engine), before);
    assert_eq!((plan.moved, plan.error_count), (600, 1));
    assert_eq!(plan.errors[0].id, "zz");
    let expected: Vec<(String, Option<String>, String)> = before
        .iter()
        .filter(|(id, _)| *id != "zz")
        .map(|(id, from)| {
            let i: usize = id[1..].parse().unwrap();
            (id.clone(), from.clone(), format!("tenant=t{}/year={}", i % 4, 2020 + i % 3))
        })
        .collect();
    let got: Vec<(String, Option<String>, String)> =
        plan.plan.iter().map(|m| (m.id.clone(), m.from.clone(), m.to.clone())).collect();
    assert_eq!(got, expected);
}

#[test]
fn an_upsert_between_a_batch_plan_and_its_append_wins_over_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fvecs("base.fvecs");
    let engine_slot: Arc<std::sync::OnceLock<std::sync::Weak<Engine>>> = Arc::default();
    let slot = Arc::clone(&engine_slot);
    let once = std::sync::atomic::AtomicBool::new(true);
    let replacement = items(&base, 3..4, 4).pop().map(|mut item| {
        item.metadata = Some(r#"{"tenant": "moved-away", "year": 1999}"#.into());
        item
    });
    let hooks = annal_engine::Hooks {
        before_migration_batch: Some(Arc::new(move |_index: &str, planned: &[String]| {
            if planned.iter().any(|id| id == "v00003")
                && once.swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                let engine = slot.get().and_then(std::sync::Weak::upgrade).expect("engine");
                engine.upsert("t", "docs", vec![replacement.clone().expect("item")]).unwrap();
            }
        })),
        ..annal_engine::Hooks::default()
    };
    let engine = Arc::new(setup(dir.path(), 100, EngineConfig { hooks, ..no_snapshots() }));
    engine_slot.set(Arc::downgrade(&engine)).unwrap();
    let options = MigrateOptions { batch_size: 16, take_snapshot_first: false, ..MigrateOptions::default() };
    let report = engine.migrate_scheme("t", "docs", NEW, options, &quiet).unwrap();
    // The upsert came later in the log than the plan, earlier than the batch: the
    // batch's move of v00003 no longer applies (it is not in `from` any more), and the
    // upsert resolved under the new template.
    assert_eq!(paths(&engine)["v00003"].as_deref(), Some("tenant=moved-away/year=1999"));
    assert_eq!(report.moved, 100, "planned moves are counted as recorded");
    assert_eq!(
        engine.stats().projector.projections.iter().find(|p| p.name == "vectors").unwrap().rejected,
        1,
        "the one stale move was skipped at apply"
    );
}

fn moves_per_record(engine: &Engine) -> HashMap<String, usize> {
    let mut moved = HashMap::new();
    for (_, event) in engine.log().read_range(1..=u64::MAX, usize::MAX).unwrap() {
        if let EventBody::MigrationBatch(batch) = event.body {
            for m in batch.moves {
                *moved.entry(m.id).or_insert(0) += 1;
            }
        }
    }
    moved
}

const CHILD_DIR: &str = "ANNAL_TEST_MIGRATION_CHILD_DIR";

/// Not a test on its own: the child half of the SIGKILL test. Migrates in batches of 8,
/// printing each batch, slowly, until killed.
#[test]
fn migration_child_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let engine = Engine::open(&dir, no_snapshots()).unwrap();
    let options = MigrateOptions { batch_size: 8, take_snapshot_first: false, ..MigrateOptions::default() };
    let progress = |p: Progress| {
        println!("BATCH {}", p.done);
        std::thread::sleep(Duration::from_millis(20));
    };
    engine.migrate_scheme("child", "docs", NEW, options, &progress).unwrap();
    println!("DONE");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_migration_killed_mid_way_resumes_and_moves_every_record_exactly_once() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    drop(setup(dir.path(), n, no_snapshots()));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "partitions::migration_child_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut batches = 0;
    while batches < 10 {
        let line = lines.next().expect("the child stopped early").unwrap();
        if line.starts_with("BATCH ") {
            batches += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let engine = Engine::open(dir.path(), no_snapshots()).unwrap();
    let state = engine.partitions("docs").unwrap().0;
    let running = state.running.clone().expect("killed mid-way: the migration is unfinished");
    assert!(running.moved >= 80 && running.moved < n as u64, "{running:?}");
    // Another template while it is unfinished: a conflict, nothing appended.
    let last = engine.log().last_seq();
    let other = engine.migrate_scheme("t", "docs", "year={year}", MigrateOptions::default(), &quiet);
    assert!(matches!(other, Err(Error::SchemeConflict { .. })), "{other:?}");
    assert_eq!(engine.log().last_seq(), last);
    // The same template resumes after the cursor.
    let report = engine.migrate_scheme("t", "docs", NEW, MigrateOptions::default(), &quiet).unwrap();
    assert!(report.resumed);
    assert_eq!(report.moved, n as u64);
    let moved = moves_per_record(&engine);
    assert_eq!(moved.len(), n, "every record moved");
    assert!(moved.values().all(|&times| times == 1), "no record moved twice");
    for (id, path) in paths(&engine) {
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(path, Some(format!("tenant=t{}/year={}", i % 4, 2020 + i % 3)), "{id}");
    }
    // Finished: running it again is a conflict until the finished state is cleared.
    let again = engine.migrate_scheme("t", "docs", NEW, MigrateOptions::default(), &quiet);
    assert!(matches!(again, Err(Error::SchemeConflict { .. })));
    engine.clear_migration("ops", "docs").unwrap();
    let same = engine.migrate_scheme("t", "docs", NEW, MigrateOptions::default(), &quiet);
    assert!(matches!(same, Err(Error::SchemeConflict { .. })), "already the scheme: {same:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_from_a_mid_migration_snapshot_then_resume_ends_as_an_uninterrupted_run() {
    let base = common::fvecs("base.fvecs");
    let n = 300;
    let options = MigrateOptions { batch_size: 16, take_snapshot_first: true, ..MigrateOptions::default() };
    // Uninterrupted.
    let straight = tempfile::tempdir().unwrap();
    let expected = {
        let engine = setup(straight.path(), n, no_snapshots());
        let report = engine.migrate_scheme("t", "docs", NEW, options, &quiet).unwrap();
        assert!(report.snapshot_seq > 0, "a snapshot first");
        paths(&engine)
    };
    // Interrupted: a snapshot mid-way (from the progress callback), then a crash.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Arc::new(setup(dir.path(), n, no_snapshots()));
        let taker = Arc::clone(&engine);
        let snapped = std::sync::atomic::AtomicBool::new(false);
        let progress = move |p: Progress| {
            if p.done >= 128 && !snapped.swap(true, std::sync::atomic::Ordering::AcqRel) {
                annal_engine::block_on(taker.snapshot("ops")).unwrap().unwrap();
                panic!("crash after the mid-migration snapshot");
            }
        };
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = engine.migrate_scheme("t", "docs", NEW, options, &progress);
        }));
        assert!(crashed.is_err());
    }
    let _ = &base;
    // Snapshot restore plus the log after it; every later batch is gone with the crash
    // only if it was never appended, so resume from the recorded cursor.
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert!(engine.restored().snapshot.is_some(), "opened from the mid-migration snapshot");
    assert!(engine.partitions("docs").unwrap().0.running.is_some());
    let report = engine.migrate_scheme("t", "docs", NEW, options, &quiet).unwrap();
    assert!(report.resumed);
    assert_eq!(paths(&engine), expected);
    assert!(moves_per_record(&engine).values().all(|&times| times == 1));
}

#[test]
fn an_upsert_that_puts_a_record_back_on_its_planned_path_still_wins_over_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let slot: Arc<std::sync::OnceLock<std::sync::Weak<Engine>>> = Arc::default();
    let hook_slot = Arc::clone(&slot);
    let once = std::sync::atomic::AtomicBool::new(true);
    let item = |metadata: &str, partition: Option<&str>| VectorItem {
        id: "x".into(),
        vector: vec![1.0, 0.0],
        metadata: Some(metadata.into()),
        partition: partition.map(str::to_owned),
    };
    let back = item(r#"{"tenant": "acme"}"#, None);
    let hooks = annal_engine::Hooks {
        before_migration_batch: Some(Arc::new(move |_index: &str, planned: &[String]| {
            if planned.iter().any(|id| id == "x") && once.swap(false, std::sync::atomic::Ordering::AcqRel) {
                let engine = hook_slot.get().and_then(std::sync::Weak::upgrade).expect("engine");
                // Resolves under the new template to the very path the move comes from.
                engine.upsert("t", "docs", vec![back.clone()]).unwrap();
            }
        })),
        ..annal_engine::Hooks::default()
    };
    let engine = Arc::new(Engine::open(dir.path(), EngineConfig { hooks, ..no_snapshots() }).unwrap());
    slot.set(Arc::downgrade(&engine)).unwrap();
    engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
    // No scheme yet: an explicit path that its metadata disagrees with.
    engine.upsert("t", "docs", vec![item(r#"{"tenant": "globex"}"#, Some("tenant=acme"))]).unwrap();
    let options = MigrateOptions { take_snapshot_first: false, ..MigrateOptions::default() };
    engine.migrate_scheme("t", "docs", "tenant={tenant}", options, &quiet).unwrap();
    // The planned move (tenant=acme -> tenant=globex) was for the old metadata.
    assert_eq!(paths(&engine)["x"].as_deref(), Some("tenant=acme"));
    let hits = engine.search_in("docs", vec![vec![1.0, 0.0]], 1, "tenant=acme").unwrap();
    assert_eq!(hits[0].len(), 1, "the record is where its metadata says");
}
