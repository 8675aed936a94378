//! Log tooling: verification and the audit trail, run against a data directory.

use std::path::Path;
use std::process::ExitCode;

use annal_engine::event::EventBody;
use annal_engine::{BucketsConfig, ReadOnlyLog, Storage};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(data: &Path) -> Result<ReadOnlyLog> {
    crate::logtool::open(data)
}

/// `annal verify`: exit 0 when every event is sound, in the log and in its archive
/// segments, 1 with the first bad one otherwise.
pub fn verify(data: &Path, buckets_config: Option<&Path>) -> Result<ExitCode> {
    let log = open(data)?;
    let report = log.verify()?;
    let segments = log.segments()?;
    let archived = if segments.is_empty() {
        None
    } else {
        let config = match buckets_config {
            Some(path) => BucketsConfig::load(path, |name| std::env::var(name).ok())?,
            None => BucketsConfig::default(),
        };
        let storage = Storage::open_detached(data, &config)?;
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

/// What `annal migrate` asks the server.
pub struct MigrateArgs<'a> {
    /// The server's base URL.
    pub server: &'a str,
    /// The index.
    pub index: &'a str,
    /// The new template.
    pub template: &'a str,
    /// Plan only.
    pub dry_run: bool,
    /// Records per batch event.
    pub batch_size: Option<usize>,
    /// Skip the snapshot taken first.
    pub no_snapshot: bool,
    /// The actor recorded.
    pub actor: &'a str,
    /// Bearer token, if the server wants one.
    pub token: Option<&'a str>,
}

/// `annal migrate`: start a scheme migration on a running server and follow its job
/// with a progress bar (on a terminal); print the report as JSON. Exit 0 when it
/// succeeded, 1 when the server refused it or the job failed.
pub fn migrate(args: &MigrateArgs<'_>) -> Result<ExitCode> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let base = args.server.trim_end_matches('/');
    let mut body = serde_json::json!({"template": args.template, "dry_run": args.dry_run});
    if let Some(n) = args.batch_size {
        body["batch_size"] = n.into();
    }
    if args.no_snapshot {
        body["take_snapshot_first"] = false.into();
    }
    let url = format!("{base}/vectors/index/{}/migrate", args.index);
    let mut response = crate::logtool::bearer(agent.post(&url), args.token)
        .header(crate::http::ACTOR_HEADER, args.actor)
        .send_json(&body)?;
    let status = response.status().as_u16();
    let started: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    if status != 202 {
        println!("{started}");
        return Ok(ExitCode::FAILURE);
    }
    let job_url = format!("{base}{}", started["status"].as_str().unwrap_or("/jobs/0"));
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} records ({eta})")?
            .progress_chars("=> "),
    );
    bar.set_message(format!("migrating {} to {}", args.index, args.template));
    let job = loop {
        let mut response = crate::logtool::bearer(agent.get(&job_url), args.token).call()?;
        let job: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
        if let (Some(done), Some(total)) =
            (job["progress"]["done"].as_u64(), job["progress"]["total"].as_u64())
        {
            bar.set_length(total);
            bar.set_position(done);
        }
        if job["status"] != "running" {
            break job;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if job["status"] == "succeeded" {
        println!("{}", job["result"]);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", job["error"]);
        Ok(ExitCode::FAILURE)
    }
}
