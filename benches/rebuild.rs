//! Searches while a graph rebuild runs, and a k=1000 search right after deleting half an
//! index (the exact-scan fallback), on the shared data.
//!
//! `cargo bench -p annal-benches --bench rebuild`
//! Environment: `ANNAL_BENCH_N` base vectors (default all 50,000).
//!
//! Method: one engine, one 50,000 x 384 cosine index (default config). Searches run on
//! the main thread, one query at a time, cycling through the 1,000 held-out queries.
//! (1) Baseline: p50/p99 with no rebuild. (2) Delete 25% (past the 20% rebuild share):
//! the background rebuild starts; latencies are recorded while `rebuilds.running` is set.
//! (3) A second index, delete half of it, then at once k=1000 searches.

use std::time::{Duration, Instant};

use annal_benches::{bench_dir, fvecs, percentile};
use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};

fn items(base: &[Vec<f32>]) -> Vec<VectorItem> {
    base.iter()
        .enumerate()
        .map(|(i, v)| VectorItem { id: format!("v{i}"), vector: v.clone(), metadata: None, partition: None })
        .collect()
}

fn load(engine: &Engine, name: &str, base: &[Vec<f32>]) {
    engine
        .create_index("bench", name, base[0].len() as u32, Metric::Cosine, HnswConfig::default())
        .expect("create");
    let all = items(base);
    for chunk in all.chunks(10_000) {
        engine.upsert("bench", name, chunk.to_vec()).expect("upsert");
    }
}

fn report(label: &str, mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
    println!(
        "{label:<44} n={:<6} p50 {:>8.1} us  p99 {:>8.1} us",
        lat.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (p50, p99)
}

fn main() {
    let mut base = fvecs("base.fvecs");
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(base.len());
    base.truncate(n);
    let queries = fvecs("query.fvecs");
    let dir = bench_dir();
    let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
    load(&engine, "docs", &base);
    println!("data: {} x {}, default config, k=10 unless said", base.len(), base[0].len());

    let mut lat = Vec::new();
    for q in queries.iter().cycle().take(5_000) {
        let t = Instant::now();
        engine.search("docs", q.clone(), 10).expect("search");
        lat.push(t.elapsed());
    }
    let (_, base_p99) = report("no rebuild", lat);

    let dead: Vec<String> = (0..n / 4).map(|i| format!("v{}", i * 4)).collect();
    let t = Instant::now();
    for chunk in dead.chunks(10_000) {
        engine.delete("bench", "docs", chunk.to_vec()).expect("delete");
    }
    println!("delete of {} ids: {:.1} ms", n / 4, t.elapsed().as_secs_f64() * 1e3);
    while !engine.stats().rebuilds.running && engine.stats().rebuilds.rebuilds == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    for q in queries.iter().cycle() {
        if !engine.stats().rebuilds.running {
            break;
        }
        let t = Instant::now();
        engine.search("docs", q.clone(), 10).expect("search");
        lat.push(t.elapsed());
    }
    println!("rebuild ran {:.1} s while searching", started.elapsed().as_secs_f64());
    let (_, during_p99) = report("during the rebuild (25% tombstones)", lat);
    println!("p99 during / without rebuild: {:.2}", during_p99.as_secs_f64() / base_p99.as_secs_f64());

    let mut lat = Vec::new();
    for q in queries.iter().cycle().take(5_000) {
        let t = Instant::now();
        engine.search("docs", q.clone(), 10).expect("search");
        lat.push(t.elapsed());
    }
    report("after the rebuild", lat);

    load(&engine, "half", &base);
    let mut lat = Vec::new();
    for q in queries.iter().take(200) {
        let t = Instant::now();
        assert_eq!(engine.search("half", q.clone(), 1000).expect("search").len(), 1000.min(n));
        lat.push(t.elapsed());
    }
    report("k=1000, no tombstones", lat);
    let half: Vec<String> = (0..n / 2).map(|i| format!("v{}", i * 2)).collect();
    for chunk in half.chunks(10_000) {
        engine.delete("bench", "half", chunk.to_vec()).expect("delete");
    }
    let mut lat = Vec::new();
    for q in queries.iter().take(200) {
        let t = Instant::now();
        let hits = engine.search("half", q.clone(), 1000).expect("search");
        lat.push(t.elapsed());
        assert_eq!(hits.len(), 1000.min(n / 2), "k results among the live half");
    }
    println!("rebuild of `half` running during the k=1000 searches: {}", engine.stats().rebuilds.running);
    report("k=1000 right after deleting half", lat);
}
