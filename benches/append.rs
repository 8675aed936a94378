//! Durable append throughput beside this machine's own limits, measured in one run:
//! the 4 KiB write+fsync rate and sequential write bandwidth of the same disk, then
//! group-commit appends of 384-d vector events at 1, 8 and 64 concurrent appenders,
//! one event and 64 events per append.
//!
//! `cargo bench -p annal-benches --bench append` (set `ANNAL_BENCH_DIR` to measure a
//! disk other than the temp dir's; `ANNAL_BENCH_SECS` for the time per case, default 3).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_benches::{bench_dir, run_for};
use annal_engine::event::{encode, Event, EventBody, VectorItem, VectorsUpserted};
use annal_engine::{Log, LogConfig, LogStats};

const DIM: usize = 384;

fn main() {
    let secs = std::env::var("ANNAL_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3u64);
    let budget = Duration::from_secs(secs);
    let dir = bench_dir();
    println!("bench dir: {}", dir.path().display());

    let fsync_per_s = fsync_rate(&dir, budget);
    let seq_mb_s = sequential_bandwidth(&dir);
    println!("limit  4 KiB write+fsync: {fsync_per_s:>10.0} /s");
    println!("limit  sequential write : {seq_mb_s:>10.1} MB/s");

    let event = vector_event(0);
    let frame_bytes = encode(&event).expect("encode").len();
    // What redb itself does with the same values, one thread, no queue and no encoding:
    // the ceiling the log's group commit can approach.
    for per_txn in [1usize, 64, 4096] {
        let events_s = raw_redb_rate(&dir, frame_bytes, per_txn, budget);
        println!(
            "limit  raw redb, {per_txn:>4} values of {frame_bytes} B per durable txn: {events_s:>8.0} values/s {:>7.1} MB/s",
            events_s * frame_bytes as f64 / 1e6
        );
    }
    println!("event: one {DIM}-d vector, {frame_bytes} bytes framed\n");
    println!(
        "{:>9} {:>10} {:>12} {:>9} {:>12} {:>10} {:>14} {:>14}",
        "appenders",
        "per_append",
        "events/s",
        "MB/s",
        "x_1_appender",
        "of_seq_bw",
        "events/commit",
        "us/commit"
    );
    for per_append in [1usize, 64] {
        let mut base = None;
        for appenders in [1usize, 8, 64] {
            let (events_s, stats) = append_rate(&dir, appenders, per_append, budget);
            let mb_s = events_s * frame_bytes as f64 / 1e6;
            let base = *base.get_or_insert(events_s);
            println!(
                "{appenders:>9} {per_append:>10} {events_s:>12.0} {mb_s:>9.1} {:>12.1} {:>9.0}% {:>14.1} {:>14.0}",
                events_s / base,
                100.0 * mb_s / seq_mb_s,
                stats.last_seq as f64 / stats.commits as f64,
                stats.commit_ns as f64 / stats.commits as f64 / 1e3,
            );
        }
    }
}

fn vector_event(i: usize) -> Event {
    let vector = (0..DIM).map(|j| ((i * 31 + j) % 997) as f32 / 997.0).collect();
    let item = VectorItem { id: format!("doc-{i}"), vector, metadata: None, partition: None };
    Event::new(
        "bench",
        EventBody::VectorsUpserted(VectorsUpserted { index: "bench".into(), items: vec![item] }),
    )
}

fn fsync_rate(dir: &tempfile::TempDir, budget: Duration) -> f64 {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.path().join("fsync"))
        .expect("open");
    let block = [0x5au8; 4096];
    let (n, elapsed) = run_for(budget, || {
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(&block).expect("write");
        file.sync_data().expect("fsync");
    });
    n as f64 / elapsed.as_secs_f64()
}

fn sequential_bandwidth(dir: &tempfile::TempDir) -> f64 {
    const TOTAL: usize = 512 << 20;
    let path = dir.path().join("seq");
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("open");
    let chunk = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..TOTAL / chunk.len() {
        file.write_all(&chunk).expect("write");
    }
    file.sync_all().expect("fsync");
    let mb_s = TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6;
    drop(file);
    let _ = std::fs::remove_file(path);
    mb_s
}

fn raw_redb_rate(dir: &tempfile::TempDir, value_bytes: usize, per_txn: usize, budget: Duration) -> f64 {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raw");
    let path = dir.path().join(format!("raw-{per_txn}.redb"));
    let db = redb::Database::create(&path).expect("create");
    let value = vec![0x3cu8; value_bytes];
    let mut seq = 0u64;
    let (txns, elapsed) = run_for(budget, || {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            for _ in 0..per_txn {
                seq += 1;
                table.insert(seq, value.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    });
    drop(db);
    let _ = std::fs::remove_file(path);
    (txns * per_txn as u64) as f64 / elapsed.as_secs_f64()
}

fn append_rate(
    dir: &tempfile::TempDir,
    appenders: usize,
    per_append: usize,
    budget: Duration,
) -> (f64, LogStats) {
    let path = dir.path().join(format!("log-{appenders}-{per_append}.redb"));
    let log = Arc::new(Log::open(&path, LogConfig::default()).expect("open log"));
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let (log, stop, appended) = (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&appended));
            std::thread::spawn(move || {
                let events: Vec<Event> = (0..per_append).map(|i| vector_event(t * 1000 + i)).collect();
                while !stop.load(Ordering::Relaxed) {
                    log.append(&events).expect("append");
                    appended.fetch_add(events.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Measure a steady window after a short warm-up.
    std::thread::sleep(Duration::from_millis(300));
    let (start_count, start) = (appended.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(budget);
    let events = appended.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("appender thread");
    }
    let stats = log.stats();
    drop(log);
    let _ = std::fs::remove_file(path);
    (events as f64 / elapsed.as_secs_f64(), stats)
}
