//! HNSW build rate and single-threaded search on the shared data, in one run, for:
//! the engine (log append + projection), the `faiss` crate called directly on the same
//! vectors and config, and the `faiss-cpu` Python wheels (1.12.0 and the newest) via
//! `benches/faiss_wheels.sh`.
//!
//! `cargo bench -p annal-benches --bench search`
//! Environment: `ANNAL_BENCH_THREADS` (OpenMP threads for FAISS, default 1),
//! `ANNAL_BENCH_WHEELS=0` to skip the Python wheels, `ANNAL_BENCH_N` to use fewer base
//! vectors (recall is then not computed against the shipped ground truth),
//! `ANNAL_BENCH_ROUNDS` builds of each (default 2; 2R+1 alternating search rounds).

use std::process::Command;
use std::time::{Duration, Instant};

use annal_benches::{bench_dir, fvecs, ivecs, percentile};
use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};
use faiss::index::autotune::ParameterSpace;
use faiss::{index_factory, Idx, Index, MetricType};

const K: usize = 10;

struct Row {
    name: String,
    build_per_s: f64,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
    recall: f64,
}

fn main() {
    let threads: i32 = std::env::var("ANNAL_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    // libgomp reads OMP_NUM_THREADS once, at load, for every thread (the engine adds on
    // its projector thread, where omp_set_num_threads from main would not reach): so
    // re-run this binary with it set.
    if std::env::var("OMP_NUM_THREADS").ok() != Some(threads.to_string()) {
        let status = Command::new(std::env::current_exe().expect("current exe"))
            .args(std::env::args_os().skip(1))
            .env("OMP_NUM_THREADS", threads.to_string())
            .status()
            .expect("re-run with OMP_NUM_THREADS");
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut base = fvecs("base.fvecs");
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(base.len());
    base.truncate(n);
    let queries = fvecs("query.fvecs");
    let truth = ivecs("groundtruth.ivecs");
    let config = HnswConfig::default();
    println!(
        "data: {} x {}, {} queries, HNSW M={} efConstruction={} efSearch={}, {} FAISS thread(s), k={K}",
        base.len(),
        base[0].len(),
        queries.len(),
        config.m,
        config.ef_construction,
        config.ef_search,
        threads
    );
    let recall_of = |found: &[Vec<usize>]| -> f64 {
        if n < 50_000 {
            return f64::NAN;
        }
        let hits: usize = found
            .iter()
            .zip(&truth)
            .map(|(f, t)| f.iter().filter(|i| t[..K].contains(&(**i as i32))).count())
            .sum();
        hits as f64 / (K * found.len()) as f64
    };

    // Alternate the two implementations, builds and search rounds alike, so that drift
    // of the shared machine (frequency, neighbours) hits both the same way; report the
    // fastest build and the median search round of each.
    let rounds: usize = std::env::var("ANNAL_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut direct_builds = Vec::new();
    let mut engine_builds = Vec::new();
    let (mut direct, mut engine) = (None, None);
    for _ in 0..rounds {
        let d = DirectFaiss::build(&base, config);
        direct_builds.push(d.build);
        direct = Some(d);
        let e = EngineRun::build(&base, config);
        engine_builds.push(e.build);
        engine = Some(e);
    }
    let (Some(mut direct), Some(engine)) = (direct, engine) else { return };
    let mut direct_rounds = Vec::new();
    let mut engine_rounds = Vec::new();
    for _ in 0..(2 * rounds + 1) {
        direct_rounds.push(timed_queries(&queries, |q| direct.search(q)));
        engine_rounds.push(timed_queries(&queries, |q| engine.search(q)));
    }
    let mut rows = vec![
        summarize("faiss crate (direct)", base.len(), &direct_builds, direct_rounds, &recall_of),
        summarize("annal engine", base.len(), &engine_builds, engine_rounds, &recall_of),
    ];
    if std::env::var("ANNAL_BENCH_WHEELS").as_deref() != Ok("0") {
        rows.extend(wheels(config, threads));
    }
    println!(
        "\n{:<28} {:>12} {:>10} {:>9} {:>9} {:>10}",
        "impl", "build vec/s", "queries/s", "p50 us", "p99 us", "recall@10"
    );
    for r in &rows {
        println!(
            "{:<28} {:>12.0} {:>10.0} {:>9.1} {:>9.1} {:>10.4}",
            r.name, r.build_per_s, r.qps, r.p50_us, r.p99_us, r.recall
        );
    }
    let (direct, eng) = (&rows[0], &rows[1]);
    println!(
        "\nengine / direct faiss: build {:.3}, queries/s {:.3}, p50 {:.3}",
        eng.build_per_s / direct.build_per_s,
        eng.qps / direct.qps,
        eng.p50_us / direct.p50_us
    );
}

/// Found labels, per-query latencies, total time.
type Round = (Vec<Vec<usize>>, Vec<Duration>, Duration);

fn timed_queries(queries: &[Vec<f32>], mut search: impl FnMut(&[f32]) -> Vec<usize>) -> Round {
    let mut found = Vec::with_capacity(queries.len());
    let mut latencies = Vec::with_capacity(queries.len());
    let start = Instant::now();
    for q in queries {
        let t = Instant::now();
        found.push(search(q));
        latencies.push(t.elapsed());
    }
    (found, latencies, start.elapsed())
}

/// The fastest build; the median search round by total time, latencies pooled over
/// every round.
fn summarize(
    name: &str,
    n: usize,
    builds: &[Duration],
    mut rounds: Vec<Round>,
    recall_of: &dyn Fn(&[Vec<usize>]) -> f64,
) -> Row {
    rounds.sort_by_key(|r| r.2);
    let mut lat: Vec<Duration> = rounds.iter().flat_map(|r| r.1.iter().copied()).collect();
    lat.sort();
    let median = &rounds[rounds.len() / 2];
    let build = builds.iter().min().copied().unwrap_or_default();
    Row {
        name: name.into(),
        build_per_s: n as f64 / build.as_secs_f64(),
        qps: median.1.len() as f64 / median.2.as_secs_f64(),
        p50_us: percentile(&lat, 50.0).as_secs_f64() * 1e6,
        p99_us: percentile(&lat, 99.0).as_secs_f64() * 1e6,
        recall: recall_of(&median.0),
    }
}

struct DirectFaiss {
    index: faiss::index::IndexImpl,
    build: Duration,
}

impl DirectFaiss {
    /// One `add_with_ids` of every vector, as a user of the crate would.
    fn build(base: &[Vec<f32>], config: HnswConfig) -> Self {
        let dim = base[0].len() as u32;
        let mut index = index_factory(dim, format!("IDMap2,HNSW{}", config.m), MetricType::InnerProduct)
            .expect("factory");
        let space = ParameterSpace::new().expect("parameter space");
        space.set_index_parameter(&index, "efConstruction", f64::from(config.ef_construction)).expect("efC");
        let flat: Vec<f32> = base.concat();
        let ids: Vec<Idx> = (0..base.len() as u64).map(Idx::new).collect();
        let start = Instant::now();
        index.add_with_ids(&flat, &ids).expect("add");
        let build = start.elapsed();
        space.set_index_parameter(&index, "efSearch", f64::from(config.ef_search)).expect("efSearch");
        Self { index, build }
    }

    fn search(&mut self, q: &[f32]) -> Vec<usize> {
        let r = self.index.search(q, K).expect("search");
        r.labels.iter().filter_map(|l| l.get()).map(|l| l as usize).collect()
    }
}

struct EngineRun {
    engine: Engine,
    build: Duration,
    _dir: tempfile::TempDir,
}

impl EngineRun {
    /// Build time is every upsert call: validation, log append (fsync) and projection.
    fn build(base: &[Vec<f32>], config: HnswConfig) -> Self {
        let dir = bench_dir();
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
        // The data is L2-normalised, so cosine ranks exactly as the direct run's inner product.
        engine.create_index("bench", "docs", base[0].len() as u32, Metric::Cosine, config).expect("create");
        let items: Vec<VectorItem> = base
            .iter()
            .enumerate()
            .map(|(i, v)| VectorItem {
                id: i.to_string(),
                vector: v.clone(),
                metadata: None,
                partition: None,
            })
            .collect();
        let start = Instant::now();
        for chunk in items.chunks(annal_engine::limits::BATCH_ITEMS_MAX) {
            engine.upsert("bench", "docs", chunk.to_vec()).expect("upsert");
        }
        Self { engine, build: start.elapsed(), _dir: dir }
    }

    fn search(&self, q: &[f32]) -> Vec<usize> {
        let hits = self.engine.search("docs", q.to_vec(), K).expect("search");
        hits.iter().filter_map(|h| h.id.parse().ok()).collect()
    }
}

fn wheels(config: HnswConfig, threads: i32) -> Vec<Row> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("faiss_wheels.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(["--m", &config.m.to_string()])
        .args(["--ef-construction", &config.ef_construction.to_string()])
        .args(["--ef-search", &config.ef_search.to_string()])
        .args(["--threads", &threads.to_string()]);
    if let Ok(n) = std::env::var("ANNAL_BENCH_N") {
        cmd.args(["--limit", &n]);
    }
    let output = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("faiss_wheels.sh failed: {}", String::from_utf8_lossy(&o.stderr));
            return Vec::new();
        }
        Err(e) => {
            eprintln!("faiss_wheels.sh could not run: {e}");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| Row {
            name: format!("{} (python)", v["impl"].as_str().unwrap_or("faiss-cpu")),
            build_per_s: v["build_vectors_per_s"].as_f64().unwrap_or(f64::NAN),
            qps: v["qps"].as_f64().unwrap_or(f64::NAN),
            p50_us: v["p50_us"].as_f64().unwrap_or(f64::NAN),
            p99_us: v["p99_us"].as_f64().unwrap_or(f64::NAN),
            recall: v["recall_at_10"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}
