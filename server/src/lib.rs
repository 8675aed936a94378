//! annal-server: the HTTP API over an [`annal_engine::Engine`], and tooling over its log.
//!
//! The `annal` binary is a thin CLI over this library; tests build the router in-process
//! with [`http::router`] and an [`http::AppState`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use annal_engine::{Engine, EngineConfig};
//! use annal_server::http::{router, AppState, INFLIGHT_BODY_BYTES_DEFAULT};
//!
//! let engine = Arc::new(Engine::open("./data", EngineConfig::default())?);
//! let app = router(AppState::new(engine, INFLIGHT_BODY_BYTES_DEFAULT)?);
//! # let _ = app;
//! # Ok(()) }
//! ```
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod args;
pub mod http;
mod report;
pub mod tools;

pub use args::{ServeArgs, Sync};
pub use report::report;
