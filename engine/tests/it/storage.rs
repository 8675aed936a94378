//! Storage buckets and the bucket error journal, through the engine: faults injected
//! into real backends (local directories, and a real S3-compatible server).

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::BucketOp;
use annal_engine::JournalFilter;
use annal_engine::{BucketsConfig, Engine, EngineConfig, Hooks, SyncMode};
use annal_engine::{FaultyStore, StorageError};
use bytes::Bytes;
use parking_lot::Mutex;

/// The fault wrappers the engine's buckets were opened with, by bucket.
type Faults = Arc<Mutex<Vec<(String, Arc<FaultyStore>)>>>;

fn faulty_config(buckets: BucketsConfig) -> (EngineConfig, Faults) {
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
    (EngineConfig { hooks, buckets, ..EngineConfig::default() }, faults)
}

fn fault(faults: &Faults, bucket: &str) -> Arc<FaultyStore> {
    let faults = faults.lock();
    let (_, f) = faults.iter().rev().find(|(name, _)| name == bucket).expect("bucket was opened");
    Arc::clone(f)
}

fn with_mirror() -> BucketsConfig {
    let text = "[buckets.primary]\nbackend = \"local\"\nroot = \"buckets/primary\"\nrescue = \"mirror\"\n\n\
                [buckets.mirror]\nbackend = \"local\"\nroot = \"buckets/mirror\"\n";
    BucketsConfig::parse(text, Path::new("test.toml"), |_| None).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_leaves_no_partial_object_and_yields_exactly_one_error_event() {
    let dir = tempfile::tempdir().unwrap();
    let (config, faults) = faulty_config(BucketsConfig::default());
    let engine = Engine::open(dir.path(), config).unwrap();
    let storage = engine.storage();
    storage.put("alice", "primary", "keep/old", Bytes::from_static(b"old")).await.unwrap();
    fault(&faults, "primary").fail(BucketOp::Write);
    let err = storage.put("alice", "primary", "snap/1", Bytes::from(vec![7u8; 1 << 20])).await.unwrap_err();
    assert!(matches!(err, StorageError::Backend { op: BucketOp::Write, .. }), "{err}");
    let err = storage.put("alice", "primary", "keep/old", Bytes::from_static(b"new")).await.unwrap_err();
    assert!(err.to_string().contains("write"), "{err}");
    fault(&faults, "primary").heal();

    assert!(matches!(storage.get("alice", "primary", "snap/1").await, Err(StorageError::NotFound { .. })));
    assert_eq!(storage.get("alice", "primary", "keep/old").await.unwrap().bytes, "old");
    let keys: Vec<String> =
        storage.list("alice", "primary", None).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["keep/old"]);
    assert_eq!(files_under(&dir.path().join("buckets/primary")).len(), 1, "no staged file is left behind");

    let errors = engine.journal().recent(10);
    assert_eq!(errors.len(), 2, "one event per failed write: {errors:?}");
    let first = &errors[1];
    assert_eq!((first.bucket.as_str(), first.op, first.key.as_str()), ("primary", BucketOp::Write, "snap/1"));
    assert_eq!((first.actor.as_str(), first.rescued), ("alice", false));
    assert!(first.error.contains("injected"), "{}", first.error);
    assert_eq!(storage.stats().errors[&("primary".to_owned(), BucketOp::Write)], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_primary_read_with_a_good_rescue_copy_returns_the_data_and_records_one_rescued_event() {
    let dir = tempfile::tempdir().unwrap();
    let (config, faults) = faulty_config(with_mirror());
    let engine = Engine::open(dir.path(), config).unwrap();
    let storage = engine.storage();
    for bucket in ["primary", "mirror"] {
        storage.put("t", bucket, "exports/a.bin", Bytes::from_static(b"the data")).await.unwrap();
    }
    let fetched = storage.get("t", "primary", "exports/a.bin").await.unwrap();
    assert_eq!((fetched.bytes.as_ref(), fetched.rescued_by), (&b"the data"[..], None));
    assert!(engine.journal().is_empty());

    fault(&faults, "primary").fail(BucketOp::Read);
    let fetched = storage.get("t", "primary", "exports/a.bin").await.unwrap();
    assert_eq!(fetched.bytes, "the data");
    assert_eq!(fetched.rescued_by.as_deref(), Some("mirror"));
    let errors = engine.journal().recent(10);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].rescued && errors[0].op == BucketOp::Read && errors[0].bucket == "primary");
    assert_eq!(storage.stats().rescued["primary"], 1);

    // Both failing: the primary's error is the answer, and both failures are journaled.
    fault(&faults, "mirror").fail(BucketOp::Read);
    let err = storage.get("t", "primary", "exports/a.bin").await.unwrap_err();
    assert!(matches!(&err, StorageError::Backend { bucket, .. } if bucket == "primary"), "{err}");
    let errors = engine.journal().recent(10);
    assert_eq!(errors.len(), 3);
    assert_eq!((errors[0].bucket.as_str(), errors[0].rescued), ("mirror", false));
    assert_eq!((errors[1].bucket.as_str(), errors[1].rescued), ("primary", false));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_lost_from_the_primary_is_served_by_the_rescue_and_a_missing_one_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::open(dir.path(), EngineConfig { buckets: with_mirror(), ..EngineConfig::default() }).unwrap();
    let storage = engine.storage();
    storage.put("t", "mirror", "only-in-mirror", Bytes::from_static(b"x")).await.unwrap();
    let fetched = storage.get("t", "primary", "only-in-mirror").await.unwrap();
    assert_eq!(fetched.rescued_by.as_deref(), Some("mirror"));
    assert_eq!(engine.journal().recent(10).len(), 1, "the primary lost it: journaled as rescued");
    assert!(matches!(storage.get("t", "primary", "nowhere").await, Err(StorageError::NotFound { .. })));
    storage.delete("t", "primary", "nowhere").await.unwrap();
    assert_eq!(engine.journal().recent(10).len(), 1, "a missing key is an answer, not a bucket error");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_marks_a_bucket_unhealthy_at_the_third_error_in_the_period_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let (config, faults) = faulty_config(with_mirror());
    let engine = Engine::open(dir.path(), config).unwrap();
    let storage = engine.storage();
    fault(&faults, "mirror").fail(BucketOp::List);
    fault(&faults, "mirror").fail(BucketOp::Delete);
    let since = annal_engine::event::Stamp::now("t").time_ms;
    storage.list("t", "mirror", None).await.unwrap_err();
    storage.delete("t", "mirror", "a").await.unwrap_err();
    let health = engine.journal().health(since);
    assert_eq!((health.total, health.per_bucket["mirror"]), (2, 2));
    assert!(health.unhealthy.is_empty(), "two errors are not yet unhealthy");
    storage.list("t", "mirror", Some("p")).await.unwrap_err();
    let health = engine.journal().health(since);
    assert_eq!(health.unhealthy, ["mirror"]);
    assert!(!health.per_bucket.contains_key("primary"));
    assert_eq!(engine.journal().health(since + 3_600_000).total, 0, "none in a later period");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_keeps_only_the_newest_2000_and_is_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, faults) = faulty_config(BucketsConfig::default());
    config.sync = SyncMode::Deferred; // 2,010 events: one fsync each would only slow the test
    let before = {
        let engine = Engine::open(dir.path(), config.clone()).unwrap();
        fault(&faults, "primary").fail(BucketOp::Delete);
        for i in 0..2_010 {
            engine.storage().delete("t", "primary", &format!("k/{i}")).await.unwrap_err();
        }
        let all = engine.journal().recent(usize::MAX);
        assert_eq!(all.len(), 2_000);
        assert_eq!((all[0].key.as_str(), all[1_999].key.as_str()), ("k/2009", "k/10"));
        let health = engine.journal().health(0);
        assert!(health.truncated && health.total == 2_000, "{health:?}");
        engine.close().unwrap();
        all
    };
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.journal().recent(usize::MAX), before, "rebuilt from the log");
    let filtered = engine.journal().filter(
        &JournalFilter { bucket: Some("primary".into()), op: Some(BucketOp::Delete), since_ms: None },
        5,
    );
    assert_eq!(filtered, before[..5]);
    assert_eq!(engine.journal().health(0).per_bucket["primary"], 2_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_try_to_escape_are_rejected_before_any_io() {
    let dir = tempfile::tempdir().unwrap();
    let (config, faults) = faulty_config(BucketsConfig::default());
    let engine = Engine::open(dir.path(), config).unwrap();
    let storage = engine.storage();
    let calls = fault(&faults, "primary").calls();
    for key in ["../x", "/etc/passwd", "a//b", "", "a/./b", "a\0b", "a/../../../etc/passwd"] {
        let put = storage.put("t", "primary", key, Bytes::from_static(b"x")).await;
        assert!(matches!(put, Err(StorageError::Key { .. })), "{key:?}: {put:?}");
        assert!(matches!(storage.get("t", "primary", key).await, Err(StorageError::Key { .. })), "{key:?}");
        assert!(
            matches!(storage.delete("t", "primary", key).await, Err(StorageError::Key { .. })),
            "{key:?}"
        );
    }
    assert!(matches!(storage.list("t", "primary", Some("../")).await, Err(StorageError::Key { .. })));
    assert_eq!(fault(&faults, "primary").calls(), calls, "no key reached the store");
    assert!(engine.journal().is_empty(), "a refused key is the caller's error, not the bucket's");
    assert!(!dir.path().parent().unwrap().join("x").exists());
}

/// The same put/get/list/delete behaviour, whatever the backend.
async fn object_suite(engine: &Engine, bucket: &str) {
    let storage = engine.storage();
    let big = Bytes::from((0..3 << 20).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>());
    storage.put("t", bucket, "suite/a", Bytes::from_static(b"alpha")).await.unwrap();
    storage.put("t", bucket, "suite/dir/b", big.clone()).await.unwrap();
    storage.put("t", bucket, "suite/dir/ünï côdé", Bytes::new()).await.unwrap();
    storage.put("t", bucket, "other/c", Bytes::from_static(b"c")).await.unwrap();
    assert_eq!(storage.get("t", bucket, "suite/a").await.unwrap().bytes, "alpha");
    assert_eq!(storage.get("t", bucket, "suite/dir/b").await.unwrap().bytes, big);
    assert!(storage.get("t", bucket, "suite/dir/ünï côdé").await.unwrap().bytes.is_empty());
    storage.put("t", bucket, "suite/a", Bytes::from_static(b"beta")).await.unwrap();
    assert_eq!(storage.get("t", bucket, "suite/a").await.unwrap().bytes, "beta", "a put replaces");

    let listing = storage.list("t", bucket, Some("suite")).await.unwrap();
    let listed: Vec<(&str, u64)> = listing.objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(listed, [("suite/a", 4), ("suite/dir/b", 3 << 20), ("suite/dir/ünï côdé", 0)]);
    assert!(!listing.truncated);
    assert_eq!(storage.list("t", bucket, Some("suite/di")).await.unwrap().objects.len(), 0, "whole segments");
    assert_eq!(storage.list("t", bucket, None).await.unwrap().objects.len(), 4);

    storage.delete("t", bucket, "suite/a").await.unwrap();
    storage.delete("t", bucket, "suite/a").await.unwrap();
    assert!(matches!(storage.get("t", bucket, "suite/a").await, Err(StorageError::NotFound { .. })));
    assert_eq!(storage.list("t", bucket, Some("suite")).await.unwrap().objects.len(), 2);
    let probe = storage.probe("t", bucket).await.unwrap();
    assert!(probe.reachable, "{probe:?}");
    assert_eq!(storage.list("t", bucket, None).await.unwrap().objects.len(), 3, "the probe cleans up");
    assert!(engine.journal().is_empty(), "{:?}", engine.journal().recent(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_object_suite_passes_on_the_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    object_suite(&engine, "primary").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_object_suite_passes_on_the_s3_backend() {
    let moto = match common::s3::MotoServer::start("annal-suite") {
        Ok(moto) => moto,
        Err(reason) => {
            println!("SKIPPED the_object_suite_passes_on_the_s3_backend: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let text = moto.config_toml("s3", dir.path(), Some("tenant-1"));
    let buckets = BucketsConfig::parse(&text, Path::new("test.toml"), |_| None).unwrap();
    let engine = Engine::open(dir.path(), EngineConfig { buckets, ..EngineConfig::default() }).unwrap();
    object_suite(&engine, "s3").await;
    let info = engine.storage().buckets().into_iter().find(|b| b.name == "s3").unwrap();
    assert_eq!(info.backend, "s3");
    assert!(info.location.ends_with("/annal-suite/tenant-1"), "{}", info.location);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_s3_bucket_fails_its_probe_journals_it_and_never_shows_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = format!(
        "[buckets.gone]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"b\"\nallow_http = true\n"
    );
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDNEVERSHOWN".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("never-shown-secret".to_owned()),
        _ => None,
    };
    let buckets = BucketsConfig::parse(&text, Path::new("test.toml"), env).unwrap();
    let engine = Engine::open(dir.path(), EngineConfig { buckets, ..EngineConfig::default() }).unwrap();
    let probe = tokio::time::timeout(Duration::from_secs(60), engine.storage().probe("t", "gone"))
        .await
        .unwrap()
        .unwrap();
    assert!(!probe.reachable);
    assert_eq!(probe.failed, Some(BucketOp::Write));
    let err = engine.storage().get("t", "gone", "k").await.unwrap_err();
    let journal = engine.journal().recent(10);
    assert_eq!(journal.len(), 2, "{journal:?}");
    let shown = format!("{probe:?} {err} {err:?} {journal:?} {:?}", engine.storage().buckets());
    for secret in ["never-shown-secret", "AKIDNEVERSHOWN"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

const TORN_CHILD_DIR: &str = "ANNAL_TEST_TORN_CHILD_DIR";
const TORN_OBJECT_BYTES: usize = 4 << 20;

fn torn_payload(i: u32) -> Vec<u8> {
    (0..TORN_OBJECT_BYTES as u32).map(|j| (j.wrapping_mul(2_654_435_761) ^ i) as u8).collect()
}

/// Not a test on its own: the child half of the torn-object test. Writes 4 MiB objects
/// forever, printing each acknowledged one.
#[tokio::test(flavor = "multi_thread")]
async fn torn_child_puts_until_killed() {
    let Ok(dir) = std::env::var(TORN_CHILD_DIR) else { return };
    let engine = Engine::open(&dir, EngineConfig::default()).unwrap();
    for i in 0.. {
        engine
            .storage()
            .put("child", "primary", &format!("torn/{i}"), Bytes::from(torn_payload(i)))
            .await
            .unwrap();
        println!("ACK {i}");
    }
}

#[test]
fn a_writer_killed_mid_put_leaves_every_object_whole_or_absent_on_the_local_backend() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "storage::torn_child_puts_until_killed", "--nocapture", "--test-threads=1"])
        .env(TORN_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 6 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.push(i.parse::<u32>().unwrap());
        }
    }
    std::thread::sleep(Duration::from_millis(7)); // most likely inside the next put
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let listing = runtime.block_on(engine.storage().list("t", "primary", Some("torn"))).unwrap();
    assert!(listing.objects.len() >= acked.len());
    for object in &listing.objects {
        let i: u32 = object.key.trim_start_matches("torn/").parse().unwrap();
        let got = runtime.block_on(engine.storage().get("t", "primary", &object.key)).unwrap();
        assert!(got.bytes == torn_payload(i), "{} is torn: {} bytes", object.key, got.bytes.len());
    }
    for i in acked {
        assert!(listing.objects.iter().any(|o| o.key == format!("torn/{i}")), "acknowledged torn/{i} lost");
    }
}
