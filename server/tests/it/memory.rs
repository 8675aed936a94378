//! Server memory under hostile bodies: one 60 MiB request, then four at once against a
//! body budget that fits two. Measured from the server process's /proc status.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};

use serde_json::json;

use crate::common::server;

use server::Server;

const MIB: u64 = 1024 * 1024;

/// A field of /proc/<pid>/status in bytes (`VmHWM`, `VmRSS`).
fn vm_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// An add of one item whose metadata is a JSON array of numbers, `bytes` long in all.
fn hostile_add(bytes: usize) -> Vec<u8> {
    let head = br#"{"items": [{"id": "big", "vector": [1.0, 0.0, 0.0], "metadata": [1"#;
    let tail = b"]}]}";
    let mut body = Vec::with_capacity(bytes);
    body.extend_from_slice(head);
    // One-digit numbers: the most values per byte, the worst case for a parsed tree.
    while body.len() + 2 + tail.len() <= bytes {
        body.extend_from_slice(b",1");
    }
    body.extend_from_slice(tail);
    body
}

fn started_with_an_index(dir: &std::path::Path, flags: &[&str]) -> Server {
    let server = Server::start_with(dir, flags);
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 3})).0, 201);
    let small = json!({"items": [{"id": "a", "vector": [1.0, 0.0, 0.0], "metadata": {"n": 1}}]});
    assert_eq!(server.post("/vectors/index/docs/add", small).0, 200);
    server
}

#[test]
fn a_60_mib_metadata_request_grows_the_server_by_a_small_multiple_of_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = started_with_an_index(dir.path(), &[]);
    let body = hostile_add(60 * MIB as usize);
    let before_rss = vm_bytes(server.pid(), "VmRSS");
    let before_seq = server.last_seq();

    let mut response = server
        .agent
        .post(format!("{}/vectors/index/docs/add", server.base))
        .header("content-type", "application/json")
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(status, 400, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.starts_with("items[0].metadata: is "), "{detail}");
    assert!(detail.contains("over the limit of 65536"), "{detail}");

    let peak = vm_bytes(server.pid(), "VmHWM");
    let growth = peak.saturating_sub(before_rss);
    eprintln!(
        "body {:.1} MiB: RSS before {} MiB, peak after {} MiB, growth {} MiB ({:.2}x the body)",
        body.len() as f64 / MIB as f64,
        before_rss / MIB,
        peak / MIB,
        growth / MIB,
        growth as f64 / body.len() as f64
    );
    assert!(growth < 3 * body.len() as u64, "grew {growth} bytes for a body of {}", body.len());
    assert_eq!(server.last_seq(), before_seq, "the refused add committed nothing");
}

/// One request sent by hand: headers and the first `prefix` bytes of its body, then,
/// once `go` is passed, the rest. Returns what the server answered, as text.
fn send_in_two_parts(host: &str, body: &[u8], prefix: usize, go: &Barrier) -> String {
    let mut stream = TcpStream::connect(host).unwrap();
    let head = format!(
        "POST /vectors/index/docs/add HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A refused request's body is never read: the server answers and closes, so these
    // writes may fail; its answer is still in the socket to be read.
    let _ = stream.write_all(&[head.as_bytes(), &body[..prefix]].concat());
    go.wait();
    let _ = stream.write_all(&body[prefix..]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of one series in a scrape, or 0 when it is not exported yet.
fn series(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

#[test]
fn four_60_mib_requests_past_a_budget_of_two_get_503_for_two_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 128 * MIB;
    let server = started_with_an_index(dir.path(), &["--inflight-body-bytes", &budget.to_string()]);
    let body = Arc::new(hostile_add(60 * MIB as usize));
    let before_rss = vm_bytes(server.pid(), "VmRSS");
    let before_seq = server.last_seq();

    // Each request sends its headers and a little of its body, so that the admitted
    // ones hold their room until released: which two are admitted is up to the
    // scheduler, but that exactly two are is not.
    let go = Arc::new(Barrier::new(5));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (host, body, go) = (server.host().to_owned(), Arc::clone(&body), Arc::clone(&go));
            std::thread::spawn(move || send_in_two_parts(&host, &body, 64 * 1024, &go))
        })
        .collect();
    let refused_series =
        "annal_http_requests_total{method=\"POST\",route=\"/vectors/index/{name}/add\",status=\"503\"}";
    let reserved = body.len().div_ceil(1024) as u64 * 1024;
    let mut polls = 0;
    loop {
        let text = server.metrics();
        if series(&text, refused_series) == 2 {
            assert_eq!(series(&text, "annal_http_inflight_body_bytes"), 2 * reserved, "{text}");
            break;
        }
        polls += 1;
        assert!(polls < 6000, "the four requests were never all admitted or refused:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    go.wait();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let peak = vm_bytes(server.pid(), "VmHWM");
    let growth = peak.saturating_sub(before_rss);
    eprintln!(
        "4 x {:.1} MiB, budget {} MiB: RSS before {} MiB, peak after {} MiB, growth {} MiB",
        body.len() as f64 / MIB as f64,
        budget / MIB,
        before_rss / MIB,
        peak / MIB,
        growth / MIB
    );
    let served =
        answers.iter().filter(|a| a.starts_with("HTTP/1.1 400") && a.contains("items[0].metadata")).count();
    let refused = answers
        .iter()
        .filter(|a| {
            a.starts_with("HTTP/1.1 503") && a.contains("retry-after: 1") && a.contains("\"overloaded\"")
        })
        .count();
    assert_eq!((served, refused), (2, 2), "{answers:#?}");
    // Without the budget four bodies would be held at once.
    assert!(growth < 3 * body.len() as u64, "grew {growth} bytes for four bodies of {}", body.len());
    assert_eq!(series(&server.metrics(), "annal_http_inflight_body_bytes"), 0);
    assert_eq!(server.last_seq(), before_seq, "nothing was committed");
}

#[test]
fn four_reads_of_a_200_mib_object_at_once_stream_it_and_keep_the_server_small() {
    let dir = tempfile::tempdir().unwrap();
    // Placed straight into the local primary bucket's directory, as an engine-written
    // snapshot would be: larger than any HTTP body.
    let size = 200 * MIB as usize;
    let object: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("buckets/primary/snapshots")).unwrap();
    std::fs::write(dir.path().join("buckets/primary/snapshots/big.snap"), &object).unwrap();
    let server = Server::start(dir.path());
    let before = vm_bytes(server.pid(), "VmRSS");
    let host = server.host().to_owned();
    let barrier = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (host, barrier) = (host.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&host).unwrap();
                barrier.wait();
                write!(stream, "GET /storage/buckets/primary/objects/snapshots/big.snap HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
                // A slow reader: the server must not buffer what it cannot send yet.
                let mut head = Vec::new();
                let (mut body_bytes, mut sum) = (0usize, 0u64);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    let mut chunk = &buf[..n];
                    if !head.ends_with(b"\r\n\r\n") {
                        let end = head.len();
                        head.extend_from_slice(chunk);
                        let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        head.truncate(at + 4);
                        chunk = &chunk[at + 4 - end..];
                    }
                    body_bytes += chunk.len();
                    sum = chunk.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
                    if body_bytes % (8 * MIB as usize) < chunk.len() {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                (String::from_utf8_lossy(&head).into_owned(), body_bytes, sum)
            })
        })
        .collect();
    let mut peak = before;
    while !readers.iter().all(|r| r.is_finished()) {
        peak = peak.max(vm_bytes(server.pid(), "VmRSS"));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let expected_sum = object.iter().fold(0u64, |s, b| s.wrapping_add(u64::from(*b)));
    for reader in readers {
        let (head, body_bytes, sum) = reader.join().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains(&format!("content-length: {size}")), "{head}");
        assert_eq!((body_bytes, sum), (size, expected_sum), "the body is the object");
    }
    let growth = peak.saturating_sub(before);
    println!(
        "resident before {} MiB, peak growth {} MiB over four 200 MiB reads",
        before / MIB,
        growth / MIB
    );
    assert!(growth < 64 * MIB, "reads were buffered: grew {} MiB", growth / MIB);
}
