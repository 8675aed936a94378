//! `annal verify` and `annal events` against a data directory (the same code as `annal
//! log verify` and `annal log dump --json`).

use std::process::Command;

use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric, LOG_FILE};
use redb::{ReadableTable, TableDefinition};

fn annal(args: &[&str], data: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_annal")).args(args).arg("--data").arg(data).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn populate(data: &std::path::Path) {
    let engine = Engine::open(data, EngineConfig::default()).unwrap();
    engine.create_index("ops", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
    for i in 0..4 {
        let item =
            VectorItem { id: format!("v{i}"), vector: vec![i as f32, 1.0], metadata: None, partition: None };
        engine.upsert("ops", "docs", vec![item]).unwrap();
    }
}

#[test]
fn verify_passes_a_sound_log_and_names_the_first_corrupt_event() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let (ok, out) = annal(&["verify"], dir.path());
    assert!(ok, "{out}");
    // Four upserts, the create, and the snapshot the engine took when it closed.
    assert!(out.contains("ok: 6 events, last sequence 6"), "{out}");

    let path = dir.path().join(LOG_FILE);
    let bytes_before = std::fs::read(&path).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let events: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
            let mut table = txn.open_table(events).unwrap();
            let mut frame = table.get(3).unwrap().unwrap().value().to_vec();
            let last = frame.len() - 1;
            frame[last] ^= 0x01;
            table.insert(3, frame.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let corrupted = std::fs::read(&path).unwrap();
    assert_ne!(bytes_before, corrupted);
    let (ok, out) = annal(&["verify"], dir.path());
    assert!(!ok, "verify must fail on a corrupt log");
    assert!(out.contains("CORRUPT at event 3"), "{out}");
    assert!(out.contains("(2 events before it are sound)"), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), corrupted, "verify must not modify the file");
}

/// `annal events` is `annal log dump --json --from S` with a limit: the same lines.
#[test]
fn events_prints_the_audit_trail_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let (ok, out) = annal(&["events", "--from", "2", "--limit", "2"], dir.path());
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["seq"], 2);
    assert_eq!(lines[0]["actor"], "ops");
    assert_eq!(lines[0]["kind"], "VectorsUpserted");
    assert_eq!(lines[0]["body"]["items"][0]["id"], "v0", "{}", lines[0]);
    assert_eq!(lines[0]["body"]["items"][0]["vector"], serde_json::json!({"dimension": 2}), "{}", lines[0]);
    let (ok, dump) = annal(&["log", "dump", "--json", "--from", "2", "--to", "3"], dir.path());
    assert!(ok, "{dump}");
    assert_eq!(out, dump, "`annal events` and `annal log dump --json` print the same lines");
}
