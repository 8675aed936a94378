//! Snapshots: an open from a snapshot plus the later events is the state of a full
//! replay; a broken snapshot is skipped, journaled, and costs nothing; a writer killed
//! while writing one leaves nothing half-written registered.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::{BucketOp, VectorItem};
use annal_engine::FaultyStore;
use annal_engine::JournalEntry;
use annal_engine::SnapshotPolicy;
use annal_engine::{Engine, EngineConfig, HnswConfig, Hooks, Metric, Record};

fn manual() -> SnapshotPolicy {
    SnapshotPolicy { on_close: false, every_events: None, keep: 10, ..SnapshotPolicy::default() }
}

fn config(policy: SnapshotPolicy) -> EngineConfig {
    EngineConfig { snapshots: policy, ..EngineConfig::default() }
}

fn full_replay() -> EngineConfig {
    config(SnapshotPolicy { restore: false, ..manual() })
}

fn items(base: &[Vec<f32>], from: usize, to: usize, tag: &str) -> Vec<VectorItem> {
    (from..to)
        .map(|i| VectorItem {
            id: format!("{tag}{i}"),
            vector: base[i % base.len()].clone(),
            metadata: (i % 3 == 0).then(|| format!(r#"{{"n": {i}, "tag": "{tag}"}}"#)),
            partition: (i % 2 == 0).then(|| format!("tenant-{}", i % 5)),
        })
        .collect()
}

fn shared_base(n: usize) -> Vec<Vec<f32>> {
    common::read_vecs(&common::data_dir().join("base.fvecs"))
        .into_iter()
        .take(n)
        .map(|row| row.into_iter().map(f32::from_le_bytes).collect())
        .collect()
}

/// Everything an engine's projections hold that a user can see.
#[derive(Debug, PartialEq)]
struct State {
    indexes: Vec<(String, annal_engine::IndexInfo, Vec<Record>, u64)>,
    journal: Vec<JournalEntry>,
    promotions: Vec<annal_engine::IndexPromotions>,
    trials: Vec<annal_engine::IndexTrials>,
}

fn state(engine: &Engine) -> State {
    let tombstones: std::collections::HashMap<String, u64> =
        engine.stats().indexes.into_iter().map(|i| (i.name, i.tombstones)).collect();
    let indexes = engine
        .list_indexes()
        .into_iter()
        .map(|name| {
            let info = engine.get_index(&name).unwrap();
            let records = engine.records(&name).unwrap();
            let dead = tombstones[&name];
            (name, info, records, dead)
        })
        .collect();
    let names = engine.list_indexes();
    State {
        indexes,
        journal: engine.journal().recent(usize::MAX),
        promotions: names.iter().map(|n| engine.promotion(n).unwrap()).collect(),
        trials: names.iter().map(|n| engine.trials(n).unwrap()).collect(),
    }
}

/// A history touching every part of the state: two indexes, metadata, partitions,
/// replaced and deleted vectors, a drop and a re-create, and bucket errors.
async fn history(engine: &Engine, base: &[Vec<f32>], faults: &Faults, part: u32) {
    let t = "t";
    if part == 0 {
        engine.create_index(t, "cos", 384, Metric::Cosine, HnswConfig::default()).unwrap();
        engine
            .create_index(
                t,
                "l2",
                384,
                Metric::L2,
                HnswConfig { m: 16, ef_construction: 40, ef_search: 32, ..Default::default() },
            )
            .unwrap();
        engine.create_index(t, "gone", 384, Metric::Ip, HnswConfig::default()).unwrap();
        for (from, to) in [(0, 600), (600, 1200)] {
            engine.upsert(t, "cos", items(base, from, to, "c")).unwrap();
            engine.upsert(t, "l2", items(base, from, to, "l")).unwrap();
        }
        engine.upsert(t, "gone", items(base, 0, 50, "g")).unwrap();
        engine.delete(t, "cos", (0..100).map(|i| format!("c{i}")).collect()).unwrap();
        engine.upsert(t, "cos", items(base, 200, 300, "c")).unwrap(); // replaced
        fault(faults, "primary").fail(BucketOp::List);
        engine.storage().list(t, "primary", Some("x")).await.unwrap_err();
        fault(faults, "primary").heal();
        let promoted = HnswConfig { m: 16, ef_construction: 40, ef_search: 48, ..Default::default() }; // as built: no rebuild
        let request = annal_engine::PromoteRequest {
            config: promoted,
            trial_id: String::new(),
            promoted_by: "ops".into(),
            note: "wider search".into(),
        };
        engine.promote(t, "l2", request).unwrap();
    } else {
        engine.upsert(t, "cos", items(base, 1200, 1400, "c")).unwrap();
        engine.delete(t, "l2", (500..700).map(|i| format!("l{i}")).collect()).unwrap();
        engine.drop_index(t, "gone").unwrap();
        engine.create_index(t, "gone", 384, Metric::L2, HnswConfig::default()).unwrap();
        engine.upsert(t, "gone", items(base, 10, 20, "again")).unwrap();
        fault(faults, "primary").fail(BucketOp::Delete);
        engine.storage().delete(t, "primary", "y").await.unwrap_err();
        fault(faults, "primary").heal();
        let quiet = |_: annal_engine::Progress| {};
        let sample = annal_engine::EvalQueries::Sample { count: 10, seed: 5 };
        let eval = annal_engine::EvalRequest { eval_id: None, queries: sample, k: 5 };
        let created = engine.create_eval_set(t, "cos", eval, &quiet).unwrap();
        let config = HnswConfig { m: 8, ef_construction: 20, ef_search: 16, ..Default::default() };
        let trial = annal_engine::TrialRequest { eval_id: created.eval_id, trial_id: None, config };
        engine.run_trial(t, "cos", trial, &quiet).unwrap();
        for ef_search in [40, 44] {
            let config = HnswConfig { m: 16, ef_construction: 40, ef_search, ..Default::default() };
            let request = annal_engine::PromoteRequest {
                config,
                trial_id: String::new(),
                promoted_by: "ops".into(),
                note: format!("ef {ef_search}"),
            };
            engine.promote(t, "l2", request).unwrap();
        }
        engine.rollback(t, "l2").unwrap(); // back to 40, with 48 in the history
    }
}

type Faults = Arc<parking_lot::Mutex<Vec<(String, Arc<FaultyStore>)>>>;

fn faulty(mut config: EngineConfig) -> (EngineConfig, Faults) {
    let faults: Faults = Arc::default();
    let seen = Arc::clone(&faults);
    config.hooks = Hooks {
        wrap_store: Some(Arc::new(move |name: &str, store| {
            let f = Arc::new(FaultyStore::new(store));
            seen.lock().push((name.to_owned(), Arc::clone(&f)));
            f
        })),
        ..Hooks::default()
    };
    (config, faults)
}

fn fault(faults: &Faults, bucket: &str) -> Arc<FaultyStore> {
    Arc::clone(&faults.lock().iter().rev().find(|(n, _)| n == bucket).unwrap().1)
}

#[tokio::test(flavor = "multi_thread")]
async fn open_from_a_snapshot_plus_later_events_is_exactly_the_state_of_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let base = shared_base(1400);
    let (cfg, faults) = faulty(config(manual()));
    let (at_close, taken) = {
        let engine = Engine::open(dir.path(), cfg).unwrap();
        history(&engine, &base, &faults, 0).await;
        let taken = engine.snapshot("ops").await.unwrap();
        assert!(taken.bytes > 1400 * 384 * 4, "{taken:?}");
        history(&engine, &base, &faults, 1).await;
        let at_close = state(&engine);
        engine.close().unwrap();
        (at_close, taken)
    };
    let from_snapshot = Engine::open(dir.path(), config(manual())).unwrap();
    let used = from_snapshot.restored().snapshot.clone().expect("the snapshot was used");
    assert_eq!((used.seq, used.key.as_str()), (taken.seq, taken.key.as_str()));
    let restored = state(&from_snapshot);
    drop(from_snapshot);
    let replayed = state(&Engine::open(dir.path(), full_replay()).unwrap());
    assert_eq!(restored.indexes.len(), 3);
    assert_eq!(restored.journal.len(), 2);
    assert_eq!(restored.trials[0].trials.len(), 1, "the trial of `cos`");
    let l2 = &restored.promotions[2];
    assert_eq!((l2.current.as_ref().map(|p| p.config.ef_search), l2.history.len()), (Some(40), 1));
    assert!(restored == replayed, "snapshot + tail differs from a full replay");
    assert!(restored == at_close, "the reopened state differs from the state at close");
}

/// An engine with two snapshots and events after each, closed without a third.
async fn two_snapshots(dir: &Path, base: &[Vec<f32>]) -> (u64, u64, State) {
    let engine = Engine::open(dir, config(manual())).unwrap();
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.upsert("t", "docs", items(base, 0, 300, "a")).unwrap();
    let first = engine.snapshot("ops").await.unwrap();
    engine.upsert("t", "docs", items(base, 300, 600, "b")).unwrap();
    let second = engine.snapshot("ops").await.unwrap();
    engine.delete("t", "docs", (0..50).map(|i| format!("a{i}")).collect()).unwrap();
    let at_close = state(&engine);
    engine.close().unwrap();
    (first.seq, second.seq, at_close)
}

/// A way to break a snapshot object on disk.
type Breakage = fn(&Path);

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_newest_snapshot_falls_back_to_the_one_before_records_one_error_and_loses_nothing() {
    let base = shared_base(600);
    let breakages: [(&str, Breakage); 3] = [
        ("a flipped byte", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            std::fs::write(p, bytes).unwrap();
        }),
        ("truncated", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() - 1000]).unwrap();
        }),
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (what, breakage) in breakages {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, at_close) = two_snapshots(dir.path(), &base).await;
        let newest = dir.path().join("buckets/primary").join(annal_engine::snapshot_key(second));
        breakage(&newest);
        let engine = Engine::open(dir.path(), config(manual())).unwrap();
        let restored = engine.restored().clone();
        assert_eq!(restored.snapshot.map(|s| s.seq), Some(first), "{what}: the older snapshot is used");
        assert_eq!(restored.skipped, 1, "{what}");
        let errors = engine.journal().recent(10);
        assert_eq!(errors.len(), 1, "{what}: one bucket error: {errors:?}");
        assert_eq!(
            (errors[0].op, errors[0].key.as_str()),
            (BucketOp::Read, annal_engine::snapshot_key(second).as_str())
        );
        let mut now = state(&engine);
        now.journal.clear();
        assert!(now == at_close, "{what}: state differs after the fallback");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_snapshot_broken_the_open_replays_the_whole_log() {
    let base = shared_base(600);
    let dir = tempfile::tempdir().unwrap();
    let (_, _, at_close) = two_snapshots(dir.path(), &base).await;
    std::fs::remove_dir_all(dir.path().join("buckets/primary/snapshots")).unwrap();
    let engine = Engine::open(dir.path(), config(manual())).unwrap();
    assert_eq!((engine.restored().snapshot.as_ref(), engine.restored().skipped), (None, 2));
    assert_eq!(engine.journal().recent(10).len(), 2);
    let mut now = state(&engine);
    now.journal.clear();
    assert!(now == at_close);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_beyond_the_kept_number_are_deleted_and_one_is_taken_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let policy = SnapshotPolicy { on_close: true, every_events: None, keep: 2, ..SnapshotPolicy::default() };
    {
        let engine = Engine::open(dir.path(), config(policy.clone())).unwrap();
        engine.create_index("t", "x", 2, Metric::L2, HnswConfig::default()).unwrap();
        for i in 0..4 {
            let item = VectorItem {
                id: format!("v{i}"),
                vector: vec![i as f32, 1.0],
                metadata: None,
                partition: None,
            };
            engine.upsert("t", "x", vec![item]).unwrap();
            engine.snapshot("ops").await.unwrap();
        }
        // Nothing since the last snapshot: close does not take another.
        assert_eq!(engine.snapshots().len(), 2, "the newest two are kept");
        let item = VectorItem { id: "v4".into(), vector: vec![4.0, 1.0], metadata: None, partition: None };
        engine.upsert("t", "x", vec![item]).unwrap();
        engine.close().unwrap();
    }
    let listing: Vec<String> = std::fs::read_dir(dir.path().join("buckets/primary/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listing.len(), 2, "{listing:?}");
    let engine = Engine::open(dir.path(), config(policy)).unwrap();
    let events = engine.log().read_range(1..=u64::MAX, usize::MAX).unwrap();
    let registered: Vec<String> = events
        .into_iter()
        .filter_map(|(_, e)| match e.body {
            annal_engine::EventBody::SnapshotTaken(t) => Some(t.key),
            _ => None,
        })
        .collect();
    assert_eq!(registered.len(), 5, "four taken by hand, one at close");
    assert_eq!(engine.restored().snapshot.as_ref().map(|s| &s.key), registered.last());
    assert_eq!(engine.snapshots().len(), 1, "this process knows the one it opened from");
    assert_eq!(engine.get_index("x").unwrap().length, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_taken_on_its_own_after_the_configured_number_of_events() {
    let dir = tempfile::tempdir().unwrap();
    let policy =
        SnapshotPolicy { on_close: false, every_events: Some(20), keep: 3, ..SnapshotPolicy::default() };
    let engine = Engine::open(dir.path(), config(policy)).unwrap();
    engine.create_index("t", "x", 2, Metric::L2, HnswConfig::default()).unwrap();
    for i in 0..25 {
        let item =
            VectorItem { id: format!("v{i}"), vector: vec![i as f32, 1.0], metadata: None, partition: None };
        engine.upsert("t", "x", vec![item]).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while engine.snapshots().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no snapshot after 26 events with every_events = 20");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(engine.snapshots()[0].1.seq >= 20);
}

const CHILD_DIR: &str = "ANNAL_TEST_SNAPSHOT_CHILD_DIR";

/// Not a test on its own: the child half of the SIGKILL test. Takes snapshots of a
/// growing index forever, printing each registered one.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_child_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let base = shared_base(2000);
    let engine = Engine::open(&dir, config(manual())).unwrap();
    engine.create_index("t", "docs", 384, Metric::L2, HnswConfig::default()).unwrap();
    for round in 0.. {
        engine.upsert("t", "docs", items(&base, round * 200, round * 200 + 200, "k")).unwrap();
        let taken = engine.snapshot("child").await.unwrap();
        println!("TAKEN {} {}", taken.seq, round);
    }
}

#[test]
fn a_kill_while_a_snapshot_is_written_leaves_the_previous_one_in_use_and_nothing_half_registered() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "snapshot::snapshot_child_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut taken = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while taken.len() < 3 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(rest) = line.strip_prefix("TAKEN ") {
            taken.push(rest.split(' ').next().unwrap().parse::<u64>().unwrap());
        }
    }
    std::thread::sleep(Duration::from_millis(15)); // most likely inside the next one
    child.kill().unwrap();
    child.wait().unwrap();

    let engine = Engine::open(dir.path(), config(manual())).unwrap();
    let restored = engine.restored().clone();
    assert_eq!(restored.skipped, 0, "every registered snapshot is whole");
    let used = restored.snapshot.expect("a snapshot was used").seq;
    assert!(used >= *taken.last().unwrap(), "used {used}, last acknowledged {taken:?}");
    let replayed_len = {
        let length = engine.get_index("docs").unwrap().length;
        drop(engine);
        let replay = Engine::open(dir.path(), full_replay()).unwrap();
        assert_eq!(replay.get_index("docs").unwrap().length, length);
        length
    };
    assert!(replayed_len >= 600);
}

/// What a search returned at the time: ids and distances.
fn answer(hits: &[annal_engine::Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|h| (h.id.to_string(), h.distance)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_as_of_an_earlier_event_returns_what_the_engine_returned_then() {
    let dir = tempfile::tempdir().unwrap();
    let base = shared_base(400);
    let engine = Engine::open(dir.path(), config(manual())).unwrap();
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.create_index("t", "old", 384, Metric::L2, HnswConfig::default()).unwrap();
    engine.upsert("t", "docs", items(&base, 0, 150, "d")).unwrap();
    engine.upsert("t", "old", items(&base, 0, 20, "o")).unwrap();
    engine.snapshot("ops").await.unwrap(); // a base for views after it
    let s1 = engine.upsert("t", "docs", items(&base, 150, 300, "d")).unwrap().seq;
    let queries: Vec<Vec<f32>> = (0..5).map(|i| base[i * 37].clone()).collect();
    // Recorded at the time.
    let then: Vec<_> =
        queries.iter().map(|q| answer(&engine.search("docs", q.clone(), 10).unwrap())).collect();
    let then_old = answer(&engine.search("old", base[3].clone(), 5).unwrap());
    let then_len = engine.get_index("docs").unwrap().length;

    engine.delete("t", "docs", (0..300).step_by(2).map(|i| format!("d{i}")).collect()).unwrap();
    engine.upsert("t", "docs", items(&base, 300, 400, "d")).unwrap();
    engine.drop_index("t", "old").unwrap();
    engine.snapshot("ops").await.unwrap(); // newer than s1: must not be used for s1
    assert!(engine.get_index("old").is_err());

    let view = engine.view_at(s1).unwrap();
    assert_eq!(view.seq(), s1);
    assert_eq!(view.list_indexes(), ["docs", "old"]);
    assert_eq!(view.get_index("docs").unwrap().length, then_len);
    for (q, expected) in queries.iter().zip(&then) {
        let got = answer(&view.search_batch("docs", vec![q.clone()], 10).unwrap()[0]);
        assert_eq!(&got, expected, "as of {s1}");
    }
    assert_eq!(answer(&view.search_batch("old", vec![base[3].clone()], 5).unwrap()[0]), then_old);
    // The same view again is the cached one.
    assert!(Arc::ptr_eq(&view, &engine.view_at(s1).unwrap()));
    // Before anything existed, and after the last event.
    assert!(engine.view_at(1).unwrap().get_index("docs").unwrap().length == 0);
    let last = engine.log().last_seq();
    assert!(matches!(engine.view_at(last + 5), Err(annal_engine::Error::AsOfFuture { .. })));
}

#[test]
fn a_view_before_the_first_retained_event_is_gone_not_a_newer_answer() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path(), config(manual())).unwrap();
        engine.create_index("t", "x", 2, Metric::L2, HnswConfig::default()).unwrap();
        for i in 0..6 {
            let item = VectorItem {
                id: format!("v{i}"),
                vector: vec![i as f32, 1.0],
                metadata: None,
                partition: None,
            };
            engine.upsert("t", "x", vec![item]).unwrap();
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(engine.snapshot("ops")).unwrap(); // covers 1..=7
        engine.close().unwrap();
    }
    // Retention by hand: events 1..=4 leave the log.
    {
        let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::create(dir.path().join(annal_engine::LOG_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(events).unwrap();
            for seq in 1..=4u64 {
                table.remove(seq).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let engine = Engine::open(dir.path(), config(manual())).unwrap();
    assert_eq!(engine.get_index("x").unwrap().length, 6);
    assert!(matches!(engine.view_at(3), Err(annal_engine::Error::AsOfGone { seq: 3, first_retained: 5 })));
    assert_eq!(engine.view_at(7).unwrap().get_index("x").unwrap().length, 6, "the snapshot covers 7");
}

#[test]
fn a_corrupt_old_snapshot_registration_is_skipped_by_views_and_pruning_and_named_by_a_replay_that_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (old_event, between) = {
        let engine = Engine::open(dir.path(), config(manual())).unwrap();
        engine.create_index("t", "x", 2, Metric::L2, HnswConfig::default()).unwrap();
        let upsert = |i: usize| {
            let item = VectorItem {
                id: format!("v{i}"),
                vector: vec![i as f32, 1.0],
                metadata: None,
                partition: None,
            };
            engine.upsert("t", "x", vec![item]).unwrap().seq
        };
        upsert(0);
        let old = runtime.block_on(engine.snapshot("ops")).unwrap();
        let between = upsert(1);
        runtime.block_on(engine.snapshot("ops")).unwrap();
        upsert(2);
        engine.close().unwrap();
        (old.event_seq, between)
    };
    // Flip the last byte of the old registration's frame: its CRC no longer matches (the
    // header, and so its kind byte, are intact).
    {
        let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::create(dir.path().join(annal_engine::LOG_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(events).unwrap();
            let mut frame = redb::ReadableTable::get(&table, old_event).unwrap().unwrap().value().to_vec();
            *frame.last_mut().unwrap() ^= 0x01;
            table.insert(old_event, frame.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let engine = Engine::open(dir.path(), config(manual())).unwrap();
    assert_eq!(engine.get_index("x").unwrap().length, 3, "opened from the newer snapshot");
    // A view walks the registrations past the corrupt one to the newer snapshot.
    let last = engine.log().last_seq();
    assert_eq!(engine.view_at(last).unwrap().get_index("x").unwrap().length, 3);
    // A snapshot's pruning lists every registration too.
    runtime.block_on(engine.snapshot("ops")).unwrap();
    // A view at the moment of the newer snapshot is that snapshot.
    assert_eq!(engine.view_at(between).unwrap().get_index("x").unwrap().length, 2);
    // A view as of the corrupt registration itself has no usable snapshot at or before
    // it (the old one is named only there) and must replay the event: it says which.
    let error = engine.view_at(old_event).err().expect("the corrupt event is on the way");
    let why = annal_engine::chain(&error);
    assert!(why.contains(&format!("event {old_event}: checksum mismatch")), "{why}");
}
