//! Shared helpers for the benchmark binaries.

use std::time::{Duration, Instant};

/// Directory for bench files: `ANNAL_BENCH_DIR`, else the system temp dir. It must be on
/// the disk being measured (not a tmpfs) for the fsync figures to mean anything.
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ANNAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench directory")
}

/// Run `op` repeatedly for about `budget`; returns (iterations, elapsed).
pub fn run_for(budget: Duration, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget {
        op();
        n += 1;
    }
    (n, start.elapsed())
}
