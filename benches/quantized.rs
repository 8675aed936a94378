//! Quantized HNSW storage in FAISS itself, before annal builds it (issue 29): what
//! each storage kind costs and gives on the shared data, as raw FAISS indexes (no
//! engine), side by side in one run.
//!
//! `cargo bench -p annal-benches --bench quantized`
//! Environment: `ANNAL_BENCH_N` vectors (default 200,000: the shared 50,000 and
//! seeded perturbed copies), `ANNAL_BENCH_KINDS` comma-separated kinds to run (default
//! all), `ANNAL_BENCH_EF` efSearch (default 64).
//!
//! For each kind: a FAISS index from the factory string (M = 32, efConstruction 80),
//! trained on the vectors when the kind needs training (SQ ranges, PQ codebooks:
//! FAISS trains on all N, single-threaded here), then one `add` of all N. Queries: the
//! first 200 of `query.fvecs`, k = 10, one at a time on one thread; recall against an
//! exact inner-product search (`Flat`) of the same vectors. Bytes per vector: the size
//! of the index as `write_index` writes it (codes, links, levels; what a snapshot would
//! hold), divided by N. `refine` kinds keep the full vectors in FAISS's `IndexRefineFlat`
//! beside the graph (resident), and re-rank `k_factor x k` candidates exactly.

use std::time::Instant;

use annal_benches::{bench_dir, exact_ip_truth, fvecs, normalised, perturbed};
use faiss::index::autotune::ParameterSpace;
use faiss::{index_factory, Index, MetricType};

const K: usize = 10;
const QUERIES: usize = 200;

/// (name, factory string, refine k_factor)
const KINDS: &[(&str, &str, Option<u32>)] = &[
    ("flat", "HNSW32", None),
    ("fp16", "HNSW32_SQfp16", None),
    ("sq8", "HNSW32_SQ8", None),
    ("sq4", "HNSW32_SQ4", None),
    ("pq48", "HNSW32_PQ48", None),
    ("sq8+refine2", "HNSW32_SQ8,RFlat", Some(2)),
    ("sq4+refine4", "HNSW32_SQ4,RFlat", Some(4)),
    ("pq48+refine4", "HNSW32_PQ48,RFlat", Some(4)),
];

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let ef: f64 = std::env::var("ANNAL_BENCH_EF").ok().and_then(|v| v.parse().ok()).unwrap_or(64.0);
    let only: Option<Vec<String>> =
        std::env::var("ANNAL_BENCH_KINDS").ok().map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let data = perturbed(n);
    let dim = data[0].len();
    let flat_data: Vec<f32> = data.concat();
    drop(data);
    let queries: Vec<Vec<f32>> = fvecs("query.fvecs").into_iter().take(QUERIES).map(normalised).collect();
    let raw_bytes = (dim * 4) as f64;

    // Exact truth.
    let truth = exact_ip_truth(&flat_data, dim, &queries, K);

    let dir = bench_dir();
    println!("{n} x {dim} vectors, inner product, M 32, efConstruction 80, efSearch {ef}, k {K}, {QUERIES} queries");
    println!();
    println!("| kind | factory | train s | build s | bytes/vector | vs raw floats | recall@10 | q/s |");
    println!("|---|---|---|---|---|---|---|---|");
    let space = ParameterSpace::new().expect("parameter space");
    for (name, factory, refine) in KINDS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|k| k == name)) {
            continue;
        }
        let mut index = index_factory(dim as u32, factory, MetricType::InnerProduct).expect("factory");
        space.set_index_parameter(&index, "efConstruction", 80.0).expect("efConstruction");
        let t = Instant::now();
        if !index.is_trained() {
            index.train(&flat_data).expect("train");
        }
        let train = t.elapsed();
        let t = Instant::now();
        index.add(&flat_data).expect("add");
        let build = t.elapsed();
        space.set_index_parameter(&index, "efSearch", ef).expect("efSearch");
        if let Some(k_factor) = refine {
            space.set_index_parameter(&index, "k_factor_rf", f64::from(*k_factor)).expect("k_factor_rf");
        }
        let path = dir.path().join(format!("{name}.faiss"));
        faiss::write_index(&index, path.to_str().expect("utf-8 path")).expect("write_index");
        let bytes = std::fs::metadata(&path).expect("index file").len() as f64 / n as f64;
        std::fs::remove_file(&path).expect("remove");
        // One warm-up query, then all of them timed.
        index.search(&queries[0], K).expect("search");
        let t = Instant::now();
        let mut found = 0usize;
        for (q, truth) in queries.iter().zip(&truth) {
            let got = index.search(q, K).expect("search");
            found +=
                got.labels.iter().filter_map(|l| l.get()).filter(|l| truth.contains(&(*l as i64))).count();
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        println!(
            "| {name} | `{factory}` | {:.1} | {:.1} | {:.0} | {:.2}x | {:.4} | {:.0} |",
            train.as_secs_f64(),
            build.as_secs_f64(),
            bytes,
            bytes / raw_bytes,
            found as f64 / (queries.len() * K) as f64,
            qps
        );
    }
}
