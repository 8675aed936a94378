//! Scale-out: acknowledged writes through the JetStream log against the embedded redb
//! log, in the same run on the same machine; the lag of a replica under that load; and
//! the catch-up rate of a replica started empty, copying the whole stream or beginning
//! from the cluster's shared snapshot (S3: moto, when installed) and copying the tail.
//! docs/PERFORMANCE.md, "Cluster".
//!
//! `bash .ci/setup.sh` (nats-server) and `cargo build --release -p annal-server`, then
//! `cargo bench -p annal-benches --bench cluster`
//! Environment: `ANNAL_CLUSTER_SECS` seconds of load per setup (default 15),
//! `ANNAL_CLUSTER_WRITERS` concurrent clients (default 8), `ANNAL_CLUSTER_BATCH`
//! vectors per write (default 1), dimension 384 (the shared data's).

#[path = "../server/tests/it/common/nats.rs"]
mod nats;
#[path = "../engine/tests/it/common/s3.rs"]
mod s3;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal_benches::{agent, bench_dir, call, env_or, fvecs, percentile, start_server, stop, wait_ready};
use serde_json::{json, Value};

struct Load {
    acked: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Sequence numbers acknowledged, with when.
    acks: Vec<(u64, Instant)>,
}

/// `writers` clients upserting `batch` vectors each, back to back, for `secs`.
fn load(base: &str, vectors: &[Vec<f32>], writers: usize, batch: usize, secs: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let out = Arc::new(Mutex::new((Vec::new(), Vec::new(), 0u64)));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (stop, next, out, base) =
                (Arc::clone(&stop), Arc::clone(&next), Arc::clone(&out), base.to_owned());
            let vectors = vectors.to_vec();
            std::thread::spawn(move || {
                let agent = agent(Duration::from_secs(60));
                let url = format!("{base}/vectors/index/bench/add");
                let (mut latencies, mut acks, mut errors) = (Vec::new(), Vec::new(), 0);
                while !stop.load(Ordering::Acquire) {
                    let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                    let items: Vec<Value> = (0..batch as u64)
                        .map(|i| {
                            let n = first + i;
                            json!({"id": format!("v{n}"), "vector": vectors[n as usize % vectors.len()]})
                        })
                        .collect();
                    let sent = Instant::now();
                    let (code, answer) = call(&agent, "POST", &url, Some(&json!({"items": items})));
                    let now = Instant::now();
                    if code == 200 {
                        latencies.push(now - sent);
                        acks.push((answer["seq"].as_u64().unwrap_or(0), now));
                    } else {
                        errors += 1;
                    }
                }
                let mut out = out.lock().unwrap();
                out.0.extend(latencies);
                out.1.extend(acks);
                out.2 += errors;
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let (mut latencies, acks, errors) = std::mem::take(&mut *out.lock().unwrap());
    latencies.sort();
    Load { acked: latencies.len() as u64, errors, elapsed, latencies, acks }
}

fn create(base: &str) {
    let agent = agent(Duration::from_secs(60));
    let (code, answer) = call(
        &agent,
        "POST",
        &format!("{base}/vectors/index"),
        Some(&json!({"name": "bench", "dimension": 384})),
    );
    assert_eq!(code, 201, "{answer}");
}

fn report(name: &str, load: &Load, batch: usize) {
    let rate = load.acked as f64 / load.elapsed.as_secs_f64();
    println!(
        "{name:<26} {:>9.0} writes/s {:>9.0} vectors/s   p50 {:>7.2} ms  p99 {:>7.2} ms  ({} acked, {} errors)",
        rate,
        rate * batch as f64,
        percentile(&load.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&load.latencies, 0.99).as_secs_f64() * 1e3,
        load.acked,
        load.errors
    );
}

fn status(agent: &ureq::Agent, base: &str) -> Value {
    call(agent, "GET", &format!("{base}/admin/cluster"), None).1
}

fn main() {
    let secs = env_or::<u64>("ANNAL_CLUSTER_SECS", 15);
    let writers = env_or::<u64>("ANNAL_CLUSTER_WRITERS", 8) as usize;
    let batch = env_or::<u64>("ANNAL_CLUSTER_BATCH", 1) as usize;
    let vectors: Vec<Vec<f32>> = fvecs("base.fvecs").into_iter().take(20_000).collect();
    println!("{writers} writers, {batch} vector(s) of 384 per write, {secs} s per setup");

    // 1. The embedded log: one node, redb, fsync per group commit.
    let dir = bench_dir();
    let (child, base) = start_server(dir.path(), &[]);
    wait_ready(&agent(Duration::from_secs(5)), &base, Duration::from_secs(60));
    create(&base);
    let embedded = load(&base, &vectors, writers, batch, secs);
    report("embedded redb log", &embedded, batch);
    stop(child);

    // 2. The JetStream log: 3 nats-servers (R3, sync_interval always), node a takes
    // the writes, node b is a replica whose lag is sampled.
    let nats = nats::Nats::start(3);
    let (da, db) = (bench_dir(), bench_dir());
    // Every node's primary bucket is one S3 bucket, so that snapshots are shared.
    let conf = bench_dir();
    let moto =
        s3::MotoServer::start("annal-bench").map_err(|why| println!("no shared snapshots: {why}")).ok();
    let buckets = conf.path().join("buckets.toml");
    if let Some(moto) = &moto {
        std::fs::write(&buckets, moto.config_toml("primary", conf.path(), None)).unwrap();
    }
    let flags = |node: &str| -> Vec<String> {
        let mut flags: Vec<String> =
            ["--cluster", &nats.url(), "--node", node].iter().map(|s| (*s).to_owned()).collect();
        if moto.is_some() {
            flags.extend(["--buckets-config".to_owned(), buckets.display().to_string()]);
        }
        flags
    };
    let (a, base_a) = start_server(da.path(), &flags("a"));
    let (b, base_b) = start_server(db.path(), &flags("b"));
    let probe = agent(Duration::from_secs(5));
    wait_ready(&probe, &base_a, Duration::from_secs(60));
    wait_ready(&probe, &base_b, Duration::from_secs(60));
    create(&base_a);
    // The replica's applied sequence number over time, sampled every 2 ms.
    let sampling = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::<(Instant, u64)>::new()));
    let sampler = {
        let (sampling, samples, base_b) = (Arc::clone(&sampling), Arc::clone(&samples), base_b.clone());
        std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(5));
            while sampling.load(Ordering::Acquire) {
                let applied = status(&agent, &base_b)["applied_seq"].as_u64().unwrap_or(0);
                samples.lock().unwrap().push((Instant::now(), applied));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let clustered = load(&base_a, &vectors, writers, batch, secs);
    report("JetStream log (R3)", &clustered, batch);
    std::thread::sleep(Duration::from_secs(2));
    sampling.store(false, Ordering::Release);
    sampler.join().unwrap();
    // Replica lag of each acknowledged write: from its ack on a to the first sample of
    // b that had applied it.
    let samples = samples.lock().unwrap().clone();
    let mut lags: Vec<Duration> = clustered
        .acks
        .iter()
        .filter_map(|(seq, acked)| {
            samples
                .iter()
                .find(|(_, applied)| applied >= seq)
                .map(|(at, _)| at.saturating_duration_since(*acked))
        })
        .collect();
    lags.sort();
    println!(
        "replica lag after ack        p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} writes; sampled every 2 ms)",
        percentile(&lags, 0.50).as_secs_f64() * 1e3,
        percentile(&lags, 0.99).as_secs_f64() * 1e3,
        lags.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lags.len()
    );
    println!(
        "JetStream / embedded         {:.2}x the write rate, {:.2}x the p99 latency",
        clustered.acked as f64
            / clustered.elapsed.as_secs_f64()
            / (embedded.acked as f64 / embedded.elapsed.as_secs_f64()),
        percentile(&clustered.latencies, 0.99).as_secs_f64()
            / percentile(&embedded.latencies, 0.99).as_secs_f64()
    );

    // 3. Catch-up: a replica started empty copies and applies the whole stream.
    let last = status(&probe, &base_a)["last_seq"].as_u64().unwrap_or(0);
    let dc = bench_dir();
    let (c, took) = catch_up(&probe, dc.path(), &flags("c"), last);
    println!(
        "empty replica catch-up       {last} events ({} vectors) in {:.2} s: {:.0} events/s, {:.0} vectors/s (process start included)",
        last.saturating_sub(1) * batch as u64,
        took.as_secs_f64(),
        last as f64 / took.as_secs_f64(),
        last.saturating_sub(1) as f64 * batch as f64 / took.as_secs_f64()
    );
    let mut children = vec![a, b, c];

    // 4. The same, beginning from the cluster's shared snapshot: node a snapshots at
    // the stream's end, 1,000 more writes follow, and a new node restores the snapshot
    // and copies only those.
    if moto.is_some() {
        while status(&probe, &base_a)["snapshot_lease"] != true {
            std::thread::sleep(Duration::from_millis(100));
        }
        let snapshot_started = Instant::now();
        let (code, taken) = call(&probe, "POST", &format!("{base_a}/admin/snapshots"), Some(&json!({})));
        assert_eq!(code, 200, "{taken}");
        let snapshot_took = snapshot_started.elapsed();
        while status(&probe, &base_a)["snapshot_pointer"]["seq"] != taken["seq"] {
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = load_n(&base_a, &vectors, 1_000);
        let last = status(&probe, &base_a)["last_seq"].as_u64().unwrap_or(0);
        let dd = bench_dir();
        let (d, from_snapshot) = catch_up(&probe, dd.path(), &flags("d"), last);
        println!(
            "replica from snapshot + tail {last} events: a snapshot as of {} ({} MiB) taken in {:.2} s; restored and {tail} events of tail copied in {:.2} s, {:.2}x the full catch-up's time",
            taken["seq"],
            taken["bytes"].as_u64().unwrap_or(0) >> 20,
            snapshot_took.as_secs_f64(),
            from_snapshot.as_secs_f64(),
            from_snapshot.as_secs_f64() / took.as_secs_f64(),
        );
        children.push(d);
    }
    for child in children {
        stop(child);
    }
}

/// Start a node on the empty `dir` and wait until it applied event `last` with nothing
/// left to copy; the process and how long that took.
fn catch_up(
    probe: &ureq::Agent,
    dir: &std::path::Path,
    flags: &[String],
    last: u64,
) -> (std::process::Child, Duration) {
    let started = Instant::now();
    let (child, base) = start_server(dir, flags);
    loop {
        let s = status(probe, &base);
        if s["applied_seq"].as_u64().unwrap_or(0) >= last && s["lag_messages"] == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "replica {base} never caught up: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, started.elapsed())
}

/// `n` single-vector writes, one after the other; how many were acknowledged.
fn load_n(base: &str, vectors: &[Vec<f32>], n: usize) -> usize {
    let agent = agent(Duration::from_secs(30));
    (0..n)
        .filter(|i| {
            let item = json!({"id": format!("tail-{i}"), "vector": vectors[i % vectors.len()]});
            call(&agent, "POST", &format!("{base}/vectors/index/bench/add"), Some(&json!({"items": [item]})))
                .0
                == 200
        })
        .count()
}
