//! Documents over HTTP with the real server process and the local embedder
//! (all-MiniLM-L6-v2 from `scripts/fetch-model.sh`): upsert text, watch the queue
//! drain, search by text; and a server whose model files are missing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

fn passages(n: usize) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/passages.txt");
    std::fs::read_to_string(path).expect("passages.txt").lines().take(n).map(str::to_owned).collect()
}

fn wait_drained(server: &Server, index: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, body) = server.get(&format!("/vectors/index/{index}/embedding"));
        assert_eq!(status, 200, "{body}");
        let q = &body["queue"];
        if q["incremental"] == 0 && q["backfill"] == 0 && q["in_flight"] == 0 {
            return body;
        }
        assert!(Instant::now() < deadline, "the queue never drained: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn documents_are_embedded_by_the_local_model_and_found_by_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) =
        server.post("/vectors/index", json!({"name": "texts", "embedder": "all-MiniLM-L6-v2"}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["params"]["dimension"], 384, "{body}");
    let lines = passages(40);
    let items: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"id": format!("p{i}"), "text": text, "metadata": {"line": i}}))
        .collect();
    let (status, body) = server.post("/vectors/index/texts/documents", json!({"items": items}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["added"], 40);
    let report = wait_drained(&server, "texts");
    assert_eq!(report["model"], "all-MiniLM-L6-v2");
    assert_eq!(report["available"], true);
    assert_eq!(report["documents"], 40);
    assert_eq!(report["report"]["incremental_processed"], 40, "{report}");
    let (status, body) = server.post("/vectors/index/texts/search", json!({"text": lines[7], "k": 3}));
    assert_eq!(status, 200, "{body}");
    let top = &body["results"][0];
    assert_eq!(top["id"], "p7", "{body}");
    assert_eq!(top["text"], lines[7].as_str());
    assert_eq!(top["metadata"], json!({"line": 7}));
    assert!(top["distance"].as_f64().unwrap() < 1e-4, "{top}");
    let (status, body) =
        server.post("/vectors/index/texts/search", json!({"texts": [lines[3], lines[30]], "k": 1}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0][0]["id"], "p3");
    assert_eq!(body["results"][1][0]["id"], "p30");

    // The wrong kind of write for each kind of index, and bad input, name the field.
    let (status, body) =
        server.post("/vectors/index/texts/add", json!({"items": [{"id": "v", "vector": [0.5]}]}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.post("/vectors/index", json!({"name": "plain", "dimension": 4})).0, 201);
    let (status, body) =
        server.post("/vectors/index/plain/documents", json!({"items": [{"id": "d", "text": "hello"}]}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post("/vectors/index/plain/search", json!({"text": "hello"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post("/vectors/index", json!({"name": "x", "embedder": "no-such-model"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().starts_with("embedder"), "{body}");
    let (status, body) = server.post("/vectors/index", json!({"name": "x"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().starts_with("dimension"), "{body}");
    let last = server.last_seq();
    let (status, body) = server.post(
        "/vectors/index/texts/documents",
        json!({"items": [{"id": "ok", "text": "fine"}, {"id": "empty", "text": ""}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().starts_with("items[1].text"), "{body}");
    assert_eq!(server.last_seq(), last, "a refused batch changes nothing");
    let (status, body) = server.call("PUT", "/vectors/index/texts/embedding", Some(json!({"model": "nope"})));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn without_its_model_files_a_document_index_waits_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let model_dir = empty.path().to_str().unwrap();
    let server = Server::start_with(dir.path(), &["--model-dir", model_dir]);
    let (status, body) =
        server.post("/vectors/index", json!({"name": "texts", "embedder": "all-MiniLM-L6-v2"}));
    assert_eq!(status, 201, "the model is known, only its files are missing: {body}");
    let (status, body) =
        server.post("/vectors/index/texts/documents", json!({"items": [{"id": "a", "text": "kept safe"}]}));
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (_, body) = server.get("/vectors/index/texts/embedding");
        if body["report"]["unavailable_ticks"].as_u64().unwrap_or(0) > 0 {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(body["available"], false);
    assert!(body["unavailable_reason"].as_str().unwrap().contains("fetch-model.sh"), "{body}");
    assert_eq!(body["queue"]["incremental"], 1, "the document waits in the queue: {body}");
    let (status, body) = server.post("/vectors/index/texts/search", json!({"text": "safe"}));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "embedder_unavailable");
}
