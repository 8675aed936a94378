//! A real full disk (a small tmpfs, mounted by the test as root): the write that meets
//! it fails naming the cause, `/healthz` says why the server refuses writes, and after
//! space is freed a restart recovers with every acknowledged write in place and the
//! failed batch all or nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

/// A tmpfs of `mb` MiB, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mb: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { path, _dir: dir })
    }

    fn grow(&self, mb: u32) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn vector(i: u64) -> Vec<f32> {
    (0..256).map(|j| ((i * 257 + j) % 1000) as f32 / 100.0 + i as f32).collect()
}

fn add(server: &Server, first: u64, n: u64) -> (u16, Value) {
    let items: Vec<Value> =
        (first..first + n).map(|i| json!({"id": format!("v{i}"), "vector": vector(i)})).collect();
    server.post("/vectors/index/docs/add", json!({"items": items}))
}

fn present(server: &Server, i: u64) -> bool {
    let (status, body) = server.post("/vectors/index/docs/search", json!({"vector": vector(i), "k": 1}));
    assert_eq!(status, 200, "{body}");
    body["results"][0]["id"] == format!("v{i}") && body["results"][0]["distance"] == 0.0
}

#[test]
fn a_full_disk_fails_the_write_naming_it_is_reported_on_healthz_and_nothing_acknowledged_is_lost() {
    let Some(disk) = Tmpfs::mount(24) else {
        // Mounting needs root (CI and the development machines run as root).
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    let data: &Path = &disk.path.join("data");
    // No snapshots: the log alone fills the disk.
    let server = Server::start_with(data, &["--snapshot-every-events", "0"]);
    assert_eq!(
        server.post("/vectors/index", json!({"name": "docs", "dimension": 256, "distance": "l2"})).0,
        201
    );
    let batch = 200;
    let mut acknowledged = 0u64;
    let (status, refused) = loop {
        let (status, body) = add(&server, acknowledged, batch);
        if status != 200 {
            break (status, body);
        }
        acknowledged += batch;
        assert!(acknowledged < 1_000_000, "the disk never filled");
    };
    assert!(acknowledged > 0, "some writes went in first");
    assert_eq!(status, 500, "{refused}");
    assert_eq!(refused["error"], "outcome_unknown", "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("No space left on device"), "the write's error names the cause: {detail}");
    // The server says why it refuses writes, and refuses them.
    let (status, health) = server.get("/healthz");
    assert_eq!(status, 503, "{health}");
    assert!(health["detail"].as_str().unwrap().contains("No space left on device"), "{health}");
    let (status, later) = add(&server, 10_000_000, 1);
    assert_eq!(status, 503, "{later}");
    server.kill();

    // Space is freed; a restart recovers.
    disk.grow(512);
    let server = Server::start(data);
    let (status, index) = server.get("/vectors/index/docs");
    assert_eq!(status, 200);
    let length = index["length"].as_u64().unwrap();
    assert!(
        length == acknowledged || length == acknowledged + batch,
        "{length} vs {acknowledged} acknowledged"
    );
    for i in (0..acknowledged).step_by(97).chain([acknowledged - 1]) {
        assert!(present(&server, i), "acknowledged v{i} is lost");
    }
    // The batch whose commit failed is there whole or not at all.
    let failed: Vec<bool> =
        (acknowledged..acknowledged + batch).step_by(20).map(|i| present(&server, i)).collect();
    assert!(failed.iter().all(|p| *p) || failed.iter().all(|p| !*p), "{failed:?}");
    // And writes go on.
    assert_eq!(add(&server, 20_000_000, 10).0, 200);
    drop(server);
}
