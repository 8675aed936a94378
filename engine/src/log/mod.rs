//! The event log: a redb table of framed events keyed by a dense sequence number
//! (starting at 1, or later once retention removed old events), written by one group-commit thread and read by any number of readers.

mod archive;
mod budget;
mod error;
mod memory;
mod read_only;
mod reader;
mod shared;
mod verify;
mod writer;

pub use archive::Segment;
pub use error::LogError;
pub use memory::MemoryBackend;
pub use read_only::ReadOnlyLog;
pub use reader::LogReader;
pub use verify::{BadEvent, VerifyReport};
pub use writer::{Bootstrap, Log, LogConfig, LogStats, MessageSpan, Mirrored, SyncMode, Upstream};

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition};

/// The events table: sequence number -> frame (see [`crate::event::encode`]).
/// File name of the event log inside the data directory.
pub const LOG_FILE: &str = "log.redb";

pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// A log that copies a replicated stream: how far it copied (key [`STREAM_SEQ_KEY`]:
/// the stream sequence number of the last message copied), written in the same
/// transaction as the copied events.
pub(crate) const CURSOR: TableDefinition<&str, u64> = TableDefinition::new("stream_cursor");
pub(crate) const STREAM_SEQ_KEY: &str = "stream_seq";
/// A log that began from a snapshot (a replica bootstrapped from the cluster's newest
/// one): the last event it does not hold because the snapshot covers it. Absent: 0.
pub(crate) const BASE_SEQ_KEY: &str = "base_seq";
/// With [`BASE_SEQ_KEY`]: how many frames of the next stream message the snapshot
/// already covers (its sequence number fell inside that message). Removed by the
/// copy of that message.
pub(crate) const SKIP_KEY: &str = "skip_frames";

/// A log that copies a replicated stream: which stream message each local event came
/// from. Key: the local sequence number of the message's first frame; value: the
/// message's stream sequence number and how many frames it holds. One row per message,
/// written in the copy's transaction; it locates a snapshot's position in the stream.
pub(crate) const STREAM_INDEX: TableDefinition<u64, (u64, u64)> = TableDefinition::new("stream_index");

/// A log that began from a snapshot: the snapshot's registration (key
/// [`BOOTSTRAP_KEY`]: an event frame of a `SnapshotTaken`), which the log does not
/// hold as an event; an open restores it when no newer snapshot of the node's own does.
pub(crate) const BOOTSTRAP: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_bootstrap");
pub(crate) const BOOTSTRAP_KEY: &str = "snapshot";

/// A log that copies a replicated stream: the key prefix of this node's snapshots
/// (key [`OWNER_KEY`]), so offline tools restore only from this node's snapshots too.
pub(crate) const NODE: TableDefinition<&str, &str> = TableDefinition::new("cluster_node");
pub(crate) const OWNER_KEY: &str = "snapshot_owner";
/// With [`OWNER_KEY`]: which stream (name and creation time) the log copies.
pub(crate) const STREAM_ID_KEY: &str = "stream";

/// What a copied log records under `key` in [`NODE`] (`None` for a log of its own).
pub(crate) fn recorded(txn: &ReadTransaction, key: &str) -> Result<Option<String>, LogError> {
    match txn.open_table(NODE) {
        Ok(table) => Ok(table.get(key)?.map(|v| v.value().to_owned())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The stream position of a copied log (0 for a log that copies nothing, or nothing yet).
pub(crate) fn stream_cursor(txn: &ReadTransaction) -> Result<u64, LogError> {
    cursor_value(txn, STREAM_SEQ_KEY)
}

/// A value of [`CURSOR`] (0 when absent).
pub(crate) fn cursor_value(txn: &ReadTransaction, key: &str) -> Result<u64, LogError> {
    match txn.open_table(CURSOR) {
        Ok(table) => Ok(table.get(key)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The registration of the snapshot a bootstrapped log began from, as an event frame.
pub(crate) fn bootstrap_record(txn: &ReadTransaction) -> Result<Option<Vec<u8>>, LogError> {
    match txn.open_table(BOOTSTRAP) {
        Ok(table) => Ok(table.get(BOOTSTRAP_KEY)?.map(|v| v.value().to_vec())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Where local event `seq` came from in the stream: the message's stream sequence
/// number, how many of its frames are at or before `seq`, and how many it holds.
pub(crate) fn stream_position(txn: &ReadTransaction, seq: u64) -> Result<Option<(u64, u64, u64)>, LogError> {
    let table = match txn.open_table(STREAM_INDEX) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(row) = table.range(..=seq)?.next_back() else { return Ok(None) };
    let (first, value) = row?;
    let (first, (stream_seq, count)) = (first.value(), value.value());
    Ok((first.saturating_add(count) > seq).then(|| (stream_seq, seq - first + 1, count)))
}

/// The events table of a read transaction; `None` for a log never written to (redb
/// creates the table with the first write).
pub(crate) fn events_table(
    txn: &ReadTransaction,
) -> Result<Option<ReadOnlyTable<u64, &'static [u8]>>, LogError> {
    match txn.open_table(EVENTS) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Lowest stored sequence number (for an empty log, the one after its base: 1, or
/// S + 1 for a log that began from a snapshot at S): events before it were removed by
/// retention after a snapshot covered them, or never copied because one did.
pub(crate) fn first_stored_seq(txn: &ReadTransaction) -> Result<u64, LogError> {
    let base = cursor_value(txn, BASE_SEQ_KEY)?;
    let Some(table) = events_table(txn)? else { return Ok(base + 1) };
    let first = table.first()?.map_or(base + 1, |(k, _)| k.value());
    Ok(first)
}

/// Highest stored sequence number (0 for an empty log; its base for an empty log that
/// began from a snapshot).
pub(crate) fn last_stored_seq(txn: &ReadTransaction) -> Result<u64, LogError> {
    let base = cursor_value(txn, BASE_SEQ_KEY)?;
    let Some(table) = events_table(txn)? else { return Ok(base) };
    let last = table.last()?.map_or(base, |(k, _)| k.value());
    Ok(last)
}
