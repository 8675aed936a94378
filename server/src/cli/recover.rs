//! `annal recover`: cut a corrupt tail off a log, keeping the cut frames in the primary
//! bucket and recording a `LogTruncated` event.

use std::path::PathBuf;
use std::process::ExitCode;

use annal_engine::event::{Event, EventBody, LogTruncated};
use annal_engine::PRIMARY;
use annal_engine::{Log, LogConfig, Storage, LOG_FILE};
use clap::Args;

use super::common::{buckets, held_message, open, Result, BATCH};

/// Flags of `annal recover`.
#[derive(Args)]
pub struct RecoverArgs {
    /// Data directory (the server must be stopped).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Bucket configuration file.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
    /// The last event kept.
    #[arg(long)]
    pub truncate_after: u64,
    /// Do it; without this, only say what would be cut.
    #[arg(long)]
    pub yes: bool,
    /// Why, recorded in the event.
    #[arg(long, default_value = "corrupt tail")]
    pub reason: String,
    /// The actor recorded in the log.
    #[arg(long, default_value = "annal-recover")]
    pub actor: String,
}

/// `annal recover --truncate-after S`: cut events S+1.. off the log. Without `--yes`
/// it only says what it would cut, and exits 2. With it, it first copies the cut frames
/// (as stored, corrupt ones too) to `recovered/...` in the primary bucket, durably, then
/// removes them and appends a `LogTruncated` event (sequence number S+1) in one log
/// transaction. The server must be stopped.
///
/// # Errors
/// The log could not be opened, read or cut, or the copy not written and read back.
pub fn recover(args: &RecoverArgs) -> Result<ExitCode> {
    // What would be cut, read without writing (a dry run never repairs or changes the
    // file), then, with --yes, the same read again through the writer.
    let plan = {
        let log = open(&args.data)?;
        cut_plan(args.truncate_after, log.first_seq()?, log.last_seq()?, |range| {
            Ok(log.read_frames(range, BATCH)?)
        })?
    };
    describe_cut(args.truncate_after, &plan);
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
        .map_err(|error| held_message(&path, error, "stop it first"))?;
    let plan = cut_plan(args.truncate_after, log.first_seq()?, log.last_seq(), |range| {
        Ok(log.read_frames(range, BATCH)?)
    })?;
    let (cut_first, cut_last) = (args.truncate_after + 1, plan.last);
    let (object, crc32) = annal_engine::encode_cut(&plan.frames)?;
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let key = format!("recovered/{cut_first:020}-{cut_last:020}-{stamp}.cut");
    let storage = Storage::open_detached(&args.data, &buckets(args.buckets_config.as_deref())?)?;
    let object_bytes = object.len() as u64;
    annal_engine::block_on(storage.put(&args.actor, PRIMARY, &key, bytes::Bytes::from(object)))??;
    // Read the copy back before anything is cut.
    let back = annal_engine::block_on(storage.get_bounded(&args.actor, PRIMARY, &key, object_bytes))??;
    if crc32fast::hash(&back.bytes) != crc32 {
        return Err(format!("the copy {PRIMARY}/{key} does not read back as written; nothing was cut").into());
    }
    let audit = Event::new(
        &args.actor,
        EventBody::LogTruncated(LogTruncated {
            first_cut: cut_first,
            last_cut: cut_last,
            bucket: PRIMARY.to_owned(),
            key: key.clone(),
            bytes: object_bytes,
            crc32,
            reason: args.reason.clone(),
        }),
    );
    let seq = log.truncate_after(args.truncate_after, &audit)?;
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
