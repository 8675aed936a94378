//! The event log: round trips, corruption, concurrency, reopen and crash.

use crate::common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::{decode, encode, Event, EventBody, EventKind};
use annal_engine::{Log, LogConfig, LogError, SyncMode};
use redb::TableDefinition;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

fn open(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path().join("log.redb"), LogConfig::default()).unwrap()
}

#[test]
fn every_event_kind_round_trips_byte_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let events = common::one_of_each_kind();
    let kinds: HashSet<_> = events.iter().map(|e| EventKind::of(&e.body)).collect();
    let every = (0..=u8::MAX).filter_map(EventKind::from_u8).count();
    assert_eq!(kinds.len(), every, "the sample must cover every kind");
    let frames: Vec<_> = events.iter().map(|e| encode(e).unwrap()).collect();
    let range = log.append(&events).unwrap().unwrap();
    let n = events.len() as u64;
    assert_eq!(range, 1..=n);
    let stored = log.read_frames(1..=n, usize::MAX).unwrap();
    for ((seq, bytes), (frame, event)) in stored.iter().zip(frames.iter().zip(&events)) {
        assert_eq!(bytes, frame, "event {seq} bytes changed in storage");
        assert_eq!(&decode(*seq, bytes).unwrap(), event);
    }
    let read: Vec<_> = log.read_range(1..=n, usize::MAX).unwrap().into_iter().map(|(_, e)| e).collect();
    assert_eq!(read, events);
}

#[test]
fn flipped_byte_in_a_stored_event_is_reported_by_verify_and_read_with_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = Log::open(&path, LogConfig::default()).unwrap();
        for _ in 0..3 {
            log.append(&common::one_of_each_kind()).unwrap();
        }
        assert!(log.verify().unwrap().is_ok());
    }
    common::corrupt_event(&path, 17, |frame| {
        let last = frame.len() - 1;
        frame[last] ^= 0x40;
    });
    let log = Log::open(&path, LogConfig::default()).unwrap();
    let report = log.verify().unwrap();
    let bad = report.first_bad.expect("verify must find the flipped byte");
    assert_eq!(bad.seq, 17);
    assert_eq!(report.events_ok, 16);
    assert!(bad.error.to_string().contains("event 17"), "{}", bad.error);
    let err = log.read(17).unwrap_err();
    assert!(
        matches!(err, LogError::Frame(ref f) if f.to_string().contains("event 17: checksum mismatch")),
        "{err}"
    );
    let err = log.read_range(10..=20, usize::MAX).unwrap_err();
    assert!(err.to_string().contains("event 17"), "{err}");
    assert!(log.read(16).unwrap().is_some(), "neighbours stay readable");
}

#[test]
fn verify_reports_a_gap_in_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = Log::open(&path, LogConfig::default()).unwrap();
        log.append(&common::one_of_each_kind()).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(EVENTS).unwrap().remove(4).unwrap();
        txn.commit().unwrap();
    }
    let log = Log::open(&path, LogConfig::default()).unwrap();
    let bad = log.verify().unwrap().first_bad.expect("gap must be found");
    assert_eq!(bad.seq, 4);
    assert!(matches!(bad.error, LogError::Gap { expected: 4, found: 5 }));
}

#[test]
fn sixteen_concurrent_appenders_get_unique_dense_sequence_numbers_and_read_back_what_they_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..40 {
                    let events = vec![common::upsert(&format!("t{t}-{i}"), 1 + i % 3, 8); 1 + i % 2];
                    let range = log.append(&events).unwrap().unwrap();
                    assert_eq!(range.clone().count(), events.len());
                    acked.extend(range.zip(events));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let seqs: HashSet<u64> = acked.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), acked.len(), "sequence numbers must be unique");
    let n = acked.len() as u64;
    assert_eq!(log.last_seq(), n);
    assert_eq!(log.count().unwrap(), n);
    assert_eq!(seqs, (1..=n).collect::<HashSet<_>>(), "log must be dense");
    for (seq, event) in &acked {
        assert_eq!(log.read(*seq).unwrap().as_ref(), Some(event));
    }
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn close_and_reopen_keeps_every_event_and_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let events = common::one_of_each_kind();
    {
        let log = open(&dir);
        log.append(&events).unwrap();
        log.close().unwrap();
        assert!(matches!(log.append(&events), Err(LogError::Closed)));
    }
    let log = open(&dir);
    let n = events.len() as u64;
    assert_eq!(log.last_seq(), n);
    let read: Vec<_> =
        log.read_range(1..=u64::MAX, usize::MAX).unwrap().into_iter().map(|(_, e)| e).collect();
    assert_eq!(read, events);
    assert_eq!(log.append(&events[..1]).unwrap(), Some(n + 1..=n + 1));
}

#[test]
fn deferred_mode_appends_are_kept_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = Log::open(&path, LogConfig { sync: SyncMode::Deferred, ..LogConfig::default() }).unwrap();
        for i in 0..50 {
            log.append(&[common::upsert(&format!("d{i}"), 2, 4)]).unwrap();
        }
    }
    let log = Log::open(&path, LogConfig::default()).unwrap();
    assert_eq!(log.last_seq(), 50);
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn tail_waits_for_a_future_event_and_times_out_when_none_comes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    assert!(log.tail(1, Duration::from_millis(50), 10).unwrap().is_empty());
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            log.append(&common::one_of_each_kind()[..2]).unwrap();
        })
    };
    let got = log.tail(1, Duration::from_secs(10), 10).unwrap();
    writer.join().unwrap();
    assert!(!got.is_empty());
    assert_eq!(got[0].0, 1);
}

const CHILD_DIR: &str = "ANNAL_CRASH_CHILD_DIR";

/// Not a test on its own: the child half of the SIGKILL test. Appends forever, printing
/// each acknowledged sequence number.
#[test]
fn crash_child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let log = Log::open(std::path::Path::new(&dir).join("log.redb"), LogConfig::default()).unwrap();
    for i in 0.. {
        let range = log.append(&[common::upsert(&format!("c{i}"), 4, 16)]).unwrap().unwrap();
        println!("ACK {}", range.end());
    }
}

#[test]
fn every_acknowledged_event_survives_sigkill_of_the_writer_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "log::crash_child_appends_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 300 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(seq) = line.strip_prefix("ACK ") {
            acked.push(seq.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let log = open(&dir);
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.first_bad);
    let max_acked = *acked.iter().max().unwrap();
    assert!(log.last_seq() >= max_acked, "acked {max_acked}, found {}", log.last_seq());
    for seq in acked {
        let event = log.read(seq).unwrap().expect("acknowledged event lost");
        assert_eq!(event.stamp.actor, "test");
    }
}

#[test]
fn a_log_never_written_to_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    assert_eq!(log.last_seq(), 0);
    assert_eq!(log.count().unwrap(), 0);
    assert!(log.read(1).unwrap().is_none());
    assert!(log.read_range(1..=10, 10).unwrap().is_empty());
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn truncate_after_cuts_the_tail_appends_its_audit_event_in_its_place_and_refuses_other_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let events = common::one_of_each_kind();
    log.append(&events[..6]).unwrap();
    let audit = |first_cut, last_cut| {
        Event::new(
            "recover",
            EventBody::LogTruncated(annal_engine::event::LogTruncated {
                first_cut,
                last_cut,
                bucket: "primary".into(),
                key: "recovered/x.cut".into(),
                bytes: 1,
                crc32: 0,
                reason: "test".into(),
            }),
        )
    };
    for after in [6, 7] {
        let error = log.truncate_after(after, &audit(after + 1, 6)).unwrap_err();
        assert!(matches!(error, LogError::TruncateRange { .. }), "after {after}: {error}");
    }
    assert_eq!(log.last_seq(), 6, "a refused truncation changes nothing");
    assert_eq!(log.truncate_after(3, &audit(4, 6)).unwrap(), 4);
    assert_eq!(log.last_seq(), 4);
    let kept = log.read_range(1..=u64::MAX, 100).unwrap();
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[..3].iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), events[..3].to_vec());
    assert!(matches!(kept[3].1.body, EventBody::LogTruncated(_)));
    // Appends continue after the audit event, and all of it survives a reopen.
    assert_eq!(log.append(&events[6..7]).unwrap(), Some(5..=5));
    log.close().unwrap();
    drop(log);
    let log = open(&dir);
    assert_eq!(log.last_seq(), 5);
    assert!(log.verify().unwrap().is_ok());
    // Everything but the first event may go: `after` 0 keeps nothing but the audit.
    assert_eq!(log.truncate_after(0, &audit(1, 5)).unwrap(), 1);
    assert_eq!(log.read_range(1..=u64::MAX, 100).unwrap().len(), 1);
}
