//! `annal replay` and `annal recover` as processes: a healthy directory checks out with
//! the same digest every time (archived events included), a snapshot that disagrees
//! with its log is reported with the first difference, `replay --to S` writes a
//! directory that serves exactly the state as of S, and `recover` cuts a corrupt tail
//! only with `--yes`, keeping what it cut.

use std::path::Path;
use std::process::{Command, Output};

use annal_engine::block_on;
use annal_engine::event::{EventBody, SnapshotTaken, VectorItem};
use annal_engine::{
    BucketsConfig, Engine, EngineConfig, Event, HnswConfig, Log, LogConfig, Metric, LOG_FILE,
};
use annal_engine::{OfflineLog, Replay};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{json, Value};

use crate::common::server;

fn annal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annal")).args(args).output().expect("run annal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "{}\n{}", stdout(out), String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn item(id: &str, vector: Vec<f32>, metadata: Option<&str>) -> VectorItem {
    VectorItem { id: id.into(), vector, metadata: metadata.map(str::to_owned), partition: None }
}

fn digest_of_replay_to(data: &Path, upto: u64) -> String {
    let source = OfflineLog::open(data, &BucketsConfig::default()).unwrap();
    let mut replay = Replay::empty().unwrap();
    source.replay_into(&mut replay, upto, &mut |_| {}).unwrap();
    assert_eq!(replay.applied_seq(), upto);
    replay.state().unwrap().digest().total
}

/// 1 create, 2 upsert a b c, 3 snapshot of 2, 4 delete b, 5 upsert d and a changed,
/// 6 the snapshot the engine takes at close.
fn six_events(data: &Path) {
    let engine = Engine::open(data, EngineConfig::default()).unwrap();
    engine.create_index("ops", "docs", 4, Metric::L2, HnswConfig::default()).unwrap();
    let abc = vec![
        item("a", vec![1.0, 0.0, 0.0, 0.0], Some(r#"{"v":1}"#)),
        item("b", vec![0.0, 1.0, 0.0, 0.0], None),
        item("c", vec![0.0, 0.0, 1.0, 0.0], None),
    ];
    engine.upsert("ops", "docs", abc).unwrap();
    block_on(engine.snapshot("ops")).unwrap().unwrap();
    engine.delete("ops", "docs", vec!["b".into()]).unwrap();
    let more = vec![
        item("d", vec![0.0, 0.0, 0.0, 1.0], None),
        item("a", vec![0.5, 0.5, 0.0, 0.0], Some(r#"{"v":2}"#)),
    ];
    engine.upsert("ops", "docs", more).unwrap();
    engine.close().unwrap();
    drop(engine);
    assert_eq!(annal_engine::ReadOnlyLog::open(data.join(LOG_FILE)).unwrap().last_seq().unwrap(), 6);
}

#[test]
fn replay_check_passes_on_a_healthy_directory_with_the_same_digest_every_time_archived_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    six_events(dir.path());
    let first = json_out(&annal(&["replay", "--check", "--data", data, "--json"]));
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["seq"], 6);
    assert_eq!(first["snapshot"]["seq"], 5, "the newest snapshot, taken at close, is compared: {first}");
    assert_eq!(first["snapshot"]["matches"], true);
    assert_eq!(first["records"], 3);
    let second = json_out(&annal(&["replay", "--check", "--data", data, "--json"]));
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(first["digest"].as_str().unwrap(), digest_of_replay_to(dir.path(), 6));
    let text = annal(&["replay", "--check", "--data", data]);
    assert!(text.status.success());
    assert!(stdout(&text).contains("ok: the replay equals snapshot"), "{}", stdout(&text));

    // Move the oldest events out of the log into archive segments: the replay reads
    // them back and the state is the same (`LogArchived` changes no state).
    let policy = annal_engine::SnapshotPolicy { archive: true, keep: 1, ..Default::default() };
    let engine =
        Engine::open(dir.path(), EngineConfig { snapshots: policy, ..EngineConfig::default() }).unwrap();
    block_on(engine.snapshot("ops")).unwrap().unwrap();
    block_on(engine.archive_log("ops")).unwrap().unwrap();
    engine.close().unwrap();
    drop(engine);
    let stats = json_out(&annal(&["log", "stats", "--data", data, "--json"]));
    assert!(stats["first_seq"].as_u64().unwrap() > 1, "events were archived: {stats}");
    // `log dump` reads archived events back too.
    let dumped = annal(&["log", "dump", "--data", data, "--json", "--to", "3"]);
    assert!(dumped.status.success());
    let kinds: Vec<String> = stdout(&dumped)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["IndexCreated", "VectorsUpserted", "SnapshotTaken"]);
    let archived = json_out(&annal(&["replay", "--check", "--data", data, "--json"]));
    assert_eq!(archived["ok"], true, "{archived}");
    assert_eq!(archived["digest"], first["digest"], "{archived}");
}

#[test]
fn replay_check_of_a_trained_quantized_index_matches_its_snapshot_and_its_dump_shows_the_storage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let storage = annal_engine::GraphStorage { kind: annal_engine::StorageKind::Sq8, pq_m: 0, refine: 3 };
    let config = HnswConfig { m: 16, ef_construction: 40, ef_search: 32, storage };
    engine.create_index("ops", "q", 8, Metric::L2, config).unwrap();
    let items: Vec<VectorItem> = (0..1_200)
        .map(|i| item(&format!("v{i}"), (0..8).map(|j| ((i * 31 + j * 7) % 53) as f32).collect(), None))
        .collect();
    engine.upsert("ops", "q", items).unwrap(); // trains the quantizer at this event
    engine.close().unwrap(); // and snapshots it
    drop(engine);
    let checked = json_out(&annal(&["replay", "--check", "--data", data, "--json"]));
    assert_eq!((&checked["ok"], &checked["snapshot"]["matches"]), (&json!(true), &json!(true)), "{checked}");
    assert_eq!(checked["digest"].as_str().unwrap(), digest_of_replay_to(dir.path(), 3));
    let dumped = annal(&["log", "dump", "--data", data, "--json", "--to", "1"]);
    let created: Value = serde_json::from_str(stdout(&dumped).trim()).unwrap();
    assert_eq!(created["kind"], "IndexCreated", "{created}");
    assert_eq!(created["body"]["config"]["storage"], json!({"kind": "sq8", "pq_m": 0, "refine": 3}));
}

#[test]
fn replay_check_reports_a_snapshot_that_disagrees_with_its_log_naming_the_record() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, y) in [(&a, 0.0), (&b, 0.5)] {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        engine.create_index("ops", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
        engine.upsert("ops", "docs", vec![item("x", vec![1.0, y], None)]).unwrap();
        engine.close().unwrap(); // a snapshot of event 2, registered by event 3
        drop(engine);
    }
    // Plant B's snapshot (state as of 2, x = [1, 0.5]) in A, registered as A's newest:
    // a snapshot restored from the wrong place, whose checksums are all sound.
    let object = std::fs::read(b.path().join("buckets/primary/snapshots/00000000000000000002.snap")).unwrap();
    std::fs::write(a.path().join("buckets/primary/snapshots/planted.snap"), &object).unwrap();
    let log = Log::open(a.path().join(LOG_FILE), LogConfig::default()).unwrap();
    let taken = SnapshotTaken {
        seq: 2,
        bucket: "primary".into(),
        key: "snapshots/planted.snap".into(),
        bytes: object.len() as u64,
        crc32: crc32fast::hash(&object),
    };
    log.append(&[Event::new("test", EventBody::SnapshotTaken(taken))]).unwrap();
    log.close().unwrap();
    drop(log);

    let data = a.path().to_str().unwrap();
    let out = annal(&["replay", "--check", "--data", data, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["snapshot"]["key"], "snapshots/planted.snap");
    let difference = report["snapshot"]["difference"].as_str().unwrap();
    assert!(
        difference.contains(
            r#"index "docs": record "x": vector differs at component 1 (0 on the left, 0.5 on the right)"#
        ),
        "{difference}"
    );
    let text = annal(&["replay", "--check", "--data", data]);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains("DIFFERENT"), "{}", stdout(&text));
}

#[test]
fn replay_to_writes_a_directory_that_serves_exactly_the_state_as_of_s() {
    let dir = tempfile::tempdir().unwrap();
    six_events(dir.path());
    let data = dir.path().to_str().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("as-of-4");
    let out_str = out.to_str().unwrap();
    let written = json_out(&annal(&["replay", "--data", data, "--to", "4", "--out", out_str, "--json"]));
    assert_eq!(written["events"], 4);
    assert_eq!(
        written["snapshot_copied"]["seq"], 2,
        "the snapshot registered by event 3 comes along: {written}"
    );
    assert_eq!(written["records"], 2, "a and c: b deleted by 4, d not yet upserted");
    // The state it wrote is the state of the source as of 4, replayed from nothing.
    let expected = digest_of_replay_to(dir.path(), 4);
    assert_eq!(written["digest"].as_str().unwrap(), expected);
    let checked = json_out(&annal(&["replay", "--check", "--data", out_str, "--json"]));
    assert_eq!(checked["digest"].as_str().unwrap(), expected, "{checked}");
    assert_eq!(checked["snapshot"]["matches"], true, "{checked}");
    // Refusals: a directory that is not empty, and a sequence number past the end.
    let again = annal(&["replay", "--data", data, "--to", "4", "--out", out_str]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let past =
        annal(&["replay", "--data", data, "--to", "7", "--out", out_dir.path().join("x").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&past.stderr).contains("holds events up to 6"));

    let server = server::Server::start(&out);
    assert_eq!(server.last_seq(), 4);
    let (status, index) = server.get("/vectors/index/docs");
    assert_eq!(status, 200);
    assert_eq!(index["length"], 2, "{index}");
    let search = |v: [f32; 4]| {
        let (status, body) = server.post("/vectors/index/docs/search", json!({"vector": v, "k": 1}));
        assert_eq!(status, 200, "{body}");
        body["results"][0].clone()
    };
    let a = search([1.0, 0.0, 0.0, 0.0]);
    assert_eq!((a["id"].as_str(), a["distance"].as_f64()), (Some("a"), Some(0.0)), "a as it was at 4: {a}");
    assert_eq!(a["metadata"], json!({"v": 1}));
    assert_ne!(search([0.0, 1.0, 0.0, 0.0])["id"], "b", "b was deleted at 4");
    assert_ne!(search([0.0, 0.0, 0.0, 1.0])["id"], "d", "d came at 5");
    assert_eq!(search([0.0, 0.0, 1.0, 0.0])["id"], "c");
}

fn corrupt(data: &Path, seqs: &[u64]) {
    let db = redb::Database::create(data.join(LOG_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let events: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
        let mut table = txn.open_table(events).unwrap();
        for seq in seqs {
            let mut frame = table.get(*seq).unwrap().unwrap().value().to_vec();
            let last = frame.len() - 1;
            frame[last] ^= 0x40;
            table.insert(*seq, frame.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

fn raw_frames(data: &Path) -> Vec<(u64, Vec<u8>)> {
    let db = redb::Database::open(data.join(LOG_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let events: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
    let table = txn.open_table(events).unwrap();
    table.iter().unwrap().map(|e| e.unwrap()).map(|(k, v)| (k.value(), v.value().to_vec())).collect()
}

#[test]
fn recover_refuses_without_yes_then_cuts_the_corrupt_tail_keeps_it_in_the_bucket_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    six_events(dir.path());
    let data = dir.path().to_str().unwrap();
    corrupt(dir.path(), &[5, 6]);
    let verify = annal(&["log", "verify", "--data", data]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).contains("CORRUPT at event 5"), "{}", stdout(&verify));
    let before = raw_frames(dir.path());
    // The tools that read up to a point still work below the corrupt tail.
    let out_dir = tempfile::tempdir().unwrap();
    let below = out_dir.path().join("as-of-4");
    let copied = annal(&["replay", "--data", data, "--to", "4", "--out", below.to_str().unwrap(), "--json"]);
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let exported = annal(&[
        "export",
        "--data",
        data,
        "--index",
        "docs",
        "--as-of",
        "4",
        out_dir.path().join("x.jsonl").to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    assert_eq!(raw_frames(dir.path()), before, "reading changed nothing");

    let refused = annal(&["recover", "--data", data, "--truncate-after", "4"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("cut: events 5..=6 (2 events"), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("2 of them fail their checks, the first is 5"), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("refusing without --yes"));
    assert_eq!(raw_frames(dir.path()), before, "nothing changed without --yes");
    let nothing_to_cut = annal(&["recover", "--data", data, "--truncate-after", "6", "--yes"]);
    assert!(!nothing_to_cut.status.success());

    let done = annal(&[
        "recover",
        "--data",
        data,
        "--truncate-after",
        "4",
        "--yes",
        "--reason",
        "bit rot in the tail",
    ]);
    assert!(done.status.success(), "{}{}", stdout(&done), String::from_utf8_lossy(&done.stderr));
    let verify = annal(&["log", "verify", "--data", data]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("ok: 5 events, last sequence 5"), "{}", stdout(&verify));
    let dumped = annal(&["log", "dump", "--data", data, "--json", "--from", "5"]);
    let event: Value = serde_json::from_str(stdout(&dumped).trim()).unwrap();
    assert_eq!(event["kind"], "LogTruncated");
    assert_eq!(event["actor"], "annal-recover");
    assert_eq!(event["body"]["first_cut"], 5);
    assert_eq!(event["body"]["last_cut"], 6);
    assert_eq!(event["body"]["reason"], "bit rot in the tail");
    // The cut frames, exactly as the log held them (corrupt ones included), are in the
    // bucket, in the cut frames format.
    let key = event["body"]["key"].as_str().unwrap();
    let object = std::fs::read(dir.path().join("buckets/primary").join(key)).unwrap();
    assert_eq!(crc32fast::hash(&object), event["body"]["crc32"].as_u64().unwrap() as u32);
    let kept: Vec<(u64, Vec<u8>)> =
        annal_engine::split_cut(key, &object).unwrap().into_iter().map(|(s, f)| (s, f.to_vec())).collect();
    assert_eq!(kept, before[4..].to_vec());
    // The directory opens and serves the state as of 4.
    assert_eq!(digest_of_replay_to(dir.path(), 5), digest_of_replay_to(dir.path(), 4));
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let ids: Vec<String> = engine.records("docs").unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["a", "c"]);
    engine.close().unwrap();
    drop(engine);
}

#[test]
fn recover_keeps_a_gap_as_a_gap_in_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    six_events(dir.path());
    // Event 5 is gone: the log cannot be replayed past 4.
    {
        let db = redb::Database::create(dir.path().join(LOG_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let events: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
            txn.open_table(events).unwrap().remove(5).unwrap();
        }
        txn.commit().unwrap();
    }
    let data = dir.path().to_str().unwrap();
    let check = annal(&["replay", "--check", "--data", data]);
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("event 5 is missing"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let refused = annal(&["recover", "--data", data, "--truncate-after", "4"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stdout(&refused).contains("cut: events 5..=6 (1 events"), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("1 sequence numbers in the range are missing"), "{}", stdout(&refused));
    let done = annal(&["recover", "--data", data, "--truncate-after", "4", "--yes"]);
    assert!(done.status.success(), "{}{}", stdout(&done), String::from_utf8_lossy(&done.stderr));
    let dumped = annal(&["log", "dump", "--data", data, "--json", "--from", "5"]);
    let event: Value = serde_json::from_str(stdout(&dumped).trim()).unwrap();
    let key = event["body"]["key"].as_str().unwrap();
    let object = std::fs::read(dir.path().join("buckets/primary").join(key)).unwrap();
    let seqs: Vec<u64> = annal_engine::split_cut(key, &object).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [6]);
    let check = json_out(&annal(&["replay", "--check", "--data", data, "--json"]));
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn replay_check_fails_when_the_newest_snapshot_is_unusable_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    six_events(dir.path());
    let newest = dir.path().join("buckets/primary/snapshots/00000000000000000005.snap");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&newest, bytes).unwrap();
    let out = annal(&["replay", "--check", "--data", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["unusable_snapshots"][0]["key"], "snapshots/00000000000000000005.snap", "{report}");
    assert_eq!(report["snapshot"]["seq"], 2, "the older one is still compared: {report}");
    assert_eq!(report["snapshot"]["matches"], true);
}

#[test]
fn every_tool_refuses_a_directory_a_running_server_holds_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = server::Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 2})).0, 201);
    let data = dir.path().to_str().unwrap();
    let file = dir.path().join("x.jsonl");
    std::fs::write(&file, "{\"id\": \"a\", \"vector\": [1.0, 2.0]}\n").unwrap();
    let out_dir = dir.path().join("out");
    for args in [
        vec!["replay", "--check", "--data", data],
        vec!["replay", "--to", "1", "--out", out_dir.to_str().unwrap(), "--data", data],
        vec!["export", "--index", "docs", "--data", data, file.to_str().unwrap()],
        vec!["import", "--index", "docs", "--data", data, file.to_str().unwrap()],
        vec!["recover", "--truncate-after", "0", "--data", data],
        vec!["log", "dump", "--data", data],
    ] {
        let out = annal(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("is held by a running server (annal serve): stop it first"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(server.last_seq(), 1, "nothing was written");
}
