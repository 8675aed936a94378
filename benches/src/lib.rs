//! Shared helpers for the benchmark binaries.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// The shared real-embedding data (`ANNAL_DATA_DIR`, else `../shared/data` beside the
/// repository).
pub fn data_dir() -> std::path::PathBuf {
    std::env::var_os("ANNAL_DATA_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        std::path::PathBuf::from,
    )
}

/// Rows of a TEXMEX `.fvecs` / `.ivecs` file as 4-byte little-endian words.
pub fn read_vecs(name: &str) -> Vec<Vec<[u8; 4]>> {
    let path = data_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((dim, tail)) = rest.split_first_chunk::<4>() {
        let dim = i32::from_le_bytes(*dim) as usize;
        let (row, tail) = tail.split_at(4 * dim);
        rows.push(row.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect());
        rest = tail;
    }
    rows
}

/// Float rows of an `.fvecs` file.
pub fn fvecs(name: &str) -> Vec<Vec<f32>> {
    read_vecs(name).into_iter().map(|r| r.into_iter().map(f32::from_le_bytes).collect()).collect()
}

/// Integer rows of an `.ivecs` file.
pub fn ivecs(name: &str) -> Vec<Vec<i32>> {
    read_vecs(name).into_iter().map(|r| r.into_iter().map(i32::from_le_bytes).collect()).collect()
}

/// Percentile (0..=100) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// splitmix64: a seeded, portable stream of pseudo-random words.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `v` scaled to unit length.
pub fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `n` unit vectors: the shared base vectors, then seeded perturbed copies of them
/// (uniform noise of ±0.02 per dimension, renormalised: a copy sits at cosine ~0.97
/// from its original).
pub fn perturbed(n: usize) -> Vec<Vec<f32>> {
    let base = fvecs("base.fvecs");
    (0..n)
        .map(|i| {
            let mut v = base[i % base.len()].clone();
            if i >= base.len() {
                for (j, x) in v.iter_mut().enumerate() {
                    let r = mix((i as u64) << 16 | j as u64);
                    *x += ((r >> 11) as f64 / (1u64 << 53) as f64 * 0.04 - 0.02) as f32;
                }
            }
            normalised(v)
        })
        .collect()
}

/// The value of environment variable `name` as a number, or `default` when it is
/// unset or not a number (the benches' size and time knobs).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Start the release `annal serve` on `data`, listening on a free loopback port, with
/// `extra` arguments: the child and its base URL (`http://host:port`). Its log is
/// drained in the background so it never blocks on a full pipe.
pub fn start_server(data: &Path, extra: &[String]) -> (Child, String) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/annal");
    assert!(bin.exists(), "build it first: cargo build --release -p annal-server");
    let mut child = Command::new(bin)
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("ANNAL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("read") > 0, "server exited");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().expect("addr").to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, format!("http://{addr}"))
}

/// An HTTP client for the bench servers: statuses are answers, not errors; each call
/// may take up to `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// `GET` (no body) or `POST` (`body` as JSON, or empty) `url`; the status and the answer
/// as JSON (a string when it is not JSON). Panics on a transport failure.
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(body)) => agent.post(url).send_json(body),
        (_, None) => agent.post(url).send_empty(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Poll the server at `base` until `/readyz` answers 200 (panics after `timeout`).
pub fn wait_ready(agent: &ureq::Agent, base: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while call(agent, "GET", &format!("{base}/readyz"), None).0 != 200 {
        assert!(Instant::now() < deadline, "not ready after {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stop a server cleanly (SIGTERM: the log is made durable, the projector stopped).
pub fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Resident memory of process `pid` (`VmRSS`), in MiB; 0 when unreadable.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The exact `k` nearest positions in `data` (n*dim floats) of each query by inner
/// product, nearest first: a FAISS `Flat` over all of it.
pub fn exact_ip_truth(data: &[f32], dim: usize, queries: &[Vec<f32>], k: usize) -> Vec<Vec<i64>> {
    use faiss::Index;
    let mut exact = faiss::index_factory(dim as u32, "Flat", faiss::MetricType::InnerProduct).expect("Flat");
    exact.add(data).expect("add");
    queries
        .iter()
        .map(|q| {
            exact
                .search(q, k)
                .expect("search")
                .labels
                .iter()
                .filter_map(|l| l.get().map(|v| v as i64))
                .collect()
        })
        .collect()
}
