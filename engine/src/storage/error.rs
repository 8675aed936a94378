//! The storage layer's errors.

use crate::event::BucketOp;

use super::key::KeyError;

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No bucket of that name is configured.
    #[error("bucket {0:?} is not configured")]
    UnknownBucket(String),
    /// The key was refused before any I/O.
    #[error("key {key:?} {source}")]
    Key {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        #[source]
        source: KeyError,
    },
    /// The object does not exist (in the bucket, nor in its rescue).
    #[error("bucket {bucket:?} has no object {key:?}")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The object is larger than a whole-object read returns.
    #[error("object {key:?} in bucket {bucket:?} is {size} bytes, over the {max} a whole read returns")]
    TooLarge {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Its size.
        size: u64,
        /// [`limits::OBJECT_GET_BYTES_MAX`].
        max: u64,
    },
    /// The backend failed; the failure is in the error journal.
    #[error("bucket {bucket:?}: {op} of {key:?} failed")]
    Backend {
        /// The bucket.
        bucket: String,
        /// The operation.
        op: BucketOp,
        /// The key or prefix.
        key: String,
        /// The backend's error.
        #[source]
        source: object_store::Error,
    },
    /// A bucket could not be set up at open.
    #[error("bucket {bucket:?} could not be opened")]
    Open {
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: OpenError,
    },
}

/// Why a bucket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Creating a local bucket's directory failed.
    #[error("cannot create {path}")]
    Dir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The backend refused its configuration.
    #[error(transparent)]
    Store(#[from] object_store::Error),
}
