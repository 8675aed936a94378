//! `annal`: the HTTP server embedding the engine, and tooling over its log.

use std::io::IsTerminal;
use std::process::ExitCode;

use annal_server::cli::{
    self, ClusterCommand, EventsArgs, ExportArgs, ImportArgs, LogCommand, MigrateArgs, RecoverArgs,
    ReplayArgs, ServeArgs, SnapshotCommand, VerifyArgs,
};
use annal_server::report;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "annal", version, about = "Event-sourced vector store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API over a data directory.
    Serve(ServeArgs),
    /// Check every event of a data directory's log and its archive segments (CRC,
    /// payload, density).
    Verify(VerifyArgs),
    /// Migrate an index of a running server to a new partition scheme, with a progress
    /// bar; prints the report as JSON.
    Migrate(MigrateArgs),
    /// Read, summarise, check and follow the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// List, verify or take snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Rebuild state from the log offline: check a replay against the newest snapshot
    /// (`--check`), or write the state as of an event into a new data directory
    /// (`--to S --out DIR`). The server must not hold the data directory.
    Replay(ReplayArgs),
    /// Load vectors into an index from `.fvecs`, `.npy` (float32, 2-D) or JSON lines,
    /// batched through the engine; a re-run skips ids already in the index. The
    /// server must not hold the data directory.
    Import(ImportArgs),
    /// Write every live record of an index, sorted by id, to `.fvecs` or `.npy` (ids in
    /// FILE.ids) or JSON lines (ids, metadata, partitions). Reads the log read-only.
    Export(ExportArgs),
    /// The last resort for a log whose tail is corrupt: remove the events after
    /// `--truncate-after S`, after copying them to `recovered/...` in the primary
    /// bucket, and record a `LogTruncated` event. Refuses (exit 2) without `--yes`.
    Recover(RecoverArgs),
    /// Where each node of a cluster stands: applied sequence, copy of the stream, lag.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print events of the log as JSON lines (the audit trail): the lines of `annal log
    /// dump --json --from S`, at most `--limit` of them.
    Events(EventsArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ANNAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Verify(args) => args.run(),
        Command::Events(args) => args.run(),
        Command::Log { command } => command.run(),
        Command::Cluster { command } => command.run(),
        Command::Snapshot { command } => command.run(),
        Command::Replay(args) => args.run(),
        Command::Import(args) => cli::transfer::import(&args),
        Command::Export(args) => cli::transfer::export(&args),
        Command::Recover(args) => cli::recover::recover(&args),
        Command::Migrate(args) => cli::migrate::migrate(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = %report(&*error), "annal failed");
            ExitCode::FAILURE
        }
    }
}
