//! The group-commit writer: callers encode their events on their own threads, queue the
//! frames, and one writer thread drains the queue into a single redb write transaction,
//! commits once, and acknowledges every caller of that batch together.

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::archive::{Segment, ARCHIVED};
use super::budget::{QueueBudget, Reservation};
use super::shared::Shared;
use super::{
    last_stored_seq, LogError, LogReader, BASE_SEQ_KEY, BOOTSTRAP, BOOTSTRAP_KEY, CURSOR, EVENTS, SKIP_KEY,
    STREAM_INDEX, STREAM_SEQ_KEY,
};
use crate::event::{encode, Event};
use crate::limits::{APPEND_EVENTS_MAX, GROUP_COMMIT_BYTES_MAX};
use crate::sync::lock;

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every group commit is fsynced before any of its callers is acknowledged.
    #[default]
    Immediate,
    /// Bulk-load mode: commits are not fsynced. An acknowledged append survives a
    /// process crash only once a later durable commit ([`Log::sync`], an `Immediate`
    /// append, or [`Log::close`]) has completed; a crash before that falls back to the
    /// last durable commit, which is still a consistent prefix of the log.
    Deferred,
}

/// Log settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Durability of appends.
    pub sync: SyncMode,
    /// Most frame bytes queued for the writer; appenders beyond it wait (backpressure).
    pub queue_bytes_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { sync: SyncMode::default(), queue_bytes_max: crate::limits::LOG_QUEUE_BYTES_MAX }
    }
}

/// Acknowledgement of one queued request: the assigned sequence numbers, or why not.
type Ack = Result<Option<RangeInclusive<u64>>, LogError>;

/// One caller's append waiting in a group commit.
struct Pending {
    /// Released when the writer is done with this append.
    _reserved: Option<Reservation>,
    frames: Vec<Vec<u8>>,
    durable: bool,
    reply: SyncSender<Ack>,
}

enum Request {
    Append { reserved: Option<Reservation>, frames: Vec<Vec<u8>>, durable: bool, reply: SyncSender<Ack> },
    Archive { segment: Segment, frame: Vec<u8>, reply: SyncSender<Ack> },
    Truncate { after: u64, frame: Vec<u8>, reply: SyncSender<Ack> },
    Mirror { copy: Mirrored, reply: SyncSender<Ack> },
    Bootstrap { start: Bootstrap, reply: SyncSender<Ack> },
    Shutdown { reply: SyncSender<Ack> },
}

/// Where appends go when this log is the local copy of a replicated stream (see
/// `crate::cluster`): the upstream publishes them, and they come back through
/// [`Log::mirror`] in the stream's order.
pub trait Upstream: Send + Sync {
    /// Publish `frames` as one commit (all or none) and return their sequence numbers
    /// once the local copy holds them. `validated` is the sequence number the
    /// caller's validation reflected, for writes validated against the command-side
    /// schema; the upstream refuses such a write if another node changed the schema
    /// after it.
    ///
    /// # Errors
    /// [`LogError::Cluster`] saying why nothing (or an unknown outcome) was appended.
    fn publish(&self, frames: Vec<Vec<u8>>, validated: Option<u64>) -> Result<RangeInclusive<u64>, LogError>;
}

/// One or more stream messages copied into the log in one durable transaction.
#[derive(Debug, Clone, Default)]
pub struct Mirrored {
    /// The frames of the messages, in stream order.
    pub frames: Vec<Vec<u8>>,
    /// The stream sequence number of the last message.
    pub stream_seq: u64,
    /// Index in `frames` of the last frame that another node published and that
    /// changes the command-side schema (see [`crate::event::EventKind::guards_writes`]).
    pub foreign_guard: Option<usize>,
    /// Where each message's frames are in `frames` (for the stream index).
    pub messages: Vec<MessageSpan>,
}

/// One stream message of a [`Mirrored`] batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageSpan {
    /// Its stream sequence number.
    pub stream_seq: u64,
    /// The index in [`Mirrored::frames`] of its first frame copied.
    pub first: usize,
    /// Its frames copied.
    pub count: usize,
    /// Its frames not copied because the snapshot the log began from covers them
    /// (they precede the copied ones).
    pub skipped: usize,
}

/// Where a replica's empty log begins: after the snapshot it restores, at a position
/// in the stream (see [`Log::bootstrap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The snapshot's sequence number S: the log's next event is S + 1.
    pub base: u64,
    /// The stream sequence number of the last message the snapshot covers whole.
    pub stream_seq: u64,
    /// Frames of the next message the snapshot covers (S fell inside it).
    pub skip: u64,
    /// The snapshot's registration, an event frame of a `SnapshotTaken`.
    pub record: Vec<u8>,
}

/// Counters of the group-commit writer since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Highest committed sequence number.
    pub last_seq: u64,
    /// Write transactions committed.
    pub commits: u64,
    /// Time spent inside write transactions (insert + commit), nanoseconds.
    pub commit_ns: u64,
}

impl Log {
    /// Frame bytes queued for the writer now (bounded by `LogConfig::queue_bytes_max`).
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued()
    }
}

/// The event log. Cheap to share behind an `Arc`; every method takes `&self`. Its read
/// methods are those of [`LogReader`] (through `Deref`); [`Log::reader`] hands out a
/// handle that can only read.
pub struct Log {
    reader: LogReader,
    queue: Sender<Request>,
    budget: Arc<QueueBudget>,
    writer: Mutex<Option<JoinHandle<()>>>,
    config: LogConfig,
    /// Set when this log is the local copy of a replicated stream.
    upstream: std::sync::OnceLock<Arc<dyn Upstream>>,
    /// With `upstream`: the key prefix of this node's snapshots.
    owner: std::sync::OnceLock<String>,
    /// The file records a cluster it joined (see [`Log::is_copy`]).
    copy: bool,
}

impl Log {
    /// Open (or create) the log in `path` (a redb file).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb cannot open or repair the file.
    pub fn open(path: impl AsRef<Path>, config: LogConfig) -> Result<Self, LogError> {
        let path = path.as_ref();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let existed = path.exists();
        let db = builder().create(path)?;
        if !existed {
            // redb does not fsync the directory: without this a power cut right after the
            // first acknowledged writes could lose the new file's directory entry.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Self::start(db, &path.display().to_string(), config)
    }

    /// Open a log on a custom redb storage backend: fault injection in tests, or an
    /// in-memory log.
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb cannot open the backend.
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
        config: LogConfig,
    ) -> Result<Self, LogError> {
        let db = builder().create_with_backend(backend)?;
        Self::start(db, "custom backend", config)
    }

    fn start(db: Database, name: &str, config: LogConfig) -> Result<Self, LogError> {
        let (last, stream_seq, copy) = {
            let txn = db.begin_read()?;
            (
                last_stored_seq(&txn)?,
                super::stream_cursor(&txn)?,
                // Joined a cluster, or began from one's snapshot (even if the join
                // that followed never completed).
                super::recorded(&txn, super::OWNER_KEY)?.is_some()
                    || super::bootstrap_record(&txn)?.is_some(),
            )
        };
        let shared = Arc::new(Shared {
            stream_seq: AtomicU64::new(stream_seq),
            foreign_guard: AtomicU64::new(0),
            db,
            last: AtomicU64::new(last),
            committed: Mutex::new(last),
            committed_cv: Condvar::new(),
            poison: Mutex::new(None),
            closed: AtomicBool::new(false),
            nudges: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_ns: AtomicU64::new(0),
        });
        let (queue, rx) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("annal-log-writer".into())
            .spawn(move || Writer { shared: writer_shared, next: last + 1, dirty: false }.run(rx))?;
        tracing::info!(log = name, last_seq = last, "log opened");
        let budget = QueueBudget::new(config.queue_bytes_max);
        Ok(Self {
            reader: LogReader { shared },
            queue,
            budget,
            writer: Mutex::new(Some(writer)),
            config,
            upstream: std::sync::OnceLock::new(),
            owner: std::sync::OnceLock::new(),
            copy,
        })
    }

    /// Append events; returns their sequence numbers once the commit is durable (or, in
    /// [`SyncMode::Deferred`], committed). An empty append returns `None`.
    ///
    /// # Errors
    /// [`LogError::Frame`] if an event cannot be encoded (nothing is appended),
    /// [`LogError::CommitFailed`] / [`LogError::Poisoned`] if the commit failed,
    /// [`LogError::Closed`] after [`Log::close`].
    pub fn append(&self, events: &[Event]) -> Result<Option<RangeInclusive<u64>>, LogError> {
        if events.len() > APPEND_EVENTS_MAX {
            return Err(LogError::TooManyEvents { count: events.len(), max: APPEND_EVENTS_MAX });
        }
        let frames = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        self.append_frames(frames)
    }

    /// [`Log::append`] of events validated against the command-side schema as of
    /// event `validated`. The same as `append` for a log of its own; a log that copies
    /// a replicated stream refuses them ([`crate::ClusterError::Conflict`]) when
    /// another node changed the schema after `validated`.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append_validated(
        &self,
        events: &[Event],
        validated: u64,
    ) -> Result<Option<RangeInclusive<u64>>, LogError> {
        if events.len() > APPEND_EVENTS_MAX {
            return Err(LogError::TooManyEvents { count: events.len(), max: APPEND_EVENTS_MAX });
        }
        let frames = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        self.append_frames_as(frames, Some(validated))
    }

    /// Make this log the local copy of a replicated stream: from now on appends are
    /// published by `upstream` and written here only by [`Log::mirror`]. Set once.
    ///
    /// # Errors
    /// [`LogError::Clustered`] if an upstream is set already.
    /// `snapshot_owner` is the key prefix of the snapshots this node takes: the
    /// registrations of other nodes' snapshots (in the shared log) are not this node's
    /// to restore or prune.
    ///
    /// # Errors
    /// [`LogError::Clustered`] if an upstream is set already.
    pub fn set_upstream(
        &self,
        upstream: Arc<dyn Upstream>,
        snapshot_owner: String,
        stream_id: &str,
    ) -> Result<(), LogError> {
        // Recorded in the file for offline tools and later joins; nothing is appended
        // before this.
        let mut txn = self.shared.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut node = txn.open_table(super::NODE)?;
            node.insert(super::OWNER_KEY, snapshot_owner.as_str())?;
            node.insert(super::STREAM_ID_KEY, stream_id)?;
        }
        txn.commit()?;
        self.owner
            .set(snapshot_owner)
            .map_err(|_already| LogError::Clustered { op: "set a second upstream" })?;
        self.upstream.set(upstream).map_err(|_already| LogError::Clustered { op: "set a second upstream" })
    }

    /// In a cluster, the key prefix of the snapshots this node takes.
    pub fn snapshot_owner(&self) -> Option<String> {
        self.owner.get().cloned()
    }

    /// The stream this copy was made from, as recorded when it joined (`None`: never
    /// joined).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn recorded_stream(&self) -> Result<Option<String>, LogError> {
        super::recorded(&self.shared.db.begin_read()?, super::STREAM_ID_KEY)
    }

    /// Whether appends go to a replicated stream.
    pub fn is_clustered(&self) -> bool {
        self.upstream.get().is_some()
    }

    /// Whether this log is (or was made as) the copy of a replicated stream: it joined
    /// a cluster once. Such a log takes no local writes (archive, truncate, appends
    /// of a process that did not join the cluster).
    pub fn is_copy(&self) -> bool {
        self.is_clustered() || self.copy
    }

    /// Copy stream messages into the log: their frames at the next sequence numbers
    /// and the stream position, in one durable transaction. Only the upstream's
    /// copying task calls this.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn mirror(&self, copy: Mirrored) -> Result<Option<RangeInclusive<u64>>, LogError> {
        self.check_writable()?;
        self.request(|reply| Request::Mirror { copy, reply })
    }

    /// Begin this empty log after a snapshot at `start.base` (a replica bootstrapped
    /// from the cluster's newest snapshot): its next event is `base + 1`, its stream
    /// position `start.stream_seq`, and `start.record` registers the snapshot for every
    /// later open. One durable transaction.
    ///
    /// # Errors
    /// [`LogError::NotEmpty`] if the log holds events or began already.
    pub fn bootstrap(&self, start: Bootstrap) -> Result<(), LogError> {
        self.check_writable()?;
        self.request(|reply| Request::Bootstrap { start, reply }).map(|_| ())
    }

    /// Frames of the next stream message that the snapshot this log began from covers
    /// (0 once that message was copied, and for any other log).
    ///
    /// # Errors
    /// [`LogError::Storage`] if redb fails.
    pub fn bootstrap_skip(&self) -> Result<u64, LogError> {
        super::cursor_value(&self.shared.db.begin_read()?, SKIP_KEY)
    }

    /// Append already-encoded frames (as produced by [`crate::event::encode`]).
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append_frames(&self, frames: Vec<Vec<u8>>) -> Result<Option<RangeInclusive<u64>>, LogError> {
        self.append_frames_as(frames, None)
    }

    fn append_frames_as(
        &self,
        frames: Vec<Vec<u8>>,
        validated: Option<u64>,
    ) -> Result<Option<RangeInclusive<u64>>, LogError> {
        self.check_writable()?;
        if frames.is_empty() {
            return Ok(None);
        }
        if let Some(upstream) = self.upstream.get() {
            return upstream.publish(frames, validated).map(Some);
        }
        let durable = self.config.sync == SyncMode::Immediate;
        let bytes = frames.iter().map(Vec::len).sum();
        let reserved = Some(self.budget.reserve(bytes, &self.shared.closed)?);
        self.request(|reply| Request::Append { reserved, frames, durable, reply })
    }

    /// Make every commit so far durable (one fsync), whatever the [`SyncMode`].
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn sync(&self) -> Result<(), LogError> {
        self.check_writable()?;
        if self.is_clustered() {
            // Every copied commit is durable already, and so is the stream.
            return Ok(());
        }
        self.request(|reply| Request::Append { reserved: None, frames: Vec::new(), durable: true, reply })
            .map(|_| ())
    }

    /// Stop accepting appends, make everything durable, and stop the writer thread.
    /// Idempotent; also run on drop.
    ///
    /// # Errors
    /// The final durable commit failed.
    pub fn close(&self) -> Result<(), LogError> {
        let handle = lock(&self.writer).take();
        let Some(handle) = handle else { return Ok(()) };
        let result = self.request(|reply| Request::Shutdown { reply }).map(|_| ());
        if handle.join().is_err() {
            return Err(LogError::WriterGone);
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.committed_cv.notify_all();
        result
    }

    /// Remove the oldest events `segment.first..=segment.last` from the log, which a
    /// caller has durably written to the segment object `segment` names, and append
    /// `audit` (a `LogArchived` event) — one durable write transaction that also
    /// registers the segment, so a crash leaves all of it or none. Returns the audit
    /// event's sequence number.
    ///
    /// # Errors
    /// [`LogError::ArchiveRange`] unless `segment.first` is the first stored event and
    /// `segment.last` is stored; as [`Log::append`] otherwise.
    pub fn archive(&self, segment: Segment, audit: &Event) -> Result<u64, LogError> {
        self.check_writable()?;
        if self.is_copy() {
            return Err(LogError::Clustered { op: "archive" });
        }
        let frame = encode(audit)?;
        let range = self.request(|reply| Request::Archive { segment, frame, reply })?;
        Ok(range.map_or(0, |r| *r.end()))
    }

    /// The last resort for a log whose tail cannot be trusted (`annal recover`): remove
    /// every event after `after` and append `audit` (a `LogTruncated` event, which
    /// takes sequence number `after + 1`) in one durable write transaction. The caller
    /// has durably copied what is cut first. Returns the audit event's sequence number.
    ///
    /// # Errors
    /// [`LogError::TruncateRange`] unless `after` is below the last stored event and
    /// not before the first one minus one; as [`Log::append`] otherwise.
    pub fn truncate_after(&self, after: u64, audit: &Event) -> Result<u64, LogError> {
        self.check_writable()?;
        if self.is_copy() {
            return Err(LogError::Clustered { op: "truncate" });
        }
        let frame = encode(audit)?;
        let range = self.request(|reply| Request::Truncate { after, frame, reply })?;
        Ok(range.map_or(0, |r| *r.end()))
    }

    /// A read-only handle on this log.
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }
}

impl std::ops::Deref for Log {
    type Target = LogReader;

    fn deref(&self) -> &LogReader {
        &self.reader
    }
}

impl LogReader {
    /// Writer counters: commits and the time they took; events per commit is
    /// `last_seq / commits` for a log opened empty.
    pub fn stats(&self) -> LogStats {
        LogStats {
            last_seq: self.shared.last_seq(),
            commits: self.shared.commits.load(Ordering::Relaxed),
            commit_ns: self.shared.commit_ns.load(Ordering::Relaxed),
        }
    }

    /// Whether a failed commit has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        lock(&self.shared.poison).is_some()
    }

    /// The failure that poisoned the log, if one did (e.g. redb's I/O error for a full
    /// disk), for health checks to say why writes are refused.
    pub fn poison(&self) -> Option<Arc<redb::Error>> {
        lock(&self.shared.poison).clone()
    }
}

impl Log {
    fn check_writable(&self) -> Result<(), LogError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            return Err(LogError::Poisoned(Arc::clone(cause)));
        }
        Ok(())
    }

    fn request(&self, make: impl FnOnce(SyncSender<Ack>) -> Request) -> Ack {
        let (reply, ack) = mpsc::sync_channel(1);
        self.queue.send(make(reply)).map_err(|_closed| LogError::Closed)?;
        ack.recv().map_err(|_writer_died| LogError::WriterGone)?
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the log on drop failed");
        }
    }
}

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    // redb caches pages in process memory, 1 GiB by default: replay reads the whole log
    // once, which would leave up to that much of it resident for nothing.
    builder.set_cache_size(crate::limits::LOG_CACHE_BYTES);
    builder.set_repair_callback(|session| {
        tracing::warn!(progress = session.progress(), "repairing log after unclean shutdown");
    });
    builder
}

struct Writer {
    shared: Arc<Shared>,
    /// Sequence number the next event gets.
    next: u64,
    /// Whether a commit since the last durable one was not fsynced.
    dirty: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            let mut shutdown = None;
            let mut archives = Vec::new();
            let mut truncates = Vec::new();
            let mut mirrors = Vec::new();
            let mut bootstraps = Vec::new();
            let mut push = |req: Request| match req {
                Request::Append { reserved, frames, durable, reply } => {
                    let len = frames.iter().map(Vec::len).sum::<usize>();
                    batch.push(Pending { _reserved: reserved, frames, durable, reply });
                    len
                }
                Request::Archive { segment, frame, reply } => {
                    archives.push((segment, frame, reply));
                    0
                }
                Request::Truncate { after, frame, reply } => {
                    truncates.push((after, frame, reply));
                    0
                }
                Request::Mirror { copy, reply } => {
                    let len = copy.frames.iter().map(Vec::len).sum::<usize>();
                    mirrors.push((copy, reply));
                    len
                }
                Request::Bootstrap { start, reply } => {
                    bootstraps.push((start, reply));
                    0
                }
                Request::Shutdown { reply } => {
                    shutdown = Some(reply);
                    0
                }
            };
            bytes += push(first);
            while bytes < GROUP_COMMIT_BYTES_MAX {
                match rx.try_recv() {
                    Ok(req) => bytes += push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            for (segment, frame, reply) in archives {
                let _ = reply.send(self.archive(&segment, frame));
            }
            for (after, frame, reply) in truncates {
                let _ = reply.send(self.truncate(after, frame));
            }
            for (start, reply) in bootstraps {
                let _ = reply.send(self.bootstrap(start));
            }
            for (copy, reply) in mirrors {
                let _ = reply.send(self.mirror(copy));
            }
            if let Some(reply) = shutdown {
                let _ = reply.send(self.final_sync().map(|()| None));
                self.shared.closed.store(true, Ordering::Release);
                // Anything queued behind the shutdown is refused, not dropped silently.
                while let Ok(req) = rx.try_recv() {
                    let reply = match req {
                        Request::Append { reply, .. }
                        | Request::Archive { reply, .. }
                        | Request::Truncate { reply, .. }
                        | Request::Mirror { reply, .. }
                        | Request::Bootstrap { reply, .. }
                        | Request::Shutdown { reply } => reply,
                    };
                    let _ = reply.send(Err(LogError::Closed));
                }
                return;
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            for Pending { reply, .. } in batch {
                let _ = reply.send(Err(LogError::Poisoned(Arc::clone(cause))));
            }
            return;
        }
        let durable = batch.iter().any(|p| p.durable);
        let mut ranges = Vec::with_capacity(batch.len());
        let started = std::time::Instant::now();
        let result = self.write(&batch, durable, &mut ranges);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.commit_ns.fetch_add(ns, Ordering::Relaxed);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.dirty = !durable;
                self.next +=
                    ranges.iter().map(|r| r.as_ref().map_or(0, |r| r.end() - r.start() + 1)).sum::<u64>();
                self.shared.publish(self.next - 1);
                for (Pending { reply, .. }, range) in batch.into_iter().zip(ranges) {
                    let _ = reply.send(Ok(range));
                }
            }
            Err(error) => {
                let cause = Arc::new(error);
                tracing::error!(error = %cause, "group commit failed; poisoning the log");
                *lock(&self.shared.poison) = Some(Arc::clone(&cause));
                for Pending { reply, .. } in batch {
                    let _ = reply.send(Err(LogError::CommitFailed(Arc::clone(&cause))));
                }
            }
        }
    }

    fn write(
        &self,
        batch: &[Pending],
        durable: bool,
        ranges: &mut Vec<Option<RangeInclusive<u64>>>,
    ) -> Result<(), redb::Error> {
        let mut txn = self.shared.db.begin_write()?;
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        {
            let mut table = txn.open_table(EVENTS)?;
            let mut seq = self.next;
            for Pending { frames, .. } in batch {
                let start = seq;
                for frame in frames {
                    table.insert(seq, frame.as_slice())?;
                    seq += 1;
                }
                ranges.push((seq > start).then(|| start..=seq - 1));
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// One durable transaction: the copied frames at the next sequence numbers and the
    /// stream position they reach. The schema guard is published before the stream
    /// position, so a publisher that reads the position sees every guard up to it.
    fn mirror(&mut self, copy: Mirrored) -> Ack {
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            return Err(LogError::Poisoned(Arc::clone(cause)));
        }
        let start = self.next;
        let txn = self.shared.db.begin_write()?;
        self.commit_durable("mirror", txn, |txn| {
            let mut table = txn.open_table(EVENTS)?;
            for (i, frame) in copy.frames.iter().enumerate() {
                table.insert(start + i as u64, frame.as_slice())?;
            }
            let mut cursor = txn.open_table(CURSOR)?;
            cursor.insert(STREAM_SEQ_KEY, copy.stream_seq)?;
            let mut index = txn.open_table(STREAM_INDEX)?;
            for span in copy.messages.iter().filter(|span| span.count + span.skipped > 0) {
                let first = (start + span.first as u64).saturating_sub(span.skipped as u64);
                index.insert(first, (span.stream_seq, (span.count + span.skipped) as u64))?;
                if span.skipped > 0 {
                    cursor.remove(SKIP_KEY)?;
                }
            }
            Ok(())
        })?;
        let count = copy.frames.len() as u64;
        self.next = start + count;
        if let Some(i) = copy.foreign_guard {
            self.shared.foreign_guard.store(start + i as u64, Ordering::Release);
        }
        self.shared.stream_seq.store(copy.stream_seq, Ordering::Release);
        self.shared.publish(self.next - 1);
        Ok((count > 0).then(|| start..=self.next - 1))
    }

    /// One durable transaction: an empty log begins after a snapshot.
    fn bootstrap(&mut self, start: Bootstrap) -> Ack {
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            return Err(LogError::Poisoned(Arc::clone(cause)));
        }
        if self.next != 1 || self.shared.stream_seq.load(Ordering::Acquire) != 0 {
            return Err(LogError::NotEmpty { base: start.base, last: self.next - 1 });
        }
        let txn = self.shared.db.begin_write()?;
        self.commit_durable("bootstrap", txn, |txn| {
            let mut cursor = txn.open_table(CURSOR)?;
            cursor.insert(BASE_SEQ_KEY, start.base)?;
            cursor.insert(STREAM_SEQ_KEY, start.stream_seq)?;
            if start.skip > 0 {
                cursor.insert(SKIP_KEY, start.skip)?;
            }
            txn.open_table(BOOTSTRAP)?.insert(BOOTSTRAP_KEY, start.record.as_slice())?;
            Ok(())
        })?;
        self.next = start.base + 1;
        self.shared.stream_seq.store(start.stream_seq, Ordering::Release);
        self.shared.publish(start.base);
        Ok(None)
    }

    /// One durable transaction: remove the archived events, register their segment,
    /// append the audit frame.
    fn archive(&mut self, segment: &Segment, frame: Vec<u8>) -> Ack {
        let record = segment.encode()?;
        self.rewrite(
            "archive",
            |next, held_first, held_last| {
                if segment.first != held_first || segment.last > held_last || segment.last < segment.first {
                    return Err(LogError::ArchiveRange {
                        first: segment.first,
                        last: segment.last,
                        held_first,
                        held_last,
                    });
                }
                Ok(next)
            },
            |txn, seq| {
                let mut events = txn.open_table(EVENTS)?;
                events.retain_in(segment.first..=segment.last, |_, _| false)?;
                events.insert(seq, frame.as_slice())?;
                let mut archived = txn.open_table(ARCHIVED)?;
                archived.insert(segment.first, record.as_slice())?;
                Ok(())
            },
        )
    }

    /// One durable transaction: remove the events after `after`, append the audit frame
    /// at `after + 1`.
    fn truncate(&mut self, after: u64, frame: Vec<u8>) -> Ack {
        // The last stored event, as `rewrite` sees it too.
        let held = self.next - 1;
        self.rewrite(
            "truncate",
            |_, held_first, held_last| {
                if after >= held_last || after.saturating_add(1) < held_first {
                    return Err(LogError::TruncateRange { after, held_first, held_last });
                }
                Ok(after + 1)
            },
            |txn, seq| {
                let mut events = txn.open_table(EVENTS)?;
                events.retain_in(seq..=held, |_, _| false)?;
                events.insert(seq, frame.as_slice())?;
                Ok(())
            },
        )
    }

    /// A durable transaction that edits stored events and appends one audit event:
    /// `check` sees the next sequence number and the stored range and returns the
    /// audit event's sequence number (or refuses, writing nothing); `edit` writes. A
    /// failed commit poisons the log, as a failed group commit does.
    fn rewrite(
        &mut self,
        what: &str,
        check: impl FnOnce(u64, u64, u64) -> Result<u64, LogError>,
        edit: impl FnOnce(&redb::WriteTransaction, u64) -> Result<(), redb::Error>,
    ) -> Ack {
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            return Err(LogError::Poisoned(Arc::clone(cause)));
        }
        let held_last = self.next - 1;
        let txn = self.shared.db.begin_write()?;
        let held_first = {
            let table = txn.open_table(EVENTS)?;
            let first = table.first()?.map_or(self.next, |(k, _)| k.value());
            first
        };
        // A refusal writes nothing: dropping the transaction aborts it.
        let seq = check(self.next, held_first, held_last)?;
        self.commit_durable(what, txn, |txn| edit(txn, seq))?;
        self.next = seq + 1;
        self.shared.publish(seq);
        Ok(Some(seq..=seq))
    }

    /// Commit `txn` durably after `edit` wrote into it. A failed commit poisons the
    /// log, as a failed group commit does: the log's state on disk is then unknown.
    fn commit_durable(
        &mut self,
        what: &str,
        txn: redb::WriteTransaction,
        edit: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), LogError> {
        let written = (|| -> Result<(), redb::Error> {
            let mut txn = txn;
            txn.set_durability(Durability::Immediate)?;
            edit(&txn)?;
            txn.commit()?;
            Ok(())
        })();
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        match written {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(error) => {
                let cause = Arc::new(error);
                tracing::error!(error = %cause, "{what} commit failed; poisoning the log");
                *lock(&self.shared.poison) = Some(Arc::clone(&cause));
                Err(LogError::CommitFailed(cause))
            }
        }
    }

    fn final_sync(&mut self) -> Result<(), LogError> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(cause) = lock(&self.shared.poison).as_ref() {
            return Err(LogError::Poisoned(Arc::clone(cause)));
        }
        let mut ranges = Vec::new();
        self.write(&[], true, &mut ranges).map_err(|e| LogError::CommitFailed(Arc::new(e)))?;
        self.dirty = false;
        Ok(())
    }
}
