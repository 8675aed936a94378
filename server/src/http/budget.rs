//! A bound on the request body bytes held at once.
//!
//! The body limit bounds one request; without this, N concurrent requests hold N
//! bodies. Each request reserves its declared length (the body limit when it declares
//! none) before any of its body is read and keeps the reservation until its handler
//! returns. A request that cannot reserve at once is refused with 503 `overloaded`
//! rather than queued: a queue would hold the connection, and its socket buffers,
//! without bound.

use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::limits::{BODY_BYTES_MAX, BUDGET_PERMIT_BYTES};

/// The budget of request body bytes in flight.
#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total_permits: usize,
}

/// A reservation of body bytes, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// A budget of `bytes`, rounded down to whole permits.
    pub fn new(bytes: u64) -> Self {
        let total_permits =
            usize::try_from(bytes / BUDGET_PERMIT_BYTES).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Self { permits: Arc::new(Semaphore::new(total_permits)), total_permits }
    }

    /// Reserve room for a body of `bytes`, or `None` when the budget cannot give it now.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let permits = bytes.div_ceil(BUDGET_PERMIT_BYTES);
        if permits == 0 {
            return Some(Reservation { _permit: None });
        }
        let permits = u32::try_from(permits).ok()?;
        let permit = Arc::clone(&self.permits).try_acquire_many_owned(permits).ok()?;
        Some(Reservation { _permit: Some(permit) })
    }

    /// Bytes reserved by the requests in flight.
    pub fn in_use_bytes(&self) -> u64 {
        let used = self.total_permits.saturating_sub(self.permits.available_permits());
        (used as u64).saturating_mul(BUDGET_PERMIT_BYTES)
    }
}

/// The bytes a request's body may hold: its declared length, or the body limit when it
/// declares none (chunked). A declared length over the limit reserves nothing: the
/// JSON extractor refuses it with 413 before reading any of it.
fn body_bytes(req: &Request) -> u64 {
    let max = BODY_BYTES_MAX as u64;
    match req.body().size_hint().upper() {
        Some(declared) if declared > max => 0,
        Some(declared) => declared,
        None => max,
    }
}

/// Middleware: reserve the body's bytes before the handler reads it, release them when
/// the handler has answered; 503 `overloaded` when the budget cannot give them now.
pub async fn admit(State(budget): State<Arc<BodyBudget>>, req: Request, next: Next) -> Response {
    let bytes = body_bytes(&req);
    let Some(reservation) = budget.try_reserve(bytes) else {
        return ApiError::overloaded(bytes).into_response();
    };
    let response = next.run(req).await;
    drop(reservation);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_refused_once_the_budget_is_spent_and_return_when_dropped() {
        let budget = BodyBudget::new(10 * BUDGET_PERMIT_BYTES);
        let first = budget.try_reserve(6 * BUDGET_PERMIT_BYTES).unwrap();
        assert_eq!(budget.in_use_bytes(), 6 * BUDGET_PERMIT_BYTES);
        assert!(budget.try_reserve(5 * BUDGET_PERMIT_BYTES).is_none());
        let second = budget.try_reserve(4 * BUDGET_PERMIT_BYTES).unwrap();
        assert!(budget.try_reserve(1).is_none(), "one byte still takes a whole permit");
        assert!(budget.try_reserve(0).is_some(), "an empty body needs no room");
        drop((first, second));
        assert_eq!(budget.in_use_bytes(), 0);
        assert!(budget.try_reserve(10 * BUDGET_PERMIT_BYTES).is_some());
    }

    /// A body that declares no length, as a chunked request's does.
    struct Chunked;

    impl HttpBody for Chunked {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Ready(None)
        }
    }

    #[test]
    fn a_body_reserves_its_declared_length_or_the_limit_when_it_declares_none() {
        let request = |body| Request::builder().method("POST").uri("/").body(body).unwrap();
        assert_eq!(body_bytes(&request(axum::body::Body::new(Chunked))), BODY_BYTES_MAX as u64);
        assert_eq!(body_bytes(&request(axum::body::Body::from("{}"))), 2);
        assert_eq!(body_bytes(&request(axum::body::Body::empty())), 0);
    }
}
