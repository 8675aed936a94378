//! The HTTP API: axum on tokio, calling the synchronous engine on the blocking pool.

mod actor;
mod admin;
pub mod auth;
mod budget;
mod documents;
mod error;
mod jobs;
mod json;
mod limits;
mod metrics;
pub mod openapi;
mod partitions;
mod promotions;
mod routes;
mod storage;
mod tuning;

use std::process::ExitCode;
use std::sync::Arc;

use annal_engine::{BucketsConfig, Engine, EngineConfig};
use axum::routing::{get, post};
use axum::Router;

pub use actor::{ACTOR_HEADER, DEFAULT_ACTOR};
pub use budget::{BodyBudget, Reservation};
pub use error::ApiError;
pub use limits::{
    BODY_BYTES_MAX, BUDGET_PERMIT_BYTES, CLOSING_RETRY_AFTER_S, INFLIGHT_BODY_BYTES_DEFAULT,
    OVERLOADED_RETRY_AFTER_S, SEARCH_K_DEFAULT,
};
pub use metrics::Metrics;
pub use storage::RESCUE_HEADER;

use crate::ServeArgs;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Request counters and latencies, engine figures.
    pub metrics: Arc<Metrics>,
    /// The budget of request body bytes in flight.
    pub budget: Arc<BodyBudget>,
    /// Long-running calls (evaluation sets, trials, autotune).
    pub jobs: Arc<jobs::Jobs>,
    /// Who may call what (no tokens: everyone, on a loopback address).
    pub auth: Arc<auth::Auth>,
}

impl AppState {
    /// State over `engine` with a budget of `inflight_body_bytes` of request bodies.
    ///
    /// # Errors
    /// The metrics could not be registered (a bug).
    pub fn new(engine: Arc<Engine>, inflight_body_bytes: u64) -> Result<Self, prometheus::Error> {
        Ok(Self {
            engine,
            metrics: Arc::new(Metrics::new()?),
            budget: Arc::new(BodyBudget::new(inflight_body_bytes)),
            jobs: Arc::default(),
            auth: Arc::default(),
        })
    }

    /// The same state with the access policy `auth`.
    #[must_use]
    pub fn with_auth(self, auth: auth::Auth) -> Self {
        Self { auth: Arc::new(auth), ..self }
    }
}

/// The router, for the server and for tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/vectors/index", post(routes::create_index).get(routes::list_indexes))
        .route("/vectors/index/{name}", get(routes::get_index).delete(routes::drop_index))
        .route("/vectors/index/{name}/add", post(routes::add))
        .route("/vectors/index/{name}/delete", post(routes::delete))
        // Spelled as `auth::SEARCH_ROUTE` (a literal here: tests/docs.rs reads the routes
        // from this source); the access tests search with a read token.
        .route("/vectors/index/{name}/search", post(routes::search))
        .route("/vectors/index/{name}/documents", post(documents::upsert))
        .route("/vectors/index/{name}/embedding", get(documents::get).put(documents::set))
        .route("/vectors/index/{name}/promote", post(promotions::promote))
        .route("/vectors/index/{name}/rollback", post(promotions::rollback))
        .route("/vectors/index/{name}/promotion", get(promotions::get))
        .route("/vectors/promotions", get(promotions::list))
        .route("/vectors/index/{name}/evals", post(tuning::create_eval))
        .route("/vectors/index/{name}/trials", post(tuning::run_trial).get(tuning::list_trials))
        .route("/vectors/index/{name}/trials/best", get(tuning::best_trial))
        .route("/vectors/index/{name}/autotune", post(tuning::autotune))
        .route("/jobs/{id}", get(jobs::get))
        .route("/vectors/index/{name}/scheme", post(partitions::set_scheme))
        .route("/vectors/index/{name}/migrate", post(partitions::migrate))
        .route(
            "/vectors/index/{name}/migration",
            get(partitions::migration).delete(partitions::clear_migration),
        )
        .route("/vectors/index/{name}/partitions", get(partitions::partitions))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::serve))
        .route("/storage/buckets", get(storage::list_buckets))
        .route("/storage/buckets/{bucket}/probe", post(storage::probe))
        .route("/storage/buckets/{bucket}/objects", get(storage::list_objects))
        .route(
            "/storage/buckets/{bucket}/objects/",
            get(storage::empty_key).put(storage::empty_key).delete(storage::empty_key),
        )
        .route(
            "/storage/buckets/{bucket}/objects/{*key}",
            get(storage::get_object).put(storage::put_object).delete(storage::delete_object),
        )
        .route("/storage/errors", get(storage::errors))
        .route("/admin/snapshots", post(admin::take_snapshot).get(admin::list_snapshots))
        .route("/admin/log", get(admin::log))
        .route("/admin/events", get(admin::events))
        .route("/storage/bucket-health", get(storage::bucket_health))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // The last layer runs first: requests refused for the budget are still counted.
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::while_starting))
        .layer(axum::middleware::from_fn_with_state(state.clone(), budget::admit))
        // Before the budget: a request without a valid token reserves nothing.
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.auth), auth::authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// The actor of the probes the server runs at start.
pub const STARTUP_ACTOR: &str = "annal-startup";

/// `annal serve`: open the log, bind the listener, replay in the background (data
/// routes answer 503 `starting` meanwhile), serve until SIGINT or SIGTERM, then close
/// cleanly: the log is made durable first, then the projector and any rebuild stop.
///
/// # Errors
/// The engine could not open, replay or close, or the listener could not bind.
pub fn serve(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let auth = access_policy(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let buckets = match &args.buckets_config {
            Some(path) => BucketsConfig::load(path, |name| std::env::var(name).ok())?,
            None => BucketsConfig::default(),
        };
        let snapshots = annal_engine::SnapshotPolicy {
            every_events: (args.snapshot_every_events > 0).then_some(args.snapshot_every_events),
            keep: usize::try_from(args.snapshot_keep).unwrap_or(usize::MAX),
            archive: args.archive_log,
            ..annal_engine::SnapshotPolicy::default()
        };
        let embedders = crate::embedders(&args)?;
        tracing::info!(?embedders, "embedders");
        let config =
            EngineConfig { sync: args.sync.into(), buckets, snapshots, embedders, ..EngineConfig::default() };
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
        axum::serve(listener, router(state)).with_graceful_shutdown(stop).await?;
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
