//! The operator tools on the shared data, beside FAISS building the same graph in the
//! same run: `annal import` of `base.fvecs` (50,000 x 384, cosine), `annal replay
//! --check` (a replay from nothing plus the snapshot's state compared), `annal export`
//! and `annal replay --to` half way. The tools run as processes of the release binary,
//! as an operator runs them.
//!
//! `cargo build --release -p annal-server && cargo bench -p annal-benches --bench tools`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use annal_benches::{bench_dir, data_dir, fvecs};
use faiss::{index_factory, Index, MetricType};

fn annal_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/annal")
}

/// Run the tool; its wall time in seconds and its last stdout line.
fn run(args: &[&str]) -> (f64, String) {
    let t = Instant::now();
    let out = Command::new(annal_bin()).args(args).env("ANNAL_LOG", "warn").output().expect("run annal");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    (secs, stdout.trim().lines().last().unwrap_or("").to_owned())
}

fn main() {
    assert!(annal_bin().exists(), "build it first: cargo build --release -p annal-server");
    let base = fvecs("base.fvecs");
    let (n, d) = (base.len(), base[0].len());
    println!("{n} x {d} vectors, default HNSW config (M 32, efConstruction 80)");

    // FAISS direct: the same graph the engine builds (inner product on normalised
    // vectors, batches of 1,000).
    let normalised: Vec<f32> = base
        .iter()
        .flat_map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(move |x| x / norm)
        })
        .collect();
    let mut index = index_factory(d as u32, "IDMap2,HNSW32", MetricType::InnerProduct).expect("factory");
    faiss::index::autotune::ParameterSpace::new()
        .expect("space")
        .set_index_parameter(&index, "efConstruction", 80.0)
        .expect("efConstruction");
    let ids: Vec<faiss::Idx> = (0..n as u64).map(faiss::Idx::new).collect();
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        index.add_with_ids(&normalised[start * d..end * d], &ids[start..end]).expect("add");
    }
    let faiss_s = t.elapsed().as_secs_f64();
    drop(index);

    let dir = bench_dir();
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let file = data_dir().join("base.fvecs");
    let file = file.to_str().expect("utf-8 path");
    let (import_s, report) = run(&["import", "--data", data, "--index", "docs", file]);
    println!("import report: {report}");
    let (check_s, _) = run(&["replay", "--check", "--data", data]);
    let out = dir.path().join("out.fvecs");
    let (export_s, _) = run(&["export", "--data", data, "--index", "docs", out.to_str().expect("utf-8")]);
    let half = dir.path().join("half");
    let (to_s, _) = run(&["replay", "--data", data, "--to", "26", "--out", half.to_str().expect("utf-8")]);

    let rate = |s: f64| n as f64 / s;
    println!("| what | seconds | vectors/s | vs FAISS build |");
    println!("|---|---|---|---|");
    println!("| FAISS build (in process) | {faiss_s:.2} | {:.0} | 1.00x |", rate(faiss_s));
    for (what, s) in [
        ("annal import (process: open, create, 50 batches, wait applied, snapshot at close)", import_s),
        ("annal replay --check (from nothing + snapshot compared + digest)", check_s),
    ] {
        println!("| {what} | {s:.2} | {:.0} | {:.2}x |", rate(s), faiss_s / s);
    }
    println!(
        "| annal export (snapshot restore, 50,000 rows to .fvecs) | {export_s:.2} | {:.0} | |",
        rate(export_s)
    );
    println!(
        "| annal replay --to 26 (half: copy + replay from nothing) | {to_s:.2} | {:.0} | |",
        rate(to_s) / 2.0
    );
}
