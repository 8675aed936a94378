//! `annal replay` and `annal recover`: rebuild state from the log offline, check that a
//! replay and the newest snapshot agree, materialize the state as of a sequence number
//! into a new data directory, and cut a corrupt tail off a log.

use std::path::Path;
use std::process::ExitCode;

use annal_engine::event::{decode, Event, EventBody, LogTruncated};
use annal_engine::PRIMARY;
use annal_engine::{BucketsConfig, Log, LogConfig, Storage, SyncMode, LOG_FILE};
use annal_engine::{LogicalState, OfflineLog, Replay, StateDigest};
use serde_json::{json, Value};

use crate::progress::Progress;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Frames appended to the new log per commit by `replay --to`.
const COPY_BATCH: usize = 1024;

/// The bucket configuration: the file given, or the default (a local `primary` in the
/// data directory).
pub fn buckets(config: Option<&Path>) -> Result<BucketsConfig> {
    Ok(match config {
        Some(path) => BucketsConfig::load(path, |name| std::env::var(name).ok())?,
        None => BucketsConfig::default(),
    })
}

/// A data directory's log opened read-only with its buckets, or a clear reason why not.
pub fn offline(data: &Path, buckets_config: Option<&Path>) -> Result<OfflineLog> {
    let log = crate::logtool::open(data)?;
    let storage = Storage::open_detached(data, &buckets(buckets_config)?)?;
    Ok(OfflineLog::new(log, storage)?)
}

fn digest_json(state: &LogicalState, digest: &StateDigest) -> Value {
    let parts: serde_json::Map<String, Value> =
        digest.parts.iter().map(|(name, hex)| (name.clone(), Value::from(hex.as_str()))).collect();
    json!({
        "seq": state.seq,
        "digest": digest.total,
        "indexes": state.indexes.len(),
        "records": state.indexes.iter().map(|i| i.records.len()).sum::<usize>(),
        "parts": parts,
    })
}

/// `annal replay --check`: replay the whole log (archived events included) into memory
/// from nothing; where the log registers a snapshot, compare the replayed state with
/// the newest one that reads back, at its sequence number, and report the first
/// difference; print the digest of the state at the log's end. Exit 1 on a
/// difference.
pub fn check(data: &Path, buckets_config: Option<&Path>, as_json: bool) -> Result<ExitCode> {
    let source = offline(data, buckets_config)?;
    let last = source.last_seq()?;
    let mut progress = Progress::new("replay", "events", Some(last));
    let (snapshot, skipped) = source.newest_snapshot(last)?;
    let mut replay = Replay::empty()?;
    let mut compared = Value::Null;
    // A registered snapshot that cannot be used is a finding of the check, whatever
    // the older one compares to.
    let mut failed = !skipped.is_empty();
    let skipped: Vec<Value> =
        skipped.iter().map(|s| json!({"seq": s.snapshot.seq, "key": s.snapshot.key, "why": s.why})).collect();
    if let Some((from_snapshot, taken)) = snapshot {
        source.replay_into(&mut replay, taken.seq, &mut |seq| progress.set(seq))?;
        let replayed = replay.state()?;
        let restored = from_snapshot.state()?;
        drop(from_snapshot);
        let difference = replayed.first_difference(&restored);
        failed |= difference.is_some();
        compared = json!({
            "seq": taken.seq,
            "key": taken.key,
            "matches": difference.is_none(),
            "difference": difference,
            "replayed_digest": replayed.digest().total,
            "snapshot_digest": restored.digest().total,
        });
    }
    source.replay_into(&mut replay, last, &mut |seq| progress.set(seq))?;
    progress.finish();
    let state = replay.state()?;
    let digest = state.digest();
    let mut report = digest_json(&state, &digest);
    report["snapshot"] = compared.clone();
    report["unusable_snapshots"] = skipped.clone().into();
    report["ok"] = (!failed).into();
    if as_json {
        println!("{report}");
    } else {
        for s in &skipped {
            println!(
                "UNUSABLE snapshot {} (as of {}): {}",
                s["key"].as_str().unwrap_or(""),
                s["seq"],
                s["why"].as_str().unwrap_or("")
            );
        }
        match &compared {
            Value::Null => println!("no usable snapshot registered: nothing to compare the replay with"),
            c if c["matches"] == true => println!(
                "ok: the replay equals snapshot {} (as of {}), digest {}",
                c["key"].as_str().unwrap_or(""),
                c["seq"],
                c["replayed_digest"].as_str().unwrap_or("")
            ),
            c => println!(
                "DIFFERENT: the replay and snapshot {} (as of {}) differ: {} (left: the replay, right: the snapshot)",
                c["key"].as_str().unwrap_or(""),
                c["seq"],
                c["difference"].as_str().unwrap_or("")
            ),
        }
        println!(
            "state as of {}: digest {} ({} indexes, {} records)",
            state.seq, digest.total, report["indexes"], report["records"]
        );
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `annal replay --to S --out DIR`: a new data directory whose log is this one's
/// events 1..=S (archived ones read back from their segments), with the newest snapshot
/// it registers copied into its primary bucket, so that `annal serve --data DIR` serves
/// the state as of S. The state is replayed in memory on the way (from that snapshot)
/// and its digest printed: `annal replay --check --data DIR` gives the same.
pub fn to(
    data: &Path,
    buckets_config: Option<&Path>,
    to: u64,
    out: &Path,
    as_json: bool,
) -> Result<ExitCode> {
    let source = offline(data, buckets_config)?;
    let last = source.last_seq()?;
    if to == 0 || to > last {
        return Err(format!("--to {to}: the log holds events up to {last}").into());
    }
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        return Err(format!("--out {}: exists and is not empty; give a new directory", out.display()).into());
    }
    std::fs::create_dir_all(out)?;
    // The newest snapshot whose registration is in the copied part.
    let registered = source.snapshots(to)?;
    let mut base = None;
    for (_, taken) in registered.iter().rev() {
        match source
            .fetch_snapshot(taken)
            .and_then(|object| Ok((Replay::from_snapshot(&object, taken)?, object)))
        {
            Ok((replay, object)) => {
                base = Some((replay, object, taken.clone()));
                break;
            }
            Err(error) => {
                tracing::warn!(key = %taken.key, error = %crate::report(&error), "snapshot not usable; not copied")
            }
        }
    }
    let mut copied_snapshot = Value::Null;
    let mut replay = match base {
        Some((replay, object, taken)) if taken.bucket == PRIMARY => {
            let storage = Storage::open_detached(out, &BucketsConfig::default())?;
            annal_engine::block_on(storage.put(annal_engine::TOOL_ACTOR, PRIMARY, &taken.key, object))??;
            copied_snapshot = json!({"seq": taken.seq, "key": taken.key});
            replay
        }
        Some((replay, _, taken)) => {
            tracing::warn!(bucket = %taken.bucket, "the newest snapshot is in another bucket than primary; not copied (the new directory replays its log from the start)");
            replay
        }
        None => Replay::empty()?,
    };
    let log = Log::open(out.join(LOG_FILE), LogConfig { sync: SyncMode::Deferred, ..LogConfig::default() })?;
    let mut progress = Progress::new(format!("replay to {to}"), "events", Some(to));
    let mut next = 1;
    while next <= to {
        let frames = source.frames(next, to)?;
        if frames.first().map(|(s, _)| *s) != Some(next) {
            return Err(format!("event {next} is missing from the log and its archive").into());
        }
        for chunk in frames.chunks(COPY_BATCH) {
            for (seq, frame) in chunk {
                // Every copied frame is checked, also those the base snapshot covers.
                if *seq != next {
                    return Err(format!(
                        "event {next} is missing (the log has a gap); nothing past it can be copied"
                    )
                    .into());
                }
                annal_engine::event::check(*seq, frame)?;
                if *seq > replay.applied_seq() {
                    replay.apply(*seq, &decode(*seq, frame)?)?;
                }
                next += 1;
            }
            let range = log.append_frames(chunk.iter().map(|(_, f)| f.clone()).collect())?;
            let expected = chunk.first().map(|(s, _)| *s)..=chunk.last().map(|(s, _)| *s);
            let got = range.as_ref().map(|r| *r.start())..=range.as_ref().map(|r| *r.end());
            if got != expected {
                return Err(
                    format!("the new log gave sequence numbers {range:?}, expected {expected:?}").into()
                );
            }
            progress.set(next - 1);
        }
    }
    log.sync()?;
    log.close()?;
    progress.finish();
    let state = replay.state()?;
    let digest = state.digest();
    let mut report = digest_json(&state, &digest);
    report["out"] = out.display().to_string().into();
    report["events"] = to.into();
    report["snapshot_copied"] = copied_snapshot;
    if as_json {
        println!("{report}");
    } else {
        println!(
            "{}: events 1..={to} written; state as of {to}: digest {} ({} indexes, {} records); serve it with `annal serve --data {}`",
            out.display(),
            digest.total,
            report["indexes"],
            report["records"],
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `annal recover` is asked to do.
pub struct RecoverArgs<'a> {
    /// Data directory.
    pub data: &'a Path,
    /// Bucket configuration file.
    pub buckets_config: Option<&'a Path>,
    /// The last event kept.
    pub after: u64,
    /// Do it (otherwise only say what would be cut).
    pub yes: bool,
    /// Recorded in the event.
    pub reason: &'a str,
    /// The actor recorded.
    pub actor: &'a str,
}

/// `annal recover --truncate-after S`: cut events S+1.. off the log. Without `--yes`
/// it only says what it would cut, and exits 2. With it, it first copies the cut frames
/// (as stored, corrupt ones too) to `recovered/...` in the primary bucket, durably, then
/// removes them and appends a `LogTruncated` event (sequence number S+1) in one log
/// transaction. The server must be stopped.
pub fn recover(args: &RecoverArgs<'_>) -> Result<ExitCode> {
    // What would be cut, read without writing (a dry run never repairs or changes the
    // file), then, with --yes, the same read again through the writer.
    let plan = {
        let log = crate::logtool::open(args.data)?;
        cut_plan(args.after, log.first_seq()?, log.last_seq()?, |range| {
            Ok(log.read_frames(range, COPY_BATCH)?)
        })?
    };
    describe_cut(args.after, &plan);
    if !args.yes {
        println!(
            "refusing without --yes: this removes {} events from the log (acknowledged writes among them are lost \
             from the state; their frames are kept in the bucket)",
            plan.frames.len()
        );
        return Ok(ExitCode::from(2));
    }
    let path = args.data.join(LOG_FILE);
    let log = Log::open(&path, LogConfig::default())
        .map_err(|error| crate::logtool::held_message(&path, error, "stop it first"))?;
    let plan = cut_plan(args.after, log.first_seq()?, log.last_seq(), |range| {
        Ok(log.read_frames(range, COPY_BATCH)?)
    })?;
    let (cut_first, cut_last) = (args.after + 1, plan.last);
    let (object, crc32) = annal_engine::encode_cut(&plan.frames)?;
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let key = format!("recovered/{cut_first:020}-{cut_last:020}-{stamp}.cut");
    let storage = Storage::open_detached(args.data, &buckets(args.buckets_config)?)?;
    let object_bytes = object.len() as u64;
    annal_engine::block_on(storage.put(args.actor, PRIMARY, &key, bytes::Bytes::from(object)))??;
    // Read the copy back before anything is cut.
    let back = annal_engine::block_on(storage.get_bounded(args.actor, PRIMARY, &key, object_bytes))??;
    if crc32fast::hash(&back.bytes) != crc32 {
        return Err(format!("the copy {PRIMARY}/{key} does not read back as written; nothing was cut").into());
    }
    let audit = Event::new(
        args.actor,
        EventBody::LogTruncated(LogTruncated {
            first_cut: cut_first,
            last_cut: cut_last,
            bucket: PRIMARY.to_owned(),
            key: key.clone(),
            bytes: object_bytes,
            crc32,
            reason: args.reason.to_owned(),
        }),
    );
    let seq = log.truncate_after(args.after, &audit)?;
    log.close()?;
    println!("truncated: events {cut_first}..={cut_last} copied to {PRIMARY}/{key} and removed; LogTruncated is event {seq}");
    Ok(ExitCode::SUCCESS)
}

/// What a truncation after `after` removes.
struct CutPlan {
    last: u64,
    frames: Vec<(u64, Vec<u8>)>,
}

fn cut_plan(
    after: u64,
    first: u64,
    last: u64,
    mut read: impl FnMut(std::ops::RangeInclusive<u64>) -> Result<Vec<(u64, Vec<u8>)>>,
) -> Result<CutPlan> {
    if after >= last || after.saturating_add(1) < first {
        return Err(format!(
            "--truncate-after {after}: the log holds events {first}..={last}; the cut must keep {}..={} and remove at least one event",
            first.saturating_sub(1),
            last.saturating_sub(1)
        )
        .into());
    }
    let mut frames = Vec::new();
    let mut next = after + 1;
    while next <= last {
        let batch = read(next..=last)?;
        let Some((end, _)) = batch.last() else { break };
        next = end + 1;
        frames.extend(batch);
    }
    Ok(CutPlan { last, frames })
}

fn describe_cut(after: u64, plan: &CutPlan) {
    let bytes: usize = plan.frames.iter().map(|(_, f)| f.len()).sum();
    let corrupt: Vec<u64> = plan
        .frames
        .iter()
        .filter(|(seq, f)| annal_engine::event::check(*seq, f).is_err())
        .map(|(s, _)| *s)
        .collect();
    let first = after + 1;
    let missing = (plan.last + 1 - first).saturating_sub(plan.frames.len() as u64);
    println!(
        "cut: events {first}..={} ({} events, {bytes} bytes); {} of them fail their checks{}{}",
        plan.last,
        plan.frames.len(),
        corrupt.len(),
        corrupt.first().map_or_else(String::new, |s| format!(", the first is {s}")),
        if missing > 0 {
            format!("; {missing} sequence numbers in the range are missing")
        } else {
            String::new()
        }
    );
}
