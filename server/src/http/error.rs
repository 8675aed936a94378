//! Errors as the API shows them, with the status that fits.
//!
//! Caller mistakes are 4xx and commit nothing. 503 means the server cannot serve the
//! request now (closing, poisoned log, faulted projection, spent body budget). 500 is
//! kept for real faults: its body carries the top-level message and an `error_id`, and
//! the whole cause chain is logged under that id. Two outcomes are not plain failures:
//! a write whose event is durable but not applied in time (202), and a failed commit
//! whose outcome nobody knows (500 `outcome_unknown`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use annal_engine::{Error, ErrorKind, Unavailable};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::limits::{CLOSING_RETRY_AFTER_S, OVERLOADED_RETRY_AFTER_S};

/// An API error response (or, for a write not applied in time, a 202).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Body,
    retry_after_s: Option<u32>,
}

/// The JSON shapes an [`ApiError`] answers with.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Body {
    /// `{error, detail, error_id?}`.
    Failed {
        error: &'static str,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_id: Option<String>,
    },
    /// `{seq, durable: true, applied: false, detail}`.
    NotApplied { seq: u64, durable: bool, applied: bool, detail: String },
}

impl ApiError {
    fn failed(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: Body::Failed { error, detail: detail.into(), error_id: None },
            retry_after_s: None,
        }
    }

    /// 400: the request is malformed or invalid; `detail` names the field.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::failed(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 502: a storage bucket's backend failed; the failure is in the error journal.
    pub fn bucket_error(detail: impl Into<String>) -> Self {
        Self::failed(StatusCode::BAD_GATEWAY, "bucket_error", detail)
    }

    /// 410: the moment asked for is no longer in the log.
    pub fn gone(detail: impl Into<String>) -> Self {
        Self::failed(StatusCode::GONE, "gone", detail)
    }

    /// 404: no such index or route.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::failed(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 405: the route exists but not with this method.
    pub fn method_not_allowed() -> Self {
        Self::failed(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    /// 409: the index exists already.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::failed(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 413: the body is over [`super::limits::BODY_BYTES_MAX`].
    pub fn payload_too_large() -> Self {
        Self::failed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body exceeds the limit of {} bytes", super::limits::BODY_BYTES_MAX),
        )
    }

    /// 415: the body is not declared as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::failed(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected content-type: application/json",
        )
    }

    /// 503 `overloaded` saying why, with `Retry-After`.
    pub fn overloaded_with(detail: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(OVERLOADED_RETRY_AFTER_S),
            ..Self::failed(SERVICE_UNAVAILABLE, "overloaded", detail)
        }
    }

    /// 503 `overloaded`: the bodies in flight use the whole budget; retry in a second.
    pub fn overloaded(body_bytes: u64) -> Self {
        let detail = format!(
            "request bodies in flight use the server's budget; a body of {body_bytes} bytes does not fit now"
        );
        Self {
            retry_after_s: Some(OVERLOADED_RETRY_AFTER_S),
            ..Self::failed(SERVICE_UNAVAILABLE, "overloaded", detail)
        }
    }

    /// 503 `unavailable`: the engine cannot serve now. `retry_after_s` is set only
    /// where retrying can help without an operator.
    pub fn unavailable(detail: impl Into<String>, retry_after_s: Option<u32>) -> Self {
        Self { retry_after_s, ..Self::failed(SERVICE_UNAVAILABLE, "unavailable", detail) }
    }

    /// 503 `embedder_unavailable`: the index's embedder is not configured here, could
    /// not load its model, or its service failed; retry later.
    pub fn embedder_unavailable(detail: impl Into<String>) -> Self {
        Self { retry_after_s: Some(1), ..Self::failed(SERVICE_UNAVAILABLE, "embedder_unavailable", detail) }
    }

    /// 503 `starting`: the engine is replaying its log; retry shortly.
    pub fn starting(detail: impl Into<String>) -> Self {
        Self { retry_after_s: Some(1), ..Self::failed(SERVICE_UNAVAILABLE, "starting", detail) }
    }

    /// 503 `not_applied_yet`: a read's `min_seq` is durable but not applied yet (or
    /// too many reads wait for theirs); retry shortly. Not a fault.
    pub fn not_applied_yet(detail: impl Into<String>) -> Self {
        Self { retry_after_s: Some(1), ..Self::failed(SERVICE_UNAVAILABLE, "not_applied_yet", detail) }
    }

    /// 500 for a fault: the client gets the top-level message and an id, the log gets
    /// the whole cause chain under that id.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::fault("internal", error.to_string(), error)
    }

    /// 500 `outcome_unknown`: a commit failed, and redb may have made it durable before
    /// the failure was seen, so the caller must read before retrying.
    pub fn outcome_unknown(error: &(dyn std::error::Error + 'static)) -> Self {
        let detail = format!(
            "the log commit failed ({}); the write may or may not be durable: read it back before retrying",
            root_cause(error)
        );
        Self::fault("outcome_unknown", detail, error)
    }

    /// 503 for a log a failed commit poisoned: says why (the disk's own words, e.g. `No
    /// space left on device`) and what recovers it.
    pub fn poisoned(cause: &(dyn std::error::Error + 'static)) -> Self {
        Self::unavailable(
            format!(
                "log is poisoned by a failed commit ({}): writes are refused; fix the cause (free space, \
                 replace the disk), then restart, which recovers every acknowledged write",
                root_cause(cause)
            ),
            None,
        )
    }

    fn fault(code: &'static str, detail: String, error: &(dyn std::error::Error + 'static)) -> Self {
        let id = next_error_id();
        tracing::error!(error_id = %id, error = %crate::report(error), "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: Body::Failed { error: code, detail, error_id: Some(id) },
            retry_after_s: None,
        }
    }

    /// 202: the write's event `seq` is in the log but was not applied in time; it will
    /// be applied, in order, unless the projection faults first.
    pub fn not_applied(seq: u64, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            body: Body::NotApplied { seq, durable: true, applied: false, detail: detail.into() },
            retry_after_s: None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable detail of the answer.
    pub fn detail(&self) -> &str {
        match &self.body {
            Body::Failed { detail, .. } | Body::NotApplied { detail, .. } => detail,
        }
    }
}

const SERVICE_UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// A fresh id for one fault: milliseconds since the epoch, then a process-wide counter,
/// so ids stay unique across restarts and within a millisecond.
fn next_error_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{ms:x}-{n}")
}

impl From<Error> for ApiError {
    /// By the error's kind, never its variant: every kind has its arm and there is no
    /// fallback, so a new kind must be given its status here before this compiles.
    fn from(error: Error) -> Self {
        match error.kind() {
            ErrorKind::Invalid => Self::bad_request(error.to_string()),
            ErrorKind::NotFound => Self::not_found(error.to_string()),
            ErrorKind::Conflict => Self::conflict(error.to_string()),
            ErrorKind::Gone => Self::gone(error.to_string()),
            // The write is durable whatever stopped its apply (a timeout, a close, a
            // projector fault): it is in the log and is applied at the latest on reopen.
            ErrorKind::NotApplied { seq } => Self::not_applied(
                seq,
                format!("{}; the event is in the log and will be applied", crate::report(&error)),
            ),
            ErrorKind::OutcomeUnknown => Self::outcome_unknown(&error),
            // The backend's own words (its error chain holds no credentials: they are
            // only ever handed to the S3 signer).
            ErrorKind::Backend => Self::bucket_error(crate::report(&error)),
            ErrorKind::Internal => Self::internal(&error),
            ErrorKind::Unavailable(why) => match why {
                Unavailable::Starting => Self::starting(error.to_string()),
                Unavailable::Lagging => Self::not_applied_yet(error.to_string()),
                Unavailable::Embedder => Self::embedder_unavailable(crate::report(&error)),
                Unavailable::Closing => Self::unavailable(error.to_string(), Some(CLOSING_RETRY_AFTER_S)),
                // Only a restart recovers these: no Retry-After, and a warning with the
                // cause so the operator sees why requests are refused.
                Unavailable::Poisoned => {
                    tracing::warn!(error = %crate::report(&error), "request refused: the log is poisoned");
                    Self::poisoned(&error)
                }
                Unavailable::Faulted => {
                    tracing::warn!(error = %crate::report(&error), "request refused: engine unavailable");
                    Self::unavailable(error.to_string(), None)
                }
            },
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(&error)
    }
}

/// The innermost error of a chain: the operating system's words for an I/O failure.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use annal_engine::{HnswError, LogError, ProjectionError};

    use super::*;

    fn io_fault() -> Arc<redb::Error> {
        Arc::new(redb::Error::Io(std::io::Error::other("disk on fire")))
    }

    /// The status, the `Retry-After` header and the JSON body of `error`.
    async fn answer(error: impl Into<ApiError>) -> (u16, Option<String>, Value) {
        let response = error.into().into_response();
        let status = response.status().as_u16();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_closing_engine_is_503_unavailable_with_retry_after() {
        for error in [Error::Log(LogError::Closed), Error::Projection(ProjectionError::Closed)] {
            let (status, retry, body) = answer(error).await;
            assert_eq!((status, retry.as_deref()), (503, Some("5")));
            assert_eq!(body["error"], "unavailable");
            assert!(body["detail"].as_str().unwrap().contains("clos"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_poisoned_log_or_faulted_projection_is_503_without_retry_after() {
        let stopped = Arc::new(ProjectionError::Read { seq: 7, source: LogError::Closed });
        let (status, retry, body) = answer(Error::Log(LogError::Poisoned(io_fault()))).await;
        assert_eq!((status, retry), (503, None));
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("poisoned by a failed commit (I/O error: disk on fire)"),
            "the cause: {body}"
        );
        assert!(detail.contains("then restart"), "what recovers it: {body}");
        for error in [
            Error::Log(LogError::WriterGone),
            Error::Projection(ProjectionError::Stopped(stopped)),
            Error::Projection(ProjectionError::Panicked),
            Error::Hnsw(HnswError::Faulted { index: "docs".into() }),
        ] {
            let message = error.to_string();
            let (status, retry, body) = answer(error).await;
            assert_eq!((status, retry), (503, None), "{message}");
            assert_eq!(body, serde_json::json!({"error": "unavailable", "detail": message}));
        }
    }

    #[tokio::test]
    async fn an_apply_timeout_is_202_naming_the_durable_unapplied_seq() {
        let (status, retry, body) =
            answer(Error::NotApplied { seq: 42, source: ProjectionError::Timeout { seq: 42, applied: 40 } })
                .await;
        assert_eq!((status, retry), (202, None));
        assert_eq!(body["seq"], 42);
        assert_eq!(body["durable"], true);
        assert_eq!(body["applied"], false);
        assert!(body["detail"].as_str().unwrap().contains("event 42 not applied in time"), "{body}");
        assert!(body.get("error").is_none(), "a 202 is not an error: {body}");
    }

    #[tokio::test]
    async fn a_failed_commit_is_500_outcome_unknown_with_an_error_id() {
        let (status, _, body) = answer(Error::Log(LogError::CommitFailed(io_fault()))).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"], "outcome_unknown");
        assert!(body["detail"].as_str().unwrap().contains("may or may not be durable"), "{body}");
        assert!(!body["error_id"].as_str().unwrap().is_empty(), "{body}");
        // The disk's own words (a full disk says so), not the whole chain.
        assert!(
            body["detail"].as_str().unwrap().contains("(I/O error: disk on fire)"),
            "the root cause: {body}"
        );
    }

    #[tokio::test]
    async fn a_500_shows_only_the_top_message_and_a_fresh_error_id_each_time() {
        let fault = || Error::Io(std::io::Error::other("disk on fire"));
        let (status, retry, first) = answer(fault()).await;
        let (_, _, second) = answer(fault()).await;
        assert_eq!((status, retry), (500, None));
        assert_eq!(first["error"], "internal");
        assert_eq!(first["detail"], "engine I/O failed");
        assert_ne!(first["error_id"], second["error_id"]);
    }

    #[tokio::test]
    async fn caller_mistakes_keep_their_4xx_without_an_error_id() {
        let (status, _, body) = answer(Error::IndexNotFound { name: "x".into() }).await;
        assert_eq!(status, 404);
        assert_eq!(body, serde_json::json!({"error": "not_found", "detail": "index \"x\" does not exist"}));
        assert_eq!(answer(Error::IndexExists { name: "x".into() }).await.0, 409);
    }

    #[tokio::test]
    async fn an_overloaded_refusal_is_503_with_retry_after_one_second() {
        let (status, retry, body) = answer(ApiError::overloaded(2048)).await;
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert_eq!(body["error"], "overloaded");
        assert!(body["detail"].as_str().unwrap().contains("2048 bytes"), "{body}");
    }
}
