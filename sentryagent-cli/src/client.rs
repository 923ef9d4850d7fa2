//! The one HTTP client: base URL, admin key, timeouts, and the mapping of
//! problem+json and OAuth error bodies to one-line errors with exit codes.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::error::{CliError, Exit};

/// Time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence on the audit stream (the server sends keep-alives every
/// 15 s by default) before reconnecting.
pub(crate) const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// A server and, for management calls, an admin key.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: String,
    key: Option<String>,
    verbose: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "****"))
            .finish()
    }
}

fn user_agent() -> String {
    format!("sentryagent-cli/{}", env!("CARGO_PKG_VERSION"))
}

impl Client {
    /// A client of `base` (no trailing slash).
    pub(crate) fn new(base: &str, key: Option<String>, verbose: bool) -> Result<Self, CliError> {
        let build = |total: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .user_agent(user_agent())
                .connect_timeout(CONNECT_TIMEOUT);
            b = match total {
                Some(t) => b.timeout(t),
                None => b.read_timeout(STREAM_READ_TIMEOUT),
            };
            b.build()
                .map_err(|e| CliError::other(format!("cannot set up the HTTP client: {e}")))
        };
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| CliError::usage(format!("not a server URL: {base}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "not a server URL: {base}: use http:// or https://"
            )));
        }
        Ok(Client {
            http: build(Some(REQUEST_TIMEOUT))?,
            stream_http: build(None)?,
            base: base.to_owned(),
            key,
            verbose,
        })
    }

    /// The server URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The admin key, or an error saying how to give one.
    fn key(&self) -> Result<&str, CliError> {
        self.key.as_deref().ok_or_else(|| {
            CliError::auth(
                "no API key: run `sentryagent login`, or set SENTRYAGENT_API_KEY or --api-key",
            )
        })
    }

    /// A request to `path` (starting with `/`), with the admin key.
    pub(crate) fn authed(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key()?))
    }

    /// A request to `path` without a key.
    pub(crate) fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// The audit stream request (no total timeout).
    pub(crate) fn stream(&self, path: &str) -> Result<RequestBuilder, CliError> {
        Ok(self
            .stream_http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.key()?)
            .header(reqwest::header::ACCEPT, "text/event-stream"))
    }

    /// Sends `req`; a non-success answer becomes a [`CliError`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, CliError> {
        let res = req.send().await.map_err(|e| self.transport(&e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        Err(self.error_from(res).await)
    }

    /// Sends `req` and reads a JSON body (`null` for an empty one).
    pub(crate) async fn json(&self, req: RequestBuilder) -> Result<Value, CliError> {
        let res = self.send(req).await?;
        let bytes = res.bytes().await.map_err(|e| self.transport(&e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::other(format!(
                "the server at {} sent invalid JSON: {e}",
                self.base
            ))
        })
    }

    /// A transport failure: unreachable or timed out (exit 6).
    pub(crate) fn transport(&self, e: &reqwest::Error) -> CliError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "is unreachable"
        } else {
            "failed"
        };
        let mut cause = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        let cause = if cause.is_empty() {
            String::new()
        } else {
            format!(": {cause}")
        };
        if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
            CliError::new(
                Exit::Unreachable,
                format!("the server at {} {what}{cause}", self.base),
            )
        } else {
            CliError::other(format!("request to {} failed{cause}", self.base))
        }
    }

    /// One line from an error answer: the problem's detail (or title), or
    /// the OAuth error and its description.
    pub(crate) async fn error_from(&self, res: Response) -> CliError {
        let status = res.status();
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.bytes().await.unwrap_or_default();
        let mut message = describe_error(status, &body);
        if self.verbose
            && let Some(id) = request_id
        {
            message.push_str(&format!(" (request id {id})"));
        }
        CliError::new(CliError::exit_for_status(status.as_u16()), message)
    }
}

/// The message of an error body.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(error) = text("error") {
        return match text("error_description") {
            Some(d) => format!("{error}: {d}"),
            None => error.to_owned(),
        };
    }
    if let Some(detail) = text("detail") {
        if text("field") == Some("tenant_id") {
            return format!("{detail} (pass --tenant ID, or `sentryagent config set tenant ID`)");
        }
        return detail.to_owned();
    }
    if let Some(title) = text("title") {
        return title.to_owned();
    }
    format!(
        "the server answered {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// `s` escaped for a URL path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs (values escaped), starting with `?`, or empty.
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_detail_wins_over_title() {
        let m = describe_error(
            StatusCode::PAYMENT_REQUIRED,
            br#"{"title":"Tier limit reached","detail":"agents limit of the free tier reached: 3 used of 3"}"#,
        );
        assert_eq!(m, "agents limit of the free tier reached: 3 used of 3");
    }

    #[test]
    fn oauth_error_with_description() {
        let m = describe_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_scope","error_description":"scope x is not allowed"}"#,
        );
        assert_eq!(m, "invalid_scope: scope x is not allowed");
    }

    #[test]
    fn no_body_names_the_status() {
        assert_eq!(
            describe_error(StatusCode::BAD_GATEWAY, b""),
            "the server answered 502 Bad Gateway"
        );
    }

    #[test]
    fn query_escapes_values() {
        assert_eq!(
            query(&[("q", Some("a b&c")), ("x", None), ("t", Some("é"))]),
            "?q=a%20b%26c&t=%C3%A9"
        );
        assert_eq!(query(&[("x", None)]), "");
    }
}
