//! Projections: state derived from the log by applying its events in order.

mod projector;
pub mod vectors;

pub(crate) use projector::Projector;
pub use projector::ProjectorStats;
