//! Sessions over HTTP: the cookie, and the middleware branch that turns it
//! into a caller.
//!
//! The cookie is `__Host-sentryagent_session` when the issuer is https
//! (then also `Secure`), `sentryagent_session` otherwise; always
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Max-Age` up to the session's
//! end. Which requests need the CSRF token, how long a session lasts and
//! which scopes it carries are the core's rules
//! ([`Idp::authenticate_session`](sentryagent_core::Idp::authenticate_session)).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sentryagent_core::{Error, SessionAuth, SessionCredentials, SignedIn, Timestamp};

use crate::AppState;
use crate::extract::{Authenticated, request_meta};
use crate::layers::{add_rate_limit_headers, note_tenant};
use crate::problem::ApiError;

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's name for an issuer: `__Host-` prefixed on https.
pub fn cookie_name(issuer: &str) -> &'static str {
    if is_https(issuer) {
        "__Host-sentryagent_session"
    } else {
        "sentryagent_session"
    }
}

fn is_https(issuer: &str) -> bool {
    issuer
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// The `Set-Cookie` value of a session cookie holding `secret` until
/// `expires_at` (`None` secret: a cookie that clears it).
pub(crate) fn cookie(
    issuer: &str,
    secret: Option<&str>,
    expires_at: Timestamp,
    now: Timestamp,
) -> HeaderValue {
    let secure = if is_https(issuer) { "; Secure" } else { "" };
    let (value, max_age) = match secret {
        Some(s) => (s, expires_at.since(now).as_secs()),
        None => ("", 0),
    };
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(issuer)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session the request came with, as the session layer found it.
#[derive(Debug, Clone)]
pub(crate) struct SignedInSession(pub(crate) Arc<SessionAuth>);

/// Why a session that authenticated has no caller (no membership, or a
/// second factor the tenant requires).
#[derive(Debug, Clone)]
pub(crate) struct SessionDenied(pub(crate) String);

/// Sets the session cookie of a new session on a response.
pub(crate) fn set_session(state: &AppState, res: &mut Response, signed: &SignedIn) {
    let now = state.idp.clock().now();
    let v = cookie(
        &state.idp.config().issuer,
        Some(signed.secret.expose()),
        signed.session.expires_at,
        now,
    );
    res.headers_mut().append(header::SET_COOKIE, v);
}

/// Clears the session cookie on a response.
pub(crate) fn clear_session(state: &AppState, res: &mut Response) {
    let now = state.idp.clock().now();
    let v = cookie(&state.idp.config().issuer, None, now, now);
    res.headers_mut().append(header::SET_COOKIE, v);
}

/// The session branch of authentication, for requests without an
/// `Authorization` header: a session cookie becomes the request's session
/// ([`SignedInSession`]) and, when the member may act, its caller. A
/// request without the cookie goes on anonymously; a stale cookie goes on
/// anonymously and is cleared; a state-changing request without the
/// session's CSRF token is refused (403). With `admit`, a caller's call is
/// admitted against its tenant's rate limit and daily quota as an admin
/// key's is. A session rotated by the core (its member's role changed)
/// gets the new cookie and the new CSRF token in `X-CSRF-Token`.
pub(crate) async fn session_auth(
    state: AppState,
    req: Request,
    next: Next,
    admit: bool,
) -> Response {
    let name = cookie_name(&state.idp.config().issuer);
    let Some(secret) = read_cookie(req.headers(), name) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let meta = request_meta(&parts);
    let csrf = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let presented = SessionCredentials {
        secret: &secret,
        csrf_token: csrf.as_deref(),
        method: parts.method.as_str(),
    };
    let auth = match state.idp.authenticate_session(&presented, &meta).await {
        Ok(a) => a,
        Err(Error::Unauthenticated) => {
            let mut res = next.run(Request::from_parts(parts, body)).await;
            clear_session(&state, &mut res);
            return res;
        }
        Err(e) => return ApiError(e).into_response(),
    };
    let mut decision = None;
    if let Some(caller) = &auth.caller {
        if let Some(t) = &caller.tenant {
            note_tenant(t);
            if admit {
                match state.idp.admit_api_call(t).await {
                    Ok(admitted) => {
                        state.metrics.rate_limit("api", true);
                        state.metrics.api_call(admitted.tier.as_str());
                        decision = Some(admitted.decision);
                    }
                    Err(e) => {
                        if matches!(e, Error::RateLimited { .. }) {
                            state.metrics.rate_limit("api", false);
                        }
                        return ApiError(e).into_response();
                    }
                }
            }
        }
        parts.extensions.insert(Authenticated(caller.clone()));
    }
    if let Some(why) = &auth.denied {
        parts.extensions.insert(SessionDenied(why.clone()));
    }
    let rotated = auth.rotated.then(|| {
        (
            cookie(
                &state.idp.config().issuer,
                Some(auth.secret.expose()),
                auth.session.expires_at,
                state.idp.clock().now(),
            ),
            HeaderValue::from_str(&auth.csrf_token).ok(),
        )
    });
    parts.extensions.insert(SignedInSession(Arc::new(auth)));
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if let Some(d) = decision {
        add_rate_limit_headers(res.headers_mut(), &d);
    }
    if let Some((c, csrf)) = rotated {
        // A handler that issued a session of its own (sign-out, a tenant
        // switch) already set the cookie; it wins.
        if !res.headers().contains_key(header::SET_COOKIE) {
            res.headers_mut().append(header::SET_COOKIE, c);
            if let Some(v) = csrf {
                res.headers_mut().insert(CSRF_HEADER, v);
            }
        }
    }
    res
}

/// The session layer of the people routes under `/v1/me` and
/// `/v1/sessions/current`: [`session_auth`] without admission (a person's
/// own pages are not API calls of a tenant).
pub(crate) async fn people_layer(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    session_auth(state, req, next, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_follow_the_issuer() {
        let now = Timestamp::from_unix_secs(1_000);
        let end = Timestamp::from_unix_secs(4_600);
        let https = cookie("https://idp.example/idp", Some("sa_ss_x"), end, now);
        assert_eq!(
            https.to_str().unwrap(),
            "__Host-sentryagent_session=sa_ss_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure"
        );
        let http = cookie("http://127.0.0.1:8080", Some("sa_ss_x"), end, now);
        assert_eq!(
            http.to_str().unwrap(),
            "sentryagent_session=sa_ss_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"
        );
        let gone = cookie("http://127.0.0.1:8080", None, now, now);
        assert_eq!(
            gone.to_str().unwrap(),
            "sentryagent_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sentryagent_session=sa_ss_y ; b=2"),
        );
        assert_eq!(
            read_cookie(&h, "sentryagent_session").as_deref(),
            Some("sa_ss_y")
        );
        assert_eq!(read_cookie(&h, "__Host-sentryagent_session"), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-sentryagent_session=\"sa_ss_z\""),
        );
        assert_eq!(
            read_cookie(&h, "__Host-sentryagent_session").as_deref(),
            Some("sa_ss_z")
        );
        assert_eq!(read_cookie(&HeaderMap::new(), "x"), None);
    }
}
