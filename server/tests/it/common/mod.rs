//! Helpers shared by the server's integration tests.

pub mod app;
pub mod nats;
pub mod server;
