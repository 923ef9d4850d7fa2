//! Cross-origin requests (CORS, the WHATWG Fetch standard).
//!
//! Two policies, by route:
//! - the public, read-only documents (discovery metadata, the JWKS, the
//!   marketplace, DID documents, publishers, the OpenAPI document) may be read
//!   by a page of any origin: `GET` and `HEAD` answer
//!   `Access-Control-Allow-Origin: *`;
//! - everything else (the management API, the OAuth endpoints, billing,
//!   operations) answers cross-origin requests only from the origins of
//!   [`RouterConfig::cors_origins`](crate::RouterConfig::cors_origins): none
//!   by default. Credentials (cookies) are never allowed cross-origin: a
//!   page of another origin calls the API with `Authorization: Bearer`.
//!
//! A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered
//! here, before routing: 204 with the allowed methods and headers, or 403
//! (a problem document) for an origin or method that is not allowed.

use std::fmt;
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::problem::Problem;

/// Request headers a cross-origin page may send to the API.
const API_ALLOW_HEADERS: &str =
    "authorization, content-type, x-csrf-token, x-request-id, last-event-id";
/// Methods of the API.
const API_ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// Response headers a cross-origin page may read.
const EXPOSE_HEADERS: &str =
    "location, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-request-id";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// One origin the API accepts cross-origin requests from: `scheme://host`
/// with an optional port (as browsers send it in `Origin`), or `*` for any
/// origin.
///
/// ```
/// use sentryagent_http::CorsOrigin;
/// let o: CorsOrigin = "https://Console.Example.com".parse().unwrap();
/// assert_eq!(o.to_string(), "https://console.example.com");
/// assert!("https://console.example.com/app".parse::<CorsOrigin>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorsOrigin(Origin);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Origin {
    Any,
    Exact(String),
}

impl CorsOrigin {
    /// Whether a request's `Origin` header value is this origin.
    fn matches(&self, origin: &HeaderValue) -> bool {
        match &self.0 {
            Origin::Any => true,
            Origin::Exact(o) => origin.as_bytes().eq_ignore_ascii_case(o.as_bytes()),
        }
    }
}

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(CorsOrigin(Origin::Any));
        }
        let shown: String = s.chars().take(100).collect();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "`{shown}` is not an origin: write scheme://host[:port], e.g. https://console.example.com"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(format!("`{shown}`: an origin's scheme is http or https"));
        }
        if rest.is_empty() {
            return Err(format!("`{shown}`: the origin has no host"));
        }
        if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
            return Err(format!(
                "`{shown}`: an origin is scheme://host[:port], without `{c}` (no path, query or user)"
            ));
        }
        let ok = rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
        if !ok {
            return Err(format!(
                "`{shown}`: the host has characters an origin cannot have"
            ));
        }
        Ok(CorsOrigin(Origin::Exact(format!(
            "{scheme}://{}",
            rest.to_ascii_lowercase()
        ))))
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Origin::Any => f.write_str("*"),
            Origin::Exact(o) => f.write_str(o),
        }
    }
}

/// Whether `path` (inside the router) is a public, read-only document any
/// origin may read.
fn is_public(path: &str) -> bool {
    path.starts_with("/.well-known/")
        || path.starts_with("/v1/marketplace/")
        || path.starts_with("/v1/publishers/")
        || path == "/openapi.json"
        || path == "/did.json"
        || path.starts_with("/v1/credentials/status/")
        || (path.starts_with("/v1/agents/") && path.ends_with("/did.json"))
}

fn is_read(m: &[u8]) -> bool {
    m == b"GET" || m == b"HEAD"
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &'static str) {
    h.insert(name, HeaderValue::from_static(value));
}

/// The CORS layer (see the [module docs](self)).
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let public = is_public(req.uri().path());
    let api_allowed = state.config.cors_origins.iter().any(|o| o.matches(&origin));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .map_or(&b""[..], HeaderValue::as_bytes);
        return preflight_answer(public, api_allowed, asked, origin);
    }
    let read = is_read(req.method().as_str().as_bytes());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if public && read {
        set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    } else if api_allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("origin"));
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    } else {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

fn preflight_answer(
    public: bool,
    api_allowed: bool,
    asked: &[u8],
    origin: HeaderValue,
) -> Response {
    let api_method = matches!(
        asked,
        b"GET" | b"HEAD" | b"POST" | b"PUT" | b"PATCH" | b"DELETE"
    );
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    if api_allowed && api_method {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        set(h, header::VARY, "origin");
        set(h, header::ACCESS_CONTROL_ALLOW_METHODS, API_ALLOW_METHODS);
        set(h, header::ACCESS_CONTROL_ALLOW_HEADERS, API_ALLOW_HEADERS);
    } else if public && is_read(asked) {
        set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        set(h, header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD");
        set(h, header::ACCESS_CONTROL_ALLOW_HEADERS, "x-request-id");
    } else {
        return Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
            .detail(if public {
                "cross-origin requests to this public document may only read it (GET, HEAD)"
            } else {
                "cross-origin requests from this origin are not allowed (SENTRYAGENT_CORS_ORIGINS)"
            })
            .header(header::VARY, HeaderValue::from_static("origin"))
            .into_response();
    }
    set(h, header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_normalise_and_refuse_what_is_not_an_origin() {
        for (given, shown) in [
            ("https://console.example.com", "https://console.example.com"),
            ("HTTPS://Console.Example.COM", "https://console.example.com"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            (" * ", "*"),
        ] {
            let o: CorsOrigin = given.parse().unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(o.to_string(), shown);
        }
        for bad in [
            "",
            "console.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/",
            "https://example.com/app",
            "https://example.com?x=1",
            "https://user@example.com",
            "https://exa mple.com",
            "null",
        ] {
            assert!(bad.parse::<CorsOrigin>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_origin_matches_the_header_case_insensitively_and_exactly() {
        let o: CorsOrigin = "https://console.example.com".parse().unwrap();
        assert!(o.matches(&HeaderValue::from_static("https://console.example.com")));
        assert!(o.matches(&HeaderValue::from_static("https://CONSOLE.example.com")));
        assert!(!o.matches(&HeaderValue::from_static(
            "https://console.example.com.evil"
        )));
        assert!(!o.matches(&HeaderValue::from_static("http://console.example.com")));
        assert!(!o.matches(&HeaderValue::from_static("null")));
        let any: CorsOrigin = "*".parse().unwrap();
        assert!(any.matches(&HeaderValue::from_static("https://anything.example")));
    }

    #[test]
    fn public_documents_are_the_read_only_ones() {
        for p in [
            "/.well-known/jwks.json",
            "/.well-known/openid-configuration",
            "/v1/marketplace/agents",
            "/v1/marketplace/agents/agt_1",
            "/v1/marketplace/agents/agt_1/agent-card.json",
            "/.well-known/did.json",
            "/did.json",
            "/v1/credentials/status/revocation",
            "/v1/marketplace/agents/agt_1/badge",
            "/v1/publishers/acme",
            "/v1/agents/agt_1/did.json",
            "/openapi.json",
        ] {
            assert!(is_public(p), "{p}");
        }
        for p in [
            "/v1/agents",
            "/v1/agents/agt_1",
            "/oauth2/token",
            "/v1/tenants",
            "/billing/usage",
            "/metrics",
        ] {
            assert!(!is_public(p), "{p}");
        }
    }
}
