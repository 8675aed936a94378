//! The server's integration tests, one module per behaviour, in one binary: FAISS and
//! candle are linked once for all of them, not once per file.

mod common;
/// The engine tests' helpers (events of every kind, the S3 stand-in).
#[path = "../../../engine/tests/it/common/mod.rs"]
mod engine_common;

mod admin;
mod api;
mod auth;
mod bad_input;
mod cluster;
mod crash_loop;
mod disk_full;
mod docs;
mod documents;
mod http;
mod ingest;
mod logtool;
mod memory;
mod metrics;
mod partitions;
mod replay;
mod startup;
mod storage;
mod tools;
mod transfer;
mod trials;
