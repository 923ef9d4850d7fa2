//! The OAuth 2.0 endpoints: metadata (RFC 8414), JWKS, token (RFC 6749
//! client credentials, RFC 7523 `private_key_jwt`, RFC 8707 resources,
//! RFC 8693 token exchange), introspection (RFC 7662) and revocation
//! (RFC 7009). Errors are RFC 6749 §5.2 JSON from the core's [`OAuthError`]
//! mapping.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::CLIENT_CREDENTIALS;
use sentryagent_core::Introspection;
use sentryagent_core::OAuthError;
use sentryagent_core::federation::{ExchangeTarget, TOKEN_EXCHANGE};
use sentryagent_core::jose::JwkSet;
use sentryagent_core::{Decision, Error, Idp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Meta, has_media_type};
use crate::views::{OAuthErrorDoc, ProblemDoc, TimedOut};
use sentryagent_core::form::{self, FormParams};

/// An OAuth error answer, with the headers RFC 6749 asks for.
#[derive(Debug)]
pub(crate) struct OAuthReply {
    err: OAuthError,
    /// A rate-limit refusal: how long to wait, and the limit that refused.
    rate_limited: Option<(Duration, u64)>,
}

impl From<OAuthError> for OAuthReply {
    fn from(err: OAuthError) -> Self {
        OAuthReply {
            err,
            rate_limited: None,
        }
    }
}

impl From<Error> for OAuthReply {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Internal { .. } | Error::NotConfigured { .. }) {
            tracing::error!(error = %e, "internal error at an OAuth endpoint");
        }
        let rate_limited = match &e {
            Error::RateLimited { retry_after, limit } => Some((*retry_after, *limit)),
            _ => None,
        };
        OAuthReply {
            err: OAuthError::from(&e),
            rate_limited,
        }
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.err.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut res = (status, Json(&self.err)).into_response();
        let h = res.headers_mut();
        no_store(h);
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: 401 with the scheme the client may use; HTTP
            // requires a challenge on every 401.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sentryagent\""),
            );
        }
        if let Some((retry_after, limit)) = self.rate_limited {
            crate::problem::rate_limited_headers(h, retry_after, limit);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && !h.contains_key(header::RETRY_AFTER) {
            // `temporarily_unavailable` (a backend is down): tell the
            // client when to come back, as the problem documents do.
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

/// A JSON answer that must not be cached.
///
/// Serialized into one buffer of [`FRESH_CAPACITY`] bytes: a token answer is
/// about 700 bytes, which axum's `Json` (starting at 128 bytes) reaches
/// only after three reallocations.
fn fresh<T: Serialize>(body: &T) -> Response {
    let mut buf = Vec::with_capacity(FRESH_CAPACITY);
    let mut res = match serde_json::to_writer(&mut buf, body) {
        Ok(()) => {
            let mut res = Response::new(axum::body::Body::from(buf));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        // Same answer as axum's `Json` for a value that cannot be serialized.
        Err(_) => Json(body).into_response(),
    };
    no_store(res.headers_mut());
    res
}

/// An admitted request's answer with the `RateLimit-*` headers of the
/// decision that admitted it.
fn admitted(mut res: Response, decision: Option<&Decision>) -> Response {
    if let Some(d) = decision {
        crate::layers::add_rate_limit_headers(res.headers_mut(), d);
    }
    res
}

/// First buffer size of [`fresh`] answers.
const FRESH_CAPACITY: usize = 1024;

/// Reads a form body as [`FormParams::parse`] does, after checking its
/// content type; a body the extractor could not read is `invalid_request`
/// (413 when it is over the limit).
fn read_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<FormParams, OAuthReply> {
    if !has_media_type(headers, "application/x-www-form-urlencoded") {
        return Err(
            form::invalid_request("the body must be application/x-www-form-urlencoded").into(),
        );
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            form::too_large(limit)
        } else {
            form::invalid_request("the body could not be read")
        }
    })?;
    Ok(FormParams::parse(&body, limit)?)
}

/// The raw value of the `Authorization` header, if any.
fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

/// The token request form (documentation of `POST /oauth2/token`).
#[derive(ToSchema)]
#[schema(example = json!({
    "grant_type": "client_credentials",
    "scope": "invoices:read",
    "resource": ["https://api.example.com"]
}))]
#[allow(dead_code)]
pub(crate) struct TokenForm {
    /// `client_credentials`, or
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693: no
    /// client authentication, the subject token is the credential).
    grant_type: String,
    /// Token exchange: the other identity provider's ID token (a GitHub
    /// Actions, GitLab CI or Kubernetes token).
    subject_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:id_token` or
    /// `urn:ietf:params:oauth:token-type:jwt`.
    subject_token_type: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`
    /// (the only type issued).
    requested_token_type: Option<String>,
    /// Token exchange for a management token: the tenant id (instead of
    /// `client_id`, which asks for that agent's token).
    tenant: Option<String>,
    /// Space separated scopes (default: all the agent's scopes).
    scope: Option<String>,
    /// Audience(s) of the token (RFC 8707), repeatable. Default: the
    /// issuer.
    resource: Option<Vec<String>>,
    /// Alias of `resource`, repeatable.
    audience: Option<Vec<String>>,
    /// `client_secret_post` / `private_key_jwt`: the client id. Token
    /// exchange: the agent whose token is asked for.
    client_id: Option<String>,
    /// `client_secret_post`: the secret.
    client_secret: Option<String>,
    /// `private_key_jwt`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: Option<String>,
    /// `private_key_jwt`: a JWT signed with the agent's Ed25519 key, `iss` and
    /// `sub` the client id, `aud` the token endpoint or issuer, `exp`, `jti`.
    client_assertion: Option<String>,
}

/// The introspection and revocation form (documentation).
#[derive(ToSchema)]
#[schema(example = json!({"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln", "token_type_hint": "access_token"}))]
#[allow(dead_code)]
pub(crate) struct TokenParamForm {
    /// The access token.
    token: String,
    /// `access_token` (optional hint).
    token_type_hint: Option<String>,
    /// Client authentication as at the token endpoint.
    client_id: Option<String>,
    /// Client authentication as at the token endpoint.
    client_secret: Option<String>,
}

/// The token endpoint's answer (documentation): RFC 6749 §5.1, plus
/// `issued_token_type` for a token exchange (RFC 8693 §2.2.1).
#[derive(ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9.e30.c2ln",
    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "token_type": "Bearer",
    "expires_in": 900,
    "scope": "invoices:read"
}))]
#[allow(dead_code)]
pub(crate) struct TokenAnswer {
    /// The JWT.
    access_token: String,
    /// Token exchange only: `urn:ietf:params:oauth:token-type:access_token`.
    issued_token_type: Option<String>,
    /// Always `Bearer`.
    token_type: String,
    /// Lifetime in seconds.
    expires_in: u64,
    /// Granted scopes.
    scope: Option<String>,
}

/// Token endpoint: `client_credentials`, and token exchange (RFC 8693) of
/// another identity provider's token under the target tenant's trust
/// policies (`client_id`: that agent's access token, with `act`; `tenant`:
/// a management token). A refused subject token is `invalid_grant`, always
/// the same.
#[utoipa::path(
    post, path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 6749 §5.1 token response, with `issued_token_type` for a token exchange (`Cache-Control: no-store`)", body = TokenAnswer, headers(
            ("RateLimit-Limit" = u32, description = "requests per minute of the limit with the fewest requests left (the client's or the tenant's)"),
            ("RateLimit-Remaining" = u32, description = "requests left now"),
            ("RateLimit-Reset" = u64, description = "seconds until the limit is back to a full burst"),
        )),
        (status = 400, description = "invalid_request (also a body that is not application/x-www-form-urlencoded), invalid_scope, invalid_target, invalid_grant (also every refused token exchange), unsupported_grant_type, unauthorized_client", body = OAuthErrorDoc),
        (status = 401, description = "invalid_client (`WWW-Authenticate: Basic`)", body = OAuthErrorDoc),
        (status = 402, description = "quota_exceeded: the monthly token quota of the tier is reached", body = OAuthErrorDoc),
        (status = 413, description = "invalid_request: the body is over the limit", body = OAuthErrorDoc),
        (status = 429, description = "slow_down: rate limited (`Retry-After`, and `RateLimit-*` of the limit that refused)", body = OAuthErrorDoc),
        (status = 503, description = "temporarily_unavailable, or the request timed out (a problem)", content(
            (OAuthErrorDoc = "application/json"),
            (ProblemDoc = "application/problem+json"),
        )),
    ),
    security(("client_basic" = []), ())
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match issue(&state, &meta, &headers, body).await {
        Ok(res) => {
            state.metrics.token_issued();
            state.metrics.rate_limit("token", true);
            res
        }
        Err(e) => {
            state.metrics.token_error(e.err.error);
            if e.err.error == "slow_down" {
                state.metrics.rate_limit("token", false);
            }
            e.into_response()
        }
    }
}

async fn issue(
    state: &AppState,
    meta: &sentryagent_core::RequestMeta,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let p = read_form(headers, body, state.config.body_limit)?;
    if p.get("grant_type") == Some(TOKEN_EXCHANGE) {
        return exchange(state, meta, headers, &p).await;
    }
    let req = form::token_request(authorization(headers), &p)?;
    crate::layers::note_credentials(&req.client);
    let token = state.idp.issue_token(&req, meta).await?;
    Ok(admitted(fresh(&token), token.rate_limit.as_ref()))
}

/// The token exchange grant (RFC 8693).
async fn exchange(
    state: &AppState,
    meta: &sentryagent_core::RequestMeta,
    headers: &HeaderMap,
    p: &FormParams,
) -> Result<Response, OAuthReply> {
    let req = form::exchange_request(authorization(headers), p)?;
    if let ExchangeTarget::Agent(id) = &req.target {
        crate::layers::note_client(id);
    }
    let answer = state.idp.exchange_token(&req, meta).await?;
    Ok(admitted(fresh(&answer), answer.rate_limit.as_ref()))
}

/// Token introspection (RFC 7662); the caller authenticates as a client of
/// the same tenant.
#[utoipa::path(
    post, path = "/oauth2/introspect", tag = "oauth",
    request_body(content = TokenParamForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}`, or `active: true` and the claims; `RateLimit-*` headers as at the token endpoint", body = Introspection),
        (status = 400, description = "invalid_request", body = OAuthErrorDoc),
        (status = 401, description = "invalid_client (`WWW-Authenticate: Basic`)", body = OAuthErrorDoc),
        (status = 413, description = "invalid_request: the body is over the limit", body = OAuthErrorDoc),
        (status = 429, description = "slow_down: rate limited, as token requests are (`Retry-After`, `RateLimit-*`)", body = OAuthErrorDoc),
        (status = 503, description = "temporarily_unavailable, or the request timed out (a problem)", content(
            (OAuthErrorDoc = "application/json"),
            (ProblemDoc = "application/problem+json"),
        )),
    ),
    security(("client_basic" = []), ())
)]
pub(crate) async fn introspect(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let (client, token) = token_param_request(&state, &headers, body)?;
        let answer = state.idp.introspect(&client, &token, &meta).await?;
        Ok::<_, OAuthReply>(admitted(fresh(&answer), answer.rate_limit.as_ref()))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Token revocation (RFC 7009): 200 whether or not the token was valid.
#[utoipa::path(
    post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = TokenParamForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked (or nothing to revoke); no body; `RateLimit-*` headers as at the token endpoint"),
        (status = 400, description = "invalid_request", body = OAuthErrorDoc),
        (status = 401, description = "invalid_client (`WWW-Authenticate: Basic`)", body = OAuthErrorDoc),
        (status = 413, description = "invalid_request: the body is over the limit", body = OAuthErrorDoc),
        (status = 429, description = "slow_down: rate limited, as token requests are (`Retry-After`, `RateLimit-*`)", body = OAuthErrorDoc),
        (status = 503, description = "temporarily_unavailable, or the request timed out (a problem)", content(
            (OAuthErrorDoc = "application/json"),
            (ProblemDoc = "application/problem+json"),
        )),
    ),
    security(("client_basic" = []), ())
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        let (client, token) = token_param_request(&state, &headers, body)?;
        let decision = state.idp.revoke(&client, &token, &meta).await?;
        let mut res = StatusCode::OK.into_response();
        no_store(res.headers_mut());
        Ok::<_, OAuthReply>(admitted(res, Some(&decision)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The client and the `token` of an introspection or revocation request.
fn token_param_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(sentryagent_core::ClientCredentials, String), OAuthReply> {
    let p = read_form(headers, body, state.config.body_limit)?;
    let client = form::client_credentials(authorization(headers), &p)?;
    crate::layers::note_credentials(&client);
    let token = p
        .get("token")
        .ok_or_else(|| form::invalid_request("token is required"))?;
    Ok((client, token.to_owned()))
}

/// The path part of the issuer URL (`/idp` of `https://host/idp`), or "".
pub(crate) fn issuer_path(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    rest.find('/')
        .map_or_else(String::new, |i| rest[i..].trim_end_matches('/').to_owned())
}

/// RFC 8414 authorization server metadata.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerMetadata {
    /// The issuer.
    issuer: String,
    /// The token endpoint.
    token_endpoint: String,
    /// The JWK Set.
    jwks_uri: String,
    /// RFC 7662 introspection.
    introspection_endpoint: String,
    /// RFC 7009 revocation.
    revocation_endpoint: String,
    /// Empty: no authorization endpoint, machine clients only (RFC 8414 §2
    /// requires the member).
    response_types_supported: Vec<&'static str>,
    /// `client_credentials` and `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_types_supported: Vec<&'static str>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt`.
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `EdDSA` (`private_key_jwt` assertions).
    token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// As at the token endpoint.
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `EdDSA`.
    introspection_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// As at the token endpoint.
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `EdDSA`.
    revocation_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// Algorithms of the access tokens (`EdDSA`, `ES256`).
    access_token_signing_alg_values_supported: Vec<&'static str>,
    /// `public`.
    subject_types_supported: Vec<&'static str>,
    /// The API explorer.
    service_documentation: String,
}

/// The authorization server metadata, every URL derived from the issuer.
pub(crate) fn metadata_document(idp: &Idp) -> ServerMetadata {
    let c = idp.config();
    let issuer = &c.issuer;
    let algs: Vec<&str> = idp.algorithms().iter().map(|a| a.as_str()).collect();
    let auth_methods = vec![
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    ServerMetadata {
        issuer: issuer.clone(),
        token_endpoint: c.token_endpoint.clone(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        response_types_supported: Vec::new(),
        grant_types_supported: vec![CLIENT_CREDENTIALS, TOKEN_EXCHANGE],
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        token_endpoint_auth_signing_alg_values_supported: vec!["EdDSA"],
        introspection_endpoint_auth_methods_supported: auth_methods.clone(),
        introspection_endpoint_auth_signing_alg_values_supported: vec!["EdDSA"],
        revocation_endpoint_auth_methods_supported: auth_methods,
        revocation_endpoint_auth_signing_alg_values_supported: vec!["EdDSA"],
        access_token_signing_alg_values_supported: algs,
        subject_types_supported: vec!["public"],
        service_documentation: format!("{issuer}/explorer/"),
    }
}

fn metadata_response(idp: &Idp) -> Response {
    let mut res = Json(metadata_document(idp)).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(
    get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata), TimedOut)
)]
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    metadata_response(&state.idp)
}

/// The same metadata for clients that look for OpenID discovery.
#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "oauth",
    responses((status = 200, description = "the RFC 8414 metadata", body = ServerMetadata), TimedOut)
)]
pub(crate) async fn openid_configuration(State(state): State<AppState>) -> Response {
    metadata_response(&state.idp)
}

/// Metadata for [`crate::well_known_router`].
pub(crate) async fn metadata_for(State(idp): State<Idp>) -> Response {
    metadata_response(&idp)
}

/// The public signing keys; cacheable for 5 minutes (retired keys stay
/// published longer than the tokens they signed live).
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, description = "JWK Set (RFC 7517)", body = JwkSet), TimedOut)
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = Json(state.idp.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_need_their_content_type() {
        let body = || Ok(Bytes::from_static(b"a=b"));
        let mut h = HeaderMap::new();
        assert!(read_form(&h, body(), 10).is_err());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        assert_eq!(read_form(&h, body(), 10).unwrap().get("a"), Some("b"));
        assert_eq!(read_form(&h, body(), 2).unwrap_err().err.status, 413);
    }

    #[test]
    fn unavailable_backends_answer_503_with_retry_after() {
        let e = Error::unavailable(
            "postgres: connection refused",
            std::io::Error::other("down"),
        );
        let res = OAuthReply::from(e).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn issuer_paths() {
        assert_eq!(issuer_path("http://127.0.0.1:8080/idp"), "/idp");
        assert_eq!(issuer_path("https://example.com"), "");
        assert_eq!(issuer_path("https://example.com/a/b/"), "/a/b");
    }
}
