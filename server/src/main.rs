//! `annal`: the HTTP server embedding the engine, and tooling over its log.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use annal_server::{http, logtool, report, tools, ServeArgs};
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
    Verify {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file, where archive segments are not in the default
        /// local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
    },
    /// Migrate an index of a running server to a new partition scheme, with a progress
    /// bar; prints the report as JSON.
    Migrate {
        /// The server's base URL.
        #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
        server: String,
        /// The index.
        #[arg(long)]
        index: String,
        /// The new partition template, e.g. `tenant={tenant}/year={year}`.
        #[arg(long)]
        template: String,
        /// Plan only: list the moves, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Records per batch event (default 64).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Do not take a snapshot first.
        #[arg(long)]
        no_snapshot: bool,
        /// The actor recorded in the log.
        #[arg(long, default_value = "annal-cli")]
        actor: String,
    },
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
    /// Print events of the log as JSON lines (the audit trail; `annal log dump --json`
    /// is the structured form).
    Events {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most events to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// The snapshots the log registers, newest first.
    List {
        /// Data directory (the server must not hold it).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Read every registered snapshot back and check it (CRC against its registration,
    /// header, sections); exit 1 if one is corrupt or the newest is gone.
    Verify {
        /// Data directory (the server must not hold it).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file, where snapshots are not in the default local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
    },
    /// Ask a running server to take a snapshot now (`POST /admin/snapshots`).
    Create {
        /// The server's base URL.
        #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
        server: String,
        /// The actor recorded in the log.
        #[arg(long, default_value = "annal-cli")]
        actor: String,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// First and last sequence number, events and bytes per kind, size on disk,
    /// archived range and snapshots.
    Stats {
        /// Data directory (the server must not hold it: redb opens it read-only).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print events: readable lines, or JSON lines whose fields are each kind's body
    /// (docs/FORMAT.md). Vectors are replaced by their dimension unless `--vectors`.
    Dump {
        /// Data directory (the server must not hold it: use `log tail --server` then).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last sequence number.
        #[arg(long)]
        to: Option<u64>,
        /// Only events of this kind (name as in docs/FORMAT.md, or number); repeatable.
        #[arg(long)]
        kind: Vec<String>,
        /// Only events about this index.
        #[arg(long)]
        index: Option<String>,
        /// Only events of this actor.
        #[arg(long)]
        actor: Option<String>,
        /// JSON lines.
        #[arg(long)]
        json: bool,
        /// Include vectors (with `--json`, the lines then parse back into the events).
        #[arg(long)]
        vectors: bool,
    },
    /// Follow a running server's log: print each event as it commits.
    Tail {
        /// The server's base URL.
        #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
        server: String,
        /// First sequence number (default: the next event).
        #[arg(long)]
        from: Option<u64>,
        /// JSON lines.
        #[arg(long)]
        json: bool,
        /// Include vectors.
        #[arg(long)]
        vectors: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Check every event's CRC and payload and the sequence's density, in the log and
    /// its archive segments; exit 1 naming the first bad sequence number.
    Verify {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file, where archive segments are not in the default
        /// local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
    },
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => http::serve(args),
        Command::Verify { data, buckets_config } => tools::verify(&data, buckets_config.as_deref()),
        Command::Events { data, from, limit } => tools::events(&data, from, limit),
        Command::Snapshot { command } => match command {
            SnapshotCommand::List { data, json } => logtool::snapshot_list(&data, json),
            SnapshotCommand::Verify { data, buckets_config } => {
                logtool::snapshot_verify(&data, buckets_config.as_deref())
            }
            SnapshotCommand::Create { server, actor } => logtool::snapshot_create(&server, &actor),
        },
        Command::Log { command } => match command {
            LogCommand::Stats { data, json } => logtool::stats(&data, json),
            LogCommand::Dump { data, from, to, kind, index, actor, json, vectors } => {
                let filter = logtool::Filter { from, to, kinds: kind, index, actor };
                logtool::dump(&data, &filter, json, vectors)
            }
            LogCommand::Tail { server, from, json, vectors, limit } => {
                logtool::tail(&server, from, json, vectors, limit)
            }
            LogCommand::Verify { data, buckets_config } => tools::verify(&data, buckets_config.as_deref()),
        },
        Command::Migrate { server, index, template, dry_run, batch_size, no_snapshot, actor } => {
            tools::migrate(&tools::MigrateArgs {
                server: &server,
                index: &index,
                template: &template,
                dry_run,
                batch_size,
                no_snapshot,
                actor: &actor,
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = %report(&*error), "annal failed");
            ExitCode::FAILURE
        }
    }
}
