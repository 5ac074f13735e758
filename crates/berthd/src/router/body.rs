//! JSON request bodies, read one way for every endpoint: the Content-Type is checked as dockerd
//! checks it (a web page can only send "simple" content types without a CORS preflight, so this
//! is what keeps a browser from creating containers), the body is read up to a bound with
//! Docker's JSON error past it, and parsed leniently as Go's decoder would
//! (`berth_api::json`: `null` anywhere, member names in any case).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use berth_api::{ApiError, ErrorKind};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::{Error, Result};

/// The largest JSON body accepted. dockerd has no bound; Berth's keeps a runaway client from
/// filling memory, and is far above any real configuration (the docker CLI sends a few KB).
pub const MAX_JSON_BODY: usize = 32 << 20;

/// A JSON body: `None` when the request had none (empty or only whitespace), for the handler
/// to default or refuse as its endpoint does.
pub struct Json<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_limited(body, MAX_JSON_BODY).await?;
        parse(&parts.headers, &bytes).map(Json)
    }
}

/// Reads a whole body, answering Docker's JSON 413 past `limit`.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("request body is too large: over {} MiB", limit >> 20),
        ))),
        Err(e) => Err(Error(ApiError::invalid(format!(
            "cannot read request body: {e}"
        )))),
    }
}

/// Checks the Content-Type and parses a body already read (see the module doc).
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<Option<T>> {
    check_content_type(headers, bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    berth_api::json::from_slice(bytes)
        .map(Some)
        .map_err(|e| Error(ApiError::invalid(format!("invalid JSON: {e}"))))
}

/// dockerd's `httputils.CheckForJSON`: no Content-Type is fine for an empty body; anything else
/// must be `application/json` (parameters such as `charset` allowed).
pub fn check_content_type(headers: &HeaderMap, bytes: &[u8]) -> Result<()> {
    let value = headers.get(header::CONTENT_TYPE);
    if value.is_none() && bytes.is_empty() {
        return Ok(());
    }
    let text = value
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.is_empty() {
        return Err(Error(ApiError::invalid(format!(
            "malformed Content-Type header ({text}): mime: no media type"
        ))));
    }
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(Error(ApiError::invalid(format!(
            "unsupported Content-Type header ({text}): must be 'application/json'"
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    #[test]
    fn content_type_rules_follow_dockerd() {
        let ok = |ct, body: &[u8]| check_content_type(&headers(ct), body).is_ok();
        assert!(ok(None, b""));
        assert!(ok(Some("application/json"), b"{}"));
        assert!(ok(Some("Application/JSON; charset=utf-8"), b"{}"));
        assert!(!ok(Some("text/plain"), b""));
        assert!(!ok(None, b"{}"));
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!ok(Some(ct), b"{}"), "{ct}");
        }
        let e = check_content_type(&headers(Some("text/plain")), b"{}").unwrap_err();
        assert_eq!(
            e.0.message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
    }
}
