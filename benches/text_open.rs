//! Full-text projection at open: restoring tantivy's files from the snapshot against
//! re-indexing the documents, at N documents (default 200,000).
//!
//! `cargo bench -p annal-benches --bench text_open`
//! Environment: `ANNAL_BENCH_N` documents (default 200,000), `ANNAL_BENCH_ROUNDS`
//! opens of each kind, the median reported (default 3).
//!
//! Two logs hold the same N documents (the shared passages, repeated with new ids; a
//! repeat is the passage followed by another passage, so the copies are not the same
//! text): one on a document index with the default full-text index, one created with
//! none. The embedder is configured but unavailable, so nothing is embedded and the
//! graph stays empty: the documents and the text index are all there is to open. Each
//! log ends with a snapshot. Opening each
//!
//! * from the snapshot restores the `documents` section, and on the first log the
//!   `text` section's tantivy files;
//! * by full replay (snapshots off) applies every `DocumentsUpserted` again, which on
//!   the first log feeds each document to tantivy: the work a text projection rebuilt
//!   from the documents at open would do.
//!
//! The difference between the two logs is what the text index costs each way. Each
//! open is timed to its first keyword search answered (tantivy commits and opens its
//! reader lazily).

use std::path::Path;
use std::time::{Duration, Instant};

use annal_benches::{bench_dir, data_dir};
use annal_engine::event::DocumentItem;
use annal_engine::{
    Embedders, Engine, EngineConfig, HnswConfig, KeywordQuery, Metric, Select, SnapshotPolicy, TextSpec,
};

const MODEL: &str = "unavailable-384";

fn config(restore: bool) -> EngineConfig {
    let mut embedders = Embedders::default();
    embedders.add_unavailable(MODEL, 384, "text_open bench: documents are not embedded");
    let snapshots = SnapshotPolicy { restore, on_close: false, every_events: None, keep: 3, archive: false };
    EngineConfig { embedders, snapshots, ..EngineConfig::default() }
}

fn documents(passages: &[String], range: std::ops::Range<usize>) -> Vec<DocumentItem> {
    let n = passages.len();
    range
        .map(|i| {
            let copy = i / n;
            let text = if copy == 0 {
                passages[i].clone()
            } else {
                format!("{} {}", passages[i % n], passages[(i * 7 + copy * 7_919) % n])
            };
            DocumentItem { id: format!("d{i}"), text, metadata: None, partition: None }
        })
        .collect()
}

/// Load `n` documents into a fresh log (with or without a text index), snapshot, close.
/// The snapshot's size.
fn load(dir: &Path, passages: &[String], n: usize, text: Option<TextSpec>) -> u64 {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let engine = Engine::open(dir, config(true)).expect("open");
    engine
        .create_document_index_with("bench", "docs", MODEL, None, Metric::Cosine, HnswConfig::default(), text)
        .expect("create");
    for start in (0..n).step_by(5_000) {
        let items = documents(passages, start..(start + 5_000).min(n));
        engine.upsert_documents("bench", "docs", items, annal_engine::Wait::Applied).expect("upsert");
    }
    let info = runtime.block_on(engine.snapshot("bench")).expect("snapshot");
    engine.close().expect("close");
    info.bytes
}

/// Open (restoring the snapshot or replaying everything) until the first keyword
/// search answers, if the index has a text index.
fn open(dir: &Path, restore: bool, text: bool, n: usize) -> Duration {
    let t = Instant::now();
    let engine = Engine::open(dir, config(restore)).expect("open");
    if text {
        let query = KeywordQuery { text: "the module returns a string".into(), syntax: false };
        let hits = engine.keyword("docs", &query, 10, &Select::default()).expect("keyword");
        assert_eq!(hits.len(), 10);
    }
    let took = t.elapsed();
    assert_eq!(engine.restored().snapshot.is_some(), restore);
    if text {
        assert_eq!(engine.text_index("docs").expect("index").map(|(_, docs)| docs), Some(n as u64));
    }
    engine.close().expect("close");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let rounds: usize = std::env::var("ANNAL_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let passages: Vec<String> = std::fs::read_to_string(data_dir().join("passages.txt"))
        .expect("passages.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let with_text = bench_dir();
    let without = bench_dir();
    let t = Instant::now();
    let bytes_text = load(with_text.path(), &passages, n, Some(TextSpec::default()));
    let bytes_plain = load(without.path(), &passages, n, None);
    println!("loaded {n} documents twice in {:.1} s", t.elapsed().as_secs_f64());
    println!(
        "snapshot: {:.1} MiB with the text index, {:.1} MiB without ({:.1} MiB of text section)",
        bytes_text as f64 / 1048576.0,
        bytes_plain as f64 / 1048576.0,
        (bytes_text as f64 - bytes_plain as f64) / 1048576.0
    );

    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for _ in 0..rounds {
        for (i, (dir, text)) in [(with_text.path(), true), (without.path(), false)].into_iter().enumerate() {
            for (j, restore) in [true, false].into_iter().enumerate() {
                times[i][j].push(open(dir, restore, text, n));
            }
        }
    }
    let [[snap_text, replay_text], [snap_plain, replay_plain]] = times.map(|row| row.map(median));
    println!("median of {rounds} opens, each to its first keyword search:");
    println!("| open | with text index | without | text index's share |");
    println!("|---|---|---|---|");
    for (name, a, b) in
        [("from the snapshot", snap_text, snap_plain), ("full replay", replay_text, replay_plain)]
    {
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.2} s |",
            a.as_secs_f64(),
            b.as_secs_f64(),
            a.as_secs_f64() - b.as_secs_f64()
        );
    }
    let restore = snap_text.saturating_sub(snap_plain);
    let reindex = replay_text.saturating_sub(replay_plain);
    println!(
        "text index at open: restored from its files {:.2} s, re-indexed from the documents {:.2} s ({:.1}x)",
        restore.as_secs_f64(),
        reindex.as_secs_f64(),
        reindex.as_secs_f64() / restore.as_secs_f64().max(1e-3)
    );
}
