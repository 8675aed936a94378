//! annal-server: the HTTP API over an [`annal_engine::Engine`], and tooling over its log.
//!
//! The `annal` binary is a thin CLI over this library: [`cli`] holds every subcommand,
//! [`http`] the server (which knows nothing of the command line), [`render`] the one
//! JSON rendering of an event both use. Tests build the router in-process with
//! [`http::router`] and an [`http::AppState`].
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

pub mod cli;
pub mod http;
pub mod render;
mod report;

pub use report::report;
