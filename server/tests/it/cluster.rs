//! The clustered log, as processes on loopback: three `nats-server`s (routes,
//! JetStream, `sync_interval: always`) and two or more `annal serve --cluster` nodes,
//! driven over HTTP and checked with the CLI. docs/SCALE-OUT.md's failure table names
//! these tests.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::nats::Nats;
use crate::common::server::Server;

const DIM: usize = 8;

fn vector(id: &str) -> Vec<f32> {
    let h = crc32fast::hash(id.as_bytes());
    (0..DIM).map(|j| ((h.rotate_left(j as u32 * 4) % 10_000) as f32) / 100.0 + j as f32).collect()
}

fn node(data: &Path, url: &str, name: &str) -> Server {
    Server::start_with(data, &["--cluster", url, "--node", name, "--max-lag", "100"])
}

fn items(ids: &[String]) -> Value {
    json!({ "items": ids.iter().map(|id| json!({"id": id, "vector": vector(id)})).collect::<Vec<_>>() })
}

/// Wait until `server` has copied and applied everything the stream holds.
fn caught_up(server: &Server, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, status) = server.get("/admin/cluster");
        if code == 200
            && status["lag_messages"] == 0
            && status["lag_events"] == 0
            && status["copied"] == status["stream_last"]
            && status["ready"] == true
        {
            return status;
        }
        assert!(Instant::now() < deadline, "{} never caught up: {status}", server.base);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn annal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_annal")).args(args).output().unwrap()
}

/// `annal replay --check --json` of a stopped node's data directory: its digest.
fn digest(data: &Path) -> String {
    digest_with(data, &[])
}

/// As [`digest`], with more flags (a bucket configuration).
fn digest_with(data: &Path, flags: &[&str]) -> String {
    let mut args = vec!["replay", "--check", "--json", "--data", data.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = annal(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay --check failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    report["digest"].as_str().unwrap().to_owned()
}

fn length(server: &Server) -> u64 {
    let (code, index) = server.get("/vectors/index/x");
    assert_eq!(code, 200, "{index}");
    index["length"].as_u64().unwrap()
}

#[test]
fn writes_through_either_node_are_applied_on_both_in_one_order_with_equal_digests() {
    let nats = Nats::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &nats.url(), "a");
    let b = node(db.path(), &nats.url(), "b");
    let (code, created) = a.post("/vectors/index", json!({"name": "x", "dimension": DIM, "distance": "l2"}));
    assert_eq!(code, 201, "{created}");
    let mut expected = HashSet::new();
    for round in 0..20 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let ids: Vec<String> = (0..5).map(|i| format!("r{round}-{i}")).collect();
        let (code, added) = writer.post("/vectors/index/x/add", items(&ids));
        assert_eq!(code, 200, "{added}");
        let seq = added["seq"].as_u64().unwrap();
        // Read-your-writes on the other node: min_seq waits until it applied the write.
        let (code, hits) = reader.post(
            &format!("/vectors/index/x/search?min_seq={seq}"),
            json!({"vector": vector(&ids[0]), "k": 1}),
        );
        assert_eq!(code, 200, "{hits}");
        assert_eq!(hits["results"][0]["id"], ids[0].as_str(), "the other node sees the write at once");
        expected.extend(ids);
    }
    // A create on the other node sees the first node's index: one schema for both.
    let (code, refused) = b.post("/vectors/index", json!({"name": "x", "dimension": 4}));
    assert_eq!(code, 409, "{refused}");
    // The same event numbers on both nodes: a sequence number means one event.
    let (sa, sb) = (caught_up(&a, Duration::from_secs(30)), caught_up(&b, Duration::from_secs(30)));
    assert_eq!(sa["last_seq"], sb["last_seq"]);
    assert_eq!(sa["last_seq"], 21, "1 create + 20 upserts, once each");
    assert_eq!(length(&a), expected.len() as u64);
    assert_eq!(length(&b), expected.len() as u64);
    // The operator's view: every node ready, as JSON lines.
    let out = annal(&["cluster", "status", "--json", "--node", &format!("{},{}", a.base, b.base)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["ready"] == true && l["last_seq"] == 21 && l["clustered"] == true));
    // One node holds each lease: the embedder's (it alone embeds documents) and the
    // snapshots' (it alone takes the scheduled snapshots).
    for lease in ["embedder_lease", "snapshot_lease"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let holders = [&a, &b].iter().filter(|n| n.get("/admin/cluster").1[lease] == true).count();
            if holders == 1 {
                break;
            }
            assert!(holders <= 1, "two nodes hold the {lease}");
            assert!(Instant::now() < deadline, "no node took the {lease}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // And the scrape's: both nodes published, are in sync, have nothing left to copy.
    for node in [&a, &b] {
        let metrics = node.metrics();
        let value = |name: &str| -> f64 {
            let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("annal_cluster_publishes_total") >= 10.0, "{metrics}");
        assert_eq!(value("annal_cluster_lag_messages"), 0.0);
        assert_eq!(value("annal_in_sync"), 1.0);
    }
    // The holder stops: the other node takes the lease once it lapses.
    let a_held = a.get("/admin/cluster").1["embedder_lease"] == true;
    let (holder, other) = if a_held { (a, b) } else { (b, a) };
    holder.terminate();
    let deadline = Instant::now() + Duration::from_secs(40);
    while other.get("/admin/cluster").1["embedder_lease"] != true {
        assert!(Instant::now() < deadline, "the embedder lease was not taken over");
        std::thread::sleep(Duration::from_millis(200));
    }
    other.terminate();
    // The same state, event for event: the offline replay of each copy agrees.
    assert_eq!(digest(da.path()), digest(db.path()));
}

#[test]
fn kill_9_of_a_nats_server_and_of_an_annal_node_under_writes_loses_no_acknowledged_write() {
    let mut nats = Nats::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = nats.url();
    let a = Arc::new(node(da.path(), &url, "a"));
    let b = Arc::new(Mutex::new(Some(node(db.path(), &url, "b"))));
    assert_eq!(a.post("/vectors/index", json!({"name": "x", "dimension": DIM, "distance": "l2"})).0, 201);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let doubtful = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (a, b, acked, doubtful, stop) =
            (Arc::clone(&a), Arc::clone(&b), Arc::clone(&acked), Arc::clone(&doubtful), Arc::clone(&stop));
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                let ids: Vec<String> = (0..3).map(|j| format!("w{w}-{i}-{j}")).collect();
                i += 1;
                let answer = if w == 0 {
                    a.try_post("/vectors/index/x/add", items(&ids))
                } else {
                    let base = b.lock().unwrap().as_ref().map(|s| s.base.clone());
                    match base {
                        Some(base) => {
                            let agent: ureq::Agent = ureq::Agent::config_builder()
                                .http_status_as_error(false)
                                .max_idle_connections(0)
                                .build()
                                .into();
                            agent
                                .post(format!("{base}/vectors/index/x/add"))
                                .send_json(items(&ids))
                                .ok()
                                .and_then(|mut r| {
                                    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
                                })
                                .map(|(code, text)| {
                                    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
                                })
                        }
                        None => {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    }
                };
                match answer {
                    Some((200, _)) => acked.lock().unwrap().extend(ids),
                    // Refused before append (starting, closing): nothing to check. Any
                    // other outcome may or may not have landed.
                    Some((503, body)) if body["error"] == "starting" => {}
                    _ => doubtful.lock().unwrap().extend(ids),
                }
            }
        }));
    }
    let acked_now = || acked.lock().unwrap().len();
    let wait_acked = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_now() < n {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {} acknowledged ({} in doubt)",
                acked_now(),
                doubtful.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acked(60);
    // SIGKILL the stream's leader: the other two are a quorum and elect another, and
    // the publishes in flight are sent again with their message ids.
    let leader = nats.stream_leader("ANNAL").expect("a stream leader");
    nats.kill(leader);
    let before = acked_now();
    wait_acked(before + 60);
    let killed = b.lock().unwrap().take().unwrap();
    killed.kill(); // SIGKILL one annal node mid-write
    let before = acked_now();
    wait_acked(before + 30);
    nats.start_node(leader);
    *b.lock().unwrap() = Some(node(db.path(), &url, "b"));
    let before = acked_now();
    wait_acked(before + 60);
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.join().unwrap();
    }
    let b = b.lock().unwrap().take().unwrap();
    let (sa, sb) = (caught_up(&a, Duration::from_secs(60)), caught_up(&b, Duration::from_secs(60)));
    assert_eq!(sa["last_seq"], sb["last_seq"], "both copies hold the same events");
    let acked = acked.lock().unwrap().clone();
    let doubtful = doubtful.lock().unwrap().len() as u64;
    for server in [&*a, &b] {
        for id in &acked {
            let (code, item) = server.get(&format!("/vectors/index/x/items/{id}"));
            assert_eq!(code, 200, "acknowledged {id} is missing on {}: {item}", server.base);
        }
        let len = length(server);
        assert!(
            len >= acked.len() as u64 && len <= acked.len() as u64 + doubtful,
            "{len} live on {}: {} acknowledged, {doubtful} in doubt",
            server.base,
            acked.len()
        );
    }
    assert_eq!(length(&a), length(&b));
    // Two nodes writing at once: each had to place some of its commits again.
    let republished: u64 =
        [&*a, &b].iter().map(|s| s.get("/admin/cluster").1["republished"].as_u64().unwrap()).sum();
    assert!(republished > 0, "no publish met another node's first");
    let a = Arc::try_unwrap(a).unwrap_or_else(|_| panic!("writers hold the node"));
    a.terminate();
    b.terminate();
    assert_eq!(digest(da.path()), digest(db.path()));
    // Stored once: no id (each written by one request, never sent again) is in two
    // events, whatever the retries of publishes whose acks were lost.
    let out =
        annal(&["log", "dump", "--json", "--kind", "VectorsUpserted", "--data", da.path().to_str().unwrap()]);
    assert!(out.status.success());
    let mut seen = HashSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        for item in event["body"]["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "{id} was stored twice");
        }
    }
    assert!(seen.len() >= acked.len());
}

#[test]
fn an_empty_replica_catches_up_and_a_cut_off_replica_answers_503_for_an_unmet_min_seq() {
    let nats = Nats::start(3);
    let (da, dc, dd) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The writer talks to the first server only, the cut-off replica to the third.
    let a = node(da.path(), &nats.url_of(0), "a");
    assert_eq!(a.post("/vectors/index", json!({"name": "x", "dimension": DIM, "distance": "l2"})).0, 201);
    for round in 0..30 {
        let ids: Vec<String> = (0..10).map(|i| format!("r{round}-{i}")).collect();
        assert_eq!(a.post("/vectors/index/x/add", items(&ids)).0, 200);
    }
    // A replica started empty copies the whole stream and is ready once caught up.
    let c = node(dc.path(), &nats.url(), "c");
    let sc = caught_up(&c, Duration::from_secs(60));
    assert_eq!(sc["last_seq"], 31);
    assert_eq!(length(&c), 300);
    let d = node(dd.path(), &nats.url_of(2), "d");
    caught_up(&d, Duration::from_secs(60));
    // Cut the replica off: its server stops answering (the stream keeps a quorum).
    nats.signal(2, "STOP");
    let ids: Vec<String> = (0..10).map(|i| format!("late-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seq = loop {
        // The stream may elect a new leader first.
        let (code, added) = a.post("/vectors/index/x/add", items(&ids));
        if code == 200 {
            break added["seq"].as_u64().unwrap();
        }
        eprintln!("write while a server is stopped: {code} {added}");
        assert!(Instant::now() < deadline, "no write while one of three servers is stopped: {added}");
    };
    // Never stale data silently: the replica answers 503 with Retry-After for a
    // min_seq it has not applied, and stops calling itself ready.
    let url = format!("{}/vectors/index/x/search?min_seq={seq}", d.base);
    let mut answer = d.agent.post(&url).send_json(json!({"vector": vector(&ids[0]), "k": 1})).unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(answer.headers().get("retry-after").unwrap(), "1");
    let body: Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "not_applied_yet", "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.get("/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "a cut-off replica still says it is ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Reconnected, it catches up and answers.
    nats.signal(2, "CONT");
    let (code, hits) =
        d.post(&format!("/vectors/index/x/search?min_seq={seq}"), json!({"vector": vector(&ids[0]), "k": 1}));
    assert_eq!(code, 200, "{hits}");
    assert_eq!(hits["results"][0]["id"], "late-0");
    caught_up(&d, Duration::from_secs(60));
    assert_eq!(length(&d), 310);
}

#[test]
fn a_node_refuses_a_data_directory_that_is_not_a_copy_of_the_stream() {
    let nats = Nats::start(1);
    let data = tempfile::tempdir().unwrap();
    // A single node's log, then the same directory joined to a fresh stream.
    let single = Server::start(data.path());
    assert_eq!(single.post("/vectors/index", json!({"name": "x", "dimension": DIM})).0, 201);
    single.terminate();
    let out = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["serve", "--data", data.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--cluster", &nats.url(), "--node", "a", "--cluster-replicas", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a copy of stream ANNAL"), "{stderr}");
    // A bad node name is refused before anything starts.
    let out = annal(&["serve", "--data", "unused", "--cluster", &nats.url(), "--node", "a/b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node"));
}

/// Wait until `check` holds for `server`'s `/admin/cluster`, or fail saying `what`.
fn cluster_until(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = server.get("/admin/cluster");
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{}: {what}: {status}", server.base);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_batch(server: &Server, ids: std::ops::Range<usize>) {
    let ids: Vec<String> = ids.map(|i| format!("v{i}")).collect();
    let (code, body) = server.post("/vectors/index/x/add", items(&ids));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_replica_started_empty_begins_from_the_shared_snapshot_then_the_tail_and_the_stream_drops_what_snapshots_cover(
) {
    let moto = match crate::engine_common::s3::MotoServer::start("annal-cluster") {
        Ok(moto) => moto,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let nats = Nats::start(3);
    let (da, db, conf) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both nodes name the same S3 bucket as their primary: snapshots are shared.
    let buckets = conf.path().join("buckets.toml");
    std::fs::write(&buckets, moto.config_toml("primary", conf.path(), None)).unwrap();
    let buckets = buckets.to_str().unwrap();
    let url = nats.url();
    let flags = |name: &'static str| {
        ["--cluster", &url, "--node", name, "--max-lag", "100", "--buckets-config", buckets]
            .map(str::to_owned)
    };
    let start = |data: &Path, name: &'static str| {
        let flags = flags(name);
        Server::start_with(data, &flags.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let a = start(da.path(), "a");
    let (code, created) = a.post("/vectors/index", json!({"name": "x", "dimension": DIM, "distance": "l2"}));
    assert_eq!(code, 201, "{created}");
    for round in 0..3 {
        write_batch(&a, round * 10..round * 10 + 10);
    }
    cluster_until(&a, "the only node takes the snapshot lease", |s| s["snapshot_lease"] == true);

    // First snapshot: the pointer names it; nothing is dropped yet.
    let (code, first) = a.post("/admin/snapshots", json!({}));
    assert_eq!(code, 200, "{first}");
    assert!(first["key"].as_str().unwrap().starts_with("snapshots/a/"), "{first}");
    // (`stream_first` is 0 until the poller first reads a non-empty stream.)
    let status = cluster_until(&a, "the pointer names the first snapshot", |s| {
        s["snapshot_pointer"]["seq"] == first["seq"] && s["stream_first"].as_u64() > Some(0)
    });
    assert_eq!(status["stream_first"], 1, "nothing dropped while one snapshot covers it");
    let first_needed = status["snapshot_pointer"]["first_needed"].as_u64().unwrap();

    // Second snapshot: the stream drops what the first one covers, and no more.
    write_batch(&a, 30..40);
    let (code, second) = a.post("/admin/snapshots", json!({}));
    assert_eq!(code, 200, "{second}");
    let status = cluster_until(&a, "the stream drops what the first snapshot covers", |s| {
        s["snapshot_pointer"]["seq"] == second["seq"] && s["stream_first"] == first_needed
    });
    assert!(first_needed > 1, "{status}");
    // The tail after the newest snapshot.
    write_batch(&a, 40..50);
    let s2 = second["seq"].as_u64().unwrap();

    // A replica started empty: the newest snapshot, then the tail; ready once caught up.
    let b = start(db.path(), "b");
    let sb = caught_up(&b, Duration::from_secs(60));
    assert_eq!(sb["first_seq"], s2 + 1, "its log begins after the snapshot: {sb}");
    assert_eq!(sb["last_seq"], a.last_seq());
    let (_, listed) = b.get("/admin/snapshots");
    assert_eq!(listed["opened_from"]["seq"], s2, "{listed}");
    assert_eq!(
        listed["opened_from"]["key"],
        format!("snapshots/b/{s2:020}.snap"),
        "restored from its own copy of the shared snapshot"
    );
    assert_eq!(length(&b), 50);
    // It takes part like any node: its writes reach the other.
    write_batch(&b, 50..55);
    caught_up(&a, Duration::from_secs(30));
    assert_eq!((length(&a), length(&b)), (55, 55));
    assert_eq!(a.last_seq(), b.last_seq());

    // The same state: the replica's replay (from the snapshot it began from) and the
    // full replay of the first node agree.
    a.terminate();
    b.terminate();
    let with_buckets = ["--buckets-config", buckets];
    assert_eq!(digest_with(da.path(), &with_buckets), digest_with(db.path(), &with_buckets));
    // A restart resumes its copy and still begins after the snapshot.
    let b = start(db.path(), "b");
    let sb = caught_up(&b, Duration::from_secs(60));
    assert_eq!(sb["first_seq"], s2 + 1);
    assert_eq!(length(&b), 55);
}
