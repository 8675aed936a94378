//! Partition schemes over HTTP and `annal migrate` as a process.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

fn finish(server: &Server, started: &Value) -> Value {
    let url = started["status"].as_str().unwrap_or_else(|| panic!("{started}")).to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = server.get(&url);
        if job["status"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn items(range: std::ops::Range<u32>) -> Vec<Value> {
    range
        .map(|i| {
            json!({
                "id": format!("v{i:04}"),
                "vector": [i as f32, (i % 7) as f32, 1.0],
                "metadata": {"tenant": format!("t{}", i % 3), "year": 2020 + i % 2},
            })
        })
        .collect()
}

#[test]
fn a_scheme_a_filtered_search_a_migration_and_its_cli_work_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.post("/vectors/index", json!({"name": "docs", "dimension": 3, "distance": "l2"})).0,
        201
    );
    let (status, set) = server.post("/vectors/index/docs/scheme", json!({"template": "tenant={tenant}"}));
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["scheme"], json!({"template": "tenant={tenant}", "version": 1}));
    assert_eq!(server.post("/vectors/index/docs/scheme", json!({"template": "x={x}"})).0, 409);
    assert_eq!(server.post("/vectors/index/docs/scheme", json!({"template": "no fields"})).0, 400);
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": items(0..300)})).0, 200);
    let (status, bad) = server.post(
        "/vectors/index/docs/add",
        json!({"items": [{"id": "x", "vector": [1, 2, 3], "metadata": {"team": 1}}]}),
    );
    assert_eq!(status, 400, "{bad}");
    assert!(bad["detail"].as_str().unwrap().starts_with("items[0].metadata:"), "{bad}");

    let (_, parts) = server.get("/vectors/index/docs/partitions");
    assert_eq!(parts["count"], 3, "{parts}");
    assert_eq!(parts["partitions"][0], json!({"path": "t0".replace("t0", "tenant=t0"), "records": 100}));
    let (status, found) = server.post(
        "/vectors/index/docs/search",
        json!({"vector": [5.0, 5.0, 1.0], "k": 7, "partition": "tenant=t1"}),
    );
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    assert!(results.iter().all(|h| h["partition"] == "tenant=t1"), "{found}");

    // A dry run through the CLI, then the migration itself.
    let annal = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_annal"))
            .arg("migrate")
            .args(["--server", &server.base, "--index", "docs", "--template", "tenant={tenant}/year={year}"])
            .args(args)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), report)
    };
    let last = server.get("/admin/log").1["last_seq"].clone();
    let (ok, plan) = annal(&["--dry-run"]);
    assert!(ok, "{plan}");
    assert_eq!((plan["dry_run"].as_bool(), plan["moved"].as_u64()), (Some(true), Some(300)), "{plan}");
    assert_eq!(plan["plan"][0], json!({"id": "v0000", "from": "tenant=t0", "to": "tenant=t0/year=2020"}));
    assert_eq!(server.get("/admin/log").1["last_seq"], last, "a dry run appends nothing");
    let (ok, report) = annal(&["--batch-size", "32"]);
    assert!(ok, "{report}");
    assert_eq!((report["moved"].as_u64(), report["version"].as_u64()), (Some(300), Some(2)), "{report}");
    assert!(report["snapshot_seq"].as_u64().unwrap() > 0, "a snapshot first: {report}");

    let (_, migration) = server.get("/vectors/index/docs/migration");
    assert_eq!(migration["scheme"]["version"], 2, "{migration}");
    assert_eq!(migration["finished"]["batches"], 10, "{migration}");
    let (_, found) = server.post(
        "/vectors/index/docs/search",
        json!({"vector": [5.0, 5.0, 1.0], "k": 5, "partition": "tenant=t2/"}),
    );
    assert!(found["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["partition"].as_str().unwrap().starts_with("tenant=t2/")));
    // Again: a conflict until the finished migration is cleared.
    let (ok, refused) = annal(&[]);
    assert!(!ok);
    assert_eq!(refused["status"], 409, "{refused}");
    let again =
        finish(&server, &server.post("/vectors/index/docs/migrate", json!({"template": "year={year}"})).1);
    assert_eq!(again["error"]["status"], 409, "{again}");
    assert_eq!(server.call("DELETE", "/vectors/index/docs/migration", None).0, 200);
    assert_eq!(server.call("DELETE", "/vectors/index/docs/migration", None).0, 409);
    let third = finish(
        &server,
        &server
            .post(
                "/vectors/index/docs/migrate",
                json!({"template": "year={year}", "take_snapshot_first": false}),
            )
            .1,
    );
    assert_eq!(third["result"]["version"], 3, "{third}");
}
