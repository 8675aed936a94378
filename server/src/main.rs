//! `annal`: the HTTP server embedding the engine, and tooling over its log.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use annal_server::transfer::Format;
use annal_server::{http, logtool, replaytool, report, tools, transfer, ServeArgs};
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
        /// The actor recorded in the log (with authentication, the token's name is).
        #[arg(long, default_value = "annal-cli")]
        actor: String,
        /// Bearer token for a server with authentication (prefer the variable).
        #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
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
    /// Rebuild state from the log offline: check a replay against the newest snapshot
    /// (`--check`), or write the state as of an event into a new data directory
    /// (`--to S --out DIR`). The server must not hold the data directory.
    Replay {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file, where snapshots and archive segments are not in
        /// the default local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
        /// Replay the whole log from nothing, compare it with the newest snapshot at
        /// its sequence number (first difference reported, exit 1), print the digest of
        /// the state at the end.
        #[arg(long, conflicts_with_all = ["to", "out"], required_unless_present = "to")]
        check: bool,
        /// The last event of the state written to `--out`.
        #[arg(long, requires = "out")]
        to: Option<u64>,
        /// A new (missing or empty) data directory for `--to`.
        #[arg(long, requires = "to")]
        out: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Load vectors into an index from `.fvecs`, `.npy` (float32, 2-D) or JSON lines,
    /// batched through the engine; a re-run skips ids already in the index. The
    /// server must not hold the data directory.
    Import {
        /// Data directory (created if missing).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// The index; created with the file's dimension if missing.
        #[arg(long)]
        index: String,
        /// The file.
        file: PathBuf,
        /// Its format (default: from the extension: .fvecs, .npy, .jsonl).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Ids of `.fvecs` / `.npy` rows, one per line (default: FILE.ids if present,
        /// else row numbers).
        #[arg(long)]
        ids: Option<PathBuf>,
        /// The JSON field holding a JSON line's id.
        #[arg(long, default_value = "id")]
        id_field: String,
        /// Name rows by their number (from 0), ignoring ids in the file.
        #[arg(long)]
        row_ids: bool,
        /// Prefix of ids made from row numbers.
        #[arg(long, default_value = "")]
        id_prefix: String,
        /// Metric of an index the import creates: l2, cosine or ip.
        #[arg(long, default_value = "cosine", value_parser = parse_metric)]
        metric: annal_engine::Metric,
        /// Records per event (each batch is all or nothing).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
        /// The actor recorded in the log.
        #[arg(long, default_value = "annal-import")]
        actor: String,
        /// The server's bucket configuration file, where its snapshots and archive
        /// segments are not in the default local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
    },
    /// Write every live record of an index, sorted by id, to `.fvecs` or `.npy` (ids in
    /// FILE.ids) or JSON lines (ids, metadata, partitions). Reads the log read-only.
    Export {
        /// Data directory (the server must not hold it).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file, where snapshots are not in the default local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
        /// The index.
        #[arg(long)]
        index: String,
        /// The file written.
        file: PathBuf,
        /// Its format (default: from the extension).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The state as of this event (default: the last).
        #[arg(long)]
        as_of: Option<u64>,
    },
    /// The last resort for a log whose tail is corrupt: remove the events after
    /// `--truncate-after S`, after copying them to `recovered/...` in the primary
    /// bucket, and record a `LogTruncated` event. Refuses (exit 2) without `--yes`.
    Recover {
        /// Data directory (the server must be stopped).
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// Bucket configuration file.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
        /// The last event kept.
        #[arg(long)]
        truncate_after: u64,
        /// Do it; without this, only say what would be cut.
        #[arg(long)]
        yes: bool,
        /// Why, recorded in the event.
        #[arg(long, default_value = "corrupt tail")]
        reason: String,
        /// The actor recorded in the log.
        #[arg(long, default_value = "annal-recover")]
        actor: String,
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
        /// Bearer token for a server with authentication (prefer the variable).
        #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
        token: Option<String>,

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
        /// Bucket configuration file, where archive segments (events before the log's
        /// first, read back from them) are not in the default local bucket.
        #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
        buckets_config: Option<PathBuf>,
    },
    /// Follow a running server's log: print each event as it commits.
    Tail {
        /// The server's base URL.
        #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
        server: String,
        /// Bearer token for a server with authentication (prefer the variable).
        #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
        token: Option<String>,

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

fn parse_metric(text: &str) -> Result<annal_engine::Metric, String> {
    [annal_engine::Metric::L2, annal_engine::Metric::Cosine, annal_engine::Metric::Ip]
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| format!("{text:?}: one of l2, cosine, ip"))
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
            SnapshotCommand::Create { server, token, actor } => {
                logtool::snapshot_create(&server, token.as_deref(), &actor)
            }
        },
        Command::Log { command } => match command {
            LogCommand::Stats { data, json } => logtool::stats(&data, json),
            LogCommand::Dump { data, from, to, kind, index, actor, json, vectors, buckets_config } => {
                let filter = logtool::Filter { from, to, kinds: kind, index, actor };
                logtool::dump(&data, buckets_config.as_deref(), &filter, json, vectors)
            }
            LogCommand::Tail { server, token, from, json, vectors, limit } => {
                logtool::tail(&server, token.as_deref(), from, json, vectors, limit)
            }
            LogCommand::Verify { data, buckets_config } => tools::verify(&data, buckets_config.as_deref()),
        },
        Command::Replay { data, buckets_config, check, to, out, json } => match (check, to, out) {
            (true, _, _) => replaytool::check(&data, buckets_config.as_deref(), json),
            (false, Some(to), Some(out)) => replaytool::to(&data, buckets_config.as_deref(), to, &out, json),
            _ => Err("give --check, or --to S --out DIR".into()),
        },
        Command::Import {
            data,
            index,
            file,
            format,
            ids,
            id_field,
            row_ids,
            id_prefix,
            metric,
            batch,
            actor,
            buckets_config,
        } => transfer::import(&transfer::ImportArgs {
            data: &data,
            index: &index,
            file: &file,
            format,
            ids: ids.as_deref(),
            id_field: &id_field,
            row_ids,
            id_prefix: &id_prefix,
            metric,
            batch: usize::try_from(batch).unwrap_or(1000),
            actor: &actor,
            buckets_config: buckets_config.as_deref(),
        }),
        Command::Export { data, buckets_config, index, file, format, as_of } => {
            transfer::export(&transfer::ExportArgs {
                data: &data,
                buckets_config: buckets_config.as_deref(),
                index: &index,
                file: &file,
                format,
                as_of,
            })
        }
        Command::Recover { data, buckets_config, truncate_after, yes, reason, actor } => {
            replaytool::recover(&replaytool::RecoverArgs {
                data: &data,
                buckets_config: buckets_config.as_deref(),
                after: truncate_after,
                yes,
                reason: &reason,
                actor: &actor,
            })
        }
        Command::Migrate { server, index, template, dry_run, batch_size, no_snapshot, actor, token } => {
            tools::migrate(&tools::MigrateArgs {
                server: &server,
                index: &index,
                template: &template,
                dry_run,
                batch_size,
                no_snapshot,
                actor: &actor,
                token: token.as_deref(),
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
