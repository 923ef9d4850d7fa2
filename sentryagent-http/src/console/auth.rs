//! Sessions in the console: the layer that turns the session cookie (and a
//! form's CSRF token) into a signed-in request, the signed-in extractors,
//! and the sign-in, sign-up and sign-out pages.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;
use sentryagent_core::{
    AdminScope, Caller, Error, Role, SessionAuth, SessionCredentials, SignIn, SignUp, SignupMode,
    TenantId,
};
use serde::Deserialize;

use super::ConsoleState;
use super::page::{
    CSRF_FIELD, Ctx, ErrorPage, Flash, Nav, Page, PageError, PageForm, PageQuery, error_page,
    see_other,
};
use crate::extract::{Meta, request_meta};
use crate::session::{cookie, cookie_name, read_cookie};

/// The session a console request came with (set by [`session_layer`]).
#[derive(Clone)]
pub(crate) struct ConsoleSession(pub(crate) Arc<SessionAuth>);

/// Whether a request's method changes state (needs the CSRF token).
fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says the request comes from another site: a
/// `Sec-Fetch-Site: cross-site`, or an `Origin` whose host is not the
/// request's `Host`.
fn cross_site(headers: &HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if value(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return true;
    }
    match (value(header::ORIGIN), value(header::HOST)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let authority = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !authority.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// The console's session layer. A request with the session cookie is
/// authenticated by the core; a state-changing one (POST) must carry the
/// session's CSRF token in the form field `csrf_token`, compared by the
/// core in constant time, or it is refused (403) before any handler runs.
/// A stale cookie is cleared and the request goes on signed out. Error
/// pages of handlers ([`PageError`]) are rendered here, in the layout.
pub(crate) async fn session_layer(
    State(state): State<ConsoleState>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let post = changes_state(&parts.method);
    if post && cross_site(&parts.headers) {
        let ctx = Ctx::from_parts(&parts, &state);
        return error_page(
            &ctx,
            &PageError::forbidden("This form was sent from another site and is refused."),
        );
    }
    // A form's body is read here (to find the CSRF token) and handed on.
    let mut body = body;
    let mut form_token = None;
    if post {
        let bytes = match axum::body::to_bytes(body, super::FORM_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                let ctx = Ctx::from_parts(&parts, &state);
                return error_page(
                    &ctx,
                    &PageError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Too large",
                        "The form is too large.",
                    ),
                );
            }
        };
        form_token = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned());
        body = Body::from(bytes);
    }
    let issuer = state.idp.config().issuer.clone();
    let mut clear = false;
    let mut rotated = None;
    if let Some(secret) = read_cookie(&parts.headers, cookie_name(&issuer)) {
        let meta = request_meta(&parts);
        let presented = SessionCredentials {
            secret: &secret,
            csrf_token: form_token.as_deref(),
            method: parts.method.as_str(),
        };
        match state.idp.authenticate_session(&presented, &meta).await {
            Ok(auth) => {
                if auth.rotated {
                    rotated = Some(cookie(
                        &issuer,
                        Some(auth.secret.expose()),
                        auth.session.expires_at,
                        state.idp.clock().now(),
                    ));
                }
                parts.extensions.insert(ConsoleSession(Arc::new(auth)));
            }
            Err(Error::Unauthenticated) => clear = true,
            Err(Error::Forbidden { .. }) => {
                let ctx = Ctx::from_parts(&parts, &state);
                return error_page(
                    &ctx,
                    &PageError::forbidden(
                        "This form has expired or did not come from this console: go back, \
                         reload the page and try again.",
                    ),
                );
            }
            Err(e) => {
                let ctx = Ctx::from_parts(&parts, &state);
                return error_page(&ctx, &PageError::from(e));
            }
        }
    }
    let ctx = Ctx::from_parts(&parts, &state);
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if let Some(ErrorPage(e)) = res.extensions_mut().remove::<ErrorPage>() {
        let mut page = error_page(&ctx, &e);
        for v in res.headers().get_all(header::SET_COOKIE) {
            page.headers_mut().append(header::SET_COOKIE, v.clone());
        }
        res = page;
    }
    if !res.headers().contains_key(header::SET_COOKIE) {
        if let Some(c) = rotated {
            res.headers_mut().append(header::SET_COOKIE, c);
        } else if clear {
            let now = state.idp.clock().now();
            res.headers_mut()
                .append(header::SET_COOKIE, cookie(&issuer, None, now, now));
        }
    }
    res
}

/// `next` when it is safe to follow after sign-in: a relative path under
/// `prefix` (`/console/...`, or any `/...` when the prefix is empty), with
/// no scheme, no host (`//host`), no backslash and no control or blank
/// characters; `None` otherwise.
pub fn safe_next(next: &str, prefix: &str) -> Option<String> {
    let ok = next.len() <= 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && (prefix.is_empty()
            || next == prefix
            || next
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?')));
    ok.then(|| next.to_owned())
}

/// The sign-in redirect of a signed-out request: `<prefix>/login?next=<path>`.
fn sign_in_redirect(ctx: &Ctx) -> Response {
    let next: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &ctx.here)
        .finish();
    see_other(&format!("{}?{next}", ctx.url("/login")))
}

/// A signed-in person, with or without a role in a tenant (the profile
/// page). A signed-out request is redirected to sign in.
#[derive(Clone)]
pub struct SignedIn {
    /// The page context.
    pub ctx: Ctx,
    /// The session.
    pub auth: Arc<SessionAuth>,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn").finish_non_exhaustive()
    }
}

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = Ctx::from_parts(parts, state);
        match ctx.session.clone() {
            Some(auth) => Ok(SignedIn { ctx, auth }),
            None => Err(sign_in_redirect(&ctx)),
        }
    }
}

/// A signed-in member of a tenant, acting with its role's scopes. A
/// signed-out request is redirected to sign in; a session without a role
/// (no membership, or a second factor the tenant requires) is 403 with
/// the reason.
#[derive(Clone)]
pub struct Member {
    /// The page context.
    pub ctx: Ctx,
    /// The session.
    pub auth: Arc<SessionAuth>,
    /// The caller of core operations.
    pub caller: Caller,
    /// The tenant.
    pub tenant: TenantId,
    /// The member's role.
    pub role: Role,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("tenant", &self.tenant)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Whether the role may do what `scope` allows (pages offer only
    /// those actions; the core refuses the others anyway).
    pub fn may(&self, scope: AdminScope) -> bool {
        self.caller.require(scope).is_ok()
    }
}

impl FromRequestParts<ConsoleState> for Member {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let SignedIn { ctx, auth } = SignedIn::from_request_parts(parts, state).await?;
        let (Some(caller), Some(role)) = (auth.caller.clone(), auth.session.role) else {
            let why = auth
                .denied
                .clone()
                .unwrap_or_else(|| "the account has no role in a tenant".to_owned());
            return Err(error_page(&ctx, &PageError::forbidden(why)));
        };
        let Some(tenant) = caller.tenant.clone() else {
            return Err(error_page(
                &ctx,
                &PageError::forbidden("the session has no tenant"),
            ));
        };
        Ok(Member {
            ctx,
            auth,
            caller,
            tenant,
            role,
        })
    }
}

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

fn default_landing(ctx: &Ctx) -> String {
    ctx.url("/agents")
}

/// Where to go after sign-in.
fn landing(ctx: &Ctx, next: Option<&str>) -> String {
    next.and_then(|n| safe_next(n, &ctx.state.config.prefix))
        .unwrap_or_else(|| default_landing(ctx))
}

fn login_form(ctx: &Ctx, email: &str, next: Option<&str>, need_totp: bool) -> maud::Markup {
    let next = next.and_then(|n| safe_next(n, &ctx.state.config.prefix));
    html! {
        form class="stack" method="post" action=(ctx.url("/login")) {
            (ctx.csrf_field())
            @if let Some(n) = &next {
                input type="hidden" name="next" value=(n);
            }
            label { "Email"
                input type="email" name="email" autocomplete="username" required value=(email);
            }
            label { "Password"
                input type="password" name="password" autocomplete="current-password" required;
            }
            @if need_totp {
                label { "One-time code"
                    span class="hint" { "The 6-digit code of your authenticator app, or a recovery code." }
                    input type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                }
            }
            div { button type="submit" { "Sign in" } }
        }
        p class="muted" {
            "No account yet? " a href=(ctx.url("/signup")) { "Sign up" }
        }
    }
}

/// `GET /login`.
pub(crate) async fn login_page(ctx: Ctx, PageQuery(q): PageQuery<NextQuery>) -> Response {
    let mut page = Page::new(
        "Sign in",
        Nav::None,
        login_form(&ctx, "", q.next.as_deref(), false),
    );
    if ctx.signed_in() {
        page = page.flash(Flash::info(
            "You are signed in already; signing in again starts a new session.",
        ));
    }
    ctx.page(page)
}

/// Sets the cookie of a new session on a redirect.
pub(crate) fn signed_in_redirect(
    ctx: &Ctx,
    signed: &sentryagent_core::SignedIn,
    to: &str,
) -> Response {
    with_session(ctx, see_other(to), signed)
}

/// Sets the cookie of `signed`'s session on `res` (never cached).
pub(crate) fn with_session(
    ctx: &Ctx,
    mut res: Response,
    signed: &sentryagent_core::SignedIn,
) -> Response {
    let v = cookie(
        ctx.issuer(),
        Some(signed.secret.expose()),
        signed.session.expires_at,
        ctx.state.idp.clock().now(),
    );
    res.headers_mut().append(header::SET_COOKIE, v);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /login`: signs in and goes to `next` (when safe). Every failure
/// of the credentials reads the same.
pub(crate) async fn login(
    ctx: Ctx,
    Meta(meta): Meta,
    PageForm(f): PageForm<LoginForm>,
) -> Response {
    let input = SignIn {
        email: f.email.clone(),
        password: f.password,
        totp: f.totp.filter(|t| !t.trim().is_empty()),
        tenant_id: None,
    };
    let old = ctx.session.as_ref().map(|s| s.secret.expose().to_owned());
    match ctx.state.idp.sign_in(&input, &meta, old.as_deref()).await {
        Ok(signed) => {
            let to = landing(&ctx, f.next.as_deref());
            signed_in_redirect(&ctx, &signed, &to)
        }
        Err(e) => {
            let (status, flash, need_totp) = match &e {
                Error::Invalid { field, .. } if *field == "totp" => (
                    StatusCode::UNAUTHORIZED,
                    "Enter your password again and the one-time code of your second factor.",
                    true,
                ),
                Error::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts: wait a few minutes and try again.",
                    false,
                ),
                Error::Unauthenticated | Error::Invalid { .. } => (
                    StatusCode::UNAUTHORIZED,
                    "The email, password or code is not right.",
                    input.totp.is_some(),
                ),
                _ => return PageError::from(e).into_response(),
            };
            let body = login_form(&ctx, &f.email, f.next.as_deref(), need_totp);
            ctx.page(
                Page::new("Sign in", Nav::None, body)
                    .flash(Flash::error(flash))
                    .status(status)
                    .no_store(),
            )
        }
    }
}

/// The sign-up form.
#[derive(Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    tenant_name: String,
    #[serde(default)]
    display_name: Option<String>,
}

fn signup_form(ctx: &Ctx, email: &str, tenant: &str, name: &str) -> maud::Markup {
    html! {
        form class="stack" method="post" action=(ctx.url("/signup")) {
            (ctx.csrf_field())
            label { "Email"
                input type="email" name="email" autocomplete="email" required value=(email);
            }
            label { "Your name" span class="hint" { "Optional; shown to the members of your organization." }
                input type="text" name="display_name" autocomplete="name" maxlength="100" value=(name);
            }
            label { "Organization" span class="hint" { "The name of your tenant: agents, keys and members belong to it." }
                input type="text" name="tenant_name" required maxlength="100" value=(tenant);
            }
            label { "Password" span class="hint" { "At least 10 characters, not easy to guess." }
                input type="password" name="password" autocomplete="new-password" required minlength="10" maxlength="128";
            }
            div { button type="submit" { "Create account" } }
        }
        p class="muted" { "Have an account? " a href=(ctx.url("/login")) { "Sign in" } }
    }
}

fn signup_closed(ctx: &Ctx, mode: SignupMode) -> Response {
    let why = match mode {
        SignupMode::Invite => {
            "Accounts on this server are created by invitation: ask a member of your organization to invite you."
        }
        _ => "Sign-up is closed on this server: ask its operator for an account.",
    };
    ctx.page(
        Page::new(
            "Sign up",
            Nav::None,
            html! { p class="lead" { (why) } p { a href=(ctx.url("/login")) { "Sign in" } } },
        )
        .status(StatusCode::FORBIDDEN),
    )
}

/// `GET /signup`.
pub(crate) async fn signup_page(ctx: Ctx) -> Response {
    let mode = ctx.state.idp.config().people.signup;
    if mode != SignupMode::Open {
        return signup_closed(&ctx, mode);
    }
    ctx.page(Page::new(
        "Sign up",
        Nav::None,
        signup_form(&ctx, "", "", ""),
    ))
}

/// `POST /signup`: a new account and its free-tier tenant, signed in; then
/// the onboarding wizard.
pub(crate) async fn signup(
    ctx: Ctx,
    Meta(meta): Meta,
    PageForm(f): PageForm<SignupForm>,
) -> Response {
    let mode = ctx.state.idp.config().people.signup;
    if mode != SignupMode::Open {
        return signup_closed(&ctx, mode);
    }
    let input = SignUp {
        email: f.email.clone(),
        password: f.password,
        tenant_name: f.tenant_name.clone(),
        display_name: f.display_name.clone().filter(|n| !n.trim().is_empty()),
    };
    let old = ctx.session.as_ref().map(|s| s.secret.expose().to_owned());
    match ctx.state.idp.sign_up(&input, &meta, old.as_deref()).await {
        Ok(signed) => signed_in_redirect(&ctx, &signed, &ctx.url("/agents/new")),
        Err(e) => {
            let (status, message) = match &e {
                Error::Invalid { field, message } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{}: {message}", field_label(field)),
                ),
                Error::AlreadyExists { .. } => (
                    StatusCode::CONFLICT,
                    "An account with this email exists: sign in instead.".to_owned(),
                ),
                Error::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-ups from your address: try again later.".to_owned(),
                ),
                _ => return PageError::from(e).into_response(),
            };
            let body = signup_form(
                &ctx,
                &f.email,
                &f.tenant_name,
                f.display_name.as_deref().unwrap_or(""),
            );
            ctx.page(
                Page::new("Sign up", Nav::None, body)
                    .flash(Flash::error(message))
                    .status(status)
                    .no_store(),
            )
        }
    }
}

/// A form field's name as the form labels it.
fn field_label(field: &str) -> &str {
    match field {
        "email" => "Email",
        "password" => "Password",
        "tenant_name" => "Organization",
        "display_name" => "Your name",
        other => other,
    }
}

/// `POST /logout`: ends the session (the layer checked its CSRF token) and
/// clears the cookie.
pub(crate) async fn logout(SignedIn { ctx, auth }: SignedIn, Meta(meta): Meta) -> Response {
    if let Err(e) = ctx.state.idp.sign_out(auth.secret.expose(), &meta).await {
        return PageError::from(e).into_response();
    }
    let mut res = see_other(&format!("{}?notice=signed-out", ctx.url("/")));
    let now = ctx.state.idp.clock().now();
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(ctx.issuer(), None, now, now));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_under_the_prefix_are_followed() {
        assert_eq!(safe_next("/agents", "").as_deref(), Some("/agents"));
        assert_eq!(
            safe_next("/agents?state=active", "").as_deref(),
            Some("/agents?state=active")
        );
        assert_eq!(
            safe_next("/console/agents", "/console").as_deref(),
            Some("/console/agents")
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "evil",
            "",
            "/a b",
            "/a\nb",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_next(bad, ""), None, "{bad:?}");
        }
        assert_eq!(safe_next("/agents", "/console"), None);
        assert_eq!(safe_next("/consoleevil", "/console"), None);
    }

    #[test]
    fn cross_site_posts_are_recognized() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h));
        h.insert(header::HOST, HeaderValue::from_static("idp.example"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://idp.example"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h));
    }
}
