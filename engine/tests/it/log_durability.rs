//! What the log promises about durability, backpressure and where it starts.

use crate::common;

use std::io::{self, BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::EventBody;
use annal_engine::SnapshotPolicy;
use annal_engine::{Engine, EngineConfig, Error, Log, LogConfig, ReadOnlyLog, SyncMode, LOG_FILE};
use redb::backends::InMemoryBackend;
use redb::StorageBackend;

/// An in-memory backend that counts writes not yet covered by a sync, and syncs, and
/// can make every sync slow.
#[derive(Debug)]
struct Counting {
    inner: InMemoryBackend,
    unsynced: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    sync_delay: Duration,
}

impl StorageBackend for Counting {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.unsynced.fetch_add(1, Ordering::SeqCst);
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(self.sync_delay);
        self.unsynced.store(0, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.unsynced.fetch_add(1, Ordering::SeqCst);
        self.inner.write(offset, data)
    }
}

fn counting(sync_delay: Duration) -> (Counting, Arc<AtomicU64>, Arc<AtomicU64>) {
    let unsynced = Arc::new(AtomicU64::new(0));
    let syncs = Arc::new(AtomicU64::new(0));
    let backend = Counting {
        inner: InMemoryBackend::new(),
        unsynced: Arc::clone(&unsynced),
        syncs: Arc::clone(&syncs),
        sync_delay,
    };
    (backend, unsynced, syncs)
}

#[test]
fn every_acknowledged_append_was_covered_by_an_fsync() {
    let (backend, unsynced, syncs) = counting(Duration::ZERO);
    let log = Arc::new(Log::open_with_backend(backend, LogConfig::default()).unwrap());
    // One appender: each acknowledgement follows an fsync made after the append's
    // writes reached the storage.
    for i in 0..50 {
        let before = syncs.load(Ordering::SeqCst);
        unsynced.store(0, Ordering::SeqCst);
        log.append(&[common::upsert(&format!("a{i}"), 2, 8)]).unwrap();
        assert!(syncs.load(Ordering::SeqCst) > before, "append {i} acknowledged without an fsync");
    }
    // Concurrent appenders: each acknowledgement comes after a sync that started after
    // the append was submitted.
    std::thread::scope(|s| {
        for t in 0..8 {
            let (log, syncs) = (&log, &syncs);
            s.spawn(move || {
                for i in 0..25 {
                    let before = syncs.load(Ordering::SeqCst);
                    log.append(&[common::upsert(&format!("t{t}-{i}"), 1, 8)]).unwrap();
                    assert!(
                        syncs.load(Ordering::SeqCst) > before,
                        "an ack with no fsync after its submission"
                    );
                }
            });
        }
    });
    assert_eq!(log.last_seq(), 250);
}

#[test]
fn appenders_wait_when_the_queue_is_full_and_all_complete_densely() {
    let (backend, _, _) = counting(Duration::from_millis(20));
    let event_bytes = annal_engine::event::encode(&common::upsert("x", 16, 64)).unwrap().len();
    let budget = 4 * event_bytes;
    let config = LogConfig { queue_bytes_max: budget, ..LogConfig::default() };
    let log = Arc::new(Log::open_with_backend(backend, config).unwrap());
    let peak = AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(log.queued_bytes() as u64, Ordering::SeqCst);
                std::thread::yield_now();
            }
        });
        let writers: Vec<_> = (0..16)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    (0..10)
                        .map(|i| {
                            *log.append(&[common::upsert(&format!("x{t}-{i}"), 16, 64)])
                                .unwrap()
                                .unwrap()
                                .end()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        watcher.join().unwrap();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=160).collect::<Vec<_>>());
    });
    let peak = peak.load(Ordering::SeqCst) as usize;
    assert!(peak > 0, "the watcher saw the queue");
    assert!(peak <= budget + event_bytes, "queued {peak} bytes with a budget of {budget}");
    assert_eq!(log.queued_bytes(), 0);
}

const CHILD_DIR: &str = "ANNAL_DEFERRED_CHILD_DIR";

/// Not a test on its own: the child half of the deferred crash test. Appends in
/// deferred mode, syncing every 25 events and printing the synced sequence number.
#[test]
fn deferred_child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let config = LogConfig { sync: SyncMode::Deferred, ..LogConfig::default() };
    let log = Log::open(std::path::Path::new(&dir).join(LOG_FILE), config).unwrap();
    for i in 1u64.. {
        let seq = *log.append(&[common::upsert(&format!("s{i}"), 1, 4)]).unwrap().unwrap().end();
        assert_eq!(seq, i);
        if i % 25 == 0 {
            log.sync().unwrap();
            println!("SYNCED {seq}");
        }
    }
}

#[test]
fn a_crash_in_deferred_mode_leaves_a_consistent_prefix_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "log_durability::deferred_child_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut synced = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while synced < 500 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(seq) = line.strip_prefix("SYNCED ") {
            synced = seq.parse::<u64>().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.first_bad);
    let last = log.last_seq();
    assert!(last >= synced, "synced {synced}, found only {last}");
    assert_eq!(report.first_seq, 1);
    assert_eq!(report.events_ok, last, "dense from 1 to the last event");
    for (seq, event) in log.read_range(1..=last, usize::MAX).unwrap() {
        let EventBody::VectorsUpserted(upsert) = event.body else { panic!("event {seq}: wrong kind") };
        assert_eq!(upsert.items[0].id, format!("s{seq}-0"), "event {seq} is the one appended as {seq}");
    }
}

/// Remove events `1..until` behind the log's back, as retention will once snapshots
/// cover them.
fn remove_before(path: &std::path::Path, until: u64) {
    let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(events).unwrap();
        for seq in 1..until {
            table.remove(seq).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_log_that_starts_after_event_1_is_verified_and_read_from_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG_FILE);
    {
        let log = Log::open(&path, LogConfig::default()).unwrap();
        for i in 0..30 {
            log.append(&[common::upsert(&format!("b{i}"), 1, 4)]).unwrap();
        }
    }
    remove_before(&path, 11);
    {
        let log = Log::open(&path, LogConfig::default()).unwrap();
        assert_eq!(log.first_seq().unwrap(), 11);
        let report = log.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.first_bad);
        assert_eq!((report.first_seq, report.events_ok), (11, 20));
        assert_eq!(log.read_range(1..=u64::MAX, 100).unwrap()[0].0, 11);
        assert_eq!(log.append(&[common::upsert("next", 1, 4)]).unwrap(), Some(31..=31));
    }
    {
        let read_only = ReadOnlyLog::open(&path).unwrap();
        assert_eq!(read_only.first_seq().unwrap(), 11);
        assert!(read_only.verify().unwrap().is_ok());
    }
    // A gap after the first event is still a gap.
    {
        let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(events).unwrap().remove(15).unwrap();
        txn.commit().unwrap();
    }
    let report = ReadOnlyLog::open(&path).unwrap().verify().unwrap();
    assert_eq!(report.first_bad.unwrap().seq, 15);
    assert_eq!(report.events_ok, 4);
}

#[test]
fn an_engine_refuses_a_log_whose_early_events_no_snapshot_covers() {
    let dir = tempfile::tempdir().unwrap();
    let no_snapshots = || EngineConfig {
        snapshots: SnapshotPolicy { on_close: false, every_events: None, ..SnapshotPolicy::default() },
        ..EngineConfig::default()
    };
    {
        let engine = Engine::open(dir.path(), no_snapshots()).unwrap();
        engine.create_index("t", "x", 2, annal_engine::Metric::L2, Default::default()).unwrap();
        engine.upsert("t", "x", vec![common::items(&[vec![1.0, 2.0]], 0).remove(0)]).unwrap();
        engine.close().unwrap();
    }
    remove_before(&dir.path().join(LOG_FILE), 2);
    let Err(err) = Engine::open(dir.path(), no_snapshots()) else { panic!("opened") };
    assert!(matches!(err, Error::LogTruncated { first_seq: 2 }), "{err:?}");
}

#[test]
fn an_engine_opens_a_log_whose_removed_events_a_snapshot_covers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        engine.create_index("t", "x", 2, annal_engine::Metric::L2, Default::default()).unwrap();
        engine.upsert("t", "x", vec![common::items(&[vec![1.0, 2.0]], 0).remove(0)]).unwrap();
        engine.close().unwrap(); // snapshot at close covers events 1 and 2
    }
    remove_before(&dir.path().join(LOG_FILE), 3);
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.restored().snapshot.as_ref().map(|s| s.seq), Some(2));
    assert_eq!(engine.get_index("x").unwrap().length, 1);
}
