//! Object I/O: whole and streamed reads (with the rescue bucket), writes, deletes,
//! listings.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use crate::event::BucketOp;
use crate::limits;

impl Storage {
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
    pub(super) async fn read_with_rescue<T, F, Fut>(
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

pub(super) fn checked(key: &str) -> Result<object_store::path::Path, StorageError> {
    object_path(key).map_err(|source| StorageError::Key { key: key.to_owned(), source })
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
