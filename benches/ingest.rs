//! Ingest and batched search, in one run, on all of `base.fvecs` (default config,
//! FAISS's default thread count on both sides):
//! - FAISS direct: build `IDMap2,HNSW32` (efConstruction 80) from the vectors, and its
//!   batched search of every query (k = 10);
//! - the engine in process: the same vectors in 1,000-vector upserts, and
//!   `search_batch` of the same queries;
//! - over HTTP with the Python client (`benches/ingest_client.py`), against the release
//!   server: upserts of 1,000 with `wait: "applied"`, and with `wait: "durable"` (rate
//!   of acknowledgements, and until `min_seq` says all is searchable).
//!
//! ```sh
//! cargo build --release -p annal-server
//! python3 -m venv target/venv-client && target/venv-client/bin/pip install -e clients/python
//! cargo bench -p annal-benches --bench ingest
//! ```
//! - Chroma, when `target/venv-chroma` holds `chromadb` (`benches/chroma_client.py`):
//!   the same vectors through its HTTP client into `chroma run`, and the same queries.
//!
//! `ANNAL_BIN` (default `target/release/annal`) and `ANNAL_BENCH_PYTHON` (default
//! `target/venv-client/bin/python`) locate the two; without them the HTTP part is
//! skipped with a message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use annal_benches::{bench_dir, data_dir, fvecs};
use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};
use faiss::{index_factory, Index, MetricType};

const K: usize = 10;

fn main() {
    let base = fvecs("base.fvecs");
    let queries = fvecs("query.fvecs");
    let (n, d) = (base.len(), base[0].len());
    println!("{n} x {d} vectors, {} queries, k = {K}, default HNSW config", queries.len());
    let query_flat: Vec<f32> = queries.iter().flatten().copied().collect();

    // FAISS direct (inner product on normalised vectors, as the engine's cosine).
    let normalised: Vec<f32> = base
        .iter()
        .flat_map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(move |x| x / norm)
        })
        .collect();
    let mut faiss_index =
        index_factory(d as u32, "IDMap2,HNSW32", MetricType::InnerProduct).expect("factory");
    faiss::index::autotune::ParameterSpace::new()
        .expect("space")
        .set_index_parameter(&faiss_index, "efConstruction", 80.0)
        .expect("efConstruction");
    let ids: Vec<faiss::Idx> = (0..n as u64).map(faiss::Idx::new).collect();
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        faiss_index.add_with_ids(&normalised[start * d..end * d], &ids[start..end]).expect("add");
    }
    let faiss_build = n as f64 / t.elapsed().as_secs_f64();
    faiss::index::autotune::ParameterSpace::new()
        .expect("space")
        .set_index_parameter(&faiss_index, "efSearch", 64.0)
        .expect("efSearch");
    let t = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        faiss_index.search(&query_flat, K).expect("search");
    }
    let faiss_batch_qps = (rounds * queries.len()) as f64 / t.elapsed().as_secs_f64();

    // The engine in process.
    let dir = bench_dir();
    let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
    engine.create_index("bench", "docs", d as u32, Metric::Cosine, HnswConfig::default()).expect("create");
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let items: Vec<VectorItem> = (start..(start + 1000).min(n))
            .map(|i| VectorItem {
                id: format!("v{i}"),
                vector: base[i].clone(),
                metadata: None,
                partition: None,
            })
            .collect();
        engine.upsert("bench", "docs", items).expect("upsert");
    }
    let engine_build = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds {
        engine.search_batch("docs", queries.clone(), K).expect("search_batch");
    }
    let engine_batch_qps = (rounds * queries.len()) as f64 / t.elapsed().as_secs_f64();
    drop(engine);

    println!("| path | vectors/s | batched search q/s |");
    println!("|---|---|---|");
    println!("| FAISS direct | {faiss_build:.0} | {faiss_batch_qps:.0} |");
    println!(
        "| engine in process | {engine_build:.0} ({:.2}x) | {engine_batch_qps:.0} ({:.2}x) |",
        engine_build / faiss_build,
        engine_batch_qps / faiss_batch_qps
    );

    let bin =
        std::env::var("ANNAL_BIN").map_or_else(|_| PathBuf::from("target/release/annal"), PathBuf::from);
    let python = std::env::var("ANNAL_BENCH_PYTHON")
        .map_or_else(|_| PathBuf::from("target/venv-client/bin/python"), PathBuf::from);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (bin, python) = (root.join(bin), root.join(python));
    if !bin.exists() || !python.exists() {
        println!(
            "HTTP part skipped: {} or {} is missing (see the header of benches/ingest.rs)",
            bin.display(),
            python.display()
        );
        return;
    }
    let data = bench_dir();
    let mut server = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("ANNAL_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the server");
    let stderr = server.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("the server exited").expect("a line");
        if line.contains("listening") {
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        }
    };
    // Keep draining the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let out = Command::new(&python)
        .arg(root.join("benches/ingest_client.py"))
        .arg(format!("http://{addr}"))
        .arg(data_dir())
        .output()
        .expect("run the client");
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    let rate = |key: &str| report[key].as_f64().unwrap_or(0.0);
    println!(
        "| HTTP + Python client, wait applied | {:.0} ({:.2}x FAISS) | |",
        rate("applied_per_s"),
        rate("applied_per_s") / faiss_build
    );
    println!("| HTTP + Python client, wait durable: acknowledged | {:.0} | |", rate("durable_ack_per_s"));
    println!(
        "| HTTP + Python client, wait durable: all searchable | {:.0} ({:.2}x FAISS) | |",
        rate("durable_searchable_per_s"),
        rate("durable_searchable_per_s") / faiss_build
    );
    println!(
        "| HTTP + Python client, batched search (1,000 queries a request) | | {:.0} ({:.2}x FAISS) |",
        rate("batched_search_q_per_s"),
        rate("batched_search_q_per_s") / faiss_batch_qps
    );
    println!(
        "| HTTP + Python client, wait durable, 2 in flight: acknowledged | {:.0} | |",
        rate("durable_ack_2_per_s")
    );
    println!(
        "| HTTP + Python client, wait durable, 2 in flight: all searchable | {:.0} ({:.2}x FAISS) | |",
        rate("durable_searchable_2_per_s"),
        rate("durable_searchable_2_per_s") / faiss_build
    );
    println!("client base64 encoding alone: {:.0} vectors/s", rate("client_encode_per_s"));

    // Chroma, the same way, in the same run, when its environment is there.
    let chroma = root.join(
        std::env::var("ANNAL_BENCH_CHROMA_PYTHON")
            .map_or_else(|_| PathBuf::from("target/venv-chroma/bin/python"), PathBuf::from),
    );
    if !chroma.exists() {
        println!("Chroma skipped: {} is missing (see benches/chroma_client.py)", chroma.display());
        return;
    }
    let out = Command::new(&chroma)
        .arg(root.join("benches/chroma_client.py"))
        .arg(data_dir())
        .output()
        .expect("run the Chroma client");
    let chroma: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("Chroma client failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    let chroma_rate = |key: &str| chroma[key].as_f64().unwrap_or(0.0);
    println!(
        "| Chroma {} HTTP client, add (returns when searchable) | {:.0} (annal applied {:.2}x, durable until searchable {:.2}x) | |",
        chroma["chromadb"].as_str().unwrap_or("?"),
        chroma_rate("add_per_s"),
        rate("applied_per_s") / chroma_rate("add_per_s"),
        rate("durable_searchable_per_s") / chroma_rate("add_per_s"),
    );
    println!(
        "| Chroma HTTP client, batched query (1,000 queries a request) | | {:.0} (annal {:.2}x) |",
        chroma_rate("batched_search_q_per_s"),
        rate("batched_search_q_per_s") / chroma_rate("batched_search_q_per_s"),
    );
}
