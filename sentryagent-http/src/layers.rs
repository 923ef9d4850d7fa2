//! Middleware: request ids, per-request context, timeouts, metrics, and
//! admin authentication with per-tenant rate limiting.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sentryagent_core::Decision;

use crate::AppState;
use crate::extract::{Authenticated, BodyLimit, RequestId, request_meta};
use crate::problem::{ApiError, Problem, UPGRADE_URL};

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// A fresh request id: 32 hex digits, a random value drawn once per process
/// and a keyed hash (SipHash, random key) of a per-process counter, so ids
/// are unique without a system call per request (a UUID v4 costs a
/// `getrandom` call each) and do not reveal how many requests came before.
fn new_request_id() -> String {
    use std::hash::BuildHasher as _;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static PROCESS: OnceLock<(u64, std::hash::RandomState)> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (base, key) = PROCESS.get_or_init(|| {
        let b = uuid::Uuid::new_v4().as_u64_pair().0;
        (b, std::hash::RandomState::new())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{base:016x}{:016x}", key.hash_one(n))
}

/// Outermost layer: takes the caller's `x-request-id` (when it is 1 to 128
/// of `A-Z a-z 0-9 - _ . :`) or makes one, records it for the handlers and
/// echoes it; sets the per-request context (body limit, upgrade URL).
pub(crate) async fn context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(new_request_id);
    let value = HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id));
    req.extensions_mut()
        .insert(BodyLimit(state.config.body_limit));
    if let Some(v) = &value {
        req.headers_mut().insert(REQUEST_ID, v.clone());
    }
    let mut res = UPGRADE_URL
        .scope(state.upgrade_url.clone(), next.run(req))
        .await;
    if let Some(v) = value {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Refuses a request whose response has not started within the timeout
/// (503 problem). Streams (SSE) are not cut once their headers are sent.
pub(crate) async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
        )
        .detail(format!(
            "the request took longer than {} ms",
            limit.as_millis()
        ))
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response(),
    }
}

/// Refuses a body announced (`Content-Length`) larger than the route's
/// limit with 413 before reading any of it, and closes the connection (the
/// client may already be sending it). Bodies without a length are cut at
/// the limit while read.
pub(crate) async fn announced_body_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let limit = if route.ends_with("/billing/webhook") {
        crate::billing::WEBHOOK_BODY_LIMIT
    } else {
        state.config.body_limit
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if announced.is_none_or(|n| n <= limit as u64) {
        return next.run(req).await;
    }
    let mut res = if route.contains("/oauth2/") {
        crate::oauth::OAuthReply::from(sentryagent_core::form::too_large(limit)).into_response()
    } else {
        Problem::too_large(limit).into_response()
    };
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Counts requests by matched route template, method and status, and their
/// latency. Raw paths never become labels.
pub(crate) async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    state.metrics.observe_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method.as_str(),
        res.status().as_u16(),
        start.elapsed(),
    );
    res
}

/// Admin authentication for the management, billing and public routes.
///
/// Without an `Authorization` header a session cookie is the caller (see
/// [`session_auth`](crate::session::session_auth)); without either the
/// request goes on anonymously (handlers that need a caller answer 401).
/// `Authorization: Bearer <admin key or management token>` is checked with
/// [`Idp::authenticate_bearer`]; any other scheme or a bad value is 401. A
/// tenant-bound caller's call is then admitted by
/// [`Idp::admit_api_call`] (rate limit and daily quota of its tier): a
/// refusal is 429 (with `Retry-After` and `RateLimit-*`) or 402, and an
/// admitted call carries `RateLimit-*` headers. Operator keys are not rate
/// limited.
///
/// [`Idp::authenticate_bearer`]: sentryagent_core::Idp::authenticate_bearer
/// [`Idp::admit_api_call`]: sentryagent_core::Idp::admit_api_call
pub(crate) async fn admin_auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return crate::session::session_auth(state, req, next, true).await;
    };
    let Some(key) = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, k)| k.trim().to_owned())
    else {
        return Problem::unauthenticated("use `Authorization: Bearer <admin key>`").into_response();
    };
    let (mut parts, body) = req.into_parts();
    let meta = request_meta(&parts);
    let caller = match state.idp.authenticate_bearer(&key, &meta).await {
        Ok(c) => c,
        Err(e) => return ApiError(e).into_response(),
    };
    if let Some(t) = &caller.tenant {
        note_tenant(t);
    }
    let decision = match &caller.tenant {
        Some(t) => match state.idp.admit_api_call(t).await {
            Ok(admitted) => {
                state.metrics.rate_limit("api", true);
                state.metrics.api_call(admitted.tier.as_str());
                Some(admitted.decision)
            }
            Err(e) => {
                if matches!(e, sentryagent_core::Error::RateLimited { .. }) {
                    state.metrics.rate_limit("api", false);
                }
                return ApiError(e).into_response();
            }
        },
        None => None,
    };
    parts.extensions.insert(Authenticated(caller));
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if let Some(d) = decision {
        add_rate_limit_headers(res.headers_mut(), &d);
    }
    res
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` of an
/// admitted call.
pub(crate) fn add_rate_limit_headers(h: &mut axum::http::HeaderMap, d: &Decision) {
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    let reset = if d.reset_after.is_zero() {
        0
    } else {
        crate::problem::retry_secs(d.reset_after)
    };
    h.insert("ratelimit-reset", HeaderValue::from(reset));
}

/// Records the tenant of the request on its log line.
pub(crate) fn note_tenant(tenant: &impl std::fmt::Display) {
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant));
}

/// Records the OAuth client of the request on its log line (an id, never a
/// secret).
pub(crate) fn note_client(client_id: &str) {
    // Only ids the server could have issued: bounded and printable.
    if client_id.len() <= 128 && client_id.bytes().all(|b| b.is_ascii_graphic()) {
        tracing::Span::current().record("client_id", client_id);
    }
}

/// Records the client id of OAuth client credentials on the request's log
/// line (the id only: never the secret or the assertion).
pub(crate) fn note_credentials(c: &sentryagent_core::ClientCredentials) {
    use sentryagent_core::ClientCredentials as C;
    if let C::Secret { client_id, .. }
    | C::Assertion {
        client_id: Some(client_id),
        ..
    } = c
    {
        note_client(client_id);
    }
}

/// The tracing span of a request: method, route template, request id, and
/// the tenant and client ids once known. No headers, no query string
/// (nothing that could hold a secret).
pub(crate) fn make_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str());
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or("", |r| r.0.as_str());
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %id,
        tenant_id = tracing::field::Empty,
        client_id = tracing::field::Empty,
    )
}

/// Logs the status and latency of each response.
pub(crate) fn on_response(res: &Response, latency: Duration, _span: &tracing::Span) {
    tracing::info!(
        status = res.status().as_u16(),
        latency_ms = latency.as_millis() as u64,
        "response"
    );
}

/// Lets one log line through per period and counts the ones it holds back,
/// so that a caller who can provoke a line at will (anyone, on some
/// routes) cannot flood the logs.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    period: Duration,
    /// When the last line went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// At most one line per `period`.
    pub(crate) const fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be
    /// written now; `None` (and one more held back) otherwise.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let held = state.1;
                *state = (Some(now), 0);
                Some(held)
            }
        }
    }
}

/// Logs a server error (5xx) once its response is sent. 501 (a feature
/// this deployment does not run, e.g. the billing webhook without billing)
/// is the caller's doing, not a failure: DEBUG only. 503 (a backend
/// unavailable, a timeout, a cap reached) is WARN, at most one line per
/// 10 s with the count held back. Anything else is ERROR. Every response
/// also has its INFO line with the status (`on_response`).
pub(crate) fn on_failure(
    throttle: &LogThrottle,
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    let latency_ms = latency.as_millis() as u64;
    match class {
        Class::StatusCode(s) if s == axum::http::StatusCode::NOT_IMPLEMENTED => {
            tracing::debug!(status = s.as_u16(), latency_ms, "not configured here");
        }
        Class::StatusCode(s) if s == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            if let Some(held_back) = throttle.admit() {
                tracing::warn!(
                    status = s.as_u16(),
                    latency_ms,
                    held_back,
                    "service unavailable"
                );
            }
        }
        Class::StatusCode(s) => {
            tracing::error!(status = s.as_u16(), latency_ms, "response failed");
        }
        Class::Error(e) => tracing::error!(error = %e, latency_ms, "response failed"),
    }
}

/// Headers every response carries.
pub(crate) async fn security_headers(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(t.admit_at(start), Some(0));
        for s in 1..60 {
            assert_eq!(t.admit_at(start + Duration::from_secs(s)), None);
        }
        assert_eq!(t.admit_at(start + Duration::from_secs(60)), Some(59));
        assert_eq!(t.admit_at(start + Duration::from_secs(61)), None);
        assert_eq!(t.admit_at(start + Duration::from_secs(200)), Some(1));
    }

    #[test]
    fn generated_request_ids_are_distinct_valid_hex() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(valid_request_id(&HeaderValue::from_str(id).unwrap()).is_some());
        }
    }
}
