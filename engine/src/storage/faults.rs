//! A fault-injecting object store wrapper, for tests: the real store underneath, with
//! chosen operations made to fail before they reach it.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::Mutex;

use crate::event::BucketOp;

/// Wraps a store; the operations [`FaultyStore::fail`] names fail with an injected
/// error until [`FaultyStore::heal`].
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    failing: Mutex<Vec<BucketOp>>,
    injected: AtomicU64,
    calls: AtomicU64,
    /// Reads succeed to open but fail after this many bytes of their stream.
    break_reads_after: Mutex<Option<usize>>,
}

impl FaultyStore {
    /// Wrap `inner`; nothing fails yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            failing: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            break_reads_after: Mutex::new(None),
        }
    }

    /// Make every `op` fail from now on.
    pub fn fail(&self, op: BucketOp) {
        self.failing.lock().push(op);
    }

    /// Stop failing.
    pub fn heal(&self) {
        self.failing.lock().clear();
        *self.break_reads_after.lock() = None;
    }

    /// Let reads open, then fail after `bytes` of their body (a connection lost
    /// part-way).
    pub fn break_reads_after(&self, bytes: usize) {
        *self.break_reads_after.lock() = Some(bytes);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Operations asked of the store so far, failed or not.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn check(&self, op: BucketOp, path: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.failing.lock().contains(&op) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected {op:?} fault at {path}").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore").field("failing", &*self.failing.lock()).finish_non_exhaustive()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.check(BucketOp::Write, location.as_ref())?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(BucketOp::Write, location.as_ref())?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(BucketOp::Read, location.as_ref())?;
        let got = self.inner.get_opts(location, options).await?;
        let Some(limit) = *self.break_reads_after.lock() else { return Ok(got) };
        self.injected.fetch_add(1, Ordering::Relaxed);
        let (meta, range, attributes, extensions) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone(), got.extensions.clone());
        let path = location.to_string();
        let mut sent = 0usize;
        let stream = got
            .into_stream()
            .map(move |chunk| {
                let chunk = chunk?;
                if sent + chunk.len() > limit {
                    return Err(object_store::Error::Generic {
                        store: "faulty",
                        source: format!("injected read break at {path} after {sent} bytes").into(),
                    });
                }
                sent += chunk.len();
                Ok(chunk)
            })
            .boxed();
        Ok(GetResult {
            payload: object_store::GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(BucketOp::Read, location.as_ref())?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        if let Err(e) = self.check(BucketOp::Delete, "") {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = self.check(BucketOp::List, prefix.map_or("", |p| p.as_ref())) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check(BucketOp::List, prefix.map_or("", |p| p.as_ref()))?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(BucketOp::Write, to.as_ref())?;
        self.inner.copy_opts(from, to, options).await
    }
}
