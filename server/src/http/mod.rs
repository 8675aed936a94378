//! The HTTP API: axum on tokio, calling the synchronous engine on the blocking pool.

mod error;
mod json;
mod metrics;
mod routes;

use std::process::ExitCode;
use std::sync::Arc;

use annal_engine::{Engine, EngineConfig};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::ServeArgs;

/// Largest request body accepted (413 above it).
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Request counters and latencies.
    pub metrics: Arc<metrics::Metrics>,
}

/// The router, for the server and for tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/vectors/index", post(routes::create_index).get(routes::list_indexes))
        .route("/vectors/index/{name}", get(routes::get_index).delete(routes::drop_index))
        .route("/vectors/index/{name}/add", post(routes::add))
        .route("/vectors/index/{name}/delete", post(routes::delete))
        .route("/vectors/index/{name}/search", post(routes::search))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(metrics::render))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// `annal serve`: open the engine, serve until SIGINT or SIGTERM, then close cleanly.
pub fn serve(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = EngineConfig { sync: args.sync.into(), ..EngineConfig::default() };
        let data = args.data.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(&data, config)).await??;
        let engine = Arc::new(engine);
        let state = AppState { engine: Arc::clone(&engine), metrics: Arc::new(metrics::Metrics::new()?) };
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(addr = %listener.local_addr()?, data = %args.data.display(), "listening");
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("shutting down");
        tokio::task::spawn_blocking(move || engine.close()).await??;
        Ok(ExitCode::SUCCESS)
    })
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
