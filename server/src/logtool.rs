//! `annal log ...`: read, summarise, check and follow the event log. Events are written
//! as JSON whose fields are those of each kind's body (docs/FORMAT.md), so a dump with
//! `--vectors` parses back into the same events ([`event_from_json`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use crate::progress::Progress;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use annal_engine::event::{check, Event, EventBody, Stamp};
use annal_engine::{EventKind, ReadOnlyLog, LOG_FILE};
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Events read from the file per batch.
const BATCH: usize = 1024;
/// Largest `GET /admin/events` answer `tail` reads (the server bounds the frames it
/// reads, and JSON is a few times larger).
const TAIL_ANSWER_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Open a data directory's log read-only, or say clearly why not.
pub fn open(data: &Path) -> Result<ReadOnlyLog> {
    let path = data.join(LOG_FILE);
    if !path.exists() {
        return Err(format!("no log at {}", path.display()).into());
    }
    ReadOnlyLog::open(&path).map_err(|error| {
        held_message(&path, error, "stop it first, or follow it over HTTP with `annal log tail --server URL`")
    })
}

/// The error for a log that could not be opened: when a running server holds it, say
/// so and what to do (`advice`).
pub fn held_message(path: &Path, error: annal_engine::LogError, advice: &str) -> Box<dyn std::error::Error> {
    if matches!(error, annal_engine::LogError::Storage(redb::Error::DatabaseAlreadyOpen)) {
        format!(
            "{} is held by a running server (annal serve): {advice} ({})",
            path.display(),
            crate::report(&error)
        )
        .into()
    } else {
        error.into()
    }
}

/// One event as a JSON object: `seq`, `time_ms`, `actor`, `kind` and the kind's fields
/// as `body`. Without `vectors`, each vector is replaced by its length (`"vector":
/// {"dimension": N}`), which does not parse back.
pub fn event_json(seq: u64, event: &Event, vectors: bool) -> Value {
    let mut value = serde_json::to_value(&event.body).unwrap_or_else(|e| json!({"error": e.to_string()}));
    if !vectors {
        elide_vectors(&mut value);
    }
    let mut out = serde_json::Map::new();
    out.insert("seq".into(), seq.into());
    out.insert("time_ms".into(), event.stamp.time_ms.into());
    out.insert("actor".into(), event.stamp.actor.clone().into());
    if let Value::Object(tagged) = value {
        out.extend(tagged);
    }
    Value::Object(out)
}

fn elide_vectors(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "vector" {
                    if let Value::Array(a) = v {
                        *v = json!({"dimension": a.len()});
                        continue;
                    }
                }
                elide_vectors(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(elide_vectors),
        _ => {}
    }
}

/// Parse a line of `annal log dump --json --vectors` back into its sequence number and
/// event.
///
/// # Errors
/// A missing or mistyped field, named by serde.
pub fn event_from_json(value: &Value) -> Result<(u64, Event)> {
    let seq = value["seq"].as_u64().ok_or("seq: missing or not a number")?;
    let time_ms = value["time_ms"].as_u64().ok_or("time_ms: missing or not a number")?;
    let actor = value["actor"].as_str().ok_or("actor: missing or not a string")?.to_owned();
    let tagged = json!({"kind": value["kind"], "body": value["body"]});
    let body: EventBody = serde_json::from_value(tagged)?;
    Ok((seq, Event { stamp: Stamp { time_ms, actor }, body }))
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
        EventBody::BucketErrorRecorded(_)
        | EventBody::RecordsMoved(_)
        | EventBody::MigrationFinished(_)
        | EventBody::SnapshotTaken(_)
        | EventBody::LogArchived(_)
        | EventBody::LogTruncated(_) => return None,
    })
}

/// Which events `annal log dump` prints.
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
    let source = crate::replaytool::offline(data, buckets_config)?;
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
    let mut out = std::io::BufWriter::new(stdout.lock());
    while next <= last {
        let frames = source.frames(next, last)?;
        let Some((end, _)) = frames.last() else { break };
        next = end + 1;
        for (seq, frame) in &frames {
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

/// Every snapshot registered in the log (`SnapshotTaken` events), oldest first, with
/// the sequence number of its event.
fn registered(log: &ReadOnlyLog) -> Result<Vec<(u64, annal_engine::event::SnapshotTaken)>> {
    let (first, last) = (log.first_seq()?, log.last_seq()?);
    let mut out = Vec::new();
    let mut next = first;
    while next <= last {
        let frames = log.read_frames(next..=last, BATCH)?;
        let Some((end, _)) = frames.last() else { break };
        next = end + 1;
        for (seq, frame) in &frames {
            if check(*seq, frame)?.0 == EventKind::SnapshotTaken {
                if let EventBody::SnapshotTaken(taken) = annal_engine::event::decode(*seq, frame)?.body {
                    out.push((*seq, taken));
                }
            }
        }
    }
    Ok(out)
}

fn snapshot_json(event_seq: u64, t: &annal_engine::event::SnapshotTaken) -> Value {
    json!({"event_seq": event_seq, "seq": t.seq, "bucket": t.bucket, "key": t.key, "bytes": t.bytes, "crc32": t.crc32})
}

/// `annal snapshot list`: the snapshots the log registers, newest first.
pub fn snapshot_list(data: &Path, as_json: bool) -> Result<ExitCode> {
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
pub fn snapshot_verify(data: &Path, buckets_config: Option<&Path>) -> Result<ExitCode> {
    let log = open(data)?;
    let config = match buckets_config {
        Some(path) => annal_engine::BucketsConfig::load(path, |name| std::env::var(name).ok())?,
        None => annal_engine::BucketsConfig::default(),
    };
    let storage = annal_engine::Storage::open_detached(data, &config)?;
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
        let actual = crc32fast::hash(&object);
        if actual != taken.crc32 {
            println!("CORRUPT {}: CRC-32 {actual:#010x}, registered {:#010x}", taken.key, taken.crc32);
            failed = true;
            continue;
        }
        match annal_engine::decode_snapshot(&object) {
            Ok(decoded) if decoded.seq == taken.seq => {
                let names: Vec<&str> = decoded.sections.iter().map(|(n, _)| n.as_str()).collect();
                println!(
                    "ok {}: as of {}, {} bytes, sections {}",
                    taken.key,
                    taken.seq,
                    object.len(),
                    names.join(",")
                );
            }
            Ok(decoded) => {
                println!(
                    "CORRUPT {}: holds the state as of {}, registered as of {}",
                    taken.key, decoded.seq, taken.seq
                );
                failed = true;
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
pub fn snapshot_create(server: &str, token: Option<&str>, actor: &str) -> Result<ExitCode> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/admin/snapshots", server.trim_end_matches('/'));
    let mut response =
        bearer(agent.post(&url), token).header(crate::http::ACTOR_HEADER, actor).send_empty()?;
    let status = response.status().as_u16();
    println!("{}", response.body_mut().read_to_string()?);
    Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `request` with `Authorization: Bearer TOKEN` when a token is given (`--token`,
/// `ANNAL_TOKEN`).
pub fn bearer<B>(request: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
}
