//! `annal migrate`: start a partition-scheme migration on a running server and follow
//! its job.

use std::process::ExitCode;

use clap::Args;

use super::common::{bearer, Result};

/// Flags of `annal migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNAL_SERVER", default_value = "http://127.0.0.1:7700")]
    pub server: String,
    /// The index.
    #[arg(long)]
    pub index: String,
    /// The new partition template, e.g. `tenant={tenant}/year={year}`.
    #[arg(long)]
    pub template: String,
    /// Plan only: list the moves, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Records per batch event (default 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Do not take a snapshot first.
    #[arg(long)]
    pub no_snapshot: bool,
    /// The actor recorded in the log (with authentication, the token's name is).
    #[arg(long, default_value = "annal-cli")]
    pub actor: String,
    /// Bearer token for a server with authentication (prefer the variable).
    #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `annal migrate`: start a scheme migration on a running server and follow its job
/// with a progress bar (on a terminal); print the report as JSON. Exit 0 when it
/// succeeded, 1 when the server refused it or the job failed.
///
/// # Errors
/// The server could not be reached or answered something else than JSON.
pub fn migrate(args: &MigrateArgs) -> Result<ExitCode> {
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
    let mut response = bearer(agent.post(&url), args.token.as_deref())
        .header(crate::http::ACTOR_HEADER, &args.actor)
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
        let mut response = bearer(agent.get(&job_url), args.token.as_deref()).call()?;
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
