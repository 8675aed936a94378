//! A data directory of an earlier build: `fixtures/v1-snapshot/`, written by annal at
//! 5cfed58 (before storage kinds; snapshot format version 1, event configs in their
//! version-1 layout) by `fixtures/make_v1_snapshot.py`. This build restores it from its
//! snapshot (not by a full replay), with flat storage everywhere, and reaches the same
//! state as a replay of its log from nothing.

use std::path::Path;

use annal_engine::{BucketsConfig, Engine, EngineConfig, GraphStorage, OfflineLog, Replay};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_version_1_snapshot_of_an_earlier_build_restores_as_flat_and_agrees_with_a_replay() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-snapshot");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());

    // Offline: the version-1 snapshot restores, and the tail replayed over it gives the
    // digest a replay from nothing gives.
    let source = OfflineLog::open(dir.path(), &BucketsConfig::default()).unwrap();
    let mut scratch = Replay::empty().unwrap();
    source.replay_into(&mut scratch, u64::MAX, &mut |_| {}).unwrap();
    let (_, taken) = source.snapshots(u64::MAX).unwrap().into_iter().next().expect("a snapshot");
    let object = source.fetch_snapshot(&taken).unwrap();
    assert_eq!(u32::from_le_bytes(object[8..12].try_into().unwrap()), 1, "a version-1 object");
    let mut restored = Replay::from_snapshot(&object, &taken).unwrap();
    source.replay_into(&mut restored, u64::MAX, &mut |_| {}).unwrap();
    let (scratch, restored) = (scratch.state().unwrap(), restored.state().unwrap());
    assert_eq!(restored.digest(), scratch.digest());
    drop(source);

    // The engine opens from the newest (the one its stop took, version 1 too): no
    // snapshot skipped, no full replay.
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let used = engine.restored().snapshot.clone().expect("restored from a version-1 snapshot");
    assert!(used.seq > taken.seq, "{used:?}");
    assert_eq!(engine.restored().skipped, 0);
    let index = engine.get_index("docs").unwrap();
    assert_eq!(index.length, 300 + 20 - 2);
    assert_eq!(index.params.config.storage, GraphStorage::FLAT);
    assert_eq!(index.params.config.ef_search, 64, "the second promotion is in effect");
    let promotions = engine.promotion("docs").unwrap();
    assert_eq!(promotions.current.as_ref().map(|p| p.config.ef_search), Some(64));
    assert_eq!(promotions.history.iter().map(|p| p.config.ef_search).collect::<Vec<_>>(), [48]);
    let trials = engine.trials("docs").unwrap();
    assert_eq!(trials.trials.len(), 1);
    assert_eq!(trials.trials[0].record.config.storage, GraphStorage::FLAT);
    let hits = engine.search("docs", vec![0.0; 8], 3).unwrap();
    assert_eq!(hits.len(), 3);
    // The rollback works over the restored history.
    engine.rollback("t", "docs").unwrap();
    assert_eq!(engine.get_index("docs").unwrap().params.config.ef_search, 48);
    engine.close().unwrap();
}
