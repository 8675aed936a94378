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
    // Keyword search needs no embedder: the waiting document is found by its words.
    let (status, body) =
        server.post("/vectors/index/texts/search", json!({"text": "safe", "mode": "keyword"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["id"], "a", "{body}");
    assert_eq!(body["results"][0]["text"], "kept safe", "{body}");
    let (status, body) =
        server.post("/vectors/index/texts/search", json!({"text": "safe", "mode": "hybrid"}));
    assert_eq!(status, 503, "hybrid needs the embedder: {body}");
}

/// Passages with exact identifiers, as a user's man pages or code docs hold them.
const MAN: [(&str, &str, u32); 4] = [
    ("nice", "A thread with CAP_SYS_NICE may raise its scheduling priority.", 7),
    ("fanotify", "FAN_REPORT_DIR_FID reports the directory of an event.", 2),
    ("sched", "The scheduler picks the next thread by priority and policy.", 7),
    ("renice", "renice alters the scheduling priority of running processes.", 1),
];

#[test]
fn keyword_and_hybrid_search_over_http_rank_exact_terms_and_say_each_sides_rank() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) = server.post(
        "/vectors/index",
        json!({"name": "man", "embedder": "all-MiniLM-L6-v2", "text": {"fields": ["title"]}}),
    );
    assert_eq!(status, 201, "{body}");
    let mut items: Vec<Value> = MAN
        .iter()
        .map(|(id, text, section)| json!({"id": id, "text": text, "metadata": {"section": section, "title": id}}))
        .collect();
    items
        .extend(passages(30).into_iter().enumerate().map(|(i, t)| json!({"id": format!("p{i}"), "text": t})));
    let (status, body) = server.post("/vectors/index/man/documents", json!({"items": items}));
    assert_eq!(status, 200, "{body}");
    wait_drained(&server, "man");
    let (status, body) = server.get("/vectors/index/man");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["text"],
        json!({"tokenizer": "simple", "stemmer": "english", "fields": ["title"], "documents": 34})
    );

    let search = |body: Value| server.post("/vectors/index/man/search", body);
    let (status, body) = search(json!({"text": "FAN_REPORT_DIR_FID", "mode": "keyword", "k": 3}));
    assert_eq!(status, 200, "{body}");
    let top = &body["results"][0];
    assert_eq!(top["id"], "fanotify", "{body}");
    assert!(top["score"].as_f64().unwrap() > 0.0, "{top}");
    assert_eq!(top["metadata"]["section"], 2);
    assert_eq!(top["text"], MAN[1].1);
    assert!(top.get("distance").is_none(), "{top}");
    assert!((top["coverage"].as_f64().unwrap() - 1.0).abs() < 1e-6, "holds the whole query: {top}");
    // The filter applies; configured fields are searched.
    let (_, body) =
        search(json!({"text": "scheduling priority", "mode": "keyword", "filter": {"section": 1}}));
    let ids: Vec<&str> =
        body["results"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["renice"], "{body}");
    let (_, body) = search(json!({"text": "title:sched", "mode": "keyword", "syntax": true}));
    assert_eq!(body["results"][0]["id"], "sched", "{body}");

    // Hybrid: each side's rank and score when asked, and the plan with explain.
    let (status, body) = search(json!({
        "text": "CAP_SYS_NICE scheduling priority", "mode": "hybrid", "k": 5, "scores": true, "explain": true,
    }));
    assert_eq!(status, 200, "{body}");
    let hits = body["results"].as_array().unwrap();
    assert_eq!(hits.len(), 5, "{body}");
    assert_eq!(hits[0]["id"], "nice", "in both lists, first in the keyword one: {body}");
    assert_eq!(hits[0]["keyword"]["rank"], 1, "{body}");
    assert!(hits[0]["dense"]["distance"].is_number(), "{body}");
    assert!(hits.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "{body}");
    // "nice" holds every word of the query: full coverage, so the adaptive fusion (the
    // default) gives the keyword side all the weight.
    assert!((hits[0]["keyword"]["coverage"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{body}");
    assert_eq!(body["explain"]["fusion"], "adaptive");
    assert_eq!(body["explain"]["rrf_k"], 60.0);
    assert_eq!(body["explain"]["weights"], json!({"dense": 0.0, "keyword": 1.0}), "{body}");
    assert_eq!(body["explain"]["candidates"], 40);
    assert!(body["explain"]["dense"]["strategy"].is_string(), "{body}");
    let (status, body) = search(json!({
        "text": "CAP_SYS_NICE scheduling priority", "mode": "hybrid", "fusion": "rrf", "rrf_k": 10, "explain": true,
    }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["id"], "nice", "{body}");
    assert_eq!(body["explain"]["fusion"], "rrf");
    assert_eq!(body["explain"]["rrf_k"], 10.0);
    assert_eq!(body["explain"]["weights"], json!({"dense": 1.0, "keyword": 1.0}), "{body}");
    let (status, body) =
        search(json!({"text": "priority", "mode": "hybrid", "fusion": "weighted", "alpha": 0.0}));
    assert_eq!(status, 200, "{body}");
    let (_, keyword) = search(json!({"text": "priority", "mode": "keyword"}));
    let first = |b: &Value| b["results"][0]["id"].clone();
    assert_eq!(first(&body), first(&keyword), "alpha 0 is the keyword ranking: {body} {keyword}");
    assert!(body["results"][0].get("dense").is_none(), "sides only with scores");

    // A past state: the keyword side as of an earlier seq.
    let (_, before) = server.get("/vectors/index/man");
    let seq = before["last_seq"].as_u64().unwrap();
    let (status, body) = server.post(
        "/vectors/index/man/documents",
        json!({"items": [{"id": "fanotify", "text": "rewritten without the flag"}]}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, now) = search(json!({"text": "FAN_REPORT_DIR_FID", "mode": "keyword"}));
    assert_eq!(now["results"], json!([]), "{now}");
    let (status, then) = server.post(
        &format!("/vectors/index/man/search?as_of={seq}"),
        json!({"text": "FAN_REPORT_DIR_FID", "mode": "keyword"}),
    );
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["results"][0]["id"], "fanotify", "{then}");
}

#[test]
fn bad_keyword_and_hybrid_searches_are_400s_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let create = |body: Value| server.post("/vectors/index", body);
    assert_eq!(create(json!({"name": "man", "embedder": "all-MiniLM-L6-v2"})).0, 201);
    let (status, body) =
        create(json!({"name": "dense", "embedder": "all-MiniLM-L6-v2", "text": {"enabled": false}}));
    assert_eq!(status, 201, "{body}");
    assert!(server.get("/vectors/index/dense").1.get("text").is_none());
    let (status, body) = server.post(
        "/vectors/index/man/documents",
        json!({"items": [{"id": "a", "text": "CAP_SYS_NICE raises priority"}]}),
    );
    assert_eq!(status, 200, "{body}");
    // The embedder appends its vector: counted before, so the check below sees only refusals.
    wait_drained(&server, "man");
    let before = server.last_seq();
    for (body, field) in [
        (json!({"text": "", "mode": "keyword"}), "text"),
        (json!({"text": "   ", "mode": "hybrid"}), "text"),
        (json!({"text": "a ".repeat(3000), "mode": "keyword"}), "text"),
        (json!({"text": "w ".repeat(300), "mode": "keyword"}), "text"),
        (
            json!({"text": format!("{}x{}", "(".repeat(40), ")".repeat(40)), "mode": "keyword", "syntax": true}),
            "text",
        ),
        (json!({"text": "title:(", "mode": "keyword", "syntax": true}), "text"),
        (json!({"text": "priority", "mode": "fuzzy"}), "mode"),
        (json!({"vector": [0.1, 0.2], "mode": "keyword"}), "mode"),
        (json!({"texts": ["a", "b"], "mode": "hybrid"}), "mode"),
        (json!({"text": "priority", "mode": "hybrid", "fusion": "max"}), "fusion"),
        (json!({"text": "priority", "mode": "hybrid", "rrf_k": 0}), "rrf_k"),
        (json!({"text": "priority", "mode": "hybrid", "fusion": "weighted", "alpha": 1.5}), "alpha"),
        (json!({"text": "priority", "mode": "hybrid", "alpha": 0.5}), "alpha"),
        (json!({"text": "priority", "mode": "hybrid", "fusion": "weighted", "rrf_k": 10}), "rrf_k"),
        (json!({"text": "priority", "mode": "hybrid", "fusion": "adaptive", "alpha": 0.5}), "alpha"),
        (json!({"text": "priority", "mode": "hybrid", "fusion": "adaptive", "rrf_k": -1}), "rrf_k"),
        (json!({"text": "priority", "mode": "hybrid", "candidates": 2, "k": 10}), "candidates"),
        (json!({"text": "priority", "mode": "hybrid", "candidates": 5000}), "candidates"),
        (json!({"text": "priority", "mode": "keyword", "k": 0}), "k"),
        (json!({"text": "priority", "mode": "keyword", "scores": true}), "scores"),
        (json!({"text": "priority", "mode": "keyword", "fusion": "rrf"}), "fusion"),
        (json!({"text": "priority", "syntax": true}), "syntax"),
    ] {
        let (status, answer) = server.post("/vectors/index/man/search", body.clone());
        assert_eq!(status, 400, "{body} -> {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(&format!("{field}:")) || answer["field"] == field, "{body} -> {answer}");
    }
    // A syntax error is the parser's message, never a 500.
    let (status, answer) = server
        .post("/vectors/index/man/search", json!({"text": "nosuch:word", "mode": "keyword", "syntax": true}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("query syntax") && answer.to_string().contains("nosuch"), "{answer}");
    // No text index: the mode is what is wrong, for keyword and hybrid alike.
    for mode in ["keyword", "hybrid"] {
        let (status, answer) =
            server.post("/vectors/index/dense/search", json!({"text": "priority", "mode": mode}));
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains("mode"), "{answer}");
    }
    // Bad text configurations at creation.
    for (body, field) in [
        (
            json!({"name": "x", "embedder": "all-MiniLM-L6-v2", "text": {"stemmer": "klingon"}}),
            "text.stemmer",
        ),
        (
            json!({"name": "x", "embedder": "all-MiniLM-L6-v2", "text": {"tokenizer": "ngram"}}),
            "text.tokenizer",
        ),
        (json!({"name": "x", "embedder": "all-MiniLM-L6-v2", "text": {"fields": ["id"]}}), "text.fields[0]"),
        (
            json!({"name": "x", "embedder": "all-MiniLM-L6-v2", "text": {"enabled": false, "fields": ["a"]}}),
            "text.enabled",
        ),
        (json!({"name": "x", "dimension": 4, "text": {}}), "text"),
    ] {
        let (status, answer) = create(body.clone());
        assert_eq!(status, 400, "{body} -> {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(&format!("{field}:")) || answer["field"] == field, "{body} -> {answer}");
    }
    assert_eq!(server.last_seq(), before, "nothing was appended");
    // No stemming, whitespace tokens: identifiers stay whole.
    let (status, body) = create(json!({
        "name": "ids", "embedder": "all-MiniLM-L6-v2", "text": {"tokenizer": "whitespace", "stemmer": null},
    }));
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.get("/vectors/index/ids").1["text"]["stemmer"], Value::Null);
}
