//! Log tooling: verification and the audit trail, run against a data directory.

use std::path::Path;
use std::process::ExitCode;

use annal_engine::event::EventBody;
use annal_engine::{ReadOnlyLog, LOG_FILE};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(data: &Path) -> Result<ReadOnlyLog> {
    let path = data.join(LOG_FILE);
    if !path.exists() {
        return Err(format!("no log at {}", path.display()).into());
    }
    Ok(ReadOnlyLog::open(path)?)
}

/// `annal verify`: exit 0 when every event is sound, 1 with the first bad one otherwise.
pub fn verify(data: &Path) -> Result<ExitCode> {
    let log = open(data)?;
    let report = log.verify()?;
    match report.first_bad {
        None => {
            println!("ok: {} events, last sequence {}", report.events_ok, log.last_seq()?);
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

/// `annal events`: one JSON object per event, vectors summarised.
pub fn events(data: &Path, from: u64, limit: usize) -> Result<ExitCode> {
    let log = open(data)?;
    for (seq, event) in log.read_range(from..=u64::MAX, limit)? {
        let line = serde_json::json!({
            "seq": seq,
            "time_ms": event.stamp.time_ms,
            "actor": event.stamp.actor,
            "kind": format!("{:?}", annal_engine::EventKind::of(&event.body)),
            "what": describe(&event.body),
        });
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(body: &EventBody) -> String {
    match body {
        EventBody::VectorsUpserted(b) => {
            let first: Vec<&str> = b.items.iter().take(5).map(|i| i.id.as_str()).collect();
            format!("index {:?}: {} vectors, first ids {:?}", b.index, b.items.len(), first)
        }
        EventBody::VectorsDeleted(b) => {
            let first: Vec<&str> = b.ids.iter().take(5).map(String::as_str).collect();
            format!("index {:?}: {} ids, first {:?}", b.index, b.ids.len(), first)
        }
        EventBody::RecordsMoved(b) => {
            format!("migration {:?}: {} records, cursor {:?}", b.migration_id, b.moves.len(), b.cursor)
        }
        other => format!("{other:?}"),
    }
}
