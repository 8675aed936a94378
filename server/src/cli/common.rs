//! What the commands share: opening a data directory read-only, the message for a log a
//! server holds, the bucket configuration, and the bearer token of requests to a
//! running server.

use std::path::Path;

use annal_engine::{BucketsConfig, LogError, OfflineLog, ReadOnlyLog, Storage, LOG_FILE};

/// The commands' result: an exit code, or an error `main` reports with its causes.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Events (frames) read from, or appended to, a log per batch.
pub const BATCH: usize = 1024;

/// Open a data directory's log read-only, or say clearly why not.
///
/// # Errors
/// There is no log, or it cannot be opened (a running server holds it: said so).
pub fn open(data: &Path) -> Result<ReadOnlyLog> {
    let path = data.join(LOG_FILE);
    if !path.exists() {
        return Err(format!("no log at {}", path.display()).into());
    }
    ReadOnlyLog::open(&path).map_err(|error| {
        held_message(&path, error, "stop it first, or follow it over HTTP with `annal log tail --server URL`")
    })
}

/// The error for a log that could not be opened: when a running server holds it, say
/// so and what to do (`advice`).
pub fn held_message(path: &Path, error: LogError, advice: &str) -> Box<dyn std::error::Error> {
    if matches!(error, LogError::Storage(redb::Error::DatabaseAlreadyOpen)) {
        format!(
            "{} is held by a running server (annal serve): {advice} ({})",
            path.display(),
            crate::report(&error)
        )
        .into()
    } else {
        error.into()
    }
}

/// The bucket configuration: the file given, or the default (a local `primary` in the
/// data directory).
///
/// # Errors
/// The file cannot be read or parsed.
pub fn buckets(config: Option<&Path>) -> Result<BucketsConfig> {
    Ok(match config {
        Some(path) => BucketsConfig::load(path, |name| std::env::var(name).ok())?,
        None => BucketsConfig::default(),
    })
}

/// A data directory's log opened read-only with its buckets (archived events read back
/// from their segments), or a clear reason why not.
///
/// # Errors
/// As [`open`] and [`buckets`], or the buckets cannot be opened.
pub fn offline(data: &Path, buckets_config: Option<&Path>) -> Result<OfflineLog> {
    let log = open(data)?;
    let storage = Storage::open_detached(data, &buckets(buckets_config)?)?;
    Ok(OfflineLog::new(log, storage)?)
}

/// `request` with `Authorization: Bearer TOKEN` when a token is given (`--token`,
/// `ANNAL_TOKEN`).
pub fn bearer<B>(request: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
}
