//! The event log: a redb table of framed events keyed by a dense sequence number
//! starting at 1, written by one group-commit thread and read by any number of readers.

mod error;
mod read_only;
mod reader;
mod verify;
mod writer;

pub use error::LogError;
pub use read_only::ReadOnlyLog;
pub use verify::{BadEvent, VerifyReport};
pub use writer::{Log, LogConfig, LogStats, SyncMode};

use redb::TableDefinition;

/// The events table: sequence number -> frame (see [`crate::event::encode`]).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
