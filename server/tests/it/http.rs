//! The `annal serve` process over HTTP: crash safety, restarts, and every bad input.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server;

use server::{raw_status, Server};

fn shared_vectors(n: usize) -> Vec<Vec<f32>> {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/base.fvecs")).unwrap();
    bytes
        .chunks_exact(4 + 384 * 4)
        .take(n)
        .map(|row| row[4..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        .collect()
}

#[test]
fn sigkill_after_acknowledged_adds_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = shared_vectors(3000);
    let server = Server::start(dir.path());
    for (name, distance) in [("cos", "cosine"), ("euclid", "l2")] {
        let (status, _) =
            server.post("/vectors/index", json!({"name": name, "dimension": 384, "distance": distance}));
        assert_eq!(status, 201);
    }
    for (b, chunk) in vectors.chunks(250).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": format!("v{}", b * 250 + i), "vector": v, "metadata": {"n": b * 250 + i}}))
            .collect();
        for name in ["cos", "euclid"] {
            let (status, body) = server.post(&format!("/vectors/index/{name}/add"), json!({"items": items}));
            assert_eq!(status, 200, "{body}");
        }
    }
    server.kill();

    let server = Server::start(dir.path());
    for name in ["cos", "euclid"] {
        let (_, info) = server.get(&format!("/vectors/index/{name}"));
        assert_eq!(info["length"], 3000, "{name}");
    }
    for i in (0..3000).step_by(37) {
        for (name, tolerance) in [("cos", 1e-6), ("euclid", 0.0)] {
            let (status, body) =
                server.post(&format!("/vectors/index/{name}/search"), json!({"vector": vectors[i], "k": 3}));
            assert_eq!(status, 200);
            let top = &body["results"][0];
            assert_eq!(top["id"], format!("v{i}"), "{name}: {body}");
            assert!(top["distance"].as_f64().unwrap().abs() <= tolerance, "{name}: {top}");
            assert_eq!(top["metadata"]["n"], i);
        }
    }
}

#[test]
fn upsert_delete_and_drop_over_http_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let check = |server: &Server| {
        let (_, body) = server.post("/vectors/index/a/search", json!({"vector": [1.0, 0.0]}));
        let ids: Vec<&str> =
            body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["y", "z"], "x deleted, y replaced to point along the query");
        assert_eq!(body["results"][0]["metadata"], json!({"v": 2}));
        assert_eq!(server.get("/vectors/index").1, json!({"names": ["a"], "count": 1}));
        assert_eq!(server.get("/vectors/index/b").0, 404);
    };
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "a", "dimension": 2, "distance": "l2"})).0, 201);
    assert_eq!(server.post("/vectors/index", json!({"name": "b", "dimension": 2})).0, 201);
    let items = json!({"items": [
        {"id": "x", "vector": [1.0, 0.0]},
        {"id": "y", "vector": [0.0, 1.0], "metadata": {"v": 1}},
        {"id": "z", "vector": [5.0, 5.0]},
    ]});
    assert_eq!(
        server.post("/vectors/index/a/add", items).1,
        json!({"added": 3, "length": 3, "seq": 3, "applied": true})
    );
    let replace = json!({"items": [{"id": "y", "vector": [1.0, 0.1], "metadata": {"v": 2}}]});
    assert_eq!(
        server.post("/vectors/index/a/add", replace).1,
        json!({"added": 1, "length": 3, "seq": 4, "applied": true})
    );
    assert_eq!(
        server.post("/vectors/index/a/delete", json!({"ids": ["x"]})).1,
        json!({"deleted": 1, "length": 2, "seq": 5, "applied": true})
    );
    assert_eq!(server.call("DELETE", "/vectors/index/b", None), (200, json!({"dropped": "b", "seq": 6})));
    check(&server);
    server.terminate();
    check(&Server::start(dir.path()));
}

#[test]
fn every_bad_input_gets_its_status_and_message_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    let before = server.last_seq();
    let ok = json!({"id": "ok", "vector": [1.0, 0.0, 0.0]});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/vectors/index", json!({"name": "docs", "dimension": 3}), 409, "already exists"),
        ("/vectors/index", json!({"name": "bad name!", "dimension": 3}), 400, "name:"),
        ("/vectors/index", json!({"name": "", "dimension": 3}), 400, "name:"),
        ("/vectors/index", json!({"name": "x".repeat(129), "dimension": 3}), 400, "name:"),
        ("/vectors/index", json!({"name": "d2", "dimension": 0}), 400, "dimension:"),
        ("/vectors/index", json!({"name": "d2", "dimension": 4097}), 400, "dimension:"),
        ("/vectors/index", json!({"name": "d2", "dimension": 3, "distance": "manhattan"}), 400, "distance:"),
        ("/vectors/index", json!({"name": "d2", "dimension": "three"}), 400, "dimension:"),
        ("/vectors/index", json!({"name": "d2", "dimension": 3, "m": 1}), 400, "m:"),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "", "vector": [1.0, 0.0, 0.0]}]}),
            400,
            "items[1].id",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "ok", "vector": [0.0, 1.0, 0.0]}]}),
            400,
            "items[1].id: duplicate",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "b", "vector": [1.0, 0.0]}]}),
            400,
            "items[1].vector: has dimension 2",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "b", "vector": [1e39, 0.0, 0.0]}]}),
            400,
            "items[1].vector: component 0 is not finite",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "b", "vector": [0.0, 0.0, 0.0]}]}),
            400,
            "items[1].vector: is the zero vector",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "b", "vector": [1.0, "x", 0.0]}]}),
            400,
            "items[1].vector[1]",
        ),
        (
            "/vectors/index/docs/add",
            json!({"items": [ok, {"id": "b", "vector": [1.0, 0.0, 0.0], "metadata": "m".repeat(70_000)}]}),
            400,
            "items[1].metadata",
        ),
        ("/vectors/index/docs/add", json!({"items": []}), 400, "items: must not be empty"),
        ("/vectors/index/nope/add", json!({"items": [ok]}), 404, "does not exist"),
        ("/vectors/index/docs/delete", json!({"ids": ["a", "a"]}), 400, "ids[1]: duplicate"),
        ("/vectors/index/docs/delete", json!({"ids": [""]}), 400, "ids[0]"),
        ("/vectors/index/nope/delete", json!({"ids": ["a"]}), 404, "does not exist"),
        ("/vectors/index/docs/search", json!({"vector": [1.0, 0.0, 0.0], "k": 0}), 400, "k:"),
        ("/vectors/index/docs/search", json!({"vector": [1.0, 0.0, 0.0], "k": 1001}), 400, "k:"),
        ("/vectors/index/docs/search", json!({"vector": [1.0, 0.0]}), 400, "vector: has dimension 2"),
        ("/vectors/index/nope/search", json!({"vector": [1.0, 0.0, 0.0]}), 404, "does not exist"),
    ];
    for (path, body, status, detail) in cases {
        let (got, answer) = server.post(path, body);
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer["detail"].as_str().unwrap().contains(detail), "{path}: want {detail:?} in {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(server.call("DELETE", "/vectors/index/nope", None).0, 404);
    let (status, body) = server.call("DELETE", "/vectors/index", None);
    assert_eq!((status, body["error"].as_str()), (405, Some("method_not_allowed")));
    assert_eq!(server.get("/vectors/index/nope").0, 404);
    let host = server.host().to_owned();
    let no_json = format!(
        "POST /vectors/index HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert_eq!(raw_status(&host, &no_json), 415);
    let too_big = format!(
        "POST /vectors/index/docs/add HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        64 * 1024 * 1024 + 1
    );
    assert_eq!(raw_status(&host, &too_big), 413);
    let broken = format!(
        "POST /vectors/index HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{{\"na"
    );
    assert_eq!(raw_status(&host, &broken), 400);
    assert_eq!(server.last_seq(), before, "no 4xx may commit anything");
    assert_eq!(server.get("/vectors/index/docs").1["length"], 0);
}

#[test]
fn metrics_export_requests_log_position_lag_and_index_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.post("/vectors/index", json!({"name": "m", "dimension": 2}));
    server.post("/vectors/index/m/add", json!({"items": [{"id": "a", "vector": [1.0, 2.0]}]}));
    let mut response = server.agent.get(format!("{}/metrics", server.base)).call().unwrap();
    assert!(response.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = response.body_mut().read_to_string().unwrap();
    for needle in [
        "annal_http_requests_total{method=\"POST\",route=\"/vectors/index/{name}/add\",status=\"200\"} 1",
        "annal_http_request_duration_seconds_bucket",
        "annal_log_last_seq 2",
        "annal_projection_applied_seq 2",
        "annal_projection_lag_events 0",
        "annal_index_vectors{index=\"m\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(server.get("/healthz").1["status"], "ok");
}

#[test]
fn sigterm_during_a_rebuild_in_deferred_mode_ends_in_seconds_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 128;
    let server = Server::start_with(dir.path(), &["--sync", "deferred"]);
    let (status, body) = server.post(
        "/vectors/index",
        json!({"name": "big", "dimension": dim, "distance": "l2", "m": 32, "ef_construction": 200}),
    );
    assert_eq!(status, 201, "{body}");
    for start in (0..30_000).step_by(5_000) {
        let items: Vec<Value> = (start..start + 5_000)
            .map(|i| {
                let v: Vec<f32> = (0..dim).map(|j| ((i * 31 + j * 7) % 1009) as f32 * 0.01).collect();
                json!({"id": format!("v{i}"), "vector": v})
            })
            .collect();
        let (status, body) = server.post("/vectors/index/big/add", json!({"items": items}));
        assert_eq!(status, 200, "{body}");
    }
    let ids: Vec<String> = (0..10_000).map(|i| format!("v{i}")).collect();
    let (status, body) = server.post("/vectors/index/big/delete", json!({"ids": ids}));
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.metrics().contains("annal_projection_rebuilds_running 1") {
        assert!(Instant::now() < deadline, "the rebuild never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = Instant::now();
    server.terminate();
    // Generous against a loaded machine; an uncancelled rebuild of this index takes
    // much longer in a debug build.
    assert!(asked.elapsed() < Duration::from_secs(15), "shutdown took {:?}", asked.elapsed());

    let server = Server::start(dir.path());
    let (_, info) = server.get("/vectors/index/big");
    assert_eq!(info["length"], 20_000, "{info}");
    let probe: Vec<f32> = (0..dim).map(|j| ((5 * 31 + j * 7) % 1009) as f32 * 0.01).collect();
    let (_, found) = server.post("/vectors/index/big/search", json!({"vector": probe, "k": 5}));
    assert!(found["results"].as_array().unwrap().iter().all(|hit| hit["id"] != "v5"), "{found}");
}
