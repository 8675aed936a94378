//! Snapshots and the log over HTTP: take one, restart from it, read the log's extent.

use serde_json::json;

use crate::common::server;

use server::Server;

#[test]
fn a_snapshot_taken_over_http_is_what_the_next_start_opens_from() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--snapshot-every-events", "0"]);
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    let items: Vec<_> =
        (0..50).map(|i| json!({"id": format!("v{i}"), "vector": [i as f32, 1.0, 0.5]})).collect();
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": items})).0, 200);
    let (status, taken) = server.post("/admin/snapshots", json!({}));
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["seq"], 2, "{taken}");
    assert_eq!(taken["event_seq"], 3);
    assert!(taken["bytes"].as_u64().unwrap() > 50 * 3 * 4);
    assert!(taken["key"].as_str().unwrap().starts_with("snapshots/"));
    let (_, listed) = server.get("/admin/snapshots");
    assert_eq!(listed["snapshots"][0]["key"], taken["key"], "{listed}");
    assert_eq!(listed["opened_from"], serde_json::Value::Null);
    let (_, log) = server.get("/admin/log");
    assert_eq!((log["first_seq"].as_u64(), log["last_seq"].as_u64()), (Some(1), Some(3)), "{log}");
    assert!(log["bytes_on_disk"].as_u64().unwrap() > 0);
    server.kill(); // no snapshot at shutdown: the next start uses the one taken by hand

    let server = Server::start(dir.path());
    let (_, listed) = server.get("/admin/snapshots");
    assert_eq!(listed["opened_from"]["key"], taken["key"], "{listed}");
    assert_eq!(listed["skipped_at_open"], 0);
    assert_eq!(server.get("/vectors/index/docs").1["length"], 50);
    let (_, found) = server.post("/vectors/index/docs/search", json!({"vector": [7.0, 1.0, 0.5], "k": 1}));
    assert_eq!(found["results"][0]["id"], "v7", "{found}");
    server.terminate(); // nothing applied since the snapshot: none is taken at shutdown
    let server = Server::start(dir.path());
    let (_, listed) = server.get("/admin/snapshots");
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1, "nothing new was applied: {listed}");
}

#[test]
fn read_routes_answer_as_of_an_earlier_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    let items: Vec<_> =
        (0..20).map(|i| json!({"id": format!("v{i}"), "vector": [i as f32, 1.0, 0.5]})).collect();
    let (_, added) = server.post("/vectors/index/docs/add", json!({"items": items}));
    let before = added["seq"].as_u64().unwrap();
    let query = json!({"vector": [4.0, 1.0, 0.5], "k": 3});
    let (_, then) = server.post("/vectors/index/docs/search", query.clone());
    let ids: Vec<_> = (0..20).map(|i| format!("v{i}")).collect();
    assert_eq!(server.post("/vectors/index/docs/delete", json!({"ids": ids})).0, 200);
    assert_eq!(server.call("DELETE", "/vectors/index/docs", None).0, 200);

    assert_eq!(server.get("/vectors/index/docs").0, 404, "gone now");
    let (status, info) = server.get(&format!("/vectors/index/docs?as_of={before}"));
    assert_eq!((status, info["length"].as_u64()), (200, Some(20)), "{info}");
    let (_, names) = server.get(&format!("/vectors/index?as_of={before}"));
    assert_eq!(names["names"], json!(["docs"]));
    let (status, past) = server.post(&format!("/vectors/index/docs/search?as_of={before}"), query);
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["results"], then["results"], "the answer given at the time");
    let (status, body) = server.get("/vectors/index/docs?as_of=999999");
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("as_of"), "{body}");
    assert_eq!(server.get("/vectors/index/docs?as_of=abc").0, 400);
}

#[test]
fn with_archive_log_the_log_sheds_what_the_oldest_kept_snapshot_covers_and_verify_checks_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--snapshot-every-events", "0", "--snapshot-keep", "1", "--archive-log"];
    let server = Server::start_with(dir.path(), &flags);
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    for batch in 0..3 {
        let items: Vec<_> = (0..10)
            .map(|i| json!({"id": format!("v{batch}-{i}"), "vector": [i as f32, batch as f32, 0.5]}))
            .collect();
        assert_eq!(server.post("/vectors/index/docs/add", json!({"items": items})).0, 200);
    }
    let (status, taken) = server.post("/admin/snapshots", json!({}));
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["seq"], 4);
    let (_, log) = server.get("/admin/log");
    // Events 1..=4 are archived; the log holds the snapshot's registration and the
    // archive's audit event.
    assert_eq!(log["archived"]["first_seq"], 1, "{log}");
    assert_eq!(log["archived"]["last_seq"], 4, "{log}");
    assert_eq!(log["archived"]["segments"], 1, "{log}");
    assert!(log["archived"]["bytes"].as_u64().unwrap() > 30 * 3 * 4, "{log}");
    assert_eq!((log["first_seq"].as_u64(), log["last_seq"].as_u64()), (Some(5), Some(6)), "{log}");
    // Time travel before the archive point reads the segment.
    let (status, info) = server.get("/vectors/index/docs?as_of=3");
    assert_eq!((status, info["length"].as_u64()), (200, Some(20)), "{info}");
    server.terminate();

    let verify = |data: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_annal"))
            .args(["verify", "--data"])
            .arg(data)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("4 archived events in 1 segments"), "{out}");
    let segments = dir.path().join("buckets/primary/archive");
    let file = std::fs::read_dir(&segments).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "verify must fail on a damaged segment: {out}");
    assert!(out.contains("CORRUPT archive"), "{out}");
}

#[test]
fn promotions_over_http_record_who_and_why_roll_back_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    let (status, none) = server.post("/vectors/index/docs/rollback", json!({}));
    assert_eq!(status, 409, "{none}");
    let promote =
        |ef: u32| json!({"m": 32, "ef_construction": 80, "ef_search": ef, "note": format!("ef {ef}")});
    let (status, first) = server.post("/vectors/index/docs/promote", promote(40));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["current"]["promoted_by"], "http", "the actor by default: {first}");
    assert_eq!(server.post("/vectors/index/docs/promote", promote(50)).0, 200);
    let (status, bad) =
        server.post("/vectors/index/docs/promote", json!({"m": 1, "ef_construction": 80, "ef_search": 5}));
    assert_eq!(status, 400, "{bad}");
    assert!(bad["detail"].as_str().unwrap().starts_with("m:"), "{bad}");
    assert_eq!(server.post("/vectors/index/nope/promote", promote(40)).0, 404);

    let (_, state) = server.get("/vectors/index/docs/promotion");
    assert_eq!(state["current"]["ef_search"], 50, "{state}");
    assert_eq!(state["history"][0]["note"], "ef 40", "{state}");
    assert_eq!(state["graph"]["in_effect"]["ef_search"], 50, "{state}");
    assert_eq!(server.get("/vectors/index/docs").1["params"]["ef_search"], 50);
    let (_, all) = server.get("/vectors/promotions");
    assert_eq!(
        (all["count"].as_u64(), &all["promotions"]["docs"]["note"]),
        (Some(1), &json!("ef 50")),
        "{all}"
    );
    server.kill();

    let server = Server::start(dir.path());
    let (_, back) = server.post("/vectors/index/docs/rollback", json!({}));
    assert_eq!(back["current"]["ef_search"], 40, "{back}");
    let (_, back) = server.post("/vectors/index/docs/rollback", json!({}));
    assert_eq!(back["current"], serde_json::Value::Null, "{back}");
    assert_eq!(server.get("/vectors/index/docs").1["params"]["ef_search"], 64, "the creation config again");
    assert_eq!(server.post("/vectors/index/docs/rollback", json!({})).0, 409);
}
