//! `annal log ...` as a process: dump (structured JSON that parses back, filters,
//! elided vectors), stats, verify, tail against a running server, and the message when
//! the server holds the directory.

use std::process::{Command, Output};

use annal_engine::event::{Event, EventBody};
use annal_engine::{EventKind, Log, LogConfig, LOG_FILE};
use annal_server::render::event_from_json;
use serde_json::{json, Value};

use crate::engine_common;

use crate::common::server;

fn annal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annal")).args(args).output().expect("run annal")
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A data directory whose log holds one event of every kind.
fn every_kind() -> (tempfile::TempDir, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let events = engine_common::one_of_each_kind();
    let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
    log.append(&events).unwrap();
    log.close().unwrap();
    (dir, events)
}

#[test]
fn dump_json_of_a_log_with_every_kind_parses_back_into_the_same_events() {
    let (dir, events) = every_kind();
    let data = dir.path().to_str().unwrap();
    let kinds: std::collections::HashSet<_> = events.iter().map(|e| EventKind::of(&e.body)).collect();
    assert_eq!(kinds.len(), (1..=u8::MAX).filter_map(EventKind::from_u8).count(), "every kind");
    let dumped = lines(&annal(&["log", "dump", "--data", data, "--json", "--vectors"]));
    assert_eq!(dumped.len(), events.len());
    for (i, (line, event)) in dumped.iter().zip(&events).enumerate() {
        let (seq, parsed) = event_from_json(line).unwrap_or_else(|e| panic!("line {i}: {e}: {line}"));
        assert_eq!(seq, i as u64 + 1);
        assert_eq!(&parsed, event, "line {i} parses back into its event: {line}");
        assert!(line["body"].is_object(), "fields, not debug text: {line}");
    }
    // Real fields per kind, not debug text.
    let upsert = dumped.iter().find(|l| l["kind"] == "VectorsUpserted").unwrap();
    assert_eq!(upsert["body"]["items"][0]["vector"], json!([0.5, -1.25, 3.0]));
    assert_eq!(upsert["actor"], "test-actor");
    // Without --vectors a vector is its dimension.
    let elided = lines(&annal(&["log", "dump", "--data", data, "--json", "--kind", "VectorsUpserted"]));
    assert_eq!(elided.len(), 1);
    assert_eq!(elided[0]["body"]["items"][0]["vector"], json!({"dimension": 3}));
}

#[test]
fn dump_filters_by_range_kind_index_and_actor_and_prints_readable_lines() {
    let (dir, events) = every_kind();
    let data = dir.path().to_str().unwrap();
    let some = lines(&annal(&["log", "dump", "--data", data, "--json", "--from", "3", "--to", "5"]));
    assert_eq!(some.iter().map(|l| l["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4, 5]);
    let texts = lines(&annal(&["log", "dump", "--data", data, "--json", "--index", "texts"]));
    let expected =
        events.iter().filter(|e| annal_server::cli::log::index_of(&e.body) == Some("texts")).count();
    assert!(expected >= 4 && texts.len() == expected, "{} of {expected}", texts.len());
    let by_number = lines(&annal(&[
        "log",
        "dump",
        "--data",
        data,
        "--json",
        "--kind",
        "22",
        "--kind",
        "EmbedderChanged",
    ]));
    let kinds: Vec<&str> = by_number.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["DocumentsUpserted", "EmbedderChanged"]);
    assert!(lines(&annal(&["log", "dump", "--data", data, "--json", "--actor", "nobody"])).is_empty());
    let bad = annal(&["log", "dump", "--data", data, "--kind", "NoSuchKind"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NoSuchKind"));
    let readable = annal(&["log", "dump", "--data", data]);
    assert!(readable.status.success());
    let text = String::from_utf8(readable.stdout).unwrap();
    assert_eq!(text.lines().count(), events.len());
    assert!(text.lines().any(|l| l.contains("DocumentsUpserted") && l.contains("[texts]")), "{text}");
    assert!(text.lines().any(|l| l.contains("IndexCreatedWithEmbedder") && l.contains("[texts]")), "{text}");
}

#[test]
fn stats_counts_events_and_bytes_per_kind_and_verify_passes() {
    let (dir, events) = every_kind();
    let data = dir.path().to_str().unwrap();
    let stats = lines(&annal(&["log", "stats", "--data", data, "--json"])).pop().unwrap();
    assert_eq!(stats["first_seq"], 1);
    assert_eq!(stats["last_seq"], events.len());
    assert_eq!(stats["events"], events.len());
    let kinds = stats["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), events.len(), "one of each");
    assert!(kinds.iter().all(|k| k["events"] == 1 && k["bytes"].as_u64().unwrap() > 12));
    assert_eq!(stats["snapshots"].as_array().unwrap().len(), 1, "the SnapshotTaken of the sample");
    assert!(stats["bytes_on_disk"].as_u64().unwrap() > 0);
    let verified = annal(&["log", "verify", "--data", data]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("ok:"));
}

#[test]
fn tail_follows_a_running_server_and_a_held_directory_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let server = server::Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "t", "dimension": 2})).0, 201);
    let url = format!("http://{}", server.host());
    // Started before the write it waits for: the long poll sees it commit.
    let tail = std::thread::spawn({
        let url = url.clone();
        move || {
            annal(&["log", "tail", "--server", &url, "--from", "1", "--json", "--vectors", "--limit", "2"])
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let add = json!({"items": [{"id": "a", "vector": [0.25, 0.5]}]});
    assert_eq!(server.post("/vectors/index/t/add", add).0, 200);
    let followed = lines(&tail.join().unwrap());
    let kinds: Vec<&str> = followed.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["IndexCreated", "VectorsUpserted"]);
    let (_, upsert) = event_from_json(&followed[1]).unwrap();
    let EventBody::VectorsUpserted(upsert) = upsert.body else { panic!("{followed:?}") };
    assert_eq!(upsert.items[0].vector, vec![0.25, 0.5]);
    // The route itself: bounds named.
    let (status, body) = server.get("/admin/events?limit=0");
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/admin/events?from=2&limit=5");
    assert_eq!(status, 200);
    assert_eq!(body["events"][0]["seq"], 2);
    assert_eq!(body["events"][0]["body"]["items"][0]["vector"], json!({"dimension": 2}));
    // The server holds the file: reading it directly says so and what to do.
    let held = annal(&["log", "stats", "--data", dir.path().to_str().unwrap()]);
    assert!(!held.status.success());
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert!(stderr.contains("running server") && stderr.contains("log tail --server"), "{stderr}");
}

#[test]
fn snapshots_are_created_over_http_listed_and_verified_and_a_flipped_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = server::Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "t", "dimension": 2})).0, 201);
    let add = json!({"items": [{"id": "a", "vector": [0.25, 0.5]}]});
    assert_eq!(server.post("/vectors/index/t/add", add).0, 200);
    let url = format!("http://{}", server.host());
    let created = annal(&["snapshot", "create", "--server", &url]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
    let answer: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key = answer["key"].as_str().unwrap().to_owned();
    server.terminate(); // a clean close: the directory is free for the tools
    let listed = lines(&annal(&["snapshot", "list", "--data", data, "--json"]));
    assert!(!listed.is_empty() && listed.iter().any(|s| s["key"] == key.as_str()), "{listed:?}");
    let ok = annal(&["snapshot", "verify", "--data", data]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("ok {key}")));
    // Flip one byte of the object created above.
    let path = dir.path().join("buckets/primary").join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let bad = annal(&["snapshot", "verify", "--data", data]);
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains(&format!("CORRUPT {key}")), "{out}");
}

#[test]
fn an_empty_log_is_summarised_dumped_verified_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap().close().unwrap();
    let data = dir.path().to_str().unwrap();
    let stats = lines(&annal(&["log", "stats", "--data", data, "--json"])).pop().unwrap();
    assert_eq!((stats["events"].as_u64(), stats["last_seq"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert!(lines(&annal(&["log", "dump", "--data", data, "--json"])).is_empty());
    let verified = annal(&["log", "verify", "--data", data]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    let checked = lines(&annal(&["replay", "--check", "--data", data, "--json"])).pop().unwrap();
    assert_eq!(checked["ok"], true);
    assert_eq!(checked["seq"], 0);
    assert_eq!(checked["snapshot"], Value::Null, "nothing to compare with");
    assert_eq!(checked["indexes"], 0);
    // A missing directory is named.
    let missing = annal(&["log", "dump", "--data", dir.path().join("nope").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no log at"));
}

#[test]
fn dump_and_stats_page_through_more_events_than_one_read_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
    let n = 2_500u64;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                if i % 2 == 0 { "even" } else { "odd" },
                EventBody::IndexDropped(annal_engine::event::IndexDropped { name: format!("i{i}") }),
            )
        })
        .collect();
    for chunk in events.chunks(1_000) {
        log.append(chunk).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let data = dir.path().to_str().unwrap();
    let all = lines(&annal(&["log", "dump", "--data", data, "--json"]));
    assert_eq!(all.len() as u64, n);
    assert!(all.iter().enumerate().all(|(i, l)| l["seq"] == i as u64 + 1), "dense and in order across pages");
    let odd = lines(&annal(&["log", "dump", "--data", data, "--json", "--actor", "odd", "--from", "1000"]));
    assert_eq!(odd.len(), 751, "1000..=2500, every other one");
    let stats = lines(&annal(&["log", "stats", "--data", data, "--json"])).pop().unwrap();
    assert_eq!(stats["events"], n);
    assert_eq!(stats["kinds"][0]["events"], n);
}

#[test]
fn dump_into_a_closed_pipe_exits_zero() {
    // More output than a pipe buffers (64 KiB), so the writes meet the closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
    let body =
        |i: u64| EventBody::IndexDropped(annal_engine::event::IndexDropped { name: format!("index-{i:06}") });
    let events: Vec<Event> = (0..4_000).map(|i| Event::new("someone", body(i))).collect();
    log.append(&events[..2_000]).unwrap();
    log.append(&events[2_000..]).unwrap();
    log.close().unwrap();
    drop(log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["log", "dump", "--json", "--vectors", "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The reader goes away before reading anything (`annal log dump | head -0`).
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_snapshot_registration_that_does_not_decode_fails_snapshot_list_and_verify_naming_its_event() {
    let (dir, events) = every_kind();
    let seq = 1 + events.iter().position(|e| matches!(e.body, EventBody::SnapshotTaken(_))).unwrap() as u64;
    {
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::create(dir.path().join(LOG_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn.open_table(table).unwrap();
            let mut frame = redb::ReadableTable::get(&events, seq).unwrap().unwrap().value().to_vec();
            *frame.last_mut().unwrap() ^= 0x01;
            events.insert(seq, frame.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let data = dir.path().to_str().unwrap();
    for command in ["list", "verify"] {
        let out = annal(&["snapshot", command, "--data", data]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "snapshot {command} passed over a corrupt registration");
        assert!(stderr.contains(&format!("event {seq}: checksum mismatch")), "snapshot {command}: {stderr}");
    }
}
