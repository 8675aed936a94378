//! What every handler shares: running an engine call off the async workers, and
//! stored metadata as raw JSON in answers.

use serde_json::value::RawValue;

use super::error::ApiError;

/// Run an engine call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, annal_engine::Error> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Stored metadata as raw JSON. The engine validated it on the way in; a log written
/// under other rules could still hold text that is not JSON, which is left out (and
/// logged) rather than sent as a broken document.
pub(crate) fn raw_metadata<'a>(id: &str, text: &'a str) -> Option<&'a RawValue> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => Some(raw),
        Err(error) => {
            tracing::warn!(id, %error, "stored metadata is not JSON; left out of the hit");
            None
        }
    }
}
