//! `annal log ...` (and `annal verify`, `annal events`): read, summarise, check and
//! follow the event log. Events are printed through [`crate::render`], so a dump with
//! `--json --vectors` parses back into the same events.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use annal_engine::event::{check, Event, EventBody};
use annal_engine::{EventKind, Storage, LOG_FILE};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::common::{bearer, buckets, offline, open, Result, BATCH};
use super::progress::Progress;
use crate::render::event_json;

/// Largest `GET /admin/events` answer `tail` reads (the server bounds the frames it
/// reads, and JSON is a few times larger).
const TAIL_ANSWER_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// `annal log ...`.
#[derive(Subcommand)]
pub enum LogCommand {
    /// First and last sequence number, events and bytes per kind, size on disk,
    /// archived range and snapshots.
    Stats(StatsArgs),
    /// Print events: readable lines, or JSON lines whose fields are each kind's body
    /// (docs/FORMAT.md). Vectors are replaced by their dimension unless `--vectors`.
    Dump(DumpArgs),
    /// Follow a running server's log: print each event as it commits.
    Tail(TailArgs),
    /// Check every event's CRC and payload and the sequence's density, in the log and
    /// its archive segments; exit 1 naming the first bad sequence number.
    Verify(VerifyArgs),
}

impl LogCommand {
    /// Run it.
    ///
    /// # Errors
    /// The log could not be read, or the server not asked.
    pub fn run(self) -> Result<ExitCode> {
        match self {
            LogCommand::Stats(args) => stats(&args.data, args.json),
            LogCommand::Dump(args) => args.run(),
            LogCommand::Tail(args) => args.run(),
            LogCommand::Verify(args) => args.run(),
        }
    }
}

/// Flags of `annal log stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Data directory (the server must not hold it: redb opens it read-only).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `annal log dump`.
#[derive(Args)]
pub struct DumpArgs {
    /// Data directory (the server must not hold it: use `log tail --server` then).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// First sequence number.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Last sequence number.
    #[arg(long)]
    pub to: Option<u64>,
    /// Only events of this kind (name as in docs/FORMAT.md, or number); repeatable.
    #[arg(long)]
    pub kind: Vec<String>,
    /// Only events about this index.
    #[arg(long)]
    pub index: Option<String>,
    /// Only events of this actor.
    #[arg(long)]
    pub actor: Option<String>,
    /// JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Include vectors (with `--json`, the lines then parse back into the events).
    #[arg(long)]
    pub vectors: bool,
    /// Bucket configuration file, where archive segments (events before the log's
    /// first, read back from them) are not in the default local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
}

impl DumpArgs {
    /// `annal log dump`.
    ///
    /// # Errors
    /// As [`dump`].
    pub fn run(self) -> Result<ExitCode> {
        let filter = Filter {
            from: self.from,
            to: self.to,
            kinds: self.kind,
            index: self.index,
            actor: self.actor,
            limit: None,
        };
        dump(&self.data, self.buckets_config.as_deref(), &filter, self.json, self.vectors)
    }
}

/// Flags of `annal events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Data directory.
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// First sequence number.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Most events to print.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Bucket configuration file, where archive segments (events before the log's
    /// first, read back from them) are not in the default local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
}

impl EventsArgs {
    /// `annal events`: `annal log dump --json --from S`, at most `--limit` events.
    ///
    /// # Errors
    /// As [`dump`].
    pub fn run(self) -> Result<ExitCode> {
        let filter = Filter { from: self.from, limit: Some(self.limit), ..Filter::default() };
        dump(&self.data, self.buckets_config.as_deref(), &filter, true, false)
    }
}

/// Flags of `annal log tail`.
#[derive(Args)]
pub struct TailArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
    pub server: String,
    /// Bearer token for a server with authentication (prefer the variable).
    #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// First sequence number (default: the next event).
    #[arg(long)]
    pub from: Option<u64>,
    /// JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Include vectors.
    #[arg(long)]
    pub vectors: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
}

impl TailArgs {
    /// `annal log tail`.
    ///
    /// # Errors
    /// As [`tail`].
    pub fn run(self) -> Result<ExitCode> {
        tail(&self.server, self.token.as_deref(), self.from, self.json, self.vectors, self.limit)
    }
}

/// Flags of `annal verify` and `annal log verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Data directory.
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Bucket configuration file, where archive segments are not in the default
    /// local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
}

impl VerifyArgs {
    /// `annal verify`, `annal log verify`.
    ///
    /// # Errors
    /// As [`verify`].
    pub fn run(self) -> Result<ExitCode> {
        verify(&self.data, self.buckets_config.as_deref())
    }
}

/// The index an event is about, if any.
pub fn index_of(body: &EventBody) -> Option<&str> {
    Some(match body {
        EventBody::IndexCreated(b) => &b.name,
        EventBody::IndexDropped(b) => &b.name,
        EventBody::VectorsUpserted(b) => &b.index,
        EventBody::VectorsDeleted(b) => &b.index,
        EventBody::ConfigPromoted(b) => &b.index,
        EventBody::PromotionRolledBack(b) => &b.index,
        EventBody::HnswTrialRecorded(b) => &b.index,
        EventBody::MigrationStarted(b) => &b.index,
        EventBody::EvalSetCreated(b) => &b.index,
        EventBody::TrialRecorded(b) => &b.index,
        EventBody::SchemeSet(b) => &b.index,
        EventBody::MigrationBegun(b) => &b.index,
        EventBody::MigrationBatch(b) => &b.index,
        EventBody::MigrationEnded(b) => &b.index,
        EventBody::MigrationCleared(b) => &b.index,
        EventBody::IndexCreatedWithEmbedder(b) => &b.index.name,
        EventBody::DocumentsUpserted(b) => &b.index,
        EventBody::DocumentsEmbedded(b) => &b.index,
        EventBody::EmbedderChanged(b) => &b.index,
        EventBody::PayloadIndexCreated(b) => &b.index,
        EventBody::PayloadIndexDropped(b) => &b.index,
        EventBody::MetadataSet(b) => &b.index,
        EventBody::TextIndexCreated(b) => &b.index,
        EventBody::BucketErrorRecorded(_)
        | EventBody::RecordsMoved(_)
        | EventBody::MigrationFinished(_)
        | EventBody::SnapshotTaken(_)
        | EventBody::LogArchived(_)
        | EventBody::LogTruncated(_) => return None,
    })
}

/// Which events `annal log dump` (and `annal events`) prints.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// First sequence number.
    pub from: u64,
    /// Last sequence number.
    pub to: Option<u64>,
    /// Only these kinds (names as `EventKind`'s, any case, or numbers).
    pub kinds: Vec<String>,
    /// Only events about this index.
    pub index: Option<String>,
    /// Only events of this actor.
    pub actor: Option<String>,
    /// At most this many events (of those the rest selects).
    pub limit: Option<usize>,
}

impl Filter {
    fn kind_matches(&self, kind: EventKind) -> bool {
        self.kinds.is_empty()
            || self.kinds.iter().any(|k| {
                k.eq_ignore_ascii_case(&format!("{kind:?}")) || k.parse::<u8>().is_ok_and(|n| n == kind as u8)
            })
    }

    fn matches(&self, event: &Event) -> bool {
        self.kind_matches(EventKind::of(&event.body))
            && self.index.as_deref().is_none_or(|i| index_of(&event.body) == Some(i))
            && self.actor.as_deref().is_none_or(|a| event.stamp.actor == a)
    }

    /// Refuse a kind name no event kind has.
    fn check(&self) -> Result<()> {
        for k in &self.kinds {
            let known = (1..=u8::MAX).filter_map(EventKind::from_u8).any(|kind| {
                k.eq_ignore_ascii_case(&format!("{kind:?}")) || k.parse::<u8>().is_ok_and(|n| n == kind as u8)
            });
            if !known {
                return Err(format!("--kind {k:?}: no such event kind (see docs/FORMAT.md)").into());
            }
        }
        Ok(())
    }
}

/// `annal log dump`: the events `filter` selects, as readable lines or JSON lines.
///
/// # Errors
/// The log or an archive segment could not be read, or an event not decoded.
pub fn dump(
    data: &Path,
    buckets_config: Option<&Path>,
    filter: &Filter,
    as_json: bool,
    vectors: bool,
) -> Result<ExitCode> {
    match dump_to_stdout(data, buckets_config, filter, as_json, vectors) {
        // `annal log dump | head`: the reader has what it wanted.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn dump_to_stdout(
    data: &Path,
    buckets_config: Option<&Path>,
    filter: &Filter,
    as_json: bool,
    vectors: bool,
) -> Result<ExitCode> {
    filter.check()?;
    // Events before the log's first were archived: read them from their segments.
    let source = offline(data, buckets_config)?;
    let last = filter.to.unwrap_or(u64::MAX).min(source.last_seq()?);
    let mut next = filter.from.max(source.first_seq()?);
    let stdout = std::io::stdout();
    // Dumping to a file or a pipe: progress on stderr; on a terminal the lines are it.
    let mut progress = if stdout.is_terminal() {
        Progress::quiet()
    } else {
        Progress::new("dump", "events", Some(last.saturating_sub(next) + 1))
    };
    let start = next;
    let mut printed = 0usize;
    let mut out = std::io::BufWriter::new(stdout.lock());
    'read: while next <= last {
        let frames = source.frames(next, last)?;
        let Some((end, _)) = frames.last() else { break };
        next = end + 1;
        for (seq, frame) in &frames {
            if filter.limit.is_some_and(|limit| printed >= limit) {
                break 'read;
            }
            let event = annal_engine::event::decode(*seq, frame)?;
            if !filter.matches(&event) {
                continue;
            }
            let line = event_json(*seq, &event, vectors);
            if as_json {
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}", readable(&line))?;
            }
            printed += 1;
        }
        progress.set(next - start);
    }
    out.flush()?;
    progress.finish();
    Ok(ExitCode::SUCCESS)
}

/// `seq time actor kind index: fields`, one line.
fn readable(line: &Value) -> String {
    let body = &line["body"];
    let index = body
        .get("index")
        .and_then(|i| i.as_str().or_else(|| i.get("name").and_then(Value::as_str)))
        .or_else(|| body.get("name").and_then(Value::as_str));
    let mut fields = Vec::new();
    if let Value::Object(map) = body {
        for (key, value) in map {
            if key == "index" || key == "name" {
                continue;
            }
            let shown = match value {
                Value::Array(items) => format!("[{} items]", items.len()),
                Value::Object(_) => value.to_string(),
                Value::String(s) if s.chars().count() > 60 => {
                    format!("{:?}...", s.chars().take(60).collect::<String>())
                }
                other => other.to_string(),
            };
            fields.push(format!("{key}={shown}"));
        }
    }
    format!(
        "{:>8} {} {:<24} {:<12} {}{}",
        line["seq"],
        line["time_ms"],
        line["kind"].as_str().unwrap_or("?"),
        line["actor"].as_str().unwrap_or("?"),
        index.map_or_else(String::new, |i| format!("[{i}] ")),
        fields.join(" ")
    )
}
/// `annal log stats`: the log's range, events and bytes per kind, size on disk,
/// archived range and snapshots.
pub fn stats(data: &Path, as_json: bool) -> Result<ExitCode> {
    let log = open(data)?;
    let first = log.first_seq()?;
    let last = log.last_seq()?;
    let mut per_kind: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut next = first;
    while next <= last {
        let frames = log.read_frames(next..=last, BATCH)?;
        let Some((end, _)) = frames.last() else { break };
        next = end + 1;
        for (seq, frame) in &frames {
            let (kind, _) = check(*seq, frame)?;
            let entry = per_kind.entry(kind as u8).or_default();
            entry.0 += 1;
            entry.1 += frame.len() as u64;
            if kind == EventKind::SnapshotTaken {
                if let Ok(event) = annal_engine::event::decode(*seq, frame) {
                    if let EventBody::SnapshotTaken(s) = event.body {
                        snapshots.push(json!({"event_seq": seq, "seq": s.seq, "bucket": s.bucket, "key": s.key, "bytes": s.bytes}));
                    }
                }
            }
        }
    }
    let segments = log.segments()?;
    let archived = match (segments.first(), segments.last()) {
        (Some(a), Some(b)) => json!({
            "first_seq": a.first, "last_seq": b.last, "segments": segments.len(),
            "bytes": segments.iter().map(|s| s.bytes).sum::<u64>(),
        }),
        _ => Value::Null,
    };
    let bytes_on_disk = std::fs::metadata(data.join(LOG_FILE))?.len();
    let kinds: Vec<Value> = per_kind
        .iter()
        .map(|(k, (count, bytes))| {
            let name = EventKind::from_u8(*k).map_or_else(|| format!("kind {k}"), |kind| format!("{kind:?}"));
            json!({"kind": k, "name": name, "events": count, "bytes": bytes})
        })
        .collect();
    let events: u64 = per_kind.values().map(|(c, _)| c).sum();
    let report = json!({
        "first_seq": first,
        "last_seq": last,
        "events": events,
        "frame_bytes": per_kind.values().map(|(_, b)| b).sum::<u64>(),
        "bytes_on_disk": bytes_on_disk,
        "kinds": kinds,
        "archived": archived,
        "snapshots": snapshots,
    });
    if as_json {
        println!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("events {first}..={last} ({events} stored), {bytes_on_disk} bytes on disk");
    for k in report["kinds"].as_array().into_iter().flatten() {
        println!(
            "  {:<26} {:>10} events {:>14} bytes",
            k["name"].as_str().unwrap_or("?"),
            k["events"],
            k["bytes"]
        );
    }
    match archived {
        Value::Null => println!("archived: none"),
        a => println!(
            "archived: events {}..={} in {} segments ({} bytes)",
            a["first_seq"], a["last_seq"], a["segments"], a["bytes"]
        ),
    }
    println!("snapshots registered in the log: {}", snapshots.len());
    for s in snapshots.iter().rev().take(5) {
        println!(
            "  as of {} (event {}): {}/{} ({} bytes)",
            s["seq"],
            s["event_seq"],
            s["bucket"].as_str().unwrap_or(""),
            s["key"].as_str().unwrap_or(""),
            s["bytes"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `annal log tail --server URL`: follow a running server's log (`GET /admin/events`,
/// long-polled), printing each event as it commits, until interrupted or `limit`
/// events were printed.
pub fn tail(
    server: &str,
    token: Option<&str>,
    from: Option<u64>,
    as_json: bool,
    vectors: bool,
    limit: Option<u64>,
) -> Result<ExitCode> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into();
    let base = server.trim_end_matches('/');
    let mut next = match from {
        Some(seq) => seq,
        None => {
            let log: Value =
                bearer(agent.get(&format!("{base}/admin/log")), token).call()?.body_mut().read_json()?;
            log["last_seq"].as_u64().unwrap_or(0) + 1
        }
    };
    let mut printed = 0u64;
    if limit == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut retry = Duration::from_millis(200);
    loop {
        let url = format!("{base}/admin/events?from={next}&limit=1000&wait_ms=10000&vectors={vectors}");
        // A restart, a replay (503 starting) or a dropped connection: keep following.
        let answer: Value = match bearer(agent.get(&url), token)
            .call()
            .and_then(|mut r| r.body_mut().with_config().limit(TAIL_ANSWER_BYTES_MAX).read_json())
        {
            Ok(answer) => {
                retry = Duration::from_millis(200);
                answer
            }
            Err(ureq::Error::StatusCode(code @ (401 | 403))) => {
                return Err(format!(
                    "the server answered {code}: give a token that may read (--token or ANNAL_TOKEN)"
                )
                .into());
            }
            Err(error) => {
                tracing::warn!(%error, retry_ms = retry.as_millis() as u64, "tail: the server did not answer; retrying");
                std::thread::sleep(retry);
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Some(first) = answer["events"][0]["seq"].as_u64().filter(|first| *first > next) {
            tracing::warn!(from = next, first, "tail: events before {first} are archived; they are skipped");
        }
        let mut out = stdout.lock();
        for event in answer["events"].as_array().into_iter().flatten() {
            if as_json {
                writeln!(out, "{event}")?;
            } else {
                writeln!(out, "{}", readable(event))?;
            }
            next = event["seq"].as_u64().map_or(next, |s| s + 1);
            printed += 1;
            if limit.is_some_and(|l| printed >= l) {
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        out.flush()?;
    }
}

/// `annal verify`, `annal log verify`: exit 0 when every event is sound, in the log and
/// in its archive segments, 1 with the first bad one otherwise.
///
/// # Errors
/// The log could not be opened or read, or the bucket configuration not loaded.
pub fn verify(data: &Path, buckets_config: Option<&Path>) -> Result<ExitCode> {
    let log = open(data)?;
    let report = log.verify()?;
    let segments = log.segments()?;
    let archived = if segments.is_empty() {
        None
    } else {
        let storage = Storage::open_detached(data, &buckets(buckets_config)?)?;
        Some(annal_engine::verify_archive(&storage, &segments, report.first_seq))
    };
    if let Some(archive) = &archived {
        if let Some(error) = &archive.first_bad {
            println!(
                "CORRUPT archive: {} ({} archived events before it are sound)",
                crate::report(error),
                archive.events_ok
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    match report.first_bad {
        None => {
            let archived = archived.map_or_else(String::new, |a| {
                format!("; {} archived events in {} segments", a.events_ok, a.segments)
            });
            println!("ok: {} events, last sequence {}{archived}", report.events_ok, log.last_seq()?);
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            println!(
                "CORRUPT at event {}: {} ({} events before it are sound)",
                bad.seq,
                crate::report(&bad.error),
                report.events_ok
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
