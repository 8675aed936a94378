//! Failed operations: counted, logged, and appended to the log as
//! `BucketErrorRecorded` events through the [`ErrorSink`](super::ErrorSink).
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::chain::chain;
use crate::event::{BucketErrorRecorded, BucketOp, Event, EventBody};
use crate::limits;

impl Storage {
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

    pub(super) async fn failed_read(
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
    pub(super) async fn failed(
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
