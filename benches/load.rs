//! Load: a fixed-rate, open-loop mix of 90% searches and 10% upserts against a local
//! `annal serve` (the release binary), for a fixed time; then the highest search rate
//! the server sustains. Latency is measured from each request's scheduled time, so a
//! server that falls behind shows it (no coordinated omission).
//!
//! `cargo build --release -p annal-server && cargo bench -p annal-benches --bench load`
//! Environment: `ANNAL_LOAD_SECS` (default 60; the long mode in docs/RELIABILITY.md is
//! 600), `ANNAL_LOAD_RATE` requests/s (default 400), `ANNAL_LOAD_BASE` vectors loaded
//! first (default 20,000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal_benches::{agent, bench_dir, env_or, fvecs, rss_mb, start_server};
use serde_json::{json, Value};

const WORKERS: usize = 32;

struct Outcome {
    sent: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Outcome {
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    }
}

/// `rate` requests/s for `secs`, a share `upserts` of them upserts (new ids), the rest
/// searches (k=10) with the shared queries.
fn run(
    base: &str,
    rate: u64,
    secs: u64,
    upserts: f64,
    queries: &Arc<Vec<Vec<f32>>>,
    vectors: &Arc<Vec<Vec<f32>>>,
) -> Outcome {
    let total = rate * secs;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let t0 = Instant::now() + Duration::from_millis(50);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let every = if upserts > 0.0 { (1.0 / upserts).round() as u64 } else { u64::MAX };
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (base, next, errors, latencies) =
                (base.to_owned(), Arc::clone(&next), Arc::clone(&errors), Arc::clone(&latencies));
            let (queries, vectors) = (Arc::clone(queries), Arc::clone(vectors));
            std::thread::spawn(move || {
                let agent = agent(Duration::from_secs(30));
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let scheduled = t0 + period * u32::try_from(i).unwrap_or(u32::MAX);
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let response = if i % every == every - 1 {
                        let v = &vectors[i as usize % vectors.len()];
                        let body = json!({"items": [{"id": format!("load-{i}"), "vector": v}]});
                        agent.post(&format!("{base}/vectors/index/docs/add")).send_json(&body)
                    } else {
                        let body = json!({"vector": queries[i as usize % queries.len()], "k": 10});
                        agent.post(&format!("{base}/vectors/index/docs/search")).send_json(&body)
                    };
                    let ok = response.is_ok_and(|mut r| {
                        let status = r.status().as_u16();
                        let _ = r.body_mut().read_to_vec();
                        status == 200
                    });
                    mine.push(u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX));
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let elapsed = t0.elapsed();
    let latencies_us = std::mem::take(&mut *latencies.lock().expect("lock"));
    Outcome { sent: total, errors: errors.load(Ordering::Relaxed), elapsed, latencies_us }
}

fn main() {
    let secs = env_or::<u64>("ANNAL_LOAD_SECS", 60);
    let rate = env_or::<u64>("ANNAL_LOAD_RATE", 400);
    let base_n = env_or::<u64>("ANNAL_LOAD_BASE", 20_000) as usize;
    let base = fvecs("base.fvecs");
    let queries = Arc::new(fvecs("query.fvecs"));
    let vectors = Arc::new(base.clone());
    let dir = bench_dir();
    let (mut child, url) = start_server(dir.path(), &[]);
    let agent = agent(Duration::from_secs(30));
    let created = agent
        .post(&format!("{url}/vectors/index"))
        .send_json(json!({"name": "docs", "dimension": base[0].len()}))
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    for (chunk_i, chunk) in base[..base_n.min(base.len())].chunks(1_000).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": format!("b{}", chunk_i * 1_000 + i), "vector": v}))
            .collect();
        let r = agent
            .post(&format!("{url}/vectors/index/docs/add"))
            .send_json(json!({ "items": items }))
            .expect("add");
        assert_eq!(r.status().as_u16(), 200);
    }
    // Warm up, then measure memory from a warm start.
    run(&url, rate, 5, 0.1, &queries, &vectors);
    let rss_start = rss_mb(child.id());
    let mixed = run(&url, rate, secs, 0.1, &queries, &vectors);
    let rss_end = rss_mb(child.id());
    let achieved = mixed.latencies_us.len() as f64 / mixed.elapsed.as_secs_f64();
    println!("{base_n} x {} vectors loaded; {WORKERS} client threads; open loop", base[0].len());
    println!("| run | offered/s | achieved/s | p50 ms | p99 ms | p999 ms | errors | RSS start -> end MB |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| 90% search / 10% upsert, {secs} s | {rate} | {achieved:.0} | {:.2} | {:.2} | {:.2} | {} of {} | {rss_start:.0} -> {rss_end:.0} |",
        mixed.pct(0.5),
        mixed.pct(0.99),
        mixed.pct(0.999),
        mixed.errors,
        mixed.sent
    );
    // The highest search rate sustained: achieved within 2% of offered, p99 under 50 ms.
    let mut sustained = 0;
    for offered in [500, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000] {
        let o = run(&url, offered, 10, 0.0, &queries, &vectors);
        let achieved = o.latencies_us.len() as f64 / o.elapsed.as_secs_f64();
        let ok = o.errors == 0 && achieved >= offered as f64 * 0.98 && o.pct(0.99) < 50.0;
        println!(
            "| search only, 10 s | {offered} | {achieved:.0} | {:.2} | {:.2} | {:.2} | {} of {} | {} |",
            o.pct(0.5),
            o.pct(0.99),
            o.pct(0.999),
            o.errors,
            o.sent,
            if ok { "sustained" } else { "not sustained" }
        );
        if !ok {
            break;
        }
        sustained = offered;
    }
    println!("highest sustained search rate: {sustained}/s (p99 < 50 ms, no errors)");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mixed.errors, 0, "errors under load");
}
