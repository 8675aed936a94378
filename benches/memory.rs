//! Resident memory after replay, per vector, beside FAISS's own index size.
//!
//! `cargo bench -p annal-benches --bench memory`
//! Environment: `ANNAL_BENCH_N` vectors (default 200,000: the 50,000 shared vectors and
//! copies of them with a small deterministic perturbation, 384-d, cosine, default config).
//!
//! Method: a child process (this binary again) loads the vectors into a fresh data
//! directory in batches of 1,000 and exits; a second child opens that directory (full
//! replay), waits until ready, and reports VmRSS and VmHWM from /proc/self/status. FAISS's
//! index size is the size of `faiss::write_index` of the same vectors in a plain
//! `IDMap2,HNSW32` index built in the parent.

use std::process::Command;

use annal_benches::fvecs;
use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};

fn vectors(n: usize) -> Vec<Vec<f32>> {
    let base = fvecs("base.fvecs");
    (0..n)
        .map(|i| {
            let mut v = base[i % base.len()].clone();
            let copy = i / base.len();
            if copy > 0 {
                for (j, x) in v.iter_mut().enumerate() {
                    *x += ((j * 31 + copy * 17) % 13) as f32 * 1e-3;
                }
            }
            v
        })
        .collect()
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    match std::env::args().nth(1).as_deref() {
        Some("--load") => {
            let dir = std::env::args().nth(2).expect("dir");
            let engine = Engine::open(&dir, EngineConfig::default()).expect("open");
            engine.create_index("bench", "docs", 384, Metric::Cosine, HnswConfig::default()).expect("create");
            let all = vectors(n);
            for (b, chunk) in all.chunks(1000).enumerate() {
                let items = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| VectorItem {
                        id: format!("doc-{}", b * 1000 + i),
                        vector: v.clone(),
                        metadata: Some(format!("{{\"n\":{}}}", b * 1000 + i)),
                        partition: None,
                    })
                    .collect();
                engine.upsert("bench", "docs", items).expect("upsert");
            }
            return;
        }
        Some("--open") => {
            let dir = std::env::args().nth(2).expect("dir");
            let before = status_kb("VmRSS");
            let t = std::time::Instant::now();
            let engine = Engine::open(&dir, EngineConfig::default()).expect("open");
            let secs = t.elapsed().as_secs_f64();
            let length = engine.get_index("docs").expect("index").length;
            println!("{} {} {} {} {secs}", length, before, status_kb("VmRSS"), status_kb("VmHWM"));
            return;
        }
        _ => {}
    }
    let dir = tempfile::tempdir().expect("dir");
    let exe = std::env::current_exe().expect("exe");
    let data = dir.path().to_str().expect("utf-8 path");
    assert!(Command::new(&exe).args(["--load", data]).status().expect("load").success());
    let out = Command::new(&exe).args(["--open", data]).output().expect("open");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    let [length, before_kb, rss_kb, hwm_kb, secs] = f[..] else { panic!("child said {text:?}") };

    let mut index =
        faiss::index_factory(384, "IDMap2,HNSW32", faiss::MetricType::InnerProduct).expect("faiss");
    let all = vectors(n);
    let flat: Vec<f32> = all.iter().flatten().copied().collect();
    let ids: Vec<faiss::Idx> = (0..n as u64).map(faiss::Idx::new).collect();
    faiss::index::autotune::ParameterSpace::new()
        .expect("space")
        .set_index_parameter(&index, "efConstruction", 80.0)
        .expect("efConstruction");
    faiss::Index::add_with_ids(&mut index, &flat, &ids).expect("add");
    let path = dir.path().join("faiss.index");
    faiss::write_index(&index, path.to_str().expect("path")).expect("write");
    let faiss_bytes = std::fs::metadata(&path).expect("size").len() as f64;
    let log_bytes = std::fs::metadata(dir.path().join("log.redb")).expect("log").len() as f64;
    let engine_bytes = (rss_kb - before_kb) * 1024.0;
    println!("vectors: {length} x 384 (raw floats {:.1} MB)", length * 1536.0 / 1e6);
    println!("replay: {secs:.1} s; log file {:.1} MB", log_bytes / 1e6);
    println!("FAISS index (write_index): {:.1} MB, {:.0} B/vector", faiss_bytes / 1e6, faiss_bytes / length);
    println!(
        "engine RSS after replay: {:.1} MB ({:.1} MB before open), {:.0} B/vector; peak {:.1} MB",
        rss_kb / 1024.0,
        before_kb / 1024.0,
        engine_bytes / length,
        hwm_kb / 1024.0
    );
    println!("engine / FAISS: {:.2}", engine_bytes / faiss_bytes);
}
