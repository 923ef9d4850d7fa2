//! Errors outside the OAuth endpoints: RFC 9457 problem documents, from one
//! mapping of core [`Error`]s.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::Error;
use serde_json::{Map, Value, json};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, plus extension
/// members, answered as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct Problem(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: Option<String>,
    extra: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem with a status, a stable kind (the last part of its `type`
    /// URI, e.g. `not-found`) and a title.
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Problem(Box::new(Inner {
            status,
            kind,
            title,
            detail: None,
            extra: Map::new(),
            headers: HeaderMap::new(),
        }))
    }

    /// Sets the human readable detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> String {
        format!("urn:sentryagent:problem:{}", self.0.kind)
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").detail(detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthenticated(detail: &str) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
        )
        .detail(detail)
        .header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sentryagent\""),
        )
    }

    /// 404 for a path that names nothing here.
    pub fn no_route() -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no such endpoint; see /openapi.json")
    }

    /// 415: a body of the wrong media type.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .detail(format!("the body must be {expected}"))
    }

    /// 413: a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
        )
        .detail(format!("the body is larger than {limit} bytes"))
        .with("limit_bytes", limit)
    }
}

/// Seconds for `Retry-After`: rounded up, at least 1.
pub(crate) fn retry_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// `RateLimit-*` and `Retry-After` headers of a refusal.
pub(crate) fn rate_limited_headers(h: &mut HeaderMap, retry_after: Duration, limit: u64) {
    let secs = retry_secs(retry_after);
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(0u64));
    h.insert("ratelimit-reset", HeaderValue::from(secs));
}

/// The one mapping of core errors to problems. `upgrade_url` is where a tier
/// limit refusal points (the upgrade route of this deployment).
pub(crate) fn from_error(e: &Error, upgrade_url: &str) -> Problem {
    match e {
        Error::NotFound { .. } => {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(e.to_string())
        }
        Error::AlreadyExists { .. } => {
            Problem::new(StatusCode::CONFLICT, "already-exists", "Already exists")
                .detail(e.to_string())
        }
        Error::Conflict { message } => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(message.clone())
        }
        Error::Unauthenticated => Problem::unauthenticated("authentication failed"),
        Error::InvalidToken { .. } => Problem::unauthenticated("invalid token"),
        Error::Forbidden { message } => {
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(message.clone())
        }
        Error::TenantSuspended => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
            .detail("the tenant is suspended"),
        Error::AgentNotActive { .. } => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(e.to_string())
        }
        Error::RateLimited { retry_after, limit } => {
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .detail(format!(
                "too many requests (a limit of {limit} was reached); retry after {} s",
                retry_secs(*retry_after)
            ))
            .with("retry_after_seconds", retry_secs(*retry_after));
            rate_limited_headers(&mut p.0.headers, *retry_after, *limit);
            p
        }
        Error::QuotaExceeded {
            limit_kind,
            tier,
            used,
            limit,
        } => Problem::new(
            StatusCode::PAYMENT_REQUIRED,
            "quota-exceeded",
            "Tier limit reached",
        )
        .detail(format!(
            "{} limit of the {tier} tier reached: {used} used of {limit}. \
             Upgrade to raise it: POST {upgrade_url} with {{\"tier\":\"pro\"}}",
            limit_kind.as_str()
        ))
        .with("limit_kind", limit_kind.as_str())
        .with("tier", tier.clone())
        .with("used", *used)
        .with("limit", *limit)
        .with(
            "upgrade",
            json!({"method": "POST", "href": upgrade_url, "body": {"tier": "pro"}}),
        ),
        Error::Invalid { field, message } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid input")
                .detail(e.to_string())
                .with("field", *field)
                .with("reason", message.clone())
        }
        Error::InvalidScope { .. } | Error::InvalidTarget { .. } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid input")
                .detail(e.to_string())
        }
        Error::UnsupportedGrantType => Problem::bad_request(e.to_string()),
        Error::NotConfigured { message } => Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "not-configured",
            "Not configured",
        )
        .detail(message.clone()),
        Error::Unavailable { .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail("a backend is unavailable; retry later")
        .header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        _ => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        ),
    }
}

tokio::task_local! {
    /// The upgrade URL of the deployment serving the current request.
    pub(crate) static UPGRADE_URL: std::sync::Arc<str>;
}

/// A core error, answered as a problem document.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self.0, Error::Internal { .. }) {
            tracing::error!(error = %self.0, "internal error");
        }
        UPGRADE_URL
            .try_with(|url| from_error(&self.0, url))
            .unwrap_or_else(|_| from_error(&self.0, "/api/tiers/upgrade"))
            .into_response()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let type_uri = self.type_uri();
        let p = *self.0;
        let mut body = Map::new();
        body.insert("type".into(), Value::String(type_uri));
        body.insert("title".into(), Value::String(p.title.into()));
        body.insert("status".into(), Value::from(p.status.as_u16()));
        if let Some(d) = p.detail {
            body.insert("detail".into(), Value::String(d));
        }
        for (k, v) in p.extra {
            body.entry(k).or_insert(v);
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let mut res = (p.status, bytes).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res.headers_mut().extend(p.headers);
        res
    }
}
