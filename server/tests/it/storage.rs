//! The storage routes over HTTP: a real `annal serve` process with a bucket config file,
//! and the router in process where faults are injected into the buckets.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_engine::event::BucketOp;
use annal_engine::FaultyStore;
use annal_engine::{BucketsConfig, EngineConfig, Hooks};
use annal_server::http::INFLIGHT_BODY_BYTES_DEFAULT;
use serde_json::Value;

use crate::common::app;
use crate::common::server;

use app::App;
use server::{raw_status, Server};

const MIRRORED: &str =
    "[buckets.primary]\nbackend = \"local\"\nroot = \"buckets/primary\"\nrescue = \"mirror\"\n\n\
                        [buckets.mirror]\nbackend = \"local\"\nroot = \"buckets/mirror\"\n";

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("buckets.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Wait until the start-up probe of every bucket has answered.
fn probed(server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.get("/storage/buckets");
        assert_eq!(status, 200, "{body}");
        if body["buckets"].as_array().unwrap().iter().all(|b| !b["reachable"].is_null()) {
            return body;
        }
        assert!(Instant::now() < deadline, "the start-up probes never ran: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn objects_round_trip_over_http_and_buckets_are_listed_with_their_probe() {
    let data = tempfile::tempdir().unwrap();
    let config = write_config(data.path(), MIRRORED);
    let server = Server::start_with(data.path(), &["--buckets-config", &config]);
    let buckets = probed(&server);
    let names: Vec<&str> =
        buckets["buckets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mirror", "primary"]);
    let primary = &buckets["buckets"][1];
    assert_eq!((primary["backend"].as_str(), primary["rescue"].as_str()), (Some("local"), Some("mirror")));
    assert!(primary["root"].as_str().unwrap().ends_with("buckets/primary"), "{primary}");
    assert_eq!(primary["reachable"], true);

    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let (status, put) = server.put_bytes("/storage/buckets/primary/objects/exports/docs.bin", &body);
    assert_eq!((status, put["size"].as_u64()), (200, Some(200_000)), "{put}");
    let (status, rescue, got) = server.get_bytes("/storage/buckets/primary/objects/exports/docs.bin");
    assert_eq!((status, rescue), (200, None));
    assert!(got == body, "the bytes read are the bytes written");
    let (_, listing) = server.get("/storage/buckets/primary/objects?prefix=exports");
    assert_eq!(listing["objects"][0]["key"], "exports/docs.bin", "{listing}");
    assert_eq!(listing["objects"][0]["size"], 200_000);
    assert_eq!(server.call("DELETE", "/storage/buckets/primary/objects/exports/docs.bin", None).0, 200);
    let (status, missing) = server.get("/storage/buckets/primary/objects/exports/docs.bin");
    assert_eq!((status, missing["error"].as_str()), (404, Some("not_found")), "{missing}");
    assert_eq!(server.get("/storage/buckets/nope/objects/a").0, 404);

    let (status, probe) = server.post("/storage/buckets/mirror/probe", serde_json::json!({}));
    assert_eq!(
        (status, probe["reachable"].as_bool(), probe["bucket"].as_str()),
        (200, Some(true), Some("mirror"))
    );
    let (_, errors) = server.get("/storage/errors");
    assert_eq!(errors["count"], 0, "{errors}");
    let (_, health) = server.get("/storage/bucket-health?minutes=5");
    assert_eq!((health["total"].as_u64(), health["healthy"].as_bool()), (Some(0), Some(true)), "{health}");
}

#[test]
fn keys_that_try_to_escape_are_refused_over_http_before_any_io() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let host = server.host().to_owned();
    // Sent as raw bytes: a client library would normalise `..` and `//` away.
    let paths = [
        "/storage/buckets/primary/objects/../x",
        "/storage/buckets/primary/objects/%2e%2e/x",
        "/storage/buckets/primary/objects//etc/passwd",
        "/storage/buckets/primary/objects/a//b",
        "/storage/buckets/primary/objects/",
        "/storage/buckets/primary/objects/a/./b",
        "/storage/buckets/primary/objects/a%00b",
        "/storage/buckets/primary/objects/a/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ];
    for path in paths {
        for method in ["PUT", "GET", "DELETE"] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            );
            assert_eq!(raw_status(&host, &request), 400, "{method} {path}");
        }
    }
    assert_eq!(raw_status(&host, &format!("GET /storage/buckets/primary/objects?prefix=../ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")), 400);
    let (_, listing) = server.get("/storage/buckets/primary/objects");
    assert_eq!(listing["objects"].as_array().unwrap().len(), 0, "nothing was written: {listing}");
    assert!(!data.path().join("x").exists() && !data.path().join("buckets/x").exists());
    assert_eq!(server.get("/storage/errors").1["count"], 0, "a refused key is not a bucket error");
}

#[test]
fn bad_queries_are_400_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    for (path, field) in [
        ("/storage/errors?op=rename", "op"),
        ("/storage/errors?limit=0", "limit"),
        ("/storage/errors?limit=2001", "limit"),
        ("/storage/errors?since=yesterday", "since"),
        ("/storage/errors?colour=red", "colour"),
        ("/storage/bucket-health?minutes=0", "minutes"),
        ("/storage/bucket-health?minutes=100000", "minutes"),
    ] {
        let (status, body) = server.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(field), "{path}: {body}");
    }
}

#[test]
fn an_unreachable_bucket_is_journaled_and_its_errors_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secrets = data.path().join("s3.toml");
    std::fs::write(&secrets, "access_key_id = \"AKIDHIDDEN\"\nsecret_access_key = \"do-not-print-me\"\n")
        .unwrap();
    let text = format!(
        "[buckets.gone]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"b\"\nallow_http = true\nsecrets_file = \"{}\"\n",
        secrets.display()
    );
    let config = write_config(data.path(), &text);

    // A secrets file others can read refuses the start, naming it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_annal"))
            .args(["serve", "--listen", "127.0.0.1:0", "--buckets-config", &config, "--data"])
            .arg(data.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(&secrets.display().to_string()) && stderr.contains("600"), "{stderr}");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let server = Server::start_with(data.path(), &["--buckets-config", &config]);
    let buckets = probed(&server);
    let gone = buckets["buckets"].as_array().unwrap().iter().find(|b| b["name"] == "gone").unwrap().clone();
    assert_eq!(gone["reachable"], false, "{gone}");
    assert_eq!(server.get("/storage/buckets/gone/objects/k").0, 502);
    let (status, body) = server.put_bytes("/storage/buckets/gone/objects/k", b"v");
    assert_eq!((status, body["error"].as_str()), (502, Some("bucket_error")), "{body}");
    let (_, before) = server.get("/storage/errors?bucket=gone");
    assert_eq!(before["count"], 3, "the start-up probe's write, the read and the write: {before}");
    assert_eq!(before["errors"][0]["op"], "write");
    assert_eq!(before["errors"][1]["op"], "read");
    let (_, health) = server.get("/storage/bucket-health?minutes=10");
    assert_eq!(health["unhealthy"], serde_json::json!(["gone"]), "{health}");
    let metrics = server.metrics();
    assert!(metrics.contains("annal_bucket_errors_total{bucket=\"gone\",op=\"write\"} 2"), "{metrics}");
    let shown = format!("{before} {buckets} {metrics} {body}");
    assert!(!shown.contains("do-not-print-me") && !shown.contains("AKIDHIDDEN"), "a secret leaked");
    server.terminate();

    let server = Server::start_with(data.path(), &["--buckets-config", &config]);
    let (_, after) = server.get("/storage/errors?bucket=gone&limit=2000");
    let after = after["errors"].as_array().unwrap().clone();
    let before = before["errors"].as_array().unwrap();
    assert_eq!(&after[after.len() - before.len()..], &before[..], "the journal is rebuilt from the log");
    assert_eq!(server.get("/storage/bucket-health?minutes=10").1["unhealthy"], serde_json::json!(["gone"]));
}

/// The fault wrappers the engine's buckets were opened with, by bucket.
type Faults = Arc<parking_lot::Mutex<Vec<(String, Arc<FaultyStore>)>>>;

/// The router in process over an engine whose buckets are wrapped in fault injectors.
fn faulty_app(text: &str) -> (App, Faults) {
    let faults: Faults = Arc::default();
    let seen = Arc::clone(&faults);
    let hooks = Hooks {
        wrap_store: Some(Arc::new(move |name: &str, store| {
            let faulty = Arc::new(FaultyStore::new(store));
            seen.lock().push((name.to_owned(), Arc::clone(&faulty)));
            faulty
        })),
        ..Hooks::default()
    };
    let buckets = BucketsConfig::parse(text, Path::new("buckets.toml"), |_| None).unwrap();
    let app = App::with_config(
        EngineConfig { hooks, buckets, ..EngineConfig::default() },
        INFLIGHT_BODY_BYTES_DEFAULT,
    );
    (app, faults)
}

fn fault(faults: &Faults, bucket: &str) -> Arc<FaultyStore> {
    Arc::clone(&faults.lock().iter().find(|(n, _)| n == bucket).unwrap().1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_rescued_by_the_mirror_carries_the_header_and_is_journaled_and_counted() {
    let (app, faults) = faulty_app(MIRRORED);
    for bucket in ["primary", "mirror"] {
        let put = app.put_bytes(&format!("/storage/buckets/{bucket}/objects/snap/1"), b"checkpoint").await;
        assert_eq!(put.status, 200, "{}", put.text());
    }
    fault(&faults, "primary").fail(BucketOp::Read);
    let got = app.get("/storage/buckets/primary/objects/snap/1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, b"checkpoint");
    assert_eq!(got.headers.get("x-annal-rescue-used").unwrap(), "mirror");
    let errors = app.get("/storage/errors?op=read").await.json();
    assert_eq!(errors["count"], 1, "{errors}");
    let entry = &errors["errors"][0];
    assert_eq!((entry["bucket"].as_str(), entry["rescued"].as_bool()), (Some("primary"), Some(true)));
    assert_eq!((entry["key"].as_str(), entry["actor"].as_str()), (Some("snap/1"), Some("http")));
    let metrics = app.get("/metrics").await;
    let metrics = metrics.text();
    assert!(metrics.contains("annal_bucket_rescued_reads_total{bucket=\"primary\"} 1"), "{metrics}");
    assert!(metrics.contains("annal_bucket_errors_total{bucket=\"primary\",op=\"read\"} 1"), "{metrics}");
    assert!(metrics.contains("annal_bucket_errors_total{bucket=\"mirror\",op=\"read\"} 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_over_http_marks_a_bucket_unhealthy_at_its_third_error_and_not_before() {
    let (app, faults) = faulty_app(MIRRORED);
    fault(&faults, "mirror").fail(BucketOp::Write);
    for n in 1..=3 {
        let put = app.put_bytes("/storage/buckets/mirror/objects/a", b"x").await;
        assert_eq!(put.status, 502, "{}", put.text());
        let health = app.get("/storage/bucket-health").await.json();
        assert_eq!(health["per_bucket"]["mirror"], n, "{health}");
        let unhealthy = health["unhealthy"].as_array().unwrap().len();
        assert_eq!(unhealthy, usize::from(n >= 3), "after {n} errors: {health}");
    }
    let errors = app.get("/storage/errors?bucket=mirror&op=write&limit=2").await.json();
    assert_eq!(errors["count"], 2);
    let since = errors["errors"][0]["time_ms"].as_u64().unwrap() + 1;
    assert_eq!(app.get(&format!("/storage/errors?since={since}")).await.json()["count"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_that_breaks_part_way_aborts_the_body_and_is_journaled() {
    let (app, faults) = faulty_app(MIRRORED);
    let object = vec![7u8; 1 << 20];
    assert_eq!(app.put_bytes("/storage/buckets/primary/objects/big", &object).await.status, 200);
    fault(&faults, "primary").break_reads_after(100_000);
    let (status, body) = app.get_streamed("/storage/buckets/primary/objects/big").await;
    assert_eq!(status, 200, "the read opened");
    assert!(body.is_err(), "the body must not end cleanly after a break");
    // Journaled from a task once the stream failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let errors = app.get("/storage/errors?op=read").await.json();
        if errors["count"] == 1 {
            assert_eq!(errors["errors"][0]["key"], "big", "{errors}");
            assert!(
                errors["errors"][0]["error"].as_str().unwrap().contains("injected read break"),
                "{errors}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the broken read was not journaled: {errors}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fault(&faults, "primary").heal();
    let (status, body) = app.get_streamed("/storage/buckets/primary/objects/big").await;
    assert_eq!((status, body.map(|b| b.len())), (200, Ok(1 << 20)));
}
