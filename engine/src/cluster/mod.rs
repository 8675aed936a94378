//! The clustered log: the event log replicated by a NATS JetStream stream, not by a
//! consensus of annal's own. docs/SCALE-OUT.md has the design and the failure table.
//!
//! ```text
//!  write: validate (schema as of event V) --> publish one commit message with
//!         Nats-Expected-Last-Sequence = the stream position this node copied, and
//!         Nats-Msg-Id (a retry is stored once) --> JetStream quorum ack (fsynced on
//!         a majority: sync_interval always) --> wait until the copy holds it
//!  copy:  ordered consumer from the local position + 1 --> Log::mirror: the frames at
//!         the next local sequence numbers + the stream position, one durable redb
//!         transaction --> the projector applies them as it applies any log
//! ```
//!
//! The local redb log stays: it is this node's copy of the stream, so snapshots, time
//! travel, `log verify` and replay work on it unchanged, and a restart resumes the copy
//! from its stream position instead of re-reading the stream. Every node expands the
//! same messages into the same events, so a sequence number means the same event on
//! every node (`min_seq` works across nodes).
//!
//! Optimistic concurrency: a publish names the stream position the node has copied; if
//! another node's commit landed first the server refuses it (wrong last sequence), the
//! node copies up, and publishes again, unless what it copied changes the schema the
//! write was validated against ([`crate::event::EventKind::guards_writes`]): then the
//! write fails with [`ClusterError::Conflict`] and nothing is appended.

pub mod commit;
mod error;
mod snapshots;

pub use error::ClusterError;
pub use snapshots::{SnapshotPointer, SnapshotSharing, SNAPSHOT_LEASE};

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use futures::{FutureExt, StreamExt};

use crate::event::check as check_frame;
use crate::event::{Event, EventBody, SnapshotTaken};
use crate::log::{Bootstrap, Log, LogError, LogReader, MessageSpan, Mirrored, Upstream};
use crate::sync::lock;

/// Header naming the node (and process) that published a commit.
pub const NODE_HEADER: &str = "Annal-Node";
/// Most messages copied in one local transaction.
const COPY_BATCH_MESSAGES: usize = 512;
/// Most bytes copied in one local transaction.
const COPY_BATCH_BYTES: usize = 16 << 20;
/// Publishes tried while the stream keeps moving ahead of this node's copy.
const PUBLISH_ATTEMPTS_MAX: u32 = 64;
/// Idle half-seconds of the consumer, while the stream holds more, before it is made
/// again.
const STALL_IDLE_TICKS: u32 = 4;
/// The lease of the node that embeds documents (the others leave it to that one).
pub const EMBEDDER_LEASE: &str = "embedder";
/// A lease not renewed for this long lapses, and another node may take it.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often the holder renews a lease (and a node without it tries to take it).
const LEASE_RENEW: Duration = Duration::from_secs(5);
/// Longest wait for one publish's ack before it is sent again (same message id).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// This process's commits the copier has copied, by message id, with their local
/// ranges, until their publisher takes them; and the wake-up of publishers.
type Copied = (Mutex<CopiedMap>, Condvar);

/// The local ranges of this process's copied commits that a publisher waits for, and
/// the ids publishers stopped waiting for (so their ranges are not kept forever).
#[derive(Default)]
struct CopiedMap {
    ranges: HashMap<String, RangeInclusive<u64>>,
    abandoned: std::collections::HashSet<String>,
}

/// Most appends in one group commit.
const GROUP_APPENDS_MAX: usize = 1_024;
/// How often the stream's last sequence number is read (the lag's other end).
const STREAM_POLL: Duration = Duration::from_millis(250);
/// The snapshot pointer is read every this many stream polls.
const POINTER_POLL_TICKS: u64 = 8;

/// What a replica starting empty calls to begin from the cluster's newest snapshot:
/// fetch the object, check it against the pointer, keep a copy under this node's own
/// key, and return that copy's registration.
pub type BootstrapFn<'a> = dyn Fn(&SnapshotPointer) -> Result<SnapshotTaken, Box<dyn std::error::Error + Send + Sync>>
    + Send
    + Sync
    + 'a;

/// Begin the empty `log` from the snapshot `pointer` names.
fn begin_from(log: &Log, pointer: &SnapshotPointer, begin: &BootstrapFn<'_>) -> Result<(), ClusterError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| ClusterError::Bootstrap {
        key: pointer.key.clone(),
        seq: pointer.seq,
        source,
    };
    let taken = begin(pointer).map_err(failed)?;
    let record = crate::event::encode(&Event::new(
        crate::snapshot::ENGINE_ACTOR,
        EventBody::SnapshotTaken(taken.clone()),
    ))
    .map_err(|e| failed(Box::new(e)))?;
    let (stream_seq, skip) = pointer.start();
    log.bootstrap(Bootstrap { base: pointer.seq, stream_seq, skip, record })
        .map_err(|e| failed(Box::new(e)))?;
    tracing::info!(
        from = pointer.key,
        key = taken.key,
        seq = pointer.seq,
        stream_seq,
        skip,
        "began from the cluster's newest snapshot"
    );
    Ok(())
}

/// Where the stream is and how this node takes part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server addresses, comma-separated (`nats://10.0.0.1:4222,nats://...`).
    pub url: String,
    /// The JetStream stream holding the log (created if missing).
    pub stream: String,
    /// Replicas of the stream when this node creates it (3 for a quorum that survives
    /// one server; at most the number of servers).
    pub replicas: usize,
    /// This node's name (in every commit it publishes, and in `cluster status`).
    pub node: String,
    /// How long a publish may take, retries included, before its outcome is unknown.
    pub publish_timeout: Duration,
    /// Ready (`/readyz`) only while this node's copy and projections are within this
    /// many events / messages of the stream.
    pub max_lag: u64,
}

impl ClusterConfig {
    /// A config with the defaults: stream `ANNAL`, 3 replicas, 10 s publish timeout,
    /// ready within 1,000 events.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "ANNAL".into(),
            replicas: 3,
            node: node.into(),
            publish_timeout: Duration::from_secs(10),
            max_lag: 1_000,
        }
    }

    /// Refuse a node or stream name that cannot be a key prefix, a header value or a
    /// stream name: 1 to 64 of `A-Z a-z 0-9 _ -`.
    ///
    /// # Errors
    /// [`ClusterError::BadConfig`] naming the field.
    pub fn check(&self) -> Result<(), ClusterError> {
        let ok = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !ok(&self.node) {
            return Err(ClusterError::BadConfig { field: "node", value: self.node.clone() });
        }
        if !ok(&self.stream) {
            return Err(ClusterError::BadConfig { field: "stream", value: self.stream.clone() });
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::BadConfig { field: "replicas", value: self.replicas.to_string() });
        }
        Ok(())
    }

    /// The subject the stream holds: one subject, so the stream's order is the log's.
    pub fn subject(&self) -> String {
        format!("annal.{}.events", self.stream.to_ascii_lowercase())
    }
}

/// Where this node stands in the cluster, for `cluster status` and `/admin/cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// The stream's name.
    pub stream: String,
    /// The stream's last sequence number, as last read.
    pub stream_last: u64,
    /// The stream sequence number this node's copy reaches.
    pub copied: u64,
    /// Messages of the stream not copied yet.
    pub lag_messages: u64,
    /// Commits this node published since it started.
    pub published: u64,
    /// Publishes that found another node's commit first and were placed again.
    pub republished: u64,
    /// Writes refused because another node changed the schema first.
    pub conflicts: u64,
    /// Why copying stopped, if it did.
    pub fault: Option<String>,
    /// Whether this node holds the embedder lease (it alone embeds documents).
    pub embedder_lease: bool,
    /// Whether this node holds the snapshot lease (it alone takes scheduled
    /// snapshots and moves the pointer).
    pub snapshot_lease: bool,
    /// The stream's first sequence number, as last read: messages before it were
    /// dropped by retention (0: the stream is empty and never was purged).
    pub stream_first: u64,
    /// The cluster's newest shared snapshot, as last read.
    pub pointer: Option<SnapshotPointer>,
    /// Time since this node last read the stream's state from a server (`None`: not
    /// yet). A node cut off from every server cannot know how far behind it is, so it
    /// is not ready once this passes [`CONTACT_STALE`].
    pub since_contact: Option<Duration>,
}

/// A node that has not read the stream's state for this long is not ready.
pub const CONTACT_STALE: Duration = Duration::from_secs(5);

/// This node's link to the stream: publishes the engine's appends and copies the
/// stream into the local log. Made by [`ClusterLink::connect`], installed as the log's
/// [`Upstream`].
pub struct ClusterLink {
    config: ClusterConfig,
    /// Taken and shut down (without blocking) by [`ClusterLink::close`].
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    js: jetstream::Context,
    log: LogReader,
    /// `node/process`: the prefix of this process's message ids.
    origin: String,
    next_msg: AtomicU64,
    stream_last: Arc<AtomicU64>,
    /// When the stream's state was last read, as milliseconds since `started`
    /// (0: never).
    contact_ms: Arc<AtomicU64>,
    started: Instant,
    /// Local ranges of this process's commits, by message id, once copied.
    copied: Arc<Copied>,
    fault: Arc<Mutex<Option<String>>>,
    /// The stream's name and creation time, recorded in the log at join.
    stream_id: String,
    /// Whether this node holds the [`EMBEDDER_LEASE`].
    embedder_lease: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this node holds the [`SNAPSHOT_LEASE`].
    snapshot_lease: Arc<std::sync::atomic::AtomicBool>,
    /// The newest shared snapshot, as last read.
    pointer: Arc<Mutex<Option<SnapshotPointer>>>,
    /// The stream's first sequence number, as last read.
    stream_first: Arc<AtomicU64>,
    published: AtomicU64,
    republished: AtomicU64,
    /// Appends waiting for the publishing thread; `None` once closed.
    queue: Mutex<Option<std::sync::mpsc::Sender<Pending>>>,
    /// The largest message the servers take (their `max_payload`).
    max_payload: usize,
    conflicts: AtomicU64,
}

impl ClusterLink {
    /// Connect to NATS, create the stream if it does not exist, check that `log` is a
    /// copy of it, and start copying it from the log's stream position.
    ///
    /// An empty `log` with `bootstrap` given begins from the cluster's newest shared
    /// snapshot, if one was published: `bootstrap` fetches and checks it and returns
    /// its registration on this node (a copy under its own key); the log then begins
    /// after it and the copy starts at the stream message after the snapshot's last
    /// event.
    ///
    /// # Errors
    /// [`ClusterError::Connect`], [`ClusterError::JetStream`],
    /// [`ClusterError::Diverged`] when the local log holds events the stream does not,
    /// [`ClusterError::Bootstrap`] when the snapshot cannot be used, and
    /// [`ClusterError::Uncovered`] when the stream lost its first messages and the
    /// node cannot begin from a snapshot.
    pub fn connect(
        config: ClusterConfig,
        log: &Arc<Log>,
        bootstrap: Option<&BootstrapFn<'_>>,
    ) -> Result<Arc<Self>, ClusterError> {
        config.check()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("annal-cluster")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let (js, info, max_payload) = runtime.block_on(open_stream(&config))?;
        let local_last = log.last_seq();
        let cursor = log.stream_seq();
        // A local log with events must have copied them from this stream: a stream that
        // is shorter (a new stream, another cluster) would be appended after them. (A
        // log that began from a snapshot inside the stream's first message has copied
        // nothing yet, and events up to the snapshot's.)
        let base = log.base_seq().map_err(|e| ClusterError::Copy { source: Box::new(e) })?;
        if (local_last > base && cursor == 0) || cursor > info.state.last_sequence {
            return Err(ClusterError::Diverged {
                stream: config.stream.clone(),
                local_last,
                cursor,
                stream_last: info.state.last_sequence,
            });
        }
        // The stream, by name and creation time: a stream deleted and made again, or
        // another cluster's of the same name, is not the one this log copied.
        let stream_id = format!("{}@{:?}", info.config.name, info.created);
        let recorded = log.recorded_stream().map_err(|e| ClusterError::Copy { source: Box::new(e) })?;
        if recorded.as_ref().is_some_and(|r| *r != stream_id) {
            return Err(ClusterError::Diverged {
                stream: config.stream.clone(),
                local_last,
                cursor,
                stream_last: info.state.last_sequence,
            });
        }
        let first = info.state.first_sequence;
        let mut pointer = None;
        if local_last == 0 && cursor == 0 {
            if bootstrap.is_some() {
                pointer = runtime.block_on(snapshots::newest_pointer(&js, &config.stream, &stream_id))?;
            }
            let began = match (&pointer, bootstrap) {
                (Some(pointer), Some(begin)) => match begin_from(log, pointer, begin) {
                    Ok(()) => true,
                    // The stream still holds every event: replay it instead.
                    Err(error) if first <= 1 => {
                        tracing::warn!(
                            error = %crate::chain::chain(&error),
                            "cannot begin from the cluster's snapshot; copying the stream from its first message"
                        );
                        false
                    }
                    Err(error) => return Err(error),
                },
                _ => false,
            };
            // Retention dropped events no snapshot this node may use covers.
            if !began && first > 1 {
                return Err(ClusterError::Uncovered { stream: config.stream.clone(), first });
            }
        } else if cursor.saturating_add(1) < first {
            // Down longer than the stream keeps messages: what it needs is gone.
            return Err(ClusterError::Behind { stream: config.stream.clone(), cursor, first });
        }
        let process = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let link = Arc::new(Self {
            origin: format!("{}/{process:x}{nanos:x}", config.node),
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            js,
            log: log.reader(),
            next_msg: AtomicU64::new(1),
            stream_last: Arc::new(AtomicU64::new(info.state.last_sequence)),
            contact_ms: Arc::new(AtomicU64::new(1)),
            started: Instant::now(),
            copied: Arc::default(),
            stream_id,
            embedder_lease: Arc::default(),
            snapshot_lease: Arc::default(),
            pointer: Arc::new(Mutex::new(pointer)),
            stream_first: Arc::new(AtomicU64::new(info.state.first_sequence)),
            fault: Arc::default(),
            published: AtomicU64::new(0),
            republished: AtomicU64::new(0),
            queue: Mutex::new(None),
            max_payload,
            conflicts: AtomicU64::new(0),
            config,
        });
        link.spawn_publisher()?;
        link.spawn_lease(EMBEDDER_LEASE, Arc::clone(&link.embedder_lease));
        link.spawn_lease(SNAPSHOT_LEASE, Arc::clone(&link.snapshot_lease));
        link.spawn_copier(Arc::downgrade(log));
        link.spawn_poller();
        tracing::info!(
            node = link.config.node,
            stream = link.config.stream,
            stream_last = info.state.last_sequence,
            copied = cursor,
            "joined the cluster"
        );
        Ok(link)
    }

    /// Where this node stands.
    pub fn status(&self) -> ClusterStatus {
        let stream_last = self.stream_last.load(Ordering::Acquire);
        let copied = self.log.stream_seq();
        ClusterStatus {
            node: self.config.node.clone(),
            stream: self.config.stream.clone(),
            stream_last,
            copied,
            lag_messages: stream_last.saturating_sub(copied),
            published: self.published.load(Ordering::Relaxed),
            republished: self.republished.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            fault: lock(&self.fault).clone(),
            embedder_lease: self.holds_embedder_lease(),
            snapshot_lease: self.holds_snapshot_lease(),
            stream_first: self.stream_first.load(Ordering::Acquire),
            pointer: self.snapshot_pointer(),
            since_contact: match self.contact_ms.load(Ordering::Acquire) {
                0 => None,
                ms => Some(self.started.elapsed().saturating_sub(Duration::from_millis(ms))),
            },
        }
    }

    /// Whether this node holds the [`EMBEDDER_LEASE`]: in a cluster, only the holder
    /// embeds documents, so each is embedded once, not once per node.
    pub fn holds_embedder_lease(&self) -> bool {
        self.embedder_lease.load(Ordering::Acquire)
    }

    /// Keep trying to take lease `name` (a key of the JetStream KV bucket
    /// `<stream>_leases`, whose entries lapse after [`LEASE_TTL`]) and renew it while
    /// held: `create` succeeds only on an absent key, `update` only at the revision
    /// this node wrote, so at most one node holds it. A holder that cannot renew
    /// stops counting itself as holder at once, a full TTL before another can take it.
    fn spawn_lease(self: &Arc<Self>, name: &'static str, held: Arc<std::sync::atomic::AtomicBool>) {
        let js = self.js.clone();
        let origin = self.origin.clone();
        let bucket = format!("{}_leases", self.config.stream);
        let replicas = self.config.replicas;
        self.handle.spawn(async move {
            let store = loop {
                match snapshots::kv_bucket(&js, &bucket, replicas, LEASE_TTL, 1).await {
                    Ok(store) => break store,
                    Err(error) => {
                        tracing::warn!(error = %crate::chain::chain(&error), bucket, "lease bucket not available yet");
                        tokio::time::sleep(LEASE_RENEW).await;
                    }
                }
            };
            let mut revision: Option<u64> = None;
            loop {
                let value = bytes::Bytes::from(origin.clone());
                let renewed = match revision {
                    Some(r) => store.update(name, value, r).await.ok(),
                    None => store.create(name, value).await.ok(),
                };
                if renewed.is_some() != revision.is_some() {
                    tracing::info!(lease = name, held = renewed.is_some(), "lease changed hands");
                }
                revision = renewed;
                held.store(revision.is_some(), Ordering::Release);
                tokio::time::sleep(LEASE_RENEW).await;
            }
        });
    }

    /// The stream's identity (name and creation time), for [`Log::set_upstream`].
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The config this link was made with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Wait until the copy reaches the stream's last message as read now (a replica
    /// catching up), at most `timeout`; whether it did.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let target = self.stream_last.load(Ordering::Acquire);
        self.log.wait_stream_seq(target, timeout) >= target
    }

    fn spawn_poller(self: &Arc<Self>) {
        let js = self.js.clone();
        let name = self.config.stream.clone();
        let last = Arc::clone(&self.stream_last);
        let first = Arc::clone(&self.stream_first);
        let pointer = Arc::clone(&self.pointer);
        let stream_id = self.stream_id.clone();
        let contact = Arc::clone(&self.contact_ms);
        let started = self.started;
        self.handle.spawn(async move {
            for tick in 0u64.. {
                if tick % POINTER_POLL_TICKS == 0 {
                    let read = tokio::time::timeout(
                        CONTACT_STALE / 2,
                        snapshots::newest_pointer(&js, &name, &stream_id),
                    );
                    if let Ok(Ok(Some(newest))) = read.await {
                        let mut known = lock(&pointer);
                        if known.as_ref().is_none_or(|k| k.seq < newest.seq) {
                            *known = Some(newest);
                        }
                    }
                }
                let polled = tokio::time::timeout(CONTACT_STALE / 2, async {
                    let stream = js.get_stream(&name).await.ok()?;
                    stream.get_info().await.ok()
                });
                if let Ok(Some(info)) = polled.await {
                    last.fetch_max(info.state.last_sequence, Ordering::AcqRel);
                    first.store(info.state.first_sequence, Ordering::Release);
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
                    contact.store(ms, Ordering::Release);
                }
                tokio::time::sleep(STREAM_POLL).await;
            }
        });
    }

    fn spawn_copier(self: &Arc<Self>, log: Weak<Log>) {
        let copier = Copier {
            js: self.js.clone(),
            stream: self.config.stream.clone(),
            origin: self.origin.clone(),
            stream_last: Arc::clone(&self.stream_last),
            copied: Arc::clone(&self.copied),
            log,
        };
        let fault = Arc::clone(&self.fault);
        self.handle.spawn(async move {
            loop {
                match copier.run().await {
                    Ok(()) => return, // the log closed
                    Err(error @ (ClusterError::BadMessage { .. } | ClusterError::Copy { .. })) => {
                        let text = crate::chain::chain(&error);
                        tracing::error!(error = %text, "copying the stream stopped");
                        *lock(&fault) = Some(text);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %crate::chain::chain(&error), "copying the stream; resuming");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    fn run<F: std::future::Future + Send + 'static>(&self, future: F) -> Result<F::Output, ClusterError>
    where
        F::Output: Send,
    {
        futures::executor::block_on(self.handle.spawn(future)).map_err(ClusterError::Task)
    }

    /// Publish `payload` with message id `msg_id`, placed after stream position
    /// `expected`; the stream sequence it got.
    fn publish_once(
        &self,
        payload: &bytes::Bytes,
        msg_id: &str,
        expected: u64,
        timeout: Duration,
    ) -> Result<Result<u64, async_nats::jetstream::context::PublishError>, ClusterError> {
        let js = self.js.clone();
        let subject = self.config.subject();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
        headers.insert(NODE_HEADER, self.origin.as_str());
        let payload = payload.clone();
        self.run(async move {
            let ack = async {
                let future = js.publish_with_headers(subject, headers, payload).await?;
                future.await
            };
            match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(ack)) => Ok(ack.sequence),
                Ok(Err(e)) => Err(e),
                Err(_elapsed) => Err(PublishErrorKind::TimedOut.into()),
            }
        })
    }

    /// Whether this process's commit `msg_id` was copied (without taking it).
    fn copied_already(&self, msg_id: &str) -> bool {
        lock(&self.copied.0).ranges.contains_key(msg_id)
    }

    /// Wait until the copier has copied this process's commit `msg_id`; its local range.
    fn wait_copied(&self, msg_id: &str, timeout: Duration) -> Option<RangeInclusive<u64>> {
        let (map, cv) = &*self.copied;
        let deadline = Instant::now() + timeout;
        let mut guard = lock(map);
        loop {
            if let Some(range) = guard.ranges.remove(msg_id) {
                return Some(range);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || lock(&self.fault).is_some() || self.log.is_closed() {
                // Given up: a later copy of it is not kept for nobody.
                guard.abandoned.insert(msg_id.to_owned());
                return None;
            }
            guard = cv
                .wait_timeout(guard, left.min(Duration::from_millis(100)))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }
}

impl Upstream for ClusterLink {
    fn publish(&self, frames: Vec<Vec<u8>>, validated: Option<u64>) -> Result<RangeInclusive<u64>, LogError> {
        if let Some(fault) = lock(&self.fault).clone() {
            return Err(ClusterError::BadMessage { stream_seq: self.log.stream_seq(), what: fault }.into());
        }
        let bytes = commit::OVERHEAD + commit::frames_len(&frames);
        if bytes > self.max_payload {
            return Err(ClusterError::TooLarge { bytes }.into());
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let sent = lock(&self.queue)
            .as_ref()
            .map(|queue| queue.send(Pending { frames, validated, reply }).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(ClusterError::Closed.into());
        }
        answer.recv().map_err(|_gone| ClusterError::Closed)?.map_err(LogError::from)
    }
}

/// One caller's append waiting to be published.
struct Pending {
    frames: Vec<Vec<u8>>,
    validated: Option<u64>,
    reply: std::sync::mpsc::SyncSender<Result<RangeInclusive<u64>, ClusterError>>,
}

/// The appends of one commit message: the pending callers and where each one's frames
/// start in it.
struct Group {
    pending: Vec<Pending>,
    msg_id: String,
    payload: bytes::Bytes,
}

impl ClusterLink {
    /// The publishing thread: drains the queue into group commits, as the redb writer
    /// does (one message, one quorum ack, for every append waiting meanwhile).
    fn spawn_publisher(self: &Arc<Self>) -> Result<(), ClusterError> {
        let (queue, rx) = std::sync::mpsc::channel::<Pending>();
        *lock(&self.queue) = Some(queue);
        let link = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("annal-publisher".into())
            .spawn(move || {
                let size = |p: &Pending| commit::frames_len(&p.frames);
                let mut carry: Option<Pending> = None;
                loop {
                    let first = match carry.take() {
                        Some(first) => first,
                        None => match rx.recv() {
                            Ok(first) => first,
                            Err(_closed) => return,
                        },
                    };
                    let Some(link) = link.upgrade() else {
                        let _ = first.reply.send(Err(ClusterError::Closed));
                        continue;
                    };
                    // A group holds what fits in one message: its bytes under the
                    // servers' max_payload, its frames under the decoder's bound. The
                    // first append that would not fit starts the next group.
                    let (mut bytes, mut frames) = (commit::OVERHEAD + size(&first), first.frames.len());
                    let mut batch = vec![first];
                    while batch.len() < GROUP_APPENDS_MAX {
                        let Ok(next) = rx.try_recv() else { break };
                        if bytes + size(&next) > link.max_payload
                            || frames + next.frames.len() > commit::FRAMES_MAX
                        {
                            carry = Some(next);
                            break;
                        }
                        bytes += size(&next);
                        frames += next.frames.len();
                        batch.push(next);
                    }
                    link.publish_group(batch);
                }
            })
            .map_err(ClusterError::Runtime)?;
        Ok(())
    }

    /// Build the commit of `pending`, refusing (with [`ClusterError::Conflict`]) those
    /// validated before another node's schema change; `None` if none is left.
    fn group(&self, pending: Vec<Pending>) -> Option<Group> {
        let foreign_seq = self.log.foreign_guard_seq();
        let mut kept = Vec::with_capacity(pending.len());
        for p in pending {
            match p.validated {
                Some(validated) if foreign_seq > validated => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    let _ = p.reply.send(Err(ClusterError::Conflict { foreign_seq, validated }));
                }
                _ => kept.push(p),
            }
        }
        if kept.is_empty() {
            return None;
        }
        let frames: Vec<&[u8]> = kept.iter().flat_map(|p| p.frames.iter().map(Vec::as_slice)).collect();
        let payload = bytes::Bytes::from(commit::encode(&frames));
        let msg_id = format!("{}/{}", self.origin, self.next_msg.fetch_add(1, Ordering::Relaxed));
        Some(Group { pending: kept, msg_id, payload })
    }

    /// Publish one group commit and answer each of its callers.
    fn publish_group(&self, pending: Vec<Pending>) {
        let deadline = Instant::now() + self.config.publish_timeout;
        let mut attempts = 0;
        // After a publish whose outcome is unknown the message may still be stored: it
        // is sent again unchanged (same id, deduplicated by the server), never rebuilt.
        let mut uncertain = false;
        // The position first, then the guards (in `group`): the copier stores a guard
        // before the position, so every guard up to `expected` is seen.
        let mut expected = self.log.stream_seq();
        let Some(mut group) = self.group(pending) else { return };
        let outcome: Result<u64, ClusterError> = loop {
            attempts += 1;
            // Short attempts: a stream whose leader is lost elects another within
            // seconds, and the retry (same id) reaches it.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), ATTEMPT_TIMEOUT);
            let sent = match self.publish_once(&group.payload, &group.msg_id, expected, left) {
                Ok(sent) => sent,
                // The task was cancelled (closing) or failed: it may have been sent.
                Err(error) => {
                    break Err(ClusterError::Publish {
                        msg_id: group.msg_id.clone(),
                        source: Box::new(error),
                    })
                }
            };
            match sent {
                Ok(seq) => break Ok(seq),
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    // Another node's commit came first: copy up to it, then try after it.
                    if attempts >= PUBLISH_ATTEMPTS_MAX {
                        break Err(if uncertain {
                            ClusterError::Publish { msg_id: group.msg_id.clone(), source: Box::new(error) }
                        } else {
                            ClusterError::Contended { attempts }
                        });
                    }
                    self.republished.fetch_add(1, Ordering::Relaxed);
                    self.log.wait_stream_seq(expected + 1, Duration::from_secs(1));
                    expected = self.log.stream_seq();
                    let foreign_seq = self.log.foreign_guard_seq();
                    if uncertain {
                        // Stored by an earlier attempt after all: its copy is here.
                        if self.copied_already(&group.msg_id) {
                            break Ok(expected);
                        }
                        if group.pending.iter().any(|p| p.validated.is_some_and(|v| foreign_seq > v)) {
                            // Neither placed after the schema change nor known not to be
                            // stored: its callers learn that the outcome is unknown.
                            break Err(ClusterError::Publish {
                                msg_id: group.msg_id.clone(),
                                source: Box::new(error),
                            });
                        }
                    } else {
                        match self.group(std::mem::take(&mut group.pending)) {
                            Some(rebuilt) => group = rebuilt,
                            None => return,
                        }
                    }
                }
                Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    break Err(ClusterError::TooLarge { bytes: group.payload.len() });
                }
                Err(error) => {
                    // Unknown outcome (no ack in time, a server lost): the same message
                    // id again is stored at most once, inside the duplicate window.
                    uncertain = true;
                    if Instant::now() >= deadline {
                        break Err(ClusterError::Publish {
                            msg_id: group.msg_id.clone(),
                            source: Box::new(error),
                        });
                    }
                    tracing::warn!(%error, msg_id = group.msg_id, "publish not acknowledged; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let range = outcome.and_then(|stream_seq| {
            self.published.fetch_add(1, Ordering::Relaxed);
            self.stream_last.fetch_max(stream_seq, Ordering::AcqRel);
            self.wait_copied(&group.msg_id, self.config.publish_timeout.max(Duration::from_secs(30)))
                .ok_or(ClusterError::NotMirrored { stream_seq })
        });
        let mut next = range.as_ref().map_or(0, |r| *r.start());
        for p in group.pending {
            let answer = match &range {
                Ok(_) => {
                    let first = next;
                    next += p.frames.len() as u64;
                    Ok(first..=next - 1)
                }
                Err(error) => Err(error.duplicate()),
            };
            let _ = p.reply.send(answer);
        }
    }
}

impl ClusterLink {
    /// Stop copying and publishing (after the log closed): the runtime's tasks are
    /// dropped without blocking, so this is safe inside an async context too.
    /// Idempotent; also run on drop.
    pub fn close(&self) {
        // The publishing thread ends once its queue is dropped.
        lock(&self.queue).take();
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.shutdown_background();
            tracing::debug!(node = self.config.node, "cluster link closed");
        }
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies the stream into the local log, in order, from the log's stream position.
struct Copier {
    js: jetstream::Context,
    stream: String,
    origin: String,
    stream_last: Arc<AtomicU64>,
    copied: Arc<Copied>,
    log: Weak<Log>,
}

impl Copier {
    /// Copy until the log closes (`Ok`) or something fails.
    async fn run(&self) -> Result<(), ClusterError> {
        let Some((start, skip)) = self.log.upgrade().map(|log| (log.stream_seq() + 1, log.bootstrap_skip()))
        else {
            return Ok(());
        };
        // Frames of the first message that the snapshot the log began from covers.
        let skip = usize::try_from(skip.map_err(|e| ClusterError::Copy { source: Box::new(e) })?)
            .unwrap_or(usize::MAX);
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| js_error("stream info", e))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                ..Default::default()
            })
            .await
            .map_err(|e| js_error("consumer create", e))?;
        let mut messages = consumer.messages().await.map_err(|e| js_error("consume", e))?;
        let mut next = start;
        let mut idle = 0u32;
        loop {
            let first = match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Err(_idle) => {
                    if self.log.upgrade().is_none_or(|log| log.is_closed()) {
                        return Ok(());
                    }
                    // The stream has more than this consumer delivers: its server may be
                    // cut off. A fresh consumer is placed on a live one.
                    idle += 1;
                    if idle >= STALL_IDLE_TICKS && self.stream_last.load(Ordering::Acquire) >= next {
                        return Err(js_error(
                            "consume",
                            format!("no message for {idle} ticks while the stream holds {next} on"),
                        ));
                    }
                    continue;
                }
                Ok(None) => return Err(js_error("consume", "the message stream ended")),
                Ok(Some(message)) => message.map_err(|e| js_error("consume", e))?,
            };
            idle = 0;
            let mut batch = vec![first];
            let mut bytes = batch[0].payload.len();
            while batch.len() < COPY_BATCH_MESSAGES && bytes < COPY_BATCH_BYTES {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => {
                        bytes += message.payload.len();
                        batch.push(message);
                    }
                    _ => break,
                }
            }
            let mut copy = Mirrored::default();
            let mut own = Vec::new();
            for message in &batch {
                let info = message.info().map_err(|e| js_error("message info", e.to_string()))?;
                let stream_seq = info.stream_sequence;
                if stream_seq != next {
                    return Err(ClusterError::BadMessage {
                        stream_seq,
                        what: format!("expected stream message {next}: the stream no longer holds the events this node needs"),
                    });
                }
                next += 1;
                let mut frames = commit::decode(&message.payload)
                    .map_err(|what| ClusterError::BadMessage { stream_seq, what })?;
                let skipped = if stream_seq == start { skip } else { 0 };
                if skipped > frames.len() {
                    return Err(ClusterError::BadMessage {
                        stream_seq,
                        what: format!(
                            "the snapshot this node began from covers {skipped} of its frames; it holds {}",
                            frames.len()
                        ),
                    });
                }
                frames.drain(..skipped);
                let origin = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(NODE_HEADER))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                let first_index = copy.frames.len();
                for (i, frame) in frames.iter().enumerate() {
                    let (kind, _) = check_frame(0, frame)
                        .map_err(|e| ClusterError::BadMessage { stream_seq, what: e.to_string() })?;
                    if origin != self.origin && kind.guards_writes() {
                        copy.foreign_guard = Some(first_index + i);
                    }
                }
                if origin == self.origin {
                    let id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    own.push((id, first_index, frames.len()));
                }
                copy.messages.push(MessageSpan {
                    stream_seq,
                    first: first_index,
                    count: frames.len(),
                    skipped,
                });
                copy.frames.extend(frames);
                copy.stream_seq = stream_seq;
            }
            let Some(log) = self.log.upgrade() else { return Ok(()) };
            let last = copy.stream_seq;
            let range = tokio::task::spawn_blocking(move || log.mirror(copy))
                .await
                .map_err(|e| js_error("copy", e.to_string()))?;
            let range = match range {
                Ok(range) => range,
                Err(LogError::Closed) => return Ok(()),
                // The local log refused (poisoned, a full disk): copying cannot go on
                // until the node is restarted.
                Err(error) => return Err(ClusterError::Copy { source: Box::new(error) }),
            };
            self.stream_last.fetch_max(last, Ordering::AcqRel);
            if let Some(range) = range {
                let start = *range.start();
                let (map, cv) = &*self.copied;
                let mut map = lock(map);
                for (id, first, count) in own {
                    if map.abandoned.remove(&id) {
                        continue;
                    }
                    let first = start + first as u64;
                    map.ranges.insert(id, first..=first + count as u64 - 1);
                }
                cv.notify_all();
            }
        }
    }
}

/// Refuse a stream made elsewhere (or by an older annal) that would not keep the log:
/// another subject, memory storage, a retention that deletes acknowledged messages, or
/// limits that drop events no snapshot covers. Another replica count is only warned
/// about (an operator may have scaled the stream on purpose).
fn check_stream(config: &ClusterConfig, found: &stream::Config) -> Result<(), ClusterError> {
    let refuse = |what: String| Err(ClusterError::StreamConfig { stream: config.stream.clone(), what });
    if found.subjects != [config.subject()] {
        return refuse(format!("its subjects are {:?}, not [{:?}]", found.subjects, config.subject()));
    }
    if found.storage != stream::StorageType::File {
        return refuse("it keeps messages in memory, not in files".into());
    }
    if found.retention != stream::RetentionPolicy::Limits {
        return refuse(format!(
            "its retention is {:?}, which deletes messages once consumed",
            found.retention
        ));
    }
    if found.max_messages > 0
        || found.max_bytes > 0
        || !found.max_age.is_zero()
        || found.max_messages_per_subject > 0
    {
        return refuse(format!(
            "it has limits (max_msgs {}, max_bytes {}, max_age {:?}, max_msgs_per_subject {}) that would drop events no snapshot covers",
            found.max_messages, found.max_bytes, found.max_age, found.max_messages_per_subject
        ));
    }
    if found.num_replicas != config.replicas {
        tracing::warn!(
            stream = config.stream,
            replicas = found.num_replicas,
            configured = config.replicas,
            "the stream has another replica count than configured; keeping the stream's"
        );
    }
    Ok(())
}

fn js_error(op: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ClusterError {
    ClusterError::JetStream { op, source: source.into() }
}

/// Connect and get (or create) the stream.
async fn open_stream(
    config: &ClusterConfig,
) -> Result<(jetstream::Context, stream::Info, usize), ClusterError> {
    let addrs = config
        .url
        .split(',')
        .map(|a| a.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClusterError::Connect { url: config.url.clone(), source: Box::new(e) })?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("annal {}", config.node))
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .map_err(|e| ClusterError::Connect { url: config.url.clone(), source: Box::new(e) })?;
    let js = jetstream::new(client.clone());
    let stream_config = stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.subject()],
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: Duration::from_secs(120),
        max_message_size: i32::try_from(crate::limits::EVENT_BYTES_MAX * 2).unwrap_or(i32::MAX),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // A cluster just started may not have elected its JetStream meta leader yet.
    let mut stream = loop {
        match js.get_or_create_stream(stream_config.clone()).await {
            Ok(stream) => break stream,
            Err(error) if Instant::now() < deadline => {
                tracing::info!(%error, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(js_error("stream create", error)),
        }
    };
    let info = stream.info().await.map_err(|e| js_error("stream info", e))?.clone();
    check_stream(config, &info.config)?;
    // Known once connected (the stream answered). Headers count against the same
    // limit: leave them a KiB. NATS's default (1 MiB) if the server did not say.
    let max_payload = match client.server_info().max_payload {
        0 => 1 << 20,
        n => n,
    }
    .saturating_sub(1024);
    Ok((js, info, max_payload))
}
