//! Filtered search: recall@10 and queries/s within partitions holding 50%, 5% and 0.5%
//! of the index, against the same engine's unfiltered search and an exact scan of the
//! partition's members, on the shared data (all of base.fvecs, 200 queries).
//!
//! `cargo bench -p annal-benches --bench filtered`

use std::time::Instant;

use annal_benches::{bench_dir, fvecs};
use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};

const K: usize = 10;

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// The partition of record `i`: 50% `half`, 5% `five`, 0.5% `half-pct`, the rest `rest`.
fn partition(i: usize) -> &'static str {
    match i % 200 {
        0..=99 => "half",
        100..=109 => "five",
        110 => "half-pct",
        _ => "rest",
    }
}

fn main() {
    let base = fvecs("base.fvecs");
    let queries: Vec<Vec<f32>> = fvecs("query.fvecs").into_iter().take(200).collect();
    let dir = bench_dir();
    let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
    engine.create_index("bench", "docs", 384, Metric::Cosine, HnswConfig::default()).expect("create");
    engine.set_scheme("bench", "docs", "part={p}").expect("scheme");
    for start in (0..base.len()).step_by(5_000) {
        let items: Vec<VectorItem> = (start..(start + 5_000).min(base.len()))
            .map(|i| VectorItem {
                id: format!("v{i}"),
                vector: base[i].clone(),
                metadata: Some(format!(r#"{{"p": "{}"}}"#, partition(i))),
                partition: None,
            })
            .collect();
        engine.upsert("bench", "docs", items).expect("upsert");
    }
    let normal: Vec<Vec<f32>> = base.iter().map(|v| normalised(v)).collect();
    println!("{} vectors, {} queries, k = {K}, single-threaded queries", base.len(), queries.len());

    let t = Instant::now();
    for q in &queries {
        engine.search("docs", q.clone(), K).expect("search");
    }
    let unfiltered_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    println!("unfiltered: {unfiltered_qps:>8.0} q/s");
    println!("| partition | share | members | recall@10 | q/s | exact scan q/s | path |");
    for (name, share) in [("half", 0.5), ("five", 0.05), ("half-pct", 0.005)] {
        let members: Vec<usize> = (0..base.len()).filter(|&i| partition(i) == name).collect();
        let filter = format!("part={name}");
        // Exact truth by brute force over the members (plain Rust), timed as the
        // baseline a filtered search has to beat.
        let t = Instant::now();
        let truth: Vec<Vec<String>> = queries
            .iter()
            .map(|q| {
                let q = normalised(q);
                let mut scored: Vec<(f32, usize)> = members
                    .iter()
                    .map(|&i| (1.0 - normal[i].iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), i))
                    .collect();
                scored.sort_by(|a, b| a.0.total_cmp(&b.0));
                scored.iter().take(K).map(|(_, i)| format!("v{i}")).collect()
            })
            .collect();
        let exact_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut found = 0;
        for (q, truth) in queries.iter().zip(&truth) {
            let hits = engine.search_in("docs", vec![q.clone()], K, &filter).expect("search_in");
            for h in &hits[0] {
                assert_eq!(h.partition.as_deref(), Some(filter.as_str()), "a hit outside its filter");
            }
            found += hits[0].iter().filter(|h| truth.contains(&h.id.to_string())).count();
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let recall = found as f64 / (queries.len() * K) as f64;
        let path = if members.len() <= annal_engine::FILTER_EXACT_MAX { "exact" } else { "graph" };
        println!(
            "| {name} | {:.1}% | {} | {recall:.4} | {qps:.0} | {exact_qps:.0} | {path} |",
            share * 100.0,
            members.len()
        );
    }
}
