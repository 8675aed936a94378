//! Log retention: events older than the oldest kept snapshot are moved out of the log
//! into checksummed segment objects in the primary bucket, so the log does not grow
//! without bound. Off by default ([`crate::snapshot::SnapshotPolicy::archive`]).
//!
//! A segment is written and made durable first; then one log transaction removes its
//! events, registers it (see [`crate::log::Segment`]) and appends a `LogArchived` audit
//! event. A crash between the two leaves an unregistered object that the next run
//! overwrites. Replay, time travel and `annal verify` read the archived events back
//! through the event source (`crate::source`).
//!
//! The segment object (all integers little-endian; see docs/FORMAT.md):
//!
//! ```text
//! offset size field
//!      0    8 magic         "ANNALSEG"
//!      8    2 version       1
//!     10    2 reserved      0
//!     12    4 count         events in the segment, n >= 1
//!     16    8 first         sequence number of the first event
//!     24    8 last          first + n - 1
//!     32    . n records     u32 frame length, then the frame exactly as the log held it
//!  end-4    4 crc32         CRC-32 of every byte before it
//! ```

mod error;
mod run;
mod segment;
mod verify;

pub use error::ArchiveError;
pub(crate) use run::archive_through;
pub use segment::{encode_cut, split_cut, PREFIX};
pub use verify::{read_segment, verify, ArchiveReport};
