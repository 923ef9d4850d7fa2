//! People's own routes: sign-up, sign-in and sign-out, `/v1/me` (the
//! account, its sessions, password and second factor), accepting an
//! invitation and completing a password reset. Each handler is one core
//! call; answers that start a session set the cookie and carry the CSRF
//! token in their body.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::{
    AcceptInvitation, Account, CompletePasswordReset, Me, SessionAuth, SessionId, SessionInfo,
    SignIn, SignUp, SignedIn, TenantId, TotpEnrollment,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use crate::AppState;
use crate::extract::{ApiJson, ApiPath, Meta};
use crate::problem::{ApiError, Problem};
use crate::session::{SignedInSession, clear_session, cookie_name, read_cookie, set_session};
use crate::views::{BodyErrors, InputErrors, NotFound, ProblemDoc};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The session of the request; 401 without one.
#[derive(Debug)]
pub(crate) struct Session(pub(crate) std::sync::Arc<SessionAuth>);

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SignedInSession>()
            .map(|s| Session(s.0.clone()))
            .ok_or_else(|| Problem::unauthenticated("sign in first (POST /v1/sessions)"))
    }
}

/// Errors of the people routes that need a session.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum SessionErrors {
    /// No session, or an ended or expired one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(ProblemDoc),
    /// A state-changing request without the session's CSRF token
    /// (`X-CSRF-Token`), or a wrong current password.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// A backend is unavailable, or the request timed out.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

/// Errors of the routes that sign in (no session needed).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum SignInErrors {
    /// The credentials do not authenticate (always the same answer).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(ProblemDoc),
    /// Too many attempts from this address or for this account.
    #[response(
        status = 429,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    RateLimited(ProblemDoc),
    /// A backend is unavailable, or the request timed out.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

/// The session the request came with, if any (to end it when a new one
/// starts).
fn presented(s: &AppState, headers: &HeaderMap) -> Option<String> {
    read_cookie(headers, cookie_name(&s.idp.config().issuer))
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `me` with the new session's cookie.
fn signed_in(s: &AppState, status: StatusCode, signed: &SignedIn) -> Response {
    let mut res = (status, Json(&signed.me)).into_response();
    set_session(s, &mut res, signed);
    no_store(&mut res);
    res
}

/// Signs up: a new account and a free-tier tenant it owns, signed in (as
/// `POST /v1/sessions` does). Only when sign-up is open.
#[utoipa::path(
    post, path = "/v1/signup", tag = "people",
    request_body = SignUp,
    responses(
        (status = 201, description = "signed in: the session cookie is set; `csrf_token` for state-changing requests", body = Me,
         headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 403, description = "sign-up is not open on this deployment", content_type = "application/problem+json", body = ProblemDoc),
        (status = 409, description = "an account with this email exists", content_type = "application/problem+json", body = ProblemDoc),
        SignInErrors, InputErrors, BodyErrors,
    )
)]
pub(crate) async fn sign_up(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignUp>,
) -> ApiResult {
    let old = presented(&s, &headers);
    let signed = s.idp.sign_up(&body, &meta, old.as_deref()).await?;
    Ok(signed_in(&s, StatusCode::CREATED, &signed))
}

/// Signs in with email and password (and `totp` when the account has a
/// second factor): sets the session cookie and answers the CSRF token.
/// Every failure is the same 401; too many attempts are 429.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "people",
    request_body = SignIn,
    responses(
        (status = 201, description = "signed in: the session cookie is set; `csrf_token` for state-changing requests", body = Me,
         headers(("Set-Cookie" = String, description = "the session cookie"))),
        SignInErrors, InputErrors, BodyErrors,
    )
)]
pub(crate) async fn sign_in(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult {
    let old = presented(&s, &headers);
    let signed = s.idp.sign_in(&body, &meta, old.as_deref()).await?;
    Ok(signed_in(&s, StatusCode::CREATED, &signed))
}

/// Signs out: ends the session and clears the cookie.
#[utoipa::path(
    delete, path = "/v1/sessions/current", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses((status = 204, description = "signed out; the cookie is cleared"), SessionErrors),
    security(("session" = []))
)]
pub(crate) async fn sign_out(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
) -> ApiResult {
    s.idp.sign_out(auth.secret.expose(), &meta).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    clear_session(&s, &mut res);
    Ok(res)
}

/// The tenant to act in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tenant_id": "tnt_0193a1c2d3e47f00a1b2c3d4e5f60718"}))]
pub(crate) struct TenantSwitch {
    /// One of the account's tenants.
    pub(crate) tenant_id: TenantId,
}

/// Switches the session to another of the account's tenants (a new
/// session: the cookie and the CSRF token change).
#[utoipa::path(
    put, path = "/v1/sessions/current/tenant", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    request_body = TenantSwitch,
    responses(
        (status = 200, description = "the new session", body = Me,
         headers(("Set-Cookie" = String, description = "the new session cookie"))),
        NotFound, SessionErrors, InputErrors, BodyErrors,
    ),
    security(("session" = []))
)]
pub(crate) async fn switch_tenant(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TenantSwitch>,
) -> ApiResult {
    let signed = s.idp.switch_tenant(&auth, &body.tenant_id, &meta).await?;
    Ok(signed_in(&s, StatusCode::OK, &signed))
}

/// The signed-in account, its tenants and roles, and the session's CSRF
/// token.
#[utoipa::path(
    get, path = "/v1/me", tag = "people",
    responses((status = 200, description = "the account", body = Me), SessionErrors),
    security(("session" = []))
)]
pub(crate) async fn me(State(s): State<AppState>, Session(auth): Session) -> ApiResult {
    let mut res = Json(s.idp.me(&auth).await?).into_response();
    no_store(&mut res);
    Ok(res)
}

/// The account's live sessions (`current` marks this one).
#[utoipa::path(
    get, path = "/v1/me/sessions", tag = "people",
    responses((status = 200, description = "sessions, oldest first", body = Vec<SessionInfo>), SessionErrors),
    security(("session" = []))
)]
pub(crate) async fn list_sessions(
    State(s): State<AppState>,
    Session(auth): Session,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    Ok(Json(s.idp.list_sessions(&auth).await?))
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"ended": 2}))]
pub(crate) struct EndedView {
    /// Sessions ended.
    pub(crate) ended: u64,
}

/// Ends every session of the account but this one (signs out everywhere
/// else).
#[utoipa::path(
    delete, path = "/v1/me/sessions", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses((status = 200, description = "how many ended", body = EndedView), SessionErrors),
    security(("session" = []))
)]
pub(crate) async fn end_other_sessions(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
) -> ApiResult<Json<EndedView>> {
    let ended = s.idp.end_other_sessions(&auth, &meta).await?;
    Ok(Json(EndedView { ended }))
}

/// Ends one of the account's sessions (this one too: that signs out).
#[utoipa::path(
    delete, path = "/v1/me/sessions/{id}", tag = "people",
    params(
        ("id" = String, Path, description = "session id"),
        ("X-CSRF-Token" = String, Header, description = "the session's CSRF token"),
    ),
    responses((status = 204, description = "ended"), NotFound, SessionErrors),
    security(("session" = []))
)]
pub(crate) async fn end_session(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let id = SessionId::parse(&id).map_err(|_| sentryagent_core::Error::not_found("session"))?;
    s.idp.end_session(&auth, &id, &meta).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if id == auth.session.id {
        clear_session(&s, &mut res);
    }
    Ok(res)
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery staple", "new_password": "orbit plum kettle seventeen"}))]
pub(crate) struct PasswordChange {
    /// The password now.
    pub(crate) current_password: String,
    /// The new one: 10 to 128 characters, not easy to guess.
    pub(crate) new_password: String,
}

/// Changes the password. Every session of the account ends, on every
/// node; the answer is a new session (cookie and CSRF token).
#[utoipa::path(
    post, path = "/v1/me/password", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "the new session", body = Me,
         headers(("Set-Cookie" = String, description = "the new session cookie"))),
        SessionErrors, InputErrors, BodyErrors,
    ),
    security(("session" = []))
)]
pub(crate) async fn change_password(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult {
    let signed = s
        .idp
        .change_password(&auth, &body.current_password, &body.new_password, &meta)
        .await?;
    Ok(signed_in(&s, StatusCode::OK, &signed))
}

/// Starts turning on the second factor: a TOTP secret (shown once) for an
/// authenticator app; confirm with `POST /v1/me/totp/confirm`.
#[utoipa::path(
    post, path = "/v1/me/totp", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 201, description = "the secret, shown once", body = TotpEnrollment),
        (status = 409, description = "the second factor is on already", content_type = "application/problem+json", body = ProblemDoc),
        SessionErrors,
    ),
    security(("session" = []))
)]
pub(crate) async fn begin_totp(State(s): State<AppState>, Session(auth): Session) -> ApiResult {
    let enrolment = s.idp.begin_totp(&auth).await?;
    let mut res = (StatusCode::CREATED, Json(enrolment)).into_response();
    no_store(&mut res);
    Ok(res)
}

/// A one-time code of the authenticator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "287082"}))]
pub(crate) struct TotpCode {
    /// The 6-digit code shown now.
    pub(crate) code: String,
}

/// The second factor is on: recovery codes (shown once) and the new
/// session.
#[derive(Serialize, ToSchema)]
pub(crate) struct TotpConfirmed {
    /// Ten single-use codes that stand in for a one-time code: store them
    /// now.
    pub(crate) recovery_codes: Vec<String>,
    /// The new session (the cookie and the CSRF token changed).
    #[serde(flatten)]
    pub(crate) me: Me,
}

/// Turns the second factor on with a code of the authenticator; answers
/// the recovery codes, shown once, and a new session.
#[utoipa::path(
    post, path = "/v1/me/totp/confirm", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    request_body = TotpCode,
    responses(
        (status = 200, description = "on; the recovery codes are shown once", body = TotpConfirmed,
         headers(("Set-Cookie" = String, description = "the new session cookie"))),
        (status = 409, description = "no second factor is being set up", content_type = "application/problem+json", body = ProblemDoc),
        SessionErrors, InputErrors, BodyErrors,
    ),
    security(("session" = []))
)]
pub(crate) async fn confirm_totp(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TotpCode>,
) -> ApiResult {
    let (recovery_codes, signed) = s.idp.confirm_totp(&auth, &body.code, &meta).await?;
    let mut res = Json(TotpConfirmed {
        recovery_codes,
        me: signed.me.clone(),
    })
    .into_response();
    set_session(&s, &mut res, &signed);
    no_store(&mut res);
    Ok(res)
}

/// The account's password, to confirm a sensitive change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "correct horse battery staple"}))]
pub(crate) struct PasswordConfirm {
    /// The password.
    pub(crate) password: String,
}

/// Turns the second factor off (the password confirms it).
#[utoipa::path(
    delete, path = "/v1/me/totp", tag = "people",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    request_body = PasswordConfirm,
    responses((status = 200, description = "the account, second factor off", body = Account), SessionErrors, InputErrors, BodyErrors),
    security(("session" = []))
)]
pub(crate) async fn disable_totp(
    State(s): State<AppState>,
    Session(auth): Session,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<PasswordConfirm>,
) -> ApiResult<Json<Account>> {
    Ok(Json(
        s.idp.disable_totp(&auth, &body.password, &meta).await?,
    ))
}

/// Accepts an invitation (once) and signs in: a new account with the
/// password given, or, for an email that has an account, with that
/// account's password.
#[utoipa::path(
    post, path = "/v1/invitations/accept", tag = "people",
    request_body = AcceptInvitation,
    responses(
        (status = 201, description = "joined and signed in: the session cookie is set", body = Me,
         headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 403, description = "new accounts are closed on this deployment", content_type = "application/problem+json", body = ProblemDoc),
        (status = 404, description = "no such invitation", content_type = "application/problem+json", body = ProblemDoc),
        (status = 409, description = "the invitation was used, revoked or has expired", content_type = "application/problem+json", body = ProblemDoc),
        SignInErrors, InputErrors, BodyErrors,
    )
)]
pub(crate) async fn accept_invitation(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AcceptInvitation>,
) -> ApiResult {
    let old = presented(&s, &headers);
    let signed = s
        .idp
        .accept_invitation(&body, &meta, old.as_deref())
        .await?;
    Ok(signed_in(&s, StatusCode::CREATED, &signed))
}

/// Sets a new password with a reset link's token (once). Every session of
/// the account ends; sign in with the new password.
#[utoipa::path(
    post, path = "/v1/password-resets/accept", tag = "people",
    request_body = CompletePasswordReset,
    responses(
        (status = 204, description = "the password is set"),
        (status = 429, description = "too many attempts from this address", content_type = "application/problem+json", body = ProblemDoc,
         headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "a backend is unavailable", content_type = "application/problem+json", body = ProblemDoc),
        InputErrors, BodyErrors,
    )
)]
pub(crate) async fn complete_password_reset(
    State(s): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<CompletePasswordReset>,
) -> ApiResult<StatusCode> {
    s.idp.complete_password_reset(&body, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
