//! Hybrid search relevance and speed over HTTP: recall@10 and nDCG@10 of the
//! `semantic`, `keyword` and `hybrid` modes on two labelled query sets, and each
//! mode's queries/s, against a release `annal serve` holding the 50,000 shared
//! passages as a document index.
//!
//! ```sh
//! cargo build --release -p annal-server
//! python3 -m venv target/venv-bench && target/venv-bench/bin/pip install snowballstemmer
//! target/venv-bench/bin/python benches/hybrid_queries.py     # target/hybrid-queries.json
//! cargo bench -p annal-benches --bench hybrid
//! ```
//!
//! The query sets come from `benches/hybrid_queries.py` (exact-term queries: a rare
//! token, relevant = the passages holding it; paraphrase queries: the shared held-out
//! sentences, relevant = their 10 exact nearest passages).
//!
//! Loading: the passages' vectors are all-MiniLM-L6-v2's, already computed in
//! `base.fvecs`. Embedding 50,000 passages in process takes ~12 minutes on 2 cores, so
//! the load phase runs the server with a remote embedder under the local model's id
//! that answers each passage with its vector from `base.fvecs` (a lookup, on loopback).
//! The server is then stopped and started again on its local embedder (the model
//! files of `scripts/fetch-model.sh`), which embeds every query: the query side, and
//! so every figure below, is the real model in the real server.
//!
//! Environment: `ANNAL_HYBRID_QUERIES` (default `target/hybrid-queries.json`),
//! `ANNAL_HYBRID_WORKERS` client threads (default 4), `ANNAL_HYBRID_ALPHAS`
//! comma-separated weights to also try with the weighted fusion (default `0.3,0.5,0.7`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_benches::{agent, bench_dir, call, data_dir, fvecs, start_server, stop, wait_ready};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

const INDEX: &str = "passages";
const MODEL: &str = "all-MiniLM-L6-v2";
const K: usize = 10;
const BATCH: usize = 1000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A remote embedder (OpenAI `/v1/embeddings` shape) answering the precomputed
/// vector of each text it knows, and 400 for one it does not.
fn lookup_embedder(vectors: HashMap<String, Vec<f32>>) -> (tokio::runtime::Runtime, String) {
    async fn embed(
        State(vectors): State<Arc<HashMap<String, Vec<f32>>>>,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let texts: Vec<&str> = body["input"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut data = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let Some(v) = vectors.get(*text) else {
                return (axum::http::StatusCode::BAD_REQUEST, format!("no precomputed vector for {text:?}"))
                    .into_response();
            };
            data.push(json!({"object": "embedding", "index": index, "embedding": v}));
        }
        Json(json!({"object": "list", "data": data, "model": body["model"]})).into_response()
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let url = format!("http://{}/v1/embeddings", listener.local_addr().expect("addr"));
    let app = Router::new().route("/v1/embeddings", post(embed)).with_state(Arc::new(vectors));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, url)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

struct Query {
    text: String,
    relevant: HashSet<usize>,
}

fn read_set(sets: &Value, name: &str) -> Vec<Query> {
    sets[name]
        .as_array()
        .unwrap_or_else(|| panic!("no set {name:?} in the query file"))
        .iter()
        .map(|q| Query {
            text: q["text"].as_str().expect("text").to_owned(),
            relevant: q["relevant"]
                .as_array()
                .expect("relevant")
                .iter()
                .map(|r| r.as_u64().expect("index") as usize)
                .collect(),
        })
        .collect()
}

/// recall@k (of min(k, |relevant|) possible) and nDCG@k with binary relevance.
fn score(answer: &[usize], relevant: &HashSet<usize>) -> (f64, f64) {
    let ideal = relevant.len().min(K);
    let found = answer.iter().take(K).filter(|i| relevant.contains(i)).count();
    let dcg: f64 = answer
        .iter()
        .take(K)
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(rank, _)| 1.0 / ((rank + 2) as f64).log2())
        .sum();
    let idcg: f64 = (0..ideal).map(|rank| 1.0 / ((rank + 2) as f64).log2()).sum();
    (found as f64 / ideal as f64, dcg / idcg)
}

/// Every query of `set` with `body`'s parameters, `workers` at a time: the answers
/// (passage indexes, best first) and the queries/s.
fn run(base: &str, set: &[Query], body: &Value, workers: usize) -> (Vec<Vec<usize>>, Vec<f64>, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let answers: Arc<Vec<std::sync::Mutex<Vec<usize>>>> =
        Arc::new((0..set.len()).map(|_| Default::default()).collect());
    let weights: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let texts: Arc<Vec<String>> = Arc::new(set.iter().map(|q| q.text.clone()).collect());
    let url = format!("{base}/vectors/index/{INDEX}/search");
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, answers, texts, url, body) =
                (Arc::clone(&next), Arc::clone(&answers), Arc::clone(&texts), url.clone(), body.clone());
            let weights = Arc::clone(&weights);
            std::thread::spawn(move || {
                let agent = agent(Duration::from_secs(120));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= texts.len() {
                        break;
                    }
                    let mut body = body.clone();
                    body["text"] = Value::String(texts[i].clone());
                    let (status, answer) = call(&agent, "POST", &url, Some(&body));
                    assert_eq!(status, 200, "{}: {answer}", texts[i]);
                    let ids: Vec<usize> = answer["results"]
                        .as_array()
                        .expect("results")
                        .iter()
                        .map(|h| h["id"].as_str().expect("id")[1..].parse().expect("p<index>"))
                        .collect();
                    *answers[i].lock().expect("answer") = ids;
                    // Every hybrid mode asks for explain (the same work each); only the
                    // adaptive fusion's weights vary by query.
                    if let (Some("adaptive"), Some(w)) = (
                        answer["explain"]["fusion"].as_str(),
                        answer["explain"]["weights"]["keyword"].as_f64(),
                    ) {
                        weights.lock().expect("weights").push(w);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let qps = set.len() as f64 / start.elapsed().as_secs_f64();
    let answers = answers.iter().map(|a| std::mem::take(&mut *a.lock().expect("answer"))).collect();
    let mut weights = std::mem::take(&mut *weights.lock().expect("weights"));
    weights.sort_by(f64::total_cmp);
    (answers, weights, qps)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn main() {
    let workers: usize = std::env::var("ANNAL_HYBRID_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let alphas: Vec<f64> = std::env::var("ANNAL_HYBRID_ALPHAS")
        .unwrap_or_else(|_| "0.3,0.5,0.7".into())
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let queries_path = std::env::var("ANNAL_HYBRID_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/hybrid-queries.json"));
    let sets: Value = serde_json::from_str(&std::fs::read_to_string(&queries_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with benches/hybrid_queries.py (see this file's header)",
            queries_path.display()
        )
    }))
    .expect("query file");
    let exact = read_set(&sets, "exact");
    let paraphrase = read_set(&sets, "paraphrase");

    let data = data_dir();
    let passages = lines(&data.join("passages.txt"));
    let base = fvecs("base.fvecs");
    assert_eq!(passages.len(), base.len(), "one passage per base vector");
    let vectors: HashMap<String, Vec<f32>> = passages.iter().cloned().zip(base).collect();
    let (_embedder, embedder_url) = lookup_embedder(vectors);

    let dir = bench_dir();
    let agent = agent(Duration::from_secs(120));

    // Load: documents embedded by the lookup, then a snapshot.
    let (server, url) =
        start_server(dir.path(), &["--remote-embedder".into(), format!("{MODEL}:384={embedder_url}")]);
    wait_ready(&agent, &url, Duration::from_secs(600));
    let (status, created) = call(
        &agent,
        "POST",
        &format!("{url}/vectors/index"),
        Some(&json!({"name": INDEX, "embedder": MODEL})),
    );
    assert_eq!(status, 201, "{created}");
    let load = Instant::now();
    for (b, chunk) in passages.chunks(BATCH).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, text)| json!({"id": format!("p{}", b * BATCH + j), "text": text}))
            .collect();
        let (status, answer) = call(
            &agent,
            "POST",
            &format!("{url}/vectors/index/{INDEX}/documents"),
            Some(&json!({"items": items})),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let stored = load.elapsed();
    loop {
        let (_, info) = call(&agent, "GET", &format!("{url}/vectors/index/{INDEX}"), None);
        if info["length"].as_u64() == Some(passages.len() as u64) {
            break;
        }
        assert!(load.elapsed() < Duration::from_secs(1800), "not embedded after 30 min: {info}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let embedded = load.elapsed();
    let (status, snapshot) = call(&agent, "POST", &format!("{url}/admin/snapshots"), None);
    assert_eq!(status, 200, "{snapshot}");
    stop(server);
    println!(
        "loaded {} passages: stored in {:.1} s, embedded (lookup) and indexed in {:.1} s; snapshot {:.1} MiB",
        passages.len(),
        stored.as_secs_f64(),
        embedded.as_secs_f64(),
        snapshot["bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
    );

    // Query: the server on its local embedder.
    let opened = Instant::now();
    let (server, url) = start_server(dir.path(), &[]);
    wait_ready(&agent, &url, Duration::from_secs(600));
    let ready = opened.elapsed();
    // The model loads on first use: not part of any mode's time.
    let (status, warm) = call(
        &agent,
        "POST",
        &format!("{url}/vectors/index/{INDEX}/search"),
        Some(&json!({"text": "warm up", "mode": "hybrid"})),
    );
    assert_eq!(status, 200, "{warm}");
    println!(
        "restart from the snapshot: ready in {:.2} s; {workers} client threads, k = {K}",
        ready.as_secs_f64()
    );

    let mut modes: Vec<(String, Value)> = vec![
        ("semantic".into(), json!({"mode": "semantic", "k": K})),
        ("keyword".into(), json!({"mode": "keyword", "k": K})),
        ("hybrid (default: adaptive, k=60)".into(), json!({"mode": "hybrid", "k": K, "explain": true})),
        ("hybrid rrf (k=60)".into(), json!({"mode": "hybrid", "fusion": "rrf", "k": K, "explain": true})),
    ];
    for alpha in &alphas {
        modes.push((
            format!("hybrid weighted (alpha={alpha})"),
            json!({"mode": "hybrid", "fusion": "weighted", "alpha": alpha, "k": K, "explain": true}),
        ));
    }
    println!();
    println!("| mode | exact recall@10 | exact nDCG@10 | paraphrase recall@10 | paraphrase nDCG@10 | union recall@10 | union nDCG@10 | q/s exact | q/s paraphrase |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut weight_lines = Vec::new();
    for (name, body) in &modes {
        let (exact_answers, exact_weights, exact_qps) = run(&url, &exact, body, workers);
        let (para_answers, para_weights, para_qps) = run(&url, &paraphrase, body, workers);
        for (set, w) in [("exact", &exact_weights), ("paraphrase", &para_weights)] {
            if !w.is_empty() {
                let q = |p: f64| w[((w.len() - 1) as f64 * p) as usize];
                let led = w.iter().filter(|x| **x >= 0.5).count() as f64 / w.len() as f64;
                weight_lines.push(format!(
                    "{name}, {set}: keyword side's weight p10 {:.2}, p50 {:.2}, p90 {:.2}; >= 0.5 (keyword-led) for {:.1}% of queries",
                    q(0.1),
                    q(0.5),
                    q(0.9),
                    led * 100.0
                ));
            }
        }
        let exact_scores: Vec<(f64, f64)> =
            exact.iter().zip(&exact_answers).map(|(q, a)| score(a, &q.relevant)).collect();
        let para_scores: Vec<(f64, f64)> =
            paraphrase.iter().zip(&para_answers).map(|(q, a)| score(a, &q.relevant)).collect();
        let all: Vec<(f64, f64)> = exact_scores.iter().chain(&para_scores).copied().collect();
        println!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0} | {:.0} |",
            mean(exact_scores.iter().map(|s| s.0)),
            mean(exact_scores.iter().map(|s| s.1)),
            mean(para_scores.iter().map(|s| s.0)),
            mean(para_scores.iter().map(|s| s.1)),
            mean(all.iter().map(|s| s.0)),
            mean(all.iter().map(|s| s.1)),
            exact_qps,
            para_qps,
        );
    }
    println!();
    for line in weight_lines {
        println!("{line}");
    }
    stop(server);
}
