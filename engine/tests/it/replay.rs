//! Offline replay: deterministic digests of the logical state, from nothing and from a
//! snapshot, and the first difference between two states named.

use crate::common;

use annal_engine::event::VectorItem;
use annal_engine::{BucketsConfig, Engine, EngineConfig, HnswConfig, Metric, PromoteRequest};
use annal_engine::{LogicalState, OfflineLog, Replay};

fn item(id: &str, vector: Vec<f32>, metadata: Option<&str>) -> VectorItem {
    VectorItem { id: id.into(), vector, metadata: metadata.map(str::to_owned), partition: None }
}

/// A log with indexes of two metrics, metadata, deletes, a promotion and its rollback,
/// a dropped index, a snapshot in the middle and events after it.
fn busy_log(dir: &std::path::Path, twist: f32) {
    let engine = Engine::open(dir, EngineConfig::default()).unwrap();
    let vectors = common::fvecs("query.fvecs");
    engine.create_index("ops", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.create_index("ops", "flat", 2, Metric::L2, HnswConfig::default()).unwrap();
    engine.create_index("ops", "gone", 2, Metric::L2, HnswConfig::default()).unwrap();
    for (chunk, rows) in vectors[..600].chunks(150).enumerate() {
        let items = rows
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = chunk * 150 + i;
                item(&format!("q{n}"), v.clone(), (n % 3 == 0).then_some(r#"{"tenant":"a","n":1}"#))
            })
            .collect();
        engine.upsert("ops", "docs", items).unwrap();
    }
    engine.delete("ops", "docs", (0..50).map(|n| format!("q{n}")).collect()).unwrap();
    engine
        .upsert("ops", "flat", vec![item("a", vec![1.0, twist], None), item("b", vec![0.0, 1.0], None)])
        .unwrap();
    engine
        .promote(
            "ops",
            "docs",
            PromoteRequest {
                config: HnswConfig { ef_search: 90, ..HnswConfig::default() },
                trial_id: String::new(),
                promoted_by: "ops".into(),
                note: "wider beam".into(),
            },
        )
        .unwrap();
    annal_engine::block_on(engine.snapshot("ops")).unwrap().unwrap();
    engine.rollback("ops", "docs").unwrap();
    engine.drop_index("ops", "gone").unwrap();
    engine
        .upsert("ops", "docs", vec![item("q7", vectors[700].clone(), Some(r#"{"replaced":true}"#))])
        .unwrap();
    engine.delete("ops", "flat", vec!["b".into()]).unwrap();
    engine.close().unwrap();
}

fn replay_from_nothing(dir: &std::path::Path) -> LogicalState {
    let source = OfflineLog::open(dir, &BucketsConfig::default()).unwrap();
    let mut replay = Replay::empty().unwrap();
    source.replay_into(&mut replay, u64::MAX, &mut |_| {}).unwrap();
    replay.state().unwrap()
}

#[test]
fn the_same_log_replayed_twice_gives_the_same_state_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    busy_log(dir.path(), 0.0);
    let first = replay_from_nothing(dir.path());
    let second = replay_from_nothing(dir.path());
    assert_eq!(first.digest(), second.digest());
    assert_eq!(first.first_difference(&second), None);
    assert_eq!(first, second);
    // What a user sees: deletes applied, the dropped index gone, the replaced record.
    let names: Vec<&str> = first.indexes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["docs", "flat"]);
    let docs = &first.indexes[0];
    assert_eq!(docs.records.len(), 551, "600, less 50 deleted, plus q7 upserted again");
    assert!(docs.records.iter().all(|r| r.id != "q0" && r.id != "q49"));
    let q7 = docs.records.iter().find(|r| r.id == "q7").unwrap();
    assert_eq!(q7.metadata.as_deref(), Some(r#"{"replaced":true}"#));
    assert_eq!(docs.params.config, HnswConfig::default(), "the rollback is in the state");
    assert_eq!(first.indexes[1].records.len(), 1);
    let digest = first.digest();
    assert_eq!(digest.total.len(), 64);
    assert_eq!(digest.parts.len(), 2 + first.sections.len());
}

#[test]
fn a_replay_from_the_snapshot_reaches_the_same_digest_as_one_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    busy_log(dir.path(), 0.0);
    let source = OfflineLog::open(dir.path(), &BucketsConfig::default()).unwrap();
    let last = source.last_seq().unwrap();
    let (mut from_snapshot, taken) = source.newest_snapshot(last).unwrap().0.expect("the close snapshot");
    // The newest is the one the engine took at close: take the middle one too.
    let all = source.snapshots(u64::MAX).unwrap();
    assert!(all.len() >= 2, "{all:?}");
    let (_, middle) = &all[0];
    let object = source.fetch_snapshot(middle).unwrap();
    let mut from_middle = Replay::from_snapshot(&object, middle).unwrap();
    assert_eq!(from_middle.applied_seq(), middle.seq);
    source.replay_into(&mut from_middle, last, &mut |_| {}).unwrap();
    source.replay_into(&mut from_snapshot, last, &mut |_| {}).unwrap();
    assert!(taken.seq > middle.seq);
    let scratch = replay_from_nothing(dir.path());
    assert_eq!(from_middle.state().unwrap().first_difference(&scratch), None);
    assert_eq!(from_middle.state().unwrap().digest(), scratch.digest());
    assert_eq!(from_snapshot.state().unwrap().digest(), scratch.digest());
}

#[test]
fn two_logs_that_differ_in_one_component_have_different_digests_and_the_record_is_named() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    busy_log(a.path(), 0.0);
    busy_log(b.path(), 0.5);
    let (left, right) = (replay_from_nothing(a.path()), replay_from_nothing(b.path()));
    assert_ne!(left.digest().total, right.digest().total);
    let difference = left.first_difference(&right).unwrap();
    assert!(
        difference.contains(r#"index "flat": record "a": vector differs at component 1"#),
        "{difference}"
    );
    // The parts say where: docs agrees, flat does not.
    let (l, r) = (left.digest(), right.digest());
    assert_eq!(l.parts[0], r.parts[0]);
    assert_ne!(l.parts[1], r.parts[1]);
}

#[test]
fn replay_refuses_events_out_of_order() {
    let mut replay = Replay::empty().unwrap();
    let event = annal_engine::Event::new(
        "t",
        annal_engine::EventBody::IndexDropped(annal_engine::event::IndexDropped { name: "x".into() }),
    );
    let error = replay.apply(2, &event).unwrap_err();
    assert!(error.to_string().contains("event 2 offered after event 0"), "{error}");
}
