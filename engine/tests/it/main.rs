//! The engine's integration tests, one module per behaviour, in one binary: FAISS and
//! candle are linked once for all of them, not once per file.

mod common;

mod archive;
mod cluster;
mod documents;
mod embed;
mod filters;
mod format;
mod log;
mod log_durability;
mod log_faults;
mod memory;
mod partitions;
mod projection;
mod promotions;
mod quantized;
mod replay;
mod snapshot;
mod storage;
mod text;
mod trials;
mod upgrade;
mod vectors;
