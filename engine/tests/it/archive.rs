//! Log retention: events a kept snapshot covers move out of the log into archive
//! segments; an open (from a snapshot or by full replay) and time travel read them
//! back, and a damaged segment is found, never silently skipped.

use crate::common;

use std::path::{Path, PathBuf};

use annal_engine::event::{EventBody, VectorItem};
use annal_engine::SnapshotPolicy;
use annal_engine::DEFAULT_PRIMARY_ROOT;
use annal_engine::{BucketsConfig, Engine, EngineConfig, HnswConfig, Metric, Record, Storage};

fn policy(archive: bool) -> SnapshotPolicy {
    SnapshotPolicy { on_close: false, every_events: None, keep: 2, archive, ..SnapshotPolicy::default() }
}

fn config(policy: SnapshotPolicy) -> EngineConfig {
    EngineConfig { snapshots: policy, ..EngineConfig::default() }
}

fn full_replay() -> EngineConfig {
    config(SnapshotPolicy { restore: false, ..policy(false) })
}

fn items(from: usize, to: usize) -> Vec<VectorItem> {
    (from..to)
        .map(|i| VectorItem {
            id: format!("v{i}"),
            vector: vec![(i % 17) as f32, (i / 17) as f32, 1.0, (i % 5) as f32],
            metadata: (i % 4 == 0).then(|| format!(r#"{{"i": {i}}}"#)),
            partition: (i % 2 == 0).then(|| format!("p{}", i % 3)),
        })
        .collect()
}

type State = Vec<(String, annal_engine::IndexInfo, Vec<Record>)>;

fn state(engine: &Engine) -> State {
    engine
        .list_indexes()
        .into_iter()
        .map(|name| (name.clone(), engine.get_index(&name).unwrap(), engine.records(&name).unwrap()))
        .collect()
}

fn answer(hits: &[annal_engine::Hit]) -> Vec<(String, f32)> {
    hits.iter().map(|h| (h.id.to_string(), h.distance)).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join(DEFAULT_PRIMARY_ROOT).join(annal_engine::ARCHIVE_PREFIX);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// What a history recorded at the time, to compare views and reopens against.
struct Recorded {
    /// An event before the archive point, and what a search returned then.
    early_seq: u64,
    early_answer: Vec<(String, f32)>,
    early_length: u64,
    /// The oldest kept snapshot: the archive point.
    archive_point: u64,
    at_close: State,
}

/// Two snapshots with events before, between and after them; with `keep: 2` and the
/// archive policy on, the second snapshot archives everything the first covers.
async fn history(dir: &Path) -> Recorded {
    let engine = Engine::open(dir, config(policy(true))).unwrap();
    engine.create_index("t", "docs", 4, Metric::L2, HnswConfig::default()).unwrap();
    engine.create_index("t", "gone", 4, Metric::Cosine, HnswConfig::default()).unwrap();
    engine.upsert("t", "gone", items(0, 5)).unwrap();
    for chunk in 0..10 {
        engine.upsert("t", "docs", items(chunk * 30, chunk * 30 + 30)).unwrap();
    }
    let early_seq = engine.delete("t", "docs", (0..40).map(|i| format!("v{i}")).collect()).unwrap().seq;
    let query = vec![3.0, 2.0, 1.0, 0.0];
    let early_answer = answer(&engine.search("docs", query.clone(), 10).unwrap());
    let early_length = engine.get_index("docs").unwrap().length;
    engine.drop_index("t", "gone").unwrap();
    let first = engine.snapshot("ops").await.unwrap();
    // Nothing archived yet: only one snapshot is kept and it is the newest.
    engine.upsert("t", "docs", items(300, 360)).unwrap();
    engine.delete("t", "docs", (50..120).map(|i| format!("v{i}")).collect()).unwrap();
    let second = engine.snapshot("ops").await.unwrap();
    assert!(second.seq > first.seq);
    engine.upsert("t", "docs", items(360, 400)).unwrap();
    assert_ne!(
        answer(&engine.search("docs", query, 10).unwrap()),
        early_answer,
        "the history must change it"
    );
    let at_close = state(&engine);
    engine.close().unwrap();
    Recorded { early_seq, early_answer, early_length, archive_point: first.seq, at_close }
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_events_leave_the_log_and_every_open_and_time_travel_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = history(dir.path()).await;

    let engine = Engine::open(dir.path(), config(policy(false))).unwrap();
    // The log now starts right after the oldest kept snapshot; the segments hold the rest.
    assert_eq!(engine.log().first_seq().unwrap(), recorded.archive_point + 1);
    let segments = engine.log().segments().unwrap();
    assert_eq!(segments.first().map(|s| s.first), Some(1));
    assert_eq!(segments.last().map(|s| s.last), Some(recorded.archive_point));
    assert_eq!(segment_files(dir.path()).len(), segments.len());
    // The archive run is in the audit trail.
    let audit: Vec<_> = engine
        .log()
        .read_range(1..=u64::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e.body {
            EventBody::LogArchived(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(audit.len(), segments.len());
    assert_eq!((audit[0].first, audit[0].key.as_str()), (1, segments[0].key.as_str()));

    // From the newest snapshot: the state at close.
    assert!(engine.restored().snapshot.is_some());
    assert!(state(&engine) == recorded.at_close, "open from a snapshot differs");
    // Time travel to before the archive point reads the segments.
    let view = engine.view_at(recorded.early_seq).unwrap();
    assert_eq!(view.get_index("docs").unwrap().length, recorded.early_length);
    assert_eq!(view.list_indexes(), ["docs", "gone"]);
    let got = answer(&view.search_batch("docs", vec![vec![3.0, 2.0, 1.0, 0.0]], 10).unwrap()[0]);
    assert_eq!(got, recorded.early_answer, "as of {}", recorded.early_seq);
    engine.close().unwrap();
    drop(engine);

    // A full replay, snapshots ignored: archive first, then the log.
    let replayed = Engine::open(dir.path(), full_replay()).unwrap();
    assert!(replayed.restored().snapshot.is_none());
    assert!(state(&replayed) == recorded.at_close, "a full replay through the archive differs");
    drop(replayed);

    // Every snapshot object gone: the open falls back to a full replay through the archive.
    let snapshots = dir.path().join(DEFAULT_PRIMARY_ROOT).join(annal_engine::SNAPSHOT_PREFIX);
    std::fs::remove_dir_all(&snapshots).unwrap();
    let fallback = Engine::open(dir.path(), config(policy(false))).unwrap();
    assert!(fallback.restored().snapshot.is_none());
    assert_eq!(fallback.restored().skipped, 2);
    assert!(state(&fallback) == recorded.at_close, "the fallback replay differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_archive_segment_fails_verify_and_a_replay_that_needs_it_but_not_an_open_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = history(dir.path()).await;
    let storage = Storage::open_detached(dir.path(), &BucketsConfig::default()).unwrap();
    let segments = {
        let log = annal_engine::ReadOnlyLog::open(dir.path().join(annal_engine::LOG_FILE)).unwrap();
        let segments = log.segments().unwrap();
        let report = annal_engine::verify_archive(&storage, &segments, log.first_seq().unwrap());
        assert!(report.first_bad.is_none(), "{:?}", report.first_bad);
        assert_eq!(report.events_ok, recorded.archive_point);
        segments
    };

    let file = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let report = annal_engine::verify_archive(&storage, &segments, recorded.archive_point + 1);
    assert!(
        matches!(report.first_bad, Some(annal_engine::ArchiveError::Crc { .. })),
        "{:?}",
        report.first_bad
    );
    // A snapshot covers the damage: the open does not need the segment.
    let engine = Engine::open(dir.path(), config(policy(false))).unwrap();
    assert!(state(&engine) == recorded.at_close);
    // A view before the archive point does, and says so.
    let error = engine.view_at(recorded.early_seq).err().expect("the view needs the damaged segment");
    assert!(matches!(error, annal_engine::Error::Archive(_)), "{error:?}");
    drop(engine);
    // A full replay needs it too: it stops at the damage instead of serving a partial state.
    let error = Engine::open(dir.path(), full_replay()).err().expect("a replay must not skip the damage");
    assert!(annal_engine::chain(&error).contains("CRC-32"), "{}", annal_engine::chain(&error));
}

#[test]
fn an_archive_that_is_not_the_oldest_events_of_the_log_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        annal_engine::Log::open(dir.path().join("log.redb"), annal_engine::LogConfig::default()).unwrap();
    let events = common::one_of_each_kind();
    log.append(&events).unwrap();
    let last = log.last_seq();
    let audit = events[0].clone();
    let segment = |first, last| annal_engine::Segment {
        first,
        last,
        bucket: "primary".into(),
        key: "archive/x.seg".into(),
        bytes: 1,
        crc32: 0,
    };
    for (first, to) in [(2, 3), (1, last + 1), (3, 2)] {
        let refused = log.archive(segment(first, to), &audit);
        assert!(
            matches!(refused, Err(annal_engine::LogError::ArchiveRange { .. })),
            "{first}..={to}: {refused:?}"
        );
    }
    assert_eq!((log.first_seq().unwrap(), log.last_seq()), (1, last));
    assert!(log.segments().unwrap().is_empty());
    let audit_seq = log.archive(segment(1, 3), &audit).unwrap();
    assert_eq!(audit_seq, last + 1);
    assert_eq!(log.first_seq().unwrap(), 4);
    assert_eq!(log.segments().unwrap(), [segment(1, 3)]);
    assert!(log.verify().unwrap().is_ok(), "the log after an archive is dense from its first event");
}
