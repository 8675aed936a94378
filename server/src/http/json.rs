//! A JSON request body, handed to the handler as its bytes so that the handler can
//! deserialize a type borrowing from them (item metadata stays a slice of the body,
//! never a `serde_json::Value` tree). Rejections name the offending field
//! (`items[3].vector: invalid type ...`) and use the statuses of the API: 415 without a
//! JSON content type, 413 over the body limit, 400 otherwise.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::BodyExt;
use serde::Deserialize;

use super::error::ApiError;
use super::limits::BODY_BYTES_MAX;

/// The bytes of a JSON request body; [`ApiJson::parse`] reads them.
pub struct ApiJson {
    body: Vec<u8>,
}

impl ApiJson {
    /// Deserialize the body into a `T` that may borrow from it; an error names the
    /// field by its path.
    ///
    /// # Errors
    /// 400 naming the field for a body that is not a valid `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        // serde would read a struct from an array too, and then name its elements.
        match self.body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(_) => return Err(ApiError::bad_request("body: must be a JSON object")),
            None => return Err(ApiError::bad_request("body: is empty; a JSON object is needed")),
        }
        let mut de = serde_json::Deserializer::from_slice(&self.body);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path == "?" {
                ApiError::bad_request(format!("body: not valid JSON: {inner}"))
            } else {
                ApiError::bad_request(format!("{path}: {inner}"))
            }
        })?;
        de.end().map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        Ok(value)
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        // A declared length over the limit is refused before any of the body is read;
        // a chunked body is cut off by the limit while it is read.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > BODY_BYTES_MAX as u64) {
            return Err(ApiError::payload_too_large());
        }
        read_body(req, declared).await.map(|body| ApiJson { body })
    }
}

/// A request body of any content type, read whole within the body limit (object
/// uploads).
pub struct RawBody(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > BODY_BYTES_MAX as u64) {
            return Err(ApiError::payload_too_large());
        }
        read_body(req, declared).await.map(RawBody)
    }
}

/// Read the body into one buffer sized by its declared length, so that a body is held
/// once (collecting its chunks and then joining them would hold it twice).
async fn read_body(req: Request, declared: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let capacity =
        declared.map_or(0, |len| usize::try_from(len).unwrap_or(BODY_BYTES_MAX).min(BODY_BYTES_MAX));
    let mut buffer = Vec::with_capacity(capacity);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("body: could not be read: {}", crate::report(&e))))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len().saturating_add(data.len()) > BODY_BYTES_MAX {
                return Err(ApiError::payload_too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer)
}
