//! `annal replay`: rebuild state from the log offline, check that a replay and the
//! newest snapshot agree (`--check`), or materialize the state as of a sequence number
//! into a new data directory (`--to S --out DIR`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use annal_engine::event::decode;
use annal_engine::PRIMARY;
use annal_engine::{BucketsConfig, Log, LogConfig, Storage, SyncMode, LOG_FILE};
use annal_engine::{LogicalState, Replay, StateDigest};
use clap::Args;
use serde_json::{json, Value};

use super::common::{offline, Result, BATCH};
use super::progress::Progress;

/// Flags of `annal replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Data directory.
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Bucket configuration file, where snapshots and archive segments are not in
    /// the default local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
    /// Replay the whole log from nothing (a log that began from a cluster's snapshot:
    /// from that snapshot), compare it with the newest snapshot at
    /// its sequence number (first difference reported, exit 1), print the digest of
    /// the state at the end.
    #[arg(long, conflicts_with_all = ["to", "out"], required_unless_present = "to")]
    pub check: bool,
    /// The last event of the state written to `--out`.
    #[arg(long, requires = "out")]
    pub to: Option<u64>,
    /// A new (missing or empty) data directory for `--to`.
    #[arg(long, requires = "to")]
    pub out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl ReplayArgs {
    /// `annal replay --check` or `annal replay --to S --out DIR`.
    ///
    /// # Errors
    /// As [`check`] and [`to`]; neither asked for.
    pub fn run(self) -> Result<ExitCode> {
        match (self.check, self.to, self.out) {
            (true, _, _) => check(&self.data, self.buckets_config.as_deref(), self.json),
            (false, Some(to_seq), Some(out)) => {
                to(&self.data, self.buckets_config.as_deref(), to_seq, &out, self.json)
            }
            _ => Err("give --check, or --to S --out DIR".into()),
        }
    }
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
/// from nothing (a log that began from a cluster's snapshot: from the oldest usable
/// snapshot at or after its beginning); where the log registers a snapshot, compare the replayed state with
/// the newest one that reads back, at its sequence number, and report the first
/// difference; print the digest of the state at the log's end. Exit 1 on a
/// difference.
pub fn check(data: &Path, buckets_config: Option<&Path>, as_json: bool) -> Result<ExitCode> {
    let source = offline(data, buckets_config)?;
    let last = source.last_seq()?;
    let mut progress = Progress::new("replay", "events", Some(last));
    let (snapshot, skipped) = source.newest_snapshot(last)?;
    // A log that begins after event 1 with no archive segment before it (a replica
    // that began from its cluster's snapshot at S) is replayed from that snapshot: the
    // check covers every event it holds.
    let first = source.first_seq()?;
    let (mut replay, began_from) = if first > 1 {
        // The oldest usable snapshot at or after the log's beginning (the one it began
        // from may have been pruned since, once newer ones of its own were kept). The
        // ones skipped on the way are logged; they are older than the check's subject.
        match source.oldest_snapshot_from(first - 1)?.0 {
            Some((replay, taken)) => (replay, Some(taken)),
            None => {
                return Err(format!(
                    "the log begins at event {first} and no usable snapshot as of {} or later is registered",
                    first - 1
                )
                .into())
            }
        }
    } else {
        (Replay::empty()?, None)
    };
    // Compared only with a snapshot newer than where the replay began.
    let snapshot = snapshot.filter(|(_, taken)| began_from.as_ref().is_none_or(|b| taken.seq > b.seq));
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
    report["began_from"] = began_from.as_ref().map(|t| json!({"seq": t.seq, "key": t.key})).into();
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
        if let Some(began) = &began_from {
            println!("the log begins after snapshot {} (as of {}): replayed from it", began.key, began.seq);
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
    let first = source.first_seq()?;
    if first > 1 {
        return Err(format!(
            "this log begins at event {first} (its node began from a cluster's snapshot as of {}): replay --to needs every event from 1",
            first - 1
        )
        .into());
    }
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
        for chunk in frames.chunks(BATCH) {
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
