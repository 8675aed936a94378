//! `annal`: the HTTP server embedding the engine, and tooling over its log.

mod http;
mod tools;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use annal_engine::SyncMode;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "annal", version, about = "Event-sourced vector store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API over a data directory.
    Serve(ServeArgs),
    /// Check every event of a data directory's log (CRC, payload, density).
    Verify {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
    },
    /// Print events of the log as JSON lines (the audit trail).
    Events {
        /// Data directory.
        #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
        data: PathBuf,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most events to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Flags of `annal serve`; each also reads an environment variable.
#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "ANNAL_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// `immediate`: fsync before acknowledging each write; `deferred`: bulk-load mode,
    /// durable at the next sync or at shutdown (see docs/OPERATIONS.md).
    #[arg(long, env = "ANNAL_SYNC", value_enum, default_value_t = Sync::Immediate)]
    pub sync: Sync,
}

/// Durability choice on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum Sync {
    /// fsync every group commit.
    Immediate,
    /// No fsync per commit.
    Deferred,
}

impl From<Sync> for SyncMode {
    fn from(s: Sync) -> Self {
        match s {
            Sync::Immediate => SyncMode::Immediate,
            Sync::Deferred => SyncMode::Deferred,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ANNAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => http::serve(args),
        Command::Verify { data } => tools::verify(&data),
        Command::Events { data, from, limit } => tools::events(&data, from, limit),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = %report(&*error), "annal failed");
            ExitCode::FAILURE
        }
    }
}

/// An error with its chain of causes, one line.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
