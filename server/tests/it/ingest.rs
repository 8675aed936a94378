//! The ingest path: base64 vectors, acknowledgement at durability with `min_seq` reads,
//! and batched search.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::server;

use server::Server;

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn vector(i: u32) -> Vec<f32> {
    // Values a decimal round trip would not keep exactly.
    (0..8).map(|j| ((i * 8 + j) as f32 * 0.1).sin() / 3.0 + 1e-7 * j as f32).collect()
}

#[test]
fn base64_and_array_vectors_store_the_same_floats_and_search_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for name in ["arrays", "base64"] {
        assert_eq!(
            server.post("/vectors/index", json!({"name": name, "dimension": 8, "distance": "l2"})).0,
            201
        );
    }
    let arrays: Vec<Value> = (0..200).map(|i| json!({"id": format!("v{i}"), "vector": vector(i)})).collect();
    let encoded: Vec<Value> =
        (0..200).map(|i| json!({"id": format!("v{i}"), "vector": b64(&vector(i))})).collect();
    assert_eq!(server.post("/vectors/index/arrays/add", json!({"items": arrays})).0, 200);
    assert_eq!(server.post("/vectors/index/base64/add", json!({"items": encoded})).0, 200);
    for i in [3, 77, 150] {
        let q = vector(i);
        let (_, a) = server.post("/vectors/index/arrays/search", json!({"vector": q, "k": 5}));
        let (_, b) = server.post("/vectors/index/base64/search", json!({"vector": b64(&q), "k": 5}));
        assert_eq!(a["results"], b["results"], "query {i}");
        assert_eq!(a["results"][0]["id"], format!("v{i}"));
        assert_eq!(a["results"][0]["distance"], 0.0, "the stored floats are the sent ones, bit for bit");
    }
    // A wrong length is a 400 naming the item.
    let bad = json!({"items": [{"id": "ok", "vector": b64(&vector(1))}, {"id": "short", "vector": "AAAA"}]});
    let (status, body) = server.post("/vectors/index/base64/add", bad);
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().starts_with("items[1].vector"), "{body}");
    let ragged = json!({"items": [{"id": "x", "vector": "AAAAAAA="}]});
    let (status, body) = server.post("/vectors/index/base64/add", ragged);
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("float32"), "{body}");
}

#[test]
fn a_durable_write_is_seen_with_min_seq_eventually_without_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.post("/vectors/index", json!({"name": "docs", "dimension": 8, "distance": "l2"})).0,
        201
    );
    let items: Vec<Value> =
        (0..500).map(|i| json!({"id": format!("v{i}"), "vector": b64(&vector(i))})).collect();
    let (status, added) = server.post("/vectors/index/docs/add", json!({"items": items, "wait": "durable"}));
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["applied"], false);
    let seq = added["seq"].as_u64().unwrap();
    let (status, found) = server
        .post(&format!("/vectors/index/docs/search?min_seq={seq}"), json!({"vector": vector(42), "k": 1}));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["id"], "v42", "min_seq waits for the write");
    let (_, info) = server.get(&format!("/vectors/index/docs?min_seq={seq}"));
    assert!(
        info["applied_seq"].as_u64().unwrap() >= seq && info["last_seq"].as_u64().unwrap() >= seq,
        "{info}"
    );
    // Past the last event: a 400, not a wait.
    assert_eq!(server.post("/vectors/index/docs/search?min_seq=999999", json!({"vector": vector(1)})).0, 400);
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": [], "wait": "soon"})).0, 400);

    // Without min_seq the write shows up on its own.
    let more: Vec<Value> = (500..600).map(|i| json!({"id": format!("v{i}"), "vector": vector(i)})).collect();
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": more, "wait": "durable"})).0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/vectors/index/docs").1["length"] != 600 {
        assert!(Instant::now() < deadline, "never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Acknowledged durable, then SIGKILL at once: nothing lost.
    let last: Vec<Value> = (600..700).map(|i| json!({"id": format!("v{i}"), "vector": vector(i)})).collect();
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": last, "wait": "durable"})).0, 200);
    server.kill();
    let server = Server::start(dir.path());
    assert_eq!(server.get("/vectors/index/docs").1["length"], 700);
}

#[test]
fn a_batched_search_answers_what_single_searches_answer_query_by_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 8})).0, 201);
    let items: Vec<Value> = (0..1000).map(|i| json!({"id": format!("v{i}"), "vector": vector(i)})).collect();
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": items})).0, 200);
    let queries: Vec<Vec<f32>> =
        (0..40).map(|i| vector(i * 13 + 5).iter().map(|x| x + 0.01).collect()).collect();
    let mut mixed: Vec<Value> = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        mixed.push(if i % 2 == 0 { json!(q) } else { json!(b64(q)) });
    }
    let (status, batch) = server.post("/vectors/index/docs/search", json!({"vectors": mixed, "k": 7}));
    assert_eq!(status, 200, "{batch}");
    let lists = batch["results"].as_array().unwrap();
    assert_eq!(lists.len(), queries.len());
    for (q, list) in queries.iter().zip(lists) {
        let (_, single) = server.post("/vectors/index/docs/search", json!({"vector": q, "k": 7}));
        assert_eq!(&single["results"], list);
    }
    let bad = json!({"vectors": [vector(1), [1.0, 2.0]], "k": 3});
    let (status, body) = server.post("/vectors/index/docs/search", bad);
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().starts_with("vectors[1]"), "{body}");
    let both = json!({"vector": vector(1), "vectors": [vector(2)]});
    assert_eq!(server.post("/vectors/index/docs/search", both).0, 400);
}

#[test]
fn a_durable_write_under_deferred_sync_is_fsynced_before_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--sync", "deferred"]);
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 8})).0, 201);
    let items: Vec<Value> =
        (0..50).map(|i| json!({"id": format!("v{i}"), "vector": b64(&vector(i))})).collect();
    let (status, added) = server.post("/vectors/index/docs/add", json!({"items": items, "wait": "durable"}));
    assert_eq!(status, 200, "{added}");
    server.kill();
    let server = Server::start(dir.path());
    assert_eq!(server.get("/vectors/index/docs").1["length"], 50, "acknowledged durable, so kept");
}
