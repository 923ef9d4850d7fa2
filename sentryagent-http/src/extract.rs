//! Extractors whose every rejection is a problem document: JSON bodies,
//! query strings, path parameters, the admin caller and request facts.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use sentryagent_core::{Caller, RequestMeta};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// The request id given to a request (see the request-id layer).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// The body limit in force, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// Whether the request carries a body of media type `essence`
/// (`application/json` also accepts any `+json` type).
pub(crate) fn has_media_type(headers: &HeaderMap, essence: &str) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let main = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    main == essence || (essence == "application/json" && main.ends_with("+json"))
}

/// Maps a body read failure: over the limit is 413, anything else 400.
pub(crate) fn body_problem(r: &BytesRejection, limit: usize) -> Problem {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::too_large(limit)
    } else {
        Problem::bad_request("the body could not be read")
    }
}

/// Reads the body, mapping failures to problems.
pub(crate) async fn read_body(req: Request) -> Result<(Parts, Bytes), Problem> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(crate::DEFAULT_BODY_LIMIT, |l| l.0);
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|r| body_problem(&r, limit))?;
    Ok((parts, bytes))
}

/// A JSON body: `application/json` (415 otherwise), well formed (400),
/// matching the expected shape with no unknown fields (422), nested at most
/// [`MAX_JSON_DEPTH`] deep (400), within the body limit (413).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !has_media_type(req.headers(), "application/json") {
            return Err(Problem::unsupported_media_type("application/json"));
        }
        let (_, bytes) = read_body(req).await?;
        let value = parse_json(&bytes)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid input")
                    .detail("the body must be a JSON object"),
            );
        }
        Ok(ApiJson(value))
    }
}

/// An optional JSON body: an empty body is `None`; anything else is read as
/// [`ApiJson`] reads it.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub(crate) Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, bytes) = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::from_request(req, state)
            .await
            .map(|ApiJson(v)| OptionalJson(Some(v)))
    }
}

/// How deep objects and arrays may nest in a JSON body (400 beyond): far
/// more than any request of the API needs (custom claims included), far
/// less than a parser's stack allows.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether a JSON text nests objects and arrays more than `max` deep
/// (brackets inside strings do not count). A single pass over the bytes,
/// before any parsing.
fn nested_deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses a JSON document, classifying the failure; nesting beyond
/// [`MAX_JSON_DEPTH`] is refused before parsing.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if nested_deeper_than(bytes, MAX_JSON_DEPTH) {
        return Err(Problem::bad_request(format!(
            "the JSON body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid input")
                    .detail(format!("the JSON body does not match: {e}"))
            }
            Category::Io | Category::Syntax | Category::Eof => {
                Problem::bad_request(format!("malformed JSON: {e}"))
            }
        }
    })
}

/// A query string (400 when it does not parse, repeats a single-valued
/// parameter or names an unknown one).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| Problem::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

/// A path parameter (404 when it cannot be an id here).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
                    .detail("no such resource")
            })
    }
}

/// Request facts for the audit trail: request id, peer address (when the
/// server was started with connect info) and user agent.
pub(crate) fn request_meta(parts: &Parts) -> RequestMeta {
    RequestMeta {
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    }
}

/// Request facts (see [`request_meta`]).
#[derive(Debug)]
pub(crate) struct Meta(pub(crate) RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(request_meta(parts)))
    }
}

/// What the admin-auth layer found: an authenticated caller, or none.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub(crate) Caller);

/// The authenticated admin caller; 401 without one.
#[derive(Debug)]
pub(crate) struct Admin(pub(crate) Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(a) = parts.extensions.get::<Authenticated>() {
            return Ok(Admin(a.0.clone()));
        }
        if let Some(denied) = parts.extensions.get::<crate::session::SessionDenied>() {
            return Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                    .detail(denied.0.clone()),
            );
        }
        Err(Problem::unauthenticated(
            "send an admin API key (or a management token) as `Authorization: Bearer <key>`, or sign in (POST /v1/sessions)",
        ))
    }
}

/// The admin caller when one authenticated; `None` for anonymous requests.
#[derive(Debug)]
pub(crate) struct MaybeAdmin(pub(crate) Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAdmin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeAdmin(
            parts.extensions.get::<Authenticated>().map(|a| a.0.clone()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_brackets_outside_strings_only() {
        let at = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nested_deeper_than(
            at(MAX_JSON_DEPTH).as_bytes(),
            MAX_JSON_DEPTH
        ));
        assert!(nested_deeper_than(
            at(MAX_JSON_DEPTH + 1).as_bytes(),
            MAX_JSON_DEPTH
        ));
        let in_string = format!(r#"{{"a":"{}"}}"#, "[{".repeat(100));
        assert!(!nested_deeper_than(in_string.as_bytes(), 2));
        // An escaped quote does not end the string.
        let escaped = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(100));
        assert!(!nested_deeper_than(escaped.as_bytes(), 2));
        assert!(nested_deeper_than(br#"{"a":{"b":{"c":1}}}"#, 2));
        assert!(!nested_deeper_than(br#"{"a":{"b":1},"c":{"d":2}}"#, 2));
    }
}
