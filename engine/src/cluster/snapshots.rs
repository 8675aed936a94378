//! Snapshots the cluster shares: the pointer to the newest one (a JetStream KV entry),
//! a replica's start from it, and the stream's retention tied to it.
//!
//! ```text
//!  lease holder: snapshot at S --> object in the shared bucket --> SnapshotTaken in the
//!                stream --> pointer {key, S, stream message holding S} (KV, at the
//!                revision read: only forward) --> purge the stream below what the
//!                previous pointer needs
//!  new replica:  pointer --> object (checked against it) --> a copy under its own
//!                prefix --> log begins at S + 1, copy from the message after S
//! ```
//!
//! Retention keeps one snapshot of margin: the stream drops only what the *previous*
//! pointer covers, so a replica that lags by less than a snapshot interval still finds
//! the messages it needs. The object the pointer names is never pruned by its node
//! ([`crate::snapshot::Sharing::protects`]), so a new node finds it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::{Deserialize, Serialize};

use crate::event::SnapshotTaken;
use crate::log::LogReader;

use super::{js_error, ClusterError, ClusterLink};

/// The lease of the node that takes the cluster's scheduled snapshots.
pub const SNAPSHOT_LEASE: &str = "snapshots";
/// The key of the newest shared snapshot in the bucket `<stream>_snapshots`.
const POINTER_KEY: &str = "newest";
/// Revisions of the pointer the bucket keeps (an audit of recent moves).
const POINTER_HISTORY: i64 = 8;

/// The cluster's newest shared snapshot: the object, and where the events it covers
/// end in the stream. Stored as JSON (docs/FORMAT.md, "Snapshot pointer").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPointer {
    /// The stream it belongs to (name and creation time): a pointer left by a stream
    /// deleted and made again is not followed.
    pub stream: String,
    /// The node that took it.
    pub node: String,
    /// The bucket holding it (the same bucket name on every node: a shared one).
    pub bucket: String,
    /// Its object key.
    pub key: String,
    /// The last event it covers (S).
    pub seq: u64,
    /// The object's size.
    pub bytes: u64,
    /// CRC-32 of the whole object.
    pub crc32: u32,
    /// The stream message that holds event S.
    pub stream_seq: u64,
    /// How many frames of that message are at or before S (1 to `frames`).
    pub through: u64,
    /// How many frames that message holds.
    pub frames: u64,
}

impl SnapshotPointer {
    /// Where a replica starting from this snapshot stands in the stream: the last
    /// message the snapshot covers whole, and how many frames of the next one it
    /// covers (S fell inside that message).
    pub fn start(&self) -> (u64, u64) {
        if self.through >= self.frames {
            (self.stream_seq, 0)
        } else {
            (self.stream_seq.saturating_sub(1), self.through)
        }
    }

    /// The first stream message a replica starting from this snapshot needs.
    pub fn first_needed(&self) -> u64 {
        self.start().0 + 1
    }

    /// The registration it points at.
    pub fn taken(&self) -> SnapshotTaken {
        SnapshotTaken {
            seq: self.seq,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            bytes: self.bytes,
            crc32: self.crc32,
        }
    }
}

/// The KV bucket `name`, made if missing.
pub(super) async fn kv_bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    max_age: Duration,
    history: i64,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        history,
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    js.create_key_value(config).await.map_err(|e| js_error("kv create", e))
}

/// The bucket of the snapshot pointer.
fn pointer_bucket(stream: &str) -> String {
    format!("{stream}_snapshots")
}

/// The pointer as stored now and its revision (`None`: no pointer, or one of another
/// stream).
async fn read_pointer(
    store: &kv::Store,
    stream_id: &str,
) -> Result<(Option<SnapshotPointer>, Option<u64>), ClusterError> {
    let entry = store.entry(POINTER_KEY).await.map_err(|e| js_error("kv get", e))?;
    let Some(entry) = entry else { return Ok((None, None)) };
    if entry.operation != kv::Operation::Put {
        return Ok((None, Some(entry.revision)));
    }
    let pointer: SnapshotPointer = serde_json::from_slice(&entry.value).map_err(|e| {
        js_error("snapshot pointer", format!("pointer revision {} does not parse: {e}", entry.revision))
    })?;
    if pointer.stream_seq == 0 || pointer.through == 0 || pointer.through > pointer.frames {
        return Err(js_error(
            "snapshot pointer",
            format!(
                "pointer revision {} places event {} at frame {} of {} of message {}",
                entry.revision, pointer.seq, pointer.through, pointer.frames, pointer.stream_seq
            ),
        ));
    }
    Ok(((pointer.stream == stream_id).then_some(pointer), Some(entry.revision)))
}

/// The cluster's newest shared snapshot of stream `stream_id`, if one was published.
pub(super) async fn newest_pointer(
    js: &jetstream::Context,
    stream: &str,
    stream_id: &str,
) -> Result<Option<SnapshotPointer>, ClusterError> {
    let bucket = pointer_bucket(stream);
    // No bucket (its stream is `KV_<bucket>`): no snapshot was ever shared. Any other
    // failure is an error, not "no snapshot": an empty node would replay instead.
    if let Err(error) = js.get_stream(format!("KV_{bucket}")).await {
        return match error.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(js_error("kv bucket", error)),
        };
    }
    let store = js.get_key_value(bucket).await.map_err(|e| js_error("kv bucket", e))?;
    Ok(read_pointer(&store, stream_id).await?.0)
}

impl ClusterLink {
    /// Whether this node holds the [`SNAPSHOT_LEASE`]: it alone takes the cluster's
    /// scheduled snapshots and moves the pointer.
    pub fn holds_snapshot_lease(&self) -> bool {
        self.snapshot_lease.load(Ordering::Acquire)
    }

    /// The newest shared snapshot, as last read (at start, by the poller, or as this
    /// node published it).
    pub fn snapshot_pointer(&self) -> Option<SnapshotPointer> {
        crate::sync::lock(&self.pointer).clone()
    }

    /// Point the cluster at snapshot `taken` of this node (its bucket is shared), then
    /// let the stream drop what the previous pointer covers. In the background: the
    /// snapshot is durable and registered already; a pointer not moved costs only
    /// retention, and the next snapshot tries again.
    pub(super) fn share(self: &Arc<Self>, taken: SnapshotTaken) {
        let link = Arc::clone(self);
        self.handle.spawn(async move {
            match link.move_pointer(&taken).await {
                Ok(Some(purged_below)) => {
                    tracing::info!(key = taken.key, seq = taken.seq, purged_below, "snapshot shared")
                }
                Ok(None) => tracing::info!(key = taken.key, seq = taken.seq, "snapshot shared"),
                Err(error) => tracing::warn!(
                    key = taken.key,
                    error = %crate::chain::chain(&error),
                    "could not point the cluster at a snapshot"
                ),
            }
        });
    }

    /// Returns the stream sequence number the stream was purged below, if it was.
    async fn move_pointer(&self, taken: &SnapshotTaken) -> Result<Option<u64>, ClusterError> {
        let reader: LogReader = self.log.clone();
        let seq = taken.seq;
        let position = tokio::task::spawn_blocking(move || reader.stream_position(seq))
            .await
            .map_err(ClusterError::Task)?
            .map_err(|e| ClusterError::Copy { source: Box::new(e) })?;
        let Some((stream_seq, through, frames)) = position else {
            // Event S was not copied from the stream (S = 0, or older than this log).
            return Ok(None);
        };
        let pointer = SnapshotPointer {
            stream: self.stream_id.clone(),
            node: self.config.node.clone(),
            bucket: taken.bucket.clone(),
            key: taken.key.clone(),
            seq,
            bytes: taken.bytes,
            crc32: taken.crc32,
            stream_seq,
            through,
            frames,
        };
        let store = kv_bucket(
            &self.js,
            &pointer_bucket(&self.config.stream),
            self.config.replicas,
            Duration::ZERO,
            POINTER_HISTORY,
        )
        .await?;
        let (previous, revision) = read_pointer(&store, &self.stream_id).await?;
        if previous.as_ref().is_some_and(|p| p.seq >= pointer.seq) {
            return Ok(None); // the cluster has a newer one (this node lost the lease)
        }
        let value = bytes::Bytes::from(
            serde_json::to_vec(&pointer).map_err(|e| js_error("snapshot pointer", e.to_string()))?,
        );
        match revision {
            Some(revision) => {
                store.update(POINTER_KEY, value, revision).await.map_err(|e| js_error("kv update", e))
            }
            None => store.create(POINTER_KEY, value).await.map_err(|e| js_error("kv create", e)),
        }?;
        *crate::sync::lock(&self.pointer) = Some(pointer);
        let Some(previous) = previous else { return Ok(None) };
        let below = previous.first_needed();
        let stream = self.js.get_stream(&self.config.stream).await.map_err(|e| js_error("stream info", e))?;
        stream.purge().sequence(below).await.map_err(|e| js_error("purge", e))?;
        Ok(Some(below))
    }
}

/// What the engine's snapshot taker hands a clustered node: the schedule follows the
/// [`SNAPSHOT_LEASE`], and the holder's snapshots are shared when their bucket is.
pub struct SnapshotSharing {
    link: Arc<ClusterLink>,
    shared_bucket: bool,
}

impl SnapshotSharing {
    /// For `link`; `shared_bucket`: the snapshot bucket is one every node reads (S3),
    /// so a pointer to it is of use to another node.
    pub fn new(link: Arc<ClusterLink>, shared_bucket: bool) -> Self {
        Self { link, shared_bucket }
    }
}

impl crate::snapshot::Sharing for SnapshotSharing {
    fn schedules(&self) -> bool {
        // Unshared snapshots serve only their own node's restarts: every node takes
        // them.
        !self.shared_bucket || self.link.holds_snapshot_lease()
    }

    fn protects(&self, key: &str) -> bool {
        self.link.snapshot_pointer().is_some_and(|pointer| pointer.key == key)
    }

    fn registered(&self, taken: &SnapshotTaken) {
        if self.shared_bucket && self.link.holds_snapshot_lease() {
            self.link.share(taken.clone());
        }
    }
}
