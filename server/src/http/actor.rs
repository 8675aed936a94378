//! Who makes a change: the `x-annal-actor` header, recorded in the log as the event's
//! actor. A header that is present but unusable is refused rather than replaced by the
//! default, so the audit trail never credits a change to the wrong actor.

use annal_engine::limits::TEXT_BYTES_MAX;
use axum::http::HeaderMap;

use super::error::ApiError;

/// Header naming who makes a change.
pub const ACTOR_HEADER: &str = "x-annal-actor";
/// Actor recorded when the header is absent.
pub const DEFAULT_ACTOR: &str = "http";

/// The actor of a request: the header's value, or [`DEFAULT_ACTOR`] without one.
///
/// # Errors
/// 400 naming the header when it is not UTF-8, is empty, is longer than
/// [`TEXT_BYTES_MAX`] or is given twice.
pub fn actor(headers: &HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(ACTOR_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(DEFAULT_ACTOR.to_owned());
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!("{ACTOR_HEADER}: must be given once")));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > TEXT_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "{ACTOR_HEADER}: must be 1 to {TEXT_BYTES_MAX} bytes, got {}",
            bytes.len()
        )));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => Err(ApiError::bad_request(format!("{ACTOR_HEADER}: is not UTF-8: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACTOR_HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    #[test]
    fn an_absent_header_is_the_default_actor_and_a_utf8_one_is_kept_as_sent() {
        assert_eq!(actor(&HeaderMap::new()).unwrap(), "http");
        assert_eq!(actor(&with(&["Zoë".as_bytes()])).unwrap(), "Zoë");
        assert_eq!(actor(&with(&[&[b'a'; TEXT_BYTES_MAX]])).unwrap().len(), TEXT_BYTES_MAX);
    }

    #[test]
    fn an_empty_overlong_non_utf8_or_repeated_header_is_a_400_naming_it() {
        let overlong = vec![b'a'; TEXT_BYTES_MAX + 1];
        for (headers, reason) in [
            (with(&[b""]), "must be 1 to"),
            (with(&[&overlong]), "got 16385"),
            (with(&[&[0xff, 0xfe]]), "is not UTF-8"),
            (with(&[b"a", b"b"]), "must be given once"),
        ] {
            let error = actor(&headers).unwrap_err();
            assert_eq!(error.status(), 400);
            let detail = error.detail();
            assert!(detail.contains("x-annal-actor") && detail.contains(reason), "{detail}");
        }
    }
}
