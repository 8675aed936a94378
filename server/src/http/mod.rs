//! The HTTP API: axum on tokio, calling the synchronous engine on the blocking pool.

mod actor;
mod admin;
pub mod auth;
mod budget;
mod documents;
mod error;
mod exec;
mod filter_body;
mod filters;
mod jobs;
mod json;
mod limits;
mod metrics;
pub mod openapi;
mod partitions;
mod promotions;
mod router;
mod routes;
mod state;
mod storage;
mod text_search;
mod tuning;

pub use actor::{ACTOR_HEADER, DEFAULT_ACTOR};
pub use budget::{BodyBudget, Reservation};
pub use error::ApiError;
pub use limits::{
    BODY_BYTES_MAX, BUDGET_PERMIT_BYTES, CLOSING_RETRY_AFTER_S, INFLIGHT_BODY_BYTES_DEFAULT,
    OVERLOADED_RETRY_AFTER_S, SEARCH_K_DEFAULT,
};
pub use metrics::Metrics;
pub use router::router;
pub use state::AppState;
pub use storage::RESCUE_HEADER;
