//! Storage buckets: named object stores for large artifacts (snapshots, exported
//! indexes, archived log segments), which do not belong in redb values.
//!
//! Each bucket is an [`object_store`] backend: a local directory (written through a
//! temporary file, fsync, rename and fsync of the directory, so no reader ever sees a
//! torn object) or an S3-compatible service. A bucket may name a `rescue` bucket that
//! reads fall back to. Every failed operation is appended to the log as a
//! [`BucketErrorRecorded`] event, which the error journal projection
//! ([`crate::projection::bucket_errors`]) turns into "what failed lately".
//!
//! What is an error: a backend failure of a read, write, delete or list. A read of a
//! key that does not exist is an answer ([`StorageError::NotFound`]), not an error,
//! unless a rescue bucket served it (the primary lost an object the rescue still has:
//! that is recorded as `rescued`). A delete of a missing key succeeds.

mod backend;
mod config;
mod error;
mod failures;
mod faults;
mod key;
mod objects;
mod probe;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use parking_lot::Mutex;

use crate::event::{BucketOp, Event};
use crate::projection::Hooks;
use backend::open_store;
pub use config::{Backend, BucketConfig, BucketsConfig, DEFAULT_PRIMARY_ROOT, PRIMARY};
pub use error::{OpenError, StorageError};
pub use faults::FaultyStore;
pub use key::{key_of, object_path};
pub use objects::ObjectReader;

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
}

enum ReadFailure {
    /// Not a bucket failure: the caller's answer as is.
    Refused(StorageError),
    /// The store failed (or has no such object).
    Store(object_store::Error),
}
