//! `annal cluster status`: ask each node of a cluster where it stands
//! (`GET /admin/cluster`) and print one line per node, or JSON lines.

use std::process::ExitCode;

use serde_json::Value;

use super::common::bearer;

/// `annal cluster ...`
#[derive(clap::Subcommand, Clone, Debug)]
pub enum ClusterCommand {
    /// Each node's applied sequence number, its copy of the stream and its lag; exit 1
    /// if a node does not answer or is not ready.
    Status(StatusArgs),
}

/// Flags of `annal cluster status`.
#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// The nodes' base URLs (comma-separated, or the flag repeated).
    #[arg(long = "node", env = "ANNAL_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Print one JSON object per node instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Bearer token for servers with authentication (prefer the variable).
    #[arg(long, env = "ANNAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ClusterCommand {
    /// Run the command.
    ///
    /// # Errors
    /// Only for output failures: a node that does not answer is a line of the report.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self {
            ClusterCommand::Status(args) => status(&args),
        }
    }
}

fn status(args: &StatusArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    let mut healthy = true;
    if !args.json {
        println!(
            "{:<32} {:<12} {:>9} {:>10} {:>12} {:>12} {:>10} {:>12} {:>6}",
            "url",
            "node",
            "ready",
            "first_seq",
            "applied_seq",
            "last_seq",
            "lag_events",
            "stream_last",
            "lag"
        );
    }
    for base in &args.nodes {
        let url = format!("{}/admin/cluster", base.trim_end_matches('/'));
        let answer: Result<Value, String> = bearer(agent.get(&url), args.token.as_deref())
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| {
                let code = r.status();
                let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
                if code.is_success() {
                    serde_json::from_str(&body).map_err(|e| e.to_string())
                } else {
                    Err(format!("HTTP {code}: {body}"))
                }
            });
        match answer {
            Ok(node) => {
                healthy &= node["ready"].as_bool() == Some(true);
                if args.json {
                    let mut node = node;
                    node["url"] = Value::from(base.as_str());
                    println!("{node}");
                } else {
                    let n = |k: &str| node[k].as_u64().map_or("-".to_owned(), |v| v.to_string());
                    println!(
                        "{:<32} {:<12} {:>9} {:>10} {:>12} {:>12} {:>10} {:>12} {:>6}",
                        base,
                        node["node"].as_str().unwrap_or("(single)"),
                        node["ready"].as_bool().map_or("-", |r| if r { "yes" } else { "no" }),
                        n("first_seq"),
                        n("applied_seq"),
                        n("last_seq"),
                        n("lag_events"),
                        n("stream_last"),
                        n("lag_messages"),
                    );
                }
            }
            Err(error) => {
                healthy = false;
                if args.json {
                    println!("{}", serde_json::json!({"url": base, "error": error}));
                } else {
                    println!("{base:<32} unreachable: {error}");
                }
            }
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
