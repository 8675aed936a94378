//! annal-engine: an event-sourced storage engine for vector search.
//!
//! Every mutation is an [`Event`] appended to a checksummed log in redb ([`Log`]);
//! everything else is a projection of that log, rebuilt by replay.
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod event;
pub mod limits;
pub mod log;

pub use event::{Event, EventBody, EventKind, FrameError};
pub use log::{Log, LogConfig, LogError, LogStats, SyncMode, VerifyReport};
