//! Embedding throughput of the local embedder (all-MiniLM-L6-v2 through candle, on
//! all cores) against the same model in plain numpy (`benches/embed_numpy.py`, the
//! sentence-transformers-free path a Python user would take), on the same passages of
//! `passages.txt`, in the same run. Both sort by length and embed 16 at a time.
//!
//! ```sh
//! scripts/fetch-model.sh
//! python3 -m venv target/venv-embed && target/venv-embed/bin/pip install numpy tokenizers safetensors scipy
//! cargo bench -p annal-benches --bench embed
//! ```
//! `ANNAL_BENCH_N` sets the number of passages (default 512).

use std::process::Command;
use std::time::Instant;

use annal_benches::{data_dir, fvecs};
use annal_engine::{Embedder, LocalEmbedder};

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let passages = std::fs::read_to_string(data_dir().join("passages.txt")).expect("passages.txt");
    let lines: Vec<&str> = passages.lines().take(n).collect();
    let base = fvecs("base.fvecs");
    let dir = LocalEmbedder::default_dir();
    let started = Instant::now();
    let model = LocalEmbedder::load(&dir).expect("the model (run scripts/fetch-model.sh)");
    let load_ms = started.elapsed().as_millis();
    model.embed(&lines[..16]).expect("warm-up");
    let t = Instant::now();
    let vectors = model.embed(&lines).expect("embed");
    let rust = n as f64 / t.elapsed().as_secs_f64();
    let worst = vectors
        .iter()
        .zip(&base)
        .map(|(v, b)| v.iter().zip(b.iter()).map(|(x, y)| x * y).sum::<f32>())
        .fold(f32::MAX, f32::min);
    println!("{n} passages of passages.txt, all-MiniLM-L6-v2, batches of 16 sorted by length");
    println!("| path | sentences/s | worst cosine to base.fvecs |");
    println!("|---|---|---|");
    println!("| annal local embedder (candle, Rust) | {rust:.0} | {worst:.6} |");
    println!("model load: {load_ms} ms");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(
        std::env::var("ANNAL_BENCH_EMBED_PYTHON").unwrap_or_else(|_| "target/venv-embed/bin/python".into()),
    );
    if !python.exists() {
        println!("numpy path skipped: {} is missing (see the header of benches/embed.rs)", python.display());
        return;
    }
    let out = Command::new(&python)
        .arg(root.join("benches/embed_numpy.py"))
        .arg(&dir)
        .arg(data_dir())
        .arg(n.to_string())
        .output()
        .expect("run the numpy embedder");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("numpy embedder failed: {}", String::from_utf8_lossy(&out.stderr)));
    let numpy = report["per_s"].as_f64().unwrap_or(0.0);
    println!(
        "| numpy + tokenizers + safetensors (Python, OpenBLAS) | {numpy:.0} ({:.2}x annal) | {:.6} |",
        numpy / rust,
        report["worst_cosine"].as_f64().unwrap_or(0.0)
    );
}
