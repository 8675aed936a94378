//! What every handler shares.

use std::sync::Arc;

use annal_engine::Engine;
use axum::extract::FromRef;

use super::auth::Auth;
use super::budget::BodyBudget;
use super::jobs::Jobs;
use super::metrics::Metrics;

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
    pub jobs: Arc<Jobs>,
    /// Who may call what (no tokens: everyone, on a loopback address).
    pub auth: Arc<Auth>,
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
    pub fn with_auth(self, auth: Auth) -> Self {
        Self { auth: Arc::new(auth), ..self }
    }
}

/// The middleware and handlers that need only a part of the state take that part.
impl FromRef<AppState> for Arc<Jobs> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.jobs)
    }
}
