//! Memory that must not grow. The measurement runs in a process of its own (this test
//! binary started again with only this test), so that no other test's allocations move
//! the resident size it reads.

use std::process::Command;

use annal_engine::event::VectorItem;
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Set in the child process that runs the measurement.
const CHILD_ENV: &str = "ANNAL_MEMORY_TEST_CHILD";

#[test]
fn searching_an_index_with_tombstones_does_not_leak_native_memory() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let name = "memory::searching_an_index_with_tombstones_does_not_leak_native_memory";
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the measuring process failed:\n{stdout}\n{stderr}");
        // The filter matched exactly this test, so the child really measured.
        assert!(stdout.contains("1 passed"), "the measuring process ran no test:\n{stdout}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "x", 8, Metric::L2, HnswConfig::default()).unwrap();
    let items: Vec<VectorItem> = (0..5000)
        .map(|i| VectorItem {
            id: i.to_string(),
            vector: (0..8).map(|j| ((i * 7 + j) % 97) as f32).collect(),
            metadata: None,
            partition: None,
        })
        .collect();
    engine.upsert("t", "x", items).unwrap();
    // Tombstones below the rebuild share: every search passes a selector to FAISS.
    engine.delete("t", "x", (0..100).map(|i| i.to_string()).collect()).unwrap();
    let search = |n: usize| {
        for i in 0..n {
            assert_eq!(engine.search("x", vec![(i % 50) as f32; 8], 10).unwrap().len(), 10);
        }
    };
    search(20_000);
    let before = rss_kb();
    search(100_000);
    let grown = rss_kb().saturating_sub(before);
    // A leaked FAISS selector per search grew this by about 3 MB per 100,000 searches.
    assert!(grown < 1024, "resident memory grew by {grown} kB over 100,000 searches");
    assert_eq!(engine.stats().indexes[0].tombstones, 100);
}
