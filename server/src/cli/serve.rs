//! `annal serve`: its flags, the embedders they configure, and the server's life: build
//! the engine and the [`http::AppState`] from the flags, serve [`http::router`] until
//! SIGINT or SIGTERM, close cleanly. `http/` knows nothing of the flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use annal_engine::{
    Embedders, Engine, EngineConfig, LazyLocalEmbedder, LocalEmbedder, RemoteEmbedder, RemoteEmbedderConfig,
    Secret, SyncMode, LOCAL_MODEL_DIMENSION, LOCAL_MODEL_ID,
};
use clap::ValueEnum;

use super::common::buckets;
use crate::http::{self, auth, AppState, BODY_BYTES_MAX, INFLIGHT_BODY_BYTES_DEFAULT};

/// Flags of `annal serve`; each also reads an environment variable.
#[derive(clap::Args, Clone, Debug)]
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
    /// Bytes of request bodies the server holds at once; a request that does not fit
    /// is refused with 503 `overloaded`. At least the body limit (64 MiB), so that a
    /// body the limit admits can ever be served.
    #[arg(
        long,
        env = "ANNAL_INFLIGHT_BODY_BYTES",
        default_value_t = INFLIGHT_BODY_BYTES_DEFAULT,
        value_parser = clap::value_parser!(u64).range(BODY_BYTES_MAX as u64..),
    )]
    pub inflight_body_bytes: u64,
    /// Bucket configuration file (TOML, see docs/OPERATIONS.md). Without it the one
    /// bucket is `primary`, a local directory inside the data directory.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
    /// Take a snapshot once this many events were applied since the last one (0:
    /// only on request and at shutdown).
    #[arg(long, env = "ANNAL_SNAPSHOT_EVERY_EVENTS", default_value_t = 100_000)]
    pub snapshot_every_events: u64,
    /// Snapshots kept in the primary bucket; older ones are deleted.
    #[arg(long, env = "ANNAL_SNAPSHOT_KEEP", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub snapshot_keep: u64,
    /// Log retention: after each snapshot, move the events the oldest kept snapshot
    /// covers out of the log into archive segments in the primary bucket.
    #[arg(long, env = "ANNAL_ARCHIVE_LOG")]
    pub archive_log: bool,
    /// Directory of the local embedder's model (all-MiniLM-L6-v2: `config.json`,
    /// `tokenizer.json`, `model.safetensors`), as `scripts/fetch-model.sh` unpacks it.
    /// Default: `$XDG_CACHE_HOME/annal/models/all-MiniLM-L6-v2` (`~/.cache/...`). Loaded
    /// on first use; if missing, indexes using it wait and say why.
    #[arg(long, env = "ANNAL_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// A remote embedder, `MODEL:DIMENSION=URL` (URL of an OpenAI-compatible
    /// `/v1/embeddings` endpoint); repeatable, or comma-separated in the variable. Its
    /// bearer token, if any, comes from `ANNAL_EMBEDDER_API_KEY`.
    #[arg(long = "remote-embedder", env = "ANNAL_REMOTE_EMBEDDERS", value_delimiter = ',', value_parser = parse_remote)]
    pub remote_embedders: Vec<RemoteSpec>,
    /// Total time one call to a remote embedder may take, in milliseconds.
    #[arg(long, env = "ANNAL_REMOTE_EMBEDDER_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub remote_embedder_timeout_ms: u64,
    /// File of bearer tokens, `NAME:ACCESS:SECRET` per line (ACCESS `read` or
    /// `write`); it must be readable by its owner only (mode 600). With tokens every
    /// route but /healthz and /readyz needs `Authorization: Bearer SECRET`, and a
    /// token's name is the actor of what it writes.
    #[arg(long, env = "ANNAL_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// Bearer tokens as `NAME:ACCESS:SECRET` entries separated by commas (prefer the
    /// variable, which `ps` does not show, or the file).
    #[arg(long, env = "ANNAL_AUTH_TOKENS", hide_env_values = true)]
    pub auth_tokens: Option<Secret>,
    /// Serve without authentication on a non-loopback address (refused otherwise).
    #[arg(long, env = "ANNAL_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// With tokens: serve /metrics without one.
    #[arg(long, env = "ANNAL_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// Calls in flight at once to each remote embedder.
    #[arg(long, env = "ANNAL_REMOTE_EMBEDDER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub remote_embedder_concurrency: u64,
    /// Join a cluster: the log is the NATS JetStream stream at these servers
    /// (comma-separated `nats://host:port`), copied into the local data directory.
    /// Without it the log is the local file alone.
    #[arg(long, env = "ANNAL_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (1 to 64 of A-Z a-z 0-9 _ -); required with
    /// --cluster, and unique per data directory.
    #[arg(long, env = "ANNAL_NODE", requires = "cluster")]
    pub node: Option<String>,
    /// The JetStream stream holding the log (created if missing).
    #[arg(long, env = "ANNAL_CLUSTER_STREAM", default_value = "ANNAL")]
    pub cluster_stream: String,
    /// Replicas of the stream when this node creates it.
    #[arg(long, env = "ANNAL_CLUSTER_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub cluster_replicas: u64,
    /// Ready (/readyz) only while this node is within this many events of the stream.
    #[arg(long, env = "ANNAL_MAX_LAG", default_value_t = 1_000)]
    pub max_lag: u64,
}

/// The cluster `serve` joins, if any.
fn cluster(args: &ServeArgs) -> Result<Option<annal_engine::ClusterConfig>, String> {
    let Some(url) = &args.cluster else { return Ok(None) };
    let node = args.node.clone().ok_or("--cluster needs --node NAME (this node's name in the cluster)")?;
    if args.archive_log {
        return Err(
            "--archive-log cannot be used with --cluster: a node's log is a copy of the stream".into()
        );
    }
    let mut config = annal_engine::ClusterConfig::new(url.clone(), node);
    config.stream = args.cluster_stream.clone();
    config.replicas = usize::try_from(args.cluster_replicas).unwrap_or(3);
    config.max_lag = args.max_lag;
    config.check().map_err(|e| e.to_string())?;
    Ok(Some(config))
}

/// `--remote-embedder MODEL:DIMENSION=URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The model id.
    pub model: String,
    /// Its vectors' dimension.
    pub dimension: usize,
    /// The embeddings endpoint.
    pub url: String,
}

fn parse_remote(spec: &str) -> Result<RemoteSpec, String> {
    let usage =
        || format!("{spec:?}: expected MODEL:DIMENSION=URL, e.g. e5:768=http://127.0.0.1:8080/v1/embeddings");
    let (head, url) = spec.split_once('=').ok_or_else(usage)?;
    let (model, dimension) = head.rsplit_once(':').ok_or_else(usage)?;
    let dimension: usize = dimension.parse().map_err(|e| format!("{}: dimension {e}", usage()))?;
    if model.is_empty() || dimension == 0 || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage());
    }
    Ok(RemoteSpec { model: model.to_owned(), dimension, url: url.to_owned() })
}

/// Durability choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
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

/// The embedders `annal serve` offers: the local all-MiniLM-L6-v2 (loaded on first use;
/// unavailable, saying why, when its files are missing) and each `--remote-embedder`.
pub fn embedders(args: &ServeArgs) -> Result<Embedders, String> {
    let mut embedders = Embedders::default();
    let dir = args.model_dir.clone().unwrap_or_else(LocalEmbedder::default_dir);
    let missing: Vec<&str> = ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        embedders.add(Arc::new(LazyLocalEmbedder::new(dir)));
    } else {
        let reason = format!(
            "the local model's {} missing from {} (run scripts/fetch-model.sh, or pass --model-dir)",
            missing.join(", "),
            dir.display()
        );
        tracing::warn!(%reason, "local embedder unavailable");
        embedders.add_unavailable(LOCAL_MODEL_ID, LOCAL_MODEL_DIMENSION, reason);
    }
    let api_key = std::env::var("ANNAL_EMBEDDER_API_KEY").ok().filter(|k| !k.is_empty()).map(Secret::new);
    for spec in &args.remote_embedders {
        if embedders.knows(&spec.model) && spec.model != LOCAL_MODEL_ID {
            return Err(format!("--remote-embedder: model {:?} given twice", spec.model));
        }
        // A remote may serve the local model (same id), never with another dimension:
        // the indexes that record the id expect its vectors.
        if spec.model == LOCAL_MODEL_ID && spec.dimension != LOCAL_MODEL_DIMENSION {
            return Err(format!(
                "--remote-embedder: {LOCAL_MODEL_ID} gives {LOCAL_MODEL_DIMENSION} dimensions, not {}",
                spec.dimension
            ));
        }
        embedders.add(Arc::new(RemoteEmbedder::new(RemoteEmbedderConfig {
            model: spec.model.clone(),
            dimension: spec.dimension,
            url: spec.url.clone(),
            api_key: api_key.clone(),
            timeout: std::time::Duration::from_millis(args.remote_embedder_timeout_ms),
            concurrency: usize::try_from(args.remote_embedder_concurrency).unwrap_or(4),
        })));
    }
    Ok(embedders)
}
/// The actor of the probes the server runs at start.
pub const STARTUP_ACTOR: &str = "annal-startup";

/// `annal serve`: open the log, bind the listener, replay in the background (data
/// routes answer 503 `starting` meanwhile), serve until SIGINT or SIGTERM, then close
/// cleanly: the log is made durable first, then the projector and any rebuild stop.
///
/// # Errors
/// The engine could not open, replay or close, or the listener could not bind.
pub fn run(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let auth = access_policy(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let buckets = buckets(args.buckets_config.as_deref())?;
        let snapshots = annal_engine::SnapshotPolicy {
            every_events: (args.snapshot_every_events > 0).then_some(args.snapshot_every_events),
            keep: usize::try_from(args.snapshot_keep).unwrap_or(usize::MAX),
            archive: args.archive_log,
            ..annal_engine::SnapshotPolicy::default()
        };
        let embedders = embedders(&args)?;
        tracing::info!(?embedders, "embedders");
        let cluster = cluster(&args)?;
        let config = EngineConfig {
            sync: args.sync.into(),
            buckets,
            snapshots,
            embedders,
            cluster,
            ..EngineConfig::default()
        };
        let data = args.data.clone();
        let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::start(&data, config)).await??);
        let state = AppState::new(Arc::clone(&engine), args.inflight_body_bytes)?.with_auth(auth);
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(addr = %listener.local_addr()?, data = %args.data.display(), "listening");
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let replay = Arc::clone(&engine);
        let ready = tokio::task::spawn_blocking(move || match replay.wait_ready(std::time::Duration::MAX) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(error = %crate::report(&error), "replay failed; shutting down");
                let _ = failed_tx.send(());
                false
            }
        });
        // Once replayed, probe every bucket, so that `GET /storage/buckets` says which
        // are reachable and a broken one is in the error journal from the start.
        let probing = Arc::clone(&engine);
        tokio::spawn(async move {
            if matches!(ready.await, Ok(true)) {
                for bucket in probing.storage().buckets() {
                    match probing.storage().probe(STARTUP_ACTOR, &bucket.name).await {
                        Ok(report) if report.reachable => tracing::info!(bucket = bucket.name, "bucket reachable"),
                        Ok(report) => tracing::warn!(
                            bucket = bucket.name,
                            error = report.error.as_deref().unwrap_or(""),
                            "bucket unreachable"
                        ),
                        Err(error) => tracing::warn!(bucket = bucket.name, error = %crate::report(&error), "probe failed"),
                    }
                }
            }
        });
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = {
            let failed = Arc::clone(&failed);
            async move {
                tokio::select! {
                    () = shutdown_signal() => {}
                    Ok(()) = failed_rx => failed.store(true, std::sync::atomic::Ordering::SeqCst),
                }
            }
        };
        axum::serve(listener, http::router(state)).with_graceful_shutdown(stop).await?;
        tracing::info!("shutting down");
        tokio::task::spawn_blocking(move || engine.close()).await??;
        if failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The access policy of `annal serve`: tokens from the file or the variable (not
/// both), and the refusal to listen beyond loopback without them.
fn access_policy(args: &ServeArgs) -> Result<auth::Auth, Box<dyn std::error::Error>> {
    let tokens = match (&args.auth_tokens_file, &args.auth_tokens) {
        (Some(_), Some(_)) => {
            return Err("give tokens in --auth-tokens-file or ANNAL_AUTH_TOKENS, not both".into());
        }
        (Some(path), None) => Some(auth::Tokens::load(path)?),
        (None, Some(text)) => Some(auth::Tokens::parse(text.expose(), "ANNAL_AUTH_TOKENS")?),
        (None, None) => None,
    };
    if let Some(tokens) = &tokens {
        tracing::info!(tokens = ?tokens.names(), public_metrics = args.public_metrics, "bearer-token authentication on");
    } else if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "no authentication on a non-loopback address (--insecure-no-auth)");
    }
    let auth = auth::Auth { tokens, public_metrics: args.public_metrics };
    auth::check_listen(args.listen, &auth, args.insecure_no_auth)?;
    Ok(auth)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn a_dump_of_the_flags_never_shows_a_token_secret() {
        let secret = "alice:write:0123456789abcdef-secret";
        let cli = Cli::try_parse_from(["annal", "--auth-tokens", secret]).unwrap();
        assert_eq!(cli.serve.auth_tokens.as_ref().map(Secret::expose), Some(secret));
        let dump = format!("{:?}", cli.serve);
        assert!(dump.contains("<redacted>") && !dump.contains("0123456789abcdef"), "{dump}");
    }

    #[test]
    fn a_remote_embedder_spec_names_what_is_wrong() {
        assert_eq!(
            parse_remote("e5:768=http://h/v1/embeddings"),
            Ok(RemoteSpec { model: "e5".into(), dimension: 768, url: "http://h/v1/embeddings".into() })
        );
        let error = parse_remote("e5:x=http://h").unwrap_err();
        assert!(
            error.contains("expected MODEL:DIMENSION=URL") && error.contains("dimension invalid digit"),
            "{error}"
        );
        assert!(parse_remote("e5:768=ftp://h").is_err());
        assert!(parse_remote(":768=http://h").is_err());
    }
}
