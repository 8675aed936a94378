//! The `annal` subcommands, one module per command group, each with its clap flags
//! beside its handler; `main.rs` parses and dispatches. The commands may use
//! [`crate::http`] (to serve) and [`crate::render`]; neither imports from here.

pub mod cluster;
pub mod common;
pub mod log;
pub mod migrate;
pub mod progress;
pub mod recover;
pub mod replay;
pub mod serve;
pub mod snapshot;
pub mod transfer;

pub use cluster::ClusterCommand;
pub use log::{EventsArgs, LogCommand, VerifyArgs};
pub use migrate::MigrateArgs;
pub use recover::RecoverArgs;
pub use replay::ReplayArgs;
pub use serve::{embedders, RemoteSpec, ServeArgs, Sync};
pub use snapshot::SnapshotCommand;
pub use transfer::{ExportArgs, Format, ImportArgs};
