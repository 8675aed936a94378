//! The flags of `annal serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use annal_engine::SyncMode;
use clap::ValueEnum;

use crate::http::{BODY_BYTES_MAX, INFLIGHT_BODY_BYTES_DEFAULT};

/// Flags of `annal serve`; each also reads an environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "ANNAL_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// `immediate`: fsync before acknowledging each write; `deferred`: bulk-load mode,
    /// durable at the next sync or at shutdown (see docs/OPERATIONS.md).
    #[arg(long, env = "ANNAL_SYNC", value_enum, default_value_t = Sync::Immediate)]
    pub sync: Sync,
    /// Bytes of request bodies the server holds at once; a request that does not fit
    /// is refused with 503 `overloaded`. At least the body limit (64 MiB), so that a
    /// body the limit admits can ever be served.
    #[arg(
        long,
        env = "ANNAL_INFLIGHT_BODY_BYTES",
        default_value_t = INFLIGHT_BODY_BYTES_DEFAULT,
        value_parser = clap::value_parser!(u64).range(BODY_BYTES_MAX as u64..),
    )]
    pub inflight_body_bytes: u64,
    /// Bucket configuration file (TOML, see docs/OPERATIONS.md). Without it the one
    /// bucket is `primary`, a local directory inside the data directory.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
    /// Take a snapshot once this many events were applied since the last one (0:
    /// only on request and at shutdown).
    #[arg(long, env = "ANNAL_SNAPSHOT_EVERY_EVENTS", default_value_t = 100_000)]
    pub snapshot_every_events: u64,
    /// Snapshots kept in the primary bucket; older ones are deleted.
    #[arg(long, env = "ANNAL_SNAPSHOT_KEEP", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub snapshot_keep: u64,
    /// Log retention: after each snapshot, move the events the oldest kept snapshot
    /// covers out of the log into archive segments in the primary bucket.
    #[arg(long, env = "ANNAL_ARCHIVE_LOG")]
    pub archive_log: bool,
}

/// Durability choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Sync {
    /// fsync every group commit.
    Immediate,
    /// No fsync per commit.
    Deferred,
}

impl From<Sync> for SyncMode {
    fn from(s: Sync) -> Self {
        match s {
            Sync::Immediate => SyncMode::Immediate,
            Sync::Deferred => SyncMode::Deferred,
        }
    }
}
