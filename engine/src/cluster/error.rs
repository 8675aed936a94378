//! Errors of the clustered log (NATS JetStream). A leaf: the log and the crate error
//! both fold it in.

impl ClusterError {
    /// The same error for another caller of one group commit (the sources, which
    /// cannot be cloned, as their text).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Publish { msg_id, source } => {
                Self::Publish { msg_id: msg_id.clone(), source: source.to_string().into() }
            }
            Self::Conflict { foreign_seq, validated } => {
                Self::Conflict { foreign_seq: *foreign_seq, validated: *validated }
            }
            Self::Contended { attempts } => Self::Contended { attempts: *attempts },
            Self::NotMirrored { stream_seq } => Self::NotMirrored { stream_seq: *stream_seq },
            Self::TooLarge { bytes } => Self::TooLarge { bytes: *bytes },
            Self::BadMessage { stream_seq, what } => {
                Self::BadMessage { stream_seq: *stream_seq, what: what.clone() }
            }
            Self::BadConfig { field, value } => Self::BadConfig { field, value: value.clone() },
            Self::Connect { url, source } => {
                Self::Connect { url: url.clone(), source: source.to_string().into() }
            }
            Self::JetStream { op, source } => Self::JetStream { op, source: source.to_string().into() },
            Self::Diverged { stream, local_last, cursor, stream_last } => Self::Diverged {
                stream: stream.clone(),
                local_last: *local_last,
                cursor: *cursor,
                stream_last: *stream_last,
            },
            Self::Runtime(e) => Self::Runtime(std::io::Error::new(e.kind(), e.to_string())),
            Self::Copy { source } => Self::Copy { source: source.to_string().into() },
            Self::Task(e) => Self::Runtime(std::io::Error::other(e.to_string())),
            Self::Bootstrap { key, seq, source } => {
                Self::Bootstrap { key: key.clone(), seq: *seq, source: source.to_string().into() }
            }
            Self::Uncovered { stream, first } => Self::Uncovered { stream: stream.clone(), first: *first },
            Self::StreamConfig { stream, what } => {
                Self::StreamConfig { stream: stream.clone(), what: what.clone() }
            }
            Self::Behind { stream, cursor, first } => {
                Self::Behind { stream: stream.clone(), cursor: *cursor, first: *first }
            }
            Self::Closed => Self::Closed,
        }
    }
}

/// Why the clustered log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node starting empty could not begin from the cluster's newest snapshot.
    #[error("cannot bootstrap from snapshot {key} (as of event {seq})")]
    Bootstrap {
        /// The snapshot's object key.
        key: String,
        /// Its sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stream no longer holds its first messages (retention removed them) and no
    /// snapshot in the cluster's shared bucket covers them: a node starting empty
    /// cannot be built from it.
    #[error("stream {stream} starts at message {first} and no snapshot pointer covers the events before it; start the node with snapshots restored (the default) and a shared snapshot bucket")]
    Uncovered {
        /// The stream.
        stream: String,
        /// Its first message.
        first: u64,
    },
    /// The stream exists with a configuration that would not keep the log.
    #[error("stream {stream} cannot hold the log: {what}; delete it or name another with --cluster-stream")]
    StreamConfig {
        /// The stream.
        stream: String,
        /// What is wrong with it.
        what: String,
    },
    /// This node's copy stopped before the messages the stream still holds
    /// (retention dropped them while it was down): it cannot catch up.
    #[error("this node copied stream {stream} up to message {cursor}, and the stream now starts at message {first}: stop it, empty its data directory and start it again (it begins from the newest shared snapshot)")]
    Behind {
        /// The stream.
        stream: String,
        /// The last message this node copied.
        cursor: u64,
        /// The stream's first message.
        first: u64,
    },
    /// A cluster setting is not usable.
    #[error("cluster {field} {value:?} is invalid: 1 to 64 of A-Z a-z 0-9 _ - (replicas: 1 to 5)")]
    BadConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// No NATS server answered at the configured address.
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The address tried.
        url: String,
        /// What the client said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A JetStream request (stream create or info, consumer create) failed.
    #[error("JetStream {op} failed")]
    JetStream {
        /// What was asked.
        op: &'static str,
        /// What the server or client said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A publish got no quorum acknowledgement in time, or failed: the outcome is
    /// unknown (it may still be in the stream; it carries its message id).
    #[error("publish of commit {msg_id} was not acknowledged")]
    Publish {
        /// The commit's `Nats-Msg-Id`: a retry with it cannot be stored twice.
        msg_id: String,
        /// What the client said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another node appended an event that changes what this write was validated
    /// against (an index created or dropped, a promotion, a scheme) between the
    /// validation and the publish. Nothing was appended; retry the write.
    #[error("an event from another node (at {foreign_seq}) changed the schema this write was validated against (as of {validated}); nothing appended, retry")]
    Conflict {
        /// The sequence number of the other node's event.
        foreign_seq: u64,
        /// The sequence number the validation reflected.
        validated: u64,
    },
    /// The stream kept moving ahead of this node's copy for too long: the publish
    /// could not be placed after the last event.
    #[error("the stream moved on {attempts} times while publishing; nothing appended, retry")]
    Contended {
        /// Publishes tried.
        attempts: u32,
    },
    /// A published commit was acknowledged but this node's copy did not reach it in
    /// time. The write is durable in the stream and will be applied.
    #[error("commit at stream sequence {stream_seq} is durable but not copied locally yet")]
    NotMirrored {
        /// Its stream sequence number.
        stream_seq: u64,
    },
    /// A message in the stream is not an annal commit, or the stream does not hold the
    /// events this node needs next (a gap).
    #[error("stream message {stream_seq} is unusable: {what}")]
    BadMessage {
        /// Its stream sequence number.
        stream_seq: u64,
        /// What is wrong.
        what: String,
    },
    /// The local copy of the log is not a copy of this stream (it holds events the
    /// stream does not account for).
    #[error("the local log (last event {local_last}, stream position {cursor}) is not a copy of stream {stream} (last message {stream_last})")]
    Diverged {
        /// The stream's name.
        stream: String,
        /// The local log's last event.
        local_last: u64,
        /// The stream sequence the local log says it copied up to.
        cursor: u64,
        /// The stream's last message.
        stream_last: u64,
    },
    /// A commit larger than the NATS server takes in one message (its `max_payload`).
    #[error("a commit of {bytes} bytes exceeds the NATS server's max_payload; send smaller batches")]
    TooLarge {
        /// The commit message's size.
        bytes: usize,
    },
    /// The local log refused a copied batch (poisoned by a failed commit, a full
    /// disk): copying stops until the node is restarted.
    #[error("copying into the local log failed")]
    Copy {
        /// The log's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A task on the link's runtime was cancelled (closing) or panicked.
    #[error("a cluster task did not finish")]
    Task(#[source] tokio::task::JoinError),
    /// The runtime or the copying task could not be started.
    #[error("cluster runtime failed")]
    Runtime(#[source] std::io::Error),
    /// The copying task stopped (on an error it names in the log) or the link closed.
    #[error("the cluster link is closed")]
    Closed,
}
