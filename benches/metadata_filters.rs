//! Metadata filters at 200,000 vectors: filtered recall@10 against an exact filtered
//! brute force and single-query q/s at selectivities 50%, 5%, 0.5%, 0.05%, a
//! two-condition AND, an array membership and an unindexed filter, beside the same
//! engine's unfiltered search in the same run; payload-index memory, the time to build
//! them, and the open time from a snapshot with and without them.
//!
//! Data: the 50,000 shared sentence vectors and 3 seeded perturbed copies of each
//! (uniform noise of ±0.02 per dimension, renormalised: a copy is at cosine ~0.97 from
//! its original), 384-d, cosine, the default HNSW config; 200 of the shared queries.
//! Synthetic metadata per record `i` (a seeded shuffle decouples it from the vectors):
//! keywords with 2, 20, 200 and 2,000 values, an integer 0..9,999, and a tags array.
//!
//! `cargo bench -p annal-benches --bench metadata_filters` (`ANNAL_BENCH_N` to change
//! the size).

use std::time::Instant;

use annal_benches::{bench_dir, fvecs, mix, normalised};
use annal_engine::event::{PayloadKind, VectorItem};
use annal_engine::{Engine, EngineConfig, Filter, HnswConfig, Metric, Select};
use serde_json::{json, Value};

const K: usize = 10;
const QUERIES: usize = 200;

fn vectors(n: usize) -> Vec<Vec<f32>> {
    annal_benches::perturbed(n)
}

/// The metadata of record `i`, from a seeded shuffle of its number.
fn metadata(i: usize) -> Value {
    let r = mix(i as u64 ^ 0x5eed) as usize;
    json!({
        "k2": format!("a{}", r % 2),
        "k20": format!("b{}", (r >> 8) % 20),
        "k200": format!("c{}", (r >> 16) % 200),
        "k2000": format!("d{}", (r >> 24) % 2000),
        "n": (r >> 40) % 10_000,
        "tags": [format!("t{}", (r >> 4) % 10), format!("u{}", (r >> 12) % 100)],
        "free": format!("e{}", (r >> 48) % 20),
    })
}

/// The exact top-k among `members` (cosine distance on unit vectors).
fn exact(data: &[Vec<f32>], members: &[usize], q: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> =
        members.iter().map(|&i| (-data[i].iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i)).collect();
    let k = K.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    scored.truncate(k);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

struct Measured {
    recall: f64,
    qps: f64,
    /// Selections per second alone (`count`: the planner without the search).
    select_qps: f64,
    /// Queries the graph left short, answered by an exact scan instead.
    fallback: usize,
    strategy: &'static str,
    ef_search: Option<usize>,
}

/// Recall@10 and q/s of `select`'s searches, asking `ask` neighbours (10, or more to
/// widen the graph's beam) and keeping the first 10.
fn measure(
    engine: &Engine,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    select: &Select,
    members: &[usize],
    ask: usize,
) -> Measured {
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| exact(data, members, q).into_iter().map(|i| format!("v{i}")).collect())
        .collect();
    // Warm-up pass, then the timed one.
    let first = engine.query("docs", vec![queries[0].clone()], ask, select).expect("query");
    let t = Instant::now();
    let mut found = 0;
    let mut asked = 0;
    let mut fallback = 0;
    for (q, truth) in queries.iter().zip(&truth) {
        let out = engine.query("docs", vec![q.clone()], ask, select).expect("query");
        fallback += out.plan.fallback;
        found += out.hits[0].iter().take(K).filter(|h| truth.contains(&h.id.to_string())).count();
        asked += truth.len();
    }
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in queries {
        engine.count("docs", select).expect("count");
    }
    let select_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    Measured {
        recall: if asked == 0 { 1.0 } else { found as f64 / asked as f64 },
        qps,
        select_qps,
        fallback,
        strategy: first.plan.strategy.name(),
        ef_search: first.plan.ef_search,
    }
}

fn main() {
    let n: usize = std::env::var("ANNAL_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let data = vectors(n);
    let queries: Vec<Vec<f32>> = fvecs("query.fvecs").into_iter().take(QUERIES).map(normalised).collect();
    let docs: Vec<Value> = (0..n).map(metadata).collect();
    let dir = bench_dir();
    let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
    engine.create_index("bench", "docs", 384, Metric::Cosine, HnswConfig::default()).expect("create");
    let t = Instant::now();
    for start in (0..n).step_by(5_000) {
        let items: Vec<VectorItem> = (start..(start + 5_000).min(n))
            .map(|i| VectorItem {
                id: format!("v{i}"),
                vector: data[i].clone(),
                metadata: Some(docs[i].to_string()),
                partition: None,
            })
            .collect();
        engine.upsert("bench", "docs", items).expect("upsert");
    }
    println!(
        "{n} vectors, 384-d cosine, built in {:.1} s; {QUERIES} queries, k = {K}, one thread",
        t.elapsed().as_secs_f64()
    );

    let open_time = |engine: Engine| -> (f64, Engine) {
        annal_engine::block_on(engine.snapshot("bench")).expect("snapshot").expect("taken");
        engine.close().expect("close");
        drop(engine);
        let t = Instant::now();
        let engine = Engine::open(dir.path(), EngineConfig::default()).expect("reopen");
        (t.elapsed().as_secs_f64(), engine)
    };
    let (open_without, engine) = open_time(engine);

    let t = Instant::now();
    for (field, kind) in [
        ("k2", PayloadKind::Keyword),
        ("k20", PayloadKind::Keyword),
        ("k200", PayloadKind::Keyword),
        ("k2000", PayloadKind::Keyword),
        ("n", PayloadKind::Integer),
        ("tags", PayloadKind::Keyword),
    ] {
        engine.create_payload_index("bench", "docs", field, kind).expect("payload index");
    }
    let build_s = t.elapsed().as_secs_f64();
    let (open_with, engine) = open_time(engine);
    let indexes = engine.payload_indexes("docs").expect("payload indexes");
    let bytes: u64 = indexes.iter().map(|i| i.bytes).sum();

    let all: Vec<usize> = (0..n).collect();
    let unfiltered = measure(&engine, &data, &queries, &Select::default(), &all, K);
    println!("unfiltered: recall@10 {:.4}, {:.0} q/s", unfiltered.recall, unfiltered.qps);
    println!();
    println!(
        "| filter | selectivity | recall@10 | q/s | vs unfiltered | plan | ef_search | fallbacks | selection alone, q/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cases = [
        ("k2 = a0 (2 values)", json!({"k2": "a0"})),
        ("k20 = b3 (20 values)", json!({"k20": "b3"})),
        ("k200 = c7 (200 values)", json!({"k200": "c7"})),
        ("k2000 = d11 (2,000 values)", json!({"k2000": "d11"})),
        ("k2 = a1 AND n < 2000", json!({"k2": "a1", "n": {"$lt": 2000}})),
        ("k2 = a1 OR k20 = b3 (52.5%)", json!({"$or": [{"k2": "a1"}, {"k20": "b3"}]})),
        ("k20 IN (b1, b2) AND n >= 5000", json!({"k20": {"$in": ["b1", "b2"]}, "n": {"$gte": 5000}})),
        ("tags contains u42 (array)", json!({"tags": {"$contains": "u42"}})),
        ("free = e5 (unindexed, 5%)", json!({"free": "e5"})),
    ];
    for (name, filter_json) in cases {
        let filter = Filter::parse("filter", &filter_json).expect("filter");
        let members: Vec<usize> = (0..n).filter(|&i| filter.matches(&docs[i])).collect();
        let select = Select { partition: None, filter: Some(filter) };
        let m = measure(&engine, &data, &queries, &select, &members, K);
        println!(
            "| {name} | {:.2}% ({}) | {:.4} | {:.0} | {:.2}x | {} | {} | {} | {:.0} |",
            100.0 * members.len() as f64 / n as f64,
            members.len(),
            m.recall,
            m.qps,
            m.qps / unfiltered.qps,
            m.strategy,
            m.ef_search.map_or("-".to_owned(), |k| k.to_string()),
            m.fallback,
            m.select_qps,
        );
    }
    println!();
    println!(
        "payload indexes: {} fields, {:.1} MiB ({:.1} bytes/record), built in {:.2} s",
        indexes.len(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / n as f64,
        build_s
    );
    for i in &indexes {
        println!(
            "  {}: {} {} records, {} values, {:.2} MiB",
            i.field,
            i.kind.name(),
            i.records,
            i.distinct,
            i.bytes as f64 / (1 << 20) as f64
        );
    }
    println!("open from a snapshot: {open_without:.2} s without payload indexes, {open_with:.2} s with them");
    engine.close().expect("close");
}
