//! Scale: annal at 1,000,000 x 384 (issue 29), flat against quantized storage, over
//! HTTP against a release server, each config in a fresh data directory.
//!
//! `cargo build --release -p annal-server && cargo bench -p annal-benches --bench scale`
//! Environment: `ANNAL_BENCH_N` vectors (default 1,000,000: the shared 50,000 and
//! seeded perturbed copies), `ANNAL_BENCH_CONFIGS` (default `flat,sq8:4`: storage and
//! refine), `ANNAL_BENCH_EF` efSearch (default 256), `ANNAL_BENCH_DIR` (the data disk).
//!
//! Per config: create the index (M 32, efConstruction 80), add all vectors in batches of
//! 1,000 (base64, each acknowledged once durable and applied: the ingest rate includes
//! the graph build), wait for any rebuild, take a snapshot (its size), then measure the
//! first 200 of `query.fvecs` one at a time, k = 10 (recall@10 against exact ground
//! truth, computed once by a FAISS `Flat` and cached under `target/bench-cache/`, and
//! q/s on one client thread), stop, restart (open time from the snapshot until ready),
//! search again, and read the server's RSS (`VmRSS`) after the restart: what a serving
//! process holds, without the ingest's transient buffers. FAISS's own index size for
//! the same config is measured beside it (raw FAISS, `write_index` bytes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annal_benches::{
    agent, bench_dir, call, exact_ip_truth, fvecs, normalised, perturbed, rss_mb, start_server, stop,
    wait_ready,
};
use base64::Engine as _;
use faiss::{index_factory, Index, MetricType};
use serde_json::{json, Value};

const K: usize = 10;
const QUERIES: usize = 200;
const BATCH: usize = 1000;

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The largest file under `dir` (the newest snapshot object is the largest).
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let size = if p.is_dir() { largest_file(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) };
            largest = largest.max(size);
        }
    }
    largest
}

/// Exact top-k of each query by inner product, cached per N.
fn truth(data: &[f32], dim: usize, queries: &[Vec<f32>], n: usize) -> Vec<Vec<i64>> {
    let cache: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-cache/scale-truth-{n}.json"));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(t) = serde_json::from_str::<Vec<Vec<i64>>>(&text) {
            return t;
        }
    }
    let t = exact_ip_truth(data, dim, queries, K);
    let _ = std::fs::create_dir_all(cache.parent().expect("parent"));
    let _ = std::fs::write(&cache, serde_json::to_string(&t).expect("json"));
    t
}

/// Recall@10 and single-client q/s of the index `q` on the server at `base`.
fn measure(agent: &ureq::Agent, base: &str, queries: &[Vec<f32>], truth: &[Vec<i64>]) -> (f64, f64) {
    let url = format!("{base}/vectors/index/q/search");
    let bodies: Vec<Value> = queries.iter().map(|q| json!({"vector": b64(q), "k": K})).collect();
    for body in bodies.iter().take(20) {
        call(agent, "POST", &url, Some(body));
    }
    let started = Instant::now();
    let mut found = 0usize;
    for (body, truth) in bodies.iter().zip(truth) {
        let (status, answer) = call(agent, "POST", &url, Some(body));
        assert_eq!(status, 200, "{answer}");
        let hits = answer["results"].as_array().cloned().unwrap_or_default();
        for hit in hits {
            let id: i64 = hit["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(-2);
            found += usize::from(truth.contains(&id));
        }
    }
    let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
    (found as f64 / (queries.len() * K) as f64, qps)
}

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let ef: u32 = std::env::var("ANNAL_BENCH_EF").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let configs: Vec<(String, u32)> = std::env::var("ANNAL_BENCH_CONFIGS")
        .unwrap_or_else(|_| "flat,sq8:4".into())
        .split(',')
        .map(|c| {
            let mut parts = c.trim().split(':');
            let storage = parts.next().unwrap_or("flat").to_owned();
            let refine = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            (storage, refine)
        })
        .collect();
    let data = perturbed(n);
    let dim = data[0].len();
    let flat: Vec<f32> = data.concat();
    drop(data);
    let queries: Vec<Vec<f32>> = fvecs("query.fvecs").into_iter().take(QUERIES).map(normalised).collect();
    let started = Instant::now();
    let truth = truth(&flat, dim, &queries, n);
    eprintln!("ground truth ready in {:.1} s", started.elapsed().as_secs_f64());
    let agent = agent(Duration::from_secs(3600));
    println!("| config | ingest vec/s | ingest s | RSS MB (after restart) | bytes/vector RSS | FAISS index bytes/vector | recall@10 | q/s (1 client) | snapshot MB | open s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (storage, refine) in &configs {
        let dir = bench_dir();
        let (child, base) = start_server(dir.path(), &[]);
        let mut create = json!({"name": "q", "dimension": dim, "distance": "ip", "m": 32, "ef_construction": 80, "ef_search": ef, "storage": storage});
        if *refine > 0 {
            create["refine"] = json!(refine);
        }
        let (status, answer) = call(&agent, "POST", &format!("{base}/vectors/index"), Some(&create));
        assert_eq!(status, 201, "{answer}");
        let url = format!("{base}/vectors/index/q/add");
        let ingest = Instant::now();
        for (b, chunk) in flat.chunks(BATCH * dim).enumerate() {
            let items: Vec<Value> = chunk
                .chunks(dim)
                .enumerate()
                .map(|(i, v)| json!({"id": (b * BATCH + i).to_string(), "vector": b64(v)}))
                .collect();
            let (status, answer) = call(&agent, "POST", &url, Some(&json!({ "items": items })));
            assert_eq!(status, 200, "{answer}");
            if b % 100 == 0 {
                eprintln!("{storage}: {} vectors, {:.0} s", b * BATCH, ingest.elapsed().as_secs_f64());
            }
        }
        // Any rebuild (the flat start of a trained storage) finished.
        loop {
            let (_, p) = call(&agent, "GET", &format!("{base}/vectors/index/q/promotion"), None);
            if p["graph"]["rebuild_pending"] == json!(false)
                && p["graph"]["built_with"]["storage"] == json!(storage)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let ingest_s = ingest.elapsed().as_secs_f64();
        let (status, snap) = call(&agent, "POST", &format!("{base}/admin/snapshots"), None);
        assert!(status < 300, "{snap}");
        let snapshot_mb = largest_file(&dir.path().join("buckets")) as f64 / 1048576.0;
        let (recall_live, _) = measure(&agent, &base, &queries, &truth);
        stop(child);
        let opened = Instant::now();
        let (child, base) = start_server(dir.path(), &[]);
        wait_ready(&agent, &base, Duration::from_secs(1800));
        let open_s = opened.elapsed().as_secs_f64();
        let (recall, qps) = measure(&agent, &base, &queries, &truth);
        let rss = rss_mb(child.id());
        stop(child);
        // FAISS's own index of the same kind (built on a sample, size per vector).
        let sample = 50_000.min(n);
        let factory = match storage.as_str() {
            "flat" => "HNSW32".to_owned(),
            "fp16" => "HNSW32_SQfp16".to_owned(),
            "sq8" => "HNSW32_SQ8".to_owned(),
            "sq4" => "HNSW32_SQ4".to_owned(),
            other => format!("HNSW32_{}", other.to_uppercase()),
        };
        let mut raw = index_factory(dim as u32, &factory, MetricType::InnerProduct).expect("factory");
        raw.train(&flat[..sample * dim]).expect("train");
        raw.add(&flat[..sample * dim]).expect("add");
        let tmp = dir.path().join("raw.faiss");
        faiss::write_index(&raw, tmp.to_str().expect("path")).expect("write");
        let raw_bpv = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0) as f64 / sample as f64;
        let label = if *refine > 0 { format!("{storage} + refine {refine}") } else { storage.clone() };
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.4} (live {:.4}) | {:.0} | {:.0} | {:.2} |",
            n as f64 / ingest_s,
            ingest_s,
            rss,
            rss * 1048576.0 / n as f64,
            raw_bpv,
            recall,
            recall_live,
            qps,
            snapshot_mb,
            open_s
        );
    }
}
