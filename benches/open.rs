//! Open time: a full replay of the log against an open from a snapshot plus a 1% tail,
//! beside FAISS reading the same HNSW index from a file, and the time to take the
//! snapshot, on the shared data (the base set repeated with new ids up to N).
//!
//! `cargo bench -p annal-benches --bench open`
//! Environment: `ANNAL_BENCH_N` vectors (default 200,000).

use std::time::{Duration, Instant};

use annal_benches::{bench_dir, fvecs};
use annal_engine::event::VectorItem;
use annal_engine::{decode_snapshot, SnapshotPolicy};
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};

fn config(restore: bool) -> EngineConfig {
    let snapshots = SnapshotPolicy { restore, on_close: false, every_events: None, keep: 3, archive: false };
    EngineConfig { snapshots, ..EngineConfig::default() }
}

fn items(base: &[Vec<f32>], range: std::ops::Range<usize>) -> Vec<VectorItem> {
    range
        .map(|i| VectorItem {
            id: format!("v{i}"),
            vector: base[i % base.len()].clone(),
            metadata: None,
            partition: None,
        })
        .collect()
}

/// Open and wait until the projections caught up; the time and the engine.
fn timed_open(dir: &std::path::Path, restore: bool) -> (Duration, Engine) {
    let t = Instant::now();
    let engine = Engine::open(dir, config(restore)).expect("open");
    (t.elapsed(), engine)
}

/// The FAISS index bytes of the only index in a snapshot's `vectors` section (layout in
/// docs/FORMAT.md): walk the fields before it.
fn faiss_bytes(section: &[u8]) -> &[u8] {
    let mut at = 8; // index count
    let u64_at = |at: usize| u64::from_le_bytes(section[at..at + 8].try_into().expect("8 bytes")) as usize;
    let skip_bytes = |at: &mut usize| {
        let len = u64_at(*at);
        *at += 8 + len;
    };
    skip_bytes(&mut at); // name
    at += 4 + 1 + 12; // dimension, metric, creation config
    let promotions = u64_at(at);
    at += 8 + 12 * promotions + 12 + 8; // promotions, graph config, next label
    let entries = u64_at(at);
    at += 8;
    for _ in 0..entries {
        at += 8; // label
        skip_bytes(&mut at); // id
        for _ in 0..2 {
            let some = section[at] == 1;
            at += 1;
            if some {
                skip_bytes(&mut at);
            }
        }
    }
    skip_bytes(&mut at); // live bitmap
    let len = u64_at(at);
    &section[at + 8..at + 8 + len]
}

fn main() {
    let base = fvecs("base.fvecs");
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let tail = n / 100;
    let dir = bench_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let load = Instant::now();
    let snapshot = {
        let engine = Engine::open(dir.path(), config(true)).expect("open");
        engine.create_index("bench", "docs", 384, Metric::Cosine, HnswConfig::default()).expect("create");
        for start in (0..n).step_by(10_000) {
            engine.upsert("bench", "docs", items(&base, start..(start + 10_000).min(n))).expect("upsert");
        }
        let t = Instant::now();
        let info = runtime.block_on(engine.snapshot("bench")).expect("snapshot");
        let took = t.elapsed();
        println!(
            "snapshot of {n} vectors: {:.2} s in all, applying paused {:.0} ms, {} MiB",
            took.as_secs_f64(),
            info.paused.as_secs_f64() * 1e3,
            info.bytes >> 20
        );
        engine.upsert("bench", "docs", items(&base, n..n + tail)).expect("tail");
        engine.close().expect("close");
        info
    };
    println!("loaded {n} + {tail} vectors in {:.1} s", load.elapsed().as_secs_f64());

    let (from_snapshot, engine) = timed_open(dir.path(), true);
    assert_eq!(engine.restored().snapshot.as_ref().map(|s| s.seq), Some(snapshot.seq));
    let restoring = engine.restored().elapsed;
    assert_eq!(engine.get_index("docs").expect("index").length, (n + tail) as u64);
    drop(engine);
    let (full, engine) = timed_open(dir.path(), false);
    assert_eq!(engine.get_index("docs").expect("index").length, (n + tail) as u64);
    drop(engine);

    // FAISS reading the same graph (as of the snapshot) from a file.
    let object =
        std::fs::read(dir.path().join("buckets/primary").join(&snapshot.key)).expect("snapshot object");
    let decoded = decode_snapshot(&object).expect("decode");
    let (_, range) = decoded.sections.iter().find(|(name, _)| name == "vectors").expect("vectors section");
    let path = dir.path().join("docs.faiss");
    std::fs::write(&path, faiss_bytes(&object[range.clone()])).expect("write faiss file");
    let t = Instant::now();
    let index = faiss::read_index(path.to_str().expect("utf-8 path")).expect("read_index");
    let faiss_read = t.elapsed();
    drop(index);

    println!("open, full replay of {} events:        {:>8.2} s", snapshot.seq + 2, full.as_secs_f64());
    println!(
        "open, snapshot + {tail} vectors of tail:    {:>8.2} s  ({:.1}x faster)",
        from_snapshot.as_secs_f64(),
        full.as_secs_f64() / from_snapshot.as_secs_f64()
    );
    println!(
        "  of which reading and restoring the snapshot {:.2} s, the tail {:.2} s",
        restoring.as_secs_f64(),
        (from_snapshot - restoring).as_secs_f64()
    );
    println!(
        "faiss::read_index of the same graph:     {:>8.2} s  (open is {:.2}x of it)",
        faiss_read.as_secs_f64(),
        from_snapshot.as_secs_f64() / faiss_read.as_secs_f64()
    );
}
