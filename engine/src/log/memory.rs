//! A log kept in memory that outlives the log opened on it, as a file does: for
//! running the whole engine many thousand times a minute (the `engine_ops` fuzz
//! target), with no file to create, fsync and remove per run.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::StorageBackend;

/// Bytes per stored page.
const PAGE: usize = 4096;

/// A redb storage backend in memory whose clones share the same bytes: a log closed and
/// opened again on a clone finds its events, as it would in its file. `sync_data` is
/// free and nothing survives the process, so it is for tests and fuzzing only (see
/// [`crate::Hooks::log_in_memory`]).
///
/// Sparse, as a file is: redb reserves megabytes at creation and writes pages far apart,
/// but only the 4 KiB pages written to are stored; the rest read as zeros.
#[derive(Clone, Default)]
pub struct MemoryBackend(Arc<RwLock<Pages>>);

#[derive(Default)]
struct Pages {
    /// The length redb set.
    len: u64,
    /// The pages written to, by page number; all inside `len`.
    pages: HashMap<u64, Box<[u8; PAGE]>>,
}

impl MemoryBackend {
    /// An empty backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn pages(&self) -> RwLockReadGuard<'_, Pages> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn pages_mut(&self) -> RwLockWriteGuard<'_, Pages> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.pages();
        f.debug_struct("MemoryBackend").field("len", &pages.len).field("pages", &pages.pages.len()).finish()
    }
}

/// Checks that `n` bytes at `offset` lie inside `len`, as a read or write of a file
/// must, and splits them by page: (page number, offset in the page, bytes of it).
fn spans(offset: u64, n: usize, len: u64) -> Result<impl Iterator<Item = (u64, usize, usize)>, io::Error> {
    if offset.checked_add(n as u64).is_none_or(|end| end > len) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{n} bytes at {offset} are past the end of the {len}-byte log"),
        ));
    }
    let page = PAGE as u64;
    let mut at = offset;
    let end = offset + n as u64;
    Ok(std::iter::from_fn(move || {
        (at < end).then(|| {
            let within = (at % page) as usize;
            let take = (PAGE - within).min((end - at) as usize);
            let span = (at / page, within, take);
            at += take as u64;
            span
        })
    }))
}

impl StorageBackend for MemoryBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.pages().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let pages = self.pages();
        let mut done = 0;
        for (number, within, take) in spans(offset, out.len(), pages.len)? {
            let out = &mut out[done..done + take];
            match pages.pages.get(&number) {
                Some(page) => out.copy_from_slice(&page[within..within + take]),
                None => out.fill(0),
            }
            done += take;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut pages = self.pages_mut();
        if len < pages.len {
            // Cut bytes read as zeros if the length grows again, as in a file.
            let page = PAGE as u64;
            pages.pages.retain(|&number, _| number * page < len);
            if let Some(last) = pages.pages.get_mut(&(len / page)) {
                last[(len % page) as usize..].fill(0);
            }
        }
        pages.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut pages = self.pages_mut();
        let mut done = 0;
        for (number, within, take) in spans(offset, data.len(), pages.len)? {
            let page = pages.pages.entry(number).or_insert_with(|| Box::new([0; PAGE]));
            page[within..within + take].copy_from_slice(&data[done..done + take]);
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody, IndexDropped};
    use crate::log::{Log, LogConfig};

    #[test]
    fn bytes_past_the_last_write_read_as_zeros_and_past_the_length_fail() {
        let backend = MemoryBackend::new();
        backend.set_len(16).unwrap();
        backend.write(4, &[1, 2, 3]).unwrap();
        let mut out = [9u8; 10];
        backend.read(2, &mut out).unwrap();
        assert_eq!(out, [0, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
        assert!(backend.read(10, &mut [0u8; 7]).is_err());
        assert!(backend.write(15, &[1, 2]).is_err());
        assert!(backend.read(u64::MAX, &mut [0u8; 1]).is_err());
    }

    #[test]
    fn a_write_across_pages_reads_back_whole() {
        let backend = MemoryBackend::new();
        backend.set_len(3 * PAGE as u64).unwrap();
        let data: Vec<u8> = (0..PAGE + 100).map(|i| (i % 251) as u8 + 1).collect();
        backend.write(PAGE as u64 - 50, &data).unwrap();
        let mut out = vec![0u8; data.len() + 20];
        backend.read(PAGE as u64 - 60, &mut out).unwrap();
        assert_eq!(&out[..10], &[0; 10]);
        assert_eq!(&out[10..10 + data.len()], &data[..]);
        assert_eq!(&out[10 + data.len()..], &[0; 10]);
    }

    #[test]
    fn a_shrunk_then_grown_backend_reads_zeros_where_the_cut_bytes_were() {
        let backend = MemoryBackend::new();
        let len = 2 * PAGE as u64;
        backend.set_len(len).unwrap();
        backend.write(0, &vec![7; 2 * PAGE]).unwrap();
        backend.set_len(4).unwrap();
        backend.set_len(len).unwrap();
        let mut out = vec![9u8; 2 * PAGE];
        backend.read(0, &mut out).unwrap();
        assert_eq!(&out[..4], &[7, 7, 7, 7]);
        assert!(out[4..].iter().all(|&b| b == 0));
        assert_eq!(backend.len().unwrap(), len);
    }

    #[test]
    fn a_log_closed_and_opened_again_on_a_clone_of_the_backend_finds_its_events() {
        let backend = MemoryBackend::new();
        let log = Log::open_with_backend(backend.clone(), LogConfig::default()).unwrap();
        let body = EventBody::IndexDropped(IndexDropped { name: "docs".into() });
        let seqs = log.append(&[Event::new("test", body.clone()), Event::new("test", body)]).unwrap();
        assert_eq!(seqs, Some(1..=2));
        log.close().unwrap();
        drop(log);

        let log = Log::open_with_backend(backend, LogConfig::default()).unwrap();
        assert_eq!(log.last_seq(), 2);
        let events = log.read_range(1..=2, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[1].1.body, EventBody::IndexDropped(d) if d.name == "docs"));
    }
}
