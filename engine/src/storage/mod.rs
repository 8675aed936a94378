//! Storage buckets: named object stores for large artifacts (snapshots, exported
//! indexes, archived log segments), which do not belong in redb values.
//!
//! Each bucket is an [`object_store`] backend: a local directory (written through a
//! temporary file, fsync, rename and fsync of the directory, so no reader ever sees a
//! torn object) or an S3-compatible service. A bucket may name a `rescue` bucket that
//! reads fall back to. Every failed operation is appended to the log as a
//! [`BucketErrorRecorded`] event, which the error journal projection
//! ([`crate::projection::journal`]) turns into "what failed lately".
//!
//! What is an error: a backend failure of a read, write, delete or list. A read of a
//! key that does not exist is an answer ([`StorageError::NotFound`]), not an error,
//! unless a rescue bucket served it (the primary lost an object the rescue still has:
//! that is recorded as `rescued`). A delete of a missing key succeeds.

mod config;
mod error;
mod faults;
mod key;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parking_lot::Mutex;

pub use config::{Backend, BucketConfig, BucketsConfig, DEFAULT_PRIMARY_ROOT, PRIMARY};
pub use error::{OpenError, StorageError};
pub use faults::FaultyStore;
pub use key::{key_of, object_path};

use crate::chain::chain;
use crate::event::{BucketErrorRecorded, BucketOp, Event, EventBody, Stamp};
use crate::limits;
use crate::projection::Hooks;

impl fmt::Display for BucketOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BucketOp {
    /// `read`, `write`, `delete` or `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::List => "list",
        }
    }

    /// The operation named by [`BucketOp::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Delete, Self::List].into_iter().find(|op| op.as_str() == s)
    }
}

/// An object read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Bytes,
    /// The rescue bucket that served it, when the bucket asked failed.
    pub rescued_by: Option<String>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, ms since the Unix epoch.
    pub last_modified_ms: i64,
}

/// The objects under a prefix, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// At most [`limits::LIST_OBJECTS_MAX`] objects.
    pub objects: Vec<ObjectInfo>,
    /// More objects matched than were returned.
    pub truncated: bool,
}

/// The outcome of a reachability probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Write, read back and delete all worked, and the bytes read were those written.
    pub reachable: bool,
    /// The step that failed.
    pub failed: Option<BucketOp>,
    /// Its error.
    pub error: Option<String>,
    /// How long the probe took.
    pub elapsed: Duration,
    /// When it ran, ms since the Unix epoch.
    pub at_ms: u64,
}

/// A bucket as [`Storage::buckets`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// Its name.
    pub name: String,
    /// `local` or `s3`.
    pub backend: &'static str,
    /// The directory, or `endpoint/bucket/prefix`.
    pub location: String,
    /// Its rescue bucket.
    pub rescue: Option<String>,
    /// The last probe, if one ran.
    pub last_probe: Option<ProbeReport>,
}

/// Failure counters since the engine started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Every configured bucket, by name.
    pub buckets: Vec<String>,
    /// Failed operations per bucket and operation (rescued reads included).
    pub errors: BTreeMap<(String, BucketOp), u64>,
    /// Reads served by a rescue bucket, per bucket asked.
    pub rescued: BTreeMap<String, u64>,
    /// Bucket errors that could not be appended to the log (logged instead).
    pub journal_failures: u64,
}

struct Bucket {
    config: BucketConfig,
    location: String,
    store: Arc<dyn ObjectStore>,
}

/// Where the storage layer sends its failures: the engine appends each as an event to
/// the log (bypassing the command path: it is the engine's own observation, not a
/// caller's request, but not the bounds) and waits, briefly, for the journal to show it.
pub(crate) trait ErrorSink: Send + Sync {
    /// Make `event` durable; returns its sequence number.
    fn record(&self, event: &Event) -> Result<u64, crate::Error>;
}

/// The bucket registry of a data directory.
pub struct Storage {
    buckets: BTreeMap<String, Bucket>,
    /// Appends bucket error events; `None` for tooling that has no log open for
    /// writing (failures are then counted and logged only).
    recorder: Option<Arc<dyn ErrorSink>>,
    errors: Mutex<BTreeMap<(String, BucketOp), u64>>,
    rescued: Mutex<BTreeMap<String, u64>>,
    journal_failures: AtomicU64,
    probes: Mutex<BTreeMap<String, ProbeReport>>,
}

impl Storage {
    /// Set up every bucket of `config`; local roots are relative to `data_dir`.
    /// No I/O but creating local directories: a remote bucket's reachability is what
    /// [`Storage::probe`] tells.
    pub(crate) fn open(
        data_dir: &FsPath,
        config: &BucketsConfig,
        recorder: Arc<dyn ErrorSink>,
        hooks: &Hooks,
    ) -> Result<Self, StorageError> {
        let mut buckets = BTreeMap::new();
        for (name, bucket) in &config.buckets {
            let open = |source| StorageError::Open { bucket: name.clone(), source };
            let (store, location) = open_store(data_dir, &bucket.backend).map_err(open)?;
            let store = match &hooks.wrap_store {
                Some(wrap) => wrap(name, store),
                None => store,
            };
            buckets.insert(name.clone(), Bucket { config: bucket.clone(), location, store });
        }
        Ok(Self {
            buckets,
            recorder: Some(recorder),
            errors: Mutex::default(),
            rescued: Mutex::default(),
            journal_failures: AtomicU64::new(0),
            probes: Mutex::default(),
        })
    }

    /// Set up the buckets of `config` for tooling that reads them with no log open for
    /// writing (`annal verify`): failures are counted and logged, not journaled.
    ///
    /// # Errors
    /// As opening an engine's buckets.
    pub fn open_detached(data_dir: &FsPath, config: &BucketsConfig) -> Result<Self, StorageError> {
        let mut buckets = BTreeMap::new();
        for (name, bucket) in &config.buckets {
            let open = |source| StorageError::Open { bucket: name.clone(), source };
            let (store, location) = open_store(data_dir, &bucket.backend).map_err(open)?;
            buckets.insert(name.clone(), Bucket { config: bucket.clone(), location, store });
        }
        Ok(Self {
            buckets,
            recorder: None,
            errors: Mutex::default(),
            rescued: Mutex::default(),
            journal_failures: AtomicU64::new(0),
            probes: Mutex::default(),
        })
    }

    /// Every bucket, by name.
    pub fn buckets(&self) -> Vec<BucketInfo> {
        let probes = self.probes.lock();
        self.buckets
            .iter()
            .map(|(name, b)| BucketInfo {
                name: name.clone(),
                backend: b.config.backend.kind(),
                location: b.location.clone(),
                rescue: b.config.rescue.clone(),
                last_probe: probes.get(name).cloned(),
            })
            .collect()
    }

    /// Whether `bucket` is configured.
    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.buckets.contains_key(bucket)
    }

    /// Failure counters since start.
    pub fn stats(&self) -> StorageStats {
        StorageStats {
            buckets: self.buckets.keys().cloned().collect(),
            errors: self.errors.lock().clone(),
            rescued: self.rescued.lock().clone(),
            journal_failures: self.journal_failures.load(Ordering::Relaxed),
        }
    }

    fn bucket(&self, name: &str) -> Result<&Bucket, StorageError> {
        self.buckets.get(name).ok_or_else(|| StorageError::UnknownBucket(name.to_owned()))
    }

    /// Write `bytes` to `key` in `bucket`, replacing any object there. On success the
    /// object is durable (local: fsynced and renamed into place; S3: acknowledged).
    ///
    /// # Errors
    /// [`StorageError`]; a backend failure is journaled first.
    pub async fn put(&self, actor: &str, bucket: &str, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = checked(key)?;
        let b = self.bucket(bucket)?;
        match b.store.put(&path, PutPayload::from(bytes)).await {
            Ok(_) => Ok(()),
            Err(source) => Err(self.failed(actor, bucket, BucketOp::Write, key, source).await),
        }
    }

    /// Read `key` from `bucket` whole; if that fails and the bucket has a rescue bucket,
    /// from the rescue (the answer then names it, and the failure is journaled as
    /// `rescued`).
    ///
    /// # Errors
    /// [`StorageError::NotFound`] if neither has it; [`StorageError::TooLarge`] past
    /// [`limits::OBJECT_GET_BYTES_MAX`]; a backend failure (journaled) otherwise.
    pub async fn get(&self, actor: &str, bucket: &str, key: &str) -> Result<Fetched, StorageError> {
        self.get_bounded(actor, bucket, key, limits::OBJECT_GET_BYTES_MAX).await
    }

    /// [`Storage::get`] with a size limit of `max` bytes instead of the default.
    ///
    /// # Errors
    /// As [`Storage::get`].
    pub async fn get_bounded(
        &self,
        actor: &str,
        bucket: &str,
        key: &str,
        max: u64,
    ) -> Result<Fetched, StorageError> {
        let (bytes, rescued_by) = self
            .read_with_rescue(actor, bucket, key, |store, path, b| read_whole(store, path, b, key, max))
            .await?;
        Ok(Fetched { bytes, rescued_by })
    }

    /// Write an object given as consecutive chunks (no copy into one buffer), as
    /// [`Storage::put`].
    ///
    /// # Errors
    /// As [`Storage::put`].
    pub async fn put_chunks(
        &self,
        actor: &str,
        bucket: &str,
        key: &str,
        chunks: Vec<Bytes>,
    ) -> Result<(), StorageError> {
        let path = checked(key)?;
        let b = self.bucket(bucket)?;
        match b.store.put(&path, chunks.into_iter().collect::<PutPayload>()).await {
            Ok(_) => Ok(()),
            Err(source) => Err(self.failed(actor, bucket, BucketOp::Write, key, source).await),
        }
    }

    /// Open `key` in `bucket` for a streamed read, falling back to the rescue bucket as
    /// [`Storage::get`] does when the object cannot be opened. Memory stays bounded
    /// whatever the object's size. A failure while the stream is read is the reader's
    /// to report: [`Storage::record_failure`].
    ///
    /// # Errors
    /// As [`Storage::get`], but never [`StorageError::TooLarge`].
    pub async fn open_read(
        &self,
        actor: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectReader, StorageError> {
        let ((size, stream, served_by), rescued_by) = self
            .read_with_rescue(actor, bucket, key, |store, path, b| async move {
                let got = store.get(&path).await.map_err(ReadFailure::Store)?;
                Ok((got.meta.size, got.into_stream(), b))
            })
            .await?;
        Ok(ObjectReader { size, served_by, rescued_by, stream })
    }

    /// Try `read` on `bucket`, then on its rescue bucket; journal what failed.
    async fn read_with_rescue<T, F, Fut>(
        &self,
        actor: &str,
        bucket: &str,
        key: &str,
        read: F,
    ) -> Result<(T, Option<String>), StorageError>
    where
        F: Fn(Arc<dyn ObjectStore>, object_store::path::Path, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ReadFailure>>,
    {
        let path = checked(key)?;
        let b = self.bucket(bucket)?;
        let primary = match read(Arc::clone(&b.store), path.clone(), bucket.to_owned()).await {
            Ok(value) => return Ok((value, None)),
            Err(ReadFailure::Refused(e)) => return Err(e),
            Err(ReadFailure::Store(e)) => e,
        };
        let Some(rescue) = b.config.rescue.as_deref() else {
            return Err(self.failed_read(actor, bucket, key, primary, false).await);
        };
        let r = self.bucket(rescue)?;
        match read(Arc::clone(&r.store), path, rescue.to_owned()).await {
            Ok(value) => {
                *self.rescued.lock().entry(bucket.to_owned()).or_default() += 1;
                let _ = self.failed_read(actor, bucket, key, primary, true).await;
                Ok((value, Some(rescue.to_owned())))
            }
            Err(ReadFailure::Refused(e)) => Err(e),
            Err(ReadFailure::Store(rescue_error)) => {
                let answer = self.failed_read(actor, bucket, key, primary, false).await;
                let _ = self.failed_read(actor, rescue, key, rescue_error, false).await;
                Err(answer)
            }
        }
    }

    /// Journal a failure the storage layer did not see itself: a streamed read
    /// ([`Storage::open_read`]) that failed part-way. Never fails.
    pub async fn record_failure(
        &self,
        actor: &str,
        bucket: &str,
        op: BucketOp,
        key: &str,
        error: &object_store::Error,
    ) {
        self.journal(actor, bucket, op, key, error, false).await;
    }

    /// Delete `key` from `bucket`; deleting a missing key succeeds.
    ///
    /// # Errors
    /// [`StorageError`]; a backend failure is journaled first.
    pub async fn delete(&self, actor: &str, bucket: &str, key: &str) -> Result<(), StorageError> {
        let path = checked(key)?;
        let b = self.bucket(bucket)?;
        match b.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.failed(actor, bucket, BucketOp::Delete, key, source).await),
        }
    }

    /// The objects of `bucket` under `prefix` (whole segments: `a` lists `a/x`, not
    /// `ab`), by key, at most [`limits::LIST_OBJECTS_MAX`].
    ///
    /// # Errors
    /// [`StorageError`]; a backend failure is journaled first.
    pub async fn list(
        &self,
        actor: &str,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<Listing, StorageError> {
        let path = prefix.map(checked).transpose()?;
        let b = self.bucket(bucket)?;
        let mut stream = b.store.list(path.as_ref()).take(limits::LIST_OBJECTS_MAX + 1);
        let mut objects = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(meta)) => objects.push(ObjectInfo {
                    key: key_of(&meta.location),
                    size: meta.size,
                    last_modified_ms: meta.last_modified.timestamp_millis(),
                }),
                Ok(None) => break,
                Err(source) => {
                    return Err(self
                        .failed(actor, bucket, BucketOp::List, prefix.unwrap_or(""), source)
                        .await)
                }
            }
        }
        let truncated = objects.len() > limits::LIST_OBJECTS_MAX;
        objects.truncate(limits::LIST_OBJECTS_MAX);
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { objects, truncated })
    }

    /// Write a small object, read it back, compare and delete it. Each failed step is
    /// journaled like any other operation. The report is kept for [`Storage::buckets`].
    ///
    /// # Errors
    /// [`StorageError::UnknownBucket`] only: an unreachable bucket is a report.
    pub async fn probe(&self, actor: &str, bucket: &str) -> Result<ProbeReport, StorageError> {
        let b = self.bucket(bucket)?;
        let started = Instant::now();
        let at_ms = Stamp::now(actor).time_ms;
        let key = format!(".annal/probe-{at_ms}-{}", std::process::id());
        let path = checked(&key)?;
        let payload: Vec<u8> =
            (0..limits::PROBE_OBJECT_BYTES).map(|i| (i as u8).wrapping_mul(31) ^ 0x5a).collect();
        let outcome: Result<(), (BucketOp, String)> = async {
            if let Err(e) = b.store.put(&path, PutPayload::from(payload.clone())).await {
                return Err((BucketOp::Write, self.failed(actor, bucket, BucketOp::Write, &key, e).await));
            }
            match b.store.get(&path).await {
                Ok(got) => match got.bytes().await {
                    Ok(bytes) if bytes[..] == payload[..] => {}
                    Ok(bytes) => {
                        let e = object_store::Error::Generic {
                            store: "probe",
                            source: format!(
                                "read back {} bytes that differ from the {} written",
                                bytes.len(),
                                payload.len()
                            )
                            .into(),
                        };
                        return Err((
                            BucketOp::Read,
                            self.failed(actor, bucket, BucketOp::Read, &key, e).await,
                        ));
                    }
                    Err(e) => {
                        return Err((
                            BucketOp::Read,
                            self.failed(actor, bucket, BucketOp::Read, &key, e).await,
                        ))
                    }
                },
                Err(e) => {
                    return Err((BucketOp::Read, self.failed(actor, bucket, BucketOp::Read, &key, e).await))
                }
            }
            if let Err(e) = b.store.delete(&path).await {
                return Err((BucketOp::Delete, self.failed(actor, bucket, BucketOp::Delete, &key, e).await));
            }
            Ok(())
        }
        .await
        .map_err(|(op, e)| (op, e.to_string()));
        let report = ProbeReport {
            reachable: outcome.is_ok(),
            failed: outcome.as_ref().err().map(|(op, _)| *op),
            error: outcome.err().map(|(_, e)| e),
            elapsed: started.elapsed(),
            at_ms,
        };
        self.probes.lock().insert(bucket.to_owned(), report.clone());
        Ok(report)
    }

    async fn failed_read(
        &self,
        actor: &str,
        bucket: &str,
        key: &str,
        source: object_store::Error,
        rescued: bool,
    ) -> StorageError {
        if !rescued {
            if let object_store::Error::NotFound { .. } = source {
                return StorageError::NotFound { bucket: bucket.to_owned(), key: key.to_owned() };
            }
        }
        self.journal(actor, bucket, BucketOp::Read, key, &source, rescued).await;
        StorageError::Backend { bucket: bucket.to_owned(), op: BucketOp::Read, key: key.to_owned(), source }
    }

    /// Journal a failed operation and turn it into the caller's error.
    async fn failed(
        &self,
        actor: &str,
        bucket: &str,
        op: BucketOp,
        key: &str,
        source: object_store::Error,
    ) -> StorageError {
        self.journal(actor, bucket, op, key, &source, false).await;
        StorageError::Backend { bucket: bucket.to_owned(), op, key: key.to_owned(), source }
    }

    /// Count and append one bucket error event. Never fails: a failure to append is
    /// logged and counted, not journaled again (that could loop on a full disk).
    async fn journal(
        &self,
        actor: &str,
        bucket: &str,
        op: BucketOp,
        key: &str,
        source: &object_store::Error,
        rescued: bool,
    ) {
        *self.errors.lock().entry((bucket.to_owned(), op)).or_default() += 1;
        let error = cut(chain(source), limits::BUCKET_ERROR_TEXT_MAX);
        tracing::warn!(bucket, %op, key, rescued, %error, "bucket operation failed");
        let event = Event::new(
            cut(actor.to_owned(), limits::TEXT_BYTES_MAX),
            EventBody::BucketErrorRecorded(BucketErrorRecorded {
                bucket: bucket.to_owned(),
                op,
                key: cut(key.to_owned(), limits::TEXT_BYTES_MAX),
                error,
                rescued,
            }),
        );
        let Some(recorder) = self.recorder.as_ref().map(Arc::clone) else {
            tracing::error!(bucket, %op, key, "bucket error not journaled: no log is open for writing");
            return;
        };
        let outcome = tokio::task::spawn_blocking(move || recorder.record(&event)).await;
        let failure = match outcome {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => chain(&e),
            Err(join) => chain(&join),
        };
        self.journal_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(bucket, %op, key, error = %failure, "could not journal a bucket error; it is only in this log line");
    }
}

/// An object opened for a streamed read.
pub struct ObjectReader {
    /// Its size in bytes.
    pub size: u64,
    /// The bucket the stream reads from (the rescue bucket when it served the read).
    pub served_by: String,
    /// The rescue bucket that served it, when the bucket asked failed.
    pub rescued_by: Option<String>,
    /// Its bytes, in chunks.
    pub stream: futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("size", &self.size)
            .field("served_by", &self.served_by)
            .field("rescued_by", &self.rescued_by)
            .finish_non_exhaustive()
    }
}

enum ReadFailure {
    /// Not a bucket failure: the caller's answer as is.
    Refused(StorageError),
    /// The store failed (or has no such object).
    Store(object_store::Error),
}

/// Map `len` bytes of a local object at `offset` and fault every page in at once,
/// with `MADV_POPULATE_READ`: an I/O error is returned here rather than raised as a
/// SIGBUS on a later access. No copy: the page cache's pages are the object's bytes.
///
/// A local bucket never changes an object in place (a put writes a staging file and
/// renames it over the key), so the mapped inode keeps its bytes; only a process
/// truncating the file behind the engine's back, or the kernel dropping a clean page
/// and failing to read it again, could still fault a read of the mapping (which lives
/// as long as a restore or a segment read).
fn map_whole(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see above; the mapping is read-only.
    let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file)? };
    map.advise(memmap2::Advice::PopulateRead)?;
    Ok(map)
}

/// One read of `len` bytes at `offset` into a buffer of exactly that size.
fn read_exact_at(
    file: std::fs::File,
    offset: u64,
    len: usize,
    path: &std::path::Path,
) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf).map_err(|e| {
        std::io::Error::new(e.kind(), format!("{}: reading {len} bytes at {offset}: {e}", path.display()))
    })?;
    Ok(Bytes::from(buf))
}

async fn read_whole(
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    bucket: String,
    key: &str,
    max: u64,
) -> Result<Bytes, ReadFailure> {
    let got = store.get(&path).await.map_err(ReadFailure::Store)?;
    if got.meta.size > max {
        return Err(ReadFailure::Refused(StorageError::TooLarge {
            bucket,
            key: key.to_owned(),
            size: got.meta.size,
            max,
        }));
    }
    match got.payload {
        // A local object: one read of the open file (the version `get` opened, even if
        // it is replaced meanwhile), instead of object_store's 8 KiB chunks.
        object_store::GetResultPayload::File(file, path) => {
            let range = got.range;
            let read = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
                let len =
                    usize::try_from(range.end.saturating_sub(range.start)).map_err(std::io::Error::other)?;
                if len == 0 {
                    return Ok(Bytes::new());
                }
                match map_whole(&file, range.start, len) {
                    Ok(map) => Ok(Bytes::from_owner(map)),
                    // Not mappable (some FUSE mounts) or a page that could not be read:
                    // the plain read says which, as an error.
                    Err(error) => {
                        tracing::debug!(path = %path.display(), %error, "mapping refused; reading instead");
                        read_exact_at(file, range.start, len, &path)
                    }
                }
            })
            .await;
            match read {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(e)) => Err(ReadFailure::Store(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })),
                Err(e) => Err(ReadFailure::Store(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })),
            }
        }
        object_store::GetResultPayload::Stream(stream) => {
            object_store::collect_bytes(stream, Some(got.meta.size)).await.map_err(ReadFailure::Store)
        }
    }
}

fn checked(key: &str) -> Result<object_store::path::Path, StorageError> {
    object_path(key).map_err(|source| StorageError::Key { key: key.to_owned(), source })
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn open_store(data_dir: &FsPath, backend: &Backend) -> Result<(Arc<dyn ObjectStore>, String), OpenError> {
    match backend {
        Backend::Local { root } => {
            let root = data_dir.join(root);
            std::fs::create_dir_all(&root).map_err(|source| OpenError::Dir { path: root.clone(), source })?;
            let store =
                LocalFileSystem::new_with_prefix(&root)?.with_fsync(true).with_automatic_cleanup(true);
            Ok((Arc::new(store), root.display().to_string()))
        }
        Backend::S3(s3) => {
            let options = ClientOptions::new()
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(s3.allow_http);
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            };
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_access_key_id(&s3.credentials.access_key_id)
                .with_secret_access_key(&s3.credentials.secret_access_key)
                .with_allow_http(s3.allow_http)
                .with_client_options(options)
                .with_retry(retry);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(token) = &s3.credentials.session_token {
                builder = builder.with_token(token);
            }
            let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
            let endpoint = s3.endpoint.as_deref().unwrap_or("aws");
            let (store, location): (Arc<dyn ObjectStore>, String) = match &s3.prefix {
                Some(prefix) => (
                    Arc::new(PrefixStore::new(store, prefix.as_str())),
                    format!("{endpoint}/{}/{prefix}", s3.bucket),
                ),
                None => (store, format!("{endpoint}/{}", s3.bucket)),
            };
            Ok((store, location))
        }
    }
}
