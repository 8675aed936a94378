//! Storage faults injected under the log through redb's `StorageBackend`.

use crate::common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annal_engine::{Log, LogConfig, LogError};
use redb::backends::InMemoryBackend;
use redb::StorageBackend;

/// An in-memory backend whose writes and syncs fail once `fail` is set.
#[derive(Debug)]
struct Faulty {
    inner: InMemoryBackend,
    fail: Arc<AtomicBool>,
}

impl Faulty {
    fn check(&self) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected I/O failure"));
        }
        Ok(())
    }
}

impl StorageBackend for Faulty {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}

#[test]
fn a_failed_commit_fails_every_caller_of_its_batch_and_poisons_the_log() {
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Faulty { inner: InMemoryBackend::new(), fail: Arc::clone(&fail) };
    let log = Arc::new(Log::open_with_backend(backend, LogConfig::default()).unwrap());
    let events = common::one_of_each_kind();
    assert_eq!(log.append(&events).unwrap(), Some(1..=events.len() as u64));

    fail.store(true, Ordering::SeqCst);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            let event = events[2].clone();
            std::thread::spawn(move || log.append(&[event]))
        })
        .collect();
    let mut commit_failed = 0;
    for t in threads {
        let result = t.join().unwrap();
        commit_failed += usize::from(matches!(result, Err(LogError::CommitFailed(_))));
        assert!(
            matches!(result, Err(LogError::CommitFailed(_)) | Err(LogError::Poisoned(_))),
            "no append may be acknowledged once the disk fails: {result:?}"
        );
    }
    assert!(commit_failed >= 1, "the first failing batch reports the commit failure itself");
    assert!(log.is_poisoned());

    // The disk recovers, but the log stays poisoned: its state after a failed commit is
    // unknown until it is reopened.
    fail.store(false, Ordering::SeqCst);
    assert!(matches!(log.append(&events[..1]), Err(LogError::Poisoned(_))));
    assert_eq!(log.last_seq(), events.len() as u64, "nothing after the failure was acknowledged");
    assert_eq!(log.read(5).unwrap().as_ref(), Some(&events[4]), "committed events stay readable");
}
