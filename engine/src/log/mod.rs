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
pub use writer::{Log, LogConfig, LogStats, Mirrored, SyncMode, Upstream};

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
    match txn.open_table(CURSOR) {
        Ok(table) => Ok(table.get(STREAM_SEQ_KEY)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
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

/// Lowest stored sequence number (1 for an empty log): events before it were removed by
/// retention after a snapshot covered them.
pub(crate) fn first_stored_seq(txn: &ReadTransaction) -> Result<u64, LogError> {
    let Some(table) = events_table(txn)? else { return Ok(1) };
    let first = table.first()?.map_or(1, |(k, _)| k.value());
    Ok(first)
}

/// Highest stored sequence number (0 for an empty log).
pub(crate) fn last_stored_seq(txn: &ReadTransaction) -> Result<u64, LogError> {
    let Some(table) = events_table(txn)? else { return Ok(0) };
    let last = table.last()?.map_or(0, |(k, _)| k.value());
    Ok(last)
}
