//! The local bucket against the filesystem it sits on: durable object writes and whole
//! reads through `Storage`, beside the same bytes written by hand with the same
//! durability (staging file, fsync, rename, fsync of the directory) and read with
//! `std::fs::read`, in the same run and directory.
//!
//! `cargo bench -p annal-benches --bench buckets`
//! Environment: `ANNAL_BENCH_OBJECTS` (default 32), `ANNAL_BENCH_OBJECT_MIB` (default 4).

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use annal_benches::{bench_dir, env_or};
use annal_engine::{Engine, EngineConfig};
use bytes::Bytes;

fn mib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

/// What the local backend does, by hand: the physical floor for a durable object write.
fn durable_write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let staging = dir.join(format!("{name}#1"));
    let mut file = File::create(&staging)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&staging, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn main() {
    let objects = env_or::<usize>("ANNAL_BENCH_OBJECTS", 32);
    let size = env_or::<usize>("ANNAL_BENCH_OBJECT_MIB", 4) << 20;
    let payload = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let dir = bench_dir();
    let engine = Engine::open(dir.path(), EngineConfig::default()).expect("open");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("raw dir");
    let total = objects * size;
    println!("{objects} objects of {} MiB, one at a time", size >> 20);

    let t = Instant::now();
    for i in 0..objects {
        durable_write(&raw_dir, &format!("o{i}"), &payload).expect("raw write");
    }
    let raw_put = t.elapsed();
    let t = Instant::now();
    runtime.block_on(async {
        for i in 0..objects {
            engine.storage().put("bench", "primary", &format!("o{i}"), payload.clone()).await.expect("put");
        }
    });
    let put = t.elapsed();

    let t = Instant::now();
    for i in 0..objects {
        let bytes = std::fs::read(raw_dir.join(format!("o{i}"))).expect("raw read");
        assert_eq!(bytes.len(), size);
    }
    let raw_get = t.elapsed();
    let t = Instant::now();
    runtime.block_on(async {
        for i in 0..objects {
            let got = engine.storage().get("bench", "primary", &format!("o{i}")).await.expect("get");
            assert_eq!(got.bytes.len(), size);
        }
    });
    let get = t.elapsed();

    println!(
        "{:<46} {:>9.1} MiB/s",
        "write by hand (staging, fsync, rename, fsync dir)",
        mib_per_s(total, raw_put)
    );
    println!(
        "{:<46} {:>9.1} MiB/s  ({:.2}x the time)",
        "Storage::put (local bucket)",
        mib_per_s(total, put),
        put.as_secs_f64() / raw_put.as_secs_f64()
    );
    println!("{:<46} {:>9.1} MiB/s", "std::fs::read (page cache)", mib_per_s(total, raw_get));
    println!(
        "{:<46} {:>9.1} MiB/s  ({:.2}x the time)",
        "Storage::get (local bucket, whole)",
        mib_per_s(total, get),
        get.as_secs_f64() / raw_get.as_secs_f64()
    );
}
