//! Conditional GET for public listings: `ETag` and `Last-Modified` on the
//! answer, `304 Not Modified` when the request's `If-None-Match` or
//! `If-Modified-Since` says the client already has it (the decision is
//! `sentryagent_core::conditional`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::Timestamp;
use sentryagent_core::conditional::Validators;
use serde::Serialize;

use crate::problem::ApiError;

/// `value` as JSON of `content_type` with validators and `cache_control`,
/// or a bodiless 304 when the request's validators match.
pub(crate) fn respond<T: Serialize>(
    request: &HeaderMap,
    value: &T,
    last_modified: Option<Timestamp>,
    content_type: &'static str,
    cache_control: &'static str,
) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| sentryagent_core::Error::internal("serialize response", e))?;
    let v = Validators::of(&body, last_modified);
    let text = |name: header::HeaderName| request.get(name).and_then(|h| h.to_str().ok());
    let not_modified = v.not_modified(text(header::IF_NONE_MATCH), text(header::IF_MODIFIED_SINCE));
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = body.into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        res
    };
    let h = res.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&v.etag) {
        h.insert(header::ETAG, etag);
    }
    if let Some(lm) = v
        .last_modified_header()
        .and_then(|d| HeaderValue::from_str(&d).ok())
    {
        h.insert(header::LAST_MODIFIED, lm);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    Ok(res)
}
