//! `annal snapshot list|verify|create`: the snapshots a log registers, read back and
//! checked, or taken now by a running server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use annal_engine::event::SnapshotTaken;
use annal_engine::ReadOnlyLog;
use clap::Subcommand;
use serde_json::{json, Value};

use super::common::{bearer, buckets, open, Result};

/// `annal snapshot ...`.
#[derive(Subcommand)]
pub enum SnapshotCommand {
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

impl SnapshotCommand {
    /// Run it.
    ///
    /// # Errors
    /// The log could not be read, or the server not asked.
    pub fn run(self) -> Result<ExitCode> {
        match self {
            SnapshotCommand::List { data, json } => list(&data, json),
            SnapshotCommand::Verify { data, buckets_config } => verify(&data, buckets_config.as_deref()),
            SnapshotCommand::Create { server, token, actor } => create(&server, token.as_deref(), &actor),
        }
    }
}

/// Every snapshot registered in the log (`SnapshotTaken` events), oldest first, with
/// the sequence number of its event.
fn registered(log: &ReadOnlyLog) -> Result<Vec<(u64, SnapshotTaken)>> {
    Ok(annal_engine::registered_snapshots(log)?)
}

fn snapshot_json(event_seq: u64, t: &SnapshotTaken) -> Value {
    json!({"event_seq": event_seq, "seq": t.seq, "bucket": t.bucket, "key": t.key, "bytes": t.bytes, "crc32": t.crc32})
}

/// `annal snapshot list`: the snapshots the log registers, newest first.
pub fn list(data: &Path, as_json: bool) -> Result<ExitCode> {
    let log = open(data)?;
    for (event_seq, taken) in registered(&log)?.iter().rev() {
        if as_json {
            println!("{}", snapshot_json(*event_seq, taken));
        } else {
            println!(
                "as of {:>10}  event {:>10}  {:>12} bytes  {}/{}",
                taken.seq, event_seq, taken.bytes, taken.bucket, taken.key
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `annal snapshot verify`: read every registered snapshot back whole, check its CRC
/// against its registration and its layout (header, section table, each section's
/// CRC). Objects already deleted by the retention policy are reported as gone. Exit 1
/// when a snapshot is corrupt, or when the newest one is gone.
pub fn verify(data: &Path, buckets_config: Option<&Path>) -> Result<ExitCode> {
    let log = open(data)?;
    let storage = annal_engine::Storage::open_detached(data, &buckets(buckets_config)?)?;
    let snapshots = registered(&log)?;
    let mut failed = false;
    for (i, (_, taken)) in snapshots.iter().enumerate().rev() {
        let newest = i + 1 == snapshots.len();
        let fetched =
            annal_engine::block_on(storage.get_bounded("annal-cli", &taken.bucket, &taken.key, taken.bytes))?;
        let object = match fetched {
            Ok(fetched) => fetched.bytes,
            Err(annal_engine::StorageError::NotFound { .. }) => {
                println!(
                    "{} {}: gone (deleted by retention){}",
                    if newest { "MISSING" } else { "gone" },
                    taken.key,
                    if newest { ", and it is the newest" } else { "" }
                );
                failed |= newest;
                continue;
            }
            Err(error) => {
                println!("CORRUPT {}: cannot be read: {}", taken.key, crate::report(&error));
                failed = true;
                continue;
            }
        };
        // The check an open makes: header, every section's CRC, the whole object's
        // CRC and its sequence number against the registration.
        match annal_engine::check_snapshot(&object, taken) {
            Ok(decoded) => {
                let names: Vec<&str> = decoded.sections.iter().map(|(n, _)| n.as_str()).collect();
                println!(
                    "ok {}: as of {}, {} bytes, sections {}",
                    taken.key,
                    taken.seq,
                    object.len(),
                    names.join(",")
                );
            }
            Err(error) => {
                println!("CORRUPT {}: {}", taken.key, crate::report(&error));
                failed = true;
            }
        }
    }
    if snapshots.is_empty() {
        println!("no snapshot registered");
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `annal snapshot create --server URL`: ask a running server for a snapshot now and
/// print its answer.
pub fn create(server: &str, token: Option<&str>, actor: &str) -> Result<ExitCode> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/admin/snapshots", server.trim_end_matches('/'));
    let mut response =
        bearer(agent.post(&url), token).header(crate::http::ACTOR_HEADER, actor).send_empty()?;
    let status = response.status().as_u16();
    println!("{}", response.body_mut().read_to_string()?);
    Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
